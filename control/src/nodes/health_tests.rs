//! Table tests of the node-lifecycle decisions.

use super::*;

const GRACE: Duration = Duration::from_secs(40);

fn node(name: &str, ready: Option<&str>) -> Node {
    let mut n = Node::default();
    n.metadata.name = name.into();
    if let Some(status) = ready {
        let mut c = Condition::new("Ready", true, "AgentReady", "");
        c.status = status.into();
        if status == "Unknown" {
            c.reason = REASON_UNKNOWN.into();
        }
        n.status.conditions.push(c);
    }
    n
}

fn in_zone(mut n: Node, zone: &str) -> Node {
    n.metadata.labels.insert(ZONE_LABEL.into(), zone.into());
    n
}

fn live(heard: Option<u64>, leadership: u64) -> Liveness {
    Liveness {
        heard: heard.map(Duration::from_secs),
        leadership: Duration::from_secs(leadership),
    }
}

fn opts() -> LifecycleOptions {
    LifecycleOptions::default()
}

fn taint_keys(n: &Node) -> Vec<(String, TaintEffect)> {
    n.spec
        .taints
        .iter()
        .map(|t| (t.key.clone(), t.effect))
        .collect()
}

#[test]
fn ready_condition_table() {
    // (current Ready status, heard secs ago, leader for secs) -> new status (None: no write)
    type Case = (Option<&'static str>, Option<u64>, u64, Option<&'static str>);
    let cases: &[Case] = &[
        (Some("True"), Some(5), 1000, None),
        (Some("True"), Some(41), 1000, Some("Unknown")),
        (Some("True"), None, 1000, Some("Unknown")),
        // A new leader waits a full grace period before judging anyone.
        (Some("True"), None, 10, None),
        (Some("True"), Some(500), 10, None),
        (Some("True"), None, 41, Some("Unknown")),
        // Already Unknown: nothing more to write while silent.
        (Some("Unknown"), Some(100), 1000, None),
        // Heard again: the leader's own verdict is lifted.
        (Some("Unknown"), Some(1), 1000, Some("True")),
        // A new leader's grace period is no evidence of life.
        (Some("Unknown"), None, 5, None),
        (Some("False"), Some(100), 1000, Some("Unknown")),
        // The agent's own False is its business while it is heard from.
        (Some("False"), Some(1), 1000, None),
        (None, Some(100), 1000, Some("Unknown")),
        (None, Some(1), 1000, None),
    ];
    for (i, (status, heard, leader, want)) in cases.iter().enumerate() {
        let n = node("a", *status);
        let got = ready_condition(&n, live(*heard, *leader), GRACE);
        assert_eq!(
            got.as_ref().map(|c| c.status.as_str()),
            *want,
            "case {i}: {status:?} heard {heard:?} leader {leader}"
        );
        if let Some(c) = got.filter(|c| c.status == "Unknown") {
            assert_eq!(c.reason, REASON_UNKNOWN);
        }
    }
}

#[test]
fn agent_reported_unknown_with_another_reason_is_not_lifted() {
    let mut n = node("a", Some("Unknown"));
    n.status.conditions[0].reason = "SomethingElse".into();
    assert!(ready_condition(&n, live(Some(1), 1000), GRACE).is_none());
}

#[test]
fn taints_follow_readiness_and_keep_their_time() {
    let t0 = Utc::now();
    let n = node("a", Some("True"));
    assert!(reconcile_node(&n, None, false, t0).is_none());

    let unknown = ready_condition(&n, live(None, 1000), GRACE);
    let tainted = reconcile_node(&n, unknown, true, t0).expect("write");
    assert_eq!(readiness(&tainted), Readiness::Unknown);
    assert_eq!(
        taint_keys(&tainted),
        vec![
            (TAINT_UNREACHABLE.to_string(), TaintEffect::NoSchedule),
            (TAINT_UNREACHABLE.to_string(), TaintEffect::NoExecute)
        ]
    );
    assert!(has_lifecycle_no_execute(&tainted));
    // Later passes change nothing, so the toleration clock does not restart.
    let later = t0 + chrono::Duration::seconds(30);
    assert!(reconcile_node(&tainted, None, true, later).is_none());

    // Back: both taints go, other taints stay.
    let mut with_user_taint = tainted.clone();
    with_user_taint.spec.taints.push(Taint {
        key: "dedicated".into(),
        value: "gpu".into(),
        effect: TaintEffect::NoSchedule,
        time_added: None,
    });
    let back = ready_condition(&with_user_taint, live(Some(1), 1000), GRACE);
    let healed = reconcile_node(&with_user_taint, back, false, later).expect("write");
    assert_eq!(readiness(&healed), Readiness::Ready);
    assert_eq!(
        taint_keys(&healed),
        vec![("dedicated".to_string(), TaintEffect::NoSchedule)]
    );
}

