//! Services on the control plane: the endpoints controller, which keeps one Endpoints object per
//! Service listing the ready pods its selector picks (not-ready ones apart), so that every
//! agent's proxy can route to them.

pub mod endpoints;
mod run;
#[cfg(test)]
mod tests;

pub use endpoints::{endpoints_for, reconcile, Action};
pub use run::run;
