//! wanalyze: turns a wrec trace into a profile, offline and without Wasmtime.
//!
//! - [`symbols`]: a wasm module's names (name section, demangled), imports,
//!   call targets and DWARF lines, looked up lazily.
//! - [`resolve`]: native address → module → wasm offset → function, frame
//!   and stack, building a deduplicated [`model::Profile`].
//! - [`firefox`], [`folded`], [`text`]: the exporters.
//! - [`lookup`]: the symbolizer on its own (`wanalyze addr2line`), like
//!   `wasm-tools addr2line`.

pub mod firefox;
pub mod folded;
pub mod lookup;
pub mod model;
mod ranges;
mod release;
pub mod resolve;
pub mod symbols;
#[cfg(test)]
mod test_rng;
pub mod text;
