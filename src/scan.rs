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

/// Worker goroutines per cycle: one per P, and at least this many (so
/// that workers scan each other even on one P).
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
            systemstack(|| {
                if !sched.try_begin_cycle(visitor, ptr::null_mut()) {
                    fatal("gstack::gc called on the system stack while a cycle is running");
                }
                sched.scan_inline();
                report = sched.end_cycle();
            });
            return report;
        }
        // Like Go's runtime.GC: if a cycle is running (an automatic one),
        // let it finish, then run a whole one of our own.  gc_park starts
        // ours only if none is running when it gets to g0; otherwise it
        // requeues us and we try again.
        (*g).x().gc_request = Some((visitor, &mut report as *mut GcReport));
        while (*g).x().gc_request.is_some() {
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
        let (visitor, _) = (*g).x().gc_request.expect("gc request");
        if !sched.try_begin_cycle(visitor, g) {
            // A cycle runs: wait behind its workers, then try again.
            (*g).set_status(Status::Runnable);
            sched.put_runnable(g);
            sched::schedule(m)
        }
        (*g).set_status(Status::Waiting);
        (*g).set_waitreason("scan cycle");
        sched.start_workers();
        sched::schedule(m)
    }
}

/// Body of a worker goroutine.
fn worker_main() {
    let g = m::current_g();
    // A worker's own stack must never move while it works (seed 003).
    // SAFETY: g is this worker's own live G.
    unsafe { (*g).pin() };
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
/// worker's status Waiting meanwhile so that the other workers may claim
/// and scan it (seed 003); when it goes back to Running it waits for such
/// a claim to end.  Returns whether work is left.
///
/// # Safety
/// `me` is the calling worker's G; on the system stack.
unsafe fn scan_batch(me: *mut G) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe {
        let sched = &*(*(*me).m).sched;
        (*me).set_waitreason("scan worker");
        (*me).set_status(Status::Waiting);
        let mut left = true;
        let t0 = std::time::Instant::now();
        let mut n = 0u32;
        // The clock is read every 16 goroutines: it costs more than a scan
        // of a parked goroutine without a visitor.
        while !n.is_multiple_of(16) || t0.elapsed() < SLICE {
            n += 1;
            let Some((g, is_worker)) = sched.with_cycle(|c| c.next_work()) else {
                left = false;
                break;
            };
            sched.scan_g(g, me);
            if is_worker {
                // Let the other workers run now: each gets to scan another
                // while that one waits (seed 003).
                break;
            }
        }
        (*me).cas_status(Status::Waiting, Status::Running);
        (*me).set_waitreason("");
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
        let (last, waiter) = sched.with_cycle(|c| {
            c.workers_left -= 1;
            (c.workers_left == 0, c.waiter)
        });
        if last {
            let report = sched.end_cycle();
            if !waiter.is_null() {
                if let Some((_, out)) = (*waiter).x().gc_request.take() {
                    *out = report;
                }
                (*waiter).set_waitreason("");
                sched.ready(waiter);
            }
        }
    }
}

impl Cycle {
    pub(crate) fn delayed_bytes(&self) -> usize {
        self.delayed.iter().map(|s| s.size()).sum()
    }

    /// The next goroutine to scan, and whether it is a worker.
    fn next_work(&mut self) -> Option<(*mut G, bool)> {
        let g = self.work.get(self.next).copied()?;
        self.next += 1;
        Some((g, self.workers.contains(&g)))
    }
}

/// How a scan found a goroutine.
enum Claim {
    /// Claimed (SCAN bit set), stopped: walk from here; guarded = in a
    /// syscall or libcall (never move it now).
    Stopped { start: WalkStart, guarded: bool },
    /// Nothing to walk (native, dead, not started, or would not stop).
    Skip,
}

impl Sched {
    /// Run `f` on the cycle in progress, under its lock.  Never call it
    /// from inside `f`, or around a walk, a visitor call or a copy.
    pub(crate) fn with_cycle<R>(&self, f: impl FnOnce(&mut Cycle) -> R) -> R {
        let mut c = self.cycle.lock().unwrap();
        f(c.as_mut().expect("no scan cycle in progress"))
    }

