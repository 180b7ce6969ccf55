//! The recorder's errors.

use std::io;
use std::path::PathBuf;

use wrec_format::WriteError;

use crate::{format_interval, MAX_INTERVAL, MAX_MODULES, MIN_INTERVAL};

/// An error from the recorder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The output path cannot or may not be written.
    #[error("{}: {msg}", path.display())]
    Output { path: PathBuf, msg: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Setting up a timer or the signal handler failed.
    #[error("cannot start the sampler: {0}")]
    Sampler(#[source] io::Error),
    #[error("too many modules (a recorder holds at most {MAX_MODULES})")]
    TooManyModules,
    #[error(
        "the sampling interval must be between {} and {}",
        format_interval(MIN_INTERVAL),
        format_interval(MAX_INTERVAL)
    )]
    Interval,
}
