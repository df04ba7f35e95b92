//! G: one goroutine.  Its first fields are read by assembly and by managed
//! code at fixed offsets (`include/gstack_abi.h`, checked in `src/abi.rs`).
//! A G is allocated once and never moves or is freed while its runtime
//! lives (dead Gs are recycled), so a `*mut G` held by managed code, a
//! register or a queue stays valid.

use crate::arch::Context;
use crate::m::M;
use crate::stack::{Stack, StackKind, StackSource};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering};

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
#[repr(u8)]
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

/// Bits of [`G::flags`].
const F_FORCE_MOVE: u8 = 1;
const F_PREEMPT_SHRINK: u8 = 2;
const F_PARKING_ON_CHAN: u8 = 4;
const F_ASYNC_STOPPED: u8 = 8;
const F_PREEMPT: u8 = 16;

/// Bit of [`G::handles`]: the goroutine has exited (its result is in its
/// saved context, see [`Context::retval`]); the rest counts the
/// [`Managed`](crate::Managed) handles alive.  At `HANDLES_MAX` the count
/// sticks: such a G is never recycled.
pub const HANDLE_EXITED: u16 = 0x8000;
pub const HANDLES_MAX: u16 = 0x7fff;

/// One goroutine.  `repr(C)` for the fixed offsets.  Only what the switch
/// paths, managed code and every parked goroutine need is here (144 bytes
/// on x86-64, 240 on aarch64); what few goroutines need at a time lives in
/// [`GExtra`], allocated the first time a G needs it (a channel wait, a
/// system call, a scan request, a pin by a worker) and kept with the G
/// across reuse.  Gs come from a [`GSlab`] (no allocator header each) and
/// are never freed while their runtime lives.
///
/// Not here any more, and where it went: the start function and its
/// arguments are on the new goroutine's stack (read by gs_goentry); its
/// return value stays in its saved context (`Context::retval`); the
/// arguments and results of the parking stubs and the libcall record are
/// in the M (a goroutine cannot move to another M while it uses them);
/// the system-call record is in `GExtra`, with `in_syscall` as the flag.
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
    /// Managed handles alive, and [`HANDLE_EXITED`].
    pub handles: AtomicU16,
    /// Woken from a channel wait: finish (dequeue the other cases of a
    /// select, release sudogs) before it resumes.  (Here, next to the
    /// status: the yield fast path checks it and in_syscall on every
    /// switch.)
    pub chan_wake: bool,
    /// 1 between gs_entersyscall (which writes it, after the record in
    /// `extra`) and exitsyscall; it then resumes with status Syscall.
    pub in_syscall: u8,

    // ---- Rust only ----
    pub kind: GKind,
    /// F_* bits (atomic: the owner, a scan holding the G and the monitor
    /// set different bits).
    flags: AtomicU8,
    /// Where the stack in `[stack_lo, stack_hi)` came from (None: no
    /// stack of ours, as for g0 and a dead G without one).
    pub stack_source: Option<StackSource>,
    /// Pins held (gs_pin / the runtime's workers): a pinned stack never
    /// moves.
    pub pins: u16,
    pub id: u64,
    /// Cold state, or null until first needed.
    pub extra: *mut GExtra,
}

/// What a goroutine waiting for a scan cycle it asked for left for the
/// cycle: its root visitor and where the report goes (both in its frame).
pub type GcRequest = (
    Option<*mut dyn FnMut(&crate::scan::Root)>,
    *mut crate::scan::GcReport,
);

/// The part of a goroutine few need at any one time (see [`G`]).
#[repr(C)]
pub struct GExtra {
    // ---- written by assembly (gs_entersyscall): gstack_abi.h ----
    /// The managed caller's SP, PC, FP at gs_entersyscall, while
    /// `G::in_syscall` is set.  A scan of the G starts here; its stack may
    /// not move meanwhile.
    pub syscallsp: usize,
    pub syscallpc: usize,
    pub syscallfp: usize,
    // ---- Rust only ----
    /// Why the G is waiting (for tracebacks).
    pub waitreason: &'static str,
    /// This goroutine's sudogs while it waits on channels (linked through
    /// `waitlink`, in lock order), and the one that woke it.
    pub waiting: *mut crate::chan::Sudog,
    pub param: *mut crate::chan::Sudog,
    /// A sudog kept for this goroutine's next wait (freed with the G).
    pub spare_sudog: *mut crate::chan::Sudog,
    /// A select's cases race to wake it: the first to CAS 0 -> 1 wins.
    pub select_done: core::sync::atomic::AtomicU32,
    /// While this goroutine waits for a scan cycle it asked for: the root
    /// visitor and where the report goes (both in its own frame).
    pub gc_request: Option<GcRequest>,
}

