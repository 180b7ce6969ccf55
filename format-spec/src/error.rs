//! Typed errors that carry the byte offset of what went wrong.

use std::path::PathBuf;

/// What was wrong with a record (SPEC.md §4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("the record runs past the end of the data (the file is cut short)")]
    PastEnd,
    #[error("the record's check does not match its bytes (stored {stored:#06x}, computed {computed:#06x})")]
    BadCheck { stored: u16, computed: u16 },
    #[error("a field runs past the end of its record")]
    FieldPastEnd,
    #[error("a number is longer than 64 bits")]
    VarintOverflow,
    #[error("a count is larger than its record could hold")]
    CountTooLarge,
    #[error("a string is not valid UTF-8")]
    BadUtf8,
    #[error("invalid {0}")]
    BadValue(&'static str),
    #[error("a sample keeps {keep} frames but the thread's previous stack has {prev}")]
    KeepBeyondStack { keep: u64, prev: usize },
    #[error("a sample of thread {0} has no keyframe before it")]
    NoKeyframe(u32),
}

/// An error reading a trace.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a wrec trace (no WRECTRC magic at the start)")]
    NotATrace,
    #[error("{}", short_header(*.0))]
    ShortHeader(u64),
    #[error("the trace's byte-order mark is wrong: written on a machine this reader does not understand, or damaged")]
    BadByteOrder,
    #[error("format {major}.{minor}, written by an older wrec: record again")]
    OldVersion { major: u16, minor: u16 },
    #[error("trace format version {major}.{minor} is not supported by this reader (it reads 2.x and 3.x); use a newer wanalyze")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("the trace's header is damaged: {0}")]
    BadHeader(&'static str),
    #[error("damaged record at byte {offset}: {damage}")]
    Damaged { offset: u64, damage: Damage },
}

impl ReadError {
    /// The byte offset of the damage, where there is one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ReadError::Damaged { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

fn short_header(len: u64) -> String {
    if len == 0 {
        "the file is empty: the recorder stopped (was killed?) before it wrote the trace's header"
            .to_owned()
    } else {
        format!("the trace is shorter than its 64-byte header ({len} bytes)")
    }
}
