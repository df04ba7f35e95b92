//! The stack pool: every size and kind, reuse, accounting under random
//! mixes, scan cycles, debug modes, and the faults that guard pages and
//! faultonfree promise (proved in child processes).

mod common;

use gstack::debug::DebugFlags;
use gstack::stack::*;
use std::sync::Arc;

const ORDER_SIZES: [usize; NUM_ORDERS] = [1024, 2048, 4096, 8192, 16384];

/// Run `body` as the whole of test `name`, alone in a child process. Tests
/// that check an address is no longer mapped need this: in the shared test
/// process, another test's thread stack or mapping could land there.
fn isolated(name: &str, body: fn()) {
    if common::is_child() {
        body();
        return;
    }
    let out = common::run_child(name, &[]);
    assert!(
        out.status.success(),
        "{name} in a child: {}",
        common::describe(&out)
    );
}

fn page() -> usize {
    page_size()
}

fn round_page(n: usize) -> usize {
    n.next_multiple_of(page())
}

fn flags(set: impl FnOnce(&mut DebugFlags)) -> DebugFlags {
    let mut d = DebugFlags::default();
    set(&mut d);
    d
}

fn alloc(pool: &StackPool, cache: Option<&mut StackCache>, size: usize, kind: StackKind) -> Stack {
    stackalloc(pool, cache, size, kind)
        .unwrap_or_else(|e| panic!("stackalloc({size}, {kind:?}): {e}"))
}

fn free(pool: &StackPool, cache: Option<&mut StackCache>, stk: Stack) {
    // SAFETY: every test frees each stack it allocated exactly once, from
    // the same pool, and stops using it first.
    unsafe { stackfree(pool, cache, stk) }
}

/// Write every word of the stack with its own address, then read it back.
fn fill_and_check(stk: Stack) {
    let words = stk.size() / 8;
    let p = stk.lo as *mut u64;
    for i in 0..words {
        // SAFETY: [lo, hi) is a live stack we own, 8-byte aligned.
        unsafe { p.add(i).write_volatile((stk.lo + i * 8) as u64) };
    }
    for i in 0..words {
        // SAFETY: as above.
        let v = unsafe { p.add(i).read_volatile() };
        assert_eq!(v, (stk.lo + i * 8) as u64, "word {i} of {stk:?}");
    }
}

/// The bytes of `[lo, hi)`.
///
/// # Safety
/// The range must be mapped and readable (a live stack, or a freed one the
/// pool still holds).
unsafe fn bytes(lo: usize, hi: usize) -> &'static [u8] {
    // SAFETY: the caller's guarantee.
    unsafe { std::slice::from_raw_parts(lo as *const u8, hi - lo) }
}

/// Whether the page at `addr` is mapped, inaccessible or not, according to
/// /proc/self/maps (which an emulator such as qemu-user keeps up for the
/// program it runs, unlike mincore for PROT_NONE pages).
fn mapped(addr: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().any(|line| {
        let range = line.split_whitespace().next().unwrap_or("");
        let (lo, hi) = range.split_once('-').expect("a /proc/self/maps range");
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        (lo..hi).contains(&addr)
    })
}

fn assert_empty(pool: &StackPool) {
    let s = pool.stats();
    assert_eq!((s.in_use, s.cached), (0, 0), "{s:?}");
    assert_eq!(s.allocs, s.frees, "{s:?}");
    pool.release_free();
    assert_eq!(pool.stats().sys, 0, "{:?}", pool.stats());
}

#[test]
fn every_order_allocates_aligned_writable_stacks_and_reuses_them() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    for (order, &size) in ORDER_SIZES.iter().enumerate() {
        let a = alloc(&pool, Some(&mut cache), size, StackKind::Movable);
        assert_eq!(a.source, StackSource::Order(order as u8));
        assert_eq!(a.size(), size);
        assert_eq!(a.lo % size, 0, "{a:?} not aligned to its size");
        assert_eq!(a.guard(), None);
        let b = alloc(&pool, Some(&mut cache), size, StackKind::Movable);
        assert!(b.hi <= a.lo || a.hi <= b.lo, "{a:?} and {b:?} overlap");
        fill_and_check(a);
        fill_and_check(b);
        fill_and_check(a);
        free(&pool, Some(&mut cache), a);
        free(&pool, Some(&mut cache), b);
        // The cache hands back the chunk freed last.
        let c = alloc(&pool, Some(&mut cache), size, StackKind::Movable);
        assert_eq!(c.lo, b.lo, "cache did not reuse");
        free(&pool, Some(&mut cache), c);
    }
    assert!(cache.cached_bytes() > 0);
    assert_eq!(pool.stats().cached, cache.cached_bytes());
    pool.flush_cache(&mut cache);
    assert_eq!(cache.cached_bytes(), 0);
    // Flushing emptied every span, so they are all gone already.
    assert_eq!(pool.stats().sys, 0);
    assert_empty(&pool);
}

#[test]
fn every_order_without_a_cache_reuses_from_the_span() {
    let pool = StackPool::new(DebugFlags::default());
    for (order, &size) in ORDER_SIZES.iter().enumerate() {
        let a = alloc(&pool, None, size, StackKind::Movable);
        let b = alloc(&pool, None, size, StackKind::Movable);
        assert_eq!(a.source, StackSource::Order(order as u8));
        assert_eq!((a.lo % size, b.lo % size), (0, 0));
        // One span serves both.
        assert_eq!(a.lo & !(SPAN_SIZE - 1), b.lo & !(SPAN_SIZE - 1));
        assert_eq!(pool.stats().sys, SPAN_SIZE.max(page()));
        fill_and_check(a);
        fill_and_check(b);
        free(&pool, None, a);
        let c = alloc(&pool, None, size, StackKind::Movable);
        assert_eq!(c.lo, a.lo, "pool did not reuse");
        free(&pool, None, c);
        free(&pool, None, b);
        // The span emptied and went back at once.
        assert_eq!(pool.stats().sys, 0);
        assert_eq!(pool.stats().spans_released, order as u64 + 1);
    }
    assert_empty(&pool);
}

