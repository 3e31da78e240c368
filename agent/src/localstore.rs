//! The agent's own redb file: the pods last assigned to this node, so that after a reboot with
//! no control plane reachable it can start them again.

use crate::AgentError;
use edge_api::Pod;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const PODS: TableDefinition<&str, &[u8]> = TableDefinition::new("pods");

#[derive(Clone)]
pub struct LocalStore {
    db: Arc<Database>,
}

fn err(e: impl std::fmt::Display) -> AgentError {
    AgentError::LocalStore(e.to_string())
}

impl LocalStore {
    pub fn open(path: &Path) -> Result<LocalStore, AgentError> {
        let db = Database::create(path)
            .map_err(|e| AgentError::LocalStore(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(PODS).map_err(err)?;
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
}
