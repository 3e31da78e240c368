//! Deterministic application of raft commands to the state-machine tables.
//!
//! The API server does the rich work (defaults, validation, merging) before proposing; apply
//! only checks preconditions (compare-and-swap on resourceVersion) and writes, so replaying
//! the log on any server yields the same tables.

use super::staged::{ReadRow, Stage};
use super::REVISION_KEY;
use super::{decode_u64, revision_in, stored_at as stored, StoreError, BLOBS, META, OBJECTS};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::{ApiError, ErrorCode, EventType, WatchEvent};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Precondition {
    /// Write whatever is there.
    None,
    /// The object must not exist (create).
    Absent,
    /// The stored object must be at exactly this resourceVersion (update).
    Revision(u64),
}

// Commands are short-lived (built, encoded into the log, applied), so boxing the large
// variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    Put {
        object: Object,
        precondition: Precondition,
    },
    Delete {
        key: ObjectKey,
        precondition: Precondition,
    },
    /// Binds a pending pod to a node. Rejected if the pod or the node changed, or another pod
    /// was bound to that node, after the scheduler's snapshot: the placement would be stale.
    Bind {
        key: ObjectKey,
        node: String,
        snapshot_revision: u64,
    },
    PutBlob {
        digest: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Several commands in one raft entry, so that many changes cost one log write: each is
    /// checked and applied in order as if alone, and each change gets its own resourceVersion;
    /// a rejected one does not stop the others. The binds of one batch are decided in order by
    /// one scheduler, each seeing those before it, so a bind to a node an earlier bind of the
    /// same batch used is not stale. Batches do not nest.
    Batch(Vec<Command>),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub enum CommandResult {
    Stored(Object),
    Deleted(Object),
    BlobStored,
    Rejected(ApiError),
    /// The result of each command of a `Batch`, in order.
    Batch(Vec<CommandResult>),
    /// Membership changes and blank entries.
    #[default]
    Nothing,
}

/// Whether anyone waits here for an entry's result: its proposer, if the entry was proposed on
/// this server. Every server applies every entry, but only the proposer's answers go anywhere,
/// and building a stored object's copy for nobody was a tenth of a follower's apply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    Wanted,
    /// Stored and deleted objects are answered with `CommandResult::Nothing`; rejections are
    /// still given (they cost nothing extra).
    Unwanted,
}

impl Answer {
    fn give(self, result: impl FnOnce() -> CommandResult) -> CommandResult {
        match self {
            Answer::Wanted => result(),
            Answer::Unwanted => CommandResult::Nothing,
        }
    }
}

fn bind_key(node: &str) -> String {
    format!("last-bind/{node}")
}

/// The resourceVersions of one raft entry's changes. Every change to an object gets the next
/// revision (like etcd's, not the raft index), so that a watch resumed from any event's
/// resourceVersion misses none of the changes its entry made after it.
struct Revisions {
    /// The store's revision before this entry: anything at or below it came from earlier entries.
    before: u64,
    last: u64,
}

