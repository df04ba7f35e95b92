/*
 * Managed functions written with the assembler macros of gstack_asm.h, for
 * gstack's own tests, benchmarks and demo (x86-64).  They double as
 * examples of the macros, and they make sure the gstack_funcs section
 * exists in every program that links gstack.
 *
 * All take g first.  Frames (word i at SP + 8*i):
 *
 * gs_test_rec(g, depth, outer, outer_value, yields) -> checksum or -1-depth
 *   [0] own value = 3*depth+1      [8] &own value (points into this frame)
 *   [16] outer (points into the outermost frame)   [24] g
 *   [32] depth  [40] outer_value  [48] yields left  [56] pad
 *   Recurses to depth 0, yields `yields` times there, and on the way back
 *   checks in every frame that [8] still points at [0], that [0] still is
 *   3*depth+1, and that *outer is still outer_value.  Returns the sum of
 *   all own values, or -1-depth of the first frame whose check failed.
 *
 * gs_test_list(g, depth, next, yields) -> sum or -1
 *   [0] node.value = depth+1   [8] node.next (the caller's node)  [16] g
 *   [24] depth  [32] yields left  [40] first sum
 *   A linked list threaded through every frame; the innermost frame sums
 *   it, yields, sums it again, and returns the sum (or -1 if they differ).
 *
 * gs_test_plain(g, depth, yields), gs_test_dense(g, depth, yields): the
 *   same recursion with no pointer words and with eight (see below).
 *
 * gs_test_mixed(g, depth, yields), gs_test_hop: a recursion through three
 *   call sites of two functions (see below).
 *
 * gs_test_scenario(g, depth, op, arg1, arg2): grow, then a syscall, a
 *   libcall or a pin around a live stack pointer, then a safe point (below).
 *
 * gs_test_leaf(g, yields) -> 7: yields `yields` times.
 *
 * gs_test_calls_imprecise(g, yields): calls gs_test_imprecise, an ordinary
 *   frame that is NOT declared (no stack map), which calls gs_test_leaf,
 *   which yields: a managed goroutine with an imprecise frame in the middle.
 */
#include "../include/gstack_asm.h"

        .intel_syntax noprefix

GS_FUNC gs_test_rec, 64
        GS_PROLOGUE
        GS_ENTRY_CHECK 0b100            /* rdx = outer */
        lea     rax, [rsi + rsi*2 + 1]
        mov     [rsp], rax
        mov     [rsp + 8], rsp
        test    rdx, rdx
        jnz     1f
        mov     rdx, rsp                /* the outermost frame: outer = own */
        mov     rcx, rax
1:      mov     [rsp + 16], rdx
        mov     [rsp + 24], rdi
        mov     [rsp + 32], rsi
        mov     [rsp + 40], rcx
        mov     [rsp + 48], r8
        test    rsi, rsi
        jz      .Lrec_leaf
        lea     rsi, [rsi - 1]          /* rdi, rdx, rcx, r8 pass on */
        GS_CALL gs_test_rec, 0b110
        test    rax, rax
        js      .Lrec_ret
        jmp     .Lrec_check
.Lrec_leaf:
        cmp     qword ptr [rsp + 48], 0
        je      2f
        dec     qword ptr [rsp + 48]
        mov     rdi, [rsp + 24]
        GS_CALL gs_yield, 0b110
        jmp     .Lrec_leaf
2:      xor     eax, eax
.Lrec_check:
        mov     rcx, [rsp + 8]
        cmp     rcx, rsp
        jne     .Lrec_bad
        mov     rdx, [rsp + 32]
        lea     rdx, [rdx + rdx*2 + 1]
        cmp     [rcx], rdx
        jne     .Lrec_bad
        mov     rcx, [rsp + 16]
        mov     rdx, [rcx]
        cmp     rdx, [rsp + 40]
        jne     .Lrec_bad
        add     rax, [rsp]
        jmp     .Lrec_ret
