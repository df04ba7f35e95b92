//! The scan cycle — the "GC" of stacks.
//!
//! A cycle visits every goroutine: it claims it, walks its frames and
//! reports every pointer slot to the embedder's root visitor (precise roots
//! for its garbage collector), shrinks its stack if that helps and is safe
//! or else leaves a pending shrink for its next synchronous safe point, and
//! releases it.  At the end, stacks freed during the cycle are freed for
//! real (seed 002), empty pool spans go back to the system, and the
//! average stack use sets the starting size of new managed goroutines
//! (Go's adaptivestackstart).
//!
//! The work runs in *worker goroutines* (seed 003).  A worker does its
//! scanning on the system stack while its own status says Waiting, so that
//! another worker may claim and scan it meanwhile; a worker's stack is
//! pinned and never shrunk.  The goroutine that asked for the cycle parks
//! until the last worker finishes it.
//!
//! Called from the system stack (inside a libcall, say), where no goroutine
//! can be scheduled, the cycle runs right there instead, without workers.

use crate::fatal::fatal;
use crate::g::{GKind, Status, G, STACK_GUARD, STACK_PREEMPT};
use crate::m;
use crate::sched::{self, Sched, Start};
use crate::stack::shrink::{shrinkstack, wants_shrink_at, Shrink};
use crate::stack::{stackfree, Stack, MIN_STACK};
use crate::trampoline::{mcall, systemstack};
use crate::unwind::{goentry_pc, walk_g, WalkStart};
use core::ptr;
use core::sync::atomic::Ordering;

/// Worker goroutines per cycle (per P once there are several).
pub const WORKERS: usize = 2;
/// How long a worker scans before it lets the other goroutines run (a
/// share of the thread, like Go's dedicated mark workers' time slices).
const SLICE: std::time::Duration = std::time::Duration::from_micros(200);
/// Stack of a worker: it runs its scanning on the system stack.
const WORKER_STACK: usize = 16 * 1024;

/// One pointer slot of a goroutine's frame, as the root visitor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    /// The goroutine.
    pub goroutine: u64,
    /// The function whose frame holds the slot (its start address).
    pub func: usize,
    /// Address of the slot.
    pub slot: usize,
    /// What the slot holds.
    pub value: usize,
}

/// What a cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Goroutines visited.
    pub scanned: usize,
    /// Stacks halved.
    pub shrunk: usize,
    /// Stacks that should shrink but could not now: left pending.
    pub pending: usize,
    /// Bytes of stack freed at the end of the cycle (the delayed frees).
    pub freed: usize,
    /// Pointer slots reported.
    pub roots: usize,
    /// (worker, goroutine it scanned) for every worker scanned by a worker.
    pub workers_scanned: Vec<(u64, u64)>,
    /// Starting size of new managed goroutines set by this cycle (0 when
    /// adaptive sizing is off or nothing was measured).
    pub start_size: usize,
}

/// A cycle in progress.  Lives in the Sched; touched only on the system
/// stack of the runtime's thread.
pub(crate) struct Cycle {
    work: Vec<*mut G>,
    next: usize,
    workers: Vec<*mut G>,
    workers_left: usize,
    visitor: Option<*mut dyn FnMut(&Root)>,
    waiter: *mut G,
    report: GcReport,
    used_sum: usize,
    used_n: usize,
    delayed: Vec<Stack>,
}

/// Run a scan cycle and return when it is over.  From a goroutine, the
/// cycle runs in worker goroutines while the caller waits; from the system
/// stack it runs in place.
pub fn gc() -> GcReport {
    gc_with(None)
}

/// [`gc`] with a root visitor: `visit` is called, on the system stack, for
/// every pointer slot of every managed goroutine's frames.
pub fn gc_visit(visit: &mut dyn FnMut(&Root)) -> GcReport {
    gc_with(Some(visit))
}

