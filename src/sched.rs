//! The scheduler of one runtime instance: Ps and their run queues,
//! spawning, parking, yielding, finishing, work stealing, and the loop on
//! g0 that picks the next goroutine.
//!
//! A runtime has `procs` Ps (GSMAXPROCS), each held by one M (a thread).
//! A P owns a local run queue, a `runnext` slot (the goroutine its M runs
//! next, as Go's p.runnext: with several Ps a new or yielding one, with one
//! P one a channel operation woke), a stack cache and a list
//! of dead Gs; a global queue takes work from outside.  An M with nothing
//! to run steals half of another P's queue (or its runnext, after a grace
//! period), spins for a while, then sleeps until wake_idle.
//!
//! Switches: in general a goroutine saves its context with `gs_mcall`, and
//! Rust code on the system stack (g0) decides what runs next and resumes it
//! with `gs_gogo`, so no runtime frame is left on a goroutine's stack while
//! it is not running, and it is queued only after its context is saved.
//! The common cases switch goroutine to goroutine without g0: on one P a
//! yield (gs_yield_native) and a channel park of a native goroutine
//! (park_pick + park_switch: no other M can take it before the switch
//! saved it); on
//! several Ps a yield to the goroutine in runnext (gs_yield_native for a
//! native one, yield_shared through gs_switch_publish otherwise: both
//! publish the yielder only once it is saved and the thread is off its
//! stack); and on any number of Ps the end of a native goroutine when its
//! P has a goroutine ready to go (exit_fast: the dead G goes on the P's
//! free list while we are still on its stack, which nobody can reuse
//! before we have jumped off it).

use crate::arch::Context;
use crate::fatal::{fatal, fatal_g, panic_message};
use crate::g::{GKind, NativeFn, Status, G};
use crate::m::M;
use crate::stack::{stackalloc, stackfree, AllocError, StackCache, StackKind, StackPool};
use crate::trampoline::{gs_goentry, gs_gogo};
use crate::{Config, Stats};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// What a P's holder leaves in its `runnext` while it switches to the
/// goroutine it took from there and puts the yielder in its place (see
/// P::take_next_reserving): not a goroutine -- never run, never stolen --
/// but work, for an M deciding whether to sleep.
const RUNNEXT_BUSY: *mut G = ptr::without_provenance_mut(RUNNEXT_BUSY_ADDR);
/// Its address (GS_RUNNEXT_BUSY: gs_yield_native leaves it too).
pub(crate) const RUNNEXT_BUSY_ADDR: usize = 1;

/// Below this much stack in use the automatic trigger never fires.
const GC_FLOOR: usize = 4 << 20;

/// Dead goroutines on the shared free list keep their stacks for reuse, up
/// to this many; beyond it a stack goes back to the pool (the G is kept).
const MAX_FREE_STACKS: usize = 256;

/// Dead Gs a P keeps for its own spawns; half move to (or come from) the
/// shared list at once when it overflows (runs dry).
const LOCAL_GFREE: usize = 64;

/// Goroutine ids a P takes from the shared counter at once.
const ID_BATCH: u64 = 16;

/// FIFO of goroutines linked through `G::schedlink`: no allocation.
/// Offsets of a GQueue's head and tail (for src/abi.rs's checks).
pub(crate) const GQUEUE_HEAD: usize = core::mem::offset_of!(GQueue, head);
pub(crate) const GQUEUE_TAIL: usize = core::mem::offset_of!(GQueue, tail);

#[repr(C)]
pub(crate) struct GQueue {
    head: *mut G,
    tail: *mut G,
    len: usize,
}

impl GQueue {
    const fn new() -> GQueue {
        GQueue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }
    /// # Safety
    /// `g` is a live G on no queue.
    #[inline]
    unsafe fn push(&mut self, g: *mut G) {
        // SAFETY: g and the queue's tail are live Gs (caller, invariant).
        unsafe {
            (*g).schedlink = ptr::null_mut();
            if self.tail.is_null() {
                self.head = g;
            } else {
                (*self.tail).schedlink = g;
            }
        }
        self.tail = g;
        self.len += 1;
    }
    #[inline]
    fn pop(&mut self) -> Option<*mut G> {
        let g = self.head;
        if g.is_null() {
            return None;
        }
        // SAFETY: every G on the queue is live.
        unsafe {
            self.head = (*g).schedlink;
            (*g).schedlink = ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = ptr::null_mut();
        }
        self.len -= 1;
        Some(g)
    }
}

