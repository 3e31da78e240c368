//! kubectl's habits with the real binaries: label/annotate and selectors, `--show-labels`,
//! `create namespace`, `diff` exit codes, `apply --dry-run=server`, `get all` and comma lists,
//! `get -w`, describe of an unschedulable pod, `delete --cascade`, shell completion.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A long-running `edgectl` (a watch) whose stdout lines arrive on a channel; killed on drop.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn start(c: &Cluster, args: &[&str]) -> Follow {
        let mut child = Command::new(EDGECTL)
            .args(args)
            .env("HOME", c.home.path())
            .env("EDGECONFIG", c.home.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn edgectl");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follow { child, lines }
    }

    /// Waits for a line satisfying `want`, returning every line read until then.
    fn until(&self, what: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = want(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; lines so far: {seen:#?}"),
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn configmap(name: &str, level: &str, labels: &str) -> String {
    format!(
        "apiVersion: edge.dev/v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\ndata:\n  level: {level}\n"
    )
}

/// The names in the first column of a table (header skipped).
fn names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn kubectl_habits_on_one_cluster() {
    let c = Cluster::start(&[]);
    let dir = c.home.path();

    // Completion needs no server.
    let script = c.ok(&["completion", "bash"]);
    assert!(
        script.contains("complete -F") && script.contains("edgectl") && script.contains("rollout"),
        "{}",
        &script[..script.len().min(400)]
    );

    // create namespace, then it is listed and usable.
    assert_eq!(
        c.ok(&["create", "namespace", "team-a"]),
        "namespace/team-a created\n"
    );
    let ns = c.ok(&["get", "ns"]);
    assert!(
        ns.lines()
            .any(|l| l.starts_with("team-a ") && l.contains("Active")),
        "{ns}"
    );
    let again = c.fails(&["create", "namespace", "team-a"]);
    assert!(again.contains("AlreadyExists"), "{again}");
    c.ok(&[
        "-n",
        "team-a",
        "create",
        "configmap",
        "inside",
        "--from-literal=a=1",
    ]);

    // Labels: set, refuse to change without --overwrite, change, remove.
    for (name, labels) in [("cm-a", ""), ("cm-b", "tier: back"), ("cm-c", "")] {
        let f = write_manifest(
            dir,
            &format!("{name}.yaml"),
            &configmap(name, "debug", labels),
        );
        c.ok(&["apply", "-f", &f]);
    }
    assert_eq!(
        c.ok(&["label", "cm", "cm-a", "tier=front", "env=dev"]),
        "configmap/cm-a labeled\n"
    );
    let refused = c.fails(&["label", "configmap/cm-a", "tier=back"]);
    assert!(
        refused.contains("'tier' already has a value (front), and --overwrite is false"),
        "{refused}"
    );
    c.ok(&["label", "cm", "cm-a", "tier=back", "--overwrite"]);
    assert_eq!(
        c.ok(&["label", "cm", "cm-a", "env-"]),
        "configmap/cm-a unlabeled\n"
    );
    c.ok(&["label", "cm", "cm-c", "env=prod"]);

    let shown = c.ok(&["get", "cm", "--show-labels"]);
    let header = shown.lines().next().unwrap_or_default();
    assert!(header.ends_with("LABELS"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("cm-a ") && l.ends_with("tier=back")),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("cm-c ") && l.ends_with("env=prod")),
        "{shown}"
    );
    let cases: [(&str, &[&str]); 5] = [
        ("tier in (front,back)", &["cm-a", "cm-b"]),
        ("tier notin (back)", &["cm-c"]),
        ("!tier", &["cm-c"]),
        ("env", &["cm-c"]),
        ("tier=back,!env", &["cm-a", "cm-b"]),
    ];
    for (selector, want) in cases {
        let out = c.ok(&["get", "cm", "-l", selector]);
        assert_eq!(names(&out), want, "-l {selector:?}:\n{out}");
    }
    let bad = c.fails(&["get", "cm", "-l", "tier in ()"]);
    assert!(bad.contains("must not be empty"), "{bad}");

    // Annotations take free text; an existing value needs --overwrite too.
    assert_eq!(
        c.ok(&["annotate", "cm", "cm-a", "note=owned by team a, see wiki"]),
        "configmap/cm-a annotated\n"
    );
    c.fails(&["annotate", "cm", "cm-a", "note=other"]);
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "cm", "cm-a", "-o", "json"])).expect("json");
    assert_eq!(
        json["metadata"]["annotations"]["note"],
        "owned by team a, see wiki"
    );
    assert_eq!(json["metadata"]["labels"]["tier"], "back");

    // apply --dry-run=server answers as apply would, and stores nothing.
    let dry = write_manifest(dir, "dry.yaml", &configmap("dry", "debug", ""));
    let out = c.ok(&["apply", "-f", &dry, "--dry-run=server"]);
    assert_eq!(out, "configmap/dry created (server dry run)\n");
    let missing = c.fails(&["get", "cm", "dry"]);
    assert!(missing.contains("NotFound"), "{missing}");

    // diff: 0 without changes, 1 with a unified diff, 2 on an error.
    let same = write_manifest(dir, "cm-b.yaml", &configmap("cm-b", "debug", "tier: back"));
    let o = c.edgectl(&["diff", "-f", &same]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "");
    let changed = write_manifest(dir, "cm-b2.yaml", &configmap("cm-b", "info", "tier: back"));
    let o = c.edgectl(&["diff", "-f", &changed]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("--- LIVE/edge.dev.v1.ConfigMap.default.cm-b"),
        "{text}"
    );
    assert!(
        text.contains("\n-  level: debug\n") && text.contains("\n+  level: info\n"),
        "{text}"
    );
    let o = c.edgectl(&["diff", "-f", &dry]);
    assert_eq!(o.status.code(), Some(1), "a new object is a change");
    let o = c.edgectl(&["diff", "-f", "/nonexistent.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        c.ok(&["get", "cm", "cm-b", "-o", "yaml"])
            .contains("level: debug"),
        "diff changed nothing"
    );

    // get -w prints the change of a watched object.
    let watch = Follow::start(&c, &["get", "cm", "cm-b", "-w", "--show-labels"]);
    watch.until("the initial row", Duration::from_secs(20), |l| {
        l.starts_with("cm-b ")
    });
    c.ok(&["label", "cm", "cm-b", "watched=yes"]);
    watch.until("the updated row", Duration::from_secs(20), |l| {
        l.starts_with("cm-b ") && l.contains("watched=yes")
    });
    drop(watch);

    // get all and comma lists name objects kind/name, a section per kind.
    c.wait_node_ready("node-1");
    c.ok(&["apply", "-f", example("hello.yaml").to_str().expect("utf8")]);
    let svc = write_manifest(
        dir,
        "svc.yaml",
        "apiVersion: edge.dev/v1\nkind: Service\nmetadata: {name: hello}\nspec:\n  selector: {app: hello}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    c.ok(&["apply", "-f", &svc]);
    let all = c.ok(&["get", "all"]);
    let sections: Vec<&str> = all.split("\n\n").collect();
    assert!(sections.len() >= 2, "{all}");
    assert!(
        sections[0].lines().any(|l| l.starts_with("pod/hello ")),
        "{all}"
    );
    assert!(
        sections[1].starts_with("NAME") && sections[1].contains("service/hello "),
        "{all}"
    );
    let listed = c.ok(&["get", "pods,svc", "-o", "name"]);
    assert_eq!(listed, "pod/hello\nservice/hello\n");
    let empty = c.edgectl(&["-n", "team-a", "get", "all"]);
    assert!(empty.status.success());
    assert!(stderr(&empty).contains("No resources found in team-a namespace."));

    // A pod that fits nowhere explains itself in describe.
    let big = write_manifest(
        dir,
        "big.yaml",
        &format!(
            "apiVersion: edge.dev/v1\nkind: Pod\nmetadata: {{name: big}}\nspec:\n  containers:\n  - name: main\n    image: {}\n    resources: {{requests: {{memory: 900Gi}}}}\n",
            component("hello")
        ),
    );
    c.ok(&["apply", "-f", &big]);
    let described = wait_for(
        "big to be found unschedulable",
        Duration::from_secs(30),
        || {
            let d = c.ok(&["describe", "pod", "big"]);
            d.contains("PodScheduled").then_some(d)
        },
    );
    assert!(
        described.contains("0/1 nodes are available") && described.contains("Insufficient memory"),
        "{described}"
    );
    assert!(described.contains("Events:"), "{described}");

    // delete --cascade takes kubectl's modes and refuses others.
    let bad = c.fails(&["delete", "cm", "cm-c", "--cascade=later"]);
    assert!(bad.contains("background, foreground, orphan"), "{bad}");
    let out = c.ok(&["delete", "cm", "cm-c", "--cascade=orphan"]);
    assert_eq!(out, "configmap \"cm-c\" deleted\n");
    let o = c.edgectl(&["delete", "cm", "cm-a", "--cascade=false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--cascade=orphan"), "{}", stderr(&o));
    assert_eq!(names(&c.ok(&["get", "cm"])), ["cm-b"]);
}

fn deployment(version: &str, image: &str) -> String {
    format!(
        "apiVersion: edge.dev/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations: {{kubernetes.io/change-cause: \"to {version}\"}}\nspec:\n  replicas: 2\n  progressDeadlineSeconds: 10\n  selector: {{matchLabels: {{app: web}}}}\n  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n        env: [{{name: VERSION, value: \"{version}\"}}]\n        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}\n"
    )
}

/// The VERSION environment variable of the Deployment's template.
fn template_version(c: &Cluster) -> String {
    let d: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).expect("json");
    d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn rollout_done(c: &Cluster) {
    let out = c.ok(&["rollout", "status", "deployment/web", "--timeout", "120s"]);
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );
}

