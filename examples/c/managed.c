/*
 * A managed goroutine from C: a recursion written in assembly with the
 * macros of gstack_asm.h (recurse_<arch>.S) starts on a 2 KiB stack, grows
 * it by copying to a depth of 50,000 frames, comes back to the top, and
 * is shrunk by scan cycles while it waits.  Every frame holds a pointer
 * into itself, adjusted at every move; the recursion checks them all on
 * the way back.
 *
 * Built against the shared library here (examples/c/build.sh), which is
 * why it calls gs_register_asm(): libgstack.so cannot see this program's
 * declarations by itself.  Link with -Wl,-z,now: managed code must not
 * reach the dynamic linker's lazy binding on its small stack.
 */
#include <gstack.h>
#include <stdio.h>
#include <stdlib.h>

#define DEPTH 50000

#define CHECK(call)                                                          \
    do {                                                                     \
        int rc_ = (call);                                                    \
        if (rc_ != GS_OK) {                                                  \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__,     \
                    #call, gs_strerror(rc_), gs_last_error_message());       \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* The managed functions of recurse_<arch>.S. */
extern char ex_walker[];

/* Set by the walker (1: back at the top) and by us (2: finish). */
static volatile uintptr_t flag;
static gs_stats_t at_bottom;
static uint64_t bottom_id;
static size_t bottom_size;
static int failed;

/* Foreign code the recursion calls at its deepest point, as a libcall: it
   runs on the system stack while the goroutine's stack is pinned. */
static uintptr_t bottom(void *arg)
{
    (void)arg;
    CHECK(gs_stats(&at_bottom));
    CHECK(gs_id(&bottom_id));
    CHECK(gs_stack_size(bottom_id, &bottom_size));
    return 0;
}

static void main_goroutine(void *arg)
{
    (void)arg;
    uintptr_t args[3] = { DEPTH, (uintptr_t)&flag, (uintptr_t)bottom };
    uint64_t id;
    size_t size, start;
    gs_stats_t st;

    CHECK(gs_go_managed((uintptr_t)ex_walker, args, 3, 0, &id));
    CHECK(gs_stack_size(id, &start));
    printf("managed goroutine %llu: recursion to depth %d from a %zu-byte stack\n",
           (unsigned long long)id, DEPTH, start);

    while (flag != 1)
        CHECK(gs_yield_now());
    CHECK(gs_stack_size(id, &size));
    CHECK(gs_stats(&st));
    printf("  at the bottom (a libcall of goroutine %llu): stack %zu bytes\n",
           (unsigned long long)bottom_id, bottom_size);
    printf("  back at the top: stack %zu bytes, %llu copies (%llu bytes copied), peak %zu\n",
           size, (unsigned long long)st.stack_copies,
           (unsigned long long)st.stack_bytes_copied, st.stack_peak);
    if (bottom_id != id || size < (size_t)DEPTH * 48) {
        fprintf(stderr, "managed: the stack did not grow as expected\n");
        failed = 1;
    }

    char tb[2048];
    CHECK(gs_traceback(id, tb, sizeof tb, NULL));
    printf("  %s", tb);

    /* Scan cycles: each halves a stack that uses less than a quarter of
       itself, until it fits. */
    size_t grown = size;
    for (int i = 1; i <= 40; i++) {
        gs_gc_report r;
        CHECK(gs_gc(&r));
        CHECK(gs_stack_size(id, &size));
        printf("  gc %d: %zu goroutines scanned, %zu shrunk, %zu pending -> stack %zu bytes\n",
               i, r.scanned, r.shrunk, r.pending, size);
        if (r.shrunk == 0 && r.pending == 0)
            break;
    }
    if (size > grown / 64) {
        fprintf(stderr, "managed: the stack did not shrink (%zu of %zu)\n", size, grown);
        failed = 1;
    }

    flag = 2;
    uintptr_t result;
    int rc;
    while ((rc = gs_result(id, &result)) == GS_EAGAIN)
        CHECK(gs_yield_now());
    CHECK(rc);
    uintptr_t want = (uintptr_t)DEPTH * (DEPTH + 1) / 2;
    printf("  result %llu (want %llu): every frame's pointer survived the moves\n",
           (unsigned long long)result, (unsigned long long)want);
    if (result != want)
        failed = 1;
    CHECK(gs_stats(&st));
    printf("  grew from %zu to %zu bytes in %llu copies, shrank back to %zu in %llu scan cycles\n",
           start, grown, (unsigned long long)at_bottom.stack_copies, size,
           (unsigned long long)st.gc_cycles);
}

int main(void)
{
    gs_config cfg;
    CHECK(gs_config_default(&cfg));
    cfg.procs = 1;        /* one thread: the walker is parked whenever we look */
    cfg.gc_percent = 0;   /* no automatic cycles: ours only */
    CHECK(gs_init(&cfg));
    CHECK(gs_register_asm());
    CHECK(gs_run(main_goroutine, NULL));
    CHECK(gs_shutdown());
    if (failed) {
        fprintf(stderr, "managed: FAILED\n");
        return 1;
    }
    printf("managed: ok\n");
    return 0;
}
