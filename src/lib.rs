//! # gstack
//!
//! The goroutine-stack machinery of the Go runtime, for Rust and C:
//! goroutines on small pooled stacks, switched by hand-written assembly on
//! x86-64 and aarch64.
//!
//! Two kinds of goroutine share one scheduler:
//!
//! * **native** goroutines run ordinary Rust or C code on a *fixed* stack
//!   with a guard page below it.  The stack never moves; running off its end
//!   is a fatal error that names the goroutine and its stack size.
//! * **managed** goroutines run code registered with precise stack maps
//!   (see [the frame ABI](#the-frame-abi)); their stacks start at 2 KiB and
//!   move — grown by copying — with every pointer into them adjusted.
//!
//! ```
//! let rt = gstack::Runtime::new(gstack::Config::default());
//! rt.run(|| {
//!     for i in 0..3 {
//!         gstack::spawn(move || {
//!             for _ in 0..2 {
//!                 gstack::yield_now();
//!             }
//!             assert!(i < 3);
//!         });
//!     }
//! });
//! assert_eq!(rt.stats().stack_in_use, 0);
//! ```
//!
//! ## What runs where
//!
//! A runtime has `Config::procs` Ps (`GSMAXPROCS`, default the number of
//! CPUs), each run by one thread (an M) with its own system stack (g0), a
//! local run queue and a stack cache.  Switches that park, block or finish
//! a goroutine pass through g0: the goroutine's callee-saved registers, SP,
//! PC and FP are saved in its `G` (`gs_mcall`), Rust code on g0 picks the
//! next one, and `gs_gogo` restores it.  (A native goroutine's `yield_now`
//! on a single P switches straight to the next goroutine.)  Stacks are
//! allocated only on system stacks.  A managed goroutine's stack holds its
//! own frames only.  Goroutines move between threads: native code must
//! not keep thread-local state across a yield or a channel operation.
//!
//! A goroutine that waits forever on a channel only a thread outside the
//! runtime could complete is, like in Go, reported as a deadlock when
//! nothing else can run.
//!
//! ## The frame ABI
//!
//! What code must do so that the runtime can move the stack it runs on.
//! Producers: the Cranelift module (feature `cranelift`), the assembler
//! macros of `include/gstack_asm.h`, or your own compiler through
//! [`register`].
//!
//! **Frame records.**  Every managed function keeps a frame record: on
//! x86-64 `push rbp; mov rbp, rsp` (so `[rbp]` = caller's rbp, `[rbp+8]` =
//! return address), on aarch64 `stp x29, x30, [sp, #-16]!; mov x29, sp`
//! (`[x29]` = caller's x29, `[x29+8]` = saved lr), with the record at the
//! *top* of its frame.  The runtime walks FP to FP; the SP of a frame at a
//! call site is the callee's FP + 16.
//!
//! ```text
//!   caller's frame ...
//!   +---------------------+
//!   | return address      |  FP + 8
//!   | caller's FP         |  <- FP (the frame record)
//!   | word n-1            |
//!   | ...                 |  `frame_size` = FP - SP bytes at this call
//!   | word 0              |  <- SP at the call (offsets count from here)
//!   +---------------------+
//! ```
//!
//! **Stack maps.**  Each function is registered with its code range and,
//! for every call site keyed by its return address, the frame size at that
//! call and the byte offsets from SP of the words that may hold pointers
//! ([`FuncDesc`], [`CallSiteDesc`]).  When the stack moves, every such word
//! whose value lies in the old stack is moved by the copy delta; other
//! values are left alone; a value in (0, 4096) is a fatal error.  A frame
//! whose return address is no registered call site is *imprecise*: a stack
//! holding one never moves (the attempt is a fatal error naming it).
//!
//! **Registers.**  No stack address may be live in a register across a
//! call: keep it in a mapped word.  (Callee-saved registers are restored
//! as they were; they are not adjusted.)  This is why Cranelift code is
//! compiled at `opt_level=none`: its optimiser may keep a stack address in
//! a callee-saved register across a call.
//!
//! **The G pointer** is a managed function's first argument (like a
//! Wasmtime vmctx).  A G never moves.  `stackguard0` is at
//! [`G_STACKGUARD0_OFFSET`] (16) in it, a stable offset.
//!
//! **The entry check** comes right after the prologue:
//! `if SP < *(g + 16) { gs_morestack(g) }` (C calling convention).
//! `gs_morestack` returns to its caller with SP and FP moved by the copy
//! delta when the stack moved, every callee-saved register preserved, and
//! caller-saved ones clobbered like any call; its call site is registered
//! like any other, with the pointers live there.  The same check is the
//! synchronous safe point: `stackguard0` also carries requests to stop
//! (preemption), which make the check fail on purpose.
//!
//! **The guard.**  The check runs after the frame is built, so up to a
//! whole frame may lie below `stackguard0` when it fails: 928 bytes are
//! kept free below it, and a function's largest frame — record, locals,
//! spills, and what the check itself pushes — may be at most [`MAX_FRAME`]
//! (896) bytes.  Registration refuses larger frames.
//!
//! **Parking.**  Managed code yields with `gs_yield(g)`; like every runtime
//! call that may park, it saves the caller's context and switches to the
//! system stack before any Rust code runs, so a parked goroutine's stack
//! holds managed frames only.
//!
//! **Entry and exit.**  A managed goroutine starts as `entry(g, args...)`
//! (up to 5 integer or pointer arguments) on a 16-byte aligned stack whose
//! frame-record chain ends there (saved FP 0); when `entry` returns, its
//! return value is the goroutine's result ([`Managed::result`]).
//!
//! ## Debug modes
//!
//! `GSDEBUG` takes comma-separated `name=value` settings, like `GODEBUG`:
//! `efence=1` (every stack from the system, with a guard page),
//! `faultonfree=1` (freed stacks become inaccessible),
//! `stackpoison=1` (fill freed stacks with 0xfc, reused ones with 0xfd),
//! `stacknocache=1`, `stackforcemove=1` (every entry check moves the
//! stack).  Unknown names and bad values are reported on stderr and
//! ignored.

