//! Unit tests of `describe`: the blocks and fields kubectl users look for.

use super::*;
use crate::cli::testutil::*;

#[test]
fn pod_description_has_the_usual_blocks() {
    let mut p = running_pod();
    p.spec.containers[0].env = vec![edge_api::pod::EnvVar {
        name: "GREETING".into(),
        value: "hi".into(),
        ..Default::default()
    }];
    p.metadata.labels.insert("tier".into(), "web".into());
    let s = describe_pod(&p);
    let lines: Vec<_> = s.lines().collect();
    assert_eq!(lines[0], "Name:            hello");
    assert_eq!(lines[1], "Namespace:       default");
    assert_eq!(lines[2], "Node:            node-a");
    assert!(lines[3].starts_with("Start Time:      "), "{s}");
    assert_eq!(lines[4], "Labels:          app=hello");
    assert_eq!(lines[5], "                 tier=web");
    assert_eq!(lines[6], "Annotations:     <none>");
    assert_eq!(lines[7], "Status:          Running");
    for want in [
        "Containers:",
        "  main:",
        &format!("    Image:          {DIGEST}"),
        "    Args:",
        "      --port",
        "      8080",
        "    State:          Running",
        "    Ready:          True",
        "    Restart Count:  0",
        "    Limits:",
        "      memory:  64Mi",
        "    Requests:",
        "      cpu:  250m",
        "    Environment:",
        "      GREETING:  hi",
        "  side:",
        "    Restart Count:  2",
        "    Environment:    <none>",
        "Conditions:",
        "  Type    Status   Reason               Message",
        "  Ready   False    ContainersNotReady   side",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{s}");
    }
    assert!(
        s.contains(&format!(
            "      Started:  {}",
            timestamp(p.status.start_time)
        )),
        "{s}"
    );
}

#[test]
fn terminated_and_waiting_states_show_reason_and_exit_code() {
    let s = describe_pod(&failed_pod());
    assert!(s.contains("    State:          Terminated\n"), "{s}");
    assert!(s.contains("      Reason:     Error\n"), "{s}");
    assert!(s.contains("      Exit Code:  3\n"), "{s}");
    assert!(s.contains("      Finished:"), "{s}");
    assert!(s.contains("Status:          Failed (exit 3)"), "{s}");
    assert!(s.contains("Conditions:  <none>"), "{s}");

    let s = describe_pod(&crashing_pod());
    assert!(s.contains("    State:          Waiting\n"), "{s}");
    assert!(s.contains("      Reason:   CrashLoopBackOff\n"), "{s}");
    assert!(s.contains("      Message:  back-off 5m0s\n"), "{s}");
    assert!(s.contains("Node:            <none>"), "{s}");
}

#[test]
fn node_description_lists_capacity_info_and_its_pods() {
    let n = ready_node("node-a");
    let mut elsewhere = running_pod();
    elsewhere.metadata.name = "elsewhere".into();
    elsewhere.spec.node_name = Some("node-b".into());
    let mut done = running_pod();
    done.metadata.name = "done".into();
    done.status.phase = edge_api::PodPhase::Succeeded;
    let s = describe_node(&n, &[running_pod(), elsewhere, done], now());
    for want in [
        "Name:               node-a",
        "Roles:              <none>",
        "Unschedulable:      false",
        "Capacity:",
        "  cpu:     4",
        "  memory:  1Gi",
        "Allocatable:",
        "  cpu:  3500m",
        "System Info:",
        "  Architecture:      aarch64",
        "  Agent Version:     v0.1.0",
        "  Runtime Version:   <none>",
        "Non-terminated Pods:  (1 in total)",
        "  Namespace   Name    CPU Requests   Memory Requests   Age",
        "  default     hello   250m           0                 5m",
        "  cpu        250m (7%)",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("elsewhere") && !s.contains("done"), "{s}");
    assert!(s.contains("  Ready   True     "), "{s}");
}

