//! copystack: move a stopped managed goroutine to a new stack, adjusting
//! every word that points into the old one — guided by the stack maps.
//!
//! What moves and how (delta = new.hi - old.hi; the used part keeps its
//! distance from the top):
//!
//! ```text
//!        old stack                           new stack
//!   old.hi +------------+              new.hi +------------+
//!          | entry frame|  -- memcpy -->      | entry frame|  record: saved FP 0, kept
//!          | frame k    |                     | frame k    |  record: saved FP += delta
//!          |  slot -> x |                     |  slot -> x+delta   (x in old stack)
//!          | frame 0    |                     | frame 0    |
//! sched.sp +------------+                     +------------+ sched.sp += delta
//!          |  (unused)  |                     |  (unused)  |         sched.fp += delta
//!   old.lo +------------+                     |            |
//!                                      new.lo +------------+
//! ```
//!
//! The frames are found by walking the *old* stack (intact until it is
//! freed) along its frame-pointer chain; each adjustment is written at the
//! same offset in the new copy.  A word is adjusted when its value lies in
//! the old stack; any other value (a heap pointer, an integer the map
//! over-approximates) is left alone.  Callee-saved registers in the saved
//! context are not adjusted: the frame ABI forbids a stack address live in
//! a register across a call site (it must be in a mapped slot).

use crate::arch::{initial_sp, read_frame_record, FRAME_RECORD_SIZE};
use crate::fatal::fatal;
use crate::functab::{Cursor, Table};
use crate::g::{Status, G};
use crate::sched::Sched;
use crate::stack::{stackalloc, stackfree, StackKind};
use crate::unwind::{goentry_pc, goexit_pc, Frame, WalkError, WalkStart};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Smallest value a real pointer can have: a slot holding a value in
/// (0, 4096) is a bug in whoever wrote it or in the map (Go's
/// minLegalPointer).
pub const MIN_LEGAL_POINTER: usize = 4096;

/// Move goroutine `g` to a new stack of `newsize` bytes.
///
/// Must hold when called, and why:
/// - we run on the system stack (the allocator and the walk must not run
///   on a stack that is being moved);
/// - `g` is stopped with its context in `g.sched` and owned by us: its
///   status is `Copystack` (it is growing itself) or a scan claimed it, so
///   nobody else reads or writes its stack meanwhile;
/// - `newsize` is a power of two and holds the used part.
///
/// A frame without a precise map (an imprecise frame) is a fatal error
/// naming it: a stack moves only when every frame on it has a precise map.
/// So is a walk that does not end exactly at the entry frame, and a pointer
/// slot holding a value in (0, 4096).
///
/// # Safety
/// The conditions above.
pub unsafe fn copystack(sched: &Sched, g: *mut G, newsize: usize) {
    // SAFETY: the caller guarantees g is stopped and ours.
    let gr = unsafe { &mut *g };
    debug_assert!(gr.status() == Status::Copystack || gr.is_claimed());
    let old = gr.stack().expect("copystack: goroutine has no stack");
    let sp = gr.sched.sp;
    if sp < old.lo || sp > old.hi {
        fatal(&format!(
            "copystack: goroutine {}: saved SP {sp:#x} outside its stack [{:#x}, {:#x})",
            gr.id, old.lo, old.hi
        ));
    }
    let used = old.hi - sp;
    if used > newsize {
        fatal(&format!(
            "copystack: goroutine {}: {used} bytes in use do not fit a {newsize}-byte stack",
            gr.id
        ));
    }

    // 1. Allocate the new stack (on g0: we are on the system stack).
    // SAFETY: on the system stack of an M of this Sched: its P's cache.
    let cache = unsafe { sched.cache() };
    let new = match stackalloc(&sched.pool, cache, newsize, StackKind::Movable) {
        Ok(s) => s,
        Err(e) => fatal(&format!("copystack: goroutine {}: {e}", gr.id)),
    };
    let delta = new.hi.wrapping_sub(old.hi);

    // 2. Copy the used part, keeping its distance from the top, and adjust
    // its frames.  A goroutine parked on channels has sudogs whose elements
    // may point into its stack, and other threads may complete those
    // operations — writing into the element — at any moment (seed 001).
    // So: lock every channel it waits on (each once), move the sudogs, copy
    // the part of the stack that holds their elements, and unlock.  Pointer
    // slots in that part are adjusted with compare-and-swap below, as a
    // sender may write there again once the locks are released.
    // SAFETY: g is stopped and ours; its sudog list is stable.
    let chans = unsafe { crate::chan::waiting_chans(gr) };
    let mut sghi = 0;
    if !chans.is_empty() {
        for &c in &chans {
            // SAFETY: a waiting goroutine's channels are live.
            unsafe { (*c).lock() };
        }
        // SAFETY: g is stopped and every channel it waits on is locked.
        sghi = unsafe { crate::chan::adjust_sudogs(gr, old.lo, old.hi, delta) };
        if sghi > sp {
            // SAFETY: [sp, sghi) is live stack; the new stack has room.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    sp as *const u8,
                    sp.wrapping_add(delta) as *mut u8,
                    sghi - sp,
                )
            };
        }
        for &c in chans.iter().rev() {
            // SAFETY: locked above.
            unsafe { (*c).unlock() };
        }
    }

    // 3. Copy the rest and adjust the frames in one pass over the old
    // stack: `move_frames_fast` (frame by frame, each copied and adjusted
    // in one vectorized pass, runs of frames of one call site on a shorter
    // loop) when nobody else can write the stack, else `move_frames` (a
    // memcpy a chunk ahead of the walk, slots adjusted per frame, with CAS
    // below sghi).  The function table
    // is read-locked once for the whole walk and released before any fatal
    // error is reported.
    let id = gr.id;
    let mv = Move {
        lo: old.lo,
        size: old.hi - old.lo,
        hi: old.hi,
        delta,
        sghi,
    };
    let start = WalkStart::saved(gr);
    let copied_hi = sghi.max(sp);
    let r = {
        let table = crate::functab::read();
        // SAFETY: g is stopped and ours; its context is at start (its SP
        // in the old stack, checked above; its FP checked by the walk); [sp, copied_hi) is already copied; the
        // new stack's used part is ours alone, except words below sghi,
        // which move_frames writes with CAS.
        unsafe {
            if sghi == 0 {
                move_frames_fast(&table, mv, start)
            } else {
                move_frames::<true>(&table, mv, start, copied_hi)
            }
        }
    };
    if let Err(e) = r {
        fatal(&e.message(id));
    }

    // 4. The saved context: SP and FP (FP is always in the stack for a
    // managed goroutine stopped at a call site).
    gr.sched.sp = sp.wrapping_add(delta);
    if gr.sched.fp >= old.lo && gr.sched.fp < old.hi {
        gr.sched.fp = gr.sched.fp.wrapping_add(delta);
    }

    // 5. Install the new stack; keep a pending preemption request.
    let preempt = gr.stackguard0.load(Ordering::Relaxed) == crate::g::STACK_PREEMPT;
    gr.set_stack(new);
    sched.install_guard(gr);
    if preempt {
        gr.stackguard0
            .store(crate::g::STACK_PREEMPT, Ordering::Relaxed);
    }
    sched.note_copy(used, newsize);

    // 6. Free the old stack (poisoned by the pool under stackpoison) —
    // or, during a scan cycle, queue it to be freed when the cycle ends
    // (seed 002): a scanner may still read through a pointer into it.
    if sched.delay_free(old) {
        return;
    }
    // SAFETY: on the system stack of an M of this Sched: its P's cache.
    let cache = unsafe { sched.cache() };
    // SAFETY: `old` came from stackalloc on this pool and nothing refers
    // to it any more: every pointer into it was adjusted above.
    unsafe { stackfree(&sched.pool, cache, old) };
}

