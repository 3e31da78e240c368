//! `edgectl diff -f FILE`: a unified diff of each object's live YAML against what `apply` would
//! store (asked of the server with a dry-run apply, so defaults and validation are the server's).
//! Exit 0: no differences; 1: differences; 2: an error (kubectl's convention).

use crate::cli::commands::{unexpected, Ctx};
use crate::cli::get::get_one;
use crate::cli::manifests::{
    namespaces_first, parse_sources, read_sources, resolve_images, validate_all,
};
use crate::cli::{error_line, is_not_found, print_out, render, server_error, Exit};
use anyhow::{Context, Result};
use clap::Args;
use edge_api::wire::{Request, Response};
use edge_api::Object;

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// A manifest file, a directory of *.yaml/*.yml/*.json, or `-` for stdin (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<String>,
}

/// The path shown for an object on both sides, as kubectl names its temporary files.
pub fn diff_name(o: &Object) -> String {
    let m = o.meta();
    let mut parts = vec!["edge.dev.v1".to_string(), o.kind().as_str().to_string()];
    if !m.namespace.is_empty() {
        parts.push(m.namespace.clone());
    }
    parts.push(m.name.clone());
    parts.join(".")
}

/// The unified diff of `live` (absent: a new object) against `merged`; empty when equal.
pub fn unified(live: Option<&Object>, merged: &Object) -> Result<String> {
    let old = match live {
        Some(o) => render::to_yaml(std::slice::from_ref(o), false)?,
        None => String::new(),
    };
    let new = render::to_yaml(std::slice::from_ref(merged), false)?;
    if old == new {
        return Ok(String::new());
    }
    let name = diff_name(merged);
    let (a, b) = (format!("LIVE/{name}"), format!("MERGED/{name}"));
    let body = similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string();
    Ok(format!("diff -u -N {a} {b}\n{body}"))
}

/// What the dry run answers, with the live revision kept: a dry run stores nothing, so the
/// object would keep its resourceVersion until the write, and showing it vanish is noise.
pub fn as_merged(mut planned: Object, live: Option<&Object>) -> Object {
    if let Some(l) = live {
        if planned.meta().resource_version == 0 {
            planned.meta_mut().resource_version = l.meta().resource_version;
        }
    }
    planned
}

pub async fn run(ctx: &Ctx, args: DiffArgs) -> Result<()> {
    match diff(ctx, args).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(Exit(1).into()),
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return Err(Exit(*code).into());
            }
            eprintln!("{}", error_line(&e));
            Err(Exit(2).into())
        }
    }
}

/// Prints the diffs; true when there is any.
async fn diff(ctx: &Ctx, args: DiffArgs) -> Result<bool> {
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let sources = read_sources(&args.files, &cwd, &mut std::io::stdin().lock())?;
    let mut loaded = parse_sources(&sources, ctx.namespace.as_deref())?;
    namespaces_first(&mut loaded);
    // Local components are compared by digest; nothing is uploaded for a diff.
    resolve_images(&mut loaded)?;
    validate_all(&loaded)?;
    let session = ctx.connect().await?;
    let client = &session.client;
    let mut changed = false;
    for l in loaded {
        let key = l.object.key();
        let live = match get_one(client, &key).await {
            Ok(o) => Some(o),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        let request = Request::Apply {
            object: l.object,
            dry_run: true,
        };
        let planned = match client
            .call(&request)
            .await
            .map_err(|e| server_error(e, Some(&key)))
            .with_context(|| format!("{}: {key}", l.source))?
        {
            Response::Applied { object, .. } => object,
            other => return Err(unexpected("Apply", &other)),
        };
        let text = unified(live.as_ref(), &as_merged(planned, live.as_ref()))?;
        if !text.is_empty() {
            changed = true;
            print_out(&text)?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::ConfigMap;

    fn cm(value: &str, rv: u64) -> Object {
        let mut c = ConfigMap::default();
        c.metadata.name = "cfg".into();
        c.metadata.namespace = "default".into();
        c.metadata.resource_version = rv;
        c.data.insert("level".into(), value.into());
        Object::ConfigMap(c)
    }

    #[test]
    fn equal_objects_have_no_diff() {
        let live = cm("debug", 7);
        let merged = as_merged(cm("debug", 0), Some(&live));
        assert_eq!(unified(Some(&live), &merged).unwrap(), "");
    }

    #[test]
    fn a_change_is_a_unified_diff_with_kubectl_like_names() {
        let live = cm("debug", 7);
        let text = unified(Some(&live), &as_merged(cm("info", 0), Some(&live))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "diff -u -N LIVE/edge.dev.v1.ConfigMap.default.cfg MERGED/edge.dev.v1.ConfigMap.default.cfg"
        );
        assert_eq!(lines[1], "--- LIVE/edge.dev.v1.ConfigMap.default.cfg");
        assert_eq!(lines[2], "+++ MERGED/edge.dev.v1.ConfigMap.default.cfg");
        assert!(lines.contains(&"-  level: debug"), "{text}");
        assert!(lines.contains(&"+  level: info"), "{text}");
        assert!(
            !text.contains("resourceVersion: 7\n-") && !text.contains("-  resourceVersion"),
            "{text}"
        );
    }

    #[test]
    fn a_new_object_is_all_additions() {
        let text = unified(None, &cm("info", 0)).unwrap();
        assert!(text.contains("@@ -0,0 +1,"), "{text}");
        let body: Vec<&str> = text.lines().skip(4).collect();
        assert!(body.iter().all(|l| l.starts_with('+')), "{text}");
    }
}
