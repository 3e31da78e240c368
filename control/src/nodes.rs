//! Node lifecycle on the leader. Heartbeats stay in memory (never raft writes); a node silent
//! past the grace period gets `Ready=Unknown` and the `node.kubernetes.io/unreachable` taints,
//! its pods are marked not Ready and, once their tolerations run out, evicted so that their
//! controllers replace them elsewhere. NoExecute tainting is paced per zone and stops when
//! most of the cluster is unreachable at once. Decisions are pure (`health`, `eviction`);
//! this file reads the store, keeps the leader's memory and writes.

pub mod eviction;
pub mod health;

use crate::apiserver::authz::Scope;
use crate::context::ControlPlane;
use crate::store::{Command, Precondition};
use chrono::Utc;
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::scheduling::TaintEffect;
use edge_api::wire::ApiError;
use edge_api::{Node, Pod};
use eviction::Eviction;
pub use health::TAINT_UNREACHABLE;
use health::{Disruption, Liveness, NodeInput, TokenBucket, ZoneState};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How nodes that vanish are handled (the node lifecycle controller's and the
/// DefaultTolerationSeconds admission plugin's settings in Kubernetes).
#[derive(Clone, Debug)]
pub struct LifecycleOptions {
    /// Nodes per second that start evicting in a healthy zone (`--node-eviction-rate`).
    pub eviction_rate: f64,
    /// Nodes per second in a partially disrupted zone (`--secondary-node-eviction-rate`).
    pub secondary_eviction_rate: f64,
    /// Share of not-ready nodes (more than two) from which a zone, or the whole cluster, counts
    /// as disrupted; a disrupted cluster evicts nothing.
    pub unhealthy_zone_threshold: f64,
    /// `tolerationSeconds` of the not-ready/unreachable tolerations every pod gets at admission.
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        LifecycleOptions {
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
        }
    }
}

/// The leader's loop. The admission defaults are set before it is spawned, so pods created
/// as soon as the server answers already get them.
pub fn run(cp: Arc<ControlPlane>) -> impl Future<Output = ()> + Send + 'static {
    let o = &cp.options.lifecycle;
    crate::apiserver::admission::configure(
        o.default_not_ready_toleration_seconds,
        o.default_unreachable_toleration_seconds,
    );
    async move { Lifecycle::default().run(&cp).await }
}

/// What the leader remembers between passes; forgotten when leadership is lost.
#[derive(Default)]
struct Lifecycle {
    /// The term this server leads in and since when: a new term restarts every grace period.
    leading: Option<(u64, Instant)>,
    buckets: HashMap<String, TokenBucket>,
    last_cluster_state: Option<ZoneState>,
}

impl Lifecycle {
    async fn run(mut self, cp: &ControlPlane) {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let Some(since) = self.leadership(cp) else {
                continue;
            };
            if let Err(e) = self.pass(cp, since).await {
                debug!(error = %e, "node lifecycle pass failed; will retry");
            }
        }
    }

    /// When this server's current leadership began, or None if it is not the leader.
    fn leadership(&mut self, cp: &ControlPlane) -> Option<Instant> {
        let term = cp.raft.raft.metrics().borrow().current_term;
        if !cp.raft.is_leader() {
            *self = Lifecycle::default();
            return None;
        }
        match self.leading {
            Some((t, since)) if t == term => Some(since),
            _ => {
                info!(
                    term,
                    "leading: nodes get a full grace period before being judged"
                );
                *self = Lifecycle::default();
                let now = Instant::now();
                self.leading = Some((term, now));
                Some(now)
            }
        }
    }

    async fn pass(&mut self, cp: &ControlPlane, leader_since: Instant) -> Result<(), ApiError> {
        let nodes: Vec<Node> = list(cp, Kind::Node)
            .await?
            .into_iter()
            .filter_map(|o| match o {
                Object::Node(n) => Some(n),
                _ => None,
            })
            .collect();
        let now = Instant::now();
        let inputs: Vec<NodeInput> = nodes
            .iter()
            .map(|node| NodeInput {
                node,
                live: liveness(cp, &node.metadata.name, now, leader_since),
            })
            .collect();
        let grace = cp.options.node_grace_period;
        let (plans, disruption) = health::plan_nodes(
            &inputs,
            grace,
            &cp.options.lifecycle,
            &mut self.buckets,
            now,
            Utc::now(),
        );
        self.log_disruption(&disruption);
        for plan in plans {
            if let Err(e) = write_node(cp, &plan).await {
                debug!(node = %plan.name, error = %e, "could not update node");
            }
        }
        let needs_pod_pass = nodes.iter().any(|n| {
            !n.is_ready()
                || n.spec
                    .taints
                    .iter()
                    .any(|t| t.effect == TaintEffect::NoExecute)
        });
        if needs_pod_pass {
            pod_pass(cp, &disruption).await?;
        }
        Ok(())
    }

    fn log_disruption(&mut self, d: &Disruption) {
        if self.last_cluster_state == Some(d.cluster) {
            return;
        }
        match d.cluster {
            ZoneState::Normal if self.last_cluster_state.is_some() => {
                info!("most nodes are reachable again; evictions resume")
            }
            ZoneState::Normal => {}
            state => warn!(
                ?state,
                "most nodes are unreachable at once; evictions stop (the control plane's own network is the likelier failure)"
            ),
        }
        self.last_cluster_state = Some(d.cluster);
    }
}