#[test]
fn not_ready_nodes_get_the_not_ready_taints() {
    let n = node("a", Some("False"));
    let w = reconcile_node(&n, None, true, Utc::now()).expect("write");
    let keys = taint_keys(&w);
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|(k, _)| k == TAINT_NOT_READY));
    // Without permission for NoExecute only NoSchedule is set (and a held one is removed).
    let w2 = reconcile_node(&w, None, false, Utc::now()).expect("write");
    assert_eq!(
        taint_keys(&w2),
        vec![(TAINT_NOT_READY.to_string(), TaintEffect::NoSchedule)]
    );
}

#[test]
fn user_no_execute_taints_get_a_time() {
    let mut n = node("a", Some("True"));
    n.spec.taints.push(Taint {
        key: "maintenance".into(),
        value: String::new(),
        effect: TaintEffect::NoExecute,
        time_added: None,
    });
    let now = Utc::now();
    let w = reconcile_node(&n, None, false, now).expect("write");
    assert_eq!(w.spec.taints[0].time_added, Some(now));
}

#[test]
fn zone_state_table() {
    let t = 0.55;
    let cases = [
        ((5, 0), ZoneState::Normal),
        ((1, 1), ZoneState::Normal),
        ((1, 2), ZoneState::Normal),
        ((0, 1), ZoneState::FullDisruption),
        ((0, 3), ZoneState::FullDisruption),
        ((2, 3), ZoneState::PartialDisruption),
        ((3, 3), ZoneState::Normal),
        ((0, 0), ZoneState::Normal),
    ];
    for ((ready, not_ready), want) in cases {
        assert_eq!(
            zone_state(ready, not_ready, t),
            want,
            "{ready} ready, {not_ready} not"
        );
    }
}

#[test]
fn zone_rate_table() {
    let o = opts();
    use ZoneState::*;
    assert_eq!(zone_rate(Normal, Normal, &o), o.eviction_rate);
    assert_eq!(zone_rate(FullDisruption, Normal, &o), o.eviction_rate);
    assert_eq!(
        zone_rate(PartialDisruption, Normal, &o),
        o.secondary_eviction_rate
    );
    assert_eq!(zone_rate(Normal, PartialDisruption, &o), 0.0);
    assert_eq!(zone_rate(FullDisruption, FullDisruption, &o), 0.0);
}

#[test]
fn token_bucket_paces() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(t0);
    assert!(b.try_take(0.1, t0), "the first is immediate");
    assert!(!b.try_take(0.1, t0 + Duration::from_secs(5)));
    assert!(b.try_take(0.1, t0 + Duration::from_secs(10)));
    // Tokens do not pile up beyond one.
    assert!(b.try_take(0.1, t0 + Duration::from_secs(100)));
    assert!(!b.try_take(0.1, t0 + Duration::from_secs(101)));
    // Rate zero never grants.
    let mut z = TokenBucket::new(t0);
    assert!(!z.try_take(0.0, t0 + Duration::from_secs(1000)));
}

fn inputs<'a>(nodes: &'a [Node], heard: &[Option<u64>]) -> Vec<NodeInput<'a>> {
    nodes
        .iter()
        .zip(heard)
        .map(|(node, h)| NodeInput {
            node,
            live: live(*h, 1000),
        })
        .collect()
}

#[test]
fn one_silent_node_of_two_is_tainted_and_evicts() {
    let nodes = vec![node("a", Some("True")), node("b", Some("True"))];
    let mut buckets = HashMap::new();
    let now = Instant::now();
    let (plans, d) = plan_nodes(
        &inputs(&nodes, &[Some(1), Some(60)]),
        GRACE,
        &opts(),
        &mut buckets,
        now,
        Utc::now(),
    );
    assert_eq!(d.cluster, ZoneState::Normal);
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].name, "b");
    assert!(plans[0].no_execute);
    assert_eq!(
        plans[0].condition.as_ref().map(|c| c.status.as_str()),
        Some("Unknown")
    );
}

