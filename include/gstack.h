/*
 * gstack.h -- the C API of gstack: goroutines on small pooled stacks that
 * grow by copying, channels and select, a function table for managed
 * (JIT, AOT or hand-written) code, scan cycles with a root visitor.
 *
 * Link with libgstack.a or libgstack.so (see `pkg-config --cflags --libs
 * gstack`, and README.md, "Use from C").  x86-64 and aarch64 Linux.
 *
 * Model
 *   One global runtime: gs_init(cfg), then gs_run(main, arg) runs main as
 *   the first goroutine on the calling thread (and its Ps on threads of
 *   their own) and returns when every goroutine has finished; gs_run may be
 *   called again; gs_shutdown() ends it all.
 *
 *   *Native* goroutines (gs_go) run ordinary C on a fixed stack with a
 *   guard page: overflowing it is a fatal error naming the goroutine.
 *   *Managed* goroutines (gs_go_managed) run registered code (gs_register,
 *   or the assembler macros of gstack_asm.h) on a stack that starts small
 *   and moves when it grows or shrinks.  Their code talks to the runtime
 *   through the managed-code entry points at the end of this header.
 *
 * Errors
 *   Every function returns an int: GS_OK (0) or a negative GS_E* code
 *   (gs_strerror(code) describes it; gs_last_error_message() gives the
 *   details of the last error on the calling thread), unless documented
 *   otherwise (gs_version, gs_strerror, gs_last_error_message).  Bad
 *   arguments, stale handles, calls from the wrong thread, before gs_init
 *   or after gs_shutdown all give a code; none crashes the process.
 *   (Pointers are trusted to point where the contract says: a non-NULL
 *   pointer to garbage cannot be detected.)
 *
 * Who may call what
 *   anywhere:                gs_version, gs_strerror, gs_last_error_message,
 *                            gs_config_default, gs_register, gs_unregister,
 *                            gs_register_asm_section / gs_register_asm
 *   any thread, after init:  gs_init, gs_run, gs_shutdown, gs_stats,
 *                            gs_result, gs_chan_make, gs_chan_len,
 *                            gs_chan_cap, gs_chan_free
 *   a thread of the runtime: gs_go, gs_go_managed, gs_id, gs_chan_close,
 *     (a goroutine, or the   gs_traceback, gs_dump_all, gs_stack_size,
 *     system stack inside    gs_gc, gs_gc_visit
 *     a libcall)
 *   a native goroutine:      gs_yield_now, gs_chan_send, gs_chan_recv,
 *     (operations that park) gs_chan_select
 *   Anywhere else: GS_EFOREIGN (for instance a pthread of your own).
 *   Checks come in this order: initialised (GS_ENOTINIT), arguments and
 *   handles (GS_EINVAL, GS_ESTALE), thread (GS_EFOREIGN), the operation.
 *
 * The layouts of the structs below and the values of the constants are
 * checked against the Rust code by tests/c_abi.rs.
 */
#ifndef GSTACK_H
#define GSTACK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GS_VERSION_STRING "0.1.0"

/* ---- error codes ------------------------------------------------------ */

#define GS_OK            0   /* success                                        */
#define GS_EINVAL       -1   /* bad argument: NULL, size out of range, bad config */
#define GS_ESTALE       -2   /* stale or unknown handle: freed channel, unknown
                                goroutine id, function not registered          */
#define GS_ECLOSED      -3   /* send on a closed channel, close of a closed one */
#define GS_ENOTINIT     -4   /* before gs_init or after gs_shutdown             */
#define GS_EFOREIGN     -5   /* from a thread (or stack) the runtime does not know */
#define GS_ENOMEM       -6   /* no memory for a stack or a channel buffer       */
#define GS_ENOTMANAGED  -7   /* gs_go_managed of unregistered code              */
#define GS_EREGISTER    -8   /* registration refused: see gs_last_error_message */
#define GS_EBUSY        -9   /* init twice, shutdown or run while running, a scan
                                cycle already running                          */
#define GS_EAGAIN      -10   /* not ready: gs_result of a running goroutine, no
                                case ready in a non-blocking select            */
#define GS_ERANGE      -11   /* output buffer too small (text truncated)        */
#define GS_EINTERNAL   -12   /* a bug in gstack (caught, not propagated)        */

/* A static description of `code`; "unknown gstack error" for other values. */
const char *gs_strerror(int code);

/* Details of the last error reported on the calling thread ("" if none).
   Valid until the next gs_* call on this thread. */
const char *gs_last_error_message(void);

