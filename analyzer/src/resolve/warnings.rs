//! The end of an analysis: the warnings about what the trace lacked or
//! lost, in the order the outputs list them, and the profile's last facts.

use wrec_format::LossReason;

use super::analysis::Analysis;
use super::resolver::UNKNOWN;
use super::{file_name, AnalyzeError};
use crate::model::Profile;

impl Analysis<'_> {
    /// The profile, once every event is read.
    pub(super) fn finish(mut self) -> Result<Profile, AnalyzeError> {
        self.flush_held_samples();
        self.warn_incomplete_trace();
        self.check_overrides_used()?;
        self.warn_unmapped();
        self.warn_losses();
        self.warn_modules();
        self.meta.has_lines = self
            .r
            .modules
            .iter()
            .any(|m| m.dwarf && m.symbols.found_lines());
        // No stack is added after this; it gives them their parents.
        std::mem::take(&mut self.r.interner).finish(&mut self.r.profile);
        self.warn_unknown_code();
        Ok(self.into_profile())
    }

    /// A damaged trace, or one without its end record.
    fn warn_incomplete_trace(&mut self) {
        let (path, n) = (self.path.display(), self.samples_read);
        if let Some(e) = &self.damage {
            self.meta.warnings.push(format!(
                "{path}: {e}; the profile covers the {n} samples before it"
            ));
        } else if !self.saw_end && self.being_written {
            self.meta.warnings.push(format!(
                "{path}: the recording is still going; the profile covers the {n} samples committed so far"
            ));
        } else if !self.saw_end {
            self.meta.warnings.push(format!(
                "{path}: the trace ended without its end record (the recorder was killed or crashed); the profile covers the {n} samples it holds"
            ));
        }
    }

    /// A `--module` file that matched no module record is an error, or a
    /// warning when the trace is damaged.
    fn check_overrides_used(&mut self) -> Result<(), AnalyzeError> {
        let damaged = self.damage.is_some();
        for path in self.overrides.unused() {
            if damaged {
                // Its module record may be in the damaged part: the intact
                // part is still worth a profile.
                self.meta.warnings.push(format!(
                    "{}: --module matched no module record before the damage; not used",
                    path.display()
                ));
            } else {
                let recorded: Vec<String> =
                    self.r.modules.iter().map(|m| m.rec.path.clone()).collect();
                return Err(AnalyzeError::ModuleUnmatched {
                    path: path.to_owned(),
                    recorded: if recorded.is_empty() {
                        "none".to_owned()
                    } else {
                        recorded.join(", ")
                    },
                });
            }
        }
        Ok(())
    }

    /// Code offsets the trace gives no wasm offset for.
    fn warn_unmapped(&mut self) {
        if self.r.unmapped > 0 {
            self.meta.warnings.push(format!(
                "{}: {} sampled code addresses have no recorded wasm offset (the recorder was probably killed before writing them): their frames name the function but have no line",
                self.path.display(),
                self.r.unmapped
            ));
        }
    }

    /// Samples the recorder lost, by reason.
    fn warn_losses(&mut self) {
        for (reason, lost) in self.losses.iter() {
            let why = match reason {
                LossReason::LogFull => {
                    "the trace file was full: the disk ran out or growth fell behind (in a flight recorder: the next segment was not ready)"
                }
                LossReason::StackWalk => "their stacks could not be walked",
                LossReason::TimerOverrun => {
                    "the timer fired while the thread waited for a CPU (a busy machine), and those expirations merged"
                }
                LossReason::Other => "other reasons",
            };
            self.meta
                .warnings
                .push(format!("the recorder lost {lost} samples: {why}"));
        }
    }

    /// What the modules' files said, once per file.
    fn warn_modules(&mut self) {
        for (i, m) in self.r.modules.iter().enumerate() {
            if self.by_hash.get(&super::modules::module_key(&m.rec)) != Some(&i) {
                continue; // a module recorded again: its warnings are in already
            }
            for w in m.symbols.warnings() {
                self.meta.warnings.push(w.clone());
            }
            if m.dwarf {
                // Problems met while looking lines up (damaged DWARF).
                self.meta.warnings.extend(m.symbols.dwarf_warnings());
            }
        }
    }

    /// Addresses in no recorded module: a trace whose module records are
    /// missing, late or wrong. Says how much of the profile that is. Needs
    /// the finished stacks.
    fn warn_unknown_code(&mut self) {
        let Some(&unknown) = self.r.synthetic.get(UNKNOWN) else {
            return;
        };
        let p = &self.r.profile;
        let mut has_unknown = vec![false; p.stacks.len()];
        for (i, st) in p.stacks.iter().enumerate() {
            // Parents come before children in the stack table.
            has_unknown[i] =
                st.frame == unknown || st.parent.is_some_and(|q| has_unknown[q as usize]);
        }
        let (n, total) =
            p.threads
                .iter()
                .flat_map(|t| &t.samples)
                .fold((0u64, 0u64), |(n, t), s| {
                    (
                        n + u64::from(s.stack.is_some_and(|st| has_unknown[st as usize])),
                        t + 1,
                    )
                });
        if n > 0 {
            self.meta.warnings.push(format!(
                "{}: {n} of {total} samples have code addresses in no module the trace describes (shown as {UNKNOWN}): the trace's module records are missing or wrong",
                self.path.display()
            ));
        }
    }

    /// The profile, with the program's name and the wall-clock time of its
    /// zero.
    fn into_profile(mut self) -> Profile {
        let header = self.header;
        self.meta.product = self
            .r
            .modules
            .first()
            .map(|m| file_name(&m.rec.path))
            .or_else(|| self.meta.args.first().cloned())
            .unwrap_or_else(|| "wasm".to_owned());
        let zero = self.start_ns.unwrap_or(header.monotonic_reference_ns);
        let wall_ns =
            header.wall_reference_ns as f64 + (zero as f64 - header.monotonic_reference_ns as f64);
        self.meta.start_unix_ms = wall_ns / 1e6;
        self.r.profile.start_ns = zero;
        self.r.profile.meta = self.meta;
        self.r.profile
    }
}

/// Samples lost, by reason: each reason met (even with a count of 0) in
/// the order of [`Losses::ORDER`], the order the warnings list them.
#[derive(Default)]
pub(super) struct Losses([Option<u64>; 4]);

impl Losses {
    const ORDER: [LossReason; 4] = [
        LossReason::LogFull,
        LossReason::StackWalk,
        LossReason::TimerOverrun,
        LossReason::Other,
    ];

    pub(super) fn add(&mut self, reason: LossReason, count: u64) {
        let slot = match reason {
            LossReason::LogFull => 0,
            LossReason::StackWalk => 1,
            LossReason::TimerOverrun => 2,
            LossReason::Other => 3,
        };
        let n = self.0[slot].get_or_insert(0);
        *n = n.saturating_add(count);
    }

    fn iter(&self) -> impl Iterator<Item = (LossReason, u64)> + '_ {
        Self::ORDER
            .into_iter()
            .zip(&self.0)
            .filter_map(|(r, n)| Some((r, (*n)?)))
    }
}
