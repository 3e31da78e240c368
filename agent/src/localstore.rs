//! The agent's own redb file: the pods last assigned to this node and the ConfigMaps/Secrets
//! they use, so that after a reboot with no control plane reachable it can start them again.

use crate::AgentError;
use edge_api::object::{Object, ObjectKey};
use edge_api::Pod;
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

const PODS: TableDefinition<&str, &[u8]> = TableDefinition::new("pods");
/// ConfigMaps and Secrets pods on this node use, by storage key (`Kind/namespace/name`).
const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("configdata");

#[derive(Clone)]
pub struct LocalStore {
    db: Arc<Database>,
}

fn err(e: impl std::fmt::Display) -> AgentError {
    AgentError::LocalStore(e.to_string())
}

impl LocalStore {
    pub fn open(path: &Path) -> Result<LocalStore, AgentError> {
        // A small page cache: the agent's store is tiny and the node's memory is for pods.
        let db = Database::builder()
            .set_cache_size(4 << 20)
            .create(path)
            .map_err(|e| AgentError::LocalStore(format!("{}: {e}", path.display())))?;
        restrict_to_owner(path);
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(PODS).map_err(err)?;
        txn.open_table(CONFIG).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(LocalStore { db: Arc::new(db) })
    }

    /// Every pod assigned to this node as last known; undecodable entries are skipped.
    pub fn pods(&self) -> Result<Vec<Pod>, AgentError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(PODS).map_err(err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(err)? {
            let (_, v) = item.map_err(err)?;
            match edge_api::codec::decode::<Pod>("local pod", v.value()) {
                Ok(p) => out.push(p),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable pod in the local store")
                }
            }
        }
        Ok(out)
    }

    /// Replaces the whole assignment set in one transaction (after a full list from the server).
    pub fn replace_all(&self, pods: &[Pod]) -> Result<(), AgentError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(PODS).map_err(err)?;
            table.retain(|_, _| false).map_err(err)?;
            for p in pods {
                let bytes = edge_api::codec::encode("pod", p).map_err(err)?;
                table
                    .insert(p.metadata.uid.as_str(), bytes.as_slice())
                    .map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    pub fn put(&self, pod: &Pod) -> Result<(), AgentError> {
        let bytes = edge_api::codec::encode("pod", pod).map_err(err)?;
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(PODS)
            .map_err(err)?
            .insert(pod.metadata.uid.as_str(), bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    pub fn remove(&self, uid: &str) -> Result<(), AgentError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(PODS)
            .map_err(err)?
            .remove(uid)
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// The last fetched copy of a ConfigMap or Secret; `None` if never fetched or unreadable.
    pub fn config(&self, key: &ObjectKey) -> Result<Option<Object>, AgentError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(CONFIG).map_err(err)?;
        let Some(v) = table.get(key.storage_key().as_str()).map_err(err)? else {
            return Ok(None);
        };
        match edge_api::codec::decode::<Object>("local config data", v.value()) {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "ignoring an unreadable local copy");
                Ok(None)
            }
        }
    }

    /// Keeps a fetched ConfigMap/Secret; writes only when it changed (flash storage wears).
    pub fn put_config(&self, object: &Object) -> Result<(), AgentError> {
        let key = object.key().storage_key();
        let bytes = edge_api::codec::encode("config data", object).map_err(err)?;
        {
            let txn = self.db.begin_read().map_err(err)?;
            let table = txn.open_table(CONFIG).map_err(err)?;
            if table
                .get(key.as_str())
                .map_err(err)?
                .is_some_and(|v| v.value() == bytes.as_slice())
            {
                return Ok(());
            }
        }
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(CONFIG)
            .map_err(err)?
            .insert(key.as_str(), bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    pub fn remove_config(&self, key: &ObjectKey) -> Result<(), AgentError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(CONFIG)
            .map_err(err)?
            .remove(key.storage_key().as_str())
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Forgets the copies no pod in `used` (storage keys) needs any more.
    pub fn retain_config(&self, used: &HashSet<String>) -> Result<(), AgentError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(CONFIG)
            .map_err(err)?
            .retain(|k, _| used.contains(k))
            .map_err(err)?;
        txn.commit().map_err(err)
    }
}

/// The store holds Secret contents: only the agent's user may read it.
fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict the local store to its owner");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.uid = uid.into();
        p.metadata.name = format!("p-{uid}");
        p
    }

    #[test]
    fn survives_reopen_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        {
            let s = LocalStore::open(&path).unwrap();
            s.put(&pod("a")).unwrap();
            s.put(&pod("b")).unwrap();
            s.remove("a").unwrap();
        }
        let s = LocalStore::open(&path).unwrap();
        let names: Vec<_> = s
            .pods()
            .unwrap()
            .into_iter()
            .map(|p| p.metadata.uid)
            .collect();
        assert_eq!(names, vec!["b"]);
        s.replace_all(&[pod("c")]).unwrap();
        assert_eq!(s.pods().unwrap().len(), 1);
    }

    #[test]
    fn config_copies_survive_reopen_and_are_collected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let mut cm = edge_api::ConfigMap::default();
        cm.metadata.namespace = "default".into();
        cm.metadata.name = "app".into();
        cm.data.insert("level".into(), "debug".into());
        let key = ObjectKey::new(edge_api::object::Kind::ConfigMap, "default", "app");
        {
            let s = LocalStore::open(&path).unwrap();
            s.put_config(&Object::ConfigMap(cm.clone())).unwrap();
            s.put_config(&Object::ConfigMap(cm.clone())).unwrap();
        }
        let s = LocalStore::open(&path).unwrap();
        assert_eq!(s.config(&key).unwrap(), Some(Object::ConfigMap(cm)));
        s.retain_config(&HashSet::from([key.storage_key()]))
            .unwrap();
        assert!(s.config(&key).unwrap().is_some());
        s.retain_config(&HashSet::new()).unwrap();
        assert!(s.config(&key).unwrap().is_none());
    }
}
