//! Pure node-lifecycle decisions, as Kubernetes' node lifecycle controller makes them: when a
//! node's Ready condition turns Unknown (or back), which taints follow from it, how disrupted
//! each zone and the whole cluster are, and the token bucket that paces NoExecute tainting.

use super::LifecycleOptions;
use chrono::{DateTime, Utc};
use edge_api::meta::{condition, set_condition, Condition};
use edge_api::scheduling::{Taint, TaintEffect, TAINT_NOT_READY};
use edge_api::Node;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The taint a node the leader cannot hear from carries.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The Ready condition's reason when the leader stopped hearing from the node.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// What this server knows about a node's heartbeats.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// Time since the last heartbeat this server received, if it received any.
    pub heard: Option<Duration>,
    /// Time since this server became leader: a new leader gives every node a full grace
    /// period before judging it, since heartbeats went to the old leader until then.
    pub leadership: Duration,
}

impl Liveness {
    pub fn silence(&self) -> Duration {
        self.heard
            .map_or(self.leadership, |h| h.min(self.leadership))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// The agent itself reported Ready=False.
    NotReady,
    /// Ready=Unknown: nobody knows (the leader stopped hearing from it).
    Unknown,
    /// Registered but no Ready condition posted yet.
    Unreported,
}

pub fn readiness(node: &Node) -> Readiness {
    match condition(&node.status.conditions, "Ready").map(|c| c.status.as_str()) {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        Some(_) => Readiness::Unknown,
        None => Readiness::Unreported,
    }
}

/// The Ready condition the leader must write, if it must change: Unknown once the node has
/// been silent past the grace period; True again once a node the leader had marked Unknown is
/// heard from (only then: a new leader's grace period is not evidence of life).
pub fn ready_condition(node: &Node, live: Liveness, grace: Duration) -> Option<Condition> {
    let current = condition(&node.status.conditions, "Ready");
    let silence = live.silence();
    if silence > grace {
        if current.is_some_and(|c| c.status == "Unknown") {
            return None;
        }
        let mut cond = Condition::new(
            "Ready",
            false,
            REASON_UNKNOWN,
            &format!(
                "Agent stopped posting node status (silent for {}s).",
                silence.as_secs()
            ),
        );
        cond.status = "Unknown".into();
        return Some(cond);
    }
    let marked_by_us = current.is_some_and(|c| c.status == "Unknown" && c.reason == REASON_UNKNOWN);
    let heard_again = live.heard.is_some_and(|h| h <= grace);
    (marked_by_us && heard_again).then(|| {
        Condition::new(
            "Ready",
            true,
            "AgentReady",
            "edge agent is posting heartbeats again",
        )
    })
}

pub fn is_lifecycle_taint(t: &Taint) -> bool {
    t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY
}

/// The lifecycle taints a node in this state carries; `no_execute` allows the NoExecute one
/// (it is paced by the eviction rate and withheld during a full disruption).
pub fn lifecycle_taints(r: Readiness, no_execute: bool) -> Vec<(&'static str, TaintEffect)> {
    let key = match r {
        Readiness::Ready | Readiness::Unreported => return Vec::new(),
        Readiness::NotReady => TAINT_NOT_READY,
        Readiness::Unknown => TAINT_UNREACHABLE,
    };
    let mut out = vec![(key, TaintEffect::NoSchedule)];
    if no_execute {
        out.push((key, TaintEffect::NoExecute));
    }
    out
}

/// Whether the node already carries the NoExecute lifecycle taint for its state.
pub fn has_lifecycle_no_execute(node: &Node) -> bool {
    let want = lifecycle_taints(readiness(node), true);
    node.spec
        .taints
        .iter()
        .any(|t| t.effect == TaintEffect::NoExecute && want.contains(&(t.key.as_str(), t.effect)))
}

/// Applies a decision to a node: the Ready condition (if any) and the lifecycle taints that
/// follow from it, keeping when each taint was first added. NoExecute taints without a
/// `timeAdded` get one, since toleration seconds count from it. Returns the node to write if
/// anything changed.
pub fn reconcile_node(
    node: &Node,
    cond: Option<Condition>,
    no_execute: bool,
    now: DateTime<Utc>,
) -> Option<Node> {
    let mut updated = node.clone();
    if let Some(c) = cond {
        set_condition(&mut updated.status.conditions, c);
    }
    let wanted = lifecycle_taints(readiness(&updated), no_execute);
    let old = std::mem::take(&mut updated.spec.taints);
    let mut taints: Vec<Taint> = old
        .iter()
        .filter(|t| !is_lifecycle_taint(t))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        let existing = old.iter().find(|t| t.key == key && t.effect == effect);
        taints.push(Taint {
            key: key.to_string(),
            value: String::new(),
            effect,
            time_added: existing.and_then(|t| t.time_added).or(Some(now)),
        });
    }
    for t in &mut taints {
        if t.effect == TaintEffect::NoExecute && t.time_added.is_none() {
            t.time_added = Some(now);
        }
    }
    updated.spec.taints = taints;
    (updated != *node).then_some(updated)
}

/// The zone a node is in (region and zone labels); nodes without them share one zone.
pub fn zone_of(node: &Node) -> String {
    let l = &node.metadata.labels;
    let get = |k: &str| l.get(k).map(String::as_str).unwrap_or("");
    format!("{}/{}", get(REGION_LABEL), get(ZONE_LABEL))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// Many nodes (more than two, and at least the threshold share) are not ready.
    PartialDisruption,
    /// No node is ready.
    FullDisruption,
}

