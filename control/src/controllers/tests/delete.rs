//! What the API's delete writes, by kind and propagation policy.

use super::*;
use crate::apiserver::objects::plan_delete;
use crate::controllers::{FOREGROUND, ORPHAN};
use crate::store::{Command, Precondition};
use edge_api::wire::{ErrorCode, Propagation};

fn marked(cmd: Option<Command>) -> Object {
    match cmd {
        Some(Command::Put {
            object,
            precondition: Precondition::Revision(1),
        }) => object,
        other => panic!("expected a marking write, got {other:?}"),
    }
}

fn removes(cmd: &Option<Command>) -> bool {
    matches!(
        cmd,
        Some(Command::Delete {
            precondition: Precondition::Revision(1),
            ..
        })
    )
}

#[test]
fn propagation_decides_between_now_and_finalizers() {
    let d = Object::Deployment(deployment("web", 1, 'a'));
    let plan = |p| plan_delete(&d, false, false, p, true, t0()).expect("plan");
    assert!(removes(&plan(Propagation::Background)));
    for (p, f) in [
        (Propagation::Foreground, FOREGROUND),
        (Propagation::Orphan, ORPHAN),
    ] {
        let o = marked(plan(p));
        assert_eq!(o.meta().finalizers, [f]);
        assert_eq!(o.meta().deletion_timestamp, Some(t0()));
    }
    // Nothing depends on it: nothing to wait for or to keep, so it goes now.
    for p in [Propagation::Foreground, Propagation::Orphan] {
        assert!(removes(
            &plan_delete(&d, false, false, p, false, t0()).expect("plan")
        ));
    }
    // Already going: nothing more to write.
    let mut going = d.clone();
    going.meta_mut().deletion_timestamp = Some(t0());
    assert!(
        plan_delete(&going, false, false, Propagation::Background, true, t0())
            .expect("plan")
            .is_none()
    );
    // Foreign finalizers hold even a background delete.
    let mut held = d.clone();
    held.meta_mut().finalizers.push("example.com/x".into());
    let o = marked(
        plan_delete(&held, false, false, Propagation::Background, false, t0()).expect("plan"),
    );
    assert_eq!(o.meta().finalizers, ["example.com/x"]);
}

#[test]
fn pods_stop_on_their_node_first_and_namespaces_terminate() {
    let rs = replica_set("r", 1, "x");
    let running = Object::Pod(pod(
        "p",
        Kind::ReplicaSet,
        &rs.metadata,
        Some("n1"),
        PodPhase::Running,
    ));
    let pending = Object::Pod(pod(
        "q",
        Kind::ReplicaSet,
        &rs.metadata,
        None,
        PodPhase::Pending,
    ));
    let bg = Propagation::Background;
    let o = marked(
        plan_delete(&running, false, false, Propagation::Foreground, false, t0()).expect("plan"),
    );
    assert!(o.meta().finalizers.is_empty(), "pods get no finalizers");
    assert!(removes(
        &plan_delete(&running, true, false, bg, false, t0()).expect("force")
    ));
    assert!(removes(
        &plan_delete(&pending, false, false, bg, false, t0()).expect("unbound")
    ));
    let e = plan_delete(&running, false, true, bg, false, t0()).expect_err("node");
    assert_eq!(e.code, ErrorCode::Forbidden);
    let mut stopping = running.clone();
    stopping.meta_mut().deletion_timestamp = Some(t0());
    assert!(removes(
        &plan_delete(&stopping, false, true, bg, false, t0()).expect("node removes")
    ));

    let ns = marked(plan_delete(&namespace("team"), false, false, bg, false, t0()).expect("ns"));
    match ns {
        Object::Namespace(n) => {
            assert_eq!(n.status.phase, "Terminating");
            assert!(n.metadata.finalizers.is_empty());
        }
        other => panic!("{other:?}"),
    }
}