fn liveness(cp: &ControlPlane, node: &str, now: Instant, leader_since: Instant) -> Liveness {
    let heard = cp
        .liveness
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(node)
        .map(|at| now.saturating_duration_since(*at));
    Liveness {
        heard,
        leadership: now.saturating_duration_since(leader_since),
    }
}

async fn list(cp: &ControlPlane, kind: Kind) -> Result<Vec<Object>, ApiError> {
    Ok(cp.list(&Scope::Everything, kind, None, None).await?.0)
}

/// Writes one node's plan onto its freshest copy (the agent may have written meanwhile).
async fn write_node(cp: &ControlPlane, plan: &health::NodePlan) -> Result<(), ApiError> {
    let key = ObjectKey::new(Kind::Node, "", &plan.name);
    let result = cp
        .write_with_retry(|snap| {
            let Some(Object::Node(node)) = snap.get(&key).map_err(internal)? else {
                return Ok(None);
            };
            let updated =
                health::reconcile_node(&node, plan.condition.clone(), plan.no_execute, Utc::now());
            Ok(updated.map(|n| Command::Put {
                precondition: Precondition::Revision(node.metadata.resource_version),
                object: Object::Node(n),
            }))
        })
        .await?;
    if let crate::store::CommandResult::Stored(Object::Node(n)) = result {
        let ready = health::readiness(&n);
        let taints: Vec<String> = n
            .spec
            .taints
            .iter()
            .map(|t| format!("{}:{:?}", t.key, t.effect))
            .collect();
        info!(node = %plan.name, ?ready, ?taints, "node lifecycle");
    }
    Ok(())
}

/// Marks pods on unready nodes not Ready, and evicts pods whose NoExecute tolerations ran out.
async fn pod_pass(cp: &ControlPlane, disruption: &Disruption) -> Result<(), ApiError> {
    let snap = cp.current().await?;
    let nodes: HashMap<String, Node> = snap
        .list(Kind::Node, None)
        .map_err(internal)?
        .into_iter()
        .filter_map(|o| match o {
            Object::Node(n) => Some((n.metadata.name.clone(), n)),
            _ => None,
        })
        .collect();
    let pods = snap.list(Kind::Pod, None).map_err(internal)?;
    drop(snap);
    let now = Utc::now();
    for obj in pods {
        let Object::Pod(pod) = obj else { continue };
        let Some(node) = pod.spec.node_name.as_deref().and_then(|n| nodes.get(n)) else {
            continue;
        };
        let name = &node.metadata.name;
        let stopped = disruption.evictions_stopped();
        if eviction::eviction(&pod, &node.spec.taints, stopped, now) == Eviction::Now {
            warn!(pod = %pod.metadata.name, namespace = %pod.metadata.namespace, node = %name, "evicting pod (NoExecute taint)");
            write_pod(cp, &pod, |p| Some(eviction::evicted(p, name, Utc::now()))).await;
        } else if !node.is_ready() {
            write_pod(cp, &pod, |p| eviction::marked_not_ready(p, name)).await;
        }
    }
    Ok(())
}

/// Rewrites one pod from its freshest copy, only while it is the same incarnation (uid).
async fn write_pod(cp: &ControlPlane, pod: &Pod, change: impl Fn(&Pod) -> Option<Pod>) {
    let key = ObjectKey::new(Kind::Pod, &pod.metadata.namespace, &pod.metadata.name);
    let uid = &pod.metadata.uid;
    let result = cp
        .write_with_retry(|snap| {
            let Some(Object::Pod(fresh)) = snap.get(&key).map_err(internal)? else {
                return Ok(None);
            };
            if &fresh.metadata.uid != uid {
                return Ok(None);
            }
            Ok(change(&fresh).map(|p| Command::Put {
                precondition: Precondition::Revision(fresh.metadata.resource_version),
                object: Object::Pod(p),
            }))
        })
        .await;
    if let Err(e) = result {
        debug!(pod = %key, error = %e, "could not update pod");
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    crate::apiserver::objects::internal(e)
}
