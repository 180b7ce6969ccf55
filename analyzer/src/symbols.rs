//! Everything the analyzer needs to know about one wasm module: function
//! names (name section, demangled), imports, function body ranges, the
//! instruction at an offset (for host-call callers) and DWARF source lines
//! with inline frames.
//!
//! All offsets taken and returned here are *whole-file* offsets, the ones
//! Wasmtime's `Module::address_map()` and `FrameInfo::module_offset()` give.
//! DWARF addresses in wasm are offsets from the first byte of the Code
//! section's payload (the function-count LEB is at DWARF address 0); the
//! conversion happens inside [`WasmSymbols::source_frames`].
//!
//! The input is untrusted: a malformed name section or DWARF never fails the
//! load and never panics; names fall back to `wasm-function[N]`, lines to
//! none, and each problem is reported once in [`WasmSymbols::warnings`] (load
//! time) or [`WasmSymbols::dwarf_warnings`] (found while looking lines up).
//! Memory stays proportional to the file: nothing is sized from a count read
//! from the file.
//!
//! The DWARF context (`addr2line`) is built on the first
//! [`WasmSymbols::source_frames`] call, and results are cached per offset.
//! `WasmSymbols` is `Send + Sync`; DWARF look-ups are serialized by a mutex.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use wasmparser::{
    BinaryReader, Encoding, FunctionBody, Name, NameSectionReader, Operator, OperatorsReader,
    Parser, Payload, TypeRef,
};

/// The gimli reader used for DWARF: cheap to clone, owns (a share of) the
/// module's bytes, so the addr2line context can live inside [`WasmSymbols`].
type DwarfReader = gimli::EndianReader<gimli::LittleEndian, Arc<[u8]>>;

/// At most this many look-up warnings are kept; the rest are counted.
const MAX_LOOKUP_WARNINGS: usize = 20;
/// Source-frame cache entries kept before the cache is cleared.
const MAX_CACHED_LOOKUPS: usize = 1 << 20;
/// Bytes of source frames cached before the cache is cleared.
const MAX_CACHE_BYTES: usize = 256 << 20;
/// A longer inline chain than this is treated as corrupt DWARF.
const MAX_INLINE_DEPTH: usize = 256;

/// Why a module could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file does not start with the wasm magic `\0asm`.
    #[error("{path}: not a wasm module (bad magic)")]
    NotWasm { path: String },
    /// The file is a WebAssembly component, not a core module.
    #[error("{path}: a WebAssembly component, not a core wasm module")]
    Component { path: String },
    /// The sections up to and including the code section cannot be walked.
    #[error("{path}: malformed wasm at byte offset {offset:#x}: {message}")]
    Malformed {
        path: String,
        offset: u64,
        message: String,
    },
}

/// What the instruction at an offset calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallTarget {
    /// `call` or `return_call` of this function index (an import when it is
    /// below [`WasmSymbols::num_imported_funcs`]).
    Direct(u32),
    /// `call_indirect`, `call_ref` and their `return_` forms.
    Indirect,
    /// Any other instruction, by its text-format name, e.g. `"memory.grow"`
    /// (Wasmtime implements some of them with libcalls into the host).
    Other(&'static str),
}

/// One DWARF frame at an address. Frames come innermost first: inlined
/// callees first, the physical function last.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceFrame {
    /// Demangled function name from DWARF (its linkage name when it has one,
    /// as `addr2line` gives it, e.g. `__main_argc_argv` for C's `main`).
    pub function: Option<String>,
    /// Source file: `DW_AT_comp_dir` joined with the line table's file name,
    /// with `.` path components removed (`./fixtures/src/fib.c` becomes
    /// `fixtures/src/fib.c`).
    pub file: Option<String>,
    /// Source line. For an inlined callee's caller frame, the line of the
    /// call site.
    pub line: Option<u32>,
    /// Source column as DWARF gives it: `Some(0)` means "left edge / no
    /// column" (kept so `addr2line` output matches `wasm-tools addr2line`).
    pub column: Option<u32>,
    /// `DW_AT_decl_line` of the function (following `DW_AT_abstract_origin`
    /// and `DW_AT_specification` within the compile unit), if known.
    pub decl_line: Option<u32>,
}

impl SourceFrame {
    /// Approximate heap and inline bytes, for cache accounting.
    fn heap_size(&self) -> usize {
        std::mem::size_of::<SourceFrame>()
            + self.function.as_ref().map_or(0, String::len)
            + self.file.as_ref().map_or(0, String::len)
    }
}

