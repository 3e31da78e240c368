//! The API server's write path on a single in-process server: apply, create and delete answer
//! as before now that a write's first decision is made on the server's own applied state, and
//! a decision made on an unconfirmed view that would be stale is made again on a linearizable
//! read instead of being answered.

use edge_api::object::{Object, ObjectKey};
use edge_api::wire::{ApiError, ApplyOutcome, ErrorCode, Propagation};
use edge_control::apiserver::authz::Scope;
use edge_control::apiserver::writes::FirstRead;
mod common;

use common::server;
use edge_control::server::RunningServer;
use edge_control::store::{Command, CommandResult, Precondition};

fn parse(yaml: &str) -> Object {
    edge_api::manifest::parse_documents(yaml, "test")
        .unwrap()
        .remove(0)
}

fn config_map(namespace: &str, level: &str) -> Object {
    parse(&format!(
        "apiVersion: edge.dev/v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {namespace}}}\ndata: {{level: {level}}}\n"
    ))
}

fn namespace(name: &str) -> Object {
    parse(&format!(
        "apiVersion: edge.dev/v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"
    ))
}

fn level(o: &Object) -> String {
    match o {
        Object::ConfigMap(cm) => cm.data["level"].clone(),
        other => panic!("not a ConfigMap: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_configures_and_leaves_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let cp = &s.control;
    let all = Scope::Everything;

    let (created, outcome) = cp
        .apply(&all, config_map("default", "debug"), false)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Created);
    assert!(created.meta().resource_version > 0);
    assert!(!created.meta().uid.is_empty());

    let (configured, outcome) = cp
        .apply(&all, config_map("default", "info"), false)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Configured);
    assert_eq!(configured.meta().uid, created.meta().uid);
    assert!(configured.meta().resource_version > created.meta().resource_version);
    assert_eq!(configured.meta().generation, created.meta().generation + 1);

    let (same, outcome) = cp
        .apply(&all, config_map("default", "info"), false)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Unchanged);
    assert_eq!(
        same, configured,
        "an unchanged apply answers the stored object"
    );

    let read = cp.get(&all, &configured.key()).await.unwrap();
    assert_eq!(level(&read), "info");

    // A dry run writes nothing but answers what would be stored.
    let (planned, outcome) = cp
        .apply(&all, config_map("default", "warn"), true)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Configured);
    assert_eq!(level(&planned), "warn");
    let read = cp.get(&all, &configured.key()).await.unwrap();
    assert_eq!(level(&read), "info");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_delete_and_the_namespace_guard() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let cp = &s.control;
    let all = Scope::Everything;

    let first = cp.create(config_map("default", "debug")).await.unwrap();
    let again = cp.create(config_map("default", "other")).await.unwrap_err();
    assert_eq!(again.code, ErrorCode::AlreadyExists, "{again}");
    let read = cp.get(&all, &first.key()).await.unwrap();
    assert_eq!(level(&read), "debug", "a refused create changes nothing");

    let missing = cp
        .apply(&all, config_map("nowhere", "debug"), false)
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound, "{missing}");
    assert!(missing.message.contains("namespace"), "{missing}");

    // A namespace marked for deletion takes nothing new, even right after the delete.
    cp.create(namespace("doomed")).await.unwrap();
    let marked = cp
        .delete(
            &all,
            &namespace("doomed").key(),
            false,
            Propagation::Background,
        )
        .await
        .unwrap();
    assert!(marked.meta().deletion_timestamp.is_some());
    let refused = cp
        .apply(&all, config_map("doomed", "debug"), false)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");

    let gone = cp
        .delete(&all, &first.key(), false, Propagation::Background)
        .await
        .unwrap();
    assert_eq!(gone.key(), first.key());
    let e = cp.get(&all, &first.key()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = cp
        .delete(&all, &first.key(), false, Propagation::Background)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    s.shutdown().await;
}

/// What the n-th decision of a write does, for decisions that stand in for one made on a view
/// from before the object's last write.
#[derive(Clone, Copy, Debug)]
enum Decision {
    /// A put whose precondition names the revision before the stored one.
    StalePut,
    /// A put at the stored revision.
    Put,
    /// Nothing to write.
    Nothing,
    /// The object is not there.
    NotFound,
}