/// What one copy moves: the old stack's bounds, the distance to the new
/// one, and the end of the part a concurrent sender may write (0: none).
#[derive(Clone, Copy)]
struct Move {
    lo: usize,
    hi: usize,
    /// `hi - lo`: a word `v` points into the old stack iff
    /// `v.wrapping_sub(lo) < size` (one compare).
    size: usize,
    /// new.hi - old.hi (wrapping).
    delta: usize,
    /// Words below this address may be written by other threads (sudog
    /// elements, seed 001); 0 when the goroutine waits on no channel.
    sghi: usize,
}

/// Bytes copied at a time just ahead of the walk: small enough that the
/// chunk (old and new copy) is still in L1 when the walk adjusts its
/// frames, large enough for memcpy to run at full speed.  So the used part
/// is read from memory once and written once, as by a plain memcpy.
const CHUNK: usize = 4096;

/// What the walk needs from a call site it met, cached by return pc.
#[derive(Clone, Copy)]
struct SiteEntry<'t> {
    /// The return address (0: an empty cache slot; 0 is never looked up
    /// through the cache, see below).
    pc: usize,
    /// FP - SP of the frame at this call.
    frame_size: usize,
    /// Byte offsets from SP of the frame's pointer slots.
    slots: &'t [u32],
    /// The words of the frame to adjust: bit i = the word at SP + 8*i (its
    /// pointer slots and its record's saved FP).
    mask: u128,
}

// A frame and its record fit the mask.
const _: () = assert!(crate::functab::MAX_FRAME as usize / 8 + 2 <= 128);

/// Why a move failed; turned into the fatal message once the function
/// table is released.
enum MoveError {
    Walk(WalkError),
    Imprecise { frame: String, sp: usize },
    BadPointer { frame: String, off: usize, v: usize },
}

impl MoveError {
    /// The fatal message for goroutine `id`.
    fn message(&self, id: u64) -> String {
        match self {
            MoveError::Walk(e) => format!("copystack: goroutine {id}: {e}"),
            MoveError::Imprecise { frame, sp } => format!(
                "copystack: goroutine {id}: imprecise frame {frame} (sp {sp:#x}): no stack map at this pc, so its stack cannot move"
            ),
            MoveError::BadPointer { frame, off, v } => format!(
                "invalid pointer found on stack: goroutine {id}, {frame}, slot sp+{off:#x} holds {v:#x}"
            ),
        }
    }
}

/// What both copy loops check per frame, as [`crate::unwind::walk`] does,
/// with a two-entry cache of call sites keyed by return pc (deep
/// recursion returns to one or two pcs), most recently used first.
struct SiteWalk<'t> {
    table: &'t Table,
    cursor: Cursor<'t>,
    c0: SiteEntry<'t>,
    c1: SiteEntry<'t>,
    lo: usize,
    hi: usize,
    entry_fp: usize,
    exit_pc: usize,
}

impl<'t> SiteWalk<'t> {
    fn new(table: &'t Table, lo: usize, hi: usize) -> SiteWalk<'t> {
        let empty = SiteEntry {
            pc: 0,
            frame_size: 0,
            slots: &[],
            mask: 0,
        };
        SiteWalk {
            table,
            cursor: table.cursor(),
            c0: empty,
            c1: empty,
            lo,
            hi,
            entry_fp: initial_sp(hi) - FRAME_RECORD_SIZE,
            exit_pc: goexit_pc(),
        }
    }

    /// Frame `n` at (pc, sp, fp): its FP must be 16-aligned, in the stack
    /// at or above its SP and not above the entry record; its call site
    /// must have a map (else it is imprecise) whose frame size is FP - SP.
    #[inline(always)]
    fn frame(
        &mut self,
        n: usize,
        pc: usize,
        sp: usize,
        fp: usize,
    ) -> Result<SiteEntry<'t>, MoveError> {
        if !fp.is_multiple_of(16) || fp < sp || fp < self.lo || fp > self.entry_fp {
            return Err(MoveError::Walk(WalkError::BadFramePointer {
                frame: n,
                fp,
                sp,
                stack_lo: self.lo,
                stack_hi: self.hi,
            }));
        }
        let e = if pc == self.c0.pc && pc != 0 {
            self.c0
        } else if pc == self.c1.pc && pc != 0 {
            core::mem::swap(&mut self.c0, &mut self.c1);
            self.c0
        } else {
            match lookup(&mut self.cursor, pc) {
                Some(e) => {
                    self.c1 = self.c0;
                    self.c0 = e;
                    e
                }
                None => {
                    return Err(MoveError::Imprecise {
                        frame: describe(self.table, pc, sp, fp),
                        sp,
                    })
                }
            }
        };
        if e.frame_size != fp - sp {
            return Err(MoveError::Walk(WalkError::FrameSizeMismatch {
                frame: n,
                func: self
                    .table
                    .find(pc)
                    .map_or(String::new(), |f| f.name.clone()),
                pc,
                map: e.frame_size as u32,
                actual: fp - sp,
            }));
        }
        Ok(e)
    }

