//! Node lifecycle on the leader: a node not heard from within the grace period is marked
//! NotReady (status Unknown, as Kubernetes does). Heartbeats themselves stay in memory.

use crate::apiserver::authz::Scope;
use crate::context::ControlPlane;
use edge_api::meta::{condition, set_condition, Condition};
use edge_api::object::{Kind, Object};
use edge_api::Node;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The pure decision: the node's new status if it must change, given how long it has been silent.
pub fn lifecycle_update(node: &Node, silence: Duration, grace: Duration) -> Option<Node> {
    let ready = condition(&node.status.conditions, "Ready");
    let is_ready = ready.is_some_and(|c| c.is_true());
    if silence <= grace || !is_ready {
        return None;
    }
    let mut updated = node.clone();
    let mut cond = Condition::new(
        "Ready",
        false,
        "NodeStatusUnknown",
        &format!(
            "Agent stopped posting node status (silent for {}s).",
            silence.as_secs()
        ),
    );
    cond.status = "Unknown".into();
    set_condition(&mut updated.status.conditions, cond);
    Some(updated)
}

pub async fn run(cp: Arc<ControlPlane>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if !cp.raft.is_leader() {
            continue;
        }
        let nodes = match cp.list(&Scope::Everything, Kind::Node, None, None).await {
            Ok((nodes, _)) => nodes,
            Err(e) => {
                debug!(error = %e, "node lifecycle: cannot list nodes");
                continue;
            }
        };
        for obj in nodes {
            let Object::Node(node) = obj else { continue };
            let silence = cp.silence(&node.metadata.name);
            if let Some(updated) = lifecycle_update(&node, silence, cp.options.node_grace_period) {
                warn!(node = %node.metadata.name, silent_secs = silence.as_secs(), "node is NotReady");
                if let Err(e) = cp
                    .update_status(&Scope::Everything, Object::Node(updated))
                    .await
                {
                    debug!(error = %e, "could not mark node NotReady");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_node() -> Node {
        let mut n = Node::default();
        n.metadata.name = "a".into();
        n.status
            .conditions
            .push(Condition::new("Ready", true, "AgentReady", ""));
        n
    }

    #[test]
    fn silent_past_grace_becomes_unknown() {
        let grace = Duration::from_secs(40);
        assert!(lifecycle_update(&ready_node(), Duration::from_secs(10), grace).is_none());
        let n = lifecycle_update(&ready_node(), Duration::from_secs(41), grace).unwrap();
        let c = condition(&n.status.conditions, "Ready").unwrap();
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.reason, "NodeStatusUnknown");
        assert!(!n.is_ready());
        // Already not ready: nothing more to write.
        assert!(lifecycle_update(&n, Duration::from_secs(100), grace).is_none());
    }
}
