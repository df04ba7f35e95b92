//! Stress: thousands of goroutines with random recursion depths, channel
//! traffic and selects (managed and native), scan cycles every few
//! milliseconds, forced moves and poisoning.  Every value and checksum is
//! verified and the accounting is back to zero at the end.  Bounded: a
//! fixed amount of work, no timing loop without an end.

use gstack::chan::{select, Chan, RawChan};
use gstack::{Builder, Config, DebugFlags, ManagedHandle, Runtime};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

extern "C" {
    fn gs_test_rec();
    fn gs_test_list();
    fn gs_test_chan_send();
    fn gs_test_chan_recv();
    fn gs_test_chan_select();
}

fn addr(f: unsafe extern "C" fn()) -> usize {
    f as *const () as usize
}

/// xorshift: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

enum Want {
    Exact(usize),
}

#[test]
fn thousands_of_goroutines_moving_stacks_channels_and_cycles_one_p() {
    stress(1);
}

/// Two Ps: scans on both, goroutines stolen and moved between threads.
/// (This found the preempt-hides-growth bug: a goroutine asked to stop
/// at every call crept into its guard area and off its stack; see
/// tests/preempt.rs for the deterministic version.)
#[test]
fn thousands_of_goroutines_moving_stacks_channels_and_cycles_two_ps() {
    stress(2);
}

