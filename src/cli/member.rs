//! `edgectl member list|remove`: the control-plane servers (the raft group), as etcdctl's
//! `member` commands show them.

use crate::cli::commands::{unexpected, Ctx};
use crate::cli::render::table;
use crate::cli::{print_out, server_error};
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use edge_api::wire::{Member, Request, Response};

#[derive(Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub what: MemberCommand,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the control-plane servers: id, address, role, last log index and applied index
    List {
        /// Output format
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<MemberOutput>,
    },
    /// Remove a control-plane server by id (stop that server first; add it back with
    /// `edged server --join` and a fresh data directory)
    Remove {
        /// The server's id, as `edgectl member list` shows it
        #[arg(value_name = "ID")]
        id: u64,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberOutput {
    Json,
    Yaml,
}

pub async fn run(ctx: &Ctx, args: MemberArgs) -> Result<()> {
    let session = ctx.connect().await?;
    match args.what {
        MemberCommand::List { output } => {
            let response = session
                .client
                .call(&Request::Members)
                .await
                .map_err(|e| server_error(e, None))?;
            let Response::Members { mut members } = response else {
                return Err(unexpected("Members", &response));
            };
            members.sort_by_key(|m| m.id);
            print_out(&match output {
                None => members_table(&members),
                Some(MemberOutput::Json) => serde_json::to_string_pretty(&members)? + "\n",
                Some(MemberOutput::Yaml) => serde_saphyr::to_string(&members)?,
            })
        }
        MemberCommand::Remove { id } => {
            session
                .client
                .call(&Request::RemoveMember { id })
                .await
                .map_err(|e| server_error(e, None))?;
            print_out(&format!("member {id} removed\n"))
        }
    }
}

fn index(i: Option<u64>) -> String {
    i.map_or_else(|| "<unknown>".to_string(), |i| i.to_string())
}

/// One row per server; a server that did not answer says so in its role.
pub fn members_table(members: &[Member]) -> String {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let role = if m.reachable {
                m.role.to_string()
            } else {
                format!("{} (unreachable)", m.role)
            };
            vec![
                m.id.to_string(),
                m.address.clone(),
                role,
                index(m.last_log_index),
                index(m.applied_index),
            ]
        })
        .collect();
    table(
        &["ID", "ADDRESS", "ROLE", "LAST LOG INDEX", "APPLIED"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::wire::MemberRole;

    #[test]
    fn table_shows_roles_and_unreachable_servers() {
        let m = |id, role, reachable: bool| Member {
            id,
            address: format!("10.0.0.{id}:6443"),
            role,
            reachable,
            last_log_index: reachable.then_some(42),
            applied_index: reachable.then_some(41),
        };
        let out = members_table(&[
            m(1, MemberRole::Leader, true),
            m(5, MemberRole::Follower, false),
            m(9, MemberRole::Learner, true),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID   ADDRESS"), "{out}");
        assert!(
            lines[1].contains("10.0.0.1:6443") && lines[1].contains("leader"),
            "{out}"
        );
        assert!(
            lines[2].contains("follower (unreachable)") && lines[2].contains("<unknown>"),
            "{out}"
        );
        assert!(
            lines[3].contains("learner") && lines[3].ends_with("41"),
            "{out}"
        );
    }

    #[test]
    fn parses_list_and_remove() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["edgectl", "member", "remove", "3"]).unwrap();
        let crate::cli::args::Command::Member(MemberArgs {
            what: MemberCommand::Remove { id },
        }) = cli.command
        else {
            panic!("not member remove")
        };
        assert_eq!(id, 3);
        assert!(crate::cli::Cli::try_parse_from(["edgectl", "member", "remove", "x"]).is_err());
        assert!(
            crate::cli::Cli::try_parse_from(["edgectl", "member", "list", "-o", "json"]).is_ok()
        );
    }
}