    /// Check the frame record at `fp` (of frame `n`, counted from 1):
    /// whether it is the entry frame's -- exactly at the entry record,
    /// saved FP 0 -- or else a record whose saved FP is higher up.
    #[inline(always)]
    fn is_entry(
        &self,
        n: usize,
        fp: usize,
        rec: crate::arch::FrameRecord,
    ) -> Result<bool, MoveError> {
        if rec.ret_pc == self.exit_pc {
            if fp != self.entry_fp || rec.saved_fp != 0 {
                return Err(MoveError::Walk(WalkError::EntryFrameMisplaced {
                    fp,
                    want: self.entry_fp,
                }));
            }
            return Ok(true);
        }
        if rec.saved_fp == 0 {
            return Err(MoveError::Walk(WalkError::NoEntryFrame {
                frame: n,
                pc: rec.ret_pc,
            }));
        }
        if rec.saved_fp <= fp {
            return Err(MoveError::Walk(WalkError::BadFramePointer {
                frame: n,
                fp: rec.saved_fp,
                sp: fp + FRAME_RECORD_SIZE,
                stack_lo: self.lo,
                stack_hi: self.hi,
            }));
        }
        Ok(false)
    }
}

/// `name+0xoff` (or `?? pc=...`) of the frame at `pc`: for error messages.
#[cold]
#[inline(never)]
fn describe(table: &Table, pc: usize, sp: usize, fp: usize) -> String {
    Frame {
        pc,
        sp,
        fp,
        func: table.find(pc).map(|f| &**f),
        site: None,
    }
    .describe()
}

/// The call site whose return address is `pc`, if it is one (a cache miss).
#[inline(never)]
fn lookup<'t>(cursor: &mut Cursor<'t>, pc: usize) -> Option<SiteEntry<'t>> {
    let f = cursor.find(pc)?;
    let s = f.call_site(pc)?;
    let frame_size = s.frame_size as usize;
    let slots = f.slots(s);
    // Slots are 8-aligned and below frame_size <= MAX_FRAME (checked at
    // registration), so every bit is below 128.
    let mut mask = 0u128;
    for w in slots
        .iter()
        .map(|&o| o as usize / 8)
        .chain([frame_size / 8])
    {
        mask |= 1 << w;
    }
    Some(SiteEntry {
        pc,
        frame_size,
        slots,
        mask,
    })
}

/// Adjust the word at `new_addr` of the new stack with compare-and-swap
/// (a sender may be writing it); return the value it had.
///
/// # Safety
/// `new_addr` is an 8-aligned word of the new stack's used part.
#[inline]
unsafe fn cas_adjust(new_addr: usize, mv: Move) -> usize {
    // SAFETY: the caller's guarantee.  A known imprecision (as in Go):
    // a sender may write this word concurrently with a plain store of an
    // element (made under the channel's lock, which we no longer hold), so
    // under Rust's model this CAS races with it; the hardware makes the
    // outcome one of the two values, which is all seed 001 needs.  An
    // element whose size is not a word may be written bytewise.
    let w = unsafe { &*(new_addr as *const AtomicUsize) };
    let mut v = w.load(Ordering::Relaxed);
    loop {
        if v.wrapping_sub(mv.lo) >= mv.size {
            return v;
        }
        match w.compare_exchange(
            v,
            v.wrapping_add(mv.delta),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return v,
            Err(now) => v = now,
        }
    }
}

/// Copy the old stack's used part from `copied_hi` up into the new stack
/// and adjust every frame: its pointer slots and the saved FP of its frame
/// record.  Returns the number of frames.
///
/// This is [`crate::unwind::walk`] specialised for the copy, with the same
/// checks and errors (an FP outside the stack, misaligned or not
/// increasing; a frame size that disagrees with the map; a chain that does
/// not end exactly at the entry frame), plus copystack's own: a frame
/// without a map (imprecise) and a pointer slot holding a value in
/// (0, 4096) are errors.  Since every frame must be precise, each frame's
/// SP is exactly its callee's FP + 16, so the frames tile the used part
/// from SP to the entry record, and the copy can run just ahead of the
/// walk, a chunk at a time, while that memory is in L1.  Per frame the
/// loop does the FP checks, a compare against a two-entry cache of call
/// sites keyed by return pc (deep recursion returns to one or two pcs),
/// and one load, compare and store per pointer slot.
///
/// Must hold when called:
/// - the goroutine is stopped at `start`, with `start.sp` in
///   `[mv.lo, mv.hi]`, and is ours: nothing writes its old stack;
/// - the new stack is `[mv.lo + mv.delta, mv.hi + mv.delta)`, as large as
///   the used part, does not overlap the old one, and is ours, except that
///   other threads may write (atomically) words below `mv.sghi`;
/// - `[start.sp, copied_hi)` is already copied, `copied_hi <= mv.hi` and
///   `copied_hi >= mv.sghi`;
/// - `CAS` is `mv.sghi != 0`.
///
/// # Safety
/// The conditions above.
unsafe fn move_frames<const CAS: bool>(
    table: &Table,
    mv: Move,
    start: WalkStart,
    mut copied_hi: usize,
) -> Result<usize, MoveError> {
    let Move {
        lo,
        hi,
        size,
        delta,
        sghi,
    } = mv;
    let mut n = 0usize;
    if start.pc != goentry_pc() {
        let mut walk = SiteWalk::new(table, lo, hi);
        let (mut pc, mut sp, mut fp) = (start.pc, start.sp, start.fp);
        loop {
            let e = walk.frame(n, pc, sp, fp)?;
            // Copy ahead: the whole frame, record included, and up to a
            // chunk more.  fp <= entry_fp, so top <= hi.
            let top = fp + FRAME_RECORD_SIZE;
            if top > copied_hi {
                let end = (copied_hi + CHUNK).max(top).min(hi);
                // SAFETY: [copied_hi, end) is live old stack (below hi,
                // above start.sp) not copied yet; the new stack has room
                // at the same offset; they do not overlap.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        copied_hi as *const u8,
                        copied_hi.wrapping_add(delta) as *mut u8,
                        end - copied_hi,
                    )
                };
                copied_hi = end;
            }
            // The pointer slots, in the new copy (same as the old there,
            // except below sghi where a sender may have written since).
            let new_sp = sp.wrapping_add(delta);
            for &o in e.slots {
                let o = o as usize;
                let v = if CAS && sp + o < sghi {
                    // SAFETY: sp + o is a word of this frame (the map keeps
                    // slots 8-aligned and below frame_size = fp - sp), so
                    // its copy is a word of the new used part.
                    unsafe { cas_adjust(new_sp + o, mv) }
                } else {
                    // Read the old word, not its fresh copy: the copy's
                    // memcpy stores may still be in flight, and a load
                    // that must wait for them stalls the loop.
                    // SAFETY: as above; nobody else writes the copy (it is
                    // not below sghi), and it was copied above; the old
                    // word is the same value (the old stack is stopped).
                    unsafe {
                        let v = ((sp + o) as *const usize).read();
                        // Branch-free: a value outside the old stack is
                        // written back unchanged.
                        ((new_sp + o) as *mut usize).write(
                            v.wrapping_add(if v.wrapping_sub(lo) < size { delta } else { 0 }),
                        );
                        v
                    }
                };
                if v.wrapping_sub(1) < MIN_LEGAL_POINTER - 1 {
                    return Err(MoveError::BadPointer {
                        frame: describe(table, pc, sp, fp),
                        off: o,
                        v,
                    });
                }
            }
            // SAFETY: fp lies inside the stopped old stack, 16-aligned,
            // with a record's room below the entry record's end (checked).
            let rec = unsafe { read_frame_record(fp) };
            // The record's saved FP (the caller's frame) moves too; the
            // entry frame's is 0 and stays.
            if CAS && fp < sghi {
                // SAFETY: fp is a word of the used part; copied.
                unsafe { cas_adjust(fp.wrapping_add(delta), mv) };
            } else {
                let v = rec.saved_fp;
                let p = fp.wrapping_add(delta) as *mut usize;
                // SAFETY: the copy of the record, copied above, ours.
                unsafe {
                    p.write(v.wrapping_add(if v.wrapping_sub(lo) < size { delta } else { 0 }))
                };
            }
            n += 1;
            if walk.is_entry(n, fp, rec)? {
                break;
            }
            pc = rec.ret_pc;
            sp = fp + FRAME_RECORD_SIZE;
            fp = rec.saved_fp;
        }
    }
    // Whatever lies above the entry record (or, for a goroutine that has
    // not started, the whole used part).
    // SAFETY: [copied_hi, hi) is live old stack not copied yet.
    unsafe { copy_rest(copied_hi, hi, delta) };
    Ok(n)
}

