//! Channels, select, spawning, scan cycles and memory per goroutine, on one
//! thread (`procs: 1`: one M with one P, every goroutine runs on the thread
//! that calls `Runtime::run`).  The Go 1.19 side is
//! `benches/go/runtime_test.go`.
//!
//! Timings (criterion, each timed inside a goroutine of a runtime with
//! `gc_percent: 0`, so no automatic cycle adds its work):
//!
//! * `chan/unbuffered round trip` — two native goroutines ping-pong a u64
//!   over two unbuffered `Chan<u64>`; one iteration is a send and a receive
//!   on each side (two goroutine switches).  Target: at most 100 ns.
//! * `chan/buffered(64) send+recv` — a producer sends into a 64-slot
//!   channel, the timing goroutine receives; one iteration is one value
//!   (a send and a receive; a switch every ~64 values).
//! * `select/2 cases round trip` — as the unbuffered round trip, but every
//!   receive (on both sides) is a blocking 2-case `select` (the partner's
//!   on two request channels used alternately, the timer's on the reply
//!   channel and one that never gets a value); sends are plain.
//! * `spawn+exit` / `spawn+exit managed` — spawn a goroutine that returns
//!   at once (a native `|| {}`, or gs_test_leaf(g, 0)) and yield to let it
//!   run to its end; the dead G and its stack are recycled by the next
//!   spawn; on 1 P and (`spawn+exit 2 Ps`, target at most 100 ns, Go
//!   1.19: 320-480 ns) on 2 Ps, where the other M spins for work.
//! * `gc/{10k,100k} parked` — one scan cycle (`gstack::gc()`) over that many
//!   managed goroutines parked in gs_test_rec at depth 3 (4 frames, yielding
//!   whenever they run), throughput in goroutines.  Such goroutines are
//!   *runnable*: every time a scan worker ends its 200 µs slice and yields,
//!   all of them run once (a native goroutine counts these rounds; the
//!   report gives the rounds per cycle).
//! * `gc/{10k,100k} chan-blocked` — the same over managed goroutines
//!   blocked in gs_test_chan_recv on one channel (status Waiting, like
//!   Go's goroutines blocked on a channel): the cost of the scan itself.
//!   Without a root visitor a cycle does not walk frames (it only decides
//!   on shrinking); `... root visitor` is `gc_visit` with a visitor that
//!   counts slots: every goroutine's frames are walked, as a Go GC cycle
//!   scans every stack.
//!
//! One-shot figures, printed (stderr) before criterion runs, each measured
//! in a child process of its own so that the heap of one cannot serve the
//! next (labelled `memory/...`; skipped when a filter names none of them):
//!
//! * `memory/parked 2KiB start` — 100,000 managed goroutines parked in
//!   gs_test_leaf on the default 2 KiB start: VmRSS and stack statistics
//!   before and after, bytes per goroutine.  Target: at most 2.2 KB.
//! * `memory/parked 1KiB start` — the same after one `gc()` that measured
//!   parked gs_test_leaf goroutines, so that adaptive start gives new
//!   managed goroutines 1 KiB.  Target: at most 1.4 KB.
//! * `memory/shrink 10k from 64KiB` — 10,000 goroutines grow to 64 KiB
//!   (gs_test_scenario: gs_test_plain to depth 1500, back, then parked in
//!   gs_test_leaf); stack memory before a cycle, after one, and after each
//!   further one (one halving per cycle per goroutine) until nothing
//!   shrinks; the share of stack_in_use (and of the RSS growth) returned.
//! * `memory/shrink 10k from 64KiB chan-blocked` — the same with the
//!   goroutines blocked in a channel receive (gs_test_chan_recv grows the
//!   same way first): the shrinks without runnable goroutines running
//!   between the workers' slices.
//!
//! The size of a G is not public: the per-goroutine heap is estimated as
//! (RSS delta - stack memory mapped) / n.  (`size_of::<G>()` was 448
//! bytes with `repr(C, align(64))` at 2753aeb and 4be7a41, 440 bytes with
//! plain `repr(C)` in session 2, and is 144 bytes on x86-64 (240 on
//! aarch64) since the cold state moved to a lazily made GExtra; it is
//! asserted as GS_G_SIZE in include/gstack_abi.h.)
//!
//! The `gc/...` runtimes live on a thread of their own for the whole bench
//! function (their setup is built once, not per iteration).  The
//! chan-blocked goroutines end when their channel is closed; the runnable
//! ones (`gc/... parked`) cannot be brought to an end cheaply (each would
//! have to use up its yields, and their round counter never ends), so that
//! thread and its goroutines are left parked until the process exits.  The report at the end lists the medians and the
//! targets (stderr).
//!
//! After every call of the channel, select and spawn benches a short
//! probe runs (benches/common/probe.rs: an ALU-throughput loop, 2-3 ms);
//! the report gives its median next to each figure.  On the VM these were
//! tuned on, the probe reads about 1.5 ns when the core is ours alone and
//! 2.1-2.8 ns in the machine's slow phases, when our figures run 30-50%
//! higher: it tells a slow phase from a regression.

