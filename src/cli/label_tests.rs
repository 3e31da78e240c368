//! Unit tests of `label`/`annotate` argument parsing and of applying the changes.

use super::*;

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn resources_come_first_then_changes() {
    let (r, c) = split_args(&strings(&["pods", "a", "b", "app=web", "tier-"])).unwrap();
    assert_eq!(
        (r, c),
        (strings(&["pods", "a", "b"]), strings(&["app=web", "tier-"]))
    );
    let e = split_args(&strings(&["pods", "a", "app=web", "b"])).unwrap_err();
    assert!(e.to_string().contains("\"b\""), "{e}");
    assert!(split_args(&strings(&["pods", "a"])).is_err());
    assert!(split_args(&strings(&["app=web"])).is_err());
}

#[test]
fn changes_are_checked_like_the_server_checks_them() {
    let c = parse_changes(
        &strings(&["app=web", "example.com/team=", "old-"]),
        Field::Labels,
    )
    .unwrap();
    assert_eq!(c.set, map(&[("app", "web"), ("example.com/team", "")]));
    assert_eq!(c.remove, ["old"]);
    let e = parse_changes(&strings(&["app=has space"]), Field::Labels).unwrap_err();
    assert!(e.to_string().contains("invalid label value"), "{e}");
    // An annotation's value is free text.
    assert!(parse_changes(&strings(&["note=has space, and more"]), Field::Annotations).is_ok());
    let e = parse_changes(&strings(&["bad key=x"]), Field::Annotations).unwrap_err();
    assert!(e.to_string().contains("invalid annotation key"), "{e}");
    let e = parse_changes(&strings(&["app=a", "app-"]), Field::Labels).unwrap_err();
    assert!(e.to_string().contains("both set and remove"), "{e}");
    assert!(parse_changes(&strings(&["app=a", "app=b"]), Field::Labels).is_err());
}

#[test]
fn overwrite_is_required_to_change_a_value() {
    let changes = parse_changes(&strings(&["app=api", "tier=front"]), Field::Labels).unwrap();
    let mut labels = map(&[("app", "web")]);
    let e = apply_changes(&mut labels, &changes, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "'app' already has a value (web), and --overwrite is false"
    );
    assert_eq!(labels, map(&[("app", "web")]), "nothing changed half-way");
    apply_changes(&mut labels, &changes, true).unwrap();
    assert_eq!(labels, map(&[("app", "api"), ("tier", "front")]));
    // Setting the value it already has needs no --overwrite.
    let same = parse_changes(&strings(&["app=api"]), Field::Labels).unwrap();
    assert!(apply_changes(&mut labels, &same, false).is_ok());
}

#[test]
fn removal_reports_missing_keys_and_outcomes_read_like_kubectl() {
    let changes = parse_changes(&strings(&["tier-", "gone-"]), Field::Labels).unwrap();
    let before = map(&[("app", "web"), ("tier", "front")]);
    let mut after = before.clone();
    let missing = apply_changes(&mut after, &changes, false).unwrap();
    assert_eq!(missing, ["gone"]);
    assert_eq!(after, map(&[("app", "web")]));
    assert_eq!(outcome(Field::Labels, &before, &after), "unlabeled");
    assert_eq!(outcome(Field::Labels, &after, &after), "not labeled");
    assert_eq!(outcome(Field::Labels, &after, &before), "labeled");
    assert_eq!(outcome(Field::Annotations, &after, &after), "annotated");
}
