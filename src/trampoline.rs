//! The hand-written routines of `asm/<arch>.S`, and the two safe shapes the
//! rest of the runtime uses them in: [`mcall`] and [`systemstack`].

use crate::arch::Context;
use crate::g::G;
use crate::m;
use core::ffi::c_void;
use core::sync::atomic::AtomicPtr;

// The asm reads only the repr(C) prefix of G and M described in
// gstack_abi.h; the Rust-only fields behind it are opaque to it.
#[allow(improper_ctypes)]
extern "C" {
    /// Restore `ctx` and continue there.
    ///
    /// # Safety
    /// `ctx` holds a context saved by `gs_mcall`/`gs_swapcontext` or made by
    /// `Context::new_goroutine`, whose stack is still live and owned by the
    /// caller's thread from now on.  Nothing of the current stack may be
    /// needed again.
    pub fn gs_gogo(ctx: *const Context) -> !;

    /// Save the caller's context in `*save` and continue in `*to`; returns
    /// when `*save` is restored.
    ///
    /// # Safety
    /// As for [`gs_gogo`] on `to`; `save` stays valid until restored.
    pub fn gs_swapcontext(save: *mut Context, to: *const Context);

    /// Save the caller's context in `g.sched` and continue in `*to`; once
    /// off g's stack, set g's status to Runnable and store `g` in `*slot`
    /// (a P's runnext), in that order.  Returns when g is resumed.
    ///
    /// # Safety
    /// `g` is the goroutine running on this thread and we are on its
    /// stack, a native goroutine (no scan claims it while it is Running:
    /// its status is overwritten without a compare-and-swap); as for
    /// [`gs_gogo`] on `to`, whose goroutine is already Running and m.curg;
    /// `*slot` holds the holder's reservation (RUNNEXT_BUSY), which only
    /// the caller may overwrite until this switch is done (it is the
    /// runnext of the P this thread holds).
    pub fn gs_switch_publish(g: *mut G, to: *const Context, slot: *const AtomicPtr<G>);

    /// Save the caller's context in `g.sched`, switch to g0 and call
    /// `f(g)`; returns when `g` is resumed.
    ///
    /// # Safety
    /// `g` is the goroutine running on this thread, `g.m.g0.sched.sp` is
    /// this thread's system stack top, and we are on `g`'s stack.
    pub fn gs_mcall(g: *mut G, f: extern "C" fn(*mut G) -> !);

    /// Run `f(arg)` on the system stack (or directly, when already there).
    ///
    /// # Safety
    /// `g` is this thread's current G or its g0, with `g.m` set; `f` must
    /// not switch goroutines and must not unwind.
    pub fn gs_systemstack(g: *mut G, f: unsafe extern "C" fn(*mut c_void), arg: *mut c_void);

    /// The initial pc of every goroutine.  Never called from Rust.
    pub fn gs_goentry();
    /// The return address of a goroutine's entry frame.  Never called.
    pub fn gs_goexit_pc();

    /// Called by managed code whose entry check failed (see the asm).
    #[link_name = "gs_morestack_impl"]
    pub fn gs_morestack(g: *mut G);
    /// Called by managed code to yield (see the asm).
    #[link_name = "gs_yield_impl"]
    pub fn gs_yield(g: *mut G);
    /// `gstack::yield_now` (see asm/<arch>.S): yields the calling native
    /// goroutine, or returns at once outside one.  On aarch64 a C function;
    /// on x86-64 not one: only yield_now's inline asm calls it, with the
    /// convention the asm describes (never call it from Rust there).
    pub fn gs_yield_native();
    /// sched::park_switch's switch (see asm/x86_64.S): only its inline asm
    /// calls it, with gs_yield_native's convention.
    #[cfg(target_arch = "x86_64")]
    pub fn gs_switch_native();

    /// Test helper, see the asm.
    pub fn gs_test_callee_saved(f: extern "C" fn(*mut c_void), arg: *mut c_void, seed: u64) -> u64;
    /// Test helper: SP at its own entry.
    pub fn gs_test_sp() -> usize;
}

/// Switch to g0 and run `f(g)` there; `g`'s context is saved first, so `f`
/// may park `g`, requeue it, or finish it, and then schedule.  Returns when
/// `g` is resumed.
///
/// # Safety
/// `g` is the goroutine running on this thread and we are on its stack.
#[inline]
pub unsafe fn mcall(g: *mut G, f: extern "C" fn(*mut G) -> !) {
    // SAFETY: the caller's guarantees are gs_mcall's.
    unsafe { gs_mcall(g, f) }
}

/// Run `f` on this thread's system stack and return its result.  On a
/// thread the runtime does not run (or already on the system stack), `f`
/// runs right here.  A panic in `f` is a fatal error: it must not unwind
/// through the switch.
pub fn systemstack<R, F: FnOnce() -> R>(f: F) -> R {
    let m = m::current_m();
    if m.is_null() {
        return f();
    }
    struct Slot<F, R> {
        f: Option<F>,
        r: Option<R>,
    }
    unsafe extern "C" fn tramp<R, F: FnOnce() -> R>(p: *mut c_void) {
        // SAFETY: p is the &mut Slot passed below, live for the whole call.
        let slot = unsafe { &mut *(p as *mut Slot<F, R>) };
        let f = slot.f.take().unwrap();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => slot.r = Some(r),
            Err(e) => crate::fatal::fatal(&format!(
                "panic on the system stack: {}",
                crate::fatal::panic_message(&*e)
            )),
        }
    }
    let mut slot = Slot {
        f: Some(f),
        r: None,
    };
    // SAFETY: m is this thread's live M; its curg (or g0) has m set, and
    // tramp neither switches goroutines nor unwinds (catch_unwind above).
    unsafe {
        let g = if (*m).curg.is_null() {
            (*m).g0
        } else {
            (*m).curg
        };
        gs_systemstack(
            g,
            tramp::<R, F>,
            &mut slot as *mut Slot<F, R> as *mut c_void,
        );
    }
    slot.r.unwrap()
}
