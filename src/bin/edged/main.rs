//! `edged`: the edge daemon. `edged server` runs the control plane (with a built-in agent unless
//! `--no-agent`); `edged agent` runs a node agent that joins a server with a token.

mod ha;
mod lifecycle;
mod run;

use anyhow::Context;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "edged",
    version,
    about = "edge daemon: control plane and node agent"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane server (and, unless --no-agent, an agent for this machine).
    Server {
        /// Where the store, certificates and the built-in agent's state live.
        #[arg(long, env = "EDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// UDP address for the QUIC API.
        #[arg(long, default_value = "0.0.0.0:6443")]
        listen: SocketAddr,
        /// Run the control plane only; nodes join with `edged agent`.
        #[arg(long)]
        no_agent: bool,
        /// Name of the built-in agent's node (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// Pods the built-in agent accepts.
        #[arg(long, default_value_t = edge_agent::node::DEFAULT_MAX_PODS)]
        max_pods: u32,
        /// A node silent for this long becomes NotReady.
        #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
        node_grace_period: Duration,
        #[command(flatten)]
        lifecycle: lifecycle::LifecycleFlags,
        #[command(flatten)]
        ha: ha::HaFlags,
    },
    /// Run one component locally in the pod sandbox (like `wasmtime run`).
    Run(run::RunArgs),
    /// Run a node agent that joins a control plane.
    Agent {
        /// Control-plane address, host:port.
        #[arg(long, env = "EDGE_SERVER")]
        server: String,
        /// Join token printed by `edged server` (needed on first start only).
        #[arg(long, env = "EDGE_TOKEN")]
        token: Option<String>,
        #[arg(long, env = "EDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        node_name: Option<String>,
        /// Node labels, key=value (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Pods this node accepts.
        #[arg(long, default_value_t = edge_agent::node::DEFAULT_MAX_PODS)]
        max_pods: u32,
        /// How often the agent tells the control plane it is alive (keep it well under the
        /// server's --node-grace-period).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        heartbeat_interval: Duration,
        /// This node's address: pods and service node ports listen on it and other nodes reach
        /// them at it [default: every address; advertise the one toward the control plane]
        #[arg(long, value_name = "IP")]
        node_ip: Option<std::net::IpAddr>,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected key=value"))?;
    edge_api::validation::label_key(k).map_err(|e| format!("label key {k:?}: {e}"))?;
    edge_api::validation::label_value(v).map_err(|e| format!("label value {v:?}: {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

fn default_dir(leaf: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".edge").join(leaf)
}

fn init_logging(format: &str, quiet: bool) {
    let default = if quiet {
        "warn"
    } else {
        "info,quinn=warn,openraft=warn,cranelift=warn,wasmtime=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The allocator returns idle memory to the kernel and takes it back later; with transparent
/// huge pages each take-back made the kernel clear a whole 2 MiB page, a tenth of a control-plane
/// server's CPU under write load (and huge pages inflate the resident size on small boards).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this process;
    // a kernel without it returns an error, which changes nothing, so it is ignored.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    // `edged run` is a foreground tool: its output is the component's, not ours.
    init_logging(&cli.log_format, matches!(cli.command, Command::Run(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli.command)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let code = run::run(args).await?;
            std::process::exit(code);
        }
        Command::Server {
            data_dir,
            listen,
            no_agent,
            node_name,
            max_pods,
            node_grace_period,
            lifecycle,
            ha,
        } => {
            let data_dir = data_dir.unwrap_or_else(|| default_dir("server"));
            let agent = (!no_agent).then_some((node_name, max_pods));
            server(data_dir, listen, agent, node_grace_period, lifecycle, ha).await
        }
        Command::Agent {
            server,
            token,
            data_dir,
            node_name,
            labels,
            max_pods,
            heartbeat_interval,
            node_ip,
        } => {
            let mut config = edge_agent::AgentConfig::new(
                server,
                data_dir.unwrap_or_else(|| default_dir("agent")),
            );
            config.token = token;
            if let Some(n) = node_name {
                config.node_name = n;
            }
            config.labels = labels.into_iter().collect();
            config.max_pods = max_pods;
            config.heartbeat_interval = heartbeat_interval;
            config.node_ip = node_ip;
            let agent = edge_agent::Agent::start(config)
                .await
                .context("starting the agent")?;
            tracing::info!(node = agent.node_name(), "agent running; Ctrl-C to stop");
            wait_for_signal().await;
            agent.shutdown().await;
            Ok(())
        }
    }
}

async fn server(
    data_dir: PathBuf,
    listen: SocketAddr,
    // The built-in agent's node name and pod capacity; `None` with --no-agent.
    agent: Option<(Option<String>, u32)>,
    node_grace_period: Duration,
    lifecycle: lifecycle::LifecycleFlags,
    ha: ha::HaFlags,
) -> anyhow::Result<()> {
    let options = edge_control::context::ServerOptions {
        node_grace_period,
        lifecycle: lifecycle.options(),
        ha: ha.options()?,
    };
    let config = edge_control::server::ServerConfig {
        data_dir: data_dir.clone(),
        listen,
        options,
    };
    let server = edge_control::server::start(config)
        .await
        .context("starting the control plane")?;
    let dial = edge_control::server::dial_address(server.local_addr);
    let user_config = publish_admin_config(&server.admin_config, &server.admin_config_path)?;
    let agent = if let Some((node_name, max_pods)) = agent {
        let mut cfg = edge_agent::AgentConfig::new(dial.to_string(), data_dir.join("agent"))
            .with_token(server.token.to_string());
        if let Some(n) = node_name {
            cfg.node_name = n;
        }
        cfg.max_pods = max_pods;
        cfg.labels
            .insert("node-role.edge.dev/control-plane".into(), String::new());
        Some(
            edge_agent::Agent::start(cfg)
                .await
                .context("starting the built-in agent")?,
        )
    } else {
        None
    };
    println!(
        "edge control plane is up on {} (UDP/QUIC)",
        server.local_addr
    );
    println!("  data directory: {}", data_dir.display());
    println!("  admin config:   {user_config}");
    println!(
        "  join token:     {} (also in {})",
        server.token,
        data_dir.join("token").display()
    );
    println!(
        "  add a node:     edged agent --server <this-host>:{} --token <join token>",
        server.local_addr.port()
    );
    println!(
        "  add a server:   edged server --join <this-host>:{} --token <join token> --advertise <that-host>:<port>",
        server.local_addr.port()
    );
    println!("  try:            edgectl get nodes");
    let removed = tokio::select! {
        () = wait_for_signal() => false,
        () = server.removed() => true,
    };
    tracing::info!("shutting down");
    if let Some(a) = agent {
        a.shutdown().await;
    }
    server.shutdown().await;
    if removed {
        anyhow::bail!(
            "this server was removed from the cluster (edgectl member remove) and has stopped; \
             to add this machine again, delete {} and start it with --join",
            data_dir.display()
        );
    }
    Ok(())
}

/// Writes the admin config where edgectl looks by default ($EDGECONFIG or ~/.edge/config),
/// unless a config for a different cluster is already there. Returns where edgectl finds it.
fn publish_admin_config(
    cfg: &edge_api::config::ClientConfigFile,
    own: &Path,
) -> anyhow::Result<String> {
    let target = edge_api::config::default_path()?;
    let ours = |c: &edge_api::config::ClientConfigFile| {
        c.certificate_authority == cfg.certificate_authority || c.server == cfg.server
    };
    match edge_api::config::ClientConfigFile::load(&target) {
        Ok(existing) if !ours(&existing) => Ok(format!(
            "{} (not written to {}, which belongs to another cluster; set EDGECONFIG={})",
            own.display(),
            target.display(),
            own.display()
        )),
        _ => {
            cfg.save(&target)?;
            Ok(format!(
                "{} (edgectl reads it by default)",
                target.display()
            ))
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
