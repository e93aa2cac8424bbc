//! What the benchmark binaries (`tests/benches/`) share: running only under `cargo bench`, and
//! reading their settings from the environment.

use std::future::Future;

/// Runs `benchmark` on a multi-threaded runtime when the binary was started by `cargo bench`
/// (which passes `--bench`); test runners list targets with `--list` and must not start a
/// benchmark of minutes, and any other start only says how to run it (`ops/bench/<name>`).
pub fn main_under_cargo_bench<F>(name: &str, benchmark: impl FnOnce() -> F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(benchmark())
    } else {
        if !args.iter().any(|a| a == "--list") {
            eprintln!("the {name} benchmark runs under `cargo bench` (see ops/bench/{name})");
        }
        Ok(())
    }
}

/// A positive whole number from environment variable `name`, or `default` when it is unset.
pub fn setting(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(err) => anyhow::bail!("{name}: {err}"),
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(value) if value > 0 => Ok(value),
            _ => anyhow::bail!("{name} must be a whole number above 0, not `{text}`"),
        },
    }
}
