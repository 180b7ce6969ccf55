//! A function body's instructions: where they start, what a call
//! instruction calls, and the text-format names of operators.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use wasmparser::{BinaryReader, FunctionBody, Operator};

use super::CallTarget;

/// The start offsets (relative to the body start) of a body's instructions,
/// up to the first one that cannot be decoded.
pub(super) fn decode_starts(bytes: &[u8], body: &Range<u64>) -> Vec<u32> {
    let mut starts = Vec::new();
    let (Ok(start), Ok(end)) = (usize::try_from(body.start), usize::try_from(body.end)) else {
        return starts;
    };
    let Some(data) = bytes.get(start..end) else {
        return starts;
    };
    let Ok(mut ops) = FunctionBody::new(BinaryReader::new(data, start)).get_operators_reader()
    else {
        return starts;
    };
    while !ops.eof() {
        let pos = ops.original_position() - start;
        if ops.read().is_err() {
            break;
        }
        starts.push(pos as u32);
    }
    starts
}

pub(super) fn classify(op: &Operator<'_>) -> CallTarget {
    match op {
        Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
            CallTarget::Direct(*function_index)
        }
        Operator::CallIndirect { .. }
        | Operator::ReturnCallIndirect { .. }
        | Operator::CallRef { .. }
        | Operator::ReturnCallRef { .. } => CallTarget::Indirect,
        other => CallTarget::Other(operator_name(other)),
    }
}

macro_rules! define_visit_names {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        /// wasmparser's `visit_*` method name of an operator.
        fn visit_name(op: &Operator<'_>) -> &'static str {
            match op {
                $( Operator::$op { .. } => stringify!($visit), )*
                #[allow(unreachable_patterns)]
                _ => "visit_unknown",
            }
        }
        /// All `visit_*` names.
        const VISIT_NAMES: &[&str] = &[$(stringify!($visit)),*];
    };
}
wasmparser::for_each_operator!(define_visit_names);

/// The text-format name of an operator, e.g. `memory.grow`,
/// `i32.atomic.rmw.add`, `call_indirect`.
pub fn operator_name(op: &Operator<'_>) -> &'static str {
    static NAMES: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| VISIT_NAMES.iter().map(|v| (*v, text_name(v))).collect());
    let visit = visit_name(op);
    names.get(visit).map_or("unknown", |s| s.as_str())
}

/// `visit_i32_atomic_rmw8_add_u` → `i32.atomic.rmw8.add_u`.
pub(super) fn text_name(visit: &str) -> String {
    const PREFIXES: &[&str] = &[
        "i32", "i64", "f32", "f64", "v128", "i8x16", "i16x8", "i32x4", "i64x2", "f32x4", "f64x2",
        "memory", "table", "local", "global", "ref", "elem", "data", "struct", "array", "i31",
        "any", "extern", "atomic", "cont",
    ];
    let s = visit.strip_prefix("visit_").unwrap_or(visit);
    if s == "typed_select" || s == "typed_select_multi" {
        return "select".to_string();
    }
    let parts: Vec<&str> = s.split('_').collect();
    if parts.len() < 2 || !PREFIXES.contains(&parts[0]) {
        return s.to_string();
    }
    let mut out = format!("{}.", parts[0]);
    let mut rest = &parts[1..];
    if rest.len() >= 2 && rest[0] == "atomic" {
        out.push_str("atomic.");
        rest = &rest[1..];
        if rest.len() >= 2 && rest[0].starts_with("rmw") {
            out.push_str(rest[0]);
            out.push('.');
            rest = &rest[1..];
        }
    }
    out.push_str(&rest.join("_"));
    out
}
