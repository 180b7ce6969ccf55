//! DWARF source frames: the `addr2line` context, built on first use, a
//! cache per offset, and the problems met while looking up.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use super::demangle::{demangle_dwarf, shorten, MAX_NAME_BYTES};
use super::tombstones::find_zero_tombstones;
use super::{lock, SourceFrame, WasmSymbols};

/// The gimli reader used for DWARF: cheap to clone, owns (a share of) the
/// module's bytes, so the addr2line context can live inside [`WasmSymbols`].
pub(super) type DwarfReader = gimli::EndianReader<gimli::LittleEndian, Arc<[u8]>>;

/// At most this many look-up warnings are kept; the rest are counted.
const MAX_LOOKUP_WARNINGS: usize = 20;
/// Source-frame cache entries kept before the cache is cleared.
pub(super) const MAX_CACHED_LOOKUPS: usize = 1 << 20;
/// Bytes of source frames cached before the cache is cleared.
const MAX_CACHE_BYTES: usize = 256 << 20;
/// The most frames kept of one inline chain: the innermost
/// `MAX_INLINE_FRAMES - 1` (the leaf's line is what a profile is for) and
/// the outermost, the function itself (the resolver names it from the name
/// section). Real chains are a few dozen deep at most.
pub const MAX_INLINE_FRAMES: usize = 255;

pub(super) struct DwarfState {
    ctx: addr2line::Context<DwarfReader>,
    cache: HashMap<u64, Vec<SourceFrame>>,
    /// Approximate bytes held by `cache`.
    cache_bytes: usize,
}

#[derive(Default)]
pub(super) struct LookupWarnings {
    kept: Vec<String>,
    dropped: usize,
    /// Inline chains cut to [`MAX_INLINE_FRAMES`]: the first (file offset,
    /// frames in the chain), and how many offsets had one.
    deep: Option<(u64, usize)>,
    deep_count: u64,
    /// Names longer than [`MAX_NAME_BYTES`]: the first file offset with
    /// one, and how many offsets had one.
    long: Option<u64>,
    long_count: u64,
}

/// What one look-up found besides its frames.
struct Found {
    frames: Vec<SourceFrame>,
    /// Frames in the chain before it was cut, if it was.
    chain: Option<usize>,
    /// Whether a name or file was shortened.
    long: bool,
}

impl WasmSymbols {
    /// Whether any DWARF look-up so far found a source line.
    pub fn found_lines(&self) -> bool {
        self.covered_with_line.load(Relaxed) > 0
    }

    /// How many times [`WasmSymbols::source_frames`] read the DWARF so far:
    /// once per distinct offset it was asked about, as long as the cache
    /// keeps the answers (repeats are answered from it).
    pub fn dwarf_lookups(&self) -> u64 {
        self.covered.load(Relaxed)
    }

    /// Problems found while looking DWARF up (after loading), one line each;
    /// at most 20 are kept, then a line saying how many more there were.
    pub fn dwarf_warnings(&self) -> Vec<String> {
        let w = lock(&self.lookup_warnings);
        let mut out = w.kept.clone();
        let covered = self.covered.load(Relaxed);
        if covered > 0 && self.covered_with_line.load(Relaxed) == 0 {
            out.push(format!(
                "{}: the module has DWARF ({} compile units) but it gives no source line for any of the {covered} code offsets looked up (damaged .debug_line or .debug_info?); no source lines",
                self.display, self.dwarf_units
            ));
        }
        if let Some((offset, chain)) = w.deep {
            out.push(format!(
                "{}: byte offset {offset:#x} in {}: DWARF gives a chain of {chain} inlined calls; kept the innermost {} and the function itself{}",
                self.display,
                self.function_at(offset),
                MAX_INLINE_FRAMES - 1,
                more(w.deep_count)
            ));
        }
        if let Some(offset) = w.long {
            out.push(format!(
                "{}: DWARF names and file names longer than {MAX_NAME_BYTES} bytes are shortened to that, marked …[+N bytes]: at byte offset {offset:#x} in {}{}",
                self.display,
                self.function_at(offset),
                more(w.long_count)
            ));
        }
        if w.dropped > 0 {
            out.push(format!(
                "{}: {} more DWARF problems not shown",
                self.display, w.dropped
            ));
        }
        out
    }

    /// `name (function N)` of the function whose body holds `offset`.
    fn function_at(&self, offset: u64) -> String {
        match self.function_containing(offset) {
            Some(i) => format!("{} (function {i})", self.function_name(i)),
            None => "no function".to_owned(),
        }
    }

