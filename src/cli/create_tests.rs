//! Unit tests of `create`: keys and values from literals, files and directories, key checks,
//! binary files, and what `--dry-run=client` prints.

use super::*;
use crate::cli::args::{Cli, Command};
use clap::Parser;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Parses an `edgectl create ...` command line into its `CreateCommand`.
fn create_command(argv: &[&str]) -> (CreateCommand, Option<String>) {
    let cli = Cli::try_parse_from(argv).unwrap();
    let Command::Create(c) = cli.command else {
        panic!("not create")
    };
    (c.what, cli.namespace)
}

fn as_configmap(o: &Object) -> &ConfigMap {
    match o {
        Object::ConfigMap(cm) => cm,
        other => panic!("not a configmap: {other:?}"),
    }
}

fn as_secret(o: &Object) -> &Secret {
    match o {
        Object::Secret(s) => s,
        other => panic!("not a secret: {other:?}"),
    }
}

#[test]
fn literals_become_data() {
    let data = collect_data(&strings(&["a=1", "url=http://x/?q=1", "empty="]), &[]).unwrap();
    let cm = configmap_object("cfg", None, data);
    let cm = as_configmap(&cm);
    assert_eq!(cm.data["a"], "1");
    assert_eq!(cm.data["url"], "http://x/?q=1");
    assert_eq!(cm.data["empty"], "");
    assert!(cm.binary_data.is_empty());
    assert_eq!(cm.metadata.namespace, "");
    assert_eq!(cm.api_version, edge_api::API_VERSION);
}

#[test]
fn literal_and_file_source_syntax() {
    assert_eq!(parse_literal("k=v=w").unwrap(), ("k", "v=w"));
    for bad in ["novalue", "=v"] {
        let e = parse_literal(bad).unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE") && e.contains(bad), "{e}");
    }
    assert_eq!(parse_file_source("a/b.txt").unwrap(), (None, "a/b.txt"));
    assert_eq!(
        parse_file_source("k=a/b.txt").unwrap(),
        (Some("k"), "a/b.txt")
    );
    assert!(parse_file_source("=a")
        .unwrap_err()
        .to_string()
        .contains("key name"));
    assert!(parse_file_source("k=")
        .unwrap_err()
        .to_string()
        .contains("file path"));
    assert!(parse_file_source("a=b=c")
        .unwrap_err()
        .to_string()
        .contains("cannot contain '='"));
}

#[test]
fn keys_are_checked() {
    for good in ["a", "A-b_c.d", ".hidden", "x..y", "9"] {
        validate_key(good).unwrap();
    }
    for bad in ["", ".", "..", "a b", "a/b", "ключ", &"k".repeat(254)] {
        assert!(validate_key(bad).is_err(), "{bad:?} accepted");
    }
    let e = collect_data(&strings(&["bad key=1"]), &[]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("\"bad key\"") && msg.contains("letters, digits"),
        "{msg}"
    );
}

#[test]
fn duplicate_keys_are_an_error_naming_the_key() {
    let e = collect_data(&strings(&["a=1", "b=2", "a=3"]), &[]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("duplicate key \"a\""), "{msg}");
    // A literal value (possibly a secret) is never echoed back.
    assert!(!msg.contains("a=1") && !msg.contains("a=3"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a");
    std::fs::write(&f, "from file").unwrap();
    let e = collect_data(&strings(&["a=1"]), &[f.display().to_string()]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("duplicate key \"a\"") && msg.contains("--from-file"),
        "{msg}"
    );
}

#[test]
fn files_with_their_name_or_a_given_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("app.conf");
    std::fs::write(&conf, "level = debug\n").unwrap();
    let files = vec![
        conf.display().to_string(),
        format!("other.conf={}", conf.display()),
    ];
    let cm = configmap_object("cfg", Some("prod"), collect_data(&[], &files).unwrap());
    let cm = as_configmap(&cm);
    assert_eq!(cm.data["app.conf"], "level = debug\n");
    assert_eq!(cm.data["other.conf"], "level = debug\n");
    assert_eq!(cm.metadata.namespace, "prod");

    let missing = dir.path().join("nope").display().to_string();
    let e = format!(
        "{:#}",
        collect_data(&[], std::slice::from_ref(&missing)).unwrap_err()
    );
    assert!(e.contains(&missing) && e.contains("does not exist"), "{e}");

    let spaced = dir.path().join("my file");
    std::fs::write(&spaced, "x").unwrap();
    let e = format!(
        "{:#}",
        collect_data(&[], &[spaced.display().to_string()]).unwrap_err()
    );
    assert!(e.contains("--from-file=KEY="), "{e}");
}

#[test]
fn a_directory_adds_each_regular_file_not_recursively() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), "bee").unwrap();
    std::fs::write(dir.path().join("a.txt"), "ay").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub").join("deep.txt"), "deep").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("a.txt"), dir.path().join("link.txt")).unwrap();
    let arg = dir.path().display().to_string();
    let data = collect_data(&[], std::slice::from_ref(&arg)).unwrap();
    assert_eq!(data.entries.keys().collect::<Vec<_>>(), ["a.txt", "b.txt"]);
    let s = secret_object("s", None, "Opaque", data);
    let s = as_secret(&s);
    assert_eq!(s.data["a.txt"], encode_base64(b"ay"));
    assert_eq!(s.data["b.txt"], "YmVl");

    let e = collect_data(&[], &[format!("k={arg}")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("directory"), "{e}");
}

