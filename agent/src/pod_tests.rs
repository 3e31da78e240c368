//! In-process tests of whole pod workers against the real runtime and the guest fixtures in
//! `examples/components` (no control plane: ConfigMaps come from the local store, as offline).

use crate::blobs::BlobCache;
use crate::configsource::ConfigSource;
use crate::localstore::LocalStore;
use crate::logs::LogStore;
use crate::worker::{PodWorker, WorkerContext};
use edge_api::object::Object;
use edge_api::pod::{ContainerPort, EnvVar, EnvVarSource, KeySelector, Volume, VolumeMount};
use edge_api::workload::{ConfigMapSource, EmptyDirSource, HttpGetAction, Probe};
use edge_api::{Container, Pod};
use edge_runtime::{AllocatorPreference, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/components")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; build the guest components first with scripts/build-modules.sh",
            path.display()
        )
    })
}

struct Env {
    ctx: WorkerContext,
    store: LocalStore,
    rx: mpsc::UnboundedReceiver<Pod>,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let runtime = Runtime::with_allocator(
        RuntimeConfig {
            cache_dir: root.join("cache"),
        },
        AllocatorPreference::OnDemand,
    )
    .unwrap();
    let client: crate::blobs::ClientSlot = Default::default();
    let store = LocalStore::open(&root.join("agent.redb")).unwrap();
    let (status_tx, rx) = mpsc::unbounded_channel();
    let ctx = WorkerContext {
        runtime,
        blobs: BlobCache::new(root.join("components"), client.clone()).unwrap(),
        logs: LogStore::new(root.join("logs")),
        backoff: crate::Backoff::default(),
        status_tx,
        config: ConfigSource::new(client, store.clone()),
        pods_dir: root.join("pods"),
        http: crate::HttpLimits::default(),
        output_bytes_per_sec: None,
        proxy: crate::proxy::Proxy::new("test-node", None),
    };
    Env {
        ctx,
        store,
        rx,
        _dir: dir,
    }
}

/// Puts the component where the blob cache looks, returning its `sha256:` reference.
fn install(components: &Path, bytes: &[u8]) -> String {
    let digest = edge_api::wire::blob_digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(components.join(format!("{hex}.wasm")), bytes).unwrap();
    digest
}

