//! The C ABI: everything `include/gstack.h` declares.
//!
//! Every function here is `extern "C"`, `#[no_mangle]`, named `gs_*`, and
//! returns an `int` error code (`GS_OK` = 0, the others negative) or a
//! documented sentinel.  Each body runs inside [`catch`], which turns a
//! Rust panic into `GS_EINTERNAL`: nothing unwinds into C.  Bad input is
//! validated and answered with a code, never with a panic or a crash.
//!
//! The C side sees one global runtime ([`gs_init`], [`gs_run`],
//! [`gs_shutdown`]), goroutines by id, channels by *handle*: a `u64` that
//! is `index + 1 | generation << 32` into a table of channels, so a freed
//! channel's handle is recognised as stale and never reaches freed memory.
//! No raw runtime pointer is handed to C, except the `G` pointer that
//! managed code receives as its first argument (the frame ABI).
//!
//! Which thread may call what:
//!
//! * anywhere (no runtime needed): [`gs_version`], [`gs_strerror`],
//!   [`gs_last_error_message`], [`gs_config_default`], [`gs_register`],
//!   [`gs_unregister`], [`gs_register_asm_section`];
//! * any thread once initialised: [`gs_init`], [`gs_run`],
//!   [`gs_shutdown`], [`gs_stats`], [`gs_result`], [`gs_chan_make`],
//!   [`gs_chan_len`], [`gs_chan_cap`], [`gs_chan_free`];
//! * a thread of the runtime (a goroutine, or the system stack inside a
//!   libcall): [`gs_go`], [`gs_go_managed`], [`gs_id`], [`gs_chan_close`],
//!   [`gs_traceback`], [`gs_dump_all`], [`gs_stack_size`], [`gs_gc`],
//!   [`gs_gc_visit`];
//! * a native goroutine, on its own stack (operations that park):
//!   [`gs_yield_now`], [`gs_chan_send`], [`gs_chan_recv`],
//!   [`gs_chan_select`].
//!
//! Anything else gets `GS_EFOREIGN`.

use crate::chan::{ChanError, RawChan, SelectCase};
use crate::debug::DebugFlags;
use crate::functab::{CallSiteDesc, FuncDesc};
use crate::g::{GKind, G};
use crate::m::{self, M};
use crate::runtime::{Builder, Config, Managed, Runtime, Stats};
use crate::scan::{GcReport, Root};
use crate::sched::SpawnError;
use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::ptr;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

// ---------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------

/// Success.
pub const GS_OK: c_int = 0;
/// A bad argument: a NULL pointer, a size out of range, a bad config.
pub const GS_EINVAL: c_int = -1;
/// A stale or unknown handle: a freed channel, an unknown goroutine id, an
/// unregistered function.
pub const GS_ESTALE: c_int = -2;
/// Send on a closed channel, or close of a closed channel.
pub const GS_ECLOSED: c_int = -3;
/// Called before `gs_init` or after `gs_shutdown`.
pub const GS_ENOTINIT: c_int = -4;
/// Called from a thread (or stack) the runtime does not know.
pub const GS_EFOREIGN: c_int = -5;
/// Out of memory (a stack or a channel buffer could not be had).
pub const GS_ENOMEM: c_int = -6;
/// `gs_go_managed` of an address that is not a registered function.
pub const GS_ENOTMANAGED: c_int = -7;
/// A registration was refused; `gs_last_error_message` says why.
pub const GS_EREGISTER: c_int = -8;
/// `gs_init` twice, `gs_shutdown` or `gs_run` while running, a scan cycle
/// already running.
pub const GS_EBUSY: c_int = -9;
/// Not now: a managed goroutine still running (`gs_result`), no case ready
/// in a non-blocking select (the default case).
pub const GS_EAGAIN: c_int = -10;
/// The output buffer is too small (the text was truncated).
pub const GS_ERANGE: c_int = -11;
/// A bug in gstack (a Rust panic caught at the boundary).
pub const GS_EINTERNAL: c_int = -12;

/// Every error code with its name and `gs_strerror` text (also used by the
/// header drift test).
pub const ERRORS: &[(c_int, &str, &CStr)] = &[
    (GS_OK, "GS_OK", c"success"),
    (GS_EINVAL, "GS_EINVAL", c"invalid argument"),
    (GS_ESTALE, "GS_ESTALE", c"stale or unknown handle"),
    (GS_ECLOSED, "GS_ECLOSED", c"channel is closed"),
    (
        GS_ENOTINIT,
        "GS_ENOTINIT",
        c"gstack runtime not initialised (or shut down)",
    ),
    (
        GS_EFOREIGN,
        "GS_EFOREIGN",
        c"called from a thread or stack the runtime does not know",
    ),
    (GS_ENOMEM, "GS_ENOMEM", c"out of memory"),
    (
        GS_ENOTMANAGED,
        "GS_ENOTMANAGED",
        c"not the start of a registered managed function",
    ),
    (
        GS_EREGISTER,
        "GS_EREGISTER",
        c"function registration refused",
    ),
    (
        GS_EBUSY,
        "GS_EBUSY",
        c"busy: already initialised, running, or a scan cycle runs",
    ),
    (GS_EAGAIN, "GS_EAGAIN", c"not ready: try again"),
    (GS_ERANGE, "GS_ERANGE", c"buffer too small"),
    (GS_EINTERNAL, "GS_EINTERNAL", c"internal error in gstack"),
];

/// What `gs_strerror` says for a code that is none of the above.
pub const UNKNOWN_ERROR: &CStr = c"unknown gstack error";

/// `gs_select_case.dir`: send `*elem`.
pub const GS_SELECT_SEND: c_int = 1;
/// `gs_select_case.dir`: receive into `elem`.
pub const GS_SELECT_RECV: c_int = 2;
/// The nil channel handle: never valid; in a select case, never ready.
pub const GS_CHAN_NIL: u64 = 0;

/// Largest element of a channel (Go's limit).
pub const GS_MAX_CHAN_ELEM: usize = 1 << 16;
/// Largest buffer of a channel, in bytes.
pub const GS_MAX_CHAN_BUF: usize = 1 << 31;
/// Largest native goroutine stack.
pub const GS_MAX_NATIVE_STACK: usize = 1 << 30;
/// Largest `max_stack_size`.
pub const GS_MAX_STACK_LIMIT: usize = 1 << 40;
/// Most Ps.
pub const GS_MAX_PROCS: usize = 1024;
/// Most cases of one select.
pub const GS_MAX_SELECT_CASES: usize = 1 << 16;
/// Most call sites of one function, pointer slots of one call site.
pub const GS_MAX_CALLSITES: usize = 1 << 24;
/// Most arguments after g of a managed goroutine.
pub const GS_MAX_MANAGED_ARGS: usize = crate::runtime::MAX_MANAGED_ARGS;

// ---------------------------------------------------------------------------
// Structs shared with C (layouts checked by tests/c_abi.rs)
// ---------------------------------------------------------------------------

