//! Object operations behind the API: apply/create with defaults and validation, reads,
//! status updates and deletion, each turned into a compare-and-swap raft proposal.

use super::authz::Scope;
use super::writes::{first_read_for_write, FirstRead};
use crate::context::ControlPlane;
use crate::store::{Command, CommandResult, Precondition, Snapshot};
use chrono::Utc;
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::selector::Selector;
use edge_api::wire::{ApiError, ApplyOutcome, ErrorCode, Propagation, MAX_OBJECT_BYTES};

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Invalid, e.to_string())
}

/// Clears what clients may not set and fills defaults, then validates.
pub fn normalize(mut obj: Object) -> Result<Object, ApiError> {
    *obj.api_version_mut() = edge_api::API_VERSION.to_string();
    obj.default_namespace(edge_api::DEFAULT_NAMESPACE);
    let meta = obj.meta_mut();
    meta.uid.clear();
    meta.resource_version = 0;
    meta.generation = 0;
    meta.creation_timestamp = None;
    meta.deletion_timestamp = None;
    match &mut obj {
        Object::Pod(p) => p.status = Default::default(),
        Object::Secret(s) => s.normalize(),
        _ => {}
    }
    super::admission::default_tolerations(&mut obj);
    edge_api::validation::validate(&obj).map_err(invalid)?;
    let size = edge_api::codec::encode("object", &obj)
        .map_err(invalid)?
        .len();
    if size > MAX_OBJECT_BYTES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{} is {size} bytes encoded; the limit is {MAX_OBJECT_BYTES}",
                obj.key()
            ),
        ));
    }
    Ok(obj)
}

/// Decides what an apply does against the stored object: the pure half of `apply`.
pub fn plan_apply(
    existing: Option<&Object>,
    incoming: Object,
) -> Result<(Option<(Object, Precondition)>, ApplyOutcome), ApiError> {
    let Some(old) = existing else {
        let mut obj = incoming;
        let meta = obj.meta_mut();
        meta.uid = uuid::Uuid::new_v4().to_string();
        meta.creation_timestamp = Some(Utc::now());
        meta.generation = 1;
        return Ok((Some((obj, Precondition::Absent)), ApplyOutcome::Created));
    };
    let mut incoming = incoming;
    crate::controllers::keep_system_annotations(old.meta(), incoming.meta_mut());
    if old.same_desired_state(&incoming) {
        return Ok((None, ApplyOutcome::Unchanged));
    }
    if let (Object::Pod(a), Object::Pod(b)) = (old, &incoming) {
        let (mut x, mut y) = (a.spec.clone(), b.spec.clone());
        x.node_name = None;
        y.node_name = None;
        if x != y {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                format!(
                    "{}: spec: pod spec is immutable once created; only labels and annotations may change. Delete the pod and apply again",
                    old.key()
                ),
            ));
        }
    }
    let mut obj = incoming;
    obj.take_status_from(old);
    let (om, spec_changed) = (old.meta(), !old.same_desired_state(&obj));
    let meta = obj.meta_mut();
    meta.uid = om.uid.clone();
    meta.creation_timestamp = om.creation_timestamp;
    meta.deletion_timestamp = om.deletion_timestamp;
    meta.owner_references = om.owner_references.clone();
    meta.generation = om.generation + u64::from(spec_changed);
    Ok((
        Some((obj, Precondition::Revision(om.resource_version))),
        ApplyOutcome::Configured,
    ))
}

