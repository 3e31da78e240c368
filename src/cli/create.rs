//! `edgectl create configmap|secret generic`: build the object from `--from-literal` and
//! `--from-file` (files and directories), check it here, then create it, have the server check
//! it (`--dry-run=server`), or only print it (`--dry-run=client`).

use crate::cli::args::{
    CreateArgs, CreateCommand, CreateDataArgs, CreateDryRun, CreateOutput, SecretCommand,
};
use crate::cli::commands::{unexpected, Ctx};
use crate::cli::{already_exists_message, print_out, render, server_error, ServerError};
use anyhow::{anyhow, bail, Context, Result};
use edge_api::configdata::encode_base64;
use edge_api::wire::{ApplyOutcome, ErrorCode, Request, Response};
use edge_api::{ConfigMap, Object, ObjectMeta, Secret};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The most data one ConfigMap or Secret holds, as in Kubernetes (1 MiB); files are read only
/// up to this much, so a huge file (or `/dev/zero`) is refused without being read whole.
pub const MAX_DATA_BYTES: usize = 1 << 20;

/// Keys and their bytes, remembering where each key came from for duplicate-key messages.
#[derive(Debug, Default)]
pub struct Data {
    pub entries: BTreeMap<String, Vec<u8>>,
    sources: BTreeMap<String, String>,
    total: usize,
}

impl Data {
    /// Adds one key; a key already present is an error naming it and both of its sources.
    pub fn add(&mut self, key: &str, value: Vec<u8>, source: String) -> Result<()> {
        validate_key(key).with_context(|| format!("{source}: invalid key"))?;
        if let Some(first) = self.sources.get(key) {
            bail!("duplicate key {key:?}: given by {first} and again by {source}");
        }
        self.total += value.len();
        if self.total > MAX_DATA_BYTES {
            bail!(
                "{source}: the data would exceed {} bytes, the most one object holds",
                MAX_DATA_BYTES
            );
        }
        self.sources.insert(key.to_string(), source);
        self.entries.insert(key.to_string(), value);
        Ok(())
    }
}

/// A data key becomes a file name where the object is mounted: letters, digits, '-', '_' and
/// '.', at most 253 characters, not `.` or `..` (what the API server accepts).
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        bail!("a key must not be empty");
    }
    if key.len() > 253 {
        bail!("key {key:?} is longer than 253 characters");
    }
    if key == "." || key == ".." {
        bail!("{key:?} is not allowed as a key");
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        bail!("key {key:?} contains {c:?}: a key may hold only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// `KEY=VALUE` (split at the first '='; the value may be empty or hold more '=').
pub fn parse_literal(arg: &str) -> Result<(&str, &str)> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => bail!("--from-literal={arg:?}: expected KEY=VALUE"),
    }
}

/// `[KEY=]PATH`, as kubectl reads it: at most one '=', with something on both sides.
pub fn parse_file_source(arg: &str) -> Result<(Option<&str>, &str)> {
    match arg.matches('=').count() {
        0 => Ok((None, arg)),
        1 => match arg.split_once('=') {
            Some(("", path)) => {
                bail!("--from-file={arg:?}: the key name for file {path:?} is missing")
            }
            Some((key, "")) => {
                bail!("--from-file={arg:?}: the file path for key {key:?} is missing")
            }
            Some((key, path)) => Ok((Some(key), path)),
            None => unreachable!("one '=' was counted"),
        },
        _ => bail!("--from-file={arg:?}: key names and file paths cannot contain '='"),
    }
}

/// Reads a file, refusing one larger than what may still be added.
fn read_limited(path: &Path, room: usize) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut data = Vec::new();
    file.take(room as u64 + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if data.len() > room {
        bail!(
            "{} is too large: one object holds at most {MAX_DATA_BYTES} bytes of data",
            path.display()
        );
    }
    Ok(data)
}

/// Adds the `--from-file` arguments: a file as one key, a directory as one key per regular file
/// in it, in name order (subdirectories and symlinks are skipped, as kubectl does).
fn add_file_source(data: &mut Data, arg: &str) -> Result<()> {
    let (key, path) = parse_file_source(arg)?;
    let path = Path::new(path);
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "--from-file: the path {:?} does not exist or cannot be read",
            path.display().to_string()
        )
    })?;
    if meta.is_dir() {
        if key.is_some() {
            bail!("--from-file={arg:?}: a key name cannot be given for a directory");
        }
        let mut files = Vec::new();
        let listing = std::fs::read_dir(path)
            .with_context(|| format!("cannot list directory {}", path.display()))?;
        for entry in listing {
            let entry =
                entry.with_context(|| format!("cannot list directory {}", path.display()))?;
            let is_file = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", entry.path().display()))?
                .is_file();
            if is_file {
                files.push(entry.path());
            }
        }
        files.sort();
        for file in files {
            let name = file_key(&file)?;
            let bytes = read_limited(&file, MAX_DATA_BYTES - data.total)?;
            data.add(&name, bytes, format!("--from-file {}", file.display()))?;
        }
        return Ok(());
    }
    let name = match key {
        Some(k) => k.to_string(),
        None => {
            let name = file_key(path)?;
            validate_key(&name).with_context(|| {
                format!("--from-file {arg}: the file name is not a valid key; name the key with --from-file=KEY={arg}")
            })?;
            name
        }
    };
    let bytes = read_limited(path, MAX_DATA_BYTES - data.total)?;
    data.add(&name, bytes, format!("--from-file {arg}"))
}

/// A file's key: its name, which must be UTF-8.
fn file_key(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("--from-file: {} names no file", path.display()))?;
    name.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("--from-file: the file name {name:?} is not UTF-8; name the key with --from-file=KEY=PATH"))
}