    /// DWARF frames covering a whole-file offset, INNERMOST first (inlined
    /// callee first, the real function last), empty if no DWARF covers it.
    ///
    /// For a return address, pass the offset of the call instruction (or the
    /// return address minus one), not the next instruction.
    pub fn source_frames(&self, file_offset: u64) -> Vec<SourceFrame> {
        let Some(code) = &self.code else {
            return Vec::new();
        };
        if !code.contains(&file_offset) {
            return Vec::new();
        }
        let probe = file_offset - code.start;
        let Some(state) = self.dwarf_state() else {
            return Vec::new();
        };
        let mut guard = lock(state);
        let st: &mut DwarfState = &mut guard;
        if let Some(hit) = st.cache.get(&probe) {
            return hit.clone();
        }
        let ctx = &st.ctx;
        let result = catch_unwind(AssertUnwindSafe(|| lookup_frames(ctx, probe)));
        let frames = match result {
            Ok(Ok(found)) => {
                let mut w = lock(&self.lookup_warnings);
                if let Some(chain) = found.chain {
                    w.deep.get_or_insert((file_offset, chain));
                    w.deep_count += 1;
                }
                if found.long {
                    w.long.get_or_insert(file_offset);
                    w.long_count += 1;
                }
                found.frames
            }
            Ok(Err(e)) => {
                self.lookup_warning(format!(
                    "{}: DWARF look-up of byte offset {file_offset:#x} failed: {e}; no source lines there",
                    self.display
                ));
                Vec::new()
            }
            Err(_) => {
                self.lookup_warning(format!(
                    "{}: DWARF look-up of byte offset {file_offset:#x} failed (corrupt DWARF); no source lines there",
                    self.display
                ));
                Vec::new()
            }
        };
        self.covered.fetch_add(1, Relaxed);
        if frames.iter().any(|f| f.line.is_some()) {
            self.covered_with_line.fetch_add(1, Relaxed);
        }
        let bytes = 64 + frames.iter().map(SourceFrame::heap_size).sum::<usize>();
        if st.cache.len() >= MAX_CACHED_LOOKUPS || st.cache_bytes + bytes > MAX_CACHE_BYTES {
            st.cache.clear();
            st.cache_bytes = 0;
        }
        st.cache_bytes += bytes;
        st.cache.insert(probe, frames.clone());
        frames
    }

    fn lookup_warning(&self, msg: String) {
        let mut w = lock(&self.lookup_warnings);
        if w.kept.len() < MAX_LOOKUP_WARNINGS {
            if !w.kept.contains(&msg) {
                w.kept.push(msg);
            }
        } else {
            w.dropped += 1;
        }
    }

    pub(super) fn count_dwarf_units(&mut self) {
        let Some(range) = self.debug_sections.get(".debug_info").cloned() else {
            return;
        };
        let info = gimli::DebugInfo::new(&self.bytes[range.clone()], gimli::LittleEndian);
        let mut units = info.units();
        loop {
            match units.next() {
                Ok(Some(_)) => self.dwarf_units += 1,
                Ok(None) => break,
                Err(e) => {
                    // The iterator stops after an error; report where the
                    // broken unit header starts.
                    let at = range.start as u64 + units_offset(&info, self.dwarf_units);
                    self.warnings.push(format!(
                        "{}: .debug_info compile unit at byte offset {at:#x}: {e}; DWARF after it is ignored",
                        self.display
                    ));
                    break;
                }
            }
        }
    }

    fn section_reader(&self, name: &str) -> DwarfReader {
        let base = DwarfReader::new(self.bytes.clone(), gimli::LittleEndian);
        match self.debug_sections.get(name) {
            Some(r) => base.range(r.clone()),
            None => base.range(0..0),
        }
    }

    fn dwarf_state(&self) -> Option<&Mutex<DwarfState>> {
        self.dwarf
            .get_or_init(|| {
                match catch_unwind(AssertUnwindSafe(|| self.build_dwarf())) {
                    Ok(state) => state,
                    Err(_) => {
                        self.lookup_warning(format!(
                            "{}: corrupt DWARF (its parser failed); no source lines",
                            self.display
                        ));
                        None
                    }
                }
                .map(Mutex::new)
            })
            .as_ref()
    }

    fn build_dwarf(&self) -> Option<DwarfState> {
        if !self.has_dwarf() {
            return None;
        }
        let code = self.code.clone()?;
        let first_body = self.bodies.first()?.start.checked_sub(code.start)?;
        let load = |overrides: &HashMap<&'static str, Arc<[u8]>>| {
            gimli::Dwarf::load(|id| -> Result<DwarfReader, std::convert::Infallible> {
                Ok(match overrides.get(id.name()) {
                    Some(data) => DwarfReader::new(data.clone(), gimli::LittleEndian),
                    None => self.section_reader(id.name()),
                })
            })
            .unwrap_or_else(|e| match e {})
        };
        let mut dwarf = load(&HashMap::new());
        let patches = find_zero_tombstones(&dwarf, first_body);
        if !patches.is_empty() {
            let mut overrides: HashMap<&'static str, Arc<[u8]>> = HashMap::new();
            for (section, list) in [
                (".debug_info", &patches.info),
                (".debug_ranges", &patches.ranges),
            ] {
                if list.is_empty() {
                    continue;
                }
                let Some(r) = self.debug_sections.get(section) else {
                    continue;
                };
                let mut data = self.bytes[r.clone()].to_vec();
                for (at, bytes) in list {
                    if let Some(dst) = data.get_mut(*at..*at + bytes.len()) {
                        dst.copy_from_slice(bytes);
                    }
                }
                overrides.insert(section, Arc::from(data));
            }
            dwarf = load(&overrides);
        }
        match addr2line::Context::from_dwarf(dwarf) {
            Ok(ctx) => Some(DwarfState {
                ctx,
                cache: HashMap::new(),
                cache_bytes: 0,
            }),
            Err(e) => {
                self.lookup_warning(format!(
                    "{}: DWARF cannot be indexed: {e}; no source lines",
                    self.display
                ));
                None
            }
        }
    }
}