.Lrec_bad:
        mov     rax, [rsp + 32]
        not     rax
.Lrec_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_rec

GS_FUNC gs_test_list, 48
        GS_PROLOGUE
        GS_ENTRY_CHECK 0b100            /* rdx = next */
        lea     rax, [rsi + 1]
        mov     [rsp], rax
        mov     [rsp + 8], rdx
        mov     [rsp + 16], rdi
        mov     [rsp + 24], rsi
        mov     [rsp + 32], rcx
        test    rsi, rsi
        jz      .Llist_leaf
        lea     rsi, [rsi - 1]
        mov     rdx, rsp                /* our node is the callee's next */
        GS_CALL gs_test_list, 0b10
        jmp     .Llist_ret
.Llist_leaf:
        mov     rdx, rsp
        xor     eax, eax
1:      add     rax, [rdx]
        mov     rdx, [rdx + 8]
        test    rdx, rdx
        jnz     1b
        mov     [rsp + 40], rax
2:      cmp     qword ptr [rsp + 32], 0
        je      3f
        dec     qword ptr [rsp + 32]
        mov     rdi, [rsp + 16]
        GS_CALL gs_yield, 0b10
        jmp     2b
3:      mov     rdx, rsp
        xor     eax, eax
1:      add     rax, [rdx]
        mov     rdx, [rdx + 8]
        test    rdx, rdx
        jnz     1b
        cmp     rax, [rsp + 40]
        je      .Llist_ret
        mov     rax, -1
.Llist_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_list

/*
 * gs_test_plain(g, depth, yields) -> depth + 1
 *   [0] g [8] depth: no pointers at all (an empty map at every call).
 */
GS_FUNC gs_test_plain, 16
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp], rdi
        mov     [rsp + 8], rsi
        test    rsi, rsi
        jz      .Lplain_leaf
        lea     rsi, [rsi - 1]
        GS_CALL gs_test_plain, 0
        inc     rax
        GS_EPILOGUE
.Lplain_leaf:
        test    rdx, rdx
        jz      1f
        dec     rdx
        mov     [rsp + 8], rdx
        GS_CALL gs_yield, 0
        mov     rdi, [rsp]
        mov     rdx, [rsp + 8]
        jmp     .Lplain_leaf
1:      mov     eax, 1
        GS_EPILOGUE
GS_FUNC_END gs_test_plain

/*
 * gs_test_big(g, depth, yields) -> depth + 1, or 0 if a pointer broke.
 *   A 512-byte frame: its saved FP lies past the first 64 words of the
 *   frame's map.  [0] points at [16] (the depth), [8] g, [24] yields left.
 */
GS_FUNC gs_test_big, 512
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp + 8], rdi
        mov     [rsp + 16], rsi
        lea     rax, [rsp + 16]
        mov     [rsp], rax
        test    rsi, rsi
        jz      .Lbig_leaf
        lea     rsi, [rsi - 1]
        GS_CALL gs_test_big, 1
        test    rax, rax
        jz      9f
        mov     rcx, [rsp]
        lea     rdx, [rsp + 16]
        cmp     rcx, rdx
        jne     8f
        mov     rcx, [rcx]
        cmp     rcx, [rsp + 16]
        jne     8f
        inc     rax
        GS_EPILOGUE
.Lbig_leaf:
        test    rdx, rdx
        jz      1f
        dec     rdx
        mov     [rsp + 24], rdx
        mov     rdi, [rsp + 8]
        GS_CALL gs_yield, 1
        mov     rdx, [rsp + 24]
        jmp     .Lbig_leaf
1:      mov     eax, 1
        GS_EPILOGUE
8:      xor     eax, eax
9:      GS_EPILOGUE
GS_FUNC_END gs_test_big

