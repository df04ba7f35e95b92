//! G: one goroutine.  Its first fields are read by assembly and by managed
//! code at fixed offsets (`include/gstack_abi.h`, checked in `src/abi.rs`).
//! A G is allocated once and never moves or is freed while its runtime
//! lives (dead Gs are recycled), so a `*mut G` held by managed code, a
//! register or a queue stays valid.

use crate::arch::Context;
use crate::m::M;
use crate::stack::{Stack, StackKind};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// `stackguard0` value that is above every stack: every entry check fails
/// and reaches morestack, which treats it as a request to stop at the next
/// synchronous safe point (preemption, pending shrink, scan).
pub const STACK_PREEMPT: usize = 0xffff_ffff_ffff_fade;

/// `stackguard0` value that makes every entry check fail so that newstack
/// moves the stack at every call (`GSDEBUG=stackforcemove=1`, or a test's
/// switch).  Above every stack, distinct from [`STACK_PREEMPT`].
pub const STACK_FORCE_MOVE: usize = 0xffff_ffff_ffff_fad0;

/// Bytes kept free below `stackguard0`.  Managed code may run this far
/// below the guard before its check calls morestack (a Cranelift-style
/// check runs after the prologue).  Native goroutines do not check.
pub const STACK_GUARD: usize = 928;

/// Added to a status while a scan holds the goroutine (Go's Gscan bit):
/// whoever wants to run or wake it waits until the scan lets go.
pub const SCAN: u32 = 0x100;

/// Where a goroutine is in its life.  Transitions happen on the system
/// stack (g0) of the thread that owns the G at that moment.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Just allocated, not yet initialised.
    Idle = 0,
    /// On a run queue, not running.
    Runnable = 1,
    /// Running on an M.
    Running = 2,
    /// Parked (channel, scan request, ...); someone will ready it.
    Waiting = 3,
    /// In a system call (managed code between entersyscall/exitsyscall).
    Syscall = 4,
    /// Its stack is being copied; no one else may look at it.
    Copystack = 5,
    /// Finished; on the free list for reuse.
    Dead = 6,
}

impl Status {
    pub fn from_u32(v: u32) -> Status {
        match v {
            0 => Status::Idle,
            1 => Status::Runnable,
            2 => Status::Running,
            3 => Status::Waiting,
            4 => Status::Syscall,
            5 => Status::Copystack,
            _ => Status::Dead,
        }
    }
    /// The word Go's tracebacks use.
    pub fn name(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Runnable => "runnable",
            Status::Running => "running",
            Status::Waiting => "waiting",
            Status::Syscall => "syscall",
            Status::Copystack => "copystack",
            Status::Dead => "dead",
        }
    }
}

/// What runs on a goroutine's stack, which decides whether it may move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GKind {
    /// A thread's system stack; never runs user code, never moves.
    G0,
    /// Ordinary Rust or C code on a fixed stack with a guard page.
    Native,
    /// Registered code with a stack map at every call site; its stack moves.
    Managed,
}

/// Body of a native goroutine.
pub type NativeFn = Box<dyn FnOnce() + Send + 'static>;

/// `repr(C)` for the fixed offsets; deliberately not cache-line aligned:
/// a parked goroutine's memory is its stack plus this, and 64-byte
/// alignment cost ~80 bytes each (malloc's aligned path) for little gain
/// (neighbouring Gs share at most one line, cold fields against hot).
#[repr(C)]
pub struct G {
    // ---- read by assembly / managed code: offsets in gstack_abi.h ----
    /// Lowest usable address of the stack.
    pub stack_lo: usize,
    /// One past the highest usable address.
    pub stack_hi: usize,
    /// Managed code calls morestack when SP < stackguard0.  Normally
    /// `stack_lo + STACK_GUARD`; `STACK_PREEMPT` requests a safe point.
    pub stackguard0: AtomicUsize,
    /// The M running this G (for g0: its own M).
    pub m: *mut M,
    /// Where the G resumes when it is not running.
    pub sched: Context,
    /// Run-queue link.  (Here, next to `sched`: every switch touches both.)
    pub schedlink: *mut G,
    pub status: AtomicU32,
    /// Woken from a channel wait: finish (dequeue the other cases of a
    /// select, release sudogs) before it resumes.  (Here, next to the
    /// status: the yield fast path checks it on every switch.)
    pub chan_wake: bool,
    /// Entry function (also in the initial context; kept for tracebacks).
    pub startfn: usize,
    /// Arguments after `g` passed to the entry function by gs_goentry (the
    /// first MAX_MANAGED_ARGS; the last slot is spare).
    pub startargs: [usize; 6],
    /// What the entry function returned (written by gs_goentry).
    pub retval: usize,
    /// Set by gs_entersyscall (the managed caller's SP, PC, FP at the
    /// call), cleared by exitsyscall; 0 when not in a system call.  A scan
    /// of the G starts here; its stack may not move meanwhile.
    pub syscallsp: usize,
    pub syscallpc: usize,
    pub syscallfp: usize,
    /// Set by gs_libcall for as long as a foreign function runs on the
    /// system stack for this G; 0 otherwise.
    pub libcallsp: usize,
    pub libcallpc: usize,
    pub libcallfp: usize,
    /// Arguments of a parking operation (channel send/receive, select),
    /// stored by its stub before switching to g0, and its results, read by
    /// the stub when the goroutine resumes.
    pub park_args: [usize; 4],
    pub park_result: usize,
    pub park_ok: usize,

