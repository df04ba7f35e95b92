//! Cranelift as a producer of managed code (cargo feature `cranelift`).
//!
//! A language implementer builds CLIF with Cranelift's own
//! [`FunctionBuilder`]; this module turns each function into *managed*
//! code: code whose frames the runtime can walk and move, because every
//! call site is registered in the [function table](crate::functab) with the
//! exact words of its frame that may hold pointers.
//!
//! ```
//! use gstack::cranelift::cranelift_codegen::ir::{condcodes::IntCC, types::I64};
//! use gstack::cranelift::{InstBuilder, ManagedJit};
//!
//! let mut jit = ManagedJit::new()?;
//! // count(g, n) -> i64: yields n times, returns n.
//! let count = jit.declare("count", 1, 1)?;
//! jit.define(count, |mb| {
//!     let n = mb.params[0];
//!     let (head, body, exit) = (mb.b.create_block(), mb.b.create_block(), mb.b.create_block());
//!     let i = mb.b.append_block_param(head, I64);
//!     let zero = mb.b.ins().iconst(I64, 0);
//!     mb.b.ins().jump(head, &[zero.into()]);
//!     mb.b.switch_to_block(head);
//!     let more = mb.b.ins().icmp(IntCC::UnsignedLessThan, i, n);
//!     mb.b.ins().brif(more, body, &[], exit, &[]);
//!     mb.b.switch_to_block(body);
//!     mb.yield_now(); // a call site: registered with its stack map
//!     let next = mb.b.ins().iadd_imm_s(i, 1);
//!     mb.b.ins().jump(head, &[next.into()]);
//!     mb.b.switch_to_block(exit);
//!     mb.b.ins().return_(&[i]);
//!     Ok(())
//! })?;
//! jit.finalize()?; // executable, and registered in the function table
//! let entry = jit.entry(count);
//! gstack::run(move || {
//!     let h = gstack::Builder::new().spawn_managed(entry, &[3]).unwrap();
//!     while h.result().is_none() {
//!         gstack::yield_now();
//!     }
//!     assert_eq!(h.result(), Some(3));
//! });
//! # Ok::<(), gstack::cranelift::JitError>(())
//! ```
//!
//! # The frame ABI, and why the settings are what they are
//!
//! The runtime moves a goroutine's stack by copying it and adjusting every
//! word that pointed into the old copy: the frame records (found by walking
//! the frame-pointer chain) and the pointer slots that the function table
//! names for each frame's current call site.  Everything else is copied
//! verbatim.  So the compiled code must satisfy three rules:
//!
//! 1. **Frame records everywhere.**  `preserve_frame_pointers=true` makes
//!    every function set up `[saved FP, return address]` at FP (x86-64
//!    `push rbp; mov rbp, rsp`, aarch64 `stp x29, x30, [sp, #-16]!;
//!    mov x29, sp`) and never use rbp / x29 for anything else.  Cranelift's
//!    frame is static (no dynamic stack slots here), so a frame's SP at each
//!    of its calls is `FP - frame_to_fp_offset`, which is what the stack
//!    maps report as `span` and what the walker checks.
//!
//! 2. **No stack address survives a call outside a known slot.**  Values
//!    that may point into the stack and are live across a call must be
//!    declared ([`ManagedBuilder::needs_stack_map`]): Cranelift then spills
//!    them to stack slots before every call and reloads them after, and
//!    reports those slots in its user stack maps.  The optimiser breaks
//!    this at `opt_level=speed`: it merges identical `stack_addr`
//!    (`get_stack_pointer`, `get_frame_pointer`) values across calls and
//!    keeps the result in a callee-saved register, which after a move still
//!    points into the old stack (it even breaks Cranelift's own reload of a
//!    declared value on x86).  Until the egraph treats those instructions
//!    as non-mergeable, managed code is compiled at **`opt_level=none`**.
//!    Pointers the frontend keeps in its *own* stack slots are invisible to
//!    Cranelift's maps; [`ManagedBuilder::ptr_stack_slot`] makes slots whose
//!    every word this module adds to the map of every call site.
//!
//! 3. **A stack check whose guard covers the frame.**  Each function starts
//!    with `if SP < g.stackguard0 { gs_morestack(g) }`, emitted here in
//!    CLIF, so it necessarily runs *after* Cranelift's prologue (no CLIF
//!    runs before it).  By then SP is already lowered by the whole frame
//!    and the prologue has written the frame record and the callee-saved
//!    registers; on x86-64 the slow path's `call` then pushes a return
//!    address.  So the bytes kept free below `stackguard0` must hold the
//!    function's whole frame as registered (record + saves + slots +
//!    that push: see `frame_size` in [`ManagedJit::finalize`]'s source):
//!    a function whose frame exceeds [`MAX_FRAME`](crate::MAX_FRAME) is
//!    refused at registration.  When `gs_morestack` returns, the whole
//!    frame (spill and stack slots included) has moved with the stack, and
//!    the callee-saved registers hold what they held.  Cranelift's own `stack_limit` check traps instead of
//!    calling, and probestack (which would touch pages below the guard
//!    before any check) is disabled.  Because `stackguard0` doubles as the
//!    preemption flag, the same check is the function's synchronous safe
//!    point.  The comparison is unsigned, so the preemption value (above
//!    every stack) always takes the slow path.
//!
//! The G pointer is every managed function's first parameter (like a
//! Wasmtime vmctx).  The G never moves, so it needs no stack map.
//!
//! # Calls
//!
//! Every call instruction in a managed function is a registered call site,
//! whether it was made with [`ManagedBuilder::call_managed`],
//! [`ManagedBuilder::yield_now`] or directly with the builder.  Calling
//! ordinary (native) code directly from managed code is allowed only for
//! small leaf functions: native code runs on the goroutine's small stack
//! with no entry check (it must fit in the bytes below `stackguard0` that
//! the caller's frame left), and it must neither park the goroutine nor
//! call back into managed code, since frames the table does not know must
//! never be on a stack that is parked, scanned or moved.
//!
//! # Limits
//!
//! At most [`MAX_PARAMS`] integer/pointer parameters after `g` (all stay in
//! registers on both architectures, and a goroutine's entry function gets
//! exactly that many from `spawn_managed`), and at most one result.

