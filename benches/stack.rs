//! Stack growth, copystack and the unwinder, on managed goroutines running
//! the hand-written asm recursions of asm/managed_<arch>.S.
//!
//! * `grow/{rec,plain} {10k,100k,1M}` — a new managed goroutine on the default
//!   2 KiB stack recurses to the depth and returns; timed from spawn to
//!   result.  `rec` is gs_test_rec (80-byte frames, two stack pointers per
//!   frame: one to its own frame, one to the outermost frame), `plain` is
//!   gs_test_plain (32-byte frames, no pointers).  Go's BenchmarkStackCopyPtr
//!   and BenchmarkStackCopy in spirit.
//! * `presized/...` — the same on a goroutine spawned with a stack that
//!   already holds the whole recursion: grow / presized is the growth
//!   overhead (target at most 1.3).  Once its stack is large (32 KiB and
//!   up) a goroutine grows in place, so the growth left is the copies
//!   through the small sizes plus, past 8 MiB, one copy into a bigger
//!   reservation.  Each pair is measured back to back.
//! * `copystack/<size>/<dense|sparse>` — `inspect::move_stack` to a stack of
//!   the same size (a pure move) of a goroutine parked at the depth that
//!   fills ~90% of a 64 KiB / 512 KiB / 8 MiB stack, with gs_test_dense
//!   (96-byte frames, every local a pointer) or gs_test_plain (32-byte
//!   frames, no pointers).  Throughput in bytes of used stack.
//! * `memcpy/<size>` — `ptr::copy_nonoverlapping` of the same number of
//!   bytes between two buffers: the bandwidth copystack is compared with
//!   (target: dense copystack at least half of it).
//! * `walk/{10k,100k}` — `inspect::count_frames` of a goroutine parked in
//!   gs_test_rec at that depth (target under 20 ns per frame).
//!
//! Every figure is timed inside a goroutine of a fresh Runtime; each such
//! run first does one untimed round so the stack pool holds the stacks the
//! timed rounds reuse (the steady state, as in a Go benchmark whose heap
//! keeps its spans).  The ratios are printed at the end (stderr).

use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use gstack::{inspect, Builder};

use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::{in_goroutine, median_ns, note};

extern "C" {
    fn gs_test_rec();
    fn gs_test_plain();
    fn gs_test_dense();
}

fn addr(f: unsafe extern "C" fn()) -> usize {
    f as *const () as usize
}

/// Bytes of one frame (locals + the 16-byte frame record) of each recursion.
const REC_FRAME: usize = 64 + 16;
const PLAIN_FRAME: usize = 16 + 16;
const DENSE_FRAME: usize = 80 + 16;

/// What gs_test_rec returns for depth d: the sum of 3k+1 for k in 0..=d.
fn rec_sum(d: usize) -> usize {
    3 * d * (d + 1) / 2 + d + 1
}

#[derive(Clone, Copy)]
enum Rec {
    /// gs_test_rec: a pointer to its own frame and one to the outermost.
    Ptr,
    /// gs_test_plain: no pointers.
    Plain,
}

impl Rec {
    fn name(self) -> &'static str {
        match self {
            Rec::Ptr => "rec",
            Rec::Plain => "plain",
        }
    }

    fn frame(self) -> usize {
        match self {
            Rec::Ptr => REC_FRAME,
            Rec::Plain => PLAIN_FRAME,
        }
    }

    /// A stack that holds the whole recursion without growing.
    fn presize(self, depth: usize) -> usize {
        ((depth + 1) * self.frame() + 4096).next_power_of_two()
    }

    /// Spawn the recursion to `depth` (no yields) and wait for its result.
    /// Runs inside a goroutine.
    fn run_once(self, depth: usize, stack: Option<usize>) {
        let b = match stack {
            Some(s) => Builder::new().stack_size(s),
            None => Builder::new(),
        };
        let h = match self {
            Rec::Ptr => b.spawn_managed(addr(gs_test_rec), &[depth, 0, 0, 0]),
            Rec::Plain => b.spawn_managed(addr(gs_test_plain), &[depth, 0]),
        }
        .unwrap();
        let r = loop {
            if let Some(r) = h.result() {
                break r;
            }
            gstack::yield_now();
        };
        let want = match self {
            Rec::Ptr => rec_sum(depth),
            Rec::Plain => depth + 1,
        };
        assert_eq!(r, want, "{} {depth}: wrong result", self.name());
    }
}

fn depth_name(d: usize) -> String {
    if d.is_multiple_of(1_000_000) {
        format!("{}M", d / 1_000_000)
    } else {
        format!("{}k", d / 1000)
    }
}

