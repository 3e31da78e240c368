//! `edgectl get`: fetch named objects or list a kind, print them in the chosen format, and with
//! `-w` keep printing watch events (relisting when the server says the history expired).

use crate::cli::args::{GetArgs, OutputFormat};
use crate::cli::commands::{unexpected, Ctx};
use crate::cli::render::{self, Columns, WatchColumns};
use crate::cli::{error_line, parse_target, print_out, server_error, Exit};
use anyhow::{bail, Context, Result};
use chrono::Utc;
use edge_api::selector::Selector;
use edge_api::wire::{Client, ErrorCode, Request, Response, WireError};
use edge_api::{Kind, Object, ObjectKey};
use std::time::Duration;

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

/// Lists a kind, sorted by namespace and name as kubectl shows them; returns the list's revision.
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

/// Renders objects of one kind in `format` (a table when `None`); `as_list` makes YAML/JSON a
/// `List` even for one object, as for any listing.
pub fn format_objects(
    kind: Kind,
    objects: &[Object],
    format: Option<OutputFormat>,
    cols: Columns,
    as_list: bool,
) -> Result<String> {
    Ok(match format {
        Some(OutputFormat::Yaml) => render::to_yaml(objects, as_list)?,
        Some(OutputFormat::Json) => render::to_json(objects, as_list)?,
        Some(OutputFormat::Name) => objects
            .iter()
            .map(|o| render::object_name(o) + "\n")
            .collect(),
        None | Some(OutputFormat::Wide) => render::objects_table(kind, objects, cols, Utc::now()),
    })
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
    let kinds: Vec<Kind> = {
        let mut k: Vec<Kind> = target.items.iter().map(|(k, _)| *k).collect();
        k.dedup();
        k
    };
    if args.watch && kinds.len() > 1 {
        bail!("you may only specify a single resource type with --watch");
    }
    let cols = Columns {
        wide: args.output == Some(OutputFormat::Wide),
        namespace: args.all_namespaces,
    };
    let session = ctx.connect().await?;
    let client = &session.client;
    let namespace = ctx.namespace().to_string();

    if named {
        let mut failed = false;
        let mut found: Vec<Object> = Vec::new();
        for (kind, name) in &target.items {
            let key = ObjectKey::new(*kind, &namespace, name.as_deref().unwrap_or_default());
            match get_one(client, &key).await {
                Ok(o) => found.push(o),
                Err(e) => {
                    eprintln!("{}", error_line(&e));
                    failed = true;
                }
            }
        }
        print_named(&found, args.output, cols)?;
        if args.watch {
            let names: Vec<String> = target.items.iter().filter_map(|(_, n)| n.clone()).collect();
            let scope = ListScope {
                kind: kinds[0],
                namespace: Some(namespace),
                selector: None,
            };
            let rv = found.iter().map(|o| o.meta().resource_version).max();
            let headers = render::headers(scope.kind, cols);
            let rows: Vec<_> = found
                .iter()
                .map(|o| render::row(o, cols, Utc::now()))
                .collect();
            let watch = Watch {
                scope,
                names,
                format: args.output,
                cols,
                columns: WatchColumns::new(&headers, &rows),
            };
            // Without any object to anchor a revision, watch from now.
            return watch.follow(client, rv).await;
        }
        if failed {
            return Err(Exit(1).into());
        }
        return Ok(());
    }

    let scope = ListScope {
        kind: kinds[0],
        namespace: (!args.all_namespaces).then_some(namespace),
        selector: args.selector.clone(),
    };
    let (items, rv) = list(client, &scope).await?;
    let table_like = matches!(
        args.output,
        None | Some(OutputFormat::Wide | OutputFormat::Name)
    );
    if items.is_empty() && table_like {
        eprintln!("{}", scope.nothing_found());
    } else {
        print_out(&format_objects(
            scope.kind,
            &items,
            args.output,
            cols,
            true,
        )?)?;
    }
    if args.watch {
        let headers = render::headers(scope.kind, cols);
        let rows: Vec<_> = items
            .iter()
            .map(|o| render::row(o, cols, Utc::now()))
            .collect();
        let watch = Watch {
            scope,
            names: Vec::new(),
            format: args.output,
            cols,
            columns: WatchColumns::new(&headers, &rows),
        };
        return watch.follow(client, Some(rv)).await;
    }
    Ok(())
}