/// `gs_config`: settings of the runtime `gs_init` starts.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GsConfig {
    pub procs: usize,
    pub native_stack_size: usize,
    pub managed_stack_size: usize,
    pub max_stack_size: usize,
    pub gc_percent: c_uint,
    /// GSDEBUG-style settings, or NULL for the `GSDEBUG` environment
    /// variable.
    pub debug: *const c_char,
}

/// `gs_stats_t`: the figures of [`Stats`], field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GsStats {
    pub stack_in_use: usize,
    pub stack_sys: usize,
    pub stack_cached: usize,
    pub goroutines_alive: usize,
    pub goroutines_spawned: u64,
    pub goroutines_recycled: u64,
    pub stack_copies: u64,
    pub stack_bytes_copied: u64,
    pub stack_peak: usize,
    pub gc_cycles: u64,
    pub managed_start_size: usize,
}

impl From<Stats> for GsStats {
    fn from(s: Stats) -> GsStats {
        // Exhaustive on purpose: a field added to Stats fails to compile
        // here until the C struct (and the header) get it too.
        let Stats {
            stack_in_use,
            stack_sys,
            stack_cached,
            goroutines_alive,
            goroutines_spawned,
            goroutines_recycled,
            stack_copies,
            stack_bytes_copied,
            stack_peak,
            gc_cycles,
            managed_start_size,
        } = s;
        GsStats {
            stack_in_use,
            stack_sys,
            stack_cached,
            goroutines_alive,
            goroutines_spawned,
            goroutines_recycled,
            stack_copies,
            stack_bytes_copied,
            stack_peak,
            gc_cycles,
            managed_start_size,
        }
    }
}

/// `gs_gc_report`: what a scan cycle did ([`GcReport`]; the list of
/// workers scanned by workers is given as its length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GsGcReport {
    pub scanned: usize,
    pub shrunk: usize,
    pub pending: usize,
    pub freed: usize,
    pub roots: usize,
    pub workers_scanned: usize,
    pub start_size: usize,
}

impl From<GcReport> for GsGcReport {
    fn from(r: GcReport) -> GsGcReport {
        // Exhaustive, as for GsStats.
        let GcReport {
            scanned,
            shrunk,
            pending,
            freed,
            roots,
            workers_scanned,
            start_size,
        } = r;
        GsGcReport {
            scanned,
            shrunk,
            pending,
            freed,
            roots,
            workers_scanned: workers_scanned.len(),
            start_size,
        }
    }
}

/// `gs_root`: one pointer slot of a goroutine's frame ([`Root`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GsRoot {
    pub goroutine: u64,
    pub func: usize,
    pub slot: usize,
    pub value: usize,
}

impl From<&Root> for GsRoot {
    fn from(r: &Root) -> GsRoot {
        let Root {
            goroutine,
            func,
            slot,
            value,
        } = *r;
        GsRoot {
            goroutine,
            func,
            slot,
            value,
        }
    }
}

/// `gs_callsite`: one call site of a managed function ([`CallSiteDesc`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GsCallsite {
    pub ret_offset: u32,
    pub frame_size: u32,
    pub ptr_slots: *const u32,
    pub nslots: usize,
}

/// `gs_func_desc`: one managed function ([`FuncDesc`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GsFuncDesc {
    pub name: *const c_char,
    pub start: usize,
    pub len: usize,
    pub frame_size: u32,
    pub sites: *const GsCallsite,
    pub nsites: usize,
}

/// `gs_select_case`: one case of [`gs_chan_select`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GsSelectCase {
    pub chan: u64,
    /// `GS_SELECT_SEND` or `GS_SELECT_RECV`.
    pub dir: c_int,
    pub elem: *mut c_void,
}

/// A record of the `gstack_funcs` section as `include/gstack_asm.h` lays
/// it out (six 8-byte words), for [`gs_register_asm_section`].
#[repr(C)]
#[derive(Clone, Copy)]
struct AsmFunc {
    start: usize,
    end: usize,
    name: *const c_char,
    sites: *const AsmSite,
    sites_end: *const AsmSite,
    frame_size: usize,
}

/// A call-site record of the macros: return address, frame size, bitmap
/// of the pointer words.
#[repr(C)]
#[derive(Clone, Copy)]
struct AsmSite {
    ret: usize,
    frame_size: usize,
    ptr_bitmap: u64,
}

// ---------------------------------------------------------------------------
// Boundary helpers
// ---------------------------------------------------------------------------

type Res<T = ()> = Result<T, c_int>;

thread_local! {
    /// The detail of this thread's last error (`gs_last_error_message`).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Remember `msg` as this thread's last error message.
fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Fail with `code`, remembering `msg`.
fn fail<T>(code: c_int, msg: impl AsRef<str>) -> Res<T> {
    set_error(msg.as_ref());
    Err(code)
}

/// Run one entry point's body: its result as a code, a panic as
/// `GS_EINTERNAL` (the panic never crosses into C).
fn catch(f: impl FnOnce() -> Res) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => GS_OK,
        Ok(Err(code)) => code,
        Err(p) => {
            // Even the message must not panic out of here.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                set_error(&format!(
                    "internal error: {}",
                    crate::fatal::panic_message(&*p)
                ))
            }));
            GS_EINTERNAL
        }
    }
}

/// Write `v` to `out` (checked non-null by the caller).
///
/// # Safety
/// `out` is null or valid for a write of T.
unsafe fn put<T>(out: *mut T, v: T) -> Res {
    if out.is_null() {
        return fail(GS_EINVAL, "output pointer is NULL");
    }
    // SAFETY: non-null, and the caller's guarantee.
    unsafe { out.write(v) };
    Ok(())
}

/// Copy `s` into `buf` of `len` bytes as a NUL-terminated string
/// (truncated if need be), report the bytes a whole copy needs (NUL
/// included) in `*needed`.
///
/// # Safety
/// `buf` is null or valid for `len` bytes; `needed` is null or writable.
unsafe fn write_text(s: &str, buf: *mut c_char, len: usize, needed: *mut usize) -> Res {
    if buf.is_null() && len > 0 {
        return fail(GS_EINVAL, "buf is NULL but len is not 0");
    }
    if !needed.is_null() {
        // SAFETY: the caller's guarantee.
        unsafe { needed.write(s.len() + 1) };
    }
    if len > 0 {
        let n = s.len().min(len - 1);
        // SAFETY: buf has len > n bytes (the caller's guarantee).
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), buf as *mut u8, n);
            buf.add(n).write(0);
        }
    }
    if len < s.len() + 1 {
        return fail(
            GS_ERANGE,
            format!("buffer of {len} bytes, {} needed", s.len() + 1),
        );
    }
    Ok(())
}

/// An address on the calling thread's current stack.
#[inline(never)]
fn stack_addr() -> usize {
    let here = 0u8;
    core::hint::black_box(&here) as *const u8 as usize
}

