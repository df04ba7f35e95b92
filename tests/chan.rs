//! Channels and select: semantics for native goroutines, and managed
//! goroutines whose receive slots live in their own frames being shrunk
//! while they wait and other goroutines send (seed 001).

use gstack::chan::{select, Chan, ChanError, RawChan};
use gstack::{inspect, Builder, Config, DebugFlags, Runtime};
use std::sync::{Arc, Mutex};

mod common;

extern "C" {
    fn gs_test_chan_recv();
    fn gs_test_chan_send();
    fn gs_test_chan_select();
}

fn addr(f: unsafe extern "C" fn()) -> usize {
    f as *const () as usize
}

fn rt(debug: DebugFlags) -> Runtime {
    Runtime::new(Config {
        procs: 1,
        debug,
        gc_percent: 0,
        ..Config::default()
    })
}

fn run_collect<T: Send + 'static + Clone>(
    f: impl FnOnce(Arc<Mutex<Vec<T>>>) + Send + 'static,
) -> Vec<T> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    rt(DebugFlags::default()).run(move || f(o));
    let v = out.lock().unwrap().clone();
    v
}

#[test]
fn unbuffered_ping_pong_in_order() {
    let got = run_collect(|out| {
        let ping: Chan<u64> = Chan::new(0);
        let pong: Chan<u64> = Chan::new(0);
        let (p2, q2) = (ping.clone(), pong.clone());
        gstack::spawn(move || {
            while let Some(v) = p2.recv().unwrap() {
                q2.send(v * 10).unwrap();
            }
            q2.close().unwrap();
        });
        for i in 1..=100u64 {
            ping.send(i).unwrap();
            out.lock().unwrap().push(pong.recv().unwrap().unwrap());
        }
        ping.close().unwrap();
        assert_eq!(pong.recv().unwrap(), None, "closed after the last value");
    });
    assert_eq!(got, (1..=100u64).map(|i| i * 10).collect::<Vec<_>>());
}

/// A native goroutine on one P that waits in send and receive switches
/// away and back from its own call site (sched::park_switch): across each
/// wait its callee-saved registers and floating-point control state come
/// back as they were, and the goroutine it switched to runs with its own
/// (the checker runs main's part with rounding mode seed & 3 on x86-64).
#[test]
fn channel_waits_keep_registers_and_control_words_on_one_p() {
    for seed in 0..4u64 {
        let bad = Arc::new(Mutex::new(Vec::new()));
        let b2 = bad.clone();
        rt(DebugFlags::default()).run(move || {
            let ping: Chan<u64> = Chan::new(0);
            let pong: Chan<u64> = Chan::new(0);
            let (p2, q2) = (ping.clone(), pong.clone());
            gstack::spawn(move || {
                while let Some(v) = p2.recv().unwrap() {
                    if !(common::rounds_to_nearest() && common::x87_rounds_to_nearest()) {
                        b2.lock().unwrap().push(v);
                    }
                    q2.send(v + 1).unwrap();
                }
            });
            let mut got = Vec::new();
            let lost = gstack::testing::callee_saved_survive(0x5eed_0000 + seed, || {
                for i in 0..200u64 {
                    ping.send(i * 2).unwrap();
                    got.push(pong.recv().unwrap().unwrap());
                }
            });
            ping.close().unwrap();
            assert_eq!(lost, 0, "seed {seed}: registers lost across channel waits");
            assert_eq!(got, (0..200u64).map(|i| i * 2 + 1).collect::<Vec<_>>());
        });
        assert_eq!(
            *bad.lock().unwrap(),
            Vec::<u64>::new(),
            "seed {seed}: values the partner received running with the waiter's rounding mode"
        );
    }
}

/// Values of `make(i)` for i in 0..n through an unbuffered channel (each
/// side parking in turn) and a 3-slot buffered one (the ring wraps many
/// times), on one P and on two: everything arrives, intact and in order.
fn elements_round_trip<T>(make: fn(u64) -> T)
where
    T: Copy + Send + PartialEq + std::fmt::Debug + 'static,
{
    for procs in [1, 2] {
        for cap in [0, 3] {
            let out = Arc::new(Mutex::new(Vec::new()));
            let o = out.clone();
            Runtime::new(Config {
                procs,
                debug: DebugFlags::default(),
                gc_percent: 0,
                ..Config::default()
            })
            .run(move || {
                let c: Chan<T> = Chan::new(cap);
                let c2 = c.clone();
                gstack::spawn(move || {
                    for i in 0..50 {
                        c2.send(make(i)).unwrap();
                    }
                    c2.close().unwrap();
                });
                while let Some(v) = c.recv().unwrap() {
                    o.lock().unwrap().push(v);
                }
            });
            let want: Vec<T> = (0..50).map(make).collect();
            assert_eq!(*out.lock().unwrap(), want, "procs {procs}, cap {cap}");
        }
    }
}

