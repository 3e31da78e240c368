//! The cluster's certificate authority: created at first start, it issues the server, admin and
//! node certificates, and tells who a peer is from the certificate it presented.

use edge_api::tls::{crypto_provider, parse_certs, parse_key, JoinToken};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

/// Who is on the other end of a connection, from its client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A user in the admin group (edgectl).
    Admin { user: String },
    /// A node agent; may touch only its own Node and the pods bound to it.
    Node { name: String },
    /// Another control-plane server (raft peer).
    Server { name: String },
    /// No certificate: may only join.
    Anonymous,
}

const ADMIN_GROUP: &str = "edge:admins";
const NODE_GROUP: &str = "edge:nodes";
const SERVER_GROUP: &str = "edge:servers";

pub struct ClusterPki {
    pub ca_pem: String,
    ca_key_pem: String,
    pub server_cert_pem: String,
    server_key_pem: String,
    pub join_secret: String,
    /// This server's own secret for QUIC stateless resets (see `endpoint_config`).
    reset_secret: Vec<u8>,
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    let err = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// The hex secret kept in `path`, made of `bytes` random bytes on first use.
fn secret_file(path: &Path, bytes: usize) -> Result<String, PkiError> {
    if !path.exists() {
        use rand::RngCore;
        let mut secret = vec![0u8; bytes];
        rand::thread_rng().fill_bytes(&mut secret);
        write_private(path, &hex::encode(secret))?;
    }
    Ok(read(path)?.trim().to_string())
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "edge-ca");
    p.distinguished_name.push(DnType::OrganizationName, "edge");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(p)
}

impl ClusterPki {
    /// Loads the CA from `dir`, creating it (and the server certificate and join secret) on first start.
    pub fn load_or_create(dir: &Path) -> Result<ClusterPki, PkiError> {
        let f = |n: &str| dir.join(n);
        if !f("ca.key").exists() {
            let key = KeyPair::generate()?;
            let ca = ca_params()?.self_signed(&key)?;
            write_private(&f("ca.crt"), &ca.pem())?;
            write_private(&f("ca.key"), &key.serialize_pem())?;
        }
        let reset_secret = hex::decode(secret_file(&f("reset-secret"), 32)?).map_err(|e| {
            PkiError::Tls(format!(
                "{} is not hex ({e}); delete it and a new one is made",
                f("reset-secret").display()
            ))
        })?;
        let mut pki = ClusterPki {
            ca_pem: read(&f("ca.crt"))?,
            ca_key_pem: read(&f("ca.key"))?,
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
            join_secret: secret_file(&f("join-secret"), 16)?,
            reset_secret,
        };
        if !f("server.key").exists() {
            let (cert, key) = pki.issue(&format!("server:{}", hostname()), SERVER_GROUP, true)?;
            write_private(&f("server.crt"), &cert)?;
            write_private(&f("server.key"), &key)?;
        }
        pki.server_cert_pem = read(&f("server.crt"))?;
        pki.server_key_pem = read(&f("server.key"))?;
        Ok(pki)
    }

