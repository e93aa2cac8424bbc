//! A property test of the workflow runtime: random step outcomes, cancellations and process
//! restarts, checking the invariants that must hold whatever happens: stream and global
//! sequences without gaps, completed steps never run again, finished runs stay finished, the
//! final status follows from what was recorded, and projections equal a fresh rebuild.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use stowage_engine::{
    ManualClock, RetryPolicy, RunStatus, Runtime, RuntimeOptions, StartOptions, StepError, Store,
    StoreOptions, Workflow, inspect,
};

const STEPS: [&str; 3] = ["prepare", "copy", "seal"];
const T0: i64 = 1_900_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Retryable,
    Permanent,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Ok),
        3 => Just(Outcome::Retryable),
        1 => Just(Outcome::Permanent),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    /// Outcome of attempt n (index n-1) of each step; attempts past the list succeed.
    outcomes: Vec<Vec<Outcome>>,
    cleanup_fails: bool,
    /// Ticks after which the process is torn down and started again.
    restarts: BTreeSet<u8>,
    cancel_at: Option<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(proptest::collection::vec(outcome(), 0..4), 3),
        any::<bool>(),
        proptest::collection::btree_set(0u8..10, 0..4),
        proptest::option::weighted(0.3, 0u8..10),
    )
        .prop_map(|(outcomes, cleanup_fails, restarts, cancel_at)| Case {
            outcomes,
            cleanup_fails,
            restarts,
            cancel_at,
        })
}

type Calls = Arc<Mutex<Vec<(String, u32)>>>;

fn workflow(case: &Case, calls: &Calls) -> Workflow {
    let policy = RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 1_000,
        multiplier: 1.0,
        max_backoff_ms: 1_000,
        jitter: 0.0,
        timeout_ms: None,
    };
    let mut workflow = Workflow::new("prop");
    for (index, step) in STEPS.iter().enumerate() {
        let script = case.outcomes[index].clone();
        let calls = calls.clone();
        workflow = workflow.step(step, policy, move |ctx| {
            calls
                .lock()
                .unwrap()
                .push((ctx.step().to_string(), ctx.attempt()));
            let result = match script.get(ctx.attempt() as usize - 1) {
                None | Some(Outcome::Ok) => Ok(json!(ctx.attempt())),
                Some(Outcome::Retryable) => Err(StepError::retryable("flaky")),
                Some(Outcome::Permanent) => Err(StepError::permanent("broken")),
            };
            async move { result }
        });
    }
    let fails = case.cleanup_fails;
    let calls = calls.clone();
    workflow.cleanup("cleanup", RetryPolicy::once(), move |ctx| {
        calls
            .lock()
            .unwrap()
            .push(("cleanup".into(), ctx.attempt()));
        async move {
            if fails {
                Err(StepError::permanent("cleanup failed"))
            } else {
                Ok(Value::Null)
            }
        }
    })
}

