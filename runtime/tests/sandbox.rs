//! Command sandbox tests with hostile guests: preview1, volumes, network grants, output flood, stack overflow.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, load, runtime, spec, Captured};
use edge_runtime::{ComponentKind, ExitStatus, NetworkGrants, Preopen};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview1_module_runs_with_args_env_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let p1 = load(&rt, "hello-p1").await;
    assert!(p1.is_core_module());
    assert_eq!(p1.kind(), ComponentKind::Command);

    let out = Arc::new(Captured::default());
    let mut run = spec(&["hello-p1", "--flag"]);
    run.env.push(("GREETING".into(), "from p1".into()));
    let status = rt.run_command(&p1, run, out.clone()).await.unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    let stdout = out.stdout();
    assert!(stdout.contains("Hello from preview1!"), "{stdout}");
    assert!(stdout.contains("--flag"), "{stdout}");
    assert!(stdout.contains("GREETING=from p1"), "{stdout}");
    assert!(out.stderr().contains("goes to stderr"), "{}", out.stderr());

    let status = rt
        .run_command(
            &p1,
            spec(&["hello-p1", "exit", "7"]),
            Arc::new(Captured::default()),
        )
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(7));

    // Cached like components: a second runtime does not compile it again.
    drop(rt);
    let again = runtime(&dir);
    let p1 = load(&again, "hello-p1").await;
    assert!(p1.from_cache() && p1.is_core_module());
    assert_eq!(again.compilations(), 0);
}

/// Lines of the escape guest's report that start with `prefix`.
fn line<'a>(report: &'a str, prefix: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sees_only_its_volumes_with_their_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let escape = load(&rt, "escape").await;
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("config.txt"), "read-only data").unwrap();
    std::fs::write(rw.path().join("state.txt"), "writable data").unwrap();

    let mut run = spec(&["escape"]);
    run.preopens = vec![
        Preopen {
            host: ro.path().to_path_buf(),
            guest: "/config".into(),
            read_only: true,
        },
        Preopen {
            host: rw.path().to_path_buf(),
            guest: "/state".into(),
            read_only: false,
        },
    ];
    let out = Arc::new(Captured::default());
    let status = rt.run_command(&escape, run, out.clone()).await.unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    let report = out.stdout();
    println!("{report}");

    for outside in [
        "read /etc/hostname:",
        "read ../../etc/passwd:",
        "read /etc/passwd:",
        "read /config/../etc/hostname:",
        "read /state/../etc/hostname:",
    ] {
        assert!(
            line(&report, outside).contains("denied"),
            "{outside}\n{report}"
        );
    }
    assert!(line(&report, "read /config/config.txt:").contains("ok 14 bytes: read-only data"));
    assert!(line(&report, "read /state/state.txt:").contains("ok"));
    assert!(line(&report, "write /config/escape-was-here.txt:").contains("denied"));
    assert!(line(&report, "write /state/escape-was-here.txt:").contains("ok"));
    // The host side agrees.
    assert!(!ro.path().join("escape-was-here.txt").exists());
    assert_eq!(
        std::fs::read_to_string(rw.path().join("escape-was-here.txt")).unwrap(),
        "escaped\n"
    );
    // Exactly the two volumes, nothing else.
    assert_eq!(
        report.lines().filter(|l| l.starts_with("preopen ")).count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_grants_for_connect_and_listen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let escape = load(&rt, "escape").await;
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap();
    let listen_port = free_port().await;

    // No grants: connect and listen are refused, nothing reaches the server.
    let mut run = spec(&["escape"]);
    run.env = vec![
        ("TARGET".into(), target.to_string()),
        ("LISTEN".into(), listen_port.to_string()),
    ];
    let out = Arc::new(Captured::default());
    let status = rt
        .run_command(&escape, run.clone(), out.clone())
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    let report = out.stdout();
    assert!(
        line(&report, &format!("connect {target}:")).contains("denied"),
        "{report}"
    );
    assert!(
        line(&report, &format!("listen {listen_port}:")).contains("denied"),
        "{report}"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(200), server.accept()).await;
    assert!(accepted.is_err(), "a denied connect reached the server");
    let notices = out.stderr();
    assert!(
        notices.contains(&format!(
            "tcp connect to {target} is not in the pod's network grants"
        )),
        "{notices}"
    );

    // Granted: both work, and the server hears from the guest.
    run.network = NetworkGrants {
        listen: vec![listen_port],
        outbound: vec![target.to_string()],
        ..NetworkGrants::default()
    };
    let out = Arc::new(Captured::default());
    let (status, accepted) = tokio::join!(
        rt.run_command(&escape, run, out.clone()),
        tokio::time::timeout(Duration::from_secs(10), server.accept())
    );
    assert_eq!(status.unwrap(), ExitStatus::Exited(0));
    let report = out.stdout();
    assert!(
        line(&report, &format!("connect {target}:")).contains("ok"),
        "{report}"
    );
    assert!(
        line(&report, &format!("listen {listen_port}:")).contains("ok"),
        "{report}"
    );
    let (mut stream, _) = accepted
        .expect("the granted connect never arrived")
        .unwrap();
    let mut hello = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut hello)).await;
    assert_eq!(hello, "escape\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_capped_and_does_not_slow_others() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let flood = load(&rt, "flood").await;
    let hello = load(&rt, "hello").await;
    const RATE: u64 = 256 * 1024;

    let flood_out = Arc::new(Captured::default());
    let mut run = spec(&["flood"]);
    run.output_bytes_per_sec = Some(RATE);
    let flooding = tokio::time::timeout(
        Duration::from_millis(2500),
        rt.run_command(&flood, run, flood_out.clone()),
    );
    let others = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let out = Arc::new(Captured::default());
        let status = rt.run_command(&hello, spec(&["hello"]), out.clone()).await;
        (status, started.elapsed(), out)
    };
    let (flooded, (status, took, hello_out)) = tokio::join!(flooding, others);
    assert!(flooded.is_err(), "flood runs until stopped");
    assert_eq!(status.unwrap(), ExitStatus::Exited(0));
    assert!(hello_out.stdout().contains("Hello from edge!"));
    assert!(
        took < Duration::from_secs(2),
        "hello took {took:?} next to the flood"
    );

    // One second of burst plus 2.5 s at the rate, give or take scheduling.
    let got = flood_out.stdout_len() as f64;
    let expected = RATE as f64 * 3.5;
    assert!(
        got > expected * 0.6 && got < expected * 1.2,
        "flood wrote {got} bytes, expected about {expected}"
    );
    let stderr = flood_out.stderr();
    let notices = stderr
        .lines()
        .filter(|l| l.starts_with("[edge: output rate limit exceeded, "))
        .count();
    // About one per second while flooding, plus the final one when the run was dropped.
    assert!((2..=5).contains(&notices), "{notices} notices:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_is_a_stack_overflow_trap() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let recursion = load(&rt, "recursion").await;
    let out = Arc::new(Captured::default());
    let status = rt
        .run_command(&recursion, spec(&["recursion"]), out.clone())
        .await
        .unwrap();
    match status {
        ExitStatus::Trapped { message } => {
            assert!(message.contains("stack overflow"), "{message}")
        }
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
    assert!(out.stdout().contains("recursing"));
    // The host is fine and the next guest runs normally.
    let hello = load(&rt, "hello").await;
    let status = rt
        .run_command(&hello, spec(&["hello"]), Arc::new(Captured::default()))
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
}
