//! `Pod Template:` blocks of workload descriptions (and `rollout history --revision`): labels,
//! annotations, each container's image, ports, args, resources, probes, environment and mounts,
//! and the volumes.

use super::{workload, Doc};
use edge_api::pod::Container;
use edge_api::PodTemplateSpec;

/// The template at the left margin; callers indent it under their heading.
pub fn pod_template_text(t: &PodTemplateSpec) -> String {
    let mut d = Doc::default();
    d.map(0, "Labels", &t.metadata.labels);
    if !t.metadata.annotations.is_empty() {
        d.map(0, "Annotations", &t.metadata.annotations);
    }
    if !t.spec.node_selector.is_empty() {
        d.map(0, "Node-Selectors", &t.spec.node_selector);
    }
    d.text(0, "Containers:");
    for c in &t.spec.containers {
        container(&mut d, c);
    }
    workload::volumes(&mut d, &t.spec.volumes);
    d.render()
}

fn container(d: &mut Doc, c: &Container) {
    d.text(2, format!("{}:", c.name));
    d.pair(4, "Image", c.image.clone());
    let ports: Vec<_> = c
        .ports
        .iter()
        .map(|p| format!("{}/{}", p.container_port, p.protocol))
        .collect();
    d.pair(
        4,
        "Ports",
        if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(", ")
        },
    );
    if !c.args.is_empty() {
        d.pair(4, "Args", "");
        for a in &c.args {
            d.text(6, a.clone());
        }
    }
    d.section(4, "Limits", &c.resources.limits);
    d.section(4, "Requests", &c.resources.requests);
    workload::probes(d, c);
    workload::environment(d, c);
    workload::mounts(d, c);
    workload::outbound(d, c);
}

/// `Pod Template:` with the template indented under it.
pub(super) fn pod_template(d: &mut Doc, t: &PodTemplateSpec) {
    d.text(0, "Pod Template:");
    for line in pod_template_text(t).lines() {
        d.text(2, line.to_string());
    }
}
