//! The unwinder: walk a stopped goroutine's frames along the frame-pointer
//! chain, from its saved context to its entry frame.
//!
//! Frame ABI (both architectures): FP points at the frame record
//! `[saved FP, return address]`; a frame's SP at its call site is the
//! callee's FP + 16; the entry frame's record holds saved FP = 0 and return
//! address = `gs_goexit_pc`, at `initial_sp(stack_hi) - 16`.
//!
//! ```text
//!   stack_hi  +--------------------------+
//!             | 0 | gs_goexit_pc         | <- entry frame's FP (record)
//!             | entry function's frame   |    its SP = next FP + 16
//!             +--------------------------+
//!             | FP' | ret into entry fn  | <- FP of frame 1
//!             | frame 1                  |
//!             +--------------------------+
//!             | FP  | ret into frame 1   | <- FP of frame 0 (sched.fp)
//!             | frame 0 (innermost)      |
//!   sched.sp  +--------------------------+    pc = sched.pc (a call site)
//! ```
//!
//! (After an imprecise frame — ordinary code, which on aarch64 keeps its
//! frame record at the *bottom* of its frame — the next precise frame's SP
//! is derived from its own map: FP - frame size.)
//!
//! Every frame yields pc, sp, fp, its function and its call site's pointer
//! slots.  A frame whose pc is not a registered call site is *imprecise*:
//! the walk reports it (and it forbids moving the stack).  Any
//! inconsistency (an FP outside the stack or not increasing, a frame size
//! that disagrees with the map, no entry frame) fails the walk with an
//! error that says where.

use crate::arch::{initial_sp, read_frame_record, FRAME_RECORD_SIZE};
use crate::functab::{CallSite, Cursor, FuncInfo};
use std::fmt;

/// Where a walk starts: a context saved when the goroutine stopped (or a
/// syscall/libcall SP and PC recorded on the way out of managed code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkStart {
    pub pc: usize,
    pub sp: usize,
    pub fp: usize,
}

impl WalkStart {
    /// Where a stopped goroutine's frames start: the record of the system
    /// call or libcall it is in, else its saved context.
    pub(crate) fn stopped(g: &crate::g::G) -> WalkStart {
        if let Some((pc, sp, fp)) = g.syscall_record() {
            WalkStart { pc, sp, fp }
        // SAFETY: a stopped goroutine (our caller's premise) stays on its M
        // for as long as it is in a libcall.
        } else if let Some((pc, sp, fp)) = unsafe { g.libcall_record() } {
            WalkStart { pc, sp, fp }
        } else {
            WalkStart::saved(g)
        }
    }

    /// Where a goroutine stopped at a call site: its saved context.
    pub(crate) fn saved(g: &crate::g::G) -> WalkStart {
        WalkStart {
            pc: g.sched.pc,
            sp: g.sched.sp,
            fp: g.sched.fp,
        }
    }
}

/// [`walk`] over goroutine `g`'s stack from `start`, with the function
/// table held for the whole walk.
///
/// # Safety
/// As for [`walk`]: `g` is stopped and stays so.
pub(crate) unsafe fn walk_g(
    g: &crate::g::G,
    start: WalkStart,
    mut visit: impl FnMut(&Frame<'_>),
) -> Result<usize, WalkError> {
    let table = crate::functab::read();
    let mut cursor = table.cursor();
    // SAFETY: the caller's guarantee.
    unsafe { walk(g.stack_lo, g.stack_hi, start, &mut cursor, |f| visit(f)) }
}

/// One frame of a walk.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Return address into this frame's function (its current call site).
    pub pc: usize,
    /// SP of this frame at that call.
    pub sp: usize,
    /// This frame's FP (its frame record).
    pub fp: usize,
    /// The registered function, or None.
    pub func: Option<&'a FuncInfo>,
    /// The registered call site, or None (imprecise frame).
    pub site: Option<&'a CallSite>,
}

impl<'a> Frame<'a> {
    /// Whether the runtime knows every pointer in this frame.
    pub fn is_precise(&self) -> bool {
        self.site.is_some()
    }

    /// Addresses of this frame's pointer slots (empty when imprecise).
    pub fn ptr_slot_addrs(&self) -> impl Iterator<Item = usize> + 'a {
        let sp = self.sp;
        let slots: &'a [u32] = match (self.func, self.site) {
            (Some(f), Some(s)) => f.slots(s),
            _ => &[],
        };
        slots.iter().map(move |&o| sp + o as usize)
    }

    /// `name+0xoff`, or `?? pc=0x...` for code the table does not know.
    pub fn describe(&self) -> String {
        match self.func {
            Some(f) => format!("{}+{:#x}", f.name, self.pc - f.start),
            None => format!("?? pc={:#x}", self.pc),
        }
    }
}

