//! A yardstick for the state of the machine while a benchmark runs.
//!
//! On the 2-vCPU VM these benches were tuned on, the same binary runs in
//! two states that switch on their own, per process and mid-run: in the
//! slow one, everything of ours costs 30-50% more, while Boost.Context's
//! switch loop does not change.  The probe below is what showed why: a
//! loop of independent integer adds (throughput-bound: four ALUs' worth of
//! work, no memory, no branches to speak of) takes about 1.5 ns per
//! iteration in the normal state and 2.1-2.8 ns in the slow one, and the
//! channel round trip measured between probes follows it (about 90 ns at
//! 1.5, 115-145 ns at 2.1-2.8).  A chain of *dependent* adds does not move.
//! So in the slow state something else shares the core's execution units
//! (an SMT sibling on the host, most likely): latency-bound code such as
//! Boost's loop barely notices; code that keeps several units busy, as a
//! scheduler does, slows down with the probe.
//!
//! [`note_probed`] records a probe after each call criterion makes, so the
//! report can say, next to each figure, what state the machine was in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Iterations of the probe loop per probe (about 1.5-3 ms).
const PROBE_ITERS: u64 = 1_000_000;

/// Per benchmark name, the probes taken after its calls.
static PROBES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// One add of 1 to asm operand `$n`, in this architecture's syntax.
#[cfg(target_arch = "x86_64")]
macro_rules! inc {
    ($n:literal) => {
        concat!("add {", $n, "}, 1")
    };
}
#[cfg(target_arch = "aarch64")]
macro_rules! inc {
    ($n:literal) => {
        concat!("add {", $n, "}, {", $n, "}, 1")
    };
}

/// ns per iteration of 16 register adds in 8 independent chains.
pub fn probe_ns() -> f64 {
    let t = Instant::now();
    let mut r = [1u64, 2, 3, 4, 5, 6, 7, 8];
    for _ in 0..PROBE_ITERS {
        // SAFETY: register arithmetic only.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        unsafe {
            core::arch::asm!(
                inc!("0"), inc!("1"), inc!("2"), inc!("3"),
                inc!("4"), inc!("5"), inc!("6"), inc!("7"),
                inc!("0"), inc!("1"), inc!("2"), inc!("3"),
                inc!("4"), inc!("5"), inc!("6"), inc!("7"),
                inout(reg) r[0], inout(reg) r[1], inout(reg) r[2], inout(reg) r[3],
                inout(reg) r[4], inout(reg) r[5], inout(reg) r[6], inout(reg) r[7],
                options(nomem, nostack),
            );
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        for x in r.iter_mut() {
            *x = std::hint::black_box(*x + 2);
        }
    }
    std::hint::black_box(r);
    t.elapsed().as_nanos() as f64 / PROBE_ITERS as f64
}

/// [`super::note`] a call's time under `name`, then take a probe for it.
pub fn note_probed(name: &str, iters: u64, d: std::time::Duration) -> std::time::Duration {
    super::note(name, iters, d);
    let p = probe_ns();
    PROBES
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .push(p);
    d
}

/// For the report: the median probe of `name`'s calls, and the quickest
/// probe of this process (the machine's normal state, if it was ever in it).
pub fn probe_summary(name: &str) -> Option<(f64, f64)> {
    let probes = PROBES.lock().unwrap();
    let mut v = probes.get(name)?.clone();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let quickest = probes
        .values()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min);
    Some((v[v.len() / 2], quickest))
}