use crate::functab::{self, CallSiteDesc, FuncDesc, RegisterError};
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{
    AbiParam, Block, DebugTag, FuncRef, Function, GlobalValue, MemFlagsData, Signature, StackSlot,
    StackSlotData, StackSlotKind, UserFuncName, Value,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, MachDebugTagPos};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, ModuleError};
use std::collections::HashMap;
use std::fmt;

pub use cranelift_codegen;
pub use cranelift_codegen::ir::InstBuilder;
pub use cranelift_frontend;
pub use cranelift_jit;
pub use cranelift_module;
pub use cranelift_module::{DataId, FuncId};

/// The most integer/pointer parameters a managed function takes after `g`.
///
/// `g` plus five fill the six argument registers of System V x86-64 (rdi,
/// rsi, rdx, rcx, r8, r9), so no argument is ever passed on the stack, and
/// `gs_goentry` passes exactly that many start arguments on x86-64.
pub const MAX_PARAMS: usize = 5;

/// The most results a managed function returns.
pub const MAX_RETURNS: usize = 1;

/// Bytes of a frame record, `[saved FP, return address]`, on both
/// architectures.
const FRAME_RECORD: u32 = 16;

/// Bytes a call instruction writes below the caller's SP: the return
/// address `call` pushes on x86-64; `bl` writes nothing on aarch64.
#[cfg(target_arch = "x86_64")]
const CALL_PUSH: u32 = 8;
#[cfg(target_arch = "aarch64")]
const CALL_PUSH: u32 = 0;

/// Debug tag put on the entry check's call to `gs_morestack`, to find its
/// return offset in the compiled code.
const MORESTACK_TAG: u32 = 0x6773_6d73; // "gsms"

/// Why a managed function could not be built or registered.
#[derive(Debug)]
pub enum JitError {
    /// The host ISA or the flags could not be set up.
    Setup(String),
    /// The CLIF did not verify or could not be compiled (the message
    /// includes the verifier's annotated listing).
    Codegen(String),
    /// The module refused a declaration or a definition, or finalizing
    /// failed.
    Module(String),
    /// The function table refused a function (for instance
    /// [`RegisterError::FrameTooLarge`]).  None of the functions being
    /// finalized with it was registered.
    Register(RegisterError),
    /// The API was misused (unknown function, defined twice, too many
    /// parameters, a stack-map value that is not a pointer, ...).
    Usage(String),
}

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitError::Setup(m) => write!(f, "cranelift setup: {m}"),
            JitError::Codegen(m) => write!(f, "cranelift codegen: {m}"),
            JitError::Module(m) => write!(f, "cranelift module: {m}"),
            JitError::Register(e) => write!(f, "function table: {e}"),
            JitError::Usage(m) => write!(f, "managed jit: {m}"),
        }
    }
}