// ---------------------------------------------------------------------------
// The global runtime
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Uninit,
    Ready,
    Running,
    Shutdown,
}

struct Global {
    state: State,
    rt: Option<Arc<Runtime>>,
    /// Managed goroutines whose result C may still collect, by id.
    managed: BTreeMap<u64, Managed>,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    state: State::Uninit,
    rt: None,
    managed: BTreeMap::new(),
});

fn global() -> MutexGuard<'static, Global> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime, if initialised (ready or running).
fn runtime() -> Res<Arc<Runtime>> {
    let g = global();
    match (g.state, &g.rt) {
        (State::Ready | State::Running, Some(rt)) => Ok(rt.clone()),
        (State::Shutdown, _) => fail(GS_ENOTINIT, "the gstack runtime was shut down"),
        _ => fail(GS_ENOTINIT, "gs_init has not been called"),
    }
}

/// Where the caller runs, as far as the runtime is concerned.
#[derive(Clone, Copy)]
struct Here {
    m: *mut M,
    /// The goroutine the M runs (null on g0 with none).
    curg: *mut G,
    /// Whether we run on `curg`'s own stack (else on the system stack).
    on_curg_stack: bool,
}

/// The calling thread's M, when it is one of `rt`'s.
fn here(rt: &Runtime) -> Res<Here> {
    let m = m::current_m();
    if m.is_null() {
        return fail(
            GS_EFOREIGN,
            "called from a thread that is not running the gstack runtime",
        );
    }
    // SAFETY: a non-null current_m() is this thread's live M, whose Sched
    // lives as long as the runtime runs (which it does while we run on it).
    unsafe {
        let sched = (*m).sched;
        if !ptr::eq(&(*sched).config, rt.config()) {
            return fail(
                GS_EFOREIGN,
                "called from a thread of another gstack runtime (not the one of gs_init)",
            );
        }
        let curg = (*m).curg;
        let sp = stack_addr();
        let on_curg_stack = !curg.is_null() && sp >= (*curg).stack_lo && sp < (*curg).stack_hi;
        Ok(Here {
            m,
            curg,
            on_curg_stack,
        })
    }
}

/// The calling native goroutine, on its own stack: where C code may park.
fn native_goroutine(rt: &Runtime) -> Res<*mut G> {
    let h = here(rt)?;
    if !h.on_curg_stack {
        return fail(
            GS_EFOREIGN,
            "must be called from a native goroutine (this is the system stack, e.g. a libcall or a root visitor)",
        );
    }
    // SAFETY: curg is the live goroutine whose stack we run on.
    if unsafe { (*h.curg).kind } != GKind::Native {
        return fail(
            GS_EFOREIGN,
            "must be called from a native goroutine (managed code uses gs_yield(g) and the managed stubs)",
        );
    }
    Ok(h.curg)
}

fn spawn_error(e: SpawnError) -> c_int {
    let code = match &e {
        SpawnError::NotInRuntime => GS_EFOREIGN,
        SpawnError::Stack(_) => GS_ENOMEM,
        SpawnError::NotManaged(_) => GS_ENOTMANAGED,
        SpawnError::TooManyArgs(_) => GS_EINVAL,
    };
    set_error(&e.to_string());
    code
}

fn chan_error(e: ChanError) -> c_int {
    let code = match e {
        ChanError::Closed => GS_ECLOSED,
        ChanError::NotInGoroutine => GS_EFOREIGN,
        ChanError::EmptySelect => GS_EINVAL,
    };
    set_error(&e.to_string());
    code
}

// ---------------------------------------------------------------------------
// The channel table
// ---------------------------------------------------------------------------

struct ChanSlot {
    gen: u32,
    chan: Option<Arc<RawChan>>,
}

struct ChanTable {
    slots: Vec<ChanSlot>,
    free: Vec<u32>,
}

static CHANS: Mutex<ChanTable> = Mutex::new(ChanTable {
    slots: Vec::new(),
    free: Vec::new(),
});

fn chans() -> MutexGuard<'static, ChanTable> {
    CHANS.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChanTable {
    fn insert(&mut self, c: Arc<RawChan>) -> Res<u64> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() >= u32::MAX as usize - 1 {
                    return fail(GS_ENOMEM, "too many channels");
                }
                self.slots.push(ChanSlot { gen: 1, chan: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.chan = Some(c);
        Ok((index as u64 + 1) | (slot.gen as u64) << 32)
    }

    fn slot(&mut self, h: u64) -> Res<&mut ChanSlot> {
        if h == GS_CHAN_NIL {
            return fail(GS_ESTALE, "the nil channel handle");
        }
        let (index, gen) = ((h & 0xffff_ffff) as usize, (h >> 32) as u32);
        match index.checked_sub(1).and_then(|i| self.slots.get_mut(i)) {
            Some(s) if s.gen == gen && s.chan.is_some() => Ok(s),
            _ => fail(GS_ESTALE, format!("stale or unknown channel handle {h:#x}")),
        }
    }

    fn get(&mut self, h: u64) -> Res<Arc<RawChan>> {
        Ok(self.slot(h)?.chan.clone().expect("checked by slot"))
    }

    fn remove(&mut self, h: u64) -> Res<Arc<RawChan>> {
        let s = self.slot(h)?;
        let c = s.chan.take().expect("checked by slot");
        s.gen = s.gen.wrapping_add(1);
        // A slot whose generation would wrap is retired: an old handle can
        // never become valid again.
        if s.gen != 0 {
            self.free.push((h & 0xffff_ffff) as u32 - 1);
        }
        Ok(c)
    }

    /// Free every channel (shutdown): every handle becomes stale.
    fn clear(&mut self) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.chan.take().is_some() {
                s.gen = s.gen.wrapping_add(1);
                if s.gen != 0 {
                    self.free.push(i as u32);
                }
            }
        }
    }
}

/// The channel behind handle `h`, with the runtime initialised.
fn chan(h: u64) -> Res<Arc<RawChan>> {
    runtime()?;
    chans().get(h)
}

// ---------------------------------------------------------------------------
// Version, errors
// ---------------------------------------------------------------------------

static VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("version string"),
    };

/// `const char *gs_version(void)`: the library's version ("0.1.0"), a
/// static string.
#[no_mangle]
pub extern "C" fn gs_version() -> *const c_char {
    VERSION.as_ptr()
}

/// `const char *gs_strerror(int code)`: a static description of `code`;
/// "unknown gstack error" for a code that is none of gstack's.
#[no_mangle]
pub extern "C" fn gs_strerror(code: c_int) -> *const c_char {
    ERRORS
        .iter()
        .find(|e| e.0 == code)
        .map_or(UNKNOWN_ERROR, |e| e.2)
        .as_ptr()
}

