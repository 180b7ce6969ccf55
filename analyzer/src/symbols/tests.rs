//! Unit tests of the symbolizer's parts on hand-built modules.

use std::path::Path;

use wasmparser::Operator;

use super::demangle::{demangle_dwarf, Bounded};
use super::opcodes::text_name;
use super::*;

#[test]
fn text_names() {
    assert_eq!(text_name("visit_memory_grow"), "memory.grow");
    assert_eq!(text_name("visit_i32_add"), "i32.add");
    assert_eq!(text_name("visit_i32_trunc_f32_s"), "i32.trunc_f32_s");
    assert_eq!(
        text_name("visit_i32_atomic_rmw8_add_u"),
        "i32.atomic.rmw8.add_u"
    );
    assert_eq!(
        text_name("visit_memory_atomic_wait32"),
        "memory.atomic.wait32"
    );
    assert_eq!(text_name("visit_atomic_fence"), "atomic.fence");
    assert_eq!(text_name("visit_call_indirect"), "call_indirect");
    assert_eq!(text_name("visit_br_if"), "br_if");
    assert_eq!(text_name("visit_local_get"), "local.get");
    assert_eq!(text_name("visit_ref_is_null"), "ref.is_null");
    assert_eq!(text_name("visit_typed_select"), "select");
    assert_eq!(
        operator_name(&Operator::MemoryGrow { mem: 0 }),
        "memory.grow"
    );
    assert_eq!(operator_name(&Operator::Nop), "nop");
    assert_eq!(operator_name(&Operator::I32Const { value: 1 }), "i32.const");
}

#[test]
fn demangling() {
    assert_eq!(demangle("fib"), "fib");
    assert_eq!(demangle("__main_argc_argv"), "__main_argc_argv");
    assert_eq!(
        demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
        "core::fmt::write"
    );
    assert_eq!(demangle("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
    assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
    assert_eq!(demangle("_Z3addii"), "add(int, int)");
    assert_eq!(
        demangle("core::fmt::write::h0123456789abcdef"),
        "core::fmt::write"
    );
    assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
    assert_eq!(demangle("i"), "i");
    assert_eq!(demangle_dwarf("f", Some(gimli::DW_LANG_C_plus_plus)), "f");
    assert_eq!(
        demangle_dwarf("_Z3addii", Some(gimli::DW_LANG_C_plus_plus_11)),
        "add(int, int)"
    );
    assert_eq!(
        demangle_dwarf("_Z3addii", Some(gimli::DW_LANG_C11)),
        "_Z3addii"
    );
    assert_eq!(
        demangle_dwarf("_ZN4core3fmt5write17h0123456789abcdefE", None),
        "core::fmt::write"
    );
    let evil = evil_cpp_name(60);
    let small = evil_cpp_name(2);
    assert_eq!(
        demangle(&small),
        "f(std::pair<int, int>, std::pair<std::pair<int, int>, std::pair<int, int> >)"
    );
    // Left mangled: the bounded output refused it (unbounded, it would not
    // finish).
    assert_eq!(demangle(&evil), evil);
    assert_eq!(demangle(""), "");
}

/// A C++ name whose parameters are each pair<previous, previous>, by
/// substitution: the output doubles with each one (2^(n−1) pairs if not
/// bounded).
fn evil_cpp_name(n: usize) -> String {
    let seq = |k: usize| {
        // S_, S0_, S1_, ... (base 36).
        if k == 0 {
            return "S_".to_string();
        }
        let (mut k, mut digits) = (k - 1, Vec::new());
        loop {
            digits.push(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k % 36] as char);
            k /= 36;
            if k == 0 {
                break;
            }
        }
        format!("S{}_", digits.iter().rev().collect::<String>())
    };
    let mut evil = String::from("_Z1fSt4pairIiiE");
    for k in 1..n {
        evil.push_str(&format!("S_I{0}{0}E", seq(k)));
    }
    evil
}

/// How long the bound takes to stop the evil name: a timing, so it
/// depends on the machine's load; run it with `--ignored`.
#[test]
#[ignore = "a timing: run on a quiet machine"]
fn evil_names_demangle_quickly() {
    let evil = evil_cpp_name(60);
    let start = std::time::Instant::now();
    assert_eq!(demangle(&evil), evil);
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}

/// Output past the bound is refused, whatever the demangler does: what
/// keeps crafted names from taking exponential time and memory.
#[test]
fn demangled_output_is_bounded() {
    use std::fmt::Write as _;
    let mut out = Bounded::for_name("_Z1fv");
    let limit = 64 * 16;
    assert!(out.write_str(&"x".repeat(limit)).is_ok());
    assert!(out.write_str("x").is_err());
    assert_eq!(out.0.len(), limit);
}

#[test]
fn paths() {
    assert_eq!(clean_path("./fixtures/src/fib.c"), "fixtures/src/fib.c");
    assert_eq!(
        clean_path("./build/./libc-bottom-half/crt/crt1-command.c"),
        "build/libc-bottom-half/crt/crt1-command.c"
    );
    assert_eq!(clean_path("/tmp/./x/../y.c"), "/tmp/x/../y.c");
    assert_eq!(clean_path("/usr/include/stdio.h"), "/usr/include/stdio.h");
    assert_eq!(clean_path("fib.c"), "fib.c");
    assert_eq!(clean_path("./"), ".");
    assert_eq!(clean_path("."), ".");
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<WasmSymbols>();
}

/// A module built by hand: (import "env" "f" (func)), two defined
/// functions, the second calling the import, with a name section.
fn tiny_module(names: &[u8]) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type 0: () -> ()
    m.extend_from_slice(&[2, 9, 1, 3, b'e', b'n', b'v', 1, b'f', 0, 0]); // import env::f
    m.extend_from_slice(&[3, 3, 2, 0, 0]); // two functions of type 0
                                           // code: body0 = [0 locals, nop, end]; body1 = [0 locals, call 0, end]
    m.extend_from_slice(&[10, 10, 2, 3, 0, 0x01, 0x0b, 4, 0, 0x10, 0x00, 0x0b]);
    if !names.is_empty() {
        let mut sec = vec![4u8, b'n', b'a', b'm', b'e'];
        sec.extend_from_slice(names);
        m.push(0);
        m.push(sec.len() as u8);
        m.extend_from_slice(&sec);
    }
    m
}

