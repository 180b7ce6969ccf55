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
//!
//! Where things are:
//! - this file: [`WasmSymbols`], its loading and its index (functions,
//!   bodies, imports, call targets);
//! - `scan.rs`: the walk over the module's sections;
//! - `names.rs`: the name section;
//! - `dwarf.rs`: DWARF source frames, their cache and their warnings;
//! - `tombstones.rs`: the patching of old linkers' "0" tombstones in DWARF;
//! - `demangle.rs`: Rust and C++ demangling, bounded;
//! - `opcodes.rs`: instruction starts, call targets and text-format
//!   operator names.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use wasmparser::{BinaryReader, OperatorsReader};

pub mod component;
mod demangle;
mod dwarf;
mod names;
mod opcodes;
mod scan;
#[cfg(test)]
mod tests;
mod tombstones;

pub use demangle::{demangle, shorten, MAX_NAME_BYTES};
pub use dwarf::clean_path;
pub use opcodes::operator_name;

use dwarf::{DwarfState, LookupWarnings, MAX_CACHED_LOOKUPS};
use opcodes::{classify, decode_starts};
use scan::Scan;

/// Why a module could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file does not start with the wasm magic `\0asm` and is not text.
    #[error("{path}: not a wasm module (bad magic)")]
    NotWasm { path: String },
    /// The file is text but not a module in the wasm text format.
    #[error("{path}: not a wasm module: {message}")]
    Text { path: String, message: String },
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
    /// Reads and indexes a wasm file, binary or text (see
    /// [`binary_module`]), if it is a regular file of at most
    /// [`MAX_MODULE_BYTES`](crate::files::MAX_MODULE_BYTES); see
    /// [`WasmSymbols::from_bytes`].
    pub fn open(path: &Path) -> Result<WasmSymbols, SymbolError> {
        let bytes =
            crate::files::read_bounded(path, crate::files::MAX_MODULE_BYTES).map_err(|source| {
                SymbolError::Io {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        Self::from_file_bytes(path, bytes)
    }

    /// Indexes the bytes of a wasm file, binary or text (see
    /// [`binary_module`]).
    pub fn from_file_bytes(path: &Path, bytes: Vec<u8>) -> Result<WasmSymbols, SymbolError> {
        Self::from_bytes(path, binary_module(path, bytes)?)
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
    /// else `"wasm-function[N]"`.
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
}

/// The binary module in a wasm file's bytes: the bytes themselves for a
/// binary module (or anything else that is not text: [`WasmSymbols::from_bytes`]
/// judges it), else the text format compiled to binary as Wasmtime does it
/// (`wat::parse_bytes`, the same crate and version), so the wasm offsets a
/// trace recorded for a `.wat` file are offsets into this binary. wrec
/// hashes the file as it is, text or binary: hash the bytes given here, not
/// the result.
pub fn binary_module(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, SymbolError> {
    // Text starts with a `(` (a module or a field) or a `;;`/`(;` comment.
    let is_text = std::str::from_utf8(&bytes).is_ok_and(|t| t.trim_start().starts_with(['(', ';']));
    if !is_text {
        return Ok(bytes);
    }
    let display = || path.display().to_string();
    if bytes.len() as u64 > crate::files::MAX_TEXT_MODULE_BYTES {
        return Err(SymbolError::Text {
            path: display(),
            message: format!(
                "a text module larger than {}",
                crate::files::size(crate::files::MAX_TEXT_MODULE_BYTES)
            ),
        });
    }
    match wat::parse_bytes(&bytes) {
        Ok(binary) => Ok(binary.into_owned()),
        Err(e) => {
            // The error's text spans several lines (the line quoted, a
            // caret): keep its message and where.
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim);
            let message = lines.next().unwrap_or("").to_owned();
            let at = lines
                .next()
                .and_then(|l| l.strip_prefix("--> "))
                .and_then(|l| l.trim_start_matches("<anon>:").split_once(':'))
                .map(|(line, column)| format!(" (line {line}, column {column})"))
                .unwrap_or_default();
            Err(SymbolError::Text {
                path: display(),
                message: format!("bad magic, and not in the wasm text format: {message}{at}"),
            })
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
