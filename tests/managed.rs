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
        tb.starts_with(&"goroutine 2 [runnable]:\n".to_string()),
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

extern "C" {
    fn gs_test_mixed();
}

/// What gs_test_mixed returns for depth d (and how many frames it has at
/// depth 0): d + 1 of its own, plus one gs_test_hop per multiple of 8.
fn mixed_frames(d: usize) -> usize {
    d + 1 + d / 8
}

/// The words of a parked goroutine's frame at `addr` (tests only read a
/// stopped goroutine's stack, from another goroutine on the same P).
fn word(addr: usize) -> usize {
    // SAFETY: addr is an 8-aligned word of the used part of a parked
    // goroutine's stack, which nothing writes while we look.
    unsafe { *(addr as *const usize) }
}

/// Runs of frames returning to one call site (copystack's shorter loop)
/// broken by frames of another call site of the same size, and of another
/// function and size (gs_test_mixed: site A three times, then site B or
/// gs_test_hop).  After every move every frame sits at the same distance
/// from the top, every mapped word follows its frame by that distance, and
/// the two words site B does not map keep their value exactly.  Moved by
/// hand at every depth 0..40 and at 100 and 333 (bigger, same, bigger
/// still), grown from 2 KiB to 5,000, and forced to move at every call.
#[test]
fn runs_of_one_call_site_broken_by_other_frames_move_exactly() {
    let res = Arc::new(Mutex::new(Vec::new()));
    let r2 = res.clone();
    rt_with(2048, poison()).run(move || {
        let grown = Builder::new()
            .spawn_managed(addr(gs_test_mixed), &[5000, 0])
            .unwrap();
        let forced = Builder::new()
            .force_move(true)
            .spawn_managed(addr(gs_test_mixed), &[300, 0])
            .unwrap();
        let mut moved = 0;
        let mut b_frames = 0;
        for depth in (0..40usize).chain([100, 333]) {
            let h = Builder::new()
                .spawn_managed(addr(gs_test_mixed), &[depth, 1000])
                .unwrap();
            common::park_until(h.id, mixed_frames(depth));
            let size = inspect::stack_size(h.id).unwrap();
            for s in [size * 2, size, size * 4] {
                let before = inspect::frames(h.id).unwrap();
                // Site B's frames: gs_test_mixed with three mapped words;
                // their words 3 and 4 hold an SP the frame once had.
                let unmapped = |fr: &[inspect::FrameInfo]| -> Vec<(usize, usize)> {
                    fr.iter()
                        .filter(|f| {
                            f.func.as_deref() == Some("gs_test_mixed") && f.ptr_slots.len() == 3
                        })
                        .map(|f| (word(f.sp + 24), word(f.sp + 32)))
                        .collect()
                };
                let b_before = unmapped(&before);
                inspect::move_stack(h.id, s).unwrap();
                moved += 1;
                let after = inspect::frames(h.id).unwrap();
                assert_eq!(after.len(), before.len(), "depth {depth}: frames");
                let delta = after[0].sp.wrapping_sub(before[0].sp);
                assert_ne!(delta, 0, "depth {depth}: the stack did not move");
                for (k, (a, b)) in after.iter().zip(&before).enumerate() {
                    assert_eq!(
                        (a.pc, a.sp, a.fp),
                        (b.pc, b.sp.wrapping_add(delta), b.fp.wrapping_add(delta)),
                        "depth {depth}, frame {k}"
                    );
                    let moved_slots: Vec<_> = b
                        .ptr_slots
                        .iter()
                        .map(|&(at, v)| (at.wrapping_add(delta), v.wrapping_add(delta)))
                        .collect();
                    assert_eq!(a.ptr_slots, moved_slots, "depth {depth}, frame {k}: slots");
                    // Each mapped word points at its frame (gs_test_mixed)
                    // or at its caller's (gs_test_hop).
                    let want = if a.func.as_deref() == Some("gs_test_hop") {
                        a.fp + 16
                    } else {
                        a.sp
                    };
                    assert!(
                        a.ptr_slots.iter().all(|&(_, v)| v == want),
                        "depth {depth}, frame {k}: {:?}",
                        a
                    );
                }
                let b_after = unmapped(&after);
                assert_eq!(
                    b_after, b_before,
                    "depth {depth}: site B's unmapped words changed"
                );
                b_frames += b_after.len();
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
        r.push((5000, grown.result().unwrap()));
        r.push((300, forced.result().unwrap()));
        r.push((usize::MAX, moved));
        r.push((usize::MAX - 1, b_frames));
    });
    let r = res.lock().unwrap();
    for &(depth, got) in r.iter() {
        match depth {
            usize::MAX => assert_eq!(got, 42 * 3, "moves by hand"),
            // Site B is taken at depths 4, 12, 20, ...: (d + 4) / 8 frames.
            d if d == usize::MAX - 1 => assert_eq!(
                got,
                3 * (0..40usize)
                    .chain([100, 333])
                    .map(|d| (d + 4) / 8)
                    .sum::<usize>(),
                "site B frames seen"
            ),
            _ => assert_eq!(
                got,
                mixed_frames(depth),
                "depth {depth}: a pointer broke (0) or frames lost"
            ),
        }
    }
}

/// An invalid pointer in a frame in the middle of a run (copystack's
/// shorter loop) is fatal, naming the first such frame's slot, and errors
/// keep the walk's order: a bad slot comes before a broken record of a
/// later frame, and after a broken record of its own frame.  The child
/// parks gs_test_mixed at depth 20 -- frames 5, 6, 7 return to site A, 6
/// and 7 on the run's loop -- writes into the parked stack, and moves it.
#[test]
fn an_invalid_pointer_in_a_run_is_fatal_in_frame_order() {
    if common::is_child() {
        let mode = std::env::var("MIXED_CORRUPT").unwrap();
        rt_with(2048, DebugFlags::default()).run(move || {
            let h = Builder::new()
                .spawn_managed(addr(gs_test_mixed), &[20, 1])
                .unwrap();
            common::park_until(h.id, mixed_frames(20));
            let fr = inspect::frames(h.id).unwrap();
            assert_eq!(fr[7].fp + 16, fr[8].sp, "frame 8 is gs_test_hop's");
            assert_eq!(fr[8].func.as_deref(), Some("gs_test_hop"));
            // SAFETY: words of the parked goroutine's frames (mapped slots
            // and frame 7's saved FP), which nothing else touches while it
            // is parked; the move below reads them and stops.
            let put = |at: usize, v: usize| unsafe { *(at as *mut usize) = v };
            if mode.contains("slot6") {
                put(fr[6].sp + 8, 0x64);
            }
            if mode.contains("slot7") {
                put(fr[7].sp + 16, 0x65);
            }
            if mode.contains("record7") {
                put(fr[7].fp, 0x10);
            }
            let size = inspect::stack_size(h.id).unwrap();
            let _ = inspect::move_stack(h.id, size);
            unreachable!("the move must be fatal");
        });
        return;
    }
    let run = |mode: &str| {
        let out = common::run_child(
            "an_invalid_pointer_in_a_run_is_fatal_in_frame_order",
            &[("MIXED_CORRUPT", mode)],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Two bad slots in the run: the first (innermost) is named; frame 7's
    // broken record comes later in the walk.
    let err = run("slot6 slot7 record7");
    assert!(
        err.contains("fatal error: invalid pointer found on stack: goroutine 2, gs_test_mixed+0x"),
        "{err}"
    );
    assert!(err.contains(", slot sp+0x8 holds 0x64"), "{err}");
    // Only frame 7's: found in the run's last frame.
    let err = run("slot7");
    assert!(err.contains(", slot sp+0x10 holds 0x65"), "{err}");
    // Frame 7's record is checked before its slots.
    for mode in ["record7", "slot7 record7"] {
        let err = run(mode);
        assert!(
            err.contains("fatal error: copystack: goroutine 2: frame 8: frame pointer 0x10 is not a frame record above sp"),
            "{mode}: {err}"
        );
    }
}
