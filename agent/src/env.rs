//! A container's environment, as the kubelet builds it: the pod's identity, then the declared
//! variables in order, `valueFrom` resolved against ConfigMap/Secret contents. Pure: it works
//! from lookups already made, so the rules are unit-tested without a control plane.

use crate::configsource::{ConfigData, ConfigRef, Lookup};
use edge_api::pod::KeySelector;
use edge_api::{Container, Pod};

/// A container cannot be configured (yet): shown as waiting `CreateContainerConfigError`, retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The environment of `c` in `pod`. A later variable of the same name replaces an earlier one,
/// as in Kubernetes.
pub fn resolve_env(
    pod: &Pod,
    c: &Container,
    data: &ConfigData,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut env: Vec<(String, String)> = vec![
        ("POD_NAME".into(), pod.metadata.name.clone()),
        ("POD_NAMESPACE".into(), pod.metadata.namespace.clone()),
    ];
    let ns = &pod.metadata.namespace;
    for e in &c.env {
        let value = match &e.value_from {
            None => Some(e.value.clone()),
            Some(src) => match (&src.config_map_key_ref, &src.secret_key_ref) {
                (Some(sel), _) => key_value(ns, &ConfigRef::configmap(&sel.name), sel, data)?,
                (None, Some(sel)) => key_value(ns, &ConfigRef::secret(&sel.name), sel, data)?,
                (None, None) => {
                    return Err(ConfigError(format!(
                        "env {}: valueFrom names neither a configMapKeyRef nor a secretKeyRef",
                        e.name
                    )))
                }
            },
        };
        if let Some(v) = value {
            env.retain(|(n, _)| n != &e.name);
            env.push((e.name.clone(), v));
        }
    }
    Ok(env)
}

/// Puts the services' variables (`<NAME>_SERVICE_HOST/PORT`) before the container's own, which
/// win on a clash, as the kubelet does.
pub fn with_services(
    env: Vec<(String, String)>,
    services: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = services
        .into_iter()
        .filter(|(n, _)| !env.iter().any(|(m, _)| m == n))
        .collect();
    out.extend(env);
    out
}

/// The value of one key; `None` when it may be absent and is.
fn key_value(
    ns: &str,
    r: &ConfigRef,
    sel: &KeySelector,
    data: &ConfigData,
) -> Result<Option<String>, ConfigError> {
    let kind = r.kind.word();
    match data.get(r) {
        Some(Lookup::Found(map)) => match map.get(&sel.key) {
            Some(bytes) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| {
                ConfigError(format!(
                    "key {} of {kind} {ns}/{} is not UTF-8 text and cannot be an environment variable",
                    sel.key, r.name
                ))
            }),
            None if sel.optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in {kind} {ns}/{}",
                sel.key, r.name
            ))),
        },
        Some(Lookup::Missing) if sel.optional => Ok(None),
        Some(Lookup::Missing) => Err(ConfigError(format!("{kind} \"{}\" not found", r.name))),
        // Optional means the pod runs without it; unknown is treated like absent so an
        // offline node can still start the pod.
        Some(Lookup::Unavailable(_)) if sel.optional => Ok(None),
        Some(Lookup::Unavailable(why)) => Err(ConfigError(why.clone())),
        None => Err(ConfigError(format!(
            "{kind} \"{}\" was not looked up (agent bug)",
            r.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::pod::{EnvVar, EnvVarSource};
    use std::collections::BTreeMap;

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.metadata.namespace = "prod".into();
        p
    }

    fn from(kind: &str, name: &str, key: &str, optional: bool) -> Option<EnvVarSource> {
        let sel = Some(KeySelector {
            name: name.into(),
            key: key.into(),
            optional,
        });
        Some(if kind == "cm" {
            EnvVarSource {
                config_map_key_ref: sel,
                ..Default::default()
            }
        } else {
            EnvVarSource {
                secret_key_ref: sel,
                ..Default::default()
            }
        })
    }

    fn var(name: &str, value: &str, value_from: Option<EnvVarSource>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
            value_from,
        }
    }

    fn data() -> ConfigData {
        let mut d = ConfigData::new();
        let cm = BTreeMap::from([("level".to_string(), b"debug".to_vec())]);
        d.insert(ConfigRef::configmap("app"), Lookup::Found(cm));
        let sec = BTreeMap::from([
            ("password".to_string(), b"hunter2".to_vec()),
            ("blob".to_string(), vec![0xff, 0xfe]),
        ]);
        d.insert(ConfigRef::secret("db"), Lookup::Found(sec));
        d.insert(ConfigRef::configmap("gone"), Lookup::Missing);
        d.insert(
            ConfigRef::secret("offline"),
            Lookup::Unavailable("secret prod/offline is not available".into()),
        );
        d
    }

    fn env_of(vars: Vec<EnvVar>) -> Result<Vec<(String, String)>, ConfigError> {
        let c = Container {
            name: "main".into(),
            env: vars,
            ..Default::default()
        };
        resolve_env(&pod(), &c, &data())
    }

    #[test]
    fn values_and_refs_in_order_with_pod_identity_first() {
        let env = env_of(vec![
            var("A", "1", None),
            var("LEVEL", "", from("cm", "app", "level", false)),
            var("PW", "", from("secret", "db", "password", false)),
            var("A", "2", None),
        ])
        .unwrap();
        let names: Vec<_> = env.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            names,
            [
                "POD_NAME=web",
                "POD_NAMESPACE=prod",
                "LEVEL=debug",
                "PW=hunter2",
                "A=2"
            ]
        );
    }

    #[test]
    fn missing_objects_and_keys() {
        let e = env_of(vec![var("X", "", from("cm", "gone", "k", false))]).unwrap_err();
        assert_eq!(e.0, "configmap \"gone\" not found");
        let e = env_of(vec![var("X", "", from("cm", "app", "nope", false))]).unwrap_err();
        assert_eq!(e.0, "couldn't find key nope in configmap prod/app");
        let e = env_of(vec![var("X", "", from("secret", "offline", "k", false))]).unwrap_err();
        assert!(e.0.contains("not available"), "{e}");
        let e = env_of(vec![var("X", "", from("secret", "db", "blob", false))]).unwrap_err();
        assert!(e.0.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn service_variables_come_first_and_declared_ones_win() {
        let env = with_services(
            vec![
                ("POD_NAME".into(), "web".into()),
                ("DB_SERVICE_PORT".into(), "5432".into()),
            ],
            vec![
                ("DB_SERVICE_HOST".into(), "127.0.0.1".into()),
                ("DB_SERVICE_PORT".into(), "41000".into()),
            ],
        );
        let lines: Vec<String> = env.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            lines,
            [
                "DB_SERVICE_HOST=127.0.0.1",
                "POD_NAME=web",
                "DB_SERVICE_PORT=5432"
            ]
        );
    }

    #[test]
    fn optional_refs_are_skipped_when_absent() {
        let env = env_of(vec![
            var("X", "", from("cm", "gone", "k", true)),
            var("Y", "", from("cm", "app", "nope", true)),
            var("Z", "", from("secret", "offline", "k", true)),
        ])
        .unwrap();
        assert_eq!(env.len(), 2);
    }
}