impl Revisions {
    fn next(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    fn made_by_this_entry(&self, revision: u64) -> bool {
        revision > self.before
    }
}

/// Applies the command of one raft entry. Each object it writes gets the next store revision
/// as its resourceVersion. Returns the result for the proposer and the events for watchers.
pub fn apply(
    stage: &mut Stage,
    command: &Command,
    answer: Answer,
) -> Result<(CommandResult, Vec<WatchEvent>), StoreError> {
    let before = revision_in(stage)?;
    let mut revs = Revisions {
        before,
        last: before,
    };
    let (result, events) = match command {
        Command::Batch(commands) => apply_batch(stage, &mut revs, commands, answer)?,
        one => apply_one(stage, &mut revs, one, answer)?,
    };
    if revs.last != before {
        stage.insert(META, REVISION_KEY, revs.last.to_be_bytes().to_vec());
    }
    Ok((result, events))
}

fn apply_one(
    stage: &mut Stage,
    revs: &mut Revisions,
    command: &Command,
    answer: Answer,
) -> Result<(CommandResult, Vec<WatchEvent>), StoreError> {
    let write = |stage: &mut Stage, mut obj: Object, revision: u64| {
        obj.meta_mut().resource_version = revision;
        let bytes = edge_api::codec::encode("object", &obj)?;
        stage.insert(OBJECTS, &obj.key().storage_key(), bytes);
        Ok::<_, StoreError>(obj)
    };
    match command {
        Command::Put {
            object,
            precondition,
        } => {
            let key = object.key();
            let existing = stored_revision(stage, &key)?;
            if let Some(reject) = check(&key, existing, precondition) {
                return Ok((CommandResult::Rejected(reject), vec![]));
            }
            // Checked here, at apply time, so that a create decided on a server's own (possibly
            // stale) view can never land in a namespace deleted meanwhile.
            if existing.is_none() && key.kind.namespaced() {
                let ns = ObjectKey::new(Kind::Namespace, "", &key.namespace);
                if let Err(reject) = namespace_admits(&key, stored::<ObjectHead>(stage, &ns)?) {
                    return Ok((CommandResult::Rejected(reject), vec![]));
                }
            }
            let event = if existing.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            };
            let obj = write(stage, object.clone(), revs.next())?;
            Ok((
                answer.give(|| CommandResult::Stored(obj.clone())),
                vec![event_of(event, obj)],
            ))
        }
        Command::Delete { key, precondition } => {
            let existing = stored::<Object>(stage, key)?;
            let revision = existing.as_ref().map(|o| o.meta().resource_version);
            if let Some(reject) = check(key, revision, precondition) {
                return Ok((CommandResult::Rejected(reject), vec![]));
            }
            let Some(mut obj) = existing else {
                return Ok((CommandResult::Rejected(ApiError::not_found(key)), vec![]));
            };
            stage.remove(OBJECTS, &key.storage_key());
            obj.meta_mut().resource_version = revs.next();
            Ok((
                answer.give(|| CommandResult::Deleted(obj.clone())),
                vec![event_of(EventType::Deleted, obj)],
            ))
        }
        Command::Bind {
            key,
            node,
            snapshot_revision,
        } => {
            let reject = |msg: String| {
                Ok((
                    CommandResult::Rejected(ApiError::new(ErrorCode::Conflict, msg)),
                    vec![],
                ))
            };
            let Some(Object::Pod(mut pod)) = stored::<Object>(stage, key)? else {
                return reject(format!("{key} no longer exists"));
            };
            if pod.spec.node_name.is_some() || pod.metadata.resource_version > *snapshot_revision {
                return reject(format!("{key} changed after the scheduling snapshot"));
            }
            let node_key = ObjectKey::new(edge_api::Kind::Node, "", node);
            match stored_revision(stage, &node_key)? {
                Some(revision) if revision <= *snapshot_revision => {}
                Some(_) => {
                    return reject(format!(
                        "node {node:?} changed after the scheduling snapshot"
                    ))
                }
                None => return reject(format!("node {node:?} no longer exists")),
            }
            let last_bind = stage.read(META, &bind_key(node), |v| v.map_or(0, decode_u64))?;
            // A bind earlier in the same batch was seen by this one's decision.
            if last_bind > *snapshot_revision && !revs.made_by_this_entry(last_bind) {
                return reject(format!(
                    "another pod was placed on {node:?} after the scheduling snapshot"
                ));
            }
            pod.spec.node_name = Some(node.clone());
            let obj = write(stage, Object::Pod(pod), revs.next())?;
            let revision = obj.meta().resource_version;
            stage.insert(META, &bind_key(node), revision.to_be_bytes().to_vec());
            Ok((
                answer.give(|| CommandResult::Stored(obj.clone())),
                vec![event_of(EventType::Modified, obj)],
            ))
        }
        Command::PutBlob { digest, data } => {
            if !stage.read(BLOBS, digest, |v| v.is_some())? {
                stage.insert(BLOBS, digest, data.clone());
            }
            Ok((CommandResult::BlobStored, vec![]))
        }
        Command::Batch(_) => Ok((nested_batch(), vec![])),
    }
}

fn apply_batch(
    stage: &mut Stage,
    revs: &mut Revisions,
    commands: &[Command],
    answer: Answer,
) -> Result<(CommandResult, Vec<WatchEvent>), StoreError> {
    let mut results = Vec::with_capacity(commands.len());
    let mut events = Vec::new();
    for command in commands {
        if matches!(command, Command::Batch(_)) {
            results.push(nested_batch());
            continue;
        }
        let (result, evs) = apply_one(stage, revs, command, answer)?;
        results.push(result);
        events.extend(evs);
    }
    Ok((CommandResult::Batch(results), events))
}

