/*
 * Native goroutines in a pipeline with channels, in plain C:
 *
 *   generate 1..N --nums--> 4 x square --squares--> sum (main goroutine)
 *
 * The squarers report on `done` when the numbers run out; the main
 * goroutine selects on `squares` and `done` until every squarer is done.
 * Built against the static library (examples/c/build.sh).
 */
#include <gstack.h>
#include <stdio.h>
#include <stdlib.h>

#define N 10000
#define WORKERS 4

#define CHECK(call)                                                          \
    do {                                                                     \
        int rc_ = (call);                                                    \
        if (rc_ != GS_OK) {                                                  \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__,     \
                    #call, gs_strerror(rc_), gs_last_error_message());       \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static gs_chan nums, squares, done;
static unsigned long long total;

static void generate(void *arg)
{
    (void)arg;
    for (long i = 1; i <= N; i++)
        CHECK(gs_chan_send(nums, &i));
    CHECK(gs_chan_close(nums));
}

static void square(void *arg)
{
    (void)arg;
    long n, count = 0;
    int ok;
    for (;;) {
        CHECK(gs_chan_recv(nums, &n, &ok));
        if (!ok)
            break;              /* closed and empty */
        unsigned long long sq = (unsigned long long)n * n;
        CHECK(gs_chan_send(squares, &sq));
        count++;
    }
    CHECK(gs_chan_send(done, &count));
}

static void sum(void *arg)
{
    (void)arg;
    unsigned long long sq;
    long count, counted = 0;
    int finished = 0, ok;
    size_t which;
    gs_select_case cases[2] = {
        { squares, GS_SELECT_RECV, &sq },
        { done, GS_SELECT_RECV, &count },
    };
    CHECK(gs_chan_make(sizeof(long), 16, &nums));
    CHECK(gs_chan_make(sizeof(unsigned long long), 0, &squares));
    CHECK(gs_chan_make(sizeof(long), 0, &done));
    cases[0].chan = squares;
    cases[1].chan = done;

    CHECK(gs_go(generate, NULL, 0, NULL));
    for (long w = 0; w < WORKERS; w++)
        CHECK(gs_go(square, (void *)(intptr_t)w, 0, NULL));

    while (finished < WORKERS) {
        CHECK(gs_chan_select(cases, 2, 1, &which, &ok));
        if (which == 0) {
            total += sq;
        } else {
            finished++;
            counted += count;
        }
    }
    /* A squarer sends `done` after its last square was received (the
       channel is unbuffered), so nothing is left in flight. */
    gs_stats_t st;
    CHECK(gs_stats(&st));
    printf("pipeline: %d numbers through %d squarers, %ld squares summed\n", N, WORKERS, counted);
    printf("  goroutines spawned %llu, alive now %zu, stack in use %zu bytes\n",
           (unsigned long long)st.goroutines_spawned, st.goroutines_alive, st.stack_in_use);
    CHECK(gs_chan_free(nums));
    CHECK(gs_chan_free(squares));
    CHECK(gs_chan_free(done));
}

int main(void)
{
    CHECK(gs_init(NULL));
    CHECK(gs_run(sum, NULL));
    gs_stats_t st;
    CHECK(gs_stats(&st));
    CHECK(gs_shutdown());
    unsigned long long want = (unsigned long long)N * (N + 1) * (2ULL * N + 1) / 6;
    printf("  sum of squares 1..%d = %llu (want %llu); %zu goroutines alive after gs_run\n",
           N, total, want, st.goroutines_alive);
    if (total != want || st.goroutines_alive != 0) {
        fprintf(stderr, "pipeline: FAILED\n");
        return 1;
    }
    printf("pipeline: ok (gstack %s)\n", gs_version());
    return 0;
}