/// Copy `[from, hi)` of the old stack to the same offset in the new one
/// (`delta` away) unchanged: what lies above the entry record -- no frame,
/// nothing to adjust.
///
/// # Safety
/// `[from, hi)` is live old stack not copied yet; the new stack has room at
/// the same offset and does not overlap it.
unsafe fn copy_rest(from: usize, hi: usize, delta: usize) {
    if from < hi {
        // SAFETY: the caller's guarantee.
        unsafe {
            core::ptr::copy_nonoverlapping(
                from as *const u8,
                from.wrapping_add(delta) as *mut u8,
                hi - from,
            )
        };
    }
}

// ---- the fast path: no channel waits, so no concurrent writers ----

/// What the word pass needs of one move, as constants for compares: a
/// word `v` lies in the old stack iff `v - lo < size` (unsigned), and is
/// an invalid pointer iff `v - 1 < MIN_LEGAL_POINTER - 1`.  Vector ISAs
/// compare 64-bit lanes signed only, so each test is kept as the signed
/// `v + (SIGN - a) < n ^ SIGN`: one add and one compare.
#[derive(Clone, Copy)]
struct WordTest {
    delta: usize,
    in_add: usize,
    in_lim: isize,
    bad_add: usize,
    bad_lim: isize,
}

impl WordTest {
    fn new(mv: Move) -> WordTest {
        const SIGN: usize = 1 << 63;
        WordTest {
            delta: mv.delta,
            in_add: SIGN.wrapping_sub(mv.lo),
            in_lim: (mv.size ^ SIGN) as isize,
            bad_add: SIGN.wrapping_sub(1),
            bad_lim: ((MIN_LEGAL_POINTER - 1) ^ SIGN) as isize,
        }
    }
}

/// Copy the `n` words at `src` to `dst`, adding `delta` to each word marked
/// in `mask` (bit i: word i) whose value lies in the old stack; return
/// whether a marked word holds a value in (0, MIN_LEGAL_POINTER).  Word by
/// word and branch-free: the portable path, and the last few words of a
/// frame at the top of the stack on the vector path.
///
/// # Safety
/// `src` and `dst` are `n` readable / writable words, distinct.
#[inline(always)]
unsafe fn move_words_scalar(
    src: *const usize,
    dst: *mut usize,
    n: usize,
    mask: u128,
    t: WordTest,
) -> bool {
    let mut bad = 0usize;
    let mut m = mask;
    for i in 0..n {
        // SAFETY: the caller's guarantee; i < n.
        let v = unsafe { src.add(i).read() };
        let marked = (m as usize & 1).wrapping_neg();
        m >>= 1;
        let inside = ((v.wrapping_add(t.in_add) as isize) < t.in_lim) as usize;
        // SAFETY: as above.
        unsafe {
            dst.add(i)
                .write(v.wrapping_add(t.delta & marked & inside.wrapping_neg()))
        };
        bad |= marked & (((v.wrapping_add(t.bad_add) as isize) < t.bad_lim) as usize);
    }
    bad != 0
}

/// [`move_words_scalar`] with the vector pass every CPU of the
/// architecture has: NEON on aarch64, else word by word.
///
/// # Safety
/// As for [`move_words_scalar`].
#[inline(always)]
unsafe fn move_words_portable(
    src: *const usize,
    dst: *mut usize,
    n: usize,
    mask: u128,
    t: WordTest,
) -> bool {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the caller's guarantee.
    return unsafe { neon::move_words(src, dst, n, mask, t) };
    #[cfg(not(target_arch = "aarch64"))]
    // SAFETY: the caller's guarantee.
    return unsafe { move_words_scalar(src, dst, n, mask, t) };
}

/// The vector word pass on aarch64 (NEON, part of the baseline: two words
/// per instruction).
#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{move_words_scalar, WordTest};
    use core::arch::aarch64::*;

    /// [`move_words_scalar`] two words at a time (an odd last word alone).
    /// A pair's lane masks come from two bits of `mask` tested in a
    /// vector (no table).
    ///
    /// # Safety
    /// As for [`move_words_scalar`].
    #[inline(always)]
    pub(super) unsafe fn move_words(
        src: *const usize,
        dst: *mut usize,
        n: usize,
        mask: u128,
        t: WordTest,
    ) -> bool {
        // SAFETY: NEON is in every aarch64 CPU (the target's baseline);
        // the pairs are words [0, n) of src / dst, the caller's guarantee.
        unsafe {
            let delta = vdupq_n_u64(t.delta as u64);
            let in_add = vdupq_n_u64(t.in_add as u64);
            let in_lim = vdupq_n_s64(t.in_lim as i64);
            let bad_add = vdupq_n_u64(t.bad_add as u64);
            let bad_lim = vdupq_n_s64(t.bad_lim as i64);
            let bits = vcombine_u64(vcreate_u64(1), vcreate_u64(2));
            let mut bad = vdupq_n_u64(0);
            let mut m = mask;
            for g in 0..n / 2 {
                let lm = vtstq_u64(vdupq_n_u64(m as u64), bits);
                m >>= 2;
                let v = vld1q_u64(src.add(2 * g).cast());
                let inside = vcltq_s64(vreinterpretq_s64_u64(vaddq_u64(v, in_add)), in_lim);
                let adj = vandq_u64(vandq_u64(inside, lm), delta);
                vst1q_u64(dst.add(2 * g).cast(), vaddq_u64(v, adj));
                let low = vcltq_s64(vreinterpretq_s64_u64(vaddq_u64(v, bad_add)), bad_lim);
                bad = vorrq_u64(bad, vandq_u64(low, lm));
            }
            let mut b = vmaxvq_u32(vreinterpretq_u32_u64(bad)) != 0;
            if n % 2 == 1 {
                b |= move_words_scalar(src.add(n - 1), dst.add(n - 1), 1, m, t);
            }
            b
        }
    }
}

