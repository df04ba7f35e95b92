//! Native goroutines on one thread: switching, registers, alignment,
//! spawning and recycling, accounting, and the fatal paths (in child
//! processes).

mod common;

use gstack::chan::Chan;
use gstack::testing;
use gstack::{Builder, Config, DebugFlags, Runtime, SpawnError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn rt() -> Runtime {
    Runtime::new(Config {
        procs: 1,
        debug: DebugFlags::default(),
        // Exact goroutine counts below: no automatic scan cycles (their
        // workers are goroutines too).
        gc_percent: 0,
        ..Config::default()
    })
}

#[test]
fn callee_saved_registers_survive_switches() {
    let masks = Arc::new(Mutex::new(Vec::new()));
    let r = rt();
    let m2 = masks.clone();
    r.run(move || {
        for i in 0..8u64 {
            let m = m2.clone();
            gstack::spawn(move || {
                // Each goroutine installs its own values; the others run in
                // between with theirs, so a lost register shows up.
                let seed = 0x5a5a_0000_0000_0000 ^ (i << 40) ^ (i * 0x1111);
                let mask = testing::callee_saved_survive(seed + i, || {
                    for _ in 0..50 {
                        gstack::yield_now();
                    }
                });
                m.lock().unwrap().push((i, mask));
            });
        }
        // The main goroutine does the same while the others run, and also
        // goes through raw g0 round trips.
        let mask = testing::callee_saved_survive(0x7777_0000_1234_0000, || {
            for _ in 0..50 {
                gstack::yield_now();
                testing::raw_switch();
            }
        });
        m2.lock().unwrap().push((99, mask));
    });
    let masks = masks.lock().unwrap();
    assert_eq!(masks.len(), 9);
    for &(i, mask) in masks.iter() {
        assert_eq!(mask, 0, "goroutine {i}: registers lost, mask {mask:#x}");
    }
}

/// Breaks the calling convention on purpose: zeroes a callee-saved
/// register (and on aarch64 a callee-saved FP register) and returns.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
extern "C" fn clobber_callee_saved(_: *mut core::ffi::c_void) {
    core::arch::naked_asm!("xor ebx, ebx", "ret")
}

#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
extern "C" fn clobber_callee_saved(_: *mut core::ffi::c_void) {
    core::arch::naked_asm!("hint #34", "mov x19, #0", "fmov d9, xzr", "ret")
}

#[test]
fn the_checker_detects_a_lost_register() {
    // The register check must be able to fail: a callback that loses a
    // callee-saved register (what a broken switch would do) is caught.
    // SAFETY: the callback returns normally; the helper restores the
    // registers it broke.
    let mask = unsafe {
        testing::callee_saved_survive_raw(clobber_callee_saved, core::ptr::null_mut(), 0x1000)
    };
    let want = if cfg!(target_arch = "x86_64") {
        1
    } else {
        1 | 1 << 11
    };
    assert_eq!(mask, want);
}

#[test]
fn stacks_are_aligned_at_entry_and_on_every_runtime_call() {
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let b = bad.clone();
    rt().run(move || {
        let (sp, ok) = testing::sp_at_call();
        if !ok {
            b.lock().unwrap().push(format!("main entry sp {sp:#x}"));
        }
        for i in 0..16usize {
            let b = b.clone();
            Builder::new()
                .stack_size(16 * 1024 + i * 4096)
                .spawn(move || {
                    let (sp, ok) = testing::sp_at_call();
                    if !ok {
                        b.lock().unwrap().push(format!("g{i} entry sp {sp:#x}"));
                    }
                    gstack::yield_now();
                    let ((sp, ok), off) = testing::sp_on_systemstack();
                    if !ok || !off {
                        b.lock()
                            .unwrap()
                            .push(format!("g{i} systemstack sp {sp:#x} off-stack {off}"));
                    }
                    gstack::yield_now();
                    let (sp, ok) = testing::sp_at_call();
                    if !ok {
                        b.lock()
                            .unwrap()
                            .push(format!("g{i} after yield sp {sp:#x}"));
                    }
                })
                .unwrap();
        }
    });
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
}

#[test]
fn yield_is_fifo_round_robin() {
    let log = Arc::new(Mutex::new(String::new()));
    let l = log.clone();
    rt().run(move || {
        for name in ['a', 'b', 'c'] {
            let l = l.clone();
            gstack::spawn(move || {
                for _ in 0..3 {
                    l.lock().unwrap().push(name);
                    gstack::yield_now();
                }
            });
        }
    });
    assert_eq!(*log.lock().unwrap(), "abcabcabc");
}

/// A goroutine woken by a plain thread goes to the global run queue.
/// Goroutines that do nothing but yield to each other (the assembly fast
/// path, which never looks at the global queue) must still let it run:
/// the fast path leaves the global queue's turn (every 61 schedules) to the
/// general path.  Counted in yields between the close and the wake-up.
#[test]
fn yielding_goroutines_do_not_starve_the_global_queue() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    const CAP: u64 = 2_000_000;
    let yields = Arc::new(AtomicU64::new(0));
    let at_close = Arc::new(AtomicU64::new(u64::MAX));
    let at_wake = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let (y, ac, aw, d) = (
        yields.clone(),
        at_close.clone(),
        at_wake.clone(),
        done.clone(),
    );
    rt().run(move || {
        let c: gstack::chan::Chan<u64> = gstack::chan::Chan::new(0);
        {
            let (c, y, aw, d) = (c.clone(), y.clone(), aw.clone(), d.clone());
            gstack::spawn(move || {
                assert_eq!(c.recv(), Ok(None), "woken by the close");
                aw.store(y.load(Ordering::SeqCst), Ordering::SeqCst);
                d.store(true, Ordering::SeqCst);
            });
        }
        for _ in 0..2 {
            let (y, d) = (y.clone(), d.clone());
            gstack::spawn(move || {
                while !d.load(Ordering::SeqCst) && y.load(Ordering::SeqCst) < CAP {
                    y.fetch_add(1, Ordering::SeqCst);
                    gstack::yield_now();
                }
            });
        }
        gstack::yield_now(); // the receiver parks, the yielders start
        let (y2, ac2) = (y.clone(), ac.clone());
        let closer = std::thread::spawn(move || {
            while y2.load(Ordering::SeqCst) < 1000 {
                std::thread::yield_now();
            }
            c.close().unwrap();
            // The waiter is on the global queue now (close readied it).
            ac2.store(y2.load(Ordering::SeqCst), Ordering::SeqCst);
        });
        while !d.load(Ordering::SeqCst) && y.load(Ordering::SeqCst) < CAP {
            gstack::yield_now();
        }
        closer.join().unwrap();
    });
    let (closed, woke) = (
        at_close.load(Ordering::SeqCst),
        at_wake.load(Ordering::SeqCst),
    );
    assert!(
        done.load(Ordering::SeqCst),
        "the woken goroutine never ran ({} yields)",
        yields.load(Ordering::SeqCst)
    );
    // `closed` is read after close() returned, when the waiter was on the
    // global queue: it runs at that queue's next turn, within 61 schedules
    // of 3 yielders (about 40 yields; the waiter may even have run before
    // the read).  Without the turn it would never run while they yield.
    assert!(
        woke != u64::MAX && woke < closed + 400,
        "on the global queue at {closed} yields, woke at {woke}"
    );
}