/// `const char *gs_last_error_message(void)`: details of the last error
/// a gs_* call reported on this thread ("" if none); valid until the next
/// gs_* call on the thread.
#[no_mangle]
pub extern "C" fn gs_last_error_message() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr())).unwrap_or(c"".as_ptr())
}

// ---------------------------------------------------------------------------
// The runtime: config, init, run, shutdown
// ---------------------------------------------------------------------------

/// `int gs_config_default(gs_config *out)`: the defaults (procs from
/// `GSMAXPROCS` or the number of CPUs, 64 KiB native stacks, 2 KiB managed
/// start, 1 GB maximum, gc_percent 100, debug NULL = from `GSDEBUG`).
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_config_default(out: *mut GsConfig) -> c_int {
    catch(|| {
        let c = Config::default();
        let v = GsConfig {
            procs: c.procs,
            native_stack_size: c.native_stack_size,
            managed_stack_size: c.managed_stack_size,
            max_stack_size: c.max_stack_size,
            gc_percent: c.gc_percent,
            debug: ptr::null(),
        };
        // SAFETY: out is null (checked) or a gs_config (the C contract).
        unsafe { put(out, v) }
    })
}

/// Check a C config and turn it into a [`Config`].
///
/// # Safety
/// `cfg.debug` is null or a NUL-terminated string.
unsafe fn config_from(cfg: &GsConfig) -> Res<Config> {
    if cfg.procs == 0 || cfg.procs > GS_MAX_PROCS {
        return fail(
            GS_EINVAL,
            format!("procs {} not in 1..={GS_MAX_PROCS}", cfg.procs),
        );
    }
    if cfg.native_stack_size == 0 || cfg.native_stack_size > GS_MAX_NATIVE_STACK {
        return fail(
            GS_EINVAL,
            format!(
                "native_stack_size {} not in 1..={GS_MAX_NATIVE_STACK}",
                cfg.native_stack_size
            ),
        );
    }
    if cfg.max_stack_size == 0 || cfg.max_stack_size > GS_MAX_STACK_LIMIT {
        return fail(
            GS_EINVAL,
            format!(
                "max_stack_size {} not in 1..={GS_MAX_STACK_LIMIT}",
                cfg.max_stack_size
            ),
        );
    }
    if cfg.managed_stack_size == 0 || cfg.managed_stack_size > cfg.max_stack_size {
        return fail(
            GS_EINVAL,
            format!(
                "managed_stack_size {} not in 1..=max_stack_size ({})",
                cfg.managed_stack_size, cfg.max_stack_size
            ),
        );
    }
    let debug = if cfg.debug.is_null() {
        DebugFlags::from_env()
    } else {
        // SAFETY: the caller's guarantee.
        let s = unsafe { CStr::from_ptr(cfg.debug) };
        let Ok(s) = s.to_str() else {
            return fail(GS_EINVAL, "debug is not UTF-8");
        };
        let mut warnings = Vec::new();
        let flags = DebugFlags::parse(s, &mut |w| warnings.push(w.to_string()));
        if !warnings.is_empty() {
            return fail(GS_EINVAL, warnings.join("; "));
        }
        flags
    };
    Ok(Config {
        procs: cfg.procs,
        native_stack_size: cfg.native_stack_size,
        managed_stack_size: cfg.managed_stack_size,
        max_stack_size: cfg.max_stack_size,
        gc_percent: cfg.gc_percent,
        debug,
    })
}

/// `int gs_init(const gs_config *cfg)`: create the global runtime (NULL =
/// defaults).  GS_EBUSY if it exists already; GS_EINVAL for a bad config
/// (the message says which field).  May be called again after
/// `gs_shutdown`.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_init(cfg: *const GsConfig) -> c_int {
    catch(|| {
        let config = if cfg.is_null() {
            Config::default()
        } else {
            // SAFETY: a non-null cfg points at a gs_config whose debug is
            // NULL or a C string (the C contract).
            unsafe { config_from(&*cfg)? }
        };
        let mut g = global();
        if matches!(g.state, State::Ready | State::Running) {
            return fail(GS_EBUSY, "gs_init: the runtime is already initialised");
        }
        g.rt = Some(Arc::new(Runtime::new(config)));
        g.managed.clear();
        g.state = State::Ready;
        Ok(())
    })
}

/// `int gs_run(void (*main)(void *), void *arg)`: run `main(arg)` as the
/// main goroutine (a native one) on the calling thread; returns when it and
/// every goroutine spawned since have finished.  GS_EBUSY while running
/// (from a goroutine, or from another thread).  May be called again.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_run(
    main: Option<extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) -> c_int {
    catch(|| {
        let Some(main) = main else {
            return fail(GS_EINVAL, "gs_run: main is NULL");
        };
        let rt = {
            let mut g = global();
            match g.state {
                State::Ready => {}
                State::Running => return fail(GS_EBUSY, "gs_run: the runtime is already running"),
                State::Uninit => return fail(GS_ENOTINIT, "gs_init has not been called"),
                State::Shutdown => return fail(GS_ENOTINIT, "the gstack runtime was shut down"),
            }
            if !m::current_m().is_null() {
                return fail(
                    GS_EBUSY,
                    "gs_run: this thread already runs a gstack runtime",
                );
            }
            g.state = State::Running;
            g.rt.clone().expect("a ready runtime")
        };
        let arg = arg as usize;
        let r = catch_unwind(AssertUnwindSafe(|| {
            rt.run(move || main(arg as *mut c_void))
        }));
        global().state = State::Ready;
        if let Err(p) = r {
            return fail(
                GS_EINTERNAL,
                format!("gs_run: {}", crate::fatal::panic_message(&*p)),
            );
        }
        Ok(())
    })
}

