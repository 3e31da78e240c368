//! edge's control plane: the raft-replicated store, API server, scheduler and controllers.

pub mod apiserver;
pub mod context;
pub mod controllers;
pub mod events;
pub mod nodes;
pub mod pki;
pub mod pod_events;
pub mod raft;
pub mod scheduler;
pub mod server;
pub mod services;
pub mod store;
