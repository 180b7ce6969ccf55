//! An inline chain deeper than any real one (here 300 inlined calls in one
//! function, written with gimli) keeps its source lines: the innermost
//! frames and the function itself, with one warning naming the offset and
//! the function. Before, 256 frames or more were taken for corrupt DWARF
//! and the address lost all its lines.

use std::path::Path;

use gimli::write::{
    Address, AttributeValue, DwarfUnit, EndianVec, LineProgram, LineString, Sections,
};
use gimli::{Encoding, Format, LittleEndian};
use wanalyze::symbols::WasmSymbols;

/// Inlined calls in the chain.
const DEPTH: usize = 300;

/// `bytes` with a custom section `name` holding `data` appended.
fn push_custom(bytes: &mut Vec<u8>, name: &str, data: &[u8]) {
    fn leb(out: &mut Vec<u8>, mut v: usize) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(&mut payload, name.len());
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    bytes.push(0);
    leb(bytes, payload.len());
    bytes.extend_from_slice(&payload);
}

/// DWARF for one function `f` over code-section offsets `lo..hi`, with
/// `inl0` inlined into it, `inl1` into that, and so on `DEPTH` deep, all
/// over the whole range; the line table gives line 7 of deep.c throughout.
fn dwarf(lo: u64, hi: u64) -> Vec<(&'static str, Vec<u8>)> {
    let encoding = Encoding {
        format: Format::Dwarf32,
        version: 4,
        address_size: 4,
    };
    let mut dwarf = DwarfUnit::new(encoding);
    let mut lp = LineProgram::new(
        encoding,
        Default::default(),
        LineString::String(b"/src".to_vec()),
        None,
        LineString::String(b"deep.c".to_vec()),
        None,
    );
    let dir = lp.default_directory();
    let file = lp.add_file(LineString::String(b"deep.c".to_vec()), dir, None);
    lp.begin_sequence(Some(Address::Constant(lo)));
    lp.row().file = file;
    lp.row().line = 7;
    lp.generate_row();
    lp.end_sequence(hi - lo);
    dwarf.unit.line_program = lp;

    let root = dwarf.unit.root();
    let set = |dwarf: &mut DwarfUnit, id, at, v| dwarf.unit.get_mut(id).set(at, v);
    set(
        &mut dwarf,
        root,
        gimli::DW_AT_name,
        AttributeValue::String(b"deep.c".to_vec()),
    );
    set(
        &mut dwarf,
        root,
        gimli::DW_AT_comp_dir,
        AttributeValue::String(b"/src".to_vec()),
    );
    set(
        &mut dwarf,
        root,
        gimli::DW_AT_low_pc,
        AttributeValue::Address(Address::Constant(lo)),
    );
    set(
        &mut dwarf,
        root,
        gimli::DW_AT_high_pc,
        AttributeValue::Udata(hi - lo),
    );
    let abstracts: Vec<_> = (0..DEPTH)
        .map(|i| {
            let a = dwarf.unit.add(root, gimli::DW_TAG_subprogram);
            set(
                &mut dwarf,
                a,
                gimli::DW_AT_name,
                AttributeValue::String(format!("inl{i}").into_bytes()),
            );
            set(
                &mut dwarf,
                a,
                gimli::DW_AT_inline,
                AttributeValue::Inline(gimli::DW_INL_inlined),
            );
            a
        })
        .collect();
    let f = dwarf.unit.add(root, gimli::DW_TAG_subprogram);
    set(
        &mut dwarf,
        f,
        gimli::DW_AT_name,
        AttributeValue::String(b"f".to_vec()),
    );
    set(
        &mut dwarf,
        f,
        gimli::DW_AT_low_pc,
        AttributeValue::Address(Address::Constant(lo)),
    );
    set(
        &mut dwarf,
        f,
        gimli::DW_AT_high_pc,
        AttributeValue::Udata(hi - lo),
    );
    let mut parent = f;
    for (i, a) in abstracts.into_iter().enumerate() {
        let c = dwarf.unit.add(parent, gimli::DW_TAG_inlined_subroutine);
        set(
            &mut dwarf,
            c,
            gimli::DW_AT_abstract_origin,
            AttributeValue::UnitRef(a),
        );
        set(
            &mut dwarf,
            c,
            gimli::DW_AT_low_pc,
            AttributeValue::Address(Address::Constant(lo)),
        );
        set(
            &mut dwarf,
            c,
            gimli::DW_AT_high_pc,
            AttributeValue::Udata(hi - lo),
        );
        set(
            &mut dwarf,
            c,
            gimli::DW_AT_call_file,
            AttributeValue::FileIndex(Some(file)),
        );
        set(
            &mut dwarf,
            c,
            gimli::DW_AT_call_line,
            AttributeValue::Udata(1000 + i as u64),
        );
        parent = c;
    }
    let mut sections = Sections::new(EndianVec::new(LittleEndian));
    dwarf.write(&mut sections).unwrap();
    let mut out = Vec::new();
    sections
        .for_each(|id, data| {
            if !data.slice().is_empty() {
                out.push((id.name(), data.slice().to_vec()));
            }
            Ok::<(), gimli::write::Error>(())
        })
        .unwrap();
    out
}

#[test]
fn a_300_deep_inline_chain_keeps_its_lines() {
    let nops = "nop ".repeat(64);
    let wasm = wat::parse_str(format!("(module (func $f {nops}))")).unwrap();
    let plain = WasmSymbols::from_bytes(Path::new("deep.wasm"), wasm.clone()).unwrap();
    let code = plain.code_section_payload_start().unwrap();
    let body = plain.function_body(0).unwrap();
    let (lo, hi) = (body.start - code, body.end - code);

    let mut bytes = wasm;
    for (name, data) in dwarf(lo, hi) {
        push_custom(&mut bytes, name, &data);
    }
    let s = WasmSymbols::from_bytes(Path::new("deep.wasm"), bytes).unwrap();
    assert!(s.has_dwarf());
    let frames = s.source_frames(body.start + 10);
    assert_eq!(frames.len(), 255, "{:?}", s.dwarf_warnings());
    // Innermost first: the deepest callee, at the line table's line.
    assert_eq!(frames[0].function.as_deref(), Some("inl299"));
    assert_eq!(frames[0].line, Some(7));
    assert_eq!(frames[0].file.as_deref(), Some("/src/deep.c"));
    // Each caller at its call site, down to the 254th.
    assert_eq!(frames[1].function.as_deref(), Some("inl298"));
    assert_eq!(frames[1].line, Some(1299));
    assert_eq!(frames[253].function.as_deref(), Some("inl46"));
    // The function itself, last.
    assert_eq!(frames[254].function.as_deref(), Some("f"));
    assert_eq!(frames[254].line, Some(1000));
    let w = s.dwarf_warnings();
    let deep: Vec<&String> = w.iter().filter(|w| w.contains("inlined calls")).collect();
    assert_eq!(deep.len(), 1, "{w:?}");
    assert!(
        deep[0].contains("a chain of 301 inlined calls"),
        "{}",
        deep[0]
    );
    assert!(deep[0].contains("(function 0)"), "{}", deep[0]);
}
