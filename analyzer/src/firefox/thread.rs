//! A thread's JSON: its samples, pointing into the shared stack table, and
//! its markers, streamed from the model.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::meta::run_end_ns;
use super::tables::{SharedTables, ThreadSamples};
use super::{category_index, ns_to_ms, Repeat, Seq};
use crate::model::{Category, Profile, Thread};

pub(super) struct Threads<'a, 'b>(pub(super) &'a Profile, pub(super) &'b SharedTables<'a>);

impl Serialize for Threads<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Threads(p, st) = *self;
        let end_ns = run_end_ns(p);
        let mut seq = s.serialize_seq(Some(p.threads.len()))?;
        for (i, t) in p.threads.iter().enumerate() {
            // A sorted copy, if needed, is made one thread at a time.
            let samples = ThreadSamples::new(t);
            seq.serialize_element(&ThreadJson {
                p,
                t,
                main: i == 0,
                st,
                samples: &samples,
                end_ns,
            })?;
        }
        seq.end()
    }
}

struct ThreadJson<'a, 'b> {
    p: &'a Profile,
    t: &'a Thread,
    main: bool,
    st: &'b SharedTables<'a>,
    samples: &'b ThreadSamples<'a>,
    end_ns: u64,
}

impl Serialize for ThreadJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ThreadJson {
            p,
            t,
            main,
            st,
            samples,
            end_ns,
        } = *self;
        let name = if t.name.is_empty() {
            format!("Thread {}", t.tid)
        } else {
            t.name.clone()
        };
        let mut map = s.serialize_map(None)?;
        let marker = main.then_some(st.strings.len() as u32);
        map.serialize_entry("markers", &Markers(marker, ns_to_ms(end_ns)))?;
        map.serialize_entry("name", &name)?;
        map.serialize_entry("isMainThread", &main)?;
        map.serialize_entry("pausedRanges", &[(); 0])?;
        map.serialize_entry("pid", "1")?;
        map.serialize_entry("processName", &p.meta.product)?;
        let shutdown = p.meta.end.is_some().then(|| ns_to_ms(end_ns));
        map.serialize_entry("processShutdownTime", &shutdown)?;
        map.serialize_entry("processStartupTime", &0.0)?;
        map.serialize_entry("processType", "default")?;
        map.serialize_entry("registerTime", &ns_to_ms(t.start_ns))?;
        map.serialize_entry("samples", &Samples(t, st, samples))?;
        map.serialize_entry("tid", &t.tid)?;
        map.serialize_entry("unregisterTime", &t.end_ns.map(ns_to_ms))?;
        map.end()
    }
}

/// The run-end marker's name in the string array (on the main thread
/// only), and its time.
struct Markers(Option<u32>, f64);

impl Serialize for Markers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Markers(name, time) = *self;
        let n = usize::from(name.is_some());
        let name = name.unwrap_or(0);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        map.serialize_entry("category", &Repeat(category_index(Category::Other), n))?;
        map.serialize_entry("data", &Repeat((), n))?;
        map.serialize_entry("endTime", &Repeat((), n))?;
        map.serialize_entry("name", &Repeat(name, n))?;
        // 0 = instant.
        map.serialize_entry("phase", &Repeat(0u32, n))?;
        map.serialize_entry("startTime", &Repeat(time, n))?;
        map.end()
    }
}

struct Samples<'a, 'b>(&'a Thread, &'b SharedTables<'a>, &'b ThreadSamples<'a>);

impl Serialize for Samples<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Samples(t, st, samples) = *self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &t.samples.len())?;
        map.serialize_entry("weightType", "samples")?;
        // null: every sample weighs 1.
        map.serialize_entry("weight", &())?;
        map.serialize_entry(
            "stack",
            &Seq(|| {
                samples
                    .iter()
                    .map(|s| s.stack.map(|id| st.stacks.index(id)))
            }),
        )?;
        map.serialize_entry(
            "timeDeltas",
            &Seq(|| {
                let mut prev = 0u64;
                samples.iter().map(move |s| {
                    // In time order, so never negative; the first is from zero.
                    let d = s.time_ns.saturating_sub(prev);
                    prev = s.time_ns;
                    ns_to_ms(d)
                })
            }),
        )?;
        map.serialize_entry(
            "threadCPUDelta",
            &Seq(|| {
                // Round the running total rather than each delta, so that
                // rounding errors do not add up over many samples.
                let mut total_ns = 0u64;
                let mut total_us = 0u64;
                samples.iter().map(move |s| {
                    // Saturating: a damaged trace may claim absurd CPU times.
                    total_ns = total_ns.saturating_add(s.cpu_delta_ns);
                    let us = total_ns.saturating_add(500) / 1000;
                    let d = us.saturating_sub(total_us);
                    total_us = us;
                    d
                })
            }),
        )?;
        map.end()
    }
}
