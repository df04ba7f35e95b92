//! Preemption: a managed goroutine in a tight loop of calls does not
//! starve the others on the runtime's single P: the monitor asks it to
//! yield after 10 ms, and its next entry check does.

use gstack::{Builder, Config, DebugFlags, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

extern "C" {
    fn gs_test_spin();
    fn gs_test_plain();
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

/// A preemption request makes every entry check fail, so it hides the
/// check's real question: is there room for this frame?  A goroutine that
/// is asked again and again (a scan waiting for it does that) must still
/// grow when it needs to, never creep one frame at a time into the guard
/// area and off the end of its stack.  Here it is asked before every one
/// of its 3,000 calls: it yields at each, and still grows from 2 KiB.
#[test]
fn preemption_at_every_call_still_grows_the_stack() {
    let out = Arc::new(Mutex::new(None));
    let o2 = out.clone();
    let r = Runtime::new(Config {
        procs: 1,
        debug: DebugFlags::default(),
        gc_percent: 0,
        ..Config::default()
    });
    r.run(move || {
        let depth = 3000;
        let h = Builder::new()
            .spawn_managed(gs_test_plain as *const () as usize, &[depth, 0])
            .unwrap();
        let mut requests = 0usize;
        while h.result().is_none() {
            gstack::inspect::preempt(h.id).unwrap();
            requests += 1;
            gstack::yield_now();
        }
        let s = gstack::stats().unwrap();
        *o2.lock().unwrap() = Some((h.result(), requests, s.stack_copies, s.stack_peak));
    });
    let (result, requests, copies, peak) = out.lock().unwrap().take().unwrap();
    assert_eq!(result, Some(3001));
    // It yielded at the entry check of each of its 3,001 calls: the
    // requests really came at every call.
    assert!(requests >= 3000, "only {requests} safe points");
    assert!(copies >= 5, "{copies} copies: it did not grow from 2 KiB");
    assert!(peak >= 64 << 10, "peak stack {peak}");
}
