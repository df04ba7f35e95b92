//! Profiling driver for copystack: `copyprof <dense|sparse> <stack bytes> <moves>`
//! parks a gs_test_dense / gs_test_plain recursion at ~90% of the stack and
//! moves it to a same-size stack `moves` times (as benches/stack.rs does),
//! printing ns per move.  For callgrind / perf, which want one plain process.
use gstack::{inspect, Builder, Config, DebugFlags, Runtime};
use std::time::Instant;

extern "C" {
    fn gs_test_plain();
    fn gs_test_dense();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dense = args.get(1).map_or("dense", |s| s) == "dense";
    let size: usize = args.get(2).map_or(65536, |s| s.parse().unwrap());
    let moves: usize = args.get(3).map_or(1000, |s| s.parse().unwrap());
    let (entry, frame) = if dense {
        (gs_test_dense as *const () as usize, 96)
    } else {
        (gs_test_plain as *const () as usize, 32)
    };
    let depth = size * 9 / 10 / frame - 1;
    Runtime::new(Config {
        procs: 1,
        debug: DebugFlags::default(),
        gc_percent: 0,
        ..Config::default()
    })
    .run(move || {
        let h = Builder::new()
            .stack_size(size)
            .spawn_managed(entry, &[depth, 1])
            .unwrap();
        gstack::yield_now();
        assert!(h.result().is_none());
        inspect::move_stack(h.id, size).unwrap();
        inspect::move_stack(h.id, size).unwrap();
        let t = Instant::now();
        for _ in 0..moves {
            inspect::move_stack(h.id, size).unwrap();
        }
        let d = t.elapsed();
        while h.result().is_none() {
            gstack::yield_now();
        }
        assert_eq!(h.result(), Some(depth + 1));
        let used = (depth + 1) * frame;
        let ns = d.as_nanos() as f64 / moves as f64;
        // memcpy of the same bytes right after, under the same load.
        let src = vec![0x5au8; used];
        let mut dst = vec![0u8; used];
        let t = Instant::now();
        for _ in 0..moves {
            // SAFETY: two distinct live buffers of `used` bytes.
            unsafe { std::ptr::copy_nonoverlapping(std::hint::black_box(src.as_ptr()), std::hint::black_box(dst.as_mut_ptr()), used) };
            std::hint::black_box(&mut dst);
        }
        let mns = t.elapsed().as_nanos() as f64 / moves as f64;
        println!("{} {size}: {ns:.0} ns/move, {:.2} B/ns, {:.2} ns/frame; memcpy {:.2} B/ns, ratio {:.2}", if dense {"dense"} else {"sparse"}, used as f64 / ns, ns / (depth + 1) as f64, used as f64 / mns, mns / ns);
    });
}