#[test]
fn large_stacks_are_page_aligned_writable_and_reused() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    for size in [32 << 10, 64 << 10, 1 << 20, 8 << 20] {
        let a = alloc(&pool, Some(&mut cache), size, StackKind::Movable);
        assert_eq!(a.source, StackSource::Large);
        assert_eq!(a.size(), size);
        // (With pages above 32 KiB a stack that reuses a smaller one's
        // reservation keeps its `hi`, which need not be page-aligned.)
        if page() <= 32 << 10 {
            assert_eq!(a.lo % page(), 0);
        }
        assert_eq!(a.guard(), None);
        fill_and_check(a);
        let sys = pool.stats().sys;
        free(&pool, Some(&mut cache), a);
        assert_eq!(pool.stats().sys, sys, "a free large stack is kept");
        let b = alloc(&pool, Some(&mut cache), size, StackKind::Movable);
        assert_eq!(b.lo, a.lo, "large stack not reused");
        assert_eq!(pool.stats().sys, sys);
        free(&pool, Some(&mut cache), b);
    }
    assert_eq!(
        cache.cached_bytes(),
        0,
        "large stacks never go to the cache"
    );
    // The 32 KiB and 64 KiB stacks are of one reservation class: the second
    // reused the first's address space.
    let s = pool.stats();
    let mapped_sizes = [64 << 10, 1 << 20, 8 << 20].map(round_page);
    if page() <= 32 << 10 {
        assert_eq!(s.sys, mapped_sizes.iter().sum::<usize>());
    }
    assert_empty(&pool);
}

/// The bytes of `stk` hold `want`.
fn holds(stk: Stack, want: u8) -> bool {
    // SAFETY: the callers pass live stacks.
    unsafe { bytes(stk.lo, stk.hi) }.iter().all(|&b| b == want)
}

#[test]
fn large_stacks_grow_in_place_and_keep_their_pages() {
    let pool = StackPool::new(DebugFlags::default());
    let a = alloc(&pool, None, 32 << 10, StackKind::Movable);
    // SAFETY: `a` is live and ours.
    unsafe { std::ptr::write_bytes(a.lo as *mut u8, 0x5a, a.size()) };
    let mut stk = a;
    for size in [64 << 10, 128 << 10, 1 << 20, 4 << 20] {
        let prev = stk;
        // SAFETY: `stk` is live and ours, replaced by the result.
        stk = unsafe { stackgrow(&pool, stk, size) }.expect("grows in place");
        assert_eq!(
            (stk.hi, stk.size(), stk.source),
            (a.hi, size, StackSource::Large)
        );
        let s = pool.stats();
        assert_eq!(
            (s.in_use, s.allocs, s.frees),
            (size, 1 + s.frees, s.frees),
            "{s:?}"
        );
        if page() <= 32 << 10 {
            assert_eq!(s.sys, round_page(size), "{s:?}");
        }
        assert!(holds(a, 0x5a), "the bytes of the first stack stay put");
        let added = Stack { hi: prev.lo, ..stk };
        assert!(holds(added, 0), "fresh pages");
        fill_and_check(added);
    }
    // The reservation has room for 8 MiB (a little less when pages are
    // bigger than 32 KiB), no more.
    // SAFETY: as above; None leaves `stk` as it is.
    assert_eq!(unsafe { stackgrow(&pool, stk, 16 << 20) }, None);
    // SAFETY: as above.
    assert_eq!(
        unsafe { stackgrow(&pool, stk, stk.size()) },
        None,
        "not a growth"
    );
    assert_eq!(pool.stats().in_use, 4 << 20);

    // Freed, it is reused for its first size with every page still
    // committed: the next goroutine grows without a system call.
    free(&pool, None, stk);
    let b = alloc(&pool, None, 32 << 10, StackKind::Movable);
    assert_eq!((b.lo, b.hi), (a.lo, a.hi));
    assert_eq!(pool.stats().sys, 4 << 20);
    // SAFETY: as above.
    let c = unsafe { stackgrow(&pool, b, 1 << 20) }.unwrap();
    assert_eq!(pool.stats().sys, 4 << 20);

    // release_free keeps the live stack and decommits what lies below it;
    // during a cycle it waits for the end.
    pool.begin_cycle();
    pool.release_free();
    assert_eq!(pool.stats().sys, 4 << 20);
    pool.end_cycle();
    assert_eq!(pool.stats().sys, 1 << 20);
    fill_and_check(c);
    // SAFETY: as above: grows into decommitted pages, committed afresh.
    let d = unsafe { stackgrow(&pool, c, 2 << 20) }.unwrap();
    assert!(holds(Stack { hi: c.lo, ..d }, 0));
    assert_eq!(pool.stats().sys, 2 << 20);
    fill_and_check(d);
    free(&pool, None, d);
    assert_empty(&pool);
}

#[test]
fn only_large_stacks_grow_in_place() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    for (size, kind) in [
        (2048, StackKind::Movable),
        (16 << 10, StackKind::Movable),
        (64 << 10, StackKind::Guarded),
    ] {
        let a = alloc(&pool, Some(&mut cache), size, kind);
        // SAFETY: `a` is live and ours; None leaves it as it is.
        assert_eq!(unsafe { stackgrow(&pool, a, 2 * a.size()) }, None, "{a:?}");
        free(&pool, Some(&mut cache), a);
    }
    pool.flush_cache(&mut cache);
    assert_empty(&pool);
    for debug in [flags(|d| d.efence = true), flags(|d| d.faultonfree = true)] {
        let pool = StackPool::new(debug);
        let a = alloc(&pool, None, 64 << 10, StackKind::Movable);
        // SAFETY: as above.
        assert_eq!(unsafe { stackgrow(&pool, a, 128 << 10) }, None, "{debug:?}");
        free(&pool, None, a);
        assert_empty(&pool);
    }
}

