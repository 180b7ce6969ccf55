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
    assert!(stdout.contains("## Targets"), "{stdout}");
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
