//! What differs per architecture, in Rust: the saved-context layout, the
//! initial context of a new goroutine, the frame-record layout and reading
//! it, and alignment.  The asm side of the same facts is in `asm/*.S`; the
//! offsets both sides use are checked against `include/gstack_abi.h` in
//! `src/abi.rs` at compile time.

cfg_if::cfg_if! {
    if #[cfg(target_arch = "x86_64")] {
        mod x86_64;
        pub use self::x86_64::*;
    } else if #[cfg(target_arch = "aarch64")] {
        mod aarch64;
        pub use self::aarch64::*;
    } else {
        compile_error!("gstack supports x86_64 and aarch64 only");
    }
}

/// Size of a frame record, `[saved FP, return address]`, on both
/// architectures: x86-64 `push rbp; mov rbp, rsp` after the `call` pushed
/// the return address; aarch64 `stp x29, x30, [sp, #-16]!; mov x29, sp`.
pub const FRAME_RECORD_SIZE: usize = 16;

/// Stack alignment at every call boundary (both ABIs require 16 bytes).
pub const STACK_ALIGN: usize = 16;

/// A frame record read from a stack: the caller's FP and the return address
/// into the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRecord {
    pub saved_fp: usize,
    pub ret_pc: usize,
}

/// Read the frame record that `fp` points at.
///
/// # Safety
/// `fp` must point at a live frame record: 16 readable bytes, 8-aligned.
#[inline]
pub unsafe fn read_frame_record(fp: usize) -> FrameRecord {
    // SAFETY: the caller guarantees fp addresses a readable frame record;
    // the layout [saved FP, return address] is the same on both arches.
    unsafe {
        FrameRecord {
            saved_fp: *(fp as *const usize),
            ret_pc: *((fp + 8) as *const usize),
        }
    }
}

/// Bytes of a new goroutine's start arguments (the words after g, six
/// slots with the last spare, keeping 16-byte alignment) at the bottom of
/// its initial frame, `sched.sp`; gs_goentry loads them and pops them.
pub const START_ARGS_SIZE: usize = 48;

/// Put a new goroutine's start arguments on its stack below `top` (from
/// [`initial_sp`]) and return the SP its context starts with.
///
/// # Safety
/// `[top - START_ARGS_SIZE, top)` is writable stack nobody else uses.
pub unsafe fn push_start_args(top: usize, args: &[usize; 6]) -> usize {
    let sp = top - START_ARGS_SIZE;
    // SAFETY: the caller's guarantee; sp is 16-byte aligned.
    unsafe { (sp as *mut [usize; 6]).write(*args) };
    sp
}

/// The SP a goroutine starts with: the top of its stack, aligned down.
#[inline]
pub const fn initial_sp(stack_hi: usize) -> usize {
    stack_hi & !(STACK_ALIGN - 1)
}
