//! Channels and select, whose waiters point into their own stacks.
//!
//! A goroutine that must wait on a channel enqueues a *sudog* whose `elem`
//! points at the value to send or the slot to receive into — usually a
//! word of its own stack (managed code passes stack slots).  Whoever
//! completes the operation copies straight into or out of that word.  So
//! when a waiting goroutine's stack moves, its sudogs move with it
//! (`adjust_sudogs`), under the locks of every channel it waits on, so that
//! no sender writes into the old stack meanwhile (seed 001).
//!
//! A blocking operation runs on the system stack: the caller's context
//! is saved (`gs_mcall` from Rust, or the registered stubs `gs_chansend`,
//! `gs_chanrecv`, `gs_select` from managed code) with its arguments in
//! `g.m.park_args`; the operation completes at once, or parks the goroutine.
//! A goroutine that was woken finishes on the system stack just before it
//! resumes (`finish_wake`): a select dequeues its other cases there.
//! Results go back in `m.park_result` / `m.park_ok` of the M that resumes it.
//!
//! The exception, the common case of a one-P runtime: a native goroutine's
//! send or receive (not a select) runs entirely on its own stack.  Its sudog
//! lives in its frame (a native stack never moves, and no other M can run
//! it before its switch saved its context); it switches straight to the
//! next goroutine (`park_prepare`, then `sched::park_switch` from the
//! caller's code: Chan's send and recv inline it), and when it runs again
//! it checks that its sudog was woken and reads the result there
//! (`finish_direct`).
//!
//! Lock order: channels are locked in address order (a select, and a shrink
//! that locks every channel a goroutine waits on, each channel once even
//! when a select names it twice).

use crate::fatal::fatal;
use crate::g::{Status, G};
use crate::m;
use crate::m::M;
use crate::sched::{self, Sched};
use crate::trampoline::{gs_gogo, mcall};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Results in `g.park_result`.
const SEND_OK: usize = 0;
const SEND_CLOSED: usize = 1;
const RECV_OK: usize = 1;
const RECV_CLOSED: usize = 0;
/// select: the default case was taken / a send case found its channel
/// closed.
pub const SELECT_DEFAULT: usize = usize::MAX;
pub const SELECT_SEND_CLOSED: usize = usize::MAX - 1;

/// Why a channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChanError {
    /// Send on a closed channel, or close of a closed channel.
    Closed,
    /// Not called from a goroutine of a running runtime (or called on the
    /// system stack: from a root visitor, or foreign code in a libcall; or
    /// by foreign code inside a managed goroutine's system call window).
    NotInGoroutine,
    /// A select with no cases and no default would block forever.
    EmptySelect,
}

impl std::fmt::Display for ChanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChanError::Closed => "channel is closed",
            ChanError::NotInGoroutine => "not on a goroutine of a running gstack runtime",
            ChanError::EmptySelect => "select with no cases would block forever",
        })
    }
}

impl std::error::Error for ChanError {}

/// A waiter: one goroutine on one channel's queue.
pub struct Sudog {
    pub(crate) g: *mut G,
    /// The value to send / the slot to receive into (often in g's stack).
    pub(crate) elem: *mut u8,
    pub(crate) chan: *const RawChan,
    next: *mut Sudog,
    prev: *mut Sudog,
    /// Next sudog of the same goroutine (a select has one per case).
    pub(crate) waitlink: *mut Sudog,
    is_select: bool,
    /// Waiting to send (else to receive).
    is_send: bool,
    /// Completed by a partner (false: woken by close).
    success: bool,
    /// Its goroutine parked from its own stack (a native goroutine on one
    /// P: park_prepare), with this sudog in its frame, and finishes the
    /// wake-up itself when it resumes (finish_direct); else the resumer
    /// runs finish_wake first.
    direct: bool,
    /// A direct sudog's waker sets it (in place of the goroutine's
    /// `param`): the goroutine checks that it was woken through it.
    woken: bool,
    case: usize,
}

/// How the first half of a send or receive ended (RawChan::send_begin,
/// recv_begin): done, or parked on a one-P runtime with the switch left to
/// the caller (sched::park_switch(g, next)).  Two words, which come back
/// in two registers (an enum of the results would come back through
/// memory): `g` null: done, with the outcome's code (Outcome) as the
/// address of `word`; else parked: `g`, and `word` = next.
#[derive(Clone, Copy)]
struct Begun {
    g: *mut G,
    word: *mut G,
}

impl Begun {
    #[inline(always)]
    fn done<R: Outcome>(r: R) -> Begun {
        Begun {
            g: ptr::null_mut(),
            word: ptr::without_provenance_mut(r.code()),
        }
    }

    #[inline(always)]
    fn parked(g: *mut G, next: *mut G) -> Begun {
        Begun { g, word: next }
    }
}

/// A result of send or recv as a small number, and back (see Begun).
trait Outcome: Sized {
    fn code(self) -> usize;
    fn from_code(c: usize) -> Self;
}

/// The ChanError whose discriminant is `c` (the Outcome codes put the
/// errors after the Ok values).
fn error_from_code(c: usize) -> ChanError {
    match c {
        0 => ChanError::Closed,
        1 => ChanError::NotInGoroutine,
        _ => ChanError::EmptySelect,
    }
}

impl Outcome for Result<(), ChanError> {
    #[inline(always)]
    fn code(self) -> usize {
        match self {
            Ok(()) => 0,
            Err(e) => 1 + e as usize,
        }
    }
    #[inline(always)]
    fn from_code(c: usize) -> Self {
        match c {
            0 => Ok(()),
            c => Err(error_from_code(c - 1)),
        }
    }
}

impl Outcome for Result<bool, ChanError> {
    #[inline(always)]
    fn code(self) -> usize {
        match self {
            Ok(ok) => ok as usize,
            Err(e) => 2 + e as usize,
        }
    }
    #[inline(always)]
    fn from_code(c: usize) -> Self {
        match c {
            0 | 1 => Ok(c == 1),
            c => Err(error_from_code(c - 2)),
        }
    }
}