#[test]
fn ten_thousand_goroutines_ping_pong_and_accounting_returns_to_zero() {
    const N: usize = 10_000;
    let done = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(Mutex::new(Vec::new()));
    let r = rt();
    let (d, c) = (done.clone(), checks.clone());
    r.run(move || {
        for i in 0..N {
            let d = d.clone();
            gstack::Builder::new()
                .stack_size(16 * 1024)
                .spawn(move || {
                    for _ in 0..(i % 7) + 1 {
                        gstack::yield_now();
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
        }
        let s = gstack::stats().unwrap();
        c.lock().unwrap().push((s, gstack::check_accounting()));
        while d.load(Ordering::Relaxed) < N {
            gstack::yield_now();
        }
        c.lock()
            .unwrap()
            .push((gstack::stats().unwrap(), gstack::check_accounting()));
    });
    assert_eq!(done.load(Ordering::Relaxed), N);
    let checks = checks.lock().unwrap();
    let (during, acct) = &checks[0];
    assert_eq!(during.goroutines_alive, N + 1);
    assert!(during.stack_in_use >= (N + 1) * 16 * 1024);
    assert_eq!(acct, &Ok(()));
    assert_eq!(checks[1].1, Ok(()));
    let after = r.stats();
    assert_eq!(after.goroutines_alive, 0);
    assert_eq!(after.goroutines_spawned, N as u64 + 1);
    assert_eq!(after.stack_in_use, 0, "{after:?}");
    assert_eq!(after.stack_cached, 0, "{after:?}");
    assert_eq!(after.stack_sys, 0, "{after:?}");
}

#[test]
fn dead_goroutines_are_recycled_with_their_stacks() {
    let r = rt();
    let sys = Arc::new(Mutex::new(Vec::new()));
    let s2 = sys.clone();
    r.run(move || {
        for _wave in 0..5 {
            for _ in 0..100 {
                gstack::spawn(gstack::yield_now);
            }
            // Let the wave finish.
            for _ in 0..3 {
                gstack::yield_now();
            }
            s2.lock().unwrap().push(gstack::stats().unwrap());
        }
    });
    let sys = sys.lock().unwrap();
    // After the first wave, every spawn reuses a dead G and its stack:
    // nothing new is mapped.
    assert_eq!(sys[1].stack_sys, sys[4].stack_sys, "{sys:?}");
    assert_eq!(sys[4].goroutines_recycled, 400);
    assert_eq!(r.stats().goroutines_recycled, 400);
}

/// Goroutines that end while others are runnable go straight to the next
/// one (sched::exit_fast): their Gs and stacks are recycled as through g0.
/// On one P the next burst, in the same run, reuses every G and stack of
/// the last; on two, everything runs and the counts add up.
#[test]
fn goroutines_ending_into_the_next_one_recycle_their_gs_and_stacks() {
    const N: usize = 40; // under LOCAL_GFREE: every exit may take the short way
    fn burst() -> (gstack::Stats, std::collections::BTreeSet<usize>) {
        let marks = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..N {
            let (m, d) = (marks.clone(), done.clone());
            gstack::spawn(move || {
                let here = 0u8;
                m.lock().unwrap().push((i, &here as *const u8 as usize));
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        while done.load(Ordering::SeqCst) < N {
            gstack::yield_now();
        }
        // The last to end may still be on its way out (two Ps).
        while gstack::stats().unwrap().goroutines_alive > 1 {
            gstack::yield_now();
        }
        let mut v = marks.lock().unwrap().clone();
        v.sort();
        assert_eq!(
            v.iter().map(|x| x.0).collect::<Vec<_>>(),
            (0..N).collect::<Vec<_>>()
        );
        (gstack::stats().unwrap(), v.iter().map(|x| x.1).collect())
    }
    for procs in [1, 2] {
        let r = Runtime::new(Config {
            procs,
            debug: DebugFlags::default(),
            gc_percent: 0,
            ..Config::default()
        });
        r.run(move || {
            let (s1, stacks1) = burst();
            let (s2, stacks2) = burst();
            assert_eq!((s1.goroutines_alive, s2.goroutines_alive), (1, 1));
            assert_eq!(s2.goroutines_spawned - s1.goroutines_spawned, N as u64);
            if procs == 1 {
                assert_eq!(
                    s2.goroutines_recycled - s1.goroutines_recycled,
                    N as u64,
                    "every G of the second burst is a dead one of the first"
                );
                assert_eq!(s2.stack_in_use, s1.stack_in_use, "no stack more or less");
                assert_eq!(
                    stacks2, stacks1,
                    "the second burst ran on the first's stacks"
                );
            }
        });
        assert_eq!(r.stats().goroutines_alive, 0, "procs {procs}");
    }
}

/// One P: a goroutine a channel operation woke runs next, ahead of the
/// queue (Go's runnext), whether the waker then blocks or yields.
#[test]
fn a_goroutine_woken_by_a_channel_runs_next() {
    for waker_yields in [false, true] {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        rt().run(move || {
            let c: Chan<u32> = Chan::new(0);
            let done: Chan<()> = Chan::new(0);
            let (c2, l2) = (c.clone(), l.clone());
            gstack::spawn(move || {
                let v = c2.recv().unwrap().unwrap();
                l2.lock().unwrap().push(format!("woken {v}"));
            });
            gstack::yield_now(); // it waits in recv
            let (l3, d3) = (l.clone(), done.clone());
            gstack::spawn(move || {
                l3.lock().unwrap().push("queued".to_string());
                d3.send(()).unwrap();
            });
            c.send(7).unwrap(); // wakes the receiver; "queued" is in the queue
            if waker_yields {
                gstack::yield_now();
            }
            done.recv().unwrap();
        });
        assert_eq!(
            *log.lock().unwrap(),
            ["woken 7", "queued"],
            "waker yields: {waker_yields}"
        );
    }
}

/// One P: a pair of goroutines in a channel ping-pong (each wakes the
/// other into runnext) still leaves the queue its turn: a third goroutine
/// that only yields keeps running meanwhile.
#[test]
fn a_channel_ping_pong_does_not_starve_the_queue() {
    const ROUND_TRIPS: u64 = 20_000;
    let seen = Arc::new(Mutex::new((0u64, 0u64)));
    let s = seen.clone();
    rt().run(move || {
        let turns = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t2, s2) = (turns.clone(), stop.clone());
        gstack::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                t2.fetch_add(1, Ordering::Relaxed);
                gstack::yield_now();
            }
        });
        let (ping, pong) = common::incrementing_partner();
        ping.send(0).unwrap();
        pong.recv().unwrap();
        let before = turns.load(Ordering::Relaxed) as u64;
        for i in 0..ROUND_TRIPS {
            ping.send(i).unwrap();
            assert_eq!(pong.recv().unwrap(), Some(i + 1));
        }
        let after = turns.load(Ordering::Relaxed) as u64;
        ping.close().unwrap();
        stop.store(true, Ordering::Relaxed);
        *s.lock().unwrap() = (before, after);
    });
    let (before, after) = *seen.lock().unwrap();
    // Four schedules a round trip; the queue's head gets one of every
    // GLOBAL_CHECK_EVERY (61) at least.
    assert!(
        after - before >= ROUND_TRIPS * 4 / 61 / 2,
        "the yielding goroutine ran {} times during {ROUND_TRIPS} round trips",
        after - before
    );
}

/// A runtime run twice reuses the first run's dead Gs: teardown keeps
/// every G no handle holds on the free list.
#[test]
fn the_next_run_reuses_the_dead_goroutines_of_the_last() {
    const N: u64 = 100;
    fn burst(r: &Runtime) {
        r.run(|| {
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for _ in 0..N {
                let d = done.clone();
                gstack::spawn(move || {
                    while !d.load(Ordering::Relaxed) {
                        gstack::yield_now();
                    }
                });
            }
            done.store(true, Ordering::Relaxed);
        });
    }
    let r = rt();
    burst(&r);
    let s1 = r.stats();
    burst(&r);
    let s2 = r.stats();
    let (spawned, recycled) = (
        s2.goroutines_spawned - s1.goroutines_spawned,
        s2.goroutines_recycled - s1.goroutines_recycled,
    );
    assert_eq!(spawned, N + 1, "{N} goroutines and main");
    assert_eq!(
        recycled, spawned,
        "every G of the second run is one of the first's"
    );
}

#[test]
fn spawn_outside_a_runtime_is_an_error() {
    assert_eq!(Builder::new().spawn(|| {}), Err(SpawnError::NotInRuntime));
    assert_eq!(
        SpawnError::NotInRuntime.to_string(),
        "not on a goroutine of a running gstack runtime"
    );
    assert_eq!(gstack::current_id(), None);
    assert!(gstack::stats().is_none());
    gstack::yield_now(); // a no-op outside
}

#[test]
fn ids_are_sequential_and_main_is_one() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let i2 = ids.clone();
    rt().run(move || {
        i2.lock().unwrap().push(gstack::current_id().unwrap());
        let i3 = i2.clone();
        let child = gstack::spawn(move || i3.lock().unwrap().push(gstack::current_id().unwrap()));
        i2.lock().unwrap().push(child);
    });
    assert_eq!(*ids.lock().unwrap(), vec![1, 2, 2]);
}

#[test]
fn goexit_unwinds_the_goroutine_and_runs_destructors() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(AtomicUsize::new(0));
    let (d, a) = (dropped.clone(), after.clone());
    rt().run(move || {
        gstack::spawn(move || {
            let _f = Flag(d);
            gstack::yield_now();
            if std::hint::black_box(true) {
                gstack::goexit();
            }
            a.fetch_add(1, Ordering::Relaxed); // never reached
        });
    });
    assert_eq!(dropped.load(Ordering::Relaxed), 1);
    assert_eq!(after.load(Ordering::Relaxed), 0);
}

