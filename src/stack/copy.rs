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
    // stack: `move_frames_fast` (a window at a time: walk and mark, then a
    // vectorized copy-and-adjust) when nobody else can write the stack,
    // else `move_frames` (per frame, CAS below sghi).  The function table
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
    /// The words of the frame to adjust: bit i%64 of mask[i/64] = the word
    /// at SP + 8*i (its pointer slots and its record's saved FP).
    mask: [u64; 2],
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
            mask: [0; 2],
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
        if fp % 16 != 0 || fp < sp || fp < self.lo || fp > self.entry_fp {
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
    let mut mask = [0u64; 2];
    for w in slots
        .iter()
        .map(|&o| o as usize / 8)
        .chain([frame_size / 8])
    {
        mask[w / 64] |= 1 << (w % 64);
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
    if copied_hi < hi {
        // SAFETY: [copied_hi, hi) is live old stack not copied yet; the new
        // stack has room at the same offset; no overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                copied_hi as *const u8,
                copied_hi.wrapping_add(delta) as *mut u8,
                hi - copied_hi,
            )
        };
    }
    Ok(n)
}

// ---- the fast path: no channel waits, so no concurrent writers ----

/// Bytes of the old stack adjusted and copied at a time by the fast path.
const WINDOW: usize = 4096;
/// The ring of pointer bits: two windows, one bit per word.
const RING_WORDS: usize = 2 * WINDOW / 8 / 64;
const _: () = assert!(crate::functab::MAX_FRAME as usize + FRAME_RECORD_SIZE <= WINDOW);
const _: () = assert!(RING_WORDS.is_power_of_two() && RING_WORDS >= 2);

/// How far above the current frame the walk prefetches the old stack.
const PREFETCH_AHEAD: usize = 1024;

/// Ask the CPU to bring the line holding `addr` into L1.  A hint: it never
/// faults, whatever `addr` is.
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetcht0 reads nothing architecturally and never faults,
    // even for an unmapped address; SSE is in the x86-64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: prfm is a hint; it never faults, even for an unmapped
    // address, and changes no register or flag.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags))
    };
}

/// The words the walk is marking, kept in registers: bits of ring word
/// `aw` (counted from the base, in 64-word units) and `aw + 1`, newer than
/// the ring's.  Marks only move up; an OR into the ring per frame would
/// chain every frame on a store-to-load forwarding.
#[derive(Clone, Copy)]
struct Acc {
    aw: usize,
    acc: u64,
    nxt: u64,
}

impl Acc {
    /// Mark the words `idx + i` for the bits i of `m`; `idx / 64` is never
    /// below `aw`.
    #[inline(always)]
    fn mark(&mut self, ring: &mut [u64; RING_WORDS], idx: usize, m: u64) {
        let w = idx / 64;
        let r = idx % 64;
        if w != self.aw {
            ring[self.aw % RING_WORDS] = self.acc;
            if w == self.aw + 1 {
                self.acc = self.nxt;
            } else {
                ring[(self.aw + 1) % RING_WORDS] = self.nxt;
                self.acc = 0;
            }
            self.nxt = 0;
            self.aw = w;
        }
        self.acc |= m << r;
        if r != 0 {
            self.nxt |= m >> (64 - r);
        }
    }

    /// Put the register words into the ring (before a window is read).
    #[inline]
    fn sync(&self, ring: &mut [u64; RING_WORDS]) {
        ring[self.aw % RING_WORDS] = self.acc;
        ring[(self.aw + 1) % RING_WORDS] = self.nxt;
    }

    /// After the window ending at word `end` (64-word units) was moved and
    /// its ring words cleared: words below `end` are done; take the
    /// register words back from the ring.
    #[inline]
    fn reload(&mut self, ring: &[u64; RING_WORDS], end: usize) {
        self.aw = self.aw.max(end);
        self.acc = ring[self.aw % RING_WORDS];
        self.nxt = ring[(self.aw + 1) % RING_WORDS];
    }
}

