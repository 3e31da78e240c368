//! `World`: the objects one batch of reconciles decides from, read from one store snapshot (or
//! built from a list in tests) and indexed by key, uid and owner.

use crate::store::{Snapshot, StoreError};
use edge_api::apps::{DaemonSet, Deployment, Job, ReplicaSet};
use edge_api::meta::ObjectMeta;
use edge_api::object::{Kind, Namespace, Node, Object, ObjectKey};
use edge_api::Pod;
use std::collections::HashMap;

#[derive(Default)]
pub struct World {
    /// The store revision the objects were read at.
    pub revision: u64,
    pub namespaces: Vec<Namespace>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub deployments: Vec<Deployment>,
    pub replica_sets: Vec<ReplicaSet>,
    pub daemon_sets: Vec<DaemonSet>,
    pub jobs: Vec<Job>,
    /// Every other kind that was read (ConfigMaps, Services, Events, ...).
    pub other: Vec<Object>,
    by_key: HashMap<ObjectKey, usize>,
    by_uid: HashMap<String, ObjectKey>,
    /// Owner uid -> the keys of objects that name it in their ownerReferences.
    dependents: HashMap<String, Vec<ObjectKey>>,
}

static NO_KEYS: Vec<ObjectKey> = Vec::new();

impl World {
    /// Indexes `objects` (any kinds, any order).
    pub fn new(revision: u64, objects: impl IntoIterator<Item = Object>) -> World {
        let mut w = World {
            revision,
            ..Default::default()
        };
        for obj in objects {
            w.insert(obj);
        }
        w
    }

    /// Reads `kinds` from one consistent store snapshot.
    pub fn load(snap: &Snapshot, kinds: &[Kind]) -> Result<World, StoreError> {
        let mut objects = Vec::new();
        for kind in kinds {
            objects.extend(snap.list(*kind, None)?);
        }
        Ok(World::new(snap.revision, objects))
    }

    fn insert(&mut self, obj: Object) {
        let key = obj.key();
        let meta = obj.meta();
        if !meta.uid.is_empty() {
            self.by_uid.insert(meta.uid.clone(), key.clone());
        }
        for r in &meta.owner_references {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .push(key.clone());
        }
        let index = match obj {
            Object::Namespace(o) => push(&mut self.namespaces, o),
            Object::Node(o) => push(&mut self.nodes, o),
            Object::Pod(o) => push(&mut self.pods, o),
            Object::Deployment(o) => push(&mut self.deployments, o),
            Object::ReplicaSet(o) => push(&mut self.replica_sets, o),
            Object::DaemonSet(o) => push(&mut self.daemon_sets, o),
            Object::Job(o) => push(&mut self.jobs, o),
            other => push(&mut self.other, other),
        };
        self.by_key.insert(key, index);
    }

    /// A copy of the object stored under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Object> {
        let i = *self.by_key.get(key)?;
        Some(match key.kind {
            Kind::Namespace => Object::Namespace(self.namespaces[i].clone()),
            Kind::Node => Object::Node(self.nodes[i].clone()),
            Kind::Pod => Object::Pod(self.pods[i].clone()),
            Kind::Deployment => Object::Deployment(self.deployments[i].clone()),
            Kind::ReplicaSet => Object::ReplicaSet(self.replica_sets[i].clone()),
            Kind::DaemonSet => Object::DaemonSet(self.daemon_sets[i].clone()),
            Kind::Job => Object::Job(self.jobs[i].clone()),
            _ => self.other[i].clone(),
        })
    }

    /// The metadata of the object under `key`, without copying it.
    pub fn meta(&self, key: &ObjectKey) -> Option<&ObjectMeta> {
        let i = *self.by_key.get(key)?;
        Some(match key.kind {
            Kind::Namespace => &self.namespaces[i].metadata,
            Kind::Node => &self.nodes[i].metadata,
            Kind::Pod => &self.pods[i].metadata,
            Kind::Deployment => &self.deployments[i].metadata,
            Kind::ReplicaSet => &self.replica_sets[i].metadata,
            Kind::DaemonSet => &self.daemon_sets[i].metadata,
            Kind::Job => &self.jobs[i].metadata,
            _ => self.other[i].meta(),
        })
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.by_key.keys()
    }

    pub fn key_of_uid(&self, uid: &str) -> Option<&ObjectKey> {
        self.by_uid.get(uid)
    }

    /// Keys of the objects that list `uid` among their owners.
    pub fn dependents_of(&self, uid: &str) -> &[ObjectKey] {
        self.dependents.get(uid).unwrap_or(&NO_KEYS)
    }

    fn typed<'a, T>(&'a self, key: &ObjectKey, kind: Kind, v: &'a [T]) -> Option<&'a T> {
        if key.kind != kind {
            return None;
        }
        self.by_key.get(key).map(|&i| &v[i])
    }

    pub fn pod(&self, key: &ObjectKey) -> Option<&Pod> {
        self.typed(key, Kind::Pod, &self.pods)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        let key = ObjectKey::new(Kind::Node, "", name);
        self.typed(&key, Kind::Node, &self.nodes)
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        let key = ObjectKey::new(Kind::Namespace, "", name);
        self.typed(&key, Kind::Namespace, &self.namespaces)
    }

    pub fn deployment(&self, key: &ObjectKey) -> Option<&Deployment> {
        self.typed(key, Kind::Deployment, &self.deployments)
    }

    pub fn replica_set(&self, key: &ObjectKey) -> Option<&ReplicaSet> {
        self.typed(key, Kind::ReplicaSet, &self.replica_sets)
    }

    pub fn daemon_set(&self, key: &ObjectKey) -> Option<&DaemonSet> {
        self.typed(key, Kind::DaemonSet, &self.daemon_sets)
    }

    pub fn job(&self, key: &ObjectKey) -> Option<&Job> {
        self.typed(key, Kind::Job, &self.jobs)
    }

    /// Pods whose controller owner reference names `uid`.
    pub fn pods_controlled_by<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = &'a Pod> {
        self.dependents_of(uid)
            .iter()
            .filter_map(|k| self.pod(k))
            .filter(move |p| super::controller_uid(&p.metadata) == Some(uid))
    }

    /// ReplicaSets whose controller owner reference names `uid`.
    pub fn replica_sets_controlled_by<'a>(
        &'a self,
        uid: &'a str,
    ) -> impl Iterator<Item = &'a ReplicaSet> {
        self.dependents_of(uid)
            .iter()
            .filter_map(|k| self.replica_set(k))
            .filter(move |r| super::controller_uid(&r.metadata) == Some(uid))
    }

    /// Whether new objects may be created in `namespace` (it exists and is not terminating).
    pub fn namespace_active(&self, namespace: &str) -> bool {
        self.namespace(namespace)
            .is_some_and(|n| n.metadata.deletion_timestamp.is_none())
    }
}

fn push<T>(v: &mut Vec<T>, item: T) -> usize {
    v.push(item);
    v.len() - 1
}
