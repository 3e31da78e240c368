//! The store benchmark's peer: a three-member etcd 3.4 (Debian `etcd-server`) on loopback,
//! plaintext or with mutual TLS on its client and peer links (edge always runs mutual TLS, and
//! Kubernetes runs etcd that way), and its gRPC `Put`.

use super::{Conn, System};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::{free_tcp_port, wait_for};

use super::support;

pub struct EtcdCluster {
    dir: tempfile::TempDir,
    tls: Option<Tls>,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

pub fn etcd_bin() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl EtcdCluster {
    pub fn start(mutual_tls: bool) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = mutual_tls.then(|| Tls::create(dir.path()));
        let mut c = EtcdCluster {
            dir,
            tls,
            client_ports: (0..3).map(|_| free_tcp_port()).collect(),
            peer_ports: (0..3).map(|_| free_tcp_port()).collect(),
            children: vec![None, None, None],
        };
        for i in 0..3 {
            c.restart(i);
        }
        c
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn spawn(&self, i: usize, dir: &Path) -> Child {
        let scheme = self.scheme();
        let cluster: Vec<String> = (0..3)
            .map(|j| format!("e{j}={scheme}://127.0.0.1:{}", self.peer_ports[j]))
            .collect();
        let client = format!("{scheme}://127.0.0.1:{}", self.client_ports[i]);
        let peer = format!("{scheme}://127.0.0.1:{}", self.peer_ports[i]);
        let log = std::fs::File::create(dir.join(format!("e{i}.log"))).expect("log");
        Command::new(etcd_bin().expect("etcd"))
            .args(["--name", &format!("e{i}")])
            .args([
                "--data-dir",
                dir.join(format!("e{i}")).to_str().expect("utf8"),
            ])
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "bench",
            ])
            // etcd wants the election timeout at least 5 heartbeats: 200 ms / 1 s (edge: 250 ms
            // and 1-2 s; etcd also randomizes up to twice the timeout).
            .args(["--heartbeat-interval", "200", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(self.tls.iter().flat_map(Tls::member_args))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd")
    }

    /// The leader's id, each member's id and raft index (0 for a member that did not answer).
    fn status(&self) -> Option<(u64, Vec<u64>, Vec<u64>)> {
        let endpoints: Vec<String> = self
            .client_ports
            .iter()
            .map(|p| format!("{}://127.0.0.1:{p}", self.scheme()))
            .collect();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &endpoints.join(","),
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .args(["--command-timeout", "2s"])
            .args(self.tls.iter().flat_map(Tls::etcdctl_args))
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let arr = v.as_array()?;
        // One entry per endpoint, in --endpoints order; a dead member has none.
        let mut ids = vec![0u64; 3];
        let mut indexes = vec![0u64; 3];
        let mut leader = 0;
        for e in arr {
            let ep = e["Endpoint"].as_str()?;
            let i = endpoints.iter().position(|x| x == ep)?;
            ids[i] = e["Status"]["header"]["member_id"].as_u64()?;
            indexes[i] = e["Status"]["raftIndex"].as_u64()?;
            leader = e["Status"]["leader"].as_u64()?;
        }
        Some((leader, ids, indexes))
    }
}

/// An HTTP/2 connection over `io`, driven by a task of its own.
async fn h2_over<T>(io: T) -> h2::client::SendRequest<Bytes>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

impl System for EtcdCluster {
    fn name(&self) -> &'static str {
        if self.tls.is_some() {
            "etcd 3.4 mTLS"
        } else {
            "etcd 3.4"
        }
    }