#[test]
fn evictions_are_paced_per_zone() {
    let mut nodes: Vec<Node> = (0..10)
        .map(|i| node(&format!("n{i}"), Some("True")))
        .collect();
    nodes.push(in_zone(node("z1", Some("True")), "other"));
    nodes.push(in_zone(node("z2", Some("True")), "other"));
    // Two of the ten default-zone nodes and one of the other zone go silent.
    let heard: Vec<Option<u64>> = (0..12)
        .map(|i| {
            if i == 3 || i == 7 || i == 10 {
                Some(60)
            } else {
                Some(1)
            }
        })
        .collect();
    let mut buckets = HashMap::new();
    let now = Instant::now();
    let ins = inputs(&nodes, &heard);
    let (plans, d) = plan_nodes(&ins, GRACE, &opts(), &mut buckets, now, Utc::now());
    assert!(!d.evictions_stopped());
    let tainted: Vec<&str> = plans
        .iter()
        .filter(|p| p.no_execute)
        .map(|p| p.name.as_str())
        .collect();
    // One per zone at once; the second default-zone node waits for the next token.
    assert_eq!(tainted, vec!["n3", "z1"]);
    assert_eq!(plans.len(), 3, "all three get Unknown and NoSchedule now");
    let applied: Vec<Node> = nodes
        .iter()
        .map(|n| match plans.iter().find(|p| p.name == n.metadata.name) {
            Some(p) => reconcile_node(n, p.condition.clone(), p.no_execute, Utc::now())
                .unwrap_or_else(|| n.clone()),
            None => n.clone(),
        })
        .collect();
    let ins = inputs(&applied, &heard);
    let (plans, _) = plan_nodes(
        &ins,
        GRACE,
        &opts(),
        &mut buckets,
        now + Duration::from_secs(5),
        Utc::now(),
    );
    assert!(plans.is_empty(), "nothing new within 10 s: {plans:?}");
    let (plans, _) = plan_nodes(
        &ins,
        GRACE,
        &opts(),
        &mut buckets,
        now + Duration::from_secs(11),
        Utc::now(),
    );
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["n7"]);
    assert!(plans[0].no_execute);
}

#[test]
fn most_nodes_silent_at_once_stops_evictions() {
    // Four of five silent: the control plane's own network is the likelier failure.
    let nodes: Vec<Node> = (0..5)
        .map(|i| node(&format!("n{i}"), Some("True")))
        .collect();
    let heard = [Some(1), Some(60), Some(60), Some(60), Some(60)];
    let mut buckets = HashMap::new();
    let (plans, d) = plan_nodes(
        &inputs(&nodes, &heard),
        GRACE,
        &opts(),
        &mut buckets,
        Instant::now(),
        Utc::now(),
    );
    assert!(d.evictions_stopped());
    assert_eq!(plans.len(), 4, "still marked Unknown and NoSchedule");
    assert!(plans.iter().all(|p| !p.no_execute));

    // NoExecute taints already placed are withdrawn during a full disruption.
    let mut tainted = node("n1", Some("Unknown"));
    tainted.spec.taints.push(Taint {
        key: TAINT_UNREACHABLE.into(),
        value: String::new(),
        effect: TaintEffect::NoExecute,
        time_added: Some(Utc::now()),
    });
    let nodes = vec![tainted, node("n2", Some("Unknown"))];
    let (plans, d) = plan_nodes(
        &inputs(&nodes, &[None, None]),
        GRACE,
        &opts(),
        &mut buckets,
        Instant::now(),
        Utc::now(),
    );
    assert_eq!(d.cluster, ZoneState::FullDisruption);
    let p = plans
        .iter()
        .find(|p| p.name == "n1")
        .expect("n1 is rewritten");
    assert!(!p.no_execute);
}

#[test]
fn a_whole_zone_down_with_the_rest_healthy_still_evicts() {
    let mut nodes: Vec<Node> = (0..6)
        .map(|i| node(&format!("n{i}"), Some("True")))
        .collect();
    nodes.push(in_zone(node("z1", Some("True")), "edge"));
    let heard = [
        Some(1),
        Some(1),
        Some(1),
        Some(1),
        Some(1),
        Some(1),
        Some(60),
    ];
    let mut buckets = HashMap::new();
    let (plans, d) = plan_nodes(
        &inputs(&nodes, &heard),
        GRACE,
        &opts(),
        &mut buckets,
        Instant::now(),
        Utc::now(),
    );
    assert_eq!(d.zones["/edge"], ZoneState::FullDisruption);
    assert_eq!(d.cluster, ZoneState::Normal);
    assert!(plans[0].no_execute);
}