/* The library's version, e.g. "0.1.0" (a static string). */
const char *gs_version(void);

/* ---- the runtime ------------------------------------------------------- */

typedef struct gs_config {
    /* Ps: threads that run goroutines at once (>= 1).  Default: GSMAXPROCS
       or the number of CPUs. */
    size_t procs;
    /* Stack of a native goroutine spawned with stack_size 0 (default
       64 KiB; at most 1 GiB). */
    size_t native_stack_size;
    /* Starting stack of a managed goroutine (default 2 KiB, rounded up to
       a power of two; after the first scan cycle new ones start at the
       average use unless GSDEBUG=adaptivestackstart=0). */
    size_t managed_stack_size;
    /* Largest stack a managed goroutine may grow to (default 1 GB; growing
       beyond is a fatal error). */
    size_t max_stack_size;
    /* Start a scan cycle by itself when stack memory in use grew by this
       many percent since the last (like GOGC; 0 = never; default 100). */
    unsigned gc_percent;
    /* GSDEBUG-style settings ("efence=1,stackpoison=1"); NULL = read the
       GSDEBUG environment variable.  An unknown name or bad value:
       GS_EINVAL. */
    const char *debug;
} gs_config;

/* Fill *out with the defaults. */
int gs_config_default(gs_config *out);

/* Create the global runtime (cfg NULL = defaults).  GS_EBUSY if it exists,
   GS_EINVAL for a bad config.  Allowed again after gs_shutdown. */
int gs_init(const gs_config *cfg);

/* Run main(arg) as the main goroutine (goroutine 1 on the first run) on
   the calling thread; return when it and every goroutine spawned since
   have finished.  GS_EBUSY while running (a second gs_run from another
   thread, or from a goroutine). */
int gs_run(void (*main)(void *arg), void *arg);

/* Destroy the global runtime; every channel handle becomes stale.
   GS_EBUSY while gs_run runs; GS_ENOTINIT if there is none. */
int gs_shutdown(void);

/* ---- goroutines -------------------------------------------------------- */

/* Spawn a native goroutine running fn(arg) on a fixed stack of stack_size
   bytes (0 = cfg.native_stack_size; rounded up to pages, a guard page
   below).  *id_out (if id_out is not NULL) = its id. */
int gs_go(void (*fn)(void *arg), void *arg, size_t stack_size, uint64_t *id_out);

/* Most arguments after g of a managed goroutine's entry function. */
#define GS_MAX_MANAGED_ARGS 5

/* Spawn a managed goroutine running entry(g, args[0], ..., args[nargs-1])
   (nargs <= GS_MAX_MANAGED_ARGS) on a movable stack starting at
   stack_size bytes (0 = the runtime's current start size).  `entry` must
   be the start of a registered function (else GS_ENOTMANAGED).  With
   id_out not NULL, *id_out = its id and its return value can be collected
   with gs_result. */
int gs_go_managed(uintptr_t entry, const uintptr_t *args, size_t nargs,
                  size_t stack_size, uint64_t *id_out);

/* The return value of managed goroutine `id` (spawned with an id_out):
   GS_EAGAIN while it runs; GS_OK once, after which the id is released
   (GS_ESTALE again). */
int gs_result(uint64_t id, uintptr_t *out);

/* Let the other runnable goroutines run (from a native goroutine).
   Managed code calls gs_yield(g) instead. */
int gs_yield_now(void);

/* The calling goroutine's id (inside a libcall: the managed goroutine that
   made it). */
int gs_id(uint64_t *out);

/* ---- channels and select ----------------------------------------------- */

/* A channel handle: checked on every use (a freed channel's handle gives
   GS_ESTALE, never a crash).  0 is never a valid channel. */
typedef uint64_t gs_chan;
#define GS_CHAN_NIL ((gs_chan)0)

/* Largest channel element, in bytes (as Go's). */
#define GS_MAX_CHAN_ELEM 65536

/* A channel of `cap` buffered elements (0 = unbuffered) of elem_size bytes
   (0 allowed: a signal channel). */
int gs_chan_make(size_t elem_size, size_t cap, gs_chan *out);

/* Send elem_size bytes from elem, waiting for a receiver or buffer room.
   GS_ECLOSED if the channel is (or gets) closed. */
int gs_chan_send(gs_chan c, const void *elem);

/* Receive into elem (NULL: discard), waiting for a value.  *ok (if ok is
   not NULL) = 1 for a value, 0 when closed and empty (elem zeroed). */
