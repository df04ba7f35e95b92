//! What managed code and its producers use from the runtime: the entry
//! points their code calls, and inspection of parked goroutines.
//!
//! Managed code calls two runtime routines, both hand-written assembly with
//! the platform C calling convention and `g` as the only argument:
//!
//! - `gs_morestack(g)` from its entry check when `SP < g.stackguard0`
//!   (the check comes right after the prologue).  It returns to the caller
//!   with SP and FP moved by the copy delta when the stack moved, every
//!   callee-saved register preserved.
//! - `gs_yield(g)` to let other goroutines run.  It saves the caller's
//!   context and switches to the system stack before any Rust code runs, so
//!   a parked managed goroutine's stack holds managed frames only.

use crate::g::{GKind, Status};
use crate::runtime::current_sched;
use crate::trampoline::systemstack;
use crate::unwind::{walk_g, WalkStart};

use crate::trampoline::{gs_morestack, gs_yield};

/// Address of `gs_morestack(g)`, for code generators.
pub fn morestack_addr() -> usize {
    gs_morestack as *const () as usize
}

/// Address of `gs_yield(g)`, for code generators.
pub fn yield_addr() -> usize {
    gs_yield as *const () as usize
}

/// One frame of a parked managed goroutine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub pc: usize,
    pub sp: usize,
    pub fp: usize,
    /// The registered function's name, or None for code the table does
    /// not know.
    pub func: Option<String>,
    /// Whether the frame is at a registered call site (its pointers are
    /// known).
    pub precise: bool,
    /// The frame's pointer slots: (address, value).
    pub ptr_slots: Vec<(usize, usize)>,
}

/// The frames of the parked managed goroutine `id`, innermost first,
/// ending with its entry frame.  Call it from another goroutine of the
/// same runtime.
pub fn frames(id: u64) -> Result<Vec<FrameInfo>, String> {
    let sched = current_sched().ok_or("not in a runtime")?;
    let g = sched
        .find_g(id)
        .ok_or_else(|| format!("no goroutine {id}"))?;
    systemstack(|| {
        // SAFETY: g is live; on this single-threaded runtime a goroutine
        // that is not Running is stopped while we (on g0) look at it.
        let gr = unsafe { &*g };
        if gr.kind != GKind::Managed {
            return Err(format!(
                "goroutine {id} is not managed: its frames are not walked"
            ));
        }
        match gr.status() {
            Status::Runnable | Status::Waiting => {}
            s => return Err(format!("goroutine {id} is {}, not stopped", s.name())),
        }
        let mut out = Vec::new();
        // SAFETY: g is stopped (above).
        unsafe {
            walk_g(gr, WalkStart::saved(gr), |f| {
                out.push(FrameInfo {
                    pc: f.pc,
                    sp: f.sp,
                    fp: f.fp,
                    func: f.func.map(|x| x.name.clone()),
                    precise: f.is_precise(),
                    ptr_slots: f
                        .ptr_slot_addrs()
                        .map(|a| (a, *(a as *const usize)))
                        .collect(),
                });
            })
        }
        .map_err(|e| format!("goroutine {id}: {e}"))?;
        Ok(out)
    })
}

/// The traceback of the stopped goroutine `id`: `goroutine N [status]:`
/// then a line per frame, innermost first.
pub fn traceback(id: u64) -> Result<String, String> {
    let sched = current_sched().ok_or("not in a runtime")?;
    let g = sched
        .find_g(id)
        .ok_or_else(|| format!("no goroutine {id}"))?;
    Ok(systemstack(|| crate::traceback::traceback(g)))
}

/// Walk the parked managed goroutine `id` without collecting anything:
/// returns (frames, pointer slots).  For timing the unwinder.
pub fn count_frames(id: u64) -> Result<(usize, usize), String> {
    let sched = current_sched().ok_or("not in a runtime")?;
    let g = sched
        .find_g(id)
        .ok_or_else(|| format!("no goroutine {id}"))?;
    systemstack(|| {
        // SAFETY: as in `frames`: g is live and, not running, stopped.
        let gr = unsafe { &*g };
        if gr.kind != GKind::Managed || gr.status() == Status::Running {
            return Err(format!("goroutine {id} is not a parked managed goroutine"));
        }
        let mut slots = 0usize;
        // SAFETY: g is stopped (above).
        let n = unsafe {
            walk_g(gr, WalkStart::saved(gr), |f| {
                slots += f.ptr_slot_addrs().count();
            })
        }
        .map_err(|e| format!("goroutine {id}: {e}"))?;
        Ok((n, slots))
    })
}

/// Move the parked managed goroutine `id` to a new stack of `newsize`
/// bytes (a power of two that holds its used part), as a grow or shrink
/// would.  For tests and benchmarks of copystack itself.
pub fn move_stack(id: u64, newsize: usize) -> Result<(), String> {
    let sched = current_sched().ok_or("not in a runtime")?;
    let g = sched
        .find_g(id)
        .ok_or_else(|| format!("no goroutine {id}"))?;
    systemstack(|| {
        // SAFETY: g is live; claimed (below) it is stopped and ours: no
        // M resumes it and no scan touches it until we let go.
        let gr = unsafe { &*g };
        let status = gr.status();
        if gr.kind != GKind::Managed
            || !matches!(status, Status::Runnable | Status::Waiting)
            || !gr.try_claim(status)
        {
            return Err(format!("goroutine {id} is not a parked managed goroutine"));
        }
        let used = gr.stack_hi - gr.sched.sp;
        let r = if !newsize.is_power_of_two() || newsize < used + crate::g::STACK_GUARD {
            Err(format!("bad size {newsize} for goroutine {id}"))
        } else if gr.parking_on_chan() {
            Err(format!("goroutine {id} is parking on a channel"))
        } else {
            // SAFETY: on the system stack, g claimed (stopped, ours).
            unsafe { crate::stack::copy::copystack(sched, g, newsize) };
            Ok(())
        };
        gr.release_claim();
        r
    })
}

/// Ask the managed goroutine `id` to yield at its next synchronous safe
/// point (its next entry check), as the monitor does after 10 ms of
/// running and a scan does while it waits for a running goroutine.
pub fn preempt(id: u64) -> Result<(), String> {
    let sched = current_sched().ok_or("not in a runtime")?;
    let g = sched
        .find_g(id)
        .ok_or_else(|| format!("no goroutine {id}"))?;
    // SAFETY: g is live (Gs are never freed while the runtime runs); the
    // request is two atomic stores, which any thread may make at any time.
    unsafe {
        if (*g).kind != GKind::Managed {
            return Err(format!("goroutine {id} is not a managed goroutine"));
        }
        (*g).set_preempt(true);
        (*g).stackguard0.store(
            crate::g::STACK_PREEMPT,
            core::sync::atomic::Ordering::Release,
        );
    }
    Ok(())
}

/// Stack size of goroutine `id` (for tests and benchmarks).
pub fn stack_size(id: u64) -> Result<usize, String> {
    let sched = current_sched().ok_or("not in a runtime")?;
    let g = sched
        .find_g(id)
        .ok_or_else(|| format!("no goroutine {id}"))?;
    // SAFETY: g is live.
    Ok(unsafe { (*g).stack_size() })
}
