//! Managed code produced by Cranelift (feature `cranelift`): functions
//! built in CLIF run as managed goroutines, and a parked goroutine's
//! frames are walked precisely, with exactly the pointer slots declared.
//!
//! Stack growth does not exist yet, so the goroutines get a stack big
//! enough for their deepest recursion.
#![cfg(feature = "cranelift")]

use gstack::cranelift::cranelift_codegen::ir::condcodes::IntCC;
use gstack::cranelift::cranelift_codegen::ir::types::I64;
use gstack::cranelift::cranelift_codegen::ir::{
    BlockArg, MemFlagsData, StackSlotData, StackSlotKind,
};
use gstack::cranelift::{FuncId, InstBuilder, JitError, ManagedJit};
use gstack::inspect::FrameInfo;
use gstack::{Builder, Config, DebugFlags, RegisterError, Runtime, MAX_FRAME};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

fn runtime(managed_stack_size: usize) -> Runtime {
    Runtime::new(Config {
        procs: 1,
        managed_stack_size,
        debug: DebugFlags::default(),
        ..Config::default()
    })
}

/// Words shared between a test and its managed goroutine (on the heap, so
/// not stack pointers): [0] result, [1] progress flag.
struct Shared([AtomicI64; 2]);

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared([AtomicI64::new(i64::MIN), AtomicI64::new(0)]))
    }
    fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }
    fn result(&self) -> i64 {
        self.0[0].load(Ordering::SeqCst)
    }
    fn flag(&self) -> i64 {
        self.0[1].load(Ordering::SeqCst)
    }
}

