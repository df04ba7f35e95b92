//! Managed goroutines running hand-written assembly declared with the
//! macros of include/gstack_asm.h (asm/managed_<arch>.S): the unwinder sees
//! exactly what the macros declared, and stacks grow by copying with every
//! pointer into them kept right.

mod common;

use gstack::{inspect, Builder, Config, DebugFlags, Runtime};
use std::sync::{Arc, Mutex};

extern "C" {
    fn gs_test_rec();
    fn gs_test_list();
    fn gs_test_leaf();
    fn gs_test_imprecise();
    fn gs_test_calls_imprecise();
}

fn addr(f: unsafe extern "C" fn()) -> usize {
    f as *const () as usize
}

fn rt_with(managed_stack: usize, debug: DebugFlags) -> Runtime {
    Runtime::new(Config {
        procs: 1,
        managed_stack_size: managed_stack,
        debug,
        ..Config::default()
    })
}

/// What gs_test_rec returns for depth d: the sum of 3k+1 for k in 0..=d.
fn rec_sum(d: u64) -> usize {
    (3 * d * (d + 1) / 2 + d + 1) as usize
}

/// What gs_test_list returns for depth d: the sum of k+1 for k in 0..=d.
fn list_sum(d: u64) -> usize {
    ((d + 1) * (d + 2) / 2) as usize
}

/// Park gs_test_rec at `depth` on a stack big enough not to grow, walk it
/// from another goroutine, and check every frame and slot against what the
/// macros declared.
fn walk_rec_at(depth: usize) {
    let stack = ((depth + 2) * 96).next_power_of_two().max(4096);
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    rt_with(stack, DebugFlags::default()).run(move || {
        let h = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[depth, 0, 0, 2])
            .unwrap();
        common::park_until(h.id, depth + 1); // down to depth 0, yielding there
        let frames = inspect::frames(h.id).unwrap();
        let tb = inspect::traceback(h.id).unwrap();
        while h.result().is_none() {
            gstack::yield_now();
        }
        *o.lock().unwrap() = Some((frames, tb, h.result()));
    });
    let (frames, tb, result) = out.lock().unwrap().take().unwrap();
    assert_eq!(result, Some(rec_sum(depth as u64)));
    assert_eq!(frames.len(), depth + 1, "one frame per level");
    let outermost_sp = frames.last().unwrap().sp;
    let rec = addr(gs_test_rec);
    for (k, f) in frames.iter().enumerate() {
        assert!(f.precise, "frame {k} imprecise");
        assert_eq!(f.func.as_deref(), Some("gs_test_rec"), "frame {k}");
        assert!(f.pc > rec, "frame {k}: pc inside the function");
        assert_eq!(f.fp - f.sp, 64, "frame {k}: the declared frame");
        // Exactly the two declared slots: [sp+8] -> own value slot in this
        // frame, [sp+16] -> the outermost frame's value slot.
        assert_eq!(
            f.ptr_slots,
            vec![(f.sp + 8, f.sp), (f.sp + 16, outermost_sp)],
            "frame {k}"
        );
        // SAFETY: the goroutine was parked when these were read; the values
        // are compared, not dereferenced now.
        let level = k as u64; // innermost frame is depth 0
        let _ = level;
    }
    if depth < 200 {
        assert!(tb.contains("gs_test_rec+0x"), "{tb}");
    } else {
        assert!(tb.contains("frames elided"), "{tb}");
    }
    assert!(
        tb.starts_with(&format!("goroutine 2 [runnable]:\n")),
        "{tb}"
    );
}

#[test]
fn walk_parked_asm_goroutine_depth_1() {
    walk_rec_at(1);
}

#[test]
fn walk_parked_asm_goroutine_depth_10() {
    walk_rec_at(10);
}

#[test]
fn walk_parked_asm_goroutine_depth_1000() {
    walk_rec_at(1000);
}

#[test]
fn walk_parked_asm_goroutine_depth_100000() {
    walk_rec_at(100_000);
}

#[test]
fn an_imprecise_frame_is_reported_by_the_walk() {
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    rt_with(4096, DebugFlags::default()).run(move || {
        let h = Builder::new()
            .spawn_managed(addr(gs_test_calls_imprecise), &[1])
            .unwrap();
        common::park_until(h.id, 3);
        *o.lock().unwrap() = Some((
            inspect::frames(h.id).unwrap(),
            inspect::traceback(h.id).unwrap(),
        ));
        while h.result().is_none() {
            gstack::yield_now();
        }
    });
    let (frames, tb) = out.lock().unwrap().take().unwrap();
    let names: Vec<_> = frames.iter().map(|f| (f.func.clone(), f.precise)).collect();
    assert_eq!(
        names,
        vec![
            (Some("gs_test_leaf".to_string()), true),
            (None, false),
            (Some("gs_test_calls_imprecise".to_string()), true),
        ]
    );
    let imp = &frames[1];
    assert!(imp.pc > addr(gs_test_imprecise) && imp.pc < addr(gs_test_imprecise) + 64);
    assert!(tb.contains("(imprecise: no stack map)"), "{tb}");
}

