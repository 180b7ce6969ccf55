//! Where wrec's own arguments end and the guest's begin (the `wrec` binary's
//! command line, before clap sees it).
//!
//! The rule, as with `wasmtime run`: everything after the module belongs to
//! the guest, unchanged. Two exceptions, both about wrec's own options:
//!
//! - `--` ends wrec's options: before the module (`wrec -o t.wrec -- app.wasm
//!   ARGS`) it is clap's usual separator; right after the module (`wrec
//!   app.wasm -- ARGS`) it is wrec's too, and the guest gets the ARGS after
//!   it.
//! - When *everything* after the module parses as wrec's own options
//!   (`wrec app.wasm -o t.wrec`, the order some write by habit), it is
//!   wrec's, and wrec says so in a note. `--help` and `--version` never
//!   count: `wrec app.wasm --help` asks the program for its help.

use std::ffi::{OsStr, OsString};

use clap::Command;

/// A command line split into wrec's part and the guest's.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// What clap parses: wrec's options, then `--` and the module.
    pub(crate) wrec: Vec<OsString>,
    /// The guest's arguments after `argv[0]`, exactly as typed.
    pub(crate) guest: Vec<OsString>,
    /// Options typed after the module that were taken as wrec's own (the
    /// note says so).
    pub(crate) taken: Vec<OsString>,
}

/// Splits `argv` (with `argv[0]`). `cmd` is wrec's full command (to know
/// which options take a value) and `options_only` a command with wrec's
/// options, no positional argument and no `--help`/`--version` (to test
/// whether the arguments after the module are all wrec's). `None` when no
/// module is found: clap then parses `argv` as it is (and reports what is
/// missing, or prints the help).
pub(crate) fn split(argv: &[OsString], cmd: &Command, options_only: &Command) -> Option<Split> {
    let (module, separated) = find_module(argv, cmd)?;
    let before = &argv[1..if separated { module - 1 } else { module }];
    let after = &argv[module + 1..];
    let mut taken = Vec::new();
    let guest = if separated {
        after.to_vec()
    } else if after.first().map(OsString::as_os_str) == Some(OsStr::new("--")) {
        after[1..].to_vec()
    } else if !after.is_empty() && all_wrec_options(after, options_only) {
        taken = after.to_vec();
        Vec::new()
    } else {
        after.to_vec()
    };
    let mut wrec = vec![argv[0].clone()];
    wrec.extend_from_slice(before);
    wrec.extend(taken.iter().cloned());
    wrec.push("--".into());
    wrec.push(argv[module].clone());
    Some(Split { wrec, guest, taken })
}

/// The index of the module in `argv`, and whether a `--` came right before
/// it (wrec's options ended there).
fn find_module(argv: &[OsString], cmd: &Command) -> Option<(usize, bool)> {
    let mut i = 1;
    while i < argv.len() {
        let t = argv[i].to_string_lossy();
        if t == "--" {
            return (i + 1 < argv.len()).then_some((i + 1, true));
        }
        if let Some(long) = t.strip_prefix("--") {
            // `--name=value` is one token; `--name value` two.
            let takes = !long.contains('=') && takes_value(cmd, |a| a.get_long() == Some(long));
            i += if takes { 2 } else { 1 };
            continue;
        }
        if let Some(shorts) = t.strip_prefix('-').filter(|s| !s.is_empty()) {
            // A cluster of short flags; the first one that takes a value
            // takes the rest of the token, or the next token.
            let mut skip = 1;
            for (k, c) in shorts.char_indices() {
                if takes_value(cmd, |a| a.get_short() == Some(c)) {
                    if k + c.len_utf8() == shorts.len() {
                        skip = 2;
                    }
                    break;
                }
            }
            i += skip;
            continue;
        }
        return Some((i, false));
    }
    None
}

/// Whether the option `is` names takes a value (false for unknown ones:
/// clap reports those).
fn takes_value(cmd: &Command, is: impl Fn(&clap::Arg) -> bool) -> bool {
    cmd.get_arguments()
        .find(|a| !a.is_positional() && is(a))
        .is_some_and(|a| a.get_action().takes_values())
}

