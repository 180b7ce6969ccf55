//! The requests of a `wrec serve` trace (SPEC.md §2.8) as the exporters
//! use them: which request a sample was taken in, and the requests grouped
//! by endpoint.

use std::collections::HashMap;

use super::{Profile, Thread};

/// A thread's requests by start, to find the one each of its samples was
/// taken in, the samples asked for in time order (a sweep: amortized O(1)
/// a sample, however requests nest).
pub struct RequestSpans {
    /// (start, end, index into the thread's requests), by start, and of
    /// equal starts the longest first (so the innermost is met last).
    spans: Vec<(u64, u64, usize)>,
    /// The next span not yet started.
    next: usize,
    /// Spans started, the latest on top; those that ended below the top
    /// are dropped when they reach it.
    open: Vec<(u64, usize)>,
    /// The last time asked.
    last: u64,
}

impl RequestSpans {
    pub fn of(t: &Thread) -> RequestSpans {
        let mut spans: Vec<_> = t
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| (r.start_ns, r.end_ns, i))
            .collect();
        spans.sort_unstable_by_key(|&(start, end, i)| (start, std::cmp::Reverse(end), i));
        RequestSpans {
            spans,
            next: 0,
            open: Vec::new(),
            last: 0,
        }
    }

    /// The request (an index into the thread's requests) a sample taken at
    /// `time` belongs to: the innermost (the latest started; of equal
    /// starts, the shortest) whose span holds it. Times should come in
    /// order; one that goes back starts the sweep again.
    pub fn containing(&mut self, time: u64) -> Option<usize> {
        if time < self.last {
            self.next = 0;
            self.open.clear();
        }
        self.last = time;
        while let Some(&(start, end, i)) = self.spans.get(self.next) {
            if start > time {
                break;
            }
            self.open.push((end, i));
            self.next += 1;
        }
        while let Some(&(end, i)) = self.open.last() {
            if end >= time {
                return Some(i);
            }
            self.open.pop();
        }
        None
    }
}

/// The requests of one endpoint (`METHOD PATH`, the query included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `METHOD PATH`, as the requests are named.
    pub name: String,
    pub requests: u64,
    /// The samples taken in them, and their CPU time.
    pub samples: u64,
    pub cpu_ns: u64,
    /// The requests' durations (their spans): the median (the lower of
    /// two middle ones) and the longest.
    pub median_ns: u64,
    pub max_ns: u64,
}

