//! The global (per-runtime) stack pool.
//!
//! Small movable stacks are chunks of spans: SPAN_SIZE bytes (or a page, if
//! pages are bigger), aligned to their size, each carved into equal chunks
//! of one order. A free chunk holds the address of the next free chunk of
//! its span in its first word. The span table maps a span's base to its
//! order and free list, so a chunk's span is found by masking its address.
//!
//! Guarded stacks have their own mappings and are kept, when free, on
//! lists keyed by size, linked through their first word as well.
//!
//! A large stack lives at the top of its own *reservation* (`sys::reserve`):
//! address space of `reserve_class(size)` bytes (64 times the size, at
//! least 8 MiB, at most 1 GiB) that costs memory only where touched. The part from the
//! lowest address any of its stacks has reached (`rw`) to the top counts as
//! committed, in `sys`. The stack's `hi` stays where it is for the
//! reservation's whole life, so a stack that must double can grow *in
//! place* (`grow_large`): its `lo` moves down, and nothing is copied (the
//! frames and every pointer into them stay valid) and no system call made.
//! A free reservation is kept, with its committed pages, on a list keyed
//! by the class it was made for, and handed to the next stack of that
//! class; so a goroutine that grows to the same depth again touches no
//! fresh page. `release_free` (or a cycle's end) unmaps free reservations
//! and decommits what live ones hold below their stacks.
//!
//! Memory goes back to the system only when no scan cycle is running: a
//! scan may still hold a pointer into a stack freed during the cycle, and
//! must find it mapped and still belonging to the pool (seed 002). So while
//! a cycle runs an emptied span stays mapped (and may be reused), and
//! release_free waits for end_cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::Acquire};
use std::sync::atomic::{Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::cache::{CacheSlot, StackCache};
use super::sys::{self, page_size};
use super::{link, order_size, set_link, AllocError, Stack, StackSource, StackStats};
use super::{NUM_ORDERS, SPAN_SIZE};
use crate::debug::DebugFlags;

/// The pool every stack of one runtime comes from and goes back to. Shared
/// by all threads (Send + Sync); per-thread `StackCache`s sit in front of it
/// for small stacks.
pub struct StackPool {
    /// Distinguishes pools, so a cache cannot mix up their chunks.
    id: usize,
    debug: DebugFlags,
    /// No debug flag keeps small stacks off the caches' fast path (read
    /// once from `debug`, so the fast path tests one plain bool).
    cache_fast: bool,
    /// Bytes per span: SPAN_SIZE, or the page size if that is larger.
    span_bytes: usize,
    stats: Counters,
    /// Every cache's counters (see CacheSlot), in a list that only grows
    /// while the pool lives, so stats() can walk it without a lock.
    slots: AtomicPtr<SlotNode>,
    inner: Mutex<Inner>,
}

/// The counters behind StackStats that are not kept per cache: what is
/// done without a cache, and what only the pool does. Outside the lock, so
/// that stats() never takes it.
///
/// `in_use`, `allocs` and `frees` are written only with the pool lock held
/// (see `count`), so a plain load and store updates them, with no atomic
/// read-modify-write on the paths that take the lock anyway. `in_use`
/// counts the chunks handed to caches as in use from the moment they leave
/// the pool; stats() subtracts what the caches hold (see the cache module).
/// It may wrap below zero when stacks taken from a cache are freed without
/// one; the sum is exact. `sys` and `spans_released` change around system
/// calls made outside the lock too, so they use read-modify-writes.
#[derive(Default)]
struct Counters {
    in_use: AtomicUsize,
    sys: AtomicUsize,
    allocs: AtomicU64,
    frees: AtomicU64,
    spans_released: AtomicU64,
}

impl Counters {
    /// Add (wrapping) `bytes` to in_use, and the counts to allocs and frees.
    /// `_locked` is the pool's locked state: only its holder writes these.
    fn count(&self, _locked: &Inner, bytes: usize, allocs: u64, frees: u64) {
        let add = |c: &AtomicU64, n: u64| c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        self.in_use
            .store(self.in_use.load(Relaxed).wrapping_add(bytes), Relaxed);
        add(&self.allocs, allocs);
        add(&self.frees, frees);
    }

    /// Count a stack of `size` bytes handed out; with the lock held.
    fn alloc(&self, locked: &Inner, size: usize) {
        self.count(locked, size, 1, 0);
    }

    /// Count a stack of `size` bytes given back; with the lock held.
    fn free(&self, locked: &Inner, size: usize) {
        self.count(locked, size.wrapping_neg(), 0, 1);
    }
}

/// A link of the pool's list of cache slots.
struct SlotNode {
    slot: Arc<CacheSlot>,
    next: *mut SlotNode,
}

/// Everything behind the pool lock.
struct Inner {
    /// Every mapped span, by base address.
    spans: HashMap<usize, Span, BuildHasherDefault<SpanHasher>>,
    /// Per order, the spans that have at least one free chunk. Chunks are
    /// taken from the lowest such span, which packs stacks into few spans
    /// and lets the others empty out.
    avail: [BTreeSet<usize>; NUM_ORDERS],
    /// Every large-stack reservation, live or free, by the `hi` of its
    /// stack (which never changes).
    large: HashMap<usize, Resv, BuildHasherDefault<SpanHasher>>,
    /// Free large-stack reservations: class -> their `hi`s (a class once
    /// used keeps its entry, so reuse allocates nothing).
    large_free: BTreeMap<usize, Vec<usize>>,
    /// Free guarded stacks: as for `large`.
    guarded: BTreeMap<usize, usize>,
    /// A scan cycle is in progress: give nothing back to the system.
    in_cycle: bool,
    /// release_free was called during the cycle; do it at end_cycle.
    release_pending: bool,
}

/// The address space a large stack lives in: `[base, top)`, of which
/// `[rw, top)` is committed (may have been touched; counted in `sys`) and
/// the rest untouched since it was mapped or decommitted. Its stack is
/// `[lo, hi)` with `rw <= lo`; `hi` (the key in `Inner::large`) is `top`,
/// or a little below it when the first stack made in it was smaller than a
/// page.
struct Resv {
    base: usize,
    top: usize,
    rw: usize,
    /// `lo` of the stack while it is live.
    lo: usize,
    /// The class it was made for, whose free list it goes back to.
    class: usize,
    free: bool,
}

/// Bytes of address space reserved for a large stack of `size` bytes, and
/// the key of the free list it goes back to: room to double six times in
/// place, and at least 8 MiB (so that a goroutine's first large stack,
/// 32 KiB, grows to 8 MiB without a copy, and stacks up to 128 KiB share
/// one class), but at most 1 GiB unless the stack itself is larger.
/// Address space only: it costs memory where touched.
fn reserve_class(size: usize) -> usize {
    const FACTOR: usize = 64;
    const MIN: usize = 8 << 20;
    const MAX: usize = 1 << 30;
    size.saturating_mul(FACTOR).clamp(MIN, MAX).max(size)
}

/// One span carved into chunks of one order.
struct Span {
    order: u8,
    /// Number of free chunks.
    nfree: usize,
    /// First free chunk, 0 if none.
    free: usize,
}

/// Hashes span base addresses, which are all multiples of the span size:
/// multiply by an odd constant, then fold the well-mixed high half into the
/// low bits the table indexes by.
#[derive(Default)]
struct SpanHasher(u64);

impl Hasher for SpanHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

impl StackPool {
    /// Make an empty pool; nothing is mapped until the first allocation.
    /// `debug` decides for the pool's whole life how stacks are allocated.
    pub fn new(debug: DebugFlags) -> StackPool {
        StackPool {
            id: NEXT_POOL_ID.fetch_add(1, Relaxed),
            debug,
            cache_fast: !(debug.efence
                || debug.faultonfree
                || debug.stackpoison
                || debug.stacknocache),
            span_bytes: SPAN_SIZE.max(page_size()),
            stats: Counters::default(),
            slots: AtomicPtr::new(ptr::null_mut()),
            inner: Mutex::new(Inner {
                spans: HashMap::default(),
                avail: Default::default(),
                large: HashMap::default(),
                large_free: BTreeMap::new(),
                guarded: BTreeMap::new(),
                in_cycle: false,
                release_pending: false,
            }),
        }
    }

    /// The debug flags the pool was made with.
    pub fn debug(&self) -> DebugFlags {
        self.debug
    }

    /// The pool's statistics: its own counters plus every cache's slot
    /// (whose cached bytes are not in use). Takes no lock; see StackStats.
    pub fn stats(&self) -> StackStats {
        let c = &self.stats;
        let mut s = StackStats {
            in_use: c.in_use.load(Relaxed),
            sys: c.sys.load(Relaxed),
            cached: 0,
            allocs: c.allocs.load(Relaxed),
            frees: c.frees.load(Relaxed),
            spans_released: c.spans_released.load(Relaxed),
        };
        let mut node = self.slots.load(Acquire);
        while !node.is_null() {
            // SAFETY: nodes are published complete (Release in claim_slot,
            // Acquire above) and freed only when the pool drops.
            let n = unsafe { &*node };
            n.slot.add_to(&mut s);
            node = n.next;
        }
        s
    }

    /// Check that the bytes in use equal `live_sum`, the sum of the sizes of
    /// the stacks the caller knows to be live. Meant for tests and for a
    /// runtime that has just counted its goroutines' stacks; no stackalloc
    /// or stackfree may run concurrently, or the answer is meaningless.
    pub fn check_accounting(&self, live_sum: usize) -> Result<(), String> {
        let in_use = self.stats().in_use;
        if in_use == live_sum {
            Ok(())
        } else {
            Err(format!(
                "stack accounting: pool has {in_use} bytes in use, but the live stacks add up to {live_sum}"
            ))
        }
    }

    /// Start a scan cycle: until end_cycle, no stack memory goes back to the
    /// system, so pointers into stacks freed meanwhile stay harmless.
    /// Must not be called while a cycle is already in progress.
    pub fn begin_cycle(&self) {
        let mut inner = self.lock();
        assert!(!inner.in_cycle, "gstack: begin_cycle during a cycle");
        inner.in_cycle = true;
    }

    /// End the scan cycle begun by begin_cycle: give back the spans that
    /// emptied and the free large stacks, and do a release_free that was
    /// asked for during the cycle.
    pub fn end_cycle(&self) {
        let mut inner = self.lock();
        assert!(inner.in_cycle, "gstack: end_cycle without begin_cycle");
        inner.in_cycle = false;
        let all = std::mem::take(&mut inner.release_pending);
        self.release_idle(&mut inner, all);
    }

    /// Give every idle span, free large stack and free guarded stack back to
    /// the system. During a scan cycle this waits for end_cycle. Stacks held
    /// by caches are not idle; flush the caches first to include them.
    pub fn release_free(&self) {
        let mut inner = self.lock();
        if inner.in_cycle {
            inner.release_pending = true;
        } else {
            self.release_idle(&mut inner, true);
        }
    }

    /// Move everything in `cache` back to the pool, under one lock. Call it
    /// before dropping a cache (or its thread), and before release_free if
    /// cached memory should go back too. `cache` must belong to this pool
    /// (or be empty).
    pub fn flush_cache(&self, cache: &mut StackCache) {
        if cache.cached_bytes() == 0 {
            return;
        }
        let mut inner = self.lock();
        // take_all refuses a non-empty cache of another pool.
        let bytes = cache.take_all(self, |order, chunks| {
            // SAFETY: a cache holds only dead chunks of this pool (take_all
            // checked), each once, and gives them up here.
            unsafe { self.put_chunks(&mut inner, order, chunks) }
        });
        self.stats.count(&inner, bytes.wrapping_neg(), 0, 0);
    }

    // ---- for stackalloc / stackfree and the caches ----

    /// This pool's identity, for StackCache.
    #[inline]
    pub(super) fn id(&self) -> usize {
        self.id
    }

    /// Whether small stacks may take the caches' fast path: no debug flag
    /// asks for anything else.
    #[inline]
    pub(super) fn cache_fast(&self) -> bool {
        self.cache_fast
    }

    /// Give a new cache a counter slot: one a dropped cache gave up, else a
    /// new one added to the list. Called once per cache and pool.
    pub(super) fn claim_slot(&self) -> Arc<CacheSlot> {
        let mut node = self.slots.load(Acquire);
        while !node.is_null() {
            // SAFETY: as in stats().
            let n = unsafe { &*node };
            if n.slot.try_claim() {
                return Arc::clone(&n.slot);
            }
            node = n.next;
        }
        let slot = Arc::new(CacheSlot::new_owned(self.id));
        let node = Box::into_raw(Box::new(SlotNode {
            slot: Arc::clone(&slot),
            next: ptr::null_mut(),
        }));
        let mut head = self.slots.load(Relaxed);
        loop {
            // SAFETY: node is ours until the exchange below publishes it.
            unsafe { (*node).next = head };
            match self
                .slots
                .compare_exchange_weak(head, node, Release, Relaxed)
            {
                Ok(_) => return slot,
                Err(now) => head = now,
            }
        }
    }

    /// Take one chunk of `order` for a caller without a cache, counted as
    /// allocated. Needs no precondition; may map a new span.
    pub(super) fn alloc_order(&self, order: u8) -> Result<usize, AllocError> {
        let mut inner = self.lock();
        let chunk = self.take_chunk(&mut inner, order)?;
        self.stats.alloc(&inner, order_size(order));
        Ok(chunk)
    }

    /// Put back a chunk of `order` freed by a caller without a cache,
    /// counted as freed.
    ///
    /// # Safety
    /// `chunk` must be a chunk of `order` taken from this pool and dead.
    pub(super) unsafe fn free_order(&self, order: u8, chunk: usize) {
        let mut inner = self.lock();
        // SAFETY: the caller guarantees the chunk is ours and dead.
        unsafe { self.put_chunk(&mut inner, order, chunk) };
        self.stats.free(&inner, order_size(order));
    }

    /// Take chunks of `order` for a cache, under one lock, into `out` (from
    /// its start) until it is full. Returns how many; they count as in use
    /// from now on (the cache counts them as cached). Fails only if not
    /// even one chunk can be had.
    pub(super) fn refill(&self, order: u8, out: &mut [usize]) -> Result<usize, AllocError> {
        let mut n = 0;
        let mut inner = self.lock();
        for slot in out.iter_mut() {
            match self.take_chunk(&mut inner, order) {
                Ok(chunk) => *slot = chunk,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
            n += 1;
        }
        self.stats.count(&inner, n * order_size(order), 0, 0);
        Ok(n)
    }

    /// Take back from a cache the chunks of `order` in `chunks`, under one
    /// lock; they no longer count as in use (the cache uncounts them as
    /// cached).
    ///
    /// # Safety
    /// `chunks` must be distinct dead chunks of `order` from this pool, no
    /// longer owned by the cache.
    pub(super) unsafe fn release(&self, order: u8, chunks: &[usize]) {
        let mut inner = self.lock();
        // SAFETY: the caller's guarantee.
        unsafe { self.put_chunks(&mut inner, order, chunks) };
        let bytes = chunks.len() * order_size(order);
        self.stats.count(&inner, bytes.wrapping_neg(), 0, 0);
    }

    /// Allocate a large movable stack of `size` bytes (a power of two >=
    /// SPAN_SIZE), counted as allocated: the top of a free reservation of
    /// its class, else of a new one. Returns the stack and whether it was
    /// reused (not fresh zeroed memory).
    pub(super) fn alloc_large(&self, size: usize) -> Result<(Stack, bool), AllocError> {
        let page = page_size();
        let class = reserve_class(size);
        let mut guard = self.lock();
        let inner = &mut *guard;
        // The most recently freed reservation of the class with room for
        // `size` (a fallback mapping, made when the address space was short,
        // has room only for its first stack: it is skipped, not retried).
        let found = inner.large_free.get_mut(&class).and_then(|list| {
            let large = &inner.large;
            let i = list.iter().rposition(|hi| {
                let base = large.get(hi).expect("free reservation in the table").base;
                hi.checked_sub(size).is_some_and(|lo| lo >= base)
            })?;
            Some(list.remove(i))
        });
        if let Some(hi) = found {
            let r = inner
                .large
                .get_mut(&hi)
                .expect("free reservation in the table");
            debug_assert!(r.free);
            // A class holds several sizes (up to 128 KiB, or from 16 MiB):
            // the stack keeps the reservation's `hi`.
            if let Some(lo) = hi.checked_sub(size).filter(|&lo| lo >= r.base) {
                let want = lo & !(page - 1);
                if want < r.rw {
                    self.stats.sys.fetch_add(r.rw - want, Relaxed);
                    r.rw = want;
                }
                r.lo = lo;
                r.free = false;
                self.stats.alloc(inner, size);
                let stk = Stack {
                    lo,
                    hi,
                    source: StackSource::Large,
                };
                return Ok((stk, true));
            }
            unreachable!("a free reservation chosen for its room has none");
        }
        // Map without holding the lock.
        drop(guard);
        let rw_len = sys::round_up(size, page).ok_or(AllocError::OutOfMemory(size))?;
        let len = sys::round_up(class, page).ok_or(AllocError::OutOfMemory(size))?;
        // A reservation with room to grow; if the address space is short,
        // just the stack (it will move when it grows, as any stack may).
        let (base, top) = match sys::reserve(len) {
            Some(base) => (base, base + len),
            None => {
                let base = sys::map(rw_len).ok_or(AllocError::OutOfMemory(size))?;
                (base, base + rw_len)
            }
        };
        self.stats.sys.fetch_add(rw_len, Relaxed);
        let lo = top - rw_len;
        let hi = lo + size;
        let mut inner = self.lock();
        inner.large.insert(
            hi,
            Resv {
                base,
                top,
                rw: lo,
                lo,
                class,
                free: false,
            },
        );
        self.stats.alloc(&inner, size);
        Ok((
            Stack {
                lo,
                hi,
                source: StackSource::Large,
            },
            false,
        ))
    }

    /// Grow the large stack `stk` in place to `size` bytes (more than its
    /// size), counted as one stack freed and one allocated: the same `hi`,
    /// `lo` moved down (the pages below counted as committed if they were
    /// not), every byte of `stk` left where it is; no system call. None,
    /// with nothing done, if its reservation has no room.
    ///
    /// # Safety
    /// `stk` must be a live large stack from this pool, and the caller its
    /// only user; from a Some on, the returned stack replaces it (it must
    /// not be freed or grown again).
    pub(super) unsafe fn grow_large(&self, stk: Stack, size: usize) -> Option<Stack> {
        let page = page_size();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let r = match inner.large.get_mut(&stk.hi) {
            Some(r) if !r.free && r.lo == stk.lo => r,
            _ => panic!("gstack: growth of {stk:?}, which is not a live large stack of this pool"),
        };
        let lo = stk.hi.checked_sub(size).filter(|&lo| lo >= r.base)?;
        let want = lo & !(page - 1);
        if want < r.rw {
            self.stats.sys.fetch_add(r.rw - want, Relaxed);
            r.rw = want;
        }
        r.lo = lo;
        self.stats.count(inner, size.wrapping_sub(stk.size()), 1, 1);
        Some(Stack {
            lo,
            hi: stk.hi,
            source: StackSource::Large,
        })
    }

    /// Keep a freed large stack's reservation for reuse, counted as freed.
    ///
    /// # Safety
    /// `stk` must be a large stack from this pool, and dead.
    pub(super) unsafe fn free_large(&self, stk: Stack) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let class = match inner.large.get_mut(&stk.hi) {
            Some(r) if !r.free && r.lo == stk.lo => {
                r.free = true;
                r.class
            }
            _ => {
                panic!("gstack: stackfree of {stk:?}, which is not a live large stack of this pool")
            }
        };
        inner.large_free.entry(class).or_default().push(stk.hi);
        self.stats.free(inner, stk.size());
    }

    /// Allocate a guarded stack of `size` bytes (a page multiple), counted
    /// as allocated: reuse a free one of that size, guard page and all, else
    /// map `size` plus a guard page and protect the guard. Returns the stack
    /// and whether it was reused.
    pub(super) fn alloc_guarded(&self, size: usize) -> Result<(Stack, bool), AllocError> {
        let mut inner = self.lock();
        // SAFETY: the lists hold only dead guarded stacks of the keyed size.
        if let Some(lo) = unsafe { pop_keyed(&mut inner.guarded, size) } {
            self.stats.alloc(&inner, size);
            return Ok((
                Stack {
                    lo,
                    hi: lo + size,
                    source: StackSource::Guarded,
                },
                true,
            ));
        }
        // Map without holding the lock.
        drop(inner);
        let lo = self.map_guarded(size)?;
        self.stats.alloc(&self.lock(), size);
        Ok((
            Stack {
                lo,
                hi: lo + size,
                source: StackSource::Guarded,
            },
            false,
        ))
    }

    /// Keep a freed guarded stack for reuse, counted as freed; its guard
    /// page stays.
    ///
    /// # Safety
    /// `stk` must be a guarded stack from this pool, and dead.
    pub(super) unsafe fn free_guarded(&self, stk: Stack) {
        let mut inner = self.lock();
        // SAFETY: the caller guarantees the stack is ours and dead.
        unsafe { push_keyed(&mut inner.guarded, stk.size(), stk.lo) };
        self.stats.free(&inner, stk.size());
    }

    /// Allocate a stack of `size` bytes (movable or guarded) with its own
    /// mapping and a guard page below, for GSDEBUG=efence/faultonfree;
    /// counted as allocated.
    pub(super) fn alloc_system(&self, size: usize) -> Result<Stack, AllocError> {
        let len = sys::round_up(size, page_size()).ok_or(AllocError::OutOfMemory(size))?;
        let lo = self.map_guarded(len)?;
        self.stats.alloc(&self.lock(), size);
        Ok(Stack {
            lo,
            hi: lo + size,
            source: StackSource::System,
        })
    }

    /// Give back a system stack, counted as freed: under faultonfree make it
    /// inaccessible for ever (its addresses are deliberately never reused,
    /// so a stale access faults), else unmap it. Either way it no longer
    /// counts in `sys`.
    ///
    /// # Safety
    /// `stk` must be a system stack from this pool, and dead.
    pub(super) unsafe fn free_system(&self, stk: Stack) {
        let page = page_size();
        let len = page + stk.size().next_multiple_of(page);
        // SAFETY: the caller guarantees the mapping [lo - page, lo + len) is
        // ours (alloc_system made it) and dead.
        unsafe {
            if self.debug.faultonfree {
                sys::fault_forever(stk.lo - page, len);
            } else {
                sys::unmap(stk.lo - page, len);
            }
        }
        self.stats.sys.fetch_sub(len, Relaxed);
        self.stats.free(&self.lock(), stk.size());
    }

    // ---- internals ----

    /// Lock the pool. Every panic while the lock is held happens before the
    /// state is changed, so a poisoned lock still guards a consistent state.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of chunks of `order` in a span.
    fn chunks_per_span(&self, order: u8) -> usize {
        self.span_bytes / order_size(order)
    }

    /// Map `size` bytes (a page multiple) plus a PROT_NONE guard page below
    /// them, count the mapping in `sys`, and return the start of the usable
    /// part.
    fn map_guarded(&self, size: usize) -> Result<usize, AllocError> {
        let page = page_size();
        let len = size
            .checked_add(page)
            .ok_or(AllocError::OutOfMemory(size))?;
        let base = sys::map(len).ok_or(AllocError::OutOfMemory(size))?;
        // SAFETY: the guard page is the first page of the mapping just made,
        // which nothing else knows about.
        if !unsafe { sys::protect_none(base, page) } {
            // SAFETY: as above; the whole mapping is ours and unused.
            unsafe { sys::unmap(base, len) };
            return Err(AllocError::OutOfMemory(size));
        }
        self.stats.sys.fetch_add(len, Relaxed);
        Ok(base + page)
    }

    /// Take one free chunk of `order` from the lowest span that has one,
    /// mapping and carving a new span if none has. Called with the lock held.
    fn take_chunk(&self, inner: &mut Inner, order: u8) -> Result<usize, AllocError> {
        let base = match inner.avail[usize::from(order)].first() {
            Some(&base) => base,
            None => self.new_span(inner, order)?,
        };
        let span = inner
            .spans
            .get_mut(&base)
            .expect("available span in the span table");
        let chunk = span.free;
        // SAFETY: chunk is the first free chunk of a mapped span; its first
        // word links to the next free chunk (or 0).
        span.free = unsafe { link(chunk) };
        span.nfree -= 1;
        if span.nfree == 0 {
            inner.avail[usize::from(order)].remove(&base);
        }
        Ok(chunk)
    }

    /// Map a new span for `order`, carve it into free chunks (lowest address
    /// first) and enter it in the span table. Called with the lock held.
    fn new_span(&self, inner: &mut Inner, order: u8) -> Result<usize, AllocError> {
        let size = order_size(order);
        let base = sys::map_aligned(self.span_bytes, self.span_bytes)
            .ok_or(AllocError::OutOfMemory(size))?;
        self.stats.sys.fetch_add(self.span_bytes, Relaxed);
        let mut free = 0;
        for chunk in (base..base + self.span_bytes).step_by(size).rev() {
            // SAFETY: the chunk lies in the span just mapped, which nothing
            // else knows about.
            unsafe { set_link(chunk, free) };
            free = chunk;
        }
        let nfree = self.chunks_per_span(order);
        inner.spans.insert(base, Span { order, nfree, free });
        inner.avail[usize::from(order)].insert(base);
        Ok(base)
    }

    /// Put one chunk of `order` back on its span's free list; unmap the span
    /// if that empties it and no cycle is running. Called with the lock held.
    ///
    /// # Safety
    /// `chunk` must be a chunk of `order` taken from this pool, and dead.
    unsafe fn put_chunk(&self, inner: &mut Inner, order: u8, chunk: usize) {
        let base = chunk & !(self.span_bytes - 1);
        let span = match inner.spans.get_mut(&base) {
            Some(span) if span.order == order => span,
            _ => panic!(
                "gstack: stackfree of {chunk:#x} (order {order}), which is not from this pool"
            ),
        };
        // SAFETY: the caller guarantees the chunk is ours and dead; it lies
        // in a mapped span.
        unsafe { set_link(chunk, span.free) };
        span.free = chunk;
        span.nfree += 1;
        let empty = span.nfree == self.chunks_per_span(order);
        if span.nfree == 1 {
            inner.avail[usize::from(order)].insert(base);
        }
        if empty && !inner.in_cycle {
            self.release_span(inner, base);
        }
    }

    /// Put back every chunk of `chunks`. Called with the lock held.
    ///
    /// # Safety
    /// `chunks` must be distinct dead chunks of `order` from this pool,
    /// owned by nobody else.
    unsafe fn put_chunks(&self, inner: &mut Inner, order: u8, chunks: &[usize]) {
        for &chunk in chunks {
            // SAFETY: the caller's guarantee.
            unsafe { self.put_chunk(inner, order, chunk) };
        }
    }

    /// Unmap an empty span and drop it from the tables. Called with the lock
    /// held.
    fn release_span(&self, inner: &mut Inner, base: usize) {
        // SAFETY: every chunk of the span is free (the caller checked), so no
        // stack and no cache uses it; the mapping is exactly the span.
        unsafe { sys::unmap(base, self.span_bytes) };
        let span = inner
            .spans
            .remove(&base)
            .expect("released span in the span table");
        inner.avail[usize::from(span.order)].remove(&base);
        self.stats.sys.fetch_sub(self.span_bytes, Relaxed);
        self.stats.spans_released.fetch_add(1, Relaxed);
    }

    /// Give back to the system every empty span and every free large stack
    /// (its whole reservation), decommit what live large stacks' reservations
    /// hold below them, and, if `guarded`, give back every free guarded
    /// stack. Called with the lock held and no cycle running.
    fn release_idle(&self, inner: &mut Inner, guarded: bool) {
        let page = page_size();
        for order in 0..NUM_ORDERS as u8 {
            let empty: Vec<usize> = inner.avail[usize::from(order)]
                .iter()
                .copied()
                .filter(|base| inner.spans[base].nfree == self.chunks_per_span(order))
                .collect();
            for base in empty {
                self.release_span(inner, base);
            }
        }
        for his in std::mem::take(&mut inner.large_free).into_values() {
            for hi in his {
                let r = inner
                    .large
                    .remove(&hi)
                    .expect("free reservation in the table");
                // SAFETY: a free reservation holds no stack; it is its own
                // mapping, which nothing uses any more.
                unsafe { sys::unmap(r.base, r.top - r.base) };
                self.stats.sys.fetch_sub(r.top - r.rw, Relaxed);
            }
        }
        // What live stacks grew into and shrank back from, or what their
        // reservation held from an earlier, deeper stack.
        for r in inner.large.values_mut() {
            let keep = r.lo & !(page - 1);
            // SAFETY: [rw, keep) lies in the reservation below its live
            // stack, so nothing uses it; its stack's owner cannot grow it
            // meanwhile (grow_large takes the lock we hold).
            if r.rw < keep && unsafe { sys::decommit(r.rw, keep - r.rw) } {
                self.stats.sys.fetch_sub(keep - r.rw, Relaxed);
                r.rw = keep;
            }
        }
        if guarded {
            for (size, head) in std::mem::take(&mut inner.guarded) {
                let len = size + page;
                // SAFETY: the list holds dead guarded stacks, each its own
                // mapping of a guard page and `size` bytes.
                let n = unsafe { unmap_list(head, |lo| (lo - page, len)) };
                self.stats.sys.fetch_sub(n * len, Relaxed);
            }
        }
    }
}

impl Drop for StackPool {
    /// Unmap everything the pool holds: every span (whatever its chunks are
    /// doing), every free large stack's reservation and every free guarded
    /// stack. Stacks still in use
    /// outside spans are the owner's bug; they are left alone.
    fn drop(&mut self) {
        let mut node = *self.slots.get_mut();
        while !node.is_null() {
            // SAFETY: every node was made by Box::into_raw in claim_slot, and
            // with &mut self no one else can be walking the list.
            let n = unsafe { Box::from_raw(node) };
            node = n.next;
        }
        let page = page_size();
        let span_bytes = self.span_bytes;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        for &base in inner.spans.keys() {
            // SAFETY: the pool is going away; nothing may use its spans.
            unsafe { sys::unmap(base, span_bytes) };
        }
        for r in inner.large.values().filter(|r| r.free) {
            // SAFETY: a free reservation holds no stack; it is its own
            // mapping.
            unsafe { sys::unmap(r.base, r.top - r.base) };
        }
        for (&size, &head) in &inner.guarded {
            // SAFETY: the list holds dead guarded stacks, each its own
            // mapping starting at its guard page.
            unsafe { unmap_list(head, |lo| (lo - page, size + page)) };
        }
    }
}

/// Take the first stack of the free list for `size`, if there is one.
///
/// # Safety
/// Every list in `lists` must hold only dead stacks, mapped read-write,
/// linked through their first word.
unsafe fn pop_keyed(lists: &mut BTreeMap<usize, usize>, size: usize) -> Option<usize> {
    let head = lists.get_mut(&size)?;
    let lo = *head;
    if lo == 0 {
        return None;
    }
    // SAFETY: lo is a dead stack on the list; its first word is the link.
    *head = unsafe { link(lo) };
    Some(lo)
}

/// Push the dead stack at `lo` onto the free list for `size`.
///
/// # Safety
/// `[lo, lo + size)` must be a dead stack, mapped read-write, that nobody
/// else holds; the lists must be as for pop_keyed.
unsafe fn push_keyed(lists: &mut BTreeMap<usize, usize>, size: usize, lo: usize) {
    let head = lists.entry(size).or_insert(0);
    // SAFETY: the caller guarantees the stack is ours and writable.
    unsafe { set_link(lo, *head) };
    *head = lo;
}

/// Unmap every stack of a free list; `mapping(lo)` gives the (start, len) of
/// the mapping holding the stack at `lo`. Returns how many there were.
///
/// # Safety
/// The list must hold only dead stacks linked through their first word,
/// each alone in the mapping `mapping` names, which nothing uses any more.
unsafe fn unmap_list(mut lo: usize, mapping: impl Fn(usize) -> (usize, usize)) -> usize {
    let mut n = 0;
    while lo != 0 {
        // SAFETY: lo is a dead stack of the list; read its link before the
        // memory goes away.
        let next = unsafe { link(lo) };
        let (start, len) = mapping(lo);
        // SAFETY: the caller guarantees the mapping is ours and dead.
        unsafe { sys::unmap(start, len) };
        n += 1;
        lo = next;
    }
    n
}
