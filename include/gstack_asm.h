/*
 * gstack_asm.h -- assembler macros for hand-written managed functions.
 *
 * Include it from a preprocessed assembly file (.S) on x86-64 (Intel
 * syntax, `.intel_syntax noprefix`) or aarch64.  A function written with
 * these macros is *managed*: the runtime knows its frame at every call it
 * makes, so a goroutine running it can have its stack moved.  The
 * declarations go into the `gstack_funcs` / `gstack_sites` linker sections
 * and the runtime registers them by itself the first time it looks at its
 * function table; nothing to call.
 *
 *   GS_FUNC name, frame        start a function; `frame` = bytes of locals
 *                              between SP and FP (a multiple of 16, at most
 *                              GS_MAX_LOCALS), word i at SP + 8*i
 *   GS_PROLOGUE                build the frame record and the frame
 *   GS_ENTRY_CHECK argmask     compare SP with g->stackguard0 (g in the
 *                              first argument register) and call
 *                              gs_morestack when below; bit i of argmask says
 *                              argument register i (after none: g is 0) may
 *                              hold a pointer into the stack.  Argument
 *                              registers are preserved (reloaded from the
 *                              moved stack).
 *   GS_CALL target, ptrmask    call `target`; bit i of ptrmask says word i of
 *                              the frame (SP + 8*i) may hold a pointer at
 *                              this call.  Those words must be initialised.
 *   GS_EPILOGUE                tear the frame down and return
 *   GS_FUNC_END name           end the function
 *
 * Rules of the frame ABI (see the crate docs):
 * - g (the goroutine) is the first argument and stays valid (a G never
 *   moves); keep it in the frame or a callee-saved register across calls.
 * - After any GS_CALL or GS_ENTRY_CHECK the stack may have moved: SP and FP
 *   are updated, mapped words pointing into the stack are adjusted, but
 *   registers are not -- do not keep a stack address in a register across
 *   a call; keep it in a mapped word.
 * - Do not change SP between GS_PROLOGUE and GS_EPILOGUE (no push/pop):
 *   every call site's frame is exactly `frame` bytes.
 */
#ifndef GSTACK_ASM_H
#define GSTACK_ASM_H

#include "gstack_abi.h"

/* Largest `frame` accepted: what a call site's 64-bit pointer map can
   describe (64 words), and the frame plus its record and the argument
   spill of the entry check fit in the stack guard (928 bytes). */
#define GS_MAX_LOCALS 512

/* What GS_FUNC emits on both architectures: checks, the current frame
   size, the name, and the function record (whose largest-frame field is
   frame + `overhead`: the frame record, the return address on x86-64, and
   the entry check's spill). */
.macro GS_FUNC_RECORD name, frame, overhead
        .if (\frame) % 16
        .error "GS_FUNC: frame must be a multiple of 16"
        .endif
        .if (\frame) > GS_MAX_LOCALS
        .error "GS_FUNC: frame larger than GS_MAX_LOCALS"
        .endif
        .set    gs_cur_frame, \frame
        .pushsection .rodata.gstack_names, "a"
.Lgs_name_\name:
        .asciz  "\name"
        .popsection
        .pushsection gstack_sites, "aw"
        .p2align 3
.Lgs_sites_\name:
        .popsection
        .pushsection gstack_funcs, "awR"
        .p2align 3
        .quad   \name, .Lgs_end_\name, .Lgs_name_\name
        .quad   .Lgs_sites_\name, .Lgs_sites_end_\name
        .quad   (\frame) + (\overhead)
        .popsection
.endm

#if defined(__x86_64__)

.macro GS_FUNC name, frame
        /* record + return address (16), the entry check's spill (48) */
        GS_FUNC_RECORD \name, \frame, 16 + 48
        .text
        .globl  \name
        .type   \name, @function
        .p2align 4
\name:
.endm

.macro GS_PROLOGUE
        push    rbp
        mov     rbp, rsp
        .if gs_cur_frame
        sub     rsp, gs_cur_frame
        .endif
.endm

