//! `edgectl describe`: fetch the objects, then what their descriptions show besides them (a
//! node's pods, a workload's pods or ReplicaSets, a Service's Endpoints, the events about each),
//! and print the pure layouts of `describe`.

use crate::cli::args::DescribeArgs;
use crate::cli::commands::Ctx;
use crate::cli::describe::{self, Related};
use crate::cli::get::{check_selector, get_one, list, ListScope};
use crate::cli::{error_line, parse_target, print_out, Exit};
use anyhow::{Context, Result};
use chrono::Utc;
use edge_api::wire::Client;
use edge_api::{Kind, Object, ObjectKey};
use std::collections::BTreeSet;

/// The namespaces (`None`: all) in which `kind` is needed to describe `objects`.
pub fn needed(kind: Kind, objects: &[Object]) -> BTreeSet<Option<String>> {
    let mut out = BTreeSet::new();
    for o in objects {
        let ns = o.meta().namespace.clone();
        let wanted = match (kind, o.kind()) {
            (Kind::Pod, Kind::Node) => Some(None),
            (Kind::Pod, Kind::ReplicaSet | Kind::DaemonSet | Kind::Job) => Some(Some(ns)),
            (Kind::ReplicaSet, Kind::Deployment) => Some(Some(ns)),
            (Kind::Endpoints, Kind::Service) => Some(Some(ns)),
            (Kind::Event, Kind::Event) => None,
            // Cluster-scoped objects' events may be recorded in any namespace.
            (Kind::Event, k) if !k.namespaced() => Some(None),
            (Kind::Event, _) => Some(Some(ns)),
            _ => None,
        };
        out.extend(wanted);
    }
    if out.contains(&None) {
        return BTreeSet::from([None]);
    }
    out
}

/// Lists `kind` in each of `namespaces` (once across all when `None` is among them).
async fn list_in(
    client: &Client,
    kind: Kind,
    namespaces: BTreeSet<Option<String>>,
) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for namespace in namespaces {
        let scope = ListScope {
            kind,
            namespace,
            selector: None,
        };
        out.extend(list(client, &scope).await?.0);
    }
    Ok(out)
}

macro_rules! only {
    ($objects:expr, $variant:path) => {
        $objects
            .into_iter()
            .filter_map(|o| match o {
                $variant(x) => Some(x),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
}

pub async fn run(ctx: &Ctx, args: DescribeArgs) -> Result<()> {
    let target = parse_target(&args.resource, &args.names)?;
    check_selector(args.selector.as_deref())?;
    let session = ctx.connect().await?;
    let client = &session.client;
    let mut objects = Vec::new();
    let mut failed = false;
    for (kind, name) in &target.items {
        match name {
            Some(name) => {
                match get_one(client, &ObjectKey::new(*kind, ctx.namespace(), name)).await {
                    Ok(o) => objects.push(o),
                    Err(e) => {
                        eprintln!("{}", error_line(&e));
                        failed = true;
                    }
                }
            }
            None => {
                let scope = ListScope {
                    kind: *kind,
                    namespace: (!args.all_namespaces).then(|| ctx.namespace().to_string()),
                    selector: args.selector.clone(),
                };
                let (items, _) = list(client, &scope).await?;
                if items.is_empty() && target.items.len() == 1 {
                    eprintln!("{}", scope.nothing_found());
                }
                objects.extend(items);
            }
        }
    }
    let pods = list_in(client, Kind::Pod, needed(Kind::Pod, &objects))
        .await
        .context("cannot list the pods to describe")?;
    let replicasets = list_in(client, Kind::ReplicaSet, needed(Kind::ReplicaSet, &objects))
        .await
        .context("cannot list the ReplicaSets to describe")?;
    let endpoints = list_in(client, Kind::Endpoints, needed(Kind::Endpoints, &objects))
        .await
        .context("cannot list the Endpoints to describe")?;
    // Events are a help, not the point: a description is still printed without them.
    let events = match list_in(client, Kind::Event, needed(Kind::Event, &objects)).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: cannot list events: {e:#}");
            Vec::new()
        }
    };
    let (pods, replicasets, endpoints, events) = (
        only!(pods, Object::Pod),
        only!(replicasets, Object::ReplicaSet),
        only!(endpoints, Object::Endpoints),
        only!(events, Object::Event),
    );
    let related = Related {
        pods: &pods,
        replicasets: &replicasets,
        endpoints: &endpoints,
        events: &events,
    };
    let now = Utc::now();
    let texts: Vec<String> = objects
        .iter()
        .map(|o| describe::describe(o, &related, now))
        .collect();
    if !texts.is_empty() {
        print_out(&texts.join("\n\n"))?;
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::{Deployment, Node, Pod};

    fn named<T: Default>(f: impl FnOnce(&mut T)) -> T {
        let mut t = T::default();
        f(&mut t);
        t
    }

    #[test]
    fn related_kinds_are_listed_only_where_needed() {
        let dep = Object::Deployment(named(|d: &mut Deployment| {
            d.metadata.namespace = "prod".into()
        }));
        let pod = Object::Pod(named(|p: &mut Pod| p.metadata.namespace = "dev".into()));
        let objects = vec![dep.clone(), pod];
        assert_eq!(
            needed(Kind::ReplicaSet, &objects),
            BTreeSet::from([Some("prod".to_string())])
        );
        assert!(needed(Kind::Pod, &objects).is_empty());
        assert_eq!(
            needed(Kind::Event, &objects),
            BTreeSet::from([Some("dev".to_string()), Some("prod".to_string())])
        );
        let with_node = vec![dep, Object::Node(Node::default())];
        assert_eq!(needed(Kind::Pod, &with_node), BTreeSet::from([None]));
        assert_eq!(needed(Kind::Event, &with_node), BTreeSet::from([None]));
    }
}
