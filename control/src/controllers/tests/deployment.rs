//! Deployment decisions, and rollouts played forward with the ReplicaSet controller.

use super::sim::Sim;
use super::*;
use crate::controllers::deployment::{reconcile, DeploymentController};
use crate::controllers::replicaset::ReplicaSetController;
use crate::controllers::{template_hash, POD_TEMPLATE_HASH, REVISION};
use edge_api::apps::DeploymentStrategyType;
use edge_api::meta::condition;
use edge_api::object::ObjectKey;
use edge_api::IntOrString;

/// The ReplicaSet the Deployment makes for `image`, with `replicas` and `revision`.
fn rs_for(d: &Deployment, image: char, replicas: i32, revision: i64) -> ReplicaSet {
    let t = template(&d.metadata.name, image);
    let hash = template_hash(&t);
    let mut rs = replica_set(
        &format!("{}-{hash}", d.metadata.name),
        replicas,
        &d.metadata.name,
    );
    rs.spec.template = t;
    rs.spec
        .template
        .metadata
        .labels
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    rs.spec
        .selector
        .match_labels
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    rs.metadata.labels = rs.spec.template.metadata.labels.clone();
    rs.metadata
        .annotations
        .insert(REVISION.into(), revision.to_string());
    rs.metadata.owner_references = vec![owner_ref(Kind::Deployment, &d.metadata)];
    rs
}

/// `n` running pods of `rs`, ready since `since` (None: not ready).
fn pods_of(rs: &ReplicaSet, n: usize, since: Option<DateTime<Utc>>) -> Vec<Object> {
    (0..n)
        .map(|i| {
            let name = format!("{}-{i}", rs.metadata.name);
            let mut p = pod(
                &name,
                Kind::ReplicaSet,
                &rs.metadata,
                Some("n1"),
                PodPhase::Running,
            );
            p.metadata.labels = rs.spec.template.metadata.labels.clone();
            Object::Pod(match since {
                Some(t) => ready(p, t),
                None => p,
            })
        })
        .collect()
}

fn updated_deployment(actions: &[Action]) -> Deployment {
    match updated(actions, Kind::Deployment) {
        Some(Object::Deployment(d)) => d.clone(),
        other => panic!("no deployment update: {other:?} in {actions:?}"),
    }
}

