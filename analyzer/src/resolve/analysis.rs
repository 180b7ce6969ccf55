//! The analysis of one trace: its state, and a step for each kind of event
//! [`analyze`](super::analyze) reads.

use std::collections::HashMap;
use std::path::Path;

use rustc_hash::{FxHashMap, FxHashSet};
use wrec_format::{
    flags, End, Header, ModuleRecord, ReadError, RunInfo, Sample, SamplesLost, ThreadEnd,
    ThreadStart, Trace,
};

use super::cpu::{CpuShare, CpuTotal, Pending};
use super::modules::{load_module, Overrides};
use super::resolver::Resolver;
use super::sample_stack::{sample_stack, PrevStack};
use super::warnings::Losses;
use super::{AnalyzeError, Options, MAX_TOTAL};
use crate::model::{redact, Meta, RunEnd, Thread};

/// What the analysis keeps for each thread, besides its model thread.
#[derive(Default)]
struct ThreadState {
    /// Its previous sample, whose stack nodes the next one may reuse.
    prev: PrevStack,
    /// Its samples held back for their CPU time.
    cpu: CpuShare,
}

/// Everything the analysis knows so far.
pub(super) struct Analysis<'a> {
    pub(super) path: &'a Path,
    pub(super) opts: &'a Options,
    pub(super) header: Header,
    pub(super) r: Resolver,
    pub(super) meta: Meta,
    pub(super) overrides: Overrides,
    /// Index in `r.modules` of the first module with each hash.
    pub(super) by_hash: FxHashMap<super::modules::ModuleKey, usize>,
    /// The hashes of the files whose recorded path was skipped.
    skipped: FxHashSet<[u8; 32]>,
    /// Thread id → index in `states` and `r.profile.threads`.
    threads: HashMap<u32, usize>,
    states: Vec<ThreadState>,
    /// The thread of the previous sample: (id, index).
    last_thread: Option<(u32, usize)>,
    /// Monotonic ns of the profile's zero: the first sample's or thread
    /// start's time.
    pub(super) start_ns: Option<u64>,
    cpu_total: CpuTotal,
    lost_total: u64,
    pub(super) losses: Losses,
    pub(super) samples_read: u64,
    pub(super) saw_end: bool,
    /// A recorder still held the trace open for writing.
    pub(super) being_written: bool,
    /// Where the trace is damaged, if it is: the analysis ends there.
    pub(super) damage: Option<ReadError>,
}

impl<'a> Analysis<'a> {
    /// The start of an analysis of `trace`: reads the `--module` files.
    pub(super) fn new(
        path: &'a Path,
        trace: &Trace,
        opts: &'a Options,
    ) -> Result<Self, AnalyzeError> {
        let overrides = Overrides::load(&opts.modules)?;
        Ok(Analysis {
            path,
            opts,
            header: *trace.header(),
            r: Resolver::new(opts.by_function),
            meta: Meta {
                warnings: trace
                    .warnings()
                    .iter()
                    .map(|w| format!("{}: {w}", path.display()))
                    .collect(),
                ..Meta::default()
            },
            overrides,
            by_hash: FxHashMap::default(),
            skipped: FxHashSet::default(),
            threads: HashMap::new(),
            states: Vec::new(),
            last_thread: None,
            start_ns: None,
            cpu_total: CpuTotal::default(),
            lost_total: 0,
            losses: Losses::default(),
            samples_read: 0,
            saw_end: false,
            being_written: false,
            damage: None,
        })
    }

    /// The sampling interval and clock, the recorder, the arguments.
    pub(super) fn on_run_info(&mut self, ri: RunInfo) {
        self.meta.interval_ns = ri.interval_ns;
        self.meta.clock = Some(ri.clock);
        self.meta.recorder = ri.recorder;
        self.meta.args = ri.args;
    }

    /// A module: loaded, or shared with an earlier record of the same file.
    pub(super) fn on_module(&mut self, rec: ModuleRecord) -> Result<(), AnalyzeError> {
        // A module recorded more than once is read and indexed once, and
        // one whose file cannot be the module is skipped once (with all the
        // modules a component file holds), with one warning.
        if self.skipped.contains(&rec.sha256) {
            return Ok(());
        }
        let key = super::modules::module_key(&rec);
        let m = match self.by_hash.get(&key) {
            Some(&i) => self.r.modules[i].again(rec),
            None => {
                let sha256 = rec.sha256;
                let loaded = load_module(
                    rec,
                    &mut self.overrides,
                    self.opts,
                    &mut self.meta,
                    &mut self.r.profile,
                )?;
                let Some(m) = loaded else {
                    self.skipped.insert(sha256);
                    return Ok(());
                };
                self.by_hash.insert(key, self.r.modules.len());
                m
            }
        };
        self.r.add_module(m);
        Ok(())
    }