fn gc_with(visit: Option<&mut dyn FnMut(&Root)>) -> GcReport {
    let sched = crate::runtime::current_sched().expect("gstack::gc called outside a runtime");
    // The visitor lives in this frame until the cycle is over (we wait for
    // it below), so a raw pointer to it stays valid.
    let visitor = visit.map(|v| {
        // SAFETY: only the lifetime is erased; see above.
        unsafe {
            core::mem::transmute::<*mut (dyn FnMut(&Root) + '_), *mut (dyn FnMut(&Root) + 'static)>(
                v as *mut _,
            )
        }
    });
    let g = m::current_g();
    let mut report = GcReport::default();
    // SAFETY: g (if any) is this thread's goroutine; the cycle fields are
    // only used on this thread's system stack.
    unsafe {
        let on_own_stack = !g.is_null() && {
            let here = &report as *const GcReport as usize;
            here >= (*g).stack_lo && here < (*g).stack_hi
        };
        if !on_own_stack {
            if sched.cycle_active() {
                // On the system stack (inside a libcall, a root visitor)
                // nothing can wait for the running cycle.
                fatal("gstack::gc called on the system stack while a cycle is running");
            }
            systemstack(|| {
                sched.begin_cycle(visitor, ptr::null_mut());
                sched.scan_inline();
                report = sched.end_cycle();
            });
            return report;
        }
        // Like Go's runtime.GC: if a cycle is running (an automatic one),
        // let it finish, then run a whole one of our own.  gc_park starts
        // ours only if none is running when it gets to g0; otherwise it
        // requeues us and we try again.
        (*g).gc_request = Some((visitor, &mut report as *mut GcReport));
        while (*g).gc_request.is_some() {
            mcall(g, gc_park);
        }
    }
    report
}

/// mcall target of gc(): start a cycle whose workers ready `g` at the end.
extern "C" fn gc_park(g: *mut G) -> ! {
    // SAFETY: mcall passes the running goroutine, stopped at g.sched.
    unsafe {
        let m = (*g).m;
        let sched = &*(*m).sched;
        let (visitor, _) = (*g).gc_request.expect("gc request");
        if sched.cycle_active() {
            // Wait for the running cycle's workers: behind them in the queue.
            (*g).set_status(Status::Runnable);
            sched.p().runq_push(g);
            sched::schedule(m)
        }
        (*g).set_status(Status::Waiting);
        (*g).waitreason = "scan cycle";
        sched.begin_cycle(visitor, g);
        sched.start_workers();
        sched::schedule(m)
    }
}

/// Body of a worker goroutine.
fn worker_main() {
    let g = m::current_g();
    loop {
        // SAFETY: g is this worker's own live G.
        let more = systemstack(|| unsafe { scan_batch(g) });
        if !more {
            break;
        }
        crate::yield_now();
    }
    // SAFETY: as above.
    systemstack(|| unsafe { worker_done(g) });
}

/// Scan goroutines for one time slice.  On the system stack, with this
/// worker's status Waiting meanwhile so that the other workers may scan it.
/// Returns whether work is left.
///
/// # Safety
/// `me` is the calling worker's G; on the system stack.
unsafe fn scan_batch(me: *mut G) -> bool {
    // SAFETY: the caller's guarantee; the cycle is only touched here, on
    // the runtime's system stack.
    unsafe {
        let sched = &*(*(*me).m).sched;
        (*me).set_status(Status::Waiting);
        (*me).waitreason = "scan worker";
        let mut left = true;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < SLICE {
            let Some(g) = sched.cycle().next_work() else {
                left = false;
                break;
            };
            sched.scan_g(g, me);
            if sched.cycle().workers.contains(&g) {
                // Let the other workers run now: each gets to scan another
                // while that one waits (seed 003).
                break;
            }
        }
        (*me).set_status(Status::Running);
        (*me).waitreason = "";
        left
    }
}

/// A worker has no more work: the last one ends the cycle.
///
/// # Safety
/// `me` is the calling worker's G; on the system stack.
unsafe fn worker_done(me: *mut G) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let sched = &*(*(*me).m).sched;
        (*me).pins -= 1;
        let c = sched.cycle();
        c.workers_left -= 1;
        if c.workers_left == 0 {
            let waiter = c.waiter;
            let report = sched.end_cycle();
            if !waiter.is_null() {
                if let Some((_, out)) = (*waiter).gc_request.take() {
                    *out = report;
                }
                (*waiter).waitreason = "";
                sched.ready(waiter);
            }
        }
    }
}

