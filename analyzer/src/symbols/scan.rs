//! The walk over a module's sections: imports, the code section's bodies,
//! the name section and the `.debug_*` sections, located but not parsed.

use std::collections::HashMap;
use std::ops::Range;

use wasmparser::{Encoding, Parser, Payload, TypeRef};

use super::demangle::{shorten, MAX_NAME_BYTES};
use super::SymbolError;

/// Results of walking the sections of a module.
#[derive(Default)]
pub(super) struct Scan {
    pub(super) warnings: Vec<String>,
    pub(super) imports: Vec<(Box<str>, Box<str>)>,
    pub(super) bodies: Vec<Range<u64>>,
    pub(super) code: Option<Range<u64>>,
    pub(super) code_count: Option<u32>,
    pub(super) declared_funcs: Option<u32>,
    pub(super) name_section: Option<Range<usize>>,
    pub(super) debug_sections: HashMap<String, Range<usize>>,
}

impl Scan {
    fn code_done(&self) -> bool {
        match self.code_count {
            Some(n) => self.bodies.len() == n as usize,
            None => false,
        }
    }

    pub(super) fn walk(&mut self, path: &str, bytes: &[u8]) -> Result<(), SymbolError> {
        let malformed = |offset: usize, message: &str| SymbolError::Malformed {
            path: path.to_string(),
            offset: offset as u64,
            message: message.to_string(),
        };
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = match payload {
                Ok(p) => p,
                Err(e) => {
                    if self.code_done() {
                        self.warnings.push(format!(
                            "{path}: malformed wasm at byte offset {:#x}: {}; sections after it are ignored",
                            e.offset(),
                            e.message()
                        ));
                        return Ok(());
                    }
                    return Err(malformed(e.offset(), e.message()));
                }
            };
            match payload {
                Payload::Version {
                    encoding: Encoding::Component,
                    ..
                } => {
                    return Err(SymbolError::Component {
                        path: path.to_string(),
                    });
                }
                Payload::ImportSection(reader) => {
                    let mut long = Vec::new();
                    for import in reader {
                        let import = import.map_err(|e| malformed(e.offset(), e.message()))?;
                        if let TypeRef::Func(_) = import.ty {
                            // `module::field` within the name limit: half each.
                            let (mut module, mut field) =
                                (import.module.to_owned(), import.name.to_owned());
                            let len = module.len() + field.len();
                            let a = shorten(&mut module, MAX_NAME_BYTES / 2);
                            if shorten(&mut field, MAX_NAME_BYTES / 2) | a {
                                long.push(format!("function {} ({len} bytes)", self.imports.len()));
                            }
                            self.imports.push((module.into(), field.into()));
                        }
                    }
                    if !long.is_empty() {
                        let n = long.len();
                        long.truncate(8);
                        if n > 8 {
                            long.push(format!("{} more", n - 8));
                        }
                        self.warnings.push(format!(
                            "{path}: import section: import names longer than {} bytes (module and field each) are shortened to that, marked …[+N bytes]: {}",
                            MAX_NAME_BYTES / 2,
                            long.join(", ")
                        ));
                    }
                }
                Payload::FunctionSection(reader) => self.declared_funcs = Some(reader.count()),
                Payload::CodeSectionStart { count, range, .. } => {
                    self.code = Some(range.start as u64..range.end.min(bytes.len()) as u64);
                    self.code_count = Some(count);
                }
                Payload::CodeSectionEntry(body) => {
                    let r = body.range();
                    self.bodies.push(r.start as u64..r.end as u64);
                }
                Payload::CustomSection(section) => {
                    let name = section.name();
                    let data = section.data_offset()..section.data_offset() + section.data().len();
                    if name == "name" {
                        if self.name_section.is_some() {
                            self.warnings.push(format!(
                                "{path}: second name section at byte offset {:#x} ignored",
                                section.range().start
                            ));
                        } else {
                            self.name_section = Some(data);
                        }
                    } else if name.starts_with(".debug_") {
                        if self.debug_sections.contains_key(name) {
                            self.warnings.push(format!(
                                "{path}: second {name} section at byte offset {:#x} ignored",
                                section.range().start
                            ));
                        } else {
                            self.debug_sections.insert(name.to_string(), data);
                        }
                    }
                }
                Payload::End(_) => break,
                _ => {}
            }
        }
        Ok(())
    }
}