/*
 * gs_test_dense(g, depth, yields) -> depth + 1, or 0 if a pointer broke
 *   [0..56] eight words, every one a pointer to word 0 of this frame (a
 *   map with every pointer word set), [64] g, [72] depth / yields left.
 */
GS_FUNC gs_test_dense, 80
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp + 64], rdi
        mov     [rsp + 72], rsi
        mov     [rsp], rsp
        mov     [rsp + 8], rsp
        mov     [rsp + 16], rsp
        mov     [rsp + 24], rsp
        mov     [rsp + 32], rsp
        mov     [rsp + 40], rsp
        mov     [rsp + 48], rsp
        mov     [rsp + 56], rsp
        test    rsi, rsi
        jz      .Ldense_leaf
        lea     rsi, [rsi - 1]
        GS_CALL gs_test_dense, 0xff
        test    rax, rax
        jz      .Ldense_ret
        inc     rax
        jmp     .Ldense_check
.Ldense_leaf:
        test    rdx, rdx
        jz      1f
        dec     rdx
        mov     [rsp + 72], rdx
        GS_CALL gs_yield, 0xff
        mov     rdi, [rsp + 64]
        mov     rdx, [rsp + 72]
        jmp     .Ldense_leaf
1:      mov     eax, 1
.Ldense_check:
        xor     ecx, ecx
2:      cmp     [rsp + rcx*8], rsp
        jne     3f
        inc     ecx
        cmp     ecx, 8
        jne     2b
        jmp     .Ldense_ret
3:      xor     eax, eax
.Ldense_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_dense

/*
 * gs_test_mixed(g, depth, yields) -> depth + 1 + depth/8, or 0 if a
 *   pointer broke.  [0..32] five words holding this frame's SP, [40] g,
 *   [48] depth, [56] yields left.  Recurses to depth 0 (yielding `yields`
 *   times there) through one of three call sites chosen by depth % 8:
 *     0 (depth > 0): through gs_test_hop(g, depth, yields), which calls
 *        gs_test_mixed(g, depth - 1, yields) -- a frame of another size;
 *     4: site B, whose map has only [0..16]: [24] and [32] are integers
 *        there, and keep the pre-move SP when the stack moves;
 *     else: site A, all five words mapped.
 *   So runs of three frames returning to one call site (A) are broken by
 *   frames of other sites and sizes.  On the way back every frame checks
 *   that its mapped words still hold its SP.
 *
 * gs_test_hop(g, depth, yields) -> gs_test_mixed(g, depth - 1, yields) + 1,
 *   or 0 if a pointer broke.  [0] the caller's SP (so a pointer to the
 *   caller's word 0: into another frame), [8] g, [16] depth, [24] yields.
 */
GS_FUNC gs_test_mixed, 64
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp + 40], rdi
        mov     [rsp + 48], rsi
        mov     [rsp + 56], rdx
        mov     [rsp], rsp
        mov     [rsp + 8], rsp
        mov     [rsp + 16], rsp
        mov     [rsp + 24], rsp
        mov     [rsp + 32], rsp
        test    rsi, rsi
        jz      .Lmixed_leaf
        mov     eax, esi
        and     eax, 7
        jz      .Lmixed_hop
        lea     rsi, [rsi - 1]
        cmp     eax, 4
        je      .Lmixed_b
        GS_CALL gs_test_mixed, 0b11111
        jmp     .Lmixed_check5
.Lmixed_hop:
        GS_CALL gs_test_hop, 0b11111    /* rsi = depth: hop decrements */
        jmp     .Lmixed_check5
.Lmixed_b:
        GS_CALL gs_test_mixed, 0b00111
        test    rax, rax
        jz      .Lmixed_ret
        jmp     .Lmixed_check3
.Lmixed_leaf:
        cmp     qword ptr [rsp + 56], 0
        je      1f
        dec     qword ptr [rsp + 56]
        mov     rdi, [rsp + 40]
        GS_CALL gs_yield, 0b11111
        jmp     .Lmixed_leaf