/// A value alone on its cache line (x86-64 and aarch64: 64 bytes).
#[repr(C, align(64))]
pub(crate) struct Padded<T>(pub T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// How long an M without work looks for some before sleeping.
const SPIN_FOR: std::time::Duration = std::time::Duration::from_micros(50);

/// Spin rounds a victim P may keep its single queued goroutine while its
/// M goes on scheduling, before a spinning M takes it (a few microseconds).
const STEAL_GRACE_ROUNDS: u32 = 16;

/// A spinning M looks at what a victim's holder writes on every schedule
/// (its tick and runnext) once in this many rounds, and at the runtime's
/// end and the clock as rarely: each such look pulls a line its owner
/// writes all the time.  Divides STEAL_GRACE_ROUNDS.
const SPIN_SLOW_LOOK: u32 = 8;

/// Pause instructions between two looks of a spinning M (about 0.3-1 µs).
const SPIN_PAUSES: u32 = 64;

/// Schedules between two looks at the global queue first (Go: 61).
const GLOBAL_CHECK_EVERY: u32 = 61;

pub(crate) const P_RUNNING: u32 = 0;
pub(crate) const P_SYSCALL: u32 = 1;
pub(crate) const P_IDLE: u32 = 2;

/// A processor: what a thread needs to run goroutines — a local run
/// queue and a stack cache.  An M runs goroutines only while it holds a P
/// (each M holds one P for its whole life in this version).
///
/// With one P nobody else ever touches the queue, so it is used without a
/// lock (the switch path stays a few loads and stores); with several, idle
/// Ms steal from it, so it is taken under a spin lock.
///
/// With several Ps there is also `runnext` (Go's p.runnext): one goroutine
/// that runs next on this P, ahead of the queue -- the one just spawned, or
/// the one that just yielded to it when nothing else was queued.  Only the
/// holder puts a goroutine there; the holder takes it with a swap, a thief
/// with a compare-and-swap, and spinning Ms leave it alone while the holder
/// keeps scheduling (it will run it in a moment, on a warm cache).  So the
/// spawn-then-yield pattern stays on one M and takes no queue lock.
///
/// With one P, `runnext` holds the goroutine a channel operation on this
/// M last woke (as Go's ready() puts it in runnext): the partner of a
/// channel ping-pong runs next without a trip through the queue.  Only
/// this M touches it, with plain loads and stores.  So that such a pair
/// cannot keep the queue waiting forever, the global queue's turn (every
/// GLOBAL_CHECK_EVERY schedules) also takes the queue's head before it.
#[repr(C, align(64))]
pub(crate) struct P {
    /// P_RUNNING, P_SYSCALL (its M is in a system call: the monitor may
    /// take it), or P_IDLE (held by no M).  First: gs_entersyscall writes
    /// it (GS_P_STATE).
    pub state: AtomicU32,
    /// The M holding it (0 when idle).
    pub owner: AtomicUsize,
    pub id: usize,
    /// Several Ps: the queue is taken under `lock` (GS_P_SHARED).
    pub(crate) shared: bool,
    lock: AtomicBool,
    /// Schedules left before the global queue is looked at first (its
    /// fairness check); counts down from GLOBAL_CHECK_EVERY (GS_P_TICK).
    pub(crate) tick: AtomicU32,
    /// head and tail are read by gs_yield_native (GS_P_RUNQ_HEAD/_TAIL).
    pub(crate) runq: UnsafeCell<GQueue>,
    /// The goroutine to run next, ahead of `runq` (see above); runnable,
    /// its context saved, on no queue.  gs_yield_native leaves a one-P
    /// yield to the Rust path when it is set, and with several Ps takes
    /// it as yield_shared does (GS_P_RUNNEXT).
    pub(crate) runnext: AtomicPtr<G>,
    /// The queue's length, on a line of its own (GS_P_LEN: read by
    /// gs_yield_native with several Ps): spinning Ms read it on
    /// every look, and the holder writes it only when the queue changes
    /// (not on every schedule, as `tick` and `runnext` above), so those
    /// looks cost the holder nothing while it runs from runnext.
    pub(crate) len: Padded<AtomicUsize>,
    /// Used only by the M holding this P, on its system stack.
    cache: UnsafeCell<StackCache>,
    /// The cache-flush epoch this P's cache was last flushed at.
    flushed: AtomicU64,
    /// Dead Gs for this P's spawns (Go's p.gFree): only the holder touches
    /// it, so a spawn and an exit take no lock.  Bounded by LOCAL_GFREE;
    /// the excess goes to the shared list in batches.  A G here keeps its
    /// stack only when it is a starting-size one.
    gfree: UnsafeCell<Vec<*mut G>>,
    /// Goroutine ids handed out by this P: next, and the end of the block
    /// it took from the shared counter (Go's goidcache).
    id_next: AtomicU64,
    id_end: AtomicU64,
    /// Counted by the holder with plain loads and stores; stats() sums.
    spawned: AtomicU64,
    recycled: AtomicU64,
    /// Goroutines that ended here through exit_fast and are not yet taken
    /// off `Sched::alive` (a locked read-modify-write per exit saved):
    /// written by the holder with plain loads and stores, and taken off
    /// (flush_exits) by the holder in schedule and in gs_goexit0, or by the
    /// monitor when it takes the P from an M in a system call; a spawn on
    /// this P consumes one instead of adding to alive (newproc).  So alive
    /// counts them a little longer, never less: it cannot reach zero while
    /// a goroutine lives, and the last exit (always gs_goexit0: exit_fast
    /// needs a goroutine to go to) flushes its own P.
    exits: AtomicUsize,
    /// What the M holding this P saw of the others while it spun
    /// (spin_for_work): kept from one spin to the next, so that the grace
    /// a victim's single goroutine gets is counted in spin rounds however
    /// short each spin is (on a slow machine one spin may end before the
    /// grace does).  Only the holder touches it, on its system stack.
    spin: UnsafeCell<SpinState>,
}

/// See [`P::spin`].
struct SpinState {
    /// Spin rounds so far.
    round: u32,
    /// Per P: its holder's schedule count (M::schedtick, which never
    /// repeats, unlike the P's countdown `tick`) when first seen holding a
    /// single goroutine to run, and the round of that look.
    seen: Vec<(u64, u32)>,
}

// SAFETY: the queue is touched under `lock` when shared (several Ps), and
// only by its own thread when not; the cache, the free list and the spin
// state only by the M holding the P; runnext only through its atomics.
unsafe impl Send for P {}
unsafe impl Sync for P {}

// SAFETY: a GQueue is a list of G pointers; who may touch it is the
// owner's business (a lock, or a single thread).
unsafe impl Send for GQueue {}

impl P {
    fn new(id: usize, shared: bool) -> P {
        P {
            state: AtomicU32::new(P_RUNNING),
            owner: AtomicUsize::new(0),
            id,
            shared,
            lock: AtomicBool::new(false),
            tick: AtomicU32::new(0),
            runq: UnsafeCell::new(GQueue::new()),
            runnext: AtomicPtr::new(ptr::null_mut()),
            len: Padded(AtomicUsize::new(0)),
            cache: UnsafeCell::new(StackCache::new()),
            flushed: AtomicU64::new(0),
            gfree: UnsafeCell::new(Vec::new()),
            id_next: AtomicU64::new(0),
            id_end: AtomicU64::new(0),
            spawned: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            exits: AtomicUsize::new(0),
            spin: UnsafeCell::new(SpinState {
                round: 0,
                seen: Vec::new(),
            }),
        }
    }

    #[inline]
    fn with_q<R>(&self, f: impl FnOnce(&mut GQueue) -> R) -> R {
        if self.shared {
            while self
                .lock
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                core::hint::spin_loop();
            }
        }
        // SAFETY: locked, or only ever used by this P's own thread.
        let r = f(unsafe { &mut *self.runq.get() });
        if self.shared {
            self.lock.store(false, Ordering::Release);
        }
        r
    }

    /// Queue `g` behind the others.
    ///
    /// # Safety
    /// `g` is live, runnable, its context saved, and on no queue.
    pub unsafe fn runq_push(&self, g: *mut G) {
        self.with_q(|q| {
            // SAFETY: the caller's guarantee.
            unsafe { q.push(g) };
            self.len.store(q.len, Ordering::Relaxed);
        })
    }

    pub fn runq_pop(&self) -> Option<*mut G> {
        self.with_q(|q| {
            let g = q.pop();
            self.len.store(q.len, Ordering::Relaxed);
            g
        })
    }

    /// One P only (an unshared queue): runq_push without the lock test.
    ///
    /// # Safety
    /// As for runq_push; called by this P's M; the P is not shared.
    #[inline]
    pub(crate) unsafe fn runq_push_unshared(&self, g: *mut G) {
        debug_assert!(!self.shared);
        // SAFETY: unshared: only this P's M touches the queue; g as the
        // caller guarantees.
        unsafe {
            let q = &mut *self.runq.get();
            q.push(g);
            self.len.store(q.len, Ordering::Relaxed);
        }
    }

    /// One P only: make `g`, just woken on this M, the next to run; the
    /// one there before goes to the back of the queue (Go's runqput with
    /// next).
    ///
    /// # Safety
    /// As for runq_push; called by this P's M; the P is not shared.
    #[inline(always)]
    pub(crate) unsafe fn put_next_unshared(&self, g: *mut G) {
        debug_assert!(!self.shared);
        let old = self.runnext.load(Ordering::Relaxed);
        self.runnext.store(g, Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: old was runnext: runnable, saved, on no queue.
            unsafe { self.runq_push_unshared(old) };
        }
    }

    /// The exits counted by exit_fast not yet taken off Sched::alive, now
    /// taken (the caller subtracts them).  Called by the P's holder, or
    /// the monitor holding it in retake.
    #[inline]
    fn take_exits(&self) -> usize {
        let n = self.exits.load(Ordering::Relaxed);
        if n != 0 {
            self.exits.store(0, Ordering::Relaxed);
        }
        n
    }

    /// One P only: take runnext, if any.  Called by this P's M.
    #[inline(always)]
    fn take_next_unshared(&self) -> Option<*mut G> {
        debug_assert!(!self.shared);
        let g = self.runnext.load(Ordering::Relaxed);
        if g.is_null() {
            return None;
        }
        self.runnext.store(ptr::null_mut(), Ordering::Relaxed);
        Some(g)
    }

    /// One P only (an unshared queue): runq_pop without the lock test.
    ///
    /// # Safety
    /// Called by this P's M; the P is not shared.
    #[inline]
    unsafe fn runq_pop_unshared(&self) -> Option<*mut G> {
        debug_assert!(!self.shared);
        // SAFETY: unshared: only this P's M touches the queue.
        let q = unsafe { &mut *self.runq.get() };
        let g = q.pop();
        self.len.store(q.len, Ordering::Relaxed);
        g
    }

    /// One P only: the goroutine the first step of find_runnable takes --
    /// runnext (a goroutine a channel woke), else the queue's head --
    /// looked at first, and taken only when `ok` accepts it (the direct
    /// switches leave the rest to slower paths).
    ///
    /// # Safety
    /// Called by this P's M; the P is not shared.
    #[inline(always)]
    unsafe fn take_first_unshared_if(&self, ok: impl FnOnce(&G) -> bool) -> Option<*mut G> {
        let in_next = self.runnext.load(Ordering::Relaxed);
        // SAFETY: unshared: only this P's M touches runnext and the queue,
        // and what they hold is live.
        unsafe {
            let g = if in_next.is_null() {
                (*self.runq.get()).head
            } else {
                in_next
            };
            if g.is_null() || !ok(&*g) {
                return None;
            }
            if in_next.is_null() {
                self.runq_pop_unshared()
            } else {
                self.take_next_unshared()
            }
        }
    }

    /// One P only (an unshared queue): put `g` at the back and take the
    /// goroutine at the front, in one pass; None (and g not queued) when
    /// the queue is empty.  The length does not change.
    ///
    /// # Safety
    /// Called by this P's M; `g` is live, runnable, its context about to be
    /// saved by the caller's switch (no other M can take it: there is none
    /// with a P), and on no queue.
    #[inline]
    unsafe fn rotate(&self, g: *mut G) -> Option<*mut G> {
        debug_assert!(!self.shared);
        // SAFETY: unshared: only this P's M touches the queue; every G on
        // it is live; g as the caller guarantees.
        unsafe {
            let q = &mut *self.runq.get();
            let next = q.head;
            if next.is_null() {
                return None;
            }
            q.head = (*next).schedlink;
            (*next).schedlink = ptr::null_mut();
            (*g).schedlink = ptr::null_mut();
            if q.head.is_null() {
                q.head = g;
            } else {
                (*q.tail).schedlink = g;
            }
            q.tail = g;
            Some(next)
        }
    }

    pub fn runq_len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether this P has a goroutine to run: in `runnext` (or about to be:
    /// RUNNEXT_BUSY) or queued.
    /// SeqCst on `runnext`: the last look of an M about to sleep or stop
    /// spinning pairs with [`P::put_next`]'s swap (see Sched::wake_idle).
    fn has_work(&self) -> bool {
        !self.runnext.load(Ordering::SeqCst).is_null() || self.runq_len() > 0
    }

    /// Several Ps: make `g` the next goroutine to run on this P; the one
    /// that was there goes to the back of the queue.  The swap is a full
    /// barrier: the caller's look for idle Ms after it (wake_after_publish)
    /// needs no fence of its own.
    ///
    /// # Safety
    /// Called by the M holding this (shared) P; `g` is live, runnable, its
    /// context saved, and on no queue.
    unsafe fn put_next(&self, g: *mut G) {
        debug_assert!(self.shared);
        let old = self.runnext.swap(g, Ordering::SeqCst);
        if !old.is_null() {
            // SAFETY: old was in runnext and we took it off: runnable,
            // saved, on no queue.
            unsafe { self.runq_push(old) };
        }
    }

    /// Take this P's `runnext`, if any (with a swap: with several Ps a
    /// thief may take it meanwhile).  Called by its holder.
    #[inline]
    fn take_next(&self) -> Option<*mut G> {
        if self.runnext.load(Ordering::Relaxed).is_null() {
            return None;
        }
        // A thief may take it meanwhile: swap, and see what we got.
        let g = self.runnext.swap(ptr::null_mut(), Ordering::Acquire);
        // RUNNEXT_BUSY lives only inside one switch of this holder.
        debug_assert!(g != RUNNEXT_BUSY);
        (!g.is_null()).then_some(g)
    }

    /// Several Ps: take this P's `runnext` for a switch that puts the
    /// yielding goroutine there in its place (yield_shared): the slot holds
    /// RUNNEXT_BUSY meanwhile, never null, so that an M about to sleep does
    /// not see this P without work in that window and sleep while the
    /// yielder waits in runnext (nobody wakes it after: the work did not
    /// grow).  The caller overwrites RUNNEXT_BUSY before it returns: with
    /// the yielder (gs_switch_publish) or with what it took (giving up).
    /// Called by its holder.
    #[inline]
    fn take_next_reserving(&self) -> Option<*mut G> {
        if self.runnext.load(Ordering::Relaxed).is_null() {
            return None;
        }
        // A thief may take it meanwhile: swap, and see what we got.
        let g = self.runnext.swap(RUNNEXT_BUSY, Ordering::Acquire);
        if g.is_null() {
            // Stolen: nothing reserved (only the holder fills the slot, so
            // it is still ours to clear).
            self.runnext.store(ptr::null_mut(), Ordering::Relaxed);
            return None;
        }
        debug_assert!(g != RUNNEXT_BUSY);
        Some(g)
    }

    /// Take another P's `runnext` (a thief, past the grace its holder
    /// gets).
    fn steal_next(&self) -> Option<*mut G> {
        let g = self.runnext.load(Ordering::Acquire);
        if g.is_null() || g == RUNNEXT_BUSY {
            return None;
        }
        // If it is still g, g is still runnable and nobody else took it
        // (whoever takes a goroutine out of runnext clears the slot first).
        self.runnext
            .compare_exchange(g, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
            .ok()
    }

    /// Take half of this P's queue (at least one) for `thief`: the first
    /// is returned, the rest queued on the thief.
    fn steal_into(&self, thief: &P) -> Option<*mut G> {
        let mut taken = Vec::new();
        self.with_q(|q| {
            let n = q.len.div_ceil(2);
            for _ in 0..n {
                if let Some(g) = q.pop() {
                    taken.push(g);
                }
            }
            self.len.store(q.len, Ordering::Relaxed);
        });
        let mut it = taken.into_iter();
        let first = it.next()?;
        for g in it {
            // SAFETY: taken off a run queue: runnable, saved, on no queue.
            unsafe { thief.runq_push(g) };
        }
        Some(first)
    }

    /// Add one to a counter only this P's holder writes.
    #[inline]
    fn bump(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// This P's list of dead Gs.
    ///
    /// # Safety
    /// Called by the M holding this P, on its system stack (or, in
    /// exit_fast, on the stack of its goroutine that is ending, which the
    /// list may then hold: it is left before the list is used again); the
    /// borrow ends before anything else can use the list.
    #[allow(clippy::mut_from_ref)]
    unsafe fn gfree(&self) -> &mut Vec<*mut G> {
        // SAFETY: the caller's guarantee.
        unsafe { &mut *self.gfree.get() }
    }

    /// This P's stack cache.
    ///
    /// # Safety
    /// Called by the M holding this P, on its system stack, and the borrow
    /// ends before anything else can use the cache.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn cache(&self) -> &mut StackCache {
        // SAFETY: the caller's guarantee.
        unsafe { &mut *self.cache.get() }
    }
}

struct GTable {
    /// Dead Gs, for reuse by spawn.
    free: Vec<*mut G>,
    /// How many of `free` still hold a stack.
    free_with_stack: usize,
}

/// How a new goroutine starts.
pub enum Start {
    /// A Rust closure on a fixed stack.
    Native(NativeFn),
    /// A registered managed function, called as `entry(g, args...)`; its
    /// return value goes to `exit`.
    Managed {
        entry: usize,
        args: [usize; 6],
        /// A handle will read the result (G::handles starts at 1).
        handle: bool,
        force_move: bool,
    },
}

/// Why a goroutine could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// Called from a thread that is not running a gstack runtime, or by
    /// foreign code inside a managed goroutine's system call window (whose
    /// P may belong to another M by now).
    NotInRuntime,
    /// The stack could not be allocated.
    Stack(AllocError),
    /// The entry address is not the start of a registered managed function.
    NotManaged(usize),
    /// More arguments than the entry trampoline passes (5 after g).
    TooManyArgs(usize),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::NotInRuntime => {
                f.write_str("not on a goroutine of a running gstack runtime")
            }
            SpawnError::Stack(e) => write!(f, "{e}"),
            SpawnError::NotManaged(a) => {
                write!(
                    f,
                    "{a:#x} is not the start of a registered managed function"
                )
            }
            SpawnError::TooManyArgs(n) => {
                write!(
                    f,
                    "{n} arguments: a managed goroutine takes at most 5 after g"
                )
            }
        }
    }
}

