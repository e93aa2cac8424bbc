//! The workflow runtime over a real store: steps, retries on durable timers, checkpoints,
//! cancellation with cleanup, idempotent starts, concurrency limits, child runs and recovery.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stowage_engine::{
    ManualClock, RetryPolicy, RunStatus, Runtime, RuntimeOptions, StartOptions, StepError, Store,
    StoreOptions, Workflow,
};

const T0: i64 = 1_800_000_000_000;

fn open(dir: &Path, clock: &ManualClock, workflows: Vec<Workflow>) -> Runtime {
    try_open(dir, clock, workflows).unwrap()
}

fn try_open(
    dir: &Path,
    clock: &ManualClock,
    workflows: Vec<Workflow>,
) -> stowage_engine::Result<Runtime> {
    let store = Store::open_with(
        dir,
        StoreOptions {
            projections: vec![Runtime::projection()],
            clock: Arc::new(clock.clone()),
        },
    )?;
    Runtime::new(
        Arc::new(store),
        RuntimeOptions {
            workflows,
            clock: Arc::new(clock.clone()),
            max_concurrent_runs: 16,
            max_concurrent_per_key: 1,
        },
    )
}

async fn finished(runtime: &Runtime, run_id: &str) -> stowage_engine::RunState {
    tokio::time::timeout(Duration::from_secs(20), runtime.wait_finished(run_id))
        .await
        .expect("the run finishes")
        .unwrap()
}

/// Counts how often each step ran.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<String, usize>>>);

impl Calls {
    fn hit(&self, step: &str) -> usize {
        let mut calls = self.0.lock().unwrap();
        let count = calls.entry(step.to_string()).or_default();
        *count += 1;
        *count
    }

    fn get(&self, step: &str) -> usize {
        self.0.lock().unwrap().get(step).copied().unwrap_or(0)
    }
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms: 1_000,
        multiplier: 2.0,
        max_backoff_ms: 10_000,
        jitter: 0.0,
        timeout_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_order_and_see_earlier_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls = Calls::default();
    let (a, b, c) = (calls.clone(), calls.clone(), calls.clone());
    let workflow = Workflow::new("sum")
        .step("double", RetryPolicy::once(), move |ctx| {
            a.hit("double");
            async move {
                let n: i64 = ctx.input()?;
                Ok(json!(n * 2))
            }
        })
        .step("add", RetryPolicy::once(), move |ctx| {
            b.hit("add");
            async move {
                let doubled: i64 = ctx.output("double")?;
                Ok(json!(doubled + 1))
            }
        })
        .cleanup("report", RetryPolicy::once(), move |ctx| {
            c.hit("report");
            async move { Ok(json!(ctx.outputs().len())) }
        });
    let runtime = open(dir.path(), &clock, vec![workflow]);
    let run = runtime
        .start("sum", json!(20), StartOptions::default(), "alice")
        .await
        .unwrap();
    let state = finished(&runtime, &run).await;
    assert_eq!(state.status, RunStatus::Completed);
    assert_eq!(state.outputs["add"], json!(41));
    assert_eq!(state.outputs["report"], json!(2));
    assert_eq!(
        (calls.get("double"), calls.get("add"), calls.get("report")),
        (1, 1, 1)
    );
    let summary = runtime.summary(&run).unwrap().unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.steps_completed, 3);
    assert_eq!(runtime.recover().await.unwrap(), 0, "nothing is left open");
    runtime.cancel(&run, "late").await.unwrap();
    assert_eq!(
        runtime.run_state(&run).unwrap().unwrap(),
        state,
        "cancelling a finished run changes nothing"
    );

    let unknown = runtime
        .start("nope", Value::Null, StartOptions::default(), "alice")
        .await;
    assert!(unknown.is_err());
}

