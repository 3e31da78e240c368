//! ConfigMaps and Secrets as pods on this node consume them: which ones a pod references,
//! and their contents, fetched from the control plane when it answers and otherwise taken from
//! the copy kept in the local store (so a pod restarts with its configuration offline).

use crate::blobs::ClientSlot;
use crate::localstore::LocalStore;
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::{ErrorCode, Request, Response, WireError};
use edge_api::{Container, Pod};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// A control plane that does not answer within this is treated as unreachable for this lookup.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    fn api_kind(self) -> Kind {
        match self {
            ConfigKind::ConfigMap => Kind::ConfigMap,
            ConfigKind::Secret => Kind::Secret,
        }
    }

    /// The lower-case word kubectl users see in messages (`configmap "app" not found`).
    pub fn word(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmap",
            ConfigKind::Secret => "secret",
        }
    }
}

/// A ConfigMap or Secret in the pod's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigRef {
    pub kind: ConfigKind,
    pub name: String,
}

impl ConfigRef {
    pub fn configmap(name: &str) -> ConfigRef {
        ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: name.to_string(),
        }
    }

    pub fn secret(name: &str) -> ConfigRef {
        ConfigRef {
            kind: ConfigKind::Secret,
            name: name.to_string(),
        }
    }

    pub fn key(&self, namespace: &str) -> ObjectKey {
        ObjectKey::new(self.kind.api_kind(), namespace, &self.name)
    }
}

/// What is known of one referenced object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Its keys and their bytes.
    Found(BTreeMap<String, Vec<u8>>),
    /// The control plane says it does not exist.
    Missing,
    /// Not known now (unreachable without a local copy, refused, undecodable); why.
    Unavailable(String),
}

/// The lookups a pod's setup works from; pure functions take this, not the network.
pub type ConfigData = BTreeMap<ConfigRef, Lookup>;

/// The ConfigMaps/Secrets `pod`'s volumes use, plus those the env of `containers` uses.
pub fn references<'a>(
    pod: &Pod,
    containers: impl IntoIterator<Item = &'a Container>,
) -> BTreeSet<ConfigRef> {
    let mut out = BTreeSet::new();
    for v in &pod.spec.volumes {
        if let Some(cm) = &v.config_map {
            out.insert(ConfigRef::configmap(&cm.name));
        }
        if let Some(s) = &v.secret {
            out.insert(ConfigRef::secret(&s.secret_name));
        }
    }
    for c in containers {
        for e in &c.env {
            let Some(src) = &e.value_from else { continue };
            if let Some(k) = &src.config_map_key_ref {
                out.insert(ConfigRef::configmap(&k.name));
            }
            if let Some(k) = &src.secret_key_ref {
                out.insert(ConfigRef::secret(&k.name));
            }
        }
    }
    out
}

/// Storage keys of everything the given pods reference (what the local store must keep).
pub fn used_keys(pods: &[Pod]) -> HashSet<String> {
    pods.iter()
        .flat_map(|p| {
            references(p, &p.spec.containers)
                .into_iter()
                .map(|r| r.key(&p.metadata.namespace).storage_key())
        })
        .collect()
}

/// Fetches ConfigMaps/Secrets for pods, keeping the last copy locally.
#[derive(Clone)]
pub struct ConfigSource {
    client: ClientSlot,
    store: LocalStore,
}

impl ConfigSource {
    pub fn new(client: ClientSlot, store: LocalStore) -> ConfigSource {
        ConfigSource { client, store }
    }

    pub async fn lookup_all(
        &self,
        namespace: &str,
        refs: impl IntoIterator<Item = ConfigRef>,
    ) -> ConfigData {
        let mut out = ConfigData::new();
        for r in refs {
            let found = self.lookup(namespace, &r).await;
            out.insert(r, found);
        }
        out
    }

