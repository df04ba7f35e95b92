/*
 * gstack trampolines for x86-64 (System V ABI, ELF).
 *
 * Saved context (struct Context, arch/x86_64.rs; offsets from gstack_abi.h)
 *
 *   offset  field   holds
 *   ------  ------  ---------------------------------------------------------
 *    0      sp      rsp the code resumes with (the caller's rsp after `ret`)
 *    8      pc      where it resumes (a return address, or gs_goentry)
 *   16      fp      rbp (frame-record chain; 0 terminates it)
 *   24      rbx     callee-saved
 *   32      r12     callee-saved   (a new goroutine: its G)
 *   40      r13     callee-saved
 *   48      r14     callee-saved
 *   56      r15     callee-saved
 *   64      mxcsr   u32, SSE control/status; control bits are callee-saved
 *   68      fpcw    u16, x87 control word; callee-saved
 *   72      (size)
 *
 * A new goroutine's context: sp = top of its stack (16-byte aligned) minus
 * GS_START_ARGS_SIZE, where its six start arguments lie (gs_goentry loads
 * and pops them),
 * pc = gs_goentry, fp = 0, rbx = the entry function, r12 = the G, mxcsr and
 * fpcw = the defaults (0x1f80, 0x037f).
 *
 * What the System V ABI says a call preserves, and therefore all that a
 * switch must save: rbx, rbp, r12-r15, rsp, the MXCSR control bits and the
 * x87 control word.  Every other register is clobbered by any call, so the
 * compiler has already saved whatever it needs before calling us.  The
 * direction flag is clear at every call and stays clear here.
 *
 * chan_wake and in_syscall are adjacent bytes (src/abi.rs checks it):
 * gs_yield_native tests both with one 16-bit compare.
 *
 * G fields used: stack_lo 0, stack_hi 8, m 24, sched 32 (a Context),
 * by gs_yield_native schedlink, status, chan_wake, in_syscall, kind, and
 * by gs_switch_publish status.
 * M fields used: g0 0; gs_yield_native also curg, p, running, schedtick
 * and P's shared, tick, runq head and tail, runnext, len.  The Rust side
 * asserts all of these at compile time (src/abi.rs).
 *
 * Symbols defined in Rust and called from here (all `extern "C"`, no unwind):
 *   gs_goexit0(g)               finish a goroutine; runs on g0; never returns
 *   gs_fatal_mcall_returned(g)  fatal error; never returns
 *   gs_fatal_mcall_on_g0(g)     fatal error; never returns
 *   gs_park_yield(g)            requeue g and schedule; on g0
 *   gs_yield_slow(m, g)         yield_now's general case; on g's stack
 *   gs_newstack(g)              grow (or handle a safe-point request); on g0
 *   gs_fatal_morestack_on_g0(g) fatal error; never returns
 */

#include "../include/gstack_asm.h"

        .text
        .intel_syntax noprefix

/* The MXCSR control bits (DAZ, the exception masks, RC, FZ): callee-saved.
   Bits 0-5 are the exception status flags: caller-saved. */
#define GS_MXCSR_CONTROL 0xffc0

/* Store the callee-saved integer registers but rsp at [base+off]. */
.macro SAVE_CALLEE_INT base, off
        mov     [\base + \off + GS_CTX_FP],  rbp
        mov     [\base + \off + GS_CTX_RBX], rbx
        mov     [\base + \off + GS_CTX_R12], r12
        mov     [\base + \off + GS_CTX_R13], r13
        mov     [\base + \off + GS_CTX_R14], r14
        mov     [\base + \off + GS_CTX_R15], r15
.endm

/* Store the callee-saved state (everything but sp and pc) at [base+off]. */
.macro SAVE_CALLEE base, off
        SAVE_CALLEE_INT \base, \off
        stmxcsr [\base + \off + GS_CTX_MXCSR]
        fnstcw  [\base + \off + GS_CTX_FPCW]
.endm

/* Read the thread's control words into the red zone (mxcsr at rsp - 8,
   fpcw at rsp - 4), first thing in a switch routine: stmxcsr and fnstcw
   are slow to hand their value on, and a load that reads them right after
   waits for it (a yield round trip cost about 3 ns more with them read at
   the save).  SWITCH_SAME_CW picks them up from there. */
.macro READ_CW
        stmxcsr [rsp - 8]
        fnstcw  [rsp - 4]
.endm

/* Save, at [base], the integer context of the caller of the routine we
   are in (entered by a call, rsp untouched since): resuming it returns
   from that call -- pc = the return address, sp = rsp + 8, as after
   `ret`.  The control words follow in SWITCH_SAME_CW.  Clobbers rax. */
.macro SAVE_AT_CALL base
        mov     rax, [rsp]
        mov     [\base + GS_CTX_PC], rax
        lea     rax, [rsp + 8]
        mov     [\base + GS_CTX_SP], rax
        SAVE_CALLEE_INT \base, 0
.endm

/* Load the callee-saved integer registers but rsp from the context at
   [base] (the control words are the caller's business). */
.macro LOAD_CALLEE base
        mov     rbp, [\base + GS_CTX_FP]
        mov     rbx, [\base + GS_CTX_RBX]
        mov     r12, [\base + GS_CTX_R12]
        mov     r13, [\base + GS_CTX_R13]
        mov     r14, [\base + GS_CTX_R14]
        mov     r15, [\base + GS_CTX_R15]
.endm

/* Switch from the context at [rdi], whose integer registers, pc and sp
   are saved, to the one at [rsi].  First the control words READ_CW left in
   the red zone (rsp unchanged since) go into [rdi].  Then, when the MXCSR
   control bits (6-15) or the x87 CW of the two differ, gs_gogo does the
   whole restore (loading them is slow: ldmxcsr/fldcw), else load the
   integer registers here and fall through with rdi = rsi for the caller's
   jump to pc.  The MXCSR status flags (bits 0-5) are left out of the
   comparison: the ABI makes them caller-saved, and they differ between
   goroutines as soon as one does an inexact floating-point operation, which
   would send every later switch through ldmxcsr (a yield round trip went
   from 20 to 30 ns that way). */