impl Cycle {
    pub(crate) fn delayed_bytes(&self) -> usize {
        self.delayed.iter().map(|s| s.size()).sum()
    }

    fn next_work(&mut self) -> Option<*mut G> {
        let g = self.work.get(self.next).copied();
        self.next += 1;
        g
    }
}

impl Sched {
    /// The cycle in progress.
    ///
    /// # Safety
    /// A cycle is active; on this runtime's system stack.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn cycle(&self) -> &mut Cycle {
        // SAFETY: the caller's guarantee (single thread, system stack).
        unsafe {
            (*self.cycle.get())
                .as_mut()
                .expect("no scan cycle in progress")
        }
    }

    pub(crate) fn cycle_active(&self) -> bool {
        self.cycle_active.load(Ordering::Acquire)
    }

    /// Start a cycle: snapshot the goroutines, tell the pool (seed 002).
    ///
    /// # Safety
    /// On the system stack; no cycle active.
    unsafe fn begin_cycle(&self, visitor: Option<*mut dyn FnMut(&Root)>, waiter: *mut G) {
        let work = self.all_gs();
        // SAFETY: the caller's guarantee.
        unsafe {
            *self.cycle.get() = Some(Cycle {
                work,
                next: 0,
                workers: Vec::new(),
                workers_left: 0,
                visitor,
                waiter,
                report: GcReport::default(),
                used_sum: 0,
                used_n: 0,
                delayed: Vec::new(),
            });
        }
        self.pool.begin_cycle();
        self.cycle_active.store(true, Ordering::Release);
    }

    /// Start a cycle nobody waits for (the automatic trigger), from the
    /// scheduler on g0.
    ///
    /// # Safety
    /// On the system stack, no cycle active.
    pub(crate) unsafe fn start_background_cycle(&self) {
        // SAFETY: the caller's guarantee.
        unsafe {
            self.begin_cycle(None, ptr::null_mut());
            self.start_workers();
        }
    }

    /// Spawn the workers; they are scanned like everyone else.
    ///
    /// # Safety
    /// On the system stack, a cycle active.
    unsafe fn start_workers(&self) {
        for _ in 0..WORKERS {
            let g = match self.newproc(Start::Native(Box::new(worker_main)), WORKER_STACK) {
                Ok(g) => g,
                Err(e) => fatal(&format!("scan cycle: cannot start a worker: {e}")),
            };
            // SAFETY: g is fresh and ours; on the system stack.
            unsafe {
                (*g).pins += 1;
                let c = self.cycle();
                c.workers.push(g);
                c.workers_left += 1;
                // Workers first, the last spawned first: each one's first
                // pick is another worker.
                c.work.insert(0, g);
            }
        }
    }

    /// The whole cycle on the current (system) stack: no goroutine runs
    /// meanwhile, so every one is stopped.
    ///
    /// # Safety
    /// On the system stack, a cycle active.
    unsafe fn scan_inline(&self) {
        // SAFETY: the caller's guarantee.
        unsafe {
            while let Some(g) = self.cycle().next_work() {
                self.scan_g(g, ptr::null_mut());
            }
        }
    }

    /// Visit one goroutine: claim, report roots, shrink or leave pending.
    ///
    /// # Safety
    /// On the system stack, a cycle active; `g` live.
    unsafe fn scan_g(&self, g: *mut G, worker: *mut G) {
        // SAFETY: the caller's guarantee; on this single-threaded runtime
        // every goroutine but the one whose system stack we are on is
        // stopped, and that one (a worker, or the gc caller) says Waiting
        // or is in a syscall/libcall whose frame was recorded.
        unsafe {
            let gr = &mut *g;
            let c = self.cycle();
            let status = gr.status();
            if status == Status::Dead {
                return;
            }
            c.report.scanned += 1;
            if !worker.is_null() && c.workers.contains(&g) && g != worker {
                c.report.workers_scanned.push(((*worker).id, gr.id));
            }
            if gr.kind != GKind::Managed || gr.stack.is_none() {
                return; // native frames are not walked; they never move
            }
            // Where the walk starts: a syscall or libcall record, or the
            // saved context.
            let (start, guarded) = if gr.syscallsp != 0 {
                (
                    WalkStart {
                        pc: gr.syscallpc,
                        sp: gr.syscallsp,
                        fp: gr.syscallfp,
                    },
                    true,
                )
            } else if gr.libcallsp != 0 {
                (
                    WalkStart {
                        pc: gr.libcallpc,
                        sp: gr.libcallsp,
                        fp: gr.libcallfp,
                    },
                    true,
                )
            } else if status == Status::Running {
                fatal(&format!("scan: goroutine {} is running", gr.id));
            } else {
                (
                    WalkStart {
                        pc: gr.sched.pc,
                        sp: gr.sched.sp,
                        fp: gr.sched.fp,
                    },
                    false,
                )
            };
            if start.pc == goentry_pc() {
                return; // not started: no frames
            }
            c.used_sum += gr.stack_hi - start.sp;
            c.used_n += 1;
            if let Some(v) = c.visitor {
                let id = gr.id;
                let mut roots = 0;
                let r = walk_g(gr, start, |f| {
                    let func = f.func.map_or(0, |x| x.start);
                    for slot in f.ptr_slot_addrs() {
                        roots += 1;
                        (*v)(&Root {
                            goroutine: id,
                            func,
                            slot,
                            value: *(slot as *const usize),
                        });
                    }
                });
                if let Err(e) = r {
                    fatal(&format!("scan: goroutine {id}: {e}"));
                }
                c.report.roots += roots;
            }
            if self.config.debug.gcshrinkstackoff {
                return;
            }
            if guarded {
                if wants_shrink_at(gr, start.sp) {
                    self.leave_pending(gr);
                }
                return;
            }
            gr.set_status(Status::Copystack);
            let r = shrinkstack(self, g);
            gr.set_status(status);
            match r {
                Shrink::Shrunk => c.report.shrunk += 1,
                Shrink::NotNeeded => {}
                Shrink::Unsafe(_) => self.leave_pending(gr),
            }
        }
    }

    /// Mark `g` for a shrink at its next synchronous safe point.
    fn leave_pending(&self, g: &mut G) {
        g.preempt_shrink = true;
        g.stackguard0.store(STACK_PREEMPT, Ordering::Relaxed);
        // SAFETY: on the system stack with a cycle active (callers).
        unsafe { self.cycle().report.pending += 1 };
    }

    /// Queue a stack freed during the cycle; false when no cycle runs (the
    /// caller frees it at once).
    pub(crate) fn delay_free(&self, stk: Stack) -> bool {
        if !self.cycle_active() {
            return false;
        }
        // SAFETY: cycle_active means a cycle is set; only the runtime's
        // system stack touches it.
        unsafe { self.cycle().delayed.push(stk) };
        true
    }

    /// End the cycle: free the delayed stacks, let the pool release empty
    /// spans, set the adaptive starting size.  Returns the report.
    ///
    /// # Safety
    /// On the system stack, a cycle active, all scanning done.
    unsafe fn end_cycle(&self) -> GcReport {
        // SAFETY: the caller's guarantee.
        let mut c = unsafe { (*self.cycle.get()).take().expect("no cycle") };
        self.cycle_active.store(false, Ordering::Release);
        // SAFETY: on the system stack; the P is ours.
        let p = unsafe { self.p() };
        for stk in c.delayed.drain(..) {
            c.report.freed += stk.size();
            let cache = if self.config.debug.stacknocache {
                None
            } else {
                Some(&mut p.cache)
            };
            // SAFETY: every delayed stack is an old stack copystack
            // replaced: dead, from this pool, freed once (here).
            unsafe { stackfree(&self.pool, cache, stk) };
        }
        self.pool.end_cycle();
        if self.config.debug.adaptivestackstart && c.used_n > 0 {
            let avg = c.used_sum / c.used_n;
            let start = (avg + STACK_GUARD).next_power_of_two().clamp(
                MIN_STACK,
                self.config.max_stack_size.next_power_of_two() / 2,
            );
            self.adaptive_start.store(start, Ordering::Relaxed);
            c.report.start_size = start;
        }
        self.note_cycle_end();
        c.report
    }
}