fn process() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn open(dir: &Path, clock: &ManualClock, workflow: Workflow) -> Runtime {
    for _ in 0..200 {
        if let Ok(store) = Store::open_with(
            dir,
            StoreOptions {
                projections: vec![Runtime::projection()],
                clock: Arc::new(clock.clone()),
            },
        ) {
            return Runtime::new(
                Arc::new(store),
                RuntimeOptions {
                    workflows: vec![workflow],
                    clock: Arc::new(clock.clone()),
                    ..RuntimeOptions::default()
                },
            )
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store never became free");
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let calls: Calls = Arc::default();
    let mut run_id: Option<String> = None;
    let mut tick = 0u8;
    let mut finished_once: Option<RunStatus> = None;
    // Each loop is one process: it runs ticks until a restart point or the end.
    loop {
        let proc = process();
        let done = proc.block_on(async {
            let runtime = open(dir.path(), &clock, workflow(case, &calls)).await;
            runtime.recover().await.unwrap();
            let id = match &run_id {
                Some(id) => id.clone(),
                None => {
                    let id = runtime
                        .start("prop", Value::Null, StartOptions::default(), "prop")
                        .await
                        .unwrap();
                    run_id = Some(id.clone());
                    id
                }
            };
            loop {
                tokio::time::sleep(Duration::from_millis(15)).await;
                let state = runtime.run_state(&id).unwrap().unwrap();
                if let Some(earlier) = finished_once {
                    assert_eq!(state.status, earlier, "a finished run stays finished");
                }
                if state.status.is_finished() {
                    finished_once = Some(state.status);
                    return true;
                }
                if case.cancel_at == Some(tick) {
                    runtime.cancel(&id, "prop").await.unwrap();
                }
                clock.advance(1_000);
                tick = tick.saturating_add(1);
                if tick > 60 {
                    panic!("the run did not finish: {state:?}");
                }
                if case.restarts.contains(&tick) {
                    return false;
                }
            }
        });
        proc.shutdown_timeout(Duration::from_secs(5));
        if done {
            break;
        }
    }
    let run_id = run_id.unwrap();

    // One more start over the finished run changes nothing.
    let proc = process();
    let (state, events, live, rebuilt) = proc.block_on(async {
        let runtime = open(dir.path(), &clock, workflow(case, &calls)).await;
        assert_eq!(runtime.recover().await.unwrap(), 0);
        let state = runtime.run_state(&run_id).unwrap().unwrap();
        let events = runtime
            .store()
            .read_stream(&format!("wf/{run_id}"), 1, usize::MAX)
            .unwrap();
        let live = runtime.store().projection_dump().unwrap();
        runtime.store().rebuild_projections().await.unwrap();
        let rebuilt = runtime.store().projection_dump().unwrap();
        (state, events, live, rebuilt)
    });
    proc.shutdown_timeout(Duration::from_secs(5));

    prop_assert_eq!(Some(state.status), finished_once);
    prop_assert_eq!(live, rebuilt, "projections equal a fresh rebuild");
    let report = inspect(dir.path()).unwrap();
    prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
    for (index, event) in events.iter().enumerate() {
        prop_assert_eq!(event.seq, index as u64 + 1, "run stream without gaps");
    }
    prop_assert_eq!(events.last().unwrap().kind.as_str(), "workflow.finished");

    // Completed steps never ran again: no attempt after the one that completed.
    let calls = calls.lock().unwrap().clone();
    let mut last_attempt: BTreeMap<String, u32> = BTreeMap::new();
    for (step, attempt) in &calls {
        let previous = last_attempt.insert(step.clone(), *attempt);
        if let Some(previous) = previous {
            prop_assert!(
                *attempt > previous,
                "attempts of {} go up: {:?}",
                step,
                calls
            );
        }
    }
    for (step, output) in &state.outputs {
        let completed = output.as_u64().map(|n| n as u32);
        if let Some(completed) = completed {
            prop_assert_eq!(
                last_attempt.get(step).copied(),
                Some(completed),
                "{} re-ran",
                step
            );
        }
    }

    // The final status follows from the record.
    let (outcome, _) = state.outcome.clone().expect("cleanup began");
    let all_done = STEPS.iter().all(|step| state.outputs.contains_key(*step));
    match state.status {
        RunStatus::Completed => {
            prop_assert!(all_done && !case.cleanup_fails && outcome == RunStatus::Completed)
        }
        RunStatus::Cancelled => prop_assert!(state.cancel_requested_by.is_some()),
        RunStatus::Failed => prop_assert!(
            case.cleanup_fails || STEPS.iter().any(|step| state.given_up.contains(*step))
        ),
        RunStatus::Running => prop_assert!(false, "the run must be finished"),
    }
    prop_assert!(state.outputs.contains_key("cleanup") || state.given_up.contains("cleanup"));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn runs_keep_their_invariants_through_failures_cancels_and_restarts(case in case()) {
        run_case(&case)?;
    }
}
