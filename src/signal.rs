//! Stack overflow of a native goroutine: its stack has a PROT_NONE guard
//! page below it, so running off the end raises SIGSEGV (or SIGBUS).  The
//! handler runs on an alternate signal stack (the faulting stack has no
//! room), recognises a fault in the current goroutine's guard page and ends
//! the process with a message naming the goroutine and its stack size.
//! Any other fault goes to the handler that was installed before ours.

use crate::fatal::{exit2, write_stderr};
use crate::m;
use core::mem::MaybeUninit;
use core::ptr;
use std::sync::Once;

static INSTALL: Once = Once::new();
static mut OLD_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();
static mut OLD_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();

/// Size of the alternate signal stack we install on threads that have none
/// (Go uses 32 KiB; formatting here needs little).
const ALTSTACK_SIZE: usize = 64 * 1024;

/// Install the SIGSEGV/SIGBUS handler once per process.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: plain sigaction calls with initialised structs; the OLD_*
        // statics are written here once, before any handler can read them
        // (the handler is installed by these very calls).
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, (&raw mut OLD_SEGV).cast());
            libc::sigaction(libc::SIGBUS, &sa, (&raw mut OLD_BUS).cast());
        }
    });
}

/// An alternate signal stack this thread did not have before; removed on
/// drop.  Threads made by Rust's std already have one.
pub struct AltStack {
    mem: *mut libc::c_void,
}

/// Make sure this thread has an alternate signal stack.
pub fn ensure_altstack() -> Option<AltStack> {
    // SAFETY: sigaltstack with a null new stack only queries; mmap/munmap
    // of a private anonymous region we own.
    unsafe {
        let mut old: libc::stack_t = core::mem::zeroed();
        libc::sigaltstack(ptr::null(), &mut old);
        if old.ss_flags & libc::SS_DISABLE == 0 {
            return None;
        }
        let mem = libc::mmap(
            ptr::null_mut(),
            ALTSTACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if mem == libc::MAP_FAILED {
            return None;
        }
        let st = libc::stack_t {
            ss_sp: mem,
            ss_flags: 0,
            ss_size: ALTSTACK_SIZE,
        };
        libc::sigaltstack(&st, ptr::null_mut());
        Some(AltStack { mem })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: we installed this stack on this thread and are not running
        // on it (signal handlers are not running here).
        unsafe {
            let st = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&st, ptr::null_mut());
            libc::munmap(self.mem, ALTSTACK_SIZE);
        }
    }
}

/// Formats into a fixed buffer: a signal handler must not allocate.
struct Buf {
    b: [u8; 256],
    n: usize,
}

impl Buf {
    fn s(&mut self, s: &str) -> &mut Self {
        for &c in s.as_bytes() {
            if self.n < self.b.len() {
                self.b[self.n] = c;
                self.n += 1;
            }
        }
        self
    }
    fn u(&mut self, mut v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // SAFETY: digits are ASCII.
        self.s(unsafe { core::str::from_utf8_unchecked(&d[i..]) })
    }
    fn x(&mut self, mut v: u64) -> &mut Self {
        let mut d = [0u8; 16];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.s("0x");
        // SAFETY: hex digits are ASCII.
        self.s(unsafe { core::str::from_utf8_unchecked(&d[i..]) })
    }
}

/// The faulting context's pc and sp.
///
/// # Safety
/// `ctx` is the ucontext the kernel passed to an SA_SIGINFO handler.
unsafe fn pc_sp(ctx: *mut libc::c_void) -> (u64, u64) {
    // SAFETY: the caller's guarantee.
    unsafe {
        let uc = &*(ctx as *const libc::ucontext_t);
        cfg_if::cfg_if! {
            if #[cfg(target_arch = "x86_64")] {
                (
                    uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64,
                    uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64,
                )
            } else {
                (uc.uc_mcontext.pc, uc.uc_mcontext.sp)
            }
        }
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers;
    // gs_current_m is a plain TLS slot; the M and its curg are live while the
    // thread runs goroutine code (the only time a guard page is hit).
    unsafe {
        let addr = (*info).si_addr() as usize;
        let m = m::current_m();
        if !m.is_null() && !(*m).curg.is_null() {
            let g = (*m).curg;
            if let Some(stk) = (*g).stack() {
                if let Some((glo, ghi)) = stk.guard() {
                    if addr >= glo && addr < ghi {
                        let mut b = Buf { b: [0; 256], n: 0 };
                        b.s("fatal error: stack overflow: goroutine ")
                            .u((*g).id)
                            .s(" overflowed its ")
                            .u(stk.size() as u64)
                            .s("-byte stack (native goroutines have a fixed stack: spawn it with a larger stack_size)\n");
                        write_stderr(&b.b[..b.n]);
                        exit2();
                    }
                }
            }
        }
        // Not a guard page: if nobody else handles it the process dies;
        // on one of our threads, say which goroutine was running first.
        if !m.is_null() && default_action(sig) {
            let g = (*m).curg;
            let (pc, sp) = pc_sp(ctx);
            let mut b = Buf { b: [0; 256], n: 0 };
            b.s("fatal error: unexpected signal ")
                .u(sig as u64)
                .s(" (fault address ")
                .x(addr as u64)
                .s(", pc ")
                .x(pc)
                .s(", sp ")
                .x(sp)
                .s(")");
            if g.is_null() {
                b.s(" on the system stack\n");
            } else {
                b.s(" on goroutine ")
                    .u((*g).id)
                    .s(", stack [")
                    .x((*g).stack_lo as u64)
                    .s(", ")
                    .x((*g).stack_hi as u64)
                    .s(")\n");
            }
            write_stderr(&b.b[..b.n]);
        }
        chain(sig, info, ctx);
    }
}

/// Whether the handler before ours is the default (or ignore) action.
///
/// The handler that was installed for `sig` (SIGBUS or SIGSEGV) before ours.
///
/// # Safety
/// install() filled the OLD_* statics, which nothing writes after.
unsafe fn old_action(sig: libc::c_int) -> &'static libc::sigaction {
    let p = if sig == libc::SIGBUS {
        &raw const OLD_BUS
    } else {
        &raw const OLD_SEGV
    };
    // SAFETY: the caller's guarantee: initialized, never written again;
    // MaybeUninit<T> has T's layout.
    unsafe { &*p.cast::<libc::sigaction>() }
}

/// # Safety
/// Called from the signal handler, after install() filled the OLD_* statics.
unsafe fn default_action(sig: libc::c_int) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe {
        let old = old_action(sig);
        old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN
    }
}

/// Hand a fault that is not ours to the previous handler.
///
/// # Safety
/// Called from the signal handler with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the OLD_* statics were filled before our handler was installed.
    unsafe {
        let old = old_action(sig);
        let h = old.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            // Restore the default action and return: the faulting
            // instruction runs again and the kernel ends the process.
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, ptr::null_mut());
        } else if old.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                core::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = core::mem::transmute(h);
            f(sig);
        }
    }
}
