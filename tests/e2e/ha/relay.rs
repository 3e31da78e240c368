//! A fault-injecting UDP relay (QUIC is UDP): it listens on its own port and forwards every
//! datagram to one server, keeping an upstream socket per client like a NAT. On command it
//! drops everything (the server is cut off from its peers) or only what comes from given
//! addresses (a cut-off server's packets to this one).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

#[derive(Default)]
pub struct Faults {
    down: AtomicBool,
    blocked: Mutex<HashSet<SocketAddr>>,
}

impl Faults {
    /// Drop all traffic through this relay (or resume it).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Drop what `from` sends through this relay (and the answers to it), or resume it.
    pub fn set_blocked(&self, from: SocketAddr, blocked: bool) {
        let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if blocked {
            b.insert(from);
        } else {
            b.remove(&from);
        }
    }

    fn passes(&self, client: &SocketAddr) -> bool {
        !self.down.load(Ordering::SeqCst)
            && !self
                .blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(client)
    }
}

pub struct Relay {
    pub addr: SocketAddr,
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Starts relaying from a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind relay"));
        let addr = front.local_addr().expect("relay addr");
        let faults = Arc::new(Faults::default());
        let task = tokio::spawn(forward(front, target, faults.clone()));
        Relay { addr, faults, task }
    }
}

async fn forward(front: Arc<UdpSocket>, target: SocketAddr, faults: Arc<Faults>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        if !faults.passes(&client) {
            continue;
        }
        let up = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let u = Arc::new(u);
                upstreams.insert(client, u.clone());
                tokio::spawn(backward(u.clone(), front.clone(), client, faults.clone()));
                u
            }
        };
        let _ = up.send_to(&buf[..n], target).await;
    }
}

/// The server's answers to one client.
async fn backward(
    up: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    faults: Arc<Faults>,
) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = up.recv_from(&mut buf).await {
        if faults.passes(&client) {
            let _ = front.send_to(&buf[..n], client).await;
        }
    }
}
