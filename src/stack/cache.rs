//! The per-thread (per-P) stack cache.
//!
//! A cache keeps, per order, a fixed array used as a stack of free chunk
//! addresses, so taking or giving back a small stack is a few loads and
//! stores, no lock, no atomic read-modify-write, and no touch of the chunk
//! itself. It talks to the pool only in batches: an empty order is refilled
//! to CACHE_ORDER_BYTES/2 under one lock, and a full one (CACHE_ORDER_BYTES)
//! gives its older half back under one lock before taking the next chunk.
//!
//! The counters behind `StackStats` that move on every call live in the
//! cache's `CacheSlot`, written only by the cache's holder, so an update is
//! a plain load and store on a line no other thread writes. The fast path
//! moves as few figures as it can, and the rest are derived in `stats()`:
//!
//! - `len[o]`, the number of chunks of order o in the cache, is the array's
//!   stack pointer anyway; the cached bytes are `sum len[o] * size(o)`.
//! - `allocs` counts the chunks the cache handed out.
//! - `taken` counts the chunks the cache got from the pool minus those it
//!   gave back; it moves only with a batch (refill, release, flush).
//!   Since every chunk in the cache came in by a refill or a stackfree and
//!   left by a stackalloc or a release, the frees through the cache are
//!   `allocs + sum len - taken`.
//! - The pool counts the chunks it hands to a cache as in use, as soon as
//!   the batch leaves it, so the bytes in use are the pool's figure minus
//!   every cache's cached bytes: a chunk moving between a cache and a
//!   goroutine changes only `len`.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire};
use std::sync::atomic::{Ordering::Relaxed, Ordering::Release};
use std::sync::Arc;

use super::pool::StackPool;
use super::{order_size, AllocError, StackStats};
use super::{CACHE_ORDER_BYTES, MIN_STACK, NUM_ORDERS};

/// Most chunks a cache holds of one order: CACHE_ORDER_BYTES of order 0.
const MAX_CACHED: usize = CACHE_ORDER_BYTES / MIN_STACK;

// A full order keeps at least two chunks, so releasing half leaves room.
const _: () = assert!(CACHE_ORDER_BYTES >= 2 * (MIN_STACK << (NUM_ORDERS - 1)));

/// Most chunks of `order` a cache holds.
#[inline]
fn capacity(order: usize) -> usize {
    MAX_CACHED >> order
}

/// One cache's share of a pool's counters (see the module comment). The
/// pool keeps every slot it gave out and adds them up in `stats()`. A slot
/// belongs to one pool for its whole life, and is written only by the
/// holder of the cache that owns it (through `&mut StackCache`), so each
/// update is a plain load and store; readers on other threads see either
/// the old or the new value. The figures wrap; only the sum over all slots
/// and the pool means anything.
///
/// Aligned so that two threads' slots never share a cache line (nor the
/// pair of lines some CPUs fetch together).
#[repr(C, align(128))]
pub(super) struct CacheSlot {
    /// Id of the pool whose list holds this slot.
    pool_id: usize,
    /// Per order, chunks in the owning cache's array.
    len: [AtomicUsize; NUM_ORDERS],
    /// Chunks handed out through the cache.
    allocs: AtomicU64,
    /// Chunks taken from the pool minus chunks given back to it.
    taken: AtomicU64,
    /// Bytes of chunks left in a cache dropped without a flush: lost to
    /// the pool until it goes away, and still counted as cached.
    lost: AtomicUsize,
    /// A live cache owns this slot. A dropped cache gives it up, and the
    /// next new cache of the pool takes it over, counts and all.
    owned: AtomicBool,
}

impl CacheSlot {
    /// A slot of pool `pool_id`, already owned by the cache about to use it.
    pub(super) fn new_owned(pool_id: usize) -> CacheSlot {
        CacheSlot {
            pool_id,
            len: Default::default(),
            allocs: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            lost: AtomicUsize::new(0),
            owned: AtomicBool::new(true),
        }
    }

    /// Take over this slot if no cache owns it. The Acquire pairs with the
    /// Release of the previous owner's `disown`, so its writes are seen.
    pub(super) fn try_claim(&self) -> bool {
        self.owned
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
    }

    /// Add this slot's figures to `s`, and its cached bytes to `cached`
    /// (which `stats()` subtracts from the pool's in-use figure). Wrapping,
    /// see the type's comment.
    pub(super) fn add_to(&self, s: &mut StackStats) {
        let mut chunks = 0u64;
        let mut bytes = self.lost.load(Relaxed);
        for (order, len) in self.len.iter().enumerate() {
            let n = len.load(Relaxed);
            chunks = chunks.wrapping_add(n as u64);
            bytes = bytes.wrapping_add(n.wrapping_mul(order_size(order as u8)));
        }
        let allocs = self.allocs.load(Relaxed);
        let frees = allocs
            .wrapping_add(chunks)
            .wrapping_sub(self.taken.load(Relaxed));
        s.allocs = s.allocs.wrapping_add(allocs);
        s.frees = s.frees.wrapping_add(frees);
        s.cached = s.cached.wrapping_add(bytes);
        s.in_use = s.in_use.wrapping_sub(bytes);
    }