impl std::error::Error for SpawnError {}

pub struct Sched {
    pub config: Config,
    pub pool: StackPool,
    /// The Ps: `config.procs` of them.
    pub(crate) ps: Box<[P]>,
    /// Runnable goroutines no P holds (overflow, and goroutines whose M
    /// could not keep them).
    global: Mutex<GQueue>,
    global_len: AtomicUsize,
    /// Idle Ms sleep here until work appears or the runtime ends.
    idle: Mutex<()>,
    idle_cv: Condvar,
    nmidle: AtomicUsize,
    /// Ms looking for work without sleeping (Go's nmspinning): while one
    /// spins, making work runnable wakes nobody -- the spinner will find it.
    nmspinning: AtomicUsize,
    /// An idle M was notified and has not yet come out of its wait to
    /// look for work (Go counts such an M as spinning at once): work made
    /// meanwhile wakes nobody else -- it will find it.  Set and cleared
    /// under `idle`.
    wake_pending: AtomicBool,
    /// Every M of the runtime (for the monitor), and the Ms (with their
    /// g0s) whose threads ended: freed when the runtime ends.
    pub(crate) ms: Mutex<Vec<usize>>,
    retired: Mutex<Vec<(usize, usize)>>,
    /// Ps held by no M (handed off from an M in a system call), Ms that
    /// wait for one, and the threads of temporary Ms.
    idle_ps: Mutex<Vec<usize>>,
    nspare: AtomicUsize,
    pub(crate) temp_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    gs: Mutex<GTable>,
    /// Every G this runtime made (never freed while it lives, nor while a
    /// handle to one of them does).
    pub(crate) slab: std::sync::Arc<crate::g::GSlab>,
    next_id: AtomicU64,
    /// Written on every spawn and exit: alone on its line, so that an M
    /// that reads its neighbours while it spins does not slow those down.
    alive: Padded<AtomicUsize>,
    grows: AtomicU64,
    bytes_copied: AtomicU64,
    peak_stack: AtomicUsize,
    pub(crate) running: AtomicBool,
    /// The scan cycle in progress, and whether there is one.
    pub(crate) cycle: Mutex<Option<crate::scan::Cycle>>,
    pub(crate) cycle_active: AtomicBool,
    /// Starting size of new managed goroutines chosen by the last cycle
    /// (adaptive sizing), 0 before the first.
    pub(crate) adaptive_start: AtomicUsize,
    /// Stack bytes in use when the last cycle ended: the base of the
    /// automatic trigger.
    last_cycle_in_use: AtomicUsize,
    cycles: AtomicU64,
    gc_wanted: AtomicBool,
    /// Bumped at the end of every scan cycle: each M then flushes its P's
    /// stack cache (only the owner may touch it), so that spans emptied by
    /// the cycle's shrinks and frees can go back to the system.
    flush_epoch: AtomicU64,
}

// SAFETY: the P (run queue, stack cache) is used only by the one thread
// that runs this Sched (Runtime::run refuses a second one), and only from
// code on that thread that does not overlap (g0 code and goroutine code
// never run at the same time on one thread).  The G table is behind a
// Mutex; counters are atomics.  Raw G pointers stay valid: Gs are freed
// only by teardown after every goroutine finished.
unsafe impl Send for Sched {}
unsafe impl Sync for Sched {}

impl Sched {
    pub fn new(config: Config) -> Sched {
        Sched {
            pool: StackPool::new(config.debug),
            ps: (0..config.procs.max(1))
                .map(|i| P::new(i, config.procs > 1))
                .collect(),
            global: Mutex::new(GQueue::new()),
            global_len: AtomicUsize::new(0),
            idle: Mutex::new(()),
            idle_cv: Condvar::new(),
            nmidle: AtomicUsize::new(0),
            nmspinning: AtomicUsize::new(0),
            wake_pending: AtomicBool::new(false),
            ms: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            idle_ps: Mutex::new(Vec::new()),
            nspare: AtomicUsize::new(0),
            temp_threads: Mutex::new(Vec::new()),
            config,
            slab: Default::default(),
            gs: Mutex::new(GTable {
                free: Vec::new(),
                free_with_stack: 0,
            }),
            next_id: AtomicU64::new(1),
            alive: Padded(AtomicUsize::new(0)),
            grows: AtomicU64::new(0),
            bytes_copied: AtomicU64::new(0),
            peak_stack: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            cycle: Mutex::new(None),
            cycle_active: AtomicBool::new(false),
            adaptive_start: AtomicUsize::new(0),
            last_cycle_in_use: AtomicUsize::new(0),
            cycles: AtomicU64::new(0),
            gc_wanted: AtomicBool::new(false),
            flush_epoch: AtomicU64::new(0),
        }
    }

    /// The P held by the calling thread's M.
    ///
    /// # Safety
    /// Called on a thread that runs this Sched (an M of it).
    #[inline]
    pub(crate) unsafe fn cur_p(&self) -> &P {
        let m = crate::m::current_m();
        // SAFETY: the caller's guarantee: m is an M of this Sched, holding
        // one of its Ps for its whole life.
        unsafe { &*(*m).p.load(Ordering::Relaxed) }
    }

    /// The calling M's stack cache, unless GSDEBUG says stacknocache.
    ///
    /// # Safety
    /// As for [`P::cache`].
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn cache(&self) -> Option<&mut StackCache> {
        if self.config.debug.stacknocache {
            None
        } else {
            // SAFETY: the caller's guarantee.
            Some(unsafe { self.cur_p().cache() })
        }
    }

    /// Make `g` runnable on the calling M's P and wake an idle M.
    ///
    /// # Safety
    /// `g` is live with its context saved and on no queue.
    pub(crate) unsafe fn put_runnable(&self, g: *mut G) {
        // SAFETY: the caller's guarantee; we run on an M of this Sched.
        unsafe { self.cur_p().runq_push(g) };
        self.wake_idle();
    }

    /// Make the just-spawned `g` runnable on the calling M's P: with
    /// several Ps it runs next there (runnext, ahead of the queue; Go's
    /// newproc does the same), and an idle M is woken as for any new work.
    /// With one P it goes to the back of the queue (runnext there is for
    /// channel wake-ups).
    ///
    /// # Safety
    /// `g` is live with its context saved and on no queue; called on an M
    /// of this Sched (as newproc).
    pub(crate) unsafe fn put_new(&self, g: *mut G) {
        // SAFETY: the caller's guarantee; we run on an M of this Sched.
        let p = unsafe { self.cur_p() };
        if p.shared {
            // SAFETY: the caller's guarantee; p is this M's own P.
            unsafe { p.put_next(g) };
            self.wake_after_publish();
        } else {
            // SAFETY: the caller's guarantee.
            unsafe { p.runq_push(g) };
        }
    }

    fn pop_global(&self) -> Option<*mut G> {
        if self.global_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut gq = self.global.lock().unwrap();
        let g = gq.pop();
        self.global_len.store(gq.len, Ordering::Relaxed);
        g
    }

    /// Queue `g` on the global run queue (its M has no P) and wake an M.
    ///
    /// # Safety
    /// `g` is runnable with its context saved and on no queue.
    pub(crate) unsafe fn put_global(&self, g: *mut G) {
        {
            let mut q = self.global.lock().unwrap();
            // SAFETY: the caller's guarantee.
            unsafe { q.push(g) };
            self.global_len.store(q.len, Ordering::Relaxed);
        }
        self.wake_all();
    }

    /// Wake one idle M if there is one (cheap when none is idle).
    pub(crate) fn wake_idle(&self) {
        if self.ps.len() == 1 {
            // The one P is held by the caller's M (only the P's holder
            // queues locally): no M with a P sleeps.  Work from outside
            // goes through put_global, which wakes everyone.
            return;
        }
        // Order the caller's publication of the work before the looks
        // below; a spinner (spin_for_work) or a sleeper (schedule) orders
        // its announcement before its last look for work the same way, so
        // one of the two sees the other.
        core::sync::atomic::fence(Ordering::SeqCst);
        self.wake_after_publish();
    }

    /// wake_idle's looks, for a caller that published its work with a
    /// SeqCst read-modify-write (P::put_next's swap): that is the barrier
    /// between the publication and these loads.  Several Ps only.
    fn wake_after_publish(&self) {
        if self.nmspinning.load(Ordering::SeqCst) > 0 || self.wake_pending.load(Ordering::SeqCst) {
            return;
        }
        if self.nmidle.load(Ordering::SeqCst) > 0 {
            let _l = self.idle.lock().unwrap();
            // Under the lock the counts are exact: an idle M counted in
            // nmidle is in its wait, or was woken and waits for the lock
            // (then it looks for work before it waits again).
            if self.nmidle.load(Ordering::Relaxed) > 0 && !self.wake_pending.load(Ordering::Relaxed)
            {
                self.wake_pending.store(true, Ordering::Relaxed);
                if self.nspare.load(Ordering::SeqCst) > 0 {
                    // Ms waiting for a P wait on the same condvar: make
                    // sure an idle M is among the woken.
                    self.idle_cv.notify_all();
                } else {
                    self.idle_cv.notify_one();
                }
            }
        }
    }

    /// Wake every idle M (the runtime is ending).
    fn wake_all(&self) {
        let _l = self.idle.lock().unwrap();
        self.idle_cv.notify_all();
    }

    fn any_work(&self) -> bool {
        self.global_len.load(Ordering::Relaxed) > 0 || self.ps.iter().any(|p| p.has_work())
    }

