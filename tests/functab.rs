//! The function table: every kind of bad registration is refused with its
//! own error and leaves nothing behind; lookups stay consistent while
//! registrations happen on other threads.

use gstack::functab::{self, CallSiteDesc, FuncDesc, RegisterError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Fake code ranges far from anything real (the table never executes or
/// reads them), distinct per test so tests can run in parallel.
fn base(test: usize) -> usize {
    0x7e00_0000_0000 + test * 0x100_0000
}

fn site(ret: u32, frame: u32, slots: &[u32]) -> CallSiteDesc {
    CallSiteDesc {
        ret_offset: ret,
        frame_size: frame,
        ptr_slots: slots.to_vec(),
    }
}

fn func(name: &str, start: usize, len: usize, sites: Vec<CallSiteDesc>) -> FuncDesc {
    FuncDesc {
        name: name.into(),
        start,
        len,
        frame_size: 128,
        call_sites: sites,
    }
}

fn absent(pc: usize) -> bool {
    functab::read().find(pc).is_none()
}

#[test]
fn a_good_function_is_found_with_its_call_sites() {
    let b = base(1);
    let f = functab::register(func(
        "good",
        b,
        0x100,
        vec![site(0x10, 32, &[0, 16]), site(0x20, 48, &[])],
    ))
    .unwrap();
    let t = functab::read();
    let found = t.find(b + 0x10).unwrap();
    assert_eq!(found.name, "good");
    let s = found.call_site(b + 0x10).unwrap();
    assert_eq!((s.frame_size, found.slots(s)), (32, &[0u32, 16][..]));
    assert_eq!(
        found.slots(found.call_site(b + 0x20).unwrap()),
        &[] as &[u32]
    );
    assert!(found.call_site(b + 0x18).is_none(), "not a call site");
    // A return address may be the very end of the code: (start, end].
    assert!(t.find(b + 0x100).is_some());
    assert!(t.find(b).is_none(), "a return address is never the start");
    assert!(t.find(b + 0x101).is_none());
    drop(t);
    assert!(functab::unregister(f.start));
    assert!(absent(b + 0x10));
    assert!(!functab::unregister(f.start));
}

#[test]
fn every_bad_registration_is_refused_with_its_error() {
    let b = base(2);
    functab::register(func("holder", b + 0x1000, 0x100, vec![])).unwrap();
    let cases: Vec<(FuncDesc, RegisterError, &str)> = vec![
        (
            func("empty", b, 0, vec![]),
            RegisterError::EmptyCode {
                name: "empty".into(),
            },
            "empty: empty code range",
        ),
        (
            func("wraps", usize::MAX - 4, 16, vec![]),
            RegisterError::EmptyCode {
                name: "wraps".into(),
            },
            "wraps: empty code range",
        ),
        (
            func("over", b + 0x1080, 0x100, vec![]),
            RegisterError::Overlap {
                name: "over".into(),
                other: "holder".into(),
            },
            "over: code range overlaps registered function holder",
        ),
        (
            func("under", b + 0xf80, 0x100, vec![]),
            RegisterError::Overlap {
                name: "under".into(),
                other: "holder".into(),
            },
            "under: code range overlaps registered function holder",
        ),
        (
            func("outside", b, 0x40, vec![site(0x41, 16, &[])]),
            RegisterError::CallSiteOutsideCode {
                name: "outside".into(),
                ret_offset: 0x41,
            },
            "outside: call site +0x41 is outside the function's code",
        ),
        (
            func("zero", b, 0x40, vec![site(0, 16, &[])]),
            RegisterError::CallSiteOutsideCode {
                name: "zero".into(),
                ret_offset: 0,
            },
            "zero: call site +0x0 is outside the function's code",
        ),
        (
            func(
                "unsorted",
                b,
                0x40,
                vec![site(0x20, 16, &[]), site(0x10, 16, &[])],
            ),
            RegisterError::UnsortedCallSites {
                name: "unsorted".into(),
                index: 1,
            },
            "unsorted: call sites are not sorted by return offset (at index 1)",
        ),
        (
            func(
                "dup",
                b,
                0x40,
                vec![site(0x20, 16, &[]), site(0x20, 16, &[])],
            ),
            RegisterError::DuplicateCallSite {
                name: "dup".into(),
                ret_offset: 0x20,
            },
            "dup: call site +0x20 is given twice",
        ),
        (
            func("oddframe", b, 0x40, vec![site(0x20, 12, &[])]),
            RegisterError::MisalignedFrame {
                name: "oddframe".into(),
                ret_offset: 0x20,
                frame_size: 12,
            },
            "oddframe: call site +0x20: frame size 12 is not a multiple of 8",
        ),
        (
            func("oddslot", b, 0x40, vec![site(0x20, 32, &[4])]),
            RegisterError::MisalignedSlot {
                name: "oddslot".into(),
                ret_offset: 0x20,
                slot: 4,
            },
            "oddslot: call site +0x20: pointer slot 4 is not a multiple of 8",
        ),
        (
            func(
                "farslot",
                b,
                0x40,
                vec![site(0x10, 32, &[0]), site(0x20, 32, &[8, 32])],
            ),
            RegisterError::SlotOutsideFrame {
                name: "farslot".into(),
                ret_offset: 0x20,
                slot: 32,
                frame_size: 32,
            },
            "farslot: call site +0x20: pointer slot 32 is outside its 32-byte frame",
        ),
        (
            FuncDesc {
                frame_size: 4096,
                ..func("huge", b, 0x40, vec![])
            },
            RegisterError::FrameTooLarge {
                name: "huge".into(),
                frame_size: 4096,
                limit: gstack::MAX_FRAME,
            },
            "huge: frame of 4096 bytes exceeds the 896-byte limit set by the stack guard",
        ),
        (
            func("bigsite", b, 0x40, vec![site(0x20, 120, &[])]),
            RegisterError::SiteFrameTooLarge {
                name: "bigsite".into(),
                ret_offset: 0x20,
                frame_size: 120,
                func_frame: 128,
            },
            "bigsite: call site +0x20: frame of 120 bytes (+16 for its record) exceeds the function's 128-byte frame",
        ),
    ];
    for (desc, want, text) in cases {
        let name = desc.name.clone();
        let start = desc.start;
        let err = functab::register(desc).unwrap_err();
        assert_eq!(err, want, "{name}");
        assert_eq!(err.to_string(), text, "{name}");
        // Nothing half-registered stays behind.
        if name != "over" && name != "under" && name != "wraps" {
            assert!(absent(start + 1), "{name} left something");
        }
    }
    // The holder is still there, alone.
    assert_eq!(functab::read().find(b + 0x1001).unwrap().name, "holder");
    assert!(absent(b + 0xf81));
    assert!(absent(b + 0x1101));
}

#[test]
fn lookups_stay_consistent_while_a_jit_registers() {
    // Readers walk the table in a loop (as the unwinder does) while a
    // writer registers and removes thousands of functions.
    let b = base(3);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = functab::read();
                    let mut c = t.cursor();
                    for i in 0..2000usize {
                        let pc = b + i * 0x100 + 0x10;
                        if let Some(f) = c.find(pc) {
                            // Whatever is found is whole: its name matches
                            // its range and its call site is there.
                            assert_eq!(f.name, format!("jit{i}"));
                            assert_eq!(f.call_site(pc).unwrap().frame_size, 16);
                            seen += 1;
                        }
                    }
                }
                seen
            })
        })
        .collect();
    for round in 0..3 {
        for i in 0..2000usize {
            functab::register(func(
                &format!("jit{i}"),
                b + i * 0x100,
                0x80,
                vec![site(0x10, 16, &[8])],
            ))
            .unwrap();
        }
        for i in (0..2000usize).filter(|i| (i + round) % 2 == 0) {
            assert!(functab::unregister(b + i * 0x100));
        }
        for i in (0..2000usize).filter(|i| (i + round) % 2 == 0) {
            functab::register(func(
                &format!("jit{i}"),
                b + i * 0x100,
                0x80,
                vec![site(0x10, 16, &[8])],
            ))
            .unwrap();
        }
        for i in 0..2000usize {
            assert!(functab::unregister(b + i * 0x100));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(absent(b + 0x10));
}