fn nested_batch() -> CommandResult {
    CommandResult::Rejected(ApiError::new(
        ErrorCode::Invalid,
        "a batch may not contain another batch; send its commands in one flat batch",
    ))
}

fn event_of(event_type: EventType, object: Object) -> WatchEvent {
    WatchEvent {
        event_type,
        resource_version: object.meta().resource_version,
        object,
    }
}

/// The resourceVersion of the object stored at `key`, if any, decoded without the rest of the
/// object: a Put needs no more, and decoding the whole stored copy was a tenth of its apply.
fn stored_revision(stage: &Stage, key: &ObjectKey) -> Result<Option<u64>, StoreError> {
    let head = stored::<ObjectHead>(stage, key)?;
    Ok(head.map(|h| h.resource_version))
}

/// A stored object (`{Kind: body}`) read for the parts of its metadata writes check; the
/// rest is skipped undecoded.
pub struct ObjectHead {
    pub resource_version: u64,
    /// Deletion has begun (a namespace that admits nothing new).
    pub terminating: bool,
}

#[derive(Deserialize)]
struct Body {
    metadata: Head,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    resource_version: u64,
    #[serde(default)]
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

impl<'de> Deserialize<'de> for ObjectHead {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneEntry;
        impl<'de> serde::de::Visitor<'de> for OneEntry {
            type Value = ObjectHead;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of one kind to an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ObjectHead, A::Error> {
                let Some(serde::de::IgnoredAny) = map.next_key()? else {
                    return Err(serde::de::Error::invalid_length(0, &self));
                };
                let body: Body = map.next_value()?;
                Ok(ObjectHead {
                    resource_version: body.metadata.resource_version,
                    terminating: body.metadata.deletion_timestamp.is_some(),
                })
            }
        }
        deserializer.deserialize_map(OneEntry)
    }
}

fn check(key: &ObjectKey, existing: Option<u64>, pre: &Precondition) -> Option<ApiError> {
    match (pre, existing) {
        (Precondition::None, _) => None,
        (Precondition::Absent, None) => None,
        (Precondition::Absent, Some(_)) => Some(ApiError::new(ErrorCode::AlreadyExists, format!("{key} already exists"))),
        (Precondition::Revision(_), None) => Some(ApiError::not_found(key)),
        (Precondition::Revision(rv), Some(stored)) if stored == *rv => None,
        (Precondition::Revision(rv), Some(stored)) => Some(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "{key} was modified (resourceVersion {stored} is not the expected {rv}); read it again and retry"
            ),
        )),
    }
}