    // ---- Rust only ----
    pub id: u64,
    pub kind: GKind,
    /// The stack allocation (None for g0 and for a dead G without a stack).
    pub stack: Option<Stack>,
    /// Body of a native goroutine until it starts.
    pub native_fn: Option<NativeFn>,
    /// Why the G is waiting (for tracebacks).
    pub waitreason: &'static str,
    /// What kind of stack `stack` is (for reuse by spawn).
    pub stack_kind: StackKind,
    /// Move the stack at every entry check (tests).
    pub force_move: bool,
    /// Where a managed goroutine's return value goes when it exits.
    pub exit_slot: Option<std::sync::Arc<ExitSlot>>,
    /// Pins held (gs_pin / the runtime's workers): a pinned stack never
    /// moves.
    pub pins: u32,
    /// A scan wanted to shrink this stack but could not: do it at the next
    /// synchronous safe point.
    pub preempt_shrink: bool,
    /// A request to yield at the next synchronous safe point (set by the
    /// monitor thread, hence atomic).
    pub preempt: core::sync::atomic::AtomicBool,
    /// Between queueing its waiters on channels and parking: a window in
    /// which its stack must not move (set by channel operations).
    pub parking_on_chan: bool,
    /// Stopped at an asynchronous safe point (not a call site): its
    /// innermost frame is imprecise.  (For a future asynchronous
    /// preemption; never set today.)
    pub async_stopped: bool,
    /// While this goroutine waits for a scan cycle it asked for: the root
    /// visitor and where the report goes (both in its own frame).
    /// This goroutine's sudogs while it waits on channels (linked through
    /// `waitlink`, in lock order), and the one that woke it.
    pub waiting: *mut crate::chan::Sudog,
    pub param: *mut crate::chan::Sudog,
    /// A sudog kept for this goroutine's next wait (freed with the G).
    pub spare_sudog: *mut crate::chan::Sudog,
    /// A select's cases race to wake it: the first to CAS 0 -> 1 wins.
    pub select_done: core::sync::atomic::AtomicU32,
    pub gc_request: Option<(
        Option<*mut dyn FnMut(&crate::scan::Root)>,
        *mut crate::scan::GcReport,
    )>,
}

/// The result of a managed goroutine, filled when it exits.
#[derive(Debug, Default)]
pub struct ExitSlot {
    done: core::sync::atomic::AtomicBool,
    value: AtomicUsize,
}

impl ExitSlot {
    pub fn set(&self, v: usize) {
        self.value.store(v, Ordering::Relaxed);
        self.done.store(true, Ordering::Release);
    }
    pub fn get(&self) -> Option<usize> {
        self.done
            .load(Ordering::Acquire)
            .then(|| self.value.load(Ordering::Relaxed))
    }
}

impl Drop for G {
    fn drop(&mut self) {
        if !self.spare_sudog.is_null() {
            // SAFETY: the spare was boxed by Sudog::new and is on no queue.
            unsafe { drop(Box::from_raw(self.spare_sudog)) };
        }
    }
}

