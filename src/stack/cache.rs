//! The per-thread (later per-P) stack cache.
//!
//! A cache keeps, per order, a list of free chunks linked through their
//! first word, so taking or giving back a small stack is a few loads and
//! stores and no lock. It talks to the pool only in batches: an empty list
//! is refilled to CACHE_ORDER_BYTES/2 under one lock, and a list grown past
//! CACHE_ORDER_BYTES is released down to half under one lock.

use std::cell::Cell;
use std::marker::PhantomData;

use super::pool::StackPool;
use super::{link, order_size, set_link, AllocError};
use super::{CACHE_ORDER_BYTES, NUM_ORDERS};

/// Free chunks of one order, linked through their first word.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FreeList {
    /// First chunk, 0 if the list is empty.
    pub(super) head: usize,
    /// Bytes on the list.
    pub(super) bytes: usize,
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
    /// Id of the pool the chunks came from; 0 if none yet. An empty cache
    /// may be used with any pool; a non-empty one only with its own.
    pool_id: usize,
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
        StackCache { lists: [FreeList::default(); NUM_ORDERS], pool_id: 0, _not_sync: PhantomData }
    }

    /// Bytes of free stacks the cache holds.
    pub fn cached_bytes(&self) -> usize {
        self.lists.iter().map(|list| list.bytes).sum()
    }

    /// Id of the pool the cache's chunks came from (0: none yet).
    pub(super) fn pool_id(&self) -> usize {
        self.pool_id
    }

    /// Hand every list to the caller (the pool, flushing), leaving the cache
    /// empty. The caller becomes responsible for the chunks.
    pub(super) fn take_all(&mut self) -> [FreeList; NUM_ORDERS] {
        std::mem::take(&mut self.lists)
    }

    /// Take a chunk of `order` for stackalloc, refilling the list from
    /// `pool` if it is empty. Called on a system stack by the thread that
    /// owns the cache.
    pub(super) fn alloc(&mut self, pool: &StackPool, order: u8) -> Result<usize, AllocError> {
        self.bind(pool);
        let list = &mut self.lists[usize::from(order)];
        if list.head == 0 {
            *list = pool.refill(order, CACHE_ORDER_BYTES / 2)?;
        }
        let chunk = list.head;
        // SAFETY: chunk heads a list of free chunks this cache owns, linked
        // through their first words.
        list.head = unsafe { link(chunk) };
        list.bytes -= order_size(order);
        pool.note_cached(order_size(order), false);
        Ok(chunk)
    }

    /// Keep a chunk of `order` freed by stackfree; if the list then holds
    /// more than CACHE_ORDER_BYTES, give chunks back to `pool` until it holds
    /// half of that.
    ///
    /// # Safety
    /// `chunk` must be a chunk of `order` from `pool`, and dead.
    pub(super) unsafe fn free(&mut self, pool: &StackPool, order: u8, chunk: usize) {
        self.bind(pool);
        let size = order_size(order);
        let list = &mut self.lists[usize::from(order)];
        // SAFETY: the caller gives us the dead chunk; its first word becomes
        // the link.
        unsafe { set_link(chunk, list.head) };
        list.head = chunk;
        list.bytes += size;
        pool.note_cached(size, true);
        if list.bytes <= CACHE_ORDER_BYTES {
            return;
        }
        // Cut the list after the chunks to release, before the pool writes
        // its own links into them.
        let n = (list.bytes - CACHE_ORDER_BYTES / 2).div_ceil(size);
        let released = list.head;
        let mut last = released;
        for _ in 1..n {
            // SAFETY: the list holds more than n chunks, linked through
            // their first words.
            last = unsafe { link(last) };
        }
        // SAFETY: as above; last is the n-th chunk.
        list.head = unsafe { link(last) };
        list.bytes -= n * size;
        // SAFETY: the first n chunks from `released` are dead chunks of
        // `order` from `pool`, no longer on our list.
        unsafe { pool.release(order, released, n) };
    }

    /// Tie the cache to `pool` on first use, and refuse to mix pools: a
    /// chunk of one pool given to another would corrupt both.
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
        self.pool_id = pool.id();
    }
}

impl Drop for StackCache {
    /// The cache cannot reach its pool here; the owner should have flushed
    /// it. Whatever is left stays with the pool, which unmaps it when it
    /// goes away, and is reported.
    fn drop(&mut self) {
        let bytes = self.cached_bytes();
        if bytes != 0 {
            eprintln!("gstack: stack cache dropped with {bytes} bytes (leaked)");
        }
    }
}