impl ControlPlane {
    pub async fn apply(
        &self,
        scope: &Scope,
        incoming: Object,
        dry_run: bool,
    ) -> Result<(Object, ApplyOutcome), ApiError> {
        let incoming = normalize(incoming)?;
        if !scope.covers(&incoming) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("may not write {}", incoming.key()),
            ));
        }
        let key = incoming.key();
        let mut outcome = ApplyOutcome::Unchanged;
        let mut planned = None;
        let _node_ports = super::services::allocation_lock(&incoming).await;
        let result = self
            .write_with_retry_from(first_read_for_write(&incoming), |snap| {
                require_namespace(snap, &key)?;
                let existing = snap.get(&key).map_err(internal)?;
                let incoming =
                    super::services::with_node_ports(snap, existing.as_ref(), incoming.clone())?;
                let (write, o) = plan_apply(existing.as_ref(), incoming)?;
                outcome = o;
                planned = write.as_ref().map(|(obj, _)| obj.clone()).or(existing);
                Ok(if dry_run {
                    None
                } else {
                    write.map(|(object, precondition)| Command::Put {
                        object,
                        precondition,
                    })
                })
            })
            .await?;
        let object = match result {
            CommandResult::Stored(o) => o,
            _ => planned.ok_or_else(|| ApiError::not_found(&key))?,
        };
        Ok((object, outcome))
    }

    /// Stores a new object; `AlreadyExists` is answered only from a linearizable read.
    pub async fn create(&self, incoming: Object) -> Result<Object, ApiError> {
        let incoming = normalize(incoming)?;
        let key = incoming.key();
        let _node_ports = super::services::allocation_lock(&incoming).await;
        let result = self
            .write_with_retry_from(first_read_for_write(&incoming), |snap| {
                require_namespace(snap, &key)?;
                if snap.get(&key).map_err(internal)?.is_some() {
                    return Err(ApiError::new(
                        ErrorCode::AlreadyExists,
                        format!("{key} already exists"),
                    ));
                }
                let incoming = super::services::with_node_ports(snap, None, incoming.clone())?;
                let (write, _) = plan_apply(None, incoming)?;
                let (object, precondition) =
                    write.ok_or_else(|| internal("create planned no write"))?;
                Ok(Some(Command::Put {
                    object,
                    precondition,
                }))
            })
            .await?;
        stored(result, &key)
    }

    pub async fn get(&self, scope: &Scope, key: &ObjectKey) -> Result<Object, ApiError> {
        let snap = self.current().await?;
        match snap.get(key).map_err(internal)? {
            Some(o) if scope.covers(&o) || referenced_by_node_pods(&snap, scope, key)? => Ok(o),
            _ => Err(ApiError::not_found(key)),
        }
    }

    pub async fn list(
        &self,
        scope: &Scope,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<(Vec<Object>, u64), ApiError> {
        let selector = parse_selector(selector)?;
        let snap = self.current().await?;
        let items = snap
            .list(kind, namespace)
            .map_err(internal)?
            .into_iter()
            .filter(|o| scope.covers(o) && selector.matches(&o.meta().labels))
            .collect();
        Ok((items, snap.revision))
    }

    /// Replaces the status of a stored object, keeping its spec and metadata.
    pub async fn update_status(&self, scope: &Scope, incoming: Object) -> Result<Object, ApiError> {
        let key = incoming.key();
        let mut before = None;
        // Everything the decision reads is the object its command's precondition guards.
        let result = self
            .write_with_retry_from(FirstRead::Local, |snap| {
                let existing = snap
                    .get(&key)
                    .map_err(internal)?
                    .ok_or_else(|| ApiError::not_found(&key))?;
                if !scope.covers(&existing) {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        format!("may not write the status of {key}"),
                    ));
                }
                super::admission::same_incarnation(&existing, &incoming)?;
                before = Some(existing.clone());
                let mut object = existing.clone();
                object.take_status_from(&incoming);
                if object == existing {
                    return Ok(None);
                }
                let precondition = Precondition::Revision(existing.meta().resource_version);
                Ok(Some(Command::Put {
                    object,
                    precondition,
                }))
            })
            .await?;
        match result {
            CommandResult::Stored(o) => {
                if let (Some(Object::Pod(old)), Object::Pod(new)) = (&before, &o) {
                    self.record_pod_events(old, new).await;
                }
                Ok(o)
            }
            _ => self.get(scope, &key).await,
        }
    }

    /// Events the agent's report implies (Started, BackOff, Unhealthy, ...), as kubelet's.
    async fn record_pod_events(&self, old: &edge_api::Pod, new: &edge_api::Pod) {
        let about = crate::controllers::object_ref(Kind::Pod, &new.metadata);
        for (type_, reason, message) in crate::pod_events::from_status_change(old, new) {
            let note = crate::controllers::EventNote {
                type_,
                ..crate::controllers::EventNote::normal(&about, "agent", reason, &message)
            };
            crate::events::emit(self, &note).await;
        }
    }

    /// Deletes an object (see `plan_delete`). The garbage collector and the namespace
    /// controller finish what is left: dependents, finalizers, a namespace's contents.
    pub async fn delete(
        &self,
        scope: &Scope,
        key: &ObjectKey,
        force: bool,
        propagation: Propagation,
    ) -> Result<Object, ApiError> {
        if key.kind == Kind::Namespace && matches!(key.name.as_str(), "default" | "edge-system") {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{key} is built in and cannot be deleted"),
            ));
        }
        let by_node = matches!(scope, Scope::Node(_));
        // Only Foreground and Orphan look for dependents, which no precondition guards.
        let first = match propagation {
            Propagation::Background => FirstRead::Local,
            _ => FirstRead::LeaderLocal,
        };
        let result = self
            .write_with_retry_from(first, |snap| {
                let existing = match snap.get(key).map_err(internal)? {
                    Some(o) if scope.covers(&o) => o,
                    _ => return Err(ApiError::not_found(key)),
                };
                let dependents = match propagation {
                    Propagation::Background => false,
                    _ => has_dependents(snap, &existing.meta().uid)?,
                };
                plan_delete(
                    &existing,
                    force,
                    by_node,
                    propagation,
                    dependents,
                    Utc::now(),
                )
            })
            .await?;
        match result {
            CommandResult::Stored(o) | CommandResult::Deleted(o) => Ok(o),
            _ => self.get(scope, key).await,
        }
    }

    /// Creates the built-in namespaces if they are missing (run by the leader at start).
    pub async fn ensure_builtin_namespaces(&self) -> Result<(), ApiError> {
        for name in [edge_api::DEFAULT_NAMESPACE, "edge-system"] {
            let mut ns = edge_api::Namespace::default();
            ns.metadata.name = name.to_string();
            ns.status.phase = "Active".into();
            match self.create(Object::Namespace(ns)).await {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A node may read a ConfigMap or Secret only while one of its pods uses it.
fn referenced_by_node_pods(
    snap: &Snapshot,
    scope: &Scope,
    key: &ObjectKey,
) -> Result<bool, ApiError> {
    if !matches!(key.kind, Kind::ConfigMap | Kind::Secret) || *scope == Scope::Everything {
        return Ok(false);
    }
    let pods = snap
        .list(Kind::Pod, Some(&key.namespace))
        .map_err(internal)?;
    Ok(pods
        .iter()
        .filter(|o| scope.covers(o))
        .filter_map(|o| o.as_pod())
        .any(|p| p.references(key.kind, &key.name)))
}

/// Decides what deleting `existing` writes: the pure half of `delete`, as Kubernetes does it.
/// - A pod running on a node is marked terminating so its agent stops it and then removes it;
///   `force`, or a pod not running anywhere, goes now. A node may only remove pods so marked.
/// - A namespace is marked Terminating; the namespace controller deletes its contents, then it.
/// - Anything else: Background deletes it now (the garbage collector removes its dependents);
///   Foreground and Orphan mark it with the `foregroundDeletion` / `orphan` finalizer for the
///   collector. An object that already has finalizers is marked and waits for them.
///
/// With no dependents, Foreground and Orphan have nothing to wait for or keep: it goes now.
/// `Ok(None)` when it is already being deleted.
pub fn plan_delete(
    existing: &Object,
    force: bool,
    by_node: bool,
    propagation: Propagation,
    has_dependents: bool,
    now: chrono::DateTime<Utc>,
) -> Result<Option<Command>, ApiError> {
    let key = existing.key();
    let precondition = Precondition::Revision(existing.meta().resource_version);
    let delete_now = || {
        Ok(Some(Command::Delete {
            key: key.clone(),
            precondition: precondition.clone(),
        }))
    };
    let mut marked = existing.clone();
    if let Object::Pod(p) = existing {
        let running_somewhere = p.spec.node_name.is_some() && !p.status.phase.is_terminal();
        if by_node && p.metadata.deletion_timestamp.is_none() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "a node may only remove pods being deleted",
            ));
        }
        if !running_somewhere || force || by_node {
            return delete_now();
        }
    }
    if existing.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let finalizer = match propagation {
        _ if matches!(key.kind, Kind::Pod | Kind::Namespace) || !has_dependents => None,
        Propagation::Background => None,
        Propagation::Foreground => Some(crate::controllers::FOREGROUND),
        Propagation::Orphan => Some(crate::controllers::ORPHAN),
    };
    let waits = matches!(key.kind, Kind::Pod | Kind::Namespace)
        || finalizer.is_some()
        || !existing.meta().finalizers.is_empty();
    if !waits {
        return delete_now();
    }
    let meta = marked.meta_mut();
    meta.deletion_timestamp = Some(now);
    if let Some(f) = finalizer {
        if !meta.finalizers.iter().any(|x| x == f) {
            meta.finalizers.push(f.to_string());
        }
    }
    if let Object::Namespace(ns) = &mut marked {
        ns.status.phase = crate::controllers::namespace::TERMINATING.into();
    }
    Ok(Some(Command::Put {
        object: marked,
        precondition,
    }))
}

