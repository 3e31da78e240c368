//! The pooling allocator's fallbacks: `EDGE_POOLING=0`, and a host that cannot reserve the pool (`ulimit -v`), both still serve HTTP.
//!
//! Environment variables and address-space limits are per process, so each scenario runs
//! in a child process: this test binary re-executes itself with one test selected and
//! `EDGE_TEST_CHILD` set; without that variable the child tests do nothing.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{get, load, runtime, serve, Captured};
use edge_runtime::{AllocatorKind, HttpSpec};

const CHILD: &str = "EDGE_TEST_CHILD";

/// Runs `test` of this binary in a child process through `sh -c "<prefix>; exec ..."`.
fn run_child(test: &str, shell_prefix: &str, envs: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let script = format!("{shell_prefix}\nexec \"$0\" --exact {test} --nocapture --test-threads 1");
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .env(CHILD, "1")
        .envs(envs.iter().copied())
        .output()
        .expect("cannot start the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child {test} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Make sure the child really ran the scenario (not filtered out).
    assert!(
        stdout.contains("1 passed"),
        "child {test} did not run:\n{stdout}"
    );
}

/// What every child checks: the allocator is on-demand for the expected reason, and an
/// HTTP handler still answers.
async fn serves_on_demand(reason_contains: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    match rt.allocator() {
        AllocatorKind::OnDemand { reason } => {
            println!("on-demand because: {reason}");
            assert!(reason.contains(reason_contains), "{reason}");
        }
        AllocatorKind::Pooling => panic!("expected the on-demand fallback"),
    }
    let hello = load(&rt, "http-hello").await;
    let handler = rt
        .http_handler(&hello, HttpSpec::default(), Arc::new(Captured::default()))
        .unwrap();
    let (addr, server) = serve(&handler).await;
    let reply = get(addr, "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    server.abort();
}

#[test]
fn edge_pooling_0_turns_pooling_off() {
    run_child("child_with_env_off", "", &[("EDGE_POOLING", "0")]);
}

#[test]
fn small_address_space_falls_back_to_on_demand() {
    // 16 GiB of address space: plenty for the process and on-demand instances, far too
    // little for a pool of 1,000 slots of 256 MiB.
    run_child("child_with_small_address_space", "ulimit -v 16777216", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_with_env_off() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    serves_on_demand("EDGE_POOLING").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_with_small_address_space() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    serves_on_demand("cannot reserve the instance pool").await;
}