.macro SWITCH_SAME_CW
        mov     eax, [rsp - 8]
        movzx   ecx, word ptr [rsp - 4]
        mov     [rdi + GS_CTX_MXCSR], eax
        mov     [rdi + GS_CTX_FPCW], cx
        mov     rdi, rsi
        xor     eax, [rsi + GS_CTX_MXCSR]
        test    eax, GS_MXCSR_CONTROL
        jnz     gs_gogo
        cmp     cx, word ptr [rsi + GS_CTX_FPCW]
        jne     gs_gogo
        LOAD_CALLEE rdi
.endm

/* The control words of a switch that cannot hand over to gs_gogo (it
   must publish the goroutine it leaves once off its stack): those READ_CW
   left in the red zone (rsp unchanged since) go into the context at
   [save]; the ones of the context at [to] are loaded where they differ,
   with SWITCH_SAME_CW's comparison.  Clobbers rax and rcx. */
.macro SWITCH_CW save, to
        mov     eax, [rsp - 8]
        movzx   ecx, word ptr [rsp - 4]
        mov     [\save + GS_CTX_MXCSR], eax
        mov     [\save + GS_CTX_FPCW], cx
        xor     eax, [\to + GS_CTX_MXCSR]
        test    eax, GS_MXCSR_CONTROL
        jz      .Lsame_mxcsr\@
        ldmxcsr [\to + GS_CTX_MXCSR]
.Lsame_mxcsr\@:
        cmp     cx, word ptr [\to + GS_CTX_FPCW]
        je      .Lsame_fpcw\@
        fldcw   [\to + GS_CTX_FPCW]
.Lsame_fpcw\@:
.endm

/* Make the goroutine `next` the one running on the M `m` (what Rust's
   make_current / execute do, as plain stores: only this M writes them,
   and no scan claims a native goroutine): next's status Running, next.m,
   m.curg, and the monitor's m.running and m.schedtick. */
.macro MAKE_CURRENT next, m
        mov     dword ptr [\next + GS_G_STATUS], GS_STATUS_RUNNING
        mov     [\next + GS_G_M], \m
        mov     [\m + GS_M_CURG], \next
        mov     [\m + GS_M_RUNNING], \next
        add     qword ptr [\m + GS_M_SCHEDTICK], 1
.endm

/* The end of a switch whose jump into the next goroutine its caller makes
   from its own code (gs_yield_native, gs_switch_native; the caller's
   convention is gs_yield_native's): save the context of the goroutine
   that called us at [rdi] -- it resumes at r11, the caller's label, with
   the caller's rsp (ours + 8, as after our ret) -- then load the one at
   [rsi] (its control words only if they differ: else gs_gogo restores
   everything and jumps itself) and return rax = its pc, rdx = its sp,
   rcx = 0 (nothing to publish).  READ_CW ran first, rsp unchanged since. */
.macro SWITCH_AT_SITE
        mov     [rdi + GS_CTX_PC], r11
        lea     rax, [rsp + 8]
        mov     [rdi + GS_CTX_SP], rax
        SAVE_CALLEE_INT rdi, 0
        SWITCH_SAME_CW
        mov     rax, [rdi + GS_CTX_PC]  /* never 0: a saved pc */
        mov     rdx, [rdi + GS_CTX_SP]
        xor     ecx, ecx
        ret
.endm

/*
 * void gs_gogo(const Context *ctx)  -- never returns
 *
 * Restores every saved register and jumps to ctx->pc with rsp = ctx->sp.
 * Relies on: ctx was filled by gs_mcall / gs_swapcontext / the new-goroutine
 * setup, and the stack it names is still the live stack of that context
 * (copystack rewrites sp and fp when it moves the stack).
 */
        .globl  gs_gogo
        .type   gs_gogo, @function
        .p2align 4
gs_gogo:
        .cfi_startproc
        LOAD_CALLEE rdi
        ldmxcsr [rdi + GS_CTX_MXCSR]
        fldcw   [rdi + GS_CTX_FPCW]
        mov     rsp, [rdi + GS_CTX_SP]
        .cfi_undefined rip              /* on the resumed stack: no caller to name */
        jmp     [rdi + GS_CTX_PC]
        .cfi_endproc
        .size   gs_gogo, . - gs_gogo

/*
 * void gs_swapcontext(Context *save, const Context *to)
 *
 * Saves the caller's context in *save (resuming it returns from this call)
 * and continues in *to.  The runtime uses it to leave a thread's own stack
 * for the scheduler and to come back when the scheduler is done.
 *
 *   caller's stack at entry          saved
 *   +------------------+
 *   | caller's frame   |  <- save->sp = rsp + 8 (as after `ret`)
 *   | return address   |  <- rsp;   save->pc = [rsp]
 *   +------------------+
 */
        .globl  gs_swapcontext
        .type   gs_swapcontext, @function
        .p2align 4
gs_swapcontext:
        .cfi_startproc
        READ_CW
        SAVE_AT_CALL rdi
        SWITCH_SAME_CW
        /* Continue at pc with a return, not an indirect jump: the
           processor's return-address stack then pairs this `ret` with the
           `call` that entered gs_swapcontext (goroutine to goroutine: the
           context was saved by this same routine, mostly from the same
           call site), and the returns after it stay paired with their
           calls.  The push writes pc just below sp, where that call had
           put it; ret leaves rsp = sp.  (gs_gogo keeps a jump: from g0,
           whose frames never return, a ret would pair with nothing.) */
        mov     rax, [rdi + GS_CTX_PC]
        mov     rsp, [rdi + GS_CTX_SP]
        .cfi_undefined rip              /* on the resumed stack: no caller to name */
        push    rax
        ret
        .cfi_endproc
        .size   gs_swapcontext, . - gs_swapcontext