impl std::error::Error for JitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JitError::Register(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RegisterError> for JitError {
    fn from(e: RegisterError) -> JitError {
        JitError::Register(e)
    }
}

fn module_err(e: ModuleError) -> JitError {
    match e {
        ModuleError::Compilation(c) => JitError::Codegen(c.to_string()),
        other => JitError::Module(other.to_string()),
    }
}

/// What `define` extracted from the compiled code, waiting for
/// `finalize` to know the code's address.
struct Compiled {
    len: usize,
    frame_size: u32,
    call_sites: Vec<CallSiteDesc>,
}

enum State {
    Declared,
    /// Compiled, but its maps could not be read: never registered.
    Broken,
    Defined(Compiled),
    /// Finalized: the code is at `start..start+len`; `registered` says
    /// whether the function table accepted it.
    Finalized {
        start: usize,
        len: usize,
        registered: bool,
    },
}

struct FuncMeta {
    name: String,
    params: usize,
    returns: usize,
    state: State,
    /// Cranelift's listing of the compiled code, when asked for.
    disasm: Option<String>,
}

/// A JIT whose functions are managed code.
///
/// Declare functions, define their bodies with a [`ManagedBuilder`], then
/// [`finalize`](Self::finalize): the code becomes executable and every
/// function is registered in the function table.  Functions can be added
/// in several rounds of define + finalize.
///
/// Dropping a `ManagedJit` leaves its code in memory and registered (a
/// goroutine may still be running it); [`free`](Self::free) releases both.
pub struct ManagedJit {
    module: JITModule,
    ctx: Context,
    fctx: FunctionBuilderContext,
    funcs: HashMap<FuncId, FuncMeta>,
    /// Defined, not yet finalized, in definition order.
    pending: Vec<FuncId>,
    morestack: FuncId,
    yield_: FuncId,
    want_disasm: bool,
}

impl ManagedJit {
    /// A JIT for the host, configured for movable frames: `opt_level=none`
    /// (see the module docs for the optimiser hazard),
    /// `preserve_frame_pointers=true`, `enable_probestack=false`,
    /// `unwind_info=true`, `enable_verifier=true`, with `gs_morestack` and
    /// `gs_yield` known to it.
    pub fn new() -> Result<ManagedJit, JitError> {
        Self::with_builder(|_| {})
    }

    /// [`new`](Self::new), letting `configure` add to the [`JITBuilder`]
    /// before the module is made: symbols for the native functions the
    /// code imports (`jb.symbol(name, ptr)`), lookup functions.  The
    /// codegen flags are this module's and cannot be changed.
    pub fn with_builder(configure: impl FnOnce(&mut JITBuilder)) -> Result<ManagedJit, JitError> {
        let mut flags = settings::builder();
        for (name, value) in [
            ("opt_level", "none"),
            ("preserve_frame_pointers", "true"),
            ("enable_probestack", "false"),
            ("unwind_info", "true"),
            ("enable_verifier", "true"),
            ("is_pic", "false"),
        ] {
            flags
                .set(name, value)
                .map_err(|e| JitError::Setup(format!("setting {name}={value}: {e}")))?;
        }
        let isa = cranelift_native::builder()
            .map_err(|e| JitError::Setup(format!("host ISA: {e}")))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| JitError::Setup(format!("host ISA: {e}")))?;
        let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        configure(&mut jb);
        // Set last, so that nothing the caller added can replace them.
        jb.symbol("gs_morestack", crate::morestack_addr() as *const u8);
        jb.symbol("gs_yield", crate::yield_addr() as *const u8);
        let mut module = JITModule::new(jb);

        let mut sig = module.make_signature();
        sig.params.push(AbiParam::new(I64));
        let morestack = module
            .declare_function("gs_morestack", Linkage::Import, &sig)
            .map_err(module_err)?;
        let yield_ = module
            .declare_function("gs_yield", Linkage::Import, &sig)
            .map_err(module_err)?;
        Ok(ManagedJit {
            ctx: module.make_context(),
            module,
            fctx: FunctionBuilderContext::new(),
            funcs: HashMap::new(),
            pending: Vec::new(),
            morestack,
            yield_,
            want_disasm: false,
        })
    }

    /// Keep Cranelift's listing of the machine code of every function
    /// defined from now on (see [`disasm`](Self::disasm)).
    pub fn set_disasm(&mut self, on: bool) {
        self.want_disasm = on;
    }

    /// The machine-code listing of `id`, if it was defined while
    /// [`set_disasm`](Self::set_disasm) was on.
    pub fn disasm(&self, id: FuncId) -> Option<&str> {
        self.funcs.get(&id)?.disasm.as_deref()
    }

    /// The JIT module, for what this API does not wrap: declaring and
    /// defining data objects, declaring native functions to import (see
    /// [`ManagedBuilder::import_func`] and [`ManagedBuilder::import_data`]).
    /// Do not define functions through it: they would not be managed.
    pub fn module(&mut self) -> &mut JITModule {
        &mut self.module
    }

    fn signature(module: &JITModule, params: usize, returns: usize) -> Signature {
        let mut sig = module.make_signature();
        for _ in 0..=params {
            sig.params.push(AbiParam::new(I64));
        }
        for _ in 0..returns {
            sig.returns.push(AbiParam::new(I64));
        }
        sig
    }

    /// Declare a managed function `name(g, p1..p_params) -> [i64; returns]`:
    /// `params` integer/pointer parameters after the implicit `g` (all
    /// `i64`, at most [`MAX_PARAMS`]), `returns` results (at most
    /// [`MAX_RETURNS`]).  The name is what the function table and
    /// tracebacks show.
    pub fn declare(
        &mut self,
        name: &str,
        params: usize,
        returns: usize,
    ) -> Result<FuncId, JitError> {
        if params > MAX_PARAMS {
            return Err(JitError::Usage(format!(
                "{name}: {params} parameters after g; at most {MAX_PARAMS} are supported"
            )));
        }
        if returns > MAX_RETURNS {
            return Err(JitError::Usage(format!(
                "{name}: {returns} results; at most {MAX_RETURNS} is supported"
            )));
        }
        let sig = Self::signature(&self.module, params, returns);
        let id = self
            .module
            .declare_function(name, Linkage::Local, &sig)
            .map_err(module_err)?;
        if self.funcs.contains_key(&id) || id == self.morestack || id == self.yield_ {
            return Err(JitError::Usage(format!("{name}: declared twice")));
        }
        self.funcs.insert(
            id,
            FuncMeta {
                name: name.to_owned(),
                params,
                returns,
                state: State::Declared,
                disasm: None,
            },
        );
        Ok(id)
    }

    /// Define the body of `id` and compile it.
    ///
    /// This module emits the entry block itself: `g` is block parameter 0,
    /// then `if get_stack_pointer <u load.i64 [g + G_STACKGUARD0_OFFSET] {
    /// call gs_morestack(g) }` (the slow block is cold, so Cranelift places
    /// it at the end of the function), then a jump to the body block.
    /// `body` gets a [`ManagedBuilder`] positioned at the start of the body
    /// block and must fill (terminate) every block it creates; sealing is
    /// done here.
    ///
    /// The code is compiled now (verifier errors come back as
    /// [`JitError::Codegen`]) and becomes executable and registered at the
    /// next [`finalize`](Self::finalize).
    pub fn define(
        &mut self,
        id: FuncId,
        body: impl FnOnce(&mut ManagedBuilder) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        let meta = self
            .funcs
            .get(&id)
            .ok_or_else(|| JitError::Usage(format!("{id}: not a managed function of this jit")))?;
        match meta.state {
            State::Declared => {}
            State::Broken => {
                return Err(JitError::Usage(format!(
                    "{}: its definition failed; declare the function anew",
                    meta.name
                )))
            }
            _ => return Err(JitError::Usage(format!("{}: defined twice", meta.name))),
        }
        let (params, returns) = (meta.params, meta.returns);
        let name = meta.name.clone();

        let ManagedJit {
            module,
            ctx,
            fctx,
            funcs,
            morestack,
            yield_,
            want_disasm,
            ..
        } = &mut *self;
        ctx.clear();
        ctx.func = Function::with_name_signature(
            UserFuncName::user(0, id.as_u32()),
            Self::signature(module, params, returns),
        );

        let frontend_config = module.target_config();
        let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
        let entry = b.create_block();
        let slow = b.create_block();
        let body_block = b.create_block();
        b.set_cold_block(slow);
        b.append_block_params_for_function_params(entry);

        // Entry check.
        b.switch_to_block(entry);
        let args = b.block_params(entry).to_vec();
        let g = args[0];
        let sp = b.ins().get_stack_pointer(I64);
        let guard = b.ins().load(
            I64,
            MemFlagsData::trusted(),
            g,
            crate::G_STACKGUARD0_OFFSET as i32,
        );
        let below = b.ins().icmp(
            cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan,
            sp,
            guard,
        );
        b.ins().brif(below, slow, &[], body_block, &[]);

        b.switch_to_block(slow);
        let ms = module.declare_func_in_func(*morestack, b.func);
        let call = b.ins().call(ms, &[g]);
        b.func.debug_tags.set(call, [DebugTag::User(MORESTACK_TAG)]);
        b.ins().jump(body_block, &[]);

        b.switch_to_block(body_block);
        let yield_ref = module.declare_func_in_func(*yield_, b.func);

        let mut mb = ManagedBuilder {
            b,
            g,
            params: args[1..].to_vec(),
            module: &mut *module,
            funcs: &*funcs,
            refs: HashMap::new(),
            yield_ref,
            ptr_slots: Vec::new(),
            error: None,
        };
        let r = body(&mut mb);
        let ManagedBuilder {
            mut b,
            ptr_slots,
            error,
            ..
        } = mb;
        let outcome = r
            .and_then(|()| error.map_or(Ok(()), Err))
            .and_then(|()| check_terminated(&name, b.func, body_block));
        if let Err(e) = outcome {
            // The builder was not finalized: its context must start afresh
            // (the builder's borrow of it ends here).
            let _ = b;
            *fctx = FunctionBuilderContext::new();
            ctx.clear();
            return Err(e);
        }

        // Zero the pointer slots first thing in the body, so that no call
        // site's map ever covers uninitialised words (a scan would report
        // garbage roots).  The entry check's call does not list them.
        if !ptr_slots.is_empty() {
            use cranelift_codegen::cursor::{Cursor, FuncCursor};
            let mut pos = FuncCursor::new(b.func).at_first_insertion_point(body_block);
            let zero = pos.ins().iconst(I64, 0);
            for &(ss, size) in &ptr_slots {
                for off in (0..size).step_by(8) {
                    pos.ins().stack_store(I64, zero, ss, off as i32);
                }
            }
        }

        b.seal_all_blocks();
        // Runs the frontend's safepoint spiller: values declared with
        // needs_stack_map are stored to stack slots before each call where
        // they are live and reloaded after it.
        b.finalize(frontend_config);

        if let Err(errors) = cranelift_codegen::verify_function(&ctx.func, module.isa()) {
            let listing =
                cranelift_codegen::print_errors::pretty_verifier_error(&ctx.func, None, errors);
            ctx.clear();
            return Err(JitError::Codegen(format!(
                "{name}: CLIF does not verify:\n{listing}"
            )));
        }
        ctx.set_disasm(*want_disasm);
        if let Err(e) = module.define_function(id, ctx) {
            ctx.clear();
            return Err(match module_err(e) {
                JitError::Codegen(m) => JitError::Codegen(format!("{name}: {m}")),
                other => other,
            });
        }
        let compiled = Self::extract(&name, ctx, &ptr_slots);
        let meta = funcs.get_mut(&id).expect("declared");
        meta.disasm = ctx.compiled_code().and_then(|c| c.vcode.clone());
        ctx.clear();
        // The module holds the code now: it cannot be defined again.
        meta.state = match compiled {
            Ok(c) => State::Defined(c),
            Err(e) => {
                meta.state = State::Broken;
                return Err(e);
            }
        };
        self.pending.push(id);
        Ok(())
    }

    /// Read the frame size and every call site's map out of the compiled
    /// code.
    fn extract(
        name: &str,
        ctx: &Context,
        ptr_slots: &[(StackSlot, u32)],
    ) -> Result<Compiled, JitError> {
        let err = |m: String| JitError::Codegen(format!("{name}: {m}"));
        let cc = ctx
            .compiled_code()
            .ok_or_else(|| err("no compiled code after define".into()))?;
        let buf = &cc.buffer;
        let layout = buf
            .frame_layout()
            .ok_or_else(|| err("Cranelift reported no frame layout".into()))?;
        // FP - SP in the body: clobber saves + fixed storage (stack and
        // spill slots) + outgoing arguments.  Static: no dynamic slots.
        let span = layout.frame_to_fp_offset;
        if span % 8 != 0 {
            return Err(err(format!("frame of {span} bytes is not word-aligned")));
        }

        let morestack_rets: Vec<u32> = buf
            .debug_tags()
            .filter(|t| {
                t.pos == MachDebugTagPos::Post && t.tags.contains(&DebugTag::User(MORESTACK_TAG))
            })
            .map(|t| t.offset)
            .collect();
        let [morestack_ret] = morestack_rets[..] else {
            return Err(err(format!(
                "expected one entry-check call, found {}",
                morestack_rets.len()
            )));
        };

        // The words of the frontend's pointer slots, SP-relative.
        let mut slot_words = Vec::new();
        for &(ss, size) in ptr_slots {
            let base = layout.stackslots[ss].offset;
            slot_words.extend((0..size).step_by(8).map(|o| base + o));
        }

        let mut maps: HashMap<u32, (u32, Vec<u32>)> = HashMap::new();
        for (ret, map_span, map) in buf.user_stack_maps() {
            let mut offs = Vec::new();
            for (ty, off) in map.entries() {
                if ty != I64 {
                    return Err(JitError::Usage(format!(
                        "{name}: a stack-map value of type {ty} is live across the call at +{ret:#x}; \
                         only i64 (pointer) values can be declared with needs_stack_map"
                    )));
                }
                if off % 8 != 0 {
                    return Err(err(format!(
                        "stack-map slot at sp+{off} is not word-aligned"
                    )));
                }
                offs.push(off);
            }
            if maps.insert(*ret, (*map_span, offs)).is_some() {
                return Err(err(format!("two stack maps at +{ret:#x}")));
            }
        }

        let mut call_sites = Vec::new();
        for cs in buf.call_sites() {
            let ret = cs.ret_addr;
            let (site_span, mut slots) = maps.remove(&ret).unwrap_or((span, Vec::new()));
            // The walker checks FP - SP against this at every frame; a
            // difference would mean SP is not constant in the body, which
            // every other assumption here relies on.
            if site_span != span {
                return Err(err(format!(
                    "call at +{ret:#x}: frame span {site_span} differs from the static frame {span}"
                )));
            }
            if ret != morestack_ret {
                slots.extend_from_slice(&slot_words);
            }
            slots.sort_unstable();
            slots.dedup();
            call_sites.push(CallSiteDesc {
                ret_offset: ret,
                frame_size: span,
                ptr_slots: slots,
            });
        }
        if let Some(ret) = maps.keys().next() {
            return Err(err(format!("stack map at +{ret:#x} is not at a call site")));
        }
        call_sites.sort_by_key(|c| c.ret_offset);
        if !call_sites.iter().any(|c| c.ret_offset == morestack_ret) {
            return Err(err("the entry check's call is not a call site".into()));
        }

        // The function's frame size: the most it lowers SP below its
        // caller's SP.  The call into it and the prologue's frame setup
        // write the 16-byte frame record (x86-64: return address pushed by
        // `call` + saved rbp; aarch64: x29 and x30 by `stp`), so FP =
        // caller's SP - 16; the rest of the prologue lowers SP by `span`
        // (clobber saves, stack and spill slots, outgoing arguments), all
        // before the entry check runs.  Then the function's own calls into
        // the runtime stubs (gs_morestack when the check fails, gs_yield)
        // write their return address below SP on x86-64 (8 bytes) before
        // switching to the system stack; calls into managed callees count
        // in the callee's own frame size.  Cranelift never writes below SP
        // otherwise (no red zone, no dynamic stack slots, probestack off).
        // So every byte the function touches lies in
        // [caller SP - (span + 16 + CALL_PUSH), caller SP).
        let frame_size = span + FRAME_RECORD + CALL_PUSH;

        Ok(Compiled {
            len: cc.code_buffer().len(),
            frame_size,
            call_sites,
        })
    }

    /// Make every defined function executable, then register each in the
    /// function table: code range, name, frame size, and every call site
    /// with its frame size (FP - SP) and pointer slots.
    ///
    /// All or nothing: if the table refuses one function (for instance a
    /// frame larger than [`MAX_FRAME`](crate::MAX_FRAME)), none of the
    /// functions of this round is registered, and the error says why.
    /// Their code stays in memory, unregistered: [`entry`](Self::entry)
    /// refuses them (they would call each other).
    pub fn finalize(&mut self) -> Result<(), JitError> {
        self.module.finalize_definitions().map_err(module_err)?;
        let pending = std::mem::take(&mut self.pending);
        let mut descs = Vec::with_capacity(pending.len());
        for &id in &pending {
            let meta = self.funcs.get_mut(&id).expect("pending is declared");
            let start = self.module.get_finalized_function(id) as usize;
            let State::Defined(c) = std::mem::replace(&mut meta.state, State::Declared) else {
                unreachable!("pending function not in the Defined state");
            };
            meta.state = State::Finalized {
                start,
                len: c.len,
                registered: false,
            };
            descs.push((
                id,
                FuncDesc {
                    name: meta.name.clone(),
                    start,
                    len: c.len,
                    frame_size: c.frame_size,
                    call_sites: c.call_sites,
                },
            ));
        }
        let mut done: Vec<(FuncId, usize)> = Vec::with_capacity(descs.len());
        for (id, d) in descs {
            let start = d.start;
            match functab::register(d) {
                Ok(_) => done.push((id, start)),
                Err(e) => {
                    for &(_, s) in &done {
                        // Nothing can be running them: entry() refused
                        // them until now.
                        functab::unregister(s);
                    }
                    return Err(JitError::Register(e));
                }
            }
        }
        for (id, _) in done {
            if let Some(FuncMeta {
                state: State::Finalized { registered, .. },
                ..
            }) = self.funcs.get_mut(&id)
            {
                *registered = true;
            }
        }
        Ok(())
    }

    /// The code address of `id`, to give to
    /// [`Builder::spawn_managed`](crate::Builder::spawn_managed).
    ///
    /// Panics unless `id` was finalized and registered.
    pub fn entry(&self, id: FuncId) -> usize {
        match self.funcs.get(&id).map(|m| (&m.name, &m.state)) {
            Some((
                _,
                State::Finalized {
                    start,
                    registered: true,
                    ..
                },
            )) => *start,
            Some((name, State::Finalized { .. })) => {
                panic!("{name}: its registration was refused; it must not run as managed code")
            }
            Some((name, State::Broken)) => panic!("{name}: its definition failed"),
            Some((name, _)) => panic!("{name}: not finalized yet"),
            None => panic!("{id}: not a managed function of this jit"),
        }
    }

    /// Whether `id` is finalized and registered in the function table.
    pub fn is_registered(&self, id: FuncId) -> bool {
        matches!(
            self.funcs.get(&id).map(|m| &m.state),
            Some(State::Finalized {
                registered: true,
                ..
            })
        )
    }

    /// The code range `[start, end)` of `id` (registered or refused).
    ///
    /// Panics unless `id` was finalized.
    pub fn code_range(&self, id: FuncId) -> (usize, usize) {
        match self.funcs.get(&id).map(|m| (&m.name, &m.state)) {
            Some((_, State::Finalized { start, len, .. })) => (*start, *start + *len),
            Some((name, _)) => panic!("{name}: not finalized yet"),
            None => panic!("{id}: not a managed function of this jit"),
        }
    }

    /// Unregister every function of this JIT and free its code.
    ///
    /// # Safety
    /// No goroutine has a frame in any of these functions, now or later,
    /// and no code address taken from this JIT is used again.
    pub unsafe fn free(self) {
        for meta in self.funcs.values() {
            if let State::Finalized {
                start,
                registered: true,
                ..
            } = meta.state
            {
                functab::unregister(start);
            }
        }
        // SAFETY: the caller guarantees the code is no longer in use, and
        // nothing in the table refers to it any more.
        unsafe { self.module.free_memory() };
    }
}

