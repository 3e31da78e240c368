//! Unit tests of `manifests`: sources, namespace defaulting, local component resolution.

use super::*;
use std::fs;

const WASM: &[u8] = b"\0asm\x01\0\0\0";

fn pod_yaml(name: &str, images: &[&str]) -> String {
    let mut y = format!(
        "apiVersion: edge.dev/v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n"
    );
    for (i, img) in images.iter().enumerate() {
        y.push_str(&format!("  - name: c{i}\n    image: {img}\n"));
    }
    y
}

fn load(dir: &Path, args: &[&str], ns: Option<&str>) -> Result<Vec<Loaded>> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let sources = read_sources(&args, dir, &mut std::io::empty())?;
    parse_sources(&sources, ns)
}

fn image(l: &Loaded, i: usize) -> &str {
    &l.object.as_pod().unwrap().spec.containers[i].image
}

#[test]
fn directory_loads_manifests_sorted_and_skips_others() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("m")).unwrap();
    fs::write(d.path().join("m/b.yml"), pod_yaml("b", &[DIGEST_A])).unwrap();
    fs::write(d.path().join("m/a.yaml"), pod_yaml("a", &[DIGEST_A])).unwrap();
    fs::write(
        d.path().join("m/c.json"),
        r#"{"apiVersion": "edge.dev/v1", "kind": "Namespace", "metadata": {"name": "c"}}"#,
    )
    .unwrap();
    fs::write(d.path().join("m/notes.txt"), "not a manifest").unwrap();
    fs::create_dir(d.path().join("m/sub")).unwrap();
    fs::write(d.path().join("m/sub/z.yaml"), pod_yaml("z", &[DIGEST_A])).unwrap();

    let loaded = load(d.path(), &["m"], None).unwrap();
    let names: Vec<_> = loaded
        .iter()
        .map(|l| l.object.meta().name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(loaded[0].source, "m/a.yaml");
    assert_eq!(loaded[0].base_dir, d.path().join("m"));
    assert_eq!(loaded[0].object.meta().namespace, "default");
    assert_eq!(
        loaded[2].object.meta().namespace,
        "",
        "namespaces are cluster-scoped"
    );
}

const DIGEST_A: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn empty_directory_and_missing_path_are_errors() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("empty")).unwrap();
    let e = load(d.path(), &["empty"], None).unwrap_err().to_string();
    assert!(e.contains("no *.yaml"), "{e}");
    let e = load(d.path(), &["nope.yaml"], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.yaml"), "{e}");
}

#[test]
fn multi_document_stdin_resolves_from_cwd() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("hello.wasm"), WASM).unwrap();
    let text = format!(
        "{}---\n{}",
        pod_yaml("a", &["./hello.wasm"]),
        pod_yaml("b", &["hello.wasm"])
    );
    let sources = read_sources(&["-".into()], d.path(), &mut text.as_bytes()).unwrap();
    assert_eq!(sources[0].name, "<stdin>");
    let mut loaded = parse_sources(&sources, Some("prod")).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[1].object.meta().namespace, "prod");
    let images = resolve_images(&mut loaded).unwrap();
    assert_eq!(images.len(), 1, "the same file is uploaded once");
    assert_eq!(images[0].uses, [(0, 0), (1, 0)]);
    assert_eq!(image(&loaded[0], 0), blob_digest(WASM));
    assert_eq!(image(&loaded[1], 0), blob_digest(WASM));
}

#[test]
fn local_paths_resolve_relative_to_the_manifest_directory() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("app/bin")).unwrap();
    fs::write(d.path().join("app/bin/svc.wasm"), WASM).unwrap();
    let other = b"\0asm\x0d\0\x01\0";
    fs::write(d.path().join("abs.wasm"), other).unwrap();
    let abs = d.path().join("abs.wasm").display().to_string();
    fs::write(
        d.path().join("app/pod.yaml"),
        pod_yaml(
            "p",
            &["bin/svc.wasm", &abs, DIGEST_A, "https://example.com/x.wasm"],
        ),
    )
    .unwrap();
    // Run from elsewhere: the manifest's directory matters, not the current one.
    let mut loaded = load(d.path(), &["app/pod.yaml"], None).unwrap();
    let images = resolve_images(&mut loaded).unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(
        images[0].path,
        d.path().join("app/bin/svc.wasm").canonicalize().unwrap()
    );
    assert_eq!(image(&loaded[0], 0), blob_digest(WASM));
    assert_eq!(image(&loaded[0], 1), blob_digest(other));
    assert_eq!(image(&loaded[0], 2), DIGEST_A, "digests are left alone");
    assert_eq!(image(&loaded[0], 3), "https://example.com/x.wasm");

    set_digest(&mut loaded, &images[1], "sha256:server");
    assert_eq!(image(&loaded[0], 1), "sha256:server");
}

#[test]
fn missing_component_names_object_field_and_path() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("ok.wasm"), WASM).unwrap();
    let text = format!(
        "{}---\n{}",
        pod_yaml("good", &["ok.wasm"]),
        pod_yaml("hello", &["ok.wasm", "./missing.wasm"])
    );
    fs::write(d.path().join("app.yaml"), text).unwrap();
    let mut loaded = load(d.path(), &["app.yaml"], None).unwrap();
    let e = resolve_images(&mut loaded).unwrap_err().to_string();
    assert!(e.contains("app.yaml"), "{e}");
    assert!(e.contains("Pod \"default/hello\""), "{e}");
    assert!(e.contains("spec.containers[1].image"), "{e}");
    assert!(e.contains("./missing.wasm"), "{e}");
    assert!(
        e.contains(&d.path().join("missing.wasm").display().to_string()),
        "{e}"
    );
}

