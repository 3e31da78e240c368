//! DaemonSet: one pod on every node the pod may run on (the scheduler's node affinity and taint
//! filters decide), bound directly with spec.nodeName; nodes joining and leaving are followed,
//! and a changed template rolls node by node within maxUnavailable.

use super::pods::{self, is_active, is_available, is_ready};
use super::{
    all_keys, object_ref, own_key, owner_key, template_hash, Action, Controller, EventNote,
    Reconciled, World, CONTROLLER_REVISION_HASH,
};
use crate::scheduler::{
    NodeAffinity, NodePorts, NodeResourcesFit, Plugin, Snapshot, TaintToleration,
};
use chrono::{DateTime, Utc};
use edge_api::apps::{DaemonSet, DaemonSetUpdateStrategyType};
use edge_api::object::{Kind, ObjectKey};
use edge_api::scheduling::{TaintEffect, Toleration, TolerationOperator};
use edge_api::wire::WatchEvent;
use edge_api::{Node, Pod};
use std::collections::{BTreeMap, HashMap};

const COMPONENT: &str = "daemonset-controller";

pub struct DaemonSetController;

impl Controller for DaemonSetController {
    fn name(&self) -> &'static str {
        "daemonset"
    }

    fn reads(&self) -> &'static [Kind] {
        &[Kind::Namespace, Kind::Node, Kind::Pod, Kind::DaemonSet]
    }

    fn keys_for(&self, ev: &WatchEvent, out: &mut Vec<ObjectKey>) {
        own_key(ev, Kind::DaemonSet, out);
        match ev.object.kind() {
            Kind::Pod => owner_key(ev, Kind::DaemonSet, out),
            // A node joining, leaving or changing may change where every DaemonSet runs.
            Kind::Node => out.push(super::runtime::every(Kind::DaemonSet)),
            _ => {}
        }
    }

    fn primaries(&self, world: &World) -> Vec<ObjectKey> {
        all_keys(world, Kind::DaemonSet)
    }

    fn reconcile(&self, key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled {
        match world.daemon_set(key) {
            Some(ds) => reconcile(ds, world, now),
            None => Reconciled::default(),
        }
    }
}

/// The tolerations Kubernetes gives every daemon pod, so that it stays on (and lands on) nodes
/// that are not ready, unreachable or cordoned.
pub fn daemon_tolerations() -> Vec<Toleration> {
    let t = |key: &str, effect| Toleration {
        key: key.into(),
        operator: TolerationOperator::Exists,
        effect: Some(effect),
        ..Default::default()
    };
    vec![
        t(
            edge_api::scheduling::TAINT_NOT_READY,
            TaintEffect::NoExecute,
        ),
        t("node.kubernetes.io/unreachable", TaintEffect::NoExecute),
        t(
            edge_api::scheduling::TAINT_UNSCHEDULABLE,
            TaintEffect::NoSchedule,
        ),
        t("node.kubernetes.io/disk-pressure", TaintEffect::NoSchedule),
        t(
            "node.kubernetes.io/memory-pressure",
            TaintEffect::NoSchedule,
        ),
        t("node.kubernetes.io/pid-pressure", TaintEffect::NoSchedule),
    ]
}

/// The pod the DaemonSet would run on `node` (unnamed; the runtime names it).
fn daemon_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let labels = BTreeMap::from([(CONTROLLER_REVISION_HASH.to_string(), hash.to_string())]);
    let mut pod = pods::from_template(&ds.spec.template, Kind::DaemonSet, &ds.metadata, &labels);
    for t in daemon_tolerations() {
        if !pod.spec.tolerations.contains(&t) {
            pod.spec.tolerations.push(t);
        }
    }
    pod.spec.node_name = Some(node.to_string());
    pod
}

/// Where a daemon pod should run (node selector, required affinity, NoSchedule/NoExecute
/// taints), and whether it fits there now (resources, ports): the scheduler's own filters.
struct Placement {
    should_run: bool,
    misfit: Option<String>,
}

fn place(pod: &Pod, snap: &Snapshot, index: usize) -> Placement {
    let info = snap.node(index);
    let passes = |plugin: &dyn Plugin| match plugin.filter(pod, snap) {
        Some(f) => f.filter(&info).map_err(|r| r.into_owned()),
        None => Ok(()),
    };
    let should_run = passes(&NodeAffinity).is_ok() && passes(&TaintToleration).is_ok();
    let misfit = passes(&NodeResourcesFit)
        .and_then(|_| passes(&NodePorts))
        .err();
    Placement { should_run, misfit }
}

