//! The control plane's API over real loopback QUIC with mTLS: a server started in-process,
//! driven with the admin certificate, a node certificate, and no certificate at all.

use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::{Client, ErrorCode, EventType, Request, Response};
mod common;

use common::server;
use edge_control::server::RunningServer;
use std::sync::Arc;
use std::time::Duration;

async fn admin(s: &RunningServer) -> Client {
    let cfg = s
        .admin_config
        .quic_config(edge_api::wire::ALPN_API)
        .unwrap();
    Client::connect(&s.local_addr.to_string(), cfg)
        .await
        .expect("admin connects")
}

fn pod(name: &str, digest: &str) -> Object {
    let y = format!(
        "apiVersion: edge.dev/v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec: {{containers: [{{name: main, image: '{digest}'}}]}}\n"
    );
    edge_api::manifest::parse_documents(&y, "test")
        .unwrap()
        .remove(0)
}

/// Joins as node `name` over an anonymous join connection and connects with the new certificate.
async fn join_node(s: &RunningServer, anon: &Client, name: &str) -> Client {
    let request = Request::Join {
        secret: s.token.secret.clone(),
        node_name: name.into(),
    };
    let Response::Joined {
        ca_pem,
        cert_pem,
        key_pem,
    } = anon.call(&request).await.unwrap()
    else {
        panic!("join answered something else")
    };
    let cfg =
        edge_api::tls::client_config(&ca_pem, &cert_pem, &key_pem, edge_api::wire::ALPN_AGENT)
            .unwrap();
    Client::connect(&s.local_addr.to_string(), cfg)
        .await
        .unwrap()
}

const WASM: &[u8] = b"\0asm\x01\0\0\0";