use criterion::{black_box, Criterion, Throughput};
use gstack::chan::{select, Chan, RawChan};
use gstack::Builder;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::probe::{note_probed, probe_summary};
use common::{in_goroutine, in_goroutine_procs, median_ns, note, runtime, spawn_exit_native};

extern "C" {
    fn gs_test_leaf();
    fn gs_test_rec();
    fn gs_test_scenario();
    fn gs_test_chan_recv();
}

fn addr(f: unsafe extern "C" fn()) -> usize {
    f as *const () as usize
}

/// Set in a child process: which one-shot measurement to run.
const CHILD_ENV: &str = "GSTACK_RUNTIME_BENCH_CHILD";

/// Per call, the rounds of all runnable goroutines run per cycle (gc/...
/// parked).
static ROUNDS: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

// ---------------------------------------------------------------- channels

fn unbuffered_round_trip(n: u64) -> Duration {
    let ping: Chan<u64> = Chan::new(0);
    let pong: Chan<u64> = Chan::new(0);
    let (p2, q2) = (ping.clone(), pong.clone());
    gstack::spawn(move || {
        while let Some(v) = p2.recv().unwrap() {
            q2.send(v + 1).unwrap();
        }
    });
    // One untimed round: the partner is started and waits in recv.
    ping.send(0).unwrap();
    assert_eq!(pong.recv().unwrap(), Some(1));
    let t = Instant::now();
    for i in 0..n {
        ping.send(i).unwrap();
        black_box(pong.recv().unwrap());
    }
    let d = t.elapsed();
    ping.close().unwrap();
    d
}

fn buffered_pairs(n: u64) -> Duration {
    let c: Chan<u64> = Chan::new(64);
    let c2 = c.clone();
    let t = Instant::now();
    gstack::spawn(move || {
        for i in 0..n {
            c2.send(i).unwrap();
        }
        c2.close().unwrap();
    });
    let mut sum = 0u64;
    let mut got = 0u64;
    while let Some(v) = c.recv().unwrap() {
        sum = sum.wrapping_add(v);
        got += 1;
    }
    let d = t.elapsed();
    assert_eq!(got, n);
    black_box(sum);
    d
}

fn select_round_trip(n: u64) -> Duration {
    let a: Chan<u64> = Chan::new(0);
    let b: Chan<u64> = Chan::new(0);
    let pong: Chan<u64> = Chan::new(0);
    let never: Chan<u64> = Chan::new(0);
    let (a2, b2, q2) = (a.clone(), b.clone(), pong.clone());
    gstack::spawn(move || loop {
        let (mut ra, mut rb) = (0u64, 0u64);
        // SAFETY: the slots live in this frame until select returns.
        let r = unsafe { select(&[a2.recv_case(&mut ra), b2.recv_case(&mut rb)], true) };
        match r {
            Ok(Some((0, true))) => q2.send(ra + 1).unwrap(),
            Ok(Some((1, true))) => q2.send(rb + 1).unwrap(),
            _ => break, // closed
        }
    });
    let round = |i: u64| {
        if i & 1 == 0 {
            a.send(i).unwrap();
        } else {
            b.send(i).unwrap();
        }
        let (mut r, mut dummy) = (0u64, 0u64);
        // SAFETY: as above.
        let got = unsafe { select(&[pong.recv_case(&mut r), never.recv_case(&mut dummy)], true) };
        debug_assert_eq!(got, Ok(Some((0, true))));
        black_box(got.is_ok());
        r
    };
    assert_eq!(round(0), 1);
    let t = Instant::now();
    for i in 0..n {
        black_box(round(i));
    }
    let d = t.elapsed();
    a.close().unwrap();
    drop(never);
    d
}