int gs_chan_recv(gs_chan c, void *elem, int *ok);

/* Close: waiting receivers get ok = 0, waiting senders GS_ECLOSED.
   GS_ECLOSED if already closed. */
int gs_chan_close(gs_chan c);

/* Elements buffered now / capacity. */
int gs_chan_len(gs_chan c, size_t *out);
int gs_chan_cap(gs_chan c, size_t *out);

/* Forget the handle (it becomes stale; freeing twice is GS_ESTALE).  Does
   not close the channel; goroutines waiting on it keep it alive. */
int gs_chan_free(gs_chan c);

#define GS_SELECT_SEND 1
#define GS_SELECT_RECV 2

typedef struct gs_select_case {
    gs_chan chan;   /* GS_CHAN_NIL: a case that is never ready            */
    int dir;        /* GS_SELECT_SEND or GS_SELECT_RECV                   */
    void *elem;     /* value to send / where to receive (NULL: discard)    */
} gs_select_case;

/* Wait until one of the cases can proceed and do it (a random one among
   those ready): *chosen = its index, *recv_ok (if not NULL) as for
   gs_chan_recv.  block = 0: GS_EAGAIN at once if none is ready (the
   default case).  A send case on a closed channel: GS_ECLOSED.  No case
   that could ever proceed and block != 0: GS_EINVAL. */
int gs_chan_select(const gs_select_case *cases, size_t n, int block,
                   size_t *chosen, int *recv_ok);

/* ---- function table (managed code) --------------------------------------- */

/* Largest frame of a managed function (record and locals), in bytes. */
#define GS_MAX_FRAME 896

typedef struct gs_callsite {
    uint32_t ret_offset;        /* return address - function start          */
    uint32_t frame_size;        /* FP - SP at this call (a multiple of 8)   */
    const uint32_t *ptr_slots;  /* byte offsets from SP of the words that
                                   may hold pointers (multiples of 8, below
                                   frame_size)                              */
    size_t nslots;
} gs_callsite;

typedef struct gs_func_desc {
    const char *name;
    uintptr_t start;            /* first instruction                        */
    size_t len;                 /* bytes of code                            */
    uint32_t frame_size;        /* most the function lowers SP below its
                                   caller's, frame record included
                                   (<= GS_MAX_FRAME)                        */
    const gs_callsite *sites;   /* sorted by ret_offset, each once          */
    size_t nsites;
} gs_func_desc;

/* Register a managed function (JIT or AOT output): all of it or nothing.
   GS_EREGISTER with the reason in gs_last_error_message() (empty or
   overlapping code, call site outside the code, unsorted or duplicate call
   sites, misaligned frame or slot, slot outside its frame, frame too
   large).  The descriptor is copied. */
int gs_register(const gs_func_desc *d);

/* Remove the function starting at `start` (no goroutine may have a frame
   in it).  GS_ESTALE if none is registered there. */
int gs_unregister(uintptr_t start);

/* Register the functions declared with the macros of gstack_asm.h whose
   records lie in [start, stop) -- a `gstack_funcs` section.  Functions
   already registered at the same address are skipped.  NULL, NULL: none. */
int gs_register_asm_section(const void *start, const void *stop);

/* Register the calling program's (or shared object's) functions declared
   with gstack_asm.h.  Needed when gstack is linked as a shared library
   (the library cannot see the program's section); harmless with the
   static library, which finds them by itself. */
extern const char __start_gstack_funcs[] __attribute__((weak));
extern const char __stop_gstack_funcs[] __attribute__((weak));
static inline int gs_register_asm(void)
{
    return gs_register_asm_section(__start_gstack_funcs, __stop_gstack_funcs);
}

/* ---- scan cycles, statistics, tracebacks --------------------------------- */

typedef struct gs_gc_report {
    size_t scanned;          /* goroutines visited                          */
    size_t shrunk;           /* stacks halved                               */
    size_t pending;          /* shrinks left for the next safe point        */
    size_t freed;            /* bytes of stack freed at the cycle's end     */
    size_t roots;            /* pointer slots reported                      */
    size_t workers_scanned;  /* scan workers scanned by other workers       */
    size_t start_size;       /* start size of new managed goroutines set by
                                the cycle (0: unchanged)                    */
} gs_gc_report;

typedef struct gs_root {
    uint64_t goroutine;      /* whose frame                                 */
    uintptr_t func;          /* start of the function owning the frame      */
    uintptr_t slot;          /* address of the slot                         */
    uintptr_t value;         /* what it holds                               */
} gs_root;

