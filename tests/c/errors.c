/*
 * Every error path of the C API, with the code each must give: calls
 * before gs_init and after gs_shutdown, double init, NULL and out-of-range
 * arguments, stale and unknown handles, double close and free, send on a
 * closed channel, calls from a foreign thread, from the system stack (a
 * libcall, a root visitor), refused registrations (each RegisterError),
 * spawn of unregistered code, buffers too small.
 *
 * Linked against the static library: it drives managed goroutines with
 * gstack's own test functions (asm/managed_<arch>.S), which only the
 * static library makes visible.  Prints "errors: N checks passed" and
 * exits 0, or lists the failures and exits 1.
 */
#define _GNU_SOURCE
#include <gstack.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, failures;

static const char *name(int code)
{
    switch (code) {
    case GS_OK: return "GS_OK";
    case GS_EINVAL: return "GS_EINVAL";
    case GS_ESTALE: return "GS_ESTALE";
    case GS_ECLOSED: return "GS_ECLOSED";
    case GS_ENOTINIT: return "GS_ENOTINIT";
    case GS_EFOREIGN: return "GS_EFOREIGN";
    case GS_ENOMEM: return "GS_ENOMEM";
    case GS_ENOTMANAGED: return "GS_ENOTMANAGED";
    case GS_EREGISTER: return "GS_EREGISTER";
    case GS_EBUSY: return "GS_EBUSY";
    case GS_EAGAIN: return "GS_EAGAIN";
    case GS_ERANGE: return "GS_ERANGE";
    case GS_EINTERNAL: return "GS_EINTERNAL";
    default: return "?";
    }
}

static void expect(int got, int want, const char *what, int line)
{
    checks++;
    if (got != want) {
        failures++;
        fprintf(stderr, "FAIL line %d: %s = %d %s, want %d %s [%s]\n", line, what, got,
                name(got), want, name(want), gs_last_error_message());
    }
}

static void expect_true(int cond, const char *what, int line)
{
    checks++;
    if (!cond) {
        failures++;
        fprintf(stderr, "FAIL line %d: %s [%s]\n", line, what, gs_last_error_message());
    }
}

#define EXPECT(call, code) expect((call), (code), #call, __LINE__)
#define TRUE(cond) expect_true((cond), #cond, __LINE__)
/* The call fails with GS_EREGISTER and the message names the reason. */
#define REFUSED(call, text)                                                  \
    do {                                                                     \
        EXPECT(call, GS_EREGISTER);                                          \
        TRUE(strstr(gs_last_error_message(), text) != NULL);                 \
    } while (0)

/* gstack's own managed test functions (asm/managed_<arch>.S). */
extern char gs_test_leaf[];     /* (g, yields) -> 7                          */
extern char gs_test_rec[];      /* (g, depth, outer, outer_value, yields)     */
extern char gs_test_scenario[]; /* (g, depth, op, arg1, arg2); op 2: libcall  */

static void noop(void *arg) { (void)arg; }
static void not_managed(void) {}

/* Code ranges to register: never executed. */
static char fake_code[4096] __attribute__((aligned(16)));

/* ---- registration (no runtime needed) ----------------------------------- */

