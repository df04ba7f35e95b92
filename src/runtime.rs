//! The public face of the runtime: configuration, running a main
//! goroutine, spawning, yielding, exiting, statistics.

use crate::arch::Context;
use crate::debug::DebugFlags;
use crate::g::{GKind, G, HANDLES_MAX, HANDLE_EXITED};
use crate::m::{self, M};
use crate::sched::{self, Goexit, Sched, SpawnError};
use crate::trampoline::{gs_goentry, gs_swapcontext, systemstack};
use core::ptr;
use core::sync::atomic::Ordering;

/// Arguments a managed goroutine's entry function takes after g: what
/// both ABIs pass in registers (x86-64: rsi, rdx, rcx, r8, r9).
pub const MAX_MANAGED_ARGS: usize = 5;

/// Default stack of a native goroutine: ordinary Rust or C code on a fixed
/// stack, so it must be roomy enough for formatting and libc calls.
pub const DEFAULT_NATIVE_STACK: usize = 64 * 1024;
/// Default starting stack of a managed goroutine (it grows by copying).
pub const DEFAULT_MANAGED_STACK: usize = 2 * 1024;
/// Default largest stack a managed goroutine may grow to (Go's 64-bit value).
pub const DEFAULT_MAX_STACK: usize = 1_000_000_000;

/// Settings of one runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Ps: how many threads run goroutines at once (`GSMAXPROCS`, default
    /// the number of CPUs).
    pub procs: usize,
    /// Stack size of native goroutines spawned without an explicit size.
    pub native_stack_size: usize,
    /// Starting stack size of managed goroutines.
    pub managed_stack_size: usize,
    /// Largest stack a managed goroutine may grow to.
    pub max_stack_size: usize,
    /// Start a scan cycle by itself when stack memory in use has grown by
    /// this many percent since the last cycle (like GOGC); 0 = never.
    pub gc_percent: u32,
    /// Debug modes (from `GSDEBUG` by default).
    pub debug: DebugFlags,
}

impl Default for Config {
    /// Defaults, with debug modes read from the `GSDEBUG` environment
    /// variable.
    fn default() -> Config {
        Config {
            procs: default_procs(),
            native_stack_size: DEFAULT_NATIVE_STACK,
            managed_stack_size: DEFAULT_MANAGED_STACK,
            max_stack_size: DEFAULT_MAX_STACK,
            gc_percent: 100,
            debug: DebugFlags::from_env(),
        }
    }
}

/// `GSMAXPROCS` if set to a positive number (a bad value is reported and
/// ignored), else the number of CPUs.
fn default_procs() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::env::var("GSMAXPROCS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                crate::fatal::write_stderr(
                    format!("gstack: GSMAXPROCS: bad value {v:?} (using {cpus})\n").as_bytes(),
                );
                cpus
            }
        },
        Err(_) => cpus,
    }
}

/// Figures of one runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of stack handed out to goroutines (live, or kept by dead ones
    /// for reuse).
    pub stack_in_use: usize,
    /// Stack bytes committed from the system (incl. guard pages; for large
    /// stacks the touched part of their reservations, not the address
    /// space reserved).
    pub stack_sys: usize,
    /// Bytes of free stacks held in per-thread caches.
    pub stack_cached: usize,
    /// Goroutines spawned and not finished.
    pub goroutines_alive: usize,
    /// Goroutines ever spawned.
    pub goroutines_spawned: u64,
    /// Spawns that reused a dead goroutine.
    pub goroutines_recycled: u64,
    /// Stack growths and moves: copies (grown, shrunk, or moved in place by
    /// stackforcemove) and large stacks extended in place (no bytes copied).
    pub stack_copies: u64,
    /// Bytes copied by those moves.
    pub stack_bytes_copied: u64,
    /// Largest stack any managed goroutine grew to.
    pub stack_peak: usize,
    /// Scan cycles completed.
    pub gc_cycles: u64,
    /// Starting stack size a new managed goroutine gets now (adaptive
    /// after the first cycle unless `GSDEBUG=adaptivestackstart=0`).
    pub managed_start_size: usize,
}

/// One instance of the runtime: its scheduler, stack pool and settings.
/// Several may exist in a process (each runs on the thread that calls
/// [`Runtime::run`]); a process usually has one.
pub struct Runtime {
    sched: Box<Sched>,
}