#[test]
fn stackpoison_fills_what_a_stack_grows_into() {
    let pool = StackPool::new(flags(|d| d.stackpoison = true));
    let a = alloc(&pool, None, 64 << 10, StackKind::Movable);
    fill_and_check(a);
    // SAFETY: `a` is live and ours, replaced by the result.
    let b = unsafe { stackgrow(&pool, a, 256 << 10) }.unwrap();
    assert!(holds(Stack { hi: a.lo, ..b }, STACK_POISON_NEW));
    free(&pool, None, b);
    assert!(holds(Stack { lo: b.lo + 8, ..b }, STACK_POISON_FREE));
    assert_empty(&pool);
}

#[test]
fn guarded_stacks_have_a_guard_page_and_are_reused() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    for (asked, size) in [
        (4096, round_page(4096)),
        (64 << 10, round_page(64 << 10)),
        (256 << 10, round_page(256 << 10)),
        (5000, round_page(5000)),
        (1, page()),
    ] {
        let a = alloc(&pool, Some(&mut cache), asked, StackKind::Guarded);
        assert_eq!(a.source, StackSource::Guarded);
        assert_eq!(a.size(), size, "asked for {asked}");
        assert_eq!(a.lo % page(), 0);
        assert_eq!(a.guard(), Some((a.lo - page(), a.lo)));
        fill_and_check(a);
        assert_eq!(pool.stats().sys, size + page());
        assert_eq!(pool.stats().in_use, size);
        free(&pool, Some(&mut cache), a);
        let b = alloc(&pool, Some(&mut cache), asked, StackKind::Guarded);
        assert_eq!(b.lo, a.lo, "guarded stack not reused");
        assert_eq!(pool.stats().sys, size + page());
        free(&pool, Some(&mut cache), b);
        pool.release_free();
        assert_eq!(pool.stats().sys, 0);
    }
    assert_empty(&pool);
}

#[test]
fn the_cache_refills_and_releases_in_batches() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    for &size in &ORDER_SIZES {
        let first = alloc(&pool, Some(&mut cache), size, StackKind::Movable);
        // One refill brought half the cache limit; one chunk left it.
        assert_eq!(cache.cached_bytes(), CACHE_ORDER_BYTES / 2 - size);
        let mut live = vec![first];
        for _ in 0..(4 * CACHE_ORDER_BYTES / size) {
            live.push(alloc(&pool, Some(&mut cache), size, StackKind::Movable));
            assert!(cache.cached_bytes() <= CACHE_ORDER_BYTES / 2);
        }
        for stk in live {
            free(&pool, Some(&mut cache), stk);
            assert!(
                cache.cached_bytes() <= CACHE_ORDER_BYTES,
                "{}",
                cache.cached_bytes()
            );
            assert_eq!(pool.stats().cached, cache.cached_bytes());
        }
        assert!(cache.cached_bytes() >= CACHE_ORDER_BYTES / 2);
        pool.flush_cache(&mut cache);
    }
    assert_empty(&pool);
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const MOVABLE_SIZES: [usize; 9] = [1024, 2048, 2048, 4096, 8192, 16384, 32768, 65536, 262144];
const GUARDED_SIZES: [usize; 4] = [4096, 5000, 16384, 65536];

/// A live stack with a tag written at both ends, to catch overlap.
struct Live {
    stk: Stack,
    tag: u64,
}

fn tag_ends(stk: Stack, tag: u64) {
    // SAFETY: the stack is live and ours; both words lie inside it.
    unsafe {
        (stk.lo as *mut u64).write_volatile(tag);
        ((stk.hi - 8) as *mut u64).write_volatile(!tag);
    }
}

fn check_ends(l: &Live) {
    // SAFETY: as in tag_ends.
    let (a, b) = unsafe {
        (
            (l.stk.lo as *const u64).read_volatile(),
            ((l.stk.hi - 8) as *const u64).read_volatile(),
        )
    };
    assert_eq!((a, b), (l.tag, !l.tag), "stack {:?} was overwritten", l.stk);
}

/// The whole footprint of a stack: its guard page too, if it has one.
fn footprint(stk: Stack) -> (usize, usize) {
    (stk.guard().map_or(stk.lo, |g| g.0), stk.hi)
}

fn check_disjoint(live: &[Live]) {
    let mut spans: Vec<(usize, usize)> = live.iter().map(|l| footprint(l.stk)).collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "stacks overlap: {:x?} and {:x?}",
            w[0],
            w[1]
        );
    }
}

