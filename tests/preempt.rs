//! Preemption: a managed goroutine in a tight loop of calls does not
//! starve the others on the runtime's single P: the monitor asks it to
//! yield after 10 ms, and its next entry check does.

use gstack::{Builder, Config, DebugFlags, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

extern "C" {
    fn gs_test_spin();
}

#[test]
fn a_spinning_managed_goroutine_is_preempted() {
    let flag = Arc::new(AtomicU64::new(0));
    let out = Arc::new(Mutex::new(None));
    let (f2, o2) = (flag.clone(), out.clone());
    let r = Runtime::new(Config {
        procs: 1,
        debug: DebugFlags::default(),
        gc_percent: 0,
        ..Config::default()
    });
    r.run(move || {
        let t0 = Instant::now();
        // Bounded: 2e9 calls would take far longer than any test budget
        // only if preemption never came; then it returns 0 and we fail.
        let spin = Builder::new()
            .spawn_managed(
                gs_test_spin as *const () as usize,
                &[Arc::as_ptr(&f2) as usize, 2_000_000_000],
            )
            .unwrap();
        let f3 = f2.clone();
        gstack::spawn(move || {
            // Runs only once the spinner was preempted.
            f3.store(1, Ordering::SeqCst);
        });
        while spin.result().is_none() {
            gstack::yield_now();
        }
        *o2.lock().unwrap() = Some((spin.result().unwrap(), t0.elapsed()));
    });
    let (calls, took) = out.lock().unwrap().unwrap();
    assert!(calls > 0, "the spinner ran out of calls: never preempted");
    assert!(
        took >= Duration::from_millis(9),
        "preempted only after ~10 ms ({took:?})"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(flag.load(Ordering::SeqCst), 1);
}