/// Waits for a reported status satisfying `f`.
async fn until(rx: &mut mpsc::UnboundedReceiver<Pod>, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    let wait = async {
        while let Some(p) = rx.recv().await {
            if f(&p) {
                return p;
            }
        }
        panic!("status channel closed")
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(p) => p,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pod(uid: &str, c: Container, volumes: Vec<Volume>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = format!("p-{uid}");
    p.metadata.namespace = "default".into();
    p.metadata.uid = uid.into();
    p.spec.containers = vec![c];
    p.spec.volumes = volumes;
    p
}

fn greeting_from(name: &str) -> EnvVar {
    EnvVar {
        name: "GREETING".into(),
        value: String::new(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(KeySelector {
                name: name.into(),
                key: "greeting".into(),
                optional: false,
            }),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn http_pod_serves_with_config_from_the_local_copy_and_becomes_ready() {
    let mut e = env();
    let image = install(
        &e.ctx.pods_dir.with_file_name("components"),
        &fixture("http-hello"),
    );
    let mut cm = edge_api::ConfigMap::default();
    cm.metadata.namespace = "default".into();
    cm.metadata.name = "web".into();
    cm.data
        .insert("greeting".into(), "hi from a configmap".into());
    e.store.put_config(&Object::ConfigMap(cm)).unwrap();

    let port = free_port();
    let c = Container {
        name: "web".into(),
        image,
        ports: vec![ContainerPort {
            container_port: port,
            name: None,
            protocol: "TCP".into(),
        }],
        env: vec![greeting_from("web")],
        volume_mounts: vec![VolumeMount {
            name: "cfg".into(),
            mount_path: "/etc/web".into(),
            read_only: false,
        }],
        readiness_probe: Some(Probe {
            http_get: Some(HttpGetAction {
                path: "/".into(),
                port,
                host: None,
            }),
            period_seconds: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let volumes = vec![
        Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapSource {
                name: "web".into(),
                optional: false,
            }),
            ..Default::default()
        },
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirSource::default()),
            ..Default::default()
        },
    ];
    let worker = PodWorker::spawn(e.ctx.clone(), pod("u-http", c, volumes));
    let running = until(&mut e.rx, "running, not ready", |p| {
        p.status.container_statuses[0].state.running.is_some()
    })
    .await;
    assert!(
        !running.status.container_statuses[0].ready,
        "ready before its probe passed"
    );
    let ready = until(&mut e.rx, "ready", |p| p.status.container_statuses[0].ready).await;
    let cond = edge_api::meta::condition(&ready.status.conditions, "Ready").unwrap();
    assert!(cond.is_true());

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("GREETING=hi from a configmap"), "{answer}");

    let pod_dir = e.ctx.pods_dir.join("u-http");
    let file = pod_dir.join("volumes/cfg/greeting");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "hi from a configmap"
    );
    assert!(pod_dir.join("volumes/scratch").is_dir());
    worker.stop_and_remove(e.ctx.pods_dir.clone());
    for _ in 0..100 {
        if !pod_dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pod_dir.exists(), "volumes outlived the pod");
    // The listener went with the pod.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}

#[tokio::test]
async fn a_missing_configmap_keeps_the_container_waiting_with_its_name() {
    let mut e = env();
    let image = install(
        &e.ctx.pods_dir.with_file_name("components"),
        &fixture("hello"),
    );
    let c = Container {
        name: "main".into(),
        image,
        env: vec![greeting_from("absent")],
        ..Default::default()
    };
    let worker = PodWorker::spawn(e.ctx.clone(), pod("u-cfg", c, Vec::new()));
    let p = until(&mut e.rx, "CreateContainerConfigError", |p| {
        p.status.container_statuses[0]
            .state
            .waiting
            .as_ref()
            .is_some_and(|w| w.reason == "CreateContainerConfigError")
    })
    .await;
    let w = p.status.container_statuses[0]
        .state
        .waiting
        .clone()
        .unwrap();
    assert!(w.message.contains("default/absent"), "{}", w.message);
    assert_eq!(p.display_status(), "CreateContainerConfigError");
    worker.stop();
}

fn http_container(image: String, port: u16) -> Container {
    Container {
        name: "web".into(),
        image,
        ports: vec![ContainerPort {
            container_port: port,
            name: None,
            protocol: "TCP".into(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_with_back_off_and_says_why() {
    let mut e = env();
    let image = install(
        &e.ctx.pods_dir.with_file_name("components"),
        &fixture("http-hello"),
    );
    let port = free_port();
    let mut c = http_container(image, port);
    c.liveness_probe = Some(Probe {
        http_get: Some(HttpGetAction {
            path: "/missing".into(),
            port,
            host: None,
        }),
        period_seconds: 1,
        failure_threshold: 1,
        ..Default::default()
    });
    let worker = PodWorker::spawn(e.ctx.clone(), pod("u-live", c, Vec::new()));
    let p = until(&mut e.rx, "CrashLoopBackOff", |p| {
        p.status.container_statuses[0]
            .state
            .waiting
            .as_ref()
            .is_some_and(|w| w.reason == "CrashLoopBackOff")
    })
    .await;
    let cs = &p.status.container_statuses[0];
    assert_eq!(cs.restart_count, 1);
    let msg = &cs.state.waiting.as_ref().unwrap().message;
    assert!(
        msg.contains("Unhealthy")
            && msg.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{msg}"
    );
    worker.stop();
}

#[tokio::test]
async fn a_request_past_its_deadline_is_shown_and_the_pod_keeps_serving() {
    let mut e = env();
    e.ctx.http.request_timeout = Duration::from_millis(300);
    let image = install(
        &e.ctx.pods_dir.with_file_name("components"),
        &fixture("http-hello"),
    );
    let port = free_port();
    let worker = PodWorker::spawn(
        e.ctx.clone(),
        pod("u-slow", http_container(image, port), Vec::new()),
    );
    until(&mut e.rx, "running", |p| {
        p.status.container_statuses[0].state.running.is_some()
    })
    .await;
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer).await;
        answer
    };
    let answer = get("/spin").await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    let p = until(&mut e.rx, "DeadlineExceeded", |p| {
        p.status.reason == "DeadlineExceeded"
    })
    .await;
    assert!(
        p.status.message.contains("container web"),
        "{}",
        p.status.message
    );
    assert!(p.status.container_statuses[0].state.running.is_some());
    assert!(get("/").await.contains("hello from edge http"));
    worker.stop();
}

#[tokio::test]
async fn a_command_sees_its_mounts_with_their_modes_and_only_its_ports() {
    let mut e = env();
    let image = install(
        &e.ctx.pods_dir.with_file_name("components"),
        &fixture("escape"),
    );
    let mut cm = edge_api::ConfigMap::default();
    cm.metadata.namespace = "default".into();
    cm.metadata.name = "cfg".into();
    cm.data.insert("mode".into(), "strict".into());
    e.store.put_config(&Object::ConfigMap(cm)).unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("data.txt"), "from the host").unwrap();
    let port = free_port();
    let var = |name: &str, value: String| EnvVar {
        name: name.into(),
        value,
        value_from: None,
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only,
    };
    let c = Container {
        name: "main".into(),
        image,
        ports: vec![ContainerPort {
            container_port: port,
            name: None,
            protocol: "TCP".into(),
        }],
        env: vec![
            var("LISTEN", port.to_string()),
            var("TARGET", "127.0.0.1:9".into()),
        ],
        volume_mounts: vec![
            mount("scratch", "/scratch", false),
            mount("cfg", "/etc/cfg", false),
            mount("host", "/host", true),
        ],
        ..Default::default()
    };
    let volumes = vec![
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirSource::default()),
            ..Default::default()
        },
        Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapSource {
                name: "cfg".into(),
                optional: false,
            }),
            ..Default::default()
        },
        Volume {
            name: "host".into(),
            host_path: Some(edge_api::workload::HostPathSource {
                path: host.path().display().to_string(),
                type_: "Directory".into(),
            }),
            ..Default::default()
        },
    ];
    let mut p = pod("u-cmd", c, volumes);
    p.spec.restart_policy = edge_api::pod::RestartPolicy::Never;
    let worker = PodWorker::spawn(e.ctx.clone(), p);
    let done = until(&mut e.rx, "Succeeded", |p| {
        p.status.phase == edge_api::PodPhase::Succeeded
    })
    .await;
    assert_eq!(
        done.status.container_statuses[0]
            .state
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        0
    );
    let log = e.ctx.logs.file("default", "p-u-cmd", "u-cmd", "main");
    let out = std::fs::read_to_string(log).unwrap();
    for line in [
        "read /etc/cfg/mode: ok 6 bytes: strict",
        "write /scratch/escape-was-here.txt: ok",
        "write /etc/cfg/escape-was-here.txt: denied",
        "read /host/data.txt: ok 13 bytes: from the host",
        "write /host/escape-was-here.txt: denied",
        &format!("listen {port}: ok"),
        "connect 127.0.0.1:9: denied",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    worker.stop();
}