/// Build `rec(g, depth, outer, top, out) -> i64`.
///
/// Each frame stores `depth*3+1` in a plain stack slot `vs`, takes its
/// address `own` (declared: a pointer into this frame), and computes
/// `outer2` = `outer`, or `own` in the outermost frame (called with outer
/// = 0): the address of the outermost frame's slot, passed down through
/// every frame (declared).  A pointer slot `ps` also holds `outer2`.  So
/// each frame has exactly three pointer words at its calls: the spills of
/// `own` and `outer2`, and `ps`.  (`outer` itself is declared too, but is
/// live only across the entry check's call.)
///
/// At depth 0 it sets out[1] = 1 and yields three times.  On the way back
/// each frame checks `*own == depth*3+1`, `*outer2 == top*3+1` and
/// `ps == outer2`, and returns the sum of `depth*3+1` over the frames at
/// and below it, or a negative code naming the check and depth that
/// failed.  The outermost frame stores the result in out[0].
fn build_rec(jit: &mut ManagedJit) -> FuncId {
    let rec = jit.declare("rec", 4, 1).unwrap();
    jit.define(rec, |mb| {
        let [depth, outer, top, out] = mb.params[..] else {
            unreachable!()
        };
        let b = &mut mb.b;
        let vs = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8, 3));
        let val = b.ins().imul_imm_s(depth, 3);
        let val = b.ins().iadd_imm_s(val, 1);
        b.ins().stack_store(I64, val, vs, 0);
        let own = b.ins().stack_addr(I64, vs, 0);
        let is_outer = b.ins().icmp_imm_s(IntCC::Equal, outer, 0);
        let outer2 = b.ins().select(is_outer, own, outer);
        mb.needs_stack_map(own);
        mb.needs_stack_map(outer2);
        mb.needs_stack_map(outer);
        let ps = mb.ptr_stack_slot(8);
        let b = &mut mb.b;
        b.ins().stack_store(I64, outer2, ps, 0);

        let leaf = b.create_block();
        let recurse = b.create_block();
        let check = b.create_block();
        let check_own = b.create_block();
        let check_outer = b.create_block();
        let check_ps = b.create_block();
        let done = b.create_block();
        let exit = b.create_block();
        let sub = b.append_block_param(check, I64);
        let x = b.append_block_param(exit, I64);
        b.ins().brif(depth, recurse, &[], leaf, &[]);

        // depth 0: tell the test, and park a few times.
        b.switch_to_block(leaf);
        let one = b.ins().iconst(I64, 1);
        b.ins().store(MemFlagsData::trusted(), one, out, 8);
        for _ in 0..3 {
            mb.yield_now();
        }
        let b = &mut mb.b;
        let zero = b.ins().iconst(I64, 0);
        b.ins().jump(check, &[BlockArg::Value(zero)]);

        b.switch_to_block(recurse);
        let d1 = b.ins().iadd_imm_s(depth, -1);
        let r = mb.call_managed(rec, &[d1, outer2, top, out]);
        let b = &mut mb.b;
        b.ins().jump(check, &[BlockArg::Value(r[0])]);

        // Errors from below pass through.
        b.switch_to_block(check);
        let neg = b.ins().icmp_imm_s(IntCC::SignedLessThan, sub, 0);
        b.ins()
            .brif(neg, exit, &[BlockArg::Value(sub)], check_own, &[]);

        b.switch_to_block(check_own);
        let v = b.ins().load(I64, MemFlagsData::trusted(), own, 0);
        let ok = b.ins().icmp(IntCC::Equal, v, val);
        let code = b.ins().iadd_imm_s(depth, 1_000_000);
        let code = b.ins().ineg(code);
        b.ins()
            .brif(ok, check_outer, &[], exit, &[BlockArg::Value(code)]);

        b.switch_to_block(check_outer);
        let ov = b.ins().load(I64, MemFlagsData::trusted(), outer2, 0);
        let want = b.ins().imul_imm_s(top, 3);
        let want = b.ins().iadd_imm_s(want, 1);
        let ok = b.ins().icmp(IntCC::Equal, ov, want);
        let code = b.ins().iadd_imm_s(depth, 2_000_000);
        let code = b.ins().ineg(code);
        b.ins()
            .brif(ok, check_ps, &[], exit, &[BlockArg::Value(code)]);

        b.switch_to_block(check_ps);
        let pv = b.ins().stack_load(I64, I64, ps, 0);
        let ok = b.ins().icmp(IntCC::Equal, pv, outer2);
        let code = b.ins().iadd_imm_s(depth, 3_000_000);
        let code = b.ins().ineg(code);
        b.ins().brif(ok, done, &[], exit, &[BlockArg::Value(code)]);

        b.switch_to_block(done);
        let total = b.ins().iadd(sub, v);
        b.ins().jump(exit, &[BlockArg::Value(total)]);

        b.switch_to_block(exit);
        let store = b.create_block();
        let ret = b.create_block();
        b.ins().brif(is_outer, store, &[], ret, &[]);
        b.switch_to_block(store);
        b.ins().store(MemFlagsData::trusted(), x, out, 0);
        b.ins().jump(ret, &[]);
        b.switch_to_block(ret);
        b.ins().return_(&[x]);
        Ok(())
    })
    .unwrap();
    rec
}

