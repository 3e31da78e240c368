//! Answers a log request from the control plane with the container's log, optionally followed.

use crate::logs::{read_from, read_tail};
use crate::Shared;
use edge_api::wire::{write_frame, ApiError, ErrorCode, Response};
use std::time::Duration;

const CHUNK: usize = 64 << 10;
const POLL: Duration = Duration::from_millis(200);

pub async fn serve(
    shared: &Shared,
    send: &mut quinn::SendStream,
    namespace: &str,
    name: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<u64>,
) -> Result<(), ApiError> {
    let pod = shared.supervisor.find(namespace, name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("pod {namespace}/{name} is not running on this node"),
        )
    })?;
    let names: Vec<&str> = pod
        .spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let container = match (container, names.as_slice()) {
        (Some(c), _) if names.contains(&c) => c.to_string(),
        (Some(c), _) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("container {c:?} is not in pod {name}; choose one of {names:?}"),
            ))
        }
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "a container name must be specified for pod {name}, choose one of: {names:?}"
                ),
            ))
        }
    };
    let path = shared
        .logs
        .file(namespace, name, &pod.metadata.uid, &container);
    let (bytes, mut offset) = read_tail(&path, tail).unwrap_or_default();
    if !send_chunks(send, &bytes).await {
        return Ok(());
    }
    if !follow {
        return Ok(());
    }
    loop {
        let done = shared.supervisor.is_done(&pod.metadata.uid);
        let (more, next) = read_from(&path, offset).unwrap_or((Vec::new(), offset));
        offset = next;
        if !send_chunks(send, &more).await {
            return Ok(());
        }
        if done {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = send.stopped() => return Ok(()),
        }
    }
    Ok(())
}

/// Returns false when the reader went away.
async fn send_chunks(send: &mut quinn::SendStream, bytes: &[u8]) -> bool {
    for chunk in bytes.chunks(CHUNK) {
        if write_frame(
            send,
            &Response::LogChunk {
                data: chunk.to_vec(),
            },
        )
        .await
        .is_err()
        {
            return false;
        }
    }
    true
}
