//! The architecture-specific pieces of the sampler: registers from a signal
//! context, frame setup recognition in prologues and epilogues, pointer
//! authentication, and reading memory during a walk. Depends on `core` and
//! `libc` only, so it can be compile-checked for aarch64 on its own (see the
//! README).

use std::ptr;

/// Reads the interrupted thread's memory. The walk only calls these on
/// addresses it has already checked (stack words inside the thread's live
/// stack, code bytes inside a module's code), so the real implementation is a
/// plain load that cannot fault.
pub(crate) trait Memory {
    fn word(&self, addr: u64) -> u64;
    fn byte(&self, addr: u64) -> u8;
}

/// Direct loads from this process's memory.
pub(crate) struct Direct;

impl Memory for Direct {
    #[inline]
    fn word(&self, addr: u64) -> u64 {
        // SAFETY: the walk passes only 8-aligned addresses inside
        // [interrupted sp, stack top): the live part of the thread's stack,
        // which is mapped.
        unsafe { ptr::read_volatile(addr as *const u64) }
    }

    #[inline]
    fn byte(&self, addr: u64) -> u8 {
        // SAFETY: the walk passes only addresses inside a registered module's
        // code, which stays mapped while the recorder holds the module.
        unsafe { ptr::read_volatile(addr as *const u8) }
    }
}

/// Where a PC in module code sits relative to its frame setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameState {
    /// The frame is set up: the frame pointer walk is right.
    Normal,
    /// The caller's return address is in the given stack slot (x86_64:
    /// `[rsp]` before `push rbp` and on `ret`, `[rsp+8]` on `mov rbp, rsp`),
    /// and the frame pointer is still (or again) the caller's.
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    ReturnAddressAt(u64),
    /// The caller's return address is in the link register (aarch64), and
    /// the frame pointer is the caller's.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    ReturnAddressInLr,
}

/// Classifies the instruction at `pc` (inside `[lo, hi)`, module code).
#[cfg(not(target_arch = "aarch64"))]
#[inline]
pub(crate) fn frame_state<M: Memory>(mem: &M, pc: u64, lo: u64, hi: u64, sp: u64) -> FrameState {
    const PUSH_RBP: u8 = 0x55;
    const RET: u8 = 0xc3;
    const MOV_RBP_RSP: [u8; 3] = [0x48, 0x89, 0xe5];
    let b0 = mem.byte(pc);
    if b0 == PUSH_RBP || b0 == RET {
        return FrameState::ReturnAddressAt(sp);
    }
    if pc > lo
        && pc + 3 <= hi
        && mem.byte(pc - 1) == PUSH_RBP
        && b0 == MOV_RBP_RSP[0]
        && mem.byte(pc + 1) == MOV_RBP_RSP[1]
        && mem.byte(pc + 2) == MOV_RBP_RSP[2]
    {
        return FrameState::ReturnAddressAt(sp.wrapping_add(8));
    }
    FrameState::Normal
}

/// Classifies the instruction at `pc` (inside `[lo, hi)`, module code).
///
/// Cranelift on aarch64: `[paciasp|pacibsp|bti c] stp x29, x30, [sp, #-16]!;
/// mov x29, sp` ... `ldp x29, x30, [sp], #16; [autiasp|autibsp] ret`. Until
/// `mov x29, sp` has run, and from `ldp` on, x29 is the caller's frame and
/// the return address is in x30 (lr).
#[cfg(target_arch = "aarch64")]
#[inline]
pub(crate) fn frame_state<M: Memory>(mem: &M, pc: u64, lo: u64, hi: u64, _sp: u64) -> FrameState {
    const STP_FP_LR_PRE: u32 = 0xa9bf_7bfd; // stp x29, x30, [sp, #-16]!
    const MOV_FP_SP: u32 = 0x9100_03fd; // mov x29, sp
    const RET: u32 = 0xd65f_03c0; // ret
    const PACIASP: u32 = 0xd503_233f;
    const PACIBSP: u32 = 0xd503_237f;
    const AUTIASP: u32 = 0xd503_23bf;
    const AUTIBSP: u32 = 0xd503_23ff;
    const BTI_C: u32 = 0xd503_245f;
    if pc & 3 != 0 || pc + 4 > hi {
        return FrameState::Normal;
    }
    let insn = |a: u64| {
        u32::from_le_bytes([
            mem.byte(a),
            mem.byte(a + 1),
            mem.byte(a + 2),
            mem.byte(a + 3),
        ])
    };
    let i = insn(pc);
    match i {
        STP_FP_LR_PRE | RET | PACIASP | PACIBSP | AUTIASP | AUTIBSP | BTI_C => {
            FrameState::ReturnAddressInLr
        }
        MOV_FP_SP if pc >= lo + 4 && insn(pc - 4) == STP_FP_LR_PRE => FrameState::ReturnAddressInLr,
        _ => FrameState::Normal,
    }
}