1:      xor     eax, eax
        jmp     .Lmixed_check_hi
.Lmixed_check5:
        test    rax, rax
        jz      .Lmixed_ret
.Lmixed_check_hi:
        cmp     [rsp + 24], rsp
        jne     .Lmixed_bad
        cmp     [rsp + 32], rsp
        jne     .Lmixed_bad
.Lmixed_check3:
        cmp     [rsp], rsp
        jne     .Lmixed_bad
        cmp     [rsp + 8], rsp
        jne     .Lmixed_bad
        cmp     [rsp + 16], rsp
        jne     .Lmixed_bad
        inc     rax
        jmp     .Lmixed_ret
.Lmixed_bad:
        xor     eax, eax
.Lmixed_ret:
        GS_EPILOGUE
GS_FUNC_END gs_test_mixed

GS_FUNC gs_test_hop, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        lea     rax, [rbp + 16]         /* the caller's SP */
        mov     [rsp], rax
        mov     [rsp + 8], rdi
        mov     [rsp + 16], rsi
        mov     [rsp + 24], rdx
        lea     rsi, [rsi - 1]
        GS_CALL gs_test_mixed, 0b1
        test    rax, rax
        jz      1f
        lea     rcx, [rbp + 16]
        cmp     [rsp], rcx
        jne     2f
        cmp     [rcx], rcx              /* the caller's word 0: its SP */
        jne     2f
        inc     rax
1:      GS_EPILOGUE
2:      xor     eax, eax
        GS_EPILOGUE
GS_FUNC_END gs_test_hop

/*
 * gs_test_scenario(g, depth, op, arg1, arg2) -> 1 if its pointer survived
 *   [0] value 0x5eed  [8] &[0] (a pointer into this frame)  [16] g
 *   [24] op  [32] arg1  [40] arg2
 * Grows the stack with gs_test_plain(g, depth, 0), which returns: the
 * stack is now big and almost unused.  Then, with [8] live:
 *   op 1: gs_entersyscall(g); arg1(arg2); gs_exitsyscall(g)
 *   op 2: gs_libcall(g, arg1, arg2)
 *   op 3: gs_pin(g); gs_yield(g) arg2 times; gs_unpin(g)
 *   op 4: gs_pin(g); gs_test_plain(g, arg1, 0) (growth while pinned)
 * and then calls gs_test_leaf(g, 10000), whose entry check is a
 * synchronous safe point and which yields 10,000 times.  Returns 1 if [8] still points at [0] and
 * [0] is intact, else 0.
 */
GS_FUNC gs_test_scenario, 48
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     qword ptr [rsp], 0x5eed
        mov     [rsp + 8], rsp
        mov     [rsp + 16], rdi
        mov     [rsp + 24], rdx
        mov     [rsp + 32], rcx
        mov     [rsp + 40], r8
        xor     edx, edx
        GS_CALL gs_test_plain, 0b10
        mov     rdi, [rsp + 16]
        mov     rax, [rsp + 24]
        cmp     rax, 1
        je      .Lsc_syscall
        cmp     rax, 2
        je      .Lsc_libcall
        cmp     rax, 3
        je      .Lsc_pin
        cmp     rax, 4
        je      .Lsc_pingrow
        jmp     .Lsc_leaf
.Lsc_syscall:
        GS_CALL gs_entersyscall, 0b10
        mov     rdi, [rsp + 40]
        mov     rax, [rsp + 32]
        GS_CALL rax, 0b10
        mov     rdi, [rsp + 16]
        GS_CALL gs_exitsyscall, 0b10
        jmp     .Lsc_leaf
.Lsc_libcall:
        mov     rsi, [rsp + 32]
        mov     rdx, [rsp + 40]
        GS_CALL gs_libcall, 0b10
        jmp     .Lsc_leaf
.Lsc_pin:
        GS_CALL gs_pin, 0b10