/// A multi-threaded tokio runtime standing for one server process.
fn process() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the store again after a "process" ended; its folder is free once the dropped tasks
/// released the last handle and the writer thread stopped.
async fn reopen(dir: &Path, clock: &ManualClock, workflows: impl Fn() -> Vec<Workflow>) -> Runtime {
    for _ in 0..100 {
        if let Ok(runtime) = try_open(dir, clock, workflows()) {
            return runtime;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store never became free");
}

#[test]
fn retries_wait_on_the_clock_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls = Calls::default();
    let flaky = |calls: Calls| {
        Workflow::new("flaky").step("call", quick_retries(5), move |ctx| {
            let n = calls.hit("call");
            async move {
                if n < 3 {
                    Err(StepError::retryable(format!(
                        "attempt {} failed",
                        ctx.attempt()
                    )))
                } else {
                    Ok(json!(ctx.attempt()))
                }
            }
        })
    };
    let first = process();
    let run = first.block_on(async {
        let runtime = open(dir.path(), &clock, vec![flaky(calls.clone())]);
        let run = runtime
            .start("flaky", Value::Null, StartOptions::default(), "u")
            .await
            .unwrap();
        // The first failure schedules a retry 1 s later on the clock; it does not run before.
        wait_until(|| {
            runtime
                .run_state(&run)
                .unwrap()
                .unwrap()
                .retry_at
                .contains_key("call")
        })
        .await;
        assert_eq!(
            runtime.run_state(&run).unwrap().unwrap().retry_at["call"],
            T0 + 1_000
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.get("call"), 1);
        run
    });
    first.shutdown_timeout(Duration::from_secs(5));

    // A new process over the same folder: the timer is in the log.
    process().block_on(async {
        let runtime = reopen(dir.path(), &clock, || vec![flaky(calls.clone())]).await;
        assert_eq!(runtime.recover().await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.get("call"), 1, "the retry waits for its time");
        clock.advance(1_000);
        wait_until(|| calls.get("call") == 2).await;
        // second failure: the backoff doubles to 2 s
        wait_until(|| {
            runtime
                .run_state(&run)
                .unwrap()
                .unwrap()
                .retry_at
                .get("call")
                == Some(&(T0 + 3_000))
        })
        .await;
        clock.advance(2_000);
        let state = finished(&runtime, &run).await;
        assert_eq!(state.status, RunStatus::Completed);
        assert_eq!(state.outputs["call"], json!(3));
        assert_eq!(state.attempts["call"], 3);
    });
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..400 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached in 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_fails_the_run_after_its_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls = Calls::default();
    let (a, b, c) = (calls.clone(), calls.clone(), calls.clone());
    let workflow = Workflow::new("broken")
        .step("validate", quick_retries(5), move |_| {
            a.hit("validate");
            async { Err(StepError::permanent("bucket does not exist")) }
        })
        .step("never", RetryPolicy::once(), move |_| {
            b.hit("never");
            async { Ok(Value::Null) }
        })
        .cleanup(
            "remove temporary snapshot",
            RetryPolicy::once(),
            move |_| {
                c.hit("cleanup");
                async { Ok(Value::Null) }
            },
        );
    let runtime = open(dir.path(), &clock, vec![workflow]);
    let run = runtime
        .start("broken", Value::Null, StartOptions::default(), "u")
        .await
        .unwrap();
    let state = finished(&runtime, &run).await;
    assert_eq!(state.status, RunStatus::Failed);
    assert_eq!(
        state.error.as_deref(),
        Some("step `validate`: bucket does not exist")
    );
    assert_eq!(calls.get("validate"), 1, "a permanent error is not retried");
    assert_eq!(calls.get("never"), 0);
    assert_eq!(calls.get("cleanup"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_a_running_step_and_runs_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls = Calls::default();
    let (a, b) = (calls.clone(), calls.clone());
    let workflow = Workflow::new("long")
        .step("upload", quick_retries(3), move |mut ctx| {
            a.hit("upload");
            async move {
                ctx.cancelled().await;
                Err(StepError::retryable("cancelled while uploading"))
            }
        })
        .cleanup("cleanup", RetryPolicy::once(), move |_| {
            b.hit("cleanup");
            async { Ok(Value::Null) }
        });
    let runtime = open(dir.path(), &clock, vec![workflow]);
    let run = runtime
        .start("long", Value::Null, StartOptions::default(), "u")
        .await
        .unwrap();
    wait_until(|| calls.get("upload") == 1).await;
    runtime.cancel(&run, "bob").await.unwrap();
    let state = finished(&runtime, &run).await;
    assert_eq!(state.status, RunStatus::Cancelled);
    assert_eq!(state.cancel_requested_by.as_deref(), Some("bob"));
    assert_eq!(calls.get("upload"), 1, "no retry after cancellation");
    assert_eq!(calls.get("cleanup"), 1);
    let head = runtime.run_state(&run).unwrap().unwrap().seq;
    runtime.cancel(&run, "bob").await.unwrap();
    let after = runtime.run_state(&run).unwrap().unwrap();
    assert_eq!(after.status, RunStatus::Cancelled);
    assert_eq!(after.seq, head, "a finished run's stream does not change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let workflow = Workflow::new("resumable").step("copy", quick_retries(3), move |mut ctx| {
        let log = log.clone();
        async move {
            let done: u32 = ctx.progress().unwrap_or(0);
            log.lock().unwrap().push(done);
            if done == 0 {
                ctx.checkpoint(&7u32).await?;
                return Err(StepError::retryable("connection reset"));
            }
            Ok(json!(done))
        }
    });
    let runtime = open(dir.path(), &clock, vec![workflow]);
    let run = runtime
        .start("resumable", Value::Null, StartOptions::default(), "u")
        .await
        .unwrap();
    wait_until(|| {
        runtime
            .run_state(&run)
            .unwrap()
            .unwrap()
            .retry_at
            .contains_key("copy")
    })
    .await;
    clock.advance(1_000);
    let state = finished(&runtime, &run).await;
    assert_eq!(state.outputs["copy"], json!(7));
    assert_eq!(*seen.lock().unwrap(), [0, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_starts_one_run_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls = Calls::default();
    let counter = calls.clone();
    let workflow = Workflow::new("once").step("work", RetryPolicy::once(), move |_| {
        counter.hit("work");
        async { Ok(Value::Null) }
    });
    let runtime = open(dir.path(), &clock, vec![workflow]);
    let options = StartOptions {
        idempotency_key: Some("backup-2026-11-24".into()),
        ..StartOptions::default()
    };
    let mut starts = Vec::new();
    for _ in 0..8 {
        let runtime = runtime.clone();
        let options = options.clone();
        starts.push(tokio::spawn(async move {
            runtime
                .start("once", Value::Null, options, "u")
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for start in starts {
        ids.push(start.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    finished(&runtime, &ids[0]).await;
    assert_eq!(calls.get("work"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_one_concurrency_key_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (now, max) = (running.clone(), peak.clone());
    let workflow = Workflow::new("exclusive").step("work", RetryPolicy::once(), move |_| {
        let (now, max) = (now.clone(), max.clone());
        async move {
            let current = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(current, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(Value::Null)
        }
    });
    let runtime = open(dir.path(), &clock, vec![workflow]);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let options = StartOptions {
            concurrency_key: Some("cluster-a".into()),
            ..StartOptions::default()
        };
        runs.push(
            runtime
                .start("exclusive", Value::Null, options, "u")
                .await
                .unwrap(),
        );
    }
    for run in &runs {
        assert_eq!(finished(&runtime, run).await.status, RunStatus::Completed);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_starts_a_child_run_once_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls = Calls::default();
    let counter = calls.clone();
    let child = Workflow::new("child").step("work", RetryPolicy::once(), move |ctx| {
        counter.hit("child");
        async move { Ok(json!(format!("child of {}", ctx.input::<String>()?))) }
    });
    let parent = Workflow::new("parent").step("spawn", RetryPolicy::once(), |ctx| async move {
        let first = ctx
            .start_child("child", "only", json!(ctx.run_id()))
            .await?;
        let again = ctx
            .start_child("child", "only", json!(ctx.run_id()))
            .await?;
        assert_eq!(first, again, "the same child is found again");
        let state = ctx.wait_for(&first).await?;
        Ok(state.outputs["work"].clone())
    });
    let runtime = open(dir.path(), &clock, vec![parent, child]);
    let run = runtime
        .start("parent", Value::Null, StartOptions::default(), "u")
        .await
        .unwrap();
    let state = finished(&runtime, &run).await;
    assert_eq!(state.status, RunStatus::Completed);
    assert_eq!(state.outputs["spawn"], json!(format!("child of {run}")));
    assert_eq!(calls.get("child"), 1);
}

#[test]
fn a_step_running_at_a_crash_runs_again_and_completed_steps_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls = Calls::default();
    let workflow = |calls: Calls| {
        let (a, b) = (calls.clone(), calls.clone());
        Workflow::new("crashy")
            .step("first", RetryPolicy::once(), move |_| {
                a.hit("first");
                async { Ok(json!("done")) }
            })
            .step("second", quick_retries(3), move |ctx| {
                b.hit("second");
                async move {
                    if ctx.attempt() == 1 {
                        // Hangs until the process dies.
                        std::future::pending::<()>().await;
                    }
                    Ok(json!(ctx.attempt()))
                }
            })
    };
    // First process: runs until `second` hangs, then dies without any cleanup.
    let first_process = process();
    let run = first_process.block_on(async {
        let runtime = open(dir.path(), &clock, vec![workflow(calls.clone())]);
        let run = runtime
            .start("crashy", Value::Null, StartOptions::default(), "u")
            .await
            .unwrap();
        wait_until(|| calls.get("second") == 1).await;
        run
    });
    first_process.shutdown_timeout(Duration::from_secs(5));

    process().block_on(async {
        let runtime = reopen(dir.path(), &clock, || vec![workflow(calls.clone())]).await;
        assert_eq!(runtime.recover().await.unwrap(), 1);
        let state = finished(&runtime, &run).await;
        assert_eq!(state.status, RunStatus::Completed);
        assert_eq!(
            state.outputs["second"],
            json!(2),
            "attempt raised after the crash"
        );
        assert_eq!(calls.get("first"), 1, "a completed step never runs again");
        assert_eq!(calls.get("second"), 2);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_summaries_page_every_run_in_start_order_with_its_step_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let workflows = vec![
        Workflow::new("quick").step("only", RetryPolicy::once(), |_| async { Ok(Value::Null) }),
        Workflow::new("broken")
            .step("validate", RetryPolicy::once(), |_| async {
                Err(StepError::permanent("bucket does not exist"))
            })
            .cleanup("tidy", RetryPolicy::once(), |_| async { Ok(Value::Null) }),
        Workflow::new("waiting").step("wait", RetryPolicy::once(), |mut ctx| async move {
            ctx.cancelled().await;
            Err(StepError::permanent("stopped"))
        }),
    ];
    let runtime = open(dir.path(), &clock, workflows);
    assert_eq!(
        runtime.workflow_types(),
        ["broken", "quick", "waiting"],
        "sorted by name"
    );
    assert!(runtime.run_summaries(None, 10).unwrap().is_empty());
    assert!(
        !stowage_engine::runs_projection_is_current(runtime.store()).unwrap(),
        "an empty store has no layout yet"
    );

    let mut runs = Vec::new();
    for workflow in ["quick", "broken", "waiting", "quick", "quick"] {
        let run = runtime
            .start(workflow, Value::Null, StartOptions::default(), "u")
            .await
            .unwrap();
        if workflow != "waiting" {
            finished(&runtime, &run).await;
        }
        runs.push(run);
    }
    let waiting = runs[2].clone();
    wait_until(|| runtime.summary(&waiting).unwrap().unwrap().step.as_deref() == Some("wait"))
        .await;

    let all = runtime.run_summaries(None, 100).unwrap();
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, runs, "every run, in the order they started");
    let shown = |summary: &stowage_engine::RunSummary| {
        (
            summary.workflow.clone(),
            summary.status,
            summary.step.clone(),
            summary.error.clone(),
            summary.finished_at_ms(),
        )
    };
    assert_eq!(
        shown(&all[0].1),
        ("quick".into(), RunStatus::Completed, None, None, Some(T0))
    );
    assert_eq!(
        shown(&all[1].1),
        (
            "broken".into(),
            RunStatus::Failed,
            None,
            Some("step `validate`: bucket does not exist".into()),
            Some(T0)
        )
    );
    assert_eq!(
        shown(&all[2].1),
        (
            "waiting".into(),
            RunStatus::Running,
            Some("wait".into()),
            None,
            None
        )
    );
    assert_eq!(all[1].1.steps_completed, 1, "its cleanup step");
    assert_eq!(all[2].1.started_at_ms, T0);

    // Pages of two, each starting after the last id of the one before, hold every run once.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = runtime.run_summaries(after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(
        runtime.run_summaries(Some(&runs[1]), 1).unwrap()[0].0,
        runs[2]
    );
    assert!(
        runtime
            .run_summaries(Some(&runs[4]), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        runtime.run_summaries(Some("0"), 1).unwrap()[0].0,
        runs[0],
        "an `after` that names no run starts where it would sort"
    );

    runtime.cancel(&waiting, "bob").await.unwrap();
    finished(&runtime, &waiting).await;
    let cancelled = runtime.summary(&waiting).unwrap().unwrap();
    assert_eq!(
        shown(&cancelled),
        ("waiting".into(), RunStatus::Cancelled, None, None, Some(T0))
    );

    // The summaries come back the same from a rebuild, in the layout this build reads.
    let before = runtime.run_summaries(None, 100).unwrap();
    assert!(stowage_engine::runs_projection_is_current(runtime.store()).unwrap());
    runtime.store().rebuild_projections().await.unwrap();
    assert_eq!(runtime.run_summaries(None, 100).unwrap(), before);
    assert!(stowage_engine::runs_projection_is_current(runtime.store()).unwrap());
}
