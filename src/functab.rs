//! The function table: which code is *managed*, and where its frames hold
//! pointers.
//!
//! A managed function is registered with its code range, a name, the size
//! of its largest frame, and for every call site (keyed by the return
//! address, as an offset from the function's start) the size of its frame
//! at that call and the words of that frame that may hold pointers, counted
//! in bytes from the frame's SP at the call.  That is exactly what a
//! copying stack needs: at any call site the runtime can say which words of
//! the frame to adjust when the stack moves.
//!
//! Three producers fill it: Rust code (a JIT or AOT compiler) through
//! [`register`], C through the C ABI, and hand-written assembly through the
//! macros of `include/gstack_asm.h`, whose declarations are collected from
//! the `gstack_funcs` linker section the first time the table is used.
//!
//! Lookups happen while registrations go on (a JIT adds code at any time):
//! readers take a shared lock once per walk ([`read`]), a registration takes
//! it exclusively for the moment it inserts.  Each lookup is a binary
//! search, short-cut when consecutive frames are in the same function (deep
//! recursion is the common case).

use std::fmt;
use std::sync::{Arc, Once, RwLock, RwLockReadGuard};

/// One call site as a producer describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSiteDesc {
    /// Return address of the call minus the function's start.
    pub ret_offset: u32,
    /// FP - SP of the frame at this call: the frame's words run from SP
    /// (offset 0) up to the frame record at FP (offset `frame_size`).
    pub frame_size: u32,
    /// Byte offsets from SP of the words that may hold pointers, each a
    /// multiple of 8 and below `frame_size`.
    pub ptr_slots: Vec<u32>,
}

/// One function as a producer describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncDesc {
    pub name: String,
    /// Address of the first instruction.
    pub start: usize,
    /// Length of the code in bytes.
    pub len: usize,
    /// The most the function lowers SP below its caller's SP, frame record
    /// included: what must fit below `stackguard0` before the entry check
    /// runs, and what a growing stack must make room for.
    pub frame_size: u32,
    /// Call sites sorted by `ret_offset`, each once.
    pub call_sites: Vec<CallSiteDesc>,
}

/// Why a registration was refused.  Nothing of a refused function stays in
/// the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The code range is empty or wraps around the address space.
    EmptyCode { name: String },
    /// The code range overlaps a registered function's.
    Overlap { name: String, other: String },
    /// A call site's return address is not inside the function.
    CallSiteOutsideCode { name: String, ret_offset: u32 },
    /// Call sites are not sorted by return offset.
    UnsortedCallSites { name: String, index: usize },
    /// Two call sites have the same return offset.
    DuplicateCallSite { name: String, ret_offset: u32 },
    /// A frame size is not a multiple of 8.
    MisalignedFrame {
        name: String,
        ret_offset: u32,
        frame_size: u32,
    },
    /// A pointer slot is not a multiple of 8.
    MisalignedSlot {
        name: String,
        ret_offset: u32,
        slot: u32,
    },
    /// A pointer slot lies outside its frame.
    SlotOutsideFrame {
        name: String,
        ret_offset: u32,
        slot: u32,
        frame_size: u32,
    },
    /// The function's frame is larger than the stack guard allows: the
    /// entry check would run after the frame already overflowed.
    FrameTooLarge {
        name: String,
        frame_size: u32,
        limit: u32,
    },
    /// A call site's frame (plus its frame record) is larger than the
    /// function's declared largest frame.
    SiteFrameTooLarge {
        name: String,
        ret_offset: u32,
        frame_size: u32,
        func_frame: u32,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RegisterError::*;
        match self {
            EmptyCode { name } => write!(f, "{name}: empty code range"),
            Overlap { name, other } => {
                write!(f, "{name}: code range overlaps registered function {other}")
            }
            CallSiteOutsideCode { name, ret_offset } => {
                write!(f, "{name}: call site +{ret_offset:#x} is outside the function's code")
            }
            UnsortedCallSites { name, index } => {
                write!(f, "{name}: call sites are not sorted by return offset (at index {index})")
            }
            DuplicateCallSite { name, ret_offset } => {
                write!(f, "{name}: call site +{ret_offset:#x} is given twice")
            }
            MisalignedFrame { name, ret_offset, frame_size } => write!(
                f,
                "{name}: call site +{ret_offset:#x}: frame size {frame_size} is not a multiple of 8"
            ),
            MisalignedSlot { name, ret_offset, slot } => write!(
                f,
                "{name}: call site +{ret_offset:#x}: pointer slot {slot} is not a multiple of 8"
            ),
            SlotOutsideFrame { name, ret_offset, slot, frame_size } => write!(
                f,
                "{name}: call site +{ret_offset:#x}: pointer slot {slot} is outside its {frame_size}-byte frame"
            ),
            FrameTooLarge { name, frame_size, limit } => write!(
                f,
                "{name}: frame of {frame_size} bytes exceeds the {limit}-byte limit set by the stack guard"
            ),
            SiteFrameTooLarge { name, ret_offset, frame_size, func_frame } => write!(
                f,
                "{name}: call site +{ret_offset:#x}: frame of {frame_size} bytes (+16 for its record) exceeds the function's {func_frame}-byte frame"
            ),
        }
    }
}

