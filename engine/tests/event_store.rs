//! The event store through its public API over a real RocksDB in a temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use stowage_engine::{
    Error, EventPayload, ExpectedSeq, ManualClock, NewEvent, Projection, ProjectionState,
    RecordedEvent, Store, StoreOptions, inspect,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted {
    text: String,
}

impl EventPayload for Noted {
    const KIND: &'static str = "test.noted";
    const VERSION: u16 = 1;
}

fn noted(text: &str) -> NewEvent {
    NewEvent::encode(&Noted { text: text.into() }).unwrap()
}

/// Counts events per stream and remembers each stream's last text; refuses the text "poison".
struct Summary;

impl Projection for Summary {
    fn name(&self) -> &'static str {
        "summary"
    }

    fn apply(&self, event: &RecordedEvent, state: &mut ProjectionState<'_>) -> Result<(), String> {
        let note: Noted = event.decode().map_err(|err| err.to_string())?;
        if note.text == "poison" {
            return Err("poison is refused".into());
        }
        let key = event.stream.as_bytes();
        let count = state
            .get(key)?
            .map(|bytes| u64::from_be_bytes(bytes[..8].try_into().unwrap()))
            .unwrap_or(0);
        let mut value = (count + 1).to_be_bytes().to_vec();
        value.extend_from_slice(note.text.as_bytes());
        state.put(key, value);
        if note.text == "forget" {
            state.delete(key);
        }
        Ok(())
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            projections: vec![Arc::new(Summary)],
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        },
    )
    .unwrap()
}

/// The database under a store, opened directly to damage it the way a foreign write would.
fn open_raw(dir: &std::path::Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        dir,
        stowage_engine::COLUMN_FAMILIES,
    )
    .unwrap()
}