impl Sudog {
    /// The sudog of a native goroutine `g` on a one-P runtime about to
    /// wait on `chan` alone, to live in the frame of its send or receive
    /// (a native stack never moves, and the frame outlives the wait: the
    /// goroutine leaves it only once it was woken).  It is not g's
    /// `waiting` list: that is for sudogs a scan may have to adjust and
    /// for finish_wake, neither of which concerns it.
    #[inline(always)]
    fn direct(g: *mut G, elem: *mut u8, chan: *const RawChan, is_send: bool) -> Sudog {
        Sudog {
            g,
            elem,
            chan,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            waitlink: ptr::null_mut(),
            is_select: false,
            is_send,
            success: false,
            direct: true,
            woken: false,
            case: 0,
        }
    }

    /// A sudog for `g` (stopped, ours) on one channel, outside a select,
    /// made g's whole wait (waiting = it, no winner yet); woken through
    /// finish_wake.
    ///
    /// # Safety
    /// `g` is the goroutine about to wait on `chan`: stopped, and ours.
    #[inline]
    unsafe fn wait_one(
        g: *mut G,
        elem: *mut u8,
        chan: *const RawChan,
        is_send: bool,
    ) -> *mut Sudog {
        // SAFETY: the caller's guarantee.
        unsafe {
            let x = (*g).x();
            let s = Self::alloc(x, g, elem, chan, is_send, false, 0);
            x.waiting = s;
            x.param = ptr::null_mut();
            s
        }
    }

    /// A sudog for `g` (whose cold part is `x`), in g's spare when it has
    /// one (kept by finish_wake: a blocking send or receive then allocates
    /// nothing), else boxed.
    #[inline]
    fn alloc(
        x: &mut crate::g::GExtra,
        g: *mut G,
        elem: *mut u8,
        chan: *const RawChan,
        is_send: bool,
        is_select: bool,
        case: usize,
    ) -> *mut Sudog {
        let value = Sudog {
            g,
            elem,
            chan,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            waitlink: ptr::null_mut(),
            is_select,
            is_send,
            success: false,
            direct: false,
            woken: false,
            case,
        };
        let spare = x.spare_sudog;
        if !spare.is_null() {
            x.spare_sudog = ptr::null_mut();
            // SAFETY: the spare is a boxed sudog on no queue, owned by g.
            unsafe { spare.write(value) };
            return spare;
        }
        Box::into_raw(Box::new(value))
    }
}

/// A FIFO of sudogs.
struct WaitQ {
    first: *mut Sudog,
    last: *mut Sudog,
}

impl WaitQ {
    const fn new() -> WaitQ {
        WaitQ {
            first: ptr::null_mut(),
            last: ptr::null_mut(),
        }
    }

    /// # Safety
    /// `s` is a live sudog on no queue; the channel is locked.
    unsafe fn enqueue(&mut self, s: *mut Sudog) {
        // SAFETY: the caller's guarantee.
        unsafe {
            (*s).next = ptr::null_mut();
            (*s).prev = self.last;
            if self.last.is_null() {
                self.first = s;
            } else {
                (*self.last).next = s;
            }
            self.last = s;
        }
    }

    /// Remove `s` (which must be on this queue).
    ///
    /// # Safety
    /// The channel is locked; `s` is on this queue.
    unsafe fn remove(&mut self, s: *mut Sudog) {
        // SAFETY: the caller's guarantee.
        unsafe {
            let (p, n) = ((*s).prev, (*s).next);
            if p.is_null() {
                self.first = n;
            } else {
                (*p).next = n;
            }
            if n.is_null() {
                self.last = p;
            } else {
                (*n).prev = p;
            }
            (*s).next = ptr::null_mut();
            (*s).prev = ptr::null_mut();
        }
    }

    /// Take the first waiter that can still be woken: a select's sudog
    /// whose goroutine another case already won is skipped (and left for
    /// that goroutine to dequeue).
    ///
    /// # Safety
    /// The channel is locked.
    #[inline]
    unsafe fn dequeue(&mut self) -> Option<*mut Sudog> {
        // SAFETY: the caller holds the lock; queued sudogs are live.
        unsafe {
            let s = self.first;
            if s.is_null() {
                return None;
            }
            // The common case, inline: the first waiter is a plain send or
            // receive, always wakeable.
            if !(*s).is_select {
                let n = (*s).next;
                self.first = n;
                if n.is_null() {
                    self.last = ptr::null_mut();
                } else {
                    (*n).prev = ptr::null_mut();
                }
                (*s).next = ptr::null_mut();
                return Some(s);
            }
            self.dequeue_select()
        }
    }

    /// dequeue when the first waiter is a select's.
    ///
    /// # Safety
    /// As for dequeue.
    #[inline(never)]
    unsafe fn dequeue_select(&mut self) -> Option<*mut Sudog> {
        // SAFETY: the caller holds the lock; queued sudogs are live.
        unsafe {
            let mut s = self.first;
            while !s.is_null() {
                let next = (*s).next;
                if (*s).is_select
                    && (*(*(*s).g).extra)
                        .select_done
                        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                {
                    s = next;
                    continue;
                }
                self.remove(s);
                return Some(s);
            }
            None
        }
    }
}

struct Inner {
    buf: Vec<u8>,
    recvx: usize,
    sendx: usize,
    qcount: usize,
    closed: bool,
    recvq: WaitQ,
    sendq: WaitQ,
}

/// An untyped channel of fixed-size elements (the C ABI and managed code
/// use it directly; [`Chan`] is the typed Rust face).
pub struct RawChan {
    locked: AtomicBool,
    elem_size: usize,
    cap: usize,
    inner: UnsafeCell<Inner>,
}

// SAFETY: `inner` is only touched with `locked` held (lock/unlock below).
unsafe impl Send for RawChan {}
unsafe impl Sync for RawChan {}

impl RawChan {
    /// A channel of `cap` buffered elements (0 = unbuffered) of `elem_size`
    /// bytes each.
    pub fn new(elem_size: usize, cap: usize) -> Arc<RawChan> {
        Arc::new(RawChan {
            locked: AtomicBool::new(false),
            elem_size,
            cap,
            inner: UnsafeCell::new(Inner {
                buf: vec![0u8; elem_size * cap],
                recvx: 0,
                sendx: 0,
                qcount: 0,
                closed: false,
                recvq: WaitQ::new(),
                sendq: WaitQ::new(),
            }),
        })
    }