/// Random allocs and frees of every kind through `pool` (and `cache`),
/// checking after every step that the accounting equals the live stacks.
/// Frees everything at the end and returns.
fn random_mix(
    pool: &StackPool,
    mut cache: Option<&mut StackCache>,
    seed: u64,
    steps: usize,
    cycles: bool,
) {
    let mut rng = Rng(seed);
    let mut live: Vec<Live> = Vec::new();
    let mut in_cycle = false;
    let mut allocs = pool.stats().allocs;
    for step in 0..steps {
        let roll = rng.below(100);
        if (50..55).contains(&roll) && !live.is_empty() {
            // Grow a live stack in place, as newstack does, if it can.
            let i = rng.below(live.len());
            let old = live[i].stk;
            check_ends(&live[i]);
            // SAFETY: `old` is live, from this pool, and ours alone; on Some
            // the result replaces it in `live`.
            match unsafe { stackgrow(pool, old, old.size() * 2) } {
                Some(new) => {
                    assert_eq!(old.source, StackSource::Large, "step {step}");
                    assert_eq!(
                        (new.hi, new.size()),
                        (old.hi, old.size() * 2),
                        "step {step}"
                    );
                    check_ends(&live[i]); // the old bytes stay where they were
                    fill_and_check(Stack {
                        lo: new.lo,
                        hi: old.lo,
                        ..new
                    });
                    let tag = rng.next();
                    tag_ends(new, tag);
                    live[i] = Live { stk: new, tag };
                    allocs += 1;
                }
                // A large stack may legitimately not grow in place (its
                // reservation is used up, or it is a fallback mapping); the
                // pool must then have left its bytes as they were.
                None => check_ends(&live[i]),
            }
        } else if roll < 55 || live.is_empty() {
            let (size, kind) = if rng.below(5) == 0 {
                (
                    GUARDED_SIZES[rng.below(GUARDED_SIZES.len())],
                    StackKind::Guarded,
                )
            } else {
                (
                    MOVABLE_SIZES[rng.below(MOVABLE_SIZES.len())],
                    StackKind::Movable,
                )
            };
            let stk = alloc(pool, cache.as_deref_mut(), size, kind);
            assert!(stk.size() >= size);
            let tag = rng.next();
            tag_ends(stk, tag);
            live.push(Live { stk, tag });
            allocs += 1;
        } else if roll < 97 {
            let l = live.swap_remove(rng.below(live.len()));
            check_ends(&l);
            free(pool, cache.as_deref_mut(), l.stk);
        } else if cycles {
            if in_cycle {
                pool.end_cycle();
            } else {
                pool.begin_cycle();
            }
            in_cycle = !in_cycle;
        } else {
            pool.release_free();
        }
        let s = pool.stats();
        let live_sum: usize = live.iter().map(|l| l.stk.size()).sum();
        pool.check_accounting(live_sum)
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        assert_eq!(s.allocs, allocs, "step {step}");
        if let Some(c) = cache.as_deref() {
            assert_eq!(s.cached, c.cached_bytes(), "step {step}");
        }
        assert!(s.sys >= s.in_use + s.cached, "step {step}: {s:?}");
        if step % 64 == 0 {
            check_disjoint(&live);
            live.iter().for_each(check_ends);
        }
    }
    check_disjoint(&live);
    for l in live {
        check_ends(&l);
        free(pool, cache.as_deref_mut(), l.stk);
    }
    if in_cycle {
        pool.end_cycle();
    }
}

fn random_mix_in_mode(debug: DebugFlags, with_cache: bool, steps: usize) {
    for seed in [1, 0x9e37_79b9, 0xdead_beef_cafe] {
        let pool = StackPool::new(debug);
        let mut cache = StackCache::new();
        let cache_arg = if with_cache { Some(&mut cache) } else { None };
        random_mix(&pool, cache_arg, seed, steps, seed != 1);
        if debug.efence || debug.faultonfree || debug.stacknocache || !with_cache {
            assert_eq!(cache.cached_bytes(), 0, "the cache was bypassed");
        }
        pool.flush_cache(&mut cache);
        assert_empty(&pool);
    }
}

#[test]
fn accounting_matches_live_stacks_with_a_cache() {
    random_mix_in_mode(DebugFlags::default(), true, 4000);
}

#[test]
fn accounting_matches_live_stacks_without_a_cache() {
    random_mix_in_mode(DebugFlags::default(), false, 4000);
}

#[test]
fn accounting_matches_live_stacks_with_stacknocache() {
    random_mix_in_mode(flags(|d| d.stacknocache = true), true, 3000);
}

#[test]
fn accounting_matches_live_stacks_with_stackpoison() {
    random_mix_in_mode(flags(|d| d.stackpoison = true), true, 1500);
}

#[test]
fn accounting_matches_live_stacks_with_efence() {
    random_mix_in_mode(flags(|d| d.efence = true), true, 1500);
}

#[test]
fn accounting_matches_live_stacks_with_faultonfree() {
    random_mix_in_mode(flags(|d| d.faultonfree = true), true, 600);
}

