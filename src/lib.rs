//! The `edge` product package as a library: the `edgectl` command-line client lives here so its
//! rendering and manifest handling can be unit-tested; daemon wiring stays in `src/bin/edged.rs`.

pub mod cli;