fn chans(c: &mut Criterion) {
    let mut g = c.benchmark_group("chan");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("unbuffered round trip", |b| {
        b.iter_custom(|iters| {
            note_probed(
                "chan/unbuffered round trip",
                iters,
                in_goroutine(iters, unbuffered_round_trip),
            )
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("buffered(64) send+recv", |b| {
        b.iter_custom(|iters| {
            note_probed(
                "chan/buffered(64) send+recv",
                iters,
                in_goroutine(iters, buffered_pairs),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("select");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("2 cases round trip", |b| {
        b.iter_custom(|iters| {
            note_probed(
                "select/2 cases round trip",
                iters,
                in_goroutine(iters, select_round_trip),
            )
        })
    });
    g.finish();
}

// ------------------------------------------------------------------ spawn

fn spawns(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (name, procs) in [("spawn+exit", 1), ("spawn+exit 2 Ps", 2)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let d = in_goroutine_procs(procs, iters, spawn_exit_native);
                note_probed(name, iters, d)
            })
        });
    }
    g.bench_function("spawn+exit managed", |b| {
        b.iter_custom(|iters| {
            let d = in_goroutine(iters, |n| {
                let leaf = addr(gs_test_leaf);
                let h = Builder::new().spawn_managed(leaf, &[0]).unwrap();
                gstack::yield_now();
                assert_eq!(h.result(), Some(7));
                // A G is reused once its goroutine exited and its last
                // handle is gone: drop each handle before the next spawn.
                let mut last = Some(h);
                let t = Instant::now();
                for _ in 0..n {
                    drop(last.take());
                    last = Some(Builder::new().spawn_managed(leaf, &[0]).unwrap());
                    gstack::yield_now();
                }
                let d = t.elapsed();
                if let Some(h) = last {
                    assert_eq!(h.result(), Some(7), "ran to its end");
                }
                let s = gstack::stats().unwrap();
                assert!(s.goroutines_recycled >= n, "{s:?}");
                d
            });
            note_probed("spawn+exit managed", iters, d)
        })
    });
    g.finish();
}

// ------------------------------------------------------------- scan cycles

/// A runtime on a thread of its own whose main goroutine builds a setup
/// once, then times `n` scan cycles per request.
struct GcServer {
    req: Option<mpsc::Sender<(u64, bool)>>,
    resp: mpsc::Receiver<(Duration, u64)>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Whether the thread ends (chan-blocked goroutines can be released)
    /// or is left parked (runnable yielders cannot end cheaply).
    joins: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Parked {
    /// gs_test_rec at depth 3, yielding: runnable.
    Yielding,
    /// gs_test_chan_recv on a channel nobody sends to: waiting.
    ChanBlocked,
}

impl GcServer {
    fn start(n: usize, kind: Parked) -> GcServer {
        let (req_tx, req_rx) = mpsc::channel::<(u64, bool)>();
        let (resp_tx, resp_rx) = mpsc::channel::<(Duration, u64)>();
        let thread = std::thread::spawn(move || {
            runtime().run(move || {
                let chan = RawChan::new(8, 0);
                // With runnable goroutines: a native one counting its
                // turns, i.e. the rounds in which every runnable goroutine
                // ran once (one FIFO run queue).
                let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
                if kind == Parked::Yielding {
                    let r2 = rounds.clone();
                    gstack::spawn(move || loop {
                        r2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        gstack::yield_now();
                    });
                }
                let extra = (kind == Parked::Yielding) as usize;
                for _ in 0..n {
                    let h = match kind {
                        // Depth 3, so many yields that they never run out.
                        Parked::Yielding => {
                            Builder::new().spawn_managed(addr(gs_test_rec), &[3, 0, 0, 1 << 40])
                        }
                        Parked::ChanBlocked => Builder::new().spawn_managed(
                            addr(gs_test_chan_recv),
                            &[0, Arc::as_ptr(&chan) as usize, 1],
                        ),
                    };
                    h.unwrap();
                }
                gstack::yield_now(); // every one runs to where it parks
                let alive = gstack::stats().unwrap().goroutines_alive;
                assert_eq!(alive, n + 1 + extra);
                // One untimed cycle.
                let rep = gstack::gc();
                assert!(rep.scanned >= n, "{:?}", rep.scanned);
                resp_tx.send((Duration::ZERO, 0)).unwrap();
                while let Ok((iters, visit)) = req_rx.recv() {
                    let r0 = rounds.load(std::sync::atomic::Ordering::Relaxed);
                    let mut slots = 0usize;
                    let t = Instant::now();
                    for _ in 0..iters {
                        if visit {
                            black_box(gstack::gc_visit(&mut |r| {
                                slots += 1;
                                black_box(r);
                            }));
                        } else {
                            black_box(gstack::gc());
                        }
                    }
                    black_box(slots);
                    let d = t.elapsed();
                    let r = rounds.load(std::sync::atomic::Ordering::Relaxed) - r0;
                    assert_eq!(gstack::stats().unwrap().goroutines_alive, n + 1 + extra);
                    resp_tx.send((d, r)).unwrap();
                }
                match kind {
                    Parked::ChanBlocked => {
                        chan.close().unwrap(); // each receive returns "closed"
                        while gstack::stats().unwrap().goroutines_alive > 1 {
                            gstack::yield_now();
                        }
                    }
                    Parked::Yielding => loop {
                        // Left here until the process exits (see the top).
                        std::thread::park();
                    },
                }
            });
        });
        resp_rx.recv().expect("gc server set up");
        GcServer {
            req: Some(req_tx),
            resp: resp_rx,
            thread: Some(thread),
            joins: kind == Parked::ChanBlocked,
        }
    }

    /// Time `iters` cycles; note the rounds run in between under `name`.
    fn time(&self, name: &str, iters: u64, visit: bool) -> Duration {
        self.req.as_ref().unwrap().send((iters, visit)).unwrap();
        let (d, rounds) = self.resp.recv().unwrap();
        ROUNDS
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .push(rounds as f64 / iters.max(1) as f64);
        d
    }
}

impl Drop for GcServer {
    fn drop(&mut self) {
        drop(self.req.take());
        if let Some(t) = self.thread.take() {
            if self.joins {
                t.join().unwrap();
            }
        }
    }
}

const GC_SIZES: [(usize, &str); 2] = [(10_000, "10k"), (100_000, "100k")];

fn cycles(c: &mut Criterion) {
    let mut g = c.benchmark_group("gc");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for kind in [Parked::ChanBlocked, Parked::Yielding] {
        for (n, name) in GC_SIZES {
            let (id, visit_id) = match kind {
                Parked::Yielding => (format!("{name} parked"), None),
                Parked::ChanBlocked => (
                    format!("{name} chan-blocked"),
                    Some(format!("{name} chan-blocked root visitor")),
                ),
            };
            let full = format!("gc/{id}");
            let visit_full = visit_id.as_ref().map(|v| format!("gc/{v}"));
            if !selected(&full) && !visit_full.as_ref().is_some_and(|v| selected(v)) {
                continue; // do not build 100k goroutines for nothing
            }
            let server = GcServer::start(n, kind);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| note(&full, iters, server.time(&full, iters, false)))
            });
            if let (Some(id), Some(full)) = (visit_id, visit_full) {
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| note(&full, iters, server.time(&full, iters, true)))
                });
            }
            drop(server);
        }
    }
    g.finish();
}

