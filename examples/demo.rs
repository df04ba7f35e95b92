//! The gstack demo: goroutines on small pooled stacks, switched by
//! hand-written assembly.  Run with `cargo run --release --example demo`.

use gstack::{Builder, Config, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let rt = Runtime::new(Config::default());
    let switches = Arc::new(AtomicU64::new(0));
    let s = switches.clone();
    let t0 = Instant::now();
    rt.run(move || {
        println!("main goroutine {} starts", gstack::current_id().unwrap());

        // A few chatty goroutines taking turns.
        for name in ["ping", "pong", "pang"] {
            gstack::spawn(move || {
                for round in 0..3 {
                    println!(
                        "  goroutine {} ({name}) round {round}",
                        gstack::current_id().unwrap()
                    );
                    gstack::yield_now();
                }
            });
        }
        gstack::yield_now();

        // Many small ones: spawn 100,000 goroutines on 8 KiB stacks, each
        // yielding a few times; dead ones are recycled with their stacks.
        for i in 0..100_000u64 {
            let s = s.clone();
            Builder::new()
                .stack_size(8 * 1024)
                .spawn(move || {
                    for _ in 0..(i % 4) {
                        gstack::yield_now();
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap();
            if i % 10_000 == 9_999 {
                let st = gstack::stats().unwrap();
                println!(
                    "spawned {:>6}: alive {:>6}, stack in use {:>5} KiB, from system {:>5} KiB",
                    i + 1,
                    st.goroutines_alive,
                    st.stack_in_use / 1024,
                    st.stack_sys / 1024
                );
                while gstack::stats().unwrap().goroutines_alive > 1 {
                    gstack::yield_now();
                }
            }
        }
    });
    let st = rt.stats();
    println!(
        "done in {:?}: {} goroutines spawned ({} recycled), {} yields; stack in use after: {} bytes",
        t0.elapsed(),
        st.goroutines_spawned,
        st.goroutines_recycled,
        switches.load(Ordering::Relaxed),
        st.stack_in_use
    );
}
