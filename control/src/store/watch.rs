//! Fan-out of applied changes to watchers, with a bounded history so a watch can resume from a
//! resourceVersion; anything older than the history is answered "expired" and the client relists.

use edge_api::wire::WatchEvent;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How many recent events are kept for resuming watches. Each holds a whole object, so this
/// bounds memory on small boxes; a client further behind gets "expired" and relists.
pub const HISTORY: usize = 2_000;

pub struct WatchHub {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    /// The newest published revision: every change up to it can be read.
    applied: watch::Sender<u64>,
}

struct Inner {
    history: VecDeque<Arc<WatchEvent>>,
    /// Every event with a revision above this is in `history` (or not yet applied).
    complete_after: u64,
}

pub struct WatchSubscription {
    /// Events after the requested revision that were already applied.
    pub backlog: Vec<Arc<WatchEvent>>,
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
}

#[derive(Debug, thiserror::Error)]
#[error("resourceVersion {requested} is too old: history starts after {oldest}; list again and watch from the list's resourceVersion")]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

impl WatchHub {
    pub fn new(current_revision: u64) -> Arc<WatchHub> {
        let (tx, _) = broadcast::channel(4096);
        Arc::new(WatchHub {
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                complete_after: current_revision,
            }),
            tx,
            applied: watch::Sender::new(current_revision),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the history consistent enough: every
        // operation below is a single push/pop.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn publish(&self, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        let newest = events.iter().map(|e| e.resource_version).max().unwrap_or(0);
        let mut inner = self.lock();
        for ev in events {
            let ev = Arc::new(ev);
            inner.history.push_back(ev.clone());
            if inner.history.len() > HISTORY {
                if let Some(old) = inner.history.pop_front() {
                    inner.complete_after = old.resource_version;
                }
            }
            // No receivers is fine: nobody is watching.
            let _ = self.tx.send(ev);
        }
        drop(inner);
        self.applied.send_if_modified(|applied| {
            let newer = newest > *applied;
            *applied = (*applied).max(newest);
            newer
        });
    }

    /// Waits until the changes up to `revision` can be read here, for at most `within`;
    /// returns whether they can.
    pub async fn applied_through(&self, revision: u64, within: Duration) -> bool {
        if *self.applied.borrow() >= revision {
            return true;
        }
        let mut rx = self.applied.subscribe();
        let seen = tokio::time::timeout(within, async {
            rx.wait_for(|r| *r >= revision).await.is_ok()
        })
        .await;
        seen.unwrap_or(false)
    }

    /// Forgets history, e.g. after a snapshot replaced the whole state: watchers must relist.
    pub fn reset(&self, revision: u64) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.complete_after = revision;
        drop(inner);
        self.applied.send_replace(revision);
    }

    /// Returns once no publication is under way: whatever was published before this call
    /// has reached every live subscription in full.
    pub fn barrier(&self) {
        drop(self.lock());
    }

    /// Subscribes to events after `revision`, atomically with respect to `publish`.
    pub fn subscribe_from(&self, revision: u64) -> Result<WatchSubscription, Expired> {
        let inner = self.lock();
        if revision < inner.complete_after {
            return Err(Expired {
                requested: revision,
                oldest: inner.complete_after,
            });
        }
        let live = self.tx.subscribe();
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.resource_version > revision)
            .cloned()
            .collect();
        Ok(WatchSubscription { backlog, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::wire::EventType;

    fn ev(rv: u64) -> WatchEvent {
        let mut ns = edge_api::Namespace::default();
        ns.metadata.name = format!("n{rv}");
        WatchEvent {
            event_type: EventType::Added,
            object: edge_api::Object::Namespace(ns),
            resource_version: rv,
        }
    }

    #[test]
    fn resume_returns_backlog_then_live() {
        let hub = WatchHub::new(0);
        hub.publish(vec![ev(1), ev(2), ev(3)]);
        let mut sub = hub.subscribe_from(1).unwrap();
        let revs: Vec<_> = sub.backlog.iter().map(|e| e.resource_version).collect();
        assert_eq!(revs, vec![2, 3]);
        hub.publish(vec![ev(4)]);
        assert_eq!(sub.live.try_recv().unwrap().resource_version, 4);
    }

    #[test]
    fn too_old_is_expired() {
        let hub = WatchHub::new(10);
        assert!(hub.subscribe_from(9).is_err());
        assert!(hub.subscribe_from(10).is_ok());
        hub.reset(20);
        let e = hub.subscribe_from(15).err().unwrap();
        assert_eq!(e.oldest, 20);
    }

    #[tokio::test]
    async fn applied_through_waits_for_the_revision_to_be_published() {
        let hub = WatchHub::new(5);
        let short = Duration::from_millis(20);
        assert!(hub.applied_through(5, short).await);
        assert!(!hub.applied_through(7, short).await);
        let waiting = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.applied_through(7, Duration::from_secs(10)).await })
        };
        hub.publish(vec![ev(6)]);
        tokio::time::sleep(short).await;
        assert!(!waiting.is_finished());
        hub.publish(vec![ev(7)]);
        assert!(waiting.await.unwrap());
        hub.reset(30);
        assert!(hub.applied_through(30, short).await);
    }
}