    /// A runnable goroutine for the M holding `p`: its own P's queue, then
    /// the global queue, then half of another P's.
    ///
    /// The common case -- the local queue has one -- is inlined into the
    /// switch paths; the rest is out of line.
    #[inline]
    fn find_runnable(&self, p: &P) -> Option<*mut G> {
        // Now and then the global queue first, so that a busy local queue
        // cannot starve it (Go looks every 61 schedules).  Only the P's
        // holder counts: a plain load and store, counting down.
        let left = p.tick.load(Ordering::Relaxed);
        if left != 0 {
            p.tick.store(left - 1, Ordering::Relaxed);
            let next = if p.shared {
                p.take_next()
            } else {
                p.take_next_unshared()
            };
            if let Some(g) = next {
                return Some(g);
            }
            if let Some(g) = p.runq_pop() {
                return Some(g);
            }
        } else {
            p.tick.store(GLOBAL_CHECK_EVERY, Ordering::Relaxed);
            if let Some(g) = self.pop_global() {
                return Some(g);
            }
        }
        self.find_runnable_slow(p)
    }

    /// The goroutine a yield on `p` switches to: as find_runnable (the
    /// global queue's turn, runnext, the local queue, the global queue),
    /// without stealing: the yielding goroutine is runnable here, so this
    /// P has work of its own.  Called by the M holding `p`, on g0.
    fn next_for_yield(&self, p: &P) -> Option<*mut G> {
        let left = p.tick.load(Ordering::Relaxed);
        if left != 0 {
            p.tick.store(left - 1, Ordering::Relaxed);
            p.take_next()
                .or_else(|| p.runq_pop())
                .or_else(|| self.pop_global())
        } else {
            p.tick.store(GLOBAL_CHECK_EVERY, Ordering::Relaxed);
            if p.shared {
                self.pop_global()
                    .or_else(|| p.take_next())
                    .or_else(|| p.runq_pop())
            } else {
                // One P: the queue before runnext on this turn, as in
                // find_runnable_slow.
                self.pop_global()
                    .or_else(|| p.runq_pop())
                    .or_else(|| p.take_next_unshared())
            }
        }
    }

    #[inline(never)]
    fn find_runnable_slow(&self, p: &P) -> Option<*mut G> {
        if p.shared {
            if let Some(g) = p.take_next().or_else(|| p.runq_pop()) {
                return Some(g);
            }
        } else if let Some(g) = p.runq_pop().or_else(|| p.take_next_unshared()) {
            // One P: the queue before runnext here (the global queue's
            // turn, or nothing left in either), so that a channel
            // ping-pong through runnext leaves the queue a turn.
            return Some(g);
        }
        if let Some(g) = self.pop_global() {
            return Some(g);
        }
        let n = self.ps.len();
        if n > 1 {
            let start = crate::chan::fastrand() as usize % n;
            for k in 0..n {
                let victim = &self.ps[(start + k) % n];
                if victim.id != p.id && victim.runq_len() > 0 {
                    if let Some(g) = victim.steal_into(p) {
                        return Some(g);
                    }
                }
            }
        }
        None
    }

