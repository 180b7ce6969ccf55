//! A component's core modules as module records (SPEC.md §2.2): where each
//! one's bytes are in the component file, its functions in the component's
//! code, and its part of the address map.

use std::collections::BTreeMap;

use wrec_format::{AddressMapEntry, FunctionEntry};

/// The byte ranges `(offset, len)` of the core modules in a component file,
/// in file order, nested components' modules included where they are: the
/// order in which Wasmtime numbers the component's static modules. Empty if
/// `bytes` do not parse (Wasmtime compiled them, so they do).
pub(crate) fn core_module_ranges(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::ModuleSection {
                unchecked_range, ..
            }) => ranges.push((
                unchecked_range.start as u64,
                (unchecked_range.end - unchecked_range.start) as u64,
            )),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    ranges
}

/// The component's functions grouped by static module (in index order),
/// each group in code order.
pub(crate) fn functions_by_module(
    component: &wasmtime::component::Component,
) -> Vec<(u32, Vec<FunctionEntry>)> {
    let mut by_module: BTreeMap<u32, Vec<FunctionEntry>> = BTreeMap::new();
    for f in component.functions() {
        by_module
            .entry(f.module.as_u32())
            .or_default()
            .push(FunctionEntry {
                index: f.index.as_u32(),
                offset: f.offset as u64,
                len: f.len as u64,
            });
    }
    by_module
        .into_iter()
        .map(|(m, mut fs)| {
            fs.sort_by_key(|f| f.offset);
            (m, fs)
        })
        .collect()
}

/// The code range `[start, end)` of each module of `modules` (grouped by
/// [`functions_by_module`], their functions not overlapping) in a
/// component's code of `text_len` bytes: the first from 0, each up to the
/// next one's first function, the last to the end, so the component's
/// trampolines (entry, exit, lowered imports) fall in some module's range,
/// as a core module's own trampolines do (SPEC.md §2.2). Modules are ordered
/// by their first function for this, whatever their index order.
pub(crate) fn module_bounds(
    modules: &[(u32, Vec<FunctionEntry>)],
    text_len: u64,
) -> Vec<(u64, u64)> {
    let first = |fs: &[FunctionEntry]| fs.first().map_or(0, |f| f.offset);
    let mut order: Vec<usize> = (0..modules.len()).collect();
    order.sort_by_key(|&i| first(&modules[i].1));
    let mut bounds = vec![(0, 0); modules.len()];
    for (k, &i) in order.iter().enumerate() {
        let start = if k == 0 { 0 } else { first(&modules[i].1) };
        let end = order.get(k + 1).map_or(text_len, |&j| first(&modules[j].1));
        bounds[i] = (start, end.max(start));
    }
    bounds
}

/// The part of the component's address map `map` (code offset, whole-file
/// wasm offset; in code order) for the code `[start, end)` of one module
/// whose bytes are `[offset, offset + len)` of the file: code offsets from
/// `start`, wasm offsets from `offset`, and none for a wasm offset outside
/// the module (or for a module with no bytes in the file).
pub(crate) fn module_address_map(
    map: &[(u64, Option<u64>)],
    start: u64,
    end: u64,
    offset: u64,
    len: u64,
) -> Vec<AddressMapEntry> {
    let wasm = |w: Option<u64>| {
        w.filter(|&w| w >= offset && w - offset < len)
            .map(|w| w - offset)
    };
    let first = map.partition_point(|&(c, _)| c <= start);
    let mut out = Vec::new();
    // The entry in effect at `start`, if the map has none exactly there.
    if let Some(&(c, w)) = first.checked_sub(1).and_then(|i| map.get(i)) {
        if c < start {
            out.push(AddressMapEntry {
                code_offset: 0,
                wasm_offset: wasm(w),
            });
        }
    }
    let from = map.partition_point(|&(c, _)| c < start);
    for &(c, w) in map[from..].iter().take_while(|&&(c, _)| c < end) {
        out.push(AddressMapEntry {
            code_offset: c - start,
            wasm_offset: wasm(w),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_gets_its_slice_of_the_map_relative_to_its_code_and_bytes() {
        let map = [
            (0, None),
            (8, Some(100)),
            (16, Some(110)),
            (24, Some(500)),
            (32, Some(505)),
            (40, None),
        ];
        // Module bytes [90, 190), code [12, 32).
        let m = module_address_map(&map, 12, 32, 90, 100);
        let got: Vec<(u64, Option<u64>)> =
            m.iter().map(|e| (e.code_offset, e.wasm_offset)).collect();
        assert_eq!(got, vec![(0, Some(10)), (4, Some(20)), (12, None)]);
        // No bytes in the file: no wasm offsets.
        let m = module_address_map(&map, 8, 16, 0, 0);
        assert!(m.iter().all(|e| e.wasm_offset.is_none()));
        assert_eq!(m[0].code_offset, 0);
    }

    #[test]
    fn module_ranges_cover_the_whole_component_code() {
        let f = |offset, len| FunctionEntry {
            index: 0,
            offset,
            len,
        };
        let modules = vec![
            (0, vec![f(0, 10), f(10, 5)]),
            (2, vec![f(40, 8)]),
            (1, vec![f(20, 4)]),
        ];
        assert_eq!(
            module_bounds(&modules, 100),
            vec![(0, 20), (40, 100), (20, 40)]
        );
    }

    #[test]
    fn the_core_modules_of_a_component_fixture_are_found_in_file_order() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/fib-O2.component.wasm"
        );
        let bytes = std::fs::read(path).unwrap();
        let ranges = core_module_ranges(&bytes);
        assert_eq!(ranges.len(), 4, "{ranges:?}");
        // The first is the program, byte for byte fixtures/fib-O2.wasm.
        let (o, l) = ranges[0];
        let program = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/fib-O2.wasm"
        ))
        .unwrap();
        assert_eq!(&bytes[o as usize..(o + l) as usize], &program[..]);
        assert!(ranges.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
    }
}