2:      cmp     qword ptr [rsp + 40], 0
        je      3f
        dec     qword ptr [rsp + 40]
        mov     rdi, [rsp + 16]
        GS_CALL gs_yield, 0b10
        jmp     2b
3:      mov     rdi, [rsp + 16]
        GS_CALL gs_unpin, 0b10
        jmp     .Lsc_leaf
.Lsc_pingrow:
        GS_CALL gs_pin, 0b10
        mov     rdi, [rsp + 16]
        mov     rsi, [rsp + 32]
        xor     edx, edx
        GS_CALL gs_test_plain, 0b10
.Lsc_leaf:
        mov     rdi, [rsp + 16]
        mov     esi, 10000
        GS_CALL gs_test_leaf, 0b10
        xor     eax, eax
        cmp     [rsp + 8], rsp
        jne     1f
        cmp     qword ptr [rsp], 0x5eed
        jne     1f
        mov     eax, 1
1:      GS_EPILOGUE
GS_FUNC_END gs_test_scenario

/*
 * Channel loops for the seed-001 tests: each first grows its stack with
 * gs_test_plain(g, depth, 0) (so a scan can shrink it while it waits),
 * then works on channels with its elements in its own frame.
 *
 * gs_test_chan_recv(g, depth, chan, count) -> sum of value * i (i = 1..)
 *   [0] slot (receive here)  [8] g  [16] chan  [24] left  [32] sum  [40] i
 * gs_test_chan_send(g, depth, chan, count) -> count: sends 1..=count
 *   [0] value (sent from here)  [8] g  [16] chan  [24] left
 * gs_test_chan_select(g, depth, a, b, count) -> sum, or -1 if a channel's
 *   values came out of order.  Receives `count` values from a or b with a
 *   select whose cases live in the frame (a may equal b):
 *   [0] slot a  [8] slot b  [16] case0 {a, RECV, &[0]}  [40] case1 {b,
 *   RECV, &[8]}  [64] g  [72] left  [80] sum  [88] last a  [96] last b
 *   The cases' elem words (4 and 7) point into the frame: mapped.
 */
GS_FUNC gs_test_chan_recv, 48
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     qword ptr [rsp], 0
        mov     [rsp + 8], rdi
        mov     [rsp + 16], rdx
        mov     [rsp + 24], rcx
        mov     qword ptr [rsp + 32], 0
        mov     qword ptr [rsp + 40], 0
        xor     edx, edx
        GS_CALL gs_test_plain, 0
1:      cmp     qword ptr [rsp + 24], 0
        je      2f
        mov     rdi, [rsp + 8]
        mov     rsi, [rsp + 16]
        lea     rdx, [rsp]
        GS_CALL gs_chanrecv, 0
        test    rax, rax
        jz      2f
        inc     qword ptr [rsp + 40]
        mov     rax, [rsp]
        imul    rax, [rsp + 40]
        add     [rsp + 32], rax
        dec     qword ptr [rsp + 24]
        jmp     1b
2:      mov     rax, [rsp + 32]
        GS_EPILOGUE
GS_FUNC_END gs_test_chan_recv

GS_FUNC gs_test_chan_send, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     qword ptr [rsp], 0
        mov     [rsp + 8], rdi
        mov     [rsp + 16], rdx
        mov     [rsp + 24], rcx
        xor     edx, edx
        GS_CALL gs_test_plain, 0
1:      mov     rax, [rsp]
        cmp     rax, [rsp + 24]
        je      2f
        inc     qword ptr [rsp]
        mov     rdi, [rsp + 8]
        mov     rsi, [rsp + 16]
        lea     rdx, [rsp]
        GS_CALL gs_chansend, 0
        jmp     1b
2:      mov     rax, [rsp]
        GS_EPILOGUE
GS_FUNC_END gs_test_chan_send

