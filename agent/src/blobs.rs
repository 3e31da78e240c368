//! Components cached on the node by digest, fetched from the control plane only on a miss, so
//! pods restart without the control plane and no component is downloaded twice.

use crate::AgentError;
use edge_api::wire::{Client, Request, Response};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::RwLock;

/// The session's current client, if connected; shared with whoever needs the control plane.
pub type ClientSlot = Arc<RwLock<Option<Client>>>;

#[derive(Clone)]
pub struct BlobCache {
    dir: PathBuf,
    client: ClientSlot,
}

impl BlobCache {
    pub fn new(dir: PathBuf, client: ClientSlot) -> Result<BlobCache, AgentError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| AgentError::Io(format!("{}: {e}", dir.display())))?;
        Ok(BlobCache { dir, client })
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| self.dir.join(format!("{hex}.wasm")))
    }

    /// The component's bytes: from disk if cached and intact, else from the control plane.
    pub async fn get(&self, digest: &str) -> Result<Vec<u8>, AgentError> {
        let path = self
            .path(digest)
            .ok_or_else(|| AgentError::Component(format!("{digest:?} is not a sha256 digest")))?;
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if edge_api::wire::blob_digest(&bytes) == digest {
                return Ok(bytes);
            }
            tracing::warn!(digest, "cached component is corrupt; fetching it again");
        }
        let client = self.client.read().await.clone().ok_or_else(|| {
            AgentError::Unavailable(format!(
                "component {digest} is not cached and the control plane is unreachable"
            ))
        })?;
        let bytes = match client
            .call(&Request::GetBlob {
                digest: digest.to_string(),
            })
            .await
        {
            Ok(Response::Blob { data }) => data,
            Ok(other) => return Err(AgentError::Protocol(format!("GetBlob answered {other:?}"))),
            Err(e) => return Err(AgentError::Component(format!("fetching {digest}: {e}"))),
        };
        if edge_api::wire::blob_digest(&bytes) != digest {
            return Err(AgentError::Component(format!(
                "the control plane sent bytes that do not match {digest}"
            )));
        }
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|e| AgentError::Io(e.to_string()))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| AgentError::Io(e.to_string()))?;
        Ok(bytes)
    }
}
