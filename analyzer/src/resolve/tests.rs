//! Unit tests of the resolver's helpers.

use wrec_format::{AddressMapEntry, FunctionEntry, ModuleRecord};

use super::file_name;
use super::modules::hex;
/// The linear scan `nearest_wasm_offset` replaced, as the reference.
fn nearest_linear(rec: &ModuleRecord, off: u64, func: &FunctionEntry) -> Option<u64> {
    let i = rec.address_map.partition_point(|e| e.code_offset <= off);
    let before = rec.address_map[..i]
        .iter()
        .rev()
        .take_while(|e| e.code_offset >= func.offset)
        .find_map(|e| e.wasm_offset);
    before.or_else(|| {
        rec.address_map[i..]
            .iter()
            .take_while(|e| e.code_offset < func.offset + func.len)
            .find_map(|e| e.wasm_offset)
    })
}

#[test]
fn nearest_wasm_offset_matches_a_linear_scan() {
    let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
    let mut rnd = move |n: u64| next() % n;
    for _ in 0..300 {
        let mut at = 0;
        let address_map: Vec<AddressMapEntry> = (0..rnd(40))
            .map(|_| {
                at += rnd(4); // repeated offsets too
                AddressMapEntry {
                    code_offset: at,
                    wasm_offset: (rnd(3) == 0).then(|| rnd(1000)),
                }
            })
            .collect();
        let rec = ModuleRecord {
            id: 0,
            path: String::new(),
            sha256: [0; 32],
            text_addr: 0,
            text_len: at + 10,
            functions: Vec::new(),
            address_map,
            addresses: Vec::new(),
            inner: None,
        };
        let mapped = rec.mapped_entries();
        for _ in 0..20 {
            let offset = rnd(at + 5);
            let func = FunctionEntry {
                index: 0,
                offset,
                len: rnd(at + 6 - offset) + 1,
            };
            for off in offset..offset + func.len {
                assert_eq!(
                    rec.nearest_wasm_offset(&mapped, off, &func),
                    nearest_linear(&rec, off, &func),
                    "{rec:?} {func:?} at {off}"
                );
            }
        }
    }
}

#[test]
fn hex_and_file_name() {
    assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    assert_eq!(file_name("/a/b/fib.wasm"), "fib.wasm");
    assert_eq!(file_name("fib.wasm"), "fib.wasm");
}