/// Every block the body used must end in a terminator (the frontend only
/// asserts this in debug builds).
fn check_terminated(name: &str, func: &Function, body: Block) -> Result<(), JitError> {
    if !func.layout.is_block_inserted(body) {
        return Err(JitError::Usage(format!("{name}: the body block is empty")));
    }
    for block in func.layout.blocks() {
        let terminated = func
            .layout
            .last_inst(block)
            .is_some_and(|i| func.dfg.insts[i].opcode().is_terminator());
        if !terminated {
            return Err(JitError::Usage(format!(
                "{name}: block {block} does not end in a terminator"
            )));
        }
    }
    Ok(())
}

/// The body of one managed function under construction.
///
/// `b` is Cranelift's full [`FunctionBuilder`], positioned in the body
/// block after the entry check.  Use the helpers below for calls and for
/// anything that may point into the stack.
pub struct ManagedBuilder<'a> {
    /// The user's CLIF toolbox.
    pub b: FunctionBuilder<'a>,
    /// The G pointer (the function's first parameter; it never moves).
    pub g: Value,
    /// The declared parameters after `g`.
    pub params: Vec<Value>,
    module: &'a mut JITModule,
    funcs: &'a HashMap<FuncId, FuncMeta>,
    refs: HashMap<FuncId, FuncRef>,
    yield_ref: FuncRef,
    ptr_slots: Vec<(StackSlot, u32)>,
    error: Option<JitError>,
}