    pub fn elem_size(&self) -> usize {
        self.elem_size
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Buffered elements now.
    pub fn len(&self) -> usize {
        self.lock();
        // SAFETY: locked.
        let n = unsafe { (*self.inner.get()).qcount };
        self.unlock();
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spin for the lock: it is held only for a few copies and queue
    /// updates, never across a switch.
    pub(crate) fn lock(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Release the lock.
    #[inline]
    pub(crate) fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// # Safety
    /// Locked by the caller.
    #[allow(clippy::mut_from_ref)]
    unsafe fn inner(&self) -> &mut Inner {
        // SAFETY: the caller holds the lock.
        unsafe { &mut *self.inner.get() }
    }

    /// Copy one element.
    ///
    /// # Safety
    /// Both point at `elem_size` valid bytes (either may be null when the
    /// size is 0).
    #[inline(always)]
    unsafe fn copy(&self, from: *const u8, to: *mut u8) {
        // The most common element (a word, a pointer): one unaligned load
        // and store, inline.  The rest out of line: inline, the compiler
        // made one jump table of all the sizes, an indirect jump in every
        // channel operation.
        if self.elem_size == 8 && !to.is_null() {
            // SAFETY: the caller's guarantee.
            unsafe {
                ptr::write_unaligned(to as *mut u64, ptr::read_unaligned(from as *const u64))
            };
            return;
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.copy_other(from, to) }
    }

    /// copy for elements of other sizes.
    ///
    /// # Safety
    /// As for copy.
    #[inline(never)]
    unsafe fn copy_other(&self, from: *const u8, to: *mut u8) {
        if to.is_null() {
            return;
        }
        // SAFETY: the caller's guarantee; the common word sizes are one
        // unaligned load and store instead of a call to memmove.
        unsafe {
            match self.elem_size {
                0 => {}
                4 => ptr::write_unaligned(to as *mut u32, ptr::read_unaligned(from as *const u32)),
                8 => ptr::write_unaligned(to as *mut u64, ptr::read_unaligned(from as *const u64)),
                16 => {
                    ptr::write_unaligned(to as *mut u128, ptr::read_unaligned(from as *const u128))
                }
                n => ptr::copy(from, to, n),
            }
        }
    }

    /// The ring index after `i` (a compare, not a division: this is on
    /// every buffered operation).
    #[inline(always)]
    fn ring_next(&self, i: usize) -> usize {
        let n = i + 1;
        if n == self.cap {
            0
        } else {
            n
        }
    }

    unsafe fn zero(&self, to: *mut u8) {
        if self.elem_size != 0 && !to.is_null() {
            // SAFETY: the caller guarantees `to` has elem_size bytes.
            unsafe { ptr::write_bytes(to, 0, self.elem_size) }
        }
    }

    /// Send the `elem_size` bytes at `elem`; waits until a receiver or
    /// buffer space takes them.  Must be called from a goroutine.
    ///
    /// # Safety
    /// `elem` points at `elem_size` readable bytes, valid until it returns.
    pub unsafe fn send(&self, elem: *const u8) -> Result<(), ChanError> {
        let mut s = MaybeUninit::<Sudog>::uninit();
        // SAFETY: the caller's guarantee for elem; s lives in this frame
        // until we return, past the wait.
        unsafe { self.send_in(elem, s.as_mut_ptr()) }
    }

    /// send, with the sudog of a wait in `s` (the caller's frame): inlined
    /// into Chan::send, so that a wait switches from the call site's own
    /// code (sched::park_switch).
    ///
    /// # Safety
    /// As for send; `s` is writable and lives until this returns.
    #[inline(always)]
    unsafe fn send_in(&self, elem: *const u8, s: *mut Sudog) -> Result<(), ChanError> {
        // SAFETY: the caller's guarantee.
        unsafe {
            let b = self.send_begin(elem, s);
            if b.g.is_null() {
                return Outcome::from_code(b.word.addr());
            }
            sched::park_switch(b.g, b.word);
            if finish_direct(b.g, s) {
                Ok(())
            } else {
                Err(ChanError::Closed)
            }
        }
    }

    /// Everything of send up to a wait's switch.  One P, a native
    /// goroutine: done here, on our own stack, at once when a receiver
    /// waits or the buffer has room; else g waits on a sudog in `s` (a
    /// native stack never moves, and the caller's frame outlives the
    /// wait), queued, with g Waiting and the next goroutine made current
    /// (park_pick): the caller switches.  Otherwise send_shared.
    ///
    /// # Safety
    /// As for send_in.
    #[inline(never)]
    unsafe fn send_begin(&self, elem: *const u8, s: *mut Sudog) -> Begun {
        let m = m::current_m();
        let g = m::g_on_stack(m);
        if g.is_null() {
            return Begun::done(Err::<(), _>(ChanError::NotInGoroutine));
        }
        // SAFETY: g is this thread's running goroutine (m's), on its stack.
        if unsafe { direct_ok(m, g) } {
            self.lock();
            // SAFETY: locked; elem as the caller guarantees (a native
            // stack never moves, so the sudog may point into it); a
            // dequeued receiver's slot is valid until we wake it; s is the
            // caller's.
            unsafe {
                if let Some(r) = self.try_send(m, elem) {
                    return Begun::done(r);
                }
                s.write(Sudog::direct(g, elem as *mut u8, self, true));
                self.inner().sendq.enqueue(s);
                return Begun::parked(g, park_prepare(m, g, "chan send", self));
            }
        }
        // SAFETY: as above.
        Begun::done(unsafe { self.send_shared(m, g, elem) })
    }

    /// send with several Ps (or from a managed goroutine), out of line so
    /// that the one-P path above stays small.
    ///
    /// # Safety
    /// As for send; `g` is m's running goroutine, on its stack.
    #[inline(never)]
    unsafe fn send_shared(&self, m: *mut M, g: *mut G, elem: *const u8) -> Result<(), ChanError> {
        // Done on our own stack when a receiver waits or the buffer has
        // room...
        self.lock();
        // SAFETY: locked; elem as the caller guarantees; a dequeued
        // receiver's slot is valid until we wake it.
        if let Some(r) = unsafe { self.try_send(m, elem) } {
            return r;
        }
        self.unlock();
        // ...otherwise on g0, which looks again under the lock (the state
        // may have changed since) and parks g there.
        // SAFETY: g is this thread's running goroutine, on its stack.
        unsafe {
            (*m).park_args = [self as *const RawChan as usize, elem as usize, 0, 0];
            mcall(g, gs_chansend0);
            if (*(*g).m).park_result == SEND_CLOSED {
                return Err(ChanError::Closed);
            }
        }
        Ok(())
    }

    /// A send that does not wait: Some(result) when it completed (or
    /// failed: closed), and then the lock is released; None when it would
    /// wait (the lock is still held).
    ///
    /// # Safety
    /// Locked by the caller; `elem` as for send; `m` is this thread's M
    /// (null on a thread that runs no runtime).
    #[inline(always)]
    unsafe fn try_send(&self, m: *mut M, elem: *const u8) -> Option<Result<(), ChanError>> {
        // SAFETY: the caller's guarantee.
        unsafe {
            let inner = self.inner();
            if inner.closed {
                self.unlock();
                return Some(Err(ChanError::Closed));
            }
            if let Some(s) = inner.recvq.dequeue() {
                self.copy(elem, (*s).elem);
                (*s).success = true;
                self.unlock();
                wake(m, s);
                return Some(Ok(()));
            }
            if inner.qcount < self.cap {
                let at = inner.buf.as_mut_ptr().add(inner.sendx * self.elem_size);
                self.copy(elem, at);
                inner.sendx = self.ring_next(inner.sendx);
                inner.qcount += 1;
                self.unlock();
                return Some(Ok(()));
            }
            None
        }
    }

    /// Receive into the `elem_size` bytes at `elem`; waits for a value.
    /// Returns false when the channel is closed and empty (`elem` is then
    /// zeroed).  `elem` may be null to discard the value.
    ///
    /// # Safety
    /// `elem` is null or points at `elem_size` writable bytes, valid until
    /// it returns.
    pub unsafe fn recv(&self, elem: *mut u8) -> Result<bool, ChanError> {
        let mut s = MaybeUninit::<Sudog>::uninit();
        // SAFETY: the caller's guarantee for elem; s lives in this frame
        // until we return, past the wait.
        unsafe { self.recv_in(elem, s.as_mut_ptr()) }
    }

    /// recv, with the sudog of a wait in `s` (see send_in).
    ///
    /// # Safety
    /// As for recv; `s` is writable and lives until this returns.
    #[inline(always)]
    unsafe fn recv_in(&self, elem: *mut u8, s: *mut Sudog) -> Result<bool, ChanError> {
        // SAFETY: the caller's guarantee.
        unsafe {
            let b = self.recv_begin(elem, s);
            if b.g.is_null() {
                return Outcome::from_code(b.word.addr());
            }
            sched::park_switch(b.g, b.word);
            Ok(finish_direct(b.g, s))
        }
    }

    /// Everything of recv up to a wait's switch (see send_begin).
    ///
    /// # Safety
    /// As for recv_in.
    #[inline(never)]
    unsafe fn recv_begin(&self, elem: *mut u8, s: *mut Sudog) -> Begun {
        let m = m::current_m();
        let g = m::g_on_stack(m);
        if g.is_null() {
            return Begun::done(Err::<bool, _>(ChanError::NotInGoroutine));
        }
        // SAFETY: g is this thread's running goroutine (m's), on its stack.
        if unsafe { direct_ok(m, g) } {
            self.lock();
            // SAFETY: locked (try_recv unlocks when it returns Some); elem
            // as the caller guarantees, on a stack that never moves; s is
            // the caller's.
            unsafe {
                if let Some(ok) = try_recv(m, self, elem) {
                    return Begun::done(Ok::<bool, ChanError>(ok));
                }
                s.write(Sudog::direct(g, elem, self, false));
                self.inner().recvq.enqueue(s);
                return Begun::parked(g, park_prepare(m, g, "chan receive", self));
            }
        }
        // SAFETY: as above.
        Begun::done(unsafe { self.recv_shared(m, g, elem) })
    }

    /// recv with several Ps (or from a managed goroutine), out of line so
    /// that the one-P path above stays small.
    ///
    /// # Safety
    /// As for recv; `g` is m's running goroutine, on its stack.
    #[inline(never)]
    unsafe fn recv_shared(&self, m: *mut M, g: *mut G, elem: *mut u8) -> Result<bool, ChanError> {
        // On our own stack when a value (or the closed state) is there
        // already...
        self.lock();
        // SAFETY: locked (try_recv unlocks when it returns Some); elem as
        // the caller guarantees.
        if let Some(ok) = unsafe { try_recv(m, self, elem) } {
            return Ok(ok);
        }
        self.unlock();
        // ...otherwise on g0 (which looks again under the lock).
        // SAFETY: g is this thread's running goroutine, on its stack.
        unsafe {
            (*m).park_args = [self as *const RawChan as usize, elem as usize, 0, 0];
            mcall(g, gs_chanrecv0);
            Ok((*(*g).m).park_result == RECV_OK)
        }
    }

    /// Close the channel: waiting receivers get "closed", waiting senders
    /// fail with [`ChanError::Closed`].  Closing twice is an error.
    pub fn close(&self) -> Result<(), ChanError> {
        self.lock();
        // SAFETY: locked; queued sudogs and their goroutines are live.
        unsafe {
            let c = self.inner();
            if c.closed {
                self.unlock();
                return Err(ChanError::Closed);
            }
            c.closed = true;
            let mut woken = Vec::new();
            while let Some(s) = c.recvq.dequeue() {
                self.zero((*s).elem);
                (*s).success = false;
                woken.push(s);
            }
            while let Some(s) = c.sendq.dequeue() {
                (*s).success = false;
                woken.push(s);
            }
            self.unlock();
            let m = m::current_m();
            for s in woken {
                wake(m, s);
            }
        }
        Ok(())
    }
}

/// Readying a woken goroutine: who it is and which sudog won.
///
/// # Safety
/// `s` was just dequeued (so its goroutine is parked on it and nobody
/// else will wake it); called after the channel's lock is released or
/// with it held (readying takes no channel lock); `m` is this thread's M
/// (null on a thread that runs no runtime).
#[inline(always)]
unsafe fn wake(m: *mut M, s: *mut Sudog) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let g = (*s).g;
        // The common case, inline: g parked on one P from its own stack
        // (direct) and that P is this thread's (its M is ours): ready it
        // as ready_from would, with the checks it makes already known.
        if (*s).direct && (*g).m == m && m::holds_p(m) {
            let p = (*m).p.load(Ordering::Relaxed);
            if !p.is_null() && !(*p).shared {
                // The sudog lives in g's frame: this is its last use here.
                (*s).woken = true;
                // As ready_from's one-P case (nobody else changes g's
                // status now, and the P is this thread's alone), but g
                // runs next, as Go's ready() does: in runnext.
                (*g).set_status(Status::Runnable);
                (*p).put_next_unshared(g);
                return;
            }
        }
        wake_other(m, s)
    }
}

/// wake for the other cases: a waiter that parked through g0 (finish_wake
/// will run before it resumes), or one woken from another thread.
///
/// # Safety
/// As for wake.
#[inline(never)]
unsafe fn wake_other(m: *mut M, s: *mut Sudog) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let g = (*s).g;
        if (*s).direct {
            // The sudog lives in g's frame: this is its last use here.  g
            // stays Waiting (and the frame with it) until readied below.
            (*s).woken = true;
        } else {
            // The waiter made its extra when it queued its sudog.
            (*(*g).extra).param = s;
            (*g).chan_wake = true;
        }
        sched_of(g).ready_from(m, g);
    }
}