/// Whether `args` parse, all of them, as wrec's own options.
fn all_wrec_options(args: &[OsString], options_only: &Command) -> bool {
    let argv = std::iter::once(OsString::from("wrec")).chain(args.iter().cloned());
    options_only.clone().try_get_matches_from(argv).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn options(c: Command) -> Command {
        c.arg(Arg::new("output").short('o').long("output"))
            .arg(Arg::new("interval").long("interval"))
            .arg(
                Arg::new("quiet")
                    .short('q')
                    .long("quiet")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("force").long("force").action(ArgAction::SetTrue))
    }

    fn cmds() -> (Command, Command) {
        let full = options(Command::new("wrec"))
            .arg(Arg::new("wasm").required(true))
            .arg(
                Arg::new("args")
                    .num_args(0..)
                    .trailing_var_arg(true)
                    .allow_hyphen_values(true),
            );
        let only = options(Command::new("wrec"))
            .disable_help_flag(true)
            .disable_version_flag(true);
        (full, only)
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn run(v: &[&str]) -> Option<Split> {
        let (full, only) = cmds();
        split(&os(v), &full, &only)
    }

    #[test]
    fn everything_after_the_module_is_the_guests() {
        let s = run(&[
            "wrec",
            "-o",
            "t",
            "--interval",
            "2ms",
            "a.wasm",
            "-q",
            "-p",
            "synth -top x",
        ])
        .unwrap();
        assert_eq!(s.guest, os(&["-q", "-p", "synth -top x"]));
        assert_eq!(
            s.wrec,
            os(&["wrec", "-o", "t", "--interval", "2ms", "--", "a.wasm"])
        );
        assert!(s.taken.is_empty());
        // Values that look like the module are skipped: -ot, --output=x, -qo t.
        let s = run(&[
            "wrec",
            "-ot",
            "--output=x",
            "-qo",
            "t",
            "a.wasm",
            "in.txt",
            "-o",
            "x",
        ])
        .unwrap();
        assert_eq!(s.wrec.last().unwrap(), "a.wasm");
        assert_eq!(s.guest, os(&["in.txt", "-o", "x"]));
    }

    #[test]
    fn only_wrec_options_after_the_module_are_wrecs() {
        let s = run(&["wrec", "a.wasm", "-o", "trace.bin", "-q"]).unwrap();
        assert!(s.guest.is_empty());
        assert_eq!(s.taken, os(&["-o", "trace.bin", "-q"]));
        assert_eq!(
            s.wrec,
            os(&["wrec", "-o", "trace.bin", "-q", "--", "a.wasm"])
        );
        // --help is never taken: the program's help.
        let s = run(&["wrec", "a.wasm", "--help"]).unwrap();
        assert_eq!(s.guest, os(&["--help"]));
        // An option wrec lacks, or a bare value, makes them all the guest's.
        assert_eq!(
            run(&["wrec", "a.wasm", "-q", "-x"]).unwrap().guest,
            os(&["-q", "-x"])
        );
        assert_eq!(
            run(&["wrec", "a.wasm", "-q", "x"]).unwrap().guest,
            os(&["-q", "x"])
        );
    }

    #[test]
    fn a_double_dash_ends_wrecs_options() {
        let s = run(&["wrec", "a.wasm", "--", "-o", "trace.bin"]).unwrap();
        assert_eq!(s.guest, os(&["-o", "trace.bin"]));
        assert!(s.taken.is_empty());
        let s = run(&["wrec", "-q", "--", "a.wasm", "-o", "trace.bin"]).unwrap();
        assert_eq!(s.guest, os(&["-o", "trace.bin"]));
        assert_eq!(s.wrec, os(&["wrec", "-q", "--", "a.wasm"]));
        // A second one is the guest's; so is one after a guest argument.
        assert_eq!(
            run(&["wrec", "a.wasm", "--", "--"]).unwrap().guest,
            os(&["--"])
        );
        assert_eq!(
            run(&["wrec", "a.wasm", "x", "--"]).unwrap().guest,
            os(&["x", "--"])
        );
        // A module named like an option.
        let s = run(&["wrec", "--", "-odd.wasm"]).unwrap();
        assert_eq!(s.wrec, os(&["wrec", "--", "-odd.wasm"]));
    }

    #[test]
    fn no_module_is_for_clap_to_report() {
        assert_eq!(run(&["wrec"]), None);
        assert_eq!(run(&["wrec", "-o", "t"]), None);
        assert_eq!(run(&["wrec", "--"]), None);
    }
}