static void registration(void)
{
    uintptr_t code = (uintptr_t)fake_code;
    uint32_t slots_ok[] = { 0, 8 };
    uint32_t slot_odd[] = { 4 };
    uint32_t slot_out[] = { 16 };
    gs_callsite one[] = { { 16, 16, slots_ok, 2 } };
    gs_func_desc d = { "fake", code, 64, 32, one, 1 };

    EXPECT(gs_register(NULL), GS_EINVAL);
    d.name = NULL;
    EXPECT(gs_register(&d), GS_EINVAL);
    d.name = "fake";
    d.sites = NULL;
    EXPECT(gs_register(&d), GS_EINVAL);
    d.sites = one;
    gs_callsite noslots[] = { { 16, 16, NULL, 1 } };
    d.sites = noslots;
    EXPECT(gs_register(&d), GS_EINVAL);
    d.sites = one;

    /* Each RegisterError. */
    d.len = 0;
    REFUSED(gs_register(&d), "empty code range");
    d.start = UINTPTR_MAX - 8;
    d.len = 64;
    REFUSED(gs_register(&d), "empty code range");
    d.start = code;

    gs_callsite outside[] = { { 128, 16, NULL, 0 } };
    d.sites = outside;
    REFUSED(gs_register(&d), "outside the function's code");
    gs_callsite at_zero[] = { { 0, 16, NULL, 0 } };
    d.sites = at_zero;
    REFUSED(gs_register(&d), "outside the function's code");

    gs_callsite unsorted[] = { { 32, 16, NULL, 0 }, { 16, 16, NULL, 0 } };
    d.sites = unsorted;
    d.nsites = 2;
    REFUSED(gs_register(&d), "not sorted");
    gs_callsite twice[] = { { 16, 16, NULL, 0 }, { 16, 16, NULL, 0 } };
    d.sites = twice;
    REFUSED(gs_register(&d), "given twice");
    d.nsites = 1;

    gs_callsite odd_frame[] = { { 16, 12, NULL, 0 } };
    d.sites = odd_frame;
    REFUSED(gs_register(&d), "frame size 12 is not a multiple of 8");
    gs_callsite odd_slot[] = { { 16, 16, slot_odd, 1 } };
    d.sites = odd_slot;
    REFUSED(gs_register(&d), "pointer slot 4 is not a multiple of 8");
    gs_callsite out_slot[] = { { 16, 16, slot_out, 1 } };
    d.sites = out_slot;
    REFUSED(gs_register(&d), "outside its 16-byte frame");
    d.sites = one;
    d.frame_size = 4096;
    REFUSED(gs_register(&d), "exceeds");
    d.frame_size = 32;

    /* A good one, then an overlapping one, then unregister twice. */
    EXPECT(gs_register(&d), GS_OK);
    gs_func_desc over = { "over", code + 32, 64, 32, NULL, 0 };
    REFUSED(gs_register(&over), "overlaps registered function fake");
    EXPECT(gs_register(&d), GS_EREGISTER);
    EXPECT(gs_unregister(code), GS_OK);
    EXPECT(gs_unregister(code), GS_ESTALE);
    EXPECT(gs_unregister(0), GS_ESTALE);
    EXPECT(gs_register(&over), GS_OK);
    EXPECT(gs_unregister(code + 32), GS_OK);

    /* Assembler sections. */
    EXPECT(gs_register_asm_section(NULL, NULL), GS_OK);
    EXPECT(gs_register_asm_section(fake_code, NULL), GS_EINVAL);
    EXPECT(gs_register_asm_section(NULL, fake_code), GS_EINVAL);
    EXPECT(gs_register_asm_section(fake_code + 48, fake_code), GS_EINVAL);
    EXPECT(gs_register_asm_section(fake_code, fake_code + 47), GS_EINVAL);
    /* Our own section: everything in it is registered already (the
       static library found it), so this only skips. */
    EXPECT(gs_register_asm(), GS_OK);
    EXPECT(gs_register_asm(), GS_OK);
}

/* ---- before gs_init / after gs_shutdown ---------------------------------- */

static void not_initialised(gs_chan old)
{
    gs_stats_t st;
    gs_gc_report r;
    gs_chan c;
    uint64_t id;
    uintptr_t v;
    size_t n;
    char buf[16];
    int x = 0, ok;
    gs_select_case cs = { old, GS_SELECT_RECV, &x };

    EXPECT(gs_run(noop, NULL), GS_ENOTINIT);
    EXPECT(gs_shutdown(), GS_ENOTINIT);
    EXPECT(gs_stats(&st), GS_ENOTINIT);
    EXPECT(gs_go(noop, NULL, 0, &id), GS_ENOTINIT);
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf, NULL, 0, 0, &id), GS_ENOTINIT);
    EXPECT(gs_result(2, &v), GS_ENOTINIT);
    EXPECT(gs_yield_now(), GS_ENOTINIT);
    EXPECT(gs_id(&id), GS_ENOTINIT);
    EXPECT(gs_chan_make(4, 1, &c), GS_ENOTINIT);
    EXPECT(gs_chan_send(old, &x), GS_ENOTINIT);
    EXPECT(gs_chan_recv(old, &x, &ok), GS_ENOTINIT);
    EXPECT(gs_chan_close(old), GS_ENOTINIT);
    EXPECT(gs_chan_len(old, &n), GS_ENOTINIT);
    EXPECT(gs_chan_cap(old, &n), GS_ENOTINIT);
    EXPECT(gs_chan_free(old), GS_ENOTINIT);
    EXPECT(gs_chan_select(&cs, 1, 0, &n, &ok), GS_ENOTINIT);
    EXPECT(gs_gc(&r), GS_ENOTINIT);
    EXPECT(gs_gc_visit(NULL, NULL, &r), GS_ENOTINIT);
    EXPECT(gs_traceback(1, buf, sizeof buf, &n), GS_ENOTINIT);
    EXPECT(gs_dump_all(buf, sizeof buf, &n), GS_ENOTINIT);
    EXPECT(gs_stack_size(1, &n), GS_ENOTINIT);
}

