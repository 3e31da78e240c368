//! `edged server` flags for a control plane of several servers: joining an existing cluster,
//! the address peers reach this server at, and raft log compaction.

use anyhow::Context;
use edge_control::context::{HaOptions, JoinTarget};

#[derive(clap::Args, Debug, Clone)]
pub struct HaFlags {
    /// Join the cluster of the server at this host:port instead of creating a new cluster
    /// (first start only; later starts resume from the data directory).
    #[arg(long, value_name = "ADDR", requires = "token")]
    join: Option<String>,
    /// The join token printed by the first server (in its data directory's `token` file).
    #[arg(long, env = "EDGE_TOKEN", value_name = "TOKEN")]
    token: Option<String>,
    /// host:port at which other servers, agents and clients reach this server [default: the
    /// --listen address, loopback when it is a wildcard]
    #[arg(long, value_name = "ADDR")]
    advertise: Option<String>,
    /// Snapshot the store and compact the raft log every this many entries.
    #[arg(long, default_value_t = 10_000, value_name = "N", hide = true)]
    raft_snapshot_logs: u64,
}

impl HaFlags {
    pub fn options(&self) -> anyhow::Result<HaOptions> {
        let join = match &self.join {
            Some(address) => {
                let token = self.token.as_deref().context("--join needs --token")?;
                let token = edge_api::tls::JoinToken::parse(token)
                    .map_err(|e| anyhow::anyhow!("--token: {e}"))?;
                Some(JoinTarget {
                    address: address.clone(),
                    token,
                })
            }
            None => None,
        };
        if let Some(a) = &self.advertise {
            edge_control::apiserver::check_address(a)
                .map_err(|m| anyhow::anyhow!("--advertise: {m}"))?;
        }
        Ok(HaOptions {
            advertise: self.advertise.clone(),
            join,
            raft: edge_control::raft::RaftTuning {
                snapshot_logs: self.raft_snapshot_logs,
            },
        })
    }
}