/*
 * void gs_switch_publish(G *g, const Context *to, G **slot)
 *
 * A yield with several Ps (sched.rs's yield_switch): save the caller's
 * context in g->sched as gs_swapcontext does (resuming it returns from
 * this call), continue in *to -- and only once g is saved, and we are off
 * its stack, make g runnable: g->status = RUNNABLE, then *slot = g (its
 * P's runnext), where another M may take it at once.  Until then g stays
 * Running and out of every queue, so no other M can resume it before its
 * context is complete, and nothing (not even a signal frame) is written
 * on its stack after it is published: rsp is already to->sp.
 *
 * The stores are plain: x86-64 keeps stores in program order, so whoever
 * sees g in *slot sees its context and status (Rust's Release).
 *
 *   rdi = g, rsi = to, rdx = slot; r8 = &g->sched
 */
        .globl  gs_switch_publish
        .hidden gs_switch_publish
        .type   gs_switch_publish, @function
        .p2align 4
gs_switch_publish:
        .cfi_startproc
        READ_CW
        lea     r8, [rdi + GS_G_SCHED]
        SAVE_AT_CALL r8
        SWITCH_CW r8, rsi
        LOAD_CALLEE rsi
        mov     rsp, [rsi + GS_CTX_SP]
        .cfi_undefined rip              /* off g's stack: no caller to name */
        mov     dword ptr [rdi + GS_G_STATUS], GS_STATUS_RUNNABLE
        mov     [rdx], rdi
        jmp     [rsi + GS_CTX_PC]
        .cfi_endproc
        .size   gs_switch_publish, . - gs_switch_publish

/*
 * gs_switch_native  -- not a C function: called only from the inline asm
 * of sched::park_switch (src/sched.rs), with gs_yield_native's convention
 * and rdi = &g->sched, rsi = &next->sched:
 *
 *   in:   r11 = the caller's resume pc, rdi = where to save the caller's
 *         goroutine, rsi = the context to continue
 *   out:  rax = its pc, rdx = its sp, its callee-saved registers loaded
 *         (rcx = 0); the caller does `mov rsp, rdx; jmp rax` at once
 *
 * A channel operation of a native goroutine on one P that parks: the
 * goroutine to run next is chosen and made current in Rust (park_pick),
 * and the jump into it is made from the parking call site's own code, as
 * a yield's is: when it resumes, it continues right there, in its own
 * code, and returns through no frame of ours.  (With gs_swapcontext it
 * resumed inside RawChan::send or recv and returned from there into its
 * caller -- a return the processor mispredicted, since its return stack
 * held the calls of the goroutine that had just parked: once per switch,
 * about a quarter of a channel round trip.)
 */
        .globl  gs_switch_native
        .hidden gs_switch_native
        .type   gs_switch_native, @function
        .p2align 4
gs_switch_native:
        .cfi_startproc
        READ_CW
        SWITCH_AT_SITE
        .cfi_endproc
        .size   gs_switch_native, . - gs_switch_native

/*
 * gs_yield_native  -- not a C function: called only from the inline asm of
 * gstack::yield_now (src/runtime.rs), with its own convention.
 *
 *   in:   r11 = the caller's resume pc (the label ending its asm block)
 *   out:  rax = 0: carry on (nothing was switched, or the slow path ran
 *                  and this goroutine has been resumed since)
 *         rax != 0: continue another goroutine: rax = its pc, rdx = its
 *                  sp, its callee-saved registers are loaded; the caller
 *                  must do `mov rsp, rdx` at once, then, when rcx != 0,
 *                  publish the goroutine it leaves: `mov dword ptr
 *                  [rdi + GS_G_STATUS], GS_STATUS_RUNNABLE; mov [rcx], rdi`
 *                  (rdi = that goroutine, rcx = its P's runnext), and
 *                  `jmp rax`
 *   clobbers: everything the C ABI lets a call clobber
 *
 * gstack::yield_now: the common cases of a yield done without a call into
 * Rust or a trip through g0.
 *
 * One P (its run queue is unlocked: no other thread touches it): the
 * global queue's turn not come (tick > 0), and a goroutine at the head of
 * the local queue that needs nothing done before it resumes (not woken
 * from a channel wait, not in a system-call window).  Then: the caller g
 * goes to the back of the queue, the head `next` comes off it, and we
 * switch to next.
 *
 * Several Ps: sched.rs's yield_shared -- the local queue empty, the
 * global queue's turn not come, and a native goroutine in runnext that
 * needs nothing done first.  Then next comes off runnext (an xchg that
 * leaves RUNNEXT_BUSY: a thief may have taken it, and an M about to sleep
 * must not see this P without work), and g goes there in its place -- but
 * only once it is saved and we are off its stack, by the caller after its
 * `mov rsp, rdx`: from then on another M may take and resume g.  (A
 * managed next goes the Rust way: its status change is a compare-and-swap
 * against scans.)  Without this path, the shared case went through
 * gs_yield_slow and gs_switch_publish, and g later resumed in Rust frames
 * whose returns the processor mispredicted (its return stack holds the
 * calls of the goroutines that ran meanwhile): spawn+exit on 2 Ps cost
 * about 25 ns more than on one.
 *
 * Anything else calls gs_yield_slow(m, g) (Rust, sched.rs), which does the
 * general work.
 * It returns at once (nothing to yield) with no runtime on this thread, no
 * goroutine, when rsp is not on the goroutine's stack (a root visitor or
 * foreign code running on the system stack), or inside a system call
 * (whose P the monitor may have handed to another M).
 *
 * The same state changes as sched.rs's yield_switch + switch_direct, in
 * the same order: queue, statuses, next.m, m.curg, the monitor's
 * m.running and m.schedtick, then the switch.  No other thread can look:
 * with one P the monitor only reads m.running / m.schedtick (plain
 * stores, as Rust's Relaxed ones) and scans run on this M between
 * goroutines.
 *
 * Why the final jump is the caller's.  A yield resumes the other goroutine
 * with an indirect jump (a `ret` would pair with this call, whose return
 * address is the yielding goroutine's, not the resumed one's).  With one
 * jump here for every yield, two goroutines that yield from two different
 * places make it alternate between two targets, and the processor
 * mispredicted it about once a switch: a round trip cost 30-34 ns against
 * 20 ns when both yield from the same place (measured on the AMD EPYC
 * this project benchmarks on).  So we return (a `ret` that pairs with the
 * call: predicted) and each inlined yield_now makes the jump from its own
 * code: that jump's target is whatever runs after that yield site, mostly
 * one place, which the branch target buffer predicts by itself.
 *
 *   g's stack, at entry               after the switch, at our `ret`
 *   +-----------------------+         +-----------------------+
 *   | yield_now's frame     |         | yield_now's frame     | <- g->sched.sp
 *   | return address (1:)   | <- rsp  | return address (1:)   | <- rsp (still
 *   +-----------------------+         +-----------------------+    g's stack)
 *   g->sched.pc = r11 (2:), sp = rsp + 8: resuming g from any path (this
 *   routine, gs_gogo, gs_swapcontext) continues after the caller's jump,
 *   as if this call had returned rax = 0.  Between our `ret` and the
 *   caller's `mov rsp, rdx` we are still on g's stack, below its saved sp,
 *   where nothing of g's lives.
 *
 * TLS: gs_current_m (below), initial-exec.
 *
 *   register  holds
 *   rdx       m      (from TLS)
 *   rdi       g      (m->curg; one P: then &g->sched)
 *   rcx       p      (m->p; several Ps, on return: &p->runnext)
 *   rsi       next   (p->runq.head or what was in runnext; then
 *                     &next->sched)
 *   r8        one P: the queue's new head; several Ps: &g->sched
 *   r9        several Ps: &p->runnext
 *   r11       the caller's resume pc
 *
 * (Between the stack switch and the jump -- at the caller's `mov rsp, rdx`
 * and after LOAD_CALLEE here -- the CFI of the code around still
 * describes the goroutine we leave: an asynchronous unwinder sampling
 * exactly there walks the wrong stack.  gs_switch_publish and
 * gs_switch_native share that window.)
 */
        .globl  gs_yield_native
        .hidden gs_yield_native
        .type   gs_yield_native, @function
        .p2align 4
