//! The model's unit tests: the stack interner and the sample encoding.

use super::interner::MAX_WALK;
use super::stacks::{Frames, WIDE};
use super::*;

/// The prefix tree gives the same ids as a plain map, whatever the order
/// of look-ups (move-to-front reorders the lists) and the fan-out (wide
/// parents move to a table).
#[test]
fn stack_interner_matches_a_map() {
    let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
    let mut rnd = move |n: u64| next() % n;
    for fanout in [2, 5, 40, 300] {
        let mut p = Profile::default();
        let mut i = Interner::default();
        let mut reference: std::collections::HashMap<Stack, StackId> = Default::default();
        for _ in 0..20_000 {
            let parent = match rnd(4) {
                0 => None,
                _ if reference.is_empty() => None,
                _ => Some(rnd(p.stacks.len() as u64) as StackId),
            };
            let s = Stack {
                parent,
                frame: rnd(fanout) as FrameId,
            };
            let next = reference.len() as StackId;
            let want = *reference.entry(s).or_insert(next);
            assert_eq!(i.stack(&mut p, s), want, "fanout {fanout}: {s:?}");
        }
        assert_eq!(p.stacks.len(), reference.len());
        i.finish(&mut p);
        assert_eq!(p.stacks.len(), reference.len());
        for (s, id) in reference {
            assert_eq!(p.stacks.get(id as usize), s);
        }
    }
}

/// `finish` gives every node its parent, whichever way its parent keeps
/// its children: a list reordered by look-ups, the wide table (roots
/// too), a long chain; and a finished tree reads as what was interned.
#[test]
fn finish_gives_every_node_its_parent() {
    let mut p = Profile::default();
    let mut i = Interner::default();
    let mut want: Vec<Stack> = Vec::new();
    let mut add = |p: &mut Profile, s: Stack| {
        let id = i.stack(p, s);
        if id as usize == want.len() {
            want.push(s);
        }
        assert_eq!(want[id as usize], s);
        id
    };
    // Wide roots: more than MAX_WALK of them.
    let roots: Vec<StackId> = (0..100)
        .map(|f| {
            add(
                &mut p,
                Stack {
                    parent: None,
                    frame: f,
                },
            )
        })
        .collect();
    // A deep chain under one root, looked up twice (move-to-front does
    // nothing on one-child lists, but the second walk must find them).
    let mut chain_leaf = 0;
    for _ in 0..2 {
        chain_leaf = roots[7];
        for f in 0..10_000 {
            let s = Stack {
                parent: Some(chain_leaf),
                frame: f % 3,
            };
            chain_leaf = add(&mut p, s);
        }
    }
    // A wide parent in the middle of the chain, and a narrow one whose
    // list the look-ups below reorder.
    let (wide, narrow) = (roots[7] + 100, roots[42]);
    for k in 0..3 {
        for f in 0..(MAX_WALK as u32 + 10) {
            let f = (f * 5 + k) % (MAX_WALK as u32 + 10);
            add(
                &mut p,
                Stack {
                    parent: Some(wide),
                    frame: 1000 + f,
                },
            );
        }
        for f in (0..5).rev() {
            let child = add(
                &mut p,
                Stack {
                    parent: Some(narrow),
                    frame: f + k,
                },
            );
            add(
                &mut p,
                Stack {
                    parent: Some(child),
                    frame: 9,
                },
            );
        }
    }
    assert_eq!(i.head(&p, Some(wide)), WIDE, "the test needs a wide parent");
    assert_eq!(i.roots, WIDE, "the test needs wide roots");
    i.finish(&mut p);
    assert_eq!(p.stacks.iter().collect::<Vec<_>>(), want);
    // The chain's leaf walks up through 10 000 frames to its root.
    assert_eq!(p.stack_frames(Some(chain_leaf)).count(), 10_001);
}

/// Frame ids that do not fit 2 bytes, first met while interning or in
/// a rewrite of a finished tree, widen the nodes' frames and keep the
/// ones before.
#[test]
fn frame_ids_beyond_u16_widen_the_frames() {
    let big = FrameId::from(u16::MAX) + 1;
    let mut p = Profile::default();
    let mut i = Interner::default();
    let mut want = Vec::new();
    let mut node = None;
    for frame in [1, u16::MAX.into(), 7, big, 3, FrameId::MAX - 1, 7] {
        let s = Stack {
            parent: node,
            frame,
        };
        node = Some(i.stack(&mut p, s));
        want.push(s);
        // Found again, narrow or wide.
        assert_eq!(i.stack(&mut p, s), node.unwrap());
    }
    i.finish(&mut p);
    assert_eq!(p.stacks.iter().collect::<Vec<_>>(), want);

    let mut p = Profile::default();
    let mut i = Interner::default();
    let root = i.stack(
        &mut p,
        Stack {
            parent: None,
            frame: 5,
        },
    );
    i.stack(
        &mut p,
        Stack {
            parent: Some(root),
            frame: 6,
        },
    );
    i.finish(&mut p);
    assert!(matches!(p.stacks.frames, Frames::Narrow(_)));
    p.stacks.set(
        0,
        Stack {
            parent: None,
            frame: big,
        },
    );
    assert_eq!(
        p.stacks.get(0),
        Stack {
            parent: None,
            frame: big
        }
    );
    assert_eq!(
        p.stacks.get(1),
        Stack {
            parent: Some(0),
            frame: 6
        }
    );
}

