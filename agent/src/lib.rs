//! edge's node agent, as a library a gateway program can embed: it joins a cluster, runs the
//! pods assigned to this node in wasmtime sandboxes, and keeps them running without the
//! control plane.
//!
//! ```no_run
//! # async fn demo() -> Result<(), edge_agent::AgentError> {
//! let config = edge_agent::AgentConfig::new("10.0.0.1:6443", "/var/lib/edge-agent")
//!     .with_token("ET1...::secret");
//! let agent = edge_agent::Agent::start(config).await?;
//! // ... the gateway program does its own work ...
//! agent.shutdown().await;
//! # Ok(()) }
//! ```

mod blobs;
mod configsource;
mod container;
mod credentials;
mod env;
mod fencing;
mod httppod;
mod localstore;
mod logs;
mod logserve;
pub mod node;
#[cfg(test)]
mod pod_tests;
mod probes;
mod proxy;
mod reconnect;
pub mod sandbox;
mod session;
mod supervisor;
mod volumes;
pub mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use edge_api::PodPhase;
pub use sandbox::{AllocatorKind, HttpLimits};
pub use worker::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("join token: {0}")]
    Token(String),
    #[error("joining the cluster: {0}")]
    Join(edge_api::wire::WireError),
    #[error("control plane link: {0}")]
    Link(#[from] edge_api::wire::WireError),
    #[error("unexpected answer from the control plane: {0}")]
    Protocol(String),
    #[error("local store: {0}")]
    LocalStore(String),
    #[error("component: {0}")]
    Component(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("i/o: {0}")]
    Io(String),
    #[error("runtime: {0}")]
    Runtime(#[from] edge_runtime::RuntimeError),
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `host:port` of a control-plane server.
    pub server: String,
    /// Needed on the first start only; later starts reuse the saved node certificate.
    pub token: Option<String>,
    pub data_dir: PathBuf,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub heartbeat_interval: Duration,
    /// After a restart, how long to wait for the control plane's list of this node's pods
    /// before starting the last known ones from the local store instead. The list is fresher
    /// (pods evicted meanwhile are not started again), but pods must not wait for it long.
    pub local_start_after: Duration,
    pub max_pods: u32,
    pub restart_backoff: Backoff,
    /// Per-request limits of HTTP components.
    pub http_limits: HttpLimits,
    /// Cap on each container's stdout+stderr bytes per second (protects flash storage);
    /// `None` for the runtime's default (`edge_runtime::DEFAULT_OUTPUT_BYTES_PER_SEC`).
    pub output_bytes_per_sec: Option<u64>,
    /// This node's address for pods and node ports (like the kubelet's `--node-ip`): HTTP pods
    /// and service node ports listen on it and other nodes reach this node's pods at it.
    /// `None`: listen on every address and advertise the one the control plane is reached from.
    pub node_ip: Option<std::net::IpAddr>,
}

impl AgentConfig {
    pub fn new(server: impl Into<String>, data_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            server: server.into(),
            token: None,
            data_dir: data_dir.into(),
            node_name: node::hostname(),
            labels: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(5),
            local_start_after: Duration::from_secs(3),
            max_pods: node::DEFAULT_MAX_PODS,
            restart_backoff: Backoff::default(),
            http_limits: HttpLimits::default(),
            output_bytes_per_sec: None,
            node_ip: None,
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> AgentConfig {
        self.token = Some(token.into());
        self
    }

    pub fn with_node_name(mut self, name: impl Into<String>) -> AgentConfig {
        self.node_name = name.into();
        self
    }
}

/// State shared by the agent's tasks.
pub(crate) struct Shared {
    pub config: AgentConfig,
    pub credentials: edge_api::config::ClientConfigFile,
    pub client: blobs::ClientSlot,
    pub store: localstore::LocalStore,
    pub supervisor: supervisor::Supervisor,
    pub logs: logs::LogStore,
    /// How the runtime allocates instances, reported as a node condition.
    pub allocator: AllocatorKind,
    pub proxy: proxy::Proxy,
}

/// A running agent. Dropping it leaves the tasks running; call `shutdown` to stop pods.
pub struct Agent {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Joins (first start) or reconnects and begins syncing. The pods bound here start from the
    /// control plane's list or, if it does not answer within `local_start_after`, from the
    /// local store, so they run again after a reboot with no control plane reachable.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        edge_api::validation::dns1123_subdomain(&config.node_name)
            .map_err(|m| AgentError::Token(format!("node name: {m}; pass --node-name")))?;
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| AgentError::Io(format!("{}: {e}", dir.display())))?;
        let credentials = credentials::obtain(
            dir,
            &config.server,
            config.token.as_deref(),
            &config.node_name,
        )
        .await?;
        let runtime = edge_runtime::Runtime::new(edge_runtime::RuntimeConfig {
            cache_dir: dir.join("cache"),
        })?;
        let client: blobs::ClientSlot = Default::default();
        let store = localstore::LocalStore::open(&dir.join("agent.redb"))?;
        let logs = logs::LogStore::new(dir.join("logs"));
        let allocator = sandbox::allocator(&runtime);
        let (status_tx, status_rx) = tokio::sync::mpsc::unbounded_channel();
        let proxy = proxy::Proxy::new(&config.node_name, config.node_ip);
        proxy.persist_to(dir.join("proxy.cbor"));
        let ctx = worker::WorkerContext {
            runtime,
            blobs: blobs::BlobCache::new(dir.join("components"), client.clone())?,
            logs: logs.clone(),
            backoff: config.restart_backoff.clone(),
            status_tx,
            config: configsource::ConfigSource::new(client.clone(), store.clone()),
            pods_dir: dir.join("pods"),
            http: config.http_limits.clone(),
            output_bytes_per_sec: config.output_bytes_per_sec,
            proxy: proxy.clone(),
        };
        let supervisor = supervisor::Supervisor::new(ctx, store.clone());
        let shared = Arc::new(Shared {
            config,
            credentials,
            client,
            store,
            supervisor,
            logs,
            allocator,
            proxy,
        });
        let tasks = vec![
            tokio::spawn(session::run(shared.clone())),
            tokio::spawn(session::report_statuses(shared.clone(), status_rx)),
            tokio::spawn(start_from_local_store(shared.clone())),
        ];
        Ok(Agent { shared, tasks })
    }

    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// Namespace, name and phase of each pod this node runs.
    pub fn pods(&self) -> Vec<(String, String, PodPhase)> {
        self.shared.supervisor.pods()
    }

    /// Whether the link to the control plane is up.
    pub async fn connected(&self) -> bool {
        self.shared.client.read().await.is_some()
    }

    /// Stops every pod and the link to the control plane.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.supervisor.stop_all();
        self.shared.proxy.shutdown();
        if let Some(c) = self.shared.client.write().await.take() {
            c.connection().close(0u32.into(), b"agent shutting down");
        }
    }
}

/// Starts the last known pods from the local store unless the control plane's list arrived
/// within `local_start_after`.
async fn start_from_local_store(shared: Arc<Shared>) {
    tokio::time::sleep(shared.config.local_start_after).await;
    shared.supervisor.start_from_local_store();
}
