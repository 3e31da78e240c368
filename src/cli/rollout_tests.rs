//! Table tests of `rollout`'s decisions: status lines, history rows and rollback plans.

use super::*;
use crate::cli::testutil::{container, meta};
use edge_api::meta::Condition;
use edge_api::OwnerReference;

fn deployment(replicas: i32) -> Deployment {
    let mut d = Deployment {
        metadata: meta("web", "default", 60),
        ..Default::default()
    };
    d.metadata.uid = "d-uid".into();
    d.metadata.generation = 2;
    d.spec.replicas = Some(replicas);
    d.spec
        .template
        .metadata
        .labels
        .insert("app".into(), "web".into());
    d.spec.template.spec.containers = vec![container("main")];
    d.spec.template.spec.containers[0].image = "v2".into();
    d.status.observed_generation = 2;
    d
}

fn status(d: &mut Deployment, replicas: i32, updated: i32, available: i32) {
    d.status.replicas = replicas;
    d.status.updated_replicas = updated;
    d.status.available_replicas = available;
}

#[test]
fn deployment_status_lines_follow_kubectl() {
    let cases: [(i32, i32, i32, &str); 4] = [
        (3, 1, 1, "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."),
        (4, 3, 2, "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."),
        (3, 3, 1, "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available..."),
        (3, 3, 3, "deployment \"web\" successfully rolled out"),
    ];
    for (replicas, updated, available, want) in cases {
        let mut d = deployment(3);
        status(&mut d, replicas, updated, available);
        let got = deployment_progress(&d);
        let line = match &got {
            Progress::Waiting(l) | Progress::Done(l) => l.as_str(),
            Progress::Failed(m) => panic!("failed: {m}"),
        };
        assert_eq!(line, want);
        assert_eq!(
            matches!(got, Progress::Done(_)),
            available == 3 && replicas == 3
        );
    }
}

#[test]
fn unobserved_generation_waits_and_a_passed_deadline_fails() {
    let mut d = deployment(3);
    status(&mut d, 3, 3, 3);
    d.metadata.generation = 3;
    assert_eq!(
        deployment_progress(&d),
        Progress::Waiting("Waiting for deployment spec update to be observed...".into())
    );
    d.status.observed_generation = 3;
    d.status.conditions = vec![Condition::new(
        "Progressing",
        false,
        "ProgressDeadlineExceeded",
        "ReplicaSet \"web-abc\" has timed out progressing.",
    )];
    let Progress::Failed(msg) = deployment_progress(&d) else {
        panic!("should fail")
    };
    assert_eq!(msg, "deployment \"web\" exceeded its progress deadline: ReplicaSet \"web-abc\" has timed out progressing.");
}

#[test]
fn daemonset_status_lines() {
    let mut ds = DaemonSet::default();
    ds.metadata.name = "agent".into();
    ds.status.desired_number_scheduled = 3;
    ds.status.updated_number_scheduled = 2;
    assert_eq!(
        daemonset_progress(&ds).unwrap(),
        Progress::Waiting("Waiting for daemon set \"agent\" rollout to finish: 2 out of 3 new pods have been updated...".into())
    );
    ds.status.updated_number_scheduled = 3;
    ds.status.number_available = 3;
    assert!(matches!(
        daemonset_progress(&ds).unwrap(),
        Progress::Done(_)
    ));
    ds.spec.update_strategy.type_ = DaemonSetUpdateStrategyType::OnDelete;
    assert!(daemonset_progress(&ds).is_err());
}

/// A ReplicaSet of `web` at `revision` whose container runs `image`.
fn rs(revision: u64, image: &str, owner: &str) -> ReplicaSet {
    let mut r = ReplicaSet {
        metadata: meta(&format!("web-{revision}"), "default", 60),
        ..Default::default()
    };
    r.metadata
        .annotations
        .insert(REVISION.into(), revision.to_string());
    r.metadata.owner_references = vec![OwnerReference {
        api_version: "edge.dev/v1".into(),
        kind: "Deployment".into(),
        name: "web".into(),
        uid: owner.into(),
        controller: true,
        block_owner_deletion: true,
    }];
    r.spec.template = deployment(1).spec.template;
    r.spec.template.spec.containers[0].image = image.into();
    r.spec
        .template
        .metadata
        .labels
        .insert(TEMPLATE_HASH.into(), format!("h{revision}"));
    r
}

#[test]
fn history_lists_owned_revisions_in_order_with_causes() {
    let mut d = deployment(3);
    let mut second = rs(2, "v2", "d-uid");
    second
        .metadata
        .annotations
        .insert(CHANGE_CAUSE.into(), "edgectl apply -f web.yaml".into());
    let all = vec![
        second,
        rs(1, "v1", "d-uid"),
        rs(3, "v3", "d-uid"),
        rs(7, "v9", "someone-else"),
    ];
    // The current revision's ReplicaSet has no cause of its own: the Deployment's is shown.
    d.metadata.annotations.insert(REVISION.into(), "3".into());
    d.metadata
        .annotations
        .insert(CHANGE_CAUSE.into(), "to v3".into());
    assert_eq!(
        history(&d, &all),
        vec![
            (1, "<none>".to_string()),
            (2, "edgectl apply -f web.yaml".to_string()),
            (3, "to v3".to_string()),
        ]
    );
}

#[test]
fn undo_goes_to_the_previous_revision_without_the_hash_label() {
    let mut d = deployment(3);
    d.metadata.annotations.insert(REVISION.into(), "2".into());
    d.metadata
        .annotations
        .insert(CHANGE_CAUSE.into(), "to v2".into());
    let mut first = rs(1, "v1", "d-uid");
    first
        .metadata
        .annotations
        .insert(CHANGE_CAUSE.into(), "to v1".into());
    let all = vec![first, rs(2, "v2", "d-uid")];
    let Undo::RollBack(next) = plan_undo(&d, &all, None).unwrap() else {
        panic!("should roll back")
    };
    assert_eq!(next.spec.template.spec.containers[0].image, "v1");
    assert!(!next
        .spec
        .template
        .metadata
        .labels
        .contains_key(TEMPLATE_HASH));
    assert_eq!(next.spec.template.metadata.labels["app"], "web");
    // The revision stays the Deployment's; the change cause comes from the old revision.
    assert_eq!(next.metadata.annotations[REVISION], "2");
    assert_eq!(next.metadata.annotations[CHANGE_CAUSE], "to v1");
    assert_eq!(next.spec.replicas, Some(3));

    assert_eq!(plan_undo(&d, &all, Some(2)).unwrap(), Undo::Skip(2));
    let e = plan_undo(&d, &all, Some(5)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to find specified revision 5 in history"
    );
    let e = plan_undo(&d, &all[1..], None).unwrap_err();
    assert!(e.to_string().contains("no previous revision"), "{e}");
    d.spec.paused = true;
    assert!(plan_undo(&d, &all, None)
        .unwrap_err()
        .to_string()
        .contains("paused"));
}

#[test]
fn restart_stamps_the_template() {
    let mut d = deployment(1);
    restart(&mut d.spec.template, crate::cli::testutil::now());
    assert_eq!(
        d.spec.template.metadata.annotations[RESTARTED_AT],
        "2025-06-01T12:00:00Z"
    );
}