    /// The endpoint's configuration, with a stateless-reset key and connection-id key that
    /// survive restarts: a peer still holding a connection to this server's previous run gets a
    /// valid reset for its first packet and dials afresh at once, instead of finding out by its
    /// idle timeout (3 s for raft peers, during which a restarted server got neither log
    /// entries nor heartbeats, fell behind, and slowed the next election). The ids must be
    /// recognised as this endpoint's, or their packets are dropped without a reset.
    pub fn endpoint_config(&self) -> quinn::EndpointConfig {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.reset_secret);
        let tag = ring::hmac::sign(&key, b"edge connection ids");
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&tag.as_ref()[..8]);
        let cid_key = u64::from_le_bytes(cid_key);
        let mut config = quinn::EndpointConfig::new(Arc::new(key));
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        config
    }

    pub fn join_token(&self) -> Result<JoinToken, PkiError> {
        Ok(JoinToken {
            ca_hash: edge_api::tls::ca_hash(&self.ca_pem)
                .map_err(|e| PkiError::Tls(e.to_string()))?,
            secret: self.join_secret.clone(),
        })
    }

    /// Issues a certificate and key (PEM) for `common_name` in `group`, signed by the CA.
    pub fn issue(
        &self,
        common_name: &str,
        group: &str,
        server: bool,
    ) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        // Re-signing the same CA parameters with the same key yields an issuer with the same
        // name and key identifier, which is all a child certificate refers to.
        let ca = CertificateParams::from_ca_cert_pem(&self.ca_pem)?.self_signed(&ca_key)?;
        let sans = if server {
            vec![edge_api::SERVER_NAME.to_string(), "localhost".to_string()]
        } else {
            vec![]
        };
        let mut p = CertificateParams::new(sans)?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, common_name);
        p.distinguished_name.push(DnType::OrganizationName, group);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub fn issue_admin(&self, user: &str) -> Result<(String, String), PkiError> {
        self.issue(user, ADMIN_GROUP, false)
    }

    pub fn issue_node(&self, node: &str) -> Result<(String, String), PkiError> {
        self.issue(&format!("node:{node}"), NODE_GROUP, false)
    }

    /// A certificate for another control-plane server (serves clients, dials raft peers).
    pub fn issue_server(&self, name: &str) -> Result<(String, String), PkiError> {
        self.issue(&format!("server:{name}"), SERVER_GROUP, true)
    }

    /// The CA key, handed to servers that join: every server issues certificates.
    pub fn ca_key_pem(&self) -> &str {
        &self.ca_key_pem
    }

    /// Writes what a joining server received (and the join secret from its token) into `dir`,
    /// so that `load_or_create` finds a complete PKI of the existing cluster.
    pub fn install_joined(
        dir: &Path,
        join: &edge_api::wire::ServerJoin,
        join_secret: &str,
    ) -> Result<(), PkiError> {
        let f = |n: &str| dir.join(n);
        write_private(&f("ca.crt"), &join.ca_pem)?;
        write_private(&f("ca.key"), &join.ca_key_pem)?;
        write_private(&f("join-secret"), join_secret)?;
        write_private(&f("server.crt"), &join.cert_pem)?;
        write_private(&f("server.key"), &join.key_pem)
    }

    /// The QUIC server configuration: our certificate chain (leaf + CA, so joining agents can
    /// check the pinned CA hash), client certificates verified against the CA but optional at
    /// the TLS layer so that joining agents get through to the join handler, which is the only
    /// one that serves anonymous peers.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, PkiError> {
        let tls_err = |e: &dyn std::fmt::Display| PkiError::Tls(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for c in parse_certs(&self.ca_pem, "CA").map_err(|e| tls_err(&e))? {
            roots.add(c).map_err(|e| tls_err(&e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            crypto_provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls_err(&e))?;
        let mut chain =
            parse_certs(&self.server_cert_pem, "server certificate").map_err(|e| tls_err(&e))?;
        chain.extend(parse_certs(&self.ca_pem, "CA").map_err(|e| tls_err(&e))?);
        let key = parse_key(&self.server_key_pem, "server key").map_err(|e| tls_err(&e))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| tls_err(&e))?;
        use edge_api::wire::{ALPN_AGENT, ALPN_API, ALPN_JOIN, ALPN_RAFT};
        tls.alpn_protocols = [ALPN_API, ALPN_AGENT, ALPN_JOIN, ALPN_RAFT]
            .iter()
            .map(|a| a.to_vec())
            .collect();
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls))
            .map_err(|e| tls_err(&e))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
        cfg.transport_config(Arc::new(edge_api::tls::transport_config()));
        Ok(cfg)
    }

    /// A client configuration with the server's own certificate, for raft peer connections.
    pub fn peer_client_config(&self) -> Result<quinn::ClientConfig, PkiError> {
        edge_api::tls::client_config(
            &self.ca_pem,
            &self.server_cert_pem,
            &self.server_key_pem,
            edge_api::wire::ALPN_RAFT,
        )
        .map_err(|e| PkiError::Tls(e.to_string()))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edge".to_string())
}

/// Identifies the peer of an accepted connection from its verified certificate.
pub fn identity_of(conn: &quinn::Connection) -> Identity {
    let Some(any) = conn.peer_identity() else {
        return Identity::Anonymous;
    };
    let Ok(certs) = any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>() else {
        return Identity::Anonymous;
    };
    certs
        .first()
        .map(|c| identity_from_der(c))
        .unwrap_or(Identity::Anonymous)
}

/// Maps a (TLS-verified) certificate's subject to an identity; unknown groups get nothing.
pub fn identity_from_der(der: &[u8]) -> Identity {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Identity::Anonymous;
    };
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let cn = first(&mut subject.iter_common_name()).unwrap_or_default();
    let org = first(&mut subject.iter_organization()).unwrap_or_default();
    match org.as_str() {
        ADMIN_GROUP => Identity::Admin { user: cn },
        NODE_GROUP => match cn.strip_prefix("node:") {
            Some(n) if !n.is_empty() => Identity::Node {
                name: n.to_string(),
            },
            _ => Identity::Anonymous,
        },
        SERVER_GROUP => Identity::Server { name: cn },
        _ => Identity::Anonymous,
    }
}

/// The ALPN protocol the peer negotiated.
pub fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_identities() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path()).unwrap();
        let der = |pem: &str| parse_certs(pem, "t").unwrap().remove(0);
        let (admin, _) = pki.issue_admin("alice").unwrap();
        assert_eq!(
            identity_from_der(&der(&admin)),
            Identity::Admin {
                user: "alice".into()
            }
        );
        let (node, _) = pki.issue_node("pi-1").unwrap();
        assert_eq!(
            identity_from_der(&der(&node)),
            Identity::Node {
                name: "pi-1".into()
            }
        );
        assert!(matches!(
            identity_from_der(&der(&pki.server_cert_pem)),
            Identity::Server { .. }
        ));
        assert_eq!(identity_from_der(b"junk"), Identity::Anonymous);
    }

    #[test]
    fn reopening_keeps_the_same_ca_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let a = ClusterPki::load_or_create(dir.path()).unwrap();
        let b = ClusterPki::load_or_create(dir.path()).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.join_token().unwrap(), b.join_token().unwrap());
        assert!(b.server_config().is_ok());
    }
}
