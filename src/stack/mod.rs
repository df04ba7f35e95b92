//! Goroutine stacks: where they come from and where they go back to.
//!
//! Every stack is allocated by `stackalloc`, freed by `stackfree`, and
//! (a large one) extended downwards in place by `stackgrow` -- nowhere
//! else. All of the accounting happens on the way through those three
//! functions (in the cache or pool function that hands out or takes back
//! the stack), so the numbers in `StackStats` can be trusted (a lesson Go
//! learned when stack sizes were tracked by whoever happened to be holding
//! the stack).
//!
//! The common case, a small stack through a cache, is inlined into the
//! caller and costs a few loads and stores: no lock, no atomic
//! read-modify-write, one plain-bool test for the debug modes.
//!
//! Where a stack comes from:
//!
//! - Movable stacks smaller than `SPAN_SIZE` (orders 0..NUM_ORDERS: 1 KiB to
//!   16 KiB) are chunks carved from spans, handed out through the per-thread
//!   `StackCache` when the caller has one, else straight from the
//!   `StackPool`.
//! - Movable stacks of `SPAN_SIZE` or more ("large") live at the top of
//!   their own reservation of address space (64 times their size, 8 MiB
//!   to 1 GiB, costing memory only where touched), so that `stackgrow` can
//!   double them in place, without a copy;
//!   free ones are kept, reservation and committed pages, on a free list
//!   keyed by size class for reuse.
//! - Guarded stacks (for native code, which never moves) have their own
//!   mapping with a PROT_NONE page directly below, and are kept on a free
//!   list keyed by size with the guard page still in place.
//! - Under GSDEBUG=efence or faultonfree every stack has its own mapping
//!   with a guard page below, and is never reused.
//!
//! While a scan cycle runs (`StackPool::begin_cycle` .. `end_cycle`) no
//! pooled memory goes back to the system, so a pointer the scan still holds
//! into a stack freed meanwhile points at mapped pool memory (seed 002).
//! Debug-mode stacks are the exception: catching such stale uses is their
//! point.

use std::fmt;
use std::num::NonZeroUsize;

mod cache;
pub(crate) mod copy;
pub(crate) mod grow;
pub(crate) mod shrink;
pub use shrink::shrink_wanted;
mod pool;
mod sys;

pub use cache::StackCache;
pub use pool::StackPool;
pub use sys::{page_size, round_up};

/// The smallest stack, order 0.
pub const MIN_STACK: usize = 1024;
/// Number of orders carved from spans: 1K, 2K, 4K, 8K, 16K.
pub const NUM_ORDERS: usize = 5;
/// Size of a pool span, which is also its alignment.
pub const SPAN_SIZE: usize = 32 * 1024;
/// Most bytes a cache keeps per order; refills fill to, and releases empty
/// down to, half of it.
pub const CACHE_ORDER_BYTES: usize = 32 * 1024;
/// Byte written over a stack when it is freed (GSDEBUG=stackpoison).
pub const STACK_POISON_FREE: u8 = 0xfc;
/// Byte written over a stack handed out again from the pools
/// (GSDEBUG=stackpoison).
pub const STACK_POISON_NEW: u8 = 0xfd;

// The orders must exactly cover the sizes below SPAN_SIZE.
const _: () = assert!(MIN_STACK << NUM_ORDERS == SPAN_SIZE);
const _: () = assert!(MIN_STACK.is_power_of_two() && MIN_STACK >= 2 * size_of::<usize>());

/// What a stack will be used for, which decides its size rules and layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackKind {
    /// For managed goroutines (will move): size a power of two >= MIN_STACK;
    /// no guard page (managed code checks stackguard0 instead). Smaller than
    /// SPAN_SIZE: from the order pools; else large.
    Movable,
    /// For native goroutines (never move): size rounded up to a page
    /// multiple, with a PROT_NONE guard page directly below `lo`, so an
    /// overflow faults (the scheduler's SIGSEGV handler then names the
    /// goroutine). Reused from a free list keyed by size with the guard page
    /// kept.
    Guarded,
}

/// Where a stack came from, which decides where it goes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackSource {
    /// A chunk of order n (MIN_STACK << n bytes) of a pool span.
    Order(u8),
    /// A large movable stack: the top of a reservation of address space
    /// (or, when that could not be had, a mapping of its own) that
    /// `stackgrow` may extend downwards.
    Large,
    /// A stack with its own mapping and a guard page below `lo`.
    Guarded,
    /// GSDEBUG=efence or faultonfree: its own mapping with a guard page
    /// below `lo`, never reused.
    System,
}

/// A stack: the usable bytes are `[lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stack {
    pub lo: usize,
    pub hi: usize,
    pub source: StackSource,
}