/// `int gs_shutdown(void)`: destroy the global runtime; every channel
/// handle becomes stale.  GS_EBUSY while `gs_run` runs, GS_ENOTINIT when
/// there is none.
#[no_mangle]
pub extern "C" fn gs_shutdown() -> c_int {
    catch(|| {
        let rt = {
            let mut g = global();
            match g.state {
                State::Ready => {}
                State::Running => return fail(GS_EBUSY, "gs_shutdown: the runtime is running"),
                State::Uninit => return fail(GS_ENOTINIT, "gs_init has not been called"),
                State::Shutdown => return fail(GS_ENOTINIT, "the gstack runtime was shut down"),
            }
            g.state = State::Shutdown;
            g.managed.clear();
            g.rt.take()
        };
        chans().clear();
        drop(rt);
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Goroutines
// ---------------------------------------------------------------------------

/// `int gs_go(void (*fn)(void *), void *arg, size_t stack_size, uint64_t
/// *id_out)`: spawn a native goroutine running `fn(arg)` on a fixed stack
/// of `stack_size` bytes (0 = the config's `native_stack_size`).  `id_out`
/// may be NULL.  From a thread of the runtime.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_go(
    f: Option<extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
    stack_size: usize,
    id_out: *mut u64,
) -> c_int {
    catch(|| {
        let rt = runtime()?;
        let Some(f) = f else {
            return fail(GS_EINVAL, "gs_go: fn is NULL");
        };
        if stack_size > GS_MAX_NATIVE_STACK {
            return fail(
                GS_EINVAL,
                format!("gs_go: stack_size {stack_size} too large"),
            );
        }
        here(&rt)?;
        let mut b = Builder::new();
        if stack_size != 0 {
            b = b.stack_size(stack_size);
        }
        let arg = arg as usize;
        let id = b
            .spawn(move || f(arg as *mut c_void))
            .map_err(spawn_error)?;
        if !id_out.is_null() {
            // SAFETY: a non-null id_out is writable (the C contract).
            unsafe { id_out.write(id) };
        }
        Ok(())
    })
}

/// `int gs_go_managed(uintptr_t entry, const uintptr_t *args, size_t
/// nargs, size_t stack_size, uint64_t *id_out)`: spawn a managed goroutine
/// running `entry(g, args...)` (at most GS_MAX_MANAGED_ARGS after g) on a
/// movable stack starting at `stack_size` (0 = the runtime's current start
/// size).  GS_ENOTMANAGED unless `entry` starts a registered function.
/// With `id_out` non-NULL the result can be collected with `gs_result`.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_go_managed(
    entry: usize,
    args: *const usize,
    nargs: usize,
    stack_size: usize,
    id_out: *mut u64,
) -> c_int {
    catch(|| {
        let rt = runtime()?;
        if nargs > GS_MAX_MANAGED_ARGS {
            return fail(
                GS_EINVAL,
                format!("gs_go_managed: {nargs} arguments, at most {GS_MAX_MANAGED_ARGS}"),
            );
        }
        if nargs > 0 && args.is_null() {
            return fail(GS_EINVAL, "gs_go_managed: args is NULL");
        }
        if stack_size > rt.config().max_stack_size {
            return fail(
                GS_EINVAL,
                format!("gs_go_managed: stack_size {stack_size} above max_stack_size"),
            );
        }
        here(&rt)?;
        let a: &[usize] = if nargs == 0 {
            &[]
        } else {
            // SAFETY: args points at nargs words (the C contract; checked
            // non-null, nargs bounded).
            unsafe { core::slice::from_raw_parts(args, nargs) }
        };
        let mut b = Builder::new();
        if stack_size != 0 {
            b = b.stack_size(stack_size);
        }
        let h = b.spawn_managed(entry, a).map_err(spawn_error)?;
        let id = h.id;
        if !id_out.is_null() {
            global().managed.insert(id, h);
            // SAFETY: a non-null id_out is writable (the C contract).
            unsafe { id_out.write(id) };
        }
        Ok(())
    })
}

/// `int gs_result(uint64_t id, uintptr_t *out)`: the return value of the
/// managed goroutine `id` (spawned by `gs_go_managed` with an `id_out`).
/// GS_EAGAIN while it runs; once GS_OK has been returned the id is
/// released (a second call: GS_ESTALE).
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_result(id: u64, out: *mut usize) -> c_int {
    catch(|| {
        runtime()?;
        if out.is_null() {
            return fail(GS_EINVAL, "gs_result: out is NULL");
        }
        let mut g = global();
        let Some(h) = g.managed.get(&id) else {
            return fail(
                GS_ESTALE,
                format!("gs_result: no managed goroutine {id} to collect"),
            );
        };
        match h.result() {
            None => fail(GS_EAGAIN, format!("goroutine {id} is still running")),
            Some(v) => {
                g.managed.remove(&id);
                // SAFETY: checked non-null; writable (the C contract).
                unsafe { out.write(v) };
                Ok(())
            }
        }
    })
}

/// `int gs_yield_now(void)`: let the other runnable goroutines run.  From
/// a native goroutine.  (Managed code calls `gs_yield(g)`.)
#[no_mangle]
pub extern "C" fn gs_yield_now() -> c_int {
    catch(|| {
        let rt = runtime()?;
        native_goroutine(&rt)?;
        crate::runtime::yield_now();
        Ok(())
    })
}

/// `int gs_id(uint64_t *out)`: the calling goroutine's id (the main
/// goroutine is 1).  Inside a libcall: the id of the managed goroutine
/// that made it.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_id(out: *mut u64) -> c_int {
    catch(|| {
        let rt = runtime()?;
        if out.is_null() {
            return fail(GS_EINVAL, "gs_id: out is NULL");
        }
        let h = here(&rt)?;
        if h.curg.is_null() {
            return fail(GS_EFOREIGN, "gs_id: no goroutine runs on this thread now");
        }
        // SAFETY: curg is live; out checked non-null.
        unsafe { out.write((*h.curg).id) };
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Channels and select
// ---------------------------------------------------------------------------

/// `int gs_chan_make(size_t elem_size, size_t cap, gs_chan *out)`: a
/// channel of `cap` buffered elements (0 = unbuffered) of `elem_size`
/// bytes (0 allowed, at most GS_MAX_CHAN_ELEM).  Any thread.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_chan_make(elem_size: usize, cap: usize, out: *mut u64) -> c_int {
    catch(|| {
        runtime()?;
        if out.is_null() {
            return fail(GS_EINVAL, "gs_chan_make: out is NULL");
        }
        if elem_size > GS_MAX_CHAN_ELEM {
            return fail(
                GS_EINVAL,
                format!("gs_chan_make: elem_size {elem_size} above {GS_MAX_CHAN_ELEM}"),
            );
        }
        match elem_size.checked_mul(cap) {
            Some(n) if n <= GS_MAX_CHAN_BUF => {}
            _ => {
                return fail(
                    GS_ENOMEM,
                    format!("gs_chan_make: a buffer of {cap} x {elem_size} bytes is too large"),
                )
            }
        }
        let h = chans().insert(RawChan::new(elem_size, cap))?;
        // SAFETY: checked non-null; writable (the C contract).
        unsafe { out.write(h) };
        Ok(())
    })
}

/// `int gs_chan_send(gs_chan c, const void *elem)`: send the element at
/// `elem`, waiting for a receiver or buffer room.  GS_ECLOSED on a closed
/// channel.  From a native goroutine.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_chan_send(c: u64, elem: *const c_void) -> c_int {
    catch(|| {
        let rt = runtime()?;
        let ch = chans().get(c)?;
        if elem.is_null() && ch.elem_size() > 0 {
            return fail(GS_EINVAL, "gs_chan_send: elem is NULL");
        }
        native_goroutine(&rt)?;
        // SAFETY: elem points at elem_size readable bytes (the C contract)
        // and stays valid across the call; ch is kept alive by our Arc.
        unsafe { ch.send(elem as *const u8) }.map_err(chan_error)
    })
}

/// `int gs_chan_recv(gs_chan c, void *elem, int *ok)`: receive into `elem`
/// (NULL discards the value), waiting for a value.  `*ok` (if `ok` is not
/// NULL) is 1 for a value, 0 when the channel is closed and empty (`elem`
/// is then zeroed).  From a native goroutine.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_chan_recv(c: u64, elem: *mut c_void, ok: *mut c_int) -> c_int {
    catch(|| {
        let rt = runtime()?;
        let ch = chans().get(c)?;
        native_goroutine(&rt)?;
        // SAFETY: elem is NULL or points at elem_size writable bytes (the C
        // contract), valid across the call; ch is kept alive by our Arc.
        let got = unsafe { ch.recv(elem as *mut u8) }.map_err(chan_error)?;
        if !ok.is_null() {
            // SAFETY: a non-null ok is writable (the C contract).
            unsafe { ok.write(got as c_int) };
        }
        Ok(())
    })
}

