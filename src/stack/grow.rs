//! newstack: what happens when a managed function's entry check fails.
//!
//! The check (`SP < g.stackguard0`) fails for three reasons, told apart by
//! the guard's value:
//! - `STACK_PREEMPT`: someone asked this goroutine to stop at its next
//!   synchronous safe point.  Do the pending work (a pending shrink; a
//!   yield if one was requested) and resume without growing.
//! - `STACK_FORCE_MOVE`: tests (or `GSDEBUG=stackforcemove=1`) move the
//!   stack at every call: move it to a new one of the same size (or grow,
//!   if it is really short of room).
//! - otherwise the stack is short of room: double it until the calling
//!   function's largest frame plus the guard fits, up to the maximum.  A
//!   large stack with room in its reservation grows in place
//!   (`stackgrow`: nothing copied); any other is moved by `copystack`.

use crate::fatal::{fatal, write_stderr};
use crate::functab;
use crate::g::{GKind, Status, G, STACK_FORCE_MOVE, STACK_GUARD, STACK_PREEMPT};
use crate::guards::safe_point_work;
use crate::sched::gs_park_yield;
use crate::stack::copy::copystack;
use crate::stack::stackgrow;
use crate::trampoline::gs_gogo;
use core::sync::atomic::Ordering;

/// Called by gs_morestack (through mcall) on g0, with the context of the
/// function whose check failed saved in `g.sched`.  Never returns: it
/// resumes `g` (possibly on a new stack) or schedules.
#[no_mangle]
pub extern "C" fn gs_newstack(g: *mut G) -> ! {
    // SAFETY: gs_morestack passes the running goroutine of this M, whose
    // context it just saved; on g0 we own it until we resume it.
    unsafe {
        let gr = &mut *g;
        let m = gr.m;
        let sched = &*(*m).sched;
        if gr.kind != GKind::Managed {
            fatal(&format!(
                "goroutine {}: morestack called by a {} goroutine (only managed code checks its stack)",
                gr.id,
                if gr.kind == GKind::Native { "native" } else { "system" }
            ));
        }
        if gr.status() == Status::Syscall {
            fatal(&format!(
                "goroutine {}: stack growth not allowed in system call",
                gr.id
            ));
        }
        gr.check_guard("morestack");
        let guard = gr.stackguard0.load(Ordering::Relaxed);
        if guard == STACK_PREEMPT {
            // A synchronous safe point: every frame is at a call site with a
            // map.  Restore the guard and do the pending work.
            sched.install_guard(gr);
            safe_point_work(g);
            if gr.force_move() || sched.config.debug.stackforcemove {
                // In that mode every check that reaches us moves the stack.
                gr.set_status(Status::Copystack);
                copystack(sched, g, gr.stack_size());
                gr.set_status(Status::Running);
            }
            // The request hid the real check: the function that called us
            // may also be short of room.  Resuming it without growing would
            // let it run into the guard area, and the next request (a scan
            // asks again and again while it waits) would let its callee
            // go deeper still, until it ran off the stack.  So unless the
            // normal guard is met, grow below, exactly as if the check had
            // failed on its own (Go gets the same by re-running the check).
            if gr.sched.sp >= gr.stack_lo + STACK_GUARD {
                if gr.take_preempt() {
                    gs_park_yield(g);
                }
                gs_gogo(&gr.sched);
            }
        }
        if gr.pins != 0 {
            fatal(&format!(
                "goroutine {}: stack growth of a pinned goroutine ({} pins)",
                gr.id, gr.pins
            ));
        }

        let old_size = gr.stack_size();
        let used = gr.stack_hi - gr.sched.sp;
        // Room the function that called morestack needs: its largest frame
        // (from the table) plus the guard, on top of what is used.
        let frame = functab::read()
            .find(gr.sched.pc)
            .map_or(functab::MAX_FRAME as usize, |f| f.frame_size as usize);
        let needed = used + frame + STACK_GUARD;
        let mut newsize = if guard == STACK_FORCE_MOVE {
            old_size
        } else {
            old_size * 2
        };
        while newsize < needed {
            newsize *= 2;
        }
        let max = sched.config.max_stack_size;
        if newsize > max {
            let msg = format!("goroutine {} stack exceeds {max}-byte limit\n", gr.id);
            write_stderr(msg.as_bytes());
            // fatal prints the traceback: g is stopped at g.sched.
            fatal("stack overflow");
        }

        gr.set_status(Status::Copystack);
        // A large stack whose reservation has room grows in place: same
        // top, lower bottom, nothing copied, no pointer to adjust.  Not
        // when the stack is to move (stackforcemove, a forced move): the
        // move is the point there.
        let grown =
            if guard == STACK_FORCE_MOVE || gr.force_move() || sched.config.debug.stackforcemove {
                None
            } else {
                let old = gr.stack().expect("newstack: goroutine has no stack");
                // SAFETY: `old` is g's live stack, from stackalloc on this pool;
                // g is stopped (Copystack) and ours, so we hold it alone, and on
                // Some we install the result in its place at once.
                stackgrow(&sched.pool, old, newsize)
            };
        if let Some(new) = grown {
            // As copystack installs a new stack: keep a pending preemption
            // request.
            let preempt = gr.stackguard0.load(Ordering::Relaxed) == STACK_PREEMPT;
            gr.set_stack(new);
            sched.install_guard(gr);
            if preempt {
                gr.stackguard0.store(STACK_PREEMPT, Ordering::Relaxed);
            }
            sched.note_copy(0, newsize);
        } else {
            copystack(sched, g, newsize);
        }
        gr.set_status(Status::Running);
        // A yield request that arrived with (or was folded into) this
        // check: honour it now that the function has room.
        if gr.take_preempt() {
            gs_park_yield(g);
        }
        gs_gogo(&gr.sched)
    }
}

/// gs_morestack was reached on g0: the system stack cannot grow.
#[no_mangle]
pub extern "C" fn gs_fatal_morestack_on_g0(_g: *mut G) -> ! {
    fatal("morestack on g0")
}
