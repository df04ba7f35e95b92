//! shrinkstack: give memory back when a stack that grew calmed down, but
//! only when that is safe.

use crate::g::{GKind, Status, G, STACK_GUARD};
use crate::sched::Sched;
use crate::stack::copy::copystack;
use crate::stack::MIN_STACK;
use crate::unwind::{walk_g, WalkStart};

/// What shrinkstack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shrink {
    /// Halved.
    Shrunk,
    /// Not worth it (used + guard margin is a quarter of the size or more,
    /// or it is at the minimum), or shrinking is off.
    NotNeeded,
    /// It should shrink but may not now; the reason.
    Unsafe(&'static str),
}

/// Whether shrinking `g` would help: halve when what is used plus a margin
/// for the guard is under a quarter of the size (exactly a quarter does not
/// shrink), never below the minimum.
pub fn wants_shrink(g: &G) -> bool {
    wants_shrink_at(g, g.sched.sp)
}

/// [`wants_shrink`] with the stack used down to `sp` (a syscall or libcall
/// record).
pub fn wants_shrink_at(g: &G, sp: usize) -> bool {
    shrink_wanted(g.stack_size(), g.stack_hi - sp)
}

/// The shrink rule on plain numbers: a `size`-byte stack with `used` bytes
/// in use is halved when `used` plus the guard margin is under a quarter
/// of it and half of it is not below the minimum.
pub fn shrink_wanted(size: usize, used: usize) -> bool {
    size / 2 >= MIN_STACK && used + STACK_GUARD < size / 4
}

/// Why `g`'s stack may not move now, or None when it may.  The one place
/// that says so (Go's isShrinkStackSafe).
///
/// # Safety
/// `g` is stopped at `g.sched` and owned by the caller (claimed by a scan,
/// or the current goroutine with us on g0): its frames are walked.
pub unsafe fn shrink_unsafe_reason(g: &G) -> Option<&'static str> {
    if g.kind != GKind::Managed {
        return Some("not a managed goroutine");
    }
    if g.in_syscall != 0 {
        return Some("in a system call");
    }
    // SAFETY: the caller's guarantee.
    if unsafe { g.libcall_record() }.is_some() {
        return Some("in a libcall");
    }
    if g.pins != 0 {
        return Some("pinned");
    }
    if g.parking_on_chan() {
        return Some("parking on a channel");
    }
    if g.async_stopped() {
        return Some("stopped at an asynchronous safe point");
    }
    let mut precise = true;
    // SAFETY: the caller guarantees g is stopped and ours.
    let r = unsafe { walk_g(g, WalkStart::saved(g), |f| precise &= f.is_precise()) };
    if r.is_err() || !precise {
        return Some("imprecise frame");
    }
    None
}

/// Halve `g`'s stack if that helps and is safe; see [`Shrink`].  The old
/// stack goes through stackfree — or, during a scan cycle, onto the
/// cycle's delayed-free queue (seed 002) — inside copystack.
///
/// # Safety
/// On the system stack; `g` is stopped at `g.sched` and owned by the
/// caller: status `Copystack` (the caller sets it around the call) or
/// claimed by a scan.
pub unsafe fn shrinkstack(sched: &Sched, g: *mut G) -> Shrink {
    // SAFETY: the caller's guarantees.
    let gr = unsafe { &*g };
    debug_assert!(gr.status() == Status::Copystack || gr.is_claimed());
    if sched.config.debug.gcshrinkstackoff || !wants_shrink(gr) {
        return Shrink::NotNeeded;
    }
    // SAFETY: as above.
    if let Some(why) = unsafe { shrink_unsafe_reason(gr) } {
        return Shrink::Unsafe(why);
    }
    // SAFETY: as above; half the size still holds the used part (it is
    // under a quarter).
    unsafe { copystack(sched, g, gr.stack_size() / 2) };
    Shrink::Shrunk
}
