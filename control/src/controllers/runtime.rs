//! The controller runtime on the leader: a work queue of keys fed by the watch hub, batches
//! reconciled against one fresh store snapshot, actions proposed through raft as
//! compare-and-swap writes, requeues with back-off on error, and a periodic resync.
//!
//! Nothing about what was done is remembered in memory: every decision reads the store after a
//! raft read barrier, so a restart, a failover or a lost response cannot make a controller
//! create twice (a write that did commit is in the next snapshot; one made from a stale
//! snapshot fails its precondition).

use super::{Action, Controller, World};
use crate::context::ControlPlane;
use crate::store::{Command, Precondition};
use chrono::Utc;
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::{ApiError, ErrorCode, WatchEvent};
use rand::Rng;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tracing::{debug, info};

/// Every primary is reconciled this often even if nothing seems to change.
const RESYNC: Duration = Duration::from_secs(30);
/// Changes arriving together are reconciled together.
const DEBOUNCE: Duration = Duration::from_millis(100);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Requeues for a deadline land just after it, not just before.
const MARGIN: Duration = Duration::from_millis(50);
/// Generated names Kubernetes-style: 5 characters without vowels (no words) or look-alikes.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const MAX_GENERATE_BASE: usize = 58;

/// A key standing for every primary of `kind` (a node change concerns every DaemonSet).
pub fn every(kind: Kind) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: String::new(),
        name: String::new(),
    }
}

#[derive(Default)]
struct Queue {
    due: HashMap<ObjectKey, Instant>,
    failures: HashMap<ObjectKey, u32>,
}

