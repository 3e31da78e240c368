//! `edgectl rollout status|history|undo|restart|pause|resume`: client-side verbs over the
//! Deployment (and DaemonSet for status/restart) and its ReplicaSets, as kubectl does them.

use crate::cli::commands::{unexpected, Ctx};
use crate::cli::get::{get_one, list, ListScope};
use crate::cli::rollout_plan::{self as plan, Progress, Undo};
use crate::cli::update::update_with_retry;
use crate::cli::{parse_target, print_out, render, server_error};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use edge_api::apps::{DaemonSet, Deployment, ReplicaSet};
use edge_api::wire::{Client, ErrorCode, EventType, Request, Response, WireError};
use edge_api::{Kind, Object, ObjectKey};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub what: RolloutCommand,
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Wait until the rollout finishes (exit 0), or fails its progress deadline (exit 1)
    Status(StatusArgs),
    /// List the revisions (from the ReplicaSets) with their change causes
    History(HistoryArgs),
    /// Roll back to the previous revision, or to --to-revision
    Undo(UndoArgs),
    /// Restart every pod by rolling out the same template again
    Restart(ObjectArg),
    /// Stop rolling out template changes (scaling still works)
    Pause(ObjectArg),
    /// Roll out template changes again after a pause
    Resume(ObjectArg),
}

/// `deployment/NAME` or `deployment NAME`.
#[derive(Args, Debug)]
pub struct ObjectArg {
    /// deployment/NAME (or KIND NAME)
    #[arg(value_name = "KIND/NAME")]
    pub resource: String,
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub object: ObjectArg,
    /// Give up after this long (`90s`, `5m`); 0 waits forever
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Keep waiting for the rollout to finish; `--watch=false` prints the status once
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub object: ObjectArg,
    /// Show the pod template of this revision
    #[arg(long, value_name = "N")]
    pub revision: Option<u64>,
}

#[derive(Args, Debug)]
pub struct UndoArgs {
    #[command(flatten)]
    pub object: ObjectArg,
    /// The revision to go back to [default: the previous one]
    #[arg(long, value_name = "N")]
    pub to_revision: Option<u64>,
}

impl ObjectArg {
    fn key(&self, ctx: &Ctx, allowed: &[Kind]) -> Result<ObjectKey> {
        let names: Vec<String> = self.name.iter().cloned().collect();
        let target = parse_target(&self.resource, &names)?;
        let [(kind, Some(name))] = target.items.as_slice() else {
            bail!("name exactly one object, like deployment/NAME");
        };
        if !allowed.contains(kind) {
            let ok: Vec<&str> = allowed.iter().map(|k| k.plural()).collect();
            bail!(
                "this rollout command works on {}, not {}",
                ok.join(" and "),
                kind.plural()
            );
        }
        Ok(ObjectKey::new(*kind, ctx.namespace(), name))
    }
}

pub async fn run(ctx: &Ctx, args: RolloutArgs) -> Result<()> {
    match args.what {
        RolloutCommand::Status(a) => status(ctx, a).await,
        RolloutCommand::History(a) => history(ctx, a).await,
        RolloutCommand::Undo(a) => undo(ctx, a).await,
        RolloutCommand::Restart(a) => restart(ctx, a).await,
        RolloutCommand::Pause(a) => set_paused(ctx, a, true).await,
        RolloutCommand::Resume(a) => set_paused(ctx, a, false).await,
    }
}

fn progress_of(o: &Object) -> Result<Progress> {
    match o {
        Object::Deployment(d) => Ok(plan::deployment_progress(d)),
        Object::DaemonSet(ds) => plan::daemonset_progress(ds),
        other => Err(anyhow!("{} has no rollout", render::object_name(other))),
    }
}

async fn status(ctx: &Ctx, args: StatusArgs) -> Result<()> {
    let key = args.object.key(ctx, &[Kind::Deployment, Kind::DaemonSet])?;
    let session = ctx.connect().await?;
    let follow = follow_status(&session.client, &key, args.watch);
    if args.timeout.is_zero() {
        return follow.await;
    }
    match tokio::time::timeout(args.timeout, follow).await {
        Ok(r) => r,
        Err(_) => bail!("timed out waiting for the condition"),
    }
}

