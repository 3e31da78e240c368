//! Control-plane membership through the API: listing and removing servers, and the join of a
//! new server (`edged server --join`), which any member can take: the raft change itself is
//! made by the leader.

use super::objects::internal;
use crate::context::ControlPlane;
use edge_api::wire::{ApiError, ErrorCode, Response, ServerJoin};
use tracing::{info, warn};

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("control plane unavailable: {e}"),
    )
}

pub(super) async fn list(cp: &ControlPlane) -> Response {
    Response::Members {
        members: cp.raft.members().await,
    }
}

pub(super) async fn remove(cp: &ControlPlane, id: u64) -> Result<Response, ApiError> {
    match cp.raft.remove_member(id).await {
        Ok(()) => Ok(Response::Ok),
        Err(crate::raft::ProposeError::Refused(m)) => Err(ApiError::new(ErrorCode::Invalid, m)),
        Err(e) => Err(unavailable(e)),
    }
}

/// Checks `host:port`, the form peers dial.
pub fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "{address:?} is not host:port with a port from 1 to 65535"
        ));
    }
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(format!(
            "{address:?} is a wildcard address other servers cannot dial; pass --advertise with this server's reachable address"
        ));
    }
    Ok(())
}

pub(super) async fn join_server(
    cp: &ControlPlane,
    secret: &str,
    address: String,
) -> Result<Response, ApiError> {
    use sha2::Digest;
    // Compare digests so the comparison time does not depend on where the secrets differ.
    let (a, b) = (
        sha2::Sha256::digest(secret.as_bytes()),
        sha2::Sha256::digest(cp.pki.join_secret.as_bytes()),
    );
    if a != b {
        warn!(%address, "server join refused: wrong token secret");
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the join token's secret is wrong",
        ));
    }
    check_address(&address).map_err(|m| ApiError::new(ErrorCode::Invalid, m))?;
    let node_id = match cp.raft.add_server(address.clone()).await {
        Ok(id) => id,
        Err(crate::raft::ProposeError::Refused(m)) => {
            return Err(ApiError::new(ErrorCode::AlreadyExists, m))
        }
        Err(e) => return Err(unavailable(e)),
    };
    let (cert_pem, key_pem) = cp.pki.issue_server(&address).map_err(internal)?;
    info!(node_id, %address, "a server joined as a learner");
    Ok(Response::JoinedServer(ServerJoin {
        node_id,
        ca_pem: cp.pki.ca_pem.clone(),
        ca_key_pem: cp.pki.ca_key_pem().to_string(),
        cert_pem,
        key_pem,
    }))
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn addresses_must_be_dialable() {
        assert!(check_address("10.0.0.2:6443").is_ok());
        assert!(check_address("pi-2.lan:6443").is_ok());
        assert!(check_address("[::1]:6443").is_ok());
        assert!(check_address("10.0.0.2").is_err());
        assert!(check_address("10.0.0.2:0").is_err());
        assert!(check_address(":6443").is_err());
        let e = check_address("0.0.0.0:6443").unwrap_err();
        assert!(e.contains("--advertise"), "{e}");
    }
}