#[path = "../arch/mod.rs"]
pub(crate) mod arch;

mod abi;
pub mod chan;
#[cfg(feature = "cranelift")]
pub mod cranelift;
pub mod debug;
mod exports;
mod fatal;
pub mod ffi;
pub mod functab;
mod g;
mod guards;
mod m;
mod managed;
mod monitor;
mod runtime;
mod scan;
mod sched;
mod signal;
pub mod stack;
mod traceback;
mod trampoline;
pub mod unwind;

pub use functab::{register, unregister, CallSiteDesc, FuncDesc, RegisterError, MAX_FRAME};
pub use managed::{morestack_addr, yield_addr};

/// Offset of `stackguard0` in a G: managed code's entry check compares SP
/// with the word at `g + G_STACKGUARD0_OFFSET` (stable ABI, as Go's).
pub const G_STACKGUARD0_OFFSET: usize = 16;

/// Looking at parked managed goroutines: their frames and tracebacks.
pub mod inspect {
    pub use crate::managed::{
        count_frames, frames, move_stack, preempt, stack_size, traceback, FrameInfo,
    };
}

pub use debug::DebugFlags;
pub use runtime::Managed as ManagedHandle;
pub use runtime::{
    check_accounting, current_id, goexit, run, spawn, stats, yield_now, Builder, Config, Managed,
    Runtime, Stats, DEFAULT_MANAGED_STACK, DEFAULT_MAX_STACK, DEFAULT_NATIVE_STACK,
    MAX_MANAGED_ARGS,
};
pub use scan::{gc, gc_visit, GcReport, Root};
pub use sched::SpawnError;

/// Helpers for gstack's own tests and benchmarks (not a stable API).
#[doc(hidden)]
pub mod testing {
    use core::ffi::c_void;

    /// Run `f(goroutine id)` whenever a goroutine parks on channels through
    /// the system stack (managed code's stubs, select), inside the window
    /// in which it is already Waiting but still parking: its sudogs are
    /// queued and its channels locked by it.  `f` runs on the system stack
    /// and must not touch those channels.  None removes the hook.
    pub fn set_parking_hook(f: Option<fn(u64)>) {
        crate::chan::set_parking_hook(f)
    }