impl G {
    pub fn new(kind: GKind) -> G {
        G {
            stack_lo: 0,
            stack_hi: 0,
            stackguard0: AtomicUsize::new(0),
            m: core::ptr::null_mut(),
            sched: Context::zeroed(),
            startfn: 0,
            startargs: [0; 6],
            retval: 0,
            syscallsp: 0,
            syscallpc: 0,
            syscallfp: 0,
            libcallsp: 0,
            libcallpc: 0,
            libcallfp: 0,
            park_args: [0; 4],
            park_result: 0,
            park_ok: 0,
            id: 0,
            status: AtomicU32::new(Status::Idle as u32),
            kind,
            stack: None,
            schedlink: core::ptr::null_mut(),
            native_fn: None,
            waitreason: "",
            stack_kind: StackKind::Guarded,
            force_move: false,
            exit_slot: None,
            pins: 0,
            preempt_shrink: false,
            preempt: core::sync::atomic::AtomicBool::new(false),
            parking_on_chan: false,
            async_stopped: false,
            waiting: core::ptr::null_mut(),
            param: core::ptr::null_mut(),
            spare_sudog: core::ptr::null_mut(),
            chan_wake: false,
            select_done: core::sync::atomic::AtomicU32::new(0),
            gc_request: None,
        }
    }

    #[inline]
    pub fn status(&self) -> Status {
        Status::from_u32(self.status.load(Ordering::Acquire) & !SCAN)
    }

    /// Whether a scan holds this goroutine now.
    #[inline]
    pub fn is_claimed(&self) -> bool {
        self.status.load(Ordering::Acquire) & SCAN != 0
    }

    /// Change the status from `from` to `to`, waiting while a scan holds
    /// the goroutine (its claim is short: a walk, maybe a copy).  Any other
    /// status is a broken invariant.
    pub fn cas_status(&self, from: Status, to: Status) {
        let mut spins = 0u32;
        loop {
            match self.status.compare_exchange_weak(
                from as u32,
                to as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(v) if v == from as u32 || v == (from as u32 | SCAN) => {
                    spins += 1;
                    if spins < 100 {
                        core::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                Err(v) => crate::fatal::fatal(&format!(
                    "goroutine {}: status {} where {} was expected (wanted {})",
                    self.id,
                    Status::from_u32(v & !SCAN).name(),
                    from.name(),
                    to.name()
                )),
            }
        }
    }

    /// Claim the goroutine for a scan if its status is `from` (not
    /// running): sets the SCAN bit.  Returns whether it was claimed.
    pub fn try_claim(&self, from: Status) -> bool {
        self.status
            .compare_exchange(
                from as u32,
                from as u32 | SCAN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Let a claimed goroutine go.
    pub fn release_claim(&self) {
        self.status.fetch_and(!SCAN, Ordering::AcqRel);
    }

    #[inline]
    pub fn set_status(&self, s: Status) {
        self.status.store(s as u32, Ordering::Release);
    }

    /// Install `stk` as this G's stack: bounds and the normal guard.
    pub fn set_stack(&mut self, stk: Stack) {
        self.stack_lo = stk.lo;
        self.stack_hi = stk.hi;
        self.stackguard0
            .store(stk.lo + STACK_GUARD, Ordering::Relaxed);
        self.stack = Some(stk);
    }

    /// The invariant every entry check relies on: `stackguard0` is this
    /// G's own guard (`stack_lo + STACK_GUARD`) or one of the request
    /// values above every stack.  A stale guard from another stack would
    /// let managed code run off the end of this one.  Checked where a
    /// goroutine stops and starts; a violation is fatal, naming it.
    #[inline]
    pub fn check_guard(&self, at: &str) {
        let v = self.stackguard0.load(Ordering::Relaxed);
        if v != self.stack_lo + STACK_GUARD && v != STACK_PREEMPT && v != STACK_FORCE_MOVE {
            self.bad_guard(v, at)
        }
    }

    #[cold]
    #[inline(never)]
    fn bad_guard(&self, v: usize, at: &str) -> ! {
        crate::fatal::fatal(&format!(
            "goroutine {}: {at}: stackguard0 {v:#x} is not the guard of its stack [{:#x}, {:#x}) (status {})",
            self.id,
            self.stack_lo,
            self.stack_hi,
            self.status().name()
        ))
    }

    /// Forget the stack (after it was freed).
    pub fn clear_stack(&mut self) {
        self.stack_lo = 0;
        self.stack_hi = 0;
        self.stackguard0.store(0, Ordering::Relaxed);
        self.stack = None;
    }

    /// Size of the stack this G holds (0 without one): the per-G figure
    /// whose sum the pool's in-use count must equal.
    pub fn stack_size(&self) -> usize {
        self.stack.map_or(0, |s| s.size())
    }
}