/// The word pass of the fast path: `dst[i] = src[i]`, plus `delta` where
/// the word is marked in `bits` (bit i%64 of bits[i/64]) and its value
/// lies in the old stack `[lo, lo + size)`.  Returns whether a marked word
/// holds a value in (0, MIN_LEGAL_POINTER).  Written branch-free so that
/// it vectorizes: a word of a frame costs about what memcpy pays for it.
#[inline(always)]
fn adjust_words(
    src: &[usize],
    dst: &mut [usize],
    bits: &[u64],
    lo: usize,
    size: usize,
    delta: usize,
) -> bool {
    // Unsigned `x - a < n` is signed `x + (SIGN - a) < n ^ SIGN`: one add
    // and one compare per test (vector ISAs compare 64-bit lanes signed).
    const SIGN: usize = 1 << 63;
    let in_add = SIGN.wrapping_sub(lo);
    let in_lim = (size ^ SIGN) as isize;
    let bad_add = SIGN.wrapping_sub(1);
    let bad_lim = ((MIN_LEGAL_POINTER - 1) ^ SIGN) as isize;
    let mut bad = 0usize;
    for ((s, d), &b) in src.chunks(64).zip(dst.chunks_mut(64)).zip(bits) {
        for ((&v, d), j) in s.iter().zip(d.iter_mut()).zip(0u32..) {
            let m = ((b >> j) as usize & 1).wrapping_neg();
            let inside = ((v.wrapping_add(in_add) as isize) < in_lim) as usize;
            *d = v.wrapping_add(delta & m & inside.wrapping_neg());
            bad |= m & (((v.wrapping_add(bad_add) as isize) < bad_lim) as usize);
        }
    }
    bad != 0
}

/// [`adjust_words`] compiled for AVX2 (four words per instruction).
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adjust_words_avx2(
    src: &[usize],
    dst: &mut [usize],
    bits: &[u64],
    lo: usize,
    size: usize,
    delta: usize,
) -> bool {
    adjust_words(src, dst, bits, lo, size, delta)
}

/// [`adjust_words`] with the best instructions this CPU has.  (On aarch64
/// the baseline has 64-bit vector compares already.)
#[inline]
fn adjust_words_best(
    src: &[usize],
    dst: &mut [usize],
    bits: &[u64],
    lo: usize,
    size: usize,
    delta: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: just checked (the macro caches the answer).
            return unsafe { adjust_words_avx2(src, dst, bits, lo, size, delta) };
        }
    }
    adjust_words(src, dst, bits, lo, size, delta)
}

/// Copy old `[from, to)` to the new stack, adjusting the words marked in
/// `bits` (bit 0 of bits[0] = the word at `from`).
///
/// Must hold: `[from, to)` is a part of the old stack's used part, 8-aligned,
/// at most WINDOW bytes, every frame overlapping it already walked (so
/// `bits` marks all its pointer words); its copy in the new stack is ours.
///
/// # Safety
/// The conditions above.
#[inline]
unsafe fn flush(from: usize, to: usize, bits: &[u64], mv: Move) -> bool {
    let n = (to - from) / 8;
    // SAFETY: the caller's guarantee: both ranges are live, 8-aligned,
    // n words long, and distinct stacks (no overlap); nobody else writes
    // either while the goroutine is stopped and ours.
    let (src, dst) = unsafe {
        (
            core::slice::from_raw_parts(from as *const usize, n),
            core::slice::from_raw_parts_mut(from.wrapping_add(mv.delta) as *mut usize, n),
        )
    };
    adjust_words_best(src, dst, bits, mv.lo, mv.size, mv.delta)
}

/// A marked word of `[from, from + 8 * 64 * bits.len())` holds a value in
/// (0, MIN_LEGAL_POINTER): find the first and the frame it belongs to.
///
/// # Safety
/// As for [`move_frames_fast`]; `[from, to)` is part of the used part.
#[cold]
#[inline(never)]
unsafe fn bad_pointer(
    table: &Table,
    mv: Move,
    start: WalkStart,
    from: usize,
    to: usize,
    bits: &[u64],
) -> MoveError {
    let mut at = (0, 0);
    for i in 0..(to - from) / 8 {
        if bits[i / 64] >> (i % 64) & 1 != 0 {
            // SAFETY: a word of the used part of the stopped old stack.
            let v = unsafe { *((from + 8 * i) as *const usize) };
            if v > 0 && v < MIN_LEGAL_POINTER {
                at = (from + 8 * i, v);
                break;
            }
        }
    }
    let (addr, v) = at;
    let mut frame = (String::from("??"), 0);
    let mut cursor = table.cursor();
    // SAFETY: the caller's guarantee: the old stack is stopped and intact.
    let _ = unsafe {
        crate::unwind::walk(mv.lo, mv.hi, start, &mut cursor, |f| {
            if f.sp <= addr && addr < f.fp {
                frame = (f.describe(), addr - f.sp);
            }
        })
    };
    MoveError::BadPointer {
        frame: frame.0,
        off: frame.1,
        v,
    }
}