impl ManagedBuilder<'_> {
    fn fail(&mut self, e: JitError) {
        self.error.get_or_insert(e);
    }

    /// Call another managed function of this JIT (passing `g` first).
    /// Returns its results.  A mismatch (unknown callee, wrong number of
    /// arguments) makes `define` fail; zeros stand in for the results.
    pub fn call_managed(&mut self, callee: FuncId, args: &[Value]) -> Vec<Value> {
        let Some(meta) = self.funcs.get(&callee) else {
            self.fail(JitError::Usage(format!(
                "call_managed: {callee} is not a managed function of this jit"
            )));
            return Vec::new();
        };
        if args.len() != meta.params {
            let e = JitError::Usage(format!(
                "call_managed: {} takes {} arguments after g, got {}",
                meta.name,
                meta.params,
                args.len()
            ));
            let n = meta.returns;
            self.fail(e);
            return (0..n).map(|_| self.b.ins().iconst(I64, 0)).collect();
        }
        let fref = self.import_func(callee);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.g);
        all.extend_from_slice(args);
        let call = self.b.ins().call(fref, &all);
        self.b.inst_results(call).to_vec()
    }

    /// A reference to a function declared through [`ManagedJit::module`]
    /// (or with [`ManagedJit::declare`]), for `b.ins().call`.  Read "Calls"
    /// in the [module docs](self) before calling native code: only small
    /// leaf functions that never park may be called directly.
    pub fn import_func(&mut self, id: FuncId) -> FuncRef {
        if let Some(&r) = self.refs.get(&id) {
            return r;
        }
        let r = self.module.declare_func_in_func(id, self.b.func);
        self.refs.insert(id, r);
        r
    }

    /// A global value for the address of a data object declared through
    /// [`ManagedJit::module`].  (Data is not on the stack: its address
    /// needs no stack map.)
    pub fn import_data(&mut self, id: DataId) -> GlobalValue {
        self.module.declare_data_in_func(id, self.b.func)
    }

    /// Call `gs_yield(g)`: let the other goroutines run.  While parked,
    /// the goroutine's stack may be scanned (and, later, moved): values
    /// that point into the stack and are live across this call must have
    /// been declared with [`needs_stack_map`](Self::needs_stack_map).
    pub fn yield_now(&mut self) {
        let g = self.g;
        self.b.ins().call(self.yield_ref, &[g]);
    }

    /// Declare that `v` (an `i64`) may point into the stack, or anywhere
    /// the embedder's GC cares about: at each call where it is live it is
    /// kept in a stack slot listed in that call site's map (and reloaded
    /// after the call, so a moved stack is seen).
    pub fn needs_stack_map(&mut self, v: Value) {
        let ty = self.b.func.dfg.value_type(v);
        if ty != I64 {
            self.fail(JitError::Usage(format!(
                "needs_stack_map: {v} is {ty}; only i64 (pointer) values are supported"
            )));
            return;
        }
        self.b.declare_value_needs_stack_map(v);
    }

    /// An explicit stack slot of `size` bytes (rounded up to whole 8-byte
    /// words, 8-aligned) every word of which holds a pointer (or zero): it
    /// is listed in the map of every call site but the entry check's.  It
    /// is zeroed at the start of the body, before any call.
    pub fn ptr_stack_slot(&mut self, size: u32) -> StackSlot {
        let size = size.max(8).div_ceil(8) * 8;
        let ss = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            size,
            3,
        ));
        self.ptr_slots.push((ss, size));
        ss
    }
}
