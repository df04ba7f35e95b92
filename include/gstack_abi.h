/*
 * gstack_abi.h -- offsets shared between the gstack runtime (Rust) and
 * assembly: the runtime's own trampolines (asm/x86_64.S, asm/aarch64.S) and
 * hand-written managed code (include/gstack_asm.h).
 *
 * This header is the single source of these numbers.  build.rs runs it
 * through the target's C preprocessor and the crate asserts, at compile
 * time, that every value equals the real offset in the Rust structs
 * (src/abi.rs): a mismatch fails the build.
 *
 * Stable (part of the managed-code ABI, like Go's g.stack.lo/hi/stackguard0):
 *   GS_G_STACK_LO, GS_G_STACK_HI, GS_G_STACKGUARD0.
 * Everything else is private to the runtime and may change between versions.
 *
 * Plain numbers only: the file is included from assembly.
 */
#ifndef GSTACK_ABI_H
#define GSTACK_ABI_H

/* ---- struct G (a goroutine), common to both architectures ------------ */
#define GS_G_STACK_LO      0   /* usize: lowest usable byte of the stack   */
#define GS_G_STACK_HI      8   /* usize: one past the highest byte         */
#define GS_G_STACKGUARD0   16  /* usize: SP below this => call morestack    */
#define GS_G_M             24  /* *M: the thread running this G (or its g0) */
#define GS_G_SCHED         32  /* Context: where the G resumes              */

/* ---- struct M (a thread) -------------------------------------------- */
#define GS_M_G0            0   /* *G: the thread's system-stack goroutine   */
#define GS_M_CURG          8   /* *G: the user G running on this M, or 0    */
#define GS_M_MOREBUF_PC    16  /* usize: caller of the function that called morestack */
#define GS_M_MOREBUF_SP    24  /* usize: its SP                             */
#define GS_M_P             48  /* *P: the P this M holds (0 without one)    */
#define GS_M_RUNNING       64  /* *G: for the monitor, the G running now     */
#define GS_M_SCHEDTICK     72  /* u64: goroutine starts on this M (monitor)  */
#define GS_M_PARKARGS      80  /* usize[4]: arguments of a parking operation */
#define GS_M_PARKRESULT    112 /* usize: its result (for the G resumed here) */
#define GS_M_PARKOK        120 /* usize: its second result (recv ok)         */
#define GS_M_LIBCALLSP     128 /* where the running G's managed code entered */
#define GS_M_LIBCALLPC     136 /*   a libcall: sp, pc, fp (sp 0: none)       */
#define GS_M_LIBCALLFP     144

/* ---- struct GExtra (a G's cold part, g->extra; may be 0) ------------- */
#define GS_GX_SYSCALLSP    0   /* where managed code entered a syscall: sp, pc, fp */
#define GS_GX_SYSCALLPC    8
#define GS_GX_SYSCALLFP    16

/* A new goroutine's arguments after g (6 words, the last spare) lie at
   sched.sp; gs_goentry loads them and pops this many bytes. */
#define GS_START_ARGS_SIZE 48

/* ---- struct P (a processor) ----------------------------------------- */
#define GS_P_STATE         0   /* u32: GS_P_RUNNING / GS_P_SYSCALL / GS_P_IDLE */
#define GS_P_RUNNING       0
#define GS_P_SYSCALL       1
#define GS_P_IDLE          2
#define GS_P_SHARED        24  /* u8: several Ps (the queue is locked)     */
#define GS_P_TICK          28  /* u32: schedules left before the global queue's turn */
#define GS_P_RUNQ_HEAD     32  /* *G: local run queue, linked by schedlink  */
#define GS_P_RUNQ_TAIL     40  /* *G                                        */
#define GS_P_RUNNEXT       56  /* *G: run ahead of the queue (one P: a goroutine a channel woke) */
#define GS_P_LEN           64  /* usize: run-queue length (several Ps), a line of its own */
/* What the holder leaves in runnext while it switches away from it
   (sched.rs's RUNNEXT_BUSY): not a G. */
#define GS_RUNNEXT_BUSY    1

/* GKind of a native goroutine (g.rs). */
#define GS_KIND_NATIVE     1

/* Status values the asm writes. */
#define GS_STATUS_RUNNABLE 1
#define GS_STATUS_RUNNING  2
#define GS_STATUS_SYSCALL  4

/* Value of stackguard0 that forces every entry check into morestack. */
#define GS_STACK_PREEMPT   0xfffffffffffffade

#if defined(__x86_64__)
/* ---- struct Context, x86-64 (System V) ------------------------------ */
#define GS_CTX_SP          0
#define GS_CTX_PC          8
#define GS_CTX_FP          16  /* rbp */
#define GS_CTX_RBX         24
#define GS_CTX_R12         32
#define GS_CTX_R13         40
#define GS_CTX_R14         48
#define GS_CTX_R15         56
#define GS_CTX_MXCSR       64  /* u32: SSE control/status (control bits are callee-saved) */
#define GS_CTX_FPCW        68  /* u16: x87 control word (callee-saved)     */
#define GS_CTX_SIZE        72
/* G fields that follow the context (schedlink, status and the flags the
   scheduler reads on every switch share its cache lines) */
#define GS_G_SCHEDLINK     104 /* *G: run-queue link                      */
#define GS_G_STATUS        112 /* u32: Status (Syscall = 4)               */
#define GS_G_CHAN_WAKE     118 /* u8: woken from a channel wait, to finish */
#define GS_G_INSYSCALL     119 /* u8: 1 while in a system call            */
#define GS_G_KIND          120 /* u8: GKind (GS_KIND_NATIVE ...)          */
#define GS_G_EXTRA         136 /* *GExtra or 0                            */
#define GS_G_SIZE          144

#elif defined(__aarch64__)
/* ---- struct Context, aarch64 (AAPCS64) ------------------------------ */
#define GS_CTX_SP          0
#define GS_CTX_PC          8
#define GS_CTX_FP          16  /* x29 */
#define GS_CTX_X19         24  /* x19..x28 at 24 + 8*(n-19)               */
#define GS_CTX_X21         40
#define GS_CTX_X23         56
#define GS_CTX_X25         72
#define GS_CTX_X27         88
#define GS_CTX_D8          104 /* d8..d15 (low 64 bits of v8..v15)        */
#define GS_CTX_D10         120
#define GS_CTX_D12         136
#define GS_CTX_D14         152
#define GS_CTX_SIZE        168
#define GS_G_SCHEDLINK     200 /* *G: run-queue link                      */
#define GS_G_STATUS        208 /* u32: Status (Syscall = 4)               */
#define GS_G_CHAN_WAKE     214 /* u8: woken from a channel wait, to finish */
#define GS_G_INSYSCALL     215 /* u8: 1 while in a system call            */
#define GS_G_KIND          216 /* u8: GKind (GS_KIND_NATIVE ...)          */
#define GS_G_EXTRA         232 /* *GExtra or 0                            */
#define GS_G_SIZE          240

#else
#error "gstack supports x86_64 and aarch64 only"
#endif

#endif /* GSTACK_ABI_H */
