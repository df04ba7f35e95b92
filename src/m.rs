//! M: an OS thread that runs goroutines, with its system-stack goroutine
//! g0.  The thread-local slot `gs_current_m` (read by `current_m`) is how
//! Rust code, the assembly and a signal handler find the M they run on.

use crate::g::G;
use crate::sched::Sched;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

#[repr(C)]
pub struct M {
    // ---- read by assembly: offsets in gstack_abi.h ----
    /// This thread's system-stack goroutine.  Its `sched.sp` is where g0
    /// code starts each time we switch to it.
    pub g0: *mut G,
    /// The user goroutine running (or last chosen) on this M, or null.
    pub curg: *mut G,
    /// Written by gs_morestack: the return address and SP of the caller of
    /// the function whose entry check failed (for tracebacks of growth).
    pub morebuf_pc: usize,
    pub morebuf_sp: usize,
    // ---- Rust only ----
    pub id: u64,
    /// The runtime this thread works for.
    pub sched: *const Sched,
    /// The P this M holds, or null (an M whose P was handed off while it
    /// was in a system call).  Written by the M itself; read by the
    /// monitor and by gs_entersyscall.
    pub(crate) p: AtomicPtr<crate::sched::P>,
    /// Made by the monitor to take over a P whose M was in a system call:
    /// it ends when it runs out of work and an M waits for a P.
    pub(crate) temporary: bool,
    /// For the monitor thread: the goroutine running now and a count of
    /// goroutine starts; a count that does not move for 10 ms means one
    /// goroutine has run that long.
    pub running: AtomicPtr<G>,
    pub schedtick: AtomicU64,
    // ---- read by assembly again (gstack_abi.h) ----
    /// Arguments of a parking operation (channel send/receive, select),
    /// stored by its stub (or the Rust caller) before switching to g0 on
    /// this M, and its results, stored for the goroutine this M resumes
    /// (finish_wake, or the operation itself when it did not block) and
    /// read by it as it resumes.
    pub park_args: [usize; 4],
    pub park_result: usize,
    pub park_ok: usize,
    /// Set by gs_libcall for as long as a foreign function runs on the
    /// system stack for this M's goroutine (which cannot leave the M
    /// meanwhile): the managed caller's SP (0: none), PC and FP.
    pub libcallsp: usize,
    pub libcallpc: usize,
    pub libcallfp: usize,
}

impl M {
    pub(crate) fn new(g0: *mut G, sched: *const Sched, p: *const crate::sched::P) -> M {
        M {
            g0,
            curg: ptr::null_mut(),
            morebuf_pc: 0,
            morebuf_sp: 0,
            id: 0,
            sched,
            p: AtomicPtr::new(p as *mut crate::sched::P),
            temporary: false,
            running: AtomicPtr::new(ptr::null_mut()),
            park_args: [0; 4],
            park_result: 0,
            park_ok: 0,
            libcallsp: 0,
            libcallpc: 0,
            libcallfp: 0,
            schedtick: AtomicU64::new(0),
        }
    }

    /// A goroutine starts (or resumes) running on this M.
    #[inline]
    pub fn note_running(&self, g: *mut G) {
        self.running.store(g, Ordering::Relaxed);
        // Only this M writes the count: a plain load and store, not a
        // locked read-modify-write on every switch.
        let t = self.schedtick.load(Ordering::Relaxed);
        self.schedtick.store(t.wrapping_add(1), Ordering::Relaxed);
    }
}

// The thread-local slot holding this thread's M is defined in the
// trampoline assembly (`gs_current_m`, in .tbss: zero on every new
// thread), so that the assembly yield fast path (gs_yield_native) reads it
// directly; Rust reads and writes it with the two inline-asm accessors
// below, in the initial-exec TLS model (the linker relaxes it to local-exec
// in executables; a libgstack.so is then loadable at start-up or by
// dlopen while static TLS room is left, 8 bytes here).
//
// Why inline asm and not `thread_local!`: a goroutine may resume on
// another thread than it parked on.  The compiler treats the thread
// pointer as constant within a function and may hoist a TLS address out
// of a loop or keep it across a call that switches goroutines; an asm
// block that is not `pure` is executed exactly where it is written, so
// every read sees the thread it runs on.  That lets these be inlined
// everywhere.  (A plain TLS slot: safe to read in a signal handler.)

