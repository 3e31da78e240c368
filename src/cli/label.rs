//! `edgectl label` and `edgectl annotate`: `KEY=VALUE` sets, `KEY-` removes, changing an existing
//! value needs `--overwrite`, as in kubectl. Each object is rewritten with a compare-and-swap
//! update, re-read and retried if someone else changed it meanwhile.

use crate::cli::commands::Ctx;
use crate::cli::get::{check_selector, list, ListScope};
use crate::cli::update::update_with_retry;
use crate::cli::{error_line, parse_target, print_out, render, Exit};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use edge_api::{Object, ObjectKey};
use std::collections::BTreeMap;

/// What `label` and `annotate` share.
#[derive(Args, Debug)]
pub struct MetaEditArgs {
    /// KIND NAME... (or KIND/NAME...), then KEY=VALUE to set and KEY- to remove
    #[arg(value_name = "KIND NAME... KEY=VALUE... KEY-...", required = true, num_args = 1..)]
    pub args: Vec<String>,

    /// Replace values that are already set (without it, changing one is refused)
    #[arg(long)]
    pub overwrite: bool,

    /// Every object of the kind matching this label selector
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "all")]
    pub selector: Option<String>,

    /// Every object of the kind in the namespace
    #[arg(long)]
    pub all: bool,

    /// Only if the object is still at this resourceVersion (no retry then)
    #[arg(long, value_name = "RV")]
    pub resource_version: Option<u64>,
}

#[derive(Args, Debug)]
pub struct LabelArgs {
    #[command(flatten)]
    pub edit: MetaEditArgs,
}

#[derive(Args, Debug)]
pub struct AnnotateArgs {
    #[command(flatten)]
    pub edit: MetaEditArgs,
}

/// Which map of the metadata is edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn noun(self) -> &'static str {
        match self {
            Field::Labels => "label",
            Field::Annotations => "annotation",
        }
    }
}

/// The parsed changes: keys to set (in order) and keys to remove.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// True for an argument that is a change rather than a resource: `k=v` or `k-`.
fn is_change(arg: &str) -> bool {
    arg.contains('=') || arg.ends_with('-')
}

/// Splits kubectl's argument list: resources first, then changes.
pub fn split_args(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let first_change = args.iter().position(|a| is_change(a)).unwrap_or(args.len());
    let (resources, changes) = args.split_at(first_change);
    if let Some(stray) = changes.iter().find(|a| !is_change(a)) {
        bail!(
            "{stray:?} comes after the KEY=VALUE changes: name the objects first, then the changes"
        );
    }
    if resources.is_empty() {
        bail!("name a KIND and NAME (or KIND/NAME) before the changes");
    }
    if changes.is_empty() {
        bail!("at least one KEY=VALUE or KEY- change is required");
    }
    Ok((resources.to_vec(), changes.to_vec()))
}

/// Parses `KEY=VALUE` and `KEY-`, checking keys (and label values) as the server will.
pub fn parse_changes(args: &[String], field: Field) -> Result<Changes> {
    let mut c = Changes::default();
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg.strip_suffix('-').unwrap_or(arg), None),
        };
        edge_api::validation::label_key(key)
            .map_err(|e| anyhow!("{arg:?}: invalid {} key: {e}", field.noun()))?;
        match value {
            Some(v) => {
                if field == Field::Labels {
                    edge_api::validation::label_value(v)
                        .map_err(|e| anyhow!("{arg:?}: invalid label value: {e}"))?;
                }
                if c.set.insert(key.to_string(), v.to_string()).is_some() {
                    bail!("{key:?} is given more than once");
                }
            }
            None => c.remove.push(key.to_string()),
        }
    }
    if let Some(both) = c.remove.iter().find(|k| c.set.contains_key(*k)) {
        bail!(
            "cannot both set and remove the {} {both:?} in the same command",
            field.noun()
        );
    }
    Ok(c)
}

/// Applies the changes to a map. Changing an existing value without `overwrite` is refused
/// with kubectl's message; returns the keys asked to be removed that were not there.
pub fn apply_changes(
    map: &mut BTreeMap<String, String>,
    changes: &Changes,
    overwrite: bool,
) -> Result<Vec<String>> {
    if !overwrite {
        let clashes: Vec<String> = changes
            .set
            .iter()
            .filter_map(|(k, v)| match map.get(k) {
                Some(old) if old != v => Some(format!(
                    "'{k}' already has a value ({old}), and --overwrite is false"
                )),
                _ => None,
            })
            .collect();
        if !clashes.is_empty() {
            bail!("{}", clashes.join("; "));
        }
    }
    let missing = changes
        .remove
        .iter()
        .filter(|k| !map.contains_key(*k))
        .cloned()
        .collect();
    for (k, v) in &changes.set {
        map.insert(k.clone(), v.clone());
    }
    for k in &changes.remove {
        map.remove(k);
    }
    Ok(missing)
}

/// kubectl's verb for what happened to one object.
pub fn outcome(
    field: Field,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> &'static str {
    match field {
        Field::Annotations => "annotated",
        Field::Labels if before == after => "not labeled",
        Field::Labels if after.len() < before.len() => "unlabeled",
        Field::Labels => "labeled",
    }
}

fn map_of(o: &Object, field: Field) -> &BTreeMap<String, String> {
    match field {
        Field::Labels => &o.meta().labels,
        Field::Annotations => &o.meta().annotations,
    }
}

pub async fn run(ctx: &Ctx, args: MetaEditArgs, field: Field) -> Result<()> {
    let (resources, change_args) = split_args(&args.args)?;
    let changes = parse_changes(&change_args, field)?;
    let target = parse_target(&resources[0], &resources[1..])?;
    check_selector(args.selector.as_deref())?;
    let named = target.items.iter().any(|(_, n)| n.is_some());
    let bulk = args.all || args.selector.is_some();
    if named == bulk {
        bail!("name the objects, or use --all or -l (not both)");
    }
    let session = ctx.connect().await?;
    let client = &session.client;
    let mut keys = Vec::new();
    for (kind, name) in &target.items {
        match name {
            Some(n) => keys.push(ObjectKey::new(*kind, ctx.namespace(), n)),
            None => {
                let scope = ListScope {
                    kind: *kind,
                    namespace: Some(ctx.namespace().to_string()),
                    selector: args.selector.clone(),
                };
                let (items, _) = list(client, &scope).await?;
                if items.is_empty() {
                    eprintln!("{}", scope.nothing_found());
                }
                keys.extend(items.iter().map(Object::key));
            }
        }
    }
    let mut failed = false;
    for key in keys {
        let mut missing = Vec::new();
        let result = update_with_retry(client, &key, args.resource_version, |o| {
            let meta = o.meta_mut();
            let map = match field {
                Field::Labels => &mut meta.labels,
                Field::Annotations => &mut meta.annotations,
            };
            missing = apply_changes(map, &changes, args.overwrite)?;
            Ok(())
        })
        .await;
        match result {
            Ok(u) => {
                if field == Field::Labels {
                    for k in &missing {
                        print_out(&format!("label {k:?} not found.\n"))?;
                    }
                }
                let after = u.after.as_ref().unwrap_or(&u.before);
                let verb = outcome(field, map_of(&u.before, field), map_of(after, field));
                print_out(&format!("{} {verb}\n", render::object_name(after)))?;
            }
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
#[path = "label_tests.rs"]
mod tests;