/* Run a scan cycle: walk every goroutine, shrink the stacks that calmed
   down (or leave the shrink pending), and return when it is over.  out may
   be NULL.  From a native goroutine, or inside a libcall (the cycle then
   runs in place; GS_EBUSY if one is running). */
int gs_gc(gs_gc_report *out);

/* gs_gc, calling visit(root, ctx) for every pointer slot of every managed
   goroutine's frames (precise roots for your GC).  visit runs on the
   system stack: it must not call gs_* functions that park. */
int gs_gc_visit(void (*visit)(const gs_root *root, void *ctx), void *ctx,
                gs_gc_report *out);

/* The runtime's figures, the same as the Rust API's gstack::Stats. */
typedef struct gs_stats {
    size_t stack_in_use;           /* stack bytes handed to goroutines     */
    size_t stack_sys;              /* stack bytes committed from the system */
    size_t stack_cached;           /* free stack bytes in per-P caches     */
    size_t goroutines_alive;       /* spawned and not finished             */
    uint64_t goroutines_spawned;   /* ever spawned                         */
    uint64_t goroutines_recycled;  /* spawns that reused a dead goroutine  */
    uint64_t stack_copies;         /* growths and moves (incl. in place)   */
    uint64_t stack_bytes_copied;   /* bytes copied by those moves          */
    size_t stack_peak;             /* largest managed stack so far         */
    uint64_t gc_cycles;            /* scan cycles completed                */
    size_t managed_start_size;     /* start size of new managed goroutines */
} gs_stats_t;

/* (The struct type is gs_stats_t because gs_stats is the function.) */
int gs_stats(gs_stats_t *out);

/* The traceback of goroutine `id` (Go's shape: "goroutine N [status]:" and
   a line per frame of a parked managed goroutine), NUL-terminated in
   buf[0..len) (truncated if need be; buf may be NULL when len is 0);
   *needed (if not NULL) = the full size with the NUL.  GS_ERANGE when
   truncated, GS_ESTALE for an unknown or finished goroutine. */
int gs_traceback(uint64_t id, char *buf, size_t len, size_t *needed);

/* The current stack size of goroutine `id` (a managed one's grows and
   shrinks).  GS_ESTALE for an unknown or finished goroutine. */
int gs_stack_size(uint64_t id, size_t *out);

/* The tracebacks of every live goroutine, by id, as gs_traceback; same
   buffer rules. */
int gs_dump_all(char *buf, size_t len, size_t *needed);

/* ---- entry points for managed code --------------------------------------- *
 *
 * Called by managed code (hand-written with gstack_asm.h, or generated),
 * with the platform C calling convention and the goroutine's G -- the
 * first argument every managed function receives -- as `g`.  They are not
 * for native goroutines, and they trust g: pass the G you were given.
 */

/* Opaque: a goroutine, as managed code sees it.  It never moves. */
typedef struct gs_g gs_g;

/* Offset of stackguard0 in a G: the entry check is
   `if (SP < *(uintptr_t *)((char *)g + GS_G_STACKGUARD0_OFFSET))
        gs_morestack(g);`  (stable ABI) */
#define GS_G_STACKGUARD0_OFFSET 16

/* Called by a managed function's entry check when SP is below stackguard0;
   returns with SP and FP moved by the copy delta when the stack moved,
   callee-saved registers preserved.  Its call site must be registered.
   Not callable from C. */
void gs_morestack(gs_g *g);

/* Let other goroutines run (saves the caller's context, parks on the
   system stack).  Its call site must be registered. */
void gs_yield(gs_g *g);

/* Around foreign code that runs on the goroutine's stack (a system call):
   the stack is pinned meanwhile (a shrink is left pending; growth is a
   fatal error).  gs_exitsyscall is a safe point (a pending shrink happens
   there). */
void gs_entersyscall(gs_g *g);
void gs_exitsyscall(gs_g *g);

/* Run fn(arg) -- foreign code -- on the system stack and return its
   result; the goroutine's stack is pinned meanwhile.  fn may call gs_gc,
   gs_go, gs_chan_close, gs_stats (not the functions that park). */
uintptr_t gs_libcall(gs_g *g, uintptr_t (*fn)(void *arg), void *arg);

/* Pin / unpin the goroutine's stack (counted): while pinned it never
   moves.  Unpinning an unpinned goroutine is a fatal error. */
void gs_pin(gs_g *g);
void gs_unpin(gs_g *g);

#ifdef __cplusplus
}
#endif

#endif /* GSTACK_H */