/// The M of this thread, or null when the thread runs no runtime.
#[inline(always)]
pub fn current_m() -> *mut M {
    let m: *mut M;
    // SAFETY: reads the 8-byte TLS slot gs_current_m of this thread
    // (defined in asm/<arch>.S); no other memory, no stack.  Not `pure`:
    // never hoisted or merged across switches (see above).
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!(
            "mov {m}, qword ptr [rip + gs_current_m@GOTTPOFF]",
            "mov {m}, qword ptr fs:[{m}]",
            m = out(reg) m,
            options(nostack, readonly, preserves_flags),
        );
        #[cfg(target_arch = "aarch64")]
        core::arch::asm!(
            "adrp {t}, :gottprel:gs_current_m",
            "ldr {t}, [{t}, #:gottprel_lo12:gs_current_m]",
            "mrs {m}, tpidr_el0",
            "ldr {m}, [{m}, {t}]",
            m = out(reg) m,
            t = out(reg) _,
            options(nostack, readonly, preserves_flags),
        );
    }
    m
}

pub(crate) fn set_current_m(m: *mut M) {
    // SAFETY: writes this thread's TLS slot gs_current_m (see current_m);
    // nothing else.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!(
            "mov {t}, qword ptr [rip + gs_current_m@GOTTPOFF]",
            "mov qword ptr fs:[{t}], {m}",
            m = in(reg) m,
            t = out(reg) _,
            options(nostack, preserves_flags),
        );
        #[cfg(target_arch = "aarch64")]
        core::arch::asm!(
            "adrp {t}, :gottprel:gs_current_m",
            "ldr {t}, [{t}, #:gottprel_lo12:gs_current_m]",
            "mrs {u}, tpidr_el0",
            "str {m}, [{u}, {t}]",
            m = in(reg) m,
            t = out(reg) _,
            u = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
}

/// The user goroutine this thread runs, if the caller is on its stack
/// (null outside a goroutine, and on the system stack: inside a root
/// visitor or a libcall's foreign code, where switching goroutines would
/// save a context on the system stack), and not inside a system call
/// window (foreign code between gs_entersyscall and gs_exitsyscall: the
/// monitor may have handed its P to another M, so it may neither block nor
/// touch the P's queue or caches).
///
/// On every channel operation: inlined.
#[inline(always)]
pub fn current_g_on_stack() -> *mut G {
    g_on_stack(current_m())
}

/// As [`current_g_on_stack`], given `m` = current_m() (null or not): for
/// callers that need the M too, to read the thread pointer once.
#[inline(always)]
pub fn g_on_stack(m: *mut M) -> *mut G {
    if m.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a non-null current_m() is the live M of this thread, and its
    // non-null curg is live while the M runs.
    unsafe {
        let g = (*m).curg;
        if g.is_null() {
            return g;
        }
        let here = &m as *const *mut M as usize;
        if here >= (*g).stack_lo && here < (*g).stack_hi && (*g).in_syscall == 0 {
            g
        } else {
            ptr::null_mut()
        }
    }
}

/// Whether `m`, this thread's M, surely holds the P in `m.p`: false while
/// its goroutine is inside a system call window (foreign code calling back
/// into us, say to close a channel), where the monitor may have handed the
/// P to another M -- `m.p` is cleared only when the goroutine comes back.
///
/// # Safety
/// `m` is this thread's live M.
#[inline]
pub(crate) unsafe fn holds_p(m: *mut M) -> bool {
    // SAFETY: the caller's guarantee; a non-null curg is live.
    unsafe {
        let g = (*m).curg;
        g.is_null() || (*g).in_syscall == 0
    }
}

/// The user goroutine this thread is running, or null.
#[inline]
pub fn current_g() -> *mut G {
    let m = current_m();
    if m.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a non-null current_m() is the live M of this thread.
    unsafe { (*m).curg }
}
