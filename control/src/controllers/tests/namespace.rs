//! Namespace deletion.

use super::sim::Sim;
use super::*;
use crate::controllers::namespace::{NamespaceController, TERMINATING};
use crate::controllers::replicaset::ReplicaSetController;
use edge_api::object::ObjectKey;

#[test]
fn a_deleted_namespace_empties_then_goes_while_controllers_create_nothing_in_it() {
    let mut ns = namespace("team");
    ns.meta_mut().deletion_timestamp = Some(t0());
    let mut rs = replica_set("web-1", 2, "web");
    rs.metadata.namespace = "team".into();
    let cm = edge_api::ConfigMap {
        metadata: meta("settings", "team"),
        ..Default::default()
    };
    let mut keep = cm.clone();
    keep.metadata.namespace = "default".into();
    let mut objects = vec![
        namespace("default"),
        ns,
        Object::Node(node("n1")),
        Object::ReplicaSet(rs.clone()),
        Object::ConfigMap(cm),
        Object::ConfigMap(keep),
    ];
    for name in ["web-1-a", "web-1-b"] {
        let p = pod(
            name,
            Kind::ReplicaSet,
            &rs.metadata,
            Some("n1"),
            PodPhase::Running,
        );
        objects.push(Object::Pod(p));
    }
    let mut sim = Sim::new(objects);
    let ns_key = ObjectKey::new(Kind::Namespace, "", "team");
    let (nc, rc) = (NamespaceController, ReplicaSetController);
    sim.run(&nc);
    let phase = match sim.get(&ns_key) {
        Some(Object::Namespace(n)) => n.status.phase.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(phase, TERMINATING);
    for _ in 0..6 {
        sim.run(&nc);
        sim.run(&rc);
        sim.agents("n1", 10, 10);
    }
    assert!(sim.get(&ns_key).is_none(), "the namespace goes once empty");
    assert!(sim.objects.keys().all(|k| k.namespace != "team"));
    assert_eq!(sim.creations.get(&Kind::Pod), None, "no replacement pods");
    assert!(sim
        .get(&ObjectKey::new(Kind::ConfigMap, "default", "settings"))
        .is_some());
}
