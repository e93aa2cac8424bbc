//! Measures RocksDB write rates in whatever profile it is built with, to decide how the dev
//! profile compiles RocksDB (see BENCHMARKS.md).
//!
//! Run with: `cargo run -p stowage-engine --example rocksdb_write_rate [-- EVENTS]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use rocksdb::{DB, Options, WriteBatch, WriteOptions};

fn main() {
    let events: u64 = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("EVENTS must be a number"))
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut options = Options::default();
    options.create_if_missing(true);
    let db = DB::open(&options, dir.path()).expect("open RocksDB");
    let payload = vec![0x5au8; 182];

    let unsynced = WriteOptions::default();
    let start = Instant::now();
    for seq in 0..events {
        let mut batch = WriteBatch::default();
        batch.put(seq.to_be_bytes(), &payload);
        db.write_opt(batch, &unsynced).unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "unsynced: {events} single-event batches in {elapsed:.2} s = {:.0} appends/s",
        events as f64 / elapsed
    );

    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    let count = events / 50;
    let start = Instant::now();
    for seq in 0..count {
        let mut batch = WriteBatch::default();
        batch.put((events + seq).to_be_bytes(), &payload);
        db.write_opt(batch, &synced).unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "synced:   {count} single-event batches in {elapsed:.2} s = {:.0} appends/s",
        count as f64 / elapsed
    );

    let start = Instant::now();
    let mut read = 0u64;
    for item in db.iterator(rocksdb::IteratorMode::Start) {
        item.unwrap();
        read += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "scan:     {read} events in {elapsed:.2} s = {:.0} events/s",
        read as f64 / elapsed
    );
}
