//! The recorded modules: each read from the path the trace recorded, or
//! from a `--module` file with the same SHA-256, and indexed once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wrec_format::ModuleRecord;

use super::resolver::UNKNOWN;
use super::{file_name, AnalyzeError, Options};
use crate::files::{self, MAX_MODULE_BYTES};
use crate::model::{Lib, Meta, Profile};
use crate::symbols::{component, WasmSymbols};

/// A loaded module: what the trace recorded and what the wasm file says.
pub(super) struct Module {
    pub(super) rec: ModuleRecord,
    /// Shared by every module record with the same SHA-256.
    pub(super) symbols: Arc<WasmSymbols>,
    pub(super) lib: u32,
    pub(super) dwarf: bool,
}

impl Module {
    /// The same module recorded again (same SHA-256): it shares this one's
    /// symbols and library, so memory stays proportional to the files, not
    /// to the number of module records times the module's size.
    pub(super) fn again(&self, rec: ModuleRecord) -> Module {
        Module {
            rec,
            symbols: self.symbols.clone(),
            lib: self.lib,
            dwarf: self.dwarf,
        }
    }
}

/// A `--module` file: its path, bytes and SHA-256.
struct Override {
    path: PathBuf,
    bytes: Vec<u8>,
    sha256: [u8; 32],
}

/// The `--module` files, read and hashed, and which of them matched a
/// module record.
pub(super) struct Overrides {
    files: Vec<Override>,
    used: Vec<bool>,
}

impl Overrides {
    /// Reads and hashes the files.
    pub(super) fn load(paths: &[PathBuf]) -> Result<Self, AnalyzeError> {
        let files = paths
            .iter()
            .map(|p| {
                let bytes = read_module_file(p).map_err(|source| AnalyzeError::Io {
                    path: p.clone(),
                    source,
                })?;
                let sha256 = sha256(&bytes);
                Ok(Override {
                    path: p.clone(),
                    bytes,
                    sha256,
                })
            })
            .collect::<Result<Vec<_>, AnalyzeError>>()?;
        Ok(Overrides {
            used: vec![false; files.len()],
            files,
        })
    }

    /// The path and bytes of the first file with this hash, which is
    /// used from now on.
    fn take(&mut self, sha256: &[u8; 32]) -> Option<(PathBuf, Vec<u8>)> {
        let i = self.files.iter().position(|o| &o.sha256 == sha256)?;
        self.used[i] = true;
        Some((self.files[i].path.clone(), self.files[i].bytes.clone()))
    }

    /// The first file given, if any.
    fn first(&self) -> Option<&Path> {
        self.files.first().map(|o| o.path.as_path())
    }

    /// The files no module record used, in the order given.
    pub(super) fn unused(&self) -> impl Iterator<Item = &Path> {
        self.files
            .iter()
            .zip(&self.used)
            .filter(|(_, &used)| !used)
            .map(|(o, _)| o.path.as_path())
    }
}

/// Reads and indexes the module of `rec`: the `--module` file with its
/// hash, else the recorded path if its hash matches. A warning goes to
/// `meta` when `--dwarf` finds no DWARF; the module's library to `profile`.
/// `None`, with a warning, when the recorded path is not a file that can
/// be the module (a device, a FIFO, a directory, a file over the limit).
pub(super) fn load_module(
    rec: ModuleRecord,
    overrides: &mut Overrides,
    opts: &Options,
    meta: &mut Meta,
    profile: &mut Profile,
) -> Result<Option<Module>, AnalyzeError> {
    let (path, bytes) = match overrides.take(&rec.sha256) {
        Some(found) => found,
        None => {
            let path = PathBuf::from(&rec.path);
            // The analyzer reads the recorded path only if its hash matches.
            let bytes = match read_module_file(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A file name that was not UTF-8 was recorded with
                    // U+FFFD in it: the file whose name reads so and
                    // whose hash matches.
                    match find_lossy(&rec) {
                        Some(found) => return finish_load(rec, found, opts, meta, profile),
                        None => return Err(AnalyzeError::ModuleMissing { path }),
                    }
                }
                Err(e) if is_not_a_module_file(&e) => {
                    meta.warnings.push(format!(
                        "{}: the module recorded in the trace is {e}: not read, so its samples show as {UNKNOWN}; pass the wasm file that was profiled with --module PATH",
                        path.display()
                    ));
                    return Ok(None);
                }
                Err(source) => return Err(AnalyzeError::Io { path, source }),
            };
            if sha256(&bytes) != rec.sha256 {
                if let Some(p) = overrides.first() {
                    return Err(AnalyzeError::ModuleUnmatched {
                        path: p.to_owned(),
                        recorded: rec.path.clone(),
                    });
                }
                return Err(AnalyzeError::ModuleChanged { path });
            }
            (path, bytes)
        }
    };
    finish_load(rec, (path, bytes), opts, meta, profile)
}