    /// The SP as seen on entry to an asm function called from here: the
    /// alignment every call the runtime makes must satisfy.  Returns
    /// `(sp, aligned)`.
    #[inline(never)]
    pub fn sp_at_call() -> (usize, bool) {
        // SAFETY: gs_test_sp reads SP and returns; no other effect.
        let sp = unsafe { crate::trampoline::gs_test_sp() };
        let aligned = if cfg!(target_arch = "x86_64") {
            (sp + 8) % 16 == 0
        } else {
            sp % 16 == 0
        };
        (sp, aligned)
    }

    /// Load every callee-saved register (and the FP control state) with
    /// values derived from `seed`, run `f` (which may switch goroutines any
    /// number of times), and return the mask of registers that did not
    /// survive (0 = all survived).  See `gs_test_callee_saved` in the asm.
    pub fn callee_saved_survive<F: FnMut()>(seed: u64, mut f: F) -> u64 {
        extern "C" fn tramp<F: FnMut()>(p: *mut c_void) {
            // SAFETY: p is the &mut F passed below, live for the call.
            let f = unsafe { &mut *(p as *mut F) };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                crate::fatal::fatal("panic inside callee_saved_survive");
            }
        }
        // SAFETY: the helper calls tramp(&mut f) and restores every
        // register it changed before returning.
        unsafe {
            crate::trampoline::gs_test_callee_saved(
                tramp::<F>,
                &mut f as *mut F as *mut c_void,
                seed,
            )
        }
    }

    /// [`callee_saved_survive`] with a raw callback, for proving that the
    /// checker catches a callback that breaks the ABI.
    ///
    /// # Safety
    /// `f(arg)` must return normally; it may clobber callee-saved registers
    /// (that is what the checker looks for) but nothing else.
    pub unsafe fn callee_saved_survive_raw(
        f: extern "C" fn(*mut c_void),
        arg: *mut c_void,
        seed: u64,
    ) -> u64 {
        // SAFETY: the caller's guarantee; the helper restores its caller's
        // registers whatever f did to them.
        unsafe { crate::trampoline::gs_test_callee_saved(f, arg, seed) }
    }

    /// Switch to g0 and back doing nothing: the raw cost of a
    /// gs_mcall + gs_gogo pair.  Returns at once outside a goroutine.
    pub fn raw_switch() {
        let g = crate::m::current_g();
        if g.is_null() {
            return;
        }
        extern "C" fn back(g: *mut crate::g::G) -> ! {
            // SAFETY: g's context was just saved by gs_mcall.
            unsafe { crate::trampoline::gs_gogo(&(*g).sched) }
        }
        // SAFETY: g is this thread's running goroutine, on its stack.
        unsafe { crate::trampoline::mcall(g, back) }
    }

    /// The calling goroutine's G, as managed code receives it (for tests
    /// that call managed functions or the guard routines by hand).
    pub fn current_g_ptr() -> usize {
        crate::m::current_g() as usize
    }

    /// Call gs_morestack with this thread's g0, as managed code running on
    /// the system stack would: a fatal error ("morestack on g0").
    pub fn morestack_on_g0() {
        crate::trampoline::systemstack(|| {
            let m = crate::m::current_m();
            // SAFETY: m is this thread's M; gs_morestack checks g == g0
            // first and ends the process.
            unsafe { crate::trampoline::gs_morestack((*m).g0) }
        })
    }

    /// SP seen by code run through `systemstack` (and whether it is aligned
    /// for a call), and whether that code ran off the goroutine's stack.
    pub fn sp_on_systemstack() -> ((usize, bool), bool) {
        let g = crate::m::current_g();
        let r = crate::trampoline::systemstack(sp_at_call);
        let off_stack = if g.is_null() {
            true
        } else {
            // SAFETY: g is the live running goroutine.
            unsafe { r.0 < (*g).stack_lo || r.0 >= (*g).stack_hi }
        };
        (r, off_stack)
    }
}