/// Prints named objects grouped by kind, a blank line between kinds' tables, as kubectl does.
fn print_named(found: &[Object], format: Option<OutputFormat>, cols: Columns) -> Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    if matches!(format, Some(OutputFormat::Yaml | OutputFormat::Json)) {
        let kind = found[0].kind();
        return print_out(&format_objects(kind, found, format, cols, found.len() > 1)?);
    }
    let mut out = String::new();
    let mut kinds: Vec<Kind> = found.iter().map(Object::kind).collect();
    kinds.dedup();
    for (i, kind) in kinds.iter().enumerate() {
        let of_kind: Vec<Object> = found
            .iter()
            .filter(|o| o.kind() == *kind)
            .cloned()
            .collect();
        if i > 0 && format != Some(OutputFormat::Name) {
            out.push('\n');
        }
        out.push_str(&format_objects(*kind, &of_kind, format, cols, true)?);
    }
    print_out(&out)
}

/// The state of `get -w` after the initial listing.
struct Watch {
    scope: ListScope,
    /// Only these names, when the user named objects.
    names: Vec<String>,
    format: Option<OutputFormat>,
    cols: Columns,
    columns: WatchColumns,
}

impl Watch {
    fn wanted(&self, o: &Object) -> bool {
        self.names.is_empty() || self.names.iter().any(|n| *n == o.meta().name)
    }

    fn print(&mut self, o: &Object) -> Result<()> {
        let text = match self.format {
            Some(OutputFormat::Yaml) => {
                format!("---\n{}", render::to_yaml(std::slice::from_ref(o), false)?)
            }
            Some(OutputFormat::Json) => render::to_json(std::slice::from_ref(o), false)?,
            Some(OutputFormat::Name) => render::object_name(o) + "\n",
            None | Some(OutputFormat::Wide) => {
                let row = render::row(o, self.cols, Utc::now());
                self.columns.line(&row)
            }
        };
        print_out(&text)
    }

    /// Follows events from `rv` until interrupted. A watch the server ends cleanly is resumed
    /// from the last revision seen; an expired revision is answered by listing again.
    async fn follow(mut self, client: &Client, mut rv: Option<u64>) -> Result<()> {
        loop {
            let request = Request::Watch {
                kind: self.scope.kind,
                namespace: self
                    .scope
                    .namespace
                    .clone()
                    .filter(|_| self.scope.kind.namespaced()),
                selector: self.scope.selector.clone(),
                resource_version: rv,
            };
            let mut stream = client
                .stream(&request)
                .await
                .map_err(|e| server_error(e, None))
                .context("cannot start watching")?;
            let mut seen_any = false;
            loop {
                match stream.next().await {
                    Ok(Some(Response::Event(ev))) => {
                        seen_any = true;
                        rv = Some(ev.resource_version);
                        if self.wanted(&ev.object) {
                            self.print(&ev.object)?;
                        }
                    }
                    Ok(Some(other)) => return Err(unexpected("Watch", &other)),
                    Ok(None) => break,
                    Err(WireError::Api(e)) if e.code == ErrorCode::Expired => {
                        let (items, list_rv) = list(client, &self.scope)
                            .await
                            .context("the watch expired and listing again failed")?;
                        for o in &items {
                            if self.wanted(o) {
                                self.print(o)?;
                            }
                        }
                        rv = Some(list_rv);
                        seen_any = true;
                        break;
                    }
                    Err(e) => {
                        return Err(server_error(e, None)).context("the watch ended");
                    }
                }
            }
            if !seen_any {
                // A server that ends watches at once must not make us spin.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
