//! Host paths kept out of what a profile shares.
//!
//! A profile names modules by file name only (the exporters write
//! [`Lib::name`](super::Lib::name)); this is for text that comes with
//! paths in it: the trap message a trace stored (which, from older wrec
//! versions run with `RUST_BACKTRACE=1`, holds wrec's own Rust backtrace,
//! with paths under the cargo registry and the project tree) and the
//! warnings written into a profile (which name the trace and the module
//! files by their paths on this machine; on stderr they keep them). The
//! rules are the trace format crate's, which the recorder uses too.

pub use wrec_format::redact::{run_end_message, without_host_paths};