fn sched_of(g: *mut G) -> &'static Sched {
    // SAFETY: a parked goroutine's M pointer is its runtime's (single M
    // per runtime today); the Sched outlives its goroutines.
    unsafe { &*(*(*g).m).sched }
}

/// Park `g` (whose context is saved; we are on g0) with its sudogs queued;
/// the channels in `locked` are released once it says Waiting.
///
/// # Safety
/// On g0; `g` is this M's current goroutine; the channels are locked by us.
unsafe fn park(g: *mut G, reason: &'static str, locked: &[*const RawChan]) -> ! {
    // SAFETY: the caller's guarantee.
    unsafe {
        let gr = &mut *g;
        // Read the M now: once the channels are unlocked another M may
        // wake g and run it (and set g.m); nothing of g is touched after.
        let m = gr.m;
        gr.check_guard("park");
        gr.set_parking_on_chan(true);
        gr.set_waitreason(reason);
        gr.set_status(Status::Waiting);
        let hook = PARKING_HOOK.load(Ordering::Acquire);
        if !hook.is_null() {
            // Tests: act inside the window (see set_parking_hook).
            let f: fn(u64) = core::mem::transmute::<*mut (), fn(u64)>(hook);
            f(gr.id);
        }
        // Committed: from here a scan may claim it (it locks the channels
        // itself before touching the sudogs).  As Go's chanparkcommit, the
        // flag drops before the unlock.
        gr.set_parking_on_chan(false);
        for &c in locked {
            (*c).unlock();
        }
        sched::schedule(m)
    }
}