impl Runtime {
    pub fn new(config: Config) -> Runtime {
        Runtime {
            sched: Box::new(Sched::new(config)),
        }
    }

    /// Run `main` as a goroutine on this thread and return when every
    /// goroutine it (transitively) spawned has finished.
    ///
    /// Panics when this thread is already running a runtime (for example
    /// when called from inside a goroutine) or when this Runtime is already
    /// running on another thread.
    pub fn run<F: FnOnce() + Send + 'static>(&self, main: F) {
        assert!(
            m::current_m().is_null(),
            "gstack: Runtime::run called on a thread that is already running a runtime"
        );
        assert!(
            !self
                .sched
                .running
                .swap(true, core::sync::atomic::Ordering::AcqRel),
            "gstack: this Runtime is already running"
        );
        crate::signal::install();
        let _alt = crate::signal::ensure_altstack();

        let (lo, hi) = thread_stack_bounds();
        let g0 = Box::into_raw(Box::new(G::new(GKind::G0)));
        let m = Box::into_raw(Box::new(M::new(g0, &*self.sched, &self.sched.ps[0])));
        // SAFETY: g0 and m are fresh allocations owned by this call until
        // the end of it; the scheduler reaches them only through raw
        // pointers while we are switched away.
        unsafe {
            (*g0).stack_lo = lo;
            (*g0).stack_hi = hi;
            (*g0).m = m;
            (*g0).id = 0;
        }
        self.sched.ps[0]
            .owner
            .store(m as usize, core::sync::atomic::Ordering::Release);
        self.sched.ms.lock().unwrap().push(m as usize);
        m::set_current_m(m);
        // On this thread's own stack: a system stack, so newproc may run here.
        let first = self
            .sched
            .newproc(
                sched::Start::Native(Box::new(main)),
                self.sched.config.native_stack_size,
            )
            .unwrap_or_else(|e| panic!("gstack: cannot start the main goroutine: {e}"));
        // The other Ms: one thread per P beyond the first.
        let sched_addr = &*self.sched as *const Sched as usize;
        let threads: Vec<_> = (1..self.sched.ps.len())
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("gstack-m{i}"))
                    .spawn(move || {
                        // SAFETY: run() joins this thread before the Sched
                        // can go away.
                        let sched = unsafe { &*(sched_addr as *const Sched) };
                        m_thread(sched, Some(i))
                    })
                    .expect("gstack: cannot start an M thread")
            })
            .collect();
        // SAFETY: we are this M's thread; `first` is the only queued G on
        // P 0 (the other Ms steal only from queues with more than one... or
        // this one: then it simply runs there).  gs_swapcontext saves this
        // thread's context in g0.sched: the scheduler runs below this point
        // of the thread's stack, and resumes g0.sched (returning here) when
        // no goroutine is left.
        unsafe {
            let monitor = crate::monitor::Monitor::start(&self.sched);
            // gs_goentry pops a goroutine's start arguments: give it
            // zeros (mstart takes only the M), on the unused thread stack
            // below boot_sp.
            let mut boot = Context::new_goroutine(
                boot_sp(),
                gs_goentry as *const () as usize,
                mstart as *const () as usize,
                m as usize,
            );
            boot.sp = crate::arch::push_start_args(boot.sp, &[0; 6]);
            let _ = first;
            gs_swapcontext(&mut (*g0).sched, &boot);
            for t in threads {
                let _ = t.join();
            }
            monitor.stop();
            loop {
                let t = self.sched.temp_threads.lock().unwrap().pop();
                match t {
                    Some(t) => {
                        let _ = t.join();
                    }
                    None => break,
                }
            }
        }
        m::set_current_m(ptr::null_mut());
        self.sched.ms.lock().unwrap().clear();
        self.sched.free_retired();
        self.sched.teardown();
        // SAFETY: the scheduler is done with them; nothing else holds them.
        unsafe {
            drop(Box::from_raw(m));
            drop(Box::from_raw(g0));
        }
        self.sched
            .running
            .store(false, core::sync::atomic::Ordering::Release);
    }

    /// This runtime's figures.
    pub fn stats(&self) -> Stats {
        self.sched.stats()
    }

    pub fn config(&self) -> &Config {
        &self.sched.config
    }
}