    /// A spinning M's search: look for work over and over for up to
    /// SPIN_FOR, as Go's spinning Ms do, then give up (the caller sleeps).
    /// A victim P with a single goroutine to run (in its `runnext`, or
    /// alone on its queue) is left alone while its M keeps scheduling (it
    /// will run it in a moment, on a warm cache; Go protects `runnext` the
    /// same way); if its M has not scheduled for STEAL_GRACE_ROUNDS (it
    /// runs something long), the goroutine is taken.
    ///
    /// Must be called by the M holding `p`, on its system stack.
    fn spin_for_work(&self, p: &P) -> Option<*mut G> {
        let n = self.ps.len();
        self.nmspinning.fetch_add(1, Ordering::SeqCst);
        let t0 = std::time::Instant::now();
        // SAFETY: we hold p and run on our system stack; nothing else
        // borrows its spin state while we spin.
        let st = unsafe { &mut *p.spin.get() };
        if st.seen.len() != n {
            st.seen = vec![(u64::MAX, 0); n];
        }
        let mut found = None;
        'spin: loop {
            st.round = st.round.wrapping_add(1);
            let round = st.round;
            if let Some(g) = p
                .take_next()
                .or_else(|| if p.runq_len() > 0 { p.runq_pop() } else { None })
                .or_else(|| self.pop_global())
            {
                found = Some(g);
                break;
            }
            let slow_look = round.is_multiple_of(SPIN_SLOW_LOOK);
            for victim in self.ps.iter() {
                if victim.id == p.id {
                    continue;
                }
                let len = victim.runq_len();
                if len == 0 && !slow_look {
                    // Its runnext is left to its holder for a while
                    // anyway: look at it on slow looks only.
                    continue;
                }
                let next = !victim.runnext.load(Ordering::Relaxed).is_null();
                if len == 0 && !next {
                    continue;
                }
                if len + next as usize == 1 {
                    if !slow_look {
                        continue;
                    }
                    let owner = victim.owner.load(Ordering::Acquire) as *const M;
                    // No holder (handed off): nobody else will run it.
                    if !owner.is_null() {
                        // SAFETY: a runtime's Ms live until it ends (retired
                        // ones too), and we are one of its Ms.
                        let tick = unsafe { (*owner).schedtick.load(Ordering::Relaxed) };
                        let e = &mut st.seen[victim.id];
                        if e.0 != tick {
                            *e = (tick, round);
                            continue;
                        }
                        if round.wrapping_sub(e.1) < STEAL_GRACE_ROUNDS {
                            continue;
                        }
                    }
                }
                let stolen = if len > 0 {
                    victim.steal_into(p)
                } else {
                    victim.steal_next()
                };
                if let Some(g) = stolen {
                    found = Some(g);
                    break 'spin;
                }
            }
            if slow_look
                && (self.alive() == 0
                    || self.gc_wanted.load(Ordering::Relaxed)
                    || t0.elapsed() > SPIN_FOR)
            {
                break;
            }
            // Look now and then, not flat out: every look pulls the other
            // Ps' queue lines away from their owners, who write them on
            // every schedule.
            for _ in 0..SPIN_PAUSES {
                core::hint::spin_loop();
            }
        }
        let last = self.nmspinning.fetch_sub(1, Ordering::SeqCst) == 1;
        if found.is_none() {
            // Producers that saw us spinning woke nobody: look once more
            // after announcing we stopped (see wake_idle).
            core::sync::atomic::fence(Ordering::SeqCst);
            found = self.find_runnable(p);
        }
        if found.is_some() && last && self.nmidle.load(Ordering::SeqCst) > 0 && self.any_work() {
            // The same for what is left: we take one goroutine, and the
            // rest was made while we spun (Go's resetspinning).
            self.wake_idle();
        }
        found
    }

    pub fn stats(&self) -> Stats {
        let s = self.pool.stats();
        Stats {
            stack_in_use: s.in_use,
            stack_sys: s.sys,
            stack_cached: s.cached,
            // alive first (Acquire, pairing with the fetch_sub of a flush
            // and the Release fetch_add of a spawn): an exit already taken
            // off it then reads as flushed below, and exits a spawn
            // consumed before an increment we see read as consumed.
            goroutines_alive: self.alive.load(Ordering::Acquire).saturating_sub(
                self.ps
                    .iter()
                    .map(|p| p.exits.load(Ordering::Relaxed))
                    .sum(),
            ),
            goroutines_spawned: self
                .ps
                .iter()
                .map(|p| p.spawned.load(Ordering::Relaxed))
                .sum(),
            goroutines_recycled: self
                .ps
                .iter()
                .map(|p| p.recycled.load(Ordering::Relaxed))
                .sum(),
            stack_copies: self.grows.load(Ordering::Relaxed),
            stack_bytes_copied: self.bytes_copied.load(Ordering::Relaxed),
            stack_peak: self.peak_stack.load(Ordering::Relaxed),
            gc_cycles: self.cycles.load(Ordering::Relaxed),
            managed_start_size: self.managed_start_size(),
        }
    }

    /// Starting stack size of a new managed goroutine: chosen by the last
    /// scan cycle when adaptive sizing is on, else the configured one.
    pub(crate) fn managed_start_size(&self) -> usize {
        match self.adaptive_start.load(Ordering::Relaxed) {
            0 => self.config.managed_stack_size,
            n if self.config.debug.adaptivestackstart => n,
            _ => self.config.managed_stack_size,
        }
    }

    /// Every live goroutine (for a scan cycle's snapshot).
    pub(crate) fn all_gs(&self) -> Vec<*mut G> {
        let mut v = Vec::new();
        // SAFETY: every G in the slab is live.
        self.slab.for_each(|g| {
            if unsafe { (*g).status() } != Status::Dead {
                v.push(g)
            }
        });
        v
    }

    /// Make a waiting goroutine runnable.
    ///
    /// # Safety
    /// On the system stack; `g` is waiting and on no queue.
    pub(crate) unsafe fn ready(&self, g: *mut G) {
        // SAFETY: the caller's guarantee.
        unsafe { self.ready_from(crate::m::current_m(), g) }
    }

    /// [`Self::ready`], given `m` = this thread's M (null on a thread that
    /// runs no runtime), which the channel operations have already read.
    ///
    /// # Safety
    /// As for `ready`; `m` is current_m().
    #[inline]
    pub(crate) unsafe fn ready_from(&self, m: *mut M, g: *mut G) {
        // SAFETY: the caller's guarantee.
        unsafe {
            if !m.is_null() && core::ptr::eq((*m).sched, self) && crate::m::holds_p(m) {
                let p = (*m).p.load(Ordering::Relaxed);
                if !p.is_null() {
                    let p = &*p;
                    if !p.shared {
                        // One P: scans run on this M, between goroutines,
                        // so none holds g now; and no other thread changes
                        // the status of a waiting goroutine but through
                        // the compare-and-swap below (a plain thread
                        // waking it), which cannot run while we hold the
                        // wake (the sudog we dequeued).  A plain store
                        // does.  Nobody to wake: the one P is ours.
                        (*g).set_status(Status::Runnable);
                        p.runq_push(g);
                        return;
                    }
                    // A scan may hold it for a moment: wait for the claim.
                    (*g).cas_status(Status::Waiting, Status::Runnable);
                    p.runq_push(g);
                    self.wake_idle();
                    return;
                }
            }
            // Woken from a thread that is not one of our Ms (a plain
            // thread closing a channel, another runtime's goroutine), or
            // from an M without a P: the global queue, under its lock.
            (*g).cas_status(Status::Waiting, Status::Runnable);
            self.put_global(g);
        }
    }

    pub(crate) fn note_cycle_end(&self) {
        self.cycles.fetch_add(1, Ordering::Relaxed);
        self.last_cycle_in_use
            .store(self.pool.stats().in_use, Ordering::Relaxed);
        self.gc_wanted.store(false, Ordering::Relaxed);
        self.flush_epoch.fetch_add(1, Ordering::Release);
    }

    /// Flush the calling M's stack cache if a cycle ended since it last
    /// did.  On the M's system stack.
    fn maybe_flush_cache(&self, p: &P) {
        let e = self.flush_epoch.load(Ordering::Acquire);
        if p.flushed.load(Ordering::Relaxed) != e {
            p.flushed.store(e, Ordering::Relaxed);
            // SAFETY: p is the calling M's own P, on its system stack.
            self.pool.flush_cache(unsafe { p.cache() });
        }
    }

    /// The automatic trigger: ask for a cycle when stack memory in use grew
    /// by `gc_percent` percent since the last one (and is past a floor).
    pub(crate) fn maybe_want_gc(&self) {
        let pct = self.config.gc_percent;
        if pct == 0 || self.cycle_active() {
            return;
        }
        let base = self.last_cycle_in_use.load(Ordering::Relaxed).max(GC_FLOOR);
        if self.pool.stats().in_use as u128 * 100 > base as u128 * (100 + pct as u128) {
            self.gc_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Account one stack copy of `used` bytes to a `newsize`-byte stack.
    pub(crate) fn note_copy(&self, used: usize, newsize: usize) {
        self.grows.fetch_add(1, Ordering::Relaxed);
        self.bytes_copied.fetch_add(used as u64, Ordering::Relaxed);
        self.peak_stack.fetch_max(newsize, Ordering::Relaxed);
        self.maybe_want_gc();
    }

    /// Seed 004's invariant: the stacks every G holds add up to exactly
    /// what the pool counts as in use.
    pub fn check_accounting(&self) -> Result<(), String> {
        let mut sum: usize = 0;
        // SAFETY: every G in the slab is live.
        self.slab.for_each(|g| sum += unsafe { (*g).stack_size() });
        // Old stacks whose free waits for the cycle's end still count.
        if let Some(c) = self.cycle.lock().unwrap().as_ref() {
            sum += c.delayed_bytes();
        }
        self.pool.check_accounting(sum)
    }

    /// Make a goroutine that starts as `start` says, on a stack of `size`
    /// bytes (native: rounded up to pages, fixed, guard page below;
    /// managed: rounded up to a power of two, movable), and put it on the
    /// run queue.
    ///
    /// Must run on a stack that never moves -- a system stack (g0, or a
    /// thread's own stack before the scheduler starts), or a native
    /// goroutine's fixed stack with room to spare (runtime.rs's spawn) --
    /// of an M of this Sched, with nothing else running on that M until it
    /// returns: it allocates stacks and uses the M's P's lists and cache.
    /// Reuses a dead G, and its stack when kind and size match.
    pub fn newproc(&self, start: Start, size: usize) -> Result<*mut G, SpawnError> {
        let g = self.newproc_unqueued(start, size)?;
        // SAFETY: g is fresh, runnable, on no queue; on an M's system stack.
        unsafe { self.put_new(g) };
        Ok(g)
    }

    /// [`Sched::newproc`] without putting the goroutine on a run queue: the
    /// caller finishes its bookkeeping first, then publishes it with
    /// `put_new` (once published, another M may run it at once).
    pub(crate) fn newproc_unqueued(&self, start: Start, size: usize) -> Result<*mut G, SpawnError> {
        let (kind, stack_kind, want) = match start {
            Start::Native(_) => (GKind::Native, StackKind::Guarded, round_to_pages(size)),
            Start::Managed { .. } => (
                GKind::Managed,
                StackKind::Movable,
                size.max(crate::stack::MIN_STACK).next_power_of_two(),
            ),
        };
        // SAFETY: newproc runs on an M of this Sched, on g0 or a native
        // goroutine's fixed stack, and nothing else runs on this M until
        // it returns (see above): its P's lists are ours.
        let p = unsafe { self.cur_p() };
        let g = match unsafe { self.gfget(p) } {
            Some(g) => {
                P::bump(&p.recycled);
                g
            }
            None => self.slab.alloc(kind),
        };
        // SAFETY: g is a live G nobody else references (fresh or taken off
        // the free list under the lock); as above, the P may be borrowed.
        unsafe {
            let gr = &mut *g;
            if let Some(stk) = gr.stack() {
                if stk.size() != want || gr.stack_kind() != stack_kind {
                    stackfree(&self.pool, self.cache(), stk);
                    gr.clear_stack();
                }
            }
            if gr.stack_source.is_none() {
                match stackalloc(&self.pool, self.cache(), want, stack_kind) {
                    Ok(stk) => {
                        gr.set_stack(stk);
                    }
                    Err(e) => {
                        p.gfree().push(g);
                        return Err(SpawnError::Stack(e));
                    }
                }
            }
            gr.kind = kind;
            gr.clear_syscall();
            gr.chan_wake = false;
            gr.pins = 0;
            if let Some(x) = gr.extra.as_mut() {
                x.waiting = ptr::null_mut();
                x.param = ptr::null_mut();
                x.gc_request = None;
                x.waitreason = "";
            }
            gr.id = self.next_goid(p);
            let (entry, args) = match start {
                Start::Native(f) => {
                    gr.reset_flags(false);
                    gr.handles.store(0, Ordering::Relaxed);
                    // The boxed closure's (data, vtable) words are the
                    // entry's arguments: nothing of it stays in the G.
                    let raw: [usize; 2] = core::mem::transmute(Box::into_raw(f));
                    (
                        native_entry as *const () as usize,
                        [raw[0], raw[1], 0, 0, 0, 0],
                    )
                }
                Start::Managed {
                    entry,
                    args,
                    handle,
                    force_move,
                } => {
                    gr.reset_flags(force_move);
                    gr.handles.store(handle as u16, Ordering::Relaxed);
                    (entry, args)
                }
            };
            gr.sched = Context::new_goroutine(
                gr.stack_hi,
                gs_goentry as *const () as usize,
                entry,
                g as usize,
            );
            // The arguments go on the new stack, where gs_goentry reads them.
            // SAFETY: the stack is ours and unused; sched.sp is its top.
            gr.sched.sp = crate::arch::push_start_args(gr.sched.sp, &args);
            self.install_guard(gr);
            gr.set_status(Status::Runnable);
            // One more alive.  An exit of this P's that exit_fast counted
            // and alive still includes (P::exits) pays for it when there
            // is one: dropped from the pending ones, it leaves alive as it
            // is, which is then right again -- without the locked
            // read-modify-write a spawn costs otherwise.  Only the holder
            // (us: no spawn runs in a system call window, see
            // runtime::spawn_sched) writes exits while it holds the P.
            let pending = p.exits.load(Ordering::Relaxed);
            if pending != 0 {
                p.exits.store(pending - 1, Ordering::Relaxed);
            } else {
                // Release: a stats() reader that sees this count sees the
                // exits stores before it, which it subtracts (else, on
                // aarch64, a stale larger exits could under-count).
                self.alive.fetch_add(1, Ordering::Release);
            }
            P::bump(&p.spawned);
        }
        Ok(g)
    }

    /// Set `g.stackguard0` for its current stack: the normal guard, or the
    /// forced-move value when every entry check should reach newstack
    /// (`GSDEBUG=stackforcemove=1`, or the goroutine's own test switch).
    pub(crate) fn install_guard(&self, g: &mut G) {
        let v = if g.kind == GKind::Managed && (g.force_move() || self.config.debug.stackforcemove)
        {
            crate::g::STACK_FORCE_MOVE
        } else {
            g.stack_lo + crate::g::STACK_GUARD
        };
        g.stackguard0.store(v, Ordering::Relaxed);
    }

    /// Find a goroutine by id (linear: for tracebacks and inspection).
    pub(crate) fn find_g(&self, id: u64) -> Option<*mut G> {
        let mut found = None;
        // SAFETY: every G in the slab is live.
        self.slab.for_each(|g| unsafe {
            if found.is_none() && (*g).id == id && (*g).status() != Status::Dead {
                found = Some(g)
            }
        });
        found
    }

    /// A goroutine id for a spawn on P `p` (ids stay unique across Ps:
    /// each P takes blocks of ID_BATCH from the shared counter).
    fn next_goid(&self, p: &P) -> u64 {
        let mut id = p.id_next.load(Ordering::Relaxed);
        if id == p.id_end.load(Ordering::Relaxed) {
            id = self.next_id.fetch_add(ID_BATCH, Ordering::Relaxed);
            p.id_end.store(id + ID_BATCH, Ordering::Relaxed);
        }
        p.id_next.store(id + 1, Ordering::Relaxed);
        id
    }

    /// A dead G for a spawn on P `p`: from its own list, else a batch from
    /// the shared list.
    ///
    /// # Safety
    /// On the M holding `p`, on a stack that does not move, with nothing
    /// else running on this M until it returns (newproc's conditions).
    unsafe fn gfget(&self, p: &P) -> Option<*mut G> {
        // SAFETY: the caller's guarantee.
        let local = unsafe { p.gfree() };
        if local.is_empty() {
            let mut t = self.gs.lock().unwrap();
            // Gs whose last handle went after they exited (no stack).
            let released = self.slab.take_released();
            t.free.extend(released);
            for _ in 0..LOCAL_GFREE / 2 {
                let Some(g) = t.free.pop() else { break };
                // SAFETY: Gs on the free list are live and dead.
                if unsafe { (*g).stack_source.is_some() } {
                    t.free_with_stack -= 1;
                }
                local.push(g);
            }
        }
        local.pop()
    }

    /// Put a dead G on its P's free list (keeping its stack if it is a
    /// starting-size one); when the list is full, half moves to the shared
    /// list, which keeps at most MAX_FREE_STACKS stacks.  Runs on g0.
    fn gfput(&self, g: *mut G) {
        // SAFETY: g is dead and referenced by nobody else; on g0 of an M of
        // this Sched, so its P's cache and lists are ours.
        unsafe {
            if let Some(stk) = (*g).stack() {
                // Keep only stacks a new goroutine would get anyway (Go
                // frees the others at exit): a goroutine that grew to
                // 128 MiB must not hold on to it after it died.
                let start = match (*g).kind {
                    GKind::Managed => self.managed_start_size(),
                    _ => round_to_pages(self.config.native_stack_size),
                };
                if stk.size() != start {
                    stackfree(&self.pool, self.cache(), stk);
                    (*g).clear_stack();
                }
            }
            let local = self.cur_p().gfree();
            local.push(g);
            if local.len() > LOCAL_GFREE {
                let mut t = self.gs.lock().unwrap();
                for g in local.drain(..LOCAL_GFREE / 2) {
                    if let Some(stk) = (*g).stack() {
                        if t.free_with_stack >= MAX_FREE_STACKS {
                            stackfree(&self.pool, self.cache(), stk);
                            (*g).clear_stack();
                        } else {
                            t.free_with_stack += 1;
                        }
                    }
                    t.free.push(g);
                }
            }
        }
    }

    /// Every goroutine finished: free every stack, put every G (but those
    /// a handle holds) on the free list, empty the cache, and give the
    /// pool's memory back.  Runs on the thread's own stack
    /// after the scheduler returned.
    pub(crate) fn teardown(&self) {
        let mut t = self.gs.lock().unwrap();
        // SAFETY: no goroutine runs any more and every M but the caller's
        // has exited; every G in `all` is dead and owned by the table; the
        // Ps' caches are no longer used by anyone else.
        unsafe {
            t.free.clear();
            let mut free = Vec::new();
            self.slab.for_each(|g| {
                if let Some(stk) = (*g).stack() {
                    stackfree(&self.pool, None, stk);
                    (*g).clear_stack();
                }
                // Dead, stackless, ready for a next run; but not one a
                // handle holds (the handle releases it).
                if (*g).handles.load(Ordering::Acquire) == 0 {
                    free.push(g);
                }
            });
            t.free = free;
            t.free_with_stack = 0;
            for p in self.ps.iter() {
                p.gfree().clear();
                self.pool.flush_cache(p.cache());
            }
        }
        self.pool.release_free();
    }

    /// Whether some goroutine is in a system call now (it will come back
    /// with work: not a deadlock).
    fn any_in_syscall(&self) -> bool {
        let ms = self.ms.lock().unwrap();
        ms.iter().any(|&m| {
            // SAFETY: listed Ms live until the runtime ends.
            let g = unsafe { (*(m as *const M)).running.load(Ordering::Relaxed) };
            // SAFETY: Gs are never freed while the runtime runs.
            !g.is_null() && unsafe { (*g).status() } == Status::Syscall
        })
    }

    /// The monitor: take P `p` from an M that has been in a system call
    /// for a while, and start a temporary M to run its goroutines.
    pub(crate) fn retake(&self, p: &P) {
        if p.state
            .compare_exchange(P_SYSCALL, P_IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Ours until it is on the idle list: its exits go with us (its
            // last holder, in a system call, no longer touches them).
            self.flush_exits(p);
            p.owner.store(0, Ordering::Release);
            self.idle_ps.lock().unwrap().push(p as *const P as usize);
            self.start_temporary_m();
        }
    }

    /// Start an M that takes an idle P (or ends at once if none is left).
    fn start_temporary_m(&self) {
        let addr = self as *const Sched as usize;
        let t = std::thread::Builder::new()
            .name("gstack-m-temp".into())
            .spawn(move || {
                // SAFETY: Runtime::run joins every temporary M's thread
                // before the Sched can go away.
                let sched = unsafe { &*(addr as *const Sched) };
                crate::runtime::m_thread(sched, None)
            })
            .expect("gstack: cannot start an M thread");
        self.temp_threads.lock().unwrap().push(t);
    }

    /// An idle P for M `m`, if there is one: it now holds it.
    pub(crate) fn acquire_idle_p(&self, m: *mut M) -> bool {
        let mut ps = self.idle_ps.lock().unwrap();
        while let Some(p) = ps.pop() {
            // SAFETY: Ps live as long as the Sched.
            let pr = unsafe { &*(p as *const P) };
            if pr
                .state
                .compare_exchange(P_IDLE, P_RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                pr.owner.store(m as usize, Ordering::Release);
                // SAFETY: m is the calling thread's M.
                unsafe { (*m).p.store(p as *mut P, Ordering::Relaxed) };
                return true;
            }
        }
        false
    }

    /// M `m` gives up its P (a temporary M ending): wake an M waiting for
    /// one.
    ///
    /// # Safety
    /// `m` is the calling thread's M, on its g0, holding a P.
    unsafe fn release_p(&self, m: *mut M) {
        // SAFETY: the caller's guarantee.
        unsafe {
            let p = (*m).p.swap(ptr::null_mut(), Ordering::AcqRel);
            self.pool.flush_cache((*p).cache());
            (*p).owner.store(0, Ordering::Release);
            (*p).state.store(P_IDLE, Ordering::Release);
            self.idle_ps.lock().unwrap().push(p as usize);
        }
        self.wake_all();
    }

    /// Whether M `m` still holds its P after being in a system call: the P
    /// says so (back from SYSCALL to RUNNING by us), or it was taken.  A
    /// taken P is forgotten (m.p = null).
    ///
    /// # Safety
    /// `m` is the calling thread's M.
    pub(crate) unsafe fn keep_p_after_syscall(&self, m: *mut M) -> bool {
        // SAFETY: the caller's guarantee; Ps live as long as the Sched.
        unsafe {
            let p = (*m).p.load(Ordering::Relaxed);
            if p.is_null() {
                return false;
            }
            let kept = ((*p).state.load(Ordering::Acquire) == P_RUNNING
                && (*p).owner.load(Ordering::Acquire) == m as usize)
                || (*p)
                    .state
                    .compare_exchange(P_SYSCALL, P_RUNNING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if !kept {
                (*m).p.store(ptr::null_mut(), Ordering::Relaxed);
            }
            kept
        }
    }

    /// M `m` has no P (it was handed off while `m` was in a system call):
    /// wait for an idle P, or for the end of the runtime.  Returns whether
    /// it got one.
    pub(crate) fn wait_for_p(&self, m: *mut M) -> bool {
        self.nspare.fetch_add(1, Ordering::SeqCst);
        let mut l = self.idle.lock().unwrap();
        let got = loop {
            if self.acquire_idle_p(m) {
                break true;
            }
            if self.alive() == 0 {
                break false;
            }
            l = self.idle_cv.wait(l).unwrap();
        };
        drop(l);
        self.nspare.fetch_sub(1, Ordering::SeqCst);
        got
    }

    /// An M's thread ended: keep its M and g0 until the runtime ends (the
    /// monitor may still look at the M).
    pub(crate) fn retire_m(&self, m: *mut M, g0: *mut G) {
        self.retired.lock().unwrap().push((m as usize, g0 as usize));
    }

    /// Free the retired Ms (Runtime::run, after the monitor stopped).
    pub(crate) fn free_retired(&self) {
        for (m, g0) in self.retired.lock().unwrap().drain(..) {
            // SAFETY: boxed by m_thread, whose thread has ended; the
            // monitor is stopped; nothing else holds them.
            unsafe {
                drop(Box::from_raw(m as *mut M));
                drop(Box::from_raw(g0 as *mut G));
            }
        }
    }

    /// Whether the monitor's trigger asked for a cycle and none runs (a
    /// user's gc() may run one while gc_wanted is still set).
    #[inline]
    fn cycle_wanted(&self) -> bool {
        self.gc_wanted.load(Ordering::Relaxed) && !self.cycle_active()
    }

    /// Start the cycle the monitor's trigger asked for, if one is wanted
    /// and none runs: its workers run like any goroutine (one per P);
    /// nobody waits for it.  On g0 of an M of this Sched: schedule, and
    /// gs_park_yield (a yield's way through g0).  The switches that bypass
    /// both go through g0 when a cycle is wanted whenever they leave the
    /// choice to Rust's slower path -- at the latest on the global queue's
    /// turn, every GLOBAL_CHECK_EVERY schedules: park_direct_slow,
    /// yield_switch; exit_fast steps aside.
    ///
    /// # Safety
    /// On the system stack of an M of this Sched holding a P.
    unsafe fn start_wanted_cycle(&self) {
        if self.cycle_wanted() {
            self.gc_wanted.store(false, Ordering::Relaxed);
            // SAFETY: the caller's guarantee.
            unsafe { self.start_background_cycle() };
        }
    }

    /// Take `p`'s exits counted by exit_fast off `alive`.  Called by p's
    /// holder (or the monitor, holding it for a moment in retake).
    #[inline]
    fn flush_exits(&self, p: &P) {
        let n = p.take_exits();
        if n != 0 {
            self.alive.fetch_sub(n, Ordering::SeqCst);
        }
    }

    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }
}

/// `size` rounded up to whole pages, the usable size of a guarded stack (a mask: the page size is a power of
/// two, and a division here cost two `div`s per spawn and exit); a size
/// too large to round becomes the largest page multiple, which no mapping
/// can satisfy, so the spawn fails cleanly.
#[inline]
fn round_to_pages(size: usize) -> usize {
    let page = crate::stack::page_size();
    crate::stack::round_up(size, page).unwrap_or(!(page - 1))
}

/// Make a goroutine ready to resume: finish a channel wake-up (off its
/// own stack), and set its status: Running — or Syscall when it resumes
/// inside foreign code it entered with entersyscall.
///
/// # Safety
/// `g` is live and about to be resumed by the caller.
#[inline]
unsafe fn set_resumed(g: *mut G, single_p: bool) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let s = if (*g).in_syscall != 0 {
            Status::Syscall
        } else {
            Status::Running
        };
        if single_p {
            // One P: scans run on this M between goroutines, so none holds
            // g now (see yield_switch).
            (*g).set_status(s);
        } else {
            // A scan may hold it for a moment: wait for the claim to go.
            // Only then is it ours: finishing a channel wake-up touches its
            // sudogs, which a scan that moves its stack adjusts.
            (*g).cas_status(Status::Runnable, s);
        }
        if (*g).chan_wake {
            // On g0 of the M that resumes g: this thread's.
            crate::chan::finish_wake(crate::m::current_m(), g);
        }
    }
}