    /// A thread's name and start (its samples may have come first).
    pub(super) fn on_thread_start(&mut self, ts: ThreadStart) {
        let zero = *self.start_ns.get_or_insert(ts.time_ns);
        let idx = *self.threads.entry(ts.thread).or_insert_with(|| {
            self.r.profile.threads.push(Thread::default());
            self.states.push(ThreadState::default());
            self.states.len() - 1
        });
        let t = &mut self.r.profile.threads[idx];
        t.name = if ts.name.is_empty() {
            format!("thread {}", ts.thread)
        } else {
            ts.name
        };
        t.tid = ts.thread;
        t.start_ns = ts.time_ns.saturating_sub(zero);
    }

    /// A request record: on its thread, if the thread started.
    pub(super) fn on_request(&mut self, r: wrec_format::Request) {
        let Some(&idx) = self.threads.get(&r.thread) else {
            return;
        };
        let zero = self.start_ns.unwrap_or(r.start_ns);
        // A hostile trace's strings are cut as a writer would have.
        let method = wrec_format::cut(&r.method, wrec_format::MAX_REQUEST_METHOD);
        let path = wrec_format::cut(&r.path, wrec_format::MAX_REQUEST_PATH);
        self.r.profile.threads[idx]
            .requests
            .push(crate::model::Request {
                index: r.index,
                start_ns: r.start_ns.saturating_sub(zero),
                end_ns: r.end_ns.saturating_sub(zero),
                method: method.to_owned(),
                path: path.to_owned(),
                name: format!("{method} {path}"),
            });
    }

    /// A sample: its stack, and its CPU time (now, or held back until the
    /// thread's next CPU reading).
    #[inline]
    pub(super) fn on_sample(&mut self, s: &Sample<'_>) {
        self.samples_read += 1;
        let zero = *self.start_ns.get_or_insert(s.time_ns);
        let i = self.thread_of(s, zero);
        let state = &mut self.states[i];
        let stack = sample_stack(&mut self.r, &mut state.prev, s.flags, s.stack);
        let samples = &mut self.r.profile.threads[i].samples;
        let this = Pending {
            // The decoder's times and CPU times are whole µs.
            time_us: s.time_ns / 1000,
            time_ns: s.time_ns.saturating_sub(zero),
            stack,
        };
        if s.flags & flags::NO_CPU != 0 {
            self.meta.samples_without_cpu += 1;
            state.cpu.hold(this, samples, &mut self.cpu_total);
        } else {
            state
                .cpu
                .read(this, s.cpu_ns, s.cpu_delta_ns, samples, &mut self.cpu_total);
        }
    }

    /// The index of the sample's thread, which is added if it is new.
    #[inline]
    fn thread_of(&mut self, s: &Sample<'_>, zero: u64) -> usize {
        // Most traces have one thread, or long runs of one: skip the
        // (keyed, so slower) hash when it is the last one again.
        let i = match self.last_thread {
            Some((tid, i)) if tid == s.thread => i,
            _ => *self.threads.entry(s.thread).or_insert_with(|| {
                self.r.profile.threads.push(Thread {
                    name: format!("thread {}", s.thread),
                    tid: s.thread,
                    start_ns: s.time_ns.saturating_sub(zero),
                    ..Thread::default()
                });
                self.states.push(ThreadState::default());
                self.states.len() - 1
            }),
        };
        self.last_thread = Some((s.thread, i));
        i
    }

    /// A thread's end: its end time, and its CPU time for the samples it
    /// held back.
    pub(super) fn on_thread_end(&mut self, te: ThreadEnd) {
        let Some(&i) = self.threads.get(&te.thread) else {
            return;
        };
        let zero = self.start_ns.unwrap_or(te.time_ns);
        let t = &mut self.r.profile.threads[i];
        t.end_ns = Some(te.time_ns.saturating_sub(zero));
        self.states[i]
            .cpu
            .end(te.time_ns, te.cpu_ns, &mut t.samples, &mut self.cpu_total);
    }

    /// Samples the recorder lost.
    pub(super) fn on_loss(&mut self, l: SamplesLost) {
        let count = l.count.min(MAX_TOTAL - self.lost_total);
        self.lost_total += count;
        if let Some(&i) = self.threads.get(&l.thread) {
            let t = &mut self.r.profile.threads[i];
            t.lost = t.lost.saturating_add(count);
        }
        self.losses.add(l.reason, count);
    }

    /// How the run ended. Its message keeps the guest's part only: no
    /// host backtrace, no host directories.
    pub(super) fn on_end(&mut self, e: End) {
        self.saw_end = true;
        self.meta.end = Some(RunEnd {
            kind: e.exit_kind,
            status: e.status,
            message: redact::run_end_message(&e.message),
        });
    }

    /// The trace is damaged here: nothing after it is read.
    pub(super) fn on_damage(&mut self, e: ReadError) {
        self.damage = Some(e);
    }

    /// Samples without CPU time that nothing closed (a recorder that was
    /// killed): each gets its own time delta.
    pub(super) fn flush_held_samples(&mut self) {
        for (state, t) in self.states.iter_mut().zip(&mut self.r.profile.threads) {
            state.cpu.flush(&mut t.samples, &mut self.cpu_total);
        }
    }
}