/* ---- config --------------------------------------------------------------- */

static void config(void)
{
    gs_config c;
    EXPECT(gs_config_default(NULL), GS_EINVAL);
    EXPECT(gs_config_default(&c), GS_OK);
    TRUE(c.procs >= 1 && c.native_stack_size == 64 * 1024 && c.managed_stack_size == 2048);
    TRUE(c.gc_percent == 100 && c.debug == NULL);

#define BAD(field, value)                                                    \
    do {                                                                     \
        gs_config b = c;                                                     \
        b.field = value;                                                     \
        EXPECT(gs_init(&b), GS_EINVAL);                                      \
    } while (0)
    BAD(procs, 0);
    BAD(procs, 100000);
    BAD(native_stack_size, 0);
    BAD(native_stack_size, SIZE_MAX);
    BAD(managed_stack_size, 0);
    BAD(managed_stack_size, c.max_stack_size + 1);
    BAD(max_stack_size, 0);
    BAD(max_stack_size, SIZE_MAX);
    BAD(debug, "bogus=1");
    TRUE(strstr(gs_last_error_message(), "bogus") != NULL);
    BAD(debug, "efence=2");
    BAD(debug, "efence");
#undef BAD
    gs_config good = c;
    good.procs = 1;      /* deterministic: one thread runs every goroutine */
    good.gc_percent = 0; /* no automatic scan cycles */
    good.debug = "stackpoison=1";
    EXPECT(gs_init(&good), GS_OK);
    EXPECT(gs_init(&good), GS_EBUSY);
    EXPECT(gs_init(NULL), GS_EBUSY);
}

/* ---- a foreign thread ------------------------------------------------------ */

static gs_chan shared_chan;

static void *foreign(void *arg)
{
    (void)arg;
    int x = 1, ok;
    uint64_t id;
    size_t n;
    char buf[64];
    gs_gc_report r;
    gs_stats_t st;
    gs_chan c;
    gs_select_case cs = { shared_chan, GS_SELECT_RECV, &x };

    /* Nothing that needs a goroutine or a thread of the runtime. */
    EXPECT(gs_yield_now(), GS_EFOREIGN);
    EXPECT(gs_chan_send(shared_chan, &x), GS_EFOREIGN);
    EXPECT(gs_chan_recv(shared_chan, &x, &ok), GS_EFOREIGN);
    EXPECT(gs_chan_select(&cs, 1, 1, &n, &ok), GS_EFOREIGN);
    EXPECT(gs_chan_close(shared_chan), GS_EFOREIGN);
    EXPECT(gs_go(noop, NULL, 0, &id), GS_EFOREIGN);
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf, NULL, 0, 0, &id), GS_EFOREIGN);
    EXPECT(gs_id(&id), GS_EFOREIGN);
    EXPECT(gs_gc(&r), GS_EFOREIGN);
    EXPECT(gs_traceback(1, buf, sizeof buf, &n), GS_EFOREIGN);
    EXPECT(gs_dump_all(buf, sizeof buf, &n), GS_EFOREIGN);
    EXPECT(gs_stack_size(1, &n), GS_EFOREIGN);
    /* The runtime is running. */
    EXPECT(gs_run(noop, NULL), GS_EBUSY);
    EXPECT(gs_init(NULL), GS_EBUSY);
    EXPECT(gs_shutdown(), GS_EBUSY);
    /* What any thread may do. */
    EXPECT(gs_stats(&st), GS_OK);
    EXPECT(gs_chan_len(shared_chan, &n), GS_OK);
    EXPECT(gs_chan_make(1, 1, &c), GS_OK);
    EXPECT(gs_chan_cap(c, &n), GS_OK);
    TRUE(n == 1);
    EXPECT(gs_chan_free(c), GS_OK);
    EXPECT(gs_chan_free(c), GS_ESTALE);
    return NULL;
}