// ------------------------------------------------------ one-shot: memory

fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn alive() -> usize {
    gstack::stats().unwrap().goroutines_alive
}

fn finish_all() {
    while alive() > 1 {
        gstack::yield_now();
    }
}

/// Child: 100,000 managed goroutines parked in gs_test_leaf, starting at
/// `start` bytes (2048: the default; 1024: adaptive, after a cycle that
/// measured parked gs_test_leaf goroutines).
fn child_parked(start: usize) {
    const N: usize = 100_000;
    runtime().run(move || {
        let leaf = addr(gs_test_leaf);
        if start == 1024 {
            // A cycle that measures tiny goroutines: gs_test_leaf parked
            // uses a 32-byte frame (+ the entry record): 1 KiB start.
            for _ in 0..100 {
                Builder::new().spawn_managed(leaf, &[1000]).unwrap();
            }
            gstack::yield_now();
            let rep = gstack::gc();
            let s = gstack::stats().unwrap();
            eprintln!(
                "  (the cycle before: scanned {}, start_size {}, stats().managed_start_size {})",
                rep.scanned, rep.start_size, s.managed_start_size
            );
            assert_eq!(s.managed_start_size, 1024, "adaptive start gives 1 KiB");
            finish_all();
        } else {
            assert_eq!(gstack::stats().unwrap().managed_start_size, 2048);
        }
        let s0 = gstack::stats().unwrap();
        let rss0 = rss();
        let t = Instant::now();
        for _ in 0..N {
            // Two yields: parked at the first when measured, then finished.
            Builder::new().spawn_managed(leaf, &[2]).unwrap();
        }
        let spawn_ns = t.elapsed().as_nanos() as f64 / N as f64;
        let t = Instant::now();
        gstack::yield_now(); // each runs to its first yield
        let run_ns = t.elapsed().as_nanos() as f64 / N as f64;
        let s1 = gstack::stats().unwrap();
        let rss1 = rss();
        assert_eq!(s1.goroutines_alive, N + 1, "all parked, none finished");
        finish_all();

        let n = N as f64;
        let in_use = (s1.stack_in_use - s0.stack_in_use) as f64 / n;
        let sys = (s1.stack_sys as f64 - s0.stack_sys as f64) / n;
        let per_rss = (rss1 as f64 - rss0 as f64) / n;
        // What is not stack: the G (from a slab: no allocator header;
        // these goroutines never need a GExtra, and a dropped handle
        // leaves nothing behind).
        let g_est = per_rss - sys;
        let formula = in_use + g_est;
        let target = if start == 2048 { 2200.0 } else { 1400.0 };
        eprintln!(
            "  {N} managed goroutines parked in gs_test_leaf, start {start} B; spawn {spawn_ns:.0} ns each, first run to the park {run_ns:.0} ns each"
        );
        eprintln!(
            "  stack_in_use +{} B = {in_use:.0} B/goroutine; stack_sys +{} B = {sys:.0} B/goroutine",
            s1.stack_in_use - s0.stack_in_use,
            s1.stack_sys as i64 - s0.stack_sys as i64
        );
        eprintln!(
            "  VmRSS {} KiB -> {} KiB: +{} KiB = {per_rss:.0} B/goroutine",
            rss0 / 1024,
            rss1 / 1024,
            (rss1 as i64 - rss0 as i64) / 1024
        );
        eprintln!(
            "  not stack (G + heap per goroutine, estimated = RSS/n - stack_sys/n): {g_est:.0} B"
        );
        eprintln!(
            "  (stack_in_use + n * G estimate) / n = {in_use:.0} + {g_est:.0} = {formula:.0} B/goroutine"
        );
        eprintln!(
            "  bytes per goroutine (RSS) {per_rss:.0} B = {:.2} KB: target <= {:.1} KB: {}",
            per_rss / 1000.0,
            target / 1000.0,
            if per_rss <= target { "met" } else { "MISSED" }
        );
    });
    let _ = std::io::Write::flush(&mut std::io::stderr());
}

