//! The per-thread (later per-P) stack cache.
//!
//! A cache keeps, per order, a list of free chunks linked through their
//! first word, so taking or giving back a small stack is a few loads and
//! stores and no lock. It talks to the pool only in batches: an empty list
//! is refilled to CACHE_ORDER_BYTES/2 under one lock, and a list grown past
//! CACHE_ORDER_BYTES is released down to half under one lock.
//!
//! A cache also counts, in a `CacheSlot` of its own, the stacks allocated
//! and freed through it. Only the thread holding the cache writes the slot,
//! so the counts need no atomic read-modify-write and no shared cache line;
//! the pool sums every slot in `stats()`.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire};
use std::sync::atomic::{Ordering::Relaxed, Ordering::Release};
use std::sync::Arc;

use super::pool::StackPool;
use super::{link, order_size, set_link, AllocError, StackStats};
use super::{CACHE_ORDER_BYTES, NUM_ORDERS};

/// Free chunks of one order, linked through their first word.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FreeList {
    /// First chunk, 0 if the list is empty.
    pub(super) head: usize,
    /// Bytes on the list.
    pub(super) bytes: usize,
}

/// One cache's share of a pool's counters. The pool keeps every slot it
/// gave out and adds them up in `stats()`. A slot is written only by the
/// holder of the cache that owns it (through `&mut StackCache`), so each
/// update is a plain load and store; readers on other threads see either
/// the old or the new value. `in_use` may wrap below zero (a stack counted
/// here may be freed elsewhere); only the sum over all slots and the pool
/// means anything.
#[derive(Default)]
pub(super) struct CacheSlot {
    in_use: AtomicUsize,
    cached: AtomicUsize,
    allocs: AtomicU64,
    frees: AtomicU64,
    /// A live cache owns this slot. A dropped cache gives it up, and the
    /// next new cache of the pool takes it over, counts and all.
    owned: AtomicBool,
}

impl CacheSlot {
    /// A slot already owned by the cache about to use it.
    pub(super) fn new_owned() -> CacheSlot {
        CacheSlot {
            owned: AtomicBool::new(true),
            ..CacheSlot::default()
        }
    }

    /// Take over this slot if no cache owns it. The Acquire pairs with the
    /// Release of the previous owner's `disown`, so its writes are seen.
    pub(super) fn try_claim(&self) -> bool {
        self.owned
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
    }

    /// Add this slot's counts to `s` (wrapping, see the type's comment).
    pub(super) fn add_to(&self, s: &mut StackStats) {
        s.in_use = s.in_use.wrapping_add(self.in_use.load(Relaxed));
        s.cached = s.cached.wrapping_add(self.cached.load(Relaxed));
        s.allocs = s.allocs.wrapping_add(self.allocs.load(Relaxed));
        s.frees = s.frees.wrapping_add(self.frees.load(Relaxed));
    }

    fn disown(&self) {
        self.owned.store(false, Release);
    }
}

/// After `bind`, the cache has a slot.
const BOUND: &str = "a bound stack cache has a counter slot";