#[test]
fn accounting_holds_with_threads_sharing_a_pool() {
    let pool = Arc::new(StackPool::new(DebugFlags::default()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut rng = Rng(t + 17);
                let mut cache = StackCache::new();
                let mut live: Vec<Live> = Vec::new();
                for _ in 0..3000 {
                    if rng.below(2) == 0 || live.is_empty() {
                        let size = MOVABLE_SIZES[rng.below(MOVABLE_SIZES.len())];
                        // Some threads go straight to the pool.
                        let c = if t % 2 == 0 { Some(&mut cache) } else { None };
                        let stk = alloc(&pool, c, size, StackKind::Movable);
                        let tag = rng.next();
                        tag_ends(stk, tag);
                        live.push(Live { stk, tag });
                    } else {
                        let l = live.swap_remove(rng.below(live.len()));
                        check_ends(&l);
                        free(&pool, Some(&mut cache), l.stk);
                    }
                }
                for l in live {
                    check_ends(&l);
                    free(&pool, Some(&mut cache), l.stk);
                }
                pool.flush_cache(&mut cache);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(pool.stats().allocs, pool.stats().frees);
    assert_empty(&pool);
}

/// Every figure of `StackStats` is exact after every step, whichever way a
/// stack goes: allocated through one cache, the other or none, and freed
/// through any of them, with bursts that make the caches refill and release.
#[test]
fn every_figure_is_exact_whichever_path_a_stack_takes() {
    let pool = StackPool::new(DebugFlags::default());
    let mut caches = [StackCache::new(), StackCache::new()];
    let mut rng = Rng(0x5eed);
    let mut live: Vec<Stack> = Vec::new();
    let (mut allocs, mut frees) = (0u64, 0u64);
    for step in 0..6000 {
        // Bursts of allocation, then of freeing, so orders fill and empty.
        let alloc_now = (step / 200) % 2 == 0 || live.is_empty();
        let which = rng.below(3);
        let (a, b) = caches.split_at_mut(1);
        let cache = match which {
            0 => Some(&mut a[0]),
            1 => Some(&mut b[0]),
            _ => None,
        };
        if alloc_now && rng.below(4) != 0 {
            let size = MOVABLE_SIZES[rng.below(MOVABLE_SIZES.len())];
            live.push(alloc(&pool, cache, size, StackKind::Movable));
            allocs += 1;
        } else if !live.is_empty() {
            let stk = live.swap_remove(rng.below(live.len()));
            free(&pool, cache, stk);
            frees += 1;
        }
        let s = pool.stats();
        let cached = caches[0].cached_bytes() + caches[1].cached_bytes();
        let in_use: usize = live.iter().map(|l| l.size()).sum();
        assert_eq!(
            (s.in_use, s.cached, s.allocs, s.frees),
            (in_use, cached, allocs, frees),
            "step {step}: {s:?}"
        );
        for c in &caches {
            assert!(c.cached_bytes() <= NUM_ORDERS * CACHE_ORDER_BYTES);
        }
    }
    for stk in live {
        free(&pool, None, stk);
    }
    for c in &mut caches {
        pool.flush_cache(c);
    }
    assert_empty(&pool);
}

/// A cache gives its older chunks back when an order is full, and keeps
/// the ones freed last (the warmest), handing out the very last first.
#[test]
fn a_full_cache_keeps_the_chunks_freed_last() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    let size = 2048;
    let n = 2 * CACHE_ORDER_BYTES / size;
    let stacks: Vec<Stack> = (0..n)
        .map(|_| alloc(&pool, None, size, StackKind::Movable))
        .collect();
    for &stk in &stacks {
        free(&pool, Some(&mut cache), stk);
        assert!(cache.cached_bytes() <= CACHE_ORDER_BYTES);
    }
    let held = cache.cached_bytes() / size;
    assert!(held > 0);
    for stk in stacks.iter().rev().take(held) {
        assert_eq!(
            alloc(&pool, Some(&mut cache), size, StackKind::Movable),
            *stk
        );
    }
    for stk in stacks.iter().rev().take(held) {
        free(&pool, Some(&mut cache), *stk);
    }
    pool.flush_cache(&mut cache);
    assert_empty(&pool);
}

/// A cache dropped without a flush leaks its chunks (they stay counted as
/// cached, not in use), and the next cache, which takes over its counter
/// slot, starts empty and keeps every figure right.
#[test]
fn a_cache_dropped_unflushed_keeps_the_figures_right() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    let a = alloc(&pool, Some(&mut cache), 1024, StackKind::Movable);
    let b = alloc(&pool, Some(&mut cache), 4096, StackKind::Movable);
    free(&pool, Some(&mut cache), a);
    let leaked = cache.cached_bytes();
    assert!(leaked > 0);
    drop(cache);
    let s = pool.stats();
    assert_eq!(
        (s.in_use, s.cached, s.allocs, s.frees),
        (4096, leaked, 2, 1)
    );

    let mut next = StackCache::new();
    assert_eq!(next.cached_bytes(), 0);
    let c = alloc(&pool, Some(&mut next), 1024, StackKind::Movable);
    free(&pool, Some(&mut next), b);
    let s = pool.stats();
    assert_eq!(s.cached, leaked + next.cached_bytes());
    assert_eq!((s.in_use, s.allocs, s.frees), (1024, 3, 2));
    free(&pool, Some(&mut next), c);
    pool.flush_cache(&mut next);
    let s = pool.stats();
    assert_eq!((s.in_use, s.cached, s.allocs, s.frees), (0, leaked, 3, 3));
}

/// Another thread reading the statistics sees exactly what a cache's owner
/// did, once the owner has stopped.
#[test]
fn stats_from_another_thread_are_exact() {
    let pool = Arc::new(StackPool::new(DebugFlags::default()));
    let (to_reader, from_owner) = std::sync::mpsc::channel();
    let (to_owner, from_reader) = std::sync::mpsc::channel::<()>();
    let owner = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let mut cache = StackCache::new();
            let mut live = Vec::new();
            for round in 1..=20usize {
                for _ in 0..round {
                    live.push(alloc(&pool, Some(&mut cache), 2048, StackKind::Movable));
                }
                for _ in 0..round / 2 {
                    let stk = live.pop().unwrap();
                    free(&pool, Some(&mut cache), stk);
                }
                let in_use = live.len() * 2048;
                to_reader.send((in_use, cache.cached_bytes())).unwrap();
                from_reader.recv().unwrap();
            }
            for stk in live {
                free(&pool, Some(&mut cache), stk);
            }
            pool.flush_cache(&mut cache);
        })
    };
    for (in_use, cached) in from_owner.iter() {
        let s = pool.stats();
        assert_eq!((s.in_use, s.cached), (in_use, cached), "{s:?}");
        if to_owner.send(()).is_err() {
            break;
        }
    }
    owner.join().unwrap();
    assert_empty(&pool);
}

#[test]
fn counts_survive_caches_coming_and_going() {
    let pool = StackPool::new(DebugFlags::default());
    let mut live = Vec::new();
    for round in 1..=5u64 {
        let mut cache = StackCache::new();
        let a = alloc(&pool, Some(&mut cache), 2048, StackKind::Movable);
        let b = alloc(&pool, Some(&mut cache), 64 << 10, StackKind::Movable);
        let c = alloc(&pool, Some(&mut cache), 8192, StackKind::Guarded);
        free(&pool, Some(&mut cache), a);
        free(&pool, Some(&mut cache), c);
        // b outlives its cache; freed later without one.
        live.push(b);
        pool.flush_cache(&mut cache);
        drop(cache);
        let s = pool.stats();
        assert_eq!((s.allocs, s.frees), (3 * round, 2 * round));
        pool.check_accounting(live.len() * (64 << 10)).unwrap();
    }
    for b in live {
        free(&pool, None, b);
    }
    assert_eq!(pool.stats().in_use, 0);
    assert_empty(&pool);
}