#[test]
fn non_wasm_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("readme.wasm"), "# hello").unwrap();
    fs::write(d.path().join("p.yaml"), pod_yaml("p", &["readme.wasm"])).unwrap();
    let mut loaded = load(d.path(), &["p.yaml"], None).unwrap();
    let e = resolve_images(&mut loaded).unwrap_err().to_string();
    assert!(
        e.contains("not a WebAssembly file") && e.contains("readme.wasm"),
        "{e}"
    );
    assert!(e.contains("spec.containers[0].image"), "{e}");
}

#[test]
fn all_problems_are_reported_together() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("a.yaml"), pod_yaml("a", &["x.wasm"])).unwrap();
    fs::write(d.path().join("b.yaml"), pod_yaml("b", &["y.wasm"])).unwrap();
    let mut loaded = load(d.path(), &["a.yaml", "b.yaml"], None).unwrap();
    let e = resolve_images(&mut loaded).unwrap_err().to_string();
    assert!(e.starts_with("2 problems"), "{e}");
    assert!(e.contains("x.wasm") && e.contains("y.wasm"), "{e}");
}

#[test]
fn a_broken_document_anywhere_fails_the_whole_set() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("a.yaml"), pod_yaml("a", &[DIGEST_A])).unwrap();
    fs::write(
        d.path().join("b.yaml"),
        "apiVersion: edge.dev/v1\nkind: Gizmo\n",
    )
    .unwrap();
    let e = load(d.path(), &["a.yaml", "b.yaml"], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("b.yaml") && e.contains("Gizmo"), "{e}");
}

#[test]
fn namespace_flag_conflicting_with_manifest_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let y = pod_yaml("a", &[DIGEST_A]).replace("  name: a\n", "  name: a\n  namespace: dev\n");
    fs::write(d.path().join("a.yaml"), y).unwrap();
    assert_eq!(
        load(d.path(), &["a.yaml"], None).unwrap()[0]
            .object
            .meta()
            .namespace,
        "dev"
    );
    assert_eq!(
        load(d.path(), &["a.yaml"], Some("dev")).unwrap()[0]
            .object
            .meta()
            .namespace,
        "dev"
    );
    let e = load(d.path(), &["a.yaml"], Some("prod"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"dev\"") && e.contains("\"prod\""), "{e}");
}

#[test]
fn validation_runs_before_sending() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("a.yaml"), pod_yaml("Bad_Name", &[DIGEST_A])).unwrap();
    let loaded = load(d.path(), &["a.yaml"], None).unwrap();
    let e = validate_all(&loaded).unwrap_err().to_string();
    assert!(e.contains("a.yaml") && e.contains("metadata.name"), "{e}");
}

#[test]
fn local_image_detection() {
    assert!(is_local_image("./a.wasm"));
    assert!(is_local_image("/abs/a.wasm"));
    assert!(is_local_image("a.wasm"));
    assert!(!is_local_image(DIGEST_A));
    assert!(!is_local_image("oci://reg/repo:tag"));
    assert!(!is_local_image(""));
}

#[test]
fn namespaces_are_applied_first() {
    let d = tempfile::tempdir().unwrap();
    let y = format!(
        "{}---\napiVersion: edge.dev/v1\nkind: Namespace\nmetadata: {{name: team}}\n---\n{}",
        pod_yaml("a", &[DIGEST_A]),
        pod_yaml("b", &[DIGEST_A])
    );
    fs::write(d.path().join("all.yaml"), y).unwrap();
    let mut loaded = load(d.path(), &["all.yaml"], None).unwrap();
    namespaces_first(&mut loaded);
    let names: Vec<_> = loaded
        .iter()
        .map(|l| l.object.meta().name.as_str())
        .collect();
    assert_eq!(names, ["team", "a", "b"]);
}

#[test]
fn workload_templates_get_their_components_uploaded_too() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("web.wasm"), WASM).unwrap();
    let y = "apiVersion: edge.dev/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: main, image: ./web.wasm}]}\n---\napiVersion: edge.dev/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:\n    spec: {restartPolicy: Never, containers: [{name: main, image: ./gone.wasm}]}\n";
    fs::write(d.path().join("apps.yaml"), y).unwrap();
    let mut loaded = load(d.path(), &["apps.yaml"], None).unwrap();
    let e = resolve_images(&mut loaded).unwrap_err().to_string();
    assert!(
        e.contains("Job \"default/once\": spec.template.spec.containers[0].image"),
        "{e}"
    );
    let mut loaded = load(d.path(), &["apps.yaml"], None).unwrap();
    loaded.truncate(1);
    let images = resolve_images(&mut loaded).unwrap();
    assert_eq!(images.len(), 1);
    let Object::Deployment(dep) = &loaded[0].object else {
        panic!("not a deployment")
    };
    assert_eq!(
        dep.spec.template.spec.containers[0].image,
        blob_digest(WASM)
    );
}
