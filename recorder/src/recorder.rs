//! [`Recorder`]: one run's trace, from the run-info record to the end record.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wrec_format::{
    clock_ns, AddressMapEntry, End, FunctionEntry, Header, InnerModule, ModuleRecord, Record,
    RunInfo, ThreadStart, TraceWriter, WriteError,
};

use crate::code_maps::CodeMaps;
use crate::housekeeping::Housekeeper;
use crate::losses::Threads;
use crate::sampler::{SamplerStats, SignalContext, ThreadSampler, ThreadState, MAX_MODULES};
use crate::{output, Error, ExitInfo, ExitKind, RecorderOptions, MAX_INTERVAL, MIN_INTERVAL};

/// The recorder's name and version, as written in the trace's run-info record.
pub const RECORDER: &str = concat!("wrec ", env!("CARGO_PKG_VERSION"));

/// What a finished recording holds.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: PathBuf,
    /// Samples written.
    pub samples: u64,
    /// Samples lost: dropped for lack of room, plus timer expirations the
    /// kernel merged (overruns).
    pub lost: u64,
    /// Of `lost`, how many were dropped because the trace could not grow.
    pub dropped: u64,
    /// Final size of the trace in bytes.
    pub bytes: u64,
    /// Why the trace stopped growing, if it did (disk full, file size limit).
    pub full: Option<String>,
    pub stats: SamplerStats,
}

/// State shared by the recorder, its background thread and the end of each
/// thread sampler.
pub(crate) struct Shared {
    /// The trace writer, the code ranges and the sampling rule, also seen by
    /// the signal handlers.
    ctx: Arc<SignalContext>,
    pub(crate) threads: Threads,
    code: Mutex<CodeMaps>,
    full: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn writer(&self) -> &TraceWriter {
        &self.ctx.writer
    }

    /// Writes the wasm offsets of the code offsets committed samples use.
    pub(crate) fn update_code_maps(&self) {
        lock(&self.code).update(self.writer());
    }

    /// Remembers why the trace stopped growing (the first reason).
    pub(crate) fn note_full(&self, e: &WriteError) {
        let mut full = lock(&self.full);
        if full.is_none() {
            *full = Some(e.to_string());
        }
    }
}

/// What keeps registered code mapped: the compiled module or component.
// Held only so the code stays mapped.
#[allow(dead_code)]
enum Kept {
    Module(wasmtime::Module),
    Component(wasmtime::component::Component),
}

/// The code registered with the samplers, and the module ids given out.
#[derive(Default)]
struct Registered {
    /// Each piece of code (its address), what keeps it mapped, and the ids
    /// of its module records.
    code: Vec<(u64, Kept, Vec<u64>)>,
    next_id: u64,
}

impl Registered {
    /// The ids of the records of code already registered.
    fn find(&self, text: &[u8]) -> Option<&[u64]> {
        let addr = text.as_ptr() as u64;
        self.code
            .iter()
            .find(|(a, _, _)| *a == addr)
            .map(|(_, _, ids)| ids.as_slice())
    }

    /// Room for one more code range in the samplers' table.
    fn check_room(&self) -> Result<(), Error> {
        if self.code.len() >= MAX_MODULES {
            return Err(Error::TooManyModules);
        }
        Ok(())
    }

    fn push(&mut self, text: &[u8], kept: Kept, ids: Vec<u64>) {
        self.next_id += ids.len() as u64;
        self.code.push((text.as_ptr() as u64, kept, ids));
    }
}

/// `path` made absolute for a module record.
fn absolute(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    });
    abs.to_string_lossy().into_owned()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records one run into a trace file.
///
/// Create it, [`add_module`](Recorder::add_module) every module before it
/// runs, get a [`ThreadSampler`] for each thread that runs wasm, and
/// [`finish`](Recorder::finish) at the end. A background thread grows the
/// trace ahead of the samplers (every 50 ms) and reports losses.
pub struct Recorder {
    shared: Arc<Shared>,
    path: PathBuf,
    ending: Arc<Ending>,
    code: Mutex<Registered>,
    next_thread: AtomicU32,
}