/// Copy and adjust the window `[win, to)` (at most WINDOW bytes, starting
/// a whole number of windows above `base`) with its marks in `ring`, and
/// clear them.
///
/// Must hold: as for [`move_frames_fast`], and the walk is past `to`, so
/// `ring` marks every word of the window to adjust.
///
/// # Safety
/// The conditions above.
#[inline(never)]
unsafe fn flush_window(
    ring: &mut [u64; RING_WORDS],
    table: &Table,
    mv: Move,
    start: WalkStart,
    base: usize,
    win: usize,
    to: usize,
) -> Result<(), MoveError> {
    let half = RING_WORDS / 2;
    let h = ((win - base) / WINDOW % 2) * half;
    let bits = &mut ring[h..h + half];
    // SAFETY: the caller's guarantee: [win, to) is at most a window of
    // the used part, all marked.
    if unsafe { flush(win, to, bits, mv) } {
        // SAFETY: as for move_frames_fast.
        return Err(unsafe { bad_pointer(table, mv, start, win, to, bits) });
    }
    bits.fill(0);
    Ok(())
}

/// The copy and adjustment of a goroutine that waits on no channel (so no
/// other thread writes its stack): [`move_frames`] with the same checks and
/// errors, in two steps per window of WINDOW bytes.  The walk marks, in a
/// ring of bits covering two windows, every word it must adjust (each
/// frame's pointer slots and its record's saved FP: one or two ORs per
/// frame, from a mask cached with the call site); once it has walked past
/// the end of a window, the window is copied and adjusted in one
/// branch-free pass ([`adjust_words`]), which the compiler vectorizes.
/// The old stack is thus read about twice while in L1 and the new one
/// written once, the whole used part in one pass.  Returns the number of
/// frames.
///
/// Must hold when called:
/// - the goroutine is stopped at `start`, with `start.sp` in
///   `[mv.lo, mv.hi]`, and is ours: nothing writes its old stack;
/// - `mv.sghi` is 0: it waits on no channel;
/// - the new stack is `[mv.lo + mv.delta, mv.hi + mv.delta)`, as large as
///   the used part, does not overlap the old one, and is ours; nothing of
///   the used part is copied yet.
///
/// # Safety
/// The conditions above.
unsafe fn move_frames_fast(table: &Table, mv: Move, start: WalkStart) -> Result<usize, MoveError> {
    let Move { lo, hi, .. } = mv;
    let base = start.sp;
    let mut ring = [0u64; RING_WORDS];
    let mut acc = Acc {
        aw: 0,
        acc: 0,
        nxt: 0,
    };
    // The window [win, win + WINDOW) is the next to copy.
    let mut win = base;
    let mut n = 0usize;
    if start.pc != goentry_pc() {
        let mut walk = SiteWalk::new(table, lo, hi);
        let (mut pc, mut sp, mut fp) = (start.pc, start.sp, start.fp);
        loop {
            let e = walk.frame(n, pc, sp, fp)?;
            // Mark the frame's words.  sp < win + WINDOW and the frame is at
            // most a window, so they lie in the two windows the ring holds.
            let idx = (sp - base) / 8;
            acc.mark(&mut ring, idx, e.mask[0]);
            if e.mask[1] != 0 {
                acc.mark(&mut ring, idx + 64, e.mask[1]);
            }
            n += 1;
            // The walk chases the FP chain: one dependent load per frame.
            // Keep the lines it reads next (and the pass after it) in L1.
            prefetch(fp + PREFETCH_AHEAD);
            prefetch(fp + PREFETCH_AHEAD + 64);
            // SAFETY: fp lies inside the stopped old stack, 16-aligned,
            // with a record's room below the entry record's end (checked).
            let rec = unsafe { read_frame_record(fp) };
            // The record's checks come before its window is moved: a bad
            // saved FP is reported as the walker reports it, never as a
            // bad pointer slot (the saved FP is a marked word too).
            let is_entry = walk.is_entry(n, fp, rec)?;
            // Every window the walk is now past is complete: move it.
            let top = fp + FRAME_RECORD_SIZE;
            while top >= win + WINDOW {
                acc.sync(&mut ring);
                // SAFETY: the walk is past the window's end.
                unsafe { flush_window(&mut ring, table, mv, start, base, win, win + WINDOW)? };
                win += WINDOW;
                acc.reload(&ring, (win - base) / 8 / 64);
            }
            if is_entry {
                break;
            }
            pc = rec.ret_pc;
            sp = top;
            fp = rec.saved_fp;
        }
    }
    // The rest: the last frames' window, whatever lies above the entry
    // record (or, for a goroutine that has not started, the whole used
    // part; no bits are marked there).
    acc.sync(&mut ring);
    while win < hi {
        let to = (win + WINDOW).min(hi);
        // SAFETY: the walk is over: every frame is marked.
        unsafe { flush_window(&mut ring, table, mv, start, base, win, to)? };
        win = to;
    }
    Ok(n)
}
