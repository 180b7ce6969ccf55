//! `wanalyze view`: open a recording in the Firefox Profiler, with its
//! sources and its wasm code.
//!
//! The profile (from a trace, analyzed with DWARF and its sources embedded,
//! or a profile JSON `wanalyze` wrote) is served on 127.0.0.1 under a
//! random path token, with the two symbol-server requests the profiler
//! makes when it is opened with `?symbolServer=`:
//!
//! - `POST /source/v1`: the text of a source file the profile names (for
//!   a profile without embedded text, or one written with `--no-sources`
//!   elsewhere), found as `--source-root`/`--source-map` say;
//! - `POST /asm/v1`: the wasm instructions of a function of one of the
//!   profile's modules, at their offsets from the function's body, so the
//!   assembly view shows wasm bytecode with per-instruction samples (the
//!   profile's frame addresses are the same whole-file offsets).
//!
//! Nothing else is served: no other file, no directory listing, and
//! nothing without the token (404). It runs until Ctrl-C.
//!
//! - this file: [`run`], loading what is served ([`Served`]);
//! - `server.rs`: the HTTP side (routes, CORS, the URL);
//! - `asm.rs`: a function's instructions as text.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::files::{self, MAX_PROFILE_BYTES};
use crate::model::Profile;
use crate::sources::{self, SourcePaths, MAX_FILE_BYTES};
use crate::symbols::{component, WasmSymbols};
use crate::{firefox, resolve};

pub mod asm;
mod server;

pub use server::{percent_encode, profiler_url, Server};

/// Options of `wanalyze view`.
#[derive(Debug, Clone, Default)]
pub struct ViewOptions {
    /// Wasm files to use instead of the recorded paths (matched by SHA-256).
    pub modules: Vec<PathBuf>,
    /// Port on 127.0.0.1; 0 for any free one.
    pub port: u16,
    /// Where source files are; `None`: serve and embed none.
    pub sources: Option<SourcePaths>,
}

/// A module of the profile, by the names the profiler asks with.
pub struct ServedLib {
    pub debug_name: String,
    pub breakpad_id: String,
    pub symbols: WasmSymbols,
}

/// Everything `view` serves.
pub struct Served {
    /// The profile JSON.
    pub profile: Vec<u8>,
    pub libs: Vec<ServedLib>,
    /// The source files the profile names, with their text if it is
    /// embedded (else it is read on request).
    pub files: BTreeMap<String, Option<String>>,
    pub sources: Option<SourcePaths>,
}

impl Served {
    /// The text of `file`, if the profile names it and it can be read.
    pub fn source(&self, file: &str) -> Option<String> {
        let paths = self.sources.as_ref()?;
        match self.files.get(file)? {
            Some(text) => Some(text.clone()),
            None => {
                // One file's worth per request: it is read again each time.
                let mut budget = MAX_FILE_BYTES;
                paths.read(file, &mut budget).ok()
            }
        }
    }

    /// The module the profiler names by `debugName` and `debugId`.
    pub fn lib(&self, debug_name: &str, debug_id: &str) -> Option<&ServedLib> {
        self.libs
            .iter()
            .find(|l| l.debug_name == debug_name && l.breakpad_id.eq_ignore_ascii_case(debug_id))
    }

    /// Loads a trace (analyzed with DWARF, sources embedded) or a profile
    /// JSON (`.json`, `.json.gz`); returns it and the warnings to print.
    pub fn load(input: &Path, opts: &ViewOptions) -> anyhow::Result<(Served, Vec<String>)> {
        let mut head = [0u8; 2];
        // A regular file only: a FIFO or a device is neither.
        let n = files::open_regular(input)
            .and_then(|(mut f, _)| f.read(&mut head))
            .with_context(|| format!("{}", input.display()))?;
        if n == 2 && (head[0] == b'{' || head == [0x1f, 0x8b]) {
            Self::from_json(input, opts)
        } else {
            Self::from_trace(input, opts)
        }
    }

