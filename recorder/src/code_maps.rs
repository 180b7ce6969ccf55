//! Code maps: which code offsets the samples use, and the wasm offsets of
//! those, written as code-addresses records (SPEC.md §2.7) instead of the
//! modules' whole address maps.

use wrec_format::{
    flags, AddressMapEntry, CodeAddresses, ModuleRecord, Record, SampleScanner, TraceWriter,
    HEADER_SIZE,
};

/// At most this many code addresses (~8 bytes each) per module go into a
/// full trace's reserved tail (64 KiB by default).
const MAX_ENTRIES_WHEN_FULL: usize = 2048;

/// A module's full address map, kept to answer the code addresses the
/// samples use (SPEC.md §2.7).
struct ModuleMap {
    id: u64,
    /// The module record as written, but with the full address map.
    rec: ModuleRecord,
    mapped: Vec<usize>,
    /// Code offsets written in code-addresses records, and those found
    /// since (not yet written).
    written: rustc_hash::FxHashSet<u64>,
    pending: std::collections::BTreeMap<u64, Option<u64>>,
}

/// Reads the committed samples behind the samplers and writes the wasm
/// offsets of the code offsets they look up: the part of the address maps a
/// profile needs, instead of the whole maps (a module's map is ~15 KB).
pub(crate) struct CodeMaps {
    scanner: SampleScanner,
    modules: Vec<ModuleMap>,
    /// The frames looked at lately, direct-mapped by [`seen_key`]: a
    /// sample's frames mostly repeat recent samples', so most of them stop
    /// at one compare here instead of the module search and two set
    /// look-ups (which were most of this thread's time at 100us).
    seen: Box<[u64; SEEN_SLOTS]>,
    /// In a ring trace (SPEC.md §5), the generation the scanner is in.
    ring_generation: u64,
}

/// Slots of [`CodeMaps::seen`] (32 KiB).
const SEEN_SLOTS: usize = 4096;
/// An empty slot: no key has all bits set (native addresses are below 2^63).
const SEEN_EMPTY: u64 = u64::MAX;

/// The key of a frame in [`CodeMaps::seen`]: its address, and whether it is
/// looked up as a return address (minus one).
fn seen_key(addr: u64, is_return: bool) -> u64 {
    addr << 1 | u64::from(is_return)
}

fn seen_slot(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SEEN_SLOTS.trailing_zeros())) as usize
}

impl CodeMaps {
    pub(crate) fn new() -> CodeMaps {
        CodeMaps {
            scanner: SampleScanner::new(HEADER_SIZE as u64),
            modules: Vec::new(),
            seen: Box::new([SEEN_EMPTY; SEEN_SLOTS]),
            ring_generation: 0,
        }
    }

    /// Keeps a module's record as written, with its full address map, to
    /// answer the code addresses its samples use.
    pub(crate) fn add_module(&mut self, rec: ModuleRecord) {
        self.modules.push(ModuleMap {
            id: rec.id,
            mapped: rec.mapped_entries(),
            rec,
            written: Default::default(),
            pending: Default::default(),
        });
        // A frame seen before in no module could be in this one.
        self.seen.fill(SEEN_EMPTY);
    }

    /// Notes the code offsets of newly committed samples and writes them.
    /// Normal context (housekeeping thread and `finish`).
    pub(crate) fn update(&mut self, writer: &TraceWriter) {
        let CodeMaps {
            scanner,
            modules,
            seen,
            ring_generation,
        } = self;
        // The committed samples not scanned yet: a linear log's from where
        // the scanner stopped; a ring's from there in its generation, then
        // the generations after it (those overwritten before it got to
        // them are skipped: their samples are gone from the trace too).
        let mut pieces: Vec<(u64, &[u8])> = Vec::new();
        if writer.ring_layout().is_some() {
            scanner.set_interval(writer.interval_ns());
            let current = writer.ring_generation();
            let mut g = *ring_generation;
            let mut from = scanner.position();
            while g <= current {
                if let Some((at, data)) = writer.ring_committed_since(g, from) {
                    pieces.push((at, data));
                    *ring_generation = g;
                }
                g += 1;
                from = 0;
            }
        } else {
            pieces.push((
                scanner.position(),
                writer.committed_since(scanner.position()),
            ));
        }
        let mut on_sample = |s: &wrec_format::Sample<'_>| {
            let host = s.flags & flags::HOST != 0;
            for (j, &addr) in s.stack.iter().enumerate() {
                let is_return = j > 0 || host;
                let key = seen_key(addr, is_return);
                let slot = &mut seen[seen_slot(key)];
                if *slot == key {
                    continue;
                }
                *slot = key;
                let Some(m) = modules.iter_mut().find(|m| m.rec.contains(addr)) else {
                    continue;
                };
                // The offset a reader looks up: return addresses minus one.
                let mut off = addr - m.rec.text_addr;
                if is_return && off > 0 {
                    off -= 1;
                }
                if m.written.contains(&off) || m.pending.contains_key(&off) {
                    continue;
                }
                // Trampolines have no function and need no entry.
                if let Some(f) = m.rec.function_at(off) {
                    let w = m.rec.nearest_wasm_offset(&m.mapped, off, f);
                    m.pending.insert(off, w);
                }
            }
        };
        for (at, data) in pieces {
            // Each piece starts at a record boundary; a ring segment's
            // samples start with keyframes, so the state carries over.
            scanner.seek(at);
            // Our own trace: damage is impossible short of a bug; stop looking.
            let _ = scanner.scan(data, &mut on_sample);
        }
        // A full trace writes these (at the end) into the space kept back
        // for the loss and end records: a bounded share of it, so the end
        // record still fits; the rest lose their lines (wanalyze says so).
        let limit = if writer.is_full() {
            MAX_ENTRIES_WHEN_FULL
        } else {
            usize::MAX
        };
        for m in modules.iter_mut().filter(|m| !m.pending.is_empty()) {
            let entries: Vec<AddressMapEntry> = m
                .pending
                .iter()
                .take(limit)
                .map(|(&code_offset, &wasm_offset)| AddressMapEntry {
                    code_offset,
                    wasm_offset,
                })
                .collect();
            let n = entries.len();
            let rec = Record::CodeAddresses(CodeAddresses {
                module: m.id,
                entries,
            });
            // On failure (the trace is full) they stay pending for the
            // next try.
            if writer.write_record(&rec).is_ok() {
                for _ in 0..n {
                    if let Some((off, _)) = m.pending.pop_first() {
                        m.written.insert(off);
                    }
                }
            }
        }
    }
}
