//! Unit tests of the Firefox exporter's internals.

use super::stack_order::StackOrder;
use crate::model::{Interner, Stack};
use crate::model::{Profile, Sample, Thread};

/// The identity shortcut is taken exactly when the general numbering
/// gives every stack its model id, and both give the same order: on
/// stacks interned in sample order (as the resolver does), on samples
/// reordered, with a sample without stack, with stacks interned before
/// any sample uses them.
#[test]
fn stack_order_identity_iff_general_numbering_is() {
    let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
    let mut rnd = move |n: u64| next() % n;
    let (mut identities, mut mapped) = (0, 0);
    for case in 0..200 {
        let mut p = Profile::default();
        let mut i = Interner::default();
        let mut leaves = Vec::new();
        for _ in 0..rnd(50) + 1 {
            // A path of 1 to 6 frames from few, so paths share prefixes.
            let mut node = None;
            for _ in 0..rnd(6) + 1 {
                node = Some(i.stack(
                    &mut p,
                    Stack {
                        parent: node,
                        frame: rnd(3) as u32,
                    },
                ));
            }
            if rnd(20) == 0 {
                // Interned ahead of use.
                i.stack(
                    &mut p,
                    Stack {
                        parent: node,
                        frame: 7,
                    },
                );
            }
            leaves.push(node);
        }
        i.finish(&mut p);
        match case % 4 {
            0 => {}
            1 => {
                let k = rnd(leaves.len() as u64) as usize;
                leaves.swap(k, 0)
            }
            2 => leaves.insert(0, None),
            _ => leaves.reverse(),
        }
        let t = Thread {
            samples: leaves
                .iter()
                .enumerate()
                .map(|(k, &stack)| Sample {
                    time_ns: k as u64,
                    cpu_delta_ns: 0,
                    stack,
                })
                .collect(),
            ..Thread::default()
        };
        let StackOrder::Mapped { stacks, index } = StackOrder::mapped(&p, std::slice::from_ref(&t))
        else {
            unreachable!()
        };
        let is_identity = stacks.iter().enumerate().all(|(k, &id)| id as usize == k);
        match StackOrder::identity(&p, std::slice::from_ref(&t)) {
            Some(n) => {
                assert!(is_identity, "case {case}");
                assert_eq!(n as usize, stacks.len(), "case {case}");
                identities += 1;
            }
            None => {
                assert!(!is_identity, "case {case}: {stacks:?}");
                mapped += 1;
            }
        }
        let order = StackOrder::build(&p, std::slice::from_ref(&t));
        assert_eq!(order.model_ids().collect::<Vec<_>>(), stacks);
        for &id in &stacks {
            assert_eq!(order.index(id), index[id as usize]);
        }
    }
    assert!(identities > 20 && mapped > 20, "{identities} {mapped}");
}