/// Whether goroutine `g` (running, on its own stack) may block without
/// going through g0: a native goroutine (its stack never moves, so its
/// sudogs may point into it while it still runs) on a one-P runtime (no
/// other M can run it before its switch saved its context).
///
/// # Safety
/// `g` is this thread's running goroutine and `m` this thread's M.
#[inline]
unsafe fn direct_ok(m: *mut M, g: *mut G) -> bool {
    // SAFETY: the caller's guarantee; its M and Sched are live.
    unsafe { (*g).kind == crate::g::GKind::Native && (*m).sched.as_ref_unchecked().ps.len() == 1 }
}

/// Block `g` on the one channel `c` (locked by us, g's sudog queued on
/// it, made by Sudog::direct in the caller's caller's frame) from g's own
/// stack: mark it waiting, release the channel, and choose the next
/// goroutine (sched::park_pick: made current, or null for the slow way).
/// The caller then switches (sched::park_switch), and once g was woken and
/// resumed runs finish_direct.
///
/// # Safety
/// As [`direct_ok`] says (`m` is g's M); `c` is locked by the caller.
#[inline(always)]
unsafe fn park_prepare(m: *mut M, g: *mut G, reason: &'static str, c: &RawChan) -> *mut G {
    // SAFETY: the caller's guarantee.
    unsafe {
        (*g).set_waitreason(reason);
        (*g).set_status(Status::Waiting);
        // From here a partner may wake g (it holds the lock to dequeue the
        // sudog); the wake only queues it, and only this M runs it.
        c.unlock();
        sched::park_pick(m)
    }
}

/// What finish_wake does, for a goroutine that parked with park_prepare on
/// its sudog `s`, by the goroutine itself once it runs again: check that
/// it was woken through `s`, clear its wait, and say whether a partner
/// completed the operation (false: the channel was closed).
///
/// # Safety
/// `g` is the calling goroutine, just back from park_switch, and `s` the
/// sudog in its frame it waited on.
#[inline]
unsafe fn finish_direct(g: *mut G, s: *mut Sudog) -> bool {
    // SAFETY: the caller's guarantee; its waker is done with `s`.
    unsafe {
        if !(*s).woken {
            finish_direct_unwoken(g);
        }
        (*(*g).extra).waitreason = "";
        (*s).success
    }
}

#[cold]
#[inline(never)]
fn finish_direct_unwoken(g: *mut G) -> ! {
    // SAFETY: g is the calling goroutine (finish_direct's caller).
    let id = unsafe { (*g).id };
    fatal(&format!(
        "goroutine {id}: resumed from a channel wait before its sudog was woken"
    ))
}