impl Stack {
    /// Usable size in bytes.
    pub fn size(&self) -> usize {
        self.hi - self.lo
    }

    /// The PROT_NONE guard page directly below `lo`, as `[start, end)`, if
    /// this stack has one.
    pub fn guard(&self) -> Option<(usize, usize)> {
        match self.source {
            StackSource::Guarded | StackSource::System => Some((self.lo - page_size(), self.lo)),
            StackSource::Order(_) | StackSource::Large => None,
        }
    }
}

/// Stack memory statistics of one pool. Exact whenever no stackalloc,
/// stackfree, stackgrow or release runs at the same time. What moves on the caches' fast path is
/// kept per cache and combined on reading (see the cache module), so a read
/// that races with other threads' allocations may mix before and after
/// states (a stack allocated through one cache and freed through another can
/// then briefly count twice or not at all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Sum of usable sizes (hi - lo) of every stack handed out and not freed.
    pub in_use: usize,
    /// Bytes of stack memory committed from the system: spans, the touched
    /// part of large stacks' reservations (not the reserved address
    /// space), guarded stacks with their guard pages, system stacks.
    pub sys: usize,
    /// Bytes sitting in per-thread caches (owned by a cache, not in use).
    pub cached: usize,
    /// Number of successful stackalloc calls.
    pub allocs: u64,
    /// Number of stackfree calls.
    pub frees: u64,
    /// Empty spans returned to the system.
    pub spans_released: u64,
}

/// Why stackalloc failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The size does not fit the kind's rules.
    BadSize(usize),
    /// The system would not map the memory.
    OutOfMemory(usize),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::BadSize(n) => write!(f, "invalid stack size {n}"),
            AllocError::OutOfMemory(n) => write!(f, "out of memory allocating a {n}-byte stack"),
        }
    }
}

impl std::error::Error for AllocError {}

/// The order of a movable stack of `size` bytes, if it is one of the sizes
/// carved from spans (a power of two in MIN_STACK..SPAN_SIZE).
#[inline]
fn order_of(size: usize) -> Option<usize> {
    // For a power of two, the order is the index of its bit past
    // MIN_STACK's; any other size fails the comparison (0 gives an order of
    // 54 or more, which the first test refuses).
    let order = size
        .trailing_zeros()
        .wrapping_sub(MIN_STACK.trailing_zeros()) as usize;
    if order < NUM_ORDERS && size == MIN_STACK << order {
        Some(order)
    } else {
        None
    }
}

/// Size in bytes of a chunk of order `order`.
fn order_size(order: u8) -> usize {
    MIN_STACK << order
}

/// The link word of a free stack: the address of the next free stack on
/// its list, 0 at the end.
///
/// # Safety
/// `addr` must be the start of a free stack (hence mapped, readable and
/// word-aligned) whose first word was set by `set_link`.
unsafe fn link(addr: usize) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe { (addr as *const usize).read() }
}

/// Set the link word of the free stack at `addr` to `next`.
///
/// # Safety
/// `addr` must be the start of a dead stack (hence mapped, writable and
/// word-aligned) that nobody else holds.
unsafe fn set_link(addr: usize, next: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { (addr as *mut usize).write(next) };
}

/// Fill the usable bytes of `stk` with `byte`.
///
/// # Safety
/// `[stk.lo, stk.hi)` must be mapped read-write and owned by the caller:
/// nothing else may be using it.
unsafe fn poison(stk: Stack, byte: u8) {
    // SAFETY: the caller guarantees the range is mapped and ours alone.
    unsafe { std::ptr::write_bytes(stk.lo as *mut u8, byte, stk.size()) };
}

/// Allocate a stack of `size` bytes and kind `kind` from `pool`, through
/// `cache` for small movable stacks when one is given (and GSDEBUG does not
/// say stacknocache). This is the one allocation path: every stack is made
/// here, and every byte is counted on the way (by the cache or pool
/// function the stack comes from).
///
/// Must run on a system stack (the thread's own stack or g0), never on a
/// goroutine stack that could itself need to grow while the allocator runs;
/// the caller guarantees that. A guarded stack's size is rounded up to a
/// page multiple, and the returned stack's `size()` says so.
///
/// The common case, a small movable stack from a cache that has one, is
/// inlined into the caller: a handful of loads and stores, no atomic
/// read-modify-write, no lock. Everything else is `stackalloc_slow`.
#[inline]
pub fn stackalloc(
    pool: &StackPool,
    mut cache: Option<&mut StackCache>,
    size: usize,
    kind: StackKind,
) -> Result<Stack, AllocError> {
    if let Some(c) = cache.as_deref_mut() {
        if kind == StackKind::Movable && pool.cache_fast() {
            if let Some(order) = order_of(size) {
                if let Some(lo) = c.pop(pool, order) {
                    return Ok(Stack {
                        lo,
                        hi: lo + size,
                        source: StackSource::Order(order as u8),
                    });
                }
            }
        }
    }
    let mut err = None;
    match stackalloc_slow_packed(pool, cache, size, kind, &mut err) {
        (Some(lo), hi_source) => Ok(unpack(lo.get(), hi_source)),
        (None, _) => Err(err.expect("stackalloc failed without an error")),
    }
}

