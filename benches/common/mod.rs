//! What the benchmark files share: a quiet single-P runtime, running a
//! timed body as its main goroutine, and a record of per-call figures for
//! the summaries some benches print at the end.
#![allow(dead_code)]

pub mod probe;

use gstack::{Config, DebugFlags, Runtime};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One P (every goroutine on the thread that calls `Runtime::run`), no
/// debug modes, no automatic cycles.
pub fn runtime() -> Runtime {
    runtime_procs(1)
}

/// As [`runtime`], with `procs` Ps (one M thread each).
pub fn runtime_procs(procs: usize) -> Runtime {
    Runtime::new(Config {
        procs,
        debug: DebugFlags::default(),
        gc_percent: 0,
        ..Config::default()
    })
}

/// Run `body(iters)` as the main goroutine of a fresh runtime and return
/// the time it measured.
pub fn in_goroutine(iters: u64, body: impl FnOnce(u64) -> Duration + Send + 'static) -> Duration {
    in_goroutine_procs(1, iters, body)
}

/// As [`in_goroutine`], on a runtime with `procs` Ps.
pub fn in_goroutine_procs(
    procs: usize,
    iters: u64,
    body: impl FnOnce(u64) -> Duration + Send + 'static,
) -> Duration {
    let out = Arc::new(Mutex::new(Duration::ZERO));
    let o = out.clone();
    runtime_procs(procs).run(move || *o.lock().unwrap() = body(iters));
    let d = *out.lock().unwrap();
    d
}

/// Per-call ns/iteration of every benchmark (for summaries at the end).
pub static SEEN: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// Record a call's time per iteration under `name`; returns `d`.
pub fn note(name: &str, iters: u64, d: Duration) -> Duration {
    SEEN.lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .push(d.as_nanos() as f64 / iters.max(1) as f64);
    d
}

/// The median of what was recorded under `name`.
pub fn median_ns(name: &str) -> Option<f64> {
    let seen = SEEN.lock().unwrap();
    let mut v = seen.get(name)?.clone();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some(v[v.len() / 2])
}

/// Spawn `n` native goroutines that return at once, yielding after each
/// so that it runs to its end (the free list warmed first: steady state).
/// The body of every spawn+exit bench.
pub fn spawn_exit_native(n: u64) -> Duration {
    gstack::spawn(|| {});
    gstack::yield_now();
    let t = Instant::now();
    for _ in 0..n {
        gstack::spawn(|| {});
        gstack::yield_now();
    }
    t.elapsed()
}
