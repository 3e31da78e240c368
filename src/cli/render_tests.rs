//! Unit tests of `render`: table layout, columns for pods/nodes/namespaces, ages, names, YAML/JSON.

use super::*;
use crate::cli::testutil::*;
use edge_api::Namespace;

#[test]
fn ages_read_like_kubectl() {
    let s = Duration::seconds;
    assert_eq!(format_age(s(-5)), "<invalid>");
    assert_eq!(format_age(s(-1)), "0s");
    assert_eq!(format_age(s(5)), "5s");
    assert_eq!(format_age(s(119)), "119s");
    assert_eq!(format_age(s(180)), "3m");
    assert_eq!(format_age(s(200)), "3m20s");
    assert_eq!(format_age(s(45 * 60)), "45m");
    assert_eq!(format_age(s(2 * 3600)), "120m");
    assert_eq!(format_age(s(5 * 3600 + 600)), "5h10m");
    assert_eq!(format_age(s(20 * 3600)), "20h");
    assert_eq!(format_age(s(4 * 86400)), "4d");
    assert_eq!(format_age(s(3 * 86400 + 4 * 3600)), "3d4h");
    assert_eq!(format_age(s(100 * 86400)), "100d");
    assert_eq!(format_age(s(3 * 365 * 86400 + 5 * 86400)), "3y5d");
    assert_eq!(format_age(s(10 * 365 * 86400)), "10y");
    assert_eq!(age(None, now()), "<unknown>");
}

#[test]
fn table_is_borderless_with_three_space_gaps() {
    let t = table(
        &["NAME", "STATUS"],
        &[
            vec!["a".into(), "Running".into()],
            vec!["longer-name".into(), "x".into()],
        ],
    );
    assert_eq!(
        t,
        "NAME          STATUS\na             Running\nlonger-name   x\n"
    );
}

#[test]
fn pod_table_columns_and_cells() {
    let pods = vec![Object::Pod(running_pod()), Object::Pod(crashing_pod())];
    let cols = Columns::default();
    assert_eq!(
        headers(Kind::Pod, cols),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(
        row(&pods[0], cols, now()),
        ["hello", "1/2", "Running", "2", "5m"]
    );
    assert_eq!(
        row(&pods[1], cols, now()),
        ["crashy", "0/1", "CrashLoopBackOff", "7", "120m"]
    );
    let out = objects_table(Kind::Pod, &pods, cols, now());
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(
        lines[0],
        "NAME     READY   STATUS             RESTARTS   AGE"
    );
    assert_eq!(
        lines[1],
        "hello    1/2     Running            2          5m"
    );
    assert_eq!(
        lines[2],
        "crashy   0/1     CrashLoopBackOff   7          120m"
    );
}

#[test]
fn failed_pod_shows_exit_code() {
    let r = row(&Object::Pod(failed_pod()), Columns::default(), now());
    assert_eq!(r[2], "Failed (exit 3)");
}

#[test]
fn all_namespaces_and_wide_add_columns() {
    let cols = Columns {
        wide: true,
        namespace: true,
    };
    assert_eq!(
        headers(Kind::Pod, cols),
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "NODE",
            "IMAGES"
        ]
    );
    let r = row(&Object::Pod(running_pod()), cols, now());
    assert_eq!(r[0], "default");
    assert_eq!(r[6], "node-a");
    assert_eq!(r[7], "sha256:0123456789ab,sha256:0123456789ab");
    let r = row(&Object::Pod(crashing_pod()), cols, now());
    assert_eq!(r[6], "<none>");
    // Cluster-scoped kinds never get a NAMESPACE column.
    assert_eq!(headers(Kind::Node, cols)[0], "NAME");
}