#[test]
fn a_runtime_can_run_twice_and_several_run_in_parallel_threads() {
    let r = rt();
    for _ in 0..2 {
        r.run(|| {
            gstack::spawn(gstack::yield_now);
        });
    }
    assert_eq!(r.stats().goroutines_spawned, 4);
    let ts: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let r = rt();
                let n = Arc::new(AtomicUsize::new(0));
                let n2 = n.clone();
                r.run(move || {
                    for _ in 0..100 {
                        let n = n2.clone();
                        gstack::spawn(move || {
                            gstack::yield_now();
                            n.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
                (n.load(Ordering::Relaxed), r.stats())
            })
        })
        .collect();
    for t in ts {
        let (n, s) = t.join().unwrap();
        assert_eq!(n, 100);
        assert_eq!(s.stack_in_use, 0);
    }
}

#[test]
fn run_inside_a_goroutine_is_refused() {
    // Runs in a child: the refusal is a panic inside a goroutine, which is
    // fatal by design.
    if common::is_child() {
        rt().run(|| rt().run(|| {}));
        return;
    }
    let out = common::run_child("run_inside_a_goroutine_is_refused", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fatal error: goroutine 1 panicked: gstack: Runtime::run called on a thread that is already running a runtime"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn efence_end_to_end() {
    let r = Runtime::new(Config {
        procs: 1,
        debug: DebugFlags {
            efence: true,
            ..DebugFlags::default()
        },
        ..Config::default()
    });
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    r.run(move || {
        for _ in 0..50 {
            let n = n2.clone();
            gstack::spawn(move || {
                gstack::yield_now();
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(gstack::check_accounting(), Ok(()));
    });
    assert_eq!(n.load(Ordering::Relaxed), 50);
    let s = r.stats();
    assert_eq!((s.stack_in_use, s.stack_sys), (0, 0));
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = [n as u8; 512];
    let r = if n == 0 { 0 } else { recurse(n - 1) };
    std::hint::black_box(&buf);
    r + buf[7] as u64
}

#[test]
fn native_stack_overflow_names_the_goroutine_and_its_size() {
    if common::is_child() {
        rt().run(|| {
            Builder::new()
                .stack_size(16 * 1024)
                .spawn(|| {
                    std::hint::black_box(recurse(1_000_000));
                })
                .unwrap();
        });
        return;
    }
    let out = common::run_child(
        "native_stack_overflow_names_the_goroutine_and_its_size",
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fatal error: stack overflow: goroutine 2 overflowed its 16384-byte stack"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn a_panic_in_a_goroutine_is_reported_with_its_id() {
    if common::is_child() {
        rt().run(|| {
            gstack::spawn(gstack::yield_now);
            gstack::spawn(|| panic!("boom at {}", 42));
        });
        return;
    }
    let out = common::run_child("a_panic_in_a_goroutine_is_reported_with_its_id", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fatal error: goroutine 3 panicked: boom at 42"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn gsdebug_unknown_settings_are_reported() {
    if common::is_child() {
        let _ = Config::default();
        return;
    }
    let out = common::run_child(
        "gsdebug_unknown_settings_are_reported",
        &[("GSDEBUG", "efence=1,bogus=1,stackpoison=x")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
    assert!(err.contains("stackpoison"), "{err}");
    assert!(out.status.success(), "{err}");
}