/// Prints a status line whenever it changes, until the rollout is done or failed.
async fn follow_status(client: &Client, key: &ObjectKey, watch: bool) -> Result<()> {
    let mut last = String::new();
    let mut report = |o: &Object| -> Result<bool> {
        match progress_of(o)? {
            Progress::Done(line) => {
                print_out(&format!("{line}\n"))?;
                Ok(true)
            }
            Progress::Failed(msg) => Err(anyhow!(msg)),
            Progress::Waiting(line) => {
                if line != last {
                    print_out(&format!("{line}\n"))?;
                    last = line;
                }
                Ok(!watch)
            }
        }
    };
    loop {
        let current = get_one(client, key).await?;
        if report(&current)? {
            return Ok(());
        }
        let request = Request::Watch {
            kind: key.kind,
            namespace: Some(key.namespace.clone()),
            selector: None,
            resource_version: Some(current.meta().resource_version),
        };
        let mut stream = client
            .stream(&request)
            .await
            .map_err(|e| server_error(e, Some(key)))?;
        loop {
            match stream.next().await {
                Ok(Some(Response::Event(ev))) if ev.object.meta().name == key.name => {
                    if ev.event_type == EventType::Deleted {
                        bail!(
                            "{} was deleted while waiting for its rollout",
                            render::object_name(&ev.object)
                        );
                    }
                    if report(&ev.object)? {
                        return Ok(());
                    }
                }
                Ok(Some(Response::Event(_))) => {}
                Ok(Some(other)) => return Err(unexpected("Watch", &other)),
                // Ended or expired: read the object again and watch from there.
                Ok(None) => break,
                Err(WireError::Api(e)) if e.code == ErrorCode::Expired => break,
                Err(e) => return Err(server_error(e, Some(key))).context("the watch ended"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Deployment and every ReplicaSet in its namespace.
async fn deployment_and_replicasets(
    client: &Client,
    key: &ObjectKey,
) -> Result<(Deployment, Vec<ReplicaSet>)> {
    let Object::Deployment(d) = get_one(client, key).await? else {
        bail!("{key} is not a Deployment");
    };
    let scope = ListScope {
        kind: Kind::ReplicaSet,
        namespace: Some(key.namespace.clone()),
        selector: None,
    };
    let (items, _) = list(client, &scope).await?;
    let rses = items
        .into_iter()
        .filter_map(|o| match o {
            Object::ReplicaSet(rs) => Some(rs),
            _ => None,
        })
        .collect();
    Ok((d, rses))
}

async fn history(ctx: &Ctx, args: HistoryArgs) -> Result<()> {
    let key = args.object.key(ctx, &[Kind::Deployment])?;
    let session = ctx.connect().await?;
    let (d, rses) = deployment_and_replicasets(&session.client, &key).await?;
    let name = render::object_name(&Object::Deployment(d.clone()));
    if let Some(rev) = args.revision {
        let rs = plan::owned_replicasets(&d, &rses)
            .into_iter()
            .find(|rs| plan::revision_of(&rs.metadata) == Some(rev))
            .ok_or_else(|| anyhow!("unable to find the specified revision {rev}"))?;
        let template = crate::cli::describe::pod_template_text(&rs.spec.template);
        return print_out(&format!("{name} with revision #{rev}\n{template}"));
    }
    let rows: Vec<Vec<String>> = plan::history(&d, &rses)
        .into_iter()
        .map(|(rev, cause)| vec![rev.to_string(), cause])
        .collect();
    if rows.is_empty() {
        return print_out(&format!("No rollout history found for {name}\n"));
    }
    let table = render::table(&["REVISION", "CHANGE-CAUSE"], &rows);
    print_out(&format!("{name}\n{table}"))
}

async fn undo(ctx: &Ctx, args: UndoArgs) -> Result<()> {
    let key = args.object.key(ctx, &[Kind::Deployment])?;
    let session = ctx.connect().await?;
    let client = &session.client;
    // One plan per attempt: a retry after a conflict plans again from what is stored then.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (d, rses) = deployment_and_replicasets(client, &key).await?;
        let name = render::object_name(&Object::Deployment(d.clone()));
        let next = match plan::plan_undo(&d, &rses, args.to_revision)? {
            Undo::Skip(rev) => {
                return print_out(&format!(
                    "{name} skipped rollback (current template already matches revision {rev})\n"
                ))
            }
            Undo::RollBack(next) => next,
        };
        let request = Request::Update {
            object: Object::Deployment(*next),
        };
        match client.call(&request).await {
            Ok(Response::Object(_)) => return print_out(&format!("{name} rolled back\n")),
            Ok(other) => return Err(unexpected("Update", &other)),
            Err(WireError::Api(e)) if e.code == ErrorCode::Conflict && attempts < 5 => {}
            Err(e) => return Err(server_error(e, Some(&key))),
        }
    }
}

async fn restart(ctx: &Ctx, args: ObjectArg) -> Result<()> {
    let key = args.key(ctx, &[Kind::Deployment, Kind::DaemonSet])?;
    let session = ctx.connect().await?;
    let now = chrono::Utc::now();
    let u = update_with_retry(&session.client, &key, None, |o| match o {
        Object::Deployment(d) if d.spec.paused => {
            bail!("can't restart paused deployment (run 'edgectl rollout resume deployment/{}' first)", d.metadata.name)
        }
        Object::Deployment(d) => {
            plan::restart(&mut d.spec.template, now);
            Ok(())
        }
        Object::DaemonSet(DaemonSet { spec, .. }) => {
            plan::restart(&mut spec.template, now);
            Ok(())
        }
        other => bail!("{} cannot be restarted", render::object_name(other)),
    })
    .await?;
    print_out(&format!("{} restarted\n", render::object_name(&u.before)))
}

async fn set_paused(ctx: &Ctx, args: ObjectArg, paused: bool) -> Result<()> {
    let key = args.key(ctx, &[Kind::Deployment])?;
    let session = ctx.connect().await?;
    let u = update_with_retry(&session.client, &key, None, |o| {
        let Object::Deployment(d) = o else {
            bail!("{} cannot be paused", render::object_name(o));
        };
        if d.spec.paused == paused {
            let state = if paused {
                "already paused"
            } else {
                "not paused"
            };
            bail!("deployments {:?} is {state}", d.metadata.name);
        }
        d.spec.paused = paused;
        Ok(())
    })
    .await?;
    let verb = if paused { "paused" } else { "resumed" };
    print_out(&format!("{} {verb}\n", render::object_name(&u.before)))
}