fn size_name(s: usize) -> String {
    if s >= 1 << 20 {
        format!("{}MiB", s >> 20)
    } else {
        format!("{}KiB", s >> 10)
    }
}

const GROW_DEPTHS: [usize; 3] = [10_000, 100_000, 1_000_000];
const COPY_SIZES: [usize; 3] = [64 << 10, 512 << 10, 8 << 20];
const WALK_DEPTHS: [usize; 2] = [10_000, 100_000];

fn grow(c: &mut Criterion) {
    // Each grow/presized pair is measured back to back (same ids as two
    // whole groups would give), so that the ratio compares runs made under
    // the same load on a shared machine, not a minute apart.
    for rec in [Rec::Ptr, Rec::Plain] {
        for depth in GROW_DEPTHS {
            for (group, presized) in [("grow", false), ("presized", true)] {
                let mut g = c.benchmark_group(group);
                g.sample_size(10)
                    .measurement_time(Duration::from_secs(3))
                    .warm_up_time(Duration::from_secs(1));
                let id = format!("{} {}", rec.name(), depth_name(depth));
                let full = format!("{group}/{id}");
                let stack = presized.then(|| rec.presize(depth));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let name = full.clone();
                        let d = in_goroutine(iters, move |n| {
                            rec.run_once(depth, stack); // untimed: fill the pool
                            let copies = gstack::stats().unwrap().stack_copies;
                            let mut total = Duration::ZERO;
                            for _ in 0..n {
                                let t = Instant::now();
                                rec.run_once(depth, stack);
                                total += t.elapsed();
                            }
                            let copies = gstack::stats().unwrap().stack_copies - copies;
                            // Presized: not one growth; grown: one per
                            // doubling (a large stack doubles in place,
                            // which counts too).
                            if presized {
                                assert_eq!(copies, 0, "{name}: the presized stack moved");
                            } else {
                                assert!(copies >= n, "{name}: {copies} copies in {n} runs");
                            }
                            total
                        });
                        note(&full, iters, d)
                    })
                });
                g.finish();
            }
        }
    }
}

/// The copystack subjects: gs_test_dense (every local word a pointer) or
/// gs_test_plain (none).
#[derive(Clone, Copy)]
enum Density {
    Dense,
    Sparse,
}

impl Density {
    fn name(self) -> &'static str {
        match self {
            Density::Dense => "dense",
            Density::Sparse => "sparse",
        }
    }

    fn frame(self) -> usize {
        match self {
            Density::Dense => DENSE_FRAME,
            Density::Sparse => PLAIN_FRAME,
        }
    }

    fn entry(self) -> usize {
        match self {
            Density::Dense => addr(gs_test_dense),
            Density::Sparse => addr(gs_test_plain),
        }
    }

    /// The depth whose frames fill ~90% of a `size`-byte stack.
    fn depth(self, size: usize) -> usize {
        size * 9 / 10 / self.frame() - 1
    }
}