/// Every endpoint of the profile's requests, by CPU time (then samples,
/// then name); empty for a trace without requests.
pub fn endpoints(p: &Profile) -> Vec<Endpoint> {
    let mut by_name: HashMap<&str, (Vec<u64>, u64, u64)> = HashMap::new();
    for t in &p.threads {
        if t.requests.is_empty() {
            continue;
        }
        for r in &t.requests {
            by_name
                .entry(&r.name)
                .or_default()
                .0
                .push(r.end_ns.saturating_sub(r.start_ns));
        }
        let mut spans = RequestSpans::of(t);
        let mut samples: Vec<_> = t
            .samples
            .iter()
            .map(|s| (s.time_ns, s.cpu_delta_ns))
            .collect();
        samples.sort_unstable_by_key(|&(time, _)| time);
        for (time_ns, cpu_delta_ns) in samples {
            if let Some(i) = spans.containing(time_ns) {
                let e = by_name.get_mut(t.requests[i].name.as_str()).unwrap();
                e.1 += 1;
                e.2 = e.2.saturating_add(cpu_delta_ns);
            }
        }
    }
    let mut out: Vec<Endpoint> = by_name
        .into_iter()
        .map(|(name, (mut durations, samples, cpu_ns))| {
            durations.sort_unstable();
            Endpoint {
                name: name.to_owned(),
                requests: durations.len() as u64,
                samples,
                cpu_ns,
                median_ns: durations[(durations.len() - 1) / 2],
                max_ns: *durations.last().unwrap(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.cpu_ns
            .cmp(&a.cpu_ns)
            .then(b.samples.cmp(&a.samples))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Request, Sample, Samples};

    fn request(index: u64, start_ns: u64, end_ns: u64) -> Request {
        Request {
            index,
            start_ns,
            end_ns,
            ..Request::default()
        }
    }

    #[test]
    fn a_sample_belongs_to_the_innermost_request_holding_it() {
        // 0: 10-100, waiting from 20 on, when 1 (30-40) and 2 (50-60) ran
        // inside it; 3: 200-300. Recorded in the order they ended.
        let t = Thread {
            requests: vec![
                request(1, 30, 40),
                request(2, 50, 60),
                request(0, 10, 100),
                request(3, 200, 300),
            ],
            ..Thread::default()
        };
        let mut r = RequestSpans::of(&t);
        let mut at = |time| r.containing(time).map(|i| t.requests[i].index);
        assert_eq!(at(5), None);
        assert_eq!(at(10), Some(0));
        assert_eq!(at(35), Some(1));
        assert_eq!(at(40), Some(1));
        assert_eq!(at(45), Some(0));
        assert_eq!(at(55), Some(2));
        assert_eq!(at(100), Some(0));
        assert_eq!(at(150), None);
        assert_eq!(at(250), Some(3));
        assert_eq!(at(301), None);
        // Asked out of order, the sweep starts again.
        assert_eq!(at(35), Some(1));
    }

    #[test]
    fn nesting_has_no_depth_limit_and_equal_starts_go_to_the_shortest() {
        // 0: 0-10_000 holds 200 short ones (1 + 10k .. 5 + 10k); 201: 0-5
        // starts with 0 but is shorter.
        let mut requests = vec![request(0, 0, 10_000)];
        requests.extend((1..=200).map(|k| request(k, 10 * k, 10 * k + 5)));
        requests.push(request(201, 0, 5));
        let t = Thread {
            requests,
            ..Thread::default()
        };
        let mut r = RequestSpans::of(&t);
        let mut at = |time| r.containing(time).map(|i| t.requests[i].index);
        assert_eq!(at(0), Some(201));
        assert_eq!(at(7), Some(0));
        assert_eq!(at(1503), Some(150));
        assert_eq!(at(1507), Some(0));
        assert_eq!(at(9_999), Some(0));
    }

    fn named(name: &str, index: u64, start_ns: u64, end_ns: u64) -> Request {
        Request {
            name: name.to_owned(),
            ..request(index, start_ns, end_ns)
        }
    }

    #[test]
    fn endpoints_group_requests_by_name_with_their_samples() {
        // Thread 0: /a 0-10 and 20-50 (30), /b 60-61; thread 1: /a 0-20.
        let mut samples = Samples::new();
        for (time_ns, cpu) in [(5, 1), (25, 2), (30, 3), (55, 100), (61, 4)] {
            samples.push(Sample {
                time_ns,
                cpu_delta_ns: cpu,
                stack: None,
            });
        }
        let p = Profile {
            threads: vec![
                Thread {
                    requests: vec![
                        named("GET /a", 0, 0, 10),
                        named("GET /a", 2, 20, 50),
                        named("GET /b", 3, 60, 61),
                    ],
                    samples,
                    ..Thread::default()
                },
                Thread {
                    requests: vec![named("GET /a", 1, 0, 20)],
                    ..Thread::default()
                },
            ],
            ..Profile::default()
        };
        let e = endpoints(&p);
        let a = Endpoint {
            name: "GET /a".into(),
            requests: 3,
            samples: 3,
            cpu_ns: 6,
            median_ns: 20,
            max_ns: 30,
        };
        let b = Endpoint {
            name: "GET /b".into(),
            requests: 1,
            samples: 1,
            cpu_ns: 4,
            median_ns: 1,
            max_ns: 1,
        };
        // By CPU time; the sample at 55 ns is in no request.
        assert_eq!(e, vec![a, b]);
        assert!(endpoints(&Profile::default()).is_empty());
    }
}
