//! Context-switch and spawn costs of native goroutines on one thread.
//!
//! * `raw switch` — one gs_mcall + gs_gogo pair (goroutine -> g0 -> same
//!   goroutine): the floor under every switch.
//! * `yield round trip` — two goroutines yielding to each other: one
//!   iteration is two goroutine switches, each a full scheduling decision
//!   (on one P: gs_yield_native queues the caller and takes the head of
//!   the run queue, without g0).  Compare half of it with Boost.Context's
//!   jump_fcontext (about 8.4 ns here) and Go 1.19's Gosched (about 93 ns).
//! * `spawn+exit` — spawn a goroutine, run it to its end, recycle it.

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::{in_goroutine, spawn_exit_native};

fn benches(c: &mut Criterion) {
    c.bench_function("raw switch (mcall+gogo)", |b| {
        b.iter_custom(|iters| {
            in_goroutine(iters, |n| {
                let t = Instant::now();
                for _ in 0..n {
                    gstack::testing::raw_switch();
                }
                t.elapsed()
            })
        })
    });

    c.bench_function("yield round trip (2 switches)", |b| {
        b.iter_custom(|iters| {
            in_goroutine(iters, |n| {
                gstack::spawn(move || {
                    for _ in 0..n + 1 {
                        gstack::yield_now();
                    }
                });
                gstack::yield_now(); // let the partner start
                let t = Instant::now();
                for _ in 0..n {
                    gstack::yield_now();
                }
                t.elapsed()
            })
        })
    });

    c.bench_function("spawn+exit", |b| {
        b.iter_custom(|iters| in_goroutine(iters, spawn_exit_native))
    });
}

criterion_group! {
    name = switch;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(switch);
