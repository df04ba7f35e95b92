//! Several Ps: goroutines run on several threads at once, idle ones steal
//! work, channels and scan cycles work across threads, and a goroutine
//! blocked on a channel is shrunk while senders run on another thread.

use gstack::chan::{Chan, RawChan};
use gstack::{Builder, Config, DebugFlags, Runtime};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod common;
use common::{rounds_to_nearest, x87_rounds_to_nearest};

extern "C" {
    fn gs_test_chan_recv();
    fn gs_test_chan_send();
    fn gs_test_rec();
}

fn addr(f: unsafe extern "C" fn()) -> usize {
    f as *const () as usize
}

fn rt(procs: usize) -> Runtime {
    Runtime::new(Config {
        procs,
        gc_percent: 0,
        debug: DebugFlags {
            stackpoison: true,
            ..DebugFlags::default()
        },
        ..Config::default()
    })
}

/// Spin (without yielding: the caller keeps its M busy) until `done`,
/// failing with `what()` once `limit` has passed.
fn spin_until(limit: std::time::Duration, done: impl Fn() -> bool, what: impl Fn() -> String) {
    let t0 = std::time::Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "{}", what());
        std::hint::spin_loop();
    }
}

#[test]
fn goroutines_run_on_every_p_and_all_finish() {
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let (t2, d2) = (threads.clone(), done.clone());
    let r = rt(2);
    r.run(move || {
        for _ in 0..2000 {
            let (t, d) = (t2.clone(), d2.clone());
            gstack::spawn(move || {
                // Busy enough that the other M steals some of the queue.
                let mut x = 0u64;
                for i in 0..20_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
                std::hint::black_box(x);
                t.lock().unwrap().insert(std::thread::current().id());
                gstack::yield_now();
                d.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), 2000);
    assert_eq!(threads.lock().unwrap().len(), 2, "both Ms ran goroutines");
    let s = r.stats();
    assert_eq!((s.stack_in_use, s.stack_sys, s.goroutines_alive), (0, 0, 0));
}

#[test]
fn channel_pipeline_across_ps_delivers_every_value_in_order() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o2 = out.clone();
    rt(2).run(move || {
        let a: Chan<u64> = Chan::new(0);
        let b: Chan<u64> = Chan::new(4);
        let (a2, b2) = (a.clone(), b.clone());
        gstack::spawn(move || {
            for i in 1..=20_000u64 {
                a2.send(i).unwrap();
            }
            a2.close().unwrap();
        });
        gstack::spawn(move || {
            while let Some(v) = a.recv().unwrap() {
                b2.send(v * 2).unwrap();
            }
            b2.close().unwrap();
        });
        let mut last = 0;
        let mut n = 0u64;
        let mut ok = true;
        while let Some(v) = b.recv().unwrap() {
            ok &= v == last + 2;
            last = v;
            n += 1;
        }
        o2.lock().unwrap().push((n, ok));
    });
    assert_eq!(*out.lock().unwrap(), vec![(20_000, true)]);
}

#[test]
fn shrink_while_blocked_with_senders_on_another_thread() {
    const N: usize = 300;
    let out = Arc::new(Mutex::new(None));
    let o2 = out.clone();
    let r = rt(2);
    r.run(move || {
        let c = RawChan::new(8, 0);
        let p = Arc::as_ptr(&c) as usize;
        let recv = Builder::new()
            .spawn_managed(addr(gs_test_chan_recv), &[3000, p, N])
            .unwrap();
        let send = Builder::new()
            .spawn_managed(addr(gs_test_chan_send), &[2000, p, N])
            .unwrap();
        let mut cycles = 0;
        while recv.result().is_none() || send.result().is_none() {
            gstack::gc();
            cycles += 1;
            gstack::yield_now();
        }
        *o2.lock().unwrap() = Some((recv.result().unwrap(), send.result().unwrap(), cycles));
        drop(c);
    });
    let (got, sent, cycles) = out.lock().unwrap().unwrap();
    let n = N as u64;
    assert_eq!(
        got as u64,
        n * (n + 1) * (2 * n + 1) / 6,
        "every value, in order"
    );
    assert_eq!(sent, N);
    assert!(cycles >= 1);
    assert_eq!(r.stats().stack_in_use, 0);
}

#[test]
fn scan_cycles_claim_goroutines_running_on_other_threads() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o2 = out.clone();
    let r = rt(2);
    r.run(move || {
        let hs: Vec<_> = (0..200usize)
            .map(|i| {
                Builder::new()
                    .spawn_managed(addr(gs_test_rec), &[(i * 37) % 2000, 0, 0, 50])
                    .unwrap()
            })
            .collect();
        let mut reports = Vec::new();
        while hs.iter().any(|h| h.result().is_none()) {
            reports.push(gstack::gc());
        }
        let bad: Vec<_> = hs
            .iter()
            .enumerate()
            .filter(|(i, h)| {
                let d = ((i * 37) % 2000) as u64;
                h.result() != Some((3 * d * (d + 1) / 2 + d + 1) as usize)
            })
            .map(|(i, _)| i)
            .collect();
        o2.lock().unwrap().push((
            bad,
            reports.len(),
            reports.iter().map(|r| r.shrunk).sum::<usize>(),
        ));
    });
    let (bad, cycles, _shrunk) = out.lock().unwrap().pop().unwrap();
    assert!(bad.is_empty(), "wrong results: {bad:?}");
    assert!(cycles >= 1);
    let s = r.stats();
    assert_eq!((s.stack_in_use, s.stack_sys), (0, 0));
}

extern "C" {
    fn gs_test_scenario();
}

struct Blocking {
    flag: std::sync::atomic::AtomicBool,
    seen: std::sync::atomic::AtomicBool,
}

/// Foreign code in a system call that blocks until another goroutine sets
/// the flag (bounded: 5 s).
extern "C" fn block_until_flag(arg: *mut core::ffi::c_void) -> usize {
    // SAFETY: the test passes a live Arc<Blocking>.
    let b = unsafe { &*(arg as *const Blocking) };
    let t0 = std::time::Instant::now();
    while !b.flag.load(Ordering::SeqCst) && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    b.seen
        .store(b.flag.load(Ordering::SeqCst), Ordering::SeqCst);
    0
}

#[test]
fn a_p_blocked_in_a_system_call_is_handed_to_another_m() {
    // One P.  A managed goroutine sits in a system call until another
    // goroutine sets a flag: only if the monitor hands the P to another M
    // can that goroutine run meanwhile.
    let b = Arc::new(Blocking {
        flag: std::sync::atomic::AtomicBool::new(false),
        seen: std::sync::atomic::AtomicBool::new(false),
    });
    let b2 = b.clone();
    let out = Arc::new(Mutex::new(None));
    let o2 = out.clone();
    let r = rt(1);
    r.run(move || {
        let h = Builder::new()
            .spawn_managed(
                addr(gs_test_scenario),
                &[
                    10,
                    1,
                    block_until_flag as *const () as usize,
                    Arc::as_ptr(&b2) as usize,
                ],
            )
            .unwrap();
        let b3 = b2.clone();
        gstack::spawn(move || b3.flag.store(true, Ordering::SeqCst));
        while h.result().is_none() {
            gstack::yield_now();
        }
        *o2.lock().unwrap() = h.result();
    });
    assert!(
        b.seen.load(Ordering::SeqCst),
        "the flag was set while the syscall blocked"
    );
    assert_eq!(*out.lock().unwrap(), Some(1));
    assert_eq!(r.stats().stack_in_use, 0);
}

/// Record of who ran on which thread, in one global order.
#[derive(Default)]
struct Trace(Mutex<Vec<(&'static str, std::thread::ThreadId)>>);

impl Trace {
    fn note(&self, who: &'static str) {
        self.0
            .lock()
            .unwrap()
            .push((who, std::thread::current().id()));
    }
    /// What ran on `t` after the entry `after` (in order).
    fn on_thread_after(&self, t: std::thread::ThreadId, after: &str) -> Vec<&'static str> {
        let v = self.0.lock().unwrap();
        let at = v.iter().position(|e| e.0 == after).expect("entry");
        v[at + 1..]
            .iter()
            .filter(|e| e.1 == t)
            .map(|e| e.0)
            .collect()
    }
}

/// With several Ps a spawned goroutine goes to its P's runnext: the yield
/// that follows the spawn runs it before the goroutines queued earlier
/// (a plain FIFO queue would run "old1" first).  The other M is kept busy
/// meanwhile (a goroutine it took while main spun), so none of them is
/// stolen and the order on main's thread is the P's own.
#[test]
fn a_spawned_goroutine_runs_next_on_its_p_before_older_queued_ones() {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    for _ in 0..5 {
        let trace = Arc::new(Trace::default());
        let t2 = trace.clone();
        rt(2).run(move || {
            let me = std::thread::current().id();
            let started = Arc::new(Mutex::new(None));
            let release = Arc::new(AtomicBool::new(false));
            let (s2, r2) = (started.clone(), release.clone());
            gstack::spawn(move || {
                *s2.lock().unwrap() = Some(std::thread::current().id());
                while !r2.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            });
            // Spin (no yield) until the other M took the blocker.
            spin_until(
                Duration::from_secs(10),
                || started.lock().unwrap().is_some(),
                || "blocker never ran".into(),
            );
            assert_ne!(*started.lock().unwrap(), Some(me));
            for name in ["old1", "old2", "old3", "new"] {
                let t = t2.clone();
                gstack::spawn(move || t.note(name));
            }
            t2.note("main yields");
            gstack::yield_now();
            let after = t2.on_thread_after(me, "main yields");
            release.store(true, Ordering::SeqCst);
            assert_eq!(
                after.first(),
                Some(&"new"),
                "on main's thread after its yield: {after:?}"
            );
        });
    }
}

/// A goroutine in runnext is not kept from the other Ms for ever: when
/// its P's M runs something long (here the spawner spins without
/// yielding), the idle M -- asleep before the spawn, so the spawn must
/// wake it -- takes it.  Several times over: every spawn after the first
/// wake-up still wakes the M that went back to sleep.
#[test]
fn a_goroutine_in_runnext_is_stolen_when_its_m_is_busy_and_the_idle_m_is_woken() {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    rt(2).run(|| {
        let me = std::thread::current().id();
        for round in 0..5 {
            // The other M finds nothing, spins for a while, then sleeps.
            std::thread::sleep(Duration::from_millis(20));
            let ran = Arc::new(Mutex::new(None));
            let done = Arc::new(AtomicBool::new(false));
            let (r2, d2) = (ran.clone(), done.clone());
            gstack::spawn(move || {
                *r2.lock().unwrap() = Some(std::thread::current().id());
                d2.store(true, Ordering::SeqCst);
            });
            spin_until(
                Duration::from_secs(10),
                || done.load(Ordering::SeqCst),
                || format!("round {round}: the spawned goroutine never ran while its M was busy"),
            );
            let t = ran.lock().unwrap().expect("ran");
            assert_ne!(t, me, "round {round}: it ran on the busy M's thread");
        }
    });
}

/// A goroutine that yields with nothing else queued waits in runnext
/// (switched away from without going through g0); if the goroutine it
/// yielded to keeps its M busy, the other M resumes it -- on another
/// thread, with its context intact.
#[test]
fn a_yielded_goroutine_in_runnext_is_resumed_by_the_other_m_when_this_one_is_busy() {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    rt(2).run(|| {
        // A round proves something only when the spinner ran on this
        // thread, i.e. this goroutine yielded to it: if the other M stole
        // the spinner first (this thread descheduled for longer than the
        // steal grace), the yield had nothing to switch to.  Such rounds
        // are retried, up to a bound.
        let mut proved = 0;
        let mut round = 0u64;
        while proved < 5 {
            round += 1;
            assert!(
                round <= 200,
                "only {proved} of {round} rounds ran the spinner here"
            );
            let resumed = Arc::new(AtomicBool::new(false));
            let spinner_thread = Arc::new(Mutex::new(None));
            let (r2, st2) = (resumed.clone(), spinner_thread.clone());
            let before = std::thread::current().id();
            // Values on the stack across the switch; callee-saved
            // registers and the FP control state through the checker.
            let keep: Vec<u64> = (0..64).map(|i| i * 7 + round).collect();
            let sum: u64 = keep.iter().sum();
            let rounding = Arc::new(Mutex::new(None));
            let rn2 = rounding.clone();
            gstack::spawn(move || {
                // The rounding first: main reads it once it sees the thread.
                *rn2.lock().unwrap() = Some(rounds_to_nearest() && x87_rounds_to_nearest());
                *st2.lock().unwrap() = Some(std::thread::current().id());
                spin_until(
                    Duration::from_secs(10),
                    || r2.load(Ordering::SeqCst),
                    || format!("round {round}: the yielded goroutine was never resumed"),
                );
            });
            let mut after = before;
            let lost = gstack::testing::callee_saved_survive(0x5eed_0000 + round, || {
                gstack::yield_now();
                after = std::thread::current().id();
            });
            resumed.store(true, Ordering::SeqCst);
            assert_eq!(lost, 0, "round {round}: registers lost across the switch");
            assert_eq!(keep.iter().sum::<u64>(), sum);
            let ran_here = *spinner_thread.lock().unwrap() == Some(before);
            if ran_here {
                assert_ne!(before, after, "round {round}: resumed on its own thread");
                // The checker ran the yielder with rounding mode round & 3
                // (x86-64): the goroutine it switched to has its own.
                assert_eq!(
                    *rounding.lock().unwrap(),
                    Some(true),
                    "round {round}: the yielder's floating-point rounding mode leaked into the goroutine it yielded to"
                );
                proved += 1;
            }
            // Let the spinner finish before the next round.
            gstack::yield_now();
        }
    });
}

/// A yield on several Ps whose P has a managed goroutine in runnext: the
/// assembly fast path (native goroutines only: a managed one's status is
/// changed with a compare-and-swap against scans) puts it back and the
/// Rust path runs it.  Every one of them runs and returns its value, and
/// none is left stranded in runnext.  (This checks the put-back; that the
/// assembly leaves managed goroutines alone matters only while a scan
/// claims one, which no test here can time.)
#[test]
fn a_managed_goroutine_in_runnext_runs_after_a_yield_on_several_ps() {
    use std::time::{Duration, Instant};
    extern "C" {
        fn gs_test_leaf();
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    rt(2).run(move || {
        for i in 0..2000 {
            // gs_test_leaf(g, 0) returns 7 at once.
            let h = Builder::new()
                .spawn_managed(addr(gs_test_leaf), &[0])
                .unwrap();
            gstack::yield_now();
            let t0 = Instant::now();
            while h.result().is_none() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "spawn {i}: the managed goroutine never ran"
                );
                gstack::yield_now();
            }
            assert_eq!(h.result(), Some(7), "spawn {i}");
            r2.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert_eq!(ran.load(Ordering::Relaxed), 2000);
}

/// Work made while an idle M's wake-up is still pending wakes nobody by
/// itself; the woken M passes the wake-up on while more Ms sleep and work
/// is left.  Here three goroutines can only finish when all three run at
/// once, while the spawner keeps its own M busy: every idle M of four Ps
/// has to be woken, from three spawns made in a row.
#[test]
fn spawns_in_a_row_wake_every_idle_m_they_need() {
    use std::time::Duration;
    let r = Runtime::new(Config {
        procs: 4,
        gc_percent: 0,
        ..Config::default()
    });
    r.run(|| {
        for round in 0..3 {
            // Every other M goes to sleep.
            std::thread::sleep(Duration::from_millis(20));
            let arrived = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            for _ in 0..3 {
                let (a, d) = (arrived.clone(), done.clone());
                gstack::spawn(move || {
                    a.fetch_add(1, Ordering::SeqCst);
                    spin_until(
                        Duration::from_secs(10),
                        || a.load(Ordering::SeqCst) >= 3,
                        || {
                            let n = a.load(Ordering::SeqCst);
                            format!("round {round}: only {n} of 3 goroutines ran at once")
                        },
                    );
                    d.fetch_add(1, Ordering::SeqCst);
                });
            }
            spin_until(
                Duration::from_secs(20),
                || done.load(Ordering::SeqCst) >= 3,
                || format!("round {round}: {} of 3 done", done.load(Ordering::SeqCst)),
            );
        }
    });
}