impl GExtra {
    fn new() -> GExtra {
        GExtra {
            syscallsp: 0,
            syscallpc: 0,
            syscallfp: 0,
            waitreason: "",
            waiting: core::ptr::null_mut(),
            param: core::ptr::null_mut(),
            spare_sudog: core::ptr::null_mut(),
            select_done: core::sync::atomic::AtomicU32::new(0),
            gc_request: None,
        }
    }
}

impl Drop for GExtra {
    fn drop(&mut self) {
        if !self.spare_sudog.is_null() {
            // SAFETY: the spare was boxed by Sudog::new and is on no queue.
            unsafe { drop(Box::from_raw(self.spare_sudog)) };
        }
    }
}

impl Drop for G {
    fn drop(&mut self) {
        if !self.extra.is_null() {
            // SAFETY: extra was boxed by G::x and is owned by this G.
            unsafe { drop(Box::from_raw(self.extra)) };
        }
    }
}

/// Allocate `g.extra` on the system stack (asm calls this through
/// gs_systemstack before the first system call of a G: the allocator must
/// not run on a movable stack).
#[no_mangle]
pub extern "C" fn gs_g_extra(g: *mut G) {
    // SAFETY: the asm passes the running goroutine of this thread.
    unsafe {
        (*g).x();
    }
}

/// Where the Gs of a runtime live: chunks of [`SLAB_CHUNK`] Gs, never
/// freed while the runtime or a [`Managed`](crate::Managed) handle to one
/// of its goroutines lives (the handle reads the G's result), so a `*mut
/// G` stays valid as long as its owner holds the slab.
pub struct GSlab {
    inner: std::sync::Mutex<SlabInner>,
}

struct SlabInner {
    chunks: Vec<*mut G>,
    /// Gs made in the last chunk.
    used: usize,
    /// Dead Gs whose last handle went after they exited: for reuse.
    released: Vec<*mut G>,
}

// SAFETY: the raw pointers are to Gs owned by the slab; access to the
// lists is under the mutex, and Gs are shared the way the scheduler says.
unsafe impl Send for GSlab {}
// SAFETY: as for Send.
unsafe impl Sync for GSlab {}

/// Gs per slab chunk.
pub const SLAB_CHUNK: usize = 64;

impl GSlab {
    pub fn new() -> GSlab {
        GSlab {
            inner: std::sync::Mutex::new(SlabInner {
                chunks: Vec::new(),
                used: SLAB_CHUNK,
                released: Vec::new(),
            }),
        }
    }

    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::array::<G>(SLAB_CHUNK).unwrap()
    }

    /// A new G of `kind`, valid until the slab is dropped.
    pub fn alloc(&self, kind: GKind) -> *mut G {
        let mut t = self.inner.lock().unwrap();
        if t.used == SLAB_CHUNK {
            // SAFETY: the layout has a non-zero size.
            let c = unsafe { std::alloc::alloc(Self::layout()) } as *mut G;
            if c.is_null() {
                std::alloc::handle_alloc_error(Self::layout());
            }
            t.chunks.push(c);
            t.used = 0;
        }
        // SAFETY: slot `used` of the last chunk is in bounds and unused.
        let g = unsafe { t.chunks.last().unwrap().add(t.used) };
        t.used += 1;
        // SAFETY: g is an unused, aligned slot of the chunk.
        unsafe { g.write(G::new(kind)) };
        g
    }

    /// Call `f` on every G made so far (under the slab's lock).
    pub fn for_each(&self, mut f: impl FnMut(*mut G)) {
        let t = self.inner.lock().unwrap();
        let n = t.chunks.len();
        for (i, &c) in t.chunks.iter().enumerate() {
            let k = if i + 1 == n { t.used } else { SLAB_CHUNK };
            for j in 0..k {
                // SAFETY: the first k slots of chunk c are made Gs.
                f(unsafe { c.add(j) });
            }
        }
    }

    /// A dead G whose last handle went: reusable.
    pub fn release(&self, g: *mut G) {
        self.inner.lock().unwrap().released.push(g);
    }

    /// Take the released Gs.
    pub fn take_released(&self) -> Vec<*mut G> {
        core::mem::take(&mut self.inner.lock().unwrap().released)
    }
}

impl Default for GSlab {
    fn default() -> GSlab {
        GSlab::new()
    }
}

