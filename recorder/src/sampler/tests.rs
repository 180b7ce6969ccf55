//! Unit tests of the pure parts: the CPU-clock rule, the walk and the
//! boundary scan, on a fake stack and fake code.

use std::collections::HashMap;

use wrec_format::flags;

use super::boundary_scan::{scan_for_boundary, Scan, SCAN_BYTES, SCAN_CANDIDATES};
use super::handler::may_skip_cpu;
use super::text_ranges::Code;
use super::walk::{walk, Via, WalkInput};
use crate::arch::Memory;

/// SPEC.md §3's rule, case by case, at 100 µs: a sample on time, in
/// wasm after a sample in wasm, with the clock read under 1 ms ago,
/// skips the CPU clock; anything else reads it.
#[test]
fn the_cpu_clock_is_skipped_only_where_the_thread_evidently_ran() {
    let i = 100_000;
    let skip = |time, host, overrun, prev, prev_host, read| {
        may_skip_cpu(i, time, host, overrun, prev, prev_host, read)
    };
    let t = 10_000_000;
    assert!(skip(t, false, false, t - i, false, t - 5 * i));
    // On time includes a timer up to half an interval late.
    assert!(skip(t, false, false, t - 3 * i / 2, false, t - 5 * i));
    assert!(!skip(t, false, false, t - 3 * i / 2 - 1, false, t - 5 * i));
    assert!(!skip(t, false, true, t - i, false, t - 5 * i));
    // Host code may block: its samples and the next read the clock.
    assert!(!skip(t, true, false, t - i, false, t - 5 * i));
    assert!(!skip(t, false, false, t - i, true, t - 5 * i));
    // At least every 1 ms: at 100 µs, nine samples in ten skip.
    assert!(skip(t, false, false, t - i, false, t - 9 * i));
    assert!(!skip(t, false, false, t - i, false, t - 10 * i));
    let (mut read, mut skipped) = (0u64, 0);
    for k in 1..=1000u64 {
        if skip(k * i, false, false, (k - 1) * i, false, read) {
            skipped += 1;
        } else {
            read = k * i;
        }
    }
    assert_eq!(skipped, 900);
}

struct FakeMem {
    words: HashMap<u64, u64>,
    code: HashMap<u64, u8>,
}

impl Memory for FakeMem {
    fn word(&self, addr: u64) -> u64 {
        assert_eq!(addr & 7, 0, "unaligned read at {addr:#x}");
        *self
            .words
            .get(&addr)
            .unwrap_or_else(|| panic!("read outside the fake stack at {addr:#x}"))
    }
    fn byte(&self, addr: u64) -> u8 {
        *self.code.get(&addr).unwrap_or(&0x90)
    }
}

struct FakeCode(u64, u64);
impl Code for FakeCode {
    fn range_of(&self, addr: u64) -> Option<(u64, u64)> {
        (addr >= self.0 && addr < self.1).then_some((self.0, self.1))
    }
}

const TEXT: FakeCode = FakeCode(0x1000, 0x2000);

fn walk2(mem: &FakeMem, code: &FakeCode, inp: &WalkInput, out: &mut [u64]) -> (usize, u8) {
    let (n, fl, _) = walk(mem, code, inp, out);
    (n, fl)
}
const HOST_RA: u64 = 0x9000;

/// A stack with frames at 0x100, 0x120, 0x140 (fp chain), return
/// addresses 0x1100, 0x1200 (wasm) and HOST_RA.
fn stack() -> FakeMem {
    let mut words = HashMap::new();
    for a in (0xf0..0x200).step_by(8) {
        words.insert(a, 0xdead_0000 + a);
    }
    words.insert(0x100, 0x120);
    words.insert(0x108, 0x1100);
    words.insert(0x120, 0x140);
    words.insert(0x128, 0x1200);
    words.insert(0x140, 0x160);
    words.insert(0x148, HOST_RA);
    FakeMem {
        words,
        code: HashMap::new(),
    }
}

fn input(pc: u64, fp: u64, sp: u64) -> WalkInput {
    WalkInput {
        pc,
        fp,
        sp,
        lr: 0,
        stack_lo: 0x0,
        stack_hi: 0x200,
        boundary: None,
        wasm_active: None,
        in_host_call: None,
        nested_wasm: false,
        anchor: 0,
    }
}

