/*
 * A managed recursion written with the assembler macros of gstack_asm.h
 * (aarch64; recurse_x86_64.S is the same for x86-64, with the frames and
 * contracts described there).  Driven by managed.c.
 *
 * ex_rec(g, depth, cb) -> depth + ... + 0, or -1
 *   [0] depth   [8] &[0]   [16] g   [24] cb
 * ex_walker(g, depth, flag, cb) -> what ex_rec returned
 *   [0] g   [8] flag   [16] result
 */
#include <gstack_asm.h>

GS_FUNC ex_rec, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x1, [sp]
        mov     x9, sp
        str     x9, [sp, #8]
        str     x0, [sp, #16]
        str     x2, [sp, #24]
        cbz     x1, .Lex_bottom
        sub     x1, x1, #1              /* g (x0) and cb (x2) pass on */
        GS_CALL ex_rec, 0b10
        tbnz    x0, #63, .Lex_ret
        b       .Lex_check
.Lex_bottom:
        cbz     x2, 1f
        mov     x1, x2                  /* gs_libcall(g, cb, NULL) */
        mov     x2, #0
        GS_CALL gs_libcall, 0b10
1:      mov     x0, #0
.Lex_check:
        ldr     x9, [sp, #8]            /* did the pointer move with us? */
        mov     x10, sp
        cmp     x9, x10
        b.ne    .Lex_bad
        ldr     x9, [sp]
        add     x0, x0, x9
        b       .Lex_ret
.Lex_bad:
        mov     x0, #-1
.Lex_ret:
        GS_EPILOGUE
GS_FUNC_END ex_rec

GS_FUNC ex_walker, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x0, [sp]
        str     x2, [sp, #8]
        mov     x2, x3                  /* ex_rec(g, depth, cb) */
        GS_CALL ex_rec, 0
        str     x0, [sp, #16]
        ldr     x10, [sp, #8]
        mov     x9, #1
        stlr    x9, [x10]               /* tell C: back at the top */
1:      ldr     x10, [sp, #8]
        ldar    x9, [x10]
        cmp     x9, #2
        b.eq    2f
        ldr     x0, [sp]
        GS_CALL gs_yield, 0
        b       1b
2:      ldr     x0, [sp, #16]
        GS_EPILOGUE
GS_FUNC_END ex_walker

        .section .note.GNU-stack, "", %progbits