#[tokio::test(flavor = "multi_thread")]
async fn apply_get_list_watch_delete_over_quic() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let c = admin(&s).await;

    let digest = match c
        .call(&Request::PutBlob {
            data: WASM.to_vec(),
        })
        .await
        .unwrap()
    {
        Response::BlobStored { digest, .. } => digest,
        other => panic!("{other:?}"),
    };
    assert_eq!(digest, edge_api::wire::blob_digest(WASM));

    let mut watch = c
        .stream(&Request::Watch {
            kind: Kind::Pod,
            namespace: None,
            selector: Some("app=a".into()),
            resource_version: None,
        })
        .await
        .unwrap();
    let applied = c
        .call(&Request::Apply {
            object: pod("a", &digest),
            dry_run: false,
        })
        .await
        .unwrap();
    let Response::Applied { object, outcome } = applied else {
        panic!("{applied:?}")
    };
    assert_eq!(outcome, edge_api::wire::ApplyOutcome::Created);
    let rv = object.meta().resource_version;
    assert!(rv > 0 && !object.meta().uid.is_empty());
    c.call(&Request::Apply {
        object: pod("b", &digest),
        dry_run: false,
    })
    .await
    .unwrap();

    // The same manifest again changes nothing (the scheduler may have written status since).
    let again = c
        .call(&Request::Apply {
            object: pod("a", &digest),
            dry_run: false,
        })
        .await
        .unwrap();
    let Response::Applied {
        object: same,
        outcome,
    } = again
    else {
        panic!()
    };
    assert_eq!(outcome, edge_api::wire::ApplyOutcome::Unchanged);
    assert_eq!(
        (same.meta().uid.as_str(), same.meta().generation),
        (object.meta().uid.as_str(), 1)
    );

    let ev = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Response::Event(ev) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (ev.event_type, ev.object.meta().name.as_str()),
        (EventType::Added, "a")
    );

    let list = c
        .call(&Request::List {
            kind: Kind::Pod,
            namespace: Some("default".into()),
            selector: Some("app in (a,b)".into()),
        })
        .await
        .unwrap();
    let Response::List {
        items,
        resource_version,
    } = list
    else {
        panic!()
    };
    assert_eq!(items.len(), 2);
    assert!(resource_version >= rv);

    // The scheduler has no nodes: the pod says why it waits.
    let key = ObjectKey::new(Kind::Pod, "default", "a");
    let mut reason = String::new();
    for _ in 0..50 {
        if let Response::Object(Object::Pod(p)) =
            c.call(&Request::Get { key: key.clone() }).await.unwrap()
        {
            if let Some(cond) = edge_api::meta::condition(&p.status.conditions, "PodScheduled") {
                reason = cond.message.clone();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reason.contains("0/0 nodes are available"), "{reason}");

    // An unbound pod is deleted at once; the watch sees it.
    c.call(&Request::Delete {
        key: key.clone(),
        force: false,
        propagation: Default::default(),
    })
    .await
    .unwrap();
    let err = c
        .call(&Request::Get { key: key.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.api().unwrap().code, ErrorCode::NotFound);
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Response::Event(ev) = ev {
            if ev.event_type == EventType::Deleted {
                assert_eq!(ev.object.meta().name, "a");
                break;
            }
        }
    }

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let c = admin(&s).await;
    let digest = edge_api::wire::blob_digest(WASM);

    let mut bad_name = pod("ok", &format!("sha256:{}", "0".repeat(64)));
    bad_name.meta_mut().name = "Not_A_Name".into();
    let e = c
        .call(&Request::Apply {
            object: bad_name,
            dry_run: false,
        })
        .await
        .unwrap_err();
    let e = e.api().unwrap().clone();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(
        e.message.contains("metadata.name") && e.message.contains("DNS-1123"),
        "{e}"
    );

    let e = c
        .call(&Request::PutBlob {
            data: b"not wasm".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::Invalid);

    let mut big = WASM.to_vec();
    big.resize(edge_api::wire::MAX_BLOB_BYTES + 1, 0);
    let e = c.call(&Request::PutBlob { data: big }).await.unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::TooLarge, "{e}");

    let mut in_missing_ns = pod("x", &digest);
    in_missing_ns.meta_mut().namespace = "nowhere".into();
    let e = c
        .call(&Request::Apply {
            object: in_missing_ns,
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("namespace \"nowhere\" not found"),
        "{e}"
    );

    let dry = c
        .call(&Request::Apply {
            object: pod("dry", &digest),
            dry_run: true,
        })
        .await
        .unwrap();
    assert!(matches!(dry, Response::Applied { .. }));

    let list = c
        .call(&Request::List {
            kind: Kind::Pod,
            namespace: None,
            selector: None,
        })
        .await
        .unwrap();
    let Response::List { items, .. } = list else {
        panic!()
    };
    assert!(items.is_empty(), "nothing may be stored: {items:?}");
    // The server is still up.
    assert!(matches!(
        c.call(&Request::WhoAmI).await.unwrap(),
        Response::Identity { .. }
    ));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_without_a_valid_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let addr = s.local_addr.to_string();

    // No certificate: only a join is served, anything else is Unauthorized.
    let join_cfg = edge_api::tls::join_client_config(&s.token).unwrap();
    let anon = Client::connect(&addr, join_cfg.clone()).await.unwrap();
    let e = anon
        .call(&Request::List {
            kind: Kind::Pod,
            namespace: None,
            selector: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::Unauthorized);
    let wrong = Request::Join {
        secret: "wrong".into(),
        node_name: "n1".into(),
    };
    assert_eq!(
        anon.call(&wrong).await.unwrap_err().api().unwrap().code,
        ErrorCode::Unauthorized
    );

    // A certificate from another CA fails the TLS handshake.
    let other = tempfile::tempdir().unwrap();
    let foreign = edge_control::pki::ClusterPki::load_or_create(other.path()).unwrap();
    let (cert, key) = foreign.issue_admin("mallory").unwrap();
    let cfg = edge_api::tls::client_config(
        &s.admin_config.certificate_authority,
        &cert,
        &key,
        edge_api::wire::ALPN_API,
    )
    .unwrap();
    let refused = match Client::connect(&addr, cfg).await {
        Err(_) => true,
        Ok(c) => c.call(&Request::WhoAmI).await.is_err(),
    };
    assert!(refused, "a certificate from a foreign CA must be refused");

    // A token pinning another CA is refused by the joining side.
    let mut bad_token = s.token.clone();
    bad_token.ca_hash = "ab".repeat(32);
    let cfg = edge_api::tls::join_client_config(&bad_token).unwrap();
    assert!(Client::connect(&addr, cfg).await.is_err());

    // A node certificate is confined to the node's own objects.
    let node = join_node(&s, &anon, "n1").await;
    let e = node
        .call(&Request::List {
            kind: Kind::Node,
            namespace: None,
            selector: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::Forbidden);
    let e = node
        .call(&Request::PutBlob {
            data: WASM.to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::Forbidden);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_reads_only_the_configmaps_its_pods_use() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let c = admin(&s).await;
    let addr = s.local_addr.to_string();
    let anon = Client::connect(&addr, edge_api::tls::join_client_config(&s.token).unwrap())
        .await
        .unwrap();
    let node = join_node(&s, &anon, "n1").await;

    // Register a Ready node so the scheduler binds the pod to it.
    let mut n = edge_api::Node::default();
    n.metadata.name = "n1".into();
    node.call(&Request::Apply {
        object: Object::Node(n.clone()),
        dry_run: false,
    })
    .await
    .unwrap();
    n.status
        .conditions
        .push(edge_api::Condition::new("Ready", true, "AgentReady", ""));
    n.status.allocatable.insert("cpu".into(), "2".into());
    n.status.allocatable.insert("memory".into(), "1Gi".into());
    node.call(&Request::UpdateStatus {
        object: Object::Node(n),
    })
    .await
    .unwrap();

    for name in ["used", "unused"] {
        let y = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"
        );
        let obj = edge_api::manifest::parse_documents(&y, "t")
            .unwrap()
            .remove(0);
        c.call(&Request::Apply {
            object: obj,
            dry_run: false,
        })
        .await
        .unwrap();
    }
    let y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  volumes: [{{name: cfg, configMap: {{name: used}}}}]\n  containers: [{{name: main, image: '{}', volumeMounts: [{{name: cfg, mountPath: /etc/cfg}}]}}]\n",
        edge_api::wire::blob_digest(WASM)
    );
    let p = edge_api::manifest::parse_documents(&y, "t")
        .unwrap()
        .remove(0);
    c.call(&Request::Apply {
        object: p,
        dry_run: false,
    })
    .await
    .unwrap();
    let key = ObjectKey::new(Kind::Pod, "default", "p");
    for _ in 0..100 {
        if let Ok(Response::Object(Object::Pod(p))) =
            node.call(&Request::Get { key: key.clone() }).await
        {
            if p.spec.node_name.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let used = node
        .call(&Request::Get {
            key: ObjectKey::new(Kind::ConfigMap, "default", "used"),
        })
        .await;
    assert!(
        matches!(used, Ok(Response::Object(Object::ConfigMap(_)))),
        "{used:?}"
    );
    let unused = node
        .call(&Request::Get {
            key: ObjectKey::new(Kind::ConfigMap, "default", "unused"),
        })
        .await;
    assert_eq!(unused.unwrap_err().api().unwrap().code, ErrorCode::NotFound);
    s.shutdown().await;
}

/// `Request::Update` is compare-and-swap on resourceVersion, bumps generation only for spec
/// changes, and is for admins only.
#[tokio::test(flavor = "multi_thread")]
async fn update_is_compare_and_swap_on_the_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let c = admin(&s).await;
    let y =
        "apiVersion: edge.dev/v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {level: debug}\n";
    let cm = edge_api::manifest::parse_documents(y, "t")
        .unwrap()
        .remove(0);
    let Response::Applied { object: stored, .. } = c
        .call(&Request::Apply {
            object: cm,
            dry_run: false,
        })
        .await
        .unwrap()
    else {
        panic!("apply answered something else")
    };
    let (rv, generation) = (stored.meta().resource_version, stored.meta().generation);

    let mut labeled = stored.clone();
    labeled.meta_mut().labels.insert("team".into(), "a".into());
    let Response::Object(after) = c
        .call(&Request::Update {
            object: labeled.clone(),
        })
        .await
        .unwrap()
    else {
        panic!("update answered something else")
    };
    assert_eq!(after.meta().labels["team"], "a");
    assert!(after.meta().resource_version > rv);
    assert_eq!(after.meta().generation, generation, "labels are not spec");
    assert_eq!(after.meta().uid, stored.meta().uid);

    // The same write again carries the old revision: it lost the race.
    let e = c
        .call(&Request::Update { object: labeled })
        .await
        .unwrap_err();
    let e = e.api().unwrap();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("the object has been modified"), "{e:?}");

    let mut changed = after.clone();
    if let Object::ConfigMap(cm) = &mut changed {
        cm.data.insert("level".into(), "info".into());
    }
    let Response::Object(after2) = c.call(&Request::Update { object: changed }).await.unwrap()
    else {
        panic!("update answered something else")
    };
    assert_eq!(after2.meta().generation, generation + 1, "data is spec");
    let Response::Object(Object::ConfigMap(read)) =
        c.call(&Request::Get { key: after2.key() }).await.unwrap()
    else {
        panic!("get answered something else")
    };
    assert_eq!(read.data["level"], "info");
    assert_eq!(read.metadata.labels["team"], "a");

    let mut unread = after2.clone();
    unread.meta_mut().resource_version = 0;
    let e = c
        .call(&Request::Update { object: unread })
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::BadRequest);
    let mut gone = after2.clone();
    gone.meta_mut().name = "nothing-here".into();
    let e = c.call(&Request::Update { object: gone }).await.unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::NotFound);

    let addr = s.local_addr.to_string();
    let anon = Client::connect(&addr, edge_api::tls::join_client_config(&s.token).unwrap())
        .await
        .unwrap();
    let node = join_node(&s, &anon, "n1").await;
    let e = node
        .call(&Request::Update { object: after2 })
        .await
        .unwrap_err();
    assert_eq!(e.api().unwrap().code, ErrorCode::Forbidden);
    s.shutdown().await;
}

/// A server endpoint on `socket` in a runtime of its own, answering one exchange per stream.
fn serve_echo(
    pki: &edge_control::pki::ClusterPki,
    socket: std::net::UdpSocket,
) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = {
        let _guard = rt.enter();
        quinn::Endpoint::new(
            pki.endpoint_config(),
            Some(pki.server_config().unwrap()),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .unwrap()
    };
    rt.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let Ok(body) = recv.read_to_end(64).await else {
                        return;
                    };
                    let _ = send.write_all(&body).await;
                    let _ = send.finish();
                }
            });
        }
    });
    rt
}

