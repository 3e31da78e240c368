//! The proxy's last known Services and Endpoints in a file in the agent's data directory, so
//! that after a restart with no control plane reachable the node ports and the pods' service
//! variables work again at once. Written at most every few seconds while things change (flash
//! storage wears out under constant small writes), atomically (a temporary file renamed).

use super::{lock, Proxy};
use edge_api::service::{Endpoints, Service};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{debug, info, warn};

const WRITE_EVERY: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize, Default)]
struct Saved {
    services: Vec<Service>,
    endpoints: Vec<Endpoints>,
}

impl Proxy {
    /// Routes from what `path` holds (if anything) and keeps it up to date from now on.
    pub(crate) fn persist_to(&self, path: PathBuf) {
        match load(&path) {
            Ok(Some(saved)) => {
                info!(
                    services = saved.services.len(),
                    "service routes restored from the last run"
                );
                self.replace_all(saved.services, saved.endpoints);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(file = %path.display(), error = %e, "ignoring unreadable saved service routes")
            }
        }
        self.inner.dirty.store(false, Ordering::SeqCst);
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WRITE_EVERY).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if !inner.dirty.swap(false, Ordering::SeqCst) {
                    continue;
                }
                let saved = {
                    let state = lock(&inner.state);
                    Saved {
                        services: state.services.values().cloned().collect(),
                        endpoints: state.endpoints.values().cloned().collect(),
                    }
                };
                drop(inner);
                let path = path.clone();
                match tokio::task::spawn_blocking(move || save(&path, &saved)).await {
                    Ok(Ok(())) => debug!("service routes saved"),
                    Ok(Err(e)) => warn!(error = %e, "cannot save the service routes"),
                    Err(e) => warn!(error = %e, "saving the service routes failed"),
                }
            }
        });
    }
}

fn load(path: &Path) -> Result<Option<Saved>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    edge_api::codec::decode("saved service routes", &bytes)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn save(path: &Path, saved: &Saved) -> Result<(), String> {
    let bytes =
        edge_api::codec::encode("saved service routes", saved).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_survive_a_restart_of_the_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.cbor");
        let mut svc = Service::default();
        svc.metadata.name = "web".into();
        svc.metadata.namespace = "default".into();
        svc.spec.ports.push(edge_api::service::ServicePort {
            port: 80,
            ..Default::default()
        });
        let saved = Saved {
            services: vec![svc],
            endpoints: vec![],
        };
        save(&path, &saved).unwrap();
        let proxy = Proxy::new("a", None);
        proxy.persist_to(path.clone());
        let env = proxy.service_env("default");
        assert_eq!(env[0], ("WEB_SERVICE_HOST".into(), "127.0.0.1".into()));
        std::fs::write(&path, b"garbage").unwrap();
        let fresh = Proxy::new("a", None);
        fresh.persist_to(path);
        assert!(
            fresh.service_env("default").is_empty(),
            "a bad file is ignored"
        );
        proxy.shutdown();
    }

    #[tokio::test(start_paused = true)]
    async fn changes_reach_the_file_within_the_write_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.cbor");
        let proxy = Proxy::new("a", None);
        proxy.persist_to(path.clone());
        let mut svc = Service::default();
        svc.metadata.name = "web".into();
        svc.metadata.namespace = "default".into();
        proxy.upsert_service(svc);
        assert!(load(&path).unwrap().is_none(), "not written at once");
        tokio::time::sleep(WRITE_EVERY + Duration::from_secs(1)).await;
        // The write itself runs on a blocking thread, outside the paused clock.
        let mut saved = None;
        for _ in 0..200 {
            saved = load(&path).unwrap();
            if saved.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            tokio::task::yield_now().await;
        }
        let saved = saved.expect("the background writer saved the change");
        assert_eq!(saved.services.len(), 1);
        assert_eq!(saved.services[0].metadata.name, "web");
        proxy.shutdown();
    }
}
