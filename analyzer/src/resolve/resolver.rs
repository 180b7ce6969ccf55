//! Raw stack entries → frames, each distinct entry resolved once, and the
//! stack nodes they make.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use super::modules::Module;
use crate::model::{
    Category, Frame, FrameId, Func, FuncId, Interner, NativeSymbol, Profile, Stack, StackId,
};
use crate::ranges::FirstOwner;
use crate::symbols::{component, CallTarget};

/// Synthetic frame names.
pub(super) const UNKNOWN: &str = "[unknown code]";
pub(super) const TRUNCATED: &str = "[stack truncated]";
const HOST: &str = "[host]";

/// What one raw stack entry resolves to.
#[derive(Clone, Copy)]
pub(super) struct Resolved {
    /// Where its frames are in [`Resolver::frames`], outermost first (an
    /// inline chain ends with the innermost inlined call). Empty for
    /// trampolines, which are skipped.
    start: usize,
    end: usize,
    /// For a host call's caller: the wasm offset of its call instruction.
    pub(super) call_site: Option<(usize, u64)>,
}

impl Resolved {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Slots of [`Resolver::recent`]: enough for the distinct addresses of most
/// programs' samples, small enough to stay in cache.
const RECENT: usize = 4096;

pub(super) struct Resolver {
    pub(super) modules: Vec<Module>,
    /// Which of `modules` holds an address: the first whose code does.
    pub(super) module_ranges: FirstOwner,
    pub(super) profile: Profile,
    pub(super) interner: Interner,
    /// Every distinct (address, is return) resolved so far.
    resolved: Vec<Resolved>,
    /// The frames of every [`Resolved`], one after the other.
    frames: Vec<FrameId>,
    /// (address, is return) → index in `resolved`. Raw addresses come from
    /// the trace, so this keeps std's keyed hash: a hostile trace cannot make
    /// its look-ups quadratic.
    cache: HashMap<(u64, bool), usize>,
    /// A direct-mapped cache in front of `cache`: (address, index in
    /// `resolved` × 2 + is return), `u64::MAX` when empty. A collision only
    /// costs a look-up in `cache`.
    recent: Vec<(u64, u64)>,
    host_cache: HashMap<Option<(usize, u64)>, FrameId>,
    real_funcs: HashMap<(usize, u32), FuncId>,
    /// (lib, function index) → its native symbol.
    native_symbols: FxHashMap<(u32, u32), Option<u32>>,
    /// Per module (built on first use): the indices of its address-map
    /// entries that carry a wasm offset, for [`nearest_wasm_offset`].
    mapped: FxHashMap<usize, Vec<usize>>,
    pub(super) synthetic: FxHashMap<&'static str, FrameId>,
    /// Distinct code offsets inside functions that the trace gives no wasm
    /// offset for (no code-addresses entry, no full map: the recorder was
    /// killed before writing it).
    pub(super) unmapped: u64,
}

impl Resolver {
    /// An empty resolver; `by_function`: see
    /// [`Options::by_function`](super::Options::by_function).
    pub(super) fn new(by_function: bool) -> Self {
        Resolver {
            modules: Vec::new(),
            module_ranges: FirstOwner::default(),
            profile: Profile::default(),
            interner: if by_function {
                Interner::by_function()
            } else {
                Interner::default()
            },
            resolved: Vec::new(),
            frames: Vec::new(),
            cache: HashMap::new(),
            recent: vec![(0, u64::MAX); RECENT],
            host_cache: HashMap::new(),
            real_funcs: HashMap::new(),
            native_symbols: FxHashMap::default(),
            mapped: FxHashMap::default(),
            synthetic: FxHashMap::default(),
            unmapped: 0,
        }
    }

    /// Adds a module: addresses in its code resolve to it from now on
    /// (unless an earlier module's code holds them too).
    pub(super) fn add_module(&mut self, m: Module) {
        self.module_ranges
            .add(m.rec.text_addr, m.rec.text_len, self.modules.len());
        self.modules.push(m);
    }

    pub(super) fn synthetic(&mut self, name: &'static str, category: Category) -> FrameId {
        if let Some(&f) = self.synthetic.get(name) {
            return f;
        }
        let f = self.leaf_frame(name.to_owned(), category, None);
        self.synthetic.insert(name, f);
        f
    }

