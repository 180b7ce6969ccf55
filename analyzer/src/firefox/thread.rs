//! A thread's JSON: its samples, pointing into the shared stack table, and
//! its markers, streamed from the model.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::meta::run_end_ns;
use super::meta::REQUEST_MARKER;
use super::tables::{SharedTables, ThreadSamples};
use super::{category_index, ns_to_ms, Repeat, Seq};
use crate::model::{Category, Profile, Request, Thread};

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
                index: i,
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
    /// The thread's index in the profile.
    index: usize,
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
            index,
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
        map.serialize_entry(
            "markers",
            &Markers {
                run_end: marker,
                end_ms: ns_to_ms(end_ns),
                requests: &t.requests,
                request_names: &st.request_name[index],
            },
        )?;
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

/// A thread's markers: the run-end marker (its name's string index, on
/// the main thread only) at the run's end, then one interval marker per
/// request the thread ran (`Request` in the marker schema, SPEC.md §2.8).
struct Markers<'a> {
    run_end: Option<u32>,
    end_ms: f64,
    requests: &'a [Request],
    request_names: &'a [u32],
}

impl Serialize for Markers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Markers {
            run_end,
            end_ms,
            requests,
            request_names,
        } = *self;
        let ends = usize::from(run_end.is_some());
        let n = ends + requests.len();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        map.serialize_entry("category", &Repeat(category_index(Category::Other), n))?;
        map.serialize_entry(
            "data",
            &Seq(|| {
                (0..ends).map(|_| None).chain(requests.iter().map(|r| {
                    Some(serde_json::json!({
                        "type": REQUEST_MARKER,
                        "request": r.index,
                        "method": r.method,
                        "path": r.path,
                    }))
                }))
            }),
        )?;
        map.serialize_entry(
            "endTime",
            &Seq(|| {
                (0..ends)
                    .map(|_| None)
                    .chain(requests.iter().map(|r| Some(ns_to_ms(r.end_ns))))
            }),
        )?;
        map.serialize_entry(
            "name",
            &Seq(|| run_end.into_iter().chain(request_names.iter().copied())),
        )?;
        // 0 = instant, 1 = interval.
        map.serialize_entry(
            "phase",
            &Seq(|| (0..ends).map(|_| 0u32).chain(requests.iter().map(|_| 1))),
        )?;
        map.serialize_entry(
            "startTime",
            &Seq(|| {
                (0..ends)
                    .map(move |_| end_ms)
                    .chain(requests.iter().map(|r| ns_to_ms(r.start_ns)))
            }),
        )?;
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
