//! Events: recording deduplicated Events (a repeat of the same object, reason and message bumps
//! `count` and `lastTimestamp` of one Event instead of creating another) and expiring them after
//! a retention period.

use crate::context::ControlPlane;
use crate::controllers::{Action, Controller, EventNote, Reconciled, World};
use crate::store::{Command, Precondition};
use chrono::{DateTime, Utc};
use edge_api::event::{Event, EventSource, EventType};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::service::ObjectReference;
use edge_api::wire::{ApiError, WatchEvent};
use std::time::Duration;
use tracing::debug;

/// How long an Event is kept after it last happened.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// Event names stay within the 253 characters of a DNS subdomain.
const MAX_NAME: usize = 253;

/// Where an Event about `involved` lives: its namespace, or `default` for cluster objects.
pub fn namespace_of(involved: &ObjectReference) -> &str {
    if involved.namespace.is_empty() {
        edge_api::DEFAULT_NAMESPACE
    } else {
        &involved.namespace
    }
}

/// `<object name>.<16 hex>`, the hex derived from (uid, reason, message), so a repeat of the
/// same thing names the same Event.
pub fn event_name(involved: &ObjectReference, reason: &str, message: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [involved.uid.as_str(), reason, message] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let hex = hex::encode(h.finalize());
    let mut base = involved.name.as_str();
    let room = MAX_NAME - 17;
    if base.len() > room {
        let mut cut = room;
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base = &base[..cut];
    }
    format!("{base}.{}", &hex[..16])
}

/// The Event to store for `note` given the one already stored under its name: the pure half of
/// recording. A new Event still needs a uid.
pub fn plan(
    note: &EventNote,
    existing: Option<&Event>,
    now: DateTime<Utc>,
) -> (Event, Precondition) {
    if let Some(e) = existing {
        let mut bumped = e.clone();
        bumped.count = e.count.saturating_add(1);
        bumped.last_timestamp = Some(now);
        return (bumped, Precondition::Revision(e.metadata.resource_version));
    }
    let mut e = Event {
        api_version: edge_api::API_VERSION.into(),
        involved_object: note.involved.clone(),
        reason: note.reason.clone(),
        message: note.message.clone(),
        type_: note.type_,
        source: EventSource {
            component: note.component.into(),
            host: String::new(),
        },
        count: 1,
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        metadata: Default::default(),
    };
    e.metadata.name = event_name(&note.involved, &note.reason, &note.message);
    e.metadata.namespace = namespace_of(&note.involved).to_string();
    e.metadata.creation_timestamp = Some(now);
    e.metadata.generation = 1;
    (e, Precondition::Absent)
}

/// Records `note`, retrying when a concurrent repeat bumped the same Event first. Nothing is
/// recorded into a namespace that is gone or terminating (its contents are being deleted).
pub async fn record(cp: &ControlPlane, note: &EventNote) -> Result<(), ApiError> {
    let ns_key = ObjectKey::new(Kind::Namespace, "", namespace_of(&note.involved));
    let name = event_name(&note.involved, &note.reason, &note.message);
    let key = ObjectKey::new(Kind::Event, &ns_key.name, &name);
    cp.write_with_retry(|snap| {
        let ns = snap
            .get(&ns_key)
            .map_err(crate::apiserver::objects::internal)?;
        if ns.is_none_or(|n| n.meta().deletion_timestamp.is_some()) {
            return Ok(None);
        }
        let existing = match snap
            .get(&key)
            .map_err(crate::apiserver::objects::internal)?
        {
            Some(Object::Event(e)) => Some(e),
            _ => None,
        };
        let (mut event, precondition) = plan(note, existing.as_ref(), Utc::now());
        if event.metadata.uid.is_empty() {
            event.metadata.uid = uuid::Uuid::new_v4().to_string();
        }
        Ok(Some(Command::Put {
            object: Object::Event(event),
            precondition,
        }))
    })
    .await
    .map(|_| ())
}

/// Records an event and only logs a failure: an event is never worth failing the work it is about.
pub async fn emit(cp: &ControlPlane, note: &EventNote) {
    if let Err(e) = record(cp, note).await {
        debug!(reason = %note.reason, error = %e, "could not record an event");
    }
}