/// The symbols of one wasm module.
pub struct WasmSymbols {
    path: PathBuf,
    display: String,
    bytes: Arc<[u8]>,
    warnings: Vec<String>,
    /// Function imports in index order: (module, field).
    imports: Vec<(Box<str>, Box<str>)>,
    /// Demangled name-section names, indexed by function index.
    names: Vec<Option<Box<str>>>,
    /// Whole-file ranges of the defined functions' bodies (after the size
    /// LEB), in code-section order.
    bodies: Vec<Range<u64>>,
    /// Whole-file range of the code section's payload.
    code: Option<Range<u64>>,
    /// `.debug_*` custom sections: name → whole-file range of the data.
    debug_sections: HashMap<String, Range<usize>>,
    /// Compile units found in `.debug_info` at load time.
    dwarf_units: usize,
    dwarf: OnceLock<Option<Mutex<DwarfState>>>,
    lookup_warnings: Mutex<LookupWarnings>,
    /// Distinct code offsets looked up in the DWARF, and of those, the ones
    /// that got a line: DWARF that gives no line at all for any of them is
    /// damaged (or describes other code), and `dwarf_warnings` says so.
    covered: AtomicU64,
    covered_with_line: AtomicU64,
    /// Instruction starts (relative to the body start) of the defined
    /// functions decoded so far, by function index.
    boundaries: Mutex<Boundaries>,
}

#[derive(Default)]
struct Boundaries {
    by_func: HashMap<u32, Arc<[u32]>>,
    /// Total entries, to bound memory.
    total: usize,
}

struct DwarfState {
    ctx: addr2line::Context<DwarfReader>,
    cache: HashMap<u64, Vec<SourceFrame>>,
    /// Approximate bytes held by `cache`.
    cache_bytes: usize,
}

#[derive(Default)]
struct LookupWarnings {
    kept: Vec<String>,
    dropped: usize,
}