#[test]
fn a_cycle_delays_giving_memory_back() {
    isolated("a_cycle_delays_giving_memory_back", || {
        let pool = StackPool::new(DebugFlags::default());
        let span = SPAN_SIZE.max(page());

        // Outside a cycle an emptied span goes back at once.
        let a = alloc(&pool, None, 2048, StackKind::Movable);
        assert_eq!(pool.stats().sys, span);
        free(&pool, None, a);
        assert_eq!((pool.stats().sys, pool.stats().spans_released), (0, 1));

        pool.begin_cycle();
        let a = alloc(&pool, None, 2048, StackKind::Movable);
        free(&pool, None, a);
        // Emptied, but kept mapped (and usable) until the cycle ends.
        assert_eq!((pool.stats().sys, pool.stats().spans_released), (span, 1));
        assert!(mapped(a.lo));
        let b = alloc(&pool, None, 2048, StackKind::Movable);
        assert_eq!(b.lo, a.lo, "the kept span is reused");
        free(&pool, None, b);
        // Large and guarded stacks freed now are not given back either, not
        // even by release_free.
        let l = alloc(&pool, None, 64 << 10, StackKind::Movable);
        let g = alloc(&pool, None, 16 << 10, StackKind::Guarded);
        free(&pool, None, l);
        free(&pool, None, g);
        let with_all = span + round_page(64 << 10) + round_page(16 << 10) + page();
        assert_eq!(pool.stats().sys, with_all);
        pool.release_free();
        assert_eq!(pool.stats().sys, with_all);
        assert!(mapped(l.lo) && mapped(g.lo));
        pool.end_cycle();
        // The cycle end gives back the span and the large stack, and does the
        // release_free asked for during the cycle, which takes the guarded one.
        assert_eq!(pool.stats().sys, 0);
        assert_eq!(pool.stats().spans_released, 2);
        assert!(!mapped(a.lo) && !mapped(l.lo));

        // Without a release_free during the cycle, free guarded stacks stay.
        pool.begin_cycle();
        let g = alloc(&pool, None, 16 << 10, StackKind::Guarded);
        let l = alloc(&pool, None, 64 << 10, StackKind::Movable);
        free(&pool, None, g);
        free(&pool, None, l);
        pool.end_cycle();
        assert_eq!(pool.stats().sys, round_page(16 << 10) + page());
        let g2 = alloc(&pool, None, 16 << 10, StackKind::Guarded);
        assert_eq!(g2.lo, g.lo);
        free(&pool, None, g2);
        assert_empty(&pool);
    });
}

#[test]
fn a_cycle_keeps_spans_flushed_from_a_cache() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    let a = alloc(&pool, Some(&mut cache), 4096, StackKind::Movable);
    pool.begin_cycle();
    free(&pool, Some(&mut cache), a);
    pool.flush_cache(&mut cache);
    assert_eq!(pool.stats().sys, SPAN_SIZE.max(page()));
    pool.end_cycle();
    assert_eq!(pool.stats().sys, 0);
    assert_empty(&pool);
}

#[test]
fn efence_gives_every_stack_its_own_mapping() {
    isolated("efence_gives_every_stack_its_own_mapping", || {
        let pool = StackPool::new(flags(|d| d.efence = true));
        let mut cache = StackCache::new();
        let mut live = Vec::new();
        let mut sys = 0;
        for (size, kind) in [
            (1024, StackKind::Movable),
            (1024, StackKind::Movable),
            (2048, StackKind::Movable),
            (16384, StackKind::Movable),
            (65536, StackKind::Movable),
            (8192, StackKind::Guarded),
            (5000, StackKind::Guarded),
        ] {
            let stk = alloc(&pool, Some(&mut cache), size, kind);
            assert_eq!(stk.source, StackSource::System);
            assert_eq!(stk.lo % page(), 0);
            assert_eq!(stk.guard(), Some((stk.lo - page(), stk.lo)));
            fill_and_check(stk);
            sys += page() + round_page(stk.size());
            assert_eq!(pool.stats().sys, sys);
            live.push(Live { stk, tag: 0 });
        }
        assert_eq!(cache.cached_bytes(), 0);
        check_disjoint(&live);
        for l in live {
            free(&pool, Some(&mut cache), l.stk);
            assert!(!mapped(l.stk.lo), "freed efence stack still mapped");
            assert!(
                !mapped(l.stk.lo - page()),
                "freed efence guard still mapped"
            );
        }
        assert_eq!(pool.stats().sys, 0);
        assert_empty(&pool);
    });
}

#[test]
fn faultonfree_never_reuses_addresses() {
    let pool = StackPool::new(flags(|d| d.faultonfree = true));
    let mut cache = StackCache::new();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let stk = alloc(&pool, Some(&mut cache), 2048, StackKind::Movable);
        assert_eq!(stk.source, StackSource::System);
        assert!(!seen.contains(&stk.lo), "address reused");
        seen.push(stk.lo);
        free(&pool, Some(&mut cache), stk);
        // Still reserved, so nothing else can land there.
        assert!(mapped(stk.lo));
        assert_eq!(pool.stats().sys, 0);
    }
    assert_empty(&pool);
}

