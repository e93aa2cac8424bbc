//! The engine's figures, measured in one run and printed, ending with one JSON line:
//! raw synced RocksDB appends, durable events/s with 1 and 64 concurrent writers, no-op five-step
//! workflows per second, time to recover 10,000 unfinished runs, and replay (rebuild) events/s.
//!
//! Run with: `cargo bench -p stowage-engine --bench engine` (figures go to BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stowage_engine::{
    ExpectedSeq, NewEvent, RetryPolicy, Runtime, RuntimeOptions, StartOptions, Store, StoreOptions,
    Workflow,
};

fn event() -> NewEvent {
    NewEvent {
        kind: "bench.event".into(),
        payload_version: 1,
        payload: vec![0x5a; 120],
    }
}

fn open(dir: &Path) -> Arc<Store> {
    Arc::new(
        Store::open_with(
            dir,
            StoreOptions {
                projections: vec![Runtime::projection()],
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    )
}

fn raw_synced_appends_per_sec(dir: &Path) -> f64 {
    let db = rocksdb::DB::open_default(dir).unwrap();
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let count = 3_000u64;
    let start = Instant::now();
    for n in 0..count {
        let mut batch = rocksdb::WriteBatch::default();
        batch.put(n.to_be_bytes(), [0x5au8; 182]);
        db.write_opt(batch, &sync).unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

async fn engine_events_per_sec(store: &Arc<Store>, writers: usize, per_writer: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("bench/{writers}/{writer}");
            for n in 0..per_writer {
                store
                    .append(
                        &stream,
                        ExpectedSeq::Exactly(n as u64),
                        vec![event()],
                        "bench",
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (writers * per_writer) as f64 / start.elapsed().as_secs_f64()
}

fn noop_workflow() -> Workflow {
    let mut workflow = Workflow::new("noop");
    for step in ["one", "two", "three", "four", "five"] {
        workflow = workflow.step(step, RetryPolicy::once(), |_| async { Ok(Value::Null) });
    }
    workflow
}

fn stuck_workflow() -> Workflow {
    Workflow::new("stuck").step("wait", RetryPolicy::once(), |_| async {
        std::future::pending::<()>().await;
        Ok(Value::Null)
    })
}

fn runtime(store: Arc<Store>) -> Runtime {
    Runtime::new(
        store,
        RuntimeOptions {
            workflows: vec![noop_workflow(), stuck_workflow()],
            max_concurrent_runs: 64,
            ..RuntimeOptions::default()
        },
    )
    .unwrap()
}

async fn noop_workflows_per_sec(runtime: &Runtime, runs: usize) -> f64 {
    let start = Instant::now();
    let mut ids = Vec::with_capacity(runs);
    let mut starts = Vec::new();
    for _ in 0..runs {
        let runtime = runtime.clone();
        starts.push(tokio::spawn(async move {
            runtime
                .start("noop", Value::Null, StartOptions::default(), "bench")
                .await
                .unwrap()
        }));
    }
    for started in starts {
        ids.push(started.await.unwrap());
    }
    for id in &ids {
        runtime.wait_finished(id).await.unwrap();
    }
    runs as f64 / start.elapsed().as_secs_f64()
}

fn process() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    // Test runners list test binaries with `--list`; this one holds no tests, only figures.
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_synced_appends_per_sec(&dir.path().join("raw"));
    println!("raw synced single-writer RocksDB appends: {raw:.0}/s");

    let data = dir.path().join("engine");
    let first = process();
    let (one, many, noop) = first.block_on(async {
        let store = open(&data);
        let one = engine_events_per_sec(&store, 1, 2_000).await;
        println!("engine durable events/s, 1 writer: {one:.0}");
        let many = engine_events_per_sec(&store, 64, 300).await;
        println!("engine durable events/s, 64 concurrent writers: {many:.0}");
        // Bulk history for the replay figure: 200,000 more events in batches of 100.
        let mut tasks = Vec::new();
        for writer in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..125 {
                    let events = (0..100).map(|_| event()).collect();
                    store
                        .append(&format!("bulk/{writer}"), ExpectedSeq::Any, events, "bench")
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let runtime = runtime(store.clone());
        let noop = noop_workflows_per_sec(&runtime, 2_000).await;
        println!("no-op five-step workflows completed: {noop:.0}/s");
        // 10,000 runs that never finish, for the recovery figure.
        let mut starts = Vec::new();
        for _ in 0..10_000 {
            let runtime = runtime.clone();
            starts.push(tokio::spawn(async move {
                runtime
                    .start("stuck", Value::Null, StartOptions::default(), "bench")
                    .await
                    .unwrap()
            }));
        }
        for started in starts {
            started.await.unwrap();
        }
        (one, many, noop)
    });
    first.shutdown_timeout(Duration::from_secs(10));

    let second = process();
    let (recover_ms, replay, events) = second.block_on(async {
        let start = Instant::now();
        let store = loop {
            match Store::open_with(
                &data,
                StoreOptions {
                    projections: vec![Runtime::projection()],
                    ..StoreOptions::default()
                },
            ) {
                Ok(store) => break Arc::new(store),
                Err(_) if start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(err) => panic!("reopen: {err}"),
            }
        };
        let start = Instant::now();
        let runtime = runtime(store.clone());
        let resumed = runtime.recover().await.unwrap();
        let recover_ms = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(resumed, 10_000);
        println!("recovery of {resumed} unfinished workflows: {recover_ms:.0} ms");
        let start = Instant::now();
        let events = store.rebuild_projections().await.unwrap();
        let replay = events as f64 / start.elapsed().as_secs_f64();
        println!("replay (rebuild) of {events} events: {replay:.0} events/s");
        (recover_ms, replay, events)
    });
    second.shutdown_timeout(Duration::from_secs(10));

    println!(
        "{}",
        json!({
            "raw_synced_appends_per_sec": raw.round(),
            "engine_events_per_sec_1_workflow": one.round(),
            "engine_events_per_sec_64_workflows": many.round(),
            "noop_5_step_workflows_per_sec": noop.round(),
            "recover_10000_workflows_ms": recover_ms.round(),
            "replay_events_per_sec": replay.round(),
            "replay_events": events,
        })
    );
}