/// Add `n` (wrapping) to a counter that only the caller writes.
fn bump(counter: &AtomicUsize, n: usize) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Add one to a count that only the caller writes.
fn bump_count(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

/// A per-thread cache of small free stacks in front of one `StackPool`.
/// Send (it may move to another thread with its owner) but not Sync: one
/// thread uses it at a time, which is what makes its fast path lock-free.
///
/// It cannot reach its pool when dropped, so its owner must call
/// `pool.flush_cache` first; a cache dropped while holding stacks says so on
/// stderr and leaks them (to the pool, which unmaps them when dropped).
pub struct StackCache {
    lists: [FreeList; NUM_ORDERS],
    /// Id of the pool the cache works for; 0 if none yet. An empty cache
    /// may move to another pool; a non-empty one only works with its own.
    pool_id: usize,
    /// This cache's counters, registered with the pool `pool_id`.
    slot: Option<Arc<CacheSlot>>,
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
            lists: [FreeList::default(); NUM_ORDERS],
            pool_id: 0,
            slot: None,
            _not_sync: PhantomData,
        }
    }

    /// Bytes of free stacks the cache holds.
    pub fn cached_bytes(&self) -> usize {
        self.lists.iter().map(|list| list.bytes).sum()
    }

    /// Count a stack of `size` bytes handed out by stackalloc with this
    /// cache, whichever path it came from.
    pub(super) fn note_alloc(&mut self, pool: &StackPool, size: usize) {
        self.bind(pool);
        let slot = self.slot.as_deref().expect(BOUND);
        bump(&slot.in_use, size);
        bump_count(&slot.allocs);
    }

    /// Count a stack of `size` bytes given back by stackfree with this
    /// cache, whichever path it goes to.
    pub(super) fn note_free(&mut self, pool: &StackPool, size: usize) {
        self.bind(pool);
        let slot = self.slot.as_deref().expect(BOUND);
        bump(&slot.in_use, size.wrapping_neg());
        bump_count(&slot.frees);
    }

    /// Take a chunk of `order` for stackalloc, refilling the list from
    /// `pool` if it is empty. Called on a system stack by the holder of the
    /// cache.
    pub(super) fn alloc(&mut self, pool: &StackPool, order: u8) -> Result<usize, AllocError> {
        let size = order_size(order);
        self.bind(pool);
        let slot = self.slot.as_deref().expect(BOUND);
        let list = &mut self.lists[usize::from(order)];
        if list.head == 0 {
            *list = pool.refill(order, CACHE_ORDER_BYTES / 2)?;
            bump(&slot.cached, list.bytes);
        }
        let chunk = list.head;
        // SAFETY: chunk heads a list of free chunks this cache owns, linked
        // through their first words.
        list.head = unsafe { link(chunk) };
        list.bytes -= size;
        bump(&slot.cached, size.wrapping_neg());
        Ok(chunk)
    }

    /// Keep a chunk of `order` freed by stackfree; if the list then holds
    /// more than CACHE_ORDER_BYTES, give chunks back to `pool` until it holds
    /// half of that.
    ///
    /// # Safety
    /// `chunk` must be a chunk of `order` from `pool`, and dead.
    pub(super) unsafe fn free(&mut self, pool: &StackPool, order: u8, chunk: usize) {
        let size = order_size(order);
        self.bind(pool);
        let slot = self.slot.as_deref().expect(BOUND);
        let list = &mut self.lists[usize::from(order)];
        // SAFETY: the caller gives us the dead chunk; its first word becomes
        // the link.
        unsafe { set_link(chunk, list.head) };
        list.head = chunk;
        list.bytes += size;
        bump(&slot.cached, size);
        if list.bytes <= CACHE_ORDER_BYTES {
            return;
        }
        // Cut the list after the chunks to release, before the pool writes
        // its own links into them.
        let n = (list.bytes - CACHE_ORDER_BYTES / 2).div_ceil(size);
        let released = list.head;
        let mut last = released;
        for _ in 1..n {
            // SAFETY: the list holds at least n chunks, linked through their
            // first words.
            last = unsafe { link(last) };
        }
        // SAFETY: as above; last is the n-th chunk.
        list.head = unsafe { link(last) };
        list.bytes -= n * size;
        // SAFETY: the first n chunks from `released` are dead chunks of
        // `order` from `pool`, no longer on our list.
        unsafe { pool.release(order, released, n) };
        bump(&slot.cached, (n * size).wrapping_neg());
    }

    /// Empty the cache for `pool.flush_cache`, which must be this cache's
    /// pool: returns every list, uncounted as cached. The caller becomes
    /// responsible for the chunks.
    pub(super) fn take_all(&mut self, pool: &StackPool) -> [FreeList; NUM_ORDERS] {
        let bytes = self.cached_bytes();
        self.bind(pool);
        let slot = self.slot.as_deref().expect(BOUND);
        bump(&slot.cached, bytes.wrapping_neg());
        std::mem::take(&mut self.lists)
    }

    /// Make sure the cache works for `pool`: on first use with a pool, tie
    /// the cache to it and take a counter slot from it. Refuses to mix
    /// pools, since a chunk of one pool given to another would corrupt both.
    #[inline]
    fn bind(&mut self, pool: &StackPool) {
        if self.pool_id != pool.id() {
            self.rebind(pool);
        }
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
        self.slot = Some(pool.claim_slot());
        self.pool_id = pool.id();
    }
}

impl Drop for StackCache {
    /// The cache cannot reach its pool here; the owner should have flushed
    /// it. Whatever is left stays with the pool, which unmaps it when it
    /// goes away, and is reported. The cache's slot goes back to the pool
    /// for the next cache; its counts stay in the pool's totals.
    fn drop(&mut self) {
        let bytes = self.cached_bytes();
        if bytes != 0 {
            eprintln!("gstack: stack cache dropped with {bytes} bytes (leaked)");
        }
        if let Some(slot) = self.slot.take() {
            slot.disown();
        }
    }
}