/* ---- the system stack: a libcall, a root visitor ----------------------------- */

static uint64_t libcall_goroutine;
static int libcall_ran;

static uintptr_t in_libcall(void *arg)
{
    (void)arg;
    int x = 5, ok;
    uint64_t id, spawned;
    size_t n;
    gs_gc_report r;
    gs_select_case cs = { shared_chan, GS_SELECT_RECV, &x };

    libcall_ran = 1;
    /* Operations that park: not on the system stack. */
    EXPECT(gs_yield_now(), GS_EFOREIGN);
    EXPECT(gs_chan_send(shared_chan, &x), GS_EFOREIGN);
    EXPECT(gs_chan_recv(shared_chan, &x, &ok), GS_EFOREIGN);
    EXPECT(gs_chan_select(&cs, 1, 0, &n, &ok), GS_EFOREIGN);
    /* The rest works: the id is the managed goroutine's. */
    EXPECT(gs_id(&id), GS_OK);
    TRUE(id == libcall_goroutine);
    EXPECT(gs_stack_size(id, &n), GS_OK);
    EXPECT(gs_go(noop, NULL, 0, &spawned), GS_OK);
    EXPECT(gs_gc(&r), GS_OK); /* a cycle in place */
    TRUE(r.scanned >= 2);
    return 0;
}

static int visited, visitor_yield, visitor_send, visitor_gc;

static void visitor(const gs_root *root, void *ctx)
{
    int x = 0;
    (void)root;
    (*(int *)ctx)++;
    if (visited++ == 0) {
        visitor_yield = gs_yield_now();
        visitor_send = gs_chan_send(shared_chan, &x);
        visitor_gc = gs_gc(NULL); /* a cycle is running: this one */
    }
}

/* ---- inside the runtime ------------------------------------------------------ */

static void wait_result(uint64_t id, uintptr_t *v)
{
    int rc;
    while ((rc = gs_result(id, v)) == GS_EAGAIN)
        if (gs_yield_now() != GS_OK)
            break;
    EXPECT(rc, GS_OK);
}

static uint64_t leaf_id;

