//! The command line of `edgectl`, declared with clap derive in kubectl's shape.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "edgectl",
    version,
    about = "Control an edge cluster: apply manifests, inspect pods and nodes, read logs",
    propagate_version = true
)]
pub struct Cli {
    /// Client config file [default: $EDGECONFIG, else ~/.edge/config]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Namespace of namespaced objects [default: "default"]
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,

    /// Say on stderr which server and config are used
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update objects from manifests, uploading local .wasm components
    Apply(ApplyArgs),
    /// List objects as a table, or print them as YAML/JSON
    Get(GetArgs),
    /// Show the details of objects, with the events about them
    Describe(DescribeArgs),
    /// Create a Namespace, or a ConfigMap or Secret from literal values, files and directories
    Create(CreateArgs),
    /// Delete objects by name, by selector, or as listed in manifests
    Delete(crate::cli::delete::DeleteArgs),
    /// Show what `apply -f` would change (exit 0: nothing, 1: changes, 2: error)
    Diff(crate::cli::diff::DiffArgs),
    /// Set (KEY=VALUE) or remove (KEY-) labels of objects
    Label(crate::cli::label::LabelArgs),
    /// Set (KEY=VALUE) or remove (KEY-) annotations of objects
    Annotate(crate::cli::label::AnnotateArgs),
    /// Set the number of replicas of a Deployment or ReplicaSet
    Scale(crate::cli::scale::ScaleArgs),
    /// Follow, list, undo, restart, pause or resume a Deployment's rollouts
    Rollout(crate::cli::rollout::RolloutArgs),
    /// Create a Service for the pods of a deployment, replicaset, pod or service
    Expose(crate::cli::expose::ExposeArgs),
    /// Forward local ports to a pod's (or a service's pod's) ports through the control plane
    PortForward(crate::cli::portforward::PortForwardArgs),
    /// Print the output of a pod's component
    Logs(LogsArgs),
    /// Print the client version and whether the server answers
    Version(VersionArgs),
    /// Print a shell completion script
    Completion(CompletionArgs),
    /// List or remove control-plane servers
    Member(crate::cli::member::MemberArgs),
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A manifest file, a directory of *.yaml/*.yml/*.json, or `-` for stdin (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<String>,

    /// `server` sends the objects for validation without persisting them
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None)]
    pub dry_run: DryRun,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRun {
    None,
    Server,
}

/// Which objects a read command works on; shared by `get` and `describe`.
#[derive(Args, Debug)]
pub struct Selection {
    /// KIND (pods, deploy, svc, ... or a list like pods,svc, or `all`) or KIND/NAME
    #[arg(value_name = "KIND")]
    pub resource: String,

    /// Names of objects; every object of the kind when omitted
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// Across all namespaces (when no name is given)
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Label selector, e.g. `app=web,tier!=db` (when no name is given)
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Output format
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,

    /// After listing, keep printing changes
    #[arg(short = 'w', long)]
    pub watch: bool,

    /// Add a LABELS column with every label
    #[arg(long)]
    pub show_labels: bool,

    /// Add a column with the value of these labels (comma-separated or repeated)
    #[arg(
        short = 'L',
        long = "label-columns",
        value_name = "KEY",
        value_delimiter = ','
    )]
    pub label_columns: Vec<String>,

    /// Name objects KIND/NAME even for one kind
    #[arg(long)]
    pub show_kind: bool,
}

impl std::ops::Deref for GetArgs {
    type Target = Selection;
    fn deref(&self) -> &Selection {
        &self.selection
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub selection: Selection,
}

impl std::ops::Deref for DescribeArgs {
    type Target = Selection;
    fn deref(&self) -> &Selection {
        &self.selection
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub what: CreateCommand,
}

#[derive(Subcommand, Debug)]
pub enum CreateCommand {
    /// Create a ConfigMap: text values go to `data`, files that are not UTF-8 to `binaryData`
    #[command(visible_alias = "cm")]
    Configmap(CreateDataArgs),
    /// Create a Secret
    Secret(CreateSecretArgs),
    /// Create a Namespace
    #[command(visible_alias = "ns")]
    Namespace(CreateNamespaceArgs),
}

#[derive(Args, Debug)]
pub struct CreateNamespaceArgs {
    /// The namespace's name
    #[arg(value_name = "NAME")]
    pub name: String,

    /// `client` prints the object without contacting the server; `server` has it checked there
    /// without storing it
    #[arg(long, value_enum, value_name = "MODE", default_value_t = CreateDryRun::None, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: CreateDryRun,

    /// Print the object instead of a `created` line
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<CreateOutput>,
}

#[derive(Args, Debug)]
pub struct CreateSecretArgs {
    #[command(subcommand)]
    pub what: SecretCommand,
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Create a Secret from literal values, files and directories (values stored base64-encoded)
    Generic(GenericSecretArgs),
}

#[derive(Args, Debug)]
pub struct GenericSecretArgs {
    #[command(flatten)]
    pub data: CreateDataArgs,

    /// The secret's type
    #[arg(long = "type", value_name = "TYPE", default_value = "Opaque")]
    pub type_: String,
}

/// What `create configmap` and `create secret generic` share.
#[derive(Args, Debug)]
pub struct CreateDataArgs {
    /// The object's name
    #[arg(value_name = "NAME")]
    pub name: String,

    /// A key and its value, e.g. `--from-literal=level=debug` (repeatable)
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    pub literals: Vec<String>,

    /// A file (key: its name, or KEY), or a directory whose regular files each become a key
    /// (not recursive; symlinks and subdirectories are skipped) (repeatable)
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    pub files: Vec<String>,

    /// `client` prints the object without contacting the server; `server` has it checked there
    /// without storing it
    #[arg(long, value_enum, value_name = "MODE", default_value_t = CreateDryRun::None, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: CreateDryRun,

    /// Print the object instead of a `created` line
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<CreateOutput>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateDryRun {
    None,
    Client,
    Server,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutput {
    Yaml,
    Json,
    Name,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (NAME or pod/NAME)
    #[arg(value_name = "POD")]
    pub pod: String,

    /// The component (container) to read; required when the pod has several
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    pub container: Option<String>,

    /// Keep streaming new output
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Print the client version only, without contacting the server
    #[arg(long)]
    pub client: bool,
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to generate the script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_kubectl_habits() {
        let cli = Cli::try_parse_from(["edgectl", "-n", "prod", "get", "po", "-o", "wide", "-w"])
            .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("prod"));
        let Command::Get(g) = cli.command else {
            panic!("not get")
        };
        assert_eq!(g.resource, "po");
        assert_eq!(g.output, Some(OutputFormat::Wide));
        assert!(g.watch);

        let cli = Cli::try_parse_from([
            "edgectl",
            "apply",
            "-f",
            "a.yaml",
            "-f",
            "-",
            "--dry-run=server",
        ])
        .unwrap();
        let Command::Apply(a) = cli.command else {
            panic!("not apply")
        };
        assert_eq!(a.files, ["a.yaml", "-"]);
        assert_eq!(a.dry_run, DryRun::Server);
    }

    #[test]
    fn create_configmap_and_secret_parse() {
        let cli = Cli::try_parse_from([
            "edgectl",
            "create",
            "cm",
            "cfg",
            "--from-literal=a=1",
            "--from-literal",
            "b=2",
            "--from-file=conf.d",
            "--dry-run=client",
            "-o",
            "yaml",
        ])
        .unwrap();
        let Command::Create(CreateArgs {
            what: CreateCommand::Configmap(c),
        }) = cli.command
        else {
            panic!("not create configmap")
        };
        assert_eq!(c.name, "cfg");
        assert_eq!(c.literals, ["a=1", "b=2"]);
        assert_eq!(c.files, ["conf.d"]);
        assert_eq!(c.dry_run, CreateDryRun::Client);
        assert_eq!(c.output, Some(CreateOutput::Yaml));

        let cli = Cli::try_parse_from([
            "edgectl",
            "-n",
            "prod",
            "create",
            "secret",
            "generic",
            "db",
            "--dry-run",
        ])
        .unwrap();
        let Command::Create(CreateArgs {
            what:
                CreateCommand::Secret(CreateSecretArgs {
                    what: SecretCommand::Generic(g),
                }),
        }) = cli.command
        else {
            panic!("not create secret generic")
        };
        assert_eq!(g.type_, "Opaque");
        assert_eq!(g.data.dry_run, CreateDryRun::Client);
        assert_eq!(g.data.output, None);
        assert!(Cli::try_parse_from(["edgectl", "create", "secret", "db"]).is_err());
        assert!(Cli::try_parse_from(["edgectl", "create", "cm", "x", "--dry-run=bogus"]).is_err());
    }

    #[test]
    fn workload_verbs_parse_like_kubectl() {
        let parse = |argv: &[&str]| Cli::try_parse_from(argv).map(|c| c.command);
        let Ok(Command::Get(g)) = parse(&[
            "edgectl",
            "get",
            "all",
            "--show-labels",
            "-L",
            "app,tier",
            "-L",
            "env",
        ]) else {
            panic!("get")
        };
        assert!(g.show_labels);
        assert_eq!(g.label_columns, ["app", "tier", "env"]);
        let Ok(Command::Label(l)) = parse(&[
            "edgectl",
            "label",
            "pod",
            "a",
            "app=x",
            "old-",
            "--overwrite",
        ]) else {
            panic!("label")
        };
        assert_eq!(l.edit.args, ["pod", "a", "app=x", "old-"]);
        assert!(l.edit.overwrite);
        assert!(matches!(
            parse(&["edgectl", "annotate", "deploy/web", "note=hi"]),
            Ok(Command::Annotate(_))
        ));
        let Ok(Command::Scale(s)) =
            parse(&["edgectl", "scale", "deployment", "web", "--replicas", "5"])
        else {
            panic!("scale")
        };
        assert_eq!((s.resource.as_deref(), s.replicas), (Some("deployment"), 5));
        assert!(
            parse(&["edgectl", "scale", "deployment", "web"]).is_err(),
            "--replicas is required"
        );
        assert!(parse(&["edgectl", "scale", "deployment", "web", "--replicas", "-1"]).is_err());
        assert!(parse(&["edgectl", "scale", "-f", "web.yaml", "--replicas", "2"]).is_ok());
        use crate::cli::rollout::RolloutCommand;
        let Ok(Command::Rollout(r)) = parse(&[
            "edgectl",
            "rollout",
            "status",
            "deployment/web",
            "--timeout",
            "90s",
        ]) else {
            panic!("rollout status")
        };
        let RolloutCommand::Status(st) = r.what else {
            panic!("status")
        };
        assert_eq!(st.timeout, std::time::Duration::from_secs(90));
        assert!(st.watch);
        let Ok(Command::Rollout(r)) = parse(&[
            "edgectl",
            "rollout",
            "undo",
            "deployment",
            "web",
            "--to-revision",
            "2",
        ]) else {
            panic!("rollout undo")
        };
        let RolloutCommand::Undo(u) = r.what else {
            panic!("undo")
        };
        assert_eq!(
            (u.object.name.as_deref(), u.to_revision),
            (Some("web"), Some(2))
        );
        for verb in ["history", "restart", "pause", "resume"] {
            assert!(
                parse(&["edgectl", "rollout", verb, "deploy/web"]).is_ok(),
                "{verb}"
            );
        }
        assert!(matches!(
            parse(&["edgectl", "diff", "-f", "a.yaml"]),
            Ok(Command::Diff(_))
        ));
        assert!(parse(&["edgectl", "diff"]).is_err());
        for (argv, want) in [
            (&["edgectl", "delete", "deploy", "web"][..], "background"),
            (
                &["edgectl", "delete", "deploy", "web", "--cascade"][..],
                "background",
            ),
            (
                &["edgectl", "delete", "deploy", "web", "--cascade=orphan"][..],
                "orphan",
            ),
            (
                &["edgectl", "delete", "deploy", "web", "--cascade=false"][..],
                "false",
            ),
        ] {
            let Ok(Command::Delete(d)) = parse(argv) else {
                panic!("delete")
            };
            assert_eq!(d.cascade, want, "{argv:?}");
        }
    }

    #[test]
    fn delete_needs_a_kind_or_files() {
        assert!(Cli::try_parse_from(["edgectl", "delete"]).is_err());
        assert!(Cli::try_parse_from(["edgectl", "delete", "-f", "x.yaml"]).is_ok());
        assert!(Cli::try_parse_from(["edgectl", "delete", "pod", "a", "b"]).is_ok());
    }
}
