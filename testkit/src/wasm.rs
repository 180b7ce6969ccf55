//! Reading wasm and the fixtures' C sources by hand, for tests that damage
//! a module on purpose or look for a line.

use std::ops::Range;

/// An unsigned LEB128 at the start of `b`: (value, bytes read).
pub fn leb(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    panic!("bad LEB")
}

/// The payload range (after the name) of custom section `name` in a wasm
/// module, which must have one.
pub fn custom_section(bytes: &[u8], name: &str) -> Range<usize> {
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        let (size, n) = leb(&bytes[at + 1..]);
        let start = at + 1 + n;
        let end = start + size as usize;
        if id == 0 {
            let (len, m) = leb(&bytes[start..]);
            let name_start = start + m;
            let name_end = name_start + len as usize;
            if &bytes[name_start..name_end] == name.as_bytes() {
                return name_end..end;
            }
        }
        at = end;
    }
    panic!("no {name} section")
}

/// 1-based line number of the first line of `src` containing `needle`,
/// outside comments (lines starting with `/*` or ` *`).
pub fn line_of(src: &str, needle: &str) -> u32 {
    src.lines()
        .position(|l| l.contains(needle) && !l.starts_with("/*") && !l.starts_with(" *"))
        .unwrap_or_else(|| panic!("{needle:?} not in source")) as u32
        + 1
}

/// Lines `first..=last` of the C function `name` in a fixture's source: from
/// the line that opens its definition to its closing brace.
pub fn function_lines(source: &str, name: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(crate::root().join(source)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            !l.starts_with(' ')
                && !l.starts_with('\t')
                && !l.starts_with('*')
                && !l.starts_with("/*")
                && l.contains(&format!("{name}("))
                && !l.trim_end().ends_with(';')
        })
        .unwrap_or_else(|| panic!("no definition of {name} in {source}"));
    let end = (start..lines.len())
        .find(|&i| lines[i].starts_with('}'))
        .expect("closing brace");
    (start as u64 + 1, end as u64 + 1)
}
