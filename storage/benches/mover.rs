//! The mover benchmark: Stowage's repository against restic on one generated dataset, to local
//! repositories, in the same run. Run it with `ops/bench/mover` (release build, restic installed).
//!
//! Measured for each tool: first backup (time, MiB/s), incremental backup after 1% of the data
//! changed (Stowage with the previous backup as its parent, restic with its parent snapshot),
//! restore (time, MiB/s; the faster of two rounds each, taking turns, after a `sync`),
//! repository size, peak memory (the child process's VmHWM); and the raw
//! ceiling of this machine: FastCDC + BLAKE3 + zstd of the dataset held in memory, no storage.
//! The last line also holds the targets as ratios against restic, each marked met or not.
//!
//! Settings from the environment: `STOWAGE_BENCH_DIR` (work folder, default a temporary one),
//! `STOWAGE_BENCH_MIB` (dataset size, default 2048). Prints figures, then one JSON line.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stowage_storage::{BackupOptions, KdfParams, Location, LocationKind, Repository, VolumeSource};

const PASSPHRASE: &str = "mover benchmark passphrase";
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("stowage-backup") => child_backup(&args[2..]),
        Some("stowage-restore") => child_restore(&args[2..]),
        // `cargo bench` passes `--bench`; test runners list targets with `--list` and must
        // not start a benchmark of several minutes.
        _ if args.iter().any(|a| a == "--bench") => run(),
        _ if args.iter().any(|a| a == "--list") => {}
        _ => eprintln!("the mover benchmark runs under `cargo bench` (see ops/bench/mover)"),
    }
}

