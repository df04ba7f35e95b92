//! Shrinking and its guards, the scan cycle, workers, delayed free and
//! adaptive starting sizes (seeds 000, 002, 003, 004).

mod common;

use gstack::{inspect, Builder, Config, DebugFlags, Runtime};
use std::sync::{Arc, Mutex};

extern "C" {
    fn gs_test_rec();
    fn gs_test_scenario();
    fn gs_test_calls_imprecise();
    fn gs_test_plain();
}

fn addr(f: unsafe extern "C" fn()) -> usize {
    f as *const () as usize
}

fn rt(debug: DebugFlags) -> Runtime {
    Runtime::new(Config {
        procs: 1,
        debug,
        gc_percent: 0, // cycles only when the tests ask
        ..Config::default()
    })
}

fn quiet() -> DebugFlags {
    DebugFlags::default()
}

fn poison() -> DebugFlags {
    DebugFlags {
        stackpoison: true,
        ..DebugFlags::default()
    }
}

#[test]
fn the_shrink_rule_on_plain_numbers() {
    use gstack::stack::shrink_wanted;
    // A quarter of 8 KiB is 2048; the margin is the 928-byte guard.
    assert!(shrink_wanted(8192, 1119));
    assert!(
        !shrink_wanted(8192, 1120),
        "exactly a quarter does not shrink"
    );
    assert!(!shrink_wanted(8192, 4000));
    // Never below the 1 KiB minimum; a 2 KiB stack cannot shrink (the
    // margin alone is more than a quarter of it).
    assert!(!shrink_wanted(1024, 0));
    assert!(!shrink_wanted(2048, 0));
    assert!(shrink_wanted(4096, 95));
    assert!(!shrink_wanted(4096, 96));
}

#[test]
fn a_stack_whose_use_dropped_is_halved_once_per_cycle_with_every_pointer_kept() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let r = rt(poison());
    r.run(move || {
        // Grow to depth 5000 (plain frames of 32 bytes), come back, and
        // park in gs_test_leaf with a pointer live in gs_test_scenario.
        let h = Builder::new()
            .spawn_managed(addr(gs_test_scenario), &[5000, 0, 0, 0])
            .unwrap();
        common::park_until(h.id, 2);
        let mut sizes = vec![inspect::stack_size(h.id).unwrap()];
        loop {
            let rep = gstack::gc();
            let size = inspect::stack_size(h.id).unwrap();
            l2.lock().unwrap().push((rep.shrunk, rep.pending, size));
            if rep.shrunk == 0 {
                break;
            }
            assert_eq!(size, sizes.last().unwrap() / 2, "halved, once per cycle");
            sizes.push(size);
        }
        assert_eq!(gstack::check_accounting(), Ok(()));
        while h.result().is_none() {
            gstack::yield_now();
        }
        l2.lock()
            .unwrap()
            .push((h.result().unwrap(), 0, *sizes.last().unwrap()));
    });
    let log = log.lock().unwrap();
    let (ok, _, last) = *log.last().unwrap();
    assert_eq!(
        ok, 1,
        "the pointer into the moved frame survived every shrink"
    );
    // Several halvings, then a stop where used + guard >= size / 4.
    assert!(log.len() >= 5, "{log:?}");
    assert!((2048..=8192).contains(&last), "{log:?}");
    let s = r.stats();
    assert_eq!((s.stack_in_use, s.stack_sys), (0, 0));
}

#[test]
fn gcshrinkstackoff_keeps_stacks_as_they_are() {
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    rt(DebugFlags {
        gcshrinkstackoff: true,
        ..quiet()
    })
    .run(move || {
        let h = Builder::new()
            .spawn_managed(addr(gs_test_scenario), &[5000, 0, 0, 0])
            .unwrap();
        common::park_until(h.id, 2);
        let before = inspect::stack_size(h.id).unwrap();
        let rep = gstack::gc();
        *o.lock().unwrap() = Some((
            before,
            inspect::stack_size(h.id).unwrap(),
            rep.shrunk,
            rep.pending,
        ));
        while h.result().is_none() {
            gstack::yield_now();
        }
    });
    let (before, after, shrunk, pending) = out.lock().unwrap().unwrap();
    assert_eq!((before, shrunk, pending), (after, 0, 0));
}

