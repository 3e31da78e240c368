//! The Pod: a group of WebAssembly components scheduled together on one node.

use crate::meta::{Condition, ObjectMeta};
use crate::scheduling::{Affinity, Toleration, TopologySpreadConstraint};
pub use crate::workload::{EnvVarSource, KeySelector, Probe, Volume, VolumeMount};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    /// The components of the pod; named `containers` so manifests stay familiar.
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Set by the scheduler when the pod is bound to a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Taints of nodes this pod accepts (see `scheduling`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    pub name: String,
    /// A component reference: `sha256:<digest>` once uploaded (a local path in a manifest is
    /// uploaded and rewritten by `edgectl apply`).
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub resources: ResourceRequirements,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Where the component may connect (TCP and outgoing HTTP): `host:port`, `host:*` or `*`.
    /// Everything else is denied; listening is allowed only on the declared `ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    pub container_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "TCP".to_string()
}

/// Requests and limits as Kubernetes quantity strings (`cpu: 100m`, `memory: 64Mi`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

impl std::fmt::Display for PodPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodStatus {
    #[serde(default)]
    pub phase: PodPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub state: ContainerState,
    /// How the previous run ended, as Kubernetes' lastState: kept while the component waits to
    /// restart or runs again, so the reason for a restart stays visible.
    #[serde(default, skip_serializing_if = "ContainerState::is_empty")]
    pub last_state: ContainerState,
}

/// Exactly one of the three is set, as in Kubernetes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<StateWaiting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<StateRunning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<StateTerminated>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateWaiting {
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateRunning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateTerminated {
    pub exit_code: i32,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl ContainerState {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_none() && self.running.is_none() && self.terminated.is_none()
    }
}

impl Pod {
    /// Sum of the containers' requests for `resource` in base units (millicores or bytes).
    pub fn request(&self, resource: &str) -> u64 {
        self.spec
            .containers
            .iter()
            .filter_map(|c| c.resources.requests.get(resource))
            .filter_map(|q| crate::quantity::parse(resource, q).ok())
            .sum()
    }

    /// A pod counts against its node until it has finished.
    pub fn occupies_node(&self) -> bool {
        !self.status.phase.is_terminal()
    }

    /// The STATUS column kubectl users expect: a waiting/terminated reason wins over the phase.
    pub fn display_status(&self) -> String {
        if self.metadata.deletion_timestamp.is_some() {
            return "Terminating".into();
        }
        for cs in &self.status.container_statuses {
            if let Some(w) = &cs.state.waiting {
                if !w.reason.is_empty() {
                    return w.reason.clone();
                }
            }
        }
        if self.status.phase.is_terminal() {
            // The first failing component's code explains a failure; all-zero means success.
            let codes = self
                .status
                .container_statuses
                .iter()
                .filter_map(|c| c.state.terminated.as_ref());
            if let Some(code) = codes
                .clone()
                .map(|t| t.exit_code)
                .find(|c| *c != 0)
                .or_else(|| codes.map(|t| t.exit_code).next())
            {
                return format!("{} (exit {code})", self.status.phase);
            }
        }
        self.status.phase.to_string()
    }

    /// Whether the pod uses the ConfigMap or Secret `name` (as a volume or an env source).
    pub fn references(&self, kind: crate::Kind, name: &str) -> bool {
        let in_volumes = self.spec.volumes.iter().any(|v| match kind {
            crate::Kind::ConfigMap => v.config_map.as_ref().is_some_and(|c| c.name == name),
            crate::Kind::Secret => v.secret.as_ref().is_some_and(|s| s.secret_name == name),
            _ => false,
        });
        let in_env = self
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.env)
            .filter_map(|e| e.value_from.as_ref())
            .any(|src| {
                let r = match kind {
                    crate::Kind::ConfigMap => src.config_map_key_ref.as_ref(),
                    crate::Kind::Secret => src.secret_key_ref.as_ref(),
                    _ => None,
                };
                r.is_some_and(|r| r.name == name)
            });
        in_volumes || in_env
    }

    pub fn restarts(&self) -> u32 {
        self.status
            .container_statuses
            .iter()
            .map(|c| c.restart_count)
            .sum()
    }
}