    /// A frame without address or line for a function of its own: the
    /// synthetic and host frames.
    fn leaf_frame(&mut self, name: String, category: Category, lib: Option<u32>) -> FrameId {
        let func = self.interner.func(
            &mut self.profile,
            Func {
                name,
                file: None,
                line: None,
                category,
                lib,
            },
        );
        self.interner.frame(
            &mut self.profile,
            Frame {
                func,
                address: None,
                line: None,
                column: None,
                inline_depth: 0,
                native_symbol: None,
            },
        )
    }

    fn module_of(&self, addr: u64) -> Option<usize> {
        self.module_ranges.find(addr)
    }

    /// Resolves one stack entry (cached); its frames are in `self.frames`.
    #[inline]
    pub(super) fn resolve(&mut self, addr: u64, is_return: bool) -> Resolved {
        let slot = (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % RECENT;
        let (a, tagged) = self.recent[slot];
        if a == addr && tagged != u64::MAX && (tagged & 1 == 1) == is_return {
            return self.resolved[(tagged >> 1) as usize];
        }
        let i = match self.cache.get(&(addr, is_return)) {
            Some(&i) => i,
            None => {
                let start = self.frames.len();
                let call_site = self.resolve_uncached(addr, is_return);
                self.resolved.push(Resolved {
                    start,
                    end: self.frames.len(),
                    call_site,
                });
                let i = self.resolved.len() - 1;
                self.cache.insert((addr, is_return), i);
                i
            }
        };
        self.recent[slot] = (addr, (i as u64) << 1 | u64::from(is_return));
        self.resolved[i]
    }

    /// Appends the frames of a stack entry to `self.frames`; returns its
    /// call site.
    fn resolve_uncached(&mut self, addr: u64, is_return: bool) -> Option<(usize, u64)> {
        let Some(mi) = self.module_of(addr) else {
            let f = self.synthetic(UNKNOWN, Category::Other);
            self.frames.push(f);
            return None;
        };
        let m = &self.modules[mi];
        let mut off = addr - m.rec.text_addr;
        if is_return && off > 0 {
            off -= 1;
        }
        let Some(func) = m.rec.function_at(off).copied() else {
            // A trampoline: part of the call into or out of wasm, no frame.
            return None;
        };
        let wasm_off = match m.rec.exact_wasm_offset(off) {
            Some(w) => w,
            None if m.rec.address_map.is_empty() => {
                self.unmapped += 1;
                None
            }
            None => {
                let mapped = self
                    .mapped
                    .entry(mi)
                    .or_insert_with(|| m.rec.mapped_entries());
                m.rec.nearest_wasm_offset(mapped, off, &func)
            }
        };
        let lib = m.lib;
        let source = match wasm_off {
            Some(w) if m.dwarf => m.symbols.source_frames(w),
            _ => Vec::new(),
        };
        let real = self.real_func(mi, func.index);
        let native_symbol = self.native_symbol(mi, func.index);
        if source.is_empty() {
            let f = self.interner.frame(
                &mut self.profile,
                Frame {
                    func: real,
                    address: wasm_off,
                    line: None,
                    column: None,
                    inline_depth: 0,
                    native_symbol,
                },
            );
            self.frames.push(f);
        } else {
            // Innermost first from DWARF; the outermost is the real function,
            // named from the name section like every other frame.
            let depth = source.len() - 1;
            for (i, sf) in source.iter().enumerate().rev() {
                let inline_depth = (depth - i) as u32;
                let f = if i == depth {
                    real
                } else {
                    self.interner.func(
                        &mut self.profile,
                        Func {
                            name: sf
                                .function
                                .clone()
                                .unwrap_or_else(|| "[inlined]".to_owned()),
                            file: sf.file.clone(),
                            line: sf.decl_line,
                            category: Category::Wasm,
                            lib: Some(lib),
                        },
                    )
                };
                let f = self.interner.frame(
                    &mut self.profile,
                    Frame {
                        func: f,
                        address: wasm_off,
                        // 0 means "no line/column" in DWARF.
                        line: sf.line.filter(|&l| l != 0),
                        column: sf.column.filter(|&c| c != 0),
                        inline_depth,
                        native_symbol,
                    },
                );
                self.frames.push(f);
            }
        }
        wasm_off.filter(|_| is_return).map(|w| (mi, w))
    }

    /// The function a wasm function index names: one per (module, index),
    /// named from the name section, with its file and declaration line from
    /// the DWARF at its body's start.
    fn real_func(&mut self, mi: usize, index: u32) -> FuncId {
        if let Some(&f) = self.real_funcs.get(&(mi, index)) {
            return f;
        }
        let m = &self.modules[mi];
        let name = m.symbols.function_name(index);
        let outer = match m.symbols.function_body(index) {
            Some(body) if m.dwarf => m.symbols.source_frames(body.start).pop(),
            _ => None,
        };
        let lib = m.lib;
        let f = self.interner.func(
            &mut self.profile,
            Func {
                name,
                file: outer.as_ref().and_then(|o| o.file.clone()),
                line: outer.and_then(|o| o.decl_line),
                category: Category::Wasm,
                lib: Some(lib),
            },
        );
        self.real_funcs.insert((mi, index), f);
        f
    }

    /// The native symbol of a wasm function index: its body's place and
    /// size in the module, one per (module's lib, index). `None` if the
    /// module has no body for it.
    fn native_symbol(&mut self, mi: usize, index: u32) -> Option<u32> {
        let lib = self.modules[mi].lib;
        if let Some(&n) = self.native_symbols.get(&(lib, index)) {
            return n;
        }
        let m = &self.modules[mi];
        let n = m.symbols.function_body(index).map(|body| {
            self.profile.native_symbols.push(NativeSymbol {
                lib,
                address: body.start,
                size: body.end - body.start,
                name: m.symbols.function_name(index),
            });
            (self.profile.native_symbols.len() - 1) as u32
        });
        self.native_symbols.insert((lib, index), n);
        n
    }

    /// The leaf frame of a host call made at `site`.
    pub(super) fn host_frame(&mut self, site: Option<(usize, u64)>) -> FrameId {
        if let Some(&f) = self.host_cache.get(&site) {
            return f;
        }
        let (name, lib) = match site {
            Some((mi, w)) => {
                let m = &self.modules[mi];
                let name = match m.symbols.call_target(w) {
                    Some(CallTarget::Direct(i)) if i < m.symbols.num_imported_funcs() => m
                        .symbols
                        .import(i)
                        .and_then(|(module, name)| component::interface_call_name(module, name))
                        .unwrap_or_else(|| m.symbols.function_name(i)),
                    Some(CallTarget::Direct(_)) => "[host: runtime]".to_owned(),
                    // A component's shim forwards some WASI 0.2 calls
                    // through its table, from functions named after them.
                    Some(CallTarget::Indirect) => m
                        .symbols
                        .function_containing(w)
                        .and_then(|f| m.symbols.defined_name(f))
                        .and_then(component::shim_call_name)
                        .unwrap_or_else(|| "[host: indirect call]".to_owned()),
                    Some(CallTarget::Other(op)) => format!("[libcall] {op}"),
                    None => HOST.to_owned(),
                };
                (name, Some(m.lib))
            }
            None => (HOST.to_owned(), None),
        };
        let f = self.leaf_frame(name, Category::Host, lib);
        self.host_cache.insert(site, f);
        f
    }

    /// Pushes a synthetic or host frame (the only frame of its function,
    /// so a leaf or not makes no difference) onto `parent`.
    #[inline]
    pub(super) fn push(&mut self, parent: Option<StackId>, frame: FrameId) -> Option<StackId> {
        push(
            &mut self.interner,
            &mut self.profile,
            parent,
            &[frame],
            false,
        )
    }

    /// Pushes the frames of `res` (from [`Resolver::resolve`]) onto `parent`;
    /// `leaf`: the last of them is the sample's leaf.
    #[inline]
    pub(super) fn push_resolved(
        &mut self,
        parent: Option<StackId>,
        res: Resolved,
        leaf: bool,
    ) -> Option<StackId> {
        push(
            &mut self.interner,
            &mut self.profile,
            parent,
            &self.frames[res.start..res.end],
            leaf,
        )
    }
}

/// The stack node for `frames` (outermost first) called from `parent`;
/// `leaf`: the last frame is a sample's leaf ([`Interner::leaf_stack`]).
#[inline]
fn push(
    interner: &mut Interner,
    profile: &mut Profile,
    parent: Option<StackId>,
    frames: &[FrameId],
    leaf: bool,
) -> Option<StackId> {
    let mut node = parent;
    for (i, &frame) in frames.iter().enumerate() {
        let s = Stack {
            parent: node,
            frame,
        };
        node = Some(if leaf && i + 1 == frames.len() {
            interner.leaf_stack(profile, s)
        } else {
            interner.stack(profile, s)
        });
    }
    node
}