gs_yield_native:
        .cfi_startproc
        READ_CW                         /* before anything: see the macro */
        mov     rax, [rip + gs_current_m@GOTTPOFF]
        mov     rdx, fs:[rax]
        test    rdx, rdx
        jz      9f                      /* no runtime on this thread */
        mov     rdi, [rdx + GS_M_CURG]
        test    rdi, rdi
        jz      9f                      /* no goroutine */
        cmp     rsp, [rdi + GS_G_STACK_LO]
        jb      9f                      /* on the system stack */
        cmp     rsp, [rdi + GS_G_STACK_HI]
        jae     9f
        cmp     byte ptr [rdi + GS_G_INSYSCALL], 0
        jne     9f                      /* inside a system call: its P may be gone */
        mov     rcx, [rdx + GS_M_P]
        test    rcx, rcx
        jz      8f
        cmp     byte ptr [rcx + GS_P_SHARED], 0
        jne     5f                      /* several Ps */
        cmp     qword ptr [rcx + GS_P_RUNNEXT], 0
        jne     8f                      /* a woken goroutine runs next */
        mov     eax, [rcx + GS_P_TICK]
        test    eax, eax
        jz      8f                      /* the global queue's turn */
        mov     rsi, [rcx + GS_P_RUNQ_HEAD]
        test    rsi, rsi
        jz      8f                      /* local queue empty: maybe global */
        cmp     word ptr [rsi + GS_G_CHAN_WAKE], 0
        jne     8f                      /* a wake-up to finish, or resumes in a system call */
        /* Committed: rotate the queue (g to the back, next off the front). */
        dec     eax
        mov     [rcx + GS_P_TICK], eax
        mov     r8, [rsi + GS_G_SCHEDLINK]
        xor     eax, eax
        mov     [rsi + GS_G_SCHEDLINK], rax
        mov     [rdi + GS_G_SCHEDLINK], rax
        test    r8, r8
        jz      1f
        mov     r9, [rcx + GS_P_RUNQ_TAIL]
        mov     [r9 + GS_G_SCHEDLINK], rdi
        jmp     2f
1:      mov     r8, rdi                 /* next was alone: g is all of it */
2:      mov     [rcx + GS_P_RUNQ_HEAD], r8
        mov     [rcx + GS_P_RUNQ_TAIL], rdi
        mov     dword ptr [rdi + GS_G_STATUS], GS_STATUS_RUNNABLE
        MAKE_CURRENT rsi, rdx
        add     rdi, GS_G_SCHED
        add     rsi, GS_G_SCHED
        SWITCH_AT_SITE
5:      /* Several Ps: runnext for g, when the queue is empty. */
        cmp     qword ptr [rcx + GS_P_LEN], 0
        jne     8f                      /* queued work: g goes behind it */
        mov     eax, [rcx + GS_P_TICK]
        test    eax, eax
        jz      8f                      /* the global queue's turn */
        cmp     qword ptr [rcx + GS_P_RUNNEXT], 0
        je      8f                      /* nothing next here */
        mov     esi, GS_RUNNEXT_BUSY
        xchg    [rcx + GS_P_RUNNEXT], rsi  /* ours, unless a thief took it */
        test    rsi, rsi
        jz      6f
        cmp     word ptr [rsi + GS_G_CHAN_WAKE], 0
        jne     7f                      /* a wake-up to finish, or resumes in a system call */
        cmp     byte ptr [rsi + GS_G_KIND], GS_KIND_NATIVE
        jne     7f                      /* managed: a status CAS, in Rust */
        /* Committed (yield_shared's order): tick, next's status (a plain
           store: no scan claims a native goroutine), next.m, m.curg, the
           monitor's m.running and m.schedtick; g stays Running, on no
           queue, until the caller publishes it. */
        dec     eax
        mov     [rcx + GS_P_TICK], eax
        MAKE_CURRENT rsi, rdx
        /* Save g (as the one-P path), load next, hand the caller the slot. */
        lea     r8, [rdi + GS_G_SCHED]
        mov     [r8 + GS_CTX_PC], r11
        lea     rax, [rsp + 8]
        mov     [r8 + GS_CTX_SP], rax
        SAVE_CALLEE_INT r8, 0
        lea     r9, [rcx + GS_P_RUNNEXT]
        add     rsi, GS_G_SCHED
        SWITCH_CW r8, rsi
        LOAD_CALLEE rsi
        mov     rax, [rsi + GS_CTX_PC]
        mov     rdx, [rsi + GS_CTX_SP]
        mov     rcx, r9
        ret
