//! `edgectl`'s implementation: argument types, connection, commands and the pure rendering they use.
//!
//! Rendering, manifest handling and building objects for `create` are pure functions (unit-tested
//! here); only `commands`, `get`, `create` and `connect` talk to a server.

pub mod args;
pub mod commands;
pub mod connect;
pub mod create;
pub mod delete;
pub mod describe;
pub mod describe_cmd;
pub mod diff;
pub mod expose;
pub mod get;
pub mod label;
pub mod manifests;
pub mod member;
pub mod portforward;
pub mod render;
pub mod render_apps;
pub mod rollout;
pub mod rollout_plan;
pub mod scale;
pub mod table;
#[cfg(test)]
mod testutil;
pub mod update;
pub mod watch;

pub use args::Cli;

use anyhow::{anyhow, bail, Result};
use edge_api::wire::{ErrorCode, WireError};
use edge_api::{Kind, ObjectKey};
use std::io::Write;
use std::process::ExitCode;

/// Ends the process with `code` without printing anything more: the command has already said
/// what went wrong (several names, some failed), or the reader of stdout went away.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// An error answered by the server, shown as kubectl shows them:
/// `Error from server (NotFound): pods "x" not found`.
#[derive(Debug)]
pub struct ServerError {
    pub code: ErrorCode,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error from server ({:?}): {}", self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

/// Turns a wire error into a `ServerError` when the server answered with one; for a request
/// about `key`, NotFound and AlreadyExists are phrased the kubectl way (`pods "x" not found`,
/// `configmaps "x" already exists`).
pub fn server_error(e: WireError, key: Option<&ObjectKey>) -> anyhow::Error {
    match e {
        WireError::Api(api) => {
            let message = match key {
                Some(k) if api.code == ErrorCode::NotFound => not_found_message(k),
                Some(k) if api.code == ErrorCode::AlreadyExists => already_exists_message(k),
                _ => api.message,
            };
            ServerError {
                code: api.code,
                message,
            }
            .into()
        }
        other => anyhow::Error::new(other),
    }
}

/// `pods "x" not found`, the phrase kubectl users grep for.
pub fn not_found_message(key: &ObjectKey) -> String {
    format!("{} \"{}\" not found", key.kind.plural(), key.name)
}

/// `configmaps "x" already exists`, as kubectl words it.
pub fn already_exists_message(key: &ObjectKey) -> String {
    format!("{} \"{}\" already exists", key.kind.plural(), key.name)
}

/// True when `e` is the server saying the object does not exist.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>()
        .is_some_and(|s| s.code == ErrorCode::NotFound)
}

/// Prints an error the way the binary exits with it and returns the exit code: server errors as
/// kubectl prints them, everything else as `error: ` and the whole cause chain.
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
        return ExitCode::from(*code);
    }
    eprintln!("{}", error_line(e));
    ExitCode::FAILURE
}

/// The one line `report_error` prints (without the newline).
pub fn error_line(e: &anyhow::Error) -> String {
    if e.downcast_ref::<ServerError>().is_some() && e.chain().count() == 1 {
        format!("{e}")
    } else {
        format!("error: {e:#}")
    }
}

/// Builds a small single-threaded runtime (a CLI needs no more) and runs the command.
pub fn run_blocking(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(commands::run(cli))
}

/// Writes to stdout; a closed pipe (`edgectl get pods | head -1`) ends the process quietly with
/// the status a shell reports for SIGPIPE, as kubectl's would.
pub fn print_out(text: &str) -> Result<()> {
    print_bytes(text.as_bytes())
}

/// `print_out` for raw bytes (log chunks need not be UTF-8), flushed so `logs -f` is live.
pub fn print_bytes(data: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Exit(141).into()),
        Err(e) => Err(anyhow!("cannot write to stdout: {e}")),
    }
}

/// What a `KIND [NAME...]` or `KIND/NAME...` argument list names.
#[derive(Debug, PartialEq)]
pub struct Target {
    /// In the order given; several kinds only in the `KIND/NAME` form.
    pub items: Vec<(Kind, Option<String>)>,
}

fn parse_kind(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| {
        let known: Vec<_> = Kind::ALL.iter().map(|k| k.plural()).collect();
        anyhow!(
            "the server doesn't have a resource type {s:?}; known types: {}",
            known.join(", ")
        )
    })
}

