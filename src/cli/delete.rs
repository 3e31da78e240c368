//! `edgectl delete`: by name, by selector or `--all`, or as listed in manifests, with kubectl's
//! `--cascade=background|foreground|orphan` for what happens to the objects each one owns.

use crate::cli::commands::{unexpected, Ctx};
use crate::cli::get::{check_selector, list, ListScope};
use crate::cli::manifests::objects_from_files;
use crate::cli::{error_line, is_not_found, parse_target, print_out, server_error, Exit};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use edge_api::wire::{Propagation, Request, Response};
use edge_api::{Object, ObjectKey};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// KIND or KIND/NAME (omit when using -f)
    #[arg(value_name = "KIND", required_unless_present = "files")]
    pub resource: Option<String>,

    /// Names of objects to delete
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// Delete the objects listed in these manifests (file, directory or `-`)
    #[arg(short = 'f', long = "filename", value_name = "PATH", conflicts_with_all = ["resource", "all", "selector"])]
    pub files: Vec<String>,

    /// Delete every object of the kind in the namespace
    #[arg(long)]
    pub all: bool,

    /// Delete the objects matching this label selector
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Remove pods at once instead of letting their node stop them first
    #[arg(long)]
    pub force: bool,

    /// Treat objects that do not exist as deleted
    #[arg(long)]
    pub ignore_not_found: bool,

    /// What happens to owned objects: `background` (deleted after the owner), `foreground`
    /// (deleted before it) or `orphan` (kept); `true`/`false` mean background/orphan
    #[arg(long, value_name = "MODE", default_value = "background", num_args = 0..=1, default_missing_value = "background", require_equals = true)]
    pub cascade: String,
}

/// Parses `--cascade` as kubectl does; the boolean spellings still work, with a warning.
pub fn parse_cascade(s: &str) -> Result<(Propagation, Option<String>)> {
    let deprecated = |replacement: &str| {
        Some(format!(
            "warning: --cascade={s} is deprecated (boolean value) and can be replaced with --cascade={replacement}."
        ))
    };
    Ok(match s.to_ascii_lowercase().as_str() {
        "background" => (Propagation::Background, None),
        "foreground" => (Propagation::Foreground, None),
        "orphan" => (Propagation::Orphan, None),
        "true" => (Propagation::Background, deprecated("background")),
        "false" => (Propagation::Orphan, deprecated("orphan")),
        _ => bail!("invalid cascade value ({s}); must be one of: background, foreground, orphan"),
    })
}

/// Which objects to delete, in the order to delete them.
async fn keys(
    ctx: &Ctx,
    args: &DeleteArgs,
    client: &edge_api::wire::Client,
) -> Result<Vec<ObjectKey>> {
    let resource = args
        .resource
        .as_deref()
        .ok_or_else(|| anyhow!("name a KIND and NAME, or give -f"))?;
    let target = parse_target(resource, &args.names)?;
    let named = target.items.iter().any(|(_, n)| n.is_some());
    if named {
        return Ok(target
            .items
            .iter()
            .map(|(k, n)| ObjectKey::new(*k, ctx.namespace(), n.as_deref().unwrap_or_default()))
            .collect());
    }
    let mut keys = Vec::new();
    for (kind, _) in &target.items {
        let scope = ListScope {
            kind: *kind,
            namespace: Some(ctx.namespace().to_string()),
            selector: args.selector.clone(),
        };
        let (items, _) = list(client, &scope).await?;
        if items.is_empty() && target.items.len() == 1 {
            eprintln!("{}", scope.nothing_found());
        }
        keys.extend(items.iter().map(Object::key));
    }
    Ok(keys)
}

pub async fn run(ctx: &Ctx, args: DeleteArgs) -> Result<()> {
    let (propagation, warning) = parse_cascade(&args.cascade)?;
    let from_files = if args.files.is_empty() {
        None
    } else {
        let loaded = objects_from_files(&args.files, ctx.namespace.as_deref())?;
        Some(
            loaded
                .iter()
                .rev()
                .map(|l| l.object.key())
                .collect::<Vec<_>>(),
        )
    };
    if from_files.is_none() {
        let resource = args.resource.as_deref().unwrap_or_default();
        let target = parse_target(resource, &args.names)?;
        check_selector(args.selector.as_deref())?;
        let named = target.items.iter().any(|(_, n)| n.is_some());
        let bulk = args.all || args.selector.is_some();
        if named && bulk {
            bail!("names cannot be given together with --all or --selector");
        }
        if !named && !bulk {
            bail!("resource(s) were provided, but no name was specified; name the objects, or use --all or -l");
        }
    }
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    let session = ctx.connect().await?;
    let keys = match from_files {
        Some(k) => k,
        None => keys(ctx, &args, &session.client).await?,
    };
    if args.force {
        eprintln!("Warning: immediate deletion does not wait for the node to confirm the pod has stopped; it may keep running there until its agent reconciles.");
    }
    let mut failed = false;
    for key in keys {
        let result = session
            .client
            .call(&Request::Delete {
                key: key.clone(),
                force: args.force,
                propagation,
            })
            .await
            .map_err(|e| server_error(e, Some(&key)));
        match result {
            Ok(Response::Deleted { .. }) => {
                let kind = key.kind.as_str().to_ascii_lowercase();
                let verb = if args.force {
                    "force deleted"
                } else {
                    "deleted"
                };
                print_out(&format!("{kind} \"{}\" {verb}\n", key.name))?;
            }
            Ok(other) => return Err(unexpected("Delete", &other)),
            Err(e) if args.ignore_not_found && is_not_found(&e) => {}
            Err(e) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_modes_and_kubectl_booleans() {
        assert_eq!(
            parse_cascade("background").unwrap(),
            (Propagation::Background, None)
        );
        assert_eq!(
            parse_cascade("Foreground").unwrap().0,
            Propagation::Foreground
        );
        assert_eq!(parse_cascade("orphan").unwrap().0, Propagation::Orphan);
        let (p, w) = parse_cascade("false").unwrap();
        assert_eq!(p, Propagation::Orphan);
        assert!(w.unwrap().contains("--cascade=orphan"));
        assert_eq!(parse_cascade("true").unwrap().0, Propagation::Background);
        let e = parse_cascade("later").unwrap_err().to_string();
        assert!(e.contains("background, foreground, orphan"), "{e}");
    }
}