6:      mov     qword ptr [rcx + GS_P_RUNNEXT], 0  /* stolen: our BUSY off */
        jmp     8f
7:      mov     [rcx + GS_P_RUNNEXT], rsi  /* back in its place, over BUSY */
8:      sub     rsp, 8                  /* align the call */
        .cfi_adjust_cfa_offset 8
        mov     rsi, rdi
        mov     rdi, rdx
        call    gs_yield_slow@PLT       /* gs_yield_slow(m, g) */
        add     rsp, 8
        .cfi_adjust_cfa_offset -8
9:      xor     eax, eax
        ret
        .cfi_endproc
        .size   gs_yield_native, . - gs_yield_native

/*
 * The thread's M (null when the thread runs no runtime): read and written
 * by Rust through src/m.rs's current_m / set_current_m, read here by
 * gs_yield_native.  Zero on every new thread.  Hidden: not exported from
 * libgstack.so.
 */
        .section .tbss, "awT", @nobits
        .p2align 3
        .globl  gs_current_m
        .hidden gs_current_m
        .type   gs_current_m, @object
        .size   gs_current_m, 8
gs_current_m:
        .zero   8
        .text

/*
 * void gs_mcall(G *g, void (*fn)(G *))
 *
 * g must be the goroutine running on this thread, and we must be on its
 * stack.  Saves the caller's context in g->sched (pc = return address,
 * sp = rsp after the return), switches to the thread's system stack
 * (g->m->g0->sched.sp) with rbp = 0 -- g0 frames belong to no goroutine --
 * and calls fn(g).  fn must not return: it resumes some goroutine with
 * gs_gogo.  When g is resumed from g->sched, gs_mcall appears to return.
 *
 *   g's stack (left as it was)       g0's stack
 *   +------------------+             +------------------+ <- g0->sched.sp
 *   | caller's frame   |             | ret addr into    |
 *   | return address   | <- rsp      |   gs_mcall       |
 *   +------------------+             | fn's frame ...   |
 */
        .globl  gs_mcall
        .type   gs_mcall, @function
        .p2align 4
gs_mcall:
        .cfi_startproc
        mov     rcx, [rdi + GS_G_M]
        mov     rcx, [rcx + GS_M_G0]
        cmp     rcx, rdi
        je      1f
        /* On g's own stack only: a context saved anywhere else (the system
           stack, inside a root visitor or a libcall) would be resumed
           after that stack was reused. */
        cmp     rsp, [rdi + GS_G_STACK_LO]
        jb      2f
        cmp     rsp, [rdi + GS_G_STACK_HI]
        ja      2f
        mov     rax, [rsp]
        mov     [rdi + GS_G_SCHED + GS_CTX_PC], rax
        lea     rax, [rsp + 8]
        mov     [rdi + GS_G_SCHED + GS_CTX_SP], rax
        SAVE_CALLEE rdi, GS_G_SCHED
        mov     rsp, [rcx + GS_G_SCHED + GS_CTX_SP]
        .cfi_undefined rip              /* g0 frames end here */
        xor     ebp, ebp
        call    rsi
        /* fn returned: there is nothing to return to. rdi is gone; the
           Rust side reports the goroutine from the thread's M. */
        xor     edi, edi
        call    gs_fatal_mcall_returned@PLT
        ud2
1:      and     rsp, -16                /* align for the call; no return */
        call    gs_fatal_mcall_on_g0@PLT
        ud2
2:      mov     rsi, rsp                /* the sp we found, for the message */
        and     rsp, -16
        call    gs_fatal_mcall_off_stack@PLT
        ud2
        .cfi_endproc
        .size   gs_mcall, . - gs_mcall

/*
 * void gs_systemstack(G *g, void (*fn)(void *), void *arg)
 *
 * Runs fn(arg) on the thread's system stack and returns.  g is the
 * goroutine this thread runs (or g0).  When g is g0, or rsp is not inside
 * g's stack (we are already on g0, or on the signal stack), fn is simply
 * tail-called.  fn must not switch goroutines: g's stack stays exactly as
 * it is (it is not moved while we are away; the old rsp lives in rbx).
 *
 *   g's stack                        g0's stack
 *   | caller's frame   |             +------------------+ <- g0->sched.sp
 *   | return address   |             | ret into here    |
 *   | saved rbp        | <- rbp      | fn's frame ...   |
 *   | saved rbx        |
 *   | (pad)            | <- rbx = rsp while away
 */
        .globl  gs_systemstack
        .type   gs_systemstack, @function
        .p2align 4
