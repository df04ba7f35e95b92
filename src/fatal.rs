//! Fatal errors: a broken runtime invariant or an unrecoverable condition
//! (stack overflow, a panic in a goroutine) ends the process with a message
//! on stderr and exit status 2, like Go's `throw`.  Never silent corruption.

use crate::g::{GKind, G};
use crate::m;
use std::any::Any;

/// Write all of `bytes` to fd 2 without allocating or locking (usable from a
/// signal handler and from g0 with a broken runtime).
pub fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: rest is a valid readable buffer of rest.len() bytes.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// Print `fatal error: msg`, the current goroutine, and exit with status 2.
///
/// When the current goroutine is managed and we are on the system stack
/// (its context saved: morestack, newstack, a scheduler check), its frames
/// are printed; otherwise its header only.
pub fn fatal(msg: &str) -> ! {
    let g = m::current_g();
    let mut text = format!("fatal error: {msg}\n");
    if !g.is_null() {
        // SAFETY: a non-null current G is live while its M runs.
        let gr = unsafe { &*g };
        let here = &text as *const String as usize;
        let on_own_stack = here >= gr.stack_lo && here < gr.stack_hi;
        text.push('\n');
        if gr.kind == GKind::Managed && !on_own_stack {
            // SAFETY: we are not on g's stack, so g is stopped at g.sched
            // (it only leaves its stack through gs_mcall/gs_morestack,
            // which save it), and this thread is the only one touching it.
            text.push_str(&unsafe { crate::traceback::traceback_saved(g) });
        } else {
            text.push_str(&format!("goroutine {} [{}]:\n", gr.id, gr.status().name()));
        }
    }
    write_stderr(text.as_bytes());
    exit2()
}

/// Print `fatal error: msg` naming goroutine `g`, and exit with status 2.
pub fn fatal_g(g: *const G, msg: &str) -> ! {
    // SAFETY: callers pass a live G.
    let id = unsafe { (*g).id };
    fatal(&format!("goroutine {id}: {msg}"))
}

/// Exit with status 2 at once: no destructors, no atexit handlers (the
/// runtime's state cannot be trusted to unwind).
pub fn exit2() -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(2) }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// mcall's `fn` returned: there is no frame to return to.
#[no_mangle]
pub extern "C" fn gs_fatal_mcall_returned(_g: *mut G) -> ! {
    fatal("mcall returned")
}

/// mcall was called off the goroutine's stack (on the system stack: from
/// a root visitor, or foreign code in a libcall), or the goroutine's
/// recorded stack is not the one it runs on (a broken runtime invariant).
/// `sp` is the stack pointer gs_mcall found.
#[no_mangle]
pub extern "C" fn gs_fatal_mcall_off_stack(g: *mut G, sp: usize) -> ! {
    // SAFETY: gs_mcall passes the goroutine it was given, a live G, and
    // the M of this thread is live while it runs goroutine code.
    let (id, detail) = unsafe {
        let gr = &*g;
        let m = crate::m::current_m();
        let curg = if m.is_null() {
            core::ptr::null_mut()
        } else {
            (*m).curg
        };
        (
            gr.id,
            format!(
                "sp {sp:#x}, stack [{:#x}, {:#x}), status {}, g.m {:p}, this thread's M {:p} running goroutine {}",
                gr.stack_lo,
                gr.stack_hi,
                gr.status().name(),
                gr.m,
                m,
                if curg.is_null() { 0 } else { (*curg).id },
            ),
        )
    };
    fatal(&format!(
        "goroutine {id}: a switch (yield, channel operation) was attempted off the goroutine's stack ({detail})"
    ))
}

/// mcall was called on g0: there is no goroutine to save.
#[no_mangle]
pub extern "C" fn gs_fatal_mcall_on_g0(_g: *mut G) -> ! {
    fatal("mcall called on g0")
}