/// Collects every `--from-literal` and `--from-file` into keys and bytes.
pub fn collect_data(literals: &[String], files: &[String]) -> Result<Data> {
    let mut data = Data::default();
    for arg in files {
        add_file_source(&mut data, arg)?;
    }
    for arg in literals {
        let (key, value) = parse_literal(arg)?;
        data.add(
            key,
            value.as_bytes().to_vec(),
            format!("--from-literal {key}=..."),
        )?;
    }
    Ok(data)
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        namespace: namespace.unwrap_or_default().to_string(),
        ..Default::default()
    }
}

/// A ConfigMap: UTF-8 values in `data`, any other bytes base64-encoded in `binaryData`.
/// Without `namespace` the object has none (the server's default applies when it is sent).
pub fn configmap_object(name: &str, namespace: Option<&str>, data: Data) -> Object {
    let mut cm = ConfigMap {
        api_version: edge_api::API_VERSION.to_string(),
        metadata: meta(name, namespace),
        ..Default::default()
    };
    for (k, v) in data.entries {
        match String::from_utf8(v) {
            Ok(text) => {
                cm.data.insert(k, text);
            }
            Err(e) => {
                cm.binary_data.insert(k, encode_base64(e.as_bytes()));
            }
        }
    }
    Object::ConfigMap(cm)
}

/// A Secret of `type_` with every value base64-encoded in `data`.
pub fn secret_object(name: &str, namespace: Option<&str>, type_: &str, data: Data) -> Object {
    Object::Secret(Secret {
        api_version: edge_api::API_VERSION.to_string(),
        metadata: meta(name, namespace),
        type_: type_.to_string(),
        data: data
            .entries
            .into_iter()
            .map(|(k, v)| (k, encode_base64(&v)))
            .collect(),
        string_data: BTreeMap::new(),
    })
}

/// Builds the object a `create` command names, with the namespace only when `-n` was given
/// (so `--dry-run=client -o yaml` output can be applied to any namespace).
pub fn build(what: &CreateCommand, namespace: Option<&str>) -> Result<Object> {
    let object = match what {
        CreateCommand::Configmap(a) => {
            let data = collect_data(&a.literals, &a.files)?;
            configmap_object(&a.name, namespace, data)
        }
        CreateCommand::Secret(s) => {
            let SecretCommand::Generic(g) = &s.what;
            if g.type_.is_empty() {
                bail!("--type must not be empty (the usual type is Opaque)");
            }
            let data = collect_data(&g.data.literals, &g.data.files)?;
            secret_object(&g.data.name, namespace, &g.type_, data)
        }
        CreateCommand::Namespace(n) => namespace_object(&n.name),
    };
    let mut checked = object.clone();
    checked.default_namespace(edge_api::DEFAULT_NAMESPACE);
    edge_api::validation::validate(&checked)?;
    Ok(object)
}

/// A Namespace (cluster-scoped: `-n` does not apply).
pub fn namespace_object(name: &str) -> Object {
    Object::Namespace(edge_api::Namespace {
        api_version: edge_api::API_VERSION.to_string(),
        metadata: meta(name, None),
        ..Default::default()
    })
}

/// `--dry-run` and `-o` of any `create` command.
fn options(what: &CreateCommand) -> (CreateDryRun, Option<CreateOutput>) {
    let data = |a: &CreateDataArgs| (a.dry_run, a.output);
    match what {
        CreateCommand::Configmap(a) => data(a),
        CreateCommand::Secret(s) => match &s.what {
            SecretCommand::Generic(g) => data(&g.data),
        },
        CreateCommand::Namespace(n) => (n.dry_run, n.output),
    }
}

/// What `create` prints for `object`: the object in `output`, else `configmap/x created`
/// with `suffix` (`(dry run)`, `(server dry run)`).
pub fn created_output(
    object: &Object,
    output: Option<CreateOutput>,
    suffix: &str,
) -> Result<String> {
    let one = std::slice::from_ref(object);
    Ok(match output {
        Some(CreateOutput::Yaml) => render::to_yaml(one, false)?,
        Some(CreateOutput::Json) => render::to_json(one, false)?,
        Some(CreateOutput::Name) => render::object_name(object) + "\n",
        None if suffix.is_empty() => format!("{} created\n", render::object_name(object)),
        None => format!("{} created {suffix}\n", render::object_name(object)),
    })
}

pub async fn run(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let (dry_run, output) = options(&args.what);
    let object = build(&args.what, ctx.namespace.as_deref()).context("nothing was created")?;
    if dry_run == CreateDryRun::Client {
        return print_out(&created_output(&object, output, "(dry run)")?);
    }
    let mut object = object;
    object.default_namespace(ctx.namespace());
    let key = object.key();
    let session = ctx.connect().await?;
    let client = &session.client;
    if dry_run == CreateDryRun::Server {
        // An apply that would only create is what a create does; anything else means it exists.
        let response = client
            .call(&Request::Apply {
                object,
                dry_run: true,
            })
            .await
            .map_err(|e| server_error(e, Some(&key)))?;
        return match response {
            Response::Applied {
                object,
                outcome: ApplyOutcome::Created,
            } => print_out(&created_output(&object, output, "(server dry run)")?),
            Response::Applied { .. } => Err(ServerError {
                code: ErrorCode::AlreadyExists,
                message: already_exists_message(&key),
            }
            .into()),
            other => Err(unexpected("Apply", &other)),
        };
    }
    let response = client
        .call(&Request::Create { object })
        .await
        .map_err(|e| server_error(e, Some(&key)))?;
    match response {
        Response::Object(created) => print_out(&created_output(&created, output, "")?),
        other => Err(unexpected("Create", &other)),
    }
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;