/// Whether new content may be created for `key` in its namespace, given the namespace's head.
pub fn namespace_admits(key: &ObjectKey, namespace: Option<ObjectHead>) -> Result<(), ApiError> {
    match namespace {
        Some(n) if n.terminating => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "unable to create new content in namespace {:?} because it is being terminated",
                key.namespace
            ),
        )),
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "namespace {:?} not found; create it first (kind: Namespace) or use another",
                key.namespace
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{read_blob, read_snapshot, Staged};
    use edge_api::object::Kind;

    /// A fresh store file holding the `default` namespace (written directly, so revisions
    /// start at 0); the TempDir is returned so it outlives the database.
    fn db() -> (tempfile::TempDir, Staged) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("sm.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let ns = namespace("default", "x");
            let bytes = edge_api::codec::encode("object", &ns).unwrap();
            let mut objects = txn.open_table(OBJECTS).unwrap();
            objects
                .insert(ns.key().storage_key().as_str(), bytes.as_slice())
                .unwrap();
            txn.open_table(META).unwrap();
        }
        txn.commit().unwrap();
        (dir, Staged::new(std::sync::Arc::new(db)))
    }

    /// Applies one command as one raft entry, in its own stage (left in memory, unflushed).
    fn run(state: &Staged, cmd: Command) -> (CommandResult, Vec<WatchEvent>) {
        let mut stage = state.stage(&[OBJECTS, META, BLOBS]).unwrap();
        let out = apply(&mut stage, &cmd, Answer::Wanted).unwrap();
        state.commit(stage);
        out
    }

    fn namespace(name: &str, label: &str) -> Object {
        let mut ns = edge_api::Namespace::default();
        ns.metadata.name = name.into();
        ns.metadata.labels.insert("l".into(), label.into());
        Object::Namespace(ns)
    }

    fn node(name: &str) -> Object {
        let mut n = edge_api::Node::default();
        n.metadata.name = name.into();
        Object::Node(n)
    }

    fn pod(name: &str) -> Object {
        let mut p = edge_api::Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = "default".into();
        Object::Pod(p)
    }

    fn put(object: Object, precondition: Precondition) -> Command {
        Command::Put {
            object,
            precondition,
        }
    }

    fn bind(pod: &str, node: &str, snapshot_revision: u64) -> Command {
        Command::Bind {
            key: ObjectKey::new(Kind::Pod, "default", pod),
            node: node.into(),
            snapshot_revision,
        }
    }

    fn get(db: &Staged, obj: &Object) -> Option<Object> {
        read_snapshot(db).unwrap().get(&obj.key()).unwrap()
    }

    fn rejected_code(r: &CommandResult) -> Option<ErrorCode> {
        match r {
            CommandResult::Rejected(e) => Some(e.code),
            _ => None,
        }
    }

    #[test]
    fn put_sets_resource_version_to_the_next_revision_and_emits_added_then_modified() {
        let (_d, db) = db();
        let (r, ev) = run(&db, put(namespace("a", "1"), Precondition::Absent));
        let CommandResult::Stored(stored) = r else {
            panic!("{r:?}")
        };
        assert_eq!(stored.meta().resource_version, 1);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].event_type, ev[0].resource_version),
            (EventType::Added, 1)
        );
        assert_eq!(read_snapshot(&db).unwrap().revision, 1);
        assert_eq!(get(&db, &stored), Some(stored.clone()));

        let (r, ev) = run(&db, put(namespace("a", "2"), Precondition::Revision(1)));
        assert!(matches!(r, CommandResult::Stored(ref o) if o.meta().resource_version == 2));
        assert_eq!(ev[0].event_type, EventType::Modified);
        assert_eq!(read_snapshot(&db).unwrap().revision, 2);
    }

    #[test]
    fn create_of_existing_is_rejected_and_changes_nothing() {
        let (_d, db) = db();
        run(&db, put(namespace("a", "1"), Precondition::Absent));
        let before = get(&db, &namespace("a", "1"));
        let (r, ev) = run(&db, put(namespace("a", "2"), Precondition::Absent));
        assert_eq!(rejected_code(&r), Some(ErrorCode::AlreadyExists));
        assert!(ev.is_empty());
        assert_eq!(get(&db, &namespace("a", "1")), before);
        assert_eq!(read_snapshot(&db).unwrap().revision, 1);
    }

    #[test]
    fn a_put_reads_only_the_stored_revision_and_it_matches_the_whole_object() {
        let (_d, db) = db();
        run(&db, put(namespace("a", "1"), Precondition::Absent));
        let mut cm = edge_api::ConfigMap::default();
        cm.metadata.name = "big".into();
        cm.metadata.namespace = "a".into();
        cm.data.insert("v".into(), "x".repeat(10_000));
        let (r, _) = run(
            &db,
            put(Object::ConfigMap(cm.clone()), Precondition::Absent),
        );
        let stored = match r {
            CommandResult::Stored(o) => o,
            other => panic!("{other:?}"),
        };
        for flushed in [false, true] {
            if flushed {
                db.flush(false).unwrap();
            }
            let stage = db.stage(&[OBJECTS]).unwrap();
            for key in [stored.key(), namespace("a", "1").key()] {
                let whole: Object = super::stored(&stage, &key).unwrap().unwrap();
                let head = stored_revision(&stage, &key).unwrap();
                assert_eq!(head, Some(whole.meta().resource_version));
            }
            let missing = ObjectKey::new(Kind::ConfigMap, "a", "none");
            assert_eq!(stored_revision(&stage, &missing).unwrap(), None);
        }
    }

    #[test]
    fn an_unwanted_answer_changes_nothing_but_the_result() {
        let (_d, db) = db();
        let cmd = put(namespace("a", "1"), Precondition::Absent);
        let mut stage = db.stage(&[OBJECTS, META, BLOBS]).unwrap();
        let (r, ev) = apply(&mut stage, &cmd, Answer::Unwanted).unwrap();
        db.commit(stage);
        assert_eq!(r, CommandResult::Nothing);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event_type, EventType::Added);
        assert_eq!(get(&db, &namespace("a", "1")), Some(ev[0].object.clone()));
        // A rejection is still told.
        let mut stage = db.stage(&[OBJECTS, META, BLOBS]).unwrap();
        let (r, _) = apply(&mut stage, &cmd, Answer::Unwanted).unwrap();
        assert_eq!(rejected_code(&r), Some(ErrorCode::AlreadyExists));
    }

    #[test]
    fn update_at_a_stale_revision_conflicts() {
        let (_d, db) = db();
        run(&db, put(namespace("a", "1"), Precondition::Absent));
        run(&db, put(namespace("a", "2"), Precondition::Revision(1)));
        let (r, ev) = run(&db, put(namespace("a", "3"), Precondition::Revision(1)));
        assert_eq!(rejected_code(&r), Some(ErrorCode::Conflict));
        assert!(ev.is_empty());
        let (r, _) = run(&db, put(namespace("b", "1"), Precondition::Revision(1)));
        assert_eq!(rejected_code(&r), Some(ErrorCode::NotFound));
    }

    #[test]
    fn delete_emits_deleted_and_missing_is_not_found() {
        let (_d, db) = db();
        let key = namespace("a", "1").key();
        let (r, _) = run(
            &db,
            Command::Delete {
                key: key.clone(),
                precondition: Precondition::None,
            },
        );
        assert_eq!(rejected_code(&r), Some(ErrorCode::NotFound));
        run(&db, put(namespace("a", "1"), Precondition::Absent));
        let (r, ev) = run(
            &db,
            Command::Delete {
                key: key.clone(),
                precondition: Precondition::None,
            },
        );
        assert!(matches!(r, CommandResult::Deleted(ref o) if o.meta().resource_version == 2));
        assert_eq!(
            (ev[0].event_type, ev[0].resource_version),
            (EventType::Deleted, 2)
        );
        assert_eq!(get(&db, &namespace("a", "1")), None);
        assert_eq!(read_snapshot(&db).unwrap().revision, 2);
    }

    #[test]
    fn bind_sets_node_name_when_nothing_changed_since_the_snapshot() {
        let (_d, db) = db();
        run(&db, put(node("n1"), Precondition::Absent));
        run(&db, put(pod("p"), Precondition::Absent));
        let (r, ev) = run(&db, bind("p", "n1", 2));
        let CommandResult::Stored(Object::Pod(p)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(p.spec.node_name.as_deref(), Some("n1"));
        assert_eq!(p.metadata.resource_version, 3);
        assert_eq!(ev[0].event_type, EventType::Modified);
        assert_eq!(get(&db, &pod("p")), Some(Object::Pod(p)));
    }

    /// The rejection's message, to tell apart why a bind was refused.
    fn rejection(r: &CommandResult) -> String {
        match r {
            CommandResult::Rejected(e) => {
                assert_eq!(e.code, ErrorCode::Conflict);
                e.message.clone()
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn bind_is_rejected_when_its_snapshot_is_stale() {
        let (_d, db) = db();
        run(&db, put(node("n1"), Precondition::Absent));
        run(&db, put(pod("p"), Precondition::Absent));
        run(&db, put(pod("q"), Precondition::Absent));
        run(&db, put(pod("r"), Precondition::Absent));

        // The pod changed after the scheduler's snapshot (taken at 4), to revision 5.
        run(&db, put(pod("p"), Precondition::Revision(2)));
        let (r, ev) = run(&db, bind("p", "n1", 4));
        assert!(rejection(&r).contains("changed after"), "{r:?}");
        assert!(ev.is_empty());

        // Another pod was bound to the node after the snapshot (taken at 4, bind at 6).
        assert!(matches!(
            run(&db, bind("q", "n1", 4)).0,
            CommandResult::Stored(_)
        ));
        let (r, _) = run(&db, bind("r", "n1", 4));
        assert!(rejection(&r).contains("another pod"), "{r:?}");
        // A placement decided after that bind is fine.
        let (r, _) = run(&db, bind("r", "n1", 6));
        assert!(matches!(r, CommandResult::Stored(_)), "{r:?}");

        // The node does not exist.
        run(&db, put(pod("s"), Precondition::Absent));
        let (r, _) = run(&db, bind("s", "ghost", 8));
        assert!(rejection(&r).contains("no longer exists"), "{r:?}");
        let unbound =
            |o: Option<Object>| matches!(o, Some(Object::Pod(p)) if p.spec.node_name.is_none());
        assert!(unbound(get(&db, &pod("s"))));
        assert!(unbound(get(&db, &pod("p"))));
        assert_eq!(read_snapshot(&db).unwrap().revision, 8);
    }

    #[test]
    fn new_content_needs_a_namespace_that_is_not_terminating() {
        let (_d, db) = db();
        let mut elsewhere = pod("a");
        elsewhere.meta_mut().namespace = "prod".into();
        let (r, events) = run(&db, put(elsewhere.clone(), Precondition::Absent));
        assert!(
            matches!(&r, CommandResult::Rejected(e) if e.code == ErrorCode::NotFound && e.message.contains("\"prod\" not found")),
            "{r:?}"
        );
        assert!(events.is_empty());

        run(&db, put(namespace("prod", "x"), Precondition::Absent));
        assert!(matches!(
            run(&db, put(elsewhere.clone(), Precondition::Absent)).0,
            CommandResult::Stored(_)
        ));
        let mut terminating = namespace("prod", "x");
        terminating.meta_mut().deletion_timestamp = Some(chrono::Utc::now());
        run(&db, put(terminating, Precondition::None));
        let mut second = elsewhere.clone();
        second.meta_mut().name = "b".into();
        let (r, _) = run(&db, put(second, Precondition::Absent));
        assert!(
            matches!(&r, CommandResult::Rejected(e) if e.code == ErrorCode::Forbidden),
            "{r:?}"
        );
        // What is already there may still change (finalizers, status) while the namespace goes.
        let (r, _) = run(&db, put(elsewhere, Precondition::Revision(2)));
        assert!(matches!(r, CommandResult::Stored(_)), "{r:?}");
    }

    #[test]
    fn a_batch_applies_each_command_alone_with_its_own_revision() {
        let (_d, db) = db();
        run(&db, put(node("n1"), Precondition::Absent));
        for name in ["p", "q", "r", "s"] {
            run(&db, put(pod(name), Precondition::Absent));
        }
        // Decided from a snapshot at 5; r changes before the batch lands.
        run(&db, put(pod("r"), Precondition::Revision(4)));
        let batch = Command::Batch(vec![
            bind("p", "n1", 5),
            bind("q", "n1", 5),
            bind("r", "n1", 5),
            Command::Batch(vec![]),
        ]);
        let (r, ev) = run(&db, batch);
        let CommandResult::Batch(results) = r else {
            panic!("{r:?}")
        };
        // q follows p onto n1 in the same batch: not stale. Each change has its own revision, so
        // a watch resumed from p's event still sees q's.
        for (result, revision) in results[..2].iter().zip([7, 8]) {
            assert!(
                matches!(result, CommandResult::Stored(o) if o.meta().resource_version == revision),
                "{result:?}"
            );
        }
        assert!(
            rejection(&results[2]).contains("changed after"),
            "{results:?}"
        );
        assert_eq!(rejected_code(&results[3]), Some(ErrorCode::Invalid));
        let revs: Vec<u64> = ev.iter().map(|e| e.resource_version).collect();
        assert_eq!(revs, vec![7, 8]);
        assert_eq!(read_snapshot(&db).unwrap().revision, 8);
        // A later bind decided from the same old snapshot is stale again.
        let (r, _) = run(&db, bind("s", "n1", 5));
        assert!(rejection(&r).contains("another pod"), "{r:?}");
    }

    #[test]
    fn put_blob_is_idempotent() {
        let (_d, db) = db();
        let blob = |data: &[u8]| Command::PutBlob {
            digest: "sha256:x".into(),
            data: data.to_vec(),
        };
        let (r, ev) = run(&db, blob(b"first"));
        assert_eq!(r, CommandResult::BlobStored);
        assert!(ev.is_empty());
        let (r, _) = run(&db, blob(b"second"));
        assert_eq!(r, CommandResult::BlobStored);
        assert_eq!(
            read_blob(&db, "sha256:x").unwrap().as_deref(),
            Some(&b"first"[..])
        );
        // Blobs are not objects: the object revision does not move.
        assert_eq!(read_snapshot(&db).unwrap().revision, 0);
    }
}
