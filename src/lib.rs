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
//! * **managed** goroutines run code registered with precise stack maps;
//!   their stacks start small and move when they grow or shrink.  (The
//!   function table, the stack maps and the copying arrive in later
//!   versions; the types here are laid out for them.)
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
//! Every switch between goroutines passes through the thread's *system
//! stack* (g0): the running goroutine's callee-saved registers, SP, PC and
//! FP are saved in its `G` (`gs_mcall`), Rust code on g0 picks the next one,
//! and `gs_gogo` restores it.  Stacks are allocated only on the system
//! stack.  A goroutine's stack holds its own frames only.
//!
//! ## Debug modes
//!
//! `GSDEBUG` takes comma-separated `name=value` settings, like `GODEBUG`:
//! `efence=1` (every stack from the system, with a guard page),
//! `faultonfree=1` (freed stacks become inaccessible),
//! `stackpoison=1` (fill freed stacks with 0xfc), `stacknocache=1`.
//! Unknown names and bad values are reported on stderr and ignored.

#[path = "../arch/mod.rs"]
pub(crate) mod arch;

mod abi;
#[cfg(feature = "cranelift")]
pub mod cranelift;
pub mod debug;
mod fatal;
pub mod functab;
mod g;
mod m;
mod managed;
mod runtime;
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
    pub use crate::managed::{count_frames, frames, move_stack, stack_size, traceback, FrameInfo};
}

pub use debug::DebugFlags;
pub use runtime::Managed as ManagedHandle;
pub use runtime::{
    check_accounting, current_id, goexit, run, spawn, stats, yield_now, Builder, Config, Managed,
    Runtime, Stats, DEFAULT_MANAGED_STACK, DEFAULT_MAX_STACK, DEFAULT_NATIVE_STACK,
};
pub use sched::SpawnError;

/// Helpers for gstack's own tests and benchmarks (not a stable API).
#[doc(hidden)]
pub mod testing {
    use core::ffi::c_void;

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