/// Kubernetes' ComputeZoneState, with its small-numbers exception: one or two nodes down
/// never count as a disruption unless nothing is left.
pub fn zone_state(ready: usize, not_ready: usize, threshold: f64) -> ZoneState {
    let total = ready + not_ready;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / total as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// How many nodes per second may start evicting in a zone. When the cluster as a whole is
/// disrupted, the likeliest cause is the control plane's own network: nothing is evicted.
/// A partially disrupted zone evicts slowly; a zone entirely down (with the rest of the
/// cluster healthy) is a real outage and evicts at the normal rate, as Kubernetes does.
pub fn zone_rate(zone: ZoneState, cluster: ZoneState, opts: &LifecycleOptions) -> f64 {
    if cluster != ZoneState::Normal {
        return 0.0;
    }
    match zone {
        ZoneState::Normal | ZoneState::FullDisruption => opts.eviction_rate,
        ZoneState::PartialDisruption => opts.secondary_eviction_rate,
    }
}

/// A token bucket holding at most one token: the first node in a zone is tainted at once,
/// the next after `1/rate` seconds (flowcontrol's token bucket with burst 1).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: 1.0,
            last: now,
        }
    }

    pub fn try_take(&mut self, rate: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        if rate > 0.0 {
            self.tokens = (self.tokens + elapsed * rate).min(1.0);
        }
        if rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One node as the planner sees it.
pub struct NodeInput<'a> {
    pub node: &'a Node,
    pub live: Liveness,
}

/// What to write for one node: re-applied to the freshest copy by `reconcile_node`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    pub name: String,
    pub condition: Option<Condition>,
    pub no_execute: bool,
}

/// The disruption picture of one pass, for logging and for the pod pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Disruption {
    pub cluster: ZoneState,
    pub zones: BTreeMap<String, ZoneState>,
}

impl Disruption {
    /// Evictions caused by lifecycle taints stop while the whole cluster is disrupted.
    pub fn evictions_stopped(&self) -> bool {
        self.cluster != ZoneState::Normal
    }
}

/// One pass over all nodes: the Ready conditions that change, which nodes may carry the
/// NoExecute taint (taking tokens from their zone's bucket for newly tainted ones), and the
/// nodes that need a write.
pub fn plan_nodes(
    inputs: &[NodeInput],
    grace: Duration,
    opts: &LifecycleOptions,
    buckets: &mut HashMap<String, TokenBucket>,
    now: Instant,
    wall: DateTime<Utc>,
) -> (Vec<NodePlan>, Disruption) {
    // Each node's state after this pass's condition change.
    let decided: Vec<(&NodeInput, Option<Condition>, Node)> = inputs
        .iter()
        .map(|i| {
            let cond = ready_condition(i.node, i.live, grace);
            let mut after = i.node.clone();
            if let Some(c) = &cond {
                set_condition(&mut after.status.conditions, c.clone());
            }
            (i, cond, after)
        })
        .collect();
    let disruption = disruption(decided.iter().map(|(_, _, n)| n), opts);
    let needs = |n: &Node| matches!(readiness(n), Readiness::NotReady | Readiness::Unknown);
    // Nodes that need a new NoExecute taint, oldest failure first.
    let mut candidates: Vec<&Node> = decided
        .iter()
        .map(|(_, _, n)| n)
        .filter(|n| needs(n) && !has_lifecycle_no_execute(n))
        .collect();
    candidates.sort_by_key(|n| {
        let since = condition(&n.status.conditions, "Ready").and_then(|c| c.last_transition_time);
        (since, n.metadata.name.clone())
    });
    let mut granted = std::collections::HashSet::new();
    if !disruption.evictions_stopped() {
        for n in candidates {
            let zone = zone_of(n);
            let state = disruption
                .zones
                .get(&zone)
                .copied()
                .unwrap_or(ZoneState::Normal);
            let rate = zone_rate(state, disruption.cluster, opts);
            let bucket = buckets.entry(zone).or_insert_with(|| TokenBucket::new(now));
            if bucket.try_take(rate, now) {
                granted.insert(n.metadata.name.clone());
            }
        }
    }
    let plans = decided
        .into_iter()
        .filter_map(|(i, cond, after)| {
            let no_execute = !disruption.evictions_stopped()
                && needs(&after)
                && (has_lifecycle_no_execute(&after) || granted.contains(&after.metadata.name));
            reconcile_node(i.node, cond.clone(), no_execute, wall).map(|_| NodePlan {
                name: i.node.metadata.name.clone(),
                condition: cond,
                no_execute,
            })
        })
        .collect();
    (plans, disruption)
}

/// Zone and cluster states from nodes' readiness (a node with no Ready condition counts as
/// not ready, as in Kubernetes).
pub fn disruption<'a>(
    nodes: impl Iterator<Item = &'a Node>,
    opts: &LifecycleOptions,
) -> Disruption {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut ready, mut not_ready) = (0, 0);
    for n in nodes {
        let c = counts.entry(zone_of(n)).or_default();
        if readiness(n) == Readiness::Ready {
            c.0 += 1;
            ready += 1;
        } else {
            c.1 += 1;
            not_ready += 1;
        }
    }
    let t = opts.unhealthy_zone_threshold;
    Disruption {
        cluster: zone_state(ready, not_ready, t),
        zones: counts
            .into_iter()
            .map(|(z, (r, nr))| (z, zone_state(r, nr, t)))
            .collect(),
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
