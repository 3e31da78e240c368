//! Finding the client config and dialing the control plane, with errors that say which server
//! and which config file were tried and what to check.

use anyhow::{anyhow, Context, Result};
use edge_api::config::{default_path, ClientConfigFile};
use edge_api::wire::{Client, ALPN_API};
use std::path::{Path, PathBuf};

/// A connected client and where it is connected, for messages.
pub struct Session {
    pub client: Client,
    pub server: String,
}

/// `--config` wins over `$EDGECONFIG`, which wins over `~/.edge/config`.
pub fn config_path(explicit: Option<&Path>) -> Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => Ok(default_path()?),
    }
}

/// Loads the config and connects; `verbose` says on stderr what is being used.
pub async fn connect(explicit_config: Option<&Path>, verbose: bool) -> Result<Session> {
    let path = config_path(explicit_config)?;
    // The config error's message already quotes its cause; keeping the cause as a source too
    // would print it twice in the `{:#}` chain.
    let config = ClientConfigFile::load(&path).map_err(|e| anyhow!("{e}"))?;
    if verbose {
        eprintln!(
            "edgectl: using config {} (server {})",
            path.display(),
            config.server
        );
    }
    let quic = config.quic_config(ALPN_API).with_context(|| {
        format!(
            "the credentials in {} are unusable; regenerate the file with `edged server` or point EDGECONFIG / --config at a working one",
            path.display()
        )
    })?;
    // Every server in the config is tried: any of them serves the whole API.
    let (client, server) = config
        .connect_any(quic)
        .await
        .with_context(|| unreachable_hint(&config.all_servers().join(", "), &path))?;
    Ok(Session { client, server })
}

/// The advice printed when the server does not answer.
pub fn unreachable_hint(server: &str, config: &Path) -> String {
    format!(
        "cannot reach the edge server at {server} (from {}); check that `edged server` is running there, or set EDGECONFIG / --config to another cluster's config",
        config.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_config_wins() {
        let p = config_path(Some(Path::new("/tmp/x.yaml"))).unwrap();
        assert_eq!(p, PathBuf::from("/tmp/x.yaml"));
    }

    #[test]
    fn hint_names_server_and_file() {
        let h = unreachable_hint("10.0.0.1:6443", Path::new("/home/u/.edge/config"));
        assert!(h.contains("10.0.0.1:6443") && h.contains("/home/u/.edge/config"));
        assert!(h.contains("edged server") && h.contains("EDGECONFIG"));
    }

    #[tokio::test]
    async fn missing_config_file_says_how_to_get_one() {
        let Err(e) = connect(Some(Path::new("/nonexistent/edge/config")), false).await else {
            panic!("connected without a config")
        };
        let s = format!("{e:#}");
        assert!(
            s.contains("/nonexistent/edge/config") && s.contains("edged server"),
            "{s}"
        );
    }
}
