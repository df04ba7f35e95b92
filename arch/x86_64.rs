//! x86-64 (System V): the saved context and the initial goroutine context.
//!
//! ```text
//! A goroutine's stack while it is running            while it is parked
//!  stack_hi +-------------------+                     (same frames; the
//!           | gs_goexit_pc      | ret of gs_goentry's  registers that a
//!           | 0                 | entry frame record   call preserves are
//!           | entry fn's frame  | <- rbp chain ends    in g.sched, not on
//!           | ...               |                      the stack)
//!           | innermost frame   | <- rsp
//!           |                   |
//!  guard    |  stackguard0 ---- | SP below this => morestack (managed)
//!  stack_lo +-------------------+
//! ```

/// Registers preserved across a call, plus where to resume.  Layout is
/// shared with `asm/x86_64.S` (see the table at its top).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub sp: usize,
    pub pc: usize,
    pub fp: usize,
    pub rbx: usize,
    pub r12: usize,
    pub r13: usize,
    pub r14: usize,
    pub r15: usize,
    /// SSE control/status register; its control bits are callee-saved.
    pub mxcsr: u32,
    /// x87 control word; callee-saved.
    pub fpcw: u16,
    _pad: u16,
}

/// MXCSR at process start: all exceptions masked, round to nearest.
pub const DEFAULT_MXCSR: u32 = 0x1f80;
/// x87 control word at process start: extended precision, round to nearest.
pub const DEFAULT_FPCW: u16 = 0x037f;

impl Context {
    pub const fn zeroed() -> Context {
        Context {
            sp: 0,
            pc: 0,
            fp: 0,
            rbx: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            mxcsr: DEFAULT_MXCSR,
            fpcw: DEFAULT_FPCW,
            _pad: 0,
        }
    }

    /// A finished goroutine's return value: gs_goentry moves it into rbx
    /// before gs_mcall saves the context.
    pub fn retval(&self) -> usize {
        self.rbx
    }

    /// The context a new goroutine starts from: `gs_goentry` at the top of
    /// the stack with rbp = 0 (the frame-record chain ends there), the entry
    /// function in rbx and the G in r12 (see gs_goentry in asm/x86_64.S).
    pub fn new_goroutine(stack_hi: usize, goentry: usize, entry_fn: usize, g: usize) -> Context {
        Context {
            sp: super::initial_sp(stack_hi),
            pc: goentry,
            rbx: entry_fn,
            r12: g,
            ..Context::zeroed()
        }
    }
}

/// The offsets of Context's fields that the asm uses, for `src/abi.rs`.
pub const CTX_FIELD_CHECKS: &[(&str, usize, usize)] = &[
    (
        "rbx",
        memoffset::offset_of!(Context, rbx),
        crate::abi::GS_CTX_RBX,
    ),
    (
        "r12",
        memoffset::offset_of!(Context, r12),
        crate::abi::GS_CTX_R12,
    ),
    (
        "r13",
        memoffset::offset_of!(Context, r13),
        crate::abi::GS_CTX_R13,
    ),
    (
        "r14",
        memoffset::offset_of!(Context, r14),
        crate::abi::GS_CTX_R14,
    ),
    (
        "r15",
        memoffset::offset_of!(Context, r15),
        crate::abi::GS_CTX_R15,
    ),
    (
        "mxcsr",
        memoffset::offset_of!(Context, mxcsr),
        crate::abi::GS_CTX_MXCSR,
    ),
    (
        "fpcw",
        memoffset::offset_of!(Context, fpcw),
        crate::abi::GS_CTX_FPCW,
    ),
];