/// What a callback from inside a syscall / libcall saw.
#[derive(Default, Debug)]
struct Seen {
    size_before: usize,
    size_after: usize,
    report: Option<gstack::GcReport>,
    id: u64,
}

extern "C" fn gc_from_foreign_code(arg: *mut core::ffi::c_void) -> usize {
    // SAFETY: the test passes a live Arc<Mutex<Seen>> pointer.
    let seen = unsafe { &*(arg as *const Mutex<Seen>) };
    let id = seen.lock().unwrap().id;
    let before = inspect::stack_size(id).unwrap();
    let rep = gstack::gc();
    let after = inspect::stack_size(id).unwrap();
    let mut s = seen.lock().unwrap();
    s.size_before = before;
    s.size_after = after;
    s.report = Some(rep);
    0
}

/// Run gs_test_scenario with `op` and the gc callback; return what the
/// callback saw, the stack size at the safe point after, and the result.
fn guarded_scenario(op: usize) -> (Seen, usize, usize) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = Arc::new(Mutex::new((0, 0)));
    let (s2, o2) = (seen.clone(), out.clone());
    rt(poison()).run(move || {
        let arg = Arc::as_ptr(&s2) as usize;
        let h = Builder::new()
            .spawn_managed(
                addr(gs_test_scenario),
                &[
                    5000,
                    op,
                    gc_from_foreign_code as *const () as usize,
                    if op == 3 { 10_000 } else { arg },
                ],
            )
            .unwrap();
        s2.lock().unwrap().id = h.id;
        if op == 3 {
            // Pinned and parked: a cycle must leave the shrink pending.
            common::park_until(h.id, 1);
            let before = inspect::stack_size(h.id).unwrap();
            let rep = gstack::gc();
            let mut s = s2.lock().unwrap();
            s.size_before = before;
            s.size_after = inspect::stack_size(h.id).unwrap();
            s.report = Some(rep);
        }
        // At gs_test_leaf's yield: after the synchronous safe point.
        common::park_until(h.id, 2);
        let at_safe_point = inspect::stack_size(h.id).unwrap();
        while h.result().is_none() {
            gstack::yield_now();
        }
        *o2.lock().unwrap() = (at_safe_point, h.result().unwrap());
    });
    let s = std::mem::take(&mut *seen.lock().unwrap());
    let (size, res) = *out.lock().unwrap();
    (s, size, res)
}

/// Foreign code inside a managed goroutine's system call window may not
/// use channels or spawn: the monitor may have handed its P to another M.
/// Both are refused with the errors foreign code gets (a channel with room
/// and a value would otherwise have let both operations through).
#[test]
fn channel_operations_and_spawns_inside_a_syscall_window_are_refused() {
    extern "C" fn ops(arg: *mut core::ffi::c_void) -> usize {
        // SAFETY: the test passes a live Arc<Mutex<Vec<String>>> pointer.
        let out = unsafe { &*(arg as *const Mutex<Vec<String>>) };
        let c: gstack::chan::Chan<u64> = gstack::chan::Chan::new(1);
        let mut v = out.lock().unwrap();
        v.push(format!("{:?}", c.send(1)));
        v.push(format!("{:?}", c.recv()));
        v.push(format!("{:?}", Builder::new().spawn(|| {})));
        gstack::yield_now(); // returns at once
        0
    }
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    let o2 = out.clone();
    rt(DebugFlags::default()).run(move || {
        let h = Builder::new()
            .spawn_managed(
                addr(gs_test_scenario),
                &[100, 1, ops as *const () as usize, Arc::as_ptr(&o2) as usize],
            )
            .unwrap();
        while h.result().is_none() {
            gstack::yield_now();
        }
        assert_eq!(h.result(), Some(1), "its pointer survived");
    });
    assert_eq!(
        *out.lock().unwrap(),
        [
            "Err(NotInGoroutine)",
            "Err(NotInGoroutine)",
            "Err(NotInRuntime)"
        ]
    );
}

#[test]
fn in_a_syscall_no_shrink_then_the_pending_one_happens_at_exitsyscall() {
    let (seen, at_safe_point, result) = guarded_scenario(1);
    let rep = seen.report.unwrap();
    assert_eq!(
        seen.size_before, seen.size_after,
        "not shrunk inside the syscall"
    );
    assert_eq!((rep.shrunk, rep.pending), (0, 1), "{rep:?}");
    assert_eq!(at_safe_point, seen.size_before / 2, "shrunk at exitsyscall");
    assert_eq!(result, 1);
}

