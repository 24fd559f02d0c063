//! The binary end to end: `run` on the shipped example, `generate`, and a bad trace's exit
//! status and message.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fairshare-replay"))
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// A fresh directory for one test's files, under the build's temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_prints_the_tables_and_writes_the_chart() {
    let dir = scratch("cli-run");
    let svg = dir.join("waits.svg");
    let out = bin()
        .args(["run", "--trace"])
        .arg(samples().join("example.csv"))
        .arg("--config")
        .arg(samples().join("config.json"))
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "Per tenant",
        "Per group",
        "Per class",
        "Conservation",
        "FIFO wait",
        "fairshare wait",
    ] {
        assert!(
            stdout.contains(section),
            "the report has {section}:\n{stdout}"
        );
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"));
}

#[test]
fn workers_flag_overrides_the_config() {
    let out = bin()
        .args(["run", "--workers", "3", "--svg"])
        .arg(scratch("cli-workers").join("w.svg"))
        .arg("--trace")
        .arg(samples().join("example.jsonl"))
        .arg("--config")
        .arg(samples().join("config.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("; 3 workers."));
}

#[test]
fn generate_writes_a_trace_run_can_read() {
    let dir = scratch("cli-generate");
    let trace = dir.join("small.jsonl");
    let out = bin()
        .args(["generate", "--small", "--out"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows = std::fs::read_to_string(&trace).unwrap().lines().count();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{rows} jobs")));
}

#[test]
fn bad_trace_exits_non_zero_with_the_line() {
    let dir = scratch("cli-bad");
    let trace = dir.join("bad.csv");
    std::fs::write(
        &trace,
        "arrival_ms,tenant,group,class,cost,service_ms\n0,a,g,jobs,1,200\n1,b,g,jobs,0,200\n",
    )
    .unwrap();
    let out = bin()
        .args(["run", "--trace"])
        .arg(&trace)
        .arg("--config")
        .arg(samples().join("config.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.csv: line 3: cost is 0"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_with_usage() {
    let out = bin().args(["run", "--trace"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--trace needs a value") && stderr.contains("USAGE"),
        "{stderr}"
    );
}
