//! Read-modify-write of one object with `Request::Update` (compare-and-swap on its
//! resourceVersion), retried from a fresh read when another writer got there first. What
//! `label`, `annotate`, `scale` and `rollout` use.

use crate::cli::commands::unexpected;
use crate::cli::get::get_one;
use crate::cli::{server_error, ServerError};
use anyhow::Result;
use edge_api::wire::{Client, ErrorCode, Request, Response};
use edge_api::{Object, ObjectKey};
use std::time::Duration;

/// How often a write is tried again after losing a race.
const ATTEMPTS: usize = 5;

/// The object as read before the change and as stored after it (`None`: nothing to write).
pub struct Updated {
    pub before: Object,
    pub after: Option<Object>,
}

/// Reads `key`, lets `change` edit it, and writes it back if it changed. `change` runs again on
/// a fresh copy after a Conflict, so it must be a pure function of the object it is given.
/// With `resource_version`, the object must still be at that revision: no retry then.
pub async fn update_with_retry<F>(
    client: &Client,
    key: &ObjectKey,
    resource_version: Option<u64>,
    mut change: F,
) -> Result<Updated>
where
    F: FnMut(&mut Object) -> Result<()>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = get_one(client, key).await?;
        let mut object = before.clone();
        change(&mut object)?;
        if object == before {
            return Ok(Updated {
                before,
                after: None,
            });
        }
        if let Some(rv) = resource_version {
            object.meta_mut().resource_version = rv;
        }
        match client
            .call(&Request::Update { object })
            .await
            .map_err(|e| server_error(e, Some(key)))
        {
            Ok(Response::Object(after)) => {
                return Ok(Updated {
                    before,
                    after: Some(after),
                })
            }
            Ok(other) => return Err(unexpected("Update", &other)),
            Err(e) if is_conflict(&e) && resource_version.is_none() && attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>()
        .is_some_and(|s| s.code == ErrorCode::Conflict)
}