static void test_main(void *arg)
{
    (void)arg;
    int x = 42, y = 0, ok = -1;
    uint64_t id;
    uintptr_t v;
    size_t n, chosen;
    gs_chan c, c2, z, stale;
    gs_stats_t st;
    gs_gc_report r;
    char small[8], big[8192];

    /* The runtime is running. */
    EXPECT(gs_run(noop, NULL), GS_EBUSY);
    EXPECT(gs_init(NULL), GS_EBUSY);
    EXPECT(gs_shutdown(), GS_EBUSY);
    EXPECT(gs_id(&id), GS_OK);
    TRUE(id == 1);

    /* NULL and out-of-range arguments. */
    EXPECT(gs_id(NULL), GS_EINVAL);
    EXPECT(gs_stats(NULL), GS_EINVAL);
    EXPECT(gs_stack_size(1, NULL), GS_EINVAL);
    EXPECT(gs_chan_make(4, 1, NULL), GS_EINVAL);
    EXPECT(gs_chan_make(GS_MAX_CHAN_ELEM + 1, 1, &c), GS_EINVAL);
    EXPECT(gs_chan_make(GS_MAX_CHAN_ELEM, SIZE_MAX / 2, &c), GS_ENOMEM);
    EXPECT(gs_go(NULL, NULL, 0, &id), GS_EINVAL);
    EXPECT(gs_go(noop, NULL, SIZE_MAX, &id), GS_EINVAL);
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf, NULL, 1, 0, &id), GS_EINVAL);
    uintptr_t six[6] = { 0 };
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf, six, 6, 0, &id), GS_EINVAL);
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf, six, 1, SIZE_MAX, &id), GS_EINVAL);
    EXPECT(gs_result(1, NULL), GS_EINVAL);
    EXPECT(gs_gc_visit(NULL, NULL, &r), GS_EINVAL);
    EXPECT(gs_traceback(1, NULL, 5, &n), GS_EINVAL);
    EXPECT(gs_dump_all(NULL, 5, &n), GS_EINVAL);
    EXPECT(gs_chan_select(NULL, 1, 0, &chosen, &ok), GS_EINVAL);

    /* Unregistered code. */
    EXPECT(gs_go_managed((uintptr_t)not_managed, NULL, 0, 0, &id), GS_ENOTMANAGED);
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf + 1, NULL, 0, 0, &id), GS_ENOTMANAGED);
    EXPECT(gs_go_managed(0, NULL, 0, 0, &id), GS_ENOTMANAGED);

    /* Channels: the life of a handle. */
    EXPECT(gs_chan_make(sizeof(int), 1, &c), GS_OK);
    TRUE(c != GS_CHAN_NIL);
    EXPECT(gs_chan_send(c, NULL), GS_EINVAL);
    EXPECT(gs_chan_send(c, &x), GS_OK);
    EXPECT(gs_chan_len(c, &n), GS_OK);
    TRUE(n == 1);
    EXPECT(gs_chan_len(c, NULL), GS_EINVAL);
    EXPECT(gs_chan_cap(c, &n), GS_OK);
    TRUE(n == 1);
    EXPECT(gs_chan_recv(c, &y, &ok), GS_OK);
    TRUE(y == 42 && ok == 1);
    EXPECT(gs_chan_send(c, &x), GS_OK);
    EXPECT(gs_chan_recv(c, NULL, NULL), GS_OK); /* discarded */
    EXPECT(gs_chan_close(c), GS_OK);
    EXPECT(gs_chan_close(c), GS_ECLOSED);
    EXPECT(gs_chan_send(c, &x), GS_ECLOSED);
    y = 7;
    EXPECT(gs_chan_recv(c, &y, &ok), GS_OK);
    TRUE(ok == 0 && y == 0);
    EXPECT(gs_chan_free(c), GS_OK);
    EXPECT(gs_chan_free(c), GS_ESTALE);
    EXPECT(gs_chan_send(c, &x), GS_ESTALE);
    EXPECT(gs_chan_recv(c, &y, &ok), GS_ESTALE);
    EXPECT(gs_chan_close(c), GS_ESTALE);
    EXPECT(gs_chan_len(c, &n), GS_ESTALE);
    EXPECT(gs_chan_cap(c, &n), GS_ESTALE);
    EXPECT(gs_chan_send(GS_CHAN_NIL, &x), GS_ESTALE);
    EXPECT(gs_chan_close(0xdeadbeef12345678ULL), GS_ESTALE);
    EXPECT(gs_chan_recv(0xffffffffULL, &y, &ok), GS_ESTALE);
    /* The freed slot is reused with a new generation: old handle stays stale. */
    stale = c;
    EXPECT(gs_chan_make(sizeof(int), 0, &c2), GS_OK);
    TRUE((c2 & 0xffffffffULL) == (stale & 0xffffffffULL) && c2 != stale);
    EXPECT(gs_chan_close(stale), GS_ESTALE);
    EXPECT(gs_chan_close(c2), GS_OK);
    EXPECT(gs_chan_free(c2), GS_OK);
    /* A channel of empty elements takes NULL. */
    EXPECT(gs_chan_make(0, 2, &z), GS_OK);
    EXPECT(gs_chan_send(z, NULL), GS_OK);
    EXPECT(gs_chan_recv(z, NULL, &ok), GS_OK);
    TRUE(ok == 1);
    EXPECT(gs_chan_free(z), GS_OK);

    /* Select. */
    EXPECT(gs_chan_make(sizeof(int), 1, &c), GS_OK);
    EXPECT(gs_chan_make(sizeof(int), 1, &c2), GS_OK);
    gs_select_case cs[2] = { { c, GS_SELECT_RECV, &y }, { c2, GS_SELECT_RECV, &y } };
    EXPECT(gs_chan_select(cs, 2, 0, &chosen, &ok), GS_EAGAIN);
    EXPECT(gs_chan_select(cs, 2, 0, NULL, &ok), GS_EINVAL);
    EXPECT(gs_chan_select(cs, 0, 1, &chosen, &ok), GS_EINVAL);
    EXPECT(gs_chan_select(cs, 0, 0, &chosen, &ok), GS_EAGAIN);
    EXPECT(gs_chan_send(c2, &x), GS_OK);
    y = 0;
    EXPECT(gs_chan_select(cs, 2, 1, &chosen, &ok), GS_OK);
    TRUE(chosen == 1 && ok == 1 && y == 42);
    cs[0].dir = 0;
    EXPECT(gs_chan_select(cs, 2, 0, &chosen, &ok), GS_EINVAL);
    cs[0].dir = GS_SELECT_SEND;
    cs[0].elem = NULL;
    EXPECT(gs_chan_select(cs, 2, 0, &chosen, &ok), GS_EINVAL);
    cs[0].elem = &x;
    EXPECT(gs_chan_select(cs, 1, 1, &chosen, &ok), GS_OK); /* buffer room */
    TRUE(chosen == 0);
    gs_select_case nil[1] = { { GS_CHAN_NIL, GS_SELECT_RECV, &y } };
    EXPECT(gs_chan_select(nil, 1, 0, &chosen, &ok), GS_EAGAIN);
    EXPECT(gs_chan_select(nil, 1, 1, &chosen, &ok), GS_EINVAL);
    EXPECT(gs_chan_recv(c, &y, &ok), GS_OK);
    EXPECT(gs_chan_close(c), GS_OK);
    EXPECT(gs_chan_select(cs, 1, 1, &chosen, &ok), GS_ECLOSED); /* send on closed */
    EXPECT(gs_chan_free(c), GS_OK);
    EXPECT(gs_chan_select(cs, 2, 0, &chosen, &ok), GS_ESTALE);
    EXPECT(gs_chan_free(c2), GS_OK);

    /* A foreign thread, while the runtime runs. */
    EXPECT(gs_chan_make(sizeof(int), 4, &shared_chan), GS_OK);
    pthread_t t;
    TRUE(pthread_create(&t, NULL, foreign, NULL) == 0);
    TRUE(pthread_join(t, NULL) == 0);

    /* Managed goroutines: results. */
    uintptr_t yields[1] = { 50 };
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf, yields, 1, 0, &leaf_id), GS_OK);
    EXPECT(gs_result(leaf_id, &v), GS_EAGAIN);
    EXPECT(gs_result(999999, &v), GS_ESTALE);
    wait_result(leaf_id, &v);
    TRUE(v == 7);
    EXPECT(gs_result(leaf_id, &v), GS_ESTALE); /* collected */
    EXPECT(gs_go_managed((uintptr_t)gs_test_leaf, yields, 1, 0, NULL), GS_OK);

    /* Tracebacks. */
    EXPECT(gs_traceback(999999, big, sizeof big, &n), GS_ESTALE);
    EXPECT(gs_traceback(1, small, sizeof small, &n), GS_ERANGE);
    TRUE(n > sizeof small && strlen(small) == sizeof small - 1);
    EXPECT(gs_traceback(1, NULL, 0, &n), GS_ERANGE);
    EXPECT(gs_traceback(1, big, sizeof big, &n), GS_OK);
    TRUE(strncmp(big, "goroutine 1 [", 13) == 0 && strlen(big) + 1 == n);
    EXPECT(gs_dump_all(small, sizeof small, &n), GS_ERANGE);
    EXPECT(gs_dump_all(big, sizeof big, NULL), GS_OK);
    TRUE(strstr(big, "goroutine 1 [") != NULL);
    EXPECT(gs_stack_size(999999, &n), GS_ESTALE);
    EXPECT(gs_stack_size(1, &n), GS_OK);
    TRUE(n >= 64 * 1024);

    /* A root visitor runs on the system stack: it may not park.  A managed
       recursion parked at its leaf has pointer slots in every frame. */
    uintptr_t rec_args[4] = { 20, 0, 0, 10000 };
    uint64_t rec_id;
    EXPECT(gs_go_managed((uintptr_t)gs_test_rec, rec_args, 4, 0, &rec_id), GS_OK);
    EXPECT(gs_yield_now(), GS_OK);
    int roots = 0;
    EXPECT(gs_gc_visit(visitor, &roots, &r), GS_OK);
    TRUE(roots > 0 && (size_t)roots == r.roots);
    EXPECT(visitor_yield, GS_EFOREIGN);
    EXPECT(visitor_send, GS_EFOREIGN);
    EXPECT(visitor_gc, GS_EBUSY);

    /* A libcall runs on the system stack too (see in_libcall). */
    uintptr_t sc_args[4] = { 10, 2, (uintptr_t)in_libcall, 0 };
    EXPECT(gs_go_managed((uintptr_t)gs_test_scenario, sc_args, 4, 0, &libcall_goroutine), GS_OK);
    wait_result(libcall_goroutine, &v);
    TRUE(v == 1 && libcall_ran);

    EXPECT(gs_stats(&st), GS_OK);
    TRUE(st.goroutines_alive >= 1 && st.goroutines_spawned >= 4);
    EXPECT(gs_chan_free(shared_chan), GS_OK);
    /* rec_id still yields; it finishes by itself before gs_run returns. */
}

