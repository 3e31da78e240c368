//! `edged run`: one component, locally, in exactly the sandbox a pod gets (limits, preopens,
//! network grants, output cap), like `wasmtime run` — for trying a component before deploying it.

use anyhow::{bail, Context};
use edge_runtime::{
    CommandSpec, ComponentKind, ExitStatus, HttpSpec, NetworkGrants, OutputSink, OutputStream,
    Preopen, Runtime, RuntimeConfig,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The component (.wasm): a wasi:cli command, a WASI preview1 module, or a wasi:http handler.
    pub component: PathBuf,
    /// Environment variable for the component, KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Host directory to preopen, HOST::GUEST or HOST::GUEST:ro (repeatable).
    #[arg(long = "dir", value_parser = parse_dir)]
    pub dirs: Vec<Preopen>,
    /// Memory limit, as a quantity (64Mi).
    #[arg(long)]
    pub memory: Option<String>,
    /// A TCP port the component may listen on (repeatable).
    #[arg(long = "listen")]
    pub listen: Vec<u16>,
    /// Where the component may connect: host:port, host:* or * (repeatable).
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// For an HTTP component: the address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Arguments passed to the component.
    #[arg(last = true)]
    pub args: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?}: the variable name is empty"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_dir(s: &str) -> Result<Preopen, String> {
    let (host, guest) = s
        .split_once("::")
        .ok_or_else(|| format!("{s:?}: expected HOST::GUEST"))?;
    let (guest, read_only) = match guest.strip_suffix(":ro") {
        Some(g) => (g, true),
        None => (guest, false),
    };
    if !std::path::Path::new(host).is_dir() {
        return Err(format!("{host:?} is not a directory"));
    }
    Ok(Preopen {
        host: host.into(),
        guest: guest.to_string(),
        read_only,
    })
}

/// Writes the guest's output straight to our stdout and stderr.
struct Terminal;

impl OutputSink for Terminal {
    fn write(&self, stream: OutputStream, bytes: &[u8]) {
        let _ = match stream {
            OutputStream::Stdout => std::io::stdout()
                .write_all(bytes)
                .and_then(|_| std::io::stdout().flush()),
            OutputStream::Stderr => std::io::stderr().write_all(bytes),
        };
    }
}

/// Runs the component; returns the process exit code to use.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let wasm = std::fs::read(&args.component)
        .with_context(|| format!("reading {}", args.component.display()))?;
    let digest = edge_api::wire::blob_digest(&wasm);
    let hex = digest.trim_start_matches("sha256:");
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: home.join(".edge").join("run-cache"),
    })?;
    let component = runtime
        .load(hex, &wasm)
        .await
        .with_context(|| format!("loading {}", args.component.display()))?;
    let memory_limit_bytes = match &args.memory {
        Some(q) => Some(edge_api::quantity::parse("memory", q)?),
        None => None,
    };
    let network = NetworkGrants {
        listen: args.listen.clone(),
        outbound: args.allow.clone(),
        ..NetworkGrants::default()
    };
    let name = args
        .component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "component".into());
    match component.kind() {
        ComponentKind::HttpHandler => {
            let spec = HttpSpec { env: args.env, memory_limit_bytes, preopens: args.dirs, network, ..Default::default() };
            let handler = runtime.http_handler(&component, spec, Arc::new(Terminal))?;
            let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("listening on {}", args.addr))?;
            eprintln!("serving {} on http://{}/ (Ctrl-C to stop)", args.component.display(), args.addr);
            tokio::select! {
                _ = handler.serve(listener) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(0)
        }
        ComponentKind::Command => {
            let mut argv = vec![name];
            argv.extend(args.args);
            let spec = CommandSpec {
                args: argv,
                env: args.env,
                memory_limit_bytes,
                preopens: args.dirs,
                network,
                output_bytes_per_sec: None,
            };
            Ok(match runtime.run_command(&component, spec, Arc::new(Terminal)).await? {
                ExitStatus::Exited(code) => code,
                ExitStatus::MemoryLimitExceeded { message } => {
                    eprintln!("edged run: MemoryLimitExceeded: {message}");
                    137
                }
                ExitStatus::Trapped { message } => {
                    eprintln!("edged run: Trapped: {message}");
                    134
                }
            })
        }
        ComponentKind::Unknown => bail!(
            "{} exports neither wasi:cli/run nor wasi:http/incoming-handler, so there is nothing to run",
            args.component.display()
        ),
    }
}
