//! Triage helper: prints what the analyzer makes of an `analyze` fuzz input
//! (warnings, folded stacks, then the text report, which lists requests by
//! endpoint).
//! `cargo run --example show -- corpus/analyze/rec00-fib-O2.dwarf`

use wrec_fuzz::harness::{run_analyzer, AnalyzeInput};

fn main() {
    let path = std::env::args().nth(1).expect("usage: show INPUT");
    let data = std::fs::read(&path).unwrap();
    let input = AnalyzeInput::decode(&data).expect("empty input");
    match run_analyzer(&input) {
        Ok(p) => {
            for w in &p.meta.warnings {
                eprintln!("warning: {w}");
            }
            wanalyze::folded::write(&p, &mut std::io::stdout()).unwrap();
            let opts = wanalyze::text::TextOptions::default();
            wanalyze::text::write(&p, &opts, &mut std::io::stdout()).unwrap();
        }
        Err(()) => eprintln!("the analyzer returned an error"),
    }
}
