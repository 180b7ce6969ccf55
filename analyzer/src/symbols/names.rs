//! The name section: function names, demangled, with every problem met
//! reported once.

use std::ops::Range;

use wasmparser::{BinaryReader, Name, NameSectionReader};

use super::demangle::{demangle, shorten, MAX_NAME_BYTES};
use super::WasmSymbols;

/// Long names named in a warning before the rest are counted.
const MAX_NAMED: usize = 8;

impl WasmSymbols {
    pub(super) fn parse_names(&mut self, range: Range<usize>) {
        let data = &self.bytes[range.clone()];
        let mut out_of_range = 0usize;
        let mut duplicates = 0usize;
        let mut bad_utf8 = 0usize;
        // (function index, length) of the names shortened.
        let mut long: Vec<(u32, usize)> = Vec::new();
        let mut problem: Option<(usize, String)> = None;
        let mut seen_functions = false;
        for sub in NameSectionReader::new(BinaryReader::new(data, range.start)) {
            let sub = match sub {
                Ok(sub) => sub,
                Err(e) => {
                    problem = Some((e.offset(), e.message().to_string()));
                    break;
                }
            };
            let Name::Function(map) = sub else {
                continue;
            };
            if seen_functions {
                problem = Some((map.range().start, "second function-names subsection".into()));
                break;
            }
            seen_functions = true;
            // Parsed by hand (rather than through `NameMap`'s iterator) so one
            // name with bad UTF-8 loses only itself, not all later names.
            let r = map.range();
            let mut reader = BinaryReader::new(&self.bytes[r.clone()], r.start);
            let parsed = (|| -> wasmparser::Result<()> {
                let count = reader.read_var_u32()?;
                for _ in 0..count {
                    let index = reader.read_var_u32()?;
                    let len = reader.read_var_u32()? as usize;
                    let raw = reader.read_bytes(len)?;
                    let mut name = match std::str::from_utf8(raw) {
                        Ok(s) => demangle(s),
                        Err(_) => {
                            bad_utf8 += 1;
                            demangle(&String::from_utf8_lossy(raw))
                        }
                    };
                    match self.names.get_mut(index as usize) {
                        None => out_of_range += 1,
                        Some(Some(_)) => duplicates += 1,
                        Some(slot) => {
                            let len = name.len();
                            if shorten(&mut name, MAX_NAME_BYTES) {
                                long.push((index, len));
                            }
                            *slot = Some(name.into_boxed_str());
                        }
                    }
                }
                Ok(())
            })();
            if let Err(e) = parsed {
                problem = Some((e.offset(), e.message().to_string()));
                break;
            }
        }
        let d = &self.display;
        if let Some((offset, message)) = problem {
            self.warnings.push(format!(
                "{d}: name section at byte offset {offset:#x}: {message}; functions named after it fall back to index names"
            ));
        }
        if out_of_range > 0 {
            let n = self.num_funcs();
            self.warnings.push(format!(
                "{d}: name section at byte offset {:#x}: {out_of_range} function names have an index beyond the {n} functions; ignored",
                range.start
            ));
        }
        if duplicates > 0 {
            self.warnings.push(format!(
                "{d}: name section at byte offset {:#x}: {duplicates} functions are named more than once; the first name is used",
                range.start
            ));
        }
        if !long.is_empty() {
            let mut named: Vec<String> = long
                .iter()
                .take(MAX_NAMED)
                .map(|(i, len)| format!("function {i} ({len} bytes)"))
                .collect();
            if long.len() > MAX_NAMED {
                named.push(format!("{} more", long.len() - MAX_NAMED));
            }
            self.warnings.push(format!(
                "{d}: name section at byte offset {:#x}: names longer than {MAX_NAME_BYTES} bytes are shortened to that, marked …[+N bytes]: {}",
                range.start,
                named.join(", ")
            ));
        }
        if bad_utf8 > 0 {
            self.warnings.push(format!(
                "{d}: name section at byte offset {:#x}: {bad_utf8} function names are not valid UTF-8; shown with U+FFFD",
                range.start
            ));
        }
    }
}