#[test]
fn stackpoison_fills_freed_and_reused_stacks() {
    let pool = StackPool::new(flags(|d| d.stackpoison = true));
    let mut cache = StackCache::new();
    let all = |lo: usize, hi: usize, byte: u8| {
        // SAFETY: the callers pass stacks that are live or held by the pool
        // or cache, hence mapped.
        unsafe { bytes(lo, hi) }.iter().all(|&b| b == byte)
    };

    // Through the cache.
    let a = alloc(&pool, Some(&mut cache), 4096, StackKind::Movable);
    assert!(
        all(a.lo, a.hi, STACK_POISON_NEW),
        "fresh chunk from the pool"
    );
    fill_and_check(a);
    free(&pool, Some(&mut cache), a);
    assert!(all(a.lo + 8, a.hi, STACK_POISON_FREE), "freed chunk");
    let b = alloc(&pool, Some(&mut cache), 4096, StackKind::Movable);
    assert_eq!(b.lo, a.lo);
    assert!(all(b.lo, b.hi, STACK_POISON_NEW), "reused chunk");
    free(&pool, Some(&mut cache), b);

    // Straight to the pool; a second chunk keeps the span alive.
    let a = alloc(&pool, None, 2048, StackKind::Movable);
    let keep = alloc(&pool, None, 2048, StackKind::Movable);
    fill_and_check(a);
    free(&pool, None, a);
    assert!(all(a.lo + 8, a.hi, STACK_POISON_FREE));
    let b = alloc(&pool, None, 2048, StackKind::Movable);
    assert_eq!(b.lo, a.lo);
    assert!(all(b.lo, b.hi, STACK_POISON_NEW));
    free(&pool, None, b);
    free(&pool, None, keep);

    // Large and guarded: fresh mappings are zero, reused ones poisoned.
    for (size, kind) in [
        (64 << 10, StackKind::Movable),
        (16 << 10, StackKind::Guarded),
    ] {
        let a = alloc(&pool, None, size, kind);
        assert!(all(a.lo, a.hi, 0), "fresh {kind:?} mapping");
        fill_and_check(a);
        free(&pool, None, a);
        assert!(all(a.lo + 8, a.hi, STACK_POISON_FREE), "freed {kind:?}");
        let b = alloc(&pool, None, size, kind);
        assert_eq!(b.lo, a.lo);
        assert!(all(b.lo, b.hi, STACK_POISON_NEW), "reused {kind:?}");
        free(&pool, None, b);
    }
    pool.flush_cache(&mut cache);
    assert_empty(&pool);
}

#[test]
fn bad_sizes_are_refused() {
    let pool = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    for size in [
        0,
        1,
        512,
        1000,
        1023,
        1536,
        3000,
        48 << 10,
        100_000,
        usize::MAX,
    ] {
        let err = stackalloc(&pool, Some(&mut cache), size, StackKind::Movable).unwrap_err();
        assert_eq!(err, AllocError::BadSize(size));
        assert_eq!(err.to_string(), format!("invalid stack size {size}"));
    }
    assert_eq!(
        stackalloc(&pool, None, 1000, StackKind::Movable)
            .unwrap_err()
            .to_string(),
        "invalid stack size 1000"
    );
    for size in [0, usize::MAX] {
        let err = stackalloc(&pool, None, size, StackKind::Guarded).unwrap_err();
        assert_eq!(err, AllocError::BadSize(size));
    }
    let huge = 1usize << 62;
    let err = stackalloc(&pool, None, huge, StackKind::Movable).unwrap_err();
    assert_eq!(err, AllocError::OutOfMemory(huge));
    assert_eq!(
        err.to_string(),
        format!("out of memory allocating a {huge}-byte stack")
    );
    assert_eq!(
        AllocError::OutOfMemory(1024).to_string(),
        "out of memory allocating a 1024-byte stack"
    );
    assert_eq!(
        stackalloc(&pool, None, huge, StackKind::Guarded).unwrap_err(),
        err
    );
    assert_eq!(
        pool.stats(),
        StackStats::default(),
        "failures leave no trace"
    );
}

#[test]
#[should_panic(expected = "another pool's stacks")]
fn a_cache_cannot_mix_pools() {
    let one = StackPool::new(DebugFlags::default());
    let two = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    let a = alloc(&one, Some(&mut cache), 1024, StackKind::Movable);
    free(&one, Some(&mut cache), a);
    let _ = stackalloc(&two, Some(&mut cache), 1024, StackKind::Movable);
}

#[test]
fn an_empty_cache_can_move_to_another_pool() {
    let one = StackPool::new(DebugFlags::default());
    let two = StackPool::new(DebugFlags::default());
    let mut cache = StackCache::new();
    let a = alloc(&one, Some(&mut cache), 1024, StackKind::Movable);
    free(&one, Some(&mut cache), a);
    one.flush_cache(&mut cache);
    let b = alloc(&two, Some(&mut cache), 1024, StackKind::Movable);
    free(&two, Some(&mut cache), b);
    two.flush_cache(&mut cache);
    assert_empty(&one);
    assert_empty(&two);
}

#[test]
fn dropping_a_pool_unmaps_what_it_holds() {
    isolated("dropping_a_pool_unmaps_what_it_holds", || {
        let pool = StackPool::new(DebugFlags::default());
        let mut cache = StackCache::new();
        let small = alloc(&pool, Some(&mut cache), 2048, StackKind::Movable);
        let large = alloc(&pool, None, 64 << 10, StackKind::Movable);
        let guarded = alloc(&pool, None, 8192, StackKind::Guarded);
        free(&pool, None, large);
        free(&pool, None, guarded);
        free(&pool, Some(&mut cache), small);
        pool.flush_cache(&mut cache);
        let kept = alloc(&pool, None, 1024, StackKind::Movable);
        drop(pool);
        assert!(!mapped(kept.lo), "span with a live chunk unmapped on drop");
        assert!(!mapped(large.lo) && !mapped(guarded.lo) && !mapped(guarded.lo - page()));
    });
}