/// Check the frames of `rec` parked at depth 0 under a spawn at depth `d`.
fn check_rec_frames(frames: &[FrameInfo], d: usize, code: (usize, usize)) -> Result<(), String> {
    if frames.len() != d + 1 {
        return Err(format!("{} frames, want {}", frames.len(), d + 1));
    }
    // SAFETY: called while the goroutine is parked, on addresses checked
    // (before each read) to lie in its stack, whose frames stay put until
    // it runs again.
    let read = |a: usize| unsafe { *(a as *const usize) };
    let outermost = &frames[d];
    // In the outermost frame all three pointer words hold its own slot's
    // address: that is the outer pointer every frame carries.
    let outer = outermost
        .ptr_slots
        .first()
        .ok_or("outermost frame has no pointer slots")?
        .1;
    if !(outermost.sp <= outer && outer < outermost.fp) {
        return Err(format!(
            "outer pointer {outer:#x} is not in the outermost frame [{:#x}, {:#x})",
            outermost.sp, outermost.fp
        ));
    }
    if read(outer) != 3 * d + 1 {
        return Err(format!("*outer = {}, want {}", read(outer), 3 * d + 1));
    }
    for (i, f) in frames.iter().enumerate() {
        let ctx = || format!("frame {i} (pc {:#x}, sp {:#x}, fp {:#x})", f.pc, f.sp, f.fp);
        if f.func.as_deref() != Some("rec") {
            return Err(format!("{}: function {:?}, want rec", ctx(), f.func));
        }
        if !f.precise {
            return Err(format!("{}: not precise", ctx()));
        }
        if !(code.0 < f.pc && f.pc <= code.1) {
            return Err(format!("{}: pc outside rec's code {code:x?}", ctx()));
        }
        if f.ptr_slots.len() != 3 {
            return Err(format!(
                "{}: pointer slots {:x?}, want 3",
                ctx(),
                f.ptr_slots
            ));
        }
        for &(addr, _) in &f.ptr_slots {
            if !(f.sp <= addr && addr < f.fp) || addr % 8 != 0 {
                return Err(format!(
                    "{}: pointer slot {addr:#x} outside the frame",
                    ctx()
                ));
            }
        }
        let outer_count = f.ptr_slots.iter().filter(|s| s.1 == outer).count();
        let own: Vec<usize> = f
            .ptr_slots
            .iter()
            .map(|s| s.1)
            .filter(|&v| v != outer)
            .collect();
        let own = if i == d {
            if outer_count != 3 {
                return Err(format!("{}: {:x?}, want outer thrice", ctx(), f.ptr_slots));
            }
            outer
        } else {
            if outer_count != 2 || own.len() != 1 {
                return Err(format!(
                    "{}: {:x?}, want outer {outer:#x} twice and one pointer into the frame",
                    ctx(),
                    f.ptr_slots
                ));
            }
            own[0]
        };
        if !(f.sp <= own && own < f.fp) {
            return Err(format!(
                "{}: own slot address {own:#x} is not in the frame",
                ctx()
            ));
        }
        if read(own) != 3 * i + 1 {
            return Err(format!(
                "{}: *own = {}, want {}",
                ctx(),
                read(own),
                3 * i + 1
            ));
        }
        if i > 0 && frames[i - 1].fp >= f.fp {
            return Err(format!("{}: FP not above the inner frame's", ctx()));
        }
    }
    Ok(())
}

#[test]
fn recursion_frames_and_pointer_slots_are_exact() {
    let mut jit = ManagedJit::new().unwrap();
    let rec = build_rec(&mut jit);
    jit.finalize().unwrap();
    let entry = jit.entry(rec);
    let code = jit.code_range(rec);

    // What was registered: every call site of rec has the same frame size;
    // the entry check's call lists only `outer`, the four others (the
    // recursive call and three yields) own, outer2 and ps.
    {
        let table = gstack::functab::read();
        let f = table.find(entry + 1).expect("rec is registered");
        assert_eq!((f.start, f.end, f.name.as_str()), (code.0, code.1, "rec"));
        let sites = f.call_sites();
        assert_eq!(sites.len(), 5, "call sites {sites:?}");
        let span = sites[0].frame_size;
        assert!(sites.iter().all(|s| s.frame_size == span), "{sites:?}");
        let mut counts: Vec<usize> = sites.iter().map(|s| f.slots(s).len()).collect();
        counts.sort();
        assert_eq!(counts, [1, 3, 3, 3, 3]);
        // The entry check's slow block is cold: its call comes last.
        assert_eq!(f.slots(sites.last().unwrap()).len(), 1);
        let extra = if cfg!(target_arch = "x86_64") { 8 } else { 0 };
        assert_eq!(f.frame_size, span + 16 + extra);
    }

    for d in [1usize, 10, 1000, 100_000] {
        let shared = Shared::new();
        let report: Arc<Mutex<Option<Result<(), String>>>> = Arc::new(Mutex::new(None));
        let rt = runtime(64 << 20);
        let (s2, r2) = (shared.clone(), report.clone());
        rt.run(move || {
            let id = Builder::new()
                .spawn_managed(entry, &[d, 0, d, s2.addr()])
                .expect("spawn rec")
                .id;
            let mut spins = 0;
            while s2.flag() == 0 && spins < 1000 {
                gstack::yield_now();
                spins += 1;
            }
            let r = if s2.flag() == 0 {
                Err("rec never reached depth 0".to_string())
            } else {
                gstack::inspect::frames(id).and_then(|fr| check_rec_frames(&fr, d, code))
            };
            *r2.lock().unwrap() = Some(r);
        });
        let r = report.lock().unwrap().take().expect("main goroutine ran");
        if let Err(e) = r {
            panic!("depth {d}: {e}");
        }
        let want: i64 = (0..=d as i64).map(|k| 3 * k + 1).sum();
        assert_eq!(
            shared.result(),
            want,
            "depth {d}: checksum (negative: a check failed)"
        );
    }
}