fn stress(procs: usize) {
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let cycles = Arc::new(AtomicUsize::new(0));
    let f2 = failures.clone();
    let c2 = cycles.clone();
    let r = Runtime::new(Config {
        procs,
        gc_percent: 50,
        debug: DebugFlags {
            stackpoison: true,
            ..DebugFlags::from_env()
        },
        ..Config::default()
    });
    let t0 = Instant::now();
    r.run(move || {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let done = Arc::new(AtomicBool::new(false));

        // A native goroutine that runs a scan cycle every few milliseconds
        // (and checks the accounting) until the others are done.
        let (d2, f3, c3) = (done.clone(), f2.clone(), c2.clone());
        gstack::spawn(move || {
            let mut last = Instant::now();
            while !d2.load(Ordering::Relaxed) {
                if last.elapsed() >= Duration::from_millis(3) {
                    gstack::gc();
                    c3.fetch_add(1, Ordering::Relaxed);
                    // With several Ps another thread may be halfway through
                    // a copy (old and new stack both allocated): the sum is
                    // exact only when nothing else runs.
                    if procs > 1 {
                        last = Instant::now();
                        gstack::yield_now();
                        continue;
                    }
                    if let Err(e) = gstack::check_accounting() {
                        f3.lock().unwrap().push(format!("accounting: {e}"));
                    }
                    last = Instant::now();
                }
                gstack::yield_now();
            }
        });

        let mut checks: Vec<(String, ManagedHandle, Want)> = Vec::new();
        let mut chans = Vec::new();
        for i in 0..1500usize {
            let force = rng.next(10) == 0;
            let b = || Builder::new().force_move(force);
            match rng.next(5) {
                0 | 1 => {
                    let d = rng.next(if force { 60 } else { 2000 });
                    let y = 1 + rng.next(4);
                    let h = b()
                        .spawn_managed(addr(gs_test_rec), &[d as usize, 0, 0, y as usize])
                        .unwrap();
                    checks.push((
                        format!("rec {i} d{d}"),
                        h,
                        Want::Exact((3 * d * (d + 1) / 2 + d + 1) as usize),
                    ));
                }
                2 => {
                    let d = rng.next(if force { 60 } else { 1500 });
                    let h = b()
                        .spawn_managed(addr(gs_test_list), &[d as usize, 0, 2])
                        .unwrap();
                    checks.push((
                        format!("list {i} d{d}"),
                        h,
                        Want::Exact(((d + 1) * (d + 2) / 2) as usize),
                    ));
                }
                3 => {
                    // A managed sender and receiver pair, both grown first.
                    let n = 1 + rng.next(30) as usize;
                    let c = RawChan::new(8, rng.next(3) as usize);
                    let p = Arc::as_ptr(&c) as usize;
                    let s = b()
                        .spawn_managed(addr(gs_test_chan_send), &[rng.next(800) as usize, p, n])
                        .unwrap();
                    let rcv = b()
                        .spawn_managed(addr(gs_test_chan_recv), &[rng.next(800) as usize, p, n])
                        .unwrap();
                    let n64 = n as u64;
                    checks.push((format!("send {i}"), s, Want::Exact(n)));
                    checks.push((
                        format!("recv {i}"),
                        rcv,
                        Want::Exact((n64 * (n64 + 1) * (2 * n64 + 1) / 6) as usize),
                    ));
                    chans.push(c);
                }
                _ => {
                    // A managed select over two channels fed by two senders.
                    let n = 1 + rng.next(20) as usize;
                    let a = RawChan::new(8, 0);
                    let bb = RawChan::new(8, 1);
                    let (pa, pb) = (Arc::as_ptr(&a) as usize, Arc::as_ptr(&bb) as usize);
                    let sa = b()
                        .spawn_managed(addr(gs_test_chan_send), &[rng.next(500) as usize, pa, n])
                        .unwrap();
                    let sb = b()
                        .spawn_managed(addr(gs_test_chan_send), &[rng.next(500) as usize, pb, n])
                        .unwrap();
                    let sel = b()
                        .spawn_managed(
                            addr(gs_test_chan_select),
                            &[rng.next(500) as usize, pa, pb, 2 * n],
                        )
                        .unwrap();
                    checks.push((format!("sel-send-a {i}"), sa, Want::Exact(n)));
                    checks.push((format!("sel-send-b {i}"), sb, Want::Exact(n)));
                    checks.push((format!("select {i}"), sel, Want::Exact(n * (n + 1))));
                    chans.push(a);
                    chans.push(bb);
                }
            }
            if i % 100 == 0 {
                gstack::yield_now();
            }
        }

        // Native goroutines on typed channels with select, alongside.
        let out: Chan<u64> = Chan::new(0);
        let quit: Chan<u64> = Chan::new(0);
        for w in 0..50u64 {
            let (out, quit) = (out.clone(), quit.clone());
            gstack::spawn(move || {
                let mut sent = 0u64;
                loop {
                    let v = w * 1000 + sent;
                    let mut q = 0u64;
                    // SAFETY: v and q outlive the select.
                    let r = unsafe { select(&[out.send_case(&v), quit.recv_case(&mut q)], true) };
                    match r {
                        Ok(Some((0, _))) => sent += 1,
                        _ => break,
                    }
                    if sent == 40 {
                        break;
                    }
                }
            });
        }
        let mut total = 0u64;
        for _ in 0..50 * 40 {
            total += out.recv().unwrap().unwrap() % 1000;
        }
        if total != 50 * (0..40).sum::<u64>() {
            f2.lock()
                .unwrap()
                .push(format!("native select traffic: total {total}"));
        }
        quit.close().unwrap();

        while checks.iter().any(|(_, h, _)| h.result().is_none()) {
            gstack::yield_now();
        }
        for (name, h, want) in &checks {
            let Want::Exact(w) = want;
            if h.result() != Some(*w) {
                f2.lock()
                    .unwrap()
                    .push(format!("{name}: got {:?}, want {w}", h.result()));
            }
        }
        done.store(true, Ordering::Relaxed);
        drop(chans);
    });
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let s = r.stats();
    assert!(
        cycles.load(Ordering::Relaxed) >= 1,
        "scan cycles ran: {}",
        cycles.load(Ordering::Relaxed)
    );
    assert!(s.stack_copies > 1000, "{s:?}");
    assert_eq!(
        (s.stack_in_use, s.stack_cached, s.stack_sys),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.goroutines_alive, 0);
    eprintln!(
        "stress: {:?}, {} cycles, {s:?}",
        t0.elapsed(),
        cycles.load(Ordering::Relaxed)
    );
}