    pub(crate) fn cycle_active(&self) -> bool {
        self.cycle_active.load(Ordering::Acquire)
    }

    /// Start a cycle (snapshot the goroutines, tell the pool: seed 002)
    /// unless one runs already.
    fn try_begin_cycle(&self, visitor: Option<*mut dyn FnMut(&Root)>, waiter: *mut G) -> bool {
        let mut c = self.cycle.lock().unwrap();
        if c.is_some() {
            return false;
        }
        *c = Some(Cycle {
            work: self.all_gs(),
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
        self.pool.begin_cycle();
        self.cycle_active.store(true, Ordering::Release);
        true
    }

    /// Start a cycle nobody waits for (the automatic trigger), from the
    /// scheduler on g0.
    ///
    /// # Safety
    /// On the system stack of an M of this Sched.
    pub(crate) unsafe fn start_background_cycle(&self) {
        if self.try_begin_cycle(None, ptr::null_mut()) {
            // SAFETY: the caller's guarantee.
            unsafe { self.start_workers() };
        }
    }

    /// Spawn the workers, one per P (at least two, so that they scan each
    /// other); they are scanned like everyone else.
    ///
    /// # Safety
    /// On the system stack of an M of this Sched, a cycle begun.
    unsafe fn start_workers(&self) {
        let n = self.ps.len().max(WORKERS);
        // Count them all before the first can run (another M may start it
        // at once): the cycle ends when the last of the n is done.
        self.with_cycle(|c| c.workers_left = n);
        for _ in 0..n {
            let g = match self.newproc_unqueued(Start::Native(Box::new(worker_main)), WORKER_STACK)
            {
                Ok(g) => g,
                Err(e) => fatal(&format!("scan cycle: cannot start a worker: {e}")),
            };
            self.with_cycle(|c| {
                c.workers.push(g);
                // Next in line, the last spawned first: each worker's first
                // pick is another worker (and nothing scanned already
                // shifts back into view).
                let at = c.next.min(c.work.len());
                c.work.insert(at, g);
            });
            // Only now may it run (on any M).
            // SAFETY: fresh, runnable, on no queue; on an M's system stack.
            unsafe { self.put_runnable(g) };
        }
    }

    /// The whole cycle on the current (system) stack.
    ///
    /// # Safety
    /// On the system stack, a cycle begun by the caller.
    unsafe fn scan_inline(&self) {
        while let Some((g, _)) = self.with_cycle(|c| c.next_work()) {
            // SAFETY: the caller's guarantee.
            unsafe { self.scan_g(g, ptr::null_mut()) };
        }
    }

    /// Claim `g` for a scan.  A goroutine that is not running is claimed
    /// with the SCAN bit (whoever wants to run or wake it waits); one in a
    /// libcall likewise (the libcall's return waits); a running managed
    /// goroutine is asked to stop at its next synchronous safe point and
    /// waited for (bounded: a loop without calls never stops, and is
    /// skipped); a running native goroutine has nothing to scan.
    ///
    /// # Safety
    /// `g` is live; on the system stack.
    unsafe fn claim(&self, g: &G, worker: *mut G) -> Claim {
        // Only a running goroutine needs the clock (a bounded wait).
        let mut t0: Option<std::time::Instant> = None;
        loop {
            let status = g.status();
            match status {
                Status::Dead | Status::Idle => return Claim::Skip,
                Status::Runnable | Status::Waiting | Status::Syscall => {
                    if g.kind != GKind::Managed || g.stack_source.is_none() {
                        return Claim::Skip; // native frames are not walked
                    }
                    if !g.try_claim(status) {
                        continue; // it changed under us: look again
                    }
                    let start = if let Some((pc, sp, fp)) = g.syscall_record() {
                        WalkStart { pc, sp, fp }
                    } else {
                        WalkStart::saved(g)
                    };
                    if start.pc == goentry_pc() {
                        g.release_claim();
                        return Claim::Skip; // not started: no frames
                    }
                    return Claim::Stopped {
                        start,
                        guarded: g.in_syscall != 0,
                    };
                }
                Status::Running | Status::Copystack => {
                    if g.kind != GKind::Managed || core::ptr::eq(g, worker) {
                        return Claim::Skip;
                    }
                    if g.libcall_record().is_some() && g.try_claim(Status::Running) {
                        // Re-read after claiming: gs_libcall_done clears the
                        // record first and then waits for our claim to go;
                        // claimed, g stays on its M.
                        if let Some((pc, sp, fp)) = g.libcall_record() {
                            let start = WalkStart { pc, sp, fp };
                            return Claim::Stopped {
                                start,
                                guarded: true,
                            };
                        }
                        g.release_claim();
                    }
                    let since = *t0.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > std::time::Duration::from_millis(50) {
                        return Claim::Skip; // it would not stop
                    }
                    g.set_preempt(true);
                    g.stackguard0.store(STACK_PREEMPT, Ordering::Release);
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Visit one goroutine: claim, report roots, shrink or leave pending,
    /// release.
    ///
    /// # Safety
    /// On the system stack, a cycle active; `g` live.
    unsafe fn scan_g(&self, g: *mut G, worker: *mut G) {
        // SAFETY: the caller's guarantee; everything below happens under
        // our claim on g.
        unsafe {
            let gr = &mut *g;
            let (visitor, is_worker) = self.with_cycle(|c| {
                c.report.scanned += 1;
                (c.visitor, c.workers.contains(&g))
            });
            if is_worker && !worker.is_null() && g != worker {
                let (w, id) = ((*worker).id, gr.id);
                self.with_cycle(|c| c.report.workers_scanned.push((w, id)));
            }
            let Claim::Stopped { start, guarded } = self.claim(gr, worker) else {
                return;
            };
            let used = gr.stack_hi - start.sp;
            let mut roots = 0;
            if let Some(v) = visitor {
                let id = gr.id;
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
            }
            let mut shrunk = false;
            let mut pending = false;
            if !self.config.debug.gcshrinkstackoff {
                if guarded {
                    pending = wants_shrink_at(gr, start.sp);
                } else {
                    match shrinkstack(self, g) {
                        Shrink::Shrunk => shrunk = true,
                        Shrink::NotNeeded => {}
                        Shrink::Unsafe(_) => pending = true,
                    }
                }
                if pending {
                    gr.set_preempt_shrink(true);
                    gr.stackguard0.store(STACK_PREEMPT, Ordering::Release);
                }
            }
            gr.release_claim();
            self.with_cycle(|c| {
                c.used_sum += used;
                c.used_n += 1;
                c.report.roots += roots;
                c.report.shrunk += shrunk as usize;
                c.report.pending += pending as usize;
            });
        }
    }

    /// Queue a stack freed during the cycle; false when no cycle runs (the
    /// caller frees it at once).
    pub(crate) fn delay_free(&self, stk: Stack) -> bool {
        let mut c = self.cycle.lock().unwrap();
        match c.as_mut() {
            Some(c) => {
                c.delayed.push(stk);
                true
            }
            None => false,
        }
    }

    /// End the cycle: free the delayed stacks, let the pool release empty
    /// spans, set the adaptive starting size.  Returns the report.
    ///
    /// # Safety
    /// On the system stack of an M of this Sched; all scanning done.
    unsafe fn end_cycle(&self) -> GcReport {
        // Hold the lock until the pool is told: no new cycle may begin
        // before this one has fully ended.
        let mut guard = self.cycle.lock().unwrap();
        let mut c = guard.take().expect("no cycle");
        for stk in c.delayed.drain(..) {
            c.report.freed += stk.size();
            // SAFETY: every delayed stack is an old stack copystack
            // replaced: dead, from this pool, freed once (here); on an M's
            // system stack, so its P's cache is ours.
            unsafe { stackfree(&self.pool, self.cache(), stk) };
        }
        self.pool.end_cycle();
        self.cycle_active.store(false, Ordering::Release);
        drop(guard);
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