/// The write that records a scheduler event about `pod` as a new Event, for the scheduler to
/// batch with its binds. A repeat of the very same event is refused (AlreadyExists) instead of
/// counted: the scheduler records Scheduled once per pod and FailedScheduling when the reason
/// changes, so repeats are rare and not worth a read on the placement path.
pub fn scheduler_event(pod: &edge_api::Pod, warning: bool, reason: &str, message: &str) -> Command {
    let about = crate::controllers::object_ref(Kind::Pod, &pod.metadata);
    let note = EventNote {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        ..EventNote::normal(&about, "default-scheduler", reason, message)
    };
    let (mut event, precondition) = plan(&note, None, Utc::now());
    event.metadata.uid = uuid::Uuid::new_v4().to_string();
    Command::Put {
        object: Object::Event(event),
        precondition,
    }
}

/// Events whose last occurrence is older than `retention`.
pub fn expired(events: &[Object], retention: Duration, now: DateTime<Utc>) -> Vec<Action> {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return Vec::new();
    };
    events
        .iter()
        .filter_map(|o| match o {
            Object::Event(e) => Some(e),
            _ => None,
        })
        .filter(|e| {
            let last = e
                .last_timestamp
                .or(e.first_timestamp)
                .or(e.metadata.creation_timestamp);
            last.is_some_and(|t| t + retention < now)
        })
        .map(|e| Action::Delete {
            key: ObjectKey::new(Kind::Event, &e.metadata.namespace, &e.metadata.name),
            resource_version: e.metadata.resource_version,
        })
        .collect()
}

/// Deletes Events past their retention, looking once a minute.
pub struct EventExpiry {
    pub retention: Duration,
}

impl Default for EventExpiry {
    fn default() -> Self {
        EventExpiry {
            retention: RETENTION,
        }
    }
}

fn expiry_key() -> ObjectKey {
    ObjectKey::new(Kind::Namespace, "", "event-expiry")
}

impl Controller for EventExpiry {
    fn name(&self) -> &'static str {
        "event-expiry"
    }

    fn reads(&self) -> &'static [Kind] {
        &[Kind::Event]
    }

    fn keys_for(&self, _ev: &WatchEvent, _out: &mut Vec<ObjectKey>) {}

    fn primaries(&self, _world: &World) -> Vec<ObjectKey> {
        vec![expiry_key()]
    }

    fn reconcile(&self, _key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled {
        Reconciled {
            actions: expired(&world.other, self.retention, now),
            requeue_after: Some(Duration::from_secs(60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn about(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            kind: "Pod".into(),
            namespace: "team".into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("time")
            + chrono::Duration::seconds(s)
    }

    #[test]
    fn the_same_happening_names_the_same_event() {
        let a = event_name(&about("web", "u1"), "BackOff", "restarting");
        assert_eq!(a, event_name(&about("web", "u1"), "BackOff", "restarting"));
        assert!(a.starts_with("web.") && a.len() == "web.".len() + 16, "{a}");
        for other in [
            event_name(&about("web", "u2"), "BackOff", "restarting"),
            event_name(&about("web", "u1"), "Started", "restarting"),
            event_name(&about("web", "u1"), "BackOff", "other"),
        ] {
            assert_ne!(a, other);
        }
        let long = event_name(&about(&"x".repeat(300), "u"), "R", "m");
        assert_eq!(long.len(), MAX_NAME);
    }

    #[test]
    fn a_repeat_bumps_count_and_last_timestamp() {
        let note = EventNote::warning(&about("web", "u1"), "kubelet", "BackOff", "restarting");
        let (first, pre) = plan(&note, None, t(0));
        assert_eq!(pre, Precondition::Absent);
        assert_eq!((first.count, first.type_), (1, EventType::Warning));
        assert_eq!(first.metadata.namespace, "team");
        assert_eq!(first.source.component, "kubelet");
        let mut stored = first.clone();
        stored.metadata.resource_version = 7;
        let (again, pre) = plan(&note, Some(&stored), t(30));
        assert_eq!(pre, Precondition::Revision(7));
        assert_eq!(again.count, 2);
        assert_eq!(again.first_timestamp, Some(t(0)));
        assert_eq!(again.last_timestamp, Some(t(30)));
        let node = ObjectReference {
            namespace: String::new(),
            ..about("n1", "u9")
        };
        assert_eq!(namespace_of(&node), "default");
    }

    #[test]
    fn events_past_retention_expire() {
        let note = EventNote::normal(&about("web", "u1"), "c", "Started", "");
        let event = |last: i64, name: &str| {
            let (mut e, _) = plan(&note, None, t(last));
            e.metadata.name = name.into();
            Object::Event(e)
        };
        let events = [event(0, "old"), event(3000, "recent")];
        let gone = expired(&events, Duration::from_secs(3600), t(3601));
        assert_eq!(gone.len(), 1);
        assert!(matches!(&gone[0], Action::Delete { key, .. } if key.name == "old"));
    }
}