/// A test hook run by a goroutine parking on channels through g0, inside
/// the window where it is already Waiting but still parking (its sudogs
/// queued, the channels locked by it): null, or a `fn(goroutine id)`.
static PARKING_HOOK: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Install (Some) or remove (None) the parking-window hook (tests of the
/// rule that a goroutine still parking on a channel is never moved: the
/// hook runs on the system stack with the goroutine's channels locked, so
/// it must not touch those channels).
pub(crate) fn set_parking_hook(f: Option<fn(u64)>) {
    PARKING_HOOK.store(
        f.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
}

/// Resume `g` at once with its result (the operation did not block).
///
/// # Safety
/// On g0; `g` is this M's current goroutine, stopped at g.sched.
unsafe fn resume(g: *mut G, result: usize, ok: usize) -> ! {
    // SAFETY: the caller's guarantee.
    unsafe {
        (*(*g).m).park_result = result;
        (*(*g).m).park_ok = ok;
        (*(*g).m).park_args = [0; 4];
        gs_gogo(&(*g).sched)
    }
}

/// g0 half of a send: `g.park_args = [chan, elem]`.
// Reached only through mcall from the parking stubs, with this M's
// goroutine (an `extern "C" fn` pointer is what mcall takes, so it cannot
// be an `unsafe fn`).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn gs_chansend0(g: *mut G) -> ! {
    // SAFETY: mcall passes the running goroutine, stopped at g.sched; its
    // park_args were set by the caller (Rust send or the managed stub).
    unsafe {
        let c = &*((*(*g).m).park_args[0] as *const RawChan);
        let elem = (*(*g).m).park_args[1] as *mut u8;
        c.lock();
        match c.try_send((*g).m, elem) {
            Some(Ok(())) => resume(g, SEND_OK, 0),
            Some(Err(_)) => resume(g, SEND_CLOSED, 0),
            None => {}
        }
        let inner = c.inner();
        let s = Sudog::wait_one(g, elem, c, true);
        inner.sendq.enqueue(s);
        park(g, "chan send", &[c as *const RawChan])
    }
}

/// g0 half of a receive: `g.park_args = [chan, elem]`.
// Reached only through mcall from the parking stubs, with this M's
// goroutine (an `extern "C" fn` pointer is what mcall takes, so it cannot
// be an `unsafe fn`).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn gs_chanrecv0(g: *mut G) -> ! {
    // SAFETY: as gs_chansend0.
    unsafe {
        let c = &*((*(*g).m).park_args[0] as *const RawChan);
        let elem = (*(*g).m).park_args[1] as *mut u8;
        c.lock();
        match try_recv((*g).m, c, elem) {
            Some(ok) => resume(g, if ok { RECV_OK } else { RECV_CLOSED }, ok as usize),
            None => {
                let s = Sudog::wait_one(g, elem, c, false);
                c.inner().recvq.enqueue(s);
                park(g, "chan receive", &[c as *const RawChan])
            }
        }
    }
}

/// A receive that does not wait: Some(true) got a value, Some(false) the
/// channel is closed and empty, None it would block.  Unlocks `c` when it
/// returns Some.
///
/// # Safety
/// `c` is locked by the caller; `elem` as for recv; `m` is this thread's M
/// (null on a thread that runs no runtime).
#[inline(always)]
unsafe fn try_recv(m: *mut M, c: &RawChan, elem: *mut u8) -> Option<bool> {
    // SAFETY: the caller's guarantee.
    unsafe {
        let inner = c.inner();
        if let Some(s) = inner.sendq.dequeue() {
            if c.cap == 0 {
                c.copy((*s).elem, elem);
            } else {
                // Full buffer: take the head, put the sender's value at
                // the tail (the same slot, as the ring is full).
                let at = inner.buf.as_mut_ptr().add(inner.recvx * c.elem_size);
                c.copy(at, elem);
                c.copy((*s).elem, at);
                inner.recvx = c.ring_next(inner.recvx);
                inner.sendx = inner.recvx;
            }
            (*s).success = true;
            c.unlock();
            wake(m, s);
            return Some(true);
        }
        if inner.qcount > 0 {
            let at = inner.buf.as_mut_ptr().add(inner.recvx * c.elem_size);
            c.copy(at, elem);
            c.zero(at);
            inner.recvx = c.ring_next(inner.recvx);
            inner.qcount -= 1;
            c.unlock();
            return Some(true);
        }
        if inner.closed {
            c.zero(elem);
            c.unlock();
            return Some(false);
        }
        None
    }
}

/// One case of a select, as managed code and C lay it out.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SelectCase {
    pub chan: *const RawChan,
    /// [`SelectCase::SEND`] or [`SelectCase::RECV`].
    pub dir: usize,
    /// Value to send / slot to receive into.
    pub elem: *mut u8,
}

impl SelectCase {
    pub const SEND: usize = 0;
    pub const RECV: usize = 1;
}

/// Wait until one of `cases` can proceed and do it; with `block` false,
/// return None at once instead of waiting (the default case).  Returns the
/// index of the case taken and, for a receive, whether a value came (false:
/// closed).  A send case on a closed channel fails with Closed.  The same
/// channel may appear in several cases.
///
/// # Safety
/// Every case's channel is live; elems as for send/recv, valid until it
/// returns.
pub unsafe fn select(
    cases: &[SelectCase],
    block: bool,
) -> Result<Option<(usize, bool)>, ChanError> {
    let g = m::current_g_on_stack();
    if g.is_null() {
        return Err(ChanError::NotInGoroutine);
    }
    if cases.is_empty() && block {
        return Err(ChanError::EmptySelect);
    }
    // SAFETY: g is this thread's running goroutine, on its stack.
    unsafe {
        (*(*g).m).park_args = [cases.as_ptr() as usize, cases.len(), block as usize, 0];
        mcall(g, gs_select0);
        match (*(*g).m).park_result {
            SELECT_DEFAULT => Ok(None),
            SELECT_SEND_CLOSED => Err(ChanError::Closed),
            i => Ok(Some((i, (*(*g).m).park_ok != 0))),
        }
    }
}

/// The distinct channels of `cases`, in lock (address) order.
fn lock_order(cases: &[SelectCase]) -> Vec<*const RawChan> {
    let mut v: Vec<*const RawChan> = cases.iter().map(|c| c.chan).collect();
    v.sort();
    v.dedup();
    v
}

/// A cheap per-thread random number for the poll order (fairness).
pub(crate) fn fastrand() -> u32 {
    thread_local! {
        static S: core::cell::Cell<u32> = const { core::cell::Cell::new(0x9e37_79b9) };
    }
    S.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.set(x);
        x
    })
}

