//! The Deployment strategies' arithmetic.

use crate::controllers::deployment_rollout::*;
use edge_api::IntOrString;

fn rs(name: &str, replicas: i32, active: i32, available: i32, revision: i64) -> RsView {
    RsView {
        name: name.into(),
        replicas,
        active,
        available,
        running: active,
        revision,
    }
}

fn scales(pairs: &[(&str, i32)]) -> Scales {
    pairs.iter().map(|(n, r)| (n.to_string(), *r)).collect()
}

#[test]
fn bounds_resolve_like_kubernetes() {
    let pct = |s: &str| IntOrString::String(s.into());
    let table = [
        (3, None, None, (1, 0)),
        (10, None, None, (3, 2)),
        (4, Some(pct("50%")), Some(IntOrString::Int(1)), (2, 1)),
        (
            3,
            Some(IntOrString::Int(0)),
            Some(IntOrString::Int(0)),
            (0, 1),
        ),
        (1, Some(IntOrString::Int(0)), None, (0, 1)),
    ];
    for (desired, surge, unavailable, want) in table {
        assert_eq!(
            resolve_bounds(desired, surge.as_ref(), unavailable.as_ref()),
            want,
            "{desired} {surge:?} {unavailable:?}"
        );
    }
}

#[test]
fn rolling_steps_stay_within_surge_and_unavailable() {
    // (desired, surge, unavailable, new, old, expected scales)
    let table = [
        // Start: the new ReplicaSet grows by the surge.
        (
            3,
            1,
            1,
            rs("new", 0, 0, 0, 2),
            vec![rs("old", 3, 3, 3, 1)],
            scales(&[("new", 1)]),
        ),
        // Full: shrink old while 2 stay available (new is not available yet).
        (
            3,
            1,
            1,
            rs("new", 1, 1, 0, 2),
            vec![rs("old", 3, 3, 3, 1)],
            scales(&[("old", 2)]),
        ),
        // Old pods not yet gone still count against the surge (new does not grow), and count
        // as available only up to their ReplicaSet's size.
        (
            3,
            1,
            1,
            rs("new", 1, 1, 1, 2),
            vec![rs("old", 2, 3, 3, 1)],
            scales(&[("old", 1)]),
        ),
        // maxUnavailable 0 and the new pod not available yet: wait.
        (
            3,
            1,
            0,
            rs("new", 1, 1, 0, 2),
            vec![rs("old", 3, 3, 1, 1)],
            scales(&[]),
        ),
        // Unhealthy old replicas go even when no availability can be spared.
        (
            3,
            1,
            0,
            rs("new", 1, 1, 1, 2),
            vec![rs("old", 3, 3, 1, 1)],
            scales(&[("old", 2)]),
        ),
        // maxSurge 0: make room by removing one available old pod first.
        (
            3,
            0,
            1,
            rs("new", 0, 0, 0, 2),
            vec![rs("old", 3, 3, 3, 1)],
            scales(&[("old", 2)]),
        ),
        // New not becoming available (bad image): nothing more may go.
        (
            3,
            1,
            1,
            rs("new", 2, 2, 0, 2),
            vec![rs("old", 2, 2, 2, 1)],
            scales(&[]),
        ),
        // Oldest ReplicaSet shrinks first.
        (
            4,
            1,
            2,
            rs("new", 1, 1, 1, 3),
            vec![rs("a", 2, 2, 2, 1), rs("b", 2, 2, 2, 2)],
            scales(&[("a", 0), ("b", 1)]),
        ),
        // Done: nothing to do.
        (
            3,
            1,
            1,
            rs("new", 3, 3, 3, 2),
            vec![rs("old", 0, 0, 0, 1)],
            scales(&[]),
        ),
        // Scaled down while complete.
        (
            2,
            1,
            1,
            rs("new", 3, 3, 3, 2),
            vec![],
            scales(&[("new", 2)]),
        ),
    ];
    for (i, (desired, surge, unavailable, new, old, want)) in table.into_iter().enumerate() {
        assert_eq!(
            rolling_step(desired, surge, unavailable, &new, &old),
            want,
            "row {i}"
        );
    }
}

#[test]
fn a_new_replica_set_starts_at_what_the_surge_allows() {
    assert_eq!(new_rs_replicas(3, 1, None, &[rs("old", 3, 3, 3, 1)]), 1);
    assert_eq!(new_rs_replicas(3, 1, None, &[]), 3);
    assert_eq!(new_rs_replicas(3, 0, None, &[rs("old", 3, 3, 3, 1)]), 0);
    assert_eq!(new_rs_replicas(5, 5, None, &[rs("old", 5, 5, 5, 1)]), 5);
}

#[test]
fn recreate_empties_old_and_waits_for_their_pods() {
    let old = [rs("old", 3, 3, 3, 1)];
    assert_eq!(recreate_step(3, None, &old), scales(&[("old", 0)]));
    // Scaled to 0 but pods still stopping: wait.
    let stopping = [RsView {
        running: 2,
        ..rs("old", 0, 0, 0, 1)
    }];
    assert_eq!(recreate_step(3, None, &stopping), scales(&[]));
    let gone = [rs("old", 0, 0, 0, 1)];
    assert_eq!(recreate_step(3, None, &gone), scales(&[("", 3)]));
    assert_eq!(
        recreate_step(3, Some(&rs("new", 0, 0, 0, 2)), &gone),
        scales(&[("new", 3)])
    );
}

#[test]
fn paused_scaling_is_proportional_with_leftovers_to_the_newest() {
    let both = [rs("old", 2, 2, 2, 1), rs("new", 2, 2, 2, 2)];
    assert_eq!(
        proportional_scale(6, &both),
        scales(&[("new", 3), ("old", 3)])
    );
    assert_eq!(proportional_scale(5, &both), scales(&[("new", 3)]));
    assert_eq!(proportional_scale(4, &both), scales(&[]));
    let one = [rs("old", 0, 0, 0, 1), rs("new", 3, 3, 3, 2)];
    assert_eq!(proportional_scale(1, &one), scales(&[("new", 1)]));
}

#[test]
fn history_keeps_the_newest_empty_replica_sets() {
    let old = [
        rs("r1", 0, 0, 0, 1),
        rs("r3", 0, 0, 0, 3),
        rs("r2", 0, 0, 0, 2),
        rs("busy", 1, 1, 1, 0),
    ];
    assert_eq!(history_to_delete(&old, 1), ["r1", "r2"]);
    assert_eq!(history_to_delete(&old, 0), ["r1", "r2", "r3"]);
    assert!(history_to_delete(&old, 10).is_empty());
}