pub fn reconcile(ds: &DaemonSet, world: &World, now: DateTime<Utc>) -> Reconciled {
    let mut out = Reconciled::default();
    let meta = &ds.metadata;
    let about = object_ref(Kind::DaemonSet, meta);
    let hash = template_hash(&ds.spec.template);
    let (owned, claims) = pods::claim(Kind::DaemonSet, meta, &ds.spec.selector, world);
    out.actions.extend(claims);
    let mut by_node: HashMap<&str, Vec<&Pod>> = HashMap::new();
    let mut deletes: Vec<&Pod> = Vec::new();
    for p in owned.iter().copied() {
        match p.spec.node_name.as_deref() {
            Some(n) if world.node(n).is_some() => by_node.entry(n).or_default().push(p),
            // Its node is gone (or it was never bound): nothing will run it or remove it.
            _ => deletes.push(p),
        }
    }
    let snap = Snapshot::new(&world.nodes, &world.pods);
    let active_ns = world.namespace_active(&meta.namespace);
    let acting = meta.deletion_timestamp.is_none();
    let mut st = Tally::default();
    // Nodes whose only daemon pod is of an old template and available: rolling candidates.
    let mut old_available: Vec<&Pod> = Vec::new();
    for (i, node) in world.nodes.iter().enumerate() {
        let name = node.metadata.name.as_str();
        let proto = daemon_pod(ds, &hash, name);
        let placement = place(&proto, &snap, i);
        let here = by_node.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let mut running: Vec<&Pod> = here.iter().copied().filter(|p| is_active(p)).collect();
        // Finished daemon pods are replaced, as Kubernetes does with failed ones.
        deletes.extend(
            here.iter().filter(|p| {
                p.status.phase.is_terminal() && p.metadata.deletion_timestamp.is_none()
            }),
        );
        if !placement.should_run {
            st.misscheduled += i32::from(!running.is_empty());
            deletes.extend(running);
            continue;
        }
        st.desired += 1;
        // The oldest stays; extra pods (a lost response, a race) go.
        running.sort_by_key(|p| (p.metadata.creation_timestamp, p.metadata.name.clone()));
        if running.len() > 1 {
            deletes.extend(running.drain(1..));
        }
        match running.first() {
            None => {
                st.unavailable += 1;
                match (&placement.misfit, acting && active_ns) {
                    (Some(why), true) => out.actions.push(Action::Event(EventNote::warning(
                        &about,
                        COMPONENT,
                        "FailedPlacement",
                        &format!("failed to place pod on {name:?}: {why}"),
                    ))),
                    (None, true) => {
                        out.actions
                            .push(pods::create(proto, Kind::DaemonSet, meta, COMPONENT))
                    }
                    _ => {}
                }
            }
            Some(p) => {
                st.current += 1;
                let updated = p.metadata.labels.get(CONTROLLER_REVISION_HASH) == Some(&hash);
                st.updated += i32::from(updated);
                st.ready += i32::from(is_ready(p));
                let available = is_available(p, ds.spec.min_ready_seconds, now);
                st.available += i32::from(available);
                if let Some(d) = pods::until_available(p, ds.spec.min_ready_seconds, now) {
                    if !d.is_zero() {
                        out.requeue_within(d);
                    }
                }
                match (updated, available) {
                    (true, true) => {}
                    (true, false) => st.unavailable += 1,
                    // An old pod that is not available anyway can go at once.
                    (false, false) => {
                        st.unavailable += 1;
                        if rolling(ds) {
                            deletes.push(p);
                        }
                    }
                    (false, true) => old_available.push(p),
                }
            }
        }
    }
    if rolling(ds) {
        let max_unavailable = max_unavailable(ds, st.desired);
        let room = (max_unavailable - st.unavailable).max(0) as usize;
        deletes.extend(old_available.into_iter().take(room));
    }
    // A DaemonSet being deleted leaves its pods to the garbage collector.
    if acting {
        for p in deletes {
            out.actions.push(pods::delete(p, world, now));
            let msg = format!("Deleted pod: {}", p.metadata.name);
            out.actions.push(Action::Event(EventNote::normal(
                &about,
                COMPONENT,
                "SuccessfulDelete",
                &msg,
            )));
        }
    }
    let mut status = ds.status.clone();
    status.observed_generation = meta.generation;
    status.desired_number_scheduled = st.desired;
    status.current_number_scheduled = st.current;
    status.updated_number_scheduled = st.updated;
    status.number_ready = st.ready;
    status.number_available = st.available;
    status.number_unavailable = (st.desired - st.available).max(0);
    status.number_misscheduled = st.misscheduled;
    if status != ds.status {
        let mut updated = ds.clone();
        updated.status = status;
        out.actions
            .push(Action::Update(edge_api::Object::DaemonSet(updated)));
    }
    out
}

#[derive(Default)]
struct Tally {
    desired: i32,
    current: i32,
    updated: i32,
    ready: i32,
    available: i32,
    unavailable: i32,
    misscheduled: i32,
}

fn rolling(ds: &DaemonSet) -> bool {
    ds.spec.update_strategy.type_ == DaemonSetUpdateStrategyType::RollingUpdate
}

/// maxUnavailable of the nodes that should run the pod (1 when unset; rounded up; at least 1).
fn max_unavailable(ds: &DaemonSet, desired: i32) -> i32 {
    ds.spec
        .update_strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.max_unavailable.as_ref())
        .and_then(|v| v.scaled_value(desired, true).ok())
        .unwrap_or(1)
        .max(1)
}

/// Exposed for tests: whether `node` should run `ds`'s pod, by the scheduler's filters.
pub fn should_run_on(ds: &DaemonSet, node: &Node, all_nodes: &[Node], pods: &[Pod]) -> bool {
    let Some(i) = all_nodes
        .iter()
        .position(|n| n.metadata.name == node.metadata.name)
    else {
        return false;
    };
    let snap = Snapshot::new(all_nodes, pods);
    let proto = daemon_pod(ds, &template_hash(&ds.spec.template), &node.metadata.name);
    place(&proto, &snap, i).should_run
}