/// The source of a stack as a number below MIN_STACK, for `unpack`.
const PACKED_LARGE: usize = NUM_ORDERS;
const PACKED_GUARDED: usize = NUM_ORDERS + 1;
const PACKED_SYSTEM: usize = NUM_ORDERS + 2;
const _: () = assert!(PACKED_SYSTEM < MIN_STACK);

/// stackalloc_slow, returning its stack in two registers rather than in
/// memory: `(lo, hi + source)`, or `(None, _)` with the error in `err`.
/// `hi` of every stack is a multiple of MIN_STACK (lo is aligned to the
/// chunk size or to a page, and sizes are powers of two >= MIN_STACK or
/// page multiples), which leaves room for the source below it.
///
/// Why: a Result<Stack, _> written to memory by a call, or field by field
/// into memory shared with such a call, makes the caller's next copy of the
/// whole Stack wait until those stores have retired (a load spanning two
/// smaller stores cannot be forwarded from them), a stall of about 12
/// cycles, more than half the cost of the cached path. With the slow path
/// answering in registers the caller keeps the result in registers too.
#[cold]
#[inline(never)]
fn stackalloc_slow_packed(
    pool: &StackPool,
    cache: Option<&mut StackCache>,
    size: usize,
    kind: StackKind,
    err: &mut Option<AllocError>,
) -> (Option<NonZeroUsize>, usize) {
    match stackalloc_slow(pool, cache, size, kind) {
        Ok(stk) => {
            let source = match stk.source {
                StackSource::Order(order) => usize::from(order),
                StackSource::Large => PACKED_LARGE,
                StackSource::Guarded => PACKED_GUARDED,
                StackSource::System => PACKED_SYSTEM,
            };
            assert!(
                stk.hi % MIN_STACK == 0,
                "gstack: stackalloc made a stack that ends off a MIN_STACK boundary: {stk:?}"
            );
            let lo = NonZeroUsize::new(stk.lo).expect("a stack at address 0");
            (Some(lo), stk.hi | source)
        }
        Err(e) => {
            *err = Some(e);
            (None, 0)
        }
    }
}

/// The stack that stackalloc_slow_packed packed as `(lo, hi_source)`.
#[inline]
fn unpack(lo: usize, hi_source: usize) -> Stack {
    let source = match hi_source % MIN_STACK {
        PACKED_LARGE => StackSource::Large,
        PACKED_GUARDED => StackSource::Guarded,
        PACKED_SYSTEM => StackSource::System,
        order => StackSource::Order(order as u8),
    };
    Stack {
        lo,
        hi: hi_source & !(MIN_STACK - 1),
        source,
    }
}

/// Everything stackalloc does not do inline: refills, the pool, large and
/// guarded stacks, debug modes. Same contract as stackalloc. Whatever it
/// hands out is counted by the cache or pool function it came from (a
/// cache in its own slot, the pool under its lock).
#[inline]
fn stackalloc_slow(
    pool: &StackPool,
    cache: Option<&mut StackCache>,
    size: usize,
    kind: StackKind,
) -> Result<Stack, AllocError> {
    let debug = pool.debug();
    let size = match kind {
        StackKind::Movable if size.is_power_of_two() && size >= MIN_STACK => size,
        StackKind::Guarded if size > 0 => {
            sys::round_up(size, page_size()).ok_or(AllocError::BadSize(size))?
        }
        _ => return Err(AllocError::BadSize(size)),
    };

    let (stk, reused) = if debug.efence || debug.faultonfree {
        (pool.alloc_system(size)?, false)
    } else if let Some(order) = order_of(size).filter(|_| kind == StackKind::Movable) {
        let order = order as u8;
        let lo = match cache {
            Some(cache) if !debug.stacknocache => cache.alloc(pool, order)?,
            _ => pool.alloc_order(order)?,
        };
        let stk = Stack {
            lo,
            hi: lo + size,
            source: StackSource::Order(order),
        };
        (stk, true)
    } else if kind == StackKind::Movable {
        pool.alloc_large(size)?
    } else {
        pool.alloc_guarded(size)?
    };

    if reused && debug.stackpoison {
        // SAFETY: the stack was just taken from a free list, so it is mapped
        // read-write and nobody else holds it.
        unsafe { poison(stk, STACK_POISON_NEW) };
    }
    Ok(stk)
}

