//! The gstack demo: goroutines on small pooled stacks, switched by
//! hand-written assembly; managed goroutines that start on 2 KiB and grow
//! by copying to a million frames, every pointer into their stacks kept
//! right.  Run with `cargo run --release --example demo`.

use gstack::{Builder, Config, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

extern "C" {
    // Hand-written managed functions (asm/managed_<arch>.S): recursion with
    // a pointer to a local of the outermost frame carried through every
    // frame, and a linked list threaded through every frame.
    fn gs_test_rec();
    fn gs_test_list();
}

fn main() {
    let rt = Runtime::new(Config::default());
    let yields = Arc::new(AtomicU64::new(0));
    let y = yields.clone();
    let t0 = Instant::now();
    rt.run(move || {
        println!("main goroutine {} starts", gstack::current_id().unwrap());

        // 1. Native goroutines (ordinary Rust on fixed, guarded stacks)
        //    taking turns.
        for name in ["ping", "pong", "pang"] {
            gstack::spawn(move || {
                for round in 0..2 {
                    println!("  goroutine {} ({name}) round {round}", gstack::current_id().unwrap());
                    gstack::yield_now();
                }
            });
        }
        gstack::yield_now();
        while gstack::stats().unwrap().goroutines_alive > 1 {
            gstack::yield_now();
        }

        // 2. Many small ones: 100,000 goroutines on 8 KiB stacks; dead
        //    ones are recycled with their stacks.
        let t = Instant::now();
        for i in 0..100_000u64 {
            let y = y.clone();
            Builder::new()
                .stack_size(8 * 1024)
                .spawn(move || {
                    for _ in 0..(i % 4) {
                        gstack::yield_now();
                        y.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap();
            if i % 20_000 == 19_999 {
                while gstack::stats().unwrap().goroutines_alive > 1 {
                    gstack::yield_now();
                }
            }
        }
        let st = gstack::stats().unwrap();
        println!(
            "100,000 native goroutines in {:?}: {} recycled, {} yields",
            t.elapsed(),
            st.goroutines_recycled,
            y.load(Ordering::Relaxed)
        );

        // 3. Managed goroutines recursing deep from a 2 KiB start.
        for depth in [1_000usize, 100_000, 1_000_000] {
            let before = gstack::stats().unwrap();
            let t = Instant::now();
            let rec = Builder::new()
                .spawn_managed(gs_test_rec as *const () as usize, &[depth, 0, 0, 1])
                .unwrap();
            let list = Builder::new()
                .spawn_managed(gs_test_list as *const () as usize, &[depth, 0, 1])
                .unwrap();
            while rec.result().is_none() || list.result().is_none() {
                gstack::yield_now();
            }
            let after = gstack::stats().unwrap();
            let d = depth as u64;
            let rec_ok = rec.result() == Some((3 * d * (d + 1) / 2 + d + 1) as usize);
            let list_ok = list.result() == Some(((d + 1) * (d + 2) / 2) as usize);
            println!(
                "managed recursion to depth {depth:>9}: {:>3} stack moves, {:>10} bytes copied, peak stack {:>6} KiB, {:?}; pointers intact: {}",
                after.stack_copies - before.stack_copies,
                after.stack_bytes_copied - before.stack_bytes_copied,
                after.stack_peak / 1024,
                t.elapsed(),
                if rec_ok && list_ok { "yes" } else { "NO" }
            );
            assert!(rec_ok && list_ok, "a pointer into a moved stack went wrong");
        }
    });
    let st = rt.stats();
    println!(
        "done in {:?}: {} goroutines spawned; stack bytes in use after: {}",
        t0.elapsed(),
        st.goroutines_spawned,
        st.stack_in_use
    );
}