impl Queue {
    fn add(&mut self, key: ObjectKey, at: Instant) {
        let slot = self.due.entry(key).or_insert(at);
        *slot = (*slot).min(at);
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    fn take_ready(&mut self, now: Instant) -> Vec<ObjectKey> {
        let ready: Vec<ObjectKey> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &ready {
            self.due.remove(k);
        }
        ready
    }

    /// The next delay for a key that failed again: doubling, capped.
    fn backoff(&mut self, key: &ObjectKey) -> Duration {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        BACKOFF_FIRST
            .saturating_mul(1 << (*n - 1).min(16))
            .min(BACKOFF_MAX)
    }
}

/// Runs `ctl` whenever this server leads.
pub async fn run(cp: Arc<ControlPlane>, ctl: Arc<dyn Controller>) {
    let hub = cp.raft.store.watch_hub();
    loop {
        if !cp.raft.is_leader() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        // Live changes only: the first batch is a full resync anyway.
        match hub.subscribe_from(u64::MAX) {
            Ok(sub) => lead(&cp, ctl.as_ref(), sub.live).await,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The loop while leading; returns when leadership is lost or the hub closes.
async fn lead(
    cp: &ControlPlane,
    ctl: &dyn Controller,
    mut live: broadcast::Receiver<Arc<WatchEvent>>,
) {
    info!(controller = ctl.name(), "controller started");
    let mut queue = Queue::default();
    let mut resync_at = Instant::now();
    let mut keys = Vec::new();
    loop {
        if !cp.raft.is_leader() {
            info!(
                controller = ctl.name(),
                "not the leader any more; controller paused"
            );
            return;
        }
        let wake = queue
            .next_due()
            .unwrap_or(resync_at)
            .min(resync_at)
            .min(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            ev = live.recv() => match ev {
                Ok(ev) => {
                    ctl.keys_for(&ev, &mut keys);
                    tokio::time::sleep(DEBOUNCE).await;
                    loop {
                        match live.try_recv() {
                            Ok(ev) => ctl.keys_for(&ev, &mut keys),
                            Err(TryRecvError::Lagged(_)) => resync_at = Instant::now(),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => return,
                        }
                    }
                }
                // Missed changes: look at everything.
                Err(RecvError::Lagged(_)) => resync_at = Instant::now(),
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        for k in keys.drain(..) {
            queue.add(k, now);
        }
        let resync = now >= resync_at;
        let ready = queue.take_ready(now);
        if !resync && ready.is_empty() {
            continue;
        }
        if resync {
            resync_at = now + RESYNC;
        }
        batch(cp, ctl, &mut queue, ready, resync).await;
    }
}

/// Reconciles `ready` (and every primary on a resync) against one snapshot, then writes.
async fn batch(
    cp: &ControlPlane,
    ctl: &dyn Controller,
    queue: &mut Queue,
    ready: Vec<ObjectKey>,
    resync: bool,
) {
    let plans = {
        let loaded = cp.current().await.and_then(|snap| {
            if !resync && only_empty_kinds(&snap, &ready)? {
                return Ok(None);
            }
            let world =
                World::load(&snap, ctl.reads()).map_err(crate::apiserver::objects::internal)?;
            Ok(Some(world))
        });
        let world = match loaded {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(e) => {
                debug!(controller = ctl.name(), error = %e, "cannot read the store; retrying");
                let at = Instant::now() + BACKOFF_FIRST * 5;
                for k in ready {
                    queue.add(k, at);
                }
                return;
            }
        };
        let mut keys: BTreeSet<ObjectKey> = BTreeSet::new();
        if resync {
            keys.extend(ctl.primaries(&world));
        }
        for k in ready {
            if k.name.is_empty() {
                keys.extend(
                    ctl.primaries(&world)
                        .into_iter()
                        .filter(|p| p.kind == k.kind),
                );
            } else {
                keys.insert(k);
            }
        }
        let now = Utc::now();
        keys.into_iter()
            .map(|k| {
                let plan = ctl.reconcile(&k, &world, now);
                (k, plan)
            })
            .collect::<Vec<_>>()
    };
    for (key, plan) in plans {
        match execute(cp, ctl.name(), &plan.actions).await {
            Ok(()) => {
                queue.failures.remove(&key);
                if let Some(after) = plan.requeue_after {
                    queue.add(key, Instant::now() + after + MARGIN);
                }
            }
            Err(e) => {
                let delay = queue.backoff(&key);
                debug!(controller = ctl.name(), %key, error = %e, retry_in = ?delay, "reconcile failed; requeued");
                queue.add(key, Instant::now() + delay);
            }
        }
    }
}

/// Whether every key is an `every(kind)` of a kind with no objects: then there is nothing to
/// reconcile, and a burst of node changes costs no full read when no DaemonSet exists.
fn only_empty_kinds(snap: &crate::store::Snapshot, keys: &[ObjectKey]) -> Result<bool, ApiError> {
    for k in keys {
        if !k.name.is_empty() {
            return Ok(false);
        }
        let objects = snap
            .list(k.kind, None)
            .map_err(crate::apiserver::objects::internal)?;
        if !objects.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Applies actions in order, stopping at the first failure (later ones may depend on it).
pub async fn execute(cp: &ControlPlane, who: &str, actions: &[Action]) -> Result<(), ApiError> {
    for action in actions {
        match action {
            Action::Create {
                object,
                generate_name,
                event,
            } => {
                let name = create(cp, object.clone(), generate_name.as_deref()).await?;
                info!(controller = who, kind = %object.kind(), namespace = %object.meta().namespace, %name, "created");
                if let Some(note) = event {
                    let mut note = note.clone();
                    note.message = note.message.replace("{name}", &name);
                    crate::events::emit(cp, &note).await;
                }
            }
            Action::Update(object) => {
                let precondition = Precondition::Revision(object.meta().resource_version);
                let cmd = Command::Put {
                    object: object.clone(),
                    precondition,
                };
                cp.propose(cmd).await?;
                debug!(controller = who, key = %object.key(), "updated");
            }
            Action::Delete {
                key,
                resource_version,
            } => {
                let cmd = Command::Delete {
                    key: key.clone(),
                    precondition: Precondition::Revision(*resource_version),
                };
                match cp.propose(cmd).await {
                    Ok(_) => info!(controller = who, %key, "deleted"),
                    Err(e) if e.code == ErrorCode::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Action::Event(note) => crate::events::emit(cp, note).await,
        }
    }
    Ok(())
}

fn generated(base: &str) -> String {
    let mut base = base.to_string();
    base.truncate(MAX_GENERATE_BASE);
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| NAME_ALPHABET[rng.gen_range(0..NAME_ALPHABET.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

/// Stores a new object with identity filled in; a generated name that is taken is drawn again.
/// It passes the API server's defaults and validation first, as Kubernetes' controllers'
/// creations do (pods get the admission defaults, such as the default tolerations).
async fn create(
    cp: &ControlPlane,
    mut object: Object,
    generate: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(base) = generate {
        // A stand-in so the name validates; the stored one is drawn below.
        object.meta_mut().name = generated(base);
    }
    let mut object = crate::apiserver::objects::normalize(object)?;
    let meta = object.meta_mut();
    meta.uid = uuid::Uuid::new_v4().to_string();
    meta.creation_timestamp = Some(Utc::now());
    meta.resource_version = 0;
    if meta.generation == 0 {
        meta.generation = 1;
    }
    *object.api_version_mut() = edge_api::API_VERSION.to_string();
    let attempts = if generate.is_some() { 3 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        if let Some(base) = generate {
            object.meta_mut().name = generated(base);
        }
        let cmd = Command::Put {
            object: object.clone(),
            precondition: Precondition::Absent,
        };
        match cp.propose(cmd).await {
            Ok(_) => return Ok(object.meta().name.clone()),
            Err(e) if e.code == ErrorCode::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::new(ErrorCode::Conflict, "could not pick a free name")))
}