/// g0 half of select: `g.park_args = [cases, n, block]`.
// Reached only through mcall from the parking stubs, with this M's
// goroutine (an `extern "C" fn` pointer is what mcall takes, so it cannot
// be an `unsafe fn`).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn gs_select0(g: *mut G) -> ! {
    // SAFETY: as gs_chansend0; the cases array lives in the caller's frame
    // (it is not moved while we use it: the goroutine is stopped, and it
    // is parked only after the cases were copied into sudogs).
    unsafe {
        let cases = core::slice::from_raw_parts(
            (*(*g).m).park_args[0] as *const SelectCase,
            (*(*g).m).park_args[1],
        );
        let block = (*(*g).m).park_args[2] != 0;
        if cases.is_empty() {
            resume(g, SELECT_DEFAULT, 0);
        }
        let order = lock_order(cases);
        for &c in &order {
            (*c).lock();
        }
        let unlock_all = |order: &[*const RawChan]| {
            for &c in order.iter().rev() {
                (*c).unlock();
            }
        };
        // Pass 1: a case that can proceed now, polled from a random start.
        let n = cases.len();
        let start = fastrand() as usize % n;
        for k in 0..n {
            let i = (start + k) % n;
            let cs = cases[i];
            let c = &*cs.chan;
            let inner = c.inner();
            if cs.dir == SelectCase::SEND {
                if inner.closed {
                    unlock_all(&order);
                    resume(g, SELECT_SEND_CLOSED, 0);
                }
                if let Some(s) = inner.recvq.dequeue() {
                    c.copy(cs.elem, (*s).elem);
                    (*s).success = true;
                    unlock_all(&order);
                    wake((*g).m, s);
                    resume(g, i, 1);
                }
                if inner.qcount < c.cap {
                    let at = inner.buf.as_mut_ptr().add(inner.sendx * c.elem_size);
                    c.copy(cs.elem, at);
                    inner.sendx = c.ring_next(inner.sendx);
                    inner.qcount += 1;
                    unlock_all(&order);
                    resume(g, i, 1);
                }
            } else if let Some(ok) = try_recv((*g).m, c, cs.elem) {
                // try_recv unlocked `c` itself (it keeps the lock when it
                // finds nothing: a waiting sender may be a select that
                // already won elsewhere); release the others.
                for &o in order.iter().rev() {
                    if o != cs.chan {
                        (*o).unlock();
                    }
                }
                resume(g, i, ok as usize);
            }
        }
        if !block {
            unlock_all(&order);
            resume(g, SELECT_DEFAULT, 0);
        }
        // Pass 2: wait on every case; sudogs linked in lock order.
        (*g).x().select_done.store(0, Ordering::Release);
        (*g).x().param = ptr::null_mut();
        let mut sudogs: Vec<*mut Sudog> = Vec::with_capacity(n);
        for (i, cs) in cases.iter().enumerate() {
            let s = Sudog::alloc(
                (*g).x(),
                g,
                cs.elem,
                cs.chan,
                cs.dir == SelectCase::SEND,
                true,
                i,
            );
            let inner = (*cs.chan).inner();
            if cs.dir == SelectCase::SEND {
                inner.sendq.enqueue(s);
            } else {
                inner.recvq.enqueue(s);
            }
            sudogs.push(s);
        }
        sudogs.sort_by_key(|&s| (*s).chan);
        for w in sudogs.windows(2) {
            (*w[0]).waitlink = w[1];
        }
        (*g).x().waiting = sudogs[0];
        park(g, "select", &order)
    }
}

/// Before a goroutine woken from a channel wait resumes: note its result,
/// dequeue the cases of a select that did not win, free its sudogs.  Runs
/// on the system stack (or the stack of the native goroutine that switches
/// to it), never on the woken goroutine's own stack.
///
/// # Safety
/// `g` was woken (chan_wake) and is about to be resumed by the caller, on
/// this thread, whose M is `m` (the results go to the M that resumes g).
#[inline(always)]
pub(crate) unsafe fn finish_wake(m: *mut M, g: *mut G) {
    // SAFETY: the caller's guarantee; g is not running, its sudogs are
    // dequeued by their wakers or still queued on locked channels below.
    unsafe {
        let gr = &mut *g;
        // A woken waiter made its extra when it queued its sudog.
        let x: *mut crate::g::GExtra = gr.x();
        let won = (*x).param;
        let first = (*x).waiting;
        // The common case, inline: a plain send or receive, whose one
        // sudog (dequeued by its waker) becomes the spare.
        if !won.is_null() && won == first && !(*won).is_select && (*won).waitlink.is_null() {
            gr.chan_wake = false;
            (*x).param = ptr::null_mut();
            (*x).waiting = ptr::null_mut();
            let success = (*won).success;
            (*m).park_result = match ((*won).is_send, success) {
                (true, true) => SEND_OK,
                (true, false) => SEND_CLOSED,
                (false, true) => RECV_OK,
                (false, false) => RECV_CLOSED,
            };
            (*m).park_ok = success as usize;
            (*m).park_args = [0; 4];
            (*x).waitreason = "";
            if (*x).spare_sudog.is_null() {
                (*x).spare_sudog = won; // reused by its next wait
            } else {
                drop(Box::from_raw(won));
            }
            return;
        }
        finish_wake_slow(m, g)
    }
}

/// finish_wake for a select (and the fatal case of no sudog).
///
/// # Safety
/// As for [`finish_wake`].
#[cold]
#[inline(never)]
unsafe fn finish_wake_slow(m: *mut M, g: *mut G) {
    // SAFETY: the caller's guarantee; g is not running, its sudogs are
    // dequeued by their wakers or still queued on locked channels below.
    unsafe {
        let gr = &mut *g;
        gr.chan_wake = false;
        let won = gr.x().param;
        gr.x().param = ptr::null_mut();
        let first = gr.x().waiting;
        gr.x().waiting = ptr::null_mut();
        if won.is_null() || first.is_null() {
            fatal(&format!(
                "goroutine {}: woken from a channel wait without a sudog",
                gr.id
            ));
        }
        if (*won).is_select {
            // Lock every distinct channel (the list is in lock order),
            // dequeue the losers, unlock.
            let mut chans: Vec<*const RawChan> = Vec::new();
            let mut s = first;
            while !s.is_null() {
                if chans.last() != Some(&(*s).chan) {
                    chans.push((*s).chan);
                }
                s = (*s).waitlink;
            }
            for &c in &chans {
                (*c).lock();
            }
            let mut s = first;
            while !s.is_null() {
                if s != won {
                    let inner = (*(*s).chan).inner();
                    // A case of a select is on its channel's queue unless
                    // it won (dequeued by the waker).
                    let q = if queued_on(&inner.sendq, s) {
                        &mut inner.sendq
                    } else {
                        &mut inner.recvq
                    };
                    if queued_on(q, s) {
                        q.remove(s);
                    }
                }
                s = (*s).waitlink;
            }
            for &c in chans.iter().rev() {
                (*c).unlock();
            }
            // A select's winner: its case, or a send case whose channel
            // was closed under it.
            (*m).park_result = if (*won).is_send && !(*won).success {
                SELECT_SEND_CLOSED
            } else {
                (*won).case
            };
            (*m).park_ok = (*won).success as usize;
        } else {
            (*m).park_result = match ((*won).is_send, (*won).success) {
                (true, true) => SEND_OK,
                (true, false) => SEND_CLOSED,
                (false, true) => RECV_OK,
                (false, false) => RECV_CLOSED,
            };
            (*m).park_ok = (*won).success as usize;
        }
        (*m).park_args = [0; 4];
        gr.set_waitreason("");
        let mut s = first;
        while !s.is_null() {
            let next = (*s).waitlink;
            if gr.x().spare_sudog.is_null() {
                gr.x().spare_sudog = s; // reused by its next wait
            } else {
                drop(Box::from_raw(s));
            }
            s = next;
        }
    }
}

