//! The guards around foreign code and pinned stacks: system calls
//! (`gs_entersyscall` / `gs_exitsyscall`), libcalls (`gs_libcall`) and pins
//! (`gs_pin` / `gs_unpin`), all callable from managed code.
//!
//! While one of them is in force the goroutine's stack must not move:
//! foreign code may hold addresses of it as plain integers.  A scan then
//! starts at the recorded frame (the managed caller's SP, PC and FP),
//! reports its roots, and leaves a *pending shrink* that the next
//! synchronous safe point carries out (seed 000).  Growth meanwhile is a
//! fatal error with a message saying which guard forbade it.

use crate::fatal::fatal;
use crate::g::{Status, G, STACK_PREEMPT};
use crate::sched;
use crate::stack::shrink::{shrinkstack, Shrink};
use crate::trampoline::gs_gogo;
use core::sync::atomic::Ordering;

/// mcall target of `gs_exitsyscall`: on g0 with the caller's context
/// saved.  Checks the syscall frame is still where it was, clears the
/// record, and carries out a pending shrink before resuming the caller.
#[no_mangle]
pub extern "C" fn gs_exitsyscall0(g: *mut G) -> ! {
    // SAFETY: mcall passes the running goroutine of this M, stopped at
    // g.sched; on g0 we own it until we resume it.
    unsafe {
        let gr = &mut *g;
        let sched = &*(*gr.m).sched;
        if gr.in_syscall == 0 || gr.status() != Status::Syscall {
            // (The status may carry a scan claim: status() hides it.)
            fatal(&format!(
                "goroutine {}: exitsyscall without entersyscall",
                gr.id
            ));
        }
        if gr.sched.sp > gr.syscallsp() {
            fatal(&format!(
                "goroutine {}: exitsyscall: SP {:#x} moved above the syscall frame {:#x}",
                gr.id,
                gr.sched.sp,
                gr.syscallsp()
            ));
        }
        let m = gr.m;
        // Our P back, unless the monitor handed it to another M meanwhile;
        // then any idle P.
        let have_p = sched.keep_p_after_syscall(m) || sched.acquire_idle_p(m);
        // Out of the system call: a scan holding it (from the recorded
        // frame) must finish first.
        gr.cas_status(
            Status::Syscall,
            if have_p {
                Status::Running
            } else {
                Status::Runnable
            },
        );
        gr.clear_syscall();
        sched.install_guard(gr);
        safe_point_work(g);
        if have_p {
            (*m).note_running(g);
            gs_gogo(&gr.sched)
        }
        // No P for this M: the goroutine goes to the global queue for
        // whoever has one, and this M waits for a P.
        (*m).curg = core::ptr::null_mut();
        (*m).running.store(core::ptr::null_mut(), Ordering::Relaxed);
        sched.put_global(g);
        if sched.wait_for_p(m) {
            sched::schedule(m)
        }
        // The runtime ended while we waited.
        gs_gogo(&(*(*m).g0).sched)
    }
}

/// Called by gs_libcall on g0 after the foreign function returned, before
/// switching back to the goroutine's stack.
#[no_mangle]
pub extern "C" fn gs_libcall_done(g: *mut G) {
    // SAFETY: gs_libcall passes the goroutine it runs for; the goroutine
    // is stopped in gs_libcall's frame while we are on g0.
    unsafe {
        let gr = &mut *g;
        let m = gr.m;
        let sched = &*(*m).sched;
        // Clear the record (in our M) first, then wait for a scan that
        // claimed us from it: a scan that claims after this sees no record
        // (see Sched::claim), so nobody reads our frames once we return.
        core::ptr::write_volatile(&mut (*m).libcallsp, 0);
        core::sync::atomic::fence(Ordering::SeqCst);
        while gr.is_claimed() {
            std::thread::yield_now();
        }
        (*m).libcallpc = 0;
        (*m).libcallfp = 0;
        sched.install_guard(gr);
        if gr.preempt_shrink() || gr.preempt() {
            // Keep the request for the next entry check: that is the
            // synchronous safe point where the pending work happens.
            gr.stackguard0.store(STACK_PREEMPT, Ordering::Relaxed);
        }
    }
}

/// The work a synchronous safe point owes: a pending shrink.  (Yield
/// requests are the caller's business.)  On g0, `g` stopped at g.sched.
///
/// # Safety
/// `g` is this M's current goroutine, stopped, and we are on g0.
pub(crate) unsafe fn safe_point_work(g: *mut G) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let gr = &mut *g;
        if gr.preempt_shrink() {
            gr.set_preempt_shrink(false);
            let sched = &*(*gr.m).sched;
            let status = gr.status();
            gr.set_status(Status::Copystack);
            if let Shrink::Unsafe(_) = shrinkstack(sched, g) {
                // Still unsafe here (pinned, say): keep the request for a
                // later safe point.
                gr.set_preempt_shrink(true);
            }
            gr.set_status(status);
        }
    }
}

/// Pin `g`'s stack: until the matching unpin it never moves (a shrink is
/// left pending; growth is a fatal error).  Counted.  Callable from
/// managed code; runs no switch.
#[no_mangle]
pub extern "C" fn gs_pin(g: *mut G) {
    // SAFETY: managed code passes its own G.
    unsafe { (*g).pin() }
}

/// Undo one gs_pin.  Unpinning an unpinned goroutine is a fatal error.
#[no_mangle]
pub extern "C" fn gs_unpin(g: *mut G) {
    // SAFETY: managed code passes its own G.
    unsafe {
        if (*g).pins == 0 {
            fatal(&format!(
                "goroutine {}: unpin of an unpinned goroutine",
                (*g).id
            ));
        }
        (*g).pins -= 1;
    }
}

#[no_mangle]
pub extern "C" fn gs_fatal_entersyscall_sp(g: *mut G) -> ! {
    // SAFETY: managed code passes its own, live G.
    let id = unsafe { (*g).id };
    fatal(&format!(
        "goroutine {id}: entersyscall: SP is not inside the goroutine's stack"
    ))
}

#[no_mangle]
pub extern "C" fn gs_fatal_libcall_stack(g: *mut G) -> ! {
    // SAFETY: managed code passes its own, live G.
    let id = unsafe { (*g).id };
    fatal(&format!(
        "goroutine {id}: libcall called off the goroutine's stack (a libcall from inside a libcall?)"
    ))
}

#[no_mangle]
pub extern "C" fn gs_fatal_morestack_in_libcall(g: *mut G) -> ! {
    // SAFETY: managed code passes its own, live G.
    let id = unsafe { (*g).id };
    fatal(&format!(
        "goroutine {id}: stack growth not allowed during a libcall (managed code called back from foreign code)"
    ))
}
