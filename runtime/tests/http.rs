//! HTTP handler tests: the real http-hello component served over loopback TCP (deadline, memory, concurrency, outbound grants, allocators).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, load, next, request, runtime, runtime_with, serve, Captured};
use edge_runtime::{
    AllocatorKind, AllocatorPreference, ComponentKind, HandlerFailure, HttpSpec, NetworkGrants,
    RuntimeError, KEEP_RESIDENT_BYTES,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_answers_over_tcp_with_env_and_forwarded_for() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    // This host has a 47-bit address space: the pool must fit.
    assert_eq!(rt.allocator(), AllocatorKind::Pooling);
    let hello = load(&rt, "http-hello").await;
    assert_eq!(hello.kind(), ComponentKind::HttpHandler);
    let spec = HttpSpec {
        env: vec![("GREETING".into(), "hi from the test".into())],
        ..HttpSpec::default()
    };
    let handler = rt
        .http_handler(&hello, spec, Arc::new(Captured::default()))
        .unwrap();
    let (addr, server) = serve(&handler).await;

    let reply = get(addr, "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.body.starts_with("hello from edge http\n"),
        "{reply:?}"
    );
    assert!(
        reply.body.contains("GREETING=hi from the test"),
        "{reply:?}"
    );
    assert!(
        reply.body.contains("x-forwarded-for: 127.0.0.1"),
        "{reply:?}"
    );

    let echoed = request(addr, "POST", "/echo", Some("ping pong")).await;
    assert_eq!((echoed.status, echoed.body.as_str()), (200, "ping pong"));
    assert_eq!(get(addr, "/nope").await.status, 404);

    // Every request is a fresh instance from the pool; many in a row stay cheap.
    for _ in 0..20 {
        assert_eq!(get(addr, "/").await.status, 200);
    }
    let stats = handler.instantiation_stats();
    assert!(stats.samples >= 20, "{stats:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_request_gets_504_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "http-hello").await;
    let spec = HttpSpec {
        request_timeout: Duration::from_millis(1500),
        ..HttpSpec::default()
    };
    let handler = rt
        .http_handler(&hello, spec, Arc::new(Captured::default()))
        .unwrap();
    let mut failures = handler.failures();
    let (addr, server) = serve(&handler).await;

    let started = Instant::now();
    let spin = tokio::spawn(async move { get(addr, "/spin").await });
    // While the guest spins, the same handler still answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = Instant::now();
    let hello = get(addr, "/").await;
    assert_eq!(hello.status, 200, "{hello:?}");
    assert!(
        during.elapsed() < Duration::from_millis(1000),
        "GET / took {:?} while /spin ran",
        during.elapsed()
    );
    assert!(!spin.is_finished(), "/spin ended before its deadline");

    let spun = spin.await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(spun.status, 504, "{spun:?}");
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(4000),
        "504 after {elapsed:?}"
    );
    match next(&mut failures, Duration::from_secs(5)).await {
        HandlerFailure::DeadlineExceeded { message } => {
            assert!(message.contains("1500 ms"), "{message}")
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_gets_500_and_a_memory_failure() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "http-hello").await;
    let spec = HttpSpec {
        memory_limit_bytes: Some(32 * 1024 * 1024),
        ..HttpSpec::default()
    };
    let handler = rt
        .http_handler(&hello, spec, Arc::new(Captured::default()))
        .unwrap();
    let mut failures = handler.failures();
    let (addr, server) = serve(&handler).await;

    let reply = get(addr, "/oom").await;
    assert_eq!(reply.status, 500, "{reply:?}");
    match next(&mut failures, Duration::from_secs(5)).await {
        HandlerFailure::MemoryLimitExceeded { message } => {
            assert!(message.contains("33554432 bytes"), "{message}")
        }
        other => panic!("expected MemoryLimitExceeded, got {other:?}"),
    }
    // The next request gets a fresh instance: the pod is not broken.
    assert_eq!(get(addr, "/").await.status, 200);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_pool_slots_keep_a_bounded_clean_copy_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "http-hello").await;
    let spec = HttpSpec {
        memory_limit_bytes: Some(8 * 1024 * 1024),
        ..HttpSpec::default()
    };
    let handler = rt
        .http_handler(&hello, spec, Arc::new(Captured::default()))
        .unwrap();
    let (addr, server) = serve(&handler).await;

    // A guest that dirties megabytes, then ordinary requests on the slots it used: each
    // starts from the component's image again, whatever the previous instance wrote.
    assert_eq!(get(addr, "/oom").await.status, 500);
    for _ in 0..10 {
        let reply = get(addr, "/").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(
            reply.body.starts_with("hello from edge http\n"),
            "{reply:?}"
        );
    }
    // Nothing one request wrote survives into the next one's instance, even on a reused slot.
    for _ in 0..20 {
        let reply = get(addr, "/count").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "1\n"),
            "{reply:?}"
        );
    }
    let usage = rt.pool_usage().expect("pooling");
    assert_eq!(usage.component_instances, 0, "{usage:?}");
    // Sequential requests use a slot or two; each keeps at most the bound, far below the
    // megabytes the hog dirtied.
    assert!(
        usage.idle_resident_bytes <= 4 * KEEP_RESIDENT_BYTES,
        "{usage:?}"
    );
    // Where the kernel lists dirty pages, slots do keep them (the fast path is on).
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        assert!(usage.idle_resident_bytes > 0, "{usage:?}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_cap_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "http-hello").await;
    let spec = HttpSpec {
        max_concurrency: 1,
        request_timeout: Duration::from_millis(1500),
        ..HttpSpec::default()
    };
    let handler = rt
        .http_handler(&hello, spec, Arc::new(Captured::default()))
        .unwrap();
    let (addr, server) = serve(&handler).await;

    let spin = tokio::spawn(async move { get(addr, "/spin").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = get(addr, "/").await;
    assert_eq!(reply.status, 503, "{reply:?}");
    // The one live instance holds one slot of each kind the pool budgets for: one memory
    // per component is what the pool's address-space budget assumes.
    let usage = rt.pool_usage().expect("pooling");
    assert_eq!(usage.component_instances, 1, "{usage:?}");
    assert_eq!(usage.memories, 1, "{usage:?}");
    assert!(usage.core_instances <= 8 && usage.tables <= 4, "{usage:?}");
    println!("one http-hello instance uses {usage:?}");
    assert_eq!(spin.await.unwrap().status, 504);
    // The slot is free again once the spinning instance is gone.
    assert_eq!(get(addr, "/").await.status, 200);
    server.abort();
}

/// A tiny HTTP server that counts connections and answers 204.
async fn counting_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_need_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "http-hello").await;
    let (port, connections) = counting_server().await;
    let url = format!("/fetch?url=http://127.0.0.1:{port}/x");

    // No grant: the guest sees the error code, and nothing reached the server.
    let output = Arc::new(Captured::default());
    let denied = rt
        .http_handler(&hello, HttpSpec::default(), output.clone())
        .unwrap();
    let (addr, server) = serve(&denied).await;
    let reply = get(addr, &url).await;
    assert!(reply.body.contains("HttpRequestDenied"), "{reply:?}");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(
        output
            .stderr()
            .contains(&format!("http request to 127.0.0.1:{port}")),
        "the pod log should say what was denied: {}",
        output.stderr()
    );
    server.abort();

    // Granted by address: the request goes through.
    let spec = HttpSpec {
        network: NetworkGrants {
            outbound: vec![format!("127.0.0.1:{port}")],
            ..NetworkGrants::default()
        },
        ..HttpSpec::default()
    };
    let granted = rt
        .http_handler(&hello, spec, Arc::new(Captured::default()))
        .unwrap();
    let (addr, server) = serve(&granted).await;
    let reply = get(addr, &url).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "status: 204\n"));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Another port on the same host is still denied.
    let other = get(addr, "/fetch?url=http://127.0.0.1:1/x").await;
    assert!(other.body.contains("HttpRequestDenied"), "{other:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_allocation_serves_too() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_with(&dir, AllocatorPreference::OnDemand);
    match rt.allocator() {
        AllocatorKind::OnDemand { reason } => assert!(reason.contains("EDGE_POOLING"), "{reason}"),
        other => panic!("expected on-demand, got {other:?}"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_not_http_handlers_and_vice_versa() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = load(&rt, "hello").await;
    let err = rt
        .http_handler(&hello, HttpSpec::default(), Arc::new(Captured::default()))
        .err()
        .expect("a command is not an HTTP handler");
    assert!(
        matches!(err, RuntimeError::NotAnHttpHandler { .. }),
        "{err}"
    );
    let http = load(&rt, "http-hello").await;
    let err = rt
        .run_command(&http, common::spec(&["x"]), Arc::new(Captured::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotACommand { .. }), "{err}");
    // A bad grant is refused when the handler is built, not on the first request.
    let spec = HttpSpec {
        network: NetworkGrants {
            outbound: vec!["example.com".into()],
            ..NetworkGrants::default()
        },
        ..HttpSpec::default()
    };
    let err = rt
        .http_handler(&http, spec, Arc::new(Captured::default()))
        .err()
        .expect("a grant without a port is invalid");
    assert!(matches!(err, RuntimeError::InvalidGrant { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_loaded_from_the_disk_cache_serves() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime(&dir);
    load(&first, "http-hello").await;
    drop(first);
    let second = runtime(&dir);
    let hello = load(&second, "http-hello").await;
    assert!(hello.from_cache());
    assert_eq!(second.compilations(), 0);
    let handler = second
        .http_handler(&hello, HttpSpec::default(), Arc::new(Captured::default()))
        .unwrap();
    let (addr, server) = serve(&handler).await;
    assert_eq!(get(addr, "/").await.status, 200);
    server.abort();
}