fn copystack(c: &mut Criterion) {
    let mut g = c.benchmark_group("copystack");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for size in COPY_SIZES {
        for dens in [Density::Dense, Density::Sparse] {
            let depth = dens.depth(size);
            let used = (depth + 1) * dens.frame();
            let full = format!("copystack/{}/{}", size_name(size), dens.name());
            g.throughput(Throughput::Bytes(used as u64));
            g.bench_function(BenchmarkId::new(size_name(size), dens.name()), |b| {
                b.iter_custom(|iters| {
                    let d = in_goroutine(iters, move |n| {
                        // yields = 1: it runs down to depth 0 and parks there
                        // once; our next yield lets it finish.
                        let h = Builder::new()
                            .stack_size(size)
                            .spawn_managed(dens.entry(), &[depth, 1])
                            .unwrap();
                        gstack::yield_now();
                        assert!(h.result().is_none(), "not parked");
                        assert_eq!(inspect::stack_size(h.id), Ok(size));
                        // Untimed: allocate the stack the moves ping-pong with.
                        inspect::move_stack(h.id, size).unwrap();
                        inspect::move_stack(h.id, size).unwrap();
                        let t = Instant::now();
                        for _ in 0..n {
                            inspect::move_stack(h.id, size).unwrap();
                        }
                        let d = t.elapsed();
                        while h.result().is_none() {
                            gstack::yield_now();
                        }
                        // Every frame checks its pointers on the way back.
                        assert_eq!(h.result(), Some(depth + 1), "{size} {}", dens.name());
                        d
                    });
                    note(&full, iters, d)
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("memcpy");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for size in COPY_SIZES {
        // The bytes the dense copystack of this size moves.
        let used = (Density::Dense.depth(size) + 1) * DENSE_FRAME;
        let full = format!("memcpy/{}", size_name(size));
        g.throughput(Throughput::Bytes(used as u64));
        g.bench_function(size_name(size), |b| {
            let src = vec![0x5au8; used];
            let mut dst = vec![0u8; used];
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    // SAFETY: two distinct live buffers of `used` bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            black_box(src.as_ptr()),
                            black_box(dst.as_mut_ptr()),
                            used,
                        )
                    };
                    black_box(&mut dst);
                }
                note(&full, iters, t.elapsed())
            })
        });
    }
    g.finish();
}

fn walk(c: &mut Criterion) {
    let mut g = c.benchmark_group("walk");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for depth in WALK_DEPTHS {
        let frames = depth + 1;
        let full = format!("walk/{}", depth_name(depth));
        g.throughput(Throughput::Elements(frames as u64));
        g.bench_function(depth_name(depth), |b| {
            b.iter_custom(|iters| {
                let d = in_goroutine(iters, move |n| {
                    let h = Builder::new()
                        .stack_size(Rec::Ptr.presize(depth))
                        .spawn_managed(addr(gs_test_rec), &[depth, 0, 0, 1])
                        .unwrap();
                    gstack::yield_now(); // parked at depth 0
                    assert_eq!(inspect::count_frames(h.id), Ok((frames, 2 * frames)));
                    let t = Instant::now();
                    for _ in 0..n {
                        black_box(inspect::count_frames(black_box(h.id)).unwrap());
                    }
                    let d = t.elapsed();
                    while h.result().is_none() {
                        gstack::yield_now();
                    }
                    assert_eq!(h.result(), Some(rec_sum(depth)));
                    d
                });
                note(&full, iters, d)
            })
        });
    }
    g.finish();
}

/// The figures the targets are about, from the medians noted above.
fn report() {
    let mut lines = Vec::new();
    for rec in [Rec::Ptr, Rec::Plain] {
        for depth in GROW_DEPTHS {
            let id = format!("{} {}", rec.name(), depth_name(depth));
            if let (Some(g), Some(p)) = (
                median_ns(&format!("grow/{id}")),
                median_ns(&format!("presized/{id}")),
            ) {
                let r = g / p;
                lines.push(format!(
                    "grow/presized {id:<11} {:>10.3} ms / {:>10.3} ms = {r:.2}  (target <= 1.3: {})",
                    g / 1e6,
                    p / 1e6,
                    if r <= 1.3 { "met" } else { "MISSED" }
                ));
            }
        }
    }
    for size in COPY_SIZES {
        let sz = size_name(size);
        let mc = median_ns(&format!("memcpy/{sz}"))
            .map(|ns| (Density::Dense.depth(size) + 1) as f64 * DENSE_FRAME as f64 / ns);
        for dens in [Density::Dense, Density::Sparse] {
            let used = (dens.depth(size) + 1) * dens.frame();
            let Some(ns) = median_ns(&format!("copystack/{sz}/{}", dens.name())) else {
                continue;
            };
            let bw = used as f64 / ns;
            let frames = dens.depth(size) + 1;
            let mut l = format!(
                "copystack {sz:>6} {:<6} {used:>8} B {frames:>6} frames {:>10.0} ns {bw:>6.2} B/ns {:>5.2} ns/frame",
                dens.name(),
                ns,
                ns / frames as f64
            );
            if let Some(m) = mc {
                l += &format!("  memcpy {m:.2} B/ns, ratio {:.2}", bw / m);
                if matches!(dens, Density::Dense) {
                    l += &format!(
                        " (target >= 0.5: {})",
                        if bw / m >= 0.5 { "met" } else { "MISSED" }
                    );
                }
            }
            lines.push(l);
        }
    }
    for depth in WALK_DEPTHS {
        if let Some(ns) = median_ns(&format!("walk/{}", depth_name(depth))) {
            let per = ns / (depth + 1) as f64;
            lines.push(format!(
                "walk {:<5} {:>12.0} ns {per:>6.2} ns/frame  (target < 20: {})",
                depth_name(depth),
                ns,
                if per < 20.0 { "met" } else { "MISSED" }
            ));
        }
    }
    if !lines.is_empty() {
        eprintln!("\n== gstack stack benchmarks: medians of the per-call ns/iteration ==");
        for l in lines {
            eprintln!("{l}");
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    grow(&mut c);
    copystack(&mut c);
    walk(&mut c);
    c.final_summary();
    report();
}