GS_FUNC gs_test_chan_select, 112
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     qword ptr [rsp], 0
        mov     qword ptr [rsp + 8], 0
        mov     [rsp + 16], rdx
        mov     qword ptr [rsp + 24], 1
        mov     [rsp + 32], rsp
        mov     [rsp + 40], rcx
        mov     qword ptr [rsp + 48], 1
        lea     rax, [rsp + 8]
        mov     [rsp + 56], rax
        mov     [rsp + 64], rdi
        mov     [rsp + 72], r8
        mov     qword ptr [rsp + 80], 0
        mov     qword ptr [rsp + 88], 0
        mov     qword ptr [rsp + 96], 0
        xor     edx, edx
        GS_CALL gs_test_plain, 0x90
1:      cmp     qword ptr [rsp + 72], 0
        je      4f
        mov     rdi, [rsp + 64]
        lea     rsi, [rsp + 16]
        mov     edx, 2
        mov     ecx, 1
        GS_CALL gs_select, 0x90
        test    rdx, rdx
        jz      4f
        dec     qword ptr [rsp + 72]
        test    rax, rax
        jnz     2f
        mov     rax, [rsp]
        cmp     rax, [rsp + 88]
        jbe     5f
        mov     [rsp + 88], rax
        add     [rsp + 80], rax
        jmp     1b
2:      mov     rax, [rsp + 8]
        cmp     rax, [rsp + 96]
        jbe     5f
        mov     [rsp + 96], rax
        add     [rsp + 80], rax
        jmp     1b
4:      mov     rax, [rsp + 80]
        GS_EPILOGUE
5:      mov     rax, -1
        GS_EPILOGUE
GS_FUNC_END gs_test_chan_select

/*
 * gs_test_spin(g, flag, max) -> calls made, or 0 if max calls passed
 *   A tight loop of calls (to gs_test_leaf(g, 0)) that never yields by
 *   itself; it stops when *flag becomes non-zero.  [0] g [8] flag
 *   [16] count [24] max.  Only preemption lets others run meanwhile.
 */
GS_FUNC gs_test_spin, 32
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp], rdi
        mov     [rsp + 8], rsi
        mov     qword ptr [rsp + 16], 0
        mov     [rsp + 24], rdx
1:      mov     rax, [rsp + 8]
        cmp     qword ptr [rax], 0
        jne     2f
        inc     qword ptr [rsp + 16]
        mov     rax, [rsp + 16]
        cmp     rax, [rsp + 24]
        ja      3f
        mov     rdi, [rsp]
        xor     esi, esi
        GS_CALL gs_test_leaf, 0
        jmp     1b
2:      mov     rax, [rsp + 16]
        GS_EPILOGUE
3:      xor     eax, eax
        GS_EPILOGUE
GS_FUNC_END gs_test_spin

GS_FUNC gs_test_leaf, 16
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        mov     [rsp], rdi
        mov     [rsp + 8], rsi
1:      cmp     qword ptr [rsp + 8], 0
        je      2f
        dec     qword ptr [rsp + 8]
        mov     rdi, [rsp]
        GS_CALL gs_yield, 0
        jmp     1b
2:      mov     eax, 7
        GS_EPILOGUE
GS_FUNC_END gs_test_leaf

/* Deliberately not declared: an ordinary frame with a frame record. */
        .text
        .globl  gs_test_imprecise
        .type   gs_test_imprecise, @function
        .p2align 4
gs_test_imprecise:
        push    rbp
        mov     rbp, rsp
        sub     rsp, 16
        call    gs_test_leaf
        mov     rsp, rbp
        pop     rbp
        ret
        .size   gs_test_imprecise, . - gs_test_imprecise

GS_FUNC gs_test_calls_imprecise, 16
        GS_PROLOGUE
        GS_ENTRY_CHECK 0
        GS_CALL gs_test_imprecise, 0
        GS_EPILOGUE
GS_FUNC_END gs_test_calls_imprecise

        .section .note.GNU-stack, "", @progbits
