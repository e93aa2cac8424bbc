//! A process for the engine's crash test (`engine/tests/crash.rs`), which kills it with SIGKILL
//! at random moments and starts it again.
//!
//! It opens the store in DATA_DIR, resumes unfinished runs, starts RUNS runs of a five-step
//! workflow (idempotently: a restart finds the runs it already started), keeps appending noise
//! events meanwhile, and exits 0 once every run is finished; with `--hold` it keeps appending
//! noise after that until it is killed, so that kills after the work still land mid-append. Each step attempt creates the file
//! MARKERS/<run>/<step>.<attempt> before doing its work, so the test sees what ran.
//!
//! Usage: stowage-engine-crash-worker DATA_DIR MARKERS RUNS [--hold]

// A test harness, not product code: any failure here must end the process loudly so that the
// crash test sees it (a non-zero exit and the panic message on stderr), hence unwrap/expect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stowage_engine::{
    ExpectedSeq, NewEvent, RetryPolicy, RunStatus, Runtime, RuntimeOptions, StartOptions, Store,
    StoreOptions, Workflow,
};

const STEPS: [&str; 5] = ["validate", "collect", "snapshot", "upload", "finalize"];

fn workflow(markers: PathBuf) -> Workflow {
    let mut workflow = Workflow::new("crash-test");
    for step in STEPS {
        let markers = markers.clone();
        workflow = workflow.step(step, RetryPolicy::default(), move |mut ctx| {
            let markers = markers.clone();
            async move {
                let dir = markers.join(ctx.run_id());
                std::fs::create_dir_all(&dir).unwrap();
                let marker = dir.join(format!("{}.{}", ctx.step(), ctx.attempt()));
                std::fs::File::create_new(&marker).unwrap();
                // Some work with checkpoints, so kills land inside steps and between appends.
                let done: u32 = ctx.progress().unwrap_or(0);
                for part in done..3 {
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(5..20))).await;
                    ctx.checkpoint(&(part + 1)).await?;
                }
                Ok(json!({ "step": ctx.step(), "attempt": ctx.attempt() }))
            }
        });
    }
    workflow
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (data, markers, runs, hold) = match args.as_slice() {
        [_, data, markers, runs] => (data, markers, runs, false),
        [_, data, markers, runs, flag] if flag == "--hold" => (data, markers, runs, true),
        _ => {
            eprintln!("usage: stowage-engine-crash-worker DATA_DIR MARKERS RUNS [--hold]");
            std::process::exit(2);
        }
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let store = Arc::new(
        Store::open_with(
            data,
            StoreOptions {
                projections: vec![Runtime::projection()],
                ..StoreOptions::default()
            },
        )
        .expect("open the store"),
    );
    let runtime = Runtime::new(
        store.clone(),
        RuntimeOptions {
            workflows: vec![workflow(PathBuf::from(markers))],
            max_concurrent_runs: 4,
            ..RuntimeOptions::default()
        },
    )
    .expect("runtime");
    runtime.recover().await.expect("recover");

    // Heavy appends from many streams alongside the workflows.
    for writer in 0..4 {
        let store = store.clone();
        tokio::spawn(async move {
            let stream = format!("noise/{writer}");
            loop {
                let events = (0..8)
                    .map(|n| NewEvent {
                        kind: "noise".into(),
                        payload_version: 1,
                        payload: vec![n; 64],
                    })
                    .collect();
                if store
                    .append(&stream, ExpectedSeq::Any, events, "noise")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    let mut ids = Vec::new();
    for n in 0..runs {
        let options = StartOptions {
            idempotency_key: Some(format!("run-{n}")),
            ..StartOptions::default()
        };
        ids.push(
            runtime
                .start("crash-test", Value::Null, options, "test")
                .await
                .expect("start"),
        );
    }
    for id in &ids {
        let state = runtime.wait_finished(id).await.expect("wait");
        assert_eq!(
            state.status,
            RunStatus::Completed,
            "run {id}: {:?}",
            state.error
        );
    }
    if hold {
        std::future::pending::<()>().await;
    }
    println!("ALL DONE {}", ids.len());
    std::process::exit(0);
}
