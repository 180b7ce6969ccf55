//! A thread's samples, a few bytes each.

use wrec_format::varint::{self, unzigzag, zigzag, MAX_VARINT_LEN};

use super::StackId;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Nanoseconds since [`Profile::start_ns`](super::Profile::start_ns) (monotonic).
    pub time_ns: u64,
    /// Thread CPU nanoseconds since the thread's previous sample.
    pub cpu_delta_ns: u64,
    /// The leaf stack node; `None` for a sample with no frames at all.
    /// `Some(StackId::MAX)` is not a valid node (no profile has that many).
    pub stack: Option<StackId>,
}

/// A thread's samples, 3 to 5 bytes each instead of a [`Sample`]'s 24: a
/// million samples is most of a profile's memory.
///
/// They are a byte stream read in order, three varints a sample. The stack:
/// `zigzag(id − previous id)` (none is −1): a sample's leaf was mostly
/// created for it or for a recent sample, so it is near the previous one.
/// Traces carry whole µs (the format's sample records hold µs deltas), so
/// then the change of the time delta from the previous sample's,
/// `zigzag(Δt − Δt_prev)` in µs (a steady interval gives 0), and
/// `zigzag(Δcpu − Δt)` in µs (a busy thread's CPU time follows the wall
/// clock). These two are shifted left by one; a set low bit instead marks
/// an escape followed by the exact ns value, for values that are not whole
/// µs or would not fit, so any [`Sample`] comes back exactly (times in any
/// order, with wrapping arithmetic). Only sequential access is offered:
/// every reader walks the samples in order.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Samples {
    /// Per sample, its stack token, time token and CPU token (see above).
    pub(super) bytes: Vec<u8>,
    len: usize,
    /// Encoder state: the last sample's stack and time, and the µs time
    /// delta the next one is predicted from.
    last: Cursor,
}

/// Where a decoder (or the encoder) stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Cursor {
    /// The stack id, −1 for none.
    stack: i64,
    time_ns: u64,
    /// The last Δt that was whole µs, in µs (0 at the start).
    dt_us: i64,
}

/// Zigzag of a token value, with room for the escape bit; `None` if it
/// does not fit in 63 bits.
fn token(v: i64) -> Option<u64> {
    let z = zigzag(v);
    (z >> 63 == 0).then_some(z << 1)
}

fn untoken(t: u64) -> i64 {
    unzigzag(t >> 1)
}

/// Whole µs of `ns`, if it is.
fn whole_us(ns: i64) -> Option<i64> {
    (ns % 1000 == 0).then_some(ns / 1000)
}

impl Samples {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, s: Sample) {
        debug_assert_ne!(s.stack, Some(StackId::MAX));
        self.len += 1;
        // The sample's varints go to a buffer on the stack, then to `bytes`
        // at once (`varint::push` would copy each on its own: the encoding
        // would take twice as long).
        let mut buf = [0u8; 5 * MAX_VARINT_LEN];
        let stack = s.stack.map_or(-1, i64::from);
        let mut at = varint::put(&mut buf, 0, zigzag(stack - self.last.stack));
        self.last.stack = stack;
        let dt_ns = s.time_ns.wrapping_sub(self.last.time_ns) as i64;
        // The µs Δt the CPU delta is predicted from: this sample's, or 0
        // when it is not whole µs.
        let mut dt_us = 0;
        match whole_us(dt_ns).and_then(|us| Some((us, token(us.wrapping_sub(self.last.dt_us))?))) {
            Some((us, t)) => {
                at = varint::put(&mut buf, at, t);
                self.last.dt_us = us;
                dt_us = us;
            }
            None => {
                at = varint::put(&mut buf, at, 1);
                at = varint::put(&mut buf, at, dt_ns as u64);
            }
        }
        self.last.time_ns = s.time_ns;
        let cpu = i64::try_from(s.cpu_delta_ns).ok().and_then(whole_us);
        match cpu.and_then(|us| token(us.wrapping_sub(dt_us))) {
            Some(t) => at = varint::put(&mut buf, at, t),
            None => {
                at = varint::put(&mut buf, at, 1);
                at = varint::put(&mut buf, at, s.cpu_delta_ns);
            }
        }
        self.bytes.extend_from_slice(&buf[..at]);
    }

    pub fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(3 * additional);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The samples in order, by value.
    pub fn iter(&self) -> SampleIter<'_> {
        SampleIter {
            left: self.len,
            bytes: &self.bytes,
            at: 0,
            cur: Cursor::default(),
        }
    }
}

impl std::fmt::Debug for Samples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// See [`Samples::iter`].
pub struct SampleIter<'a> {
    left: usize,
    bytes: &'a [u8],
    at: usize,
    cur: Cursor,
}

impl SampleIter<'_> {
    /// The next varint of the stream, which only [`Samples::push`] wrote.
    fn varint(&mut self) -> u64 {
        varint::get(self.bytes, &mut self.at).expect("a sample stream Samples::push wrote")
    }
}

impl Iterator for SampleIter<'_> {
    type Item = Sample;
    fn next(&mut self) -> Option<Sample> {
        self.left = self.left.checked_sub(1)?;
        self.cur.stack += unzigzag(self.varint());
        let mut dt_us = 0;
        let t = self.varint();
        if t & 1 == 0 {
            dt_us = self.cur.dt_us.wrapping_add(untoken(t));
            self.cur.dt_us = dt_us;
            self.cur.time_ns = self
                .cur
                .time_ns
                .wrapping_add(dt_us.wrapping_mul(1000) as u64);
        } else {
            let dt_ns = self.varint();
            self.cur.time_ns = self.cur.time_ns.wrapping_add(dt_ns);
        }
        let c = self.varint();
        let cpu_delta_ns = if c & 1 == 0 {
            untoken(c).wrapping_add(dt_us).wrapping_mul(1000) as u64
        } else {
            self.varint()
        };
        Some(Sample {
            time_ns: self.cur.time_ns,
            cpu_delta_ns,
            stack: StackId::try_from(self.cur.stack).ok(),
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for SampleIter<'_> {}

impl<'a> IntoIterator for &'a Samples {
    type Item = Sample;
    type IntoIter = SampleIter<'a>;
    fn into_iter(self) -> SampleIter<'a> {
        self.iter()
    }
}

impl FromIterator<Sample> for Samples {
    fn from_iter<I: IntoIterator<Item = Sample>>(iter: I) -> Self {
        let mut s = Samples::new();
        for x in iter {
            s.push(x);
        }
        s
    }
}

impl From<Vec<Sample>> for Samples {
    fn from(v: Vec<Sample>) -> Self {
        v.into_iter().collect()
    }
}
