//! `wanalyze addr2line <WASM> <OFFSET>...`: the symbolizer on its own.
//!
//! (Named `lookup`, not `addr2line`, so it does not shadow the `addr2line`
//! crate the DWARF reader uses.)
//!
//! Offsets are whole-file offsets (what Wasmtime's address map and the
//! profiles show). The output format is the one of `wasm-tools addr2line`
//! (checked against wasm-tools 1.262), one line per frame, innermost first;
//! for inline.wasm, where `mix` is inlined into `hash_block`:
//!
//! ```text
//! 0x23c: mix fixtures/src/inline.c:35:7
//! <TAB>hash_block fixtures/src/inline.c:54:13
//! 0x217: hash_block fixtures/src/inline.c:52:0
//! ```
//!
//! The first frame is prefixed by the offset (`{:#x}: `), the others by a
//! tab; each is the function name, then, if DWARF has a location, a space
//! and `file:line:column` (each part only when known; column 0 means "no
//! column"). Differences from `wasm-tools addr2line`, all where it would
//! print nothing useful or fail:
//! - file paths have `.` components removed (`./src/a.c` → `src/a.c`), as
//!   everywhere in wanalyze;
//! - without DWARF frames the function comes from the name section:
//!   `0x1234: fib` (wasm-tools: `no dwarf frames found for this address`),
//!   and a DWARF frame without a name takes the name-section name for the
//!   outermost frame (wasm-tools: `<unnamed>`);
//! - an offset outside every function body prints
//!   `0x10: no function contains this address` and the run goes on
//!   (wasm-tools stops with an error when it is outside the module).

use std::io::{self, Write};

use crate::symbols::{SourceFrame, WasmSymbols};

/// Parses an offset: `0x…`/`0X…` or `@…` hexadecimal (as wasm-tools and
/// wasmprinter write them) or decimal.
pub fn parse_offset(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .or_else(|| t.strip_prefix('@'));
    let parsed = match hex {
        Some(h) if !h.is_empty() && !h.starts_with(['+', '-']) => u64::from_str_radix(h, 16),
        Some(_) => return Err(bad_offset(s)),
        None if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t.parse::<u64>(),
        None => return Err(bad_offset(s)),
    };
    parsed.map_err(|e| format!("invalid offset {s:?}: {e}"))
}

fn bad_offset(s: &str) -> String {
    format!("invalid offset {s:?}: expected a decimal number or hexadecimal with a 0x prefix")
}

/// Writes the frames of every offset, in the order given.
pub fn run(symbols: &WasmSymbols, offsets: &[u64], out: &mut dyn Write) -> io::Result<()> {
    for &offset in offsets {
        write_offset(symbols, offset, out)?;
    }
    out.flush()
}

/// Writes the lines for one whole-file offset.
pub fn write_offset(symbols: &WasmSymbols, offset: u64, out: &mut dyn Write) -> io::Result<()> {
    let func = symbols.function_containing(offset);
    let frames = symbols.source_frames(offset);
    if frames.is_empty() {
        return match func {
            Some(f) => writeln!(out, "{offset:#x}: {}", symbols.function_name(f)),
            None => writeln!(out, "{offset:#x}: no function contains this address"),
        };
    }
    let last = frames.len() - 1;
    for (i, frame) in frames.iter().enumerate() {
        if i == 0 {
            write!(out, "{offset:#x}: ")?;
        } else {
            write!(out, "\t")?;
        }
        let fallback = match (i == last, func) {
            (true, Some(f)) => Some(symbols.function_name(f)),
            _ => None,
        };
        write_frame(frame, fallback.as_deref(), out)?;
    }
    Ok(())
}

/// Writes one frame line (without the offset prefix or tab) and its newline:
/// `name[ file[:line[:column]]]`, the name falling back to `fallback`, then
/// to `<unnamed>`.
pub fn write_frame(
    frame: &SourceFrame,
    fallback: Option<&str>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let name = frame
        .function
        .as_deref()
        .or(fallback)
        .unwrap_or("<unnamed>");
    write!(out, "{name}")?;
    if frame.file.is_some() || frame.line.is_some() || frame.column.is_some() {
        write!(out, " ")?;
        if let Some(file) = &frame.file {
            write!(out, "{file}")?;
        }
        if let Some(line) = frame.line {
            write!(out, ":{line}")?;
        }
        if let Some(column) = frame.column {
            write!(out, ":{column}")?;
        }
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("0x1f"), Ok(31));
        assert_eq!(parse_offset("0X1F"), Ok(31));
        assert_eq!(parse_offset("@1f"), Ok(31));
        assert_eq!(parse_offset("31"), Ok(31));
        assert_eq!(parse_offset(" 31 "), Ok(31));
        assert_eq!(parse_offset("0"), Ok(0));
        assert_eq!(parse_offset("0xffffffffffffffff"), Ok(u64::MAX));
        for bad in ["", "0x", "zz", "-1", "+5", "0x-1", "1.5", "0x1g", "12a"] {
            let e = parse_offset(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid offset {bad:?}: ")), "{e}");
        }
        let e = parse_offset("0x1ffffffffffffffff").unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn frame_lines() {
        let mut out = Vec::new();
        let f = SourceFrame {
            function: Some("mix".into()),
            file: Some("src/a.c".into()),
            line: Some(3),
            column: Some(0),
            decl_line: None,
        };
        write_frame(&f, None, &mut out).unwrap();
        let g = SourceFrame {
            function: None,
            file: Some("src/a.c".into()),
            line: Some(9),
            column: None,
            decl_line: None,
        };
        write_frame(&g, Some("outer"), &mut out).unwrap();
        write_frame(&g, None, &mut out).unwrap();
        let h = SourceFrame {
            function: Some("f".into()),
            file: None,
            line: None,
            column: None,
            decl_line: None,
        };
        write_frame(&h, None, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "mix src/a.c:3:0\nouter src/a.c:9\n<unnamed> src/a.c:9\nf\n"
        );
    }
}