/// The vector word pass (AVX2: four words per instruction).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{move_words_scalar, WordTest};
    use core::arch::x86_64::*;

    /// `LANES.0[b]`: four 64-bit lanes, lane j all ones iff bit j of `b`
    /// (a nibble of a frame's mask, as a vector mask).
    #[repr(C, align(32))]
    struct Lanes([[u64; 4]; 16]);

    static LANES: Lanes = {
        let mut l = [[0u64; 4]; 16];
        let mut b = 0;
        while b < 16 {
            let mut j = 0;
            while j < 4 {
                if b >> j & 1 != 0 {
                    l[b][j] = !0;
                }
                j += 1;
            }
            b += 1;
        }
        Lanes(l)
    };

    /// [`move_words_scalar`] for the frame `[sp, top)` (word i at sp + 8*i,
    /// marked by bit i of `mask`), copied to `sp + delta`, four words at a
    /// time.  A last partial group of four is moved whole when it ends at
    /// or below `limit`: the words past `top` it copies (unmarked, so
    /// unchanged) are the next frame's, which is moved after this one and
    /// writes them again.  Else its words are moved one by one.
    ///
    /// # Safety
    /// The CPU has AVX2; `[sp, limit)` (8-aligned) is readable, and its copy
    /// at `sp + delta` writable and ours; `sp <= top <= limit`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn move_words(
        sp: usize,
        top: usize,
        limit: usize,
        mask: u128,
        t: WordTest,
    ) -> bool {
        let n = (top - sp) / 8;
        let src = sp as *const __m256i;
        let dst = sp.wrapping_add(t.delta) as *mut __m256i;
        let groups = if sp + n.div_ceil(4) * 32 <= limit {
            n.div_ceil(4)
        } else {
            n / 4
        };
        let delta = _mm256_set1_epi64x(t.delta as i64);
        let in_add = _mm256_set1_epi64x(t.in_add as i64);
        let in_lim = _mm256_set1_epi64x(t.in_lim as i64);
        let bad_add = _mm256_set1_epi64x(t.bad_add as i64);
        let bad_lim = _mm256_set1_epi64x(t.bad_lim as i64);
        let mut bad = _mm256_setzero_si256();
        let mut m = mask;
        for g in 0..groups {
            // SAFETY: LANES is 32-byte aligned and the index is below 16;
            // group g lies below `limit` (above), readable / ours.
            unsafe {
                let lm = _mm256_load_si256(LANES.0[m as usize & 15].as_ptr().cast());
                m >>= 4;
                let v = _mm256_loadu_si256(src.add(g));
                let inside = _mm256_cmpgt_epi64(in_lim, _mm256_add_epi64(v, in_add));
                let adj = _mm256_and_si256(_mm256_and_si256(lm, inside), delta);
                _mm256_storeu_si256(dst.add(g), _mm256_add_epi64(v, adj));
                let low = _mm256_cmpgt_epi64(bad_lim, _mm256_add_epi64(v, bad_add));
                bad = _mm256_or_si256(bad, _mm256_and_si256(low, lm));
            }
        }
        // Each lane of `bad` is all ones or zero: its sign bits say all
        // (one instruction, where a horizontal OR takes four).
        let mut b = _mm256_movemask_pd(_mm256_castsi256_pd(bad)) != 0;
        if groups * 4 < n {
            let done = groups * 4;
            // SAFETY: the words [done, n) of the frame: below top <= limit.
            b |= unsafe {
                move_words_scalar(
                    (sp as *const usize).add(done),
                    (sp.wrapping_add(t.delta) as *mut usize).add(done),
                    n - done,
                    m,
                    t,
                )
            };
        }
        b
    }

    /// Lane masks of a site's first `G` groups of four words.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lanes<const G: usize>(mask: u128) -> [__m256i; G] {
        let mut lm = [_mm256_setzero_si256(); G];
        for (g, l) in lm.iter_mut().enumerate() {
            // SAFETY: LANES is 32-byte aligned; the index is below 16.
            *l = unsafe {
                _mm256_load_si256(LANES.0[(mask >> (4 * g)) as usize & 15].as_ptr().cast())
            };
        }
        lm
    }

    /// [`super::run_frames`] for a frame of `G` groups of four words (the
    /// last group may run 16 bytes past the frame), with the site's lane
    /// masks and the move's constants kept in registers for the whole run.
    /// Per group of four words: load, test and adjust, store, and the
    /// invalid-pointer test with the lane mask folded into its limit (an
    /// unmarked lane compares with i64::MIN, so never holds one).
    ///
    /// # Safety
    /// The CPU has AVX2; as for [`super::run_frames`], `r.stride` is
    /// `32 * G` or `32 * G - 16`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn run_g<const G: usize>(r: &mut super::Run, mask: u128, t: WordTest) -> bool {
        let lm = lanes::<G>(mask);
        let delta = _mm256_set1_epi64x(t.delta as i64);
        let lmd = lm.map(|l| _mm256_and_si256(l, delta));
        let bad_lim = _mm256_set1_epi64x(t.bad_lim as i64);
        let never = _mm256_set1_epi64x(i64::MIN);
        let blim = lm.map(|l| _mm256_blendv_epi8(never, bad_lim, l));
        let in_add = _mm256_set1_epi64x(t.in_add as i64);
        let in_lim = _mm256_set1_epi64x(t.in_lim as i64);
        let bad_add = _mm256_set1_epi64x(t.bad_add as i64);
        // SAFETY: the caller's guarantee: each frame's groups lie within
        // the frame or the 16 bytes above it, readable, their copy ours.
        let bad = unsafe {
            super::run_frames(r, _mm256_setzero_si256(), |sp, mut bad| {
                let src = sp as *const __m256i;
                let dst = sp.wrapping_add(t.delta) as *mut __m256i;
                for g in 0..G {
                    let v = _mm256_loadu_si256(src.add(g));
                    let inside = _mm256_cmpgt_epi64(in_lim, _mm256_add_epi64(v, in_add));
                    _mm256_storeu_si256(
                        dst.add(g),
                        _mm256_add_epi64(v, _mm256_and_si256(inside, lmd[g])),
                    );
                    bad = _mm256_or_si256(
                        bad,
                        _mm256_cmpgt_epi64(blim[g], _mm256_add_epi64(v, bad_add)),
                    );
                }
                bad
            })
        };
        _mm256_movemask_pd(_mm256_castsi256_pd(bad)) != 0
    }

    /// [`super::run_site`] with AVX2: the masks in registers for frames of
    /// up to 16 words (records included), else per group from the map.
    ///
    /// # Safety
    /// The CPU has AVX2; as for [`super::run_frames`].
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn run(r: &mut super::Run, mask: u128, t: WordTest) -> bool {
        if !r.goes_on() {
            return false;
        }
        let stride = r.stride;
        // SAFETY: the caller's guarantee; the stride is a multiple of 16,
        // so the groups end at most 16 bytes past each frame.
        unsafe {
            match (stride / 8).div_ceil(4) {
                1 => run_g::<1>(r, mask, t),
                2 => run_g::<2>(r, mask, t),
                3 => run_g::<3>(r, mask, t),
                4 => run_g::<4>(r, mask, t),
                _ => super::run_frames(r, false, |sp, bad| {
                    bad | move_words(sp, sp + stride, sp + stride + 16, mask, t)
                }),
            }
        }
    }
}

