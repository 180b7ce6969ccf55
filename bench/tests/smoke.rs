//! Runs the bench once in `--quick` mode (fib-O2 at a tiny size, 1ms, one
//! round, a small synthetic trace for the analyzer) so it cannot rot. Checks
//! that every configuration produced a row with sane numbers; the figures
//! themselves mean nothing at this size.

use std::process::Command;

#[test]
fn quick_run_reports_all_configurations() {
    let dir = std::env::temp_dir().join(format!("wrec-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_wrec-bench"))
        .arg("--quick")
        .arg("--json")
        .arg(&json_path)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .output()
        .expect("running wrec-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wrec-bench failed:\n{stderr}\n{stdout}"
    );

    // The markdown report: a row per configuration, the targets, the analyzer.
    for cfg in ["plain", "floor", "guest", "wrec"] {
        assert!(
            stdout.contains(&format!("| fib-O2 | {cfg} |")),
            "no {cfg} row in the report:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("## Run-only CPU ratios (median of per-round ratios, 95% CI)"),
        "{stdout}"
    );
    // One round: medians without an interval.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| fib-O2 | 1ms | 1 |"))
        .unwrap_or_else(|| panic!("no run-only row for fib-O2 at 1ms:\n{stdout}"));
    assert_eq!(row.matches("(n/a)").count(), 4, "{row}");
    assert!(stdout.contains("## Targets"), "{stdout}");
    assert!(
        stdout.contains("(same, run only: median of per-round ratios (95% CI))"),
        "{stdout}"
    );
    assert!(stdout.contains("## Analyzer"), "{stdout}");
    assert!(stdout.contains("Machine: "), "{stdout}");

    // The numbers behind it.
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let runs = v["runs"].as_array().expect("runs");
    let get = |cfg: &str| {
        runs.iter()
            .find(|r| r["config"] == cfg)
            .unwrap_or_else(|| panic!("no {cfg} run"))["result"]
            .clone()
    };
    let plain = get("plain");
    let plain_cpu = plain["cpu_ns"].as_f64().unwrap();
    let plain_wall = plain["wall_ns"].as_f64().unwrap();
    assert!(plain_cpu > 0.0 && plain_wall > 0.0, "{plain}");
    for cfg in ["floor", "guest", "wrec"] {
        let r = get(cfg);
        let cpu_ratio = r["cpu_ns"].as_f64().unwrap() / plain_cpu;
        let wall_ratio = r["wall_ns"].as_f64().unwrap() / plain_wall;
        assert!(
            cpu_ratio > 0.0 && cpu_ratio < 100.0,
            "{cfg}: CPU ratio {cpu_ratio}"
        );
        assert!(
            wall_ratio > 0.0 && wall_ratio < 100.0,
            "{cfg}: wall ratio {wall_ratio}"
        );
        assert!(r["samples"].as_u64().unwrap() > 0, "{cfg}: no samples: {r}");
        assert!(r["sampled_ns"].as_u64().unwrap() > 0, "{cfg}: {r}");
        assert!(r["maxrss_kib"].as_u64().unwrap() > 0, "{cfg}: {r}");
        if cfg != "floor" {
            assert!(
                r["output_bytes"].as_u64().unwrap() > 0,
                "{cfg}: no output: {r}"
            );
        }
    }

    // The run-only ratios: one group (fib-O2, 1ms), one round, every pair.
    let groups = v["run_only"].as_array().expect("run_only");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["program"], "fib-O2");
    assert_eq!(groups[0]["interval_ns"], 1_000_000);
    let ratios = groups[0]["ratios"].as_array().expect("ratios");
    for (num, den) in [
        ("floor", "plain"),
        ("wrec", "plain"),
        ("wrec", "floor"),
        ("guest", "plain"),
    ] {
        let r = ratios
            .iter()
            .find(|r| r["num"] == num && r["den"] == den)
            .unwrap_or_else(|| panic!("no {num}/{den} run-only ratio: {ratios:?}"));
        let st = &r["stat"];
        assert_eq!(st["n"], 1, "{r}");
        assert!(st["ci95"].is_null(), "{r}");
        for key in ["median", "min", "max"] {
            let x = st[key].as_f64().unwrap_or(f64::NAN);
            assert!(x.is_finite() && x > 0.0, "{num}/{den} {key}: {r}");
        }
        let per_round = r["per_round"].as_array().expect("per_round");
        assert_eq!(per_round.len(), 1, "{r}");
        assert_eq!(per_round[0], st["median"], "{r}");
    }
    for cfg in ["plain", "floor", "guest", "wrec"] {
        let r = get(cfg);
        let run = r["run_cpu_ns"].as_u64().unwrap();
        assert!(
            run > 0 && run <= r["cpu_ns"].as_u64().unwrap(),
            "{cfg}: {r}"
        );
    }

    let analysis = &v["analysis"];
    assert!(
        analysis["synth"]["samples"].as_u64().unwrap() >= 10_000,
        "{analysis}"
    );
    let results = analysis["results"].as_array().expect("analyzer results");
    assert!(!results.is_empty());
    for run in results {
        let r = &run["result"];
        if run["input"] == "synthetic" {
            assert_eq!(r["samples"], analysis["synth"]["samples"], "{r}");
        } else {
            assert_eq!(r["samples"], analysis["real_samples"], "{r}");
        }
        assert!(r["samples"].as_u64().unwrap() > 0, "{r}");
        assert!(r["output_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