#[test]
fn node_rows() {
    let mut n = ready_node("pi-1");
    let cols = Columns::default();
    assert_eq!(
        headers(Kind::Node, cols),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    assert_eq!(
        row(&Object::Node(n.clone()), cols, now()),
        ["pi-1", "Ready", "<none>", "4d", "v0.1.0"]
    );
    n.spec.unschedulable = true;
    n.metadata
        .labels
        .insert("node-role.edge.dev/gateway".into(), "".into());
    n.metadata
        .labels
        .insert("node-role.edge.dev/control-plane".into(), "true".into());
    n.status.conditions[0].status = "Unknown".into();
    let wide = Columns {
        wide: true,
        namespace: false,
    };
    assert_eq!(
        row(&Object::Node(n), wide, now()),
        [
            "pi-1",
            "NotReady,SchedulingDisabled",
            "control-plane,gateway",
            "4d",
            "v0.1.0",
            "aarch64",
            "linux",
            "3500m",
            "1Gi"
        ]
    );
}

#[test]
fn namespace_rows() {
    let ns = Namespace {
        metadata: meta("prod", "", 90),
        ..Default::default()
    };
    assert_eq!(
        row(&Object::Namespace(ns), Columns::default(), now()),
        ["prod", "Active", "90s"]
    );
}

#[test]
fn names_are_kind_slash_name() {
    assert_eq!(object_name(&Object::Pod(running_pod())), "pod/hello");
    assert_eq!(object_name(&Object::Node(ready_node("n"))), "node/n");
}

#[test]
fn watch_rows_line_up_under_the_table() {
    let headers = ["NAME", "STATUS"];
    let rows = vec![vec!["hello".to_string(), "Running".to_string()]];
    let mut w = WatchColumns::new(&headers, &rows);
    assert_eq!(w.line(&["a".into(), "Pending".into()]), "a       Pending\n");
    assert_eq!(
        w.line(&["much-longer".into(), "Running".into()]),
        "much-longer   Running\n"
    );
}

#[test]
fn yaml_and_json_single_and_list() {
    let pod = Object::Pod(running_pod());
    let y = to_yaml(std::slice::from_ref(&pod), false).unwrap();
    assert!(
        y.starts_with("apiVersion: edge.dev/v1\nkind: Pod\nmetadata:"),
        "{y}"
    );
    let back: serde_json::Value = serde_saphyr::from_str(&y).unwrap();
    assert_eq!(back["spec"]["containers"][0]["image"], DIGEST);

    let list = to_yaml(&[pod.clone(), Object::Node(ready_node("n"))], true).unwrap();
    assert!(
        list.starts_with("apiVersion: edge.dev/v1\nitems:\n"),
        "{list}"
    );
    assert!(list.contains("kind: List"), "{list}");

    let j = to_json(std::slice::from_ref(&pod), true).unwrap();
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"][0]["kind"], "Pod");
    assert_eq!(v["items"][0]["metadata"]["name"], "hello");
    let empty: serde_json::Value = serde_json::from_str(&to_json(&[], true).unwrap()).unwrap();
    assert_eq!(empty["items"], serde_json::json!([]));
}

#[test]
fn configmap_and_secret_rows() {
    let mut cm = edge_api::ConfigMap {
        metadata: meta("app-config", "default", 90),
        ..Default::default()
    };
    cm.data.insert("a".into(), "1".into());
    cm.data.insert("b".into(), "2".into());
    cm.binary_data.insert("logo".into(), "AAE=".into());
    let cols = Columns::default();
    assert_eq!(headers(Kind::ConfigMap, cols), ["NAME", "DATA", "AGE"]);
    assert_eq!(
        row(&Object::ConfigMap(cm.clone()), cols, now()),
        ["app-config", "3", "90s"]
    );

    let mut s = edge_api::Secret {
        metadata: meta("db", "prod", 7200),
        type_: "Opaque".into(),
        ..Default::default()
    };
    s.data.insert("password".into(), "aHVudGVyMg==".into());
    s.string_data.insert("password".into(), "new".into());
    s.string_data.insert("user".into(), "admin".into());
    assert_eq!(headers(Kind::Secret, cols), ["NAME", "TYPE", "DATA", "AGE"]);
    let all = Columns {
        wide: false,
        namespace: true,
    };
    assert_eq!(
        headers(Kind::Secret, all),
        ["NAMESPACE", "NAME", "TYPE", "DATA", "AGE"]
    );
    let secret = Object::Secret(s);
    assert_eq!(
        row(&secret, all, now()),
        ["prod", "db", "Opaque", "2", "120m"]
    );
    let table = objects_table(Kind::Secret, std::slice::from_ref(&secret), cols, now());
    assert_eq!(
        table,
        "NAME   TYPE     DATA   AGE\ndb     Opaque   2      120m\n"
    );
    assert_eq!(object_name(&secret), "secret/db");
    assert_eq!(object_name(&Object::ConfigMap(cm)), "configmap/app-config");
    // -o yaml shows secret data base64-encoded, as kubectl does.
    let y = to_yaml(std::slice::from_ref(&secret), false).unwrap();
    assert!(y.contains("password: aHVudGVyMg=="), "{y}");
    assert!(
        y.contains("type: Opaque") && y.contains("kind: Secret"),
        "{y}"
    );
}
