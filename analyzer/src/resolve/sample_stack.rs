//! The stack of one sample, reusing the stack nodes of its thread's
//! previous sample for the outer frames the two share.

use wrec_format::flags;

use super::resolver::{Resolver, TRUNCATED};
use crate::model::{Category, StackId};

/// A thread's previous sample, for reusing its stack nodes.
#[derive(Default)]
pub(super) struct PrevStack {
    raw: Vec<u64>,
    flags: u8,
    /// Root first: `nodes[k]` is the stack node for the previous sample's
    /// outermost `k` raw entries (`nodes[0]`: none, or `[stack truncated]`).
    nodes: Vec<Option<StackId>>,
    /// `sites[k]`: the call site of the innermost function frame in them.
    sites: Vec<Option<(usize, u64)>>,
}

/// Builds (or reuses) the stack nodes of one sample; returns its leaf.
#[inline]
pub(super) fn sample_stack(
    r: &mut Resolver,
    prev: &mut PrevStack,
    sflags: u8,
    raw: &[u64],
) -> Option<StackId> {
    let n = raw.len();
    let host = sflags & flags::HOST != 0;
    let incomplete = sflags & (flags::TRUNCATED | flags::BROKEN);
    // How many outermost entries are shared with the previous sample and
    // were resolved the same way (entry 0 is special: the leaf).
    let mut shared = 0;
    if incomplete == prev.flags & (flags::TRUNCATED | flags::BROKEN)
        && prev.nodes.len() == prev.raw.len() + 1
    {
        let m = prev.raw.len();
        while shared < n.min(m) && raw[n - 1 - shared] == prev.raw[m - 1 - shared] {
            shared += 1;
        }
        // Entry 0 of either stack is the leaf, resolved differently.
        shared = shared.min(n.saturating_sub(1)).min(m.saturating_sub(1));
    }
    // Root first, the shared entries stay where they are.
    let (nodes, sites) = (&mut prev.nodes, &mut prev.sites);
    if shared > 0 {
        nodes.truncate(shared + 1);
        sites.truncate(shared + 1);
    } else {
        nodes.clear();
        sites.clear();
        nodes.push(if incomplete != 0 {
            let f = r.synthetic(TRUNCATED, Category::Other);
            r.push(None, f)
        } else {
            None
        });
        sites.push(None);
    }
    for j in (0..n - shared).rev() {
        let is_return = j > 0 || host;
        let res = r.resolve(raw[j], is_return);
        // Entry 0's innermost frame is the sample's leaf unless a host
        // frame goes below it (then nothing is pushed here if it is in a
        // trampoline). The node is never a parent: the next sample keeps
        // none of this sample's entry 0 (see `shared`).
        let node = r.push_resolved(nodes[n - j - 1], res, j == 0 && !host);
        let site = if res.is_empty() {
            sites[n - j - 1]
        } else {
            res.call_site
        };
        nodes.push(node);
        sites.push(site);
    }
    // The leaf: a host call (or a PC in a trampoline, on its way in or out
    // of the host) ends in a frame naming the callee.
    let leaf_in_trampoline = n > 0 && !host && r.resolve(raw[0], false).is_empty();
    let leaf = if host || leaf_in_trampoline || n == 0 {
        let f = r.host_frame(sites[n]);
        r.push(nodes[n], f)
    } else {
        nodes[n]
    };
    prev.raw.clear();
    prev.raw.extend_from_slice(raw);
    prev.flags = sflags;
    leaf
}
