//! What the trace keeps of a trap's text: the trace is meant to be
//! shared, so no Rust backtrace of wrec's own and no host directory.

use std::path::Path;

/// The text `wasmtime run` prints for a failed run (`{:?}` of the error,
/// the module named as given on the command line), as the trace's end
/// record keeps it:
///
/// - the host's Rust backtrace that `anyhow` adds with `RUST_BACKTRACE=1`
///   (a `Stack backtrace:` section after the error chain, full of paths
///   under the cargo registry and wrec's source tree) is dropped; the
///   guest's wasm backtrace, part of the error chain, stays;
/// - the module path, quoted as the runner's context quotes it, becomes the
///   module's file name, and so does any other absolute path (a `--dir`
///   directory in a host error, say).
pub(crate) fn trap_message(text: &str, wasm: &Path) -> String {
    let given = wasm.display().to_string();
    let text = match wasm.file_name() {
        Some(name) if given != name.to_string_lossy() => text.replace(
            &format!("`{given}`"),
            &format!("`{}`", name.to_string_lossy()),
        ),
        _ => text.to_owned(),
    };
    wrec_format::redact::run_end_message(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_wasm_backtrace_and_drops_the_rust_one() {
        let text = "failed to run main module `/home/me/app/trap.wasm`\n\nCaused by:\n    0: error while executing at wasm backtrace:\n           0:  0x2ab - trap.wasm!level3\n    1: wasm trap: wasm `unreachable` instruction executed\n\nStack backtrace:\n   0: wrec::run::run\n             at /home/me/wrec/recorder/src/run.rs:301:18\n";
        assert_eq!(
            trap_message(text, Path::new("/home/me/app/trap.wasm")),
            "failed to run main module `trap.wasm`\n\nCaused by:\n    0: error while executing at wasm backtrace:\n           0:  0x2ab - trap.wasm!level3\n    1: wasm trap: wasm `unreachable` instruction executed"
        );
        assert_eq!(trap_message("exit", Path::new("a.wasm")), "exit");
        assert_eq!(
            trap_message(
                "failed to run main module `dir/a.wasm`: /home/me/data: denied",
                Path::new("dir/a.wasm")
            ),
            "failed to run main module `a.wasm`: data: denied"
        );
        assert_eq!(trap_message("Stack backtrace:\n 0: x", Path::new("a")), "");
    }
}
