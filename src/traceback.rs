//! Tracebacks: a goroutine's frames with function names and offsets, in
//! the shape Go prints them.
//!
//! ```text
//! goroutine 7 [waiting]:
//!     rec+0x4c  sp=0x7f12a0001f40 fp=0x7f12a0001f60
//!     rec+0x4c  sp=0x7f12a0001f70 fp=0x7f12a0001f90
//!     ...
//!     main_entry+0x18  sp=0x7f12a0001fd0 fp=0x7f12a0001ff0
//! ```

use crate::g::{GKind, Status, G};
use crate::unwind::{walk_g, WalkStart};
use std::fmt::Write;

/// Frames printed at each end of a long stack; the middle is elided.
const EDGE: usize = 50;

/// The traceback of goroutine `g`, which must be stopped (its context
/// saved) for its frames to be walked.
///
/// # Safety note
/// Reads `g`'s stack: callers make sure it is stopped (not running on
/// another thread and not being copied).
pub fn traceback(g: *const G) -> String {
    // SAFETY: callers pass a live G (see above).
    let gr = unsafe { &*g };
    let status = gr.status();
    let mut out = format!("goroutine {} [{}]:\n", gr.id, status.name());
    match gr.kind {
        GKind::Native => {
            out.push_str("\t(native goroutine: ordinary Rust/C frames, not walked)\n");
            return out;
        }
        GKind::G0 => {
            out.push_str("\t(system stack)\n");
            return out;
        }
        GKind::Managed => {}
    }
    if status == Status::Running || status == Status::Dead || gr.stack_source.is_none() {
        out.push_str("\t(not stopped: frames not walked)\n");
        return out;
    }
    walk_into(gr, &mut out);
    out
}

/// The traceback of the goroutine whose context was just saved on the way
/// to g0 (morestack, a fatal error on g0): its status may still say
/// running, but it is stopped.
///
/// # Safety
/// `g` is a live managed goroutine stopped at `g.sched`, and nobody else
/// touches its stack during the call.
pub unsafe fn traceback_saved(g: *const G) -> String {
    // SAFETY: the caller's guarantee.
    let gr = unsafe { &*g };
    let mut out = format!("goroutine {} [{}]:\n", gr.id, gr.status().name());
    walk_into(gr, &mut out);
    out
}

fn walk_into(gr: &G, out: &mut String) {
    let mut lines = Vec::new();
    // SAFETY: g is stopped (callers: checked status, or traceback_saved's
    // contract).
    let r = unsafe {
        walk_g(gr, WalkStart::stopped(gr), |f| {
            let mut l = format!("\t{}  sp={:#x} fp={:#x}", f.describe(), f.sp, f.fp);
            if !f.is_precise() {
                l.push_str("  (imprecise: no stack map)");
            }
            lines.push(l);
        })
    };
    let n = lines.len();
    for (i, l) in lines.iter().enumerate() {
        if n > 2 * EDGE && i == EDGE {
            let _ = writeln!(out, "\t...{} frames elided...", n - 2 * EDGE);
        }
        if n <= 2 * EDGE || i < EDGE || i >= n - EDGE {
            out.push_str(l);
            out.push('\n');
        }
    }
    if let Err(e) = r {
        let _ = writeln!(out, "\t(walk failed: {e})");
    }
}