/// An event's key as the layout in `keys.rs` documents it: u16 length, stream id, u64 sequence.
fn raw_event_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut key = (stream.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(stream.as_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn summary(store: &Store, stream: &str) -> Option<(u64, String)> {
    store
        .projection_get("summary", stream.as_bytes())
        .unwrap()
        .map(|bytes| {
            (
                u64::from_be_bytes(bytes[..8].try_into().unwrap()),
                String::from_utf8(bytes[8..].to_vec()).unwrap(),
            )
        })
}

#[tokio::test]
async fn appends_get_gap_free_stream_and_global_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = store
        .append(
            "a",
            ExpectedSeq::NoStream,
            vec![noted("1"), noted("2")],
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(
        (first.first_seq, first.last_seq, first.last_global_seq),
        (1, 2, 2)
    );
    let second = store
        .append("b", ExpectedSeq::Any, vec![noted("3")], "bob")
        .await
        .unwrap();
    assert_eq!((second.first_seq, second.last_global_seq), (1, 3));
    let third = store
        .append("a", ExpectedSeq::Exactly(2), vec![noted("4")], "alice")
        .await
        .unwrap();
    assert_eq!((third.first_seq, third.last_global_seq), (3, 4));

    let a = store.read_stream("a", 1, 100).unwrap();
    let seqs: Vec<_> = a.iter().map(|e| (e.seq, e.global_seq)).collect();
    assert_eq!(seqs, [(1, 1), (2, 2), (3, 4)]);
    assert_eq!(a[0].actor, "alice");
    assert_eq!(a[0].at_ms, 1_700_000_000_000);
    assert_eq!(a[2].decode::<Noted>().unwrap().text, "4");
    assert_eq!(store.read_stream("a", 3, 100).unwrap().len(), 1);
    assert_eq!(store.stream_head("a").unwrap(), 3);
    assert_eq!(store.stream_head("nothing").unwrap(), 0);

    let global: Vec<_> = store
        .read_global(0, 100)
        .unwrap()
        .iter()
        .map(|e| (e.stream.clone(), e.seq))
        .collect();
    assert_eq!(
        global,
        [
            ("a".into(), 1),
            ("a".into(), 2),
            ("b".into(), 1),
            ("a".into(), 3)
        ]
    );
    assert_eq!(store.global_head(), 4);
    assert_eq!(summary(&store, "a"), Some((3, "4".into())));
}

#[tokio::test]
async fn a_wrong_expected_sequence_is_a_conflict_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append("s", ExpectedSeq::NoStream, vec![noted("x")], "u")
        .await
        .unwrap();
    let again = store
        .append("s", ExpectedSeq::NoStream, vec![noted("y")], "u")
        .await
        .unwrap_err();
    assert!(
        matches!(&again, Error::Conflict { stream, actual: 1, .. } if stream == "s"),
        "{again}"
    );
    let stale = store
        .append("s", ExpectedSeq::Exactly(0), vec![noted("y")], "u")
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::Conflict { actual: 1, .. }));
    assert_eq!(store.stream_head("s").unwrap(), 1);
    assert_eq!(store.global_head(), 1);
    assert_eq!(summary(&store, "s"), Some((1, "x".into())));

    let empty = store.append("s", ExpectedSeq::Any, vec![], "u").await;
    assert!(matches!(empty, Err(Error::EmptyAppend(_))));
    let bad_name = store
        .append("", ExpectedSeq::Any, vec![noted("z")], "u")
        .await;
    assert!(matches!(bad_name, Err(Error::InvalidName { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_stay_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for writer in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("stream-{writer}");
            for n in 0..20u64 {
                store
                    .append(
                        &stream,
                        ExpectedSeq::Exactly(n),
                        vec![noted(&n.to_string())],
                        "t",
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = store.read_global(0, 10_000).unwrap();
    assert_eq!(all.len(), 64 * 20);
    for (index, event) in all.iter().enumerate() {
        assert_eq!(event.global_seq, index as u64 + 1);
    }
    let mut per_stream: HashMap<String, Vec<u64>> = HashMap::new();
    for event in &all {
        per_stream
            .entry(event.stream.clone())
            .or_default()
            .push(event.seq);
    }
    for seqs in per_stream.values() {
        assert_eq!(*seqs, (1..=20).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_appends_to_one_stream_have_exactly_one_winner_per_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for racer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for _ in 0..30 {
                let head = store.stream_head("contested").unwrap();
                match store
                    .append(
                        "contested",
                        ExpectedSeq::Exactly(head),
                        vec![noted(&racer.to_string())],
                        "r",
                    )
                    .await
                {
                    Ok(_) => won += 1,
                    Err(Error::Conflict { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            won
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += task.await.unwrap();
    }
    let events = store.read_stream("contested", 1, 10_000).unwrap();
    assert_eq!(events.len(), wins);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.seq, index as u64 + 1);
    }
    assert_eq!(summary(&store, "contested").unwrap().0, wins as u64);
}

#[tokio::test]
async fn a_refused_event_rejects_its_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let refused = store
        .append(
            "p",
            ExpectedSeq::Any,
            vec![noted("fine"), noted("poison")],
            "u",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Projection {
                projection: "summary",
                seq: 2,
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(
        store.stream_head("p").unwrap(),
        0,
        "no event of the refused append is kept"
    );
    assert_eq!(summary(&store, "p"), None);
    store
        .append("p", ExpectedSeq::NoStream, vec![noted("fine")], "u")
        .await
        .unwrap();
    assert_eq!(summary(&store, "p"), Some((1, "fine".into())));
}

#[tokio::test]
async fn events_survive_a_restart_and_projections_rebuild_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for n in 0..50 {
            let stream = format!("s{}", n % 7);
            let text = if n % 11 == 10 { "forget" } else { "keep" };
            store
                .append(
                    &stream,
                    ExpectedSeq::Any,
                    vec![noted(text), noted(&n.to_string())],
                    "u",
                )
                .await
                .unwrap();
        }
    }
    let store = open(dir.path());
    assert_eq!(store.global_head(), 100);
    let live = store.projection_dump().unwrap();
    assert!(!live.is_empty());
    let replayed = store.rebuild_projections().await.unwrap();
    assert_eq!(replayed, 100);
    assert_eq!(store.projection_dump().unwrap(), live);
    let scan = store.projection_scan("summary", b"s").unwrap();
    assert_eq!(scan.len(), 7);
    assert_eq!(scan[0].0, b"s0");
    let keys = |page: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<String> {
        page.into_iter()
            .map(|(key, _)| String::from_utf8(key).unwrap())
            .collect()
    };
    let first = store.projection_page("summary", b"s", None, 3).unwrap();
    assert_eq!(keys(first), ["s0", "s1", "s2"]);
    let next = store
        .projection_page("summary", b"s", Some(b"s2"), 3)
        .unwrap();
    assert_eq!(keys(next), ["s3", "s4", "s5"]);
    let last = store
        .projection_page("summary", b"s", Some(b"s5"), 3)
        .unwrap();
    assert_eq!(
        keys(last),
        ["s6"],
        "the page stops at the end of the prefix"
    );
    let before_prefix = store
        .projection_page("summary", b"s3", Some(b"a"), 10)
        .unwrap();
    assert_eq!(
        keys(before_prefix),
        ["s3"],
        "`after` below the prefix starts at it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_catches_up_then_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    for n in 0..5 {
        store
            .append("early", ExpectedSeq::Any, vec![noted(&n.to_string())], "u")
            .await
            .unwrap();
    }
    let mut follow = Box::pin(store.subscribe(2));
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..5 {
                store
                    .append("late", ExpectedSeq::Any, vec![noted(&n.to_string())], "u")
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 8 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), follow.next())
            .await
            .expect("the subscription delivers every event")
            .unwrap()
            .unwrap();
        seen.push((event.global_seq, event.stream));
    }
    writer.await.unwrap();
    let positions: Vec<u64> = seen.iter().map(|(global, _)| *global).collect();
    assert_eq!(positions, (3..=10).collect::<Vec<_>>());
    assert_eq!(seen[2].1, "early");
    assert_eq!(seen[3].1, "late");
}

#[tokio::test]
async fn a_corrupt_event_stops_start_up_and_inspect_names_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .append("good", ExpectedSeq::Any, vec![noted("1")], "u")
            .await
            .unwrap();
        store
            .append(
                "victim",
                ExpectedSeq::Any,
                vec![noted("1"), noted("2")],
                "u",
            )
            .await
            .unwrap();
    }
    assert!(inspect(dir.path()).unwrap().problems.is_empty());
    {
        // Flip the envelope version of event 2 of `victim`, as a foreign or damaged write would.
        let db = open_raw(dir.path());
        let events = db.cf_handle("events").unwrap();
        let key = raw_event_key("victim", 2);
        let mut value = db.get_cf(events, &key).unwrap().unwrap();
        value[0] = 0xee;
        db.put_cf(events, &key, value).unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { stream, seq: 2, .. } if stream == "victim"),
        "{err}"
    );
    let report = inspect(dir.path()).unwrap();
    assert_eq!(report.events, 3);
    assert_eq!(report.streams, 2);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("event 2 of stream `victim`"),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_reads_follow_the_log_across_interleaved_streams_and_name_a_missing_event() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        // Three streams whose events alternate in the global log, in appends of one and of two.
        for round in 0..40 {
            for stream in ["a", "bb", "c"] {
                let events = if round % 3 == 0 {
                    vec![
                        noted(&format!("{stream}{round}x")),
                        noted(&format!("{stream}{round}y")),
                    ]
                } else {
                    vec![noted(&format!("{stream}{round}"))]
                };
                store
                    .append(stream, ExpectedSeq::Any, events, "u")
                    .await
                    .unwrap();
            }
        }
        let all = store.read_global(0, 1000).unwrap();
        assert_eq!(all.len(), 3 * (40 + 14));
        let globals: Vec<u64> = all.iter().map(|event| event.global_seq).collect();
        assert_eq!(globals, (1..=all.len() as u64).collect::<Vec<_>>());
        // Windows of every size give the same events in the same order.
        for window in [1, 2, 5, 7, 64] {
            let mut after = 0;
            let mut seen = Vec::new();
            loop {
                let chunk = store.read_global(after, window).unwrap();
                let Some(last) = chunk.last() else { break };
                after = last.global_seq;
                seen.extend(chunk);
            }
            assert_eq!(seen, all, "window of {window}");
        }
        for stream in ["a", "bb", "c"] {
            let own: Vec<_> = all
                .iter()
                .filter(|event| event.stream == stream)
                .cloned()
                .collect();
            assert_eq!(store.read_stream(stream, 0, 1000).unwrap(), own);
        }
    }
    {
        // Remove event 5 of `bb` while the global index still points to it.
        let db = open_raw(dir.path());
        let events = db.cf_handle("events").unwrap();
        let key = raw_event_key("bb", 5);
        assert!(db.get_cf(events, &key).unwrap().is_some());
        db.delete_cf(events, &key).unwrap();
    }
    // Start-up reads every event appended since the last start and finds the hole.
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { stream, seq: 5, reason } if stream == "bb" && reason.contains("missing")),
        "{err}"
    );
}