/// `int gs_chan_close(gs_chan c)`: close the channel; waiting receivers get
/// ok = 0, waiting senders GS_ECLOSED.  GS_ECLOSED if already closed.  From
/// a thread of the runtime.
#[no_mangle]
pub extern "C" fn gs_chan_close(c: u64) -> c_int {
    catch(|| {
        let rt = runtime()?;
        let ch = chans().get(c)?;
        // Waking a waiter queues it on the caller's P: an M of ours only.
        here(&rt)?;
        ch.close().map_err(chan_error)
    })
}

/// `int gs_chan_len(gs_chan c, size_t *out)`: elements buffered now.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_chan_len(c: u64, out: *mut usize) -> c_int {
    catch(|| {
        let ch = chan(c)?;
        // SAFETY: out is NULL (refused) or writable (the C contract).
        unsafe { put(out, ch.len()) }
    })
}

/// `int gs_chan_cap(gs_chan c, size_t *out)`: the channel's capacity.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_chan_cap(c: u64, out: *mut usize) -> c_int {
    catch(|| {
        let ch = chan(c)?;
        // SAFETY: as gs_chan_len.
        unsafe { put(out, ch.cap()) }
    })
}

/// `int gs_chan_free(gs_chan c)`: forget the handle (it becomes stale; a
/// second free is GS_ESTALE).  Goroutines still waiting on the channel keep
/// it alive; freeing does not close it.  Any thread.
#[no_mangle]
pub extern "C" fn gs_chan_free(c: u64) -> c_int {
    catch(|| {
        runtime()?;
        let ch = chans().remove(c)?;
        drop(ch);
        Ok(())
    })
}