/// By function, a stack node stands for every frame of its function
/// (the first one given to the interner), under any parent, but a
/// leaf's keeps its frame; by frame, each frame is its own node.
#[test]
fn stacks_by_function_merge_the_frames_of_a_function() {
    for by_function in [false, true] {
        let mut p = Profile::default();
        let mut i = if by_function {
            Interner::by_function()
        } else {
            Interner::default()
        };
        let func = |i: &mut Interner, p: &mut Profile, name: &str| {
            i.func(
                p,
                Func {
                    name: name.into(),
                    file: None,
                    line: None,
                    category: Category::Wasm,
                    lib: None,
                },
            )
        };
        let (fa, fb) = (func(&mut i, &mut p, "a"), func(&mut i, &mut p, "b"));
        let frame = |i: &mut Interner, p: &mut Profile, func, address| {
            i.frame(
                p,
                Frame {
                    func,
                    address: Some(address),
                    line: None,
                    column: None,
                    inline_depth: 0,
                    native_symbol: None,
                },
            )
        };
        let a1 = frame(&mut i, &mut p, fa, 1);
        let a2 = frame(&mut i, &mut p, fa, 2);
        let b1 = frame(&mut i, &mut p, fb, 3);
        let mut stack = |frames: &[FrameId]| {
            let mut node = None;
            for &frame in frames {
                node = Some(i.stack(
                    &mut p,
                    Stack {
                        parent: node,
                        frame,
                    },
                ));
            }
            node.unwrap()
        };
        let x = stack(&[a1, b1]);
        let y = stack(&[a2, b1]);
        let z = stack(&[b1, a2]);
        let w = stack(&[b1, a1]);
        assert_eq!(x == y, by_function);
        assert_eq!(z == w, by_function);
        // A leaf keeps its own frame either way: `b` → `a` at 2.
        let b = stack(&[b1]);
        let leaf = i.leaf_stack(
            &mut p,
            Stack {
                parent: Some(b),
                frame: a2,
            },
        );
        assert_ne!(leaf, w);
        assert_eq!(leaf == z, !by_function);
        i.finish(&mut p);
        assert_eq!(p.stacks.len(), if by_function { 5 } else { 7 });
        // `a` at address 2 is `a` at 1, the first frame of `a` seen.
        let frames: Vec<FrameId> = p.stack_frames(Some(z)).collect();
        assert_eq!(frames, vec![if by_function { a1 } else { a2 }, b1]);
        let frames: Vec<FrameId> = p.stack_frames(Some(leaf)).collect();
        assert_eq!(frames, vec![a2, b1]);
    }
}

/// Samples come back exactly as pushed: times in any order and at any
/// distance (wrapping), deltas that are or are not whole µs, at the
/// ends of the `u64` range, and samples without stacks.
#[test]
fn samples_round_trip() {
    let big = u64::from(u32::MAX);
    let cpus = [0, 1, big - 1, big, big + 1, 7, u64::MAX / 4, u64::MAX, big];
    let mut v: Vec<Sample> = cpus
        .iter()
        .enumerate()
        .map(|(i, &cpu_delta_ns)| Sample {
            time_ns: u64::MAX - i as u64,
            cpu_delta_ns,
            stack: (i % 3 != 0).then_some(i as StackId * 1000),
        })
        .collect();
    let mut rnd = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
    let mut t = 0u64;
    let edges = [
        0,
        1000,
        i64::MAX as u64 / 1000 * 1000,
        u64::MAX / 1000 * 1000,
    ];
    for i in 0..10_000u64 {
        let r = rnd();
        // Mostly a steady interval with jitter in whole µs, as traces
        // have; now and then a jump, a step back, a non-µs value or an
        // extreme one.
        t = match r % 16 {
            0 => t.wrapping_sub(r >> 40),
            1 => t.wrapping_add(r >> 8),
            2 => edges[(r >> 8) as usize % edges.len()],
            3 => rnd(),
            _ => t.wrapping_add(20_000 + (r >> 60) * 1000),
        };
        let cpu_delta_ns = match (r >> 4) % 8 {
            0 => rnd(),
            1 => (r >> 20) * 1000,
            2 => edges[(r >> 12) as usize % edges.len()],
            _ => 19_000 + (r >> 61) * 1000,
        };
        v.push(Sample {
            time_ns: t,
            cpu_delta_ns,
            stack: (!(r >> 7).is_multiple_of(5)).then_some((i * 7) as StackId),
        });
    }
    let s = Samples::from(v.clone());
    assert_eq!(s.len(), v.len());
    assert_eq!(s.iter().len(), v.len());
    assert_eq!(s.iter().collect::<Vec<_>>(), v);
    assert_eq!((&s).into_iter().count(), v.len());
    // Equal exactly when the samples are.
    assert_eq!(Samples::from(v.clone()), s);
    v[5000].cpu_delta_ns ^= 1;
    assert_ne!(Samples::from(v), s);
}

/// A steady trace's samples take 3 bytes each (three 1-byte tokens)
/// when each stack is near the previous one, the case this type is for.
#[test]
fn samples_of_a_steady_trace_are_small() {
    let mut s = Samples::new();
    for i in 0..1000u64 {
        let jitter = [0, 3, 0, 12, 0, 1][i as usize % 6] * 1000;
        s.push(Sample {
            time_ns: i * 20_000 + jitter,
            cpu_delta_ns: 20_000 - (i % 3) * 1000,
            stack: Some((i * 5 % 17) as StackId),
        });
    }
    assert_eq!(s.bytes.len(), 1000 * 3);
}