/// Run `g` on this M.  On g0; never returns.
///
/// # Safety
/// `m` is this thread's M; `g` is runnable and on no queue.
pub(crate) unsafe fn execute(m: *mut M, g: *mut G) -> ! {
    // SAFETY: the caller's guarantees; g's context is complete because it
    // was saved before g was queued (or made by newproc).
    unsafe {
        set_resumed(g, (*m).sched.as_ref_unchecked().ps.len() == 1);
        (*g).m = m;
        (*m).curg = g;
        (*m).note_running(g);
        if (*g).in_syscall != 0 {
            // It resumes inside its system call: its P may be handed off.
            (*(*m).p.load(Ordering::Relaxed))
                .state
                .store(P_SYSCALL, Ordering::Release);
        }
        gs_gogo(&(*g).sched)
    }
}

/// Pick the next goroutine and run it; when none is left, return to
/// `Runtime::run`.  On g0; never returns.
///
/// # Safety
/// `m` is this thread's M and we are on its g0 stack.
pub(crate) unsafe fn schedule(m: *mut M) -> ! {
    // SAFETY: m is live and we are on its g0.
    unsafe {
        let sched = &*(*m).sched;
        (*m).curg = ptr::null_mut();
        loop {
            // Back in the scheduler from a goroutine that parked inside a
            // system call: our P is running again, or it was handed off
            // and we wait for one.
            if !sched.keep_p_after_syscall(m) && !sched.wait_for_p(m) {
                gs_gogo(&(*(*m).g0).sched)
            }
            let p = &*(*m).p.load(Ordering::Relaxed);
            sched.flush_exits(p);
            sched.maybe_flush_cache(p);
            sched.start_wanted_cycle();
            if let Some(g) = sched.find_runnable(p) {
                execute(m, g)
            }
            if sched.alive() == 0 {
                // Every goroutine finished: this M leaves (Runtime::run's
                // resumes where it entered the scheduler).
                sched.wake_all();
                gs_gogo(&(*(*m).g0).sched)
            }
            if (*m).temporary && sched.nspare.load(Ordering::SeqCst) > 0 {
                // A temporary M out of work: give the P back to an M that
                // waits for one, and end.
                sched.release_p(m);
                gs_gogo(&(*(*m).g0).sched)
            }
            // Nothing to run.  With several Ps, look for a while before
            // sleeping: work that appears meanwhile (a spawn, a wake-up on
            // another P) is taken without a futex wake-up on the producer's
            // side, which costs it microseconds.
            if sched.ps.len() > 1 {
                if let Some(g) = sched.spin_for_work(p) {
                    execute(m, g)
                }
                if sched.alive() == 0 {
                    continue;
                }
            }
            // Sleep until work appears.  Work is published before wake_idle
            // takes the lock, and we look for it under the lock, so no
            // wake-up is lost.
            let mut l = sched.idle.lock().unwrap();
            let idle = sched.nmidle.fetch_add(1, Ordering::SeqCst) + 1;
            while !sched.any_work() && sched.alive() > 0 {
                if idle == sched.ps.len()
                    && sched.nmidle.load(Ordering::SeqCst) == sched.ps.len()
                    && !sched.any_in_syscall()
                {
                    // Every M idle, goroutines left, nothing runnable, and
                    // nothing outside the scheduler can wake them.
                    drop(l);
                    fatal("all goroutines are asleep - deadlock!");
                }
                l = sched.idle_cv.wait(l).unwrap();
                // Out of the wait: we look for work again before waiting
                // (the loop's condition), so work made from now on needs
                // another wake-up, and work made before is seen (the
                // fence orders this store before those looks).
                sched.wake_pending.store(false, Ordering::SeqCst);
                core::sync::atomic::fence(Ordering::SeqCst);
            }
            sched.nmidle.fetch_sub(1, Ordering::SeqCst);
            drop(l);
            // Work made while our wake-up was pending woke nobody else
            // (wake_after_publish): if more Ms sleep, pass it on, as Go's
            // woken spinning M does, so that the rest is not left to us.
            if sched.nmidle.load(Ordering::SeqCst) > 0 && sched.any_work() {
                sched.wake_idle();
            }
        }
    }
}