    /// Chunks of `order` in the owning cache.
    #[inline]
    fn len(&self, order: usize) -> usize {
        self.len[order].load(Relaxed)
    }

    /// Set the number of chunks of `order` in the owning cache. Only the
    /// owner calls this.
    #[inline]
    fn set_len(&self, order: usize, n: usize) {
        self.len[order].store(n, Relaxed);
    }

    /// Add `n` (wrapping) to `taken`. Only the owner calls this.
    fn add_taken(&self, n: u64) {
        self.taken
            .store(self.taken.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Count one chunk handed out. Only the owner calls this.
    #[inline]
    fn add_alloc(&self) {
        self.allocs
            .store(self.allocs.load(Relaxed).wrapping_add(1), Relaxed);
    }

    fn disown(&self) {
        self.owned.store(false, Release);
    }
}

/// A per-thread cache of small free stacks in front of one `StackPool`.
/// Send (it may move to another thread with its owner) but not Sync: one
/// thread uses it at a time, which is what makes its fast path lock-free.
///
/// It cannot reach its pool when dropped, so its owner must call
/// `pool.flush_cache` first; a cache dropped while holding stacks says so on
/// stderr and leaks them (to the pool, which unmaps them when dropped).
pub struct StackCache {
    /// This cache's counters, registered with (and naming) its pool; None
    /// until first used with a pool. An empty cache may move to another
    /// pool; a non-empty one only works with its own.
    slot: Option<Arc<CacheSlot>>,
    /// Per order, the free chunks: `stacks[o][..slot.len[o]]`, the most
    /// recently freed last.
    stacks: [[usize; MAX_CACHED]; NUM_ORDERS],
    _not_sync: PhantomData<Cell<()>>,
}

impl Default for StackCache {
    fn default() -> StackCache {
        StackCache::new()
    }
}

impl StackCache {
    /// An empty cache, not yet tied to a pool.
    pub fn new() -> StackCache {
        StackCache {
            slot: None,
            stacks: [[0; MAX_CACHED]; NUM_ORDERS],
            _not_sync: PhantomData,
        }
    }

    /// Bytes of free stacks the cache holds.
    pub fn cached_bytes(&self) -> usize {
        match &self.slot {
            Some(slot) => (0..NUM_ORDERS)
                .map(|order| slot.len(order) * order_size(order as u8))
                .sum(),
            None => 0,
        }
    }

    /// The cache's slot, if the cache is already working for `pool`.
    #[inline]
    fn slot_for(&self, pool: &StackPool) -> Option<&CacheSlot> {
        match &self.slot {
            Some(slot) if slot.pool_id == pool.id() => Some(slot),
            _ => None,
        }
    }

    /// Fast path of stackalloc: take the most recently freed chunk of
    /// `order` (< NUM_ORDERS), counted as allocated. None, with nothing
    /// done, if the cache is empty for `order` or not yet working for
    /// `pool`; `alloc` then handles it.
    #[inline]
    pub(super) fn pop(&mut self, pool: &StackPool, order: usize) -> Option<usize> {
        let slot = self.slot_for(pool)?;
        let n = slot.len(order).checked_sub(1)?;
        let chunk = self.stacks[order][n];
        slot.set_len(order, n);
        slot.add_alloc();
        Some(chunk)
    }

    /// Fast path of stackfree: keep the chunk `lo` of `order` (<
    /// NUM_ORDERS), counted as freed. Returns false, with nothing done, if
    /// the cache is full for `order` or not yet working for `pool`; `free`
    /// then handles it.
    ///
    /// # Safety
    /// `lo` must be a chunk of `order` from `pool`, and dead.
    #[inline]
    pub(super) unsafe fn push(&mut self, pool: &StackPool, order: usize, lo: usize) -> bool {
        let Some(slot) = self.slot.as_deref().filter(|s| s.pool_id == pool.id()) else {
            return false;
        };
        let n = slot.len(order);
        if n >= capacity(order) {
            return false;
        }
        self.stacks[order][n] = lo;
        slot.set_len(order, n + 1);
        true
    }

    /// Take a chunk of `order` for stackalloc, refilling the order from
    /// `pool` if it is empty. Called on a system stack by the holder of the
    /// cache, when `pop` could not.
    #[cold]
    #[inline(never)]
    pub(super) fn alloc(&mut self, pool: &StackPool, order: u8) -> Result<usize, AllocError> {
        let (slot, stacks) = self.bind(pool);
        let stacks = &mut stacks[usize::from(order)];
        let order = usize::from(order);
        let mut n = slot.len(order);
        if n == 0 {
            let want = (CACHE_ORDER_BYTES / 2 / order_size(order as u8)).max(1);
            n = pool.refill(order as u8, &mut stacks[..want])?;
            slot.add_taken(n as u64);
        }
        let chunk = stacks[n - 1];
        slot.set_len(order, n - 1);
        slot.add_alloc();
        Ok(chunk)
    }

    /// Keep a chunk of `order` freed by stackfree; if the order is full,
    /// first give its older half back to `pool`. Called when `push` could
    /// not.
    ///
    /// # Safety
    /// `chunk` must be a chunk of `order` from `pool`, and dead.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn free(&mut self, pool: &StackPool, order: u8, chunk: usize) {
        let (slot, stacks) = self.bind(pool);
        let stacks = &mut stacks[usize::from(order)];
        let order = usize::from(order);
        let mut n = slot.len(order);
        if n >= capacity(order) {
            let half = capacity(order) / 2;
            // SAFETY: the first `half` chunks of the array are dead chunks
            // of `order` from `pool` that this cache owns; it stops owning
            // them here, as the copy below drops them from the array.
            unsafe { pool.release(order as u8, &stacks[..half]) };
            stacks.copy_within(half..n, 0);
            slot.add_taken((half as u64).wrapping_neg());
            n -= half;
        }
        stacks[n] = chunk;
        slot.set_len(order, n + 1);
    }

    /// Empty the cache for `pool.flush_cache`, which must be this cache's
    /// pool (or the cache must be empty): call `put(order, chunks)` for
    /// every order that holds chunks; they are the caller's from then on,
    /// no longer counted as cached. Returns the bytes given.
    pub(super) fn take_all(
        &mut self,
        pool: &StackPool,
        mut put: impl FnMut(u8, &[usize]),
    ) -> usize {
        if self.cached_bytes() == 0 {
            return 0;
        }
        let (slot, stacks) = self.bind(pool);
        let mut bytes = 0;
        for (order, stack) in stacks.iter().enumerate() {
            let n = slot.len(order);
            if n == 0 {
                continue;
            }
            put(order as u8, &stack[..n]);
            slot.set_len(order, 0);
            slot.add_taken((n as u64).wrapping_neg());
            bytes += n * order_size(order as u8);
        }
        bytes
    }

    /// Make sure the cache works for `pool` and return its slot and arrays:
    /// on first use with a pool, tie the cache to it by taking a counter
    /// slot from it. Refuses to mix pools, since a chunk of one pool given
    /// to another would corrupt both.
    fn bind(&mut self, pool: &StackPool) -> (&CacheSlot, &mut [[usize; MAX_CACHED]; NUM_ORDERS]) {
        if self.slot_for(pool).is_none() {
            self.rebind(pool);
        }
        let slot = self
            .slot
            .as_deref()
            .expect("a bound stack cache has a slot");
        (slot, &mut self.stacks)
    }

    #[cold]
    fn rebind(&mut self, pool: &StackPool) {
        assert!(
            self.cached_bytes() == 0,
            "gstack: a stack cache holding another pool's stacks was used with this pool"
        );
        if let Some(old) = self.slot.take() {
            old.disown();
        }
        let slot = pool.claim_slot();
        debug_assert!(slot.pool_id == pool.id());
        debug_assert!(slot.len.iter().all(|n| n.load(Relaxed) == 0));
        self.slot = Some(slot);
    }
}

impl Drop for StackCache {
    /// The cache cannot reach its pool here; the owner should have flushed
    /// it. Whatever is left stays with the pool, which unmaps it when it
    /// goes away, and is reported. The cache's slot goes back to the pool
    /// for the next cache; its counts stay in the pool's totals, the lost
    /// chunks still as cached.
    fn drop(&mut self) {
        let bytes = self.cached_bytes();
        if let Some(slot) = self.slot.take() {
            if bytes != 0 {
                eprintln!("gstack: stack cache dropped with {bytes} bytes (leaked)");
                // Keep the figures as they were (see CacheSlot::add_to):
                // the bytes stay cached, and frees (allocs + len - taken)
                // stay put.
                let mut chunks = 0u64;
                for order in 0..NUM_ORDERS {
                    chunks += slot.len(order) as u64;
                    slot.set_len(order, 0);
                }
                slot.lost
                    .store(slot.lost.load(Relaxed).wrapping_add(bytes), Relaxed);
                slot.add_taken(chunks.wrapping_neg());
            }
            slot.disown();
        }
    }
}
