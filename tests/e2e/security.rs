//! edgectl with a certificate the cluster did not issue is refused; the server stays up.

use crate::support::*;

#[test]
fn a_client_without_a_valid_certificate_is_refused() {
    let c = Cluster::start(&["--no-agent"]);
    let good = edge_api::config::ClientConfigFile::load(&c.home.path().join("config"))
        .expect("admin config");

    let other = tempfile::tempdir().expect("tempdir");
    let foreign = edge_control::pki::ClusterPki::load_or_create(other.path()).expect("foreign CA");
    let (cert, key) = foreign.issue_admin("mallory").expect("cert");
    let forged = edge_api::config::ClientConfigFile {
        servers: Vec::new(),
        client_certificate: cert,
        client_key: key,
        ..good.clone()
    };
    let path = c.home.path().join("forged.conf");
    forged.save(&path).expect("save");
    let out = std::process::Command::new(EDGECTL)
        .args(["--config", path.to_str().expect("utf8"), "get", "pods"])
        .output()
        .expect("edgectl");
    assert!(
        !out.status.success(),
        "a foreign certificate must be refused: {}",
        stdout(&out)
    );
    assert!(!stderr(&out).is_empty());

    let log = c.server.as_ref().map(|d| d.log_text()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
    c.ok(&["get", "namespaces"]);
}