fn function_names_subsection(entries: &[(u32, &[u8])]) -> Vec<u8> {
    let mut body = vec![entries.len() as u8];
    for (index, name) in entries {
        body.push(*index as u8);
        body.push(name.len() as u8);
        body.extend_from_slice(name);
    }
    let mut sub = vec![1u8, body.len() as u8];
    sub.extend_from_slice(&body);
    sub
}

#[test]
fn tiny_module_names_and_calls() {
    let names = function_names_subsection(&[(1, b"first"), (2, b"_ZN3foo3barEv")]);
    let m = tiny_module(&names);
    let s = WasmSymbols::from_bytes(Path::new("tiny.wasm"), m.clone()).unwrap();
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    assert_eq!(s.num_imported_funcs(), 1);
    assert_eq!(s.num_funcs(), 3);
    assert_eq!(s.function_name(0), "env::f");
    assert_eq!(s.function_name(1), "first");
    assert_eq!(s.function_name(2), "foo::bar()");
    assert_eq!(s.function_name(3), "wasm-function[3]");
    assert!(!s.has_dwarf());
    let body1 = s.function_body(2).unwrap();
    // body1: [0 locals][call 0][end]
    assert_eq!(s.function_containing(body1.start + 1), Some(2));
    assert_eq!(s.call_target(body1.start + 1), Some(CallTarget::Direct(0)));
    assert_eq!(
        s.call_target(body1.start + 2),
        None,
        "not an instruction start"
    );
    assert_eq!(
        s.call_target(body1.start + 3),
        Some(CallTarget::Other("end"))
    );
    let body0 = s.function_body(1).unwrap();
    assert_eq!(
        s.call_target(body0.start + 1),
        Some(CallTarget::Other("nop"))
    );
    assert_eq!(s.function_containing(body0.start - 1), None);
    assert!(s.source_frames(body0.start + 1).is_empty());
    let code = s.code_section_range().unwrap();
    assert_eq!(
        code.start + 2,
        body0.start,
        "count LEB, size LEB, then the body"
    );
}

#[test]
fn tiny_module_bad_names_degrade() {
    // Bad UTF-8, an out-of-range index and a duplicate.
    let names =
        function_names_subsection(&[(1, b"ok"), (2, b"\xff\xfe"), (9, b"far"), (1, b"dup")]);
    let s = WasmSymbols::from_bytes(Path::new("bad.wasm"), tiny_module(&names)).unwrap();
    assert_eq!(s.function_name(1), "ok");
    assert_eq!(s.function_name(2), "\u{fffd}\u{fffd}");
    assert_eq!(s.warnings().len(), 3, "{:?}", s.warnings());
    assert!(s
        .warnings()
        .iter()
        .all(|w| w.starts_with("bad.wasm: name section at byte offset 0x")));

    // A truncated subsection: a count larger than the entries present.
    let mut names = function_names_subsection(&[(1, b"ok")]);
    names[2] = 100; // a one-byte LEB
    let s = WasmSymbols::from_bytes(Path::new("bad.wasm"), tiny_module(&names)).unwrap();
    assert_eq!(s.function_name(1), "ok", "{:?}", s.warnings());
    assert_eq!(s.function_name(2), "wasm-function[2]");
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
}

#[test]
fn not_wasm_errors() {
    let e = WasmSymbols::from_bytes(Path::new("x.wasm"), b"hello world".to_vec()).unwrap_err();
    assert_eq!(e.to_string(), "x.wasm: not a wasm module (bad magic)");
    let e = WasmSymbols::from_bytes(Path::new("x.wasm"), b"\0asm\x02\0\0\0".to_vec()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("x.wasm: malformed wasm at byte offset 0x"),
        "{e}"
    );
    let e =
        WasmSymbols::from_bytes(Path::new("c.wasm"), b"\0asm\x0d\0\x01\0".to_vec()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c.wasm: a WebAssembly component, not a core wasm module"
    );
    let e = WasmSymbols::open(Path::new("/nonexistent/dir/y.wasm")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/dir/y.wasm: cannot read: "),
        "{e}"
    );
}

#[test]
fn truncations_never_panic() {
    let names = function_names_subsection(&[(1, b"first"), (2, b"second")]);
    let m = tiny_module(&names);
    for len in 0..m.len() {
        if let Ok(s) = WasmSymbols::from_bytes(Path::new("t.wasm"), m[..len].to_vec()) {
            for f in 0..4 {
                let _ = s.function_name(f);
            }
            for off in 0..len as u64 + 2 {
                let _ = s.call_target(off);
                let _ = s.source_frames(off);
                let _ = s.function_containing(off);
            }
        }
    }
}
