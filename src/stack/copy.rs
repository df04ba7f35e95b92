//! copystack: move a stopped managed goroutine to a new stack, adjusting
//! every word that points into the old one — guided by the stack maps.
//!
//! What moves and how (delta = new.hi - old.hi; the used part keeps its
//! distance from the top):
//!
//! ```text
//!        old stack                           new stack
//!   old.hi +------------+              new.hi +------------+
//!          | entry frame|  -- memcpy -->      | entry frame|  record: saved FP 0, kept
//!          | frame k    |                     | frame k    |  record: saved FP += delta
//!          |  slot -> x |                     |  slot -> x+delta   (x in old stack)
//!          | frame 0    |                     | frame 0    |
//! sched.sp +------------+                     +------------+ sched.sp += delta
//!          |  (unused)  |                     |  (unused)  |         sched.fp += delta
//!   old.lo +------------+                     |            |
//!                                      new.lo +------------+
//! ```
//!
//! The frames are found by walking the *old* stack (intact until it is
//! freed) along its frame-pointer chain; each adjustment is written at the
//! same offset in the new copy.  A word is adjusted when its value lies in
//! the old stack; any other value (a heap pointer, an integer the map
//! over-approximates) is left alone.  Callee-saved registers in the saved
//! context are not adjusted: the frame ABI forbids a stack address live in
//! a register across a call site (it must be in a mapped slot).

use crate::fatal::fatal;
use crate::g::{Status, G};
use crate::sched::Sched;
use crate::stack::{stackalloc, stackfree, StackKind};
use crate::unwind::{walk_g, Frame, WalkStart};
use core::sync::atomic::Ordering;

/// Smallest value a real pointer can have: a slot holding a value in
/// (0, 4096) is a bug in whoever wrote it or in the map (Go's
/// minLegalPointer).
pub const MIN_LEGAL_POINTER: usize = 4096;

