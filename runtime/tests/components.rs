//! Runtime tests against the real guest components built by scripts/build-modules.sh.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{digest_of, fixture, load, runtime, spec, Captured};
use edge_runtime::{ComponentKind, ExitStatus, RuntimeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_prints_args_env_and_stderr_separately() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "hello").await;
    assert_eq!(hello.kind(), ComponentKind::Command);
    assert_eq!(hello.digest(), digest_of(&fixture("hello")));

    let out = Arc::new(Captured::default());
    let mut spec = spec(&["hello", "--name", "pi"]);
    spec.env.push(("GREETING".into(), "hi there".into()));
    let status = rt.run_command(&hello, spec, out.clone()).await.unwrap();

    assert_eq!(status, ExitStatus::Exited(0));
    let stdout = out.stdout();
    assert!(stdout.contains("Hello from edge!"), "stdout: {stdout}");
    assert!(
        stdout.contains("--name") && stdout.contains("pi"),
        "stdout: {stdout}"
    );
    assert!(stdout.contains("GREETING=hi there"), "stdout: {stdout}");
    let stderr = out.stderr();
    assert!(stderr.contains("stderr"), "stderr: {stderr}");
    assert!(
        !stdout.contains("goes to stderr"),
        "stderr leaked into stdout: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_exits_with_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let fail = load(&rt, "fail").await;
    let out = Arc::new(Captured::default());
    let status = rt
        .run_command(&fail, spec(&["fail"]), out.clone())
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(3));
    assert!(
        out.stderr().contains("went wrong"),
        "stderr: {}",
        out.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_guest_is_reported_as_trapped() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let fail = load(&rt, "fail").await;
    let out = Arc::new(Captured::default());
    let status = rt
        .run_command(&fail, spec(&["fail", "panic"]), out.clone())
        .await
        .unwrap();
    println!("status: {status:?}");
    match status {
        ExitStatus::Trapped { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected Trapped, got {other:?}"),
    }
    assert!(
        out.stderr().contains("panicking on purpose"),
        "stderr: {}",
        out.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticker_streams_output_and_stops_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let ticker = load(&rt, "ticker").await;
    let out = Arc::new(Captured::default());

    let started = Instant::now();
    let run = rt.run_command(&ticker, spec(&["ticker"]), out.clone());
    let result = tokio::time::timeout(Duration::from_millis(2500), run).await;
    // The timeout dropped the run future: that is how a pod is stopped.
    assert!(result.is_err(), "ticker should run forever, got {result:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(3500),
        "stop took too long: {elapsed:?}"
    );

    let stdout = out.stdout();
    assert!(
        stdout.contains("tick 1\n") && stdout.contains("tick 2\n"),
        "stdout: {stdout}"
    );

    // Nothing keeps running after the drop: no more ticks appear.
    let len = stdout.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        out.stdout().len(),
        len,
        "the guest kept running after being dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tight_loop_guest_is_stopped_by_aborting_its_task() {
    // `spin` never calls the host inside its loop: only epoch yields hand control back.
    // Running it in a spawned task also checks that the run future is Send.
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let spin = load(&rt, "spin").await;
    let out = Arc::new(Captured::default());
    let rt2 = rt.clone();
    let sink = out.clone();
    let task = tokio::spawn(async move { rt2.run_command(&spin, spec(&["spin"]), sink).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        out.stdout().contains("spinning"),
        "stdout: {}",
        out.stdout()
    );
    assert!(!task.is_finished());

    // Other tasks still get to run while the guest spins (the timer above fired), and
    // aborting takes effect at the next epoch tick.
    let started = Instant::now();
    task.abort();
    let joined = task.await;
    assert!(joined.is_err_and(|e| e.is_cancelled()));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "abort took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_wasm_bytes_are_rejected_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let bytes = b"<html><body>404 not found</body></html>".to_vec();
    let err = rt.load(&digest_of(&bytes), &bytes).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NotWasm { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("not WebAssembly"), "{message}");
    assert!(message.contains(&digest_of(&bytes)), "{message}");
    assert_eq!(rt.compilations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_digests_and_non_commands_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    // The smallest valid core module: magic + version 1, no sections. It loads (preview1
    // modules are supported) but, without `_start`, it is not a command.
    let core = b"\0asm\x01\0\0\0".to_vec();
    let empty = rt.load(&digest_of(&core), &core).await.unwrap();
    assert!(empty.is_core_module());
    assert_eq!(empty.kind(), ComponentKind::Unknown);
    let err = rt
        .run_command(&empty, spec(&["empty"]), Arc::new(Captured::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotACommand { .. }), "{err:?}");

    let hello = fixture("hello");
    let err = rt.load(&"0".repeat(64), &hello).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::DigestMismatch { .. }),
        "{err:?}"
    );
    let err = rt.load("../../etc/passwd", &hello).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidDigest { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_runtime_loads_from_disk_cache_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime(&dir);
    let loaded = load(&first, "hello").await;
    assert_eq!(first.compilations(), 1);
    assert!(!loaded.from_cache());
    drop(first);

    // An agent restart: a new Runtime on the same cache directory.
    let second = runtime(&dir);
    let loaded = load(&second, "hello").await;
    assert_eq!(second.compilations(), 0);
    assert!(loaded.from_cache());
    let out = Arc::new(Captured::default());
    let status = second
        .run_command(&loaded, spec(&["hello"]), out.clone())
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    assert!(out.stdout().contains("Hello from edge!"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime(&dir);
    load(&first, "fail").await;
    drop(first);
    // Truncate every cached artifact.
    for engine_dir in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        for entry in std::fs::read_dir(engine_dir.unwrap().path()).unwrap() {
            std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
        }
    }
    let second = runtime(&dir);
    let loaded = load(&second, "fail").await;
    assert_eq!(second.compilations(), 1);
    assert!(!loaded.from_cache());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let bomb = load(&rt, "membomb").await;
    let out = Arc::new(Captured::default());
    let mut spec = spec(&["membomb"]);
    spec.memory_limit_bytes = Some(32 * 1024 * 1024);
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        rt.run_command(&bomb, spec, out.clone()),
    )
    .await
    .expect("the memory bomb should be stopped by its limit")
    .unwrap();
    println!("status: {status:?}\nstderr: {}", out.stderr());
    match status {
        ExitStatus::MemoryLimitExceeded { message } => {
            assert!(message.contains("memory limit"), "{message}");
        }
        other => panic!(
            "expected MemoryLimitExceeded, got {other:?}; stderr: {}",
            out.stderr()
        ),
    }
    // It made progress before hitting the limit, and never got near 64 MiB.
    let stdout = out.stdout();
    assert!(stdout.contains("allocated 1 MiB"), "stdout: {stdout}");
    assert!(!stdout.contains("allocated 40 MiB"), "stdout: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_below_initial_memory_fails_at_instantiation() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "hello").await;
    let mut spec = spec(&["hello"]);
    spec.memory_limit_bytes = Some(64 * 1024);
    let status = rt
        .run_command(&hello, spec, Arc::new(Captured::default()))
        .await
        .unwrap();
    assert!(
        matches!(status, ExitStatus::MemoryLimitExceeded { .. }),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runtime_runs_components_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "hello").await;
    let fail = load(&rt, "fail").await;
    let out_a = Arc::new(Captured::default());
    let out_b = Arc::new(Captured::default());
    let (a, b) = tokio::join!(
        rt.run_command(&hello, spec(&["hello"]), out_a.clone()),
        rt.run_command(&fail, spec(&["fail"]), out_b.clone()),
    );
    assert_eq!(a.unwrap(), ExitStatus::Exited(0));
    assert_eq!(b.unwrap(), ExitStatus::Exited(3));
    assert!(!out_a.stdout().contains("went wrong"));
}