/// The target of the direct call that returns to `ra`, if the instruction
/// before `ra` is one (x86_64: `e8 rel32`). Reads only `[ra - 5, ra)`, and
/// only when that lies inside `[lo, ra)` (the module code holding `ra`).
#[cfg(not(target_arch = "aarch64"))]
#[inline]
pub(crate) fn direct_call_target<M: Memory>(mem: &M, ra: u64, lo: u64) -> Option<u64> {
    const CALL_REL32: u8 = 0xe8;
    if ra < lo.saturating_add(5) || mem.byte(ra - 5) != CALL_REL32 {
        return None;
    }
    let rel = i32::from_le_bytes([
        mem.byte(ra - 4),
        mem.byte(ra - 3),
        mem.byte(ra - 2),
        mem.byte(ra - 1),
    ]);
    Some(ra.wrapping_add(rel as i64 as u64))
}

/// The target of the direct call that returns to `ra`, if the instruction
/// before `ra` is one (aarch64: `bl imm26`). Reads only `[ra - 4, ra)`, and
/// only when that lies inside `[lo, ra)`.
#[cfg(target_arch = "aarch64")]
#[inline]
pub(crate) fn direct_call_target<M: Memory>(mem: &M, ra: u64, lo: u64) -> Option<u64> {
    if ra & 3 != 0 || ra < lo.saturating_add(4) {
        return None;
    }
    let a = ra - 4;
    let insn = u32::from_le_bytes([
        mem.byte(a),
        mem.byte(a + 1),
        mem.byte(a + 2),
        mem.byte(a + 3),
    ]);
    if insn & 0xfc00_0000 != 0x9400_0000 {
        return None;
    }
    // imm26, sign-extended, in instructions.
    let off = (((insn & 0x03ff_ffff) << 6) as i32 >> 6) as i64 * 4;
    Some(a.wrapping_add(off as u64))
}

/// Removes pointer-authentication bits from a return address.
#[cfg(target_arch = "aarch64")]
#[inline]
pub(crate) fn strip_pac(addr: u64) -> u64 {
    let mut a = addr;
    // SAFETY: `xpaclri` (spelled `hint #7` so that any assembler takes it)
    // only rewrites x30; it is a NOP on cores without pointer authentication.
    unsafe {
        std::arch::asm!(
            "mov x30, {a}",
            "hint #7",
            "mov {a}, x30",
            a = inout(reg) a,
            out("x30") _,
            options(nomem, nostack, preserves_flags),
        );
    }
    a
}

#[cfg(not(target_arch = "aarch64"))]
#[inline]
pub(crate) fn strip_pac(addr: u64) -> u64 {
    addr
}

/// Where a suspended Wasmtime fiber's frame pointer is, relative to the
/// stack pointer its stack switch saved (at the top of the fiber stack):
/// `wasmtime_fiber_switch` pushes rbp, rbx, r12-r15 (x86_64: rbp 0x28 above
/// the saved sp) or stores x29/x30 last of ten pairs (aarch64: 0x90 above).
/// Checked against wasmtime-internal-fiber 48's `stackswitch/*.rs`.
#[inline]
pub(crate) const fn suspended_fp_offset() -> u64 {
    if cfg!(target_arch = "aarch64") {
        0x90
    } else {
        0x28
    }
}

/// The frame pointer register: inlined into `find_boundary` (which is never
/// inlined), it is that function's own frame record.
#[inline(always)]
pub(crate) fn current_fp() -> u64 {
    let fp: u64;
    // SAFETY: reads a register.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    fp
}

/// Interrupted registers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Regs {
    pub pc: u64,
    pub fp: u64,
    pub sp: u64,
    pub lr: u64,
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) unsafe fn regs_from(uc: *mut libc::c_void) -> Regs {
    let uc = &*(uc as *const libc::ucontext_t);
    let g = &uc.uc_mcontext.gregs;
    Regs {
        pc: g[libc::REG_RIP as usize] as u64,
        fp: g[libc::REG_RBP as usize] as u64,
        sp: g[libc::REG_RSP as usize] as u64,
        lr: 0,
    }
}

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub(crate) unsafe fn regs_from(uc: *mut libc::c_void) -> Regs {
    let uc = &*(uc as *const libc::ucontext_t);
    let m = &uc.uc_mcontext;
    Regs {
        pc: m.pc,
        fp: m.regs[29],
        sp: m.sp,
        lr: m.regs[30],
    }
}