/// Move goroutine `g` to a new stack of `newsize` bytes.
///
/// Must hold when called, and why:
/// - we run on the system stack (the allocator and the walk must not run
///   on a stack that is being moved);
/// - `g` is stopped with its context in `g.sched` and owned by us: its
///   status is `Copystack` (it is growing itself) or a scan claimed it, so
///   nobody else reads or writes its stack meanwhile;
/// - `newsize` is a power of two and holds the used part.
///
/// A frame without a precise map (an imprecise frame) is a fatal error
/// naming it: a stack moves only when every frame on it has a precise map.
/// So is a walk that does not end exactly at the entry frame, and a pointer
/// slot holding a value in (0, 4096).
///
/// # Safety
/// The conditions above.
pub unsafe fn copystack(sched: &Sched, g: *mut G, newsize: usize) {
    // SAFETY: the caller guarantees g is stopped and ours.
    let gr = unsafe { &mut *g };
    debug_assert!(gr.status() == Status::Copystack || gr.is_claimed());
    let old = gr.stack.expect("copystack: goroutine has no stack");
    let sp = gr.sched.sp;
    if sp < old.lo || sp > old.hi {
        fatal(&format!(
            "copystack: goroutine {}: saved SP {sp:#x} outside its stack [{:#x}, {:#x})",
            gr.id, old.lo, old.hi
        ));
    }
    let used = old.hi - sp;
    if used > newsize {
        fatal(&format!(
            "copystack: goroutine {}: {used} bytes in use do not fit a {newsize}-byte stack",
            gr.id
        ));
    }

    // 1. Allocate the new stack (on g0: we are on the system stack).
    // SAFETY: on the system stack of an M of this Sched: its P's cache.
    let cache = unsafe { sched.cache() };
    let new = match stackalloc(&sched.pool, cache, newsize, StackKind::Movable) {
        Ok(s) => s,
        Err(e) => fatal(&format!("copystack: goroutine {}: {e}", gr.id)),
    };
    let delta = new.hi.wrapping_sub(old.hi);

    // 2. Copy the used part, keeping its distance from the top.  A
    // goroutine parked on channels has sudogs whose elements may point
    // into its stack, and other threads may complete those operations —
    // writing into the element — at any moment (seed 001).  So: lock every
    // channel it waits on (each once), move the sudogs, copy the part of
    // the stack that holds their elements, and unlock; then copy the rest.
    // Pointer slots in that part are adjusted with compare-and-swap below,
    // as a sender may write there again once the locks are released.
    // SAFETY: g is stopped and ours; its sudog list is stable.
    let chans = unsafe { crate::chan::waiting_chans(gr) };
    let mut sghi = 0;
    if !chans.is_empty() {
        for &c in &chans {
            // SAFETY: a waiting goroutine's channels are live.
            unsafe { (*c).lock() };
        }
        // SAFETY: g is stopped and every channel it waits on is locked.
        sghi = unsafe { crate::chan::adjust_sudogs(gr, old.lo, old.hi, delta) };
        if sghi > sp {
            // SAFETY: [sp, sghi) is live stack; the new stack has room.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    sp as *const u8,
                    sp.wrapping_add(delta) as *mut u8,
                    sghi - sp,
                )
            };
        }
        for &c in chans.iter().rev() {
            // SAFETY: locked above.
            unsafe { (*c).unlock() };
        }
    }
    let copied_from = sghi.max(sp);
    // SAFETY: [copied_from, old.hi) is the rest of the live part of the old
    // stack; the new stack has room; they do not overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(
            copied_from as *const u8,
            copied_from.wrapping_add(delta) as *mut u8,
            old.hi - copied_from,
        );
    }

    // 3. Adjust the frames: walk the old stack, write into the new one.
    //
    // Adjust the copy of the word at `old_addr` if it points into the old
    // stack; return the value it had.  Below sghi, a sender may be
    // writing the same word: compare-and-swap, retrying with what it wrote.
    let adjust = |old_addr: usize| -> usize {
        let new_addr = old_addr.wrapping_add(delta);
        // SAFETY: old_addr is a slot or record of a frame of the used part
        // (the walker checks every FP lies in [sp, old.hi)); its copy is
        // at the same offset in the new stack, 8-aligned.
        unsafe {
            if old_addr < sghi {
                let w = &*(new_addr as *const core::sync::atomic::AtomicUsize);
                let mut v = w.load(Ordering::Relaxed);
                loop {
                    if v < old.lo || v >= old.hi {
                        return v;
                    }
                    match w.compare_exchange(
                        v,
                        v.wrapping_add(delta),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return v,
                        Err(now) => v = now,
                    }
                }
            }
            let v = *(new_addr as *const usize);
            if v >= old.lo && v < old.hi {
                *(new_addr as *mut usize) = v.wrapping_add(delta);
            }
            v
        }
    };
    let id = gr.id;
    let visit = |f: &Frame<'_>| {
        if !f.is_precise() {
            fatal(&format!(
                "copystack: goroutine {id}: imprecise frame {} (sp {:#x}): no stack map at this pc, so its stack cannot move",
                f.describe(),
                f.sp
            ))
        }
        for slot in f.ptr_slot_addrs() {
            let v = adjust(slot);
            if v > 0 && v < MIN_LEGAL_POINTER {
                fatal(&format!(
                    "invalid pointer found on stack: goroutine {id}, {}, slot sp+{:#x} holds {v:#x}",
                    f.describe(),
                    slot - f.sp
                ));
            }
        }
        // The frame record's saved FP (the caller's frame) moves too; the
        // entry frame's is 0 and stays.
        adjust(f.fp);
    };
    // SAFETY: g is stopped and ours (status Copystack); its bounds are
    // still the old stack's, intact until freed below.
    if let Err(e) = unsafe { walk_g(&*g, WalkStart::saved(&*g), visit) } {
        fatal(&format!("copystack: goroutine {id}: {e}"));
    }

    // 4. The saved context: SP and FP (FP is always in the stack for a
    // managed goroutine stopped at a call site).
    gr.sched.sp = sp.wrapping_add(delta);
    if gr.sched.fp >= old.lo && gr.sched.fp < old.hi {
        gr.sched.fp = gr.sched.fp.wrapping_add(delta);
    }

    // 5. Install the new stack; keep a pending preemption request.
    let preempt = gr.stackguard0.load(Ordering::Relaxed) == crate::g::STACK_PREEMPT;
    gr.set_stack(new);
    sched.install_guard(gr);
    if preempt {
        gr.stackguard0
            .store(crate::g::STACK_PREEMPT, Ordering::Relaxed);
    }
    sched.note_copy(used, newsize);

    // 6. Free the old stack (poisoned by the pool under stackpoison) —
    // or, during a scan cycle, queue it to be freed when the cycle ends
    // (seed 002): a scanner may still read through a pointer into it.
    if sched.delay_free(old) {
        return;
    }
    // SAFETY: on the system stack of an M of this Sched: its P's cache.
    let cache = unsafe { sched.cache() };
    // SAFETY: `old` came from stackalloc on this pool and nothing refers
    // to it any more: every pointer into it was adjusted above.
    unsafe { stackfree(&sched.pool, cache, old) };
}
