//! The arithmetic of a Deployment's strategies over its ReplicaSets' sizes, as Kubernetes'
//! deployment controller does it: which ReplicaSet gets how many replicas next.

use std::collections::BTreeMap;

/// What the rollout needs to know of one ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RsView {
    pub name: String,
    /// spec.replicas.
    pub replicas: i32,
    /// Pods that run or will run (not being deleted, not finished).
    pub active: i32,
    /// Active pods ready for minReadySeconds.
    pub available: i32,
    /// Pods not finished, including those being deleted (Recreate waits for them).
    pub running: i32,
    pub revision: i64,
}

impl RsView {
    /// Pods this ReplicaSet may have: pods it has not yet deleted count until they are gone.
    fn size(&self) -> i32 {
        self.replicas.max(self.active)
    }

    /// Available pods it will keep: those beyond spec.replicas are about to be deleted.
    fn kept_available(&self) -> i32 {
        self.available.min(self.replicas)
    }
}

/// New replica counts by ReplicaSet name.
pub type Scales = BTreeMap<String, i32>;

/// maxSurge and maxUnavailable resolved against `desired`, as Kubernetes: surge rounds up,
/// unavailable rounds down, and both zero becomes unavailable 1 so a rollout can progress.
pub fn resolve_bounds(
    desired: i32,
    surge: Option<&edge_api::IntOrString>,
    unavailable: Option<&edge_api::IntOrString>,
) -> (i32, i32) {
    let quarter = edge_api::IntOrString::String("25%".into());
    let s = surge
        .unwrap_or(&quarter)
        .scaled_value(desired, true)
        .unwrap_or(1);
    let u = unavailable
        .unwrap_or(&quarter)
        .scaled_value(desired, false)
        .unwrap_or(0);
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

/// The size a new ReplicaSet starts at or grows to under RollingUpdate: up to `desired`, without
/// the total going over `desired + surge`.
pub fn new_rs_replicas(desired: i32, surge: i32, new: Option<&RsView>, old: &[RsView]) -> i32 {
    let current_new = new.map_or(0, |n| n.replicas);
    let total: i32 = old.iter().map(RsView::size).sum::<i32>() + new.map_or(0, RsView::size);
    let room = (desired + surge - total).max(0);
    current_new + room.min((desired - current_new).max(0))
}

/// One RollingUpdate step: first grow (or shrink) the new ReplicaSet, else shrink old ones —
/// unhealthy replicas first, then healthy ones while at least `desired - unavailable` stay
/// available. Old ReplicaSets are taken in `old`'s order (oldest first).
pub fn rolling_step(
    desired: i32,
    surge: i32,
    unavailable: i32,
    new: &RsView,
    old: &[RsView],
) -> Scales {
    let mut scales = Scales::new();
    if new.replicas > desired {
        scales.insert(new.name.clone(), desired);
        return scales;
    }
    let grown = new_rs_replicas(desired, surge, Some(new), old);
    if grown > new.replicas {
        scales.insert(new.name.clone(), grown);
        return scales;
    }
    if old.iter().map(RsView::size).sum::<i32>() == 0 {
        return scales;
    }
    let min_available = desired - unavailable;
    let all: i32 = old.iter().map(|r| r.replicas).sum::<i32>() + new.replicas;
    let new_unavailable = (new.replicas - new.kept_available()).max(0);
    let mut budget = all - min_available - new_unavailable;
    let mut sizes: Vec<i32> = old.iter().map(|r| r.replicas).collect();
    // Unhealthy old replicas go first: removing them costs no availability.
    for (i, r) in old.iter().enumerate() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (sizes[i] - r.kept_available()).max(0).min(budget);
        sizes[i] -= unhealthy;
        budget -= unhealthy;
    }
    let available: i32 = old
        .iter()
        .zip(&sizes)
        .map(|(r, s)| r.available.min(*s))
        .sum::<i32>()
        + new.kept_available();
    let mut healthy_budget = (available - min_available).max(0);
    for size in sizes.iter_mut() {
        if healthy_budget <= 0 {
            break;
        }
        let down = (*size).min(healthy_budget);
        *size -= down;
        healthy_budget -= down;
    }
    for (r, s) in old.iter().zip(sizes) {
        if s != r.replicas {
            scales.insert(r.name.clone(), s);
        }
    }
    scales
}

/// One Recreate step: old ReplicaSets to zero; once none of their pods runs, the new one to
/// `desired`. `None` for `new` means it does not exist yet (the caller creates it at the size
/// returned under the empty name).
pub fn recreate_step(desired: i32, new: Option<&RsView>, old: &[RsView]) -> Scales {
    let mut scales = Scales::new();
    for r in old.iter().filter(|r| r.replicas > 0) {
        scales.insert(r.name.clone(), 0);
    }
    if !scales.is_empty() || old.iter().any(|r| r.running > 0) {
        return scales;
    }
    match new {
        Some(n) if n.replicas != desired => {
            scales.insert(n.name.clone(), desired);
        }
        Some(_) => {}
        None => {
            scales.insert(String::new(), desired);
        }
    }
    scales
}

/// Scaling while paused (no rollout): the difference is spread over the ReplicaSets that have
/// replicas in proportion to their sizes, leftovers to the newest, as Kubernetes does.
pub fn proportional_scale(desired: i32, rss: &[RsView]) -> Scales {
    let mut scales = Scales::new();
    let sized: Vec<&RsView> = rss.iter().filter(|r| r.replicas > 0).collect();
    let total: i32 = sized.iter().map(|r| r.replicas).sum();
    if total == desired {
        return scales;
    }
    let Some(newest) = rss.iter().max_by_key(|r| r.revision) else {
        return scales;
    };
    if sized.len() <= 1 {
        let target = sized.first().copied().unwrap_or(newest);
        scales.insert(target.name.clone(), desired);
        return scales;
    }
    let mut assigned = 0;
    for r in &sized {
        let share = (i64::from(r.replicas) * i64::from(desired) / i64::from(total)) as i32;
        scales.insert(r.name.clone(), share);
        assigned += share;
    }
    *scales.entry(newest.name.clone()).or_insert(0) += desired - assigned;
    scales.retain(|name, n| rss.iter().any(|r| &r.name == name && r.replicas != *n));
    scales
}

/// The ReplicaSets beyond the history limit: old, empty, oldest revision first.
pub fn history_to_delete(old: &[RsView], limit: i32) -> Vec<String> {
    let mut empty: Vec<&RsView> = old
        .iter()
        .filter(|r| r.replicas == 0 && r.running == 0)
        .collect();
    empty.sort_by_key(|r| r.revision);
    let extra = empty.len().saturating_sub(limit.max(0) as usize);
    empty.iter().take(extra).map(|r| r.name.clone()).collect()
}