    fn from_trace(trace: &Path, opts: &ViewOptions) -> anyhow::Result<(Served, Vec<String>)> {
        let ropts = resolve::Options {
            dwarf: true,
            modules: opts.modules.clone(),
            by_function: false,
            last: None,
        };
        let mut profile: Profile = resolve::analyze(trace, &ropts, &mut |_, _| {})?;
        let mut warnings = std::mem::take(&mut profile.meta.warnings);
        if let Some(paths) = &opts.sources {
            warnings.extend(sources::embed(&mut profile, paths));
        }
        let mut json = Vec::new();
        firefox::write(&profile, &mut json)?;
        let files = sources::files(&profile)
            .into_iter()
            .map(|f| (f.to_owned(), profile.source_text(f).map(str::to_owned)))
            .collect();
        // Each from where the analysis read it (the profile names it by
        // its file name only).
        let libs = profile
            .libs
            .iter()
            .map(|l| {
                load_lib(
                    &firefox::lib_json(l),
                    std::slice::from_ref(&l.local_path),
                    &opts.modules,
                    l.inner.as_ref(),
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let served = Served {
            profile: json,
            libs: libs.into_iter().flatten().collect(),
            files,
            sources: opts.sources.clone(),
        };
        Ok((served, warnings))
    }

    fn from_json(path: &Path, opts: &ViewOptions) -> anyhow::Result<(Served, Vec<String>)> {
        let raw = files::read_bounded(path, MAX_PROFILE_BYTES)
            .with_context(|| format!("{}", path.display()))?;
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(MAX_PROFILE_BYTES + 1)
                .read_to_end(&mut out)
                .with_context(|| format!("{}: not gzip", path.display()))?;
            if out.len() as u64 > MAX_PROFILE_BYTES {
                anyhow::bail!(
                    "{}: unpacks to more than {}",
                    path.display(),
                    files::size(MAX_PROFILE_BYTES)
                );
            }
            out
        } else {
            raw
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a JSON profile", path.display()))?;
        let shared = &v["shared"];
        let strings = shared["stringArray"].as_array();
        let mut files = BTreeMap::new();
        let so = &shared["sources"];
        for (i, name) in so["filename"].as_array().into_iter().flatten().enumerate() {
            let Some(name) = name
                .as_u64()
                .and_then(|s| strings?.get(s as usize)?.as_str())
            else {
                continue;
            };
            let content = so["content"][i].as_str().map(str::to_owned);
            files.insert(name.to_owned(), content);
        }
        let mut libs = Vec::new();
        for lib in v["libs"].as_array().into_iter().flatten() {
            // Its `path` is a file name (older profiles: a whole path),
            // tried as it is and beside the profile, before the --module
            // files.
            let given = lib["path"].as_str().map(Path::new);
            let beside = given
                .and_then(Path::file_name)
                .map(|n| path.parent().unwrap_or(Path::new("")).join(n));
            let tried: Vec<PathBuf> = given
                .map(Path::to_owned)
                .into_iter()
                .chain(beside)
                .collect();
            if let Some(l) = load_lib(lib, &tried, &opts.modules, None)? {
                libs.push(l);
            }
        }
        let warnings = if libs.is_empty() {
            vec![format!(
                "{}: none of the profile's modules was found: no assembly view (pass --module PATH)",
                path.display()
            )]
        } else {
            Vec::new()
        };
        let served = Served {
            profile: bytes,
            libs,
            files,
            sources: opts.sources.clone(),
        };
        Ok((served, warnings))
    }
}

/// The module of a profile's `libs` entry: the file at `path`, or a
/// `--module` file, whichever has the SHA-256 recorded as its `codeId`
/// (binary or text, each a regular file within
/// [`MAX_MODULE_BYTES`](files::MAX_MODULE_BYTES)). `None` if neither does
/// (no assembly for it).
fn load_lib(
    lib: &serde_json::Value,
    paths: &[PathBuf],
    modules: &[PathBuf],
    inner: Option<&wrec_format::InnerModule>,
) -> anyhow::Result<Option<ServedLib>> {
    let (Some(debug_name), Some(breakpad_id)) =
        (lib["debugName"].as_str(), lib["breakpadId"].as_str())
    else {
        return Ok(None);
    };
    let Some(sha) = lib["codeId"].as_str() else {
        return Ok(None);
    };
    let candidates = paths.iter().chain(modules).cloned();
    for path in candidates {
        let Ok(bytes) = files::read_bounded(&path, files::MAX_MODULE_BYTES) else {
            continue;
        };
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if digest.eq_ignore_ascii_case(sha) {
            // A core module inside a component: its own bytes. A component
            // found from a profile file alone (no inner module known) has no
            // assembly to serve.
            let symbols = match inner {
                Some(inner) => {
                    let Some(module) = component::inner_bytes(&bytes, inner) else {
                        return Ok(None);
                    };
                    WasmSymbols::from_bytes(&path, module)?
                }
                None if wasmparser::Parser::is_component(&bytes) => return Ok(None),
                None => WasmSymbols::from_file_bytes(&path, bytes)?,
            };
            return Ok(Some(ServedLib {
                debug_name: debug_name.to_owned(),
                breakpad_id: breakpad_id.to_owned(),
                symbols,
            }));
        }
    }
    Ok(None)
}

/// `wanalyze view`: loads `input`, serves it until Ctrl-C, printing the
/// URL that opens it on stdout.
pub fn run(input: &Path, opts: &ViewOptions) -> anyhow::Result<()> {
    let (served, warnings) = Served::load(input, opts)?;
    for w in &warnings {
        eprintln!("wanalyze: warning: {w}");
    }
    let server = Server::bind(opts.port, served)?;
    println!("{}", server.profiler_url());
    use std::io::Write;
    std::io::stdout().flush()?;
    eprintln!(
        "wanalyze: serving the profile, its sources and its wasm code on {} (loopback only); open the URL above; Ctrl-C to stop",
        server.base_url()
    );
    server.serve();
    Ok(())
}