/// What finishing a recording needs, shareable with another thread (the
/// runner's signal thread finishes the recording while the guest runs).
pub(crate) struct Ending {
    shared: Arc<Shared>,
    path: PathBuf,
    housekeeper: Mutex<Housekeeper>,
    /// Whether the recording was finished; held while finishing.
    finished: Mutex<bool>,
}

impl Recorder {
    /// Creates the trace at `path` and writes its run-info record.
    ///
    /// The file is created with default permissions. A symlink at `path` is
    /// refused, and so is an existing file that is not a wrec trace, unless
    /// [`RecorderOptions::force`]; anything but a regular file is always
    /// refused. The trace is written beside `path` under a temporary name
    /// and renamed over `path` once its first space is allocated and its
    /// run-info record written: a start that fails (no space, say) leaves
    /// `path` as it was and no file behind.
    pub fn create(path: &Path, opts: RecorderOptions) -> Result<Recorder, Error> {
        let (file, pending) = output::open_output(path, opts.force)?;
        let recorder = Recorder::from_file(path, file, opts)?;
        pending.put_in_place(path)?;
        Ok(recorder)
    }

    /// Like [`Recorder::create`] on a file the caller opened (read and
    /// write, empty).
    pub fn from_file(path: &Path, file: File, opts: RecorderOptions) -> Result<Recorder, Error> {
        if opts.interval < MIN_INTERVAL || opts.interval > MAX_INTERVAL {
            return Err(Error::Interval);
        }
        ignore_sigxfsz();
        let writer = TraceWriter::from_file(path, file, Header::for_this_host(), opts.writer)?;
        writer.write_run_info(&RunInfo {
            interval_ns: opts.interval.as_nanos() as u64,
            clock: opts.clock,
            recorder: RECORDER.to_owned(),
            args: opts.args,
        })?;
        let ctx = SignalContext::new(writer, opts.clock, opts.exact_cpu);
        let shared = Arc::new(Shared {
            ctx: Arc::new(ctx),
            threads: Threads::default(),
            code: Mutex::new(CodeMaps::new()),
            full: Mutex::new(None),
        });
        let housekeeper = Housekeeper::spawn(shared.clone()).map_err(Error::Sampler)?;
        let ending = Arc::new(Ending {
            shared: shared.clone(),
            path: path.to_owned(),
            housekeeper: Mutex::new(housekeeper),
            finished: Mutex::new(false),
        });
        Ok(Recorder {
            shared,
            path: path.to_owned(),
            ending,
            code: Mutex::new(Registered::default()),
            next_thread: AtomicU32::new(0),
        })
    }

    /// The trace's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the module record for a compiled module and registers its code
    /// with the samplers; call it before the module runs. `path` is the wasm
    /// file (made absolute for the record) and `bytes` its content (hashed).
    /// The recorder keeps a reference to the module so its code stays
    /// mapped. Returns the module's id in the trace; adding the same module
    /// again returns the first id.
    pub fn add_module(
        &self,
        module: &wasmtime::Module,
        path: &Path,
        bytes: &[u8],
    ) -> Result<u64, Error> {
        let mut code = lock(&self.code);
        let text = module.text();
        if let Some(ids) = code.find(text) {
            return Ok(ids[0]);
        }
        code.check_room()?;
        let id = code.next_id;
        let mut functions: Vec<FunctionEntry> = module
            .functions()
            .map(|f| FunctionEntry {
                index: f.index.as_u32(),
                offset: f.offset as u64,
                len: f.len as u64,
            })
            .collect();
        functions.sort_by_key(|f| f.offset);
        let address_map = module
            .address_map()
            .map(|map| {
                map.map(|(offset, wasm)| AddressMapEntry {
                    code_offset: offset as u64,
                    wasm_offset: wasm.map(u64::from),
                })
                .collect()
            })
            .unwrap_or_default();
        let rec = ModuleRecord {
            id,
            path: absolute(path),
            sha256: Sha256::digest(bytes).into(),
            text_addr: text.as_ptr() as u64,
            text_len: text.len() as u64,
            functions,
            address_map: Vec::new(),
            addresses: Vec::new(),
            inner: None,
        };
        self.write_module(rec, address_map)?;
        self.register(&mut code, text, Kept::Module(module.clone()), vec![id])?;
        Ok(id)
    }