gs_systemstack:
        .cfi_startproc
        mov     rax, [rdi + GS_G_M]
        mov     rax, [rax + GS_M_G0]
        cmp     rax, rdi
        je      1f
        cmp     rsp, [rdi + GS_G_STACK_LO]
        jb      1f
        cmp     rsp, [rdi + GS_G_STACK_HI]
        jae     1f
        push    rbp
        .cfi_def_cfa_offset 16
        .cfi_offset rbp, -16
        mov     rbp, rsp
        .cfi_def_cfa_register rbp
        push    rbx
        .cfi_offset rbx, -24
        sub     rsp, 8
        mov     rbx, rsp
        mov     rsp, [rax + GS_G_SCHED + GS_CTX_SP]
        mov     rdi, rdx
        call    rsi
        mov     rsp, rbx
        add     rsp, 8
        pop     rbx
        pop     rbp
        .cfi_def_cfa rsp, 8
        ret
1:      mov     rdi, rdx
        jmp     rsi
        .cfi_endproc
        .size   gs_systemstack, . - gs_systemstack

/*
 * gs_goentry: where every goroutine starts (its initial sched.pc).
 *
 * Entered by gs_gogo with rsp = top of the stack (16-byte aligned) minus
 * GS_START_ARGS_SIZE, where newproc put the arguments, rbp = 0,
 * rbx = entry function, r12 = G.  Pops the arguments and calls
 * fn(g, args[0..4]); the return address of that call, gs_goexit_pc, marks
 * the goroutine's entry frame (its saved rbp is 0).  When fn returns, r12
 * still holds the G (callee-saved; the G never moves): its return value
 * goes to rbx, which gs_mcall saves in g->sched (Context::retval), and the
 * goroutine is finished on g0.
 *
 *   +------------------+ <- stack_hi
 *   | (pad to 16)      |
 *   | gs_goexit_pc     | <- rsp at fn's first instruction
 *   | saved rbp = 0    | <- fn's frame record (rbp)
 *   | fn's frame ...   |
 */
        .globl  gs_goentry
        .type   gs_goentry, @function
        .p2align 4
gs_goentry:
        .cfi_startproc
        .cfi_undefined rip
        mov     rdi, r12
        mov     rsi, [rsp + 0]
        mov     rdx, [rsp + 8]
        mov     rcx, [rsp + 16]
        mov     r8,  [rsp + 24]
        mov     r9,  [rsp + 32]
        add     rsp, GS_START_ARGS_SIZE
        call    rbx
        .globl  gs_goexit_pc
gs_goexit_pc:
        mov     rbx, rax                /* saved in g->sched by gs_mcall */
        mov     rdi, r12
        mov     rsi, [rip + gs_goexit0@GOTPCREL]
        call    gs_mcall
        ud2
        .cfi_endproc
        .size   gs_goentry, . - gs_goentry

/*
 * void gs_yield(G *g)                      -- called by managed code
 *
 * Let other goroutines run.  A tail call into gs_mcall: the saved context
 * is the managed caller's (pc = its return address, sp = its SP at the
 * call, fp = its FP), so while g is parked its stack holds managed frames
 * only, and the unwinder starts at a registered call site.
 */
        .globl  gs_yield_impl
        .hidden gs_yield_impl
        .type   gs_yield_impl, @function
        .p2align 4
gs_yield_impl:
        .cfi_startproc
        mov     rsi, [rip + gs_park_yield@GOTPCREL]
        jmp     gs_mcall
        .cfi_endproc
        .size   gs_yield_impl, . - gs_yield_impl

/*
 * void gs_morestack(G *g)                  -- called by managed code
 *
 * Called by a managed function f whose entry check (after its prologue)
 * found SP below g->stackguard0.  Records f's caller (pc = [rbp+8],
 * sp = rbp+16) in g->m->morebuf, saves f's context in g->sched (a tail
 * call into gs_mcall: pc = the return address into f, sp = f's SP at the
 * call, fp = f's rbp, callee-saved registers) and runs gs_newstack(g) on
 * g0.  gs_newstack resumes g->sched, possibly on a new stack: then f
 * continues with rsp and rbp moved by the copy delta and every callee-
 * saved register as it was.  On g0 it is a fatal error.
 *
 *   f's frame (on g's stack)
 *   | ret into f's caller | <- rbp + 8    morebuf.pc
 *   | f's caller's rbp    | <- rbp        (morebuf.sp = rbp + 16)
 *   | f's locals ...      |
 *   | ret into f          | <- rsp        g->sched.pc; g->sched.sp = rsp + 8
 */
        .globl  gs_morestack_impl
        .hidden gs_morestack_impl
        .type   gs_morestack_impl, @function
        .p2align 4
gs_morestack_impl:
        .cfi_startproc
        mov     rax, [rdi + GS_G_M]
        cmp     rdi, [rax + GS_M_G0]
        je      1f
        cmp     qword ptr [rax + GS_M_LIBCALLSP], 0
        jne     2f
        mov     rcx, [rbp + 8]
        mov     [rax + GS_M_MOREBUF_PC], rcx
        lea     rcx, [rbp + 16]
        mov     [rax + GS_M_MOREBUF_SP], rcx
        mov     rsi, [rip + gs_newstack@GOTPCREL]
        jmp     gs_mcall
1:      and     rsp, -16                /* align for the call; no return */
        call    gs_fatal_morestack_on_g0@PLT
        ud2
2:      and     rsp, -16
        call    gs_fatal_morestack_in_libcall@PLT
        ud2
        .cfi_endproc
        .size   gs_morestack_impl, . - gs_morestack_impl

/*
 * void gs_entersyscall(G *g)               -- called by managed code
 *
 * The managed caller is about to run foreign code on its own stack (a
 * system call).  Records its SP (as after the return), PC (the return
 * address) and FP in g->extra->syscall{sp,pc,fp}, sets the status to Syscall and
 * stackguard0 to the preempt value, so that a scan starts at the recorded
 * frame and never moves the stack, and any managed code called back before
 * gs_exitsyscall reaches newstack (where it is a fatal error).  The SP must
 * lie inside the stack.  Runs no Rust code.
 */
        .globl  gs_entersyscall_impl
        .hidden gs_entersyscall_impl
        .type   gs_entersyscall_impl, @function
        .p2align 4