/// The file [`files::lossy_matches`] finds for a recorded path with
/// U+FFFD in it whose SHA-256 is the recorded one.
fn find_lossy(rec: &ModuleRecord) -> Option<(PathBuf, Vec<u8>)> {
    files::lossy_matches(&rec.path).into_iter().find_map(|p| {
        let bytes = read_module_file(&p).ok()?;
        (sha256(&bytes) == rec.sha256).then_some((p, bytes))
    })
}

/// Indexes a module read from `path`, its hash checked.
fn finish_load(
    rec: ModuleRecord,
    (path, bytes): (PathBuf, Vec<u8>),
    opts: &Options,
    meta: &mut Meta,
    profile: &mut Profile,
) -> Result<Option<Module>, AnalyzeError> {
    // A text module (`.wat`): wrec hashed its text, and so did the check
    // above; the offsets are the compiled binary's.
    let bytes = crate::symbols::binary_module(&path, bytes)?;
    // A core module inside a component: its own bytes, named after the
    // component and its number there (SPEC.md §2.2).
    let (sym_path, bytes, name) = match &rec.inner {
        None => (path.clone(), bytes, file_name(&path.to_string_lossy())),
        Some(inner) => {
            let module =
                component::inner_bytes(&bytes, inner).ok_or_else(|| AnalyzeError::InnerModule {
                    path: path.clone(),
                    index: inner.index,
                })?;
            let label = component::inner_label(&file_name(&path.to_string_lossy()), inner, &module);
            let sym_path = PathBuf::from(format!("{} ({})", path.display(), label));
            (sym_path, module, label)
        }
    };
    // Wasm tooling's own modules inside a component (adapters, shims) carry
    // no DWARF, and need none to be named: only the program's are worth a
    // warning.
    let tooling = rec
        .inner
        .is_some_and(|i| i.len == 0 || name.contains("(wit-component:"));
    let symbols = WasmSymbols::from_bytes(&sym_path, bytes)?;
    let dwarf = opts.dwarf && symbols.has_dwarf();
    if opts.dwarf && !symbols.has_dwarf() && !tooling {
        meta.warnings.push(format!(
            "{}: has no DWARF debug info, so the profile has function names but no source lines (rebuild with -g)",
            sym_path.display()
        ));
    }
    profile.libs.push(Lib {
        name,
        local_path: path.clone(),
        sha256: hex(&rec.sha256),
        inner: rec.inner,
    });
    Ok(Some(Module {
        rec,
        symbols: Arc::new(symbols),
        lib: (profile.libs.len() - 1) as u32,
        dwarf,
    }))
}

/// The bytes of a wasm file a trace or `--module` names: a regular file
/// (opened without blocking, so a FIFO cannot hang the analysis) of at
/// most [`MAX_MODULE_BYTES`], of which at most one byte more is read.
fn read_module_file(path: &Path) -> std::io::Result<Vec<u8>> {
    files::read_bounded(path, MAX_MODULE_BYTES)
}

/// Whether a read failed because the path names no file that could be a
/// module (rather than one that cannot be read now).
fn is_not_a_module_file(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), InvalidInput | IsADirectory | FileTooLarge)
}

/// What makes two module records the same module: the file's hash and, in
/// a component, the inner module's number.
pub(super) type ModuleKey = ([u8; 32], Option<u32>);

pub(super) fn module_key(rec: &ModuleRecord) -> ModuleKey {
    (rec.sha256, rec.inner.map(|i| i.index))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
