//! A wasm function's instructions for the profiler's assembly view
//! (`/asm/v1`, as samply's `samply-api` defines it): their offsets from the
//! function's body start (the native symbol's address) and their text.

use wasmparser::{BinaryReader, FunctionBody, Operator};

use crate::symbols::{operator_name, WasmSymbols};

/// Instructions listed for one function at most.
const MAX_INSTRUCTIONS: usize = 1 << 20;
/// The longest immediate text kept (a `br_table` can list thousands).
const MAX_IMMEDIATES: usize = 160;

/// The answer to an `/asm/v1` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disassembly {
    /// Whole-file offset of the body: the native symbol's address.
    pub start: u64,
    /// Body length in bytes.
    pub size: u64,
    /// (offset from `start`, text) per instruction, in order.
    pub instructions: Vec<(u32, String)>,
}

/// The instructions of the defined function whose body holds `address` (a
/// whole-file offset, as the profile's addresses are), or `None`.
pub fn disassemble(symbols: &WasmSymbols, address: u64) -> Option<Disassembly> {
    let func = symbols.function_containing(address)?;
    let body = symbols.function_body(func)?;
    let start = usize::try_from(body.start).ok()?;
    let end = usize::try_from(body.end).ok()?;
    let data = symbols.bytes().get(start..end)?;
    let mut ops = FunctionBody::new(BinaryReader::new(data, start))
        .get_operators_reader()
        .ok()?;
    let mut instructions = Vec::new();
    while !ops.eof() && instructions.len() < MAX_INSTRUCTIONS {
        let at = (ops.original_position() - start) as u32;
        let Ok(op) = ops.read() else {
            instructions.push((at, "(cannot be decoded)".to_owned()));
            break;
        };
        instructions.push((at, text(symbols, &op)));
    }
    Some(Disassembly {
        start: body.start,
        size: body.end - body.start,
        instructions,
    })
}

/// An instruction in the text format's words: its name, its immediates,
/// and for a direct call the callee's name.
pub fn text(symbols: &WasmSymbols, op: &Operator<'_>) -> String {
    let name = operator_name(op);
    match op {
        Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
            format!(
                "{name} {function_index} <{}>",
                symbols.function_name(*function_index)
            )
        }
        _ => {
            // The immediates from wasmparser's Debug form: the values of
            // `Op { field: value, ... }`.
            let dbg = format!("{op:?}");
            let Some(open) = dbg.find('{') else {
                return name.to_owned();
            };
            let inner = dbg[open + 1..].trim_end_matches('}').trim();
            let mut args: String = inner
                .split(", ")
                .map(|kv| kv.split_once(": ").map_or(kv, |(_, v)| v))
                .collect::<Vec<_>>()
                .join(" ");
            if args == "Empty" {
                // A block without a type.
                return name.to_owned();
            }
            if args.len() > MAX_IMMEDIATES {
                let mut cut = MAX_IMMEDIATES;
                while !args.is_char_boundary(cut) {
                    cut -= 1;
                }
                args.truncate(cut);
                args.push('…');
            }
            format!("{name} {args}")
        }
    }
}
