//! Demangling of Rust (legacy and v0) and C++ (Itanium) names, with the
//! output bounded.

use std::fmt;

/// Demangles a symbol name: Rust (legacy and v0, without the hash), C++
/// (Itanium); anything else is returned unchanged. A Rust name that a
/// linker already demangled (ending in `::h` and 16 hex digits) loses the
/// hash.
pub fn demangle(name: &str) -> String {
    if name.len() > MAX_MANGLED_LEN {
        return name.to_string();
    }
    if let Some(d) = demangle_rust(name).or_else(|| demangle_cpp(name)) {
        return d;
    }
    if let Some(stem) = strip_rust_hash(name) {
        return stem.to_string();
    }
    name.to_string()
}

/// Demangles a DWARF name by its compile unit's language, like
/// `addr2line`'s `demangle_auto`, but only `_Z` names as C++ and with the
/// output bounded.
pub(super) fn demangle_dwarf(name: &str, language: Option<gimli::DwLang>) -> String {
    if name.len() > MAX_MANGLED_LEN {
        return name.to_string();
    }
    let demangled = match language {
        Some(gimli::DW_LANG_Rust) => demangle_rust(name),
        Some(
            gimli::DW_LANG_C_plus_plus
            | gimli::DW_LANG_C_plus_plus_03
            | gimli::DW_LANG_C_plus_plus_11
            | gimli::DW_LANG_C_plus_plus_14,
        ) => demangle_cpp(name),
        Some(_) => None,
        None => demangle_rust(name).or_else(|| demangle_cpp(name)),
    };
    demangled.unwrap_or_else(|| name.to_string())
}

fn demangle_rust(name: &str) -> Option<String> {
    use fmt::Write as _;
    let d = rustc_demangle::try_demangle(name).ok()?;
    let mut out = Bounded::for_name(name);
    write!(out, "{d:#}").ok()?;
    Some(out.0)
}

/// A demangled name longer than this, or than [`MAX_DEMANGLED_RATIO`] times
/// the mangled name, is left mangled: crafted names can demangle to
/// exponentially long output (rustc-demangle stops at 1 MB, cpp_demangle
/// never), and the names of a module must stay proportional to its size.
const MAX_DEMANGLED_LEN: usize = 64 * 1024;
const MAX_DEMANGLED_RATIO: usize = 64;
/// A longer name is not demangled at all (no real symbol is this long, and
/// the demanglers' work grows with it); it is shortened like any other
/// ([`shorten`]).
const MAX_MANGLED_LEN: usize = 64 * 1024;

/// The longest name (name section, DWARF, import, after demangling) kept
/// whole: real names, even C++ template instances, are shorter, and every
/// output repeats a name once per frame it appears in (a folded stack
/// line holds the names of all its frames).
pub const MAX_NAME_BYTES: usize = 4096;

/// Shortens `name` to its first `max` bytes (at a character boundary)
/// followed by `…[+N bytes]`, N the bytes left out; whether it did.
pub fn shorten(name: &mut String, max: usize) -> bool {
    if name.len() <= max {
        return false;
    }
    let mut cut = max;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let left_out = name.len() - cut;
    name.truncate(cut);
    name.push_str(&format!("…[+{left_out} bytes]"));
    name.shrink_to_fit();
    true
}

/// A string that refuses to grow beyond a limit.
pub(super) struct Bounded(pub(super) String, usize);

impl Bounded {
    pub(super) fn for_name(name: &str) -> Bounded {
        let limit = MAX_DEMANGLED_LEN.min(MAX_DEMANGLED_RATIO * name.len().max(16));
        Bounded(String::new(), limit)
    }
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.0.len() + s.len() > self.1 {
            return Err(fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

fn demangle_cpp(name: &str) -> Option<String> {
    if !name.starts_with("_Z") {
        return None;
    }
    let sym = cpp_demangle::Symbol::new(name).ok()?;
    let mut out = Bounded::for_name(name);
    sym.structured_demangle(&mut out, &cpp_demangle::DemangleOptions::default())
        .ok()?;
    Some(out.0)
}

fn strip_rust_hash(name: &str) -> Option<&str> {
    let (stem, hash) = name.rsplit_once("::h")?;
    (hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !stem.is_empty())
        .then_some(stem)
}
