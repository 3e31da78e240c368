//! The scheduler loop on the leader. It lists nodes and pods once per term and then follows
//! the watch into a `Cache` (no relist per pod); decides pod after pod from the cache's
//! snapshot, assuming each placement at once; and commits the binds many per raft entry
//! (`Command::Batch`), with up to `PIPELINE` entries in flight while it decides the next ones.
//!
//! Each Bind names the revision up to which the cache has every committed change, so the
//! state machine still refuses a placement made from a stale view.

use super::cache::Cache;
use super::{default_plugins, pod_key, schedule_from, Placement, Plugin};
use crate::context::ControlPlane;
use crate::store::{Command, CommandResult, Precondition, WatchHub};
use edge_api::meta::{condition, set_condition, Condition};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::{ApiError, ErrorCode, WatchEvent};
use edge_api::Pod;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Raft entries of binds in flight at once: one being written while the next is decided.
const PIPELINE: usize = 2;
/// Binds per raft entry, at most.
const MAX_BATCH: usize = 512;
/// A batch goes out after this much deciding even if more pods wait, so that the first pods
/// of a burst are not held back by the last.
const BATCH_TIME: Duration = Duration::from_millis(20);
/// How often the loop looks again without news: leadership, held-back pods.
const TICK: Duration = Duration::from_millis(100);
/// Unschedulable pods are retried on cluster changes, and at least this often.
const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(30);