/// Copy the frame `[sp, top)` of the old stack to the new one, adjusting
/// the words marked in `mask`; whether a marked word is an invalid
/// pointer.  `AVX2`: with the vector pass (the caller runs with AVX2).
///
/// # Safety
/// As for [`avx2::move_words`] (AVX2 only if `AVX2`).
#[inline(always)]
unsafe fn move_frame_words<const AVX2: bool>(
    sp: usize,
    top: usize,
    limit: usize,
    mask: u128,
    t: WordTest,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: the caller's guarantee.
        return unsafe { avx2::move_words(sp, top, limit, mask, t) };
    }
    let _ = limit;
    // SAFETY: the caller's guarantee: [sp, top) readable, its copy ours.
    unsafe {
        move_words_portable(
            sp as *const usize,
            sp.wrapping_add(t.delta) as *mut usize,
            (top - sp) / 8,
            mask,
            t,
        )
    }
}

/// A marked word of the frame (pc, sp, fp) holds a value in
/// (0, MIN_LEGAL_POINTER): the error naming the first such (a pointer
/// slot: the record's saved FP passed the walk's checks).
///
/// # Safety
/// The frame is part of the stopped old stack's used part.
#[cold]
#[inline(never)]
unsafe fn bad_slot(table: &Table, mask: u128, pc: usize, sp: usize, fp: usize) -> MoveError {
    let mut at = (0, 0);
    for i in 0..(fp + FRAME_RECORD_SIZE - sp) / 8 {
        if mask >> i & 1 != 0 {
            // SAFETY: a word of the frame, in the stopped old stack.
            let v = unsafe { *((sp + 8 * i) as *const usize) };
            if v > 0 && v < MIN_LEGAL_POINTER {
                at = (8 * i, v);
                break;
            }
        }
    }
    MoveError::BadPointer {
        frame: describe(table, pc, sp, fp),
        off: at.0,
        v: at.1,
    }
}

/// A run of frames returning to one call site, as [`run_frames`] walks it:
/// the site's return pc and stride (frame size + record), the highest FP
/// the run's frames may have, and the last frame moved: its SP, FP and
/// record, and the frames moved so far.
struct Run {
    pc: usize,
    stride: usize,
    fp_last: usize,
    sp: usize,
    fp: usize,
    rec: crate::arch::FrameRecord,
    n: usize,
}

impl Run {
    /// Whether the caller of the last frame moved is another frame of the
    /// run: the last frame's record returns to the same site with the
    /// caller's frame right above (saved FP = FP + stride), and that frame
    /// is below the entry frame (FP <= fp_last = entry record - stride).
    /// Not the entry frame itself: the run's word pass may write 16 bytes
    /// past a frame (into its caller, moved next), and past the entry
    /// frame is the end of the stack.  The entry frame is left to the
    /// walk, which moves it exactly.
    ///
    /// The saved FP is compared as `saved_fp - fp == stride`, not
    /// `saved_fp == fp + stride`: from the latter the compiler would take
    /// the loaded value as the next FP, and each frame would wait for its
    /// caller's record again.
    #[inline(always)]
    fn goes_on(&self) -> bool {
        self.rec.ret_pc == self.pc
            && self.rec.saved_fp.wrapping_sub(self.fp) == self.stride
            && self.fp < self.fp_last
    }
}

/// Move the frames of a run: while the last frame's caller is at the same
/// call site with its frame right above ([`Run::goes_on`]), read its
/// record and move it with `bad = frame(sp, bad)`, which accumulates
/// whether a frame held an invalid pointer; return the accumulation.
///
/// Such a caller passes every check the walk makes of a frame: its FP is
/// 16-aligned (the last one's is and the stride is a multiple of 16),
/// above its SP and the stack's bottom, not above the entry record; its
/// call site is the last one's, so it is precise, with the frame size
/// FP - SP.  And the last record passes the walk's record checks (its
/// saved FP is nonzero and higher up, its return pc not goexit's, which is
/// no call site).  So the loop keeps only the compares that say whether
/// the run goes on, and finds the site's map in hand.  Better still, it
/// knows the next record's address (FP + stride) before it reads the
/// current record, which then only confirms it: the walk's addresses do
/// not depend on its loads, and the CPU overlaps the frames.  No frame of
/// a run can fail a check, so an invalid pointer need not stop it: the
/// caller looks for the first bad frame afterwards (errors stay in frame
/// order).
///
/// Must hold when called: `r.stride % 16 == 0`; `r.fp` is 16-aligned and
/// checked by the walk, `r.rec` its record; `r.fp_last` is at most the
/// entry record's address minus the stride; `frame(sp, _)` moves the
/// frame `[sp, sp + stride)` of the run's site, and may read and write up
/// to 16 bytes past it (the caller's frame, moved next: never past the
/// entry frame, so within the stack); and the conditions of
/// [`move_frames_fast_impl`].
///
/// # Safety
/// The conditions above.
#[inline(always)]
unsafe fn run_frames<B>(r: &mut Run, mut bad: B, mut frame: impl FnMut(usize, B) -> B) -> B {
    while r.goes_on() {
        // The next frame's FP from the stride, not from the record just
        // read (see above).
        r.sp = r.fp + FRAME_RECORD_SIZE;
        r.fp += r.stride;
        // The record first: read after the frame's copy is stored, it
        // would wait for those stores (its address and its copy's agree in
        // the low 12 bits, which is all a load checks at first).
        // SAFETY: the caller's guarantee and goes_on(): fp is 16-aligned,
        // in the stopped old stack, below the entry record.
        r.rec = unsafe { read_frame_record(r.fp) };
        bad = frame(r.sp, bad);
        r.n += 1;
    }
    bad
}