#[test]
fn spawn_managed_refuses_unregistered_code_and_too_many_args() {
    rt_with(4096, DebugFlags::default()).run(|| {
        let e = Builder::new()
            .spawn_managed(addr(gs_test_imprecise), &[])
            .unwrap_err();
        assert_eq!(e, gstack::SpawnError::NotManaged(addr(gs_test_imprecise)));
        let e = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[1, 2, 3, 4, 5, 6])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "6 arguments: a managed goroutine takes at most 5 after g"
        );
        // Not a function start: inside gs_test_rec.
        assert!(Builder::new()
            .spawn_managed(addr(gs_test_rec) + 4, &[])
            .is_err());
    });
}

fn poison() -> DebugFlags {
    DebugFlags {
        stackpoison: true,
        ..DebugFlags::default()
    }
}

#[test]
fn growth_at_every_depth_0_to_1023_from_2k() {
    let bad = Arc::new(Mutex::new(Vec::new()));
    let b = bad.clone();
    let r = rt_with(2048, poison());
    r.run(move || {
        let hs: Vec<_> = (0..1024usize)
            .map(|d| {
                let h = Builder::new()
                    .spawn_managed(addr(gs_test_rec), &[d, 0, 0, 1])
                    .unwrap();
                let l = Builder::new()
                    .spawn_managed(addr(gs_test_list), &[d, 0, 1])
                    .unwrap();
                (d, h, l)
            })
            .collect();
        while hs
            .iter()
            .any(|(_, h, l)| h.result().is_none() || l.result().is_none())
        {
            gstack::yield_now();
        }
        for (d, h, l) in hs {
            if h.result() != Some(rec_sum(d as u64)) || l.result() != Some(list_sum(d as u64)) {
                b.lock().unwrap().push((d, h.result(), l.result()));
            }
        }
        assert_eq!(gstack::check_accounting(), Ok(()));
    });
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
    let s = r.stats();
    assert!(s.stack_copies > 1000, "{s:?}");
    assert_eq!((s.stack_in_use, s.stack_sys), (0, 0), "{s:?}");
}

fn grow_to(depth: usize) {
    let res = Arc::new(Mutex::new((None, None)));
    let r2 = res.clone();
    let r = rt_with(2048, poison());
    r.run(move || {
        let h = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[depth, 0, 0, 3])
            .unwrap();
        let l = Builder::new()
            .spawn_managed(addr(gs_test_list), &[depth, 0, 3])
            .unwrap();
        while h.result().is_none() || l.result().is_none() {
            gstack::yield_now();
        }
        *r2.lock().unwrap() = (h.result(), l.result());
    });
    assert_eq!(
        *res.lock().unwrap(),
        (Some(rec_sum(depth as u64)), Some(list_sum(depth as u64)))
    );
    let s = r.stats();
    // 64-byte locals + 16-byte record per gs_test_rec frame.
    assert!(s.stack_peak >= depth * 80, "{s:?}");
    assert_eq!(s.stack_in_use, 0);
}

#[test]
fn growth_to_100_000_frames_from_2k() {
    grow_to(100_000);
}

#[test]
fn growth_to_1_000_000_frames_from_2k() {
    grow_to(1_000_000);
}

#[test]
fn forced_moves_at_every_call_keep_every_frame_and_value() {
    let res = Arc::new(Mutex::new(Vec::new()));
    let r2 = res.clone();
    let r = rt_with(2048, poison());
    r.run(move || {
        let hs: Vec<_> = [0usize, 1, 7, 100, 300]
            .iter()
            .flat_map(|&d| {
                [
                    (
                        d,
                        true,
                        Builder::new()
                            .force_move(true)
                            .spawn_managed(addr(gs_test_rec), &[d, 0, 0, 2])
                            .unwrap(),
                    ),
                    (
                        d,
                        false,
                        Builder::new()
                            .force_move(true)
                            .spawn_managed(addr(gs_test_list), &[d, 0, 2])
                            .unwrap(),
                    ),
                ]
            })
            .collect();
        while hs.iter().any(|(_, _, h)| h.result().is_none()) {
            gstack::yield_now();
        }
        *r2.lock().unwrap() = hs
            .iter()
            .map(|(d, rec, h)| (*d, *rec, h.result()))
            .collect();
    });
    for (d, rec, got) in res.lock().unwrap().iter() {
        let want = if *rec {
            rec_sum(*d as u64)
        } else {
            list_sum(*d as u64)
        };
        assert_eq!(*got, Some(want), "depth {d} rec {rec}");
    }
    // Every call moved the stack: at least one move per frame.
    let s = r.stats();
    assert!(s.stack_copies >= 2 * (1 + 2 + 8 + 101 + 301), "{s:?}");
}

