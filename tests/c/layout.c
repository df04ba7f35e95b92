/*
 * Prints the layout of every struct of gstack.h and the value of every
 * constant, one fact per line ("struct field offset size", "struct sizeof
 * size align", "const NAME value"), for tests/c_abi.rs to compare with the
 * Rust side.
 */
#include <gstack.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define SIZE(t) printf("%s sizeof %zu %zu\n", #t, sizeof(t), _Alignof(t))
#define FIELD(t, f) printf("%s %s %zu %zu\n", #t, #f, offsetof(t, f), sizeof(((t *)0)->f))
#define CONST(c) printf("const %s %llu\n", #c, (unsigned long long)(long long)(c))

int main(void)
{
    SIZE(gs_config);
    FIELD(gs_config, procs);
    FIELD(gs_config, native_stack_size);
    FIELD(gs_config, managed_stack_size);
    FIELD(gs_config, max_stack_size);
    FIELD(gs_config, gc_percent);
    FIELD(gs_config, debug);

    SIZE(gs_stats_t);
    FIELD(gs_stats_t, stack_in_use);
    FIELD(gs_stats_t, stack_sys);
    FIELD(gs_stats_t, stack_cached);
    FIELD(gs_stats_t, goroutines_alive);
    FIELD(gs_stats_t, goroutines_spawned);
    FIELD(gs_stats_t, goroutines_recycled);
    FIELD(gs_stats_t, stack_copies);
    FIELD(gs_stats_t, stack_bytes_copied);
    FIELD(gs_stats_t, stack_peak);
    FIELD(gs_stats_t, gc_cycles);
    FIELD(gs_stats_t, managed_start_size);

    SIZE(gs_gc_report);
    FIELD(gs_gc_report, scanned);
    FIELD(gs_gc_report, shrunk);
    FIELD(gs_gc_report, pending);
    FIELD(gs_gc_report, freed);
    FIELD(gs_gc_report, roots);
    FIELD(gs_gc_report, workers_scanned);
    FIELD(gs_gc_report, start_size);

    SIZE(gs_root);
    FIELD(gs_root, goroutine);
    FIELD(gs_root, func);
    FIELD(gs_root, slot);
    FIELD(gs_root, value);

    SIZE(gs_callsite);
    FIELD(gs_callsite, ret_offset);
    FIELD(gs_callsite, frame_size);
    FIELD(gs_callsite, ptr_slots);
    FIELD(gs_callsite, nslots);

    SIZE(gs_func_desc);
    FIELD(gs_func_desc, name);
    FIELD(gs_func_desc, start);
    FIELD(gs_func_desc, len);
    FIELD(gs_func_desc, frame_size);
    FIELD(gs_func_desc, sites);
    FIELD(gs_func_desc, nsites);

    SIZE(gs_select_case);
    FIELD(gs_select_case, chan);
    FIELD(gs_select_case, dir);
    FIELD(gs_select_case, elem);

    CONST(GS_OK);
    CONST(GS_EINVAL);
    CONST(GS_ESTALE);
    CONST(GS_ECLOSED);
    CONST(GS_ENOTINIT);
    CONST(GS_EFOREIGN);
    CONST(GS_ENOMEM);
    CONST(GS_ENOTMANAGED);
    CONST(GS_EREGISTER);
    CONST(GS_EBUSY);
    CONST(GS_EAGAIN);
    CONST(GS_ERANGE);
    CONST(GS_EINTERNAL);
    CONST(GS_SELECT_SEND);
    CONST(GS_SELECT_RECV);
    CONST(GS_CHAN_NIL);
    CONST(GS_MAX_MANAGED_ARGS);
    CONST(GS_MAX_CHAN_ELEM);
    CONST(GS_G_STACKGUARD0_OFFSET);
    CONST(GS_MAX_FRAME);

    /* The texts, and the version. */
    static const int codes[] = { GS_OK, GS_EINVAL, GS_ESTALE, GS_ECLOSED, GS_ENOTINIT,
                                 GS_EFOREIGN, GS_ENOMEM, GS_ENOTMANAGED, GS_EREGISTER,
                                 GS_EBUSY, GS_EAGAIN, GS_ERANGE, GS_EINTERNAL };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        printf("strerror %d %s\n", codes[i], gs_strerror(codes[i]));
    printf("strerror unknown %s\n", gs_strerror(12345));
    printf("version %s %s\n", GS_VERSION_STRING, gs_version());
    return 0;
}
