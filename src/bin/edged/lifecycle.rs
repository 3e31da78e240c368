//! `edged server` flags for node lifecycle: eviction pacing and the default tolerations pods
//! get at admission (named as kube-controller-manager's and kube-apiserver's).

use edge_control::nodes::LifecycleOptions;

#[derive(clap::Args, Debug, Clone)]
pub struct LifecycleFlags {
    /// Nodes per second whose pods start being evicted when a zone is healthy.
    #[arg(long, default_value_t = 0.1, value_parser = non_negative)]
    node_eviction_rate: f64,
    /// Nodes per second when a zone is partially disrupted (many of its nodes not ready).
    #[arg(long, default_value_t = 0.01, value_parser = non_negative)]
    secondary_node_eviction_rate: f64,
    /// Share of not-ready nodes (more than two) at which a zone counts as disrupted; when the
    /// whole cluster is, nothing is evicted.
    #[arg(long, default_value_t = 0.55, value_parser = share)]
    unhealthy_zone_threshold: f64,
    /// tolerationSeconds of the not-ready NoExecute toleration every pod gets by default.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// tolerationSeconds of the unreachable NoExecute toleration every pod gets by default.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
}

impl LifecycleFlags {
    pub fn options(&self) -> LifecycleOptions {
        LifecycleOptions {
            eviction_rate: self.node_eviction_rate,
            secondary_eviction_rate: self.secondary_node_eviction_rate,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
            default_not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
        }
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "{s:?}: expected a number of nodes per second, 0 or more"
        )),
    }
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: expected a share between 0 and 1, such as 0.55"
        )),
    }
}
