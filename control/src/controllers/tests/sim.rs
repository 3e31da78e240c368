//! A tiny in-memory cluster for playing decisions forward: the store's compare-and-swap
//! semantics for actions, and agents that start pods and remove the ones being deleted.

use super::super::{Action, Controller, World};
use chrono::{DateTime, Utc};
use edge_api::meta::{set_condition, Condition};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::{Pod, PodPhase};
use std::collections::BTreeMap;

pub struct Sim {
    pub objects: BTreeMap<ObjectKey, Object>,
    pub now: DateTime<Utc>,
    rev: u64,
    names: u64,
    /// Every object ever created, by kind (to check nothing was made twice).
    pub creations: BTreeMap<Kind, usize>,
}

impl Sim {
    pub fn new(objects: impl IntoIterator<Item = Object>) -> Sim {
        let mut sim = Sim {
            objects: BTreeMap::new(),
            now: super::t0(),
            rev: 1,
            names: 0,
            creations: BTreeMap::new(),
        };
        for o in objects {
            sim.objects.insert(o.key(), o);
        }
        sim
    }

    pub fn world(&self) -> World {
        World::new(self.rev, self.objects.values().cloned())
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.objects.values().filter_map(|o| o.as_pod())
    }

    fn write(&mut self, mut o: Object) {
        self.rev += 1;
        o.meta_mut().resource_version = self.rev;
        self.objects.insert(o.key(), o);
    }

    /// Applies actions with the store's preconditions; stops at the first rejected one.
    pub fn apply(&mut self, actions: &[Action]) -> Result<(), String> {
        for a in actions {
            match a {
                Action::Create {
                    object,
                    generate_name,
                    ..
                } => {
                    let mut o = object.clone();
                    if let Some(base) = generate_name {
                        self.names += 1;
                        o.meta_mut().name = format!("{base}{:05}", self.names);
                    }
                    if self.objects.contains_key(&o.key()) {
                        return Err(format!("{} already exists", o.key()));
                    }
                    let m = o.meta_mut();
                    m.uid = format!("uid-{}-{}", m.name, self.names);
                    m.creation_timestamp = Some(self.now);
                    m.generation = m.generation.max(1);
                    *self.creations.entry(o.kind()).or_default() += 1;
                    self.write(o);
                }
                Action::Update(o) => {
                    let stored = self
                        .objects
                        .get(&o.key())
                        .map(|s| s.meta().resource_version);
                    if stored != Some(o.meta().resource_version) {
                        return Err(format!("conflict on {}", o.key()));
                    }
                    self.write(o.clone());
                }
                Action::Delete {
                    key,
                    resource_version,
                } => {
                    let stored = self.objects.get(key).map(|s| s.meta().resource_version);
                    if stored != Some(*resource_version) {
                        return Err(format!("conflict deleting {key}"));
                    }
                    self.rev += 1;
                    self.objects.remove(key);
                }
                Action::Event(_) => {}
            }
        }
        Ok(())
    }

    /// Reconciles every primary of `c` once against one snapshot; true if anything was written.
    pub fn run(&mut self, c: &dyn Controller) -> bool {
        let world = self.world();
        let plans: Vec<_> = c
            .primaries(&world)
            .into_iter()
            .map(|k| c.reconcile(&k, &world, self.now))
            .collect();
        let mut wrote = false;
        for p in plans {
            wrote |= !p.actions.is_empty();
            // A conflict is what the runtime retries; the next run sees fresh state.
            let _ = self.apply(&p.actions);
        }
        wrote
    }

    /// What agents and the scheduler do: bind pending pods to `node`, start up to `start`
    /// pods (Running and Ready now), and remove up to `stop` pods being deleted.
    pub fn agents(&mut self, node: &str, start: usize, stop: usize) {
        let keys: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| k.kind == Kind::Pod)
            .cloned()
            .collect();
        let (mut started, mut stopped) = (0, 0);
        for k in keys {
            let Some(Object::Pod(p)) = self.objects.get(&k).cloned() else {
                continue;
            };
            if p.metadata.deletion_timestamp.is_some() {
                if stopped < stop {
                    stopped += 1;
                    self.rev += 1;
                    self.objects.remove(&k);
                }
                continue;
            }
            if p.status.phase == PodPhase::Pending && started < start {
                started += 1;
                self.write(Object::Pod(run(p, node, self.now)));
            }
        }
    }

    pub fn advance(&mut self, seconds: i64) {
        self.now += super::secs(seconds);
    }
}

/// A pod as its agent reports it once its components run.
pub fn run(mut p: Pod, node: &str, now: DateTime<Utc>) -> Pod {
    p.spec.node_name.get_or_insert_with(|| node.to_string());
    p.status.phase = PodPhase::Running;
    let mut c = Condition::new("Ready", true, "", "");
    c.last_transition_time = Some(now);
    set_condition(&mut p.status.conditions, c);
    p
}