/// Yield from a native goroutine: requeue `g` behind the others and switch
/// straight to the next one.
///
/// # Safety
/// `m` is this thread's M and `g` its running goroutine, on g's stack.
#[inline]
pub(crate) unsafe fn yield_switch(m: *mut M, g: *mut G) {
    unsafe {
        if (*g).in_syscall != 0 {
            // Foreign code inside a managed goroutine's system call: its P
            // may be another M's by now.  Nothing to yield (the way back
            // into the scheduler is exitsyscall).
            return;
        }
        // A running goroutine's M holds a P (a native goroutine never is in
        // a system call window).  Its queue is shared exactly when the
        // runtime has several Ps.
        let p = &*(*m).p.load(Ordering::Relaxed);
        if p.shared {
            yield_shared(m, g, p);
            return;
        }
        let sched = &*(*m).sched;
        // The common case: the global queue's turn has not come and the
        // local queue has a goroutine: g takes its place at the back.
        let left = p.tick.load(Ordering::Relaxed);
        let rotate = left != 0 && p.runnext.load(Ordering::Relaxed).is_null();
        let next = match if rotate { p.rotate(g) } else { None } {
            Some(next) => {
                p.tick.store(left - 1, Ordering::Relaxed);
                next
            }
            None => {
                if sched.cycle_wanted() {
                    // Through g0, which starts the cycle (see
                    // start_wanted_cycle), then requeues g.
                    crate::trampoline::mcall(g, gs_park_yield);
                    return;
                }
                let Some(next) = sched.find_runnable(p) else {
                    return;
                };
                p.runq_push(g);
                next
            }
        };
        (*g).set_status(Status::Runnable);
        switch_direct(m, g, next);
    }
}

/// yield_switch with several Ps.  The common case -- the global queue's
/// turn has not come, nothing is queued here and runnext holds a goroutine
/// that needs nothing done before it resumes -- switches to it directly,
/// and g takes its place in runnext (the same place as the back of an
/// empty queue) only once its context is saved: gs_switch_publish.  Else
/// through g0 (gs_park_yield), which queues g after saving it.
/// gs_yield_native makes the same switch itself when the goroutine in
/// runnext is native (asm/<arch>.S), so here that case is the rare one
/// (a managed goroutine there, or a thief's race): keep the two in step.
///
/// # Safety
/// `m` is this thread's M, `g` its running native goroutine (not in a
/// system call window), on g's stack; `p` is m's P, shared.
#[inline]
unsafe fn yield_shared(m: *mut M, g: *mut G, p: &P) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let left = p.tick.load(Ordering::Relaxed);
        if left != 0 && p.runq_len() == 0 {
            if let Some(next) = p.take_next_reserving() {
                if !(*next).chan_wake && (*next).in_syscall == 0 {
                    p.tick.store(left - 1, Ordering::Relaxed);
                    // As execute: next is ours (off runnext), wait for a
                    // scan's claim on it to go.
                    (*next).cas_status(Status::Runnable, Status::Running);
                    (*next).m = m;
                    (*m).curg = next;
                    (*m).note_running(next);
                    // g stays Running, on no queue, until it is saved.
                    // runnext holds RUNNEXT_BUSY (ours: only this P's
                    // holder fills the slot, thieves leave the sentinel),
                    // which this switch overwrites with g.
                    crate::trampoline::gs_switch_publish(g, &(*next).sched, &p.runnext);
                    return;
                }
                // Work to do before it resumes: back in its place (over
                // our RUNNEXT_BUSY), and the general path.
                p.runnext.store(next, Ordering::Release);
            }
        }
        // Another M could take g from the queue before its context is
        // saved: go through g0, which queues it after saving.  Only this
        // P's work and the global queue count: gs_park_yield steals
        // nothing (g is runnable here).
        if p.has_work() || (*(*m).sched).global_len.load(Ordering::Relaxed) > 0 {
            crate::trampoline::mcall(g, gs_park_yield);
        }
    }
}

/// One P only: run `next` on this M in place of `g` (running, on its own
/// stack, already queued or parked), without going through g0: the switch
/// saves g's context.  No other M can take g before that: there is none
/// with a P.  g may even be `next` (woken from another thread meanwhile
/// and popped right back): the switch then saves and resumes it at once.
///
/// # Safety
/// `m` is this thread's M of a one-P runtime, `g` its current goroutine
/// on g's stack, `next` runnable and off every queue.
#[inline(always)]
unsafe fn switch_direct(m: *mut M, g: *mut G, next: *mut G) {
    // SAFETY: the caller's guarantee.
    unsafe {
        make_current(m, next);
        crate::trampoline::gs_swapcontext(&mut (*g).sched, &(*next).sched);
    }
}

/// One P only: everything switch_direct does before its switch -- finish
/// a channel wake-up of `next`, its status, next.m, m.curg and the
/// monitor's m.running and m.schedtick.
///
/// # Safety
/// As for switch_direct; the caller switches to `next` right after.
#[inline(always)]
unsafe fn make_current(m: *mut M, next: *mut G) {
    // SAFETY: the caller's guarantee.
    unsafe {
        // One P means one M scheduling: no scan can hold `next` now (scans
        // run on this M between goroutines), so plain stores do what
        // set_resumed's compare-and-swap does.
        if (*next).chan_wake {
            finish_wake_off_line(m, next);
        }
        (*next).set_status(if (*next).in_syscall != 0 {
            Status::Syscall
        } else {
            Status::Running
        });
        (*next).m = m;
        (*m).curg = next;
        (*m).note_running(next);
        if (*next).in_syscall != 0 {
            // As execute: it resumes inside its system call, where its P
            // may be handed off.  (A known window, on the direct paths
            // only: from here until the switch has saved the goroutine we
            // leave, the monitor may hand the P to another M, which could
            // resume that goroutine if it were woken meanwhile -- after a
            // stall of a monitor tick at this spot.  park_pick takes no
            // such `next`; switch_direct's callers still may.  execute,
            // on g0, has no such window.)
            (*(*m).p.load(Ordering::Relaxed))
                .state
                .store(P_SYSCALL, Ordering::Release);
        }
    }
}

/// finish_wake for switch_direct, out of line: the switch is inlined into
/// its callers, and a goroutine with a wake-up to finish is the rarer case
/// there (a goroutine that parked through g0).
///
/// # Safety
/// As for finish_wake.
#[inline(never)]
unsafe fn finish_wake_off_line(m: *mut M, g: *mut G) {
    // SAFETY: the caller's guarantee.
    unsafe { crate::chan::finish_wake(m, g) }
}

/// Blocking the calling goroutine `g` of a one-P runtime, already marked
/// Waiting with its wake-up arranged (a queued sudog), without g0, part
/// one: choose the goroutine to switch to, in the common case, as
/// find_runnable's first step -- not the global queue's turn, and a
/// goroutine in runnext (the partner this M just woke) or the local queue
/// (unshared: one P, this thread's) -- taken and made current
/// (make_current).  Null otherwise.  Part two is park_switch.
///
/// # Safety
/// As for [`switch_direct`]; this M's goroutine is native (its stack never
/// moves, so a sudog may point into it), whatever locks arranged the
/// wake-up are released, and the caller calls park_switch at once.
#[inline(always)]
pub(crate) unsafe fn park_pick(m: *mut M) -> *mut G {
    // SAFETY: the caller's guarantee.
    unsafe {
        let p = &*(*m).p.load(Ordering::Relaxed);
        let left = p.tick.load(Ordering::Relaxed);
        if left != 0 {
            // Not one that resumes inside a system call: make_current
            // would mark the P P_SYSCALL (the monitor may then hand it to
            // another M) while we are still on g's stack, g unsaved; the
            // slow path's switch_direct has that window too (see there),
            // execute on g0 does not.
            if let Some(next) = p.take_first_unshared_if(|c| c.in_syscall == 0) {
                p.tick.store(left - 1, Ordering::Relaxed);
                make_current(m, next);
                return next;
            }
        }
        ptr::null_mut()
    }
}