/// Whether `s` is on queue `q`.
///
/// # Safety
/// The queue's channel is locked.
unsafe fn queued_on(q: &WaitQ, s: *mut Sudog) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe {
        let mut x = q.first;
        while !x.is_null() {
            if x == s {
                return true;
            }
            x = (*x).next;
        }
        false
    }
}

/// The typed face of a channel for Rust goroutines.
pub struct Chan<T: Copy + Send + 'static> {
    raw: Arc<RawChan>,
    _t: core::marker::PhantomData<fn(T) -> T>,
}

impl<T: Copy + Send + 'static> Clone for Chan<T> {
    fn clone(&self) -> Self {
        Chan {
            raw: self.raw.clone(),
            _t: core::marker::PhantomData,
        }
    }
}

impl<T: Copy + Send + 'static> Chan<T> {
    /// A channel with `cap` buffered values (0 = unbuffered).
    pub fn new(cap: usize) -> Chan<T> {
        Chan {
            raw: RawChan::new(core::mem::size_of::<T>(), cap),
            _t: core::marker::PhantomData,
        }
    }

    pub fn raw(&self) -> &Arc<RawChan> {
        &self.raw
    }

    /// Send `v`, waiting for a receiver or buffer space.
    ///
    /// Inlined, with the sudog of a wait in the caller's frame: a wait
    /// switches away from, and resumes in, the caller's own code (see
    /// sched::park_switch).
    #[inline]
    pub fn send(&self, v: T) -> Result<(), ChanError> {
        let mut s = MaybeUninit::<Sudog>::uninit();
        // SAFETY: v and s live in this frame until send returns.
        unsafe {
            self.raw
                .send_in(&v as *const T as *const u8, s.as_mut_ptr())
        }
    }

    /// Receive a value, or None when the channel is closed and empty.
    /// Inlined, as send.
    #[inline]
    pub fn recv(&self) -> Result<Option<T>, ChanError> {
        let mut v = MaybeUninit::<T>::zeroed();
        let mut s = MaybeUninit::<Sudog>::uninit();
        // SAFETY: v has room for a T; the channel writes a whole T (or
        // zeroes) before recv returns; s lives in this frame until then.
        let ok = unsafe {
            self.raw
                .recv_in(v.as_mut_ptr() as *mut u8, s.as_mut_ptr())?
        };
        // SAFETY: written (or zeroed, and then not returned).
        Ok(ok.then(|| unsafe { v.assume_init() }))
    }

    pub fn close(&self) -> Result<(), ChanError> {
        self.raw.close()
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.raw.cap()
    }

    /// A receive case for [`select`], receiving into `slot`.
    pub fn recv_case(&self, slot: &mut T) -> SelectCase {
        SelectCase {
            chan: Arc::as_ptr(&self.raw),
            dir: SelectCase::RECV,
            elem: slot as *mut T as *mut u8,
        }
    }

    /// A send case for [`select`], sending `*value`.
    pub fn send_case(&self, value: &T) -> SelectCase {
        SelectCase {
            chan: Arc::as_ptr(&self.raw),
            dir: SelectCase::SEND,
            elem: value as *const T as *mut u8,
        }
    }
}

/// Closing a channel from managed code (it never waits, so it needs no
/// stub): 0 closed, 1 it was closed already.
// Called by managed code with a channel it holds (the C ABI's checked
// entry point is gs_chan_close in ffi.rs).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn gs_chanclose(_g: *mut G, c: *const RawChan) -> usize {
    // SAFETY: managed code passes a live channel.
    match unsafe { (*c).close() } {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Adjust the sudogs of a goroutine whose stack moves from `[lo, hi)` by
/// `delta`; returns the highest end of any sudog element in the old stack
/// (0 if none), the part of the stack a concurrent sender might write.
///
/// # Safety
/// `g` is stopped and owned by the mover, with every channel it waits on
/// locked (see copystack).
pub(crate) unsafe fn adjust_sudogs(g: &G, lo: usize, hi: usize, delta: usize) -> usize {
    let mut sghi = 0;
    let mut s = g.waiting();
    // SAFETY: the caller's guarantee.
    unsafe {
        while !s.is_null() {
            let e = (*s).elem as usize;
            if e >= lo && e < hi {
                let size = (*(*s).chan).elem_size;
                sghi = sghi.max(e + size);
                (*s).elem = e.wrapping_add(delta) as *mut u8;
            }
            s = (*s).waitlink;
        }
    }
    sghi
}

/// The distinct channels `g` waits on, in lock order.
///
/// # Safety
/// `g` is stopped; its sudog list is stable.
pub(crate) unsafe fn waiting_chans(g: &G) -> Vec<*const RawChan> {
    let mut v = Vec::new();
    let mut s = g.waiting();
    // SAFETY: the caller's guarantee.
    unsafe {
        while !s.is_null() {
            v.push((*s).chan);
            s = (*s).waitlink;
        }
    }
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::{ChanError, Outcome};

    /// Every result of send and recv survives Begun's encoding.
    #[test]
    fn outcomes_round_trip_through_their_codes() {
        let errors = [
            ChanError::Closed,
            ChanError::NotInGoroutine,
            ChanError::EmptySelect,
        ];
        let mut sends = vec![Ok(())];
        sends.extend(errors.iter().map(|&e| Err(e)));
        for r in sends {
            assert_eq!(<Result<(), ChanError>>::from_code(r.code()), r);
        }
        let mut recvs = vec![Ok(false), Ok(true)];
        recvs.extend(errors.iter().map(|&e| Err(e)));
        for r in recvs {
            assert_eq!(<Result<bool, ChanError>>::from_code(r.code()), r);
        }
    }
}