gs_entersyscall_impl:
        .cfi_startproc
        lea     rcx, [rsp + 8]
        cmp     rcx, [rdi + GS_G_STACK_LO]
        jbe     1f
        cmp     rcx, [rdi + GS_G_STACK_HI]
        ja      1f
        mov     rdx, [rdi + GS_G_EXTRA]
        test    rdx, rdx
        jz      3f
        mov     rax, [rsp]
        mov     [rdx + GS_GX_SYSCALLPC], rax
        mov     [rdx + GS_GX_SYSCALLFP], rbp
        mov     [rdx + GS_GX_SYSCALLSP], rcx
        mov     byte ptr [rdi + GS_G_INSYSCALL], 1
        mov     rax, GS_STACK_PREEMPT
        mov     [rdi + GS_G_STACKGUARD0], rax
        mov     dword ptr [rdi + GS_G_STATUS], GS_STATUS_SYSCALL
        /* Its P may now be handed to another M by the monitor. */
        mov     rax, [rdi + GS_G_M]
        mov     rax, [rax + GS_M_P]
        mov     dword ptr [rax + GS_P_STATE], GS_P_SYSCALL
        ret
1:      and     rsp, -16
        call    gs_fatal_entersyscall_sp@PLT
        ud2
        /* The G's first system call: make g->extra on the system stack,
           then start again. */
3:      push    rdi                     /* rsp 16-byte aligned for the call */
        .cfi_adjust_cfa_offset 8
        mov     rdx, rdi
        mov     rsi, [rip + gs_g_extra@GOTPCREL]
        call    gs_systemstack
        pop     rdi
        .cfi_adjust_cfa_offset -8
        jmp     gs_entersyscall_impl
        .cfi_endproc
        .size   gs_entersyscall_impl, . - gs_entersyscall_impl

/*
 * void gs_exitsyscall(G *g)                -- called by managed code
 *
 * Back from foreign code.  A tail call into gs_mcall with gs_exitsyscall0,
 * which (on g0, with the caller's context saved) checks that SP has not
 * moved above the recorded syscall SP, clears the record, sets the status
 * back to Running, does a pending shrink (a synchronous safe point), and
 * resumes the caller.
 */
        .globl  gs_exitsyscall_impl
        .hidden gs_exitsyscall_impl
        .type   gs_exitsyscall_impl, @function
        .p2align 4
gs_exitsyscall_impl:
        .cfi_startproc
        mov     rsi, [rip + gs_exitsyscall0@GOTPCREL]
        jmp     gs_mcall
        .cfi_endproc
        .size   gs_exitsyscall_impl, . - gs_exitsyscall_impl

/*
 * usize gs_libcall(G *g, usize (*fn)(void *), void *arg)   -- managed code
 *
 * Runs fn(arg) -- foreign code -- on the system stack and returns its
 * result.  While it runs, g->m->libcall{sp,pc,fp} hold the managed caller's
 * SP, PC and FP (a scan starts there and does not move the stack; a shrink
 * it wanted is left pending), and stackguard0 holds the preempt value, so
 * a callback into managed code reaches gs_morestack, which refuses it.
 * gs_libcall_done(g), on g0 before we switch back, clears the record and
 * restores the guard (or keeps the preempt value for a pending request).
 *
 *   g's stack                              g0's stack
 *   | managed caller's frame |             +-----------------+ <- g0->sched.sp
 *   | ret into caller        | <- libcallsp - 8   | fn's frames ...
 *   | saved rbp              | <- rbp
 *   | saved rbx, r12         | <- r12 = rsp while away
 */
        .globl  gs_libcall_impl
        .hidden gs_libcall_impl
        .type   gs_libcall_impl, @function
        .p2align 4
gs_libcall_impl:
        .cfi_startproc
        push    rbp
        .cfi_def_cfa_offset 16
        .cfi_offset rbp, -16
        mov     rbp, rsp
        .cfi_def_cfa_register rbp
        push    rbx
        .cfi_offset rbx, -24
        push    r12
        .cfi_offset r12, -32
        cmp     rsp, [rdi + GS_G_STACK_LO]
        jb      1f
        cmp     rsp, [rdi + GS_G_STACK_HI]
        jae     1f
        mov     rbx, rdi
        mov     r12, [rdi + GS_G_M]
        mov     rax, [rbp + 8]
        mov     [r12 + GS_M_LIBCALLPC], rax
        mov     rax, [rbp]
        mov     [r12 + GS_M_LIBCALLFP], rax
        lea     rax, [rbp + 16]
        mov     [r12 + GS_M_LIBCALLSP], rax
        mov     rax, GS_STACK_PREEMPT
        mov     [rdi + GS_G_STACKGUARD0], rax
        mov     rax, [r12 + GS_M_G0]
        mov     r12, rsp
        mov     rsp, [rax + GS_G_SCHED + GS_CTX_SP]
        mov     rdi, rdx
        call    rsi
        mov     rdi, rbx
        mov     rbx, rax
        call    gs_libcall_done@PLT
        mov     rax, rbx
        mov     rsp, r12
        pop     r12
        pop     rbx
        pop     rbp
        .cfi_def_cfa rsp, 8
        ret
1:      call    gs_fatal_libcall_stack@PLT
        ud2
        .cfi_endproc
        .size   gs_libcall_impl, . - gs_libcall_impl

/*
 * void gs_asm_funcs_bounds(usize out[2])
 *
 * The bounds of the gstack_funcs section, where the macros of
 * gstack_asm.h put their declarations, or 0, 0 when no object of the
 * program declares any: the linker-made bound symbols are referenced
 * weakly (through the GOT, which holds 0 for an undefined weak symbol).
 */
        .weak   __start_gstack_funcs
        .weak   __stop_gstack_funcs
        .globl  gs_asm_funcs_bounds
        .type   gs_asm_funcs_bounds, @function
        .p2align 4
