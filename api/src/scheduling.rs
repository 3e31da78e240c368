//! Where a pod may run, in Kubernetes' words: taints and tolerations, node affinity, pod
//! (anti-)affinity and topology spread constraints, with the pure matching rules the scheduler uses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// The taint every unschedulable (cordoned) node implicitly carries, so that pods tolerating it
/// (as DaemonSet pods do) can still land there.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint a node that is not ready implicitly carries.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";

/// A mark on a node that repels pods which do not tolerate it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: TaintEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaintEffect {
    /// New pods that do not tolerate the taint are not placed on the node.
    NoSchedule,
    /// The scheduler avoids the node but may still use it.
    PreferNoSchedule,
    /// As NoSchedule; running pods that do not tolerate it are evicted.
    NoExecute,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// Empty with operator Exists tolerates every taint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// None tolerates all effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// How long a pod stays bound after a NoExecute taint appears (None: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

impl Toleration {
    /// Kubernetes' ToleratesTaint: effect (if set), key (if set) and value (for Equal) agree.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerates_parts(&taint.key, &taint.value, taint.effect)
    }

    pub fn tolerates_parts(&self, key: &str, value: &str, effect: TaintEffect) -> bool {
        if self.effect.is_some_and(|e| e != effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == value,
        }
    }
}

/// The first taint among `taints` with an effect accepted by `relevant` that no toleration
/// tolerates (kube-scheduler reports that one).
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    relevant: impl Fn(TaintEffect) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| relevant(t.effect))
        .find(|t| !tolerations.iter().any(|tol| tol.tolerates(t)))
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_affinity: Option<PodAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<PodAffinity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAffinity {
    #[serde(
        default,
        rename = "requiredDuringSchedulingIgnoredDuringExecution",
        skip_serializing_if = "Option::is_none"
    )]
    pub required: Option<NodeSelector>,
    #[serde(
        default,
        rename = "preferredDuringSchedulingIgnoredDuringExecution",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub preferred: Vec<PreferredSchedulingTerm>,
}

/// Terms are ORed: a node matches when any term matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelector {
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// Requirements are ANDed; a term with none matches no node (as in Kubernetes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorTerm {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// Only `metadata.name` is a field, as in Kubernetes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: NodeSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeSelectorOperator {
    #[default]
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// The label, read as an integer, is greater than the single value.
    Gt,
    Lt,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferredSchedulingTerm {
    /// 1-100, added to a node's score when the preference matches.
    pub weight: i32,
    pub preference: NodeSelectorTerm,
}

/// Used for both podAffinity and podAntiAffinity, whose shapes are the same.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAffinity {
    #[serde(
        default,
        rename = "requiredDuringSchedulingIgnoredDuringExecution",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub required: Vec<PodAffinityTerm>,
    #[serde(
        default,
        rename = "preferredDuringSchedulingIgnoredDuringExecution",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub preferred: Vec<WeightedPodAffinityTerm>,
}

/// The pods selected by `labelSelector` in `namespaces` (empty: the pod's own namespace), and
/// the node label whose value defines "the same place" (`kubernetes.io/hostname`, a zone, ...).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAffinityTerm {
    /// None selects no pod; an empty selector selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    pub topology_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub pod_affinity_term: PodAffinityTerm,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopologySpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    pub when_unsatisfiable: UnsatisfiableConstraintAction,
    /// None selects no pod (so the constraint only counts the pod being placed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// With fewer eligible domains than this, the global minimum is taken as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_domains: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnsatisfiableConstraintAction {
    #[default]
    DoNotSchedule,
    ScheduleAnyway,
}

/// Kubernetes' metav1.LabelSelector: matchLabels and matchExpressions, ANDed. Empty selects all.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabelSelectorOperator {
    #[default]
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl LabelSelectorRequirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let has = |l: &String| self.values.contains(l);
        match self.operator {
            LabelSelectorOperator::In => labels.get(&self.key).is_some_and(has),
            LabelSelectorOperator::NotIn => labels.get(&self.key).is_none_or(|l| !has(l)),
            LabelSelectorOperator::Exists => labels.contains_key(&self.key),
            LabelSelectorOperator::DoesNotExist => !labels.contains_key(&self.key),
        }
    }
}