    /// Like [`Recorder::add_module`] for a component: a module record for
    /// each core module inside it that has code (SPEC.md §2.2), each
    /// covering its functions in the component's code (and the trampolines
    /// up to the next module's, so that together they cover all of it) and
    /// saying where the module's bytes are in `bytes` (the component file),
    /// so an analyzer names its frames from the module's own name section
    /// and DWARF.
    /// Returns the ids of the records.
    pub fn add_component(
        &self,
        component: &wasmtime::component::Component,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Vec<u64>, Error> {
        let mut code = lock(&self.code);
        let text = component.text();
        if let Some(ids) = code.find(text) {
            return Ok(ids.to_vec());
        }
        code.check_room()?;
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let path = absolute(path);
        let inner_ranges = crate::component::core_module_ranges(bytes);
        let map: Vec<(u64, Option<u64>)> = component
            .address_map()
            .map(|m| m.map(|(c, w)| (c as u64, w.map(u64::from))).collect())
            .unwrap_or_default();
        let mut ids = Vec::new();
        let modules = crate::component::functions_by_module(component);
        let bounds = crate::component::module_bounds(&modules, text.len() as u64);
        for ((index, mut functions), (start, end)) in modules.into_iter().zip(bounds) {
            for f in &mut functions {
                f.offset -= start;
            }
            let (offset, len) = inner_ranges.get(index as usize).copied().unwrap_or((0, 0));
            let address_map = crate::component::module_address_map(&map, start, end, offset, len);
            let id = code.next_id + ids.len() as u64;
            let rec = ModuleRecord {
                id,
                path: path.clone(),
                sha256,
                text_addr: text.as_ptr() as u64 + start,
                text_len: end - start,
                functions,
                address_map: Vec::new(),
                addresses: Vec::new(),
                inner: Some(InnerModule { index, offset, len }),
            };
            self.write_module(rec, address_map)?;
            ids.push(id);
        }
        self.register(
            &mut code,
            text,
            Kept::Component(component.clone()),
            ids.clone(),
        )?;
        Ok(ids)
    }

    /// Registers code with the samplers (its records written), keeping it
    /// mapped.
    fn register(
        &self,
        code: &mut Registered,
        text: &[u8],
        kept: Kept,
        ids: Vec<u64>,
    ) -> Result<(), Error> {
        if !self
            .shared
            .ctx
            .ranges
            .push(text.as_ptr() as u64, text.len() as u64)
        {
            return Err(Error::TooManyModules);
        }
        code.push(text, kept, ids);
        Ok(())
    }

    /// Writes a module record before any sampler may point into its code;
    /// its address map stays here, and only the code offsets that samples
    /// use are written, as code addresses (SPEC.md §2.7).
    fn write_module(
        &self,
        mut rec: ModuleRecord,
        address_map: Vec<AddressMapEntry>,
    ) -> Result<(), Error> {
        let shared = &*self.shared;
        shared.writer().write_record(&Record::Module(rec.clone()))?;
        rec.address_map = address_map;
        lock(&shared.code).add_module(rec);
        Ok(())
    }

    /// A sampler for the calling thread, named `name` in the trace. Writes
    /// the thread-start record; the timer is armed by
    /// [`ThreadSampler::start`], and dropping the sampler (or the
    /// [`Sampling`](crate::Sampling) it turns into) writes the thread's end
    /// record.
    pub fn thread_sampler(&self, name: &str) -> Result<ThreadSampler, Error> {
        let thread = self.next_thread.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        // Runs on this thread when its sampler is dropped.
        let on_end = Box::new(move |state: &ThreadState| {
            let cpu_ns = state.recorded_cpu(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID));
            shared.threads.end(shared.writer(), state.thread, cpu_ns);
        });
        let sampler =
            ThreadSampler::new(self.shared.ctx.clone(), thread, on_end).map_err(Error::Sampler)?;
        self.shared
            .writer()
            .write_record(&Record::ThreadStart(ThreadStart {
                thread,
                time_ns: clock_ns(libc::CLOCK_MONOTONIC),
                cpu_ns: clock_ns(libc::CLOCK_THREAD_CPUTIME_ID),
                // SAFETY: gettid has no preconditions.
                os_tid: unsafe { libc::gettid() } as u64,
                name: name.to_owned(),
            }))?;
        self.shared.threads.add(sampler.state().clone());
        Ok(sampler)
    }

