//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Output};

/// Set in the environment of every child started by `run_child`.
pub const CHILD_ENV: &str = "GSTACK_TEST_CHILD";

/// Whether this process is a child started by `run_child`: a test calls it
/// first, and if true does the thing the parent wants to watch.
#[allow(dead_code)]
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some_and(|v| !v.is_empty())
}

/// Run the single test `test_name` of the current test binary in a child
/// process, with `env` and `GSTACK_TEST_CHILD=<test_name>` added to its
/// environment, and wait for it.
///
/// This is how a test proves that something faults: the child does the bad
/// access, and the parent checks how it died (see `killed_by`). The child
/// writes no core file.
///
/// If GSTACK_TEST_RUNNER is set (for instance "qemu-aarch64 -L
/// /usr/aarch64-linux-gnu" when the tests run under emulation), its words
/// are put in front of the command, because a foreign binary cannot be
/// executed directly.
pub fn run_child(test_name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("path of the test binary");
    let runner = std::env::var("GSTACK_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"]);
    cmd.env(CHILD_ENV, test_name).envs(env.iter().copied());
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    cmd.output().expect("run the child test process")
}

/// The signal that killed the child, if a signal did.
#[allow(dead_code)]
pub fn killed_by(out: &Output) -> Option<i32> {
    out.status.signal()
}

/// A description of a child's end and output, for assertion messages.
#[allow(dead_code)]
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Yield until managed goroutine `id` is parked with `frames` frames (a
/// deep recursion may be preempted by the monitor on its way down, so one
/// yield is not enough).  Bounded: panics after 100,000 yields.
#[allow(dead_code)]
pub fn park_until(id: u64, frames: usize) {
    for _ in 0..100_000 {
        if gstack::inspect::count_frames(id).map(|(n, _)| n) == Ok(frames) {
            return;
        }
        gstack::yield_now();
    }
    panic!("goroutine {id} never parked with {frames} frames");
}

/// Whether floating-point division rounds to nearest (the default mode),
/// told by three quotients that the other three modes each round the
/// other way: up changes 1/3, down changes -1/3, toward zero changes 2/3.
/// (gstack::testing::callee_saved_survive runs its callback with rounding
/// mode `seed & 3` on x86-64: a goroutine switched to from inside it must
/// not see that mode.)
pub fn rounds_to_nearest() -> bool {
    use std::hint::black_box;
    let (one, two, three) = (black_box(1.0f64), black_box(2.0f64), black_box(3.0f64));
    one / three == 1.0 / 3.0 && -one / three == -1.0 / 3.0 && two / three == 2.0 / 3.0
}

/// Two unbuffered channels and a goroutine (spawned here) that answers
/// every value v sent on the first with v + 1 on the second, until the
/// first is closed: (ping, pong).  Call it on a goroutine.
pub fn incrementing_partner() -> (gstack::chan::Chan<u64>, gstack::chan::Chan<u64>) {
    incrementing_partner_on(gstack::Builder::new())
}

/// As incrementing_partner, the goroutine spawned with `b`.
pub fn incrementing_partner_on(
    b: gstack::Builder,
) -> (gstack::chan::Chan<u64>, gstack::chan::Chan<u64>) {
    let ping = gstack::chan::Chan::new(0);
    let pong = gstack::chan::Chan::new(0);
    let (p2, q2) = (ping.clone(), pong.clone());
    b.spawn(move || {
        while let Some(v) = p2.recv().unwrap() {
            q2.send(v + 1).unwrap();
        }
    })
    .unwrap();
    (ping, pong)
}

/// Whether the x87 FPU rounds to nearest (rounding control, bits 10-11 of
/// its control word, is 0): the other half of what
/// gstack::testing::callee_saved_survive changes on x86-64 (see
/// rounds_to_nearest).  Always true elsewhere.
pub fn x87_rounds_to_nearest() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let mut cw: u16 = 0;
        // SAFETY: stores the x87 control word into cw; nothing else.
        unsafe { core::arch::asm!("fnstcw [{}]", in(reg) &mut cw, options(nostack)) };
        cw & 0x0c00 == 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    true
}