/// Run `main` on a new runtime with the default [`Config`] (debug modes from
/// `GSDEBUG`); returns when every goroutine has finished.
pub fn run<F: FnOnce() + Send + 'static>(main: F) {
    Runtime::new(Config::default()).run(main)
}

/// Where an M starts its scheduler loop: a little below the caller's
/// frame on the thread's own stack (the scheduler's frames are abandoned
/// whenever g0 code starts afresh at g0.sched.sp, which is above).
#[inline(never)]
fn boot_sp() -> usize {
    let here = 0usize;
    (&here as *const usize as usize - 4096) & !15
}

/// Entered through gs_goentry on an M's own stack: run the scheduler.
extern "C" fn mstart(m: *mut M) -> ! {
    // SAFETY: m is this thread's M, set up by run() or m_thread().  A panic
    // in scheduler code must not unwind into the asm frame above.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
        sched::schedule(m)
    }));
    let e = r.unwrap_err();
    crate::fatal::fatal(&format!(
        "panic in the scheduler: {}",
        crate::fatal::panic_message(&*e)
    ))
}

/// An extra M: a thread that holds P `i` (or, for a temporary M started
/// by the monitor, an idle P) and runs goroutines until every goroutine of
/// the runtime has finished (or, temporary, until it gives its P back).
pub(crate) fn m_thread(sched: &Sched, i: Option<usize>) {
    let _alt = crate::signal::ensure_altstack();
    let (lo, hi) = thread_stack_bounds();
    let g0 = Box::into_raw(Box::new(G::new(GKind::G0)));
    let p = match i {
        Some(i) => &sched.ps[i] as *const sched::P,
        None => ptr::null(),
    };
    let m = Box::into_raw(Box::new(M::new(g0, sched, p)));
    // SAFETY: fresh allocations owned by this thread until it ends; the
    // boot context runs the scheduler on this thread's stack below the
    // point saved in g0.sched, to which the scheduler returns at the end.
    unsafe {
        (*g0).stack_lo = lo;
        (*g0).stack_hi = hi;
        (*g0).m = m;
        (*m).id = i.unwrap_or(usize::MAX) as u64;
        if i.is_none() {
            (*m).temporary = true;
            if !sched.acquire_idle_p(m) {
                // Its P was taken back already.
                drop(Box::from_raw(m));
                drop(Box::from_raw(g0));
                return;
            }
        }
        if let Some(i) = i {
            sched.ps[i]
                .owner
                .store(m as usize, core::sync::atomic::Ordering::Release);
        }
        sched.ms.lock().unwrap().push(m as usize);
        m::set_current_m(m);
        // As in Runtime::run: zero start arguments for gs_goentry to pop.
        let mut boot = Context::new_goroutine(
            boot_sp(),
            gs_goentry as *const () as usize,
            mstart as *const () as usize,
            m as usize,
        );
        boot.sp = crate::arch::push_start_args(boot.sp, &[0; 6]);
        gs_swapcontext(&mut (*g0).sched, &boot);
        m::set_current_m(ptr::null_mut());
        // Its M struct stays until the runtime ends (the monitor may still
        // look at it); the runtime frees it with the others.
        sched.retire_m(m, g0);
    }
}

/// The bounds of this thread's own stack, which becomes g0's stack.
fn thread_stack_bounds() -> (usize, usize) {
    // SAFETY: pthread_getattr_np fills an attr we destroy afterwards.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, usize::MAX);
        }
        let mut addr: *mut libc::c_void = ptr::null_mut();
        let mut size: libc::size_t = 0;
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize, addr as usize + size)
    }
}

/// Make a native goroutine and queue it; its id.  On g0 or a native
/// goroutine's stack (newproc's conditions).
fn spawn_native(sched: &Sched, body: crate::g::NativeFn, size: usize) -> Result<u64, SpawnError> {
    let g = sched.newproc_unqueued(sched::Start::Native(body), size)?;
    // SAFETY: g is fresh and on no queue: only we see it until it is
    // queued.  Its id is read first: once queued another M may run it, see
    // it exit and reuse the G for a spawn of its own.
    unsafe {
        let id = (*g).id;
        sched.put_new(g);
        Ok(id)
    }
}