impl fmt::Debug for WasmSymbols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmSymbols")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("num_imported_funcs", &self.num_imported_funcs())
            .field("num_funcs", &self.num_funcs())
            .field("code", &self.code)
            .field("dwarf_units", &self.dwarf_units)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl WasmSymbols {
    /// Reads and indexes a wasm file; see [`WasmSymbols::from_bytes`].
    pub fn open(path: &Path) -> Result<WasmSymbols, SymbolError> {
        let bytes = std::fs::read(path).map_err(|source| SymbolError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Indexes a wasm module held in memory; `path` is used in messages.
    ///
    /// Fails only when the bytes are not a wasm module whose sections can be
    /// walked at all; damage in the name section or DWARF degrades (names fall
    /// back to index names, lines to none) and is reported in warnings().
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<WasmSymbols, SymbolError> {
        let display = path.display().to_string();
        if bytes.len() < 4 || &bytes[..4] != b"\0asm" {
            return Err(SymbolError::NotWasm { path: display });
        }
        let mut scan = Scan::default();
        scan.walk(&display, &bytes)?;

        let mut syms = WasmSymbols {
            path: path.to_path_buf(),
            display,
            bytes: Arc::from(bytes),
            warnings: scan.warnings,
            imports: scan.imports,
            names: Vec::new(),
            bodies: scan.bodies,
            code: scan.code,
            debug_sections: scan.debug_sections,
            dwarf_units: 0,
            dwarf: OnceLock::new(),
            lookup_warnings: Mutex::new(LookupWarnings::default()),
            covered: AtomicU64::new(0),
            covered_with_line: AtomicU64::new(0),
            boundaries: Mutex::new(Boundaries::default()),
        };
        if let (Some(declared), n) = (scan.declared_funcs, syms.bodies.len()) {
            if declared as usize != n {
                let msg = format!(
                    "{}: function section declares {declared} functions but the code section has {n} bodies",
                    syms.display
                );
                syms.warnings.push(msg);
            }
        }
        syms.names = vec![None; syms.num_funcs() as usize];
        if let Some(range) = scan.name_section {
            syms.parse_names(range);
        }
        syms.count_dwarf_units();
        Ok(syms)
    }

    /// The path given when loading.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The module's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Problems found while loading, one line each, naming the file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether any DWARF look-up so far found a source line.
    pub fn found_lines(&self) -> bool {
        self.covered_with_line.load(Relaxed) > 0
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
        if w.dropped > 0 {
            out.push(format!(
                "{}: {} more DWARF problems not shown",
                self.display, w.dropped
            ));
        }
        out
    }

    /// Number of imported functions (they take the lowest function indices).
    pub fn num_imported_funcs(&self) -> u32 {
        self.imports.len() as u32
    }

    /// Number of functions, imported and defined.
    pub fn num_funcs(&self) -> u32 {
        (self.imports.len() + self.bodies.len()) as u32
    }

    /// Demangled (Rust legacy+v0 via rustc-demangle, C++ Itanium via
    /// cpp_demangle; C names unchanged) name from the name section; for
    /// imports "module::field" (e.g. "wasi_snapshot_preview1::fd_write");
    /// else "wasm-function[N]".
    pub fn function_name(&self, func_index: u32) -> String {
        if let Some((module, field)) = self.import(func_index) {
            return format!("{module}::{field}");
        }
        match self.defined_name(func_index) {
            Some(name) => name.to_string(),
            None => format!("wasm-function[{func_index}]"),
        }
    }

    /// The demangled name-section name of a function, if it has one.
    pub fn defined_name(&self, func_index: u32) -> Option<&str> {
        self.names.get(func_index as usize)?.as_deref()
    }

    /// The (module, field) of an imported function.
    pub fn import(&self, func_index: u32) -> Option<(&str, &str)> {
        let (m, f) = self.imports.get(func_index as usize)?;
        Some((m, f))
    }

    /// The defined function whose body (in the code section) contains this
    /// whole-file offset.
    pub fn function_containing(&self, file_offset: u64) -> Option<u32> {
        let i = self.bodies.partition_point(|b| b.start <= file_offset);
        let body = self.bodies.get(i.checked_sub(1)?)?;
        (file_offset < body.end).then(|| self.num_imported_funcs() + (i - 1) as u32)
    }

    /// The whole-file range of a defined function's body (its local
    /// declarations and instructions, after the body-size LEB).
    pub fn function_body(&self, func_index: u32) -> Option<Range<u64>> {
        let i = func_index.checked_sub(self.num_imported_funcs())?;
        self.bodies.get(i as usize).cloned()
    }

    /// Decodes the instruction starting exactly at this whole-file offset
    /// (inside a function body) — used for a host call's caller: the return
    /// address minus one maps (through Wasmtime's address map) to the offset
    /// of the `call` instruction.
    ///
    /// `None` when the offset is not inside a function body or not at the
    /// start of an instruction (the function is decoded once to know where
    /// its instructions start).
    pub fn call_target(&self, file_offset: u64) -> Option<CallTarget> {
        let func = self.function_containing(file_offset)?;
        let body = self.function_body(func)?;
        let starts = self.instruction_starts(func, &body);
        let rel = u32::try_from(file_offset - body.start).ok()?;
        starts.binary_search(&rel).ok()?;
        let at = usize::try_from(file_offset).ok()?;
        let end = usize::try_from(body.end).ok()?;
        let mut ops = OperatorsReader::new(BinaryReader::new(self.bytes.get(at..end)?, at));
        ops.read().ok().map(|op| classify(&op))
    }

    fn instruction_starts(&self, func: u32, body: &Range<u64>) -> Arc<[u32]> {
        if let Some(hit) = lock(&self.boundaries).by_func.get(&func) {
            return hit.clone();
        }
        let starts: Arc<[u32]> = decode_starts(&self.bytes, body).into();
        let mut b = lock(&self.boundaries);
        if b.total + starts.len() > MAX_CACHED_LOOKUPS * 4 {
            b.by_func.clear();
            b.total = 0;
        }
        b.total += starts.len();
        b.by_func.insert(func, starts.clone());
        starts
    }

    /// Whether the module has `.debug_info` with at least one compile unit.
    pub fn has_dwarf(&self) -> bool {
        self.dwarf_units > 0
    }

    /// Whole-file offset of the first byte of the code section's payload
    /// (DWARF address 0).
    pub fn code_section_payload_start(&self) -> Option<u64> {
        self.code.as_ref().map(|c| c.start)
    }

    /// Whole-file range of the code section's payload.
    pub fn code_section_range(&self) -> Option<Range<u64>> {
        self.code.clone()
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
            Ok(Ok(frames)) => frames,
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

    fn parse_names(&mut self, range: Range<usize>) {
        let data = &self.bytes[range.clone()];
        let mut out_of_range = 0usize;
        let mut duplicates = 0usize;
        let mut bad_utf8 = 0usize;
        let mut problem: Option<(usize, String)> = None;
        let mut seen_functions = false;
        for sub in NameSectionReader::new(BinaryReader::new(data, range.start)) {
            let sub = match sub {
                Ok(sub) => sub,
                Err(e) => {
                    problem = Some((e.offset(), e.message().to_string()));
                    break;
                }
            };
            let Name::Function(map) = sub else {
                continue;
            };
            if seen_functions {
                problem = Some((map.range().start, "second function-names subsection".into()));
                break;
            }
            seen_functions = true;
            // Parsed by hand (rather than through `NameMap`'s iterator) so one
            // name with bad UTF-8 loses only itself, not all later names.
            let r = map.range();
            let mut reader = BinaryReader::new(&self.bytes[r.clone()], r.start);
            let parsed = (|| -> wasmparser::Result<()> {
                let count = reader.read_var_u32()?;
                for _ in 0..count {
                    let index = reader.read_var_u32()?;
                    let len = reader.read_var_u32()? as usize;
                    let raw = reader.read_bytes(len)?;
                    let name = match std::str::from_utf8(raw) {
                        Ok(s) => demangle(s),
                        Err(_) => {
                            bad_utf8 += 1;
                            demangle(&String::from_utf8_lossy(raw))
                        }
                    };
                    match self.names.get_mut(index as usize) {
                        None => out_of_range += 1,
                        Some(Some(_)) => duplicates += 1,
                        Some(slot) => *slot = Some(name.into_boxed_str()),
                    }
                }
                Ok(())
            })();
            if let Err(e) = parsed {
                problem = Some((e.offset(), e.message().to_string()));
                break;
            }
        }
        let d = &self.display;
        if let Some((offset, message)) = problem {
            self.warnings.push(format!(
                "{d}: name section at byte offset {offset:#x}: {message}; functions named after it fall back to index names"
            ));
        }
        if out_of_range > 0 {
            let n = self.num_funcs();
            self.warnings.push(format!(
                "{d}: name section at byte offset {:#x}: {out_of_range} function names have an index beyond the {n} functions; ignored",
                range.start
            ));
        }
        if duplicates > 0 {
            self.warnings.push(format!(
                "{d}: name section at byte offset {:#x}: {duplicates} functions are named more than once; the first name is used",
                range.start
            ));
        }
        if bad_utf8 > 0 {
            self.warnings.push(format!(
                "{d}: name section at byte offset {:#x}: {bad_utf8} function names are not valid UTF-8; shown with U+FFFD",
                range.start
            ));
        }
    }

    fn count_dwarf_units(&mut self) {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Results of walking the sections of a module.
#[derive(Default)]
struct Scan {
    warnings: Vec<String>,
    imports: Vec<(Box<str>, Box<str>)>,
    bodies: Vec<Range<u64>>,
    code: Option<Range<u64>>,
    code_count: Option<u32>,
    declared_funcs: Option<u32>,
    name_section: Option<Range<usize>>,
    debug_sections: HashMap<String, Range<usize>>,
}

impl Scan {
    fn code_done(&self) -> bool {
        match self.code_count {
            Some(n) => self.bodies.len() == n as usize,
            None => false,
        }
    }

    fn walk(&mut self, path: &str, bytes: &[u8]) -> Result<(), SymbolError> {
        let malformed = |offset: usize, message: &str| SymbolError::Malformed {
            path: path.to_string(),
            offset: offset as u64,
            message: message.to_string(),
        };
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = match payload {
                Ok(p) => p,
                Err(e) => {
                    if self.code_done() {
                        self.warnings.push(format!(
                            "{path}: malformed wasm at byte offset {:#x}: {}; sections after it are ignored",
                            e.offset(),
                            e.message()
                        ));
                        return Ok(());
                    }
                    return Err(malformed(e.offset(), e.message()));
                }
            };
            match payload {
                Payload::Version {
                    encoding: Encoding::Component,
                    ..
                } => {
                    return Err(SymbolError::Component {
                        path: path.to_string(),
                    });
                }
                Payload::ImportSection(reader) => {
                    for import in reader {
                        let import = import.map_err(|e| malformed(e.offset(), e.message()))?;
                        if let TypeRef::Func(_) = import.ty {
                            self.imports
                                .push((import.module.into(), import.name.into()));
                        }
                    }
                }
                Payload::FunctionSection(reader) => self.declared_funcs = Some(reader.count()),
                Payload::CodeSectionStart { count, range, .. } => {
                    self.code = Some(range.start as u64..range.end.min(bytes.len()) as u64);
                    self.code_count = Some(count);
                }
                Payload::CodeSectionEntry(body) => {
                    let r = body.range();
                    self.bodies.push(r.start as u64..r.end as u64);
                }
                Payload::CustomSection(section) => {
                    let name = section.name();
                    let data = section.data_offset()..section.data_offset() + section.data().len();
                    if name == "name" {
                        if self.name_section.is_some() {
                            self.warnings.push(format!(
                                "{path}: second name section at byte offset {:#x} ignored",
                                section.range().start
                            ));
                        } else {
                            self.name_section = Some(data);
                        }
                    } else if name.starts_with(".debug_") {
                        if self.debug_sections.contains_key(name) {
                            self.warnings.push(format!(
                                "{path}: second {name} section at byte offset {:#x} ignored",
                                section.range().start
                            ));
                        } else {
                            self.debug_sections.insert(name.to_string(), data);
                        }
                    }
                }
                Payload::End(_) => break,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Byte patches that turn "0" tombstones of old linkers into -1 tombstones.
#[derive(Default)]
struct TombstonePatches {
    /// (offset in .debug_info, new bytes)
    info: Vec<(usize, Vec<u8>)>,
    /// (offset in .debug_ranges, new bytes)
    ranges: Vec<(usize, Vec<u8>)>,
}

impl TombstonePatches {
    fn is_empty(&self) -> bool {
        self.info.is_empty() && self.ranges.is_empty()
    }
}

/// Old wasm-ld versions resolved the DWARF addresses of functions removed by
/// `--gc-sections` to 0 (plus the size for an end address) instead of the -1
/// tombstone. Such a range overlaps the first live functions of the code
/// section and breaks look-ups there (addr2line's binary search assumes
/// non-overlapping functions). No live code starts below the first body, so
/// every `DW_AT_low_pc` (of a subprogram, or a compile unit without
/// `DW_AT_ranges`) below it, and every DWARF 4 `.debug_ranges` entry of a
/// compile unit starting below it, is dead: this finds them, only in compile
/// units whose ranges reach below the first body (none with a current
/// toolchain, so this usually costs one pass over the unit headers).
fn find_zero_tombstones(dwarf: &gimli::Dwarf<DwarfReader>, first_body: u64) -> TombstonePatches {
    let mut patches = TombstonePatches::default();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let suspicious = (|| -> gimli::Result<bool> {
            let mut ranges = dwarf.unit_ranges(&unit)?;
            while let Some(r) = ranges.next()? {
                if r.begin < first_body {
                    return Ok(true);
                }
            }
            Ok(false)
        })()
        .unwrap_or(false);
        if suspicious {
            // Errors stop the walk of this unit; what was found stays.
            let _ = patch_unit(dwarf, &unit, first_body, &mut patches);
        }
    }
    patches
}

fn patch_unit(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    first_body: u64,
    patches: &mut TombstonePatches,
) -> gimli::Result<()> {
    use gimli::constants::*;
    let size = unit.header.address_size();
    if !matches!(size, 4 | 8) {
        return Ok(());
    }
    let ones = u64::MAX >> (64 - 8 * u32::from(size));
    let mut entries = unit.entries_raw(None)?;
    let mut is_root = true;
    while !entries.is_empty() {
        let Some(abbrev) = entries.read_abbreviation()? else {
            continue;
        };
        let tag = abbrev.tag();
        let has = |name| abbrev.attributes().iter().any(|s| s.name() == name);
        let contiguous = has(DW_AT_high_pc) && !has(DW_AT_ranges);
        let patchable =
            contiguous && (tag == DW_TAG_subprogram || (is_root && tag == DW_TAG_compile_unit));
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            if is_root && attr.name() == DW_AT_ranges && unit.header.version() <= 4 {
                if let Some(offset) = dwarf.attr_ranges_offset(unit, attr.value())? {
                    patch_debug_ranges(dwarf, unit, offset.0, first_body, patches);
                }
            }
            if !patchable || attr.name() != DW_AT_low_pc || spec.form() != DW_FORM_addr {
                continue;
            }
            let gimli::AttributeValue::Addr(low) = attr.value() else {
                continue;
            };
            if low >= first_body {
                continue;
            }
            let end = entries.next_offset().0;
            let Some(pos) = end
                .checked_sub(usize::from(size))
                .and_then(|p| gimli::UnitOffset(p).to_debug_info_offset(&unit.header))
            else {
                continue;
            };
            patches
                .info
                .push((pos.0, ones.to_le_bytes()[..usize::from(size)].to_vec()));
        }
        is_root = false;
    }
    Ok(())
}

/// Empties the entries of a DWARF 4 range list that start below the first
/// body (they belong to removed functions): each becomes `[1, 1)`, which is
/// neither an end-of-list nor a base-address entry and covers nothing.
fn patch_debug_ranges(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    offset: usize,
    first_body: u64,
    patches: &mut TombstonePatches,
) {
    let size = usize::from(unit.header.address_size());
    let data: &[u8] = gimli::Section::reader(dwarf.ranges.debug_ranges()).bytes();
    let ones = u64::MAX >> (64 - 8 * size as u32);
    let mut base = unit.low_pc;
    let mut at = offset;
    let read = |at: usize| -> Option<u64> {
        let b = data.get(at..at.checked_add(size)?)?;
        let mut v = [0u8; 8];
        v[..size].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    // Bounded by the section: every entry advances by 2 * size bytes.
    while let (Some(begin), Some(end)) = (read(at), read(at + size)) {
        if begin == 0 && end == 0 {
            break;
        }
        if begin == ones {
            base = end;
        } else if begin < end && base.saturating_add(begin) < first_body {
            let mut one = vec![0u8; size];
            one[0] = 1;
            patches.ranges.push((at, one.clone()));
            patches.ranges.push((at + size, one));
        }
        at += 2 * size;
    }
}

/// Collects the frames of one DWARF address.
fn lookup_frames(
    ctx: &addr2line::Context<DwarfReader>,
    probe: u64,
) -> Result<Vec<SourceFrame>, gimli::Error> {
    let mut iter = ctx.find_frames(probe).skip_all_loads()?;
    let unit = ctx.find_dwarf_and_unit(probe).skip_all_loads();
    let mut frames = Vec::new();
    while let Some(frame) = iter.next()? {
        if frames.len() >= MAX_INLINE_DEPTH {
            return Err(gimli::Error::UnsupportedOffset);
        }
        let function = match &frame.function {
            Some(f) => Some(demangle_dwarf(&f.raw_name()?, f.language)),
            None => None,
        };
        let (file, line, column) = match &frame.location {
            Some(loc) => (loc.file.map(clean_path), loc.line, loc.column),
            None => (None, None, None),
        };
        let decl_line = match (unit, frame.dw_die_offset) {
            (Some(unit), Some(offset)) => decl_line(unit, offset),
            _ => None,
        };
        frames.push(SourceFrame {
            function,
            file,
            line,
            column,
            decl_line,
        });
    }
    Ok(frames)
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

/// Demangles a symbol name: Rust (legacy and v0, without the hash), C++
/// (Itanium); anything else is returned unchanged. A Rust name that a
/// linker already demangled (ending in `::h` and 16 hex digits) loses the
/// hash.
pub fn demangle(name: &str) -> String {
    if let Some(d) = demangle_rust(name).or_else(|| demangle_cpp(name)) {
        return d;
    }
    if let Some(stem) = strip_rust_hash(name) {
        return stem.to_string();
    }
    name.to_string()
}

/// Demangles a DWARF name by its compile unit's language, like
/// `addr2line`'s `demangle_auto`, but only `_Z` names as C++ and with the
/// output bounded.
fn demangle_dwarf(name: &str, language: Option<gimli::DwLang>) -> String {
    let demangled = match language {
        Some(gimli::DW_LANG_Rust) => demangle_rust(name),
        Some(
            gimli::DW_LANG_C_plus_plus
            | gimli::DW_LANG_C_plus_plus_03
            | gimli::DW_LANG_C_plus_plus_11
            | gimli::DW_LANG_C_plus_plus_14,
        ) => demangle_cpp(name),
        Some(_) => None,
        None => demangle_rust(name).or_else(|| demangle_cpp(name)),
    };
    demangled.unwrap_or_else(|| name.to_string())
}

fn demangle_rust(name: &str) -> Option<String> {
    use fmt::Write as _;
    let d = rustc_demangle::try_demangle(name).ok()?;
    let mut out = Bounded::for_name(name);
    write!(out, "{d:#}").ok()?;
    Some(out.0)
}

/// A demangled name longer than this, or than [`MAX_DEMANGLED_RATIO`] times
/// the mangled name, is left mangled: crafted names can demangle to
/// exponentially long output (rustc-demangle stops at 1 MB, cpp_demangle
/// never), and the names of a module must stay proportional to its size.
const MAX_DEMANGLED_LEN: usize = 64 * 1024;
const MAX_DEMANGLED_RATIO: usize = 64;

/// A string that refuses to grow beyond a limit.
struct Bounded(String, usize);

impl Bounded {
    fn for_name(name: &str) -> Bounded {
        let limit = MAX_DEMANGLED_LEN.min(MAX_DEMANGLED_RATIO * name.len().max(16));
        Bounded(String::new(), limit)
    }
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.0.len() + s.len() > self.1 {
            return Err(fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

fn demangle_cpp(name: &str) -> Option<String> {
    if !name.starts_with("_Z") {
        return None;
    }
    let sym = cpp_demangle::Symbol::new(name).ok()?;
    let mut out = Bounded::for_name(name);
    sym.structured_demangle(&mut out, &cpp_demangle::DemangleOptions::default())
        .ok()?;
    Some(out.0)
}

fn strip_rust_hash(name: &str) -> Option<&str> {
    let (stem, hash) = name.rsplit_once("::h")?;
    (hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !stem.is_empty())
        .then_some(stem)
}

/// The start offsets (relative to the body start) of a body's instructions,
/// up to the first one that cannot be decoded.
fn decode_starts(bytes: &[u8], body: &Range<u64>) -> Vec<u32> {
    let mut starts = Vec::new();
    let (Ok(start), Ok(end)) = (usize::try_from(body.start), usize::try_from(body.end)) else {
        return starts;
    };
    let Some(data) = bytes.get(start..end) else {
        return starts;
    };
    let Ok(mut ops) = FunctionBody::new(BinaryReader::new(data, start)).get_operators_reader()
    else {
        return starts;
    };
    while !ops.eof() {
        let pos = ops.original_position() - start;
        if ops.read().is_err() {
            break;
        }
        starts.push(pos as u32);
    }
    starts
}

fn classify(op: &Operator<'_>) -> CallTarget {
    match op {
        Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
            CallTarget::Direct(*function_index)
        }
        Operator::CallIndirect { .. }
        | Operator::ReturnCallIndirect { .. }
        | Operator::CallRef { .. }
        | Operator::ReturnCallRef { .. } => CallTarget::Indirect,
        other => CallTarget::Other(operator_name(other)),
    }
}

macro_rules! define_visit_names {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        /// wasmparser's `visit_*` method name of an operator.
        fn visit_name(op: &Operator<'_>) -> &'static str {
            match op {
                $( Operator::$op { .. } => stringify!($visit), )*
                #[allow(unreachable_patterns)]
                _ => "visit_unknown",
            }
        }
        /// All `visit_*` names.
        const VISIT_NAMES: &[&str] = &[$(stringify!($visit)),*];
    };
}
wasmparser::for_each_operator!(define_visit_names);

/// The text-format name of an operator, e.g. `memory.grow`,
/// `i32.atomic.rmw.add`, `call_indirect`.
pub fn operator_name(op: &Operator<'_>) -> &'static str {
    static NAMES: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| VISIT_NAMES.iter().map(|v| (*v, text_name(v))).collect());
    let visit = visit_name(op);
    names.get(visit).map_or("unknown", |s| s.as_str())
}

/// `visit_i32_atomic_rmw8_add_u` → `i32.atomic.rmw8.add_u`.
fn text_name(visit: &str) -> String {
    const PREFIXES: &[&str] = &[
        "i32", "i64", "f32", "f64", "v128", "i8x16", "i16x8", "i32x4", "i64x2", "f32x4", "f64x2",
        "memory", "table", "local", "global", "ref", "elem", "data", "struct", "array", "i31",
        "any", "extern", "atomic", "cont",
    ];
    let s = visit.strip_prefix("visit_").unwrap_or(visit);
    if s == "typed_select" || s == "typed_select_multi" {
        return "select".to_string();
    }
    let parts: Vec<&str> = s.split('_').collect();
    if parts.len() < 2 || !PREFIXES.contains(&parts[0]) {
        return s.to_string();
    }
    let mut out = format!("{}.", parts[0]);
    let mut rest = &parts[1..];
    if rest.len() >= 2 && rest[0] == "atomic" {
        out.push_str("atomic.");
        rest = &rest[1..];
        if rest.len() >= 2 && rest[0].starts_with("rmw") {
            out.push_str(rest[0]);
            out.push('.');
            rest = &rest[1..];
        }
    }
    out.push_str(&rest.join("_"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names() {
        assert_eq!(text_name("visit_memory_grow"), "memory.grow");
        assert_eq!(text_name("visit_i32_add"), "i32.add");
        assert_eq!(text_name("visit_i32_trunc_f32_s"), "i32.trunc_f32_s");
        assert_eq!(
            text_name("visit_i32_atomic_rmw8_add_u"),
            "i32.atomic.rmw8.add_u"
        );
        assert_eq!(
            text_name("visit_memory_atomic_wait32"),
            "memory.atomic.wait32"
        );
        assert_eq!(text_name("visit_atomic_fence"), "atomic.fence");
        assert_eq!(text_name("visit_call_indirect"), "call_indirect");
        assert_eq!(text_name("visit_br_if"), "br_if");
        assert_eq!(text_name("visit_local_get"), "local.get");
        assert_eq!(text_name("visit_ref_is_null"), "ref.is_null");
        assert_eq!(text_name("visit_typed_select"), "select");
        assert_eq!(
            operator_name(&Operator::MemoryGrow { mem: 0 }),
            "memory.grow"
        );
        assert_eq!(operator_name(&Operator::Nop), "nop");
        assert_eq!(operator_name(&Operator::I32Const { value: 1 }), "i32.const");
    }

    #[test]
    fn demangling() {
        assert_eq!(demangle("fib"), "fib");
        assert_eq!(demangle("__main_argc_argv"), "__main_argc_argv");
        assert_eq!(
            demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(demangle("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(demangle("_Z3addii"), "add(int, int)");
        assert_eq!(
            demangle("core::fmt::write::h0123456789abcdef"),
            "core::fmt::write"
        );
        assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
        assert_eq!(demangle("i"), "i");
        assert_eq!(demangle_dwarf("f", Some(gimli::DW_LANG_C_plus_plus)), "f");
        assert_eq!(
            demangle_dwarf("_Z3addii", Some(gimli::DW_LANG_C_plus_plus_11)),
            "add(int, int)"
        );
        assert_eq!(
            demangle_dwarf("_Z3addii", Some(gimli::DW_LANG_C11)),
            "_Z3addii"
        );
        assert_eq!(
            demangle_dwarf("_ZN4core3fmt5write17h0123456789abcdefE", None),
            "core::fmt::write"
        );
        // Each parameter is pair<previous, previous>, by substitution: the
        // output doubles with each one (2^60 characters if not bounded).
        let seq = |k: usize| {
            // S_, S0_, S1_, ... (base 36).
            if k == 0 {
                return "S_".to_string();
            }
            let (mut k, mut digits) = (k - 1, Vec::new());
            loop {
                digits.push(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k % 36] as char);
                k /= 36;
                if k == 0 {
                    break;
                }
            }
            format!("S{}_", digits.iter().rev().collect::<String>())
        };
        let mut evil = String::from("_Z1fSt4pairIiiE");
        for n in 1..60 {
            evil.push_str(&format!("S_I{0}{0}E", seq(n)));
        }
        let small = format!("_Z1fSt4pairIiiES_I{0}{0}E", seq(1));
        assert_eq!(
            demangle(&small),
            "f(std::pair<int, int>, std::pair<std::pair<int, int>, std::pair<int, int> >)"
        );
        let start = std::time::Instant::now();
        assert_eq!(demangle(&evil), evil);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(demangle(""), "");
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("./fixtures/src/fib.c"), "fixtures/src/fib.c");
        assert_eq!(
            clean_path("./build/./libc-bottom-half/crt/crt1-command.c"),
            "build/libc-bottom-half/crt/crt1-command.c"
        );
        assert_eq!(clean_path("/tmp/./x/../y.c"), "/tmp/x/../y.c");
        assert_eq!(clean_path("/usr/include/stdio.h"), "/usr/include/stdio.h");
        assert_eq!(clean_path("fib.c"), "fib.c");
        assert_eq!(clean_path("./"), ".");
        assert_eq!(clean_path("."), ".");
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<WasmSymbols>();
    }

    /// A module built by hand: (import "env" "f" (func)), two defined
    /// functions, the second calling the import, with a name section.
    fn tiny_module(names: &[u8]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type 0: () -> ()
        m.extend_from_slice(&[2, 9, 1, 3, b'e', b'n', b'v', 1, b'f', 0, 0]); // import env::f
        m.extend_from_slice(&[3, 3, 2, 0, 0]); // two functions of type 0
                                               // code: body0 = [0 locals, nop, end]; body1 = [0 locals, call 0, end]
        m.extend_from_slice(&[10, 10, 2, 3, 0, 0x01, 0x0b, 4, 0, 0x10, 0x00, 0x0b]);
        if !names.is_empty() {
            let mut sec = vec![4u8, b'n', b'a', b'm', b'e'];
            sec.extend_from_slice(names);
            m.push(0);
            m.push(sec.len() as u8);
            m.extend_from_slice(&sec);
        }
        m
    }

    fn function_names_subsection(entries: &[(u32, &[u8])]) -> Vec<u8> {
        let mut body = vec![entries.len() as u8];
        for (index, name) in entries {
            body.push(*index as u8);
            body.push(name.len() as u8);
            body.extend_from_slice(name);
        }
        let mut sub = vec![1u8, body.len() as u8];
        sub.extend_from_slice(&body);
        sub
    }

    #[test]
    fn tiny_module_names_and_calls() {
        let names = function_names_subsection(&[(1, b"first"), (2, b"_ZN3foo3barEv")]);
        let m = tiny_module(&names);
        let s = WasmSymbols::from_bytes(Path::new("tiny.wasm"), m.clone()).unwrap();
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
        assert_eq!(s.num_imported_funcs(), 1);
        assert_eq!(s.num_funcs(), 3);
        assert_eq!(s.function_name(0), "env::f");
        assert_eq!(s.function_name(1), "first");
        assert_eq!(s.function_name(2), "foo::bar()");
        assert_eq!(s.function_name(3), "wasm-function[3]");
        assert!(!s.has_dwarf());
        let body1 = s.function_body(2).unwrap();
        // body1: [0 locals][call 0][end]
        assert_eq!(s.function_containing(body1.start + 1), Some(2));
        assert_eq!(s.call_target(body1.start + 1), Some(CallTarget::Direct(0)));
        assert_eq!(
            s.call_target(body1.start + 2),
            None,
            "not an instruction start"
        );
        assert_eq!(
            s.call_target(body1.start + 3),
            Some(CallTarget::Other("end"))
        );
        let body0 = s.function_body(1).unwrap();
        assert_eq!(
            s.call_target(body0.start + 1),
            Some(CallTarget::Other("nop"))
        );
        assert_eq!(s.function_containing(body0.start - 1), None);
        assert!(s.source_frames(body0.start + 1).is_empty());
        let code = s.code_section_range().unwrap();
        assert_eq!(
            code.start + 2,
            body0.start,
            "count LEB, size LEB, then the body"
        );
    }

    #[test]
    fn tiny_module_bad_names_degrade() {
        // Bad UTF-8, an out-of-range index and a duplicate.
        let names =
            function_names_subsection(&[(1, b"ok"), (2, b"\xff\xfe"), (9, b"far"), (1, b"dup")]);
        let s = WasmSymbols::from_bytes(Path::new("bad.wasm"), tiny_module(&names)).unwrap();
        assert_eq!(s.function_name(1), "ok");
        assert_eq!(s.function_name(2), "\u{fffd}\u{fffd}");
        assert_eq!(s.warnings().len(), 3, "{:?}", s.warnings());
        assert!(s
            .warnings()
            .iter()
            .all(|w| w.starts_with("bad.wasm: name section at byte offset 0x")));

        // A truncated subsection: a count larger than the entries present.
        let mut names = function_names_subsection(&[(1, b"ok")]);
        names[2] = 100; // a one-byte LEB
        let s = WasmSymbols::from_bytes(Path::new("bad.wasm"), tiny_module(&names)).unwrap();
        assert_eq!(s.function_name(1), "ok", "{:?}", s.warnings());
        assert_eq!(s.function_name(2), "wasm-function[2]");
        assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
    }

    #[test]
    fn not_wasm_errors() {
        let e = WasmSymbols::from_bytes(Path::new("x.wasm"), b"hello world".to_vec()).unwrap_err();
        assert_eq!(e.to_string(), "x.wasm: not a wasm module (bad magic)");
        let e =
            WasmSymbols::from_bytes(Path::new("x.wasm"), b"\0asm\x02\0\0\0".to_vec()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.wasm: malformed wasm at byte offset 0x"),
            "{e}"
        );
        let e = WasmSymbols::from_bytes(Path::new("c.wasm"), b"\0asm\x0d\0\x01\0".to_vec())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.wasm: a WebAssembly component, not a core wasm module"
        );
        let e = WasmSymbols::open(Path::new("/nonexistent/dir/y.wasm")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/dir/y.wasm: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn truncations_never_panic() {
        let names = function_names_subsection(&[(1, b"first"), (2, b"second")]);
        let m = tiny_module(&names);
        for len in 0..m.len() {
            if let Ok(s) = WasmSymbols::from_bytes(Path::new("t.wasm"), m[..len].to_vec()) {
                for f in 0..4 {
                    let _ = s.function_name(f);
                }
                for off in 0..len as u64 + 2 {
                    let _ = s.call_target(off);
                    let _ = s.source_frames(off);
                    let _ = s.function_containing(off);
                }
            }
        }
    }
}