int main(void)
{
    gs_chan kept;
    uintptr_t v;

    /* Texts. */
    TRUE(strcmp(gs_strerror(GS_OK), "success") == 0);
    TRUE(strcmp(gs_strerror(GS_ECLOSED), "channel is closed") == 0);
    TRUE(strcmp(gs_strerror(1), "unknown gstack error") == 0);
    TRUE(strcmp(gs_strerror(-13), "unknown gstack error") == 0);
    TRUE(strcmp(gs_strerror(INT_MIN), "unknown gstack error") == 0);
    TRUE(strcmp(gs_version(), GS_VERSION_STRING) == 0);

    not_initialised(0x100000001ULL);
    registration();
    config();

    /* Initialised, not running: the main thread is not a goroutine. */
    uint64_t id;
    gs_gc_report r;
    char buf[64];
    size_t n;
    int x = 0;
    EXPECT(gs_yield_now(), GS_EFOREIGN);
    EXPECT(gs_id(&id), GS_EFOREIGN);
    EXPECT(gs_go(noop, NULL, 0, &id), GS_EFOREIGN);
    EXPECT(gs_gc(&r), GS_EFOREIGN);
    EXPECT(gs_traceback(1, buf, sizeof buf, &n), GS_EFOREIGN);
    EXPECT(gs_chan_make(sizeof(int), 1, &kept), GS_OK);
    EXPECT(gs_chan_send(kept, &x), GS_EFOREIGN);
    EXPECT(gs_chan_close(kept), GS_EFOREIGN);
    EXPECT(gs_run(NULL, NULL), GS_EINVAL);

    EXPECT(gs_run(test_main, NULL), GS_OK);
    /* After a run: results stay collectable, the runtime runs again. */
    EXPECT(gs_result(leaf_id, &v), GS_ESTALE);
    EXPECT(gs_run(noop, NULL), GS_OK);
    gs_stats_t st;
    EXPECT(gs_stats(&st), GS_OK);
    TRUE(st.goroutines_alive == 0);

    EXPECT(gs_shutdown(), GS_OK);
    EXPECT(gs_shutdown(), GS_ENOTINIT);
    not_initialised(kept);

    /* Again: the old handle is stale in the new runtime. */
    EXPECT(gs_init(NULL), GS_OK);
    EXPECT(gs_chan_close(kept), GS_ESTALE);
    EXPECT(gs_chan_free(kept), GS_ESTALE);
    EXPECT(gs_shutdown(), GS_OK);

    if (failures) {
        fprintf(stderr, "errors: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("errors: %d checks passed\n", checks);
    return 0;
}