/// [`run_frames`] for a site whose map is `mask`, with the best word
/// pass: `AVX2`'s, or word by word.  Returns whether a frame of the run
/// holds an invalid pointer.
///
/// # Safety
/// As for [`run_frames`] (AVX2 only if `AVX2`).
#[inline(always)]
unsafe fn run_site<const AVX2: bool>(r: &mut Run, mask: u128, t: WordTest) -> bool {
    #[cfg(target_arch = "x86_64")]
    if AVX2 {
        // SAFETY: the caller's guarantee.
        return unsafe { avx2::run(r, mask, t) };
    }
    let words = r.stride / 8;
    // SAFETY: the caller's guarantee; each frame is in the used part.
    unsafe {
        run_frames(r, false, |sp, bad| {
            let b = move_words_portable(
                sp as *const usize,
                sp.wrapping_add(t.delta) as *mut usize,
                words,
                mask,
                t,
            );
            bad | b
        })
    }
}

/// The first frame of a run (frames of `stride` bytes from `sp` up to the
/// one whose FP is `last_fp`, all with the map `mask`) where a marked word
/// holds a value in (0, MIN_LEGAL_POINTER): its SP and FP.  (The last
/// one, if no other: the caller found one.)
///
/// # Safety
/// The frames are part of the stopped old stack's used part.
#[cold]
#[inline(never)]
unsafe fn first_bad_frame(
    mask: u128,
    mut sp: usize,
    stride: usize,
    last_fp: usize,
) -> (usize, usize) {
    loop {
        let fp = sp + stride - FRAME_RECORD_SIZE;
        if fp >= last_fp {
            return (sp, fp);
        }
        for i in 0..stride / 8 {
            // SAFETY: a word of the frame, in the stopped old stack.
            if mask >> i & 1 != 0
                && unsafe { *((sp + 8 * i) as *const usize) }.wrapping_sub(1)
                    < MIN_LEGAL_POINTER - 1
            {
                return (sp, fp);
            }
        }
        sp += stride;
    }
}

/// The copy and adjustment of a goroutine whose stack no other thread
/// writes (no channel element of its waits lies in it): [`move_frames`]
/// with the same checks and errors, in one pass.  Each frame, once its call site is checked, is
/// copied to the new stack and adjusted in the same instructions (a
/// branch-free word pass, vectorized with AVX2 on x86-64 and NEON on
/// aarch64: [`move_frame_words`]), so every word of the used part is read
/// once and written once while in L1, as a memcpy does.  Returns the
/// number of frames.
///
/// Frames that return to the call site of the frame below them (recursion)
/// take a shorter loop: the site's map is already in hand, and since the
/// frame size is the site's, the next frame record's address is known
/// before the current record is read (FP + frame size + 16).  The record
/// then only confirms it (same return pc, saved FP as predicted), so the
/// walk no longer waits for one load per frame; the first mismatch falls
/// back to the full checks.
///
/// Errors come in the walk's order, frame by frame: the frame's FP and
/// call site (imprecise, size), then its record (the walk's errors), then
/// its pointer slots (a value in (0, 4096)).  (The CAS path,
/// [`move_frames`] with waiters, checks a frame's slots before its record,
/// as Go's adjustframe does: when one frame is broken both ways, which of
/// the two fatal errors names it depends on the path.  Either way the move
/// stops at that frame, fatally.)
///
/// Must hold when called:
/// - the goroutine is stopped at `start`, with `start.sp` in
///   `[mv.lo, mv.hi]`, and is ours: nothing writes its old stack;
/// - `mv.sghi` is 0: no channel element of its waits lies in its stack, so
///   no other thread writes it;
/// - the new stack is `[mv.lo + mv.delta, mv.hi + mv.delta)`, as large as
///   the used part, does not overlap the old one, and is ours; nothing of
///   the used part is copied yet;
/// - `AVX2` only if the CPU has AVX2.
///
/// # Safety
/// The conditions above.
#[inline(always)]
unsafe fn move_frames_fast_impl<const AVX2: bool>(
    table: &Table,
    mv: Move,
    start: WalkStart,
) -> Result<usize, MoveError> {
    let Move { lo, hi, delta, .. } = mv;
    let t = WordTest::new(mv);
    let mut n = 0usize;
    // Top of what the walk has moved.
    let mut moved = start.sp;
    if start.pc != goentry_pc() {
        let mut walk = SiteWalk::new(table, lo, hi);
        let entry_fp = walk.entry_fp;
        let (mut pc, mut sp, mut fp) = (start.pc, start.sp, start.fp);
        loop {
            let e = walk.frame(n, pc, sp, fp)?;
            // The record before the frame is moved (see `run_frames`).
            // SAFETY: fp lies inside the stopped old stack, 16-aligned,
            // with a record's room below the entry record's end (checked).
            let mut rec = unsafe { read_frame_record(fp) };
            // SAFETY: the frame [sp, fp + 16) lies in the used part (its FP
            // checked to be at or below the entry record), and so below hi.
            // The word pass may read and write up to 24 bytes past it,
            // bounded by `hi`: all of [sp, hi) is the stopped old stack's
            // used part (readable) and its image in the new stack (ours),
            // and those extra words belong to higher frames, which are
            // moved (and so written again, correctly) after this one.
            let bad =
                unsafe { move_frame_words::<AVX2>(sp, fp + FRAME_RECORD_SIZE, hi, e.mask, t) };
            n += 1;
            // Then the frames above that return to this same call site (a
            // recursion), on a shorter loop: see [`run_frames`].  Entered
            // only past a frame without an invalid pointer.
            let stride = e.frame_size + FRAME_RECORD_SIZE;
            if stride.is_multiple_of(16) && !bad {
                let first_sp = fp + FRAME_RECORD_SIZE;
                let mut r = Run {
                    pc,
                    stride,
                    fp_last: entry_fp.saturating_sub(stride),
                    sp,
                    fp,
                    rec,
                    n,
                };
                // SAFETY: the frame (pc, sp, fp) is moved, its record read;
                // the caller's guarantees.
                let run_bad = unsafe { run_site::<AVX2>(&mut r, e.mask, t) };
                (sp, fp, rec, n) = (r.sp, r.fp, r.rec, r.n);
                if run_bad {
                    // SAFETY: the run's frames are in the stopped old stack.
                    let (bsp, bfp) = unsafe { first_bad_frame(e.mask, first_sp, stride, fp) };
                    // Only the last frame's record is yet unchecked, and
                    // its errors come before its slots'.
                    if bfp == fp {
                        walk.is_entry(n, fp, rec)?;
                    }
                    // SAFETY: the frame is in the stopped old stack.
                    return Err(unsafe { bad_slot(table, e.mask, pc, bsp, bfp) });
                }
            }
            let is_entry = walk.is_entry(n, fp, rec)?;
            if bad {
                // SAFETY: the frame is in the stopped old stack.
                return Err(unsafe { bad_slot(table, e.mask, pc, sp, fp) });
            }
            moved = fp + FRAME_RECORD_SIZE;
            if is_entry {
                break;
            }
            pc = rec.ret_pc;
            sp = fp + FRAME_RECORD_SIZE;
            fp = rec.saved_fp;
        }
    }
    // Whatever lies above the entry record (or, for a goroutine that has
    // not started, the whole used part).
    // SAFETY: [moved, hi) is live old stack not copied yet; the new stack
    // has room at the same offset (the caller's guarantee).
    unsafe { copy_rest(moved, hi, delta) };
    Ok(n)
}

