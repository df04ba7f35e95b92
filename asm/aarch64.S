/*
 * gstack trampolines for aarch64 (AAPCS64, ELF).
 *
 * Saved context (struct Context, arch/aarch64.rs; offsets from gstack_abi.h)
 *
 *   offset  field     holds
 *   ------  --------  -------------------------------------------------------
 *     0     sp        sp the code resumes with (the caller's sp)
 *     8     pc        where it resumes (a return address, or gs_goentry)
 *    16     fp        x29 (frame-record chain; 0 terminates it)
 *    24     x19       callee-saved   (a new goroutine: its entry function)
 *    32     x20       callee-saved   (a new goroutine: its G)
 *    40..96 x21..x28  callee-saved
 *   104     d8        callee-saved (low 64 bits of v8; AAPCS64 5.1.2)
 *   112..160 d9..d15  callee-saved
 *   168     (size)
 *
 * A new goroutine's context: sp = top of its stack (16-byte aligned) minus
 * GS_START_ARGS_SIZE, where its six start arguments lie (gs_goentry loads
 * and pops them),
 * pc = gs_goentry, fp = 0, x19 = the entry function, x20 = the G.
 *
 * What AAPCS64 says a call preserves, and therefore all that a switch must
 * save: x19-x28, x29 (fp), sp, and the low 64 bits of v8-v15.  x30 (lr) is
 * the return address: we save it as pc.  x18 is the platform register and
 * is never touched.
 *
 * Branch protection: every global routine begins with `bti c` (encoded as
 * `hint #34`, a no-op on cores without BTI), because C and Rust reach them
 * through `blr`.  Jumps to a saved pc use `ret xN`, which BTI does not
 * check (a saved pc is a return address, which has no landing pad).
 * Indirect tail calls go through x16 so that a `bti c` landing pad accepts
 * them.  The object is marked BTI-compatible in .note.gnu.property.
 *
 * chan_wake and in_syscall are adjacent bytes (src/abi.rs checks it):
 * gs_yield_native tests both with one 16-bit load.
 *
 * G fields used: stack_lo 0, stack_hi 8, m 24, sched 32 (a Context),
 * by gs_yield_native schedlink, status, chan_wake, in_syscall, kind, and
 * by gs_switch_publish status.
 * M fields used: g0 0; gs_yield_native also curg, p, running, schedtick
 * and P's shared, tick, runq head and tail, runnext, len.  The Rust side
 * asserts all of these at compile time (src/abi.rs).
 */

#include "../include/gstack_asm.h"

#define BTI_C hint #34

        .text