#[test]
fn gsdebug_stackforcemove_moves_at_every_call() {
    let r = rt_with(
        2048,
        DebugFlags {
            stackforcemove: true,
            stackpoison: true,
            ..DebugFlags::default()
        },
    );
    let got = Arc::new(Mutex::new(None));
    let g2 = got.clone();
    r.run(move || {
        let h = Builder::new()
            .spawn_managed(addr(gs_test_rec), &[50, 0, 0, 1])
            .unwrap();
        while h.result().is_none() {
            gstack::yield_now();
        }
        *g2.lock().unwrap() = h.result();
    });
    assert_eq!(*got.lock().unwrap(), Some(rec_sum(50)));
    assert!(r.stats().stack_copies >= 51);
}

#[test]
fn accounting_returns_to_baseline_after_thousands_of_grows() {
    let r = rt_with(2048, DebugFlags::default());
    let during = Arc::new(Mutex::new(Vec::new()));
    let d2 = during.clone();
    r.run(move || {
        for round in 0..4usize {
            let hs: Vec<_> = (0..500usize)
                .map(|i| {
                    Builder::new()
                        .spawn_managed(addr(gs_test_rec), &[(i * 7 + round) % 300, 0, 0, 1])
                        .unwrap()
                })
                .collect();
            while hs.iter().any(|h| h.result().is_none()) {
                gstack::yield_now();
            }
            d2.lock().unwrap().push(gstack::check_accounting());
        }
    });
    assert!(
        during.lock().unwrap().iter().all(|r| r.is_ok()),
        "{:?}",
        during.lock().unwrap()
    );
    let s = r.stats();
    assert!(s.stack_copies >= 2000, "{s:?}");
    assert_eq!(
        (s.stack_in_use, s.stack_cached, s.stack_sys),
        (0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn overflow_past_the_limit_prints_the_message_and_traceback() {
    if common::is_child() {
        let r = Runtime::new(Config {
            procs: 1,
            max_stack_size: 64 * 1024,
            debug: DebugFlags::default(),
            ..Config::default()
        });
        r.run(|| {
            Builder::new()
                .spawn_managed(addr(gs_test_rec), &[100_000, 0, 0, 0])
                .unwrap();
        });
        return;
    }
    let out = common::run_child(
        "overflow_past_the_limit_prints_the_message_and_traceback",
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("goroutine 2 stack exceeds 65536-byte limit\n"),
        "{err}"
    );
    assert!(
        err.contains("goroutine 2 [copystack]:\n") || err.contains("goroutine 2 [running]:\n"),
        "{err}"
    );
    assert!(err.contains("\tgs_test_rec+0x"), "{err}");
    assert!(err.contains("fatal error: stack overflow"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn copystack_refuses_a_stack_with_an_imprecise_frame() {
    if common::is_child() {
        rt_with(2048, DebugFlags::default()).run(|| {
            Builder::new()
                .force_move(true)
                .spawn_managed(addr(gs_test_calls_imprecise), &[1])
                .unwrap();
        });
        return;
    }
    let out = common::run_child("copystack_refuses_a_stack_with_an_imprecise_frame", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fatal error: copystack: goroutine 2: imprecise frame ?? pc=0x"),
        "{err}"
    );
    assert!(
        err.contains("no stack map at this pc, so its stack cannot move"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn morestack_on_g0_is_fatal() {
    if common::is_child() {
        rt_with(2048, DebugFlags::default()).run(gstack::testing::morestack_on_g0);
        return;
    }
    let out = common::run_child("morestack_on_g0_is_fatal", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fatal error: morestack on g0"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn leaf_returns_its_value() {
    let got = Arc::new(Mutex::new(None));
    let g2 = got.clone();
    rt_with(2048, DebugFlags::default()).run(move || {
        let h = Builder::new()
            .spawn_managed(addr(gs_test_leaf), &[])
            .unwrap();
        while h.result().is_none() {
            gstack::yield_now();
        }
        *g2.lock().unwrap() = h.result();
    });
    assert_eq!(*got.lock().unwrap(), Some(7));
}

extern "C" {
    fn gs_test_plain();
    fn gs_test_dense();
    fn gs_test_big();
}

/// 512-byte frames: each frame's saved FP lies past the first 64 words of
/// its map (copystack's second mask word), and its pointer slot must
/// follow every move -- by growth from 2 KiB, by a forced move at every
/// call, and by hand at every depth 0..40 while parked.
#[test]
fn big_frames_grow_move_at_every_call_and_by_hand() {
    let res = Arc::new(Mutex::new(Vec::new()));
    let r2 = res.clone();
    rt_with(2048, poison()).run(move || {
        let grown = Builder::new()
            .spawn_managed(addr(gs_test_big), &[3000, 0])
            .unwrap();
        let forced = Builder::new()
            .force_move(true)
            .spawn_managed(addr(gs_test_big), &[200, 0])
            .unwrap();
        let mut moved = 0;
        for depth in 0..40usize {
            let h = Builder::new()
                .spawn_managed(addr(gs_test_big), &[depth, 1000])
                .unwrap();
            common::park_until(h.id, depth + 1);
            let size = inspect::stack_size(h.id).unwrap();
            for s in [size * 2, size, size * 4] {
                inspect::move_stack(h.id, s).unwrap();
                moved += 1;
            }
            while h.result().is_none() {
                gstack::yield_now();
            }
            r2.lock().unwrap().push((depth, h.result().unwrap()));
        }
        while grown.result().is_none() || forced.result().is_none() {
            gstack::yield_now();
        }
        let mut r = r2.lock().unwrap();
        r.push((3000, grown.result().unwrap()));
        r.push((200, forced.result().unwrap()));
        r.push((usize::MAX, moved));
    });
    let r = res.lock().unwrap();
    for &(depth, got) in r.iter() {
        if depth == usize::MAX {
            assert_eq!(got, 120, "moves by hand");
        } else {
            assert_eq!(
                got,
                depth + 1,
                "depth {depth}: a pointer broke (0) or frames lost"
            );
        }
    }
}

#[test]
fn plain_and_dense_recursions_grow_and_move_on_demand() {
    let res = Arc::new(Mutex::new(Vec::new()));
    let r2 = res.clone();
    rt_with(2048, poison()).run(move || {
        let p = Builder::new()
            .spawn_managed(addr(gs_test_plain), &[5000, 1000])
            .unwrap();
        let d = Builder::new()
            .spawn_managed(addr(gs_test_dense), &[5000, 1000])
            .unwrap();
        common::park_until(p.id, 5001);
        common::park_until(d.id, 5001);
        let mut r = r2.lock().unwrap();
        r.push(inspect::count_frames(p.id).map(|x| x.0 * 10_000 + x.1));
        r.push(inspect::count_frames(d.id).map(|x| x.0 * 10_000 + x.1));
        // Move the dense one by hand, bigger then smaller.
        let size = inspect::stack_size(d.id).unwrap();
        r.push(inspect::move_stack(d.id, size * 2).map(|_| 1));
        r.push(inspect::move_stack(d.id, size).map(|_| 1));
        r.push(inspect::move_stack(d.id, 1024).map(|_| 1)); // too small: refused
        drop(r);
        while p.result().is_none() || d.result().is_none() {
            gstack::yield_now();
        }
        r2.lock().unwrap().push(Ok(p.result().unwrap()));
        r2.lock().unwrap().push(Ok(d.result().unwrap()));
    });
    let r = res.lock().unwrap();
    assert_eq!(r[0], Ok(5001 * 10_000));
    assert_eq!(r[1], Ok(5001 * 10_000 + 5001 * 8));
    assert_eq!(r[2], Ok(1));
    assert_eq!(r[3], Ok(1));
    assert!(
        r[4].as_ref().unwrap_err().starts_with("bad size 1024"),
        "{:?}",
        r[4]
    );
    assert_eq!(r[5], Ok(5001));
    assert_eq!(r[6], Ok(5001));
}

#[test]
fn a_small_integer_in_a_pointer_slot_is_fatal_when_the_stack_moves() {
    if common::is_child() {
        rt_with(2048, DebugFlags::default()).run(|| {
            // gs_test_rec's entry check declares its third argument (the
            // outer pointer, spilled at sp+16) as a pointer: pass 0x64.
            Builder::new()
                .force_move(true)
                .spawn_managed(addr(gs_test_rec), &[3, 0x64, 0, 0])
                .unwrap();
        });
        return;
    }
    let out = common::run_child(
        "a_small_integer_in_a_pointer_slot_is_fatal_when_the_stack_moves",
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fatal error: invalid pointer found on stack: goroutine 2, gs_test_rec+0x"),
        "{err}"
    );
    assert!(err.contains(", slot sp+0x10 holds 0x64"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}