.macro GS_EPILOGUE
        /* SP is FP - frame here (the frame never changes size), so add to
           it rather than reload it from rbp: that would chain every return
           of a deep recursion on the load before it. */
        .if gs_cur_frame
        add     rsp, gs_cur_frame
        .endif
        pop     rbp
        ret
.endm

.macro GS_CALL target, ptrmask=0
        call    \target
        .pushsection gstack_sites, "aw"
        .quad   .Lgs_ret_\@, gs_cur_frame, \ptrmask
        .popsection
.Lgs_ret_\@:
.endm

.macro GS_ENTRY_CHECK argmask=0
        cmp     rsp, [rdi + GS_G_STACKGUARD0]
        jae     .Lgs_ok_\@
        sub     rsp, 48
        mov     [rsp], rdi
        mov     [rsp + 8], rsi
        mov     [rsp + 16], rdx
        mov     [rsp + 24], rcx
        mov     [rsp + 32], r8
        mov     [rsp + 40], r9
        call    gs_morestack
        .pushsection gstack_sites, "aw"
        .quad   .Lgs_ret_\@, gs_cur_frame + 48, \argmask
        .popsection
.Lgs_ret_\@:
        mov     rdi, [rsp]
        mov     rsi, [rsp + 8]
        mov     rdx, [rsp + 16]
        mov     rcx, [rsp + 24]
        mov     r8,  [rsp + 32]
        mov     r9,  [rsp + 40]
        add     rsp, 48
.Lgs_ok_\@:
.endm

#elif defined(__aarch64__)

.macro GS_FUNC name, frame
        /* record (16), the entry check's spill (64) */
        GS_FUNC_RECORD \name, \frame, 16 + 64
        .text
        .globl  \name
        .type   \name, %function
        .p2align 4
\name:
        hint    #34                      /* bti c */
.endm

.macro GS_PROLOGUE
        stp     x29, x30, [sp, #-16]!
        mov     x29, sp
        .if gs_cur_frame
        sub     sp, sp, #gs_cur_frame
        .endif
.endm

.macro GS_EPILOGUE
        /* SP is FP - frame here: add to it rather than copy x29 (see the
           x86-64 version). */
        .if gs_cur_frame
        add     sp, sp, #gs_cur_frame
        .endif
        ldp     x29, x30, [sp], #16
        ret
.endm

.macro GS_CALL target, ptrmask=0
        bl      \target
        .pushsection gstack_sites, "aw"
        .quad   .Lgs_ret_\@, gs_cur_frame, \ptrmask
        .popsection
.Lgs_ret_\@:
.endm

/* As GS_CALL, for a call through a register (blr). */
.macro GS_CALLR reg, ptrmask=0
        blr     \reg
        .pushsection gstack_sites, "aw"
        .quad   .Lgs_ret_\@, gs_cur_frame, \ptrmask
        .popsection
.Lgs_ret_\@:
.endm

.macro GS_ENTRY_CHECK argmask=0
        ldr     x16, [x0, #GS_G_STACKGUARD0]
        mov     x17, sp
        cmp     x17, x16
        b.hs    .Lgs_ok_\@
        stp     x0, x1, [sp, #-64]!
        stp     x2, x3, [sp, #16]
        stp     x4, x5, [sp, #32]
        stp     x6, x7, [sp, #48]
        bl      gs_morestack
        .pushsection gstack_sites, "aw"
        .quad   .Lgs_ret_\@, gs_cur_frame + 64, \argmask
        .popsection
.Lgs_ret_\@:
        ldp     x2, x3, [sp, #16]
        ldp     x4, x5, [sp, #32]
        ldp     x6, x7, [sp, #48]
        ldp     x0, x1, [sp], #64
.Lgs_ok_\@:
.endm

#else
#error "gstack_asm.h supports x86_64 and aarch64 only"
#endif

.macro GS_FUNC_END name
.Lgs_end_\name:
        .size   \name, . - \name
        .pushsection gstack_sites, "aw"
.Lgs_sites_end_\name:
        .popsection
.endm

#endif /* GSTACK_ASM_H */