#[test]
fn scale_and_rollout_drive_a_deployment() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let dir = c.home.path();
    let ticker = component("ticker");
    let v1 = write_manifest(dir, "v1.yaml", &deployment("v1", &ticker));
    c.ok(&["apply", "-f", &v1]);
    rollout_done(&c);
    let table = c.ok(&["get", "deploy"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" 2/2 ")),
        "{table}"
    );
    let described = c.ok(&["describe", "deployment", "web"]);
    for want in [
        "2 desired | 2 updated | 2 total | 2 available | 0 unavailable",
        "StrategyType:",
        "RollingUpdateStrategy:  0 max unavailable, 1 max surge",
        "NewReplicaSet:",
        "Events:",
    ] {
        assert!(described.contains(want), "missing {want:?} in\n{described}");
    }

    let v2 = write_manifest(dir, "v2.yaml", &deployment("v2", &ticker));
    let o = c.edgectl(&["diff", "-f", &v2]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with('+') && l.trim_end().ends_with("value: v2")),
        "{}",
        stdout(&o)
    );
    c.ok(&["apply", "-f", &v2]);
    rollout_done(&c);
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip(2)
        .map(|l| l.splitn(2, "   ").map(str::trim).collect())
        .collect();
    // Each revision's cause is copied onto its ReplicaSet when the controller creates it.
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(rows[0], ["1", "to v1"], "{history}");
    assert_eq!(rows[1], ["2", "to v2"], "{history}");

    assert_eq!(
        c.ok(&["rollout", "undo", "deployment/web"]),
        "deployment/web rolled back\n"
    );
    rollout_done(&c);
    assert_eq!(template_version(&c), "v1");
    let history = c.ok(&["rollout", "history", "deploy", "web"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "revision 1 became 3:\n{history}");
    let skipped = c.ok(&["rollout", "undo", "deployment/web", "--to-revision", "3"]);
    assert!(skipped.contains("skipped rollback"), "{skipped}");
    let e = c.fails(&["rollout", "undo", "deployment/web", "--to-revision", "9"]);
    assert!(e.contains("unable to find specified revision 9"), "{e}");

    assert_eq!(
        c.ok(&["scale", "deployment", "web", "--replicas", "3"]),
        "deployment/web scaled\n"
    );
    let e = c.fails(&[
        "scale",
        "deploy/web",
        "--replicas",
        "1",
        "--current-replicas",
        "2",
    ]);
    assert!(e.contains("Expected replicas to be 2, was 3"), "{e}");
    rollout_done(&c);
    let pods = c.ok(&["get", "pods", "-l", "app=web"]);
    assert_eq!(names(&pods).len(), 3, "{pods}");
    let all = c.ok(&["get", "all"]);
    for want in ["deployment/web ", "replicaset/web-", "pod/web-"] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }

    assert_eq!(
        c.ok(&["rollout", "pause", "deployment/web"]),
        "deployment/web paused\n"
    );
    let e = c.fails(&["rollout", "pause", "deployment/web"]);
    assert!(e.contains("already paused"), "{e}");
    let e = c.fails(&["rollout", "restart", "deployment/web"]);
    assert!(e.contains("paused"), "{e}");
    assert_eq!(
        c.ok(&["rollout", "resume", "deployment/web"]),
        "deployment/web resumed\n"
    );
    assert_eq!(
        c.ok(&["rollout", "restart", "deployment/web"]),
        "deployment/web restarted\n"
    );
    rollout_done(&c);

    // A template that cannot run stops the rollout: status fails instead of waiting forever.
    let missing = format!("sha256:{}", "0".repeat(64));
    let bad = write_manifest(dir, "bad.yaml", &deployment("v3", &missing));
    c.ok(&["apply", "-f", &bad]);
    let o = c.edgectl(&["rollout", "status", "deployment/web", "--timeout", "120s"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("deployment \"web\" exceeded its progress deadline"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("Waiting for deployment"),
        "{}",
        stdout(&o)
    );
}