/// Parses kubectl's two spellings: `pods a b` and `pod/a node/b`.
pub fn parse_target(resource: &str, names: &[String]) -> Result<Target> {
    if resource.contains('/') {
        let mut items = Vec::new();
        for arg in std::iter::once(resource).chain(names.iter().map(String::as_str)) {
            let Some((kind, name)) = arg.split_once('/') else {
                bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got {arg:?})");
            };
            if name.is_empty() {
                bail!("{arg:?}: a name is required after the '/'");
            }
            items.push((parse_kind(kind)?, Some(name.to_string())));
        }
        return Ok(Target { items });
    }
    let kinds = parse_kinds(resource)?;
    if names.is_empty() {
        return Ok(Target {
            items: kinds.into_iter().map(|k| (k, None)).collect(),
        });
    }
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        bail!("{bad:?}: use either `KIND NAME...` or `KIND/NAME...`, not both");
    }
    Ok(Target {
        items: kinds
            .into_iter()
            .flat_map(|k| names.iter().map(move |n| (k, Some(n.clone()))))
            .collect(),
    })
}

/// What `all` stands for, in kubectl's order: the kinds a user runs apps with.
pub const ALL_KINDS: [Kind; 6] = [
    Kind::Pod,
    Kind::Service,
    Kind::DaemonSet,
    Kind::Deployment,
    Kind::ReplicaSet,
    Kind::Job,
];

/// `pods`, `pods,svc` or `all` (alone or in a list) into kinds, each once, in the order given.
pub fn parse_kinds(resource: &str) -> Result<Vec<Kind>> {
    let mut kinds = Vec::new();
    for part in resource.split(',') {
        let part = part.trim();
        if part.is_empty() {
            bail!(
                "{resource:?}: an empty resource type in the list; write them like pods,services"
            );
        }
        let more: Vec<Kind> = if part.eq_ignore_ascii_case("all") {
            ALL_KINDS.to_vec()
        } else {
            vec![parse_kind(part)?]
        };
        for k in more {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    Ok(kinds)
}

/// True when `resource` names several kinds (`pods,svc`, `all`): tables then name objects
/// `kind/name`, as kubectl does.
pub fn names_several_kinds(resource: &str) -> bool {
    resource.contains(',') || resource.eq_ignore_ascii_case("all")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_both_spellings() {
        let t = parse_target("po", &["a".into(), "b".into()]).unwrap();
        assert_eq!(
            t.items,
            vec![
                (Kind::Pod, Some("a".to_string())),
                (Kind::Pod, Some("b".to_string()))
            ]
        );
        let t = parse_target("pod/a", &["no/n1".into()]).unwrap();
        assert_eq!(t.items[1], (Kind::Node, Some("n1".to_string())));
        assert_eq!(
            parse_target("ns", &[]).unwrap().items,
            vec![(Kind::Namespace, None)]
        );
        assert!(parse_target("pod/a", &["b".into()]).is_err());
        let t = parse_target("po,svc,pods", &["x".into()]).unwrap();
        assert_eq!(
            t.items,
            vec![
                (Kind::Pod, Some("x".to_string())),
                (Kind::Service, Some("x".to_string()))
            ]
        );
        let kinds: Vec<Kind> = parse_target("all,cm", &[])
            .unwrap()
            .items
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kinds[..6], ALL_KINDS);
        assert_eq!(kinds[6], Kind::ConfigMap);
        assert!(parse_target("pods,", &[]).is_err());
        assert!(names_several_kinds("all") && names_several_kinds("po,svc"));
        assert!(!names_several_kinds("pods"));
        let e = parse_target("gizmos", &[]).unwrap_err().to_string();
        assert!(e.contains("gizmos") && e.contains("pods"), "{e}");
    }

    #[test]
    fn not_found_reads_like_kubectl() {
        let key = ObjectKey::new(Kind::Pod, "default", "x");
        let wire = WireError::Api(edge_api::wire::ApiError::new(
            ErrorCode::NotFound,
            "Pod \"default/x\" not found",
        ));
        let e = server_error(wire, Some(&key));
        assert!(is_not_found(&e));
        assert_eq!(
            error_line(&e),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let key = ObjectKey::new(Kind::ConfigMap, "default", "cfg");
        let wire = WireError::Api(edge_api::wire::ApiError::new(
            ErrorCode::AlreadyExists,
            "ConfigMap \"default/cfg\" already exists",
        ));
        assert_eq!(
            error_line(&server_error(wire, Some(&key))),
            "Error from server (AlreadyExists): configmaps \"cfg\" already exists"
        );
        let e = e.context("while deleting");
        assert!(error_line(&e).starts_with("error: while deleting: Error from server"));
    }
}
