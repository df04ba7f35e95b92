/*
 * A managed recursion written with the assembler macros of gstack_asm.h
 * (x86-64; recurse_aarch64.S is the same for aarch64).  Driven by
 * managed.c.
 *
 * ex_rec(g, depth, cb) -> depth + (depth-1) + ... + 0, or -1
 *   frame (word i at SP + 8*i):
 *   [0] depth   [8] &[0]: a pointer into this very frame   [16] g   [24] cb
 *   Recurses to depth 0, where it calls cb(NULL) as a libcall (foreign C
 *   code, run on the system stack).  On the way back every frame checks
 *   that word 1 still points at word 0: the stack moved many times on the
 *   way down, and word 1 -- declared as a pointer at every call (mask
 *   0b10) -- was adjusted with it.
 *
 * ex_walker(g, depth, flag, cb) -> what ex_rec returned
 *   [0] g   [8] flag (a pointer to C memory, not into the stack)   [16] result
 *   Runs ex_rec(g, depth, cb), sets *flag = 1, then yields until C sets
 *   *flag = 2: a goroutine back at shallow depth on a big stack, waiting
 *   to be shrunk by a scan cycle.
 */
#include <gstack_asm.h>

        .intel_syntax noprefix

GS_FUNC ex_rec, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp], rsi
        mov     [rsp + 8], rsp
        mov     [rsp + 16], rdi
        mov     [rsp + 24], rdx
        test    rsi, rsi
        jz      .Lex_bottom
        lea     rsi, [rsi - 1]          /* g (rdi) and cb (rdx) pass on */
        GS_CALL ex_rec, 0b10
        test    rax, rax
        js      .Lex_ret
        jmp     .Lex_check
.Lex_bottom:
        test    rdx, rdx
        jz      1f
        mov     rsi, rdx                /* gs_libcall(g, cb, NULL) */
        xor     edx, edx
        GS_CALL gs_libcall, 0b10
1:      xor     eax, eax
.Lex_check:
        cmp     [rsp + 8], rsp          /* did the pointer move with us? */
        jne     .Lex_bad
        add     rax, [rsp]
        jmp     .Lex_ret
.Lex_bad:
        mov     rax, -1
.Lex_ret:
        GS_EPILOGUE
GS_FUNC_END ex_rec

GS_FUNC ex_walker, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp], rdi
        mov     [rsp + 8], rdx
        mov     rdx, rcx                /* ex_rec(g, depth, cb) */
        GS_CALL ex_rec, 0
        mov     [rsp + 16], rax
        mov     rcx, [rsp + 8]
        mov     qword ptr [rcx], 1      /* tell C: back at the top */
1:      mov     rcx, [rsp + 8]
        cmp     qword ptr [rcx], 2
        je      2f
        mov     rdi, [rsp]
        GS_CALL gs_yield, 0
        jmp     1b
2:      mov     rax, [rsp + 16]
        GS_EPILOGUE
GS_FUNC_END ex_walker

        .section .note.GNU-stack, "", @progbits