#[test]
fn pod_description_shows_volumes_mounts_probes_env_refs_and_outbound() {
    use edge_api::pod::{EnvVar, EnvVarSource, KeySelector, Probe, Volume, VolumeMount};
    use edge_api::workload::{
        ConfigMapSource, EmptyDirSource, HostPathSource, HttpGetAction, SecretSource,
        TcpSocketAction,
    };
    let mut p = running_pod();
    p.spec.volumes = vec![
        Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirSource::default()),
            ..Default::default()
        },
        Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapSource {
                name: "app-config".into(),
                optional: false,
            }),
            ..Default::default()
        },
        Volume {
            name: "creds".into(),
            secret: Some(SecretSource {
                secret_name: "db".into(),
                optional: true,
            }),
            ..Default::default()
        },
        Volume {
            name: "host".into(),
            host_path: Some(HostPathSource {
                path: "/var/data".into(),
                type_: "Directory".into(),
            }),
            ..Default::default()
        },
    ];
    let c = &mut p.spec.containers[0];
    c.volume_mounts = vec![
        VolumeMount {
            name: "cfg".into(),
            mount_path: "/etc/app".into(),
            read_only: true,
        },
        VolumeMount {
            name: "cache".into(),
            mount_path: "/cache".into(),
            read_only: false,
        },
    ];
    c.liveness_probe = Some(Probe {
        http_get: Some(HttpGetAction {
            path: "/healthz".into(),
            port: 8080,
            host: None,
        }),
        ..Default::default()
    });
    c.readiness_probe = Some(Probe {
        tcp_socket: Some(TcpSocketAction {
            port: 5432,
            host: Some("::1".into()),
        }),
        initial_delay_seconds: 5,
        ..Default::default()
    });
    c.env = vec![
        EnvVar {
            name: "LEVEL".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(KeySelector {
                    name: "app-config".into(),
                    key: "level".into(),
                    optional: false,
                }),
                secret_key_ref: None,
            }),
            ..Default::default()
        },
        EnvVar {
            name: "DB_PASSWORD".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: None,
                secret_key_ref: Some(KeySelector {
                    name: "db".into(),
                    key: "password".into(),
                    optional: true,
                }),
            }),
            ..Default::default()
        },
    ];
    c.outbound = vec!["api.example.com:443".into(), "db:*".into()];
    let s = describe_pod(&p);
    for want in [
        "    Liveness:       http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3",
        "    Readiness:      tcp-socket [::1]:5432 delay=5s timeout=1s period=10s #success=1 #failure=3",
        "    Environment:",
        "      LEVEL:        <set to the key 'level' of config map 'app-config'>  Optional: false",
        "      DB_PASSWORD:  <set to the key 'password' in secret 'db'>  Optional: true",
        "    Mounts:",
        "      /etc/app from cfg (ro)",
        "      /cache from cache (rw)",
        "    Outbound:       api.example.com:443, db:*",
        "    Mounts:         <none>",
        "    Outbound:       <none> (all outbound connections denied)",
        "Volumes:",
        "  cache:",
        "    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)",
        "    SizeLimit:  <unset>",
        "  cfg:",
        "    Type:      ConfigMap (a volume populated by a ConfigMap)",
        "    Name:      app-config",
        "    Optional:  false",
        "  creds:",
        "    Type:        Secret (a volume populated by a Secret)",
        "    SecretName:  db",
        "    Optional:    true",
        "  host:",
        "    Type:          HostPath (bare host directory volume)",
        "    Path:          /var/data",
        "    HostPathType:  Directory",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("Startup:"), "{s}");
    assert!(describe_pod(&running_pod()).contains("\nVolumes:  <none>\n"));
}

#[test]
fn configmap_description_shows_keys_and_values() {
    let mut cm = edge_api::ConfigMap {
        metadata: meta("app-config", "default", 60),
        ..Default::default()
    };
    cm.data.insert("level".into(), "debug".into());
    cm.data.insert("app.conf".into(), "a = 1\nb = 2\n".into());
    cm.data.insert("evil".into(), "\u{1b}[2J".into());
    cm.binary_data.insert(
        "logo.bin".into(),
        edge_api::configdata::encode_base64(&[0, 1, 2]),
    );
    let s = describe_configmap(&cm);
    assert!(
        s.starts_with("Name:         app-config\nNamespace:    default\n"),
        "{s}"
    );
    assert!(
        s.contains("\nData\n====\napp.conf:\n----\na = 1\nb = 2\n\nevil:\n----\n\\u{1b}[2J\n\nlevel:\n----\ndebug\n"),
        "{s}"
    );
    assert!(
        s.ends_with("\nBinaryData\n====\nlogo.bin:  3 bytes\n"),
        "{s}"
    );
}

#[test]
fn secret_description_never_prints_values() {
    let mut sec = edge_api::Secret {
        metadata: meta("db", "prod", 60),
        type_: "Opaque".into(),
        ..Default::default()
    };
    sec.data.insert(
        "password".into(),
        edge_api::configdata::encode_base64(b"hunter2"),
    );
    sec.data.insert(
        "username".into(),
        edge_api::configdata::encode_base64(b"admin"),
    );
    sec.data.insert("broken".into(), "***".into());
    sec.string_data
        .insert("token".into(), "s3cr3t-token".into());
    let s = describe_secret(&sec);
    for want in [
        "Name:         db",
        "Namespace:    prod",
        "Type:  Opaque",
        "Data",
        "====",
        "broken:    <not valid base64>",
        "password:  7 bytes",
        "token:     12 bytes",
        "username:  5 bytes",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
    }
    for secret in [
        "hunter2",
        "aHVudGVyMg==",
        "admin",
        "YWRtaW4=",
        "s3cr3t-token",
        "***",
    ] {
        assert!(!s.contains(secret), "{secret:?} leaked in\n{s}");
    }
}