pub async fn run(cp: Arc<ControlPlane>) {
    loop {
        if !cp.raft.is_leader() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        if let Err(e) = lead(&cp).await {
            debug!(error = %e, "scheduler: starting over from a fresh listing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

type Events = broadcast::Receiver<Arc<WatchEvent>>;
type Outcome = (u64, Result<CommandResult, ApiError>);

/// One bind of a batch in flight.
struct Bind {
    pod: Arc<Pod>,
    node: String,
}

struct InFlight {
    id: u64,
    binds: Vec<Bind>,
    /// The nodes of `binds`, looked up for every decision while the batch is in flight.
    nodes: HashSet<String>,
    /// The raft index the batch was committed at, once known.
    committed: Option<u64>,
}

struct Scheduler {
    cp: Arc<ControlPlane>,
    hub: Arc<WatchHub>,
    cache: Cache,
    plugins: Vec<Box<dyn Plugin>>,
    /// Where the next decision starts examining nodes (kube-scheduler's nextStartNodeIndex).
    start: usize,
    in_flight: Vec<InFlight>,
    next_id: u64,
    /// Writes other than binds (unschedulable notes, events) that ride in the next batch.
    writes: Vec<Command>,
    done: mpsc::UnboundedSender<Outcome>,
}

/// Schedules while this server leads. Returns to start over from a fresh listing (lost
/// leadership, or the watch fell behind).
async fn lead(cp: &Arc<ControlPlane>) -> Result<(), ApiError> {
    let hub = cp.raft.store.watch_hub();
    let (cache, mut events) = listing(cp, &hub).await?;
    let (done, mut outcomes) = mpsc::unbounded_channel();
    let mut s = Scheduler {
        cp: cp.clone(),
        hub,
        cache,
        plugins: default_plugins(),
        start: 0,
        in_flight: Vec::new(),
        next_id: 0,
        writes: Vec::new(),
        done,
    };
    let mut retry = tokio::time::interval(RETRY_UNSCHEDULABLE);
    // Also wakes a pod held back because the cache was mid-way through a raft entry's changes.
    let mut tick = tokio::time::interval(TICK);
    loop {
        while let Ok(outcome) = outcomes.try_recv() {
            s.finish(outcome)?;
        }
        let revision = s.settle(&mut events)?;
        s.in_flight
            .retain(|f| f.committed.is_none_or(|at| at > revision));
        if s.in_flight.len() < PIPELINE && s.send_batch(revision) {
            continue;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => s.cache.apply(&ev),
                Err(e) => return Err(relist(e)),
            },
            Some(outcome) = outcomes.recv() => s.finish(outcome)?,
            _ = retry.tick() => s.cache.requeue_unschedulable(|_| true),
            _ = tick.tick() => {
                if !cp.raft.is_leader() {
                    return Ok(());
                }
            }
        }
    }
}

fn relist(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::Expired,
        format!("the scheduler's watch ended ({e})"),
    )
}

/// Lists nodes and pods at one revision and follows the watch from exactly there.
async fn listing(cp: &ControlPlane, hub: &WatchHub) -> Result<(Cache, Events), ApiError> {
    let internal = crate::apiserver::objects::internal;
    let snap = cp.current().await?;
    let nodes = snap.list(Kind::Node, None).map_err(internal)?;
    let pods = snap.list(Kind::Pod, None).map_err(internal)?;
    let revision = snap.revision;
    drop(snap);
    let sub = hub.subscribe_from(revision).map_err(relist)?;
    let nodes = nodes.into_iter().filter_map(|o| match o {
        Object::Node(n) => Some(n),
        _ => None,
    });
    let pods = pods.into_iter().filter_map(|o| match o {
        Object::Pod(p) => Some(p),
        _ => None,
    });
    let mut cache = Cache::new(revision, nodes.collect(), pods.collect());
    for ev in &sub.backlog {
        cache.apply(ev);
    }
    Ok((cache, sub.live))
}

impl Scheduler {
    /// Applies every event received so far.
    fn drain(&mut self, events: &mut Events) -> Result<(), ApiError> {
        loop {
            match events.try_recv() {
                Ok(ev) => self.cache.apply(&ev),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(e) => return Err(relist(e)),
            }
        }
    }

    /// Catches up with the watch and returns a revision the cache holds every change up to.
    /// The changes of one raft entry reach the watch one by one; taking the hub's lock (which
    /// a publication holds throughout) and finding nothing new since proves none was cut in
    /// half. Under a steady stream, a revision seen before the last catch-up is complete.
    fn settle(&mut self, events: &mut Events) -> Result<u64, ApiError> {
        self.drain(events)?;
        let mut complete = None;
        for _ in 0..3 {
            let seen = self.cache.revision();
            self.hub.barrier();
            if events.is_empty() {
                return Ok(seen);
            }
            self.drain(events)?;
            complete = Some(seen);
        }
        Ok(complete.unwrap_or_else(|| self.cache.revision()))
    }

    /// Decides pending pods and proposes their binds (and queued writes) as one raft entry.
    /// Returns whether anything was sent.
    fn send_batch(&mut self, revision: u64) -> bool {
        let began = Instant::now();
        let deadline = began + BATCH_TIME;
        let mut binds = Vec::new();
        while binds.len() < MAX_BATCH && Instant::now() < deadline {
            let Some(pod) = self.cache.pop(revision) else {
                break;
            };
            let decision = schedule_from(&pod, self.cache.snapshot(), &self.plugins, self.start);
            self.start = (self.start + decision.examined) % self.cache.snapshot().len().max(1);
            match decision.placement {
                Placement::Node(node) => {
                    // A bind to a node whose last bind is not in the cache's revision yet
                    // would be refused as stale: wait for that batch first.
                    if self.busy(&node) {
                        self.cache.unpop(pod_key(&pod));
                        break;
                    }
                    self.cache.assume(&pod, &node);
                    binds.push(Bind { pod, node });
                }
                Placement::Unschedulable { summary, .. } => {
                    self.cache.mark_unschedulable(&pod_key(&pod));
                    self.unschedulable(&pod, &summary);
                }
            }
        }
        if binds.is_empty() && self.writes.is_empty() {
            return false;
        }
        let mut commands: Vec<Command> = binds
            .iter()
            .map(|b| Command::Bind {
                key: ObjectKey::new(Kind::Pod, &b.pod.metadata.namespace, &b.pod.metadata.name),
                node: b.node.clone(),
                snapshot_revision: revision,
            })
            .collect();
        debug!(
            binds = binds.len(),
            writes = self.writes.len(),
            revision,
            deciding = ?began.elapsed(),
            "proposing a batch"
        );
        // After the binds: a note that conflicts with a bind in the same entry loses.
        commands.append(&mut self.writes);
        self.next_id += 1;
        let id = self.next_id;
        let nodes = binds.iter().map(|b| b.node.clone()).collect();
        self.in_flight.push(InFlight {
            id,
            binds,
            nodes,
            committed: None,
        });
        let (cp, done) = (self.cp.clone(), self.done.clone());
        tokio::spawn(async move {
            let outcome = cp.propose(Command::Batch(commands)).await;
            // The loop may have ended (lost leadership); then nobody needs the answer.
            let _ = done.send((id, outcome));
        });
        true
    }

    fn busy(&self, node: &str) -> bool {
        self.in_flight.iter().any(|f| f.nodes.contains(node))
    }

    /// Takes the outcome of a batch: confirmed binds stay assumed until the watch shows them,
    /// refused ones are forgotten and their pods queued again.
    fn finish(&mut self, (id, outcome): Outcome) -> Result<(), ApiError> {
        let Some(i) = self.in_flight.iter().position(|f| f.id == id) else {
            return Ok(());
        };
        let results = match outcome {
            Ok(CommandResult::Batch(results)) => results,
            Ok(other) => vec![CommandResult::Rejected(ApiError::new(
                ErrorCode::Internal,
                format!("a batch answered {other:?}"),
            ))],
            Err(e) => {
                let flight = self.in_flight.remove(i);
                for b in &flight.binds {
                    self.cache.forget(&pod_key(&b.pod));
                }
                return Err(e);
            }
        };
        debug!(id, "batch answered");
        let mut committed = None;
        let binds = std::mem::take(&mut self.in_flight[i].binds);
        let mut results = results.into_iter();
        for b in &binds {
            match results.next() {
                Some(CommandResult::Stored(o)) => {
                    committed = committed.max(Some(o.meta().resource_version));
                    self.scheduled(&b.pod, &b.node);
                }
                other => {
                    let pod = pod_key(&b.pod);
                    debug!(%pod, node = %b.node, outcome = ?other, "bind refused; deciding again");
                    self.cache.forget(&pod);
                }
            }
        }
        for r in results {
            if let CommandResult::Rejected(e) = r {
                debug!(error = %e, "a scheduler write was refused");
            }
        }
        match committed {
            // Its nodes stay busy until the cache has the batch: binds to them must name its
            // index or a later one.
            Some(at) => self.in_flight[i].committed = Some(at),
            None => {
                self.in_flight.remove(i);
            }
        }
        Ok(())
    }

    /// The bind of `pod` to `node` is committed. Its `Scheduled` Event rides in the next batch
    /// (a raft entry per placement would cost more than the placement).
    fn scheduled(&mut self, pod: &Pod, node: &str) {
        info!(pod = %pod_key(pod), node, "scheduled");
        let msg = format!("Successfully assigned {} to {node}", pod_key(pod));
        self.writes.push(crate::events::scheduler_event(
            pod,
            false,
            "Scheduled",
            &msg,
        ));
    }

    /// No node can take `pod`: record why on the pod, as kube-scheduler does, when the reason
    /// changed. The note rides in the next batch and is refused if the pod changed meanwhile.
    /// Its `FailedScheduling` Event rides along the same way.
    fn unschedulable(&mut self, pod: &Pod, summary: &str) {
        let current = condition(&pod.status.conditions, "PodScheduled");
        if current.is_some_and(|c| c.message == summary && !c.is_true()) {
            return;
        }
        warn!(pod = %pod_key(pod), reason = summary, "unschedulable");
        let mut noted = pod.clone();
        set_condition(
            &mut noted.status.conditions,
            Condition::new("PodScheduled", false, "Unschedulable", summary),
        );
        self.writes.push(Command::Put {
            object: Object::Pod(noted),
            precondition: Precondition::Revision(pod.metadata.resource_version),
        });
        let event = crate::events::scheduler_event(pod, true, "FailedScheduling", summary);
        self.writes.push(event);
    }
}
