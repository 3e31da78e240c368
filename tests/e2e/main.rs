//! End-to-end tests: the real `edged` and `edgectl` binaries as processes on loopback.

mod support;

mod autonomy;
mod bad_input;
mod cluster;
mod ha;
mod kubectl;
mod run;
mod sandbox;
mod security;
mod services;
mod workloads;