#[test]
fn in_a_libcall_no_shrink_then_the_pending_one_happens_at_the_next_entry_check() {
    let (seen, at_safe_point, result) = guarded_scenario(2);
    let rep = seen.report.unwrap();
    assert_eq!(
        seen.size_before, seen.size_after,
        "not shrunk during the libcall"
    );
    assert_eq!((rep.shrunk, rep.pending), (0, 1), "{rep:?}");
    assert_eq!(
        at_safe_point,
        seen.size_before / 2,
        "shrunk at the next entry check"
    );
    assert_eq!(result, 1);
}

#[test]
fn pinned_no_shrink_then_the_pending_one_happens_after_unpin() {
    let (seen, at_safe_point, result) = guarded_scenario(3);
    let rep = seen.report.unwrap();
    assert_eq!(seen.size_before, seen.size_after, "not shrunk while pinned");
    assert_eq!((rep.shrunk, rep.pending), (0, 1), "{rep:?}");
    assert_eq!(
        at_safe_point,
        seen.size_before / 2,
        "shrunk at the next entry check"
    );
    assert_eq!(result, 1);
}

#[test]
fn an_imprecise_frame_blocks_the_shrink() {
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    rt(quiet()).run(move || {
        let h = Builder::new()
            .stack_size(64 * 1024)
            .spawn_managed(addr(gs_test_calls_imprecise), &[10_000])
            .unwrap();
        common::park_until(h.id, 3);
        let rep = gstack::gc();
        *o.lock().unwrap() = Some((rep.shrunk, rep.pending, inspect::stack_size(h.id).unwrap()));
        while h.result().is_none() {
            gstack::yield_now();
        }
    });
    assert_eq!(out.lock().unwrap().unwrap(), (0, 1, 64 * 1024));
}

extern "C" fn call_managed_growth(_: *mut core::ffi::c_void) -> usize {
    // Managed code called back from foreign code: it needs to grow.
    let g = gstack::testing::current_g_ptr();
    // SAFETY: gs_test_plain is a managed function taking (g, depth,
    // yields); this is the misuse under test, which must end the process.
    unsafe {
        let f: extern "C" fn(usize, usize, usize) -> usize =
            core::mem::transmute(gs_test_plain as *const ());
        f(g, 10_000, 0)
    }
}