/// Stack room a native goroutine needs left to run newproc in place
/// rather than on g0 (the allocator's deepest path, a fresh mmap, uses a
/// few KiB; this leaves a wide margin).
const SPAWN_IN_PLACE_ROOM: usize = 32 << 10;

/// Bytes left below the caller's frame when it runs on a native
/// goroutine's own stack; 0 anywhere else (managed code, g0, no runtime).
#[inline]
fn native_room() -> usize {
    let g = m::current_g_on_stack();
    if g.is_null() {
        return 0;
    }
    // SAFETY: current_g_on_stack returns this thread's running goroutine,
    // live while it runs, and we are on its stack (so sp > stack_lo).
    unsafe {
        if (*g).kind != GKind::Native {
            return 0;
        }
        let here = &g as *const *mut G as usize;
        here - (*g).stack_lo
    }
}

/// The runtime the calling goroutine belongs to.
pub(crate) fn current_sched() -> Option<&'static Sched> {
    let m = m::current_m();
    if m.is_null() {
        return None;
    }
    // SAFETY: a live M's Sched outlives every goroutine of that runtime
    // (Runtime::run does not return before they all finished).
    unsafe { Some(&*(*m).sched) }
}

/// The runtime a spawn goes to: [`current_sched`], but none for foreign
/// code inside a managed goroutine's system call window -- newproc uses
/// the M's P, which the monitor may have handed to another M by then.
fn spawn_sched() -> Result<&'static Sched, SpawnError> {
    let sched = current_sched().ok_or(SpawnError::NotInRuntime)?;
    let m = m::current_m();
    // SAFETY: current_sched found this thread's live M; its non-null curg
    // is live while the M runs.
    let in_syscall = unsafe {
        let g = (*m).curg;
        !g.is_null() && (*g).in_syscall != 0
    };
    if in_syscall {
        return Err(SpawnError::NotInRuntime);
    }
    Ok(sched)
}

/// Options for spawning one goroutine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Builder {
    stack_size: Option<usize>,
    force_move: bool,
}

/// A spawned managed goroutine: its id, and its entry function's return
/// value once it has exited.
///
/// Costs no allocation: it points at the goroutine's G, which is not
/// reused while a handle to it lives (the last handle to go after the
/// goroutine exited releases it), and keeps the runtime's G slab alive,
/// so it stays valid after the runtime ends.
pub struct Managed {
    pub id: u64,
    g: *mut G,
    slab: std::sync::Arc<crate::g::GSlab>,
}

// SAFETY: the handle only reads the G's id, status, handle count and saved
// context (atomically or after an acquire of the exited bit), and the
// slab it keeps alive is Send + Sync.
unsafe impl Send for Managed {}
// SAFETY: as for Send.
unsafe impl Sync for Managed {}

impl Managed {
    /// The entry function's return value, or None while it runs.
    pub fn result(&self) -> Option<usize> {
        // SAFETY: the G lives as long as the slab we hold, and is not
        // reused while we hold a count; its saved context is final once
        // HANDLE_EXITED is set (released by gs_goexit0, acquired here).
        // Through raw field pointers, never a `&G`: other threads write the
        // G's plain fields meanwhile.
        unsafe {
            let handles = &*core::ptr::addr_of!((*self.g).handles);
            if handles.load(Ordering::Acquire) & HANDLE_EXITED == 0 {
                return None;
            }
            Some((*core::ptr::addr_of!((*self.g).sched)).retval())
        }
    }
}

impl Clone for Managed {
    fn clone(&self) -> Managed {
        // SAFETY: as in result(); we hold a count, so it is not 0.
        let h = unsafe { &(*self.g).handles };
        let _ = h.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            // At the maximum the count sticks (the G is then never reused).
            (v & HANDLES_MAX != HANDLES_MAX).then_some(v + 1)
        });
        Managed {
            id: self.id,
            g: self.g,
            slab: self.slab.clone(),
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        // SAFETY: as in result().
        let h = unsafe { &(*self.g).handles };
        let prev = h.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v & HANDLES_MAX != HANDLES_MAX).then_some(v - 1)
        });
        if prev == Ok(HANDLE_EXITED | 1) {
            // The last handle of a finished goroutine: its G may be reused.
            self.slab.release(self.g);
        }
    }
}

