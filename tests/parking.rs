//! In the spirit of Go's TestNoShrinkStackWhileParking: a goroutine that
//! has queued its sudogs on a channel but is still parking (Waiting, its
//! channel still locked by it) must not have its stack moved, even though
//! everything else says the stack should shrink.  A test hook runs a whole
//! scan cycle, and a direct move, inside exactly that window.
//!
//! (Its own test binary: the hook is process-wide.)

use gstack::chan::RawChan;
use gstack::{inspect, Builder, Config, DebugFlags, Runtime};
use std::sync::{Arc, Mutex};

extern "C" {
    fn gs_test_chan_recv();
}

/// What the hook saw each time: goroutine, stack size before and after a
/// scan cycle, the cycle's pending shrinks, and what a direct move said.
struct Seen {
    id: u64,
    before: usize,
    after: usize,
    pending: usize,
    moved: Result<(), String>,
}

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

fn in_the_window(id: u64) {
    let before = inspect::stack_size(id).unwrap();
    let rep = gstack::gc();
    let after = inspect::stack_size(id).unwrap();
    let moved = inspect::move_stack(id, 4096);
    SEEN.lock().unwrap().push(Seen {
        id,
        before,
        after,
        pending: rep.pending,
        moved,
    });
}

#[test]
fn no_shrink_while_parking_on_a_channel() {
    const N: u64 = 6;
    // Bounded: a scan that tried to move the goroutine would wait forever
    // for the channel lock the goroutine holds while parking.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(60));
        eprintln!("no_shrink_while_parking_on_a_channel: stuck for 60 s (a scan waiting for the parking goroutine's channel?)");
        std::process::exit(1);
    });
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    let r = Runtime::new(Config {
        procs: 1,
        gc_percent: 0,
        debug: DebugFlags {
            stackpoison: true,
            ..DebugFlags::default()
        },
        ..Config::default()
    });
    r.run(move || {
        let c = RawChan::new(8, 0);
        // Grows to 3000 frames deep (about 128 KiB), comes back, then
        // receives N values into a slot of its own frame: parked with
        // almost all of its stack unused -- a stack any cycle shrinks.
        let h = Builder::new()
            .spawn_managed(
                gs_test_chan_recv as *const () as usize,
                &[3000, Arc::as_ptr(&c) as usize, N as usize],
            )
            .unwrap();
        gstack::testing::set_parking_hook(Some(in_the_window));
        for v in 1..=N {
            // SAFETY: v lives until send returns.
            unsafe { c.send(&v as *const u64 as *const u8) }.unwrap();
        }
        while h.result().is_none() {
            gstack::yield_now();
        }
        gstack::testing::set_parking_hook(None);
        *o.lock().unwrap() = Some((h.id, h.result().unwrap()));
    });
    let (id, result) = out.lock().unwrap().take().unwrap();
    // Sum of v * i for the i-th value v = i: every value arrived intact.
    assert_eq!(result as u64, N * (N + 1) * (2 * N + 1) / 6);
    let seen = SEEN.lock().unwrap();
    assert!(!seen.is_empty(), "the goroutine never parked through g0");
    for s in seen.iter() {
        assert_eq!(s.id, id);
        assert!(s.before >= 64 << 10, "it had grown: {} bytes", s.before);
        assert_eq!(s.after, s.before, "shrunk while parking");
        assert!(s.pending >= 1, "the cycle left the shrink pending");
        assert_eq!(
            s.moved,
            Err(format!("goroutine {id} is parking on a channel"))
        );
    }
    assert_eq!(r.stats().stack_in_use, 0);
}
