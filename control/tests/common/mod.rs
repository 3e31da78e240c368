//! Helpers shared by the control plane's integration tests.

use edge_control::server::{start, RunningServer, ServerConfig};

/// A whole single-server control plane in this process, its data in `dir`, on a free port.
pub async fn server(dir: &std::path::Path) -> RunningServer {
    let config = ServerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        options: Default::default(),
    };
    start(config).await.expect("server starts")
}