/// `int gs_chan_select(gs_select_case *cases, size_t n, int block, size_t
/// *chosen, int *recv_ok)`: wait until one case can proceed and do it (a
/// random one among those ready).  `*chosen` = its index, `*recv_ok` (if
/// not NULL) as for gs_chan_recv.  A case on GS_CHAN_NIL is never ready.
/// With `block` 0 and no case ready: GS_EAGAIN (the default case).  A send
/// case whose channel is closed: GS_ECLOSED.  From a native goroutine.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_chan_select(
    cases: *const GsSelectCase,
    n: usize,
    block: c_int,
    chosen: *mut usize,
    recv_ok: *mut c_int,
) -> c_int {
    catch(|| {
        let rt = runtime()?;
        if n > GS_MAX_SELECT_CASES {
            return fail(
                GS_EINVAL,
                format!("gs_chan_select: {n} cases, at most {GS_MAX_SELECT_CASES}"),
            );
        }
        if n > 0 && cases.is_null() {
            return fail(GS_EINVAL, "gs_chan_select: cases is NULL");
        }
        if chosen.is_null() {
            return fail(GS_EINVAL, "gs_chan_select: chosen is NULL");
        }
        let cs: &[GsSelectCase] = if n == 0 {
            &[]
        } else {
            // SAFETY: cases points at n cases (the C contract).
            unsafe { core::slice::from_raw_parts(cases, n) }
        };
        // The channels stay alive in `keep` for the whole select.
        let mut keep = Vec::with_capacity(n);
        let mut rust_cases = Vec::with_capacity(n);
        let mut index = Vec::with_capacity(n);
        {
            let mut t = chans();
            for (i, c) in cs.iter().enumerate() {
                let dir = match c.dir {
                    GS_SELECT_SEND => SelectCase::SEND,
                    GS_SELECT_RECV => SelectCase::RECV,
                    d => {
                        return fail(GS_EINVAL, format!("gs_chan_select: case {i}: bad dir {d}"));
                    }
                };
                if c.chan == GS_CHAN_NIL {
                    continue;
                }
                let ch = t.get(c.chan)?;
                if dir == SelectCase::SEND && c.elem.is_null() && ch.elem_size() > 0 {
                    return fail(GS_EINVAL, format!("gs_chan_select: case {i}: elem is NULL"));
                }
                rust_cases.push(SelectCase {
                    chan: Arc::as_ptr(&ch),
                    dir,
                    elem: c.elem as *mut u8,
                });
                keep.push(ch);
                index.push(i);
            }
        }
        if rust_cases.is_empty() && block != 0 {
            return fail(
                GS_EINVAL,
                "gs_chan_select: no case could ever proceed (would block forever)",
            );
        }
        native_goroutine(&rt)?;
        // SAFETY: every case's channel is kept alive by `keep`; elems
        // point at elem_size bytes (the C contract) valid across the call.
        let r = unsafe { crate::chan::select(&rust_cases, block != 0) }.map_err(chan_error)?;
        drop(keep);
        match r {
            None => fail(GS_EAGAIN, "gs_chan_select: no case ready (default)"),
            Some((i, ok)) => {
                // SAFETY: chosen checked non-null; recv_ok NULL or writable.
                unsafe {
                    chosen.write(index[i]);
                    if !recv_ok.is_null() {
                        recv_ok.write(ok as c_int);
                    }
                }
                Ok(())
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Function table
// ---------------------------------------------------------------------------

/// `int gs_register(const gs_func_desc *d)`: register a managed function
/// (JIT or AOT output).  All of it is registered or nothing: GS_EREGISTER
/// with the reason in `gs_last_error_message()`.  Any thread, any time.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_register(d: *const GsFuncDesc) -> c_int {
    catch(|| {
        if d.is_null() {
            return fail(GS_EINVAL, "gs_register: desc is NULL");
        }
        // SAFETY: non-null; points at a gs_func_desc (the C contract).
        let d = unsafe { *d };
        if d.name.is_null() {
            return fail(GS_EINVAL, "gs_register: name is NULL");
        }
        if d.nsites > GS_MAX_CALLSITES {
            return fail(GS_EINVAL, format!("gs_register: {} call sites", d.nsites));
        }
        if d.nsites > 0 && d.sites.is_null() {
            return fail(GS_EINVAL, "gs_register: sites is NULL");
        }
        // SAFETY: name is a C string (the C contract).
        let name = unsafe { CStr::from_ptr(d.name) }
            .to_string_lossy()
            .into_owned();
        let sites: &[GsCallsite] = if d.nsites == 0 {
            &[]
        } else {
            // SAFETY: sites points at nsites call sites (the C contract).
            unsafe { core::slice::from_raw_parts(d.sites, d.nsites) }
        };
        let mut call_sites = Vec::with_capacity(sites.len());
        for (i, s) in sites.iter().enumerate() {
            if s.nslots > GS_MAX_CALLSITES {
                return fail(
                    GS_EINVAL,
                    format!("gs_register: site {i}: {} slots", s.nslots),
                );
            }
            if s.nslots > 0 && s.ptr_slots.is_null() {
                return fail(
                    GS_EINVAL,
                    format!("gs_register: site {i}: ptr_slots is NULL"),
                );
            }
            let slots = if s.nslots == 0 {
                Vec::new()
            } else {
                // SAFETY: ptr_slots points at nslots words (the C contract).
                unsafe { core::slice::from_raw_parts(s.ptr_slots, s.nslots) }.to_vec()
            };
            call_sites.push(CallSiteDesc {
                ret_offset: s.ret_offset,
                frame_size: s.frame_size,
                ptr_slots: slots,
            });
        }
        crate::functab::register(FuncDesc {
            name,
            start: d.start,
            len: d.len,
            frame_size: d.frame_size,
            call_sites,
        })
        .map(drop)
        .or_else(|e| fail(GS_EREGISTER, e.to_string()))
    })
}

/// `int gs_unregister(uintptr_t start)`: remove the function registered
/// at `start` (no goroutine may have a frame in it).  GS_ESTALE if none.
#[no_mangle]
pub extern "C" fn gs_unregister(start: usize) -> c_int {
    catch(|| {
        if crate::functab::unregister(start) {
            Ok(())
        } else {
            fail(
                GS_ESTALE,
                format!("gs_unregister: no function registered at {start:#x}"),
            )
        }
    })
}

/// `int gs_register_asm_section(const void *start, const void *stop)`:
/// register the functions declared with the macros of gstack_asm.h whose
/// records lie in `[start, stop)` (a program's `gstack_funcs` section;
/// `gs_register_asm()` in the header passes the caller's).  Functions
/// already registered at the same address are skipped, so it is harmless
/// where the library found them itself (static linking).  NULL, NULL: no
/// declarations, GS_OK.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_register_asm_section(
    start: *const c_void,
    stop: *const c_void,
) -> c_int {
    catch(|| {
        let (a, b) = (start as usize, stop as usize);
        if a == 0 && b == 0 {
            return Ok(());
        }
        let rec = core::mem::size_of::<AsmFunc>();
        if a == 0 || b < a || (b - a) % rec != 0 || a % 8 != 0 {
            return fail(
                GS_EINVAL,
                format!("gs_register_asm_section: bad bounds {a:#x}..{b:#x}"),
            );
        }
        // The library's own declarations first (a no-op after the first
        // time), so they never collide with ours below.
        drop(crate::functab::read());
        let n = (b - a) / rec;
        for i in 0..n {
            // SAFETY: [start, stop) holds records laid out by the macros
            // (the C contract: the bounds of a gstack_funcs section).
            let f = unsafe { *(start as *const AsmFunc).add(i) };
            let known = crate::functab::read()
                .find(f.start.wrapping_add(1))
                .is_some_and(|x| x.start == f.start);
            if known {
                continue;
            }
            if f.name.is_null() || f.end < f.start || (f.sites_end as usize) < (f.sites as usize) {
                return fail(
                    GS_EINVAL,
                    format!("gs_register_asm_section: bad record {i}"),
                );
            }
            // SAFETY: the record's pointers point into the same object's
            // data (the macros' layout).
            let (name, sites) = unsafe {
                let n = (f.sites_end as usize - f.sites as usize) / core::mem::size_of::<AsmSite>();
                (
                    CStr::from_ptr(f.name).to_string_lossy().into_owned(),
                    if n == 0 {
                        &[][..]
                    } else {
                        core::slice::from_raw_parts(f.sites, n)
                    },
                )
            };
            let mut call_sites = Vec::with_capacity(sites.len());
            for s in sites {
                let Some(off) = s
                    .ret
                    .checked_sub(f.start)
                    .and_then(|o| u32::try_from(o).ok())
                else {
                    return fail(
                        GS_EREGISTER,
                        format!("{name}: call site {:#x} outside the function", s.ret),
                    );
                };
                call_sites.push(CallSiteDesc {
                    ret_offset: off,
                    frame_size: s.frame_size as u32,
                    ptr_slots: (0..64u32)
                        .filter(|b| s.ptr_bitmap & (1u64 << b) != 0)
                        .map(|b| b * 8)
                        .collect(),
                });
            }
            crate::functab::register(FuncDesc {
                name,
                start: f.start,
                len: f.end - f.start,
                frame_size: u32::try_from(f.frame_size).unwrap_or(u32::MAX),
                call_sites,
            })
            .or_else(|e| fail(GS_EREGISTER, e.to_string()))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Scan cycles, statistics, tracebacks
// ---------------------------------------------------------------------------

/// Whether a scan cycle may be started from here: a native goroutine, or
/// the system stack (a libcall) when no cycle is running.
fn gc_check(rt: &Runtime) -> Res {
    let h = here(rt)?;
    if h.on_curg_stack {
        // SAFETY: curg is the live goroutine whose stack we run on.
        if unsafe { (*h.curg).kind } != GKind::Native {
            return fail(GS_EFOREIGN, "gs_gc: called on a managed goroutine's stack");
        }
        return Ok(());
    }
    // On the system stack the cycle runs in place; it cannot wait for a
    // running one.
    // SAFETY: h.m is this thread's live M; its Sched outlives the call.
    if unsafe { (*(*h.m).sched).cycle_active() } {
        return fail(
            GS_EBUSY,
            "gs_gc: a scan cycle is running (called from the system stack)",
        );
    }
    Ok(())
}

/// `int gs_gc(gs_gc_report *out)`: run a scan cycle (shrinking the stacks
/// that calmed down) and return when it is over.  `out` may be NULL.  From
/// a native goroutine, or inside a libcall (where it runs in place).
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_gc(out: *mut GsGcReport) -> c_int {
    catch(|| {
        let rt = runtime()?;
        gc_check(&rt)?;
        let r = GsGcReport::from(crate::scan::gc());
        if !out.is_null() {
            // SAFETY: a non-null out is writable (the C contract).
            unsafe { out.write(r) };
        }
        Ok(())
    })
}

/// `int gs_gc_visit(void (*visit)(const gs_root *, void *), void *ctx,
/// gs_gc_report *out)`: `gs_gc` calling `visit(root, ctx)` for every
/// pointer slot of every managed goroutine's frames (on the system stack:
/// `visit` must not call gs_* functions that park).
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_gc_visit(
    visit: Option<extern "C" fn(*const GsRoot, *mut c_void)>,
    ctx: *mut c_void,
    out: *mut GsGcReport,
) -> c_int {
    catch(|| {
        let rt = runtime()?;
        let Some(visit) = visit else {
            return fail(GS_EINVAL, "gs_gc_visit: visit is NULL");
        };
        gc_check(&rt)?;
        let mut f = |r: &Root| {
            let root = GsRoot::from(r);
            visit(&root, ctx);
        };
        let r = GsGcReport::from(crate::scan::gc_visit(&mut f));
        if !out.is_null() {
            // SAFETY: a non-null out is writable (the C contract).
            unsafe { out.write(r) };
        }
        Ok(())
    })
}

/// `int gs_stats(gs_stats_t *out)`: the runtime's figures (the same as
/// the Rust `Stats`).  Any thread, once initialised.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_stats(out: *mut GsStats) -> c_int {
    catch(|| {
        let rt = runtime()?;
        // SAFETY: out is NULL (refused) or writable (the C contract).
        unsafe { put(out, GsStats::from(rt.stats())) }
    })
}

/// `int gs_traceback(uint64_t id, char *buf, size_t len, size_t *needed)`:
/// the traceback of goroutine `id` as text (Go's shape), NUL-terminated
/// and truncated to `len`; `*needed` (if not NULL) = the full size with the
/// NUL.  GS_ERANGE if truncated, GS_ESTALE for an unknown or finished
/// goroutine.  From a thread of the runtime.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_traceback(
    id: u64,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> c_int {
    catch(|| {
        let rt = runtime()?;
        here(&rt)?;
        let text = crate::inspect::traceback(id).or_else(|e| fail(GS_ESTALE, e))?;
        // SAFETY: buf has len bytes, needed is NULL or writable (the C
        // contract).
        unsafe { write_text(&text, buf, len, needed) }
    })
}

/// `int gs_stack_size(uint64_t id, size_t *out)`: the current stack size
/// of goroutine `id` (a managed one's grows and shrinks).  GS_ESTALE for
/// an unknown or finished goroutine.  From a thread of the runtime.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_stack_size(id: u64, out: *mut usize) -> c_int {
    catch(|| {
        let rt = runtime()?;
        if out.is_null() {
            return fail(GS_EINVAL, "gs_stack_size: out is NULL");
        }
        here(&rt)?;
        let n = crate::inspect::stack_size(id).or_else(|e| fail(GS_ESTALE, e))?;
        // SAFETY: checked non-null; writable (the C contract).
        unsafe { out.write(n) };
        Ok(())
    })
}

/// `int gs_dump_all(char *buf, size_t len, size_t *needed)`: the
/// tracebacks of every live goroutine, by id, as `gs_traceback` gives them.
///
/// # Safety
/// Each pointer argument is NULL or valid as `gstack.h` documents it.
#[no_mangle]
pub unsafe extern "C" fn gs_dump_all(buf: *mut c_char, len: usize, needed: *mut usize) -> c_int {
    catch(|| {
        let rt = runtime()?;
        let h = here(&rt)?;
        // SAFETY: h.m is this thread's live M; its Sched outlives the call.
        let sched = unsafe { &*(*h.m).sched };
        // SAFETY: every G the table lists is live while the runtime runs.
        let mut ids: Vec<u64> = sched
            .all_gs()
            .into_iter()
            .map(|g| unsafe { (*g).id })
            .collect();
        ids.sort_unstable();
        let mut text = String::new();
        for id in ids {
            // A goroutine that finished meanwhile is skipped.
            if let Ok(t) = crate::inspect::traceback(id) {
                text.push_str(&t);
                text.push('\n');
            }
        }
        // SAFETY: as gs_traceback.
        unsafe { write_text(&text, buf, len, needed) }
    })
}

// ---------------------------------------------------------------------------
// Layout facts for the header drift test
// ---------------------------------------------------------------------------

/// `(struct, field, offset, size)` of every field of every struct shared
/// with C, and `(struct, "sizeof", size, align)`: what tests/c_abi.rs
/// compares with the numbers a C program compiled against
/// include/gstack.h prints.
#[doc(hidden)]
pub fn layout() -> Vec<(&'static str, &'static str, usize, usize)> {
    use core::mem::{align_of, offset_of, size_of};
    fn size_of_field<T, F>(_: fn(&T) -> &F) -> usize {
        size_of::<F>()
    }
    macro_rules! fields {
        ($v:ident, $c:literal, $t:ty, [$($f:ident),*]) => {
            $v.push(($c, "sizeof", size_of::<$t>(), align_of::<$t>()));
            $($v.push((
                $c,
                stringify!($f),
                offset_of!($t, $f),
                size_of_field(|s: &$t| &s.$f),
            ));)*
        };
    }
    let mut v = Vec::new();
    fields!(
        v,
        "gs_config",
        GsConfig,
        [
            procs,
            native_stack_size,
            managed_stack_size,
            max_stack_size,
            gc_percent,
            debug
        ]
    );
    fields!(
        v,
        "gs_stats_t",
        GsStats,
        [
            stack_in_use,
            stack_sys,
            stack_cached,
            goroutines_alive,
            goroutines_spawned,
            goroutines_recycled,
            stack_copies,
            stack_bytes_copied,
            stack_peak,
            gc_cycles,
            managed_start_size
        ]
    );
    fields!(
        v,
        "gs_gc_report",
        GsGcReport,
        [
            scanned,
            shrunk,
            pending,
            freed,
            roots,
            workers_scanned,
            start_size
        ]
    );
    fields!(v, "gs_root", GsRoot, [goroutine, func, slot, value]);
    fields!(
        v,
        "gs_callsite",
        GsCallsite,
        [ret_offset, frame_size, ptr_slots, nslots]
    );
    fields!(
        v,
        "gs_func_desc",
        GsFuncDesc,
        [name, start, len, frame_size, sites, nsites]
    );
    fields!(v, "gs_select_case", GsSelectCase, [chan, dir, elem]);
    v
}

/// Constants the header defines, with their values (for the drift test).
#[doc(hidden)]
pub fn constants() -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&'static str, u64)> = ERRORS
        .iter()
        .map(|&(c, n, _)| (n, c as i64 as u64))
        .collect();
    v.extend([
        ("GS_SELECT_SEND", GS_SELECT_SEND as u64),
        ("GS_SELECT_RECV", GS_SELECT_RECV as u64),
        ("GS_CHAN_NIL", GS_CHAN_NIL),
        ("GS_MAX_MANAGED_ARGS", GS_MAX_MANAGED_ARGS as u64),
        ("GS_MAX_CHAN_ELEM", GS_MAX_CHAN_ELEM as u64),
        (
            "GS_G_STACKGUARD0_OFFSET",
            crate::G_STACKGUARD0_OFFSET as u64,
        ),
        ("GS_MAX_FRAME", crate::MAX_FRAME as u64),
    ]);
    v
}