#[test]
fn a_non_utf8_file_goes_to_binary_data_in_a_configmap() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("logo.bin");
    std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let files = vec![bin.display().to_string()];
    let cm = configmap_object(
        "cfg",
        None,
        collect_data(&strings(&["t=text"]), &files).unwrap(),
    );
    let cm = as_configmap(&cm);
    assert_eq!(
        cm.binary_data["logo.bin"],
        encode_base64(&[0xff, 0xfe, 0x00, 0x01])
    );
    assert!(!cm.data.contains_key("logo.bin"));
    assert_eq!(cm.data["t"], "text");
    // The same bytes in a secret are plain base64 data.
    let s = secret_object("s", None, "Opaque", collect_data(&[], &files).unwrap());
    assert_eq!(as_secret(&s).data["logo.bin"], "//4AAQ==");
}

#[test]
fn files_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; MAX_DATA_BYTES + 1]).unwrap();
    let e = format!(
        "{:#}",
        collect_data(&[], &[big.display().to_string()]).unwrap_err()
    );
    assert!(e.contains("too large"), "{e}");
}

#[test]
fn secret_generic_encodes_literals_and_keeps_its_type() {
    let (what, ns) = create_command(&[
        "edgectl",
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
        "--type=example.com/basic",
    ]);
    let o = build(&what, ns.as_deref()).unwrap();
    let s = as_secret(&o);
    assert_eq!(s.data["password"], "aHVudGVyMg==");
    assert_eq!(s.type_, "example.com/basic");
    assert!(s.string_data.is_empty());

    let (what, ns) = create_command(&["edgectl", "create", "secret", "generic", "x", "--type="]);
    assert!(build(&what, ns.as_deref())
        .unwrap_err()
        .to_string()
        .contains("--type"));
}

#[test]
fn invalid_names_are_refused_before_sending() {
    let (what, ns) = create_command(&["edgectl", "create", "cm", "Bad_Name", "--from-literal=a=1"]);
    let e = format!("{:#}", build(&what, ns.as_deref()).unwrap_err());
    assert!(e.contains("metadata.name"), "{e}");
}

#[test]
fn dry_run_client_prints_the_object_to_apply_later() {
    let (what, ns) = create_command(&[
        "edgectl",
        "create",
        "configmap",
        "cfg",
        "--from-literal=b=2",
        "--from-literal=a=1",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let o = build(&what, ns.as_deref()).unwrap();
    let y = created_output(&o, Some(CreateOutput::Yaml), "(dry run)").unwrap();
    assert_eq!(
        y,
        "apiVersion: edge.dev/v1\ndata:\n  a: \"1\"\n  b: \"2\"\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
    );
    // It reads back as the same object: what GitOps users commit and apply.
    let back = edge_api::manifest::parse_documents(&y, "<test>").unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0], o);

    let (what, ns) = create_command(&[
        "edgectl",
        "-n",
        "prod",
        "create",
        "cm",
        "cfg",
        "--dry-run=client",
    ]);
    let o = build(&what, ns.as_deref()).unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&created_output(&o, Some(CreateOutput::Json), "").unwrap()).unwrap();
    assert_eq!(j["metadata"]["namespace"], "prod");
    assert_eq!(j["kind"], "ConfigMap");
    assert_eq!(
        created_output(&o, None, "(dry run)").unwrap(),
        "configmap/cfg created (dry run)\n"
    );
    assert_eq!(
        created_output(&o, None, "").unwrap(),
        "configmap/cfg created\n"
    );
    assert_eq!(
        created_output(&o, Some(CreateOutput::Name), "").unwrap(),
        "configmap/cfg\n"
    );
}

#[test]
fn create_namespace_builds_a_checked_cluster_scoped_object() {
    let (what, ns) = create_command(&[
        "edgectl",
        "-n",
        "x",
        "create",
        "ns",
        "team-a",
        "--dry-run",
        "-o",
        "yaml",
    ]);
    assert_eq!(
        options(&what),
        (CreateDryRun::Client, Some(CreateOutput::Yaml))
    );
    let o = build(&what, ns.as_deref()).unwrap();
    assert_eq!(
        o.key(),
        edge_api::ObjectKey::new(edge_api::Kind::Namespace, "", "team-a")
    );
    assert_eq!(
        created_output(&o, None, "").unwrap(),
        "namespace/team-a created\n"
    );
    let (bad, _) = create_command(&["edgectl", "create", "namespace", "Team_A"]);
    assert!(build(&bad, None).is_err(), "not a DNS-1123 label");
}