impl NodeSelector {
    /// Whether the node named `name` with `labels` matches any term.
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        self.node_selector_terms
            .iter()
            .any(|t| t.matches(name, labels))
    }
}

/// The only field a matchFields requirement may name.
pub const FIELD_NODE_NAME: &str = "metadata.name";

impl NodeSelectorTerm {
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.match_expressions.iter().all(|r| r.matches(labels))
            && self
                .match_fields
                .iter()
                .all(|r| r.matches_value((r.key == FIELD_NODE_NAME).then_some(name)))
    }
}

impl NodeSelectorRequirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }

    /// Matches the value of the key (None: the key is absent).
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        let compare = |want: std::cmp::Ordering| {
            // Both sides must read as integers; anything else does not match, as in Kubernetes.
            let label = value.and_then(|v| v.parse::<i64>().ok());
            let bound = match self.values.as_slice() {
                [b] => b.parse::<i64>().ok(),
                _ => None,
            };
            matches!((label, bound), (Some(l), Some(b)) if l.cmp(&b) == want)
        };
        match self.operator {
            NodeSelectorOperator::In => value.is_some_and(listed),
            NodeSelectorOperator::NotIn => value.is_none_or(|v| !listed(v)),
            NodeSelectorOperator::Exists => value.is_some(),
            NodeSelectorOperator::DoesNotExist => value.is_none(),
            NodeSelectorOperator::Gt => compare(std::cmp::Ordering::Greater),
            NodeSelectorOperator::Lt => compare(std::cmp::Ordering::Less),
        }
    }
}

impl PodAffinityTerm {
    /// Whether a pod in `namespace` with `labels` is one this term refers to, the term being
    /// written in a pod of `owner_namespace` (the default when `namespaces` is empty).
    pub fn selects(&self, owner_namespace: &str, namespace: &str, labels: &Labels) -> bool {
        let in_namespace = if self.namespaces.is_empty() {
            namespace == owner_namespace
        } else {
            self.namespaces.iter().any(|n| n == namespace)
        };
        in_namespace
            && self
                .label_selector
                .as_ref()
                .is_some_and(|s| s.matches(labels))
    }
}

impl Affinity {
    pub fn has_pod_terms(&self) -> bool {
        [&self.pod_affinity, &self.pod_anti_affinity]
            .into_iter()
            .flatten()
            .any(|a| !a.required.is_empty() || !a.preferred.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
            time_added: None,
        }
    }

    fn tol(
        key: &str,
        op: TolerationOperator,
        value: &str,
        effect: Option<TaintEffect>,
    ) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op,
            value: value.into(),
            effect,
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_matches_taint() {
        use TaintEffect::*;
        use TolerationOperator::*;
        let gpu = taint("dedicated", "gpu", NoSchedule);
        let cases = [
            (tol("dedicated", Equal, "gpu", Some(NoSchedule)), true),
            (tol("dedicated", Equal, "gpu", None), true),
            (tol("dedicated", Equal, "cpu", None), false),
            (tol("dedicated", Equal, "gpu", Some(NoExecute)), false),
            (tol("dedicated", Exists, "", None), true),
            (tol("other", Exists, "", None), false),
            (tol("", Exists, "", None), true),
            (tol("", Exists, "", Some(PreferNoSchedule)), false),
        ];
        for (t, want) in cases {
            assert_eq!(t.tolerates(&gpu), want, "{t:?}");
        }
    }