/// The faults the pool promises, each shown by a child process that must die
/// of SIGSEGV at the bad access. The "control" case does the same set-up
/// with a legal access and must exit normally; "cache_drop" must warn.
#[test]
fn faults_happen_in_a_child() {
    if common::is_child() {
        child_case(&std::env::var("GSTACK_POOL_CASE").unwrap());
        return;
    }
    for case in ["guarded", "guarded_reused", "efence_guard", "faultonfree"] {
        let out = common::run_child("faults_happen_in_a_child", &[("GSTACK_POOL_CASE", case)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("about to fault"),
            "{case}: {}",
            common::describe(&out)
        );
        assert_eq!(
            common::killed_by(&out),
            Some(libc::SIGSEGV),
            "{case}: {}",
            common::describe(&out)
        );
    }
    let out = common::run_child(
        "faults_happen_in_a_child",
        &[("GSTACK_POOL_CASE", "control")],
    );
    assert!(out.status.success(), "control: {}", common::describe(&out));
    let out = common::run_child(
        "faults_happen_in_a_child",
        &[("GSTACK_POOL_CASE", "cache_drop")],
    );
    assert!(
        out.status.success(),
        "cache_drop: {}",
        common::describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gstack: stack cache dropped with 15360 bytes (leaked)"),
        "cache_drop: {}",
        common::describe(&out)
    );
}

fn child_case(case: &str) {
    use std::io::Write;
    let bad_write = |addr: usize| {
        println!("about to fault at {addr:#x}");
        std::io::stdout().flush().unwrap();
        // SAFETY: not safe at all: this is the access that must fault.
        unsafe { (addr as *mut u8).write_volatile(1) };
        println!("survived the write at {addr:#x}");
        std::process::exit(3);
    };
    match case {
        "guarded" => {
            let pool = StackPool::new(DebugFlags::default());
            let stk = alloc(&pool, None, 64 << 10, StackKind::Guarded);
            fill_and_check(stk);
            bad_write(stk.lo - 1);
        }
        "guarded_reused" => {
            let pool = StackPool::new(DebugFlags::default());
            let a = alloc(&pool, None, 16 << 10, StackKind::Guarded);
            free(&pool, None, a);
            let stk = alloc(&pool, None, 16 << 10, StackKind::Guarded);
            assert_eq!(stk.lo, a.lo);
            bad_write(stk.lo - page());
        }
        "efence_guard" => {
            let pool = StackPool::new(flags(|d| d.efence = true));
            let stk = alloc(&pool, None, 2048, StackKind::Movable);
            fill_and_check(stk);
            bad_write(stk.lo - 8);
        }
        "faultonfree" => {
            let pool = StackPool::new(flags(|d| d.faultonfree = true));
            let stk = alloc(&pool, None, 8192, StackKind::Movable);
            fill_and_check(stk);
            free(&pool, None, stk);
            bad_write(stk.lo + 100);
        }
        "control" => {
            let pool = StackPool::new(DebugFlags::default());
            let stk = alloc(&pool, None, 64 << 10, StackKind::Guarded);
            // SAFETY: lo is the lowest byte of a live stack.
            unsafe { (stk.lo as *mut u8).write_volatile(1) };
            free(&pool, None, stk);
        }
        "cache_drop" => {
            let pool = StackPool::new(DebugFlags::default());
            let mut cache = StackCache::new();
            let stk = alloc(&pool, Some(&mut cache), 1024, StackKind::Movable);
            free(&pool, None, stk);
            drop(cache);
        }
        _ => panic!("unknown case {case}"),
    }
}

extern "C" {
    fn gs_test_rec();
}

/// Once a managed goroutine's stack is large, newstack grows it in place:
/// a recursion to ~1.6 MB copies only what it used while its stack was
/// small, every pointer into its frames stays right (gs_test_rec checks
/// them on the way back), scan cycles running meanwhile see its frames,
/// and everything goes back to the system when the runtime ends. Also
/// under stackpoison, and under stackforcemove, which moves at every call
/// and so must never grow in place.
#[test]
fn managed_growth_is_in_place_once_large() {
    use gstack::{Builder, Config, Runtime};
    use std::sync::Mutex;
    for (name, debug) in [
        ("default", DebugFlags::default()),
        ("stackpoison", flags(|d| d.stackpoison = true)),
        ("stackforcemove", flags(|d| d.stackforcemove = true)),
    ] {
        let force = debug.stackforcemove;
        // 80-byte frames: ~1.6 MB, or (a move per call) ~80 KB.
        let depth: usize = if force { 1000 } else { 20_000 };
        let want = 3 * depth * (depth + 1) / 2 + depth + 1;
        let rt = Runtime::new(Config {
            procs: 1,
            debug,
            ..Config::default()
        });
        let out = Arc::new(Mutex::new(None));
        let o = out.clone();
        rt.run(move || {
            // Yield 20 times at depth 0, so that the scans below find it
            // parked at its deepest.
            let h = Builder::new()
                .spawn_managed(gs_test_rec as *const () as usize, &[depth, 0, 0, 20])
                .unwrap();
            let mut cycles = 0;
            while h.result().is_none() {
                gstack::gc();
                cycles += 1;
                gstack::yield_now();
            }
            *o.lock().unwrap() = Some((h.result(), cycles, gstack::stats().unwrap()));
        });
        let (result, cycles, s) = out.lock().unwrap().take().unwrap();
        assert_eq!(result, Some(want), "{name}: {s:?}");
        assert!(cycles >= 2, "{name}: {cycles} cycles");
        if force {
            // Every call moved it, large or not.
            assert!(s.stack_peak >= 64 << 10, "{name}: {s:?}");
            assert!(s.stack_bytes_copied > 1000 * (32 << 10), "{name}: {s:?}");
        } else {
            // 2K -> 4K -> 8K -> 16K -> 32K copy; 32K -> 2M grows in place.
            assert!(s.stack_peak >= 2 << 20, "{name}: {s:?}");
            assert!(s.stack_bytes_copied < 32 << 10, "{name}: {s:?}");
            assert!(s.stack_copies >= 10, "{name}: {s:?}");
        }
        let s = rt.stats();
        assert_eq!((s.stack_in_use, s.stack_sys), (0, 0), "{name}: {s:?}");
    }
}
