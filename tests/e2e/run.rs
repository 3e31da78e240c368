//! `edged run`: one component in the pod sandbox, from the command line.

use crate::support::*;
use std::process::Command;

fn edged_run(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(EDGED)
        .arg("run")
        .args(args)
        .env("HOME", home)
        .output()
        .expect("edged run")
}

#[test]
fn edged_run_applies_the_pod_sandbox() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let o = edged_run(
        h,
        &["--env", "GREETING=yo", &component("hello"), "--", "a", "b"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("GREETING=yo") && stdout(&o).contains("\"a\", \"b\""),
        "{}",
        stdout(&o)
    );

    assert_eq!(edged_run(h, &[&component("fail")]).status.code(), Some(3));

    let o = edged_run(h, &["--memory", "16Mi", &component("membomb")]);
    assert_eq!(o.status.code(), Some(137));
    assert!(stderr(&o).contains("MemoryLimitExceeded"), "{}", stderr(&o));

    let data = h.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), "inside\n").expect("write");
    let dir = format!("{}::/data:ro", data.display());
    let o = edged_run(h, &["--dir", &dir, &component("escape")]);
    let out = stdout(&o);
    assert!(
        out.contains("read /data/f: ok") && out.contains("write /data/escape-was-here.txt: denied"),
        "{out}"
    );
    assert!(out.contains("read /etc/hostname: denied"), "{out}");

    let o = edged_run(h, &[&component("hello-p1")]);
    assert!(
        o.status.success() && stdout(&o).contains("preview1"),
        "{}",
        stdout(&o)
    );

    let o = edged_run(h, &[repo().join("README.md").to_str().expect("utf8")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not WebAssembly"), "{}", stderr(&o));
}