/// Runs one write whose decisions follow `script` (the last one repeats) and returns its
/// result and how many decisions it made.
async fn scripted_write(
    s: &RunningServer,
    key: &ObjectKey,
    first: FirstRead,
    script: &[Decision],
) -> (Result<CommandResult, ApiError>, usize) {
    let mut calls = 0;
    let result = s
        .control
        .write_with_retry_from(first, |snap| {
            let decision = script[calls.min(script.len() - 1)];
            calls += 1;
            let mut object = snap.get(key).unwrap().expect("the object is stored");
            let rv = object.meta().resource_version;
            if let Object::ConfigMap(cm) = &mut object {
                cm.data.insert("level".into(), format!("decision-{calls}"));
            }
            let put = |rv| {
                Ok(Some(Command::Put {
                    object: object.clone(),
                    precondition: Precondition::Revision(rv),
                }))
            };
            match decision {
                Decision::StalePut => put(rv - 1),
                Decision::Put => put(rv),
                Decision::Nothing => Ok(None),
                Decision::NotFound => Err(ApiError::not_found(key)),
            }
        })
        .await;
    (result, calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decision_on_an_unconfirmed_view_is_made_again_unless_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let (stored, _) = s
        .control
        .apply(&Scope::Everything, config_map("default", "debug"), false)
        .await
        .unwrap();
    let key = stored.key();
    use Decision::*;
    for first in [
        FirstRead::Local,
        FirstRead::LeaderLocal,
        FirstRead::Linearizable,
    ] {
        // A refused precondition is decided again on a fresh read, which commits.
        let (r, calls) = scripted_write(&s, &key, first, &[StalePut, Put]).await;
        let Ok(CommandResult::Stored(o)) = r else {
            panic!("{first:?}: {r:?}")
        };
        assert_eq!((calls, level(&o).as_str()), (2, "decision-2"), "{first:?}");

        // A decision that commits answers at once.
        let (r, calls) = scripted_write(&s, &key, first, &[Put]).await;
        assert!(
            matches!(r, Ok(CommandResult::Stored(_))),
            "{first:?}: {r:?}"
        );
        assert_eq!(calls, 1, "{first:?}");

        // Retries run out on a conflict that keeps coming.
        let (r, calls) = scripted_write(&s, &key, first, &[StalePut]).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::Conflict, "{first:?}");
        assert_eq!(calls, 8, "{first:?}");
    }

    // "Nothing to do" and "not found" from an unconfirmed view are not answers: the decision
    // is made again on a linearizable read, which answers. (On this single server, which leads,
    // the first decision of `LeaderLocal` is made on its own state too.)
    for first in [FirstRead::Local, FirstRead::LeaderLocal] {
        for stale in [Nothing, NotFound] {
            let (r, calls) = scripted_write(&s, &key, first, &[stale, Put]).await;
            let Ok(CommandResult::Stored(o)) = r else {
                panic!("{first:?} {stale:?}: {r:?}")
            };
            assert_eq!((calls, level(&o).as_str()), (2, "decision-2"));
        }
        let (r, calls) = scripted_write(&s, &key, first, &[Nothing, Nothing]).await;
        assert_eq!(
            (r.unwrap(), calls),
            (CommandResult::Nothing, 2),
            "{first:?}"
        );
        let (r, calls) = scripted_write(&s, &key, first, &[NotFound, NotFound]).await;
        assert_eq!((r.unwrap_err().code, calls), (ErrorCode::NotFound, 2));
    }
    // After a linearizable read, they are the answer.
    let (r, calls) = scripted_write(&s, &key, FirstRead::Linearizable, &[Nothing, Put]).await;
    assert_eq!((r.unwrap(), calls), (CommandResult::Nothing, 1));
    let (r, calls) = scripted_write(&s, &key, FirstRead::Linearizable, &[NotFound, Put]).await;
    assert_eq!((r.unwrap_err().code, calls), (ErrorCode::NotFound, 1));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_swaps_at_the_callers_revision_and_refuses_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let cp = &s.control;
    let all = Scope::Everything;
    let (stored, _) = cp
        .apply(&all, config_map("default", "debug"), false)
        .await
        .unwrap();
    let rv = stored.meta().resource_version;

    // At the stored revision: written, identity kept.
    let mut change = config_map("default", "info");
    change.meta_mut().resource_version = rv;
    let updated = cp.update(&all, change.clone()).await.unwrap();
    assert_eq!(level(&updated), "info");
    assert!(updated.meta().resource_version > rv);
    assert_eq!(updated.meta().uid, stored.meta().uid);

    // At the old revision again: the kubectl conflict, nothing written.
    let e = cp.update(&all, change).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    assert!(e.message.contains("has been modified"), "{e}");
    let read = cp.get(&all, &stored.key()).await.unwrap();
    assert_eq!(read, updated);

    // Nothing to change: the stored object, at its revision.
    let mut same = config_map("default", "info");
    same.meta_mut().resource_version = updated.meta().resource_version;
    assert_eq!(cp.update(&all, same).await.unwrap(), updated);

    // Not there.
    let mut missing = config_map("default", "info");
    missing.meta_mut().name = "nope".into();
    missing.meta_mut().resource_version = 1;
    let e = cp.update(&all, missing).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    s.shutdown().await;
}
