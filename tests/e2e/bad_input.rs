//! Every kind of bad input gets a clear error naming what is wrong, a non-zero exit, nothing
//! stored, and a server that is still up.

use crate::support::*;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf8").to_string()
}

fn pod_yaml(name: &str, image: &str) -> String {
    format!("apiVersion: edge.dev/v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n")
}

#[test]
fn bad_manifests_and_components_are_refused() {
    let c = Cluster::start(&["--no-agent"]);
    let d = c.home.path();
    let hello = repo().join("examples/components/hello.wasm");
    assert!(hello.exists(), "run scripts/build-modules.sh");

    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            write(d, "broken.yaml", "kind: Pod\nmetadata: [unclosed\n"),
            vec!["broken.yaml", "YAML"],
        ),
        (
            write(
                d,
                "kind.yaml",
                "apiVersion: edge.dev/v1\nkind: Gizmo\nmetadata: {name: g}\n",
            ),
            vec!["Gizmo"],
        ),
        (
            write(
                d,
                "name.yaml",
                &pod_yaml("Bad_Name", hello.to_str().expect("utf8")),
            ),
            vec!["metadata.name", "Bad_Name"],
        ),
        (
            write(d, "missing.yaml", &pod_yaml("missing", "./nope.wasm")),
            vec!["spec.containers[0].image", "nope.wasm"],
        ),
        (
            write(d, "notwasm.yaml", &pod_yaml("notwasm", "./notwasm.txt")),
            vec!["notwasm", "WebAssembly"],
        ),
        (
            write(
                d,
                "field.yaml",
                &pod_yaml("field", "x").replace("image:", "imagee:"),
            ),
            vec!["imagee"],
        ),
    ];
    std::fs::write(d.join("notwasm.txt"), "just text").expect("write");
    for (file, needles) in &cases {
        let err = c.fails(&["apply", "-f", file]);
        for n in needles {
            assert!(
                err.contains(n),
                "error for {file} should mention {n:?}:\n{err}"
            );
        }
    }

    // A valid pod in the same file as a broken one: nothing is applied.
    let mixed = format!(
        "{}---\n{}",
        pod_yaml("good", hello.to_str().expect("utf8")),
        pod_yaml("Bad_Name", "./x.wasm")
    );
    c.fails(&["apply", "-f", &write(d, "mixed.yaml", &mixed)]);

    // Oversized: a manifest past the size cap, and a component past the upload cap.
    let big = format!("{}# {}\n", pod_yaml("big", "x"), "x".repeat(5 << 20));
    let err = c.fails(&["apply", "-f", &write(d, "big.yaml", &big)]);
    assert!(err.contains("limit"), "{err}");
    let mut huge = b"\0asm\x01\0\0\0".to_vec();
    huge.resize(49 << 20, 0);
    std::fs::write(d.join("huge.wasm"), huge).expect("write");
    let err = c.fails(&[
        "apply",
        "-f",
        &write(d, "huge.yaml", &pod_yaml("huge", "./huge.wasm")),
    ]);
    assert!(err.contains("limit"), "{err}");

    let o = c.edgectl(&["get", "pods", "-A", "-o", "name"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "", "nothing may be stored");
    let log = c.server.as_ref().map(|d| d.log_text()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
    c.ok(&["get", "namespaces"]);
}
