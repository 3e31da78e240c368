//! `edgectl get`: fetch named objects or list kinds (`pods,svc`, `all`), print them in the chosen
//! format, and with `-w` keep printing changes (`watch`).

use crate::cli::args::{GetArgs, OutputFormat};
use crate::cli::commands::{unexpected, Ctx};
use crate::cli::render::{self, Columns};
use crate::cli::table::TableOpts;
use crate::cli::watch::Watch;
use crate::cli::{error_line, names_several_kinds, parse_target, print_out, server_error, Exit};
use anyhow::{bail, Result};
use chrono::Utc;
use edge_api::selector::Selector;
use edge_api::wire::{Client, Request, Response};
use edge_api::{Kind, Object, ObjectKey};

/// What `get` and `describe` list: a kind, in a namespace (`None`: all), with a selector.
#[derive(Clone, Debug)]
pub struct ListScope {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub selector: Option<String>,
}

impl ListScope {
    /// kubectl's message for an empty listing.
    pub fn nothing_found(&self) -> String {
        match &self.namespace {
            Some(ns) if self.kind.namespaced() => format!("No resources found in {ns} namespace."),
            _ => "No resources found".into(),
        }
    }
}

/// Checks a selector here, so a typo is reported before any request.
pub fn check_selector(selector: Option<&str>) -> Result<()> {
    if let Some(s) = selector {
        Selector::parse(s)?;
    }
    Ok(())
}

/// Lists a kind, sorted by namespace and name as kubectl shows them (events by time); returns
/// the list's revision.
pub async fn list(client: &Client, scope: &ListScope) -> Result<(Vec<Object>, u64)> {
    let request = Request::List {
        kind: scope.kind,
        namespace: scope.namespace.clone().filter(|_| scope.kind.namespaced()),
        selector: scope.selector.clone(),
    };
    match client
        .call(&request)
        .await
        .map_err(|e| server_error(e, None))?
    {
        Response::List {
            mut items,
            resource_version,
        } => {
            items.sort_by(|a, b| {
                (&a.meta().namespace, &a.meta().name).cmp(&(&b.meta().namespace, &b.meta().name))
            });
            // Events read as a log: oldest first (the order is otherwise by name, a hash).
            items.sort_by_key(|o| match o {
                Object::Event(e) => e.last_timestamp.or(e.first_timestamp),
                _ => None,
            });
            Ok((items, resource_version))
        }
        other => Err(unexpected("List", &other)),
    }
}

/// Fetches one object; NotFound reads `pods "x" not found`.
pub async fn get_one(client: &Client, key: &ObjectKey) -> Result<Object> {
    match client
        .call(&Request::Get { key: key.clone() })
        .await
        .map_err(|e| server_error(e, Some(key)))?
    {
        Response::Object(o) => Ok(o),
        other => Err(unexpected("Get", &other)),
    }
}

/// Renders objects in `format`, a table per kind when `None` or wide (kinds in the order of
/// `kinds`, a blank line between tables); YAML/JSON are one `List` when `as_list` or when there
/// are several objects.
pub fn format_objects(
    kinds: &[Kind],
    objects: &[Object],
    format: Option<OutputFormat>,
    opts: &TableOpts,
    as_list: bool,
) -> Result<String> {
    let as_list = as_list || objects.len() > 1;
    Ok(match format {
        Some(OutputFormat::Yaml) => render::to_yaml(objects, as_list)?,
        Some(OutputFormat::Json) => render::to_json(objects, as_list)?,
        Some(OutputFormat::Name) => objects
            .iter()
            .map(|o| render::object_name(o) + "\n")
            .collect(),
        None | Some(OutputFormat::Wide) => {
            let now = Utc::now();
            let mut tables = Vec::new();
            for kind in kinds {
                let of_kind: Vec<Object> = objects
                    .iter()
                    .filter(|o| o.kind() == *kind)
                    .cloned()
                    .collect();
                if !of_kind.is_empty() || kinds.len() == 1 {
                    tables.push(opts.table(*kind, &of_kind, now));
                }
            }
            tables.join("\n")
        }
    })
}

