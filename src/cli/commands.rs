//! The dispatcher and the small commands (apply, logs, version, completion); the other verbs
//! live in their own modules (`get`, `describe_cmd`, `create`, `delete`, `label`, `scale`,
//! `rollout`, `diff`).

use crate::cli::args::{ApplyArgs, Cli, Command, CompletionArgs, DryRun, LogsArgs, VersionArgs};
use crate::cli::connect::{self, Session};
use crate::cli::label::Field;
use crate::cli::manifests::{
    namespaces_first, parse_sources, read_sources, resolve_images, set_digest, validate_all,
};
use crate::cli::{error_line, print_out, server_error, Exit};
use anyhow::{anyhow, bail, Context, Result};
use edge_api::wire::{Request, Response};
use edge_api::{Kind, ObjectKey};
use std::path::PathBuf;

/// What every command may need from the global flags.
pub struct Ctx {
    pub config: Option<PathBuf>,
    pub namespace: Option<String>,
    pub verbose: bool,
}

impl Ctx {
    pub async fn connect(&self) -> Result<Session> {
        connect::connect(self.config.as_deref(), self.verbose).await
    }

    /// `-n`, else `default`.
    pub fn namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .unwrap_or(edge_api::DEFAULT_NAMESPACE)
    }
}

/// An answer of the wrong shape: a server/client version mismatch, most likely. Names the
/// variant only, never its contents (a blob could be megabytes).
pub fn unexpected(request: &str, response: &Response) -> anyhow::Error {
    let variant = match response {
        Response::Object(_) => "Object",
        Response::Applied { .. } => "Applied",
        Response::List { .. } => "List",
        Response::Deleted { .. } => "Deleted",
        Response::BlobStored { .. } => "BlobStored",
        Response::Blob { .. } => "Blob",
        Response::Event(_) => "Event",
        Response::LogChunk { .. } => "LogChunk",
        Response::Joined { .. } => "Joined",
        Response::Identity { .. } => "Identity",
        Response::Ok => "Ok",
        Response::Error(_) => "Error",
        Response::Members { .. } => "Members",
        Response::JoinedServer(_) => "JoinedServer",
    };
    anyhow!("the server answered a {request} request with {variant}; are edgectl and the server the same version?")
}

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        config: cli.config,
        namespace: cli.namespace,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Apply(a) => apply(&ctx, a).await,
        Command::Get(g) => crate::cli::get::run(&ctx, g).await,
        Command::Describe(d) => crate::cli::describe_cmd::run(&ctx, d).await,
        Command::Create(c) => crate::cli::create::run(&ctx, c).await,
        Command::Delete(d) => crate::cli::delete::run(&ctx, d).await,
        Command::Diff(d) => crate::cli::diff::run(&ctx, d).await,
        Command::Label(l) => crate::cli::label::run(&ctx, l.edit, Field::Labels).await,
        Command::Annotate(a) => crate::cli::label::run(&ctx, a.edit, Field::Annotations).await,
        Command::Scale(s) => crate::cli::scale::run(&ctx, s).await,
        Command::Rollout(r) => crate::cli::rollout::run(&ctx, r).await,
        Command::Expose(e) => crate::cli::expose::run(&ctx, e).await,
        Command::PortForward(p) => crate::cli::portforward::run(&ctx, p).await,
        Command::Logs(l) => logs(&ctx, l).await,
        Command::Version(v) => version(&ctx, v).await,
        Command::Completion(c) => completion(c),
        Command::Member(m) => crate::cli::member::run(&ctx, m).await,
    }
}

