//! The wrec trace format: see `SPEC.md` beside this crate for every byte.
//!
//! - [`TraceWriter`] (`writer/`, its ring layout side in `writer/ring.rs`)
//!   appends records into a memory-mapped file; its
//!   [`TraceWriter::append_sample`] is async-signal-safe, with a per-thread
//!   [`SampleEncoder`] (`encoder.rs`).
//! - [`Trace`] (`reader/`) maps a trace and iterates its records without
//!   copying; [`Decoder`] expands delta-encoded samples
//!   (`reader/decode.rs`) and lets go of the pages it has read
//!   (`release.rs`). Every malformation is a
//!   [`ReadError`] (`error.rs`) carrying its byte offset.
//! - Both sides share `coding.rs` (record framing, frame codes, the recent
//!   addresses table, limits), `records/` (the record types, and in
//!   `records/codec.rs` their payloads), `header.rs` and `varint.rs`; the reader never imports the
//!   writer. `spread.rs` is the CPU-sharing rule every reader applies.

mod coding;
mod encoder;
mod error;
mod header;
mod reader;
mod records;
pub mod redact;
mod release;
mod ring;
mod spread;
pub mod varint;
mod writer;

pub use coding::{
    frame, frame_payload, sample_payload, MAX_FRAMES, MAX_SAMPLE_RECORD, RECENT_SLOTS,
};
pub use encoder::{SampleEncoder, SampleRef};
pub use error::{Damage, ReadError};
pub use header::{
    Arch, Header, BYTE_ORDER_MARK, HEADER_SIZE, MAGIC, OLDEST_MAJOR, VERSION_MAJOR, VERSION_MINOR,
};
pub use reader::RingSpan;
pub use reader::{Decoder, Event, RawRecord, RecordIter, Sample, SampleScanner, Trace};
pub use records::{
    cut, flags, kind, AddressMapEntry, CodeAddresses, End, ExitKind, FunctionEntry, InnerModule,
    LossReason, ModuleRecord, RawSample, Record, Request, RunInfo, SamplesLost, ThreadEnd,
    ThreadStart, TimerClock, MAX_REQUEST_METHOD, MAX_REQUEST_PATH, SHORT_SAMPLE_MAX,
};
pub use ring::{RingLayout, LAYOUT_RING, RING_HEADER_SIZE, SEGMENT_HEADER_SIZE};
pub use spread::{spread_cpu, MAX_NO_CPU_RUN};
pub use writer::{Dropped, TraceWriter, WriteError, WriterOptions};

/// CRC-16/XMODEM, the record check (SPEC.md §1.2). Table-driven, no
/// allocation: safe in a signal handler.
pub fn crc16(bytes: &[u8]) -> u16 {
    const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);
    CRC.checksum(bytes)
}

/// Reads `clock` in ns. Async-signal-safe (`clock_gettime` is).
#[inline]
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests;