impl std::error::Error for RegisterError {}

/// A call site as the table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSite {
    pub ret_offset: u32,
    pub frame_size: u32,
    slots_start: u32,
    slots_len: u32,
}

/// A registered function.
#[derive(Debug)]
pub struct FuncInfo {
    pub name: String,
    pub start: usize,
    pub end: usize,
    pub frame_size: u32,
    sites: Vec<CallSite>,
    slots: Vec<u32>,
}

impl FuncInfo {
    /// The call site whose return address is `pc`, if `pc` is one.
    #[inline]
    pub fn call_site(&self, pc: usize) -> Option<&CallSite> {
        let off = pc.checked_sub(self.start)?;
        let off = u32::try_from(off).ok()?;
        self.sites
            .binary_search_by_key(&off, |s| s.ret_offset)
            .ok()
            .map(|i| &self.sites[i])
    }

    /// Byte offsets from SP of the pointer slots of `site`.
    #[inline]
    pub fn slots(&self, site: &CallSite) -> &[u32] {
        &self.slots[site.slots_start as usize..(site.slots_start + site.slots_len) as usize]
    }

    pub fn call_sites(&self) -> &[CallSite] {
        &self.sites
    }
}

/// The largest frame a managed function may have: what fits in the bytes
/// kept free below `stackguard0` when its entry check runs after the
/// prologue (Cranelift style).  Go-style checks before the prologue could
/// allow more; one limit keeps the rule simple.
pub const MAX_FRAME: u32 = crate::g::STACK_GUARD as u32 - 32;

/// The table: functions sorted by start address.
pub struct Table {
    funcs: Vec<Arc<FuncInfo>>,
}

impl Table {
    /// The function whose code contains the return address `pc`.  A return
    /// address may equal the end of the code (a call as the last
    /// instruction), so the range tested is (start, end].
    #[inline]
    pub fn find(&self, pc: usize) -> Option<&Arc<FuncInfo>> {
        let key = pc.wrapping_sub(1);
        let i = self.funcs.partition_point(|f| f.start <= key);
        if i == 0 {
            return None;
        }
        let f = &self.funcs[i - 1];
        (key < f.end).then_some(f)
    }

    pub fn len(&self) -> usize {
        self.funcs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.funcs.is_empty()
    }

    /// A lookup helper that remembers the last function found.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            table: self,
            last: None,
        }
    }
}

/// Lookups that remember the last function: consecutive frames of a deep
/// recursion cost one range test each instead of a binary search.
pub struct Cursor<'a> {
    table: &'a Table,
    last: Option<&'a FuncInfo>,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub fn find(&mut self, pc: usize) -> Option<&'a FuncInfo> {
        let key = pc.wrapping_sub(1);
        if let Some(f) = self.last {
            if f.start <= key && key < f.end {
                return Some(f);
            }
        }
        let f = self.table.find(pc).map(|a| &**a);
        if f.is_some() {
            self.last = f;
        }
        f
    }
}

static TABLE: RwLock<Table> = RwLock::new(Table { funcs: Vec::new() });
static ASM_DECLS: Once = Once::new();

/// The table, for a walk: lookups are consistent for as long as the guard
/// lives; registrations wait until it is dropped.
pub fn read() -> RwLockReadGuard<'static, Table> {
    load_asm_declarations();
    TABLE.read().unwrap_or_else(|e| e.into_inner())
}

/// Check `d` completely, then insert it.  Either all of it is registered
/// or nothing is.
pub fn register(d: FuncDesc) -> Result<Arc<FuncInfo>, RegisterError> {
    load_asm_declarations();
    register_now(d)
}

fn register_now(d: FuncDesc) -> Result<Arc<FuncInfo>, RegisterError> {
    let info = Arc::new(validate(d)?);
    let mut t = TABLE.write().unwrap_or_else(|e| e.into_inner());
    let i = t.funcs.partition_point(|f| f.start < info.start);
    for j in [i.wrapping_sub(1), i] {
        if let Some(o) = t.funcs.get(j) {
            if o.start < info.end && info.start < o.end {
                return Err(RegisterError::Overlap {
                    name: info.name.clone(),
                    other: o.name.clone(),
                });
            }
        }
    }
    t.funcs.insert(i, info.clone());
    Ok(info)
}

/// Remove the function that starts at `start` (a JIT freeing code).  The
/// caller guarantees no goroutine has a frame in it.  Returns whether one
/// was registered there.
pub fn unregister(start: usize) -> bool {
    load_asm_declarations();
    let mut t = TABLE.write().unwrap_or_else(|e| e.into_inner());
    match t.funcs.binary_search_by_key(&start, |f| f.start) {
        Ok(i) => {
            t.funcs.remove(i);
            true
        }
        Err(_) => false,
    }
}