async fn apply(ctx: &Ctx, args: ApplyArgs) -> Result<()> {
    let dry_run = args.dry_run == DryRun::Server;
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    // Everything local is checked before connecting, so a bad manifest changes nothing.
    let prepared = (|| {
        let sources = read_sources(&args.files, &cwd, &mut std::io::stdin().lock())?;
        let mut loaded = parse_sources(&sources, ctx.namespace.as_deref())?;
        namespaces_first(&mut loaded);
        let images = resolve_images(&mut loaded)?;
        validate_all(&loaded)?;
        anyhow::Ok((loaded, images))
    })();
    let (mut loaded, images) = prepared.context("nothing was applied")?;

    let session = ctx.connect().await?;
    let client = &session.client;
    for mut image in images {
        let size = image.data.len();
        let data = std::mem::take(&mut image.data);
        let response = client
            .call(&Request::PutBlob { data })
            .await
            .map_err(|e| server_error(e, None))
            .with_context(|| {
                format!(
                    "cannot upload component {}; nothing was applied",
                    image.path.display()
                )
            })?;
        let Response::BlobStored { digest, .. } = response else {
            return Err(unexpected("PutBlob", &response));
        };
        if ctx.verbose {
            eprintln!(
                "edgectl: uploaded {} ({size} bytes) as {digest}",
                image.path.display()
            );
        }
        if digest != image.digest {
            set_digest(&mut loaded, &image, &digest);
        }
    }

    let mut failed = false;
    for l in loaded {
        let key = l.object.key();
        let result = client
            .call(&Request::Apply {
                object: l.object,
                dry_run,
            })
            .await
            .map_err(|e| server_error(e, None));
        match result {
            Ok(Response::Applied { object, outcome }) => {
                let suffix = if dry_run { " (server dry run)" } else { "" };
                print_out(&format!(
                    "{} {outcome}{suffix}\n",
                    crate::cli::render::object_name(&object)
                ))?;
            }
            Ok(other) => return Err(unexpected("Apply", &other)),
            Err(e) => {
                let e = e.context(format!("{}: cannot apply {key}", l.source));
                eprintln!("{}", error_line(&e));
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

/// The pod name from `NAME` or `pod/NAME`.
pub fn pod_name(arg: &str) -> Result<String> {
    match arg.split_once('/') {
        None => Ok(arg.to_string()),
        Some((kind, name)) if Kind::parse(kind) == Some(Kind::Pod) && !name.is_empty() => {
            Ok(name.to_string())
        }
        Some(_) => bail!("logs are read from pods: give NAME or pod/NAME, not {arg:?}"),
    }
}

async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let name = pod_name(&args.pod)?;
    let session = ctx.connect().await?;
    let key = ObjectKey::new(Kind::Pod, ctx.namespace(), &name);
    let request = Request::Logs {
        namespace: ctx.namespace().to_string(),
        name,
        container: args.container,
        follow: args.follow,
        tail_lines: args.tail,
    };
    let mut stream = session
        .client
        .stream(&request)
        .await
        .map_err(|e| server_error(e, Some(&key)))?;
    loop {
        match stream
            .next()
            .await
            .map_err(|e| server_error(e, Some(&key)))?
        {
            Some(Response::LogChunk { data }) => crate::cli::print_bytes(&data)?,
            Some(other) => return Err(unexpected("Logs", &other)),
            None => return Ok(()),
        }
    }
}

async fn version(ctx: &Ctx, args: VersionArgs) -> Result<()> {
    print_out(&format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION")))?;
    if args.client {
        return Ok(());
    }
    let session = ctx.connect().await?;
    let who = session
        .client
        .call(&Request::WhoAmI)
        .await
        .map_err(|e| server_error(e, None))
        .with_context(|| format!("the server at {} did not answer", session.server))?;
    let user = match who {
        Response::Identity { user, .. } => user,
        other => return Err(unexpected("WhoAmI", &other)),
    };
    print_out(&format!(
        "Server: {} (reachable, you are {user:?})\n",
        session.server
    ))
}

fn completion(args: CompletionArgs) -> Result<()> {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "edgectl", &mut buf);
    crate::cli::print_bytes(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_for_logs() {
        assert_eq!(pod_name("hello").unwrap(), "hello");
        assert_eq!(pod_name("pod/hello").unwrap(), "hello");
        assert_eq!(pod_name("po/hello").unwrap(), "hello");
        assert!(pod_name("node/x").is_err());
        assert!(pod_name("pod/").is_err());
    }

    #[test]
    fn completion_scripts_generate() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "edgectl", &mut buf);
            let s = String::from_utf8(buf).unwrap();
            assert!(s.contains("edgectl") && s.contains("apply"), "{shell}");
        }
    }
}
