//! `Request::Update`: a compare-and-swap replacement of an object's spec, labels and annotations,
//! written only if the caller's `metadata.resourceVersion` is still the stored one (what
//! `edgectl label|annotate|scale|rollout` use for read-modify-write; they retry on Conflict).

use super::authz::Scope;
use super::objects::{internal, normalize};
use super::writes::FirstRead;
use crate::context::ControlPlane;
use crate::store::{Command, CommandResult, Precondition};
use edge_api::object::{Object, ObjectKey};
use edge_api::wire::{ApiError, ErrorCode};

/// The message kubectl users know from an update that lost a race.
fn conflict(key: &ObjectKey) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
            key.kind.plural(),
            key.name
        ),
    )
}

/// Decides what an update stores, given the stored object and the normalized incoming one read
/// at `expected` revision: the pure half of `update`. `Ok(None)` means nothing changes.
pub fn plan_update(
    existing: &Object,
    incoming: Object,
    expected: u64,
) -> Result<Option<Object>, ApiError> {
    let key = existing.key();
    if existing.meta().resource_version != expected {
        return Err(conflict(&key));
    }
    if existing.same_desired_state(&incoming) {
        return Ok(None);
    }
    if let (Object::Pod(a), Object::Pod(b)) = (existing, &incoming) {
        let (mut x, mut y) = (a.spec.clone(), b.spec.clone());
        x.node_name = None;
        y.node_name = None;
        if x != y {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                format!("{key}: spec: pod spec is immutable once created; only labels and annotations may change"),
            ));
        }
    }
    let mut object = incoming;
    object.take_status_from(existing);
    // The spec changed when the objects still differ with the old labels and annotations.
    let mut spec_only = object.clone();
    spec_only.meta_mut().labels = existing.meta().labels.clone();
    spec_only.meta_mut().annotations = existing.meta().annotations.clone();
    let spec_changed = !existing.same_desired_state(&spec_only);
    let old = existing.meta();
    let meta = object.meta_mut();
    meta.uid = old.uid.clone();
    meta.creation_timestamp = old.creation_timestamp;
    meta.deletion_timestamp = old.deletion_timestamp;
    meta.owner_references = old.owner_references.clone();
    meta.finalizers = old.finalizers.clone();
    meta.generation = old.generation + u64::from(spec_changed);
    meta.resource_version = old.resource_version;
    Ok(Some(object))
}

impl ControlPlane {
    /// Replaces spec, labels and annotations of an existing object if it is still at the
    /// revision the caller read; returns the stored object (unchanged if nothing differs).
    pub async fn update(&self, scope: &Scope, incoming: Object) -> Result<Object, ApiError> {
        let expected = incoming.meta().resource_version;
        let key = incoming.key();
        if expected == 0 {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("{key}: metadata.resourceVersion is required for an update; read the object first and send it back changed"),
            ));
        }
        let incoming = normalize(incoming)?;
        let key = incoming.key();
        let mut unchanged = None;
        // Decided on this server's own view first: everything the decision reads is the object
        // the command's precondition pins to the caller's revision, so a stale view can only
        // make it refuse or find nothing to do, which is decided again on a current read.
        let result = self
            .write_with_retry_from(FirstRead::Local, |snap| {
                let existing = match snap.get(&key).map_err(internal)? {
                    Some(o) if scope.covers(&o) => o,
                    _ => return Err(ApiError::not_found(&key)),
                };
                let Some(object) = plan_update(&existing, incoming.clone(), expected)? else {
                    unchanged = Some(existing);
                    return Ok(None);
                };
                Ok(Some(Command::Put {
                    object,
                    precondition: Precondition::Revision(expected),
                }))
            })
            .await?;
        match (result, unchanged) {
            (CommandResult::Stored(o), _) => Ok(o),
            (CommandResult::Nothing, Some(existing)) => Ok(existing),
            _ => Err(internal(format!("update of {key} did not store it"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::apps::Deployment;

    fn deployment(replicas: i32) -> Object {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        d.metadata.namespace = "default".into();
        d.metadata.labels.insert("app".into(), "web".into());
        d.spec.replicas = Some(replicas);
        Object::Deployment(d)
    }

    fn stored(replicas: i32) -> Object {
        let mut o = deployment(replicas);
        let m = o.meta_mut();
        m.uid = "u-1".into();
        m.resource_version = 10;
        m.generation = 3;
        m.finalizers = vec!["foregroundDeletion".into()];
        if let Object::Deployment(d) = &mut o {
            d.status.ready_replicas = 2;
        }
        o
    }

    #[test]
    fn spec_change_bumps_generation_and_keeps_identity_and_status() {
        let planned = plan_update(&stored(2), deployment(5), 10).unwrap().unwrap();
        let m = planned.meta();
        assert_eq!((m.uid.as_str(), m.generation), ("u-1", 4));
        assert_eq!(m.finalizers, ["foregroundDeletion"]);
        let Object::Deployment(d) = planned else {
            panic!()
        };
        assert_eq!((d.spec.replicas, d.status.ready_replicas), (Some(5), 2));
    }

    #[test]
    fn label_change_keeps_generation() {
        let mut incoming = deployment(2);
        incoming
            .meta_mut()
            .labels
            .insert("tier".into(), "front".into());
        let planned = plan_update(&stored(2), incoming, 10).unwrap().unwrap();
        assert_eq!(planned.meta().generation, 3);
        assert_eq!(planned.meta().labels["tier"], "front");
    }

    #[test]
    fn stale_revision_is_a_conflict_and_no_change_writes_nothing() {
        let e = plan_update(&stored(2), deployment(5), 9).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("deployments \"web\""), "{e}");
        assert_eq!(plan_update(&stored(2), deployment(2), 10).unwrap(), None);
    }
}