/// [`move_frames_fast_impl`] with the AVX2 word pass.
///
/// # Safety
/// As for [`move_frames_fast_impl`]; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn move_frames_fast_avx2(
    table: &Table,
    mv: Move,
    start: WalkStart,
) -> Result<usize, MoveError> {
    // SAFETY: the caller's guarantee.
    unsafe { move_frames_fast_impl::<true>(table, mv, start) }
}

/// [`move_frames_fast_impl`] with the best word pass this CPU has.
///
/// # Safety
/// As for [`move_frames_fast_impl`].
unsafe fn move_frames_fast(table: &Table, mv: Move, start: WalkStart) -> Result<usize, MoveError> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the caller's guarantee; AVX2 just checked (the macro
        // caches the answer).
        return unsafe { move_frames_fast_avx2(table, mv, start) };
    }
    // SAFETY: the caller's guarantee.
    unsafe { move_frames_fast_impl::<false>(table, mv, start) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word pass by its definition: each word copied, plus `delta` if
    /// marked and in `[lo, lo + size)`; whether a marked word is in
    /// (0, MIN_LEGAL_POINTER).
    fn reference(
        src: &[usize],
        mask: u128,
        lo: usize,
        size: usize,
        delta: usize,
    ) -> (Vec<usize>, bool) {
        let mut bad = false;
        let out = src
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let marked = i < 128 && mask >> i & 1 != 0;
                bad |= marked && v > 0 && v < MIN_LEGAL_POINTER;
                if marked && v >= lo && v - lo < size {
                    v.wrapping_add(delta)
                } else {
                    v
                }
            })
            .collect();
        (out, bad)
    }

    /// Every word pass this CPU can run (the scalar one, the portable one,
    /// AVX2's with and without room past the frame) agrees with the
    /// definition, and writes nothing past the frame unless given room:
    /// frames of 0 to 70 words, masks dense, sparse and random, values in,
    /// at the edges of and outside the old stack, 0, and in (0, 4096) at
    /// its edges.  (The run loops are exercised by tests/managed.rs.)
    #[test]
    fn word_passes_agree_with_the_definition() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        // A made-up old stack; the copies go to other buffers, so `delta`
        // (their distance) is what a word in it gets added.
        let (lo, size) = (0x7f00_0000_0000usize, 0x1_0000usize);
        let values = |r: usize| match r % 12 {
            0 => 0,
            1 => 1,
            2 => MIN_LEGAL_POINTER - 1,
            3 => MIN_LEGAL_POINTER,
            4 => lo,
            5 => lo - 8,
            6 => lo + size - 8,
            7 => lo + size,
            8 => usize::MAX,
            9 => 1 << 63,
            _ => lo + (r >> 8) % size,
        };
        for n in 0..=70usize {
            for round in 0..40 {
                let mask: u128 = match round {
                    0 => !0,
                    1 => 0,
                    2 => 0x5555_5555_5555_5555_5555_5555_5555_5555,
                    3 => 1 << n.saturating_sub(2),
                    _ => (rnd() as u128) << 64 | rnd() as u128,
                };
                // Only the frame's words are marked, as with a real map.
                let mask = if n >= 128 {
                    mask
                } else {
                    mask & ((1u128 << n) - 1)
                };
                // Room past the frame for the passes that may write there.
                let src: Vec<usize> = (0..n + 4).map(|_| values(rnd())).collect();
                let mut dst = vec![0usize; n + 4];
                let delta = (dst.as_mut_ptr() as usize).wrapping_sub(src.as_ptr() as usize);
                let t = WordTest::new(Move {
                    lo,
                    hi: lo + size,
                    size,
                    delta,
                    sghi: 0,
                });
                let (want, want_bad) = reference(&src[..n], mask, lo, size, delta);
                let check = |dst: &mut Vec<usize>, bad: bool, what: &str| {
                    assert_eq!(&dst[..n], &want[..], "{what}: n {n} mask {mask:#x}");
                    assert_eq!(bad, want_bad, "{what}: n {n} mask {mask:#x} bad");
                    if !what.ends_with("with room") {
                        assert!(
                            dst[n..].iter().all(|&w| w == 0),
                            "{what}: n {n}: wrote past the frame"
                        );
                    }
                    dst.fill(0);
                };
                // SAFETY: src and dst hold n + 4 words each, distinct.
                let bad = unsafe { move_words_scalar(src.as_ptr(), dst.as_mut_ptr(), n, mask, t) };
                check(&mut dst, bad, "scalar");
                // SAFETY: as above.
                let bad =
                    unsafe { move_words_portable(src.as_ptr(), dst.as_mut_ptr(), n, mask, t) };
                check(&mut dst, bad, "portable");
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    let sp = src.as_ptr() as usize;
                    for (limit, what) in [
                        (sp + 8 * n, "avx2 exact"),
                        (sp + 8 * (n + 4), "avx2 with room"),
                    ] {
                        // SAFETY: AVX2 checked; [sp, limit) is src's, its
                        // copy dst's.
                        let bad = unsafe { avx2::move_words(sp, sp + 8 * n, limit, mask, t) };
                        check(&mut dst, bad, what);
                    }
                }
            }
        }
    }
}