async fn echo(conn: &quinn::Connection) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(b"ping").await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    recv.read_to_end(64).await.map_err(|e| e.to_string())
}

#[test]
fn a_peer_of_a_crashed_server_is_reset_by_its_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let pki = edge_control::pki::ClusterPki::load_or_create(dir.path()).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let first_run = serve_echo(&pki, socket);

    let client_rt = tokio::runtime::Runtime::new().unwrap();
    let conn = client_rt.block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(pki.peer_client_config().unwrap());
        let conn = endpoint
            .connect(addr, edge_api::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        assert_eq!(echo(&conn).await.unwrap(), b"ping");
        conn
    });

    // A crash: the first run's tasks and socket vanish without a word to the client.
    drop(first_run);
    let pki = edge_control::pki::ClusterPki::load_or_create(dir.path()).unwrap();
    let socket = (0..100)
        .find_map(|_| {
            std::net::UdpSocket::bind(addr)
                .map_err(|_| std::thread::sleep(Duration::from_millis(20)))
                .ok()
        })
        .expect("the port is free again once the first run is gone");
    let _second_run = serve_echo(&pki, socket);

    let err = client_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), echo(&conn))
            .await
            .expect("the old connection ends well before its idle timeout")
            .expect_err("the old connection cannot be used")
    });
    assert!(
        matches!(conn.close_reason(), Some(quinn::ConnectionError::Reset)),
        "the second run reset the connection, got {err} / {:?}",
        conn.close_reason()
    );
}
