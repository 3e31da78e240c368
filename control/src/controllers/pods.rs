//! What every pod-owning controller needs: which pods count (active, ready, available), which to
//! delete first, stamping a pod out of a template, deleting a pod, and claiming orphans.

use super::{controller_uid, owner_ref, Action, World};
use chrono::{DateTime, Utc};
use edge_api::meta::{condition, ObjectMeta};
use edge_api::object::{Kind, Object};
use edge_api::scheduling::LabelSelector;
use edge_api::{Pod, PodPhase, PodTemplateSpec};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

/// A pod that runs or will run: not being deleted and not finished.
pub fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && !p.status.phase.is_terminal()
}

pub fn is_ready(p: &Pod) -> bool {
    condition(&p.status.conditions, "Ready").is_some_and(|c| c.is_true())
}

/// When the pod last became ready.
fn ready_since(p: &Pod) -> Option<DateTime<Utc>> {
    condition(&p.status.conditions, "Ready")
        .filter(|c| c.is_true())
        .and_then(|c| c.last_transition_time)
}

/// How long until a ready pod counts as available (ready for `min_ready_seconds`): `Some(0)`
/// when it already does, `None` when it is not ready at all.
pub fn until_available(p: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> Option<Duration> {
    if !is_ready(p) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    let since = ready_since(p).unwrap_or(now);
    let at = since + chrono::Duration::seconds(i64::from(min_ready_seconds));
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

pub fn is_available(p: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    until_available(p, min_ready_seconds, now) == Some(Duration::ZERO)
}

/// Counts over a set of pods, as the workload statuses report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub active: i32,
    pub ready: i32,
    pub available: i32,
    /// The soonest a ready-but-not-yet-available pod becomes available.
    pub next_available: Option<Duration>,
}

pub fn count<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> Counts {
    let mut c = Counts::default();
    for p in pods.into_iter().filter(|p| is_active(p)) {
        c.active += 1;
        match until_available(p, min_ready_seconds, now) {
            None => {}
            Some(Duration::ZERO) => {
                c.ready += 1;
                c.available += 1;
            }
            Some(d) => {
                c.ready += 1;
                c.next_available = Some(c.next_available.map_or(d, |n| n.min(d)));
            }
        }
    }
    c
}

/// Orders pods so that the cheapest to lose come first, as Kubernetes' ActivePods: unscheduled,
/// then pending, not ready, ready for less time, restarted more, and newer.
pub fn sort_for_deletion(pods: &mut [&Pod]) {
    let phase_rank = |p: &Pod| match p.status.phase {
        PodPhase::Pending => 0,
        PodPhase::Unknown => 1,
        PodPhase::Running => 2,
        _ => 3,
    };
    pods.sort_by_key(|p| {
        (
            p.spec.node_name.is_some(),
            phase_rank(p),
            is_ready(p),
            Reverse(ready_since(p)),
            Reverse(p.restarts()),
            Reverse(p.metadata.creation_timestamp),
            p.metadata.name.clone(),
        )
    });
}

/// A pod made from `template` for the owner, in the owner's namespace. The runtime names it
/// `<owner>-<5 random characters>`.
pub fn from_template(
    template: &PodTemplateSpec,
    owner_kind: Kind,
    owner: &ObjectMeta,
    extra_labels: &BTreeMap<String, String>,
) -> Pod {
    let mut pod = Pod {
        api_version: edge_api::API_VERSION.into(),
        spec: template.spec.clone(),
        ..Default::default()
    };
    pod.metadata.namespace = owner.namespace.clone();
    pod.metadata.labels = template.metadata.labels.clone();
    pod.metadata
        .labels
        .extend(extra_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    pod.metadata.annotations = template.metadata.annotations.clone();
    pod.metadata.owner_references = vec![owner_ref(owner_kind, owner)];
    pod
}

/// The create action for a pod from `from_template`, recording SuccessfulCreate on the owner.
pub fn create(pod: Pod, owner_kind: Kind, owner: &ObjectMeta, component: &'static str) -> Action {
    let about = super::object_ref(owner_kind, owner);
    Action::Create {
        object: Object::Pod(pod),
        generate_name: Some(format!("{}-", owner.name)),
        event: Some(super::EventNote::normal(
            &about,
            component,
            "SuccessfulCreate",
            "Created pod: {name}",
        )),
    }
}

/// Deletes a pod the way the API does: one running on a live node is marked terminating so
/// its agent stops it first; anything else (unbound, finished, node gone) is removed now.
pub fn delete(p: &Pod, world: &World, now: DateTime<Utc>) -> Action {
    let on_live_node = p
        .spec
        .node_name
        .as_deref()
        .is_some_and(|n| world.node(n).is_some());
    if on_live_node && !p.status.phase.is_terminal() {
        let mut marked = p.clone();
        if marked.metadata.deletion_timestamp.is_none() {
            marked.metadata.deletion_timestamp = Some(now);
        }
        return Action::Update(Object::Pod(marked));
    }
    Action::Delete {
        key: Object::Pod(p.clone()).key(),
        resource_version: p.metadata.resource_version,
    }
}

/// Kubernetes' pod claiming: the pods `owner` controls and that still match `selector`, plus
/// orphans that match (adopted) — and actions that adopt those orphans and release controlled
/// pods that no longer match. The adoptions come first so a failed one stops the rest.
pub fn claim<'a>(
    owner_kind: Kind,
    owner: &ObjectMeta,
    selector: &LabelSelector,
    world: &'a World,
) -> (Vec<&'a Pod>, Vec<Action>) {
    let mut owned = Vec::new();
    let mut actions = Vec::new();
    let deleting = owner.deletion_timestamp.is_some();
    for p in world
        .pods
        .iter()
        .filter(|p| p.metadata.namespace == owner.namespace)
    {
        let matches = selector.matches(&p.metadata.labels);
        match controller_uid(&p.metadata) {
            Some(uid) if uid == owner.uid => {
                if matches || deleting {
                    owned.push(p);
                } else {
                    let mut released = p.clone();
                    released
                        .metadata
                        .owner_references
                        .retain(|r| r.uid != owner.uid);
                    actions.push(Action::Update(Object::Pod(released)));
                }
            }
            None if matches && !deleting && is_active(p) => {
                let mut adopted = p.clone();
                adopted
                    .metadata
                    .owner_references
                    .push(owner_ref(owner_kind, owner));
                actions.insert(0, Action::Update(Object::Pod(adopted)));
                owned.push(p);
            }
            _ => {}
        }
    }
    (owned, actions)
}