    #[test]
    fn first_untolerated_taint_respects_effects() {
        let taints = [
            taint("soft", "", TaintEffect::PreferNoSchedule),
            taint("a", "1", TaintEffect::NoSchedule),
            taint("b", "2", TaintEffect::NoExecute),
        ];
        let hard = |e: TaintEffect| e != TaintEffect::PreferNoSchedule;
        let found = first_untolerated(&taints, &[], hard);
        assert_eq!(found.map(|t| t.key.as_str()), Some("a"));
        let tols = [tol("a", TolerationOperator::Exists, "", None)];
        let found = first_untolerated(&taints, &tols, hard);
        assert_eq!(found.map(|t| t.key.as_str()), Some("b"));
        let all = [tol("", TolerationOperator::Exists, "", None)];
        assert!(first_untolerated(&taints, &all, |_| true).is_none());
    }

    fn req(key: &str, operator: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn node_selector_term_matches_labels() {
        use NodeSelectorOperator::*;
        let l = labels(&[("zone", "north"), ("cores", "8")]);
        let cases = [
            (vec![req("zone", In, &["north", "south"])], true),
            (vec![req("zone", NotIn, &["north"])], false),
            (vec![req("rack", NotIn, &["r1"])], true),
            (vec![req("zone", Exists, &[])], true),
            (vec![req("zone", DoesNotExist, &[])], false),
            (vec![req("cores", Gt, &["4"])], true),
            (vec![req("cores", Lt, &["4"])], false),
            (vec![req("zone", Gt, &["4"])], false),
            (
                vec![req("zone", In, &["north"]), req("cores", Lt, &["8"])],
                false,
            ),
            (vec![], false),
        ];
        for (exprs, want) in cases {
            let term = NodeSelectorTerm {
                match_expressions: exprs.clone(),
                match_fields: vec![],
            };
            assert_eq!(term.matches("n1", &l), want, "{exprs:?}");
        }
        let by_name = NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req(FIELD_NODE_NAME, In, &["n1"])],
        };
        assert!(by_name.matches("n1", &l));
        assert!(!by_name.matches("n2", &l));
        let sel = NodeSelector {
            node_selector_terms: vec![
                NodeSelectorTerm::default(),
                NodeSelectorTerm {
                    match_expressions: vec![req("zone", In, &["north"])],
                    match_fields: vec![],
                },
            ],
        };
        assert!(sel.matches("n1", &l), "terms are ORed");
    }

    #[test]
    fn label_selector_matches() {
        use LabelSelectorOperator::*;
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let expr = |key: &str, operator, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let sel = |ml: &[(&str, &str)], me: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: labels(ml),
            match_expressions: me,
        };
        let cases = [
            (sel(&[], vec![]), true),
            (sel(&[("app", "web")], vec![]), true),
            (sel(&[("app", "db")], vec![]), false),
            (
                sel(&[("app", "web")], vec![expr("tier", In, &["back"])]),
                false,
            ),
            (sel(&[], vec![expr("tier", NotIn, &["back"])]), true),
            (sel(&[], vec![expr("env", Exists, &[])]), false),
            (sel(&[], vec![expr("env", DoesNotExist, &[])]), true),
        ];
        for (s, want) in cases {
            assert_eq!(s.matches(&l), want, "{s:?}");
        }
    }

    #[test]
    fn affinity_term_namespaces_default_to_the_owner() {
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector::default()),
            namespaces: vec![],
            topology_key: "zone".into(),
        };
        let l = labels(&[("app", "web")]);
        assert!(term.selects("a", "a", &l));
        assert!(!term.selects("a", "b", &l));
        let listed = PodAffinityTerm {
            namespaces: vec!["b".into()],
            ..term.clone()
        };
        assert!(listed.selects("a", "b", &l));
        let nothing = PodAffinityTerm {
            label_selector: None,
            ..term
        };
        assert!(
            !nothing.selects("a", "a", &l),
            "a missing selector selects no pod"
        );
    }

    fn parse_pod(spec_extra: &str) -> Result<crate::Object, String> {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: default}}\nspec:\n  containers: [{{name: c, image: 'sha256:{}'}}]\n{spec_extra}",
            "0".repeat(64)
        );
        let mut docs = crate::manifest::parse_documents(&y, "t").map_err(|e| e.to_string())?;
        Ok(docs.remove(0))
    }

    #[test]
    fn manifests_use_kubernetes_field_names_and_validate() {
        let ok = r#"
  tolerations: [{key: dedicated, value: gpu}, {operator: Exists, effect: NoExecute, tolerationSeconds: 30}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: zone, operator: In, values: [north]}, {key: cores, operator: Gt, values: ["4"]}]
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 10, preference: {matchExpressions: [{key: disk, operator: Exists}]}}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}
  topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