impl core::fmt::Debug for Managed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Managed")
            .field("id", &self.id)
            .field("result", &self.result())
            .finish()
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Stack size: for a native goroutine the size of its fixed stack
    /// (rounded up to whole pages; a guard page is added below it), for a
    /// managed one its starting size (rounded up to a power of two).
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Spawn a native goroutine running `f` on the calling goroutine's
    /// runtime.  Returns its goroutine id.
    pub fn spawn<F: FnOnce() + Send + 'static>(self, f: F) -> Result<u64, SpawnError> {
        let sched = spawn_sched()?;
        let size = self.stack_size.unwrap_or(sched.config.native_stack_size);
        let body: crate::g::NativeFn = Box::new(f);
        if native_room() >= SPAWN_IN_PLACE_ROOM {
            // A native goroutine with room to spare: newproc runs right
            // here, saving the trip to g0 and back.  What g0 is for does
            // not apply: its stack never moves or grows (the allocator
            // must never run on a stack that can), nothing else runs on
            // this M until newproc returns (it never switches), so the P's
            // lists and cache are ours as on g0, and a fixed stack this
            // deep in room holds the allocator's frames (an mmap included).
            // A panic in there is fatal, as it is on g0 (systemstack): the
            // P's lists may be half-updated, and it must not reach the
            // caller, who could catch it and go on.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                spawn_native(sched, body, size)
            })) {
                Ok(r) => r,
                Err(e) => crate::fatal::fatal(&format!(
                    "panic while spawning a goroutine: {}",
                    crate::fatal::panic_message(&*e)
                )),
            }
        } else {
            // Managed code, a shallow native stack, or g0 itself: the
            // allocator must not run on a goroutine stack that can move.
            systemstack(move || spawn_native(sched, body, size))
        }
    }

    /// Spawn a managed goroutine: `entry` must be the start of a registered
    /// managed function; it is called as `entry(g, args...)` (at most
    /// [`MAX_MANAGED_ARGS`](crate::MAX_MANAGED_ARGS) integer or pointer arguments) on a movable stack that starts at the
    /// runtime's `managed_stack_size` (or this builder's `stack_size`,
    /// rounded up to a power of two).
    pub fn spawn_managed(self, entry: usize, args: &[usize]) -> Result<Managed, SpawnError> {
        let sched = spawn_sched()?;
        if args.len() > MAX_MANAGED_ARGS {
            return Err(SpawnError::TooManyArgs(args.len()));
        }
        let registered = crate::functab::read()
            .find(entry + 1)
            .is_some_and(|f| f.start == entry);
        if !registered {
            return Err(SpawnError::NotManaged(entry));
        }
        let mut a = [0usize; 6];
        a[..args.len()].copy_from_slice(args);
        let size = self
            .stack_size
            .unwrap_or_else(|| sched.managed_start_size());
        let start = sched::Start::Managed {
            entry,
            args: a,
            handle: true,
            force_move: self.force_move,
        };
        let g = systemstack(move || sched.newproc(start, size))?;
        // SAFETY: g is live (Gs are never freed while the runtime runs),
        // and not reused before the count newproc gave it is dropped.
        let id = unsafe { (*g).id };
        Ok(Managed {
            id,
            g,
            slab: sched.slab.clone(),
        })
    }

    /// Make every entry check of this (managed) goroutine move its stack,
    /// as `GSDEBUG=stackforcemove=1` does for all: a test that every frame
    /// and value survives a move at every call.
    pub fn force_move(mut self, on: bool) -> Builder {
        self.force_move = on;
        self
    }
}

/// Spawn a native goroutine with the default stack size.  Panics when not
/// called from a goroutine, or when no stack can be had; see
/// [`Builder::spawn`] for the fallible form.
pub fn spawn<F: FnOnce() + Send + 'static>(f: F) -> u64 {
    Builder::new()
        .spawn(f)
        .unwrap_or_else(|e| panic!("gstack::spawn: {e}"))
}