/// Blocking a goroutine without g0, part two: switch from the parked `g`
/// to `next` (park_pick's choice, already current), or, when park_pick
/// found nothing, through park_direct_slow (the rest of find_runnable, or
/// the scheduler on g0).  Returns once g was woken and resumed.
///
/// Inlined into Chan's send and recv: on x86-64 the jump into `next` is
/// made from here -- the operation's call site in its caller's code -- and
/// g resumes here too (gs_switch_native saves it with pc = label 2 below),
/// as yield_now does, so that neither the jump nor any return after the
/// resume is mispredicted (asm/x86_64.S, gs_switch_native).  On aarch64 a
/// resume is a `ret` (see yield_now): gs_swapcontext.
///
/// # Safety
/// As for park_pick; `g` is this thread's goroutine (parked, on its own
/// stack), `next` what park_pick(g.m) returned.
#[inline(always)]
pub(crate) unsafe fn park_switch(g: *mut G, next: *mut G) {
    // SAFETY: the caller's guarantee.
    unsafe {
        if next.is_null() {
            park_direct_slow((*g).m, g);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: gs_switch_native follows the convention in
        // asm/x86_64.S: r11 = where g resumes (label 2), rdi = g's context
        // to save, rsi = next's (current already: make_current); it
        // returns rax/rdx = next's pc/sp with its callee-saved registers
        // loaded, and we go there touching nothing.  Label 2 is reached
        // with g's own rsp and callee-saved registers once something
        // resumes g's context, so to the compiler the block is a call that
        // clobbers what the C ABI lets a call clobber (as in yield_now).
        core::arch::asm!(
            "lea r11, [rip + 2f]",
            "call {switch}",
            "mov rsp, rdx",
            "jmp rax",
            "2:",
            switch = sym crate::trampoline::gs_switch_native,
            in("rdi") &raw mut (*g).sched,
            in("rsi") &raw const (*next).sched,
            clobber_abi("C"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        crate::trampoline::gs_swapcontext(&mut (*g).sched, &(*next).sched);
    }
}

/// park_switch when park_pick found nothing: runnext and the local queue
/// are empty or the global queue's turn has come.
///
/// # Safety
/// As for park_switch.
#[inline(never)]
unsafe fn park_direct_slow(m: *mut M, g: *mut G) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let sched = &*(*m).sched;
        if sched.cycle_wanted() {
            // Through the scheduler, which starts the cycle.
            crate::trampoline::mcall(g, gs_park_schedule);
            return;
        }
        let p = &*(*m).p.load(Ordering::Relaxed);
        match sched.find_runnable(p) {
            Some(next) => switch_direct(m, g, next),
            None => crate::trampoline::mcall(g, gs_park_schedule),
        }
    }
}

/// A native goroutine's exit without the trip through g0 (gs_goexit0,
/// then schedule, execute), when all that would do comes down to: the dead
/// G goes on this P's free list with its stack, and the goroutine this P
/// has next runs.  Never returns then; returns, having changed nothing,
/// when any of that does not hold, and the caller exits the usual way.
///
/// Runs on g's own stack, which is safe to leave behind on the free list
/// while we are still on it: a native stack never moves; the free list is
/// this P's, taken from only by its holder (this M), which does so on g0
/// or on another goroutine's stack -- that is, after the jump below; and
/// a list that would overflow (gfput then moves Gs to the shared list,
/// where other Ms take them) sends us the usual way.
///
/// # Safety
/// `g` is this thread's running native goroutine, its entry function has
/// returned (nothing of its frames is used again), and we are on its stack.
pub(crate) unsafe fn exit_fast(g: *mut G) {
    // SAFETY: the caller's guarantee; m's P and Sched are live.
    unsafe {
        let m = (*g).m;
        let sched = &*(*m).sched;
        let p = &*(*m).p.load(Ordering::Relaxed);
        // What gs_goexit0 would report or do otherwise, and what schedule
        // would do before it looks for work (a cycle to start, the stack
        // cache to flush).
        if (*g).in_syscall != 0
            || (*g).pins != 0
            || (*g).handles.load(Ordering::Acquire) != 0
            || sched.gc_wanted.load(Ordering::Relaxed)
            || p.flushed.load(Ordering::Relaxed) != sched.flush_epoch.load(Ordering::Acquire)
        {
            return;
        }
        // gfput keeps the stack and the G stays on this P's list.
        match (*g).stack() {
            Some(stk) if stk.size() == round_to_pages(sched.config.native_stack_size) => {}
            _ => return,
        }
        let local = p.gfree();
        if local.len() >= LOCAL_GFREE {
            return;
        }
        // find_runnable's first step, without taking anything that needs
        // more done before it resumes (a channel wake-up to finish on g0,
        // a system call to resume in).
        let left = p.tick.load(Ordering::Relaxed);
        if left == 0 {
            return;
        }
        let next = if p.shared {
            // Off runnext, leaving RUNNEXT_BUSY (only this P's holder
            // fills the slot; thieves leave the sentinel) until we know it
            // needs nothing done first: its fields are ours to read only
            // once we hold it.
            let Some(next) = p.take_next_reserving() else {
                return;
            };
            if (*next).chan_wake || (*next).in_syscall != 0 {
                p.runnext.store(next, Ordering::Release);
                return;
            }
            p.runnext.store(ptr::null_mut(), Ordering::Relaxed);
            // As execute: wait for a scan's claim on it to go.
            (*next).cas_status(Status::Runnable, Status::Running);
            next
        } else {
            // runnext (a goroutine woken by a channel), else the queue's
            // head, if it needs nothing more before it resumes.
            let Some(next) = p.take_first_unshared_if(|c| !c.chan_wake && c.in_syscall == 0) else {
                return;
            };
            // One P: no scan holds it now (they run on this M).
            (*next).set_status(Status::Running);
            next
        };
        p.tick.store(left - 1, Ordering::Relaxed);
        // gs_goexit0's bookkeeping, the count of the living left to
        // flush_exits (next lives: it cannot be the last exit).
        (*g).set_status(Status::Dead);
        (*g).set_waitreason("");
        // Only the holder writes it: a plain load and store.
        p.exits
            .store(p.exits.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        local.push(g);
        // execute's.
        (*next).m = m;
        (*m).curg = next;
        (*m).note_running(next);
        crate::trampoline::gs_gogo(&(*next).sched)
    }
}

/// mcall target of park_direct_slow with nothing else to run: g's context is
/// saved and it waits; schedule on g0.
extern "C" fn gs_park_schedule(g: *mut G) -> ! {
    // SAFETY: mcall passes this M's goroutine, stopped at g.sched and
    // already waiting (whoever wakes it queues it; only this M, through
    // schedule, can run it).
    unsafe {
        let m = (*g).m;
        (*m).curg = ptr::null_mut();
        schedule(m)
    }
}

/// mcall target of managed code's `gs_yield` (and of a safe point that
/// yields), and of a native goroutine's yield with several Ps: requeue `g`
/// behind the others and run the next one.
///
/// With several Ps, when nothing else waits on this P, g goes to its
/// `runnext` (behind nobody: the same place), where spinning Ms leave it
/// to this M for a while.  Else it goes to the back of the queue.  Either
/// way an idle M is woken if one sleeps (as Go's Gosched does, wakep):
/// taking `next` emptied this P for a moment, in which an M may have gone
/// to sleep, and g must not wait on this M alone if `next` runs long.
#[no_mangle]
pub extern "C" fn gs_park_yield(g: *mut G) -> ! {
    // SAFETY: mcall passes the goroutine that was running on this M; its
    // context is saved, so it may be queued.
    unsafe {
        let m = (*g).m;
        let sched = &*(*m).sched;
        (*g).set_status(Status::Runnable);
        sched.start_wanted_cycle();
        let p = &*(*m).p.load(Ordering::Relaxed);
        let Some(next) = sched.next_for_yield(p) else {
            // Nothing else to run here: back through the scheduler.
            p.runq_push(g);
            sched.wake_idle();
            schedule(m)
        };
        if p.shared && p.runq_len() == 0 && p.runnext.load(Ordering::Relaxed).is_null() {
            // Only this P's holder (us) fills runnext; thieves only empty
            // it: it stays empty until this store.  Release: g's saved
            // context before it, for whoever takes it.
            p.runnext.store(g, Ordering::Release);
        } else {
            p.runq_push(g);
        }
        sched.wake_idle();
        execute(m, next)
    }
}

/// Where a finished goroutine goes (called by gs_goentry's exit path
/// through mcall).  On g0; never returns.
#[no_mangle]
pub extern "C" fn gs_goexit0(g: *mut G) -> ! {
    // SAFETY: g is the goroutine that just returned from its entry
    // function on this M; nothing runs on its stack any more.
    unsafe {
        let m = (*g).m;
        let sched = &*(*m).sched;
        if (*g).in_syscall != 0 {
            fatal_g(
                g,
                "exited inside a system call (entersyscall without exitsyscall)",
            );
        }
        if (*g).pins != 0 {
            fatal_g(g, &format!("exited with {} pins held", (*g).pins));
        }
        (*g).set_status(Status::Dead);
        (*g).set_waitreason("");
        (*m).curg = ptr::null_mut();
        // This exit and the exit_fast ones not yet counted, at once.
        let p = &*(*m).p.load(Ordering::Relaxed);
        let n = 1 + p.take_exits();
        let left = sched.alive.fetch_sub(n, Ordering::SeqCst) - n;
        // Its result stays in g.sched (Context::retval) for the handles;
        // while one lives the G is not reused (the last one releases it).
        // Order matters: once HANDLE_EXITED is set, the last handle may
        // drop on any thread and release the G, and another M may reuse it
        // at once -- so nothing of g is touched after the fetch_or unless
        // it found no handle.  A handle-held G therefore gives its stack
        // back first.  (Handles are only ever made from a live handle, so
        // a count of 0 here stays 0.)
        if (*g).handles.load(Ordering::Acquire) == 0 {
            // No handle, and none can appear: an ordinary dead G (no
            // read-modify-write: a locked instruction on every exit).
            sched.gfput(g);
        } else {
            if let Some(stk) = (*g).stack() {
                stackfree(&sched.pool, sched.cache(), stk);
                (*g).clear_stack();
            }
            let h = (*g)
                .handles
                .fetch_or(crate::g::HANDLE_EXITED, Ordering::AcqRel);
            if h == 0 {
                // The last handle went meanwhile: an ordinary dead G after
                // all.  Clear the bit again so that teardown, which keeps
                // only Gs no handle holds, keeps it.
                (*g).handles.store(0, Ordering::Relaxed);
                sched.gfput(g);
            }
        }
        if left == 0 {
            sched.wake_all();
        }
        schedule(m)
    }
}

/// Payload of the unwind that [`crate::goexit`] starts.
pub(crate) struct Goexit;

/// Entry function of native goroutines (called by gs_goentry with the G).
/// Runs the closure; a panic is caught here and is fatal, naming the
/// goroutine: it must never unwind into the asm frame above.
extern "C" fn native_entry(g: *mut G, data: usize, vtable: usize) {
    // SAFETY: gs_goentry passes the start arguments newproc made from the
    // boxed closure (Box::into_raw of a `dyn FnOnce`), taken back once.
    let f: NativeFn = unsafe {
        Box::from_raw(
            core::mem::transmute::<[usize; 2], *mut (dyn FnOnce() + Send)>([data, vtable]),
        )
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(()) => {}
        Err(p) if p.is::<Goexit>() => {}
        Err(p) => {
            let msg = panic_message(&*p);
            // The payload is dropped on the fatal path too: exit2 ends the
            // process without unwinding.
            // SAFETY: g is this goroutine's live G.
            let id = unsafe { (*g).id };
            fatal(&format!("goroutine {id} panicked: {msg}"))
        }
    }
    // Everything of the closure is gone (the panic payload too): straight
    // to the next goroutine if we may, else back to gs_goentry, which
    // exits through g0.
    // SAFETY: g is this thread's running native goroutine, on its stack,
    // its entry function done.
    unsafe { exit_fast(g) }
}
