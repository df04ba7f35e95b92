//! aarch64 (AAPCS64): the saved context and the initial goroutine context.
//!
//! ```text
//! A goroutine's stack while it is running            while it is parked
//!  stack_hi +-------------------+                     (same frames; the
//!           | 0, gs_goexit_pc   | entry frame record:  registers that a
//!           |                   |   [x29, x30]         call preserves are
//!           | entry fn's frame  | <- x29 chain ends    in g.sched, not on
//!           | ...               |                      the stack)
//!           | innermost frame   | <- sp
//!           |                   |
//!  guard    |  stackguard0 ---- | SP below this => morestack (managed)
//!  stack_lo +-------------------+
//! ```

/// Registers preserved across a call, plus where to resume.  Layout is
/// shared with `asm/aarch64.S` (see the table at its top).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub sp: usize,
    pub pc: usize,
    /// x29
    pub fp: usize,
    /// x19..=x28
    pub x: [usize; 10],
    /// d8..=d15 (the low 64 bits of v8..v15)
    pub d: [u64; 8],
}

impl Context {
    pub const fn zeroed() -> Context {
        Context {
            sp: 0,
            pc: 0,
            fp: 0,
            x: [0; 10],
            d: [0; 8],
        }
    }

    /// A finished goroutine's return value: gs_goentry moves it into x19
    /// before gs_mcall saves the context.
    pub fn retval(&self) -> usize {
        self.x[0]
    }

    /// The context a new goroutine starts from: `gs_goentry` at the top of
    /// the stack with x29 = 0 (the frame-record chain ends there), the entry
    /// function in x19 and the G in x20 (see gs_goentry in asm/aarch64.S).
    pub fn new_goroutine(stack_hi: usize, goentry: usize, entry_fn: usize, g: usize) -> Context {
        let mut c = Context::zeroed();
        c.sp = super::initial_sp(stack_hi);
        c.pc = goentry;
        c.x[0] = entry_fn;
        c.x[1] = g;
        c
    }
}

/// The offsets of Context's fields that the asm uses, for `src/abi.rs`.
pub const CTX_FIELD_CHECKS: &[(&str, usize, usize)] = &[
    (
        "x19",
        memoffset::offset_of!(Context, x),
        crate::abi::GS_CTX_X19,
    ),
    (
        "x21",
        memoffset::offset_of!(Context, x) + 16,
        crate::abi::GS_CTX_X21,
    ),
    (
        "x23",
        memoffset::offset_of!(Context, x) + 32,
        crate::abi::GS_CTX_X23,
    ),
    (
        "x25",
        memoffset::offset_of!(Context, x) + 48,
        crate::abi::GS_CTX_X25,
    ),
    (
        "x27",
        memoffset::offset_of!(Context, x) + 64,
        crate::abi::GS_CTX_X27,
    ),
    (
        "d8",
        memoffset::offset_of!(Context, d),
        crate::abi::GS_CTX_D8,
    ),
    (
        "d10",
        memoffset::offset_of!(Context, d) + 16,
        crate::abi::GS_CTX_D10,
    ),
    (
        "d12",
        memoffset::offset_of!(Context, d) + 32,
        crate::abi::GS_CTX_D12,
    ),
    (
        "d14",
        memoffset::offset_of!(Context, d) + 48,
        crate::abi::GS_CTX_D14,
    ),
];
