//! The user's main path: an all-in-one cluster driven by edgectl, a restart with the same data
//! directory, and a separate agent process joining with the token.

use crate::support::*;
use std::time::Duration;

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn all_in_one_apply_get_logs_delete_and_restart() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let nodes = c.ok(&["get", "nodes", "-o", "json"]);
    assert!(
        nodes.contains("\"cpu\"") && nodes.contains("\"memory\""),
        "node capacity: {nodes}"
    );

    let hello = example("hello.yaml");
    let out = c.ok(&["apply", "-f", s(&hello)]);
    assert!(out.contains("pod/hello created"), "{out}");
    let pod = c.wait_phase("hello", "Succeeded");
    let image = pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        image.starts_with("sha256:") && image.len() == 71,
        "image pinned by digest: {image}"
    );
    let term = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 0, "{pod}");
    assert_eq!(pod["spec"]["nodeName"], "node-1");

    let logs = c.ok(&["logs", "hello"]);
    assert!(logs.contains("Hello from edge!"), "{logs}");
    assert!(
        logs.contains("GREETING=hi there"),
        "env reaches the component: {logs}"
    );
    assert!(
        logs.contains("goes to stderr"),
        "stderr is kept too: {logs}"
    );
    let table = c.ok(&["get", "pods"]);
    assert!(
        table.contains("hello") && table.contains("Succeeded"),
        "{table}"
    );
    assert!(c
        .ok(&["apply", "-f", s(&hello)])
        .contains("pod/hello unchanged"));

    c.ok(&["apply", "-f", s(&example("ticker.yaml"))]);
    c.wait_phase("ticker", "Running");
    wait_for("ticker output", Duration::from_secs(30), || {
        c.ok(&["logs", "ticker"]).contains("tick 2").then_some(())
    });

    c.ok(&["apply", "-f", s(&example("fail.yaml"))]);
    let failed = c.wait_phase("fail", "Failed");
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );

    let out = c.ok(&["delete", "pod", "hello"]);
    assert!(out.contains("deleted"), "{out}");
    c.wait_gone("hello");
    c.ok(&["delete", "-f", s(&example("ticker.yaml"))]);
    c.wait_gone("ticker");
    let log = c.server.as_ref().map(|d| d.log_text()).unwrap_or_default();
    assert!(
        log.contains("stopping pod"),
        "the agent stopped the ticker:\n{log}"
    );

    // A long-running pod survives a restart of the whole thing with the same data directory.
    c.ok(&["apply", "-f", s(&example("ticker.yaml"))]);
    c.wait_phase("ticker", "Running");
    wait_for("ticker output", Duration::from_secs(30), || {
        c.ok(&["logs", "ticker"]).contains("tick 1").then_some(())
    });
    let before = c.server.as_ref().map(|d| d.log_text()).unwrap_or_default();
    assert!(
        before.contains("edge_runtime: compiled"),
        "the first start compiles:\n{before}"
    );
    let mut c = c;
    c.server.take().expect("server").interrupt();
    c.server = Some(c.spawn_server(&[]));
    c.wait_ready();
    let pods = c.ok(&["get", "pods"]);
    assert!(
        pods.contains("ticker") && pods.contains("fail"),
        "objects survive a restart: {pods}"
    );
    // The watch history starts afresh after a restart: resuming from before it is "expired".
    let expired = first_watch_answer(&c, 1).expect_err("a watch from revision 1 must be refused");
    let code = expired.api().map(|e| e.code);
    assert_eq!(code, Some(edge_api::wire::ErrorCode::Expired), "{expired}");
    c.wait_phase("ticker", "Running");
    wait_for(
        "ticker to tick again after the restart",
        Duration::from_secs(30),
        || (c.ok(&["logs", "ticker"]).matches("tick 1\n").count() >= 2).then_some(()),
    );
    // A finished pod is not run again.
    let failed = c.pod_json("fail").expect("fail pod");
    assert_eq!(failed["status"]["phase"], "Failed");
    assert_eq!(failed["status"]["containerStatuses"][0]["restartCount"], 0);
}

#[test]
fn a_separate_agent_joins_with_the_token() {
    let c = Cluster::start(&["--no-agent"]);
    let token = std::fs::read_to_string(c.data_dir().join("token")).expect("token file");
    let server = format!("127.0.0.1:{}", c.port);
    let agent_dir = c.home.path().join("agent");

    // A wrong secret is refused with a clear error.
    let bad = token
        .trim()
        .rsplit_once("::")
        .map(|(h, _)| format!("{h}::wrong"))
        .expect("token shape");
    let out = std::process::Command::new(EDGED)
        .args([
            "agent",
            "--server",
            &server,
            "--token",
            &bad,
            "--data-dir",
            s(&c.home.path().join("bad")),
            "--node-name",
            "bad",
        ])
        .output()
        .expect("run agent");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("secret is wrong"), "{}", stderr(&out));

    let _agent = Daemon::spawn(
        &[
            "agent",
            "--server",
            &server,
            "--token",
            token.trim(),
            "--data-dir",
            s(&agent_dir),
            "--node-name",
            "worker-1",
        ],
        c.home.path(),
        "agent.log",
    );
    c.wait_node_ready("worker-1");
    c.ok(&["apply", "-f", s(&example("hello.yaml"))]);
    let pod = c.wait_phase("hello", "Succeeded");
    assert_eq!(pod["spec"]["nodeName"], "worker-1");
    let logs = c.ok(&["logs", "hello"]);
    assert!(
        logs.contains("Hello from edge!"),
        "logs come from the agent over its link: {logs}"
    );
    assert!(
        agent_dir.join("agent.conf").exists(),
        "the agent keeps its node certificate"
    );
}

#[test]
fn logs_reach_an_agent_connected_to_another_server() {
    let c = Cluster::start(&["--no-agent"]);
    let token = std::fs::read_to_string(c.data_dir().join("token")).expect("token file");
    let first = format!("127.0.0.1:{}", c.port);
    let second = format!("127.0.0.1:{}", free_port());
    let second_dir = c.home.path().join("data-2");
    let server_2 = Daemon::spawn(
        &[
            "server",
            "--data-dir",
            s(&second_dir),
            "--listen",
            &second,
            "--no-agent",
            "--join",
            &first,
            "--token",
            token.trim(),
        ],
        c.home.path(),
        "server-2.log",
    );
    wait_for("the second server to join", Duration::from_secs(60), || {
        let list = stdout(&c.edgectl(&["member", "list"]));
        let voters = list
            .lines()
            .filter(|l| !l.contains("unreachable"))
            .filter(|l| l.contains("leader") || l.contains("follower"))
            .count();
        (voters == 2).then_some(())
    });
    // edgectl talks to the first server only (the second wrote its own address into the
    // admin config when it started).
    c.edgectl_direct();
    let _agent = c.spawn_agent("worker-1", &second, &[]);
    c.wait_node_ready("worker-1");
    let first_log = || std::fs::read_to_string(c.home.path().join("server.log")).unwrap();
    assert!(
        server_2.log_text().contains("agent connected") && !first_log().contains("agent connected"),
        "the agent should be connected to the second server only:\n{}",
        server_2.log_text()
    );
    c.ok(&["apply", "-f", s(&example("hello.yaml"))]);
    c.wait_phase("hello", "Succeeded");
    let logs = c.ok(&["logs", "hello"]);
    assert!(
        logs.contains("Hello from edge!"),
        "the first server reaches the agent through the second: {logs}"
    );
    assert!(!first_log().contains("agent connected"));
}
