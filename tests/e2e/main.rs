//! End-to-end tests: the real `edged` and `edgectl` binaries as processes on loopback.

mod support;

mod bad_input;
mod cluster;
mod run;
mod sandbox;
mod security;