/// Since the runtime grows stacks: rec from a 2 KiB stack, growing by
/// copying (and with `force_move`, moving at every entry check), freed
/// stacks poisoned.  Every pointer the maps name must follow the moves:
/// the checksum and the exact frames at depth 0 say they did.
#[test]
fn growth_and_forced_moves_keep_every_pointer() {
    let mut jit = ManagedJit::new().unwrap();
    let rec = build_rec(&mut jit);
    jit.finalize().unwrap();
    let entry = jit.entry(rec);
    let code = jit.code_range(rec);
    for (d, force) in [
        (0usize, true),
        (1, true),
        (10, true),
        (300, true),
        (10_000, false),
        (100_000, false),
        (1_000_000, false),
    ] {
        let shared = Shared::new();
        let report = Arc::new(Mutex::new(None));
        let rt = Runtime::new(Config {
            procs: 1,
            managed_stack_size: 2048,
            debug: DebugFlags {
                stackpoison: true,
                ..DebugFlags::default()
            },
            ..Config::default()
        });
        let (s2, r2) = (shared.clone(), report.clone());
        rt.run(move || {
            let h = Builder::new()
                .force_move(force)
                .spawn_managed(entry, &[d, 0, d, s2.addr()])
                .expect("spawn rec");
            while s2.flag() == 0 {
                gstack::yield_now();
            }
            // The exact walk up to 100,000 frames; at a million frames the
            // checksum alone (every frame re-checks its own pointers).
            let walk = if d <= 100_000 {
                gstack::inspect::frames(h.id).and_then(|fr| check_rec_frames(&fr, d, code))
            } else {
                Ok(())
            };
            while h.result().is_none() {
                gstack::yield_now();
            }
            *r2.lock().unwrap() = Some((walk, h.result()));
        });
        let (walk, result) = report.lock().unwrap().take().expect("main goroutine ran");
        if let Err(e) = walk {
            panic!("depth {d}, force_move {force}: {e}");
        }
        let want: i64 = (0..=d as i64).map(|k| 3 * k + 1).sum();
        assert_eq!(
            shared.result(),
            want,
            "depth {d}: checksum (negative: a check failed)"
        );
        assert_eq!(
            result,
            Some(want as usize),
            "depth {d}: the goroutine's result"
        );
        let copies = rt.stats().stack_copies;
        assert!(copies > 0 || d < 10, "depth {d}: the stack never moved");
        if force {
            // At least one move per entry check: d+1 calls of rec.
            assert!(copies > d as u64, "depth {d}: {copies} moves");
        }
    }
}