#[test]
fn elements_of_every_size_arrive_intact() {
    elements_round_trip(|_| ());
    elements_round_trip(|i| i as u8);
    elements_round_trip(|i| [i as u8, !(i as u8), 7]);
    elements_round_trip(|i| i as u32 * 0x0101_0101);
    elements_round_trip(|i| i * 0x0102_0304_0506_0708);
    elements_round_trip(|i| (i as u128) << 64 | !i as u128);
    elements_round_trip(|i| [i, i + 1, i + 2, i + 3, i + 4]);
}

#[test]
fn buffered_fifo_len_cap_and_close() {
    let got = run_collect(|out| {
        let c: Chan<u32> = Chan::new(3);
        assert_eq!((c.len(), c.cap()), (0, 3));
        for i in 0..3 {
            c.send(i).unwrap(); // never waits: room in the buffer
        }
        assert_eq!(c.len(), 3);
        let c2 = c.clone();
        gstack::spawn(move || {
            c2.send(3).unwrap(); // waits for room
            c2.send(4).unwrap();
            c2.close().unwrap();
        });
        while let Some(v) = c.recv().unwrap() {
            out.lock().unwrap().push(v);
        }
        assert_eq!(
            c.send(9),
            Err(ChanError::Closed),
            "send on a closed channel"
        );
        assert_eq!(
            c.close(),
            Err(ChanError::Closed),
            "close of a closed channel"
        );
        assert_eq!(c.recv().unwrap(), None);
    });
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

#[test]
fn close_wakes_every_waiter() {
    let got = run_collect(|out| {
        let c: Chan<u8> = Chan::new(0);
        for _ in 0..3 {
            let (c, out) = (c.clone(), out.clone());
            gstack::spawn(move || {
                let got = c.recv().unwrap();
                out.lock().unwrap().push(format!("recv {got:?}"));
            });
        }
        let s: Chan<u8> = Chan::new(0);
        let (s2, o2) = (s.clone(), out.clone());
        gstack::spawn(move || {
            let r = s2.send(1);
            o2.lock().unwrap().push(format!("send {r:?}"));
        });
        gstack::yield_now(); // all four wait now
        c.close().unwrap();
        s.close().unwrap();
        gstack::yield_now();
    });
    assert_eq!(
        got.iter().filter(|s| *s == "recv None").count(),
        3,
        "{got:?}"
    );
    assert!(got.contains(&"send Err(Closed)".to_string()), "{got:?}");
}

#[test]
fn select_receives_sends_defaults_and_names_a_channel_twice() {
    let got = run_collect(|out| {
        let a: Chan<u64> = Chan::new(0);
        let b: Chan<u64> = Chan::new(1);
        let (mut ra, mut rb) = (0u64, 0u64);
        // Nothing ready: the default.
        let r = unsafe { select(&[a.recv_case(&mut ra), b.recv_case(&mut rb)], false) };
        out.lock().unwrap().push(format!("{r:?}"));
        // A buffered send case is ready at once.
        let v = 7u64;
        let r = unsafe { select(&[a.recv_case(&mut ra), b.send_case(&v)], true) };
        out.lock().unwrap().push(format!("{r:?}"));
        // Now b holds 7: the receive on b is ready.
        let r = unsafe { select(&[a.recv_case(&mut ra), b.recv_case(&mut rb)], true) };
        out.lock().unwrap().push(format!("{r:?} {rb}"));
        // Waiting on the same channel twice; a sender completes one case.
        let a2 = a.clone();
        gstack::spawn(move || a2.send(42).unwrap());
        let mut r2 = 0u64;
        let r = unsafe { select(&[a.recv_case(&mut ra), a.recv_case(&mut r2)], true) };
        let got = match r {
            Ok(Some((0, true))) => ra,
            Ok(Some((1, true))) => r2,
            _ => 0,
        };
        out.lock().unwrap().push(format!("twice {got}"));
        // A send case on a closed channel is an error.
        b.close().unwrap();
        let r = unsafe { select(&[b.send_case(&v)], true) };
        out.lock().unwrap().push(format!("{r:?}"));
        // A receive case on a closed channel completes with ok = false.
        let r = unsafe { select(&[b.recv_case(&mut rb)], true) };
        out.lock().unwrap().push(format!("{r:?}"));
        // An empty blocking select would wait forever.
        let r = unsafe { select(&[], true) };
        out.lock().unwrap().push(format!("{r:?}"));
    });
    assert_eq!(
        got,
        vec![
            "Ok(None)",
            "Ok(Some((1, true)))",
            "Ok(Some((1, true))) 7",
            "twice 42",
            "Err(Closed)",
            "Ok(Some((0, false)))",
            "Err(EmptySelect)",
        ]
    );
}

#[test]
fn channel_ops_outside_a_goroutine_are_errors() {
    let c: Chan<u8> = Chan::new(1);
    assert_eq!(c.send(1), Err(ChanError::NotInGoroutine));
    assert_eq!(c.recv(), Err(ChanError::NotInGoroutine));
    assert_eq!(ChanError::Closed.to_string(), "channel is closed");
}

/// A managed goroutine blocked in receive, with its slot in its own
/// frame, is shrunk while others send; every value arrives intact and in
/// order.
fn shrink_while_blocked(select_mode: bool, same_channel: bool) {
    const N: usize = 200;
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    let r = rt(DebugFlags {
        stackpoison: true,
        ..DebugFlags::default()
    });
    r.run(move || {
        let a = RawChan::new(8, 0);
        let b = if same_channel {
            a.clone()
        } else {
            RawChan::new(8, 0)
        };
        let pa = Arc::as_ptr(&a) as usize;
        let pb = Arc::as_ptr(&b) as usize;
        let receiver = if select_mode {
            let count = if same_channel { N } else { 2 * N };
            Builder::new()
                .spawn_managed(addr(gs_test_chan_select), &[3000, pa, pb, count])
                .unwrap()
        } else {
            Builder::new()
                .spawn_managed(addr(gs_test_chan_recv), &[3000, pa, N])
                .unwrap()
        };
        // Managed senders: their values live in their frames too, and they
        // grew first, so they shrink while blocked as well.
        let s1 = Builder::new()
            .spawn_managed(addr(gs_test_chan_send), &[2000, pa, N])
            .unwrap();
        let s2 = (select_mode && !same_channel).then(|| {
            Builder::new()
                .spawn_managed(addr(gs_test_chan_send), &[2000, pb, N])
                .unwrap()
        });
        let mut shrunk = 0;
        let mut sizes = Vec::new();
        while receiver.result().is_none() {
            let rep = gstack::gc();
            shrunk += rep.shrunk;
            sizes.push(inspect::stack_size(receiver.id).unwrap_or(0));
            gstack::yield_now();
        }
        while s1.result().is_none() || s2.as_ref().is_some_and(|s| s.result().is_none()) {
            gstack::yield_now();
        }
        o.lock()
            .unwrap()
            .push((receiver.result().unwrap(), shrunk, sizes));
        drop((a, b));
    });
    let (result, shrunk, sizes) = out.lock().unwrap().pop().unwrap();
    let n = N as u64;
    let want = if select_mode {
        // Each channel's values 1..=N, in order per channel.
        // (One sender when both cases name the same channel.)
        if same_channel {
            n * (n + 1) / 2
        } else {
            n * (n + 1)
        }
    } else {
        // Sum of v * i with v = i = 1..=N.
        n * (n + 1) * (2 * n + 1) / 6
    };
    assert_eq!(result as u64, want, "values intact and in order");
    assert!(
        shrunk >= 3,
        "the blocked goroutines were shrunk ({shrunk}) {sizes:?}"
    );
    assert_eq!(r.stats().stack_in_use, 0);
}

#[test]
fn shrink_stack_during_blocked_recv() {
    shrink_while_blocked(false, false);
}

#[test]
fn select_stack_adjust_two_channels() {
    shrink_while_blocked(true, false);
}

#[test]
fn select_stack_adjust_same_channel_twice() {
    shrink_while_blocked(true, true);
}