/// Let the other runnable goroutines run; the caller continues after them.
/// Returns at once when no other goroutine is runnable, or when called
/// outside a goroutine.
///
/// Inlined: the goroutine calls the assembly fast path (gs_yield_native)
/// itself, which handles the common cases (one P: the head of the queue;
/// several Ps: runnext) without entering Rust and passes everything else
/// to `gs_yield_slow`.  On x86-64 the jump into the next
/// goroutine is made here, from each place yield_now is inlined, so the
/// processor predicts it per yield site (asm/x86_64.S says why).  Not on
/// aarch64: there a resume must be a `ret` (a `br` would need a BTI
/// landing pad at every saved pc, and return addresses have none), and a
/// `ret` is predicted from the return stack, not per site.
#[inline]
pub fn yield_now() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: gs_yield_native checks everything it relies on itself (a
    // runtime on this thread, a goroutine, its stack) and follows the
    // convention in asm/x86_64.S: r11 in = where this goroutine resumes
    // (label 2 below); rax = 0 out: carry on; else rax/rdx = the pc/sp of
    // the goroutine to continue, whose callee-saved registers are already
    // loaded, so we go there touching nothing else -- but for, once off
    // this goroutine's stack and when rcx says so (several Ps), making it
    // runnable in its P's runnext (rdi = its G, rcx = the slot): from that
    // store on another M may resume it, so nothing here may use its stack
    // after the store (x86-64 keeps stores in order: who sees it in the
    // slot sees its saved context and status).  Label 2 is
    // reached with this goroutine's own rsp and callee-saved registers
    // (directly, or when any resume path continues its saved context), so
    // to the compiler the block is a call that clobbers what the C ABI
    // lets a call clobber; not `nostack`, so rsp is aligned for the call
    // and the red zone is free.
    unsafe {
        core::arch::asm!(
            "lea r11, [rip + 2f]",
            "call {native}",
            "test rax, rax",
            "jz 2f",
            "mov rsp, rdx",
            "test rcx, rcx",
            "jz 3f",
            "mov dword ptr [rdi + {status}], {runnable}",
            "mov [rcx], rdi",
            "3:",
            "jmp rax",
            "2:",
            native = sym crate::trampoline::gs_yield_native,
            status = const crate::abi::GS_G_STATUS,
            runnable = const crate::abi::GS_STATUS_RUNNABLE,
            clobber_abi("C"),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: gs_yield_native takes no arguments and checks everything it
    // relies on itself (a runtime on this thread, a goroutine, its stack);
    // it returns like an ordinary call, maybe after other goroutines ran.
    unsafe {
        crate::trampoline::gs_yield_native()
    }
}

/// yield_now's general case, tail-called by gs_yield_native with this
/// thread's M and its running goroutine, on that goroutine's stack (the
/// assembly checked all three).
#[no_mangle]
extern "C" fn gs_yield_slow(m: *mut M, g: *mut crate::g::G) {
    // SAFETY: as gs_yield_native guarantees: m is this thread's live M, g
    // its running goroutine, and we are on g's stack.
    unsafe { sched::yield_switch(m, g) }
}

/// End the calling goroutine.  Its Rust frames are unwound (destructors
/// run), without invoking the panic hook; the goroutine then finishes as if
/// its function had returned.  Panics outside a goroutine.
pub fn goexit() -> ! {
    assert!(
        !m::current_g().is_null(),
        "gstack::goexit called outside a goroutine"
    );
    std::panic::resume_unwind(Box::new(Goexit))
}

/// The id of the calling goroutine (the main goroutine is 1), or None
/// outside a goroutine.
pub fn current_id() -> Option<u64> {
    let g = m::current_g();
    // SAFETY: a non-null current G is live.
    (!g.is_null()).then(|| unsafe { (*g).id })
}

/// Figures of the calling goroutine's runtime, or None outside one.
pub fn stats() -> Option<Stats> {
    current_sched().map(|s| s.stats())
}

/// Check seed 004's invariant on the calling goroutine's runtime: the sum
/// of every goroutine's stack size equals what the pool counts in use.
/// Exact when nothing else runs meanwhile: with several Ps, another thread
/// halfway through a stack copy holds two stacks for a moment.
pub fn check_accounting() -> Result<(), String> {
    let s = current_sched().ok_or_else(|| "not in a runtime".to_string())?;
    systemstack(|| s.check_accounting())
}