#[test]
fn plain_walk_stops_at_host() {
    let mem = stack();
    let mut out = [0u64; 16];
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
    assert_eq!(&out[..n], &[0x1050, 0x1100, 0x1200]);
    assert_eq!(fl, 0);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn prologue_and_epilogue() {
    let mut mem = stack();
    // push rbp at 0x1050: return address at [rsp] = 0x1180, rbp is the caller's (0x100).
    mem.code.insert(0x1050, 0x55);
    mem.words.insert(0xf0, 0x1180);
    let mut out = [0u64; 16];
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
    assert_eq!(&out[..n], &[0x1050, 0x1180, 0x1100, 0x1200]);
    assert_eq!(fl, flags::PROLOGUE);
    // ret
    mem.code.insert(0x1050, 0xc3);
    let (n, _) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
    assert_eq!(&out[..n], &[0x1050, 0x1180, 0x1100, 0x1200]);
    // mov rbp, rsp after push rbp: return address at [rsp+8]
    mem.code.insert(0x1050, 0x48);
    mem.code.insert(0x1051, 0x89);
    mem.code.insert(0x1052, 0xe5);
    mem.code.insert(0x104f, 0x55);
    mem.words.insert(0xf0, 0x100); // the pushed rbp
    mem.words.insert(0xf8, 0x1190);
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
    assert_eq!(&out[..n], &[0x1050, 0x1190, 0x1100, 0x1200]);
    assert_eq!(fl, flags::PROLOGUE);
    // mov rbp, rsp NOT preceded by push rbp: normal walk.
    mem.code.insert(0x104f, 0x00);
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
    assert_eq!(&out[..n], &[0x1050, 0x1100, 0x1200]);
    assert_eq!(fl, 0);
}

#[test]
fn host_sample_walks_to_wasm() {
    let mut mem = stack();
    // Host frames at 0xe0 -> 0xf0 -> 0x100 (whose RA is wasm).
    for a in (0xc0..0xf0).step_by(8) {
        mem.words.insert(a, 0);
    }
    mem.words.insert(0xe0, 0xf0);
    mem.words.insert(0xe8, 0x7777);
    mem.words.insert(0xf0, 0x100);
    mem.words.insert(0xf8, 0x8888);
    let mut inp = input(0x5000, 0xe0, 0xd0);
    let mut out = [0u64; 16];
    let (n, fl) = walk2(&mem, &TEXT, &inp, &mut out);
    assert_eq!(&out[..n], &[0x1100, 0x1200]);
    assert_eq!(fl, flags::HOST);
    assert_eq!(walk(&mem, &TEXT, &inp, &mut out).2, Via::Chain);
    // Broken host chain (glibc), no hook: the stack scan finds the record.
    inp.fp = 0x12345; // garbage
    let (n, fl, via) = walk(&mem, &TEXT, &inp, &mut out);
    assert_eq!(&out[..n], &[0x1100, 0x1200]);
    assert_eq!((fl, via), (flags::HOST, Via::Scan));
    // ... also when the hook says a host call is in progress; not when it
    // says none is (the thread is in the runtime).
    inp.in_host_call = Some(true);
    let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
    assert_eq!((&out[..n], via), (&[0x1100u64, 0x1200][..], Via::Scan));
    inp.in_host_call = Some(false);
    assert_eq!(walk2(&mem, &TEXT, &inp, &mut out), (0, flags::HOST));
    // A complete host chain (ends in a null frame pointer): no wasm, no scan.
    inp.in_host_call = None;
    inp.fp = 0xe0;
    mem.words.insert(0xe0, 0);
    assert_eq!(walk2(&mem, &TEXT, &inp, &mut out), (0, flags::HOST));
    // ... unless it ends below the sampler's creator: then a garbage
    // frame pointer led to a zero word, and the scan finds the record.
    inp.anchor = 0x150;
    let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
    assert_eq!((&out[..n], via), (&[0x1100u64, 0x1200][..], Via::Scan));
    inp.anchor = 0;
    mem.words.insert(0xe0, 0xf0);
    inp.fp = 0x12345;
    inp.in_host_call = Some(true);
    inp.boundary = Some((0x100, 0x1100));
    let (n, fl, via) = walk(&mem, &TEXT, &inp, &mut out);
    assert_eq!(&out[..n], &[0x1100, 0x1200]);
    assert_eq!((fl, via), (flags::HOST, Via::Hook));
    // A walk that went astray (garbage rbp) loses to the hook's boundary,
    // unless wasm was called again from the host call.
    mem.words.insert(0xe0, 0x120); // skips the frame at 0x100
    inp.fp = 0xe0;
    let (n, _) = walk2(&mem, &TEXT, &inp, &mut out);
    assert_eq!(&out[..n], &[0x1100, 0x1200]);
    inp.boundary = Some((0x120, 0x1200));
    inp.fp = 0xf0;
    mem.words.insert(0xe0, 0xf0);
    let (n, _) = walk2(&mem, &TEXT, &inp, &mut out);
    assert_eq!(
        &out[..n],
        &[0x1200],
        "boundary preferred over a deeper walk"
    );
    inp.nested_wasm = true;
    let (n, _) = walk2(&mem, &TEXT, &inp, &mut out);
    assert_eq!(
        &out[..n],
        &[0x1100, 0x1200],
        "nested wasm below the boundary"
    );
    inp.nested_wasm = false;
    inp.fp = 0x12345;
    // A stale boundary (its slot no longer holds the return address) is
    // ignored (and the scan finds the record).
    inp.boundary = Some((0x100, 0x1104));
    let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
    assert_eq!((&out[..n], via), (&[0x1100u64, 0x1200][..], Via::Scan));
    // Nothing for the scan to find: broken.
    mem.words.insert(0x108, HOST_RA);
    let (_, fl) = walk2(&mem, &TEXT, &inp, &mut out);
    assert_eq!(fl, flags::HOST | flags::BROKEN);
    // No wasm running: an empty host sample, not broken.
    inp.wasm_active = Some(false);
    let (n, fl) = walk2(&mem, &TEXT, &inp, &mut out);
    assert_eq!((n, fl), (0, flags::HOST));
}

/// The stack scan for a host sample whose frame-pointer chain is broken.
#[cfg(target_arch = "x86_64")]
#[test]
fn scan_skips_implausible_records() {
    let mut mem = stack();
    // The live stack starts at sp = 0xa0 (nothing below it is readable).
    for a in (0xa0..0xf0).step_by(8) {
        mem.words.insert(a, 0);
    }
    // A stale record of an earlier wasm call at 0xc0: its return address
    // follows a direct call (e8 rel32) to 0x1400, module code.
    mem.words.insert(0xc0, 0x120);
    mem.words.insert(0xc8, 0x1180);
    mem.code.insert(0x117b, 0xe8);
    for (k, b) in (0x1400i32 - 0x1180).to_le_bytes().into_iter().enumerate() {
        mem.code.insert(0x117c + k as u64, b);
    }
    // A return address into module code with a saved "fp" that is none.
    mem.words.insert(0xd0, 0x12345);
    mem.words.insert(0xd8, 0x1300);
    // An odd slot (not 16-byte aligned) is never a record.
    mem.words.insert(0xa8, 0x100);
    mem.words.insert(0xb0, 0x1310);
    let mut inp = input(0x5000, 0x12345, 0xa0);
    let mut out = [0u64; 16];
    let (n, fl, via) = walk(&mem, &TEXT, &inp, &mut out);
    assert_eq!(&out[..n], &[0x1100, 0x1200]);
    assert_eq!((fl, via), (flags::HOST, Via::Scan));
    // A direct call to the host (not to module code) is a boundary.
    for (k, b) in (0x9000i32 - 0x1180).to_le_bytes().into_iter().enumerate() {
        mem.code.insert(0x117c + k as u64, b);
    }
    let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
    assert_eq!(&out[..n], &[0x1180, 0x1200]);
    assert_eq!(via, Via::Scan);
    // A record whose caller's record would reach past the stack top is
    // rejected; every read stays below the top (the fake panics otherwise).
    // No plausible record in the whole live stack: no wasm on it, so the
    // sample is an empty host sample, not a broken one.
    mem.code.insert(0x117b, 0x90);
    inp.stack_hi = 0x130;
    assert_eq!(scan_for_boundary(&mem, &TEXT, 0xa0, 0x130), Scan::NoWasm);
    assert_eq!(walk2(&mem, &TEXT, &inp, &mut out), (0, flags::HOST));
    // The scan stops SCAN_BYTES above sp.
    inp.stack_hi = 0x200;
    assert_eq!(
        scan_for_boundary(&mem, &TEXT, 0xa0, 0x200),
        Scan::Found(0xc0, 0x1180)
    );
    let base = 0x10_0000;
    let r = base + SCAN_BYTES + 16;
    let mut far = FakeMem {
        words: (base..r + 48).step_by(8).map(|a| (a, 0)).collect(),
        code: HashMap::new(),
    };
    far.words.insert(r, r + 16);
    far.words.insert(r + 8, 0x1100);
    far.words.insert(r + 16, r + 32);
    far.words.insert(r + 24, 0x1200);
    far.words.insert(r + 40, HOST_RA);
    assert_eq!(scan_for_boundary(&far, &TEXT, base, r + 48), Scan::GaveUp);
    assert_eq!(
        scan_for_boundary(&far, &TEXT, base + 16, r + 48),
        Scan::Found(r, 0x1100)
    );
    // Too many implausible candidates: gives up.
    for k in 1..=SCAN_CANDIDATES as u64 {
        far.words.insert(base + 16 * k + 8, 0x1100);
    }
    assert_eq!(
        scan_for_boundary(&far, &TEXT, base + 16, r + 48),
        Scan::GaveUp
    );
    // sp outside the stack (alternate signal stack): no scan.
    inp.sp = 0x5000;
    assert_eq!(
        walk2(&mem, &TEXT, &inp, &mut out),
        (0, flags::HOST | flags::BROKEN)
    );
}

#[test]
fn bounded_and_checked() {
    let mut mem = stack();
    let mut out = [0u64; 2];
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
    assert_eq!(n, 2);
    assert_eq!(fl, flags::TRUNCATED);
    // A loop in the chain ends as BROKEN (fps must increase).
    mem.words.insert(0x120, 0x100);
    let mut out = [0u64; 16];
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
    assert_eq!(&out[..n], &[0x1050, 0x1100, 0x1200]);
    assert_eq!(fl, flags::BROKEN);
    // fp below sp or past the stack top is never read.
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x80, 0xf0), &mut out);
    assert_eq!((n, fl), (1, flags::BROKEN));
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x1f8, 0xf0), &mut out);
    assert_eq!((n, fl), (1, flags::BROKEN));
    // sp outside the stack (alternate signal stack): nothing is read.
    let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0x5000), &mut out);
    assert_eq!((n, fl), (1, flags::BROKEN));
}