impl Drop for GSlab {
    fn drop(&mut self) {
        let t = self.inner.get_mut().unwrap();
        let n = t.chunks.len();
        for (i, &c) in t.chunks.iter().enumerate() {
            let k = if i + 1 == n { t.used } else { SLAB_CHUNK };
            // SAFETY: the first k slots are made Gs nobody uses any more
            // (the last owner of the slab is going); the chunk came from
            // alloc with this layout.
            unsafe {
                for j in 0..k {
                    core::ptr::drop_in_place(c.add(j));
                }
                std::alloc::dealloc(c as *mut u8, Self::layout());
            }
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
            schedlink: core::ptr::null_mut(),
            status: AtomicU32::new(Status::Idle as u32),
            handles: AtomicU16::new(0),
            chan_wake: false,
            in_syscall: 0,
            kind,
            flags: AtomicU8::new(0),
            stack_source: None,
            pins: 0,
            id: 0,
            extra: core::ptr::null_mut(),
        }
    }

    /// The cold part, allocated now if the G has none.  Allocates: call
    /// only on a system stack or a native goroutine's stack.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub fn x(&mut self) -> &mut GExtra {
        if self.extra.is_null() {
            self.make_extra();
        }
        // SAFETY: extra is a live box owned by this G.
        unsafe { &mut *self.extra }
    }

    /// x()'s allocation, out of the hot paths that almost always find it.
    #[cold]
    #[inline(never)]
    fn make_extra(&mut self) {
        self.extra = Box::into_raw(Box::new(GExtra::new()));
    }

    /// The cold part if the G has one.
    #[inline]
    pub fn extra(&self) -> Option<&GExtra> {
        // SAFETY: extra is null or a live box owned by this G.
        unsafe { self.extra.as_ref() }
    }

    /// Why the G waits ("" when it does not say).
    pub fn waitreason(&self) -> &'static str {
        self.extra().map_or("", |x| x.waitreason)
    }

    /// Set the wait reason ("" clears it without allocating).
    #[inline]
    pub fn set_waitreason(&mut self, r: &'static str) {
        if !r.is_empty() || !self.extra.is_null() {
            self.x().waitreason = r;
        }
    }

    /// The managed caller's SP at gs_entersyscall, or 0 when the G is not
    /// in a system call.
    #[inline]
    pub fn syscallsp(&self) -> usize {
        if self.in_syscall == 0 {
            return 0;
        }
        self.extra().map_or(0, |x| x.syscallsp)
    }

    /// The system-call record (pc, sp, fp) while the G is in one.
    pub fn syscall_record(&self) -> Option<(usize, usize, usize)> {
        if self.in_syscall == 0 {
            return None;
        }
        self.extra()
            .map(|x| (x.syscallpc, x.syscallsp, x.syscallfp))
    }

    /// The libcall record (pc, sp, fp) while this G's managed code is in
    /// gs_libcall: in its M, which it cannot leave meanwhile.
    ///
    /// # Safety
    /// The G is stopped in a libcall or owned by the caller (a claim on a
    /// running G, the G itself): `m` and the M's `curg` are stable.
    pub unsafe fn libcall_record(&self) -> Option<(usize, usize, usize)> {
        let m = self.m;
        // SAFETY: Ms live as long as the runtime; the caller's guarantee.
        unsafe {
            if m.is_null() || !core::ptr::eq((*m).curg, self) {
                return None;
            }
            let sp = core::ptr::read_volatile(&(*m).libcallsp);
            (sp != 0).then(|| {
                (
                    core::ptr::read_volatile(&(*m).libcallpc),
                    sp,
                    core::ptr::read_volatile(&(*m).libcallfp),
                )
            })
        }
    }

    /// The first of this G's sudogs while it waits on channels, or null.
    pub fn waiting(&self) -> *mut crate::chan::Sudog {
        self.extra().map_or(core::ptr::null_mut(), |x| x.waiting)
    }

    /// Clear the system-call record.
    pub fn clear_syscall(&mut self) {
        self.in_syscall = 0;
        // SAFETY: extra is null or a live box owned by this G.
        if let Some(x) = unsafe { self.extra.as_mut() } {
            x.syscallsp = 0;
            x.syscallpc = 0;
            x.syscallfp = 0;
        }
    }

    #[inline]
    fn flag(&self, f: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & f != 0
    }
    #[inline]
    fn set_flag(&self, f: u8, on: bool) {
        if on {
            self.flags.fetch_or(f, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!f, Ordering::Relaxed);
        }
    }
    /// Move the stack at every entry check (tests).
    pub fn force_move(&self) -> bool {
        self.flag(F_FORCE_MOVE)
    }
    pub fn set_force_move(&self, on: bool) {
        self.set_flag(F_FORCE_MOVE, on)
    }
    /// A scan wanted to shrink this stack but could not: do it at the next
    /// synchronous safe point.
    pub fn preempt_shrink(&self) -> bool {
        self.flag(F_PREEMPT_SHRINK)
    }
    pub fn set_preempt_shrink(&self, on: bool) {
        self.set_flag(F_PREEMPT_SHRINK, on)
    }
    /// Between queueing its waiters on channels and parking: a window in
    /// which its stack must not move (set by channel operations).
    pub fn parking_on_chan(&self) -> bool {
        self.flag(F_PARKING_ON_CHAN)
    }
    pub fn set_parking_on_chan(&self, on: bool) {
        self.set_flag(F_PARKING_ON_CHAN, on)
    }
    /// Stopped at an asynchronous safe point (not a call site): its
    /// innermost frame is imprecise.  (For a future asynchronous
    /// preemption; never set today.)
    pub fn async_stopped(&self) -> bool {
        self.flag(F_ASYNC_STOPPED)
    }
    /// A request to yield at the next synchronous safe point (set by the
    /// monitor thread and by scans).
    pub fn preempt(&self) -> bool {
        self.flag(F_PREEMPT)
    }
    pub fn set_preempt(&self, on: bool) {
        self.set_flag(F_PREEMPT, on)
    }
    /// Clear the yield request; returns whether there was one.
    pub fn take_preempt(&self) -> bool {
        self.flags.fetch_and(!F_PREEMPT, Ordering::Relaxed) & F_PREEMPT != 0
    }
    /// Reset every flag (a G starting a new life).
    pub fn reset_flags(&self, force_move: bool) {
        self.flags
            .store(if force_move { F_FORCE_MOVE } else { 0 }, Ordering::Relaxed);
    }

    /// The stack this G holds.
    #[inline]
    pub fn stack(&self) -> Option<Stack> {
        self.stack_source.map(|source| Stack {
            lo: self.stack_lo,
            hi: self.stack_hi,
            source,
        })
    }

    /// The kind of stack this G's goroutine had (for reuse by spawn).
    pub fn stack_kind(&self) -> StackKind {
        match self.kind {
            GKind::Managed => StackKind::Movable,
            _ => StackKind::Guarded,
        }
    }

    /// Add a pin.
    pub fn pin(&mut self) {
        self.pins = self.pins.checked_add(1).unwrap_or_else(|| {
            crate::fatal::fatal(&format!("goroutine {}: too many pins", self.id))
        });
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
    ///
    /// Only a managed goroutine can be claimed (scan.rs's `claim` and
    /// `managed::move_stack` skip every other kind), and every other change
    /// of a status is made by the one thread that owns the goroutine at
    /// that moment: its M, or whoever dequeued its wake-up.  So for any
    /// other kind the compare-and-swap would guard against nothing: a
    /// checked plain store does, and saves a locked instruction on each
    /// switch of the native fast paths with several Ps.
    #[inline]
    pub fn cas_status(&self, from: Status, to: Status) {
        if self.kind != GKind::Managed {
            let v = self.status.load(Ordering::Acquire);
            if v != from as u32 {
                self.bad_status(v, from, to)
            }
            self.status.store(to as u32, Ordering::Release);
            return;
        }
        // The common case inline: nobody holds it.
        if self
            .status
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.cas_status_slow(from, to)
        }
    }

    /// cas_status when the first try failed: wait out a scan's claim.
    #[cold]
    #[inline(never)]
    fn cas_status_slow(&self, from: Status, to: Status) {
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
                Err(v) => self.bad_status(v, from, to),
            }
        }
    }

    /// cas_status found neither `from` nor a scan's claim on it: `v`.
    #[cold]
    #[inline(never)]
    fn bad_status(&self, v: u32, from: Status, to: Status) -> ! {
        crate::fatal::fatal(&format!(
            "goroutine {}: status {} where {} was expected (wanted {})",
            self.id,
            Status::from_u32(v & !SCAN).name(),
            from.name(),
            to.name()
        ))
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
        self.stack_source = Some(stk.source);
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
        self.stack_source = None;
    }

    /// Size of the stack this G holds (0 without one): the per-G figure
    /// whose sum the pool's in-use count must equal.
    pub fn stack_size(&self) -> usize {
        self.stack().map_or(0, |s| s.size())
    }
}
