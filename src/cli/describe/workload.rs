//! The pod parts of `describe` that connect components to the node: probes, environment taken
//! from ConfigMaps and Secrets, volume mounts, outbound grants and the pod's volumes.

use super::Doc;
use edge_api::pod::{Container, EnvVar, Probe, Volume};

/// kubectl's probe line: `http-get http://:8080/healthz delay=0s timeout=1s period=10s
/// #success=1 #failure=3`, or `tcp-socket :5432 ...`.
pub fn probe_line(p: &Probe) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds,
        p.timeout_seconds,
        p.period_seconds,
        p.success_threshold,
        p.failure_threshold
    );
    if let Some(h) = &p.http_get {
        let host = join_host_port(h.host.as_deref().unwrap_or(""), h.port);
        let slash = if h.path.starts_with('/') { "" } else { "/" };
        format!("http-get http://{host}{slash}{} {attrs}", h.path)
    } else if let Some(t) = &p.tcp_socket {
        format!(
            "tcp-socket {} {attrs}",
            join_host_port(t.host.as_deref().unwrap_or(""), t.port)
        )
    } else {
        format!("<no action> {attrs}")
    }
}

/// `host:port`, with an IPv6 address in brackets (Go's `net.JoinHostPort`, which kubectl uses).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `Liveness:`, `Readiness:`, `Startup:` lines for the probes a container declares.
pub(super) fn probes(d: &mut Doc, c: &Container) {
    for (label, probe) in [
        ("Liveness", &c.liveness_probe),
        ("Readiness", &c.readiness_probe),
        ("Startup", &c.startup_probe),
    ] {
        if let Some(p) = probe {
            d.pair(4, label, probe_line(p));
        }
    }
}

/// What an environment variable is set to; values from ConfigMaps and Secrets are described,
/// never resolved (a secret's value must not reach a terminal through `describe`).
pub fn env_value(e: &EnvVar) -> String {
    let Some(from) = &e.value_from else {
        return e.value.clone();
    };
    if let Some(r) = &from.config_map_key_ref {
        format!(
            "<set to the key '{}' of config map '{}'>  Optional: {}",
            r.key, r.name, r.optional
        )
    } else if let Some(r) = &from.secret_key_ref {
        format!(
            "<set to the key '{}' in secret '{}'>  Optional: {}",
            r.key, r.name, r.optional
        )
    } else {
        "<set from an unknown source>".into()
    }
}

pub(super) fn environment(d: &mut Doc, c: &Container) {
    if c.env.is_empty() {
        d.pair(4, "Environment", "<none>");
        return;
    }
    d.pair(4, "Environment", "");
    for e in &c.env {
        d.pair(6, &e.name, env_value(e));
    }
}

/// `Mounts:` as kubectl prints them: `/etc/app from config (ro)`.
pub(super) fn mounts(d: &mut Doc, c: &Container) {
    if c.volume_mounts.is_empty() {
        d.pair(4, "Mounts", "<none>");
        return;
    }
    d.pair(4, "Mounts", "");
    for m in &c.volume_mounts {
        let mode = if m.read_only { "ro" } else { "rw" };
        d.text(6, format!("{} from {} ({mode})", m.mount_path, m.name));
    }
}

/// Where the component may connect; nothing listed means every outbound connection is denied.
pub(super) fn outbound(d: &mut Doc, c: &Container) {
    let value = if c.outbound.is_empty() {
        "<none> (all outbound connections denied)".to_string()
    } else {
        c.outbound.join(", ")
    };
    d.pair(4, "Outbound", value);
}

/// The pod's `Volumes:` block, each with its type and source, in kubectl's words.
pub(super) fn volumes(d: &mut Doc, volumes: &[Volume]) {
    if volumes.is_empty() {
        d.pair(0, "Volumes", "<none>");
        return;
    }
    d.text(0, "Volumes:");
    for v in volumes {
        d.text(2, format!("{}:", v.name));
        if v.source_count() != 1 {
            d.pair(4, "Type", "<invalid: not exactly one source>");
        } else if let Some(e) = &v.empty_dir {
            d.pair(
                4,
                "Type",
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            d.pair(
                4,
                "SizeLimit",
                e.size_limit.clone().unwrap_or_else(|| "<unset>".into()),
            );
        } else if let Some(h) = &v.host_path {
            d.pair(4, "Type", "HostPath (bare host directory volume)");
            d.pair(4, "Path", h.path.clone());
            d.pair(4, "HostPathType", h.type_.clone());
        } else if let Some(cm) = &v.config_map {
            d.pair(4, "Type", "ConfigMap (a volume populated by a ConfigMap)");
            d.pair(4, "Name", cm.name.clone());
            d.pair(4, "Optional", cm.optional.to_string());
        } else if let Some(s) = &v.secret {
            d.pair(4, "Type", "Secret (a volume populated by a Secret)");
            d.pair(4, "SecretName", s.secret_name.clone());
            d.pair(4, "Optional", s.optional.to_string());
        }
    }
}