gs_asm_funcs_bounds:
        .cfi_startproc
        mov     rax, [rip + __start_gstack_funcs@GOTPCREL]
        mov     [rdi], rax
        mov     rax, [rip + __stop_gstack_funcs@GOTPCREL]
        mov     [rdi + 8], rax
        ret
        .cfi_endproc
        .size   gs_asm_funcs_bounds, . - gs_asm_funcs_bounds


/*
 * Channel operations for managed code.  Each stub is itself a managed
 * function (declared with the macros of gstack_asm.h, so its frame is
 * precise while the goroutine waits): it stores its arguments in
 * g->m->park_args, switches to g0 through gs_mcall where the operation runs
 * (parking the goroutine if it must wait), and when the goroutine resumes
 * returns g->m->park_result (and park_ok in rdx) of the M it resumed on.
 *
 *   usize gs_chansend(G *g, RawChan *c, const void *elem)  0 sent, 1 closed
 *   usize gs_chanrecv(G *g, RawChan *c, void *elem)        1 received, 0 closed and empty
 *   {usize, usize} gs_select(G *g, SelectCase *cases, usize n, usize block)
 *        (case index or usize::MAX for the default or usize::MAX-1 for a send
 *         on a closed channel, recv ok)
 *
 *   stub frame:  | ret into caller | caller's rbp | g | pad |  (16 bytes)
 */
.macro PARK_STUB name, op
GS_FUNC \name, 16
        GS_PROLOGUE
        mov     [rsp], rdi
        mov     rax, [rdi + GS_G_M]
        mov     [rax + GS_M_PARKARGS], rsi
        mov     [rax + GS_M_PARKARGS + 8], rdx
        mov     [rax + GS_M_PARKARGS + 16], rcx
        mov     rsi, [rip + \op@GOTPCREL]
        GS_CALL gs_mcall, 0
        mov     rdi, [rsp]
        mov     rax, [rdi + GS_G_M]     /* the M it resumed on */
        mov     rdx, [rax + GS_M_PARKOK]
        mov     rax, [rax + GS_M_PARKRESULT]
        GS_EPILOGUE
GS_FUNC_END \name
.endm

        PARK_STUB gs_chansend_impl, gs_chansend0
        PARK_STUB gs_chanrecv_impl, gs_chanrecv0
        PARK_STUB gs_select_impl, gs_select0

/*
 * u64 gs_test_callee_saved(void (*fn)(void *), void *arg, u64 seed)
 *
 * Test helper.  Loads rbx, r12-r15 with seed+0..seed+4, the MXCSR rounding
 * mode and the x87 rounding mode with (seed & 3), calls fn(arg) (which
 * switches goroutines any number of times), then returns a mask of what
 * changed: bit 0-4 rbx,r12..r15, bit 5 rbp, bit 6 MXCSR, bit 7 x87 CW,
 * bit 8 rsp alignment at the call was wrong (never, by construction).
 * Restores the caller's registers and control words before returning.
 */
        .globl  gs_test_callee_saved
        .type   gs_test_callee_saved, @function
        .p2align 4
gs_test_callee_saved:
        .cfi_startproc
        push    rbp
        mov     rbp, rsp
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        sub     rsp, 24
        /* [rsp+0] caller mxcsr, [rsp+4] caller fpcw, [rsp+8] seed,
           [rsp+16] scratch for the values we install */
        stmxcsr [rsp]
        fnstcw  [rsp + 4]
        mov     [rsp + 8], rdx
        mov     eax, edx
        and     eax, 3
        shl     eax, 13
        or      eax, 0x1f80
        mov     [rsp + 16], eax
        ldmxcsr [rsp + 16]
        mov     eax, edx
        and     eax, 3
        shl     eax, 10
        or      eax, 0x037f
        mov     [rsp + 16], ax
        fldcw   [rsp + 16]
        mov     rax, rdi
        mov     rdi, rsi
        lea     rbx, [rdx + 0]
        lea     r12, [rdx + 1]
        lea     r13, [rdx + 2]
        lea     r14, [rdx + 3]
        lea     r15, [rdx + 4]
        call    rax
        xor     eax, eax
        mov     rdx, [rsp + 8]
        lea     rcx, [rdx + 0]
        cmp     rbx, rcx
        je      2f
        or      eax, 1
2:      lea     rcx, [rdx + 1]
        cmp     r12, rcx
        je      2f
        or      eax, 2
2:      lea     rcx, [rdx + 2]
        cmp     r13, rcx
        je      2f
        or      eax, 4
2:      lea     rcx, [rdx + 3]
        cmp     r14, rcx
        je      2f
        or      eax, 8
2:      lea     rcx, [rdx + 4]
        cmp     r15, rcx
        je      2f
        or      eax, 16
2:      lea     rcx, [rsp + 64]
        cmp     rbp, rcx
        je      2f
        or      eax, 32
2:      stmxcsr [rsp + 16]
        mov     ecx, [rsp + 16]
        and     ecx, 0x6000
        mov     esi, edx
        and     esi, 3
        shl     esi, 13
        cmp     ecx, esi
        je      2f
        or      eax, 64
2:      fnstcw  [rsp + 16]
        movzx   ecx, word ptr [rsp + 16]
        and     ecx, 0x0c00
        mov     esi, edx
        and     esi, 3
        shl     esi, 10
        cmp     ecx, esi
        je      2f
        or      eax, 128
2:      ldmxcsr [rsp]
        fldcw   [rsp + 4]
        add     rsp, 24
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        pop     rbp
        ret
        .cfi_endproc
        .size   gs_test_callee_saved, . - gs_test_callee_saved

/*
 * usize gs_test_sp(void)   Test helper: rsp at its own entry, as the
 * caller's call left it (so rsp + 8 must be 16-byte aligned).
 */
        .globl  gs_test_sp
        .type   gs_test_sp, @function
        .p2align 4
gs_test_sp:
        .cfi_startproc
        mov     rax, rsp
        ret
        .cfi_endproc
        .size   gs_test_sp, . - gs_test_sp

        .section .note.GNU-stack, "", @progbits