/// Whether any object names `uid` among its owners (a full scan: only Foreground and Orphan
/// deletes ask).
fn has_dependents(snap: &Snapshot, uid: &str) -> Result<bool, ApiError> {
    for kind in Kind::ALL {
        let objects = snap.list(kind, None).map_err(internal)?;
        if objects
            .iter()
            .any(|o| o.meta().owner_references.iter().any(|r| r.uid == uid))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn require_namespace(snap: &Snapshot, key: &ObjectKey) -> Result<(), ApiError> {
    if !key.kind.namespaced() {
        return Ok(());
    }
    let ns = ObjectKey::new(Kind::Namespace, "", &key.namespace);
    let head = snap
        .get_as::<crate::store::ObjectHead>(&ns)
        .map_err(internal)?;
    crate::store::namespace_admits(key, head)
}

pub fn parse_selector(s: Option<&str>) -> Result<Selector, ApiError> {
    Selector::parse(s.unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))
}

fn stored(r: CommandResult, key: &ObjectKey) -> Result<Object, ApiError> {
    match r {
        CommandResult::Stored(o) => Ok(o),
        _ => Err(internal(format!("write of {key} did not store it"))),
    }
}

pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

pub fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("control plane unavailable: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(image_hex: char, label: &str) -> Object {
        let mut p = edge_api::Pod::default();
        p.metadata.name = "p".into();
        p.metadata.labels.insert("app".into(), label.into());
        let c = edge_api::Container {
            name: "main".into(),
            image: format!("sha256:{}", image_hex.to_string().repeat(64)),
            ..Default::default()
        };
        p.spec.containers.push(c);
        normalize(Object::Pod(p)).unwrap()
    }

    #[test]
    fn first_apply_creates_with_identity() {
        let (w, outcome) = plan_apply(None, pod('a', "x")).unwrap();
        let (obj, pre) = w.unwrap();
        assert_eq!(outcome, ApplyOutcome::Created);
        assert_eq!(pre, Precondition::Absent);
        assert!(!obj.meta().uid.is_empty());
        assert_eq!(obj.meta().generation, 1);
        assert_eq!(obj.key().namespace, "default");
    }

    #[test]
    fn same_manifest_is_unchanged_and_label_change_is_configured() {
        let (w, _) = plan_apply(None, pod('a', "x")).unwrap();
        let mut stored = w.unwrap().0;
        stored.meta_mut().resource_version = 7;
        let (w, outcome) = plan_apply(Some(&stored), pod('a', "x")).unwrap();
        assert!(w.is_none());
        assert_eq!(outcome, ApplyOutcome::Unchanged);
        let (w, outcome) = plan_apply(Some(&stored), pod('a', "y")).unwrap();
        let (obj, pre) = w.unwrap();
        assert_eq!(outcome, ApplyOutcome::Configured);
        assert_eq!(pre, Precondition::Revision(7));
        assert_eq!(obj.meta().uid, stored.meta().uid);
    }

    #[test]
    fn pod_spec_changes_are_refused() {
        let (w, _) = plan_apply(None, pod('a', "x")).unwrap();
        let stored = w.unwrap().0;
        let e = plan_apply(Some(&stored), pod('b', "x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(e.message.contains("immutable"), "{e}");
    }

    #[test]
    fn normalize_clears_client_set_status() {
        let mut p = pod('a', "x");
        if let Object::Pod(pp) = &mut p {
            pp.status.phase = edge_api::PodPhase::Succeeded;
            pp.metadata.uid = "forged".into();
        }
        let n = normalize(p).unwrap();
        assert_eq!(
            n.as_pod().unwrap().status.phase,
            edge_api::PodPhase::Pending
        );
        assert!(n.meta().uid.is_empty());
    }
}