#[test]
fn frame_larger_than_max_frame_is_refused() {
    let mut jit = ManagedJit::new().unwrap();
    // A small function in the same round: all or nothing.
    let small = jit.declare("small", 0, 0).unwrap();
    let big = jit.declare("big", 0, 0).unwrap();
    jit.define(small, |mb| {
        mb.yield_now();
        mb.b.ins().return_(&[]);
        Ok(())
    })
    .unwrap();
    jit.define(big, |mb| {
        let ss = mb.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            MAX_FRAME + 64,
            3,
        ));
        let a = mb.b.ins().stack_addr(I64, ss, 0);
        let z = mb.b.ins().iconst(I64, 7);
        mb.b.ins().store(MemFlagsData::trusted(), z, a, 0);
        mb.yield_now();
        mb.b.ins().return_(&[]);
        Ok(())
    })
    .unwrap();
    match jit.finalize() {
        Err(JitError::Register(RegisterError::FrameTooLarge {
            name,
            frame_size,
            limit,
        })) => {
            assert_eq!(name, "big");
            assert_eq!(limit, MAX_FRAME);
            assert!(frame_size > MAX_FRAME + 64, "frame_size {frame_size}");
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let table = gstack::functab::read();
    for id in [small, big] {
        assert!(!jit.is_registered(id));
        let (start, end) = jit.code_range(id);
        assert!(end > start);
        for pc in [start + 1, (start + end) / 2, end] {
            assert!(table.find(pc).is_none(), "pc {pc:#x} is registered");
        }
    }
    drop(table);

    // The JIT stays usable: a frame that fits is accepted.
    let medium = jit.declare("medium", 0, 0).unwrap();
    jit.define(medium, |mb| {
        mb.ptr_stack_slot(512);
        mb.yield_now();
        mb.b.ins().return_(&[]);
        Ok(())
    })
    .unwrap();
    jit.finalize().unwrap();
    let entry = jit.entry(medium);
    let table = gstack::functab::read();
    let f = table.find(entry + 1).expect("medium is registered");
    assert!(f.frame_size <= MAX_FRAME);
    // 64 words of the pointer slot at the yield, none at the entry check.
    let mut counts: Vec<usize> = f.call_sites().iter().map(|s| f.slots(s).len()).collect();
    counts.sort();
    assert_eq!(counts, [0, 64]);
}

#[test]
fn two_functions_frames_are_exact() {
    let mut jit = ManagedJit::new().unwrap();
    let a = jit.declare("a", 1, 0).unwrap();
    let b = jit.declare("b", 1, 0).unwrap();
    jit.define(a, |mb| {
        let flag = mb.params[0];
        mb.call_managed(b, &[flag]);
        mb.b.ins().return_(&[]);
        Ok(())
    })
    .unwrap();
    jit.define(b, |mb| {
        let flag = mb.params[0];
        let one = mb.b.ins().iconst(I64, 1);
        mb.b.ins().store(MemFlagsData::trusted(), one, flag, 8);
        mb.yield_now();
        let two = mb.b.ins().iconst(I64, 2);
        mb.b.ins().store(MemFlagsData::trusted(), two, flag, 0);
        mb.b.ins().return_(&[]);
        Ok(())
    })
    .unwrap();
    jit.finalize().unwrap();
    let (ra, rb) = (jit.code_range(a), jit.code_range(b));
    let entry = jit.entry(a);

    let shared = Shared::new();
    let frames = Arc::new(Mutex::new(None));
    let (s2, f2) = (shared.clone(), frames.clone());
    runtime(64 << 10).run(move || {
        let id = Builder::new()
            .spawn_managed(entry, &[s2.addr()])
            .expect("spawn a")
            .id;
        while s2.flag() == 0 {
            gstack::yield_now();
        }
        *f2.lock().unwrap() = Some(gstack::inspect::frames(id));
    });
    let frames = frames.lock().unwrap().take().unwrap().expect("walk");
    assert_eq!(shared.result(), 2, "b finished");
    let names: Vec<_> = frames.iter().map(|f| f.func.as_deref()).collect();
    assert_eq!(names, [Some("b"), Some("a")], "{frames:x?}");
    for (f, (lo, hi)) in frames.iter().zip([rb, ra]) {
        assert!(f.precise);
        assert!(lo < f.pc && f.pc <= hi, "{f:x?} outside [{lo:#x}, {hi:#x}]");
        assert!(f.ptr_slots.is_empty());
    }
    assert_eq!(frames[0].fp + 16, frames[1].sp);
}

#[test]
fn misuse_is_reported_and_the_jit_stays_usable() {
    let mut jit = ManagedJit::new().unwrap();
    assert!(matches!(jit.declare("many", 6, 0), Err(JitError::Usage(_))));
    let f = jit.declare("f", 1, 1).unwrap();
    // A 32-bit value cannot be a pointer.
    let e = jit
        .define(f, |mb| {
            let x =
                mb.b.ins()
                    .iconst(gstack::cranelift::cranelift_codegen::ir::types::I32, 1);
            mb.needs_stack_map(x);
            let p = mb.params[0];
            mb.b.ins().return_(&[p]);
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, JitError::Usage(_)), "{e}");
    // CLIF that does not verify (an i64 + i32 addition).
    let e = jit
        .define(f, |mb| {
            let p = mb.params[0];
            let x =
                mb.b.ins()
                    .iconst(gstack::cranelift::cranelift_codegen::ir::types::I32, 1);
            let r = mb.b.ins().iadd(p, x);
            mb.b.ins().return_(&[r]);
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, JitError::Codegen(_)), "{e}");
    assert!(e.to_string().contains("f:"), "{e}");
    // Now a correct body, with its listing kept.
    jit.set_disasm(true);
    jit.define(f, |mb| {
        let p = mb.params[0];
        let r = mb.b.ins().iadd_imm_s(p, 1);
        mb.b.ins().return_(&[r]);
        Ok(())
    })
    .unwrap();
    assert!(matches!(jit.define(f, |_| Ok(())), Err(JitError::Usage(_))));
    assert!(jit.disasm(f).is_some_and(|l| !l.is_empty()));
    jit.finalize().unwrap();
    assert!(jit.is_registered(f));
    // Called directly (not on a goroutine stack) with a G whose guard is 0:
    // the entry check passes and the function returns its result.
    let fake_g = [0usize; 8];
    // SAFETY: f(g, x) reads only g's stackguard0 and calls nothing else
    // when the check passes.
    let fp: extern "C" fn(*const usize, i64) -> i64 = unsafe { std::mem::transmute(jit.entry(f)) };
    assert_eq!(fp(fake_g.as_ptr(), 41), 42);
}

extern "C" fn triple(x: i64) -> i64 {
    3 * x
}

#[test]
fn native_leaf_calls_and_data_objects() {
    use gstack::cranelift::cranelift_module::{DataDescription, Linkage, Module};
    let mut jit = ManagedJit::with_builder(|jb| {
        jb.symbol("triple", triple as *const u8);
    })
    .unwrap();
    let mut sig = jit.module().make_signature();
    sig.params
        .push(gstack::cranelift::cranelift_codegen::ir::AbiParam::new(I64));
    sig.returns
        .push(gstack::cranelift::cranelift_codegen::ir::AbiParam::new(I64));
    let native = jit
        .module()
        .declare_function("triple", Linkage::Import, &sig)
        .unwrap();
    let data = jit
        .module()
        .declare_data("forty", Linkage::Local, false, false)
        .unwrap();
    let mut desc = DataDescription::new();
    desc.define(40i64.to_ne_bytes().to_vec().into_boxed_slice());
    jit.module().define_data(data, &desc).unwrap();

    // f(g, x) = triple(x) + *forty, with a yield in between.
    let f = jit.declare("f", 1, 1).unwrap();
    jit.define(f, |mb| {
        let x = mb.params[0];
        let t = mb.import_func(native);
        let call = mb.b.ins().call(t, &[x]);
        let r = mb.b.inst_results(call)[0];
        mb.yield_now();
        let gv = mb.import_data(data);
        let p = mb.b.ins().symbol_value(I64, gv);
        let v = mb.b.ins().load(I64, MemFlagsData::trusted(), p, 0);
        let sum = mb.b.ins().iadd(r, v);
        mb.b.ins().return_(&[sum]);
        Ok(())
    })
    .unwrap();
    jit.finalize().unwrap();
    let entry = jit.entry(f);
    {
        // Entry check, triple, yield: three call sites.
        let table = gstack::functab::read();
        assert_eq!(table.find(entry + 1).unwrap().call_sites().len(), 3);
    }
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    runtime(4096).run(move || {
        let h = Builder::new().spawn_managed(entry, &[7]).unwrap();
        while h.result().is_none() {
            gstack::yield_now();
        }
        *o.lock().unwrap() = h.result();
    });
    assert_eq!(*out.lock().unwrap(), Some(61));
}