/// The offset of the `n`th unit header (best effort, for messages).
fn units_offset(
    info: &gimli::DebugInfo<gimli::EndianSlice<'_, gimli::LittleEndian>>,
    n: usize,
) -> u64 {
    let mut units = info.units();
    let mut last_end = 0u64;
    for _ in 0..n {
        match units.next() {
            Ok(Some(h)) => {
                let start = h.offset().as_debug_info_offset().map_or(0, |o| o.0 as u64);
                last_end = start + h.length_including_self() as u64;
            }
            _ => break,
        }
    }
    last_end
}

/// " (and at N more offsets)" when `count` > 1.
fn more(count: u64) -> String {
    if count > 1 {
        format!(" (and at {} more offsets)", count - 1)
    } else {
        String::new()
    }
}

/// Collects the frames of one DWARF address, innermost first; of a chain
/// longer than [`MAX_INLINE_FRAMES`], the innermost and the outermost.
fn lookup_frames(ctx: &addr2line::Context<DwarfReader>, probe: u64) -> Result<Found, gimli::Error> {
    let mut iter = ctx.find_frames(probe).skip_all_loads()?;
    let unit = ctx.find_dwarf_and_unit(probe).skip_all_loads();
    let mut found = Found {
        frames: Vec::new(),
        chain: None,
        long: false,
    };
    let mut outermost = None;
    let mut n = 0usize;
    while let Some(frame) = iter.next()? {
        n += 1;
        if found.frames.len() < MAX_INLINE_FRAMES - 1 {
            let f = source_frame(&frame, unit, &mut found.long)?;
            found.frames.push(f);
        } else {
            outermost = Some(frame);
        }
    }
    if let Some(frame) = outermost {
        let f = source_frame(&frame, unit, &mut found.long)?;
        found.frames.push(f);
    }
    if n > found.frames.len() {
        found.chain = Some(n);
    }
    Ok(found)
}

/// One frame, its names shortened (`long` set if one was).
fn source_frame(
    frame: &addr2line::Frame<'_, DwarfReader>,
    unit: Option<gimli::UnitRef<'_, DwarfReader>>,
    long: &mut bool,
) -> Result<SourceFrame, gimli::Error> {
    let mut function = match &frame.function {
        Some(f) => Some(demangle_dwarf(&f.raw_name()?, f.language)),
        None => None,
    };
    let (mut file, line, column) = match &frame.location {
        Some(loc) => (loc.file.map(clean_path), loc.line, loc.column),
        None => (None, None, None),
    };
    for s in [&mut function, &mut file].into_iter().flatten() {
        *long |= shorten(s, MAX_NAME_BYTES);
    }
    let decl_line = match (unit, frame.dw_die_offset) {
        (Some(unit), Some(offset)) => decl_line(unit, offset),
        _ => None,
    };
    Ok(SourceFrame {
        function,
        file,
        line,
        column,
        decl_line,
    })
}

/// `DW_AT_decl_line` of a subprogram or inlined subroutine DIE, following
/// abstract origins and specifications inside the unit.
fn decl_line(
    unit: gimli::UnitRef<'_, DwarfReader>,
    mut offset: gimli::UnitOffset<usize>,
) -> Option<u32> {
    for _ in 0..4 {
        let entry = unit.entry(offset).ok()?;
        if let Ok(Some(v)) = entry.attr_value(gimli::DW_AT_decl_line) {
            return v.udata_value().and_then(|l| u32::try_from(l).ok());
        }
        let next = [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification]
            .into_iter()
            .find_map(|name| match entry.attr_value(name) {
                Ok(Some(gimli::AttributeValue::UnitRef(o))) => Some(o),
                Ok(Some(gimli::AttributeValue::DebugInfoRef(o))) => o.to_unit_offset(&unit.header),
                _ => None,
            })?;
        offset = next;
    }
    None
}

/// Removes `.` components (and the `./` prefix) from a path, lexically.
/// `..` is kept: resolving it would be wrong across symlinks.
pub fn clean_path(path: &str) -> String {
    if !path.contains("./") && !path.ends_with("/.") && path != "." {
        return path.to_string();
    }
    let absolute = path.starts_with('/');
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}