/// Child: 10,000 goroutines grow to 64 KiB and go back to shallow depth;
/// stack memory before, after one cycle, after each further one.  With
/// `blocked` false they park in gs_test_leaf (gs_test_scenario: runnable,
/// yielding); with `blocked` true they wait in a channel receive
/// (gs_test_chan_recv, which grows the same way first): the same shrinks
/// without other goroutines running between the workers' slices.
fn child_shrink(blocked: bool) {
    const N: usize = 10_000;
    const DEPTH: usize = 1500; // 32-byte frames: 48 KB used -> a 64 KiB stack
    runtime().run(move || {
        // A native goroutine that counts its turns: every goroutine is on
        // one FIFO run queue, so its count is the number of rounds in which
        // every runnable goroutine ran once.
        let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r2 = rounds.clone();
        gstack::spawn(move || loop {
            r2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gstack::yield_now();
        });
        let rounds_now = || rounds.load(std::sync::atomic::Ordering::Relaxed);
        let chan = RawChan::new(8, 0);
        let s0 = gstack::stats().unwrap();
        let rss0 = rss();
        let hs: Vec<_> = (0..N)
            .map(|_| {
                if blocked {
                    Builder::new().spawn_managed(
                        addr(gs_test_chan_recv),
                        &[DEPTH, Arc::as_ptr(&chan) as usize, 1],
                    )
                } else {
                    Builder::new().spawn_managed(addr(gs_test_scenario), &[DEPTH, 0, 0, 0])
                }
                .unwrap()
            })
            .collect();
        // Each grows, returns, and parks (gs_test_leaf has 10,000 yields).
        gstack::yield_now();
        gstack::yield_now();
        assert!(hs.iter().all(|h| h.result().is_none()), "all still parked");
        let mine = |s: &gstack::Stats| s.stack_in_use - s0.stack_in_use;
        let sys = |s: &gstack::Stats| s.stack_sys as i64 - s0.stack_sys as i64;
        let mb = |b: f64| b / (1 << 20) as f64;
        let s1 = gstack::stats().unwrap();
        let rss1 = rss();
        assert_eq!(s1.stack_peak, 64 << 10, "grew to 64 KiB");
        let grown = mine(&s1);
        eprintln!(
            "  {N} goroutines grown to {} KiB (gs_test_plain depth {DEPTH}) and back, {}; {} copies",
            s1.stack_peak >> 10,
            if blocked {
                "blocked in gs_test_chan_recv (waiting)"
            } else {
                "parked in gs_test_leaf (gs_test_scenario; runnable, yielding)"
            },
            s1.stack_copies - s0.stack_copies
        );
        eprintln!(
            "  before any cycle: stack_in_use {:.1} MiB ({} B/goroutine), stack_sys {:.1} MiB, VmRSS +{:.1} MiB",
            mb(grown as f64),
            grown / N,
            mb(sys(&s1) as f64),
            mb(rss1 as f64 - rss0 as f64)
        );
        let mut cycle = 0;
        let mut after_one = None;
        loop {
            cycle += 1;
            let r0 = rounds_now();
            let t = Instant::now();
            let rep = gstack::gc();
            let el = t.elapsed();
            let turns = rounds_now() - r0;
            let s = gstack::stats().unwrap();
            let r = rss();
            let in_use = mine(&s);
            let back = 1.0 - in_use as f64 / grown as f64;
            if cycle == 1 {
                after_one = Some((back, 1.0 - (r as f64 - rss0 as f64) / (rss1 as f64 - rss0 as f64)));
            }
            eprintln!(
                "  after cycle {cycle}: shrunk {:>5} in {:>6.1} ms ({:>5.0} ns/goroutine, {turns:>3} rounds of the runnable goroutines in between); stack_in_use {:>5.1} MiB ({:>5} B/goroutine, {:>4.1}% returned), stack_sys {:>5.1} MiB, VmRSS +{:.1} MiB",
                rep.shrunk,
                el.as_secs_f64() * 1e3,
                el.as_nanos() as f64 / N as f64,
                mb(in_use as f64),
                in_use / N,
                back * 100.0,
                mb(sys(&s) as f64),
                mb(r as f64 - rss0 as f64)
            );
            if rep.shrunk == 0 || cycle == 10 {
                let sizes: Vec<usize> = hs
                    .iter()
                    .take(3)
                    .map(|h| gstack::inspect::stack_size(h.id).unwrap())
                    .collect();
                let (one, one_rss) = after_one.unwrap();
                let rss_back = 1.0 - (r as f64 - rss0 as f64) / (rss1 as f64 - rss0 as f64);
                eprintln!(
                    "  returned: after one cycle {:.1}% of stack_in_use ({:.1}% of the RSS growth), after all {:.1}% ({:.1}% of RSS); stacks now {sizes:?} B ...: {}",
                    one * 100.0,
                    one_rss * 100.0,
                    back * 100.0,
                    rss_back * 100.0,
                    if back >= 0.5 { "most of it came back" } else { "MOST OF IT DID NOT COME BACK" }
                );
                break;
            }
        }
        assert!(hs.iter().all(|h| h.result().is_none()), "all still parked");
        // The yielders' remaining yields would take seconds to run out,
        // and the turn counter never ends: this child is done.
        let _ = std::io::Write::flush(&mut std::io::stderr());
        std::process::exit(0);
    });
}

