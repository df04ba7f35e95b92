//! The monitor thread (Go's sysmon): it watches the runtime's Ms from the
//! outside and asks a managed goroutine that has run for 10 ms without
//! switching to yield at its next synchronous safe point (any call: the
//! entry check sees `stackguard0` = STACK_PREEMPT).  It also nudges the
//! automatic scan-cycle trigger.  Native goroutines cannot be preempted:
//! they have no entry checks.

use crate::g::{GKind, STACK_PREEMPT};
use crate::m::M;
use crate::sched::Sched;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a goroutine may run before it is asked to yield (Go's
/// forcePreemptNS).
pub const PREEMPT_AFTER: Duration = Duration::from_millis(10);
/// How often the monitor looks.
const TICK: Duration = Duration::from_millis(1);

pub(crate) struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Raw pointers handed to the monitor thread.
struct Watch {
    sched: *const Sched,
}

// SAFETY: the monitor reads only atomics of the M and the Gs it names,
// and writes only the atomic preempt request and stackguard0; Runtime::run
// stops (joins) it before the M, the Gs or the Sched go away.
unsafe impl Send for Watch {}

impl Monitor {
    pub(crate) fn start(sched: &Sched) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let w = Watch { sched };
        let thread = std::thread::Builder::new()
            .name("gstack-monitor".into())
            .spawn(move || {
                let w = w;
                watch(&w, &s2)
            })
            .ok();
        Monitor { stop, thread }
    }

    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn watch(w: &Watch, stop: &AtomicBool) {
    // Per M (by address): the last schedtick seen and since when.
    let mut seen: Vec<(usize, u64, Instant)> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(TICK);
        // SAFETY: see Watch: the Sched outlives this thread, and so do the
        // Ms it lists (retired ones are freed after the monitor stops).
        let sched = unsafe { &*w.sched };
        sched.maybe_want_gc();
        let ms: Vec<usize> = sched.ms.lock().unwrap().clone();
        for maddr in ms {
            // SAFETY: as above.
            let m = unsafe { &*(maddr as *const M) };
            let tick = m.schedtick.load(Ordering::Relaxed);
            let e = match seen.iter_mut().find(|e| e.0 == maddr) {
                Some(e) => e,
                None => {
                    seen.push((maddr, tick, Instant::now()));
                    continue;
                }
            };
            if e.1 != tick {
                e.1 = tick;
                e.2 = Instant::now();
                continue;
            }
            let g = m.running.load(Ordering::Relaxed);
            if g.is_null() {
                continue;
            }
            // In a system call for a tick or more: hand its P to another M
            // so that the other goroutines go on running.
            let p = m.p.load(Ordering::Relaxed);
            // SAFETY: Gs live while the runtime runs; Ps as long as the
            // Sched.
            if !p.is_null() && unsafe { (*g).status() } == crate::g::Status::Syscall {
                sched.retake(unsafe { &*p });
                continue;
            }
            if e.2.elapsed() < PREEMPT_AFTER {
                continue;
            }
            e.2 = Instant::now(); // ask again in 10 ms if it still runs
                                  // SAFETY: Gs are never freed while the runtime runs; `kind`
                                  // does not change while a goroutine lives.
            unsafe {
                if (*g).kind == GKind::Managed {
                    (*g).set_preempt(true);
                    (*g).stackguard0.store(STACK_PREEMPT, Ordering::Release);
                }
            }
        }
    }
}
