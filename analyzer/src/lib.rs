//! wanalyze: turns a wrec trace into a profile, offline and without Wasmtime.
//!
//! Data flows one way: trace and wasm files → [`resolve`] → [`model`] →
//! an exporter. Each directory module's `mod.rs` says which file holds what.
//!
//! - [`symbols`]: one wasm module's names and lines, looked up lazily
//!   (`scan.rs` the sections, `names.rs` the name section, `dwarf.rs` and
//!   `tombstones.rs` DWARF, `demangle.rs`, `opcodes.rs`).
//! - [`resolve`]: [`resolve::analyze`], a loop over the trace's events, each
//!   a step of `analysis.rs` (`cpu.rs` CPU sharing, `modules.rs` the modules
//!   and `--module`, `resolver.rs` address → frames, `warnings.rs` the end).
//! - [`model`]: the deduplicated [`model::Profile`], its validation
//!   ([`model::Profile::check`]) and the helpers exporters share.
//! - [`firefox`], [`folded`], [`text`], [`pprof`]: the exporters; each
//!   reads the model only, never another exporter.
//! - [`sources`]: the source files DWARF names, found on this machine
//!   (`--source-root`, `--source-map`) and read within bounds, for the
//!   model to carry into the Firefox profile and for `view` to serve.
//! - [`view`]: `wanalyze view`, a loopback server for the Firefox Profiler:
//!   the profile, its sources and its functions' wasm instructions.
//! - [`diff`]: two sets of profiles compared, per function and line, with
//!   the statistics a CI gate needs (`wanalyze diff`); reads the model only
//!   (its [`model::Stats`], which the text report shares).
//! - [`files`]: opening the files an input names (the trace, recorded
//!   and `--module` wasm files, sources, profiles): regular files only,
//!   never blocking, read within a limit.
//! - [`lookup`]: the symbolizer on its own (`wanalyze addr2line`), like
//!   `wasm-tools addr2line`.

pub mod diff;
pub mod files;
pub mod firefox;
pub mod folded;
pub mod lookup;
pub mod model;
pub mod pprof;
mod ranges;
pub mod resolve;
pub mod sources;
pub mod symbols;
#[cfg(test)]
mod test_rng;
pub mod text;
pub mod view;
