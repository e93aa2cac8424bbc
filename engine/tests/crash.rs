//! The crash test: a real process running workflows is killed with SIGKILL at random moments,
//! some during heavy appends, and started again each time. In the end every run finishes, every
//! step's effect happened at least once, no completed step ran again, and the log is consistent.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stowage_engine::{RunStatus, Runtime, Store, StoreOptions, inspect};

const WORKER: &str = env!("CARGO_BIN_EXE_stowage-engine-crash-worker");
const RUNS: usize = 60;
const KILLS: usize = 24;

fn worker(data: &Path, markers: &Path, hold: bool) -> Command {
    let mut command = Command::new(WORKER);
    command.arg(data).arg(markers).arg(RUNS.to_string());
    if hold {
        command.arg("--hold");
    }
    command
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// step → attempts that left a marker, per run.
fn markers(dir: &Path) -> BTreeMap<String, BTreeMap<String, Vec<u32>>> {
    let mut found: BTreeMap<String, BTreeMap<String, Vec<u32>>> = BTreeMap::new();
    for run in std::fs::read_dir(dir).unwrap() {
        let run = run.unwrap();
        let run_id = run.file_name().to_string_lossy().into_owned();
        for marker in std::fs::read_dir(run.path()).unwrap() {
            let name = marker.unwrap().file_name().to_string_lossy().into_owned();
            let (step, attempt) = name.rsplit_once('.').unwrap();
            found
                .entry(run_id.clone())
                .or_default()
                .entry(step.to_string())
                .or_default()
                .push(attempt.parse().unwrap());
        }
    }
    found
}

#[test]
fn killed_at_random_moments_every_run_finishes_exactly_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let marker_dir = dir.path().join("markers");
    std::fs::create_dir_all(&marker_dir).unwrap();

    for _ in 0..KILLS {
        // --hold: a worker that finished its runs keeps appending until it is killed.
        let mut child = worker(&data, &marker_dir, true).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_millis(fastrand::u64(20..300));
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let output = child.wait_with_output().unwrap();
                panic!(
                    "the worker exited by itself ({status}): {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    let output = worker(&data, &marker_dir, false).output().unwrap();
    assert!(
        output.status.success(),
        "the last start must finish: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("ALL DONE {RUNS}")
    );

    let report = inspect(&data).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.events > 0);

    let store = Store::open_with(
        &data,
        StoreOptions {
            projections: vec![Runtime::projection()],
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let live = store.projection_dump().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(
            store.rebuild_projections().await.unwrap(),
            report.global_head
        );
    });
    assert_eq!(
        store.projection_dump().unwrap(),
        live,
        "projections equal a fresh rebuild"
    );

    let found = markers(&marker_dir);
    assert_eq!(found.len(), RUNS, "every run ran steps");
    let store = Arc::new(store);
    let runtime = Runtime::new(store, Default::default()).unwrap();
    for (run_id, steps) in &found {
        let state = runtime.run_state(run_id).unwrap().unwrap();
        assert_eq!(state.status, RunStatus::Completed, "run {run_id}");
        assert_eq!(steps.len(), 5, "run {run_id}: every step's effect happened");
        for (step, attempts) in steps {
            let completed_attempt = state.outputs[step]["attempt"].as_u64().unwrap() as u32;
            let recorded = state.attempts[step];
            assert_eq!(completed_attempt, recorded, "run {run_id} step {step}");
            assert!(
                attempts.iter().all(|attempt| *attempt <= completed_attempt),
                "run {run_id} step {step} ran again after completing: {attempts:?}"
            );
            assert!(attempts.contains(&completed_attempt));
        }
    }
}
