//! `edgectl scale deployment|replicaset NAME --replicas N` (or `-f FILE`): sets spec.replicas
//! with a compare-and-swap update, optionally only if the current count is `--current-replicas`.

use crate::cli::commands::Ctx;
use crate::cli::manifests::objects_from_files;
use crate::cli::update::update_with_retry;
use crate::cli::{error_line, parse_target, print_out, render, Exit};
use anyhow::{bail, Result};
use clap::Args;
use edge_api::{Kind, Object, ObjectKey};

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// deployment or replicaset (then NAME...), or KIND/NAME...; omit with -f
    #[arg(value_name = "KIND", required_unless_present = "files")]
    pub resource: Option<String>,

    /// Names of objects to scale
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// The new number of replicas
    #[arg(long, value_name = "N", required = true, value_parser = clap::value_parser!(i32).range(0..))]
    pub replicas: i32,

    /// Scale the objects listed in these manifests (file, directory or `-`)
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        conflicts_with = "resource"
    )]
    pub files: Vec<String>,

    /// Only if the current number of replicas is this (a precondition)
    #[arg(long, value_name = "N")]
    pub current_replicas: Option<i32>,

    /// Only if the object is still at this resourceVersion
    #[arg(long, value_name = "RV")]
    pub resource_version: Option<u64>,
}

/// The object's desired replicas (1 when unset, as the controllers read it).
pub fn replicas_of(o: &Object) -> Option<i32> {
    match o {
        Object::Deployment(d) => Some(d.spec.replicas.unwrap_or(1)),
        Object::ReplicaSet(rs) => Some(rs.spec.replicas.unwrap_or(1)),
        _ => None,
    }
}

/// Sets the desired replicas, checking the `--current-replicas` precondition first.
pub fn set_replicas(o: &mut Object, replicas: i32, current: Option<i32>) -> Result<()> {
    let Some(now) = replicas_of(o) else {
        bail!(
            "{} cannot be scaled: only deployments and replicasets have replicas",
            render::object_name(o)
        );
    };
    if let Some(want) = current.filter(|w| *w != now) {
        bail!("Expected replicas to be {want}, was {now}");
    }
    match o {
        Object::Deployment(d) => d.spec.replicas = Some(replicas),
        Object::ReplicaSet(rs) => rs.spec.replicas = Some(replicas),
        _ => {}
    }
    Ok(())
}

fn check_kind(kind: Kind) -> Result<()> {
    if !matches!(kind, Kind::Deployment | Kind::ReplicaSet) {
        bail!(
            "{} cannot be scaled: only deployments and replicasets have replicas",
            kind.plural()
        );
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, args: ScaleArgs) -> Result<()> {
    let keys: Vec<ObjectKey> = if args.files.is_empty() {
        let resource = args.resource.as_deref().unwrap_or_default();
        let target = parse_target(resource, &args.names)?;
        let mut keys = Vec::new();
        for (kind, name) in &target.items {
            check_kind(*kind)?;
            let Some(name) = name else {
                bail!("name the {} to scale", kind.plural());
            };
            keys.push(ObjectKey::new(*kind, ctx.namespace(), name));
        }
        keys
    } else {
        let loaded = objects_from_files(&args.files, ctx.namespace.as_deref())?;
        let keys: Vec<ObjectKey> = loaded.iter().map(|l| l.object.key()).collect();
        for k in &keys {
            check_kind(k.kind)?;
        }
        keys
    };
    let session = ctx.connect().await?;
    let mut failed = false;
    for key in keys {
        let result = update_with_retry(&session.client, &key, args.resource_version, |o| {
            set_replicas(o, args.replicas, args.current_replicas)
        })
        .await;
        match result {
            Ok(u) => {
                let o = u.after.as_ref().unwrap_or(&u.before);
                print_out(&format!("{} scaled\n", render::object_name(o)))?;
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
mod tests {
    use super::*;
    use edge_api::{Deployment, Pod};

    #[test]
    fn replicas_default_to_one_and_preconditions_are_checked() {
        let mut d = Object::Deployment(Deployment::default());
        assert_eq!(replicas_of(&d), Some(1));
        let e = set_replicas(&mut d, 3, Some(2)).unwrap_err();
        assert_eq!(e.to_string(), "Expected replicas to be 2, was 1");
        set_replicas(&mut d, 3, Some(1)).unwrap();
        assert_eq!(replicas_of(&d), Some(3));
        set_replicas(&mut d, 0, None).unwrap();
        assert_eq!(replicas_of(&d), Some(0));
        let mut p = Object::Pod(Pod::default());
        assert!(set_replicas(&mut p, 1, None).is_err());
        assert!(check_kind(Kind::ReplicaSet).is_ok());
        let e = check_kind(Kind::Pod).unwrap_err();
        assert!(
            e.to_string().contains("only deployments and replicasets"),
            "{e}"
        );
    }
}