    /// Writes a request record (SPEC.md §2.8): a request a server handled
    /// on `thread` (a [`ThreadSampler::thread_id`]) from `start_ns` to
    /// `end_ns` (monotonic), its index, method and path (cut to
    /// [`wrec_format::MAX_REQUEST_PATH`] bytes). From a normal thread, not
    /// a signal handler.
    pub fn record_request(
        &self,
        thread: u32,
        start_ns: u64,
        end_ns: u64,
        index: u64,
        method: &str,
        path: &str,
    ) -> Result<(), Error> {
        let rec = wrec_format::Request::new(thread, start_ns, end_ns, index, method, path);
        self.shared.writer().write_record(&Record::Request(rec))?;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.shared.writer().samples_written()
    }

    /// Ends the recording: stops all sampling, writes the remaining loss
    /// records, end records for threads whose samplers are still alive, and
    /// the end record, and truncates the file to its data.
    pub fn finish(self, exit: ExitInfo) -> Result<Summary, Error> {
        self.finish_shared(exit)
    }

    /// [`Recorder::finish`] for a recorder that is shared (`wrec serve`'s,
    /// when a worker thread did not stop in time).
    pub(crate) fn finish_shared(&self, exit: ExitInfo) -> Result<Summary, Error> {
        self.ending
            .finish_then(exit, |r| r)
            .unwrap_or_else(|| Err(self.already_finished()))
    }

    /// The error for a recording another thread finished.
    fn already_finished(&self) -> Error {
        Error::Write(WriteError::Finished {
            path: self.path.clone(),
        })
    }

    /// The part of the recorder another thread can finish it with.
    pub(crate) fn ending(&self) -> Arc<Ending> {
        self.ending.clone()
    }
}

impl Ending {
    /// Finishes the recording, unless it was already, and calls `then`
    /// with the result while still holding the recording: a thread that
    /// tries to finish it meanwhile waits (so `then` may end the process
    /// before anyone else reports anything). `None` if it was finished
    /// already.
    pub(crate) fn finish_then<R>(
        &self,
        exit: ExitInfo,
        then: impl FnOnce(Result<Summary, Error>) -> R,
    ) -> Option<R> {
        let mut finished = lock(&self.finished);
        if *finished {
            return None;
        }
        *finished = true;
        let result = self.finish(exit);
        Some(then(result))
    }

    fn finish(&self, exit: ExitInfo) -> Result<Summary, Error> {
        let shared = &*self.shared;
        let writer = shared.writer();
        shared.ctx.close();
        lock(&self.housekeeper).stop();
        // Threads whose samplers are still alive end here.
        shared.threads.end_all(writer);
        // The wasm offsets of the code the last samples use.
        shared.update_code_maps();
        let ended = shared.threads.ended();
        let lost = ended.dropped + ended.overruns;
        let samples = writer.samples_written();
        let end = writer.write_record(&Record::End(End {
            time_ns: clock_ns(libc::CLOCK_MONOTONIC),
            exit_kind: exit.kind,
            status: exit.status,
            message: exit.message,
            samples_written: samples,
            samples_lost: lost,
        }));
        let bytes = writer.finish();
        end?;
        let bytes = bytes?;
        Ok(Summary {
            path: self.path.clone(),
            samples,
            lost,
            dropped: ended.dropped,
            bytes,
            full: lock(&shared.full).clone(),
            stats: ended.stats,
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.ending.finish_then(
            ExitInfo {
                kind: ExitKind::Failed,
                status: 1,
                message: "the recorder was dropped without finish()".into(),
            },
            drop,
        );
    }
}

/// Sets `SIGXFSZ` to ignored if it is at its default (terminate), so that a
/// file size limit makes the trace's growth fail instead of killing us.
fn ignore_sigxfsz() {
    // SAFETY: plain sigaction calls.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
    }
}