fn growth_refused(op: usize, test: &str, want: &str) {
    if common::is_child() {
        rt(quiet()).run(move || {
            let h = Builder::new()
                .spawn_managed(
                    addr(gs_test_scenario),
                    &[
                        10,
                        op,
                        if op == 4 {
                            10_000
                        } else {
                            call_managed_growth as *const () as usize
                        },
                        0,
                    ],
                )
                .unwrap();
            while h.result().is_none() {
                gstack::yield_now();
            }
        });
        return;
    }
    let out = common::run_child(test, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(want), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn growth_in_a_syscall_is_fatal() {
    growth_refused(
        1,
        "growth_in_a_syscall_is_fatal",
        "fatal error: goroutine 2: stack growth not allowed in system call",
    );
}

#[test]
fn growth_in_a_libcall_callback_is_fatal() {
    growth_refused(
        2,
        "growth_in_a_libcall_callback_is_fatal",
        "fatal error: goroutine 2: stack growth not allowed during a libcall (managed code called back from foreign code)",
    );
}

#[test]
fn growth_of_a_pinned_stack_is_fatal() {
    growth_refused(
        4,
        "growth_of_a_pinned_stack_is_fatal",
        "fatal error: goroutine 2: stack growth of a pinned goroutine (1 pins)",
    );
}

#[test]
fn workers_scan_each_other_and_are_never_shrunk() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    rt(quiet()).run(move || {
        for _ in 0..3 {
            for d in [10usize, 100] {
                Builder::new()
                    .spawn_managed(addr(gs_test_rec), &[d, 0, 0, 20])
                    .unwrap();
            }
            o.lock().unwrap().push(gstack::gc());
        }
    });
    for rep in out.lock().unwrap().iter() {
        let pairs = &rep.workers_scanned;
        assert_eq!(pairs.len(), 2, "{rep:?}");
        let (a, b) = pairs[0];
        assert_eq!(pairs[1], (b, a), "each worker scanned the other: {rep:?}");
    }
}

#[test]
fn a_stack_freed_by_a_shrink_stays_allocated_until_the_cycle_ends() {
    // Under faultonfree a freed stack becomes inaccessible: if anything
    // touched the old stack after its free, the process would die.
    let dbg = DebugFlags {
        faultonfree: true,
        stackpoison: true,
        ..DebugFlags::default()
    };
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    let r = rt(dbg);
    r.run(move || {
        let h = Builder::new()
            .spawn_managed(addr(gs_test_scenario), &[5000, 0, 0, 0])
            .unwrap();
        // A second goroutine, scanned after the first: its roots are
        // reported while the first one's old stack waits for the end.
        let late = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[3, 0, 0, 10_000])
            .unwrap();
        common::park_until(h.id, 2);
        common::park_until(late.id, 4);
        let size = inspect::stack_size(h.id).unwrap();
        let before = gstack::stats().unwrap().stack_in_use;
        let mut during = Vec::new();
        let rep = gstack::gc_visit(&mut |root| {
            if root.goroutine == late.id {
                during.push((
                    gstack::stats().unwrap().stack_in_use,
                    gstack::check_accounting(),
                ));
            }
        });
        let after = gstack::stats().unwrap().stack_in_use;
        o.lock().unwrap().push((size, before, during, rep, after));
        while h.result().is_none() || late.result().is_none() {
            gstack::yield_now();
        }
    });
    let (size, before, during, rep, after) = out.lock().unwrap().pop().unwrap();
    assert_eq!(rep.shrunk, 1);
    assert_eq!(
        rep.freed, size,
        "the old stack was freed at the cycle's end"
    );
    // During the cycle the old stack (size) is still allocated next to the
    // new one (size / 2) and the two workers' 16 KiB stacks; at the end
    // the old one goes, and the workers' with them when they exit (not
    // the starting size, so not kept for reuse).
    const WORKER_STACKS: usize = 2 * 16 * 1024;
    assert!(!during.is_empty());
    for (in_use, acct) in &during {
        assert_eq!(*in_use, before + size / 2 + WORKER_STACKS);
        assert_eq!(*acct, Ok(()));
    }
    assert_eq!(after, before - size / 2);
    assert_eq!(r.stats().stack_in_use, 0);
}

#[test]
fn the_root_visitor_sees_exactly_the_declared_slots() {
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    rt(quiet()).run(move || {
        let a = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[10, 0, 0, 10_000])
            .unwrap();
        let b = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[3, 0, 0, 10_000])
            .unwrap();
        common::park_until(a.id, 11);
        common::park_until(b.id, 4);
        let mut want: Vec<(u64, usize, usize)> = Vec::new();
        for h in [&a, &b] {
            for f in inspect::frames(h.id).unwrap() {
                for (slot, value) in f.ptr_slots {
                    want.push((h.id, slot, value));
                }
            }
        }
        let mut got = Vec::new();
        let rep = gstack::gc_visit(&mut |r| {
            assert_eq!(r.func, gs_test_rec as *const () as usize);
            got.push((r.goroutine, r.slot, r.value));
        });
        got.sort();
        want.sort();
        *o.lock().unwrap() = Some((got, want, rep.roots));
        while a.result().is_none() || b.result().is_none() {
            gstack::yield_now();
        }
    });
    let (got, want, roots) = out.lock().unwrap().take().unwrap();
    assert_eq!(want.len(), 2 * (11 + 4));
    assert_eq!(got, want);
    assert_eq!(roots, want.len());
}

