//! Host paths and host backtraces kept out of the text a trace or a
//! profile shares: the run-end message (SPEC.md §2.6) and the warnings a
//! profile carries.
//!
//! The recorder stores a trap's message through [`run_end_message`]; the
//! analyzer applies it again to the message it reads (traces from older
//! recorders, run with `RUST_BACKTRACE=1`, hold the recorder's own Rust
//! backtrace, with paths under the cargo registry and the project tree) and
//! [`without_host_paths`] to the warnings it writes into a profile.

/// What a run-end message keeps: the guest's part. A `Stack backtrace:`
/// section (the host's Rust backtrace) and everything after it go, and
/// every absolute path is cut to its file name ([`without_host_paths`]);
/// the wasm backtrace (function names and wasm offsets) stays.
pub fn run_end_message(message: &str) -> String {
    let mut kept = message;
    let mut at = 0;
    for line in message.split_inclusive('\n') {
        let t = line.trim_start();
        if t.get(..16)
            .is_some_and(|h| h.eq_ignore_ascii_case("stack backtrace:"))
        {
            kept = &message[..at];
            break;
        }
        at += line.len();
    }
    without_host_paths(kept.trim_end())
}

/// `s` with every absolute path cut to its file name:
/// `/home/me/app/fib.wasm: …` becomes `fib.wasm: …`, `at
/// /x/.cargo/registry/src/…/func.rs:12:5` becomes `at func.rs:12:5`. A path
/// starts with `/` at the start of a word (after a space, a bracket, `=` or
/// a quote) and ends at the next space, or after a quote at the closing
/// quote (so `` `/my dir/a.wasm` `` is one path); a `/` inside a word (`a/b`,
/// `1/2`, `https://`) starts none.
pub fn without_host_paths(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let starts_path = c == '/'
            && prev.is_none_or(|p| p.is_whitespace() || "([{<=\"'`".contains(p))
            && rest[1..].starts_with(|n: char| !n.is_whitespace());
        if !starts_path {
            out.push(c);
            prev = Some(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let quote = prev.filter(|p| "\"'`".contains(*p));
        let end = match quote.and_then(|q| rest.find([q, '\n'])) {
            Some(e) => e,
            None => rest.find(char::is_whitespace).unwrap_or(rest.len()),
        };
        let path = &rest[..end];
        let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        out.push_str(name);
        prev = path.chars().next_back();
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_become_file_names() {
        let cases = [
            (
                "/home/me/app/fib.wasm: has no DWARF",
                "fib.wasm: has no DWARF",
            ),
            (
                "failed to run main module `/home/me/my dir/fib.wasm`",
                "failed to run main module `fib.wasm`",
            ),
            (
                "  at /root/.cargo/registry/src/x/func.rs:1477:18\n  at ./csu/start.c:3",
                "  at func.rs:1477:18\n  at ./csu/start.c:3",
            ),
            ("a/b 1/2 https://x.org/y", "a/b 1/2 https://x.org/y"),
            ("(/usr/lib/x.so) path=/etc/p", "(x.so) path=p"),
            ("/", "/"),
            ("a / b", "a / b"),
            ("/dir/", "dir"),
            ("é/ \"/a/é b\"", "é/ \"é b\""),
        ];
        for (input, want) in cases {
            assert_eq!(without_host_paths(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_rust_backtrace_is_dropped_and_the_wasm_one_kept() {
        let msg = "failed to run main module `/work/x/trap.wasm`\n\nCaused by:\n    0: error while executing at wasm backtrace:\n    0:    0x305 - <unknown>!level10\n    1: wasm trap: wasm `unreachable` instruction executed\n\nStack backtrace:\n   0: wasmtime::runtime::trap\n             at /root/.cargo/registry/src/a/trap.rs:1:2\n";
        assert_eq!(
            run_end_message(msg),
            "failed to run main module `trap.wasm`\n\nCaused by:\n    0: error while executing at wasm backtrace:\n    0:    0x305 - <unknown>!level10\n    1: wasm trap: wasm `unreachable` instruction executed"
        );
        assert_eq!(run_end_message("stack backtrace:\n  0: main"), "");
        assert_eq!(run_end_message("exit status 3"), "exit status 3");
    }
}
