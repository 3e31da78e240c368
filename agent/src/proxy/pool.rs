//! Idle HTTP/1 connections to backends, kept per backend address and reused by later requests
//! (a connection goes back once its response is done); connections to backends that left the
//! routing table are dropped, which closes them once idle.

use super::http::ReqBody;
use hyper::client::conn::http1::SendRequest;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;

/// Idle connections kept per backend; more are closed when their response ends.
const MAX_IDLE: usize = 32;

#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<ReqBody>>>>,
}

impl Pool {
    /// An idle connection to `addr` that can take a request now.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<SendRequest<ReqBody>> {
        let mut idle = super::lock(&self.idle);
        let list = idle.get_mut(&addr)?;
        while let Some(sender) = list.pop() {
            if sender.is_ready() && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    pub(super) fn put(&self, addr: SocketAddr, sender: SendRequest<ReqBody>) {
        let mut idle = super::lock(&self.idle);
        let list = idle.entry(addr).or_default();
        list.retain(|s| !s.is_closed());
        if list.len() < MAX_IDLE {
            list.push(sender);
        }
    }

    /// Forgets connections to backends not in `keep`.
    pub(super) fn retain(&self, keep: &HashSet<SocketAddr>) {
        super::lock(&self.idle).retain(|addr, _| keep.contains(addr));
    }
}