#[test]
fn adaptive_start_follows_the_average_scanned_use() {
    for adaptive in [true, false] {
        let out = Arc::new(Mutex::new(None));
        let o = out.clone();
        rt(DebugFlags {
            adaptivestackstart: adaptive,
            ..quiet()
        })
        .run(move || {
            // Shallow goroutines: gs_test_rec at depth 1 uses 2 frames of 80
            // bytes + the entry check's spill at most: avg + 928 < 2048.
            let hs: Vec<_> = (0..10)
                .map(|_| {
                    Builder::new()
                        .spawn_managed(addr(gs_test_rec), &[1, 0, 0, 10_000])
                        .unwrap()
                })
                .collect();
            for h in &hs {
                common::park_until(h.id, 2);
            }
            let rep = gstack::gc();
            let fresh = Builder::new()
                .spawn_managed(addr(gs_test_rec), &[1, 0, 0, 0])
                .unwrap();
            let size = inspect::stack_size(fresh.id).unwrap();
            *o.lock().unwrap() = Some((
                rep.start_size,
                size,
                gstack::stats().unwrap().managed_start_size,
            ));
            while hs.iter().any(|h| h.result().is_none()) || fresh.result().is_none() {
                gstack::yield_now();
            }
        });
        let (start, size, reported) = out.lock().unwrap().unwrap();
        if adaptive {
            // 160 used + 928 guard = 1088 -> 2048 bytes.
            assert_eq!((start, size, reported), (2048, 2048, 2048));
        } else {
            assert_eq!((start, size, reported), (0, 2048, 2048));
        }
    }
}

#[test]
fn adaptive_start_picks_1k_for_tiny_goroutines() {
    extern "C" {
        fn gs_test_leaf();
    }
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    rt(quiet()).run(move || {
        // gs_test_leaf parked: a 32-byte frame: 32 + 928 -> 1024.
        let hs: Vec<_> = (0..10)
            .map(|_| {
                Builder::new()
                    .spawn_managed(addr(gs_test_leaf), &[10_000])
                    .unwrap()
            })
            .collect();
        for h in &hs {
            common::park_until(h.id, 1);
        }
        let rep = gstack::gc();
        let fresh = Builder::new()
            .spawn_managed(addr(gs_test_leaf), &[0])
            .unwrap();
        *o.lock().unwrap() = Some((rep.start_size, inspect::stack_size(fresh.id).unwrap()));
        while hs.iter().any(|h| h.result().is_none()) || fresh.result().is_none() {
            gstack::yield_now();
        }
        assert_eq!(fresh.result(), Some(7));
    });
    assert_eq!(out.lock().unwrap().unwrap(), (1024, 1024));
}

#[test]
fn the_automatic_trigger_runs_cycles_when_stack_memory_grows() {
    let r = Runtime::new(Config {
        procs: 1,
        gc_percent: 100,
        debug: quiet(),
        ..Config::default()
    });
    r.run(|| {
        // 100,000 frames of 80 bytes: 8 MiB, past the 4 MiB floor.
        let h = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[100_000, 0, 0, 2])
            .unwrap();
        while h.result().is_none() {
            gstack::yield_now();
        }
    });
    assert!(r.stats().gc_cycles >= 1, "{:?}", r.stats());
    assert_eq!(r.stats().stack_in_use, 0);
}

/// A partner goroutine just started: `round(i)` makes 1000 switches
/// between main and it, `finish()` lets it end.
struct PingPong {
    round: Box<dyn FnMut(u64)>,
    finish: Box<dyn FnOnce()>,
}

/// The stack of a ping-pong partner: 12 MiB, past twice the 4 MiB floor,
/// so that its spawn alone sets the trigger off (the monitor notices
/// within a millisecond), and nothing but the ping-pong runs after it.
const BIG_STACK: usize = 12 << 20;

/// Start a `PingPong` (whose partner has a BIG_STACK) on a one-P runtime
/// with the automatic trigger on, and run rounds until a cycle has run or
/// 5 s have passed: the cycles seen, and when.
fn cycles_during(start: fn() -> PingPong) -> (u64, std::time::Duration) {
    use std::time::{Duration, Instant};
    let r = Runtime::new(Config {
        procs: 1,
        gc_percent: 100,
        debug: quiet(),
        ..Config::default()
    });
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    r.run(move || {
        assert_eq!(gstack::stats().unwrap().gc_cycles, 0);
        let PingPong { mut round, finish } = start();
        let t0 = Instant::now();
        let mut i = 0u64;
        while gstack::stats().unwrap().gc_cycles == 0 && t0.elapsed() < Duration::from_secs(5) {
            round(i);
            i += 1;
        }
        *s2.lock().unwrap() = Some((gstack::stats().unwrap().gc_cycles, t0.elapsed()));
        finish();
    });
    let seen = seen.lock().unwrap().unwrap();
    seen
}