"#;
        let obj = parse_pod(ok).unwrap();
        assert_eq!(crate::validation::validate(&obj), Ok(()));
        let spec = &obj.as_pod().unwrap().spec;
        assert_eq!(spec.tolerations[0].operator, TolerationOperator::Equal);
        assert_eq!(spec.tolerations[0].effect, None);
        let na = spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap();
        assert_eq!(na.preferred[0].weight, 10);
        assert!(parse_pod("  tolerations: [{key: a, operater: Exists}]").is_err());
        assert!(parse_pod("  tolerations: [{key: a, operator: Maybe}]").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let na = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution";
        let term = |expr: &str| {
            format!("  affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{{{expr}}}]}}}}}}")
        };
        let cases = [
            ("  tolerations: [{value: x}]".to_string(), "spec.tolerations[0].operator".to_string()),
            ("  tolerations: [{key: a, operator: Exists, value: x}]".into(), "spec.tolerations[0].value".into()),
            ("  tolerations: [{key: a, tolerationSeconds: 5}]".into(), "spec.tolerations[0].tolerationSeconds".into()),
            (term("matchExpressions: [{key: zone, operator: In}]"), format!("{na}.nodeSelectorTerms[0].matchExpressions[0].values")),
            (term("matchExpressions: [{key: zone, operator: Exists, values: [a]}]"), format!("{na}.nodeSelectorTerms[0].matchExpressions[0].values")),
            (term("matchExpressions: [{key: cores, operator: Gt, values: [many]}]"), format!("{na}.nodeSelectorTerms[0].matchExpressions[0].values")),
            (term("matchExpressions: [{key: 'bad key', operator: Exists}]"), format!("{na}.nodeSelectorTerms[0].matchExpressions[0].key")),
            (term("matchFields: [{key: metadata.name, operator: Exists}]"), format!("{na}.nodeSelectorTerms[0].matchFields[0].operator")),
            ("  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}".into(), format!("{na}.nodeSelectorTerms")),
            ("  affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 0, preference: {}}]}}".into(),
             "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight".into()),
            ("  affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {}, topologyKey: ''}]}}".into(),
             "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey".into()),
            ("  affinity: {podAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 5, podAffinityTerm: {topologyKey: zone, labelSelector: {matchExpressions: [{key: app, operator: Exists, values: [x]}]}}}]}}".into(),
             "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchExpressions[0].values".into()),
            ("  topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]".into(), "spec.topologySpreadConstraints[0].maxSkew".into()),
            ("  topologySpreadConstraints: [{maxSkew: 1, minDomains: 2, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}]".into(), "spec.topologySpreadConstraints[0].minDomains".into()),
        ];
        for (extra, field) in cases {
            let obj = parse_pod(&extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
            let e = crate::validation::validate(&obj).expect_err(&extra);
            assert_eq!(e.field, field, "{extra}: {e}");
        }
        let node = "apiVersion: v1\nkind: Node\nmetadata: {name: node1}\nspec:\n  taints: [{key: a, effect: NoSchedule}, {key: a, value: b, effect: NoSchedule}]\n";
        let obj = crate::manifest::parse_documents(node, "t")
            .unwrap()
            .remove(0);
        assert_eq!(
            crate::validation::validate(&obj).unwrap_err().field,
            "spec.taints[1].key"
        );
    }
}