fn progressing(d: &Deployment) -> (String, String) {
    let c = condition(&d.status.conditions, "Progressing").expect("Progressing condition");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn the_first_replica_set_is_named_by_the_template_hash() {
    let d = deployment("web", 3, 'a');
    let out = reconcile(&d, &world([Object::Deployment(d.clone())]), t0());
    let made = created(&out.actions);
    let Some(Object::ReplicaSet(rs)) = made.first() else {
        panic!("{:?}", out.actions)
    };
    let hash = template_hash(&d.spec.template);
    assert_eq!(hash.len(), 10);
    assert_eq!(rs.metadata.name, format!("web-{hash}"));
    assert_eq!(rs.spec.replicas, Some(3));
    assert_eq!(rs.spec.template.metadata.labels[POD_TEMPLATE_HASH], hash);
    assert_eq!(rs.metadata.labels[POD_TEMPLATE_HASH], hash);
    assert_eq!(rs.spec.selector.match_labels[POD_TEMPLATE_HASH], hash);
    assert_eq!(rs.spec.selector.match_labels["app"], "web");
    assert_eq!(rs.metadata.annotations[REVISION], "1");
    assert_eq!(rs.metadata.owner_references[0].uid, "uid-web");
    let du = updated_deployment(&out.actions);
    assert_eq!(du.metadata.annotations[REVISION], "1");
    assert_eq!(
        progressing(&du),
        ("True".into(), "NewReplicaSetCreated".into())
    );
    assert_eq!(du.status.observed_generation, 1);
    assert_eq!(event_reasons(&out.actions), ["ScalingReplicaSet"]);
}

#[test]
fn a_new_template_gets_the_next_revision_at_the_surge_size() {
    let mut d = deployment("web", 3, 'b');
    d.metadata.annotations.insert(REVISION.into(), "1".into());
    let v1 = rs_for(&d, 'a', 3, 1);
    let mut objects = vec![
        Object::Deployment(d.clone()),
        Object::ReplicaSet(v1.clone()),
    ];
    objects.extend(pods_of(&v1, 3, Some(t0())));
    let out = reconcile(&d, &world(objects), t0() + secs(60));
    let Some(Object::ReplicaSet(v2)) = created(&out.actions).first().copied() else {
        panic!("{:?}", out.actions)
    };
    assert_eq!(v2.metadata.annotations[REVISION], "2");
    // 25% of 3 rounds up to a surge of 1.
    assert_eq!(v2.spec.replicas, Some(1));
    assert!(
        updated(&out.actions, Kind::ReplicaSet).is_none(),
        "old untouched this step"
    );
    assert_eq!(
        updated_deployment(&out.actions).metadata.annotations[REVISION],
        "2"
    );
}

#[test]
fn going_back_to_an_old_template_reuses_its_replica_set_as_the_newest_revision() {
    let mut d = deployment("web", 3, 'a');
    d.metadata.annotations.insert(REVISION.into(), "2".into());
    let v1 = rs_for(&d, 'a', 0, 1);
    let v2 = rs_for(&d, 'b', 3, 2);
    let mut objects = vec![
        Object::Deployment(d.clone()),
        Object::ReplicaSet(v1.clone()),
        Object::ReplicaSet(v2.clone()),
    ];
    objects.extend(pods_of(&v2, 3, Some(t0())));
    let out = reconcile(&d, &world(objects), t0() + secs(60));
    assert!(created(&out.actions).is_empty());
    let rs_updates: Vec<&ReplicaSet> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Update(Object::ReplicaSet(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rs_updates.len(), 1, "revision and scale in one write");
    assert_eq!(rs_updates[0].metadata.name, v1.metadata.name);
    assert_eq!(rs_updates[0].metadata.annotations[REVISION], "3");
    assert_eq!(rs_updates[0].spec.replicas, Some(1));
    let du = updated_deployment(&out.actions);
    assert_eq!(du.metadata.annotations[REVISION], "3");
    assert_eq!(
        progressing(&du),
        ("True".into(), "FoundNewReplicaSet".into())
    );
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll() {
    let mut d = deployment("web", 5, 'b');
    d.spec.paused = true;
    let v1 = rs_for(&d, 'a', 3, 1);
    let mut objects = vec![
        Object::Deployment(d.clone()),
        Object::ReplicaSet(v1.clone()),
    ];
    objects.extend(pods_of(&v1, 3, Some(t0())));
    let out = reconcile(&d, &world(objects), t0());
    assert!(
        created(&out.actions).is_empty(),
        "no new ReplicaSet while paused"
    );
    let Some(Object::ReplicaSet(r)) = updated(&out.actions, Kind::ReplicaSet) else {
        panic!("{:?}", out.actions)
    };
    assert_eq!(r.spec.replicas, Some(5));
    let du = updated_deployment(&out.actions);
    assert_eq!(
        progressing(&du),
        ("Unknown".into(), "DeploymentPaused".into())
    );
}

#[test]
fn a_stalled_rollout_fails_its_progress_deadline() {
    let mut d = deployment("web", 3, 'b');
    d.spec.progress_deadline_seconds = Some(10);
    let v1 = rs_for(&d, 'a', 2, 1);
    let v2 = rs_for(&d, 'b', 2, 2);
    let mut c = Condition::new("Progressing", true, "ReplicaSetUpdated", "");
    c.last_transition_time = Some(t0());
    d.status.conditions.push(c);
    d.status.replicas = 4;
    d.status.updated_replicas = 2;
    d.status.available_replicas = 2;
    let mut objects = vec![
        Object::Deployment(d.clone()),
        Object::ReplicaSet(v1.clone()),
        Object::ReplicaSet(v2.clone()),
    ];
    objects.extend(pods_of(&v1, 2, Some(t0() - secs(100))));
    objects.extend(pods_of(&v2, 2, None));
    let w = world(objects);

    let early = reconcile(&d, &w, t0() + secs(4));
    assert_eq!(early.requeue_after, Some(std::time::Duration::from_secs(6)));
    if let Some(Object::Deployment(du)) = updated(&early.actions, Kind::Deployment) {
        assert_eq!(progressing(du).0, "True");
    }
    let late = reconcile(&d, &w, t0() + secs(11));
    let du = updated_deployment(&late.actions);
    let cond = condition(&du.status.conditions, "Progressing").expect("cond");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "ProgressDeadlineExceeded")
    );
    assert!(
        cond.message.contains("has timed out progressing"),
        "{}",
        cond.message
    );
    // 2 of 3 available with maxUnavailable 0 (25% of 3, rounded down).
    let avail = condition(&du.status.conditions, "Available").expect("Available");
    assert_eq!(avail.status, "False");
    assert!(created(&late.actions).is_empty());
    assert!(
        updated(&late.actions, Kind::ReplicaSet).is_none(),
        "stays stuck, within bounds"
    );
}

#[test]
fn a_finished_rollout_reports_new_replica_set_available_and_prunes_history() {
    let mut d = deployment("web", 2, 'e');
    d.spec.revision_history_limit = Some(2);
    let mut objects = vec![Object::Deployment(d.clone())];
    let old: Vec<ReplicaSet> = ['a', 'b', 'c', 'd']
        .iter()
        .zip(1..)
        .map(|(img, rev)| rs_for(&d, *img, 0, rev))
        .collect();
    objects.extend(old.iter().cloned().map(Object::ReplicaSet));
    let new = rs_for(&d, 'e', 2, 5);
    objects.push(Object::ReplicaSet(new.clone()));
    objects.extend(pods_of(&new, 2, Some(t0())));
    let out = reconcile(&d, &world(objects), t0() + secs(5));
    let deleted: Vec<&str> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { key, .. } => Some(key.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        deleted,
        [old[0].metadata.name.as_str(), old[1].metadata.name.as_str()]
    );
    let du = updated_deployment(&out.actions);
    assert_eq!(
        progressing(&du),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let s = &du.status;
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
        (2, 2, 2, 2, 0)
    );
    assert!(condition(&s.conditions, "Available").is_some_and(|c| c.is_true()));
}

#[test]
fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let mut d = deployment("web", 3, 'b');
    d.spec.strategy.type_ = DeploymentStrategyType::Recreate;
    let v1 = rs_for(&d, 'a', 3, 1);
    let mut sim = Sim::new(
        [
            namespace("default"),
            Object::Node(node("n1")),
            Object::Deployment(d),
            Object::ReplicaSet(v1.clone()),
        ]
        .into_iter()
        .chain(pods_of(&v1, 3, Some(t0()))),
    );
    let (dc, rc) = (DeploymentController, ReplicaSetController);
    for _ in 0..12 {
        sim.run(&dc);
        sim.run(&rc);
        let v1_running = sim
            .pods()
            .filter(|p| {
                p.metadata.labels.get(POD_TEMPLATE_HASH)
                    == v1.metadata.labels.get(POD_TEMPLATE_HASH)
            })
            .count();
        let v2 = sim.pods().count() - v1_running;
        assert!(v1_running == 0 || v2 == 0, "old and new never run together");
        // Slow agents: one pod stops per step.
        sim.agents("n1", 10, 1);
    }
    assert_eq!(sim.pods().count(), 3);
    assert!(sim
        .pods()
        .all(|p| p.spec.containers[0].image.ends_with('b')));
}