/// The kinds of a target, each once, in the order given.
fn kinds_of(items: &[(Kind, Option<String>)]) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Vec::new();
    for (k, _) in items {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    kinds
}

pub async fn run(ctx: &Ctx, args: GetArgs) -> Result<()> {
    let target = parse_target(&args.resource, &args.names)?;
    check_selector(args.selector.as_deref())?;
    let named = target.items.iter().any(|(_, n)| n.is_some());
    if named && args.selector.is_some() {
        bail!("name cannot be provided when a selector is specified");
    }
    if named && args.all_namespaces {
        bail!("a resource cannot be retrieved by name across all namespaces");
    }
    let kinds = kinds_of(&target.items);
    let opts = TableOpts {
        cols: Columns {
            wide: args.output == Some(OutputFormat::Wide),
            namespace: args.all_namespaces,
        },
        show_kind: args.show_kind || names_several_kinds(&args.resource) || kinds.len() > 1,
        show_labels: args.show_labels,
        label_columns: args.label_columns.clone(),
    };
    let session = ctx.connect().await?;
    let client = &session.client;
    let namespace = ctx.namespace().to_string();

    let mut failed = false;
    let mut shown: Vec<Object> = Vec::new();
    // Where each kind's watch starts: after its listing, or after the named objects fetched.
    let mut revisions: Vec<Option<u64>> = vec![None; kinds.len()];
    if named {
        for (kind, name) in &target.items {
            let key = ObjectKey::new(*kind, &namespace, name.as_deref().unwrap_or_default());
            match get_one(client, &key).await {
                Ok(o) => shown.push(o),
                Err(e) => {
                    eprintln!("{}", error_line(&e));
                    failed = true;
                }
            }
        }
        // Without any object to anchor a revision, a watch starts from now.
        let newest = shown.iter().map(|o| o.meta().resource_version).max();
        revisions.fill(newest);
        if !shown.is_empty() {
            let as_list = shown.len() > 1;
            print_out(&format_objects(
                &kinds,
                &shown,
                args.output,
                &opts,
                as_list,
            )?)?;
        }
    } else {
        for (kind, revision) in kinds.iter().zip(revisions.iter_mut()) {
            let scope = scope_of(&args, *kind, &namespace);
            let (items, rv) = list(client, &scope).await?;
            *revision = Some(rv);
            shown.extend(items);
        }
        let table_like = matches!(
            args.output,
            None | Some(OutputFormat::Wide | OutputFormat::Name)
        );
        if shown.is_empty() && table_like {
            eprintln!("{}", scope_of(&args, kinds[0], &namespace).nothing_found());
        } else {
            print_out(&format_objects(&kinds, &shown, args.output, &opts, true)?)?;
        }
    }
    if !args.watch {
        return if failed { Err(Exit(1).into()) } else { Ok(()) };
    }
    let watches = kinds.iter().zip(revisions).map(|(kind, revision)| {
        let names: Vec<String> = target
            .items
            .iter()
            .filter(|(k, _)| k == kind)
            .filter_map(|(_, n)| n.clone())
            .collect();
        let scope = if named {
            ListScope {
                kind: *kind,
                namespace: Some(namespace.clone()),
                selector: None,
            }
        } else {
            scope_of(&args, *kind, &namespace)
        };
        let of_kind: Vec<Object> = shown
            .iter()
            .filter(|o| o.kind() == *kind)
            .cloned()
            .collect();
        Watch::new(scope, names, args.output, opts.clone(), &of_kind).follow(client, revision)
    });
    futures::future::try_join_all(watches).await?;
    Ok(())
}

fn scope_of(args: &GetArgs, kind: Kind, namespace: &str) -> ListScope {
    ListScope {
        kind,
        namespace: (!args.all_namespaces).then(|| namespace.to_string()),
        selector: args.selector.clone(),
    }
}