/// Deterministic bytes (xorshift), incompressible.
fn fill(buf: &mut [u8], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Text-like bytes (compress about 3:1), so compression matters as in real volumes.
fn fill_text(buf: &mut [u8], seed: u64) {
    const WORDS: [&[u8]; 16] = [
        b"backup ",
        b"volume ",
        b"kubernetes ",
        b"pod ",
        b"namespace ",
        b"restore ",
        b"chunk ",
        b"storage ",
        b"snapshot ",
        b"cluster ",
        b"2026-11-25T06:00:00Z ",
        b"INFO ",
        b"WARN ",
        b"request_id=",
        b"\n",
        b"status=200 ",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut at = 0;
    while at < buf.len() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = state.to_le_bytes();
        let word: &[u8] = if state.is_multiple_of(5) {
            &noise[..6]
        } else {
            WORDS[(state >> 20) as usize % WORDS.len()]
        };
        let n = word.len().min(buf.len() - at);
        buf[at..at + n].copy_from_slice(&word[..n]);
        at += n;
    }
}

/// Writes the dataset: many small files (text and binary), a few large ones, and 20% of the
/// bytes copies of other files. Returns its size in bytes.
fn generate(root: &Path, total: u64) -> u64 {
    let mut written = 0u64;
    let large_share = total / 2;
    let small_share = total * 3 / 10;
    // A few large files: half of the unique data.
    let mut buf = vec![0u8; 8 << 20];
    let large_files = 4u64;
    std::fs::create_dir_all(root.join("large")).unwrap();
    for i in 0..large_files {
        let path = root.join(format!("large/disk-{i}.img"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let size = large_share / large_files;
        let mut left = size;
        let mut block = 0u64;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            if block.is_multiple_of(3) {
                fill_text(&mut buf[..n], i * 1000 + block);
            } else {
                fill(&mut buf[..n], i * 1000 + block);
            }
            std::io::Write::write_all(&mut file, &buf[..n]).unwrap();
            left -= n as u64;
            block += 1;
        }
        written += size;
    }
    // Many small files of 1 KiB to 64 KiB, in folders of 200.
    let mut i = 0u64;
    let mut small = 0u64;
    while small < small_share {
        let size = 1024 + (i * 7919 % 63) * 1024;
        let dir = root.join(format!("small/{:04}", i / 200));
        if i.is_multiple_of(200) {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let data = &mut buf[..size as usize];
        if i.is_multiple_of(2) {
            fill_text(data, 1_000_000 + i);
        } else {
            fill(data, 1_000_000 + i);
        }
        std::fs::write(dir.join(format!("f{i}.dat")), &data).unwrap();
        small += size;
        i += 1;
    }
    written += small;
    // 20% of the total: copies of large and small files under other names.
    let mut copies = 0u64;
    std::fs::create_dir_all(root.join("copies")).unwrap();
    let copy_target = total / 5;
    let mut n = 0;
    while copies < copy_target {
        let source = if n % 2 == 0 {
            root.join(format!("large/disk-{}.img", n / 2 % large_files))
        } else {
            root.join(format!("small/{:04}", n))
        };
        if source.is_file() {
            let size = std::fs::metadata(&source)
                .unwrap()
                .len()
                .min(copy_target - copies);
            let bytes = std::fs::read(&source).unwrap();
            std::fs::write(
                root.join(format!("copies/copy-{n}.bin")),
                &bytes[..size as usize],
            )
            .unwrap();
            copies += size;
        } else if source.is_dir() {
            let to = root.join(format!("copies/dir-{n}"));
            std::fs::create_dir_all(&to).unwrap();
            for item in std::fs::read_dir(&source).unwrap() {
                let item = item.unwrap();
                let size = item.metadata().unwrap().len();
                std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
                copies += size;
            }
        } else {
            break;
        }
        n += 1;
    }
    written + copies
}

/// Changes about 1% of the bytes: rewrites small files and a range in each large file.
fn change_one_percent(root: &Path, total: u64) {
    let target = total / 100;
    let mut changed = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..4u64 {
        let path = root.join(format!("large/disk-{i}.img"));
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len / 3)).unwrap();
        let n = (target / 8).min(buf.len() as u64) as usize;
        fill(&mut buf[..n], 77_000 + i);
        std::io::Write::write_all(&mut file, &buf[..n]).unwrap();
        changed += n as u64;
    }
    let mut i = 0u64;
    while changed < target {
        let path = root.join(format!("small/{:04}/f{i}.dat", i / 200));
        if let Ok(meta) = std::fs::metadata(&path) {
            let n = meta.len() as usize;
            fill(&mut buf[..n], 88_000 + i);
            std::fs::write(&path, &buf[..n]).unwrap();
            changed += n as u64;
        }
        i += 37;
        if i > 10_000_000 {
            break;
        }
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// FastCDC (at a new repository's sizes) + keyed BLAKE3 + zstd on every core over the dataset
/// held in memory (read before the clock starts), nothing stored: the ceiling of the work a
/// backup does on each byte.
fn ceiling(root: &Path) -> (f64, u64) {
    let sizes = stowage_storage::Chunking::DEFAULT;
    let all = files(root);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Each thread's share, read into memory first.
    let shares: Vec<Vec<Vec<u8>>> = (0..threads)
        .map(|t| {
            all.iter()
                .skip(t)
                .step_by(threads)
                .map(|path| std::fs::read(path).unwrap())
                .collect()
        })
        .collect();
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .map(|share| {
                scope.spawn(move || {
                    let key = [7u8; 32];
                    let mut bytes = 0u64;
                    for content in share {
                        for chunk in fastcdc::v2020::FastCDC::new(
                            content,
                            sizes.min as usize,
                            sizes.avg as usize,
                            sizes.max as usize,
                        ) {
                            let data = &content[chunk.offset..chunk.offset + chunk.length];
                            std::hint::black_box(blake3::keyed_hash(&key, data));
                            std::hint::black_box(zstd::bulk::compress(data, 3).unwrap());
                            bytes += chunk.length as u64;
                        }
                    }
                    bytes
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (started.elapsed().as_secs_f64(), total)
}

fn local(repo: &Path) -> Location {
    Location {
        kind: LocationKind::Local {
            root: repo.to_path_buf(),
        },
        prefix: String::new(),
    }
}

/// `stowage-backup <repo> <data> <id> [parent]`
fn child_backup(args: &[String]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (repo, data, id) = (Path::new(&args[0]), PathBuf::from(&args[1]), &args[2]);
        let location = local(repo);
        let started = Instant::now();
        let phase = |name: &str, since: &mut Instant| {
            eprintln!("  {name}: {:.3} s", since.elapsed().as_secs_f64());
            *since = Instant::now();
        };
        let mut since = started;
        let repository = match Repository::open(&location, PASSPHRASE).await {
            Ok(r) => r,
            Err(_) => Repository::init(&location, PASSPHRASE, KdfParams::default())
                .await
                .unwrap(),
        };
        phase("open (key derivation)", &mut since);
        let volume = VolumeSource {
            name: "data".into(),
            path: data,
        };
        let resume = match args.get(3) {
            Some(parent) => Some(
                repository
                    .checkpoint_from_parent(parent, id, "data")
                    .await
                    .unwrap(),
            ),
            None => None,
        };
        phase("parent tree", &mut since);
        let summary = repository
            .backup_volume(
                id,
                &volume,
                &BackupOptions::default(),
                resume.as_ref(),
                &|_| {},
                &|_| {},
            )
            .await
            .unwrap();
        phase("volume (list chunks, read, upload, tree)", &mut since);
        repository
            .finalize_backup(id, "bench", Default::default())
            .await
            .unwrap();
        phase("finalize (list chunks, manifest)", &mut since);
        eprintln!(
            "stowage backup {id} in {:.3} s: {:?}",
            started.elapsed().as_secs_f64(),
            summary.progress
        );
    });
}

/// `stowage-restore <repo> <id> <target>`
fn child_restore(args: &[String]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let repository = Repository::open(&local(Path::new(&args[0])), PASSPHRASE)
            .await
            .unwrap();
        repository
            .restore(&args[1], "data", Path::new(&args[2]), None, 8)
            .await
            .unwrap();
    });
}

/// Runs a command; returns its wall time and peak resident memory (VmHWM, polled).
fn measure(command: &mut Command) -> (f64, u64) {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            for line in status.lines() {
                if let Some(value) = line.strip_prefix("VmHWM:") {
                    let kib: u64 = value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .unwrap_or(0);
                    peak_kib = peak_kib.max(kib);
                }
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{command:?} failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (started.elapsed().as_secs_f64(), peak_kib * 1024)
}

/// Rounds of restores per tool.
const RESTORE_ROUNDS: usize = 2;

/// Writes out every dirty page (`sync`), so the next measurement starts from a clean cache.
fn sync() {
    let status = Command::new("sync").status().unwrap();
    assert!(status.success(), "sync failed: {status}");
}

/// The fastest of several measurements, with the highest peak memory of them all.
fn fastest(rounds: &[(f64, u64)]) -> (f64, u64) {
    let seconds = rounds.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let peak = rounds.iter().map(|r| r.1).max().unwrap_or(0);
    (seconds, peak)
}

/// The wall times of several measurements, rounded to 0.1 s, for printing.
fn seconds(rounds: &[(f64, u64)]) -> Vec<f64> {
    rounds.iter().map(|r| (r.0 * 10.0).round() / 10.0).collect()
}

fn du(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn same_content(a: &Path, b: &Path) -> bool {
    let (left, right) = (files(a), files(b));
    left.len() == right.len()
        && left.iter().zip(&right).all(|(x, y)| {
            x.strip_prefix(a).unwrap() == y.strip_prefix(b).unwrap()
                && std::fs::read(x).unwrap() == std::fs::read(y).unwrap()
        })
}

#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    first_backup_s: f64,
    first_backup_mib_s: f64,
    first_backup_peak_mib: f64,
    incremental_s: f64,
    incremental_peak_mib: f64,
    restore_s: f64,
    restore_mib_s: f64,
    restore_peak_mib: f64,
    repository_mib: f64,
}

fn run() {
    let mib: u64 = std::env::var("STOWAGE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let temporary;
    let work = match std::env::var("STOWAGE_BENCH_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            temporary = tempfile::tempdir().unwrap();
            temporary.path().to_path_buf()
        }
    };
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let me = std::env::current_exe().unwrap();
    let data = work.join("data");
    println!("generating {mib} MiB in {}", data.display());
    let size = generate(&data, mib << 20);
    let size_mib = size as f64 / MIB;
    println!("dataset: {size_mib:.0} MiB in {} files", files(&data).len());

    let (ceiling_s, ceiling_bytes) = ceiling(&data);
    let ceiling_mib_s = ceiling_bytes as f64 / MIB / ceiling_s;
    println!(
        "raw ceiling (FastCDC + BLAKE3 + zstd-3 of the data in memory, all cores, no storage): {ceiling_mib_s:.0} MiB/s"
    );

    let restic_version = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|err| panic!("restic is needed (ops/bench/mover installs it): {err}"));

    // Stowage.
    let stowage_repo = work.join("stowage-repo");
    std::fs::create_dir_all(&stowage_repo).unwrap();
    let mut stowage = Figures::default();
    let backup = |id: &str, parent: Option<&str>| {
        let mut command = Command::new(&me);
        command
            .arg("stowage-backup")
            .arg(&stowage_repo)
            .arg(&data)
            .arg(id);
        if let Some(parent) = parent {
            command.arg(parent);
        }
        measure(&mut command)
    };
    (stowage.first_backup_s, stowage.first_backup_peak_mib) = mib_peak(backup("b1", None));
    stowage.first_backup_mib_s = size_mib / stowage.first_backup_s;
    println!("stowage first backup: {:.1} s", stowage.first_backup_s);

    // restic.
    let restic_repo = work.join("restic-repo");
    let restic = |args: &[&str]| {
        let mut command = Command::new("restic");
        command
            .args(args)
            .env("RESTIC_REPOSITORY", &restic_repo)
            .env("RESTIC_PASSWORD", PASSPHRASE)
            .env("RESTIC_CACHE_DIR", work.join("restic-cache"));
        command
    };
    measure(&mut restic(&["init", "--quiet"]));
    let mut restic_figures = Figures::default();
    let data_arg = data.to_str().unwrap().to_string();
    (
        restic_figures.first_backup_s,
        restic_figures.first_backup_peak_mib,
    ) = mib_peak(measure(&mut restic(&["backup", "--quiet", &data_arg])));
    restic_figures.first_backup_mib_s = size_mib / restic_figures.first_backup_s;
    println!(
        "restic first backup: {:.1} s",
        restic_figures.first_backup_s
    );

    change_one_percent(&data, size);
    (stowage.incremental_s, stowage.incremental_peak_mib) = mib_peak(backup("b2", Some("b1")));
    (
        restic_figures.incremental_s,
        restic_figures.incremental_peak_mib,
    ) = mib_peak(measure(&mut restic(&["backup", "--quiet", &data_arg])));
    println!(
        "incremental after 1% changed: stowage {:.1} s, restic {:.1} s",
        stowage.incremental_s, restic_figures.incremental_s
    );

    stowage.repository_mib = du(&stowage_repo) as f64 / MIB;
    restic_figures.repository_mib = du(&restic_repo) as f64 / MIB;

    // Restores: each tool restores into a fresh folder RESTORE_ROUNDS times, taking turns, and
    // the fastest of its rounds counts. The page cache's dirty data is written out (`sync`)
    // before each, so neither pays for what the step before it wrote; what is left between
    // rounds (ext4 searching past the inodes of the folder just deleted) falls on both.
    let target = work.join("restore");
    let _ = std::fs::remove_dir_all(&target);
    let target_arg = target.to_str().unwrap().to_string();
    let (mut stowage_ok, mut restic_ok) = (true, true);
    let (mut stowage_restores, mut restic_restores) = (Vec::new(), Vec::new());
    for _ in 0..RESTORE_ROUNDS {
        sync();
        stowage_restores.push(measure(
            Command::new(&me)
                .arg("stowage-restore")
                .arg(&stowage_repo)
                .arg("b2")
                .arg(&target),
        ));
        stowage_ok &= same_content(&data, &target);
        std::fs::remove_dir_all(&target).unwrap();
        sync();
        restic_restores.push(measure(&mut restic(&[
            "restore",
            "latest",
            "--quiet",
            "--target",
            &target_arg,
        ])));
        // restic restores under the absolute path it backed up.
        restic_ok &= same_content(&data, &target.join(data.strip_prefix("/").unwrap()));
        std::fs::remove_dir_all(&target).unwrap();
    }
    println!(
        "restore rounds (s): stowage {:?}, restic {:?}",
        seconds(&stowage_restores),
        seconds(&restic_restores)
    );
    (stowage.restore_s, stowage.restore_peak_mib) = mib_peak(fastest(&stowage_restores));
    stowage.restore_mib_s = size_mib / stowage.restore_s;
    (restic_figures.restore_s, restic_figures.restore_peak_mib) =
        mib_peak(fastest(&restic_restores));
    restic_figures.restore_mib_s = size_mib / restic_figures.restore_s;

    println!();
    println!("{:<34}{:>14}{:>14}", "", "stowage", "restic");
    let row = |name: &str, a: f64, b: f64| println!("{name:<34}{a:>14.1}{b:>14.1}");
    row(
        "first backup (s)",
        stowage.first_backup_s,
        restic_figures.first_backup_s,
    );
    row(
        "first backup (MiB/s)",
        stowage.first_backup_mib_s,
        restic_figures.first_backup_mib_s,
    );
    row(
        "incremental, 1% changed (s)",
        stowage.incremental_s,
        restic_figures.incremental_s,
    );
    row("restore (s)", stowage.restore_s, restic_figures.restore_s);
    row(
        "restore (MiB/s)",
        stowage.restore_mib_s,
        restic_figures.restore_mib_s,
    );
    row(
        "repository (MiB)",
        stowage.repository_mib,
        restic_figures.repository_mib,
    );
    row(
        "peak memory, first backup (MiB)",
        stowage.first_backup_peak_mib,
        restic_figures.first_backup_peak_mib,
    );
    row(
        "peak memory, restore (MiB)",
        stowage.restore_peak_mib,
        restic_figures.restore_peak_mib,
    );
    println!("restored trees identical to the source: stowage {stowage_ok}, restic {restic_ok}");
    // The targets, as ratios against restic (above 1: Stowage is better).
    let first_backup_speedup = stowage.first_backup_mib_s / restic_figures.first_backup_mib_s;
    let incremental_speedup = restic_figures.incremental_s / stowage.incremental_s;
    let restore_speedup = stowage.restore_mib_s / restic_figures.restore_mib_s;
    let repository_ratio = stowage.repository_mib / restic_figures.repository_mib;
    let peak_mib = stowage
        .first_backup_peak_mib
        .max(stowage.incremental_peak_mib)
        .max(stowage.restore_peak_mib);
    let targets = serde_json::json!({
        "first_backup_speedup": {"value": first_backup_speedup, "target": ">= 1.5", "met": first_backup_speedup >= 1.5},
        "incremental_speedup": {"value": incremental_speedup, "target": ">= 2", "met": incremental_speedup >= 2.0},
        "restore_speedup": {"value": restore_speedup, "target": ">= 1", "met": restore_speedup >= 1.0},
        "repository_ratio": {"value": repository_ratio, "target": "<= 1", "met": repository_ratio <= 1.0},
        "peak_memory_mib": {"value": peak_mib, "target": "< 500", "met": peak_mib < 500.0},
    });
    println!(
        "against restic: first backup {first_backup_speedup:.2}x, incremental {incremental_speedup:.2}x \
         faster, restore {restore_speedup:.2}x, repository {repository_ratio:.3} of its size, \
         peak memory {peak_mib:.0} MiB"
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "mover",
            "dataset_mib": size_mib,
            "ceiling_mib_s": ceiling_mib_s,
            "restic": restic_version,
            "stowage": stowage,
            "restic_figures": restic_figures,
            "targets": targets,
            "stowage_restore_identical": stowage_ok,
            "restic_restore_identical": restic_ok,
        })
    );
}

fn mib_peak((seconds, peak): (f64, u64)) -> (f64, f64) {
    (seconds, peak as f64 / MIB)
}