/// The trigger's cycle starts even while every switch on the one P is a
/// direct one, with no trip through the scheduler loop (where a wanted
/// cycle used to be started only): the parking and yielding paths go
/// through g0 when a cycle is wanted, at the latest on the global queue's
/// turns.  Here a channel ping-pong: only park_direct_slow can start it.
#[test]
fn the_automatic_trigger_starts_a_cycle_during_a_channel_ping_pong() {
    let (cycles, after) = cycles_during(|| {
        let (ping, pong) = common::incrementing_partner_on(Builder::new().stack_size(BIG_STACK));
        let p3 = ping.clone();
        PingPong {
            round: Box::new(move |r| {
                for i in r * 1000..(r + 1) * 1000 {
                    ping.send(i).unwrap();
                    assert_eq!(pong.recv().unwrap(), Some(i + 1));
                }
            }),
            finish: Box::new(move || p3.close().unwrap()),
        }
    });
    assert!(cycles >= 1, "no cycle in {after:?} of channel ping-pong");
}

/// As above, with two goroutines yielding to each other (the assembly
/// fast path, and yield_switch on the global queue's turns): only
/// gs_park_yield can start it.
#[test]
fn the_automatic_trigger_starts_a_cycle_during_a_yield_ping_pong() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (cycles, after) = cycles_during(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        Builder::new()
            .stack_size(BIG_STACK)
            .spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    gstack::yield_now();
                }
            })
            .unwrap();
        PingPong {
            round: Box::new(|_| {
                for _ in 0..1000 {
                    gstack::yield_now();
                }
            }),
            finish: Box::new(move || stop.store(true, Ordering::Relaxed)),
        }
    });
    assert!(cycles >= 1, "no cycle in {after:?} of yield ping-pong");
}

#[test]
fn accounting_holds_through_spawn_grow_shrink_and_exit() {
    let checks = Arc::new(Mutex::new(Vec::new()));
    let c2 = checks.clone();
    let r = rt(quiet());
    r.run(move || {
        for round in 0..3usize {
            let hs: Vec<_> = (0..60usize)
                .map(|i| {
                    Builder::new()
                        .spawn_managed(addr(gs_test_scenario), &[(i * 37 + round) % 3000, 0, 0, 0])
                        .unwrap()
                })
                .collect();
            for _ in 0..3 {
                gstack::yield_now();
            }
            c2.lock().unwrap().push(gstack::check_accounting());
            let rep = gstack::gc();
            c2.lock().unwrap().push(gstack::check_accounting());
            c2.lock()
                .unwrap()
                .push(Ok::<(), String>(()).map(|_| assert!(rep.scanned >= 60)));
            while hs.iter().any(|h| h.result().is_none()) {
                gstack::yield_now();
            }
            assert!(hs.iter().all(|h| h.result() == Some(1)));
            c2.lock().unwrap().push(gstack::check_accounting());
        }
    });
    assert!(
        checks.lock().unwrap().iter().all(|c| c.is_ok()),
        "{:?}",
        checks.lock().unwrap()
    );
    let s = r.stats();
    assert_eq!((s.stack_in_use, s.stack_cached, s.stack_sys), (0, 0, 0));
}

#[test]
fn stack_caches_are_flushed_after_a_cycle_so_spans_can_go_back() {
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    rt(quiet()).run(move || {
        // 40 goroutines grow to 16 KiB (pool spans) and park shallow; the
        // cycle halves them, so their old 16 KiB stacks are freed.
        let hs: Vec<_> = (0..40)
            .map(|_| {
                Builder::new()
                    .spawn_managed(addr(gs_test_scenario), &[300, 0, 0, 0])
                    .unwrap()
            })
            .collect();
        for h in &hs {
            common::park_until(h.id, 2);
        }
        let rep = gstack::gc();
        gstack::yield_now(); // a scheduling point: the M flushes its cache
        let after = gstack::stats().unwrap();
        *o.lock().unwrap() = Some((rep.shrunk, after.stack_cached));
        while hs.iter().any(|h| h.result().is_none()) {
            gstack::yield_now();
        }
    });
    let (shrunk, cached) = out.lock().unwrap().unwrap();
    assert!(shrunk >= 40, "{shrunk}");
    assert_eq!(cached, 0, "the cache was flushed back to the pool");
}