    /// The current contents: from the control plane if it answers, else the local copy.
    pub async fn lookup(&self, namespace: &str, r: &ConfigRef) -> Lookup {
        let key = r.key(namespace);
        let what = format!("{} {namespace}/{}", r.kind.word(), r.name);
        let client = self.client.read().await.clone();
        let fallback_reason = match client {
            None => "the control plane is unreachable".to_string(),
            Some(client) => {
                let request = Request::Get { key: key.clone() };
                let call = client.call(&request);
                match tokio::time::timeout(FETCH_TIMEOUT, call).await {
                    Ok(Ok(Response::Object(object))) if object.kind() == key.kind => {
                        if let Err(e) = self.store.put_config(&object) {
                            tracing::warn!(%key, error = %e, "cannot keep a local copy");
                        }
                        return entries(&object, &what);
                    }
                    Ok(Ok(other)) => {
                        return Lookup::Unavailable(format!(
                            "unexpected answer for {what}: {other:?}"
                        ))
                    }
                    Ok(Err(WireError::Api(e))) if e.code == ErrorCode::NotFound => {
                        // Deleted: forget the copy so an offline restart agrees with the server.
                        if let Err(e) = self.store.remove_config(&key) {
                            tracing::warn!(%key, error = %e, "cannot drop the local copy");
                        }
                        return Lookup::Missing;
                    }
                    Ok(Err(WireError::Api(e)))
                        if matches!(e.code, ErrorCode::Forbidden | ErrorCode::Unauthorized) =>
                    {
                        // A refusal is an answer, not an outage: a stale copy must not win.
                        return Lookup::Unavailable(format!(
                            "the control plane does not let this node read {what}: {}",
                            e.message
                        ));
                    }
                    Ok(Err(e)) => format!("fetching it failed ({e})"),
                    Err(_) => format!(
                        "the control plane did not answer within {}s",
                        FETCH_TIMEOUT.as_secs()
                    ),
                }
            }
        };
        match self.store.config(&key) {
            Ok(Some(object)) => entries(&object, &what),
            Ok(None) => Lookup::Unavailable(format!(
                "{what} is not available: {fallback_reason} and this node has no copy of it"
            )),
            Err(e) => Lookup::Unavailable(format!(
                "{what} is not available: {fallback_reason}; local store: {e}"
            )),
        }
    }
}

fn entries(object: &Object, what: &str) -> Lookup {
    let result = match object {
        Object::ConfigMap(cm) => cm.entries(),
        Object::Secret(s) => s.entries(),
        other => Err(format!("is a {}", other.kind())),
    };
    match result {
        Ok(map) => Lookup::Found(map),
        Err(e) => Lookup::Unavailable(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::pod::{EnvVar, EnvVarSource, KeySelector, Volume};
    use edge_api::workload::{ConfigMapSource, SecretSource};

    #[test]
    fn references_cover_volumes_and_env() {
        let mut pod = Pod::default();
        pod.metadata.namespace = "ns".into();
        pod.spec.volumes = vec![
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapSource {
                    name: "app".into(),
                    optional: false,
                }),
                ..Default::default()
            },
            Volume {
                name: "tls".into(),
                secret: Some(SecretSource {
                    secret_name: "certs".into(),
                    optional: true,
                }),
                ..Default::default()
            },
        ];
        let c = Container {
            name: "main".into(),
            env: vec![EnvVar {
                name: "PASSWORD".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(KeySelector {
                        name: "db".into(),
                        key: "password".into(),
                        optional: false,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        pod.spec.containers = vec![c];
        let refs: Vec<_> = references(&pod, &pod.spec.containers).into_iter().collect();
        assert_eq!(
            refs,
            vec![
                ConfigRef::configmap("app"),
                ConfigRef::secret("certs"),
                ConfigRef::secret("db")
            ]
        );
        let used = used_keys(&[pod]);
        assert!(used.contains("ConfigMap/ns/app"));
        assert!(used.contains("Secret/ns/db"));
        assert_eq!(used.len(), 3);
    }
}