    fn connect(&self, rt: &tokio::runtime::Runtime, member: usize) -> Conn {
        let addr = format!("127.0.0.1:{}", self.client_ports[member]);
        let connector = self.tls.as_ref().map(|t| t.connector.clone());
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect to etcd");
            let _ = tcp.set_nodelay(true);
            let send = match connector {
                None => h2_over(tcp).await,
                Some(connector) => {
                    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .expect("TLS handshake with etcd");
                    h2_over(tls).await
                }
            };
            Conn::Etcd(send)
        })
    }

    fn leader(&self, _rt: &tokio::runtime::Runtime) -> usize {
        wait_for("an etcd leader", Duration::from_secs(30), || {
            let (leader, ids, _) = self.status()?;
            ids.iter().position(|&id| id == leader && id != 0)
        })
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut c) = self.children[member].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self, member: usize) {
        let child = self.spawn(member, self.dir.path());
        self.children[member] = Some(child);
    }

    /// Three members, a leader, every member at the same raft index (see edge's).
    fn wait_healthy(&self, _rt: &tokio::runtime::Runtime) {
        wait_for(
            "three caught-up etcd members",
            Duration::from_secs(60),
            || {
                let (leader, ids, indexes) = self.status()?;
                (leader != 0
                    && ids.iter().all(|&i| i != 0)
                    && indexes.iter().all(|&x| x == indexes[0]))
                .then_some(())
            },
        );
    }
}

/// Certificates for a cluster run with mutual TLS: one CA, one certificate every member uses
/// for serving and for dialing its peers, one for the benchmark's clients and etcdctl.
struct Tls {
    ca: PathBuf,
    member_cert: PathBuf,
    member_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    connector: tokio_rustls::TlsConnector,
}

impl Tls {
    fn create(dir: &Path) -> Tls {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair,
            SanType,
        };
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issue = |sans: Vec<SanType>, usages: Vec<Eku>| {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
            p.subject_alt_names = sans;
            p.extended_key_usages = usages;
            let key = KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &ca, &ca_key).expect("sign");
            (cert, key)
        };
        let (member, member_key) = issue(
            vec![
                SanType::IpAddress([127, 0, 0, 1].into()),
                SanType::DnsName("localhost".try_into().expect("dns name")),
            ],
            vec![Eku::ServerAuth, Eku::ClientAuth],
        );
        let (client, client_key) = issue(vec![], vec![Eku::ClientAuth]);
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a certificate");
            path
        };

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("the CA");
        let key = rustls_pki_types::PrivatePkcs8KeyDer::from(client_key.serialize_der());
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.der().clone()], key.into())
        .expect("client certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        Tls {
            ca: write("ca.pem", ca.pem()),
            member_cert: write("member.pem", member.pem()),
            member_key: write("member-key.pem", member_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// etcd's flags for serving clients and peers with these certificates, requiring theirs.
    fn member_args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.to_str().expect("utf8").to_string();
        let mut args = Vec::new();
        for prefix in ["", "peer-"] {
            args.extend([
                format!("--{prefix}cert-file={}", path(&self.member_cert)),
                format!("--{prefix}key-file={}", path(&self.member_key)),
                format!("--{prefix}trusted-ca-file={}", path(&self.ca)),
                format!("--{prefix}client-cert-auth"),
            ]);
        }
        args
    }

    fn etcdctl_args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.to_str().expect("utf8").to_string();
        vec![
            format!("--cacert={}", path(&self.ca)),
            format!("--cert={}", path(&self.client_cert)),
            format!("--key={}", path(&self.client_key)),
        ]
    }
}

/// etcd's `KV/Put` over gRPC: a protobuf `PutRequest { key = 1, value = 2 }` in a gRPC frame.
pub async fn put(h: h2::client::SendRequest<Bytes>, key: &str, value: &str) -> Result<(), String> {
    let mut msg = Vec::with_capacity(key.len() + value.len() + 8);
    for (tag, field) in [(0x0a, key.as_bytes()), (0x12, value.as_bytes())] {
        msg.push(tag);
        let mut len = field.len();
        while len >= 0x80 {
            msg.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        msg.push(len as u8);
        msg.extend_from_slice(field);
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let req = http::Request::builder()
        .method("POST")
        .uri("http://etcd/etcdserverpb.KV/Put")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
    let mut h = h.ready().await.map_err(|e| e.to_string())?;
    let (resp, mut stream) = h.send_request(req, false).map_err(|e| e.to_string())?;
    stream
        .send_data(Bytes::from(body), true)
        .map_err(|e| e.to_string())?;
    let resp = resp.await.map_err(|e| e.to_string())?;
    let status = resp.headers().get("grpc-status").cloned();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.map_err(|e| e.to_string())?;
    let status = status.or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()));
    match status.as_ref().map(|s| s.as_bytes()) {
        Some(b"0") => Ok(()),
        other => Err(format!("grpc-status {other:?}")),
    }
}