fn validate(d: FuncDesc) -> Result<FuncInfo, RegisterError> {
    use RegisterError::*;
    let name = d.name;
    let end = match d.start.checked_add(d.len) {
        Some(e) if d.len > 0 => e,
        _ => return Err(EmptyCode { name }),
    };
    if d.frame_size > MAX_FRAME {
        return Err(FrameTooLarge {
            name,
            frame_size: d.frame_size,
            limit: MAX_FRAME,
        });
    }
    let mut sites = Vec::with_capacity(d.call_sites.len());
    let mut slots = Vec::new();
    for (index, cs) in d.call_sites.iter().enumerate() {
        let ret_offset = cs.ret_offset;
        // A return address follows a call instruction: (start, end].
        if ret_offset == 0 || ret_offset as usize > d.len {
            return Err(CallSiteOutsideCode { name, ret_offset });
        }
        if let Some(prev) = sites.last().map(|s: &CallSite| s.ret_offset) {
            if prev == ret_offset {
                return Err(DuplicateCallSite { name, ret_offset });
            }
            if prev > ret_offset {
                return Err(UnsortedCallSites { name, index });
            }
        }
        if cs.frame_size as u64 + 16 > d.frame_size as u64 {
            return Err(SiteFrameTooLarge {
                name,
                ret_offset,
                frame_size: cs.frame_size,
                func_frame: d.frame_size,
            });
        }
        if cs.frame_size % 8 != 0 {
            return Err(MisalignedFrame {
                name,
                ret_offset,
                frame_size: cs.frame_size,
            });
        }
        let start = slots.len() as u32;
        for &slot in &cs.ptr_slots {
            if slot % 8 != 0 {
                return Err(MisalignedSlot {
                    name,
                    ret_offset,
                    slot,
                });
            }
            if slot >= cs.frame_size {
                return Err(SlotOutsideFrame {
                    name,
                    ret_offset,
                    slot,
                    frame_size: cs.frame_size,
                });
            }
            slots.push(slot);
        }
        sites.push(CallSite {
            ret_offset,
            frame_size: cs.frame_size,
            slots_start: start,
            slots_len: cs.ptr_slots.len() as u32,
        });
    }
    Ok(FuncInfo {
        name,
        start: d.start,
        end,
        frame_size: d.frame_size,
        sites,
        slots,
    })
}

// ---- declarations made by the assembler macros (include/gstack_asm.h) ----

/// A function record in the `gstack_funcs` section, as the macros lay it
/// out (all fields 8 bytes).
#[repr(C)]
struct AsmFunc {
    start: usize,
    end: usize,
    name: *const u8,
    sites: *const AsmSite,
    sites_end: *const AsmSite,
    frame_size: usize,
}

/// A call-site record of the macros: return address, frame size, and a
/// bitmap of the frame's pointer words (bit i = the word at SP + 8*i).
#[repr(C)]
struct AsmSite {
    ret: usize,
    frame_size: usize,
    ptr_bitmap: u64,
}

extern "C" {
    /// The section's bounds, or (0, 0) without declarations (asm).
    fn gs_asm_funcs_bounds(out: *mut [usize; 2]);
}

/// Register every function the assembler macros declared in this program
/// (once).  A bad declaration is a fatal error: it is a build bug.
fn load_asm_declarations() {
    ASM_DECLS.call_once(|| {
        let mut bounds = [0usize; 2];
        // SAFETY: the linker places the records of every object's
        // gstack_funcs section contiguously between the two bound symbols;
        // each record's pointers point into the same object's read-only
        // data.  Without declarations both bounds are 0 and the loop is
        // empty.
        unsafe {
            gs_asm_funcs_bounds(&mut bounds);
            let mut p = bounds[0] as *const AsmFunc;
            let stop = bounds[1] as *const AsmFunc;
            while p < stop {
                let f = &*p;
                let name = std::ffi::CStr::from_ptr(f.name.cast())
                    .to_string_lossy()
                    .into_owned();
                let n = f.sites_end.offset_from(f.sites) as usize;
                let sites = std::slice::from_raw_parts(f.sites, n);
                let call_sites = sites
                    .iter()
                    .map(|s| CallSiteDesc {
                        ret_offset: (s.ret - f.start) as u32,
                        frame_size: s.frame_size as u32,
                        ptr_slots: (0..64)
                            .filter(|i| s.ptr_bitmap & (1u64 << i) != 0)
                            .map(|i| i * 8)
                            .collect(),
                    })
                    .collect();
                let d = FuncDesc {
                    name,
                    start: f.start,
                    len: f.end - f.start,
                    frame_size: f.frame_size as u32,
                    call_sites,
                };
                if let Err(e) = register_now(d) {
                    crate::fatal::fatal(&format!("bad assembler declaration: {e}"));
                }
                p = p.add(1);
            }
        }
    });
}