#[tokio::test]
async fn an_interrupted_rebuild_is_finished_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let live = {
        let store = open(dir.path());
        for n in 0..10 {
            store
                .append("r", ExpectedSeq::Any, vec![noted(&n.to_string())], "u")
                .await
                .unwrap();
        }
        store.projection_dump().unwrap()
    };
    {
        // A rebuild that died after dropping the projections: marker set, projections gone.
        let db = open_raw(dir.path());
        db.put_cf(db.cf_handle("meta").unwrap(), b"rebuild_in_progress", [1])
            .unwrap();
        let projections = db.cf_handle("projections").unwrap();
        db.delete_range_cf(projections, [0u8].as_slice(), [0xffu8; 3].as_slice())
            .unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.projection_dump().unwrap(), live);
}

fn set_format_marker(dir: &std::path::Path, value: &[u8]) {
    let db = open_raw(dir);
    db.put_cf(db.cf_handle("meta").unwrap(), b"format_version", value)
        .unwrap();
}

#[test]
fn a_database_of_another_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.format_version().unwrap(),
        stowage_engine::FORMAT_VERSION
    );
    drop(store);
    set_format_marker(dir.path(), &99u32.to_be_bytes());
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormat { found: 99, .. }),
        "{err}"
    );
    assert!(inspect(dir.path()).is_err());
    set_format_marker(dir.path(), b"x");
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("malformed format marker (1 bytes"),
        "{err}"
    );
}

#[test]
fn duplicate_projection_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_with(
        dir.path(),
        StoreOptions {
            projections: vec![Arc::new(Summary), Arc::new(Summary)],
            ..StoreOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::DuplicateProjection("summary")));
}
