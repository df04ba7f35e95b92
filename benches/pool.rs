//! The cost of one stackalloc + stackfree pair on the paths the scheduler
//! uses most: a small stack through a warm per-thread cache, the same
//! straight to the pool (under its lock), and a guarded stack reused from
//! its free list.

use criterion::{criterion_group, criterion_main, Criterion};
use gstack::debug::DebugFlags;
use gstack::stack::{stackalloc, stackfree, StackCache, StackKind, StackPool};
use std::hint::black_box;

fn pair(c: &mut Criterion) {
    let pool = StackPool::new(DebugFlags::default());

    // Cached: after the first refill every alloc pops and every free pushes
    // the cache's list, with no lock.
    let mut cache = StackCache::new();
    c.bench_function("stackalloc+stackfree 2KiB cached", |b| {
        b.iter(|| {
            let stk =
                stackalloc(&pool, Some(&mut cache), black_box(2048), StackKind::Movable).unwrap();
            // SAFETY: stk came from this pool just now and is not used again.
            unsafe { stackfree(&pool, Some(&mut cache), black_box(stk)) };
        })
    });
    pool.flush_cache(&mut cache);

    // No cache: the pool lock and the span table on every call. One more
    // chunk stays allocated so the span never empties (an emptied span
    // would be unmapped, and the bench would measure mmap instead).
    let keep = stackalloc(&pool, None, 2048, StackKind::Movable).unwrap();
    c.bench_function("stackalloc+stackfree 2KiB nocache", |b| {
        b.iter(|| {
            let stk = stackalloc(&pool, None, black_box(2048), StackKind::Movable).unwrap();
            // SAFETY: as above.
            unsafe { stackfree(&pool, None, black_box(stk)) };
        })
    });
    // SAFETY: keep came from this pool and is freed once.
    unsafe { stackfree(&pool, None, keep) };

    // Guarded: the first pair maps the stack and its guard page; every
    // later one reuses it from the free list, guard page kept.
    c.bench_function("guarded 64KiB reuse", |b| {
        b.iter(|| {
            let stk = stackalloc(&pool, None, black_box(64 << 10), StackKind::Guarded).unwrap();
            // SAFETY: as above.
            unsafe { stackfree(&pool, None, black_box(stk)) };
        })
    });
    pool.release_free();
}

criterion_group!(benches, pair);
criterion_main!(benches);