/// Plays a rolling update from image a to b with agents that start `start` and stop `stop`
/// pods per step, asserting the bounds at every step; returns the final deployment.
fn roll(surge: i32, unavailable: i32, start: usize, stop: usize) -> Deployment {
    let mut d = deployment("web", 4, 'a');
    d.spec.strategy.rolling_update = Some(edge_api::apps::RollingUpdate {
        max_surge: Some(IntOrString::Int(surge)),
        max_unavailable: Some(IntOrString::Int(unavailable)),
    });
    let key = ObjectKey::new(Kind::Deployment, "default", "web");
    let mut sim = Sim::new([
        namespace("default"),
        Object::Node(node("n1")),
        Object::Deployment(d.clone()),
    ]);
    let (dc, rc) = (DeploymentController, ReplicaSetController);
    for _ in 0..10 {
        sim.run(&dc);
        sim.run(&rc);
        sim.agents("n1", 10, 10);
    }
    assert_eq!(sim.pods().count(), 4, "initial rollout");
    let Some(Object::Deployment(mut stored)) = sim.get(&key).cloned() else {
        panic!("deployment")
    };
    stored.spec.template = template("web", 'b');
    stored.metadata.generation += 1;
    sim.apply(&[Action::Update(Object::Deployment(stored))])
        .expect("update");
    for step in 0..60 {
        for c in [&dc as &dyn crate::controllers::Controller, &rc] {
            sim.run(c);
            let active = sim
                .pods()
                .filter(|p| crate::controllers::pods::is_active(p))
                .count() as i32;
            let available = sim
                .pods()
                .filter(|p| {
                    crate::controllers::pods::is_active(p) && crate::controllers::pods::is_ready(p)
                })
                .count() as i32;
            assert!(
                active <= 4 + surge,
                "step {step}: {active} pods > 4 + {surge}"
            );
            assert!(
                available >= 4 - unavailable,
                "step {step}: {available} available < 4 - {unavailable}"
            );
        }
        sim.agents("n1", start, stop);
        sim.advance(1);
    }
    assert!(sim
        .pods()
        .all(|p| p.spec.containers[0].image.ends_with('b')));
    assert_eq!(sim.pods().count(), 4);
    match sim.get(&key) {
        Some(Object::Deployment(d)) => d.clone(),
        _ => panic!("deployment gone"),
    }
}

#[test]
fn rolling_updates_stay_within_bounds_at_every_step() {
    for (surge, unavailable, start, stop) in [
        (1, 1, 10, 10),
        (1, 0, 1, 1),
        (0, 1, 1, 1),
        (2, 2, 1, 10),
        (1, 1, 2, 1),
    ] {
        let d = roll(surge, unavailable, start, stop);
        let s = &d.status;
        assert_eq!(
            (s.replicas, s.updated_replicas, s.available_replicas),
            (4, 4, 4),
            "surge {surge} unavailable {unavailable}"
        );
        assert_eq!(
            progressing(&d),
            ("True".into(), "NewReplicaSetAvailable".into())
        );
        assert_eq!(d.metadata.annotations[REVISION], "2");
    }
}