const MEMORY: [(&str, &str); 4] = [
    ("memory/parked 2KiB start", "parked2048"),
    ("memory/parked 1KiB start", "parked1024"),
    ("memory/shrink 10k from 64KiB", "shrink"),
    (
        "memory/shrink 10k from 64KiB chan-blocked",
        "shrink-blocked",
    ),
];

/// The benchmark filter criterion was given, if any (the first positional
/// argument that is not the value of an option).
fn filter() -> Option<String> {
    const WITH_VALUE: [&str; 17] = [
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--output-format",
        "--plotting-backend",
        "--color",
        "--profile-time",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Whether `name` passes the filter: a substring match, with a leading `^`
/// and a trailing `$` anchoring it (criterion's own filter is a regex,
/// which this approximates).
fn selected(name: &str) -> bool {
    let Some(f) = filter() else { return true };
    let (start, f) = f
        .strip_prefix('^')
        .map_or((false, f.as_str()), |r| (true, r));
    let (end, f) = f.strip_suffix('$').map_or((false, f), |r| (true, r));
    match (start, end) {
        (true, true) => name == f,
        (true, false) => name.starts_with(f),
        (false, true) => name.ends_with(f),
        (false, false) => name.contains(f),
    }
}

fn memory_reports() -> Vec<String> {
    let mut out = Vec::new();
    if std::env::args().any(|a| a == "--list") {
        return out;
    }
    let exe = std::env::current_exe().unwrap();
    for (name, mode) in MEMORY {
        if !selected(name) {
            continue;
        }
        let o = std::process::Command::new(&exe)
            .env(CHILD_ENV, mode)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the measuring child");
        let text = format!(
            "== {name} ==\n{}{}",
            String::from_utf8_lossy(&o.stderr),
            if o.status.success() {
                String::new()
            } else {
                format!("  child failed: {}\n", o.status)
            }
        );
        eprint!("{text}");
        out.push(text);
    }
    out
}

fn report(memory: &[String]) {
    let targets: [(&str, Option<f64>); 6] = [
        ("chan/unbuffered round trip", Some(100.0)),
        ("chan/buffered(64) send+recv", None),
        ("select/2 cases round trip", None),
        ("spawn+exit", None),
        ("spawn+exit 2 Ps", Some(100.0)),
        ("spawn+exit managed", None),
    ];
    let mut lines = Vec::new();
    for (name, target) in targets {
        if let Some(ns) = median_ns(name) {
            let mut l = format!("{name:<30} {ns:>9.1} ns");
            if let Some(t) = target {
                l += &format!(
                    "  (target <= {t:.0} ns: {})",
                    if ns <= t { "met" } else { "MISSED" }
                );
            }
            if let Some((probe, quickest)) = probe_summary(name) {
                l += &format!(
                    "  [probe {probe:.2} ns, {:.2}x the quickest]",
                    probe / quickest
                );
            }
            lines.push(l);
        }
    }
    for (n, name) in GC_SIZES {
        for kind in ["chan-blocked", "chan-blocked root visitor", "parked"] {
            let full = format!("gc/{name} {kind}");
            if let Some(ns) = median_ns(&full) {
                let mut l = format!(
                    "{full:<30} {:>9.3} ms per cycle, {:.1} ns/goroutine",
                    ns / 1e6,
                    ns / n as f64
                );
                if let Some(r) = ROUNDS
                    .lock()
                    .unwrap()
                    .get(&full)
                    .filter(|_| kind == "parked")
                {
                    let mut r = r.clone();
                    r.sort_by(|a, b| a.partial_cmp(b).unwrap());
                    l += &format!(
                        ", {:.1} rounds of all {n} goroutines running per cycle",
                        r[r.len() / 2]
                    );
                }
                lines.push(l);
            }
        }
    }
    if !lines.is_empty() || !memory.is_empty() {
        eprintln!("\n== gstack runtime benchmarks: medians of the per-call ns/iteration (1 thread, 1 P) ==");
        for l in lines {
            eprintln!("{l}");
        }
        eprintln!(
            "[probe: the median ns of an ALU-throughput loop run after each call\n \
             (benches/common/probe.rs); about 1.5 ns when the core is ours alone,\n \
             2.1-2.8 ns when something else shares it, and our figures then run\n \
             30-50% higher.  \"the quickest\": the lowest probe of this process.]"
        );
        for m in memory {
            eprint!("{m}");
        }
    }
}

fn main() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("parked2048") => return child_parked(2048),
        Ok("parked1024") => return child_parked(1024),
        Ok("shrink") => return child_shrink(false),
        Ok("shrink-blocked") => return child_shrink(true),
        Ok(other) => panic!("unknown {CHILD_ENV}={other}"),
        Err(_) => {}
    }
    let memory = memory_reports();
    let mut c = Criterion::default().configure_from_args();
    chans(&mut c);
    spawns(&mut c);
    cycles(&mut c);
    c.final_summary();
    report(&memory);
}
