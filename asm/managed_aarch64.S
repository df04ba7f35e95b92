/*
 * Managed functions written with the assembler macros of gstack_asm.h, for
 * gstack's own tests, benchmarks and demo (aarch64).  The same functions,
 * frames and contracts as asm/managed_x86_64.S (see the table there):
 *
 * gs_test_rec(g, depth, outer, outer_value, yields) -> checksum or -1-depth
 *   [0] own  [8] &own  [16] outer  [24] g  [32] depth  [40] outer_value
 *   [48] yields left  [56] pad
 * gs_test_list(g, depth, next, yields) -> sum or -1
 *   [0] value  [8] next  [16] g  [24] depth  [32] yields left  [40] sum
 * gs_test_plain(g, depth, yields), gs_test_dense(g, depth, yields): the
 *   same recursion with no pointer words and with eight
 * gs_test_mixed(g, depth, yields), gs_test_hop(g, depth, yields): a
 *   recursion through three call sites of two functions
 * gs_test_leaf(g, yields) -> 7
 * gs_test_calls_imprecise(g, yields) -> gs_test_imprecise (undeclared) ->
 *   gs_test_leaf (yields)
 */
#include "../include/gstack_asm.h"

GS_FUNC gs_test_rec, 64
        GS_PROLOGUE
        GS_ENTRY_CHECK 0b100            /* x2 = outer */
        add     x9, x1, x1, lsl #1
        add     x9, x9, #1
        str     x9, [sp]
        mov     x10, sp
        str     x10, [sp, #8]
        cbnz    x2, 1f
        mov     x2, sp                  /* the outermost frame: outer = own */
        mov     x3, x9
1:      str     x2, [sp, #16]
        str     x0, [sp, #24]
        str     x1, [sp, #32]
        str     x3, [sp, #40]
        str     x4, [sp, #48]
        cbz     x1, .Lrec_leaf
        sub     x1, x1, #1              /* x0, x2, x3, x4 pass on */
        GS_CALL gs_test_rec, 0b110
        tbnz    x0, #63, .Lrec_ret
        b       .Lrec_check
.Lrec_leaf:
        ldr     x9, [sp, #48]
        cbz     x9, 2f
        sub     x9, x9, #1
        str     x9, [sp, #48]
        ldr     x0, [sp, #24]
        GS_CALL gs_yield, 0b110
        b       .Lrec_leaf
2:      mov     x0, #0
.Lrec_check:
        ldr     x9, [sp, #8]
        mov     x10, sp
        cmp     x9, x10
        b.ne    .Lrec_bad
        ldr     x11, [sp, #32]
        add     x12, x11, x11, lsl #1
        add     x12, x12, #1
        ldr     x13, [x9]
        cmp     x13, x12
        b.ne    .Lrec_bad
        ldr     x9, [sp, #16]
        ldr     x13, [x9]
        ldr     x12, [sp, #40]
        cmp     x13, x12
        b.ne    .Lrec_bad
        ldr     x9, [sp]
        add     x0, x0, x9
        b       .Lrec_ret
.Lrec_bad:
        ldr     x9, [sp, #32]
        mvn     x0, x9
.Lrec_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_rec

GS_FUNC gs_test_list, 48
        GS_PROLOGUE
        GS_ENTRY_CHECK 0b100            /* x2 = next */
        add     x9, x1, #1
        str     x9, [sp]
        str     x2, [sp, #8]
        str     x0, [sp, #16]
        str     x1, [sp, #24]
        str     x3, [sp, #32]
        cbz     x1, .Llist_leaf
        sub     x1, x1, #1
        mov     x2, sp                  /* our node is the callee's next */
        GS_CALL gs_test_list, 0b10
        b       .Llist_ret
.Llist_leaf:
        mov     x9, sp
        mov     x0, #0
1:      ldr     x10, [x9]
        add     x0, x0, x10
        ldr     x9, [x9, #8]
        cbnz    x9, 1b
        str     x0, [sp, #40]
2:      ldr     x9, [sp, #32]
        cbz     x9, 3f
        sub     x9, x9, #1
        str     x9, [sp, #32]
        ldr     x0, [sp, #16]
        GS_CALL gs_yield, 0b10
        b       2b
3:      mov     x9, sp
        mov     x0, #0
1:      ldr     x10, [x9]
        add     x0, x0, x10
        ldr     x9, [x9, #8]
        cbnz    x9, 1b
        ldr     x10, [sp, #40]
        cmp     x0, x10
        b.eq    .Llist_ret
        mov     x0, #-1
.Llist_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_list

/* gs_test_plain(g, depth, yields) -> depth + 1; [0] g [8] depth: no pointers */
GS_FUNC gs_test_plain, 16
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x0, [sp]
        str     x1, [sp, #8]
        cbz     x1, .Lplain_leaf
        sub     x1, x1, #1
        GS_CALL gs_test_plain, 0
        add     x0, x0, #1
        GS_EPILOGUE
.Lplain_leaf:
        cbz     x2, 1f
        sub     x2, x2, #1
        str     x2, [sp, #8]
        GS_CALL gs_yield, 0
        ldr     x0, [sp]
        ldr     x2, [sp, #8]
        b       .Lplain_leaf
1:      mov     x0, #1
        GS_EPILOGUE
GS_FUNC_END gs_test_plain

/* gs_test_big(g, depth, yields): see asm/managed_x86_64.S. */
GS_FUNC gs_test_big, 512
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x0, [sp, #8]
        str     x1, [sp, #16]
        add     x9, sp, #16
        str     x9, [sp]
        cbz     x1, .Lbig_leaf
        sub     x1, x1, #1
        GS_CALL gs_test_big, 1
        cbz     x0, 9f
        ldr     x9, [sp]
        add     x10, sp, #16
        cmp     x9, x10
        b.ne    8f
        ldr     x9, [x9]
        ldr     x10, [sp, #16]
        cmp     x9, x10
        b.ne    8f
        add     x0, x0, #1
        GS_EPILOGUE
.Lbig_leaf:
        cbz     x2, 1f
        sub     x2, x2, #1
        str     x2, [sp, #24]
        ldr     x0, [sp, #8]
        GS_CALL gs_yield, 1
        ldr     x2, [sp, #24]
        b       .Lbig_leaf
1:      mov     x0, #1
        GS_EPILOGUE
8:      mov     x0, #0
9:      GS_EPILOGUE
GS_FUNC_END gs_test_big

/* gs_test_dense(g, depth, yields) -> depth + 1, or 0 if a pointer broke;
   [0..56] eight pointers to word 0 of this frame, [64] g, [72] depth */
GS_FUNC gs_test_dense, 80
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x0, [sp, #64]
        str     x1, [sp, #72]
        mov     x9, sp
        stp     x9, x9, [sp]
        stp     x9, x9, [sp, #16]
        stp     x9, x9, [sp, #32]
        stp     x9, x9, [sp, #48]
        cbz     x1, .Ldense_leaf
        sub     x1, x1, #1
        GS_CALL gs_test_dense, 0xff
        cbz     x0, .Ldense_ret
        add     x0, x0, #1
        b       .Ldense_check
.Ldense_leaf:
        cbz     x2, 1f
        sub     x2, x2, #1
        str     x2, [sp, #72]
        GS_CALL gs_yield, 0xff
        ldr     x0, [sp, #64]
        ldr     x2, [sp, #72]
        b       .Ldense_leaf
1:      mov     x0, #1
.Ldense_check:
        mov     x9, sp
        mov     x10, #0
2:      ldr     x11, [sp, x10, lsl #3]
        cmp     x11, x9
        b.ne    3f
        add     x10, x10, #1
        cmp     x10, #8
        b.ne    2b
        b       .Ldense_ret
3:      mov     x0, #0
.Ldense_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_dense

/* gs_test_mixed(g, depth, yields) -> depth + 1 + depth/8, or 0 if a
   pointer broke: see asm/managed_x86_64.S.  [0..32] this frame's SP,
   [40] g, [48] depth, [56] yields left. */
GS_FUNC gs_test_mixed, 64
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x0, [sp, #40]
        str     x1, [sp, #48]
        str     x2, [sp, #56]
        mov     x9, sp
        stp     x9, x9, [sp]
        stp     x9, x9, [sp, #16]
        str     x9, [sp, #32]
        cbz     x1, .Lmixed_leaf
        and     x9, x1, #7
        cbz     x9, .Lmixed_hop
        sub     x1, x1, #1
        cmp     x9, #4
        b.eq    .Lmixed_b
        GS_CALL gs_test_mixed, 0b11111
        b       .Lmixed_check5
.Lmixed_hop:
        GS_CALL gs_test_hop, 0b11111    /* x1 = depth: hop decrements */
        b       .Lmixed_check5
.Lmixed_b:
        GS_CALL gs_test_mixed, 0b00111
        cbz     x0, .Lmixed_ret
        b       .Lmixed_check3
.Lmixed_leaf:
        ldr     x9, [sp, #56]
        cbz     x9, 1f
        sub     x9, x9, #1
        str     x9, [sp, #56]
        ldr     x0, [sp, #40]
        GS_CALL gs_yield, 0b11111
        b       .Lmixed_leaf
1:      mov     x0, #0
        b       .Lmixed_check_hi
.Lmixed_check5:
        cbz     x0, .Lmixed_ret
.Lmixed_check_hi:
        mov     x9, sp
        ldr     x10, [sp, #24]
        cmp     x10, x9
        b.ne    .Lmixed_bad
        ldr     x10, [sp, #32]
        cmp     x10, x9
        b.ne    .Lmixed_bad
.Lmixed_check3:
        mov     x9, sp
        ldp     x10, x11, [sp]
        cmp     x10, x9
        b.ne    .Lmixed_bad
        cmp     x11, x9
        b.ne    .Lmixed_bad
        ldr     x10, [sp, #16]
        cmp     x10, x9
        b.ne    .Lmixed_bad
        add     x0, x0, #1
        b       .Lmixed_ret
.Lmixed_bad:
        mov     x0, #0
.Lmixed_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_mixed

/* gs_test_hop(g, depth, yields) -> gs_test_mixed(g, depth - 1, yields) + 1,
   or 0: [0] the caller's SP, [8] g, [16] depth, [24] yields. */
GS_FUNC gs_test_hop, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        add     x9, x29, #16            /* the caller's SP */
        str     x9, [sp]
        str     x0, [sp, #8]
        str     x1, [sp, #16]
        str     x2, [sp, #24]
        sub     x1, x1, #1
        GS_CALL gs_test_mixed, 0b1
        cbz     x0, 1f
        add     x9, x29, #16
        ldr     x10, [sp]
        cmp     x10, x9
        b.ne    2f
        ldr     x10, [x9]               /* the caller's word 0: its SP */
        cmp     x10, x9
        b.ne    2f
        add     x0, x0, #1
1:      GS_EPILOGUE
2:      mov     x0, #0
        GS_EPILOGUE
GS_FUNC_END gs_test_hop

/* gs_test_scenario(g, depth, op, arg1, arg2): see asm/managed_x86_64.S.
   [0] 0x5eed [8] &[0] [16] g [24] op [32] arg1 [40] arg2 */
GS_FUNC gs_test_scenario, 48
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     x9, #0x5eed
        str     x9, [sp]
        mov     x9, sp
        str     x9, [sp, #8]
        str     x0, [sp, #16]
        str     x2, [sp, #24]
        str     x3, [sp, #32]
        str     x4, [sp, #40]
        mov     x2, #0
        GS_CALL gs_test_plain, 0b10
        ldr     x0, [sp, #16]
        ldr     x9, [sp, #24]
        cmp     x9, #1
        b.eq    .Lsc_syscall
        cmp     x9, #2
        b.eq    .Lsc_libcall
        cmp     x9, #3
        b.eq    .Lsc_pin
        cmp     x9, #4
        b.eq    .Lsc_pingrow
        b       .Lsc_leaf
.Lsc_syscall:
        GS_CALL gs_entersyscall, 0b10
        ldr     x0, [sp, #40]
        ldr     x9, [sp, #32]
        GS_CALLR x9, 0b10
        ldr     x0, [sp, #16]
        GS_CALL gs_exitsyscall, 0b10
        b       .Lsc_leaf
.Lsc_libcall:
        ldr     x1, [sp, #32]
        ldr     x2, [sp, #40]
        GS_CALL gs_libcall, 0b10
        b       .Lsc_leaf
.Lsc_pin:
        GS_CALL gs_pin, 0b10
2:      ldr     x9, [sp, #40]
        cbz     x9, 3f
        sub     x9, x9, #1
        str     x9, [sp, #40]
        ldr     x0, [sp, #16]
        GS_CALL gs_yield, 0b10
        b       2b
3:      ldr     x0, [sp, #16]
        GS_CALL gs_unpin, 0b10
        b       .Lsc_leaf
.Lsc_pingrow:
        GS_CALL gs_pin, 0b10
        ldr     x0, [sp, #16]
        ldr     x1, [sp, #32]
        mov     x2, #0
        GS_CALL gs_test_plain, 0b10
.Lsc_leaf:
        ldr     x0, [sp, #16]
        mov     x1, #10000
        GS_CALL gs_test_leaf, 0b10
        mov     x0, #0
        ldr     x9, [sp, #8]
        mov     x10, sp
        cmp     x9, x10
        b.ne    1f
        ldr     x9, [sp]
        mov     x10, #0x5eed
        cmp     x9, x10
        b.ne    1f
        mov     x0, #1
1:      GS_EPILOGUE
GS_FUNC_END gs_test_scenario

/* Channel loops for the seed-001 tests: see asm/managed_x86_64.S for the
   contracts and frames (identical here). */
GS_FUNC gs_test_chan_recv, 48
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     xzr, [sp]
        str     x0, [sp, #8]
        str     x2, [sp, #16]
        str     x3, [sp, #24]
        str     xzr, [sp, #32]
        str     xzr, [sp, #40]
        mov     x2, #0
        GS_CALL gs_test_plain, 0
1:      ldr     x9, [sp, #24]
        cbz     x9, 2f
        ldr     x0, [sp, #8]
        ldr     x1, [sp, #16]
        mov     x2, sp
        GS_CALL gs_chanrecv, 0
        cbz     x0, 2f
        ldr     x9, [sp, #40]
        add     x9, x9, #1
        str     x9, [sp, #40]
        ldr     x10, [sp]
        mul     x10, x10, x9
        ldr     x11, [sp, #32]
        add     x11, x11, x10
        str     x11, [sp, #32]
        ldr     x9, [sp, #24]
        sub     x9, x9, #1
        str     x9, [sp, #24]
        b       1b
2:      ldr     x0, [sp, #32]
        GS_EPILOGUE
GS_FUNC_END gs_test_chan_recv

GS_FUNC gs_test_chan_send, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     xzr, [sp]
        str     x0, [sp, #8]
        str     x2, [sp, #16]
        str     x3, [sp, #24]
        mov     x2, #0
        GS_CALL gs_test_plain, 0
1:      ldr     x9, [sp]
        ldr     x10, [sp, #24]
        cmp     x9, x10
        b.eq    2f
        add     x9, x9, #1
        str     x9, [sp]
        ldr     x0, [sp, #8]
        ldr     x1, [sp, #16]
        mov     x2, sp
        GS_CALL gs_chansend, 0
        b       1b
2:      ldr     x0, [sp]
        GS_EPILOGUE
GS_FUNC_END gs_test_chan_send

GS_FUNC gs_test_chan_select, 112
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     x9, #1
        stp     xzr, xzr, [sp]
        str     x2, [sp, #16]
        str     x9, [sp, #24]
        mov     x10, sp
        str     x10, [sp, #32]
        str     x3, [sp, #40]
        str     x9, [sp, #48]
        add     x10, sp, #8
        str     x10, [sp, #56]
        str     x0, [sp, #64]
        str     x4, [sp, #72]
        stp     xzr, xzr, [sp, #80]
        str     xzr, [sp, #96]
        mov     x2, #0
        GS_CALL gs_test_plain, 0x90
1:      ldr     x9, [sp, #72]
        cbz     x9, 4f
        ldr     x0, [sp, #64]
        add     x1, sp, #16
        mov     x2, #2
        mov     x3, #1
        GS_CALL gs_select, 0x90
        cbz     x1, 4f
        ldr     x9, [sp, #72]
        sub     x9, x9, #1
        str     x9, [sp, #72]
        cbnz    x0, 2f
        ldr     x9, [sp]
        ldr     x10, [sp, #88]
        cmp     x9, x10
        b.ls    5f
        str     x9, [sp, #88]
        b       3f
2:      ldr     x9, [sp, #8]
        ldr     x10, [sp, #96]
        cmp     x9, x10
        b.ls    5f
        str     x9, [sp, #96]
3:      ldr     x10, [sp, #80]
        add     x10, x10, x9
        str     x10, [sp, #80]
        b       1b
4:      ldr     x0, [sp, #80]
        GS_EPILOGUE
5:      mov     x0, #-1
        GS_EPILOGUE
GS_FUNC_END gs_test_chan_select

/* gs_test_spin(g, flag, max): see asm/managed_x86_64.S. */
GS_FUNC gs_test_spin, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x0, [sp]
        str     x1, [sp, #8]
        str     xzr, [sp, #16]
        str     x2, [sp, #24]
1:      ldr     x9, [sp, #8]
        ldr     x9, [x9]
        cbnz    x9, 2f
        ldr     x9, [sp, #16]
        add     x9, x9, #1
        str     x9, [sp, #16]
        ldr     x10, [sp, #24]
        cmp     x9, x10
        b.hi    3f
        ldr     x0, [sp]
        mov     x1, #0
        GS_CALL gs_test_leaf, 0
        b       1b
2:      ldr     x0, [sp, #16]
        GS_EPILOGUE
3:      mov     x0, #0
        GS_EPILOGUE
GS_FUNC_END gs_test_spin

GS_FUNC gs_test_leaf, 16
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        str     x0, [sp]
        str     x1, [sp, #8]
1:      ldr     x9, [sp, #8]
        cbz     x9, 2f
        sub     x9, x9, #1
        str     x9, [sp, #8]
        ldr     x0, [sp]
        GS_CALL gs_yield, 0
        b       1b
2:      mov     x0, #7
        GS_EPILOGUE
GS_FUNC_END gs_test_leaf

/* Deliberately not declared: an ordinary frame with a frame record. */
        .text
        .globl  gs_test_imprecise
        .type   gs_test_imprecise, %function
        .p2align 4
gs_test_imprecise:
        hint    #34
        stp     x29, x30, [sp, #-32]!
        mov     x29, sp
        bl      gs_test_leaf
        ldp     x29, x30, [sp], #32
        ret
        .size   gs_test_imprecise, . - gs_test_imprecise

GS_FUNC gs_test_calls_imprecise, 16
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        GS_CALL gs_test_imprecise, 0
        GS_EPILOGUE
GS_FUNC_END gs_test_calls_imprecise

        .section .note.GNU-stack, "", %progbits