/// Why a walk failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A frame pointer is outside the stack, misaligned, or not above the
    /// previous one.
    BadFramePointer {
        frame: usize,
        fp: usize,
        sp: usize,
        stack_lo: usize,
        stack_hi: usize,
    },
    /// A call site's map says the frame has a different size than FP - SP.
    FrameSizeMismatch {
        frame: usize,
        func: String,
        pc: usize,
        map: u32,
        actual: usize,
    },
    /// The chain ended (FP = 0) somewhere other than the entry frame.
    NoEntryFrame { frame: usize, pc: usize },
    /// The entry frame is not at the top of the stack.
    EntryFrameMisplaced { fp: usize, want: usize },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use WalkError::*;
        match self {
            BadFramePointer { frame, fp, sp, stack_lo, stack_hi } => write!(
                f,
                "frame {frame}: frame pointer {fp:#x} is not a frame record above sp {sp:#x} in stack [{stack_lo:#x}, {stack_hi:#x})"
            ),
            FrameSizeMismatch { frame, func, pc, map, actual } => write!(
                f,
                "frame {frame} ({func}, pc {pc:#x}): the stack map says the frame is {map} bytes but FP - SP is {actual}"
            ),
            NoEntryFrame { frame, pc } => write!(
                f,
                "frame {frame} (pc {pc:#x}): the frame-pointer chain ends before the goroutine's entry frame"
            ),
            EntryFrameMisplaced { fp, want } => write!(
                f,
                "the entry frame's record is at {fp:#x}, not at the top of the stack ({want:#x})"
            ),
        }
    }
}

impl std::error::Error for WalkError {}

/// The initial pc of every goroutine: one that still has it has not
/// started and has no frames.
#[inline]
pub fn goentry_pc() -> usize {
    crate::trampoline::gs_goentry as *const () as usize
}

/// The return address of every goroutine's entry frame.
#[inline]
pub fn goexit_pc() -> usize {
    crate::trampoline::gs_goexit_pc as *const () as usize
}

/// Walk the frames of a stopped goroutine whose stack is
/// `[stack_lo, stack_hi)`, innermost first, calling `visit` for each.
/// Returns the number of frames.  The walk ends exactly at the entry frame
/// (whose record is at `initial_sp(stack_hi) - 16`) or fails.
///
/// # Safety
/// The goroutine is stopped and stays so for the whole walk: nothing
/// writes its stack.  `start` is where it stopped.
pub unsafe fn walk<'t>(
    stack_lo: usize,
    stack_hi: usize,
    start: WalkStart,
    cursor: &mut Cursor<'t>,
    mut visit: impl FnMut(&Frame<'t>),
) -> Result<usize, WalkError> {
    if start.pc == goentry_pc() {
        return Ok(0); // not started yet: no frames
    }
    let entry_fp = initial_sp(stack_hi) - FRAME_RECORD_SIZE;
    let (mut pc, mut sp, mut fp) = (start.pc, start.sp, start.fp);
    let mut n = 0usize;
    // Whether the frame below (the callee) was precise.  The innermost
    // frame's SP comes from the saved context, which is exact.
    let mut callee_precise = true;
    let mut last_site: Option<(usize, Option<&'t CallSite>)> = None;
    loop {
        if fp % 16 != 0 || fp < sp || fp < stack_lo || fp > entry_fp {
            return Err(WalkError::BadFramePointer {
                frame: n,
                fp,
                sp,
                stack_lo,
                stack_hi,
            });
        }
        let func = cursor.find(pc);
        // Deep recursion returns to the same call site frame after frame:
        // remember the last one instead of searching again.
        let site = match last_site {
            Some((p, s)) if p == pc => s,
            _ => {
                let s = func.and_then(|f| f.call_site(pc));
                last_site = Some((pc, s));
                s
            }
        };
        if let (Some(f), Some(s)) = (func, site) {
            if !callee_precise && fp >= s.frame_size as usize {
                // Below us is code we do not know (or nothing: the start),
                // and ordinary code need not keep its frame record at the
                // top of its frame (aarch64 GCC puts it at the bottom).  A
                // precise frame's SP follows from its own map.
                let derived = fp - s.frame_size as usize;
                if derived >= sp {
                    sp = derived;
                }
            }
            if s.frame_size as usize != fp - sp {
                return Err(WalkError::FrameSizeMismatch {
                    frame: n,
                    func: f.name.clone(),
                    pc,
                    map: s.frame_size,
                    actual: fp - sp,
                });
            }
        }
        visit(&Frame {
            pc,
            sp,
            fp,
            func,
            site,
        });
        callee_precise = site.is_some();
        n += 1;
        // SAFETY: fp lies inside the stopped stack, 16-aligned, with at
        // least a record's room below the entry record's end (checked).
        let rec = unsafe { read_frame_record(fp) };
        if rec.ret_pc == goexit_pc() {
            if fp != entry_fp || rec.saved_fp != 0 {
                return Err(WalkError::EntryFrameMisplaced { fp, want: entry_fp });
            }
            return Ok(n);
        }
        if rec.saved_fp == 0 {
            return Err(WalkError::NoEntryFrame {
                frame: n,
                pc: rec.ret_pc,
            });
        }
        if rec.saved_fp <= fp {
            return Err(WalkError::BadFramePointer {
                frame: n,
                fp: rec.saved_fp,
                sp: fp + FRAME_RECORD_SIZE,
                stack_lo,
                stack_hi,
            });
        }
        pc = rec.ret_pc;
        sp = fp + FRAME_RECORD_SIZE;
        fp = rec.saved_fp;
    }
}