/* Store x19-x28, x29 and d8-d15 at [base + off]. */
.macro SAVE_CALLEE base, off
        stp     x19, x20, [\base, #(\off + GS_CTX_X19)]
        stp     x21, x22, [\base, #(\off + GS_CTX_X21)]
        stp     x23, x24, [\base, #(\off + GS_CTX_X23)]
        stp     x25, x26, [\base, #(\off + GS_CTX_X25)]
        stp     x27, x28, [\base, #(\off + GS_CTX_X27)]
        stp     d8,  d9,  [\base, #(\off + GS_CTX_D8)]
        stp     d10, d11, [\base, #(\off + GS_CTX_D10)]
        stp     d12, d13, [\base, #(\off + GS_CTX_D12)]
        stp     d14, d15, [\base, #(\off + GS_CTX_D14)]
        str     x29, [\base, #(\off + GS_CTX_FP)]
.endm

/* Load x19-x28, x29 and d8-d15 from the context at [base]. */
.macro LOAD_CALLEE base
        ldp     x19, x20, [\base, #GS_CTX_X19]
        ldp     x21, x22, [\base, #GS_CTX_X21]
        ldp     x23, x24, [\base, #GS_CTX_X23]
        ldp     x25, x26, [\base, #GS_CTX_X25]
        ldp     x27, x28, [\base, #GS_CTX_X27]
        ldp     d8,  d9,  [\base, #GS_CTX_D8]
        ldp     d10, d11, [\base, #GS_CTX_D10]
        ldp     d12, d13, [\base, #GS_CTX_D12]
        ldp     d14, d15, [\base, #GS_CTX_D14]
        ldr     x29, [\base, #GS_CTX_FP]
.endm

/* Make the goroutine `next` the one running on the M `m` (what Rust's
   make_current / execute do): next's status Running (a store-release, as
   set_status), next.m, m.curg, and the monitor's m.running and
   m.schedtick (plain: only this M writes them).  Clobbers x9, x10. */
.macro MAKE_CURRENT next, m
        mov     w9, #GS_STATUS_RUNNING
        add     x10, \next, #GS_G_STATUS
        stlr    w9, [x10]
        str     \m, [\next, #GS_G_M]
        str     \next, [\m, #GS_M_CURG]
        str     \next, [\m, #GS_M_RUNNING]
        ldr     x9, [\m, #GS_M_SCHEDTICK]
        add     x9, x9, #1
        str     x9, [\m, #GS_M_SCHEDTICK]
.endm

/*
 * void gs_gogo(const Context *ctx)  -- never returns
 *
 * Restores every saved register and continues at ctx->pc with
 * sp = ctx->sp.  Relies on: ctx was filled by gs_mcall / gs_swapcontext /
 * the new-goroutine setup, and the stack it names is still that context's
 * live stack (copystack rewrites sp and fp when it moves the stack).
 */
        .globl  gs_gogo
        .type   gs_gogo, %function
        .p2align 4
gs_gogo:
        .cfi_startproc
        BTI_C
        LOAD_CALLEE x0
        ldr     x9,  [x0, #GS_CTX_SP]
        .cfi_undefined x30              /* leaving: no caller to name */
        mov     sp, x9
        ldr     x30, [x0, #GS_CTX_PC]
        ret     x30
        .cfi_endproc
        .size   gs_gogo, . - gs_gogo

/*
 * void gs_swapcontext(Context *save, const Context *to)
 *
 * Saves the caller's context in *save (resuming it returns from this
 * call: pc = lr, sp = the caller's sp) and continues in *to.
 */
        .globl  gs_swapcontext
        .type   gs_swapcontext, %function
        .p2align 4
gs_swapcontext:
        .cfi_startproc
        BTI_C
        mov     x9, sp
        str     x9,  [x0, #GS_CTX_SP]
        str     x30, [x0, #GS_CTX_PC]
        SAVE_CALLEE x0, 0
        mov     x0, x1
        b       gs_gogo
        .cfi_endproc
        .size   gs_swapcontext, . - gs_swapcontext

/*
 * void gs_switch_publish(G *g, const Context *to, G **slot)
 *
 * A yield with several Ps (see asm/x86_64.S): save the caller's context in
 * g->sched as gs_swapcontext does, load *to, and only once sp is to->sp
 * (nothing more is written on g's stack) make g runnable: g->status =
 * RUNNABLE, then *slot = g, both store-releases (the second orders the
 * context and the status before it for whoever takes g from *slot); then
 * continue at to->pc (`ret`, as gs_gogo: BTI does not check a return).
 *
 *   x0 = g, x1 = to, x2 = slot; x9 = &g->sched
 */
        .globl  gs_switch_publish
        .hidden gs_switch_publish
        .type   gs_switch_publish, %function
        .p2align 4
gs_switch_publish:
        .cfi_startproc
        BTI_C
        add     x9, x0, #GS_G_SCHED
        mov     x10, sp
        str     x10, [x9, #GS_CTX_SP]
        str     x30, [x9, #GS_CTX_PC]
        SAVE_CALLEE x9, 0
        LOAD_CALLEE x1
        ldr     x10, [x1, #GS_CTX_SP]
        .cfi_undefined x30              /* leaving g's stack: no caller to name */
        mov     sp, x10
        ldr     x30, [x1, #GS_CTX_PC]
        mov     w10, #GS_STATUS_RUNNABLE
        add     x11, x0, #GS_G_STATUS
        stlr    w10, [x11]
        stlr    x0, [x2]
        ret     x30
        .cfi_endproc
        .size   gs_switch_publish, . - gs_switch_publish

/*
 * void gs_yield_native(void)
 *
 * gstack::yield_now's common cases without Rust or g0 (see asm/x86_64.S
 * for the conditions and the order of the state changes, which are the
 * same).  One P: the global queue's turn not come, and a head of the
 * local queue that needs nothing before it resumes; g is saved as
 * gs_swapcontext saves (pc = lr) and next resumed as gs_gogo resumes
 * (`ret` to its pc: BTI does not check a return).  Several Ps: the local
 * queue empty, the global queue's turn not come, and a native goroutine
 * in runnext that needs nothing first; next comes off runnext with an
 * exclusive load-acquire/store pair leaving RUNNEXT_BUSY, and
 * gs_switch_publish (a direct branch: lr is still our caller's) saves g,
 * resumes next and puts g in runnext.  Otherwise a tail call to
 * gs_yield_slow(m, g); returns at once outside a goroutine, off its
 * stack, or inside a system call.  Status stores are releases, as Rust's
 * set_status.
 *
 * TLS: gs_current_m (below), initial-exec.
 *
 *   register  holds
 *   x2        m      (from TLS)
 *   x0        g      (m->curg; then &g->sched)
 *   x3        p      (m->p)
 *   x1        next   (p->runq.head, or what was in runnext)
 *   x5        the queue's new head
 *   x6        &p->runnext (several Ps)
 */
        .globl  gs_yield_native
        .type   gs_yield_native, %function
        .p2align 4
gs_yield_native:
        .cfi_startproc
        BTI_C
        adrp    x9, :gottprel:gs_current_m
        ldr     x9, [x9, #:gottprel_lo12:gs_current_m]
        mrs     x10, tpidr_el0
        ldr     x2, [x10, x9]
        cbz     x2, 9f                  /* no runtime on this thread */
        ldr     x0, [x2, #GS_M_CURG]
        cbz     x0, 9f                  /* no goroutine */
        mov     x9, sp
        ldr     x10, [x0, #GS_G_STACK_LO]
        cmp     x9, x10
        b.lo    9f                      /* on the system stack */
        ldr     x10, [x0, #GS_G_STACK_HI]
        cmp     x9, x10
        b.hs    9f
        ldrb    w9, [x0, #GS_G_INSYSCALL]
        cbnz    w9, 9f                  /* inside a system call: its P may be gone */
        ldr     x3, [x2, #GS_M_P]
        cbz     x3, 8f
        ldrb    w9, [x3, #GS_P_SHARED]
        cbnz    w9, 5f                  /* several Ps */
        ldr     x9, [x3, #GS_P_RUNNEXT]
        cbnz    x9, 8f                  /* a woken goroutine runs next */
        ldr     w4, [x3, #GS_P_TICK]
        cbz     w4, 8f                  /* the global queue's turn */
        ldr     x1, [x3, #GS_P_RUNQ_HEAD]
        cbz     x1, 8f                  /* local queue empty: maybe global */
        ldrh    w9, [x1, #GS_G_CHAN_WAKE] /* and in_syscall, the next byte */
        cbnz    w9, 8f                  /* a wake-up to finish, or resumes in a system call */
        /* Committed: rotate the queue (g to the back, next off the front). */
        sub     w4, w4, #1
        str     w4, [x3, #GS_P_TICK]
        ldr     x5, [x1, #GS_G_SCHEDLINK]
        str     xzr, [x1, #GS_G_SCHEDLINK]
        str     xzr, [x0, #GS_G_SCHEDLINK]
        cbz     x5, 1f
        ldr     x9, [x3, #GS_P_RUNQ_TAIL]
        str     x0, [x9, #GS_G_SCHEDLINK]
        b       2f
1:      mov     x5, x0                  /* next was alone: g is all of it */
2:      str     x5, [x3, #GS_P_RUNQ_HEAD]
        str     x0, [x3, #GS_P_RUNQ_TAIL]
        mov     w9, #GS_STATUS_RUNNABLE
        add     x10, x0, #GS_G_STATUS
        stlr    w9, [x10]
        MAKE_CURRENT x1, x2
        /* Save g as gs_swapcontext would, and resume next as gs_gogo. */
        add     x0, x0, #GS_G_SCHED
        mov     x9, sp
        str     x9,  [x0, #GS_CTX_SP]
        str     x30, [x0, #GS_CTX_PC]
        SAVE_CALLEE x0, 0
        add     x0, x1, #GS_G_SCHED
        b       gs_gogo
5:      /* Several Ps: runnext for g, when the queue is empty. */
        ldr     x9, [x3, #GS_P_LEN]
        cbnz    x9, 8f                  /* queued work: g goes behind it */
        ldr     w4, [x3, #GS_P_TICK]
        cbz     w4, 8f                  /* the global queue's turn */
        add     x6, x3, #GS_P_RUNNEXT
        ldr     x9, [x6]
        cbz     x9, 8f                  /* nothing next here */
        mov     x7, #GS_RUNNEXT_BUSY
3:      ldaxr   x1, [x6]                /* ours, unless a thief took it */
        stxr    w9, x7, [x6]
        cbnz    w9, 3b
        cbz     x1, 6f
        ldrh    w9, [x1, #GS_G_CHAN_WAKE] /* and in_syscall, the next byte */
        cbnz    w9, 7f                  /* a wake-up to finish, or resumes in a system call */
        ldrb    w9, [x1, #GS_G_KIND]
        cmp     w9, #GS_KIND_NATIVE
        b.ne    7f                      /* managed: a status CAS, in Rust */
        /* Committed (yield_shared's order): tick, next's status (no scan
           claims a native goroutine), next.m, m.curg, m.running,
           m.schedtick; gs_switch_publish saves g (pc = lr: our caller),
           resumes next and only then publishes g in runnext. */
        sub     w4, w4, #1
        str     w4, [x3, #GS_P_TICK]
        MAKE_CURRENT x1, x2
        add     x1, x1, #GS_G_SCHED
        mov     x2, x6
        b       gs_switch_publish       /* (g, &next->sched, &p->runnext) */
6:      str     xzr, [x6]               /* stolen: our BUSY off */
        b       8f
7:      stlr    x1, [x6]                /* back in its place, over BUSY */
8:      mov     x1, x0
        mov     x0, x2
        b       gs_yield_slow           /* gs_yield_slow(m, g), a tail call */
9:      ret
        .cfi_endproc
        .size   gs_yield_native, . - gs_yield_native

/*
 * The thread's M (null when the thread runs no runtime): read and written
 * by Rust through src/m.rs's current_m / set_current_m, read here by
 * gs_yield_native.  Zero on every new thread.  Hidden: not exported from
 * libgstack.so.
 */
        .section .tbss, "awT", %nobits
        .p2align 3
        .globl  gs_current_m
        .hidden gs_current_m
        .type   gs_current_m, %object
        .size   gs_current_m, 8
gs_current_m:
        .zero   8
        .text

/*
 * void gs_mcall(G *g, void (*fn)(G *))
 *
 * g must be the goroutine running on this thread, and we must be on its
 * stack.  Saves the caller's context in g->sched (pc = lr, sp = sp),
 * switches to the thread's system stack (g->m->g0->sched.sp) with
 * x29 = 0 -- g0 frames belong to no goroutine -- and calls fn(g).  fn must
 * not return: it resumes some goroutine with gs_gogo.  When g is resumed
 * from g->sched, gs_mcall appears to return.
 *
 *   g's stack (left as it was)       g0's stack
 *   | caller's frame   | <- sp       +------------------+ <- g0->sched.sp
 *   +------------------+             | fn's frame ...   |
 *   (lr = return address, saved as g->sched.pc)
 */
        .globl  gs_mcall
        .type   gs_mcall, %function
        .p2align 4
gs_mcall:
        .cfi_startproc
        BTI_C
        ldr     x9, [x0, #GS_G_M]
        ldr     x9, [x9, #GS_M_G0]
        cmp     x9, x0
        b.eq    1f
        /* On g's own stack only (see asm/x86_64.S): SP in [lo, hi] --
           hi itself when a goroutine's entry function returned. */
        mov     x10, sp
        ldr     x11, [x0, #GS_G_STACK_LO]
        cmp     x10, x11
        b.lo    2f
        ldr     x11, [x0, #GS_G_STACK_HI]
        cmp     x10, x11
        b.hi    2f
        str     x10, [x0, #(GS_G_SCHED + GS_CTX_SP)]
        str     x30, [x0, #(GS_G_SCHED + GS_CTX_PC)]
        SAVE_CALLEE x0, GS_G_SCHED
        ldr     x10, [x9, #(GS_G_SCHED + GS_CTX_SP)]
        mov     sp, x10
        .cfi_undefined x30              /* g0 frames end here */
        mov     x29, #0
        mov     x30, #0
        blr     x1
        /* fn returned: there is nothing to return to. */
        mov     x0, #0
        bl      gs_fatal_mcall_returned
        brk     #0
1:      bl      gs_fatal_mcall_on_g0
        brk     #0
2:      mov     x1, x10                 /* the sp we found, for the message */
        bl      gs_fatal_mcall_off_stack
        brk     #0
        .cfi_endproc
        .size   gs_mcall, . - gs_mcall

/*
 * void gs_systemstack(G *g, void (*fn)(void *), void *arg)
 *
 * Runs fn(arg) on the thread's system stack and returns.  g is the
 * goroutine this thread runs (or g0).  When g is g0, or sp is not inside
 * g's stack (already on g0 or on the signal stack), fn is tail-called.
 * fn must not switch goroutines: g's stack stays exactly as it is (it is
 * not moved while we are away; the old sp lives in x19).
 *
 *   g's stack                        g0's stack
 *   | caller's frame   |             +------------------+ <- g0->sched.sp
 *   | saved x19        | [sp, #16]   | fn's frame ...   |
 *   | saved x29, x30   | <- x29 = x19
 */
        .globl  gs_systemstack
        .type   gs_systemstack, %function
        .p2align 4
gs_systemstack:
        .cfi_startproc
        BTI_C
        ldr     x9, [x0, #GS_G_M]
        ldr     x9, [x9, #GS_M_G0]
        cmp     x9, x0
        b.eq    1f
        mov     x10, sp
        ldr     x11, [x0, #GS_G_STACK_LO]
        cmp     x10, x11
        b.lo    1f
        ldr     x11, [x0, #GS_G_STACK_HI]
        cmp     x10, x11
        b.hs    1f
        stp     x29, x30, [sp, #-32]!
        .cfi_def_cfa_offset 32
        .cfi_offset x29, -32
        .cfi_offset x30, -24
        mov     x29, sp
        str     x19, [sp, #16]
        .cfi_offset x19, -16
        mov     x19, sp
        .cfi_def_cfa_register x19
        ldr     x10, [x9, #(GS_G_SCHED + GS_CTX_SP)]
        mov     sp, x10
        mov     x0, x2
        blr     x1
        mov     sp, x19
        .cfi_def_cfa_register sp
        ldr     x19, [sp, #16]
        ldp     x29, x30, [sp], #32
        .cfi_def_cfa_offset 0
        ret
1:      mov     x0, x2
        mov     x16, x1
        br      x16
        .cfi_endproc
        .size   gs_systemstack, . - gs_systemstack

/*
 * gs_goentry: where every goroutine starts (its initial sched.pc).
 *
 * Entered by gs_gogo (via `ret`) with sp = top of the stack (16-byte
 * aligned) minus GS_START_ARGS_SIZE, where newproc put the arguments,
 * x29 = 0, x19 = entry function, x20 = G.  Pops the arguments and calls
 * fn(g, args[0..4]); the return address of that call, gs_goexit_pc,
 * is the saved lr in the goroutine's entry frame (whose saved x29 is 0).
 * When fn returns, x20 still holds the G (callee-saved; the G never moves):
 * its return value goes to x19, which gs_mcall saves in g->sched
 * (Context::retval), and the goroutine is finished on g0.
 *
 *   +------------------+ <- stack_hi = sp at fn's first instruction
 *   | x29 = 0, lr =    | <- fn's frame record after `stp x29, x30, [sp, #-16]!`
 *   |   gs_goexit_pc   |
 *   | fn's frame ...   |
 */
        .globl  gs_goentry
        .type   gs_goentry, %function
        .p2align 4
gs_goentry:
        .cfi_startproc
        .cfi_undefined x30
        BTI_C
        mov     x0, x20
        ldp     x1, x2, [sp, #0]
        ldp     x3, x4, [sp, #16]
        ldr     x5, [sp, #32]
        add     sp, sp, #GS_START_ARGS_SIZE
        blr     x19
        .globl  gs_goexit_pc
gs_goexit_pc:
        mov     x19, x0                 /* saved in g->sched by gs_mcall */
        mov     x0, x20
        adrp    x1, :got:gs_goexit0
        ldr     x1, [x1, #:got_lo12:gs_goexit0]
        bl      gs_mcall
        brk     #0
        .cfi_endproc
        .size   gs_goentry, . - gs_goentry

/*
 * void gs_yield(G *g)                      -- called by managed code
 *
 * Let other goroutines run.  A tail call into gs_mcall: the saved context
 * is the managed caller's (pc = lr, sp = its SP, fp = its x29), so while g
 * is parked its stack holds managed frames only.
 */
        .globl  gs_yield_impl
        .hidden gs_yield_impl
        .type   gs_yield_impl, %function
        .p2align 4
gs_yield_impl:
        .cfi_startproc
        BTI_C
        adrp    x1, :got:gs_park_yield
        ldr     x1, [x1, #:got_lo12:gs_park_yield]
        b       gs_mcall
        .cfi_endproc
        .size   gs_yield_impl, . - gs_yield_impl

/*
 * void gs_morestack(G *g)                  -- called by managed code
 *
 * Called by a managed function f whose entry check (after its prologue)
 * found SP below g->stackguard0.  Records f's caller (pc = [x29+8],
 * sp = x29+16) in g->m->morebuf, saves f's context in g->sched (a tail
 * call into gs_mcall: pc = lr, sp = f's SP, fp = f's x29, callee-saved
 * registers) and runs gs_newstack(g) on g0, which resumes g->sched,
 * possibly on a new stack: f continues with sp and x29 moved by the copy
 * delta.  On g0 it is a fatal error.
 *
 *   f's frame (on g's stack)
 *   | f's caller's x29, lr | <- x29      morebuf.pc = [x29+8], .sp = x29+16
 *   | f's locals ...       |
 *   |                      | <- sp       g->sched.sp; g->sched.pc = lr
 */
        .globl  gs_morestack_impl
        .hidden gs_morestack_impl
        .type   gs_morestack_impl, %function
        .p2align 4
gs_morestack_impl:
        .cfi_startproc
        BTI_C
        ldr     x9, [x0, #GS_G_M]
        ldr     x10, [x9, #GS_M_G0]
        cmp     x10, x0
        b.eq    1f
        ldr     x10, [x9, #GS_M_LIBCALLSP]
        cbnz    x10, 2f
        ldr     x10, [x29, #8]
        str     x10, [x9, #GS_M_MOREBUF_PC]
        add     x10, x29, #16
        str     x10, [x9, #GS_M_MOREBUF_SP]
        adrp    x1, :got:gs_newstack
        ldr     x1, [x1, #:got_lo12:gs_newstack]
        b       gs_mcall
1:      bl      gs_fatal_morestack_on_g0
        brk     #0
2:      bl      gs_fatal_morestack_in_libcall
        brk     #0
        .cfi_endproc
        .size   gs_morestack_impl, . - gs_morestack_impl

/*
 * void gs_entersyscall(G *g)               -- called by managed code
 *
 * Records the caller's SP, PC (lr) and FP in g->extra->syscall{sp,pc,fp}, sets
 * stackguard0 to the preempt value and the status to Syscall (a release
 * store, after the record).  See asm/x86_64.S for the contract.
 */
        .globl  gs_entersyscall_impl
        .hidden gs_entersyscall_impl
        .type   gs_entersyscall_impl, %function
        .p2align 4
gs_entersyscall_impl:
        .cfi_startproc
        BTI_C
        mov     x9, sp
        ldr     x10, [x0, #GS_G_STACK_LO]
        cmp     x9, x10
        b.ls    1f
        ldr     x10, [x0, #GS_G_STACK_HI]
        cmp     x9, x10
        b.hi    1f
        ldr     x11, [x0, #GS_G_EXTRA]
        cbz     x11, 3f
        str     x30, [x11, #GS_GX_SYSCALLPC]
        str     x29, [x11, #GS_GX_SYSCALLFP]
        str     x9,  [x11, #GS_GX_SYSCALLSP]
        mov     w10, #1
        strb    w10, [x0, #GS_G_INSYSCALL]
        movn    x10, #0x521             /* GS_STACK_PREEMPT */
        str     x10, [x0, #GS_G_STACKGUARD0]
        mov     w10, #GS_STATUS_SYSCALL
        add     x11, x0, #GS_G_STATUS
        stlr    w10, [x11]
        /* Its P may now be handed to another M by the monitor. */
        ldr     x11, [x0, #GS_G_M]
        ldr     x11, [x11, #GS_M_P]
        mov     w10, #GS_P_SYSCALL
        stlr    w10, [x11]              /* GS_P_STATE is 0 */
        ret
1:      bl      gs_fatal_entersyscall_sp
        brk     #0
        /* The G's first system call: make g->extra on the system stack,
           then start again. */
3:      stp     x0, x30, [sp, #-16]!
        .cfi_adjust_cfa_offset 16
        .cfi_offset x30, -8
        mov     x2, x0
        adrp    x1, :got:gs_g_extra
        ldr     x1, [x1, #:got_lo12:gs_g_extra]
        bl      gs_systemstack
        ldp     x0, x30, [sp], #16
        .cfi_adjust_cfa_offset -16
        .cfi_restore x30
        b       gs_entersyscall_impl
        .cfi_endproc
        .size   gs_entersyscall_impl, . - gs_entersyscall_impl

/*
 * void gs_exitsyscall(G *g)                -- called by managed code
 *
 * A tail call into gs_mcall with gs_exitsyscall0 (see asm/x86_64.S).
 */
        .globl  gs_exitsyscall_impl
        .hidden gs_exitsyscall_impl
        .type   gs_exitsyscall_impl, %function
        .p2align 4
gs_exitsyscall_impl:
        .cfi_startproc
        BTI_C
        adrp    x1, :got:gs_exitsyscall0
        ldr     x1, [x1, #:got_lo12:gs_exitsyscall0]
        b       gs_mcall
        .cfi_endproc
        .size   gs_exitsyscall_impl, . - gs_exitsyscall_impl

/*
 * usize gs_libcall(G *g, usize (*fn)(void *), void *arg)   -- managed code
 *
 * Runs fn(arg) on the system stack; see asm/x86_64.S for the contract.
 *
 *   g's stack                              g0's stack
 *   | managed caller's frame | <- libcallsp     +-----------------+ <- g0->sched.sp
 *   | x19, x20               |                 | result (16)     |
 *   | x29, x30               | <- x29 = x20    | fn's frames ... |
 */
        .globl  gs_libcall_impl
        .hidden gs_libcall_impl
        .type   gs_libcall_impl, %function
        .p2align 4
gs_libcall_impl:
        .cfi_startproc
        BTI_C
        stp     x29, x30, [sp, #-32]!
        .cfi_def_cfa_offset 32
        .cfi_offset x29, -32
        .cfi_offset x30, -24
        mov     x29, sp
        .cfi_def_cfa_register x29       /* sp moves to g0 below */
        stp     x19, x20, [sp, #16]
        .cfi_offset x19, -16
        .cfi_offset x20, -8
        mov     x9, sp
        ldr     x10, [x0, #GS_G_STACK_LO]
        cmp     x9, x10
        b.lo    1f
        ldr     x10, [x0, #GS_G_STACK_HI]
        cmp     x9, x10
        b.hs    1f
        mov     x19, x0
        ldr     x11, [x0, #GS_G_M]
        str     x30, [x11, #GS_M_LIBCALLPC]
        ldr     x9, [x29]
        str     x9, [x11, #GS_M_LIBCALLFP]
        add     x9, x29, #32
        str     x9, [x11, #GS_M_LIBCALLSP]
        movn    x9, #0x521              /* GS_STACK_PREEMPT */
        str     x9, [x0, #GS_G_STACKGUARD0]
        mov     x20, sp
        ldr     x9, [x11, #GS_M_G0]
        ldr     x10, [x9, #(GS_G_SCHED + GS_CTX_SP)]
        mov     sp, x10
        mov     x0, x2
        blr     x1
        str     x0, [sp, #-16]!
        mov     x0, x19
        bl      gs_libcall_done
        ldr     x0, [sp], #16
        mov     sp, x20
        .cfi_def_cfa sp, 32
        ldp     x19, x20, [sp, #16]
        ldp     x29, x30, [sp], #32
        .cfi_def_cfa_offset 0
        ret
1:      bl      gs_fatal_libcall_stack
        brk     #0
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
        .type   gs_asm_funcs_bounds, %function
        .p2align 4
gs_asm_funcs_bounds:
        .cfi_startproc
        BTI_C
        adrp    x1, :got:__start_gstack_funcs
        ldr     x1, [x1, #:got_lo12:__start_gstack_funcs]
        adrp    x2, :got:__stop_gstack_funcs
        ldr     x2, [x2, #:got_lo12:__stop_gstack_funcs]
        stp     x1, x2, [x0]
        ret
        .cfi_endproc
        .size   gs_asm_funcs_bounds, . - gs_asm_funcs_bounds


/*
 * Channel operations for managed code: see asm/x86_64.S.  Each stub is a
 * managed function (its frame is precise while the goroutine waits).
 *
 *   stub frame:  | x29, x30 | g | pad |  (16 bytes of locals)
 */
.macro PARK_STUB name, op
GS_FUNC \name, 16
        GS_PROLOGUE
        str     x0, [sp]
        ldr     x9, [x0, #GS_G_M]
        str     x1, [x9, #GS_M_PARKARGS]
        str     x2, [x9, #(GS_M_PARKARGS + 8)]
        str     x3, [x9, #(GS_M_PARKARGS + 16)]
        adrp    x1, :got:\op
        ldr     x1, [x1, #:got_lo12:\op]
        GS_CALL gs_mcall, 0
        ldr     x9, [sp]
        ldr     x9, [x9, #GS_G_M]       /* the M it resumed on */
        ldr     x0, [x9, #GS_M_PARKRESULT]
        ldr     x1, [x9, #GS_M_PARKOK]
        GS_EPILOGUE
GS_FUNC_END \name
.endm

        PARK_STUB gs_chansend_impl, gs_chansend0
        PARK_STUB gs_chanrecv_impl, gs_chanrecv0
        PARK_STUB gs_select_impl, gs_select0

/*
 * u64 gs_test_callee_saved(void (*fn)(void *), void *arg, u64 seed)
 *
 * Test helper.  Loads x19-x28 with seed+0..seed+9 and d8-d15 with the bit
 * patterns seed+16..seed+23, calls fn(arg) (which switches goroutines any
 * number of times), then returns a mask of what changed: bits 0-9
 * x19..x28, bits 10-17 d8..d15, bit 18 x29.  Restores the caller's
 * registers before returning.
 */
        .globl  gs_test_callee_saved
        .type   gs_test_callee_saved, %function
        .p2align 4
gs_test_callee_saved:
        .cfi_startproc
        BTI_C
        stp     x29, x30, [sp, #-176]!
        mov     x29, sp
        stp     x19, x20, [sp, #16]
        stp     x21, x22, [sp, #32]
        stp     x23, x24, [sp, #48]
        stp     x25, x26, [sp, #64]
        stp     x27, x28, [sp, #80]
        stp     d8,  d9,  [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        str     x2,  [sp, #160]
        mov     x9, x0
        mov     x0, x1
        add     x19, x2, #0
        add     x20, x2, #1
        add     x21, x2, #2
        add     x22, x2, #3
        add     x23, x2, #4
        add     x24, x2, #5
        add     x25, x2, #6
        add     x26, x2, #7
        add     x27, x2, #8
        add     x28, x2, #9
        add     x10, x2, #16
        fmov    d8, x10
        add     x10, x2, #17
        fmov    d9, x10
        add     x10, x2, #18
        fmov    d10, x10
        add     x10, x2, #19
        fmov    d11, x10
        add     x10, x2, #20
        fmov    d12, x10
        add     x10, x2, #21
        fmov    d13, x10
        add     x10, x2, #22
        fmov    d14, x10
        add     x10, x2, #23
        fmov    d15, x10
        blr     x9
        ldr     x2, [sp, #160]
        mov     x0, #0
        mov     x12, #1
.macro CHECKX reg, k, bit
        add     x10, x2, #\k
        cmp     \reg, x10
        b.eq    9f
        orr     x0, x0, #(1 << \bit)
9:
.endm
.macro CHECKD reg, k, bit
        add     x10, x2, #\k
        fmov    x11, \reg
        cmp     x11, x10
        b.eq    9f
        orr     x0, x0, #(1 << \bit)
9:
.endm
        CHECKX  x19, 0, 0
        CHECKX  x20, 1, 1
        CHECKX  x21, 2, 2
        CHECKX  x22, 3, 3
        CHECKX  x23, 4, 4
        CHECKX  x24, 5, 5
        CHECKX  x25, 6, 6
        CHECKX  x26, 7, 7
        CHECKX  x27, 8, 8
        CHECKX  x28, 9, 9
        CHECKD  d8,  16, 10
        CHECKD  d9,  17, 11
        CHECKD  d10, 18, 12
        CHECKD  d11, 19, 13
        CHECKD  d12, 20, 14
        CHECKD  d13, 21, 15
        CHECKD  d14, 22, 16
        CHECKD  d15, 23, 17
        mov     x10, sp
        cmp     x29, x10
        b.eq    9f
        orr     x0, x0, #(1 << 18)
9:      ldp     x19, x20, [sp, #16]
        ldp     x21, x22, [sp, #32]
        ldp     x23, x24, [sp, #48]
        ldp     x25, x26, [sp, #64]
        ldp     x27, x28, [sp, #80]
        ldp     d8,  d9,  [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        ldp     x29, x30, [sp], #176
        ret
        .cfi_endproc
        .size   gs_test_callee_saved, . - gs_test_callee_saved

/*
 * usize gs_test_sp(void)   Test helper: sp at its own entry (must be
 * 16-byte aligned: AAPCS64 requires it at every public interface).
 */
        .globl  gs_test_sp
        .type   gs_test_sp, %function
        .p2align 4
gs_test_sp:
        .cfi_startproc
        BTI_C
        mov     x0, sp
        ret
        .cfi_endproc
        .size   gs_test_sp, . - gs_test_sp

/* Mark the object BTI-compatible (GNU_PROPERTY_AARCH64_FEATURE_1_AND, BTI bit). */
        .pushsection .note.gnu.property, "a"
        .p2align 3
        .word   4
        .word   16
        .word   5
        .asciz  "GNU"
        .word   0xc0000000
        .word   4
        .word   1
        .word   0
        .popsection

        .section .note.GNU-stack, "", %progbits