/// Grow the stack `stk` to `newsize` bytes in place, if it can: a large
/// stack whose reservation has room below it. The result has the same `hi`
/// and a lower `lo`; every byte of `stk` stays where it is, so nothing needs
/// copying and every pointer into it stays valid. The pool counts it as
/// `stk` freed and the result allocated. None, with nothing done, for any
/// other stack, or if there is no room; the caller then moves the stack
/// (stackalloc, copy, stackfree). Makes no system call.
///
/// Like stackalloc, must run on a system stack. Under GSDEBUG=stackpoison
/// the bytes added are poisoned as a reused stack's would be. (Under efence
/// and faultonfree every stack is a system stack, which never grows in
/// place.)
///
/// # Safety
/// `stk` must have come from `stackalloc` (or `stackgrow`) on this same
/// `pool`, unchanged, and still be live, held by the caller alone. On Some,
/// the returned stack replaces `stk`: `stk` must be neither freed nor grown
/// again, only the result.
pub unsafe fn stackgrow(pool: &StackPool, stk: Stack, newsize: usize) -> Option<Stack> {
    if stk.source != StackSource::Large || newsize <= stk.size() || !newsize.is_power_of_two() {
        return None;
    }
    // SAFETY: the caller's guarantee.
    let new = unsafe { pool.grow_large(stk, newsize) }?;
    if pool.debug().stackpoison {
        // SAFETY: [new.lo, stk.lo) was just added to the stack the caller
        // holds alone; it is committed, hence mapped read-write.
        unsafe {
            poison(
                Stack {
                    lo: new.lo,
                    hi: stk.lo,
                    source: StackSource::Large,
                },
                STACK_POISON_NEW,
            )
        };
    }
    Some(new)
}

/// Give back a stack. This is the one free path: `stk` goes back where its
/// source says it came from, and is uncounted there.
///
/// Like stackalloc, must run on a system stack. A small movable stack goes
/// into `cache` if one is given (and GSDEBUG does not say stacknocache),
/// else straight to the pool; any cache may take it, not only the one it was
/// allocated through, as long as it belongs to the same pool. As with
/// stackalloc, that common case is inlined and the rest is
/// `stackfree_slow`.
///
/// # Safety
/// `stk` must have come from `stackalloc` on this same `pool`, unchanged,
/// and must not have been freed already. Nothing may use its memory after
/// this call: the memory is reused, poisoned, or unmapped.
#[inline]
pub unsafe fn stackfree(pool: &StackPool, mut cache: Option<&mut StackCache>, stk: Stack) {
    if let (StackSource::Order(order), Some(c)) = (stk.source, cache.as_deref_mut()) {
        let order = usize::from(order);
        // A chunk that does not look like one of its order goes the slow
        // way, which says so.
        if pool.cache_fast()
            && order < NUM_ORDERS
            && stk.hi.wrapping_sub(stk.lo) == MIN_STACK << order
            && stk.lo & ((MIN_STACK << order) - 1) == 0
            // SAFETY: the caller guarantees the chunk came from this pool
            // and is dead; its order and alignment were just checked.
            && unsafe { c.push(pool, order, stk.lo) }
        {
            return;
        }
    }
    // SAFETY: the caller's guarantee.
    unsafe { stackfree_slow(pool, cache, stk) }
}

/// Everything stackfree does not do inline. Same contract as stackfree.
///
/// # Safety
/// As for stackfree.
#[cold]
#[inline(never)]
unsafe fn stackfree_slow(pool: &StackPool, cache: Option<&mut StackCache>, stk: Stack) {
    let debug = pool.debug();
    let size = stk.size();
    if debug.stackpoison && stk.source != StackSource::System {
        // SAFETY: the caller gives the stack back, so it is ours alone; it is
        // still mapped read-write because it has not been freed.
        unsafe { poison(stk, STACK_POISON_FREE) };
    }
    match stk.source {
        StackSource::Order(order) => {
            assert!(
                usize::from(order) < NUM_ORDERS
                    && size == order_size(order)
                    && stk.lo & (size - 1) == 0,
                "gstack: stackfree of a bad stack {stk:?}"
            );
            match cache {
                // SAFETY: the caller guarantees the chunk came from this pool
                // and is dead.
                Some(cache) if !debug.stacknocache => unsafe { cache.free(pool, order, stk.lo) },
                // SAFETY: as above.
                _ => unsafe { pool.free_order(order, stk.lo) },
            }
        }
        // SAFETY: the caller guarantees the stack came from this pool with
        // this source and is dead.
        StackSource::Large => unsafe { pool.free_large(stk) },
        // SAFETY: as above.
        StackSource::Guarded => unsafe { pool.free_guarded(stk) },
        // SAFETY: as above.
        StackSource::System => unsafe { pool.free_system(stk) },
    }
}
