//! The local processes that stand in for containers: how one is started from a
//! [`ContainerView`] (argv and environment rewritten, working directory, its own process
//! group), the guard that kills its whole process group when dropped, and [`PodRuntime`], which
//! knows the local images, keeps container logs and kills a pod's processes when the pod is
//! deleted or kubesim stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::logs::LogBuffer;
use super::mounts::ContainerView;

/// A container image prefix served by a host binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// Images that start with this prefix run locally (`stowage/mover` matches
    /// `stowage/mover:test`).
    pub prefix: String,
    /// The host binary that replaces the container command's argv[0].
    pub binary: PathBuf,
}

impl std::str::FromStr for LocalImage {
    type Err = String;

    /// Parses `PREFIX=BINARY`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((prefix, binary)) if !prefix.is_empty() && !binary.is_empty() => Ok(Self {
                prefix: prefix.to_string(),
                binary: PathBuf::from(binary),
            }),
            _ => Err(format!(
                "a local image is PREFIX=BINARY (e.g. stowage/mover=/usr/local/bin/stowage), \
                 not {text:?}"
            )),
        }
    }
}

/// A started process; dropping it kills its whole process group (the process and anything
/// it started), so no process outlives the pod or the exec session that owns it.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Child,
    group: Option<rustix::process::Pid>,
}

impl ProcessGuard {
    /// The child process (for its pipes and its exit status).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kills the process group now.
    pub fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            // The group may already be gone; there is nothing else to do then.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `argv` (already rewritten) as a container described by `view`: environment cleared
/// except `PATH`, then the container's variables and `HOSTNAME`; piped stdout and stderr,
/// stdin piped when `stdin` is true.
pub fn spawn(
    view: &ContainerView,
    pod_name: &str,
    argv: &[String],
    stdin: bool,
) -> std::io::Result<ProcessGuard> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the command is empty",
        ));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOSTNAME", pod_name)
        .envs(view.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&view.working_dir)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn()?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    Ok(ProcessGuard { child, group })
}

/// Resolves once `signal` turns true (or its sender is gone).
pub async fn signalled(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|on| *on).await;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state of the processes of one cluster.
#[derive(Debug)]
pub struct PodRuntime {
    local_images: Mutex<Vec<LocalImage>>,
    /// A kill switch per pod uid: turned on when the pod is deleted.
    kill_switches: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Container logs by (pod uid, container name).
    logs: Mutex<HashMap<(String, String), Arc<LogBuffer>>>,
    stopping: watch::Sender<bool>,
}

impl Default for PodRuntime {
    fn default() -> Self {
        Self {
            local_images: Mutex::new(Vec::new()),
            kill_switches: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            stopping: watch::channel(false).0,
        }
    }
}

impl PodRuntime {
    /// Sets which images run as local processes.
    pub fn set_local_images(&self, images: Vec<LocalImage>) {
        *lock(&self.local_images) = images;
    }

    /// The host binary for `image`, if it is a local image (the longest matching prefix).
    pub fn binary_for(&self, image: &str) -> Option<PathBuf> {
        lock(&self.local_images)
            .iter()
            .filter(|local| image.starts_with(&local.prefix))
            .max_by_key(|local| local.prefix.len())
            .map(|local| local.binary.clone())
    }

    /// Whether any container of `pod` has a local image.
    pub fn runs_locally(&self, pod: &Value) -> bool {
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .is_some_and(|containers| {
                containers.iter().any(|c| {
                    self.binary_for(c.get("image").and_then(Value::as_str).unwrap_or_default())
                        .is_some()
                })
            })
    }

    /// A receiver that turns true when pod `uid` is deleted or kubesim stops.
    pub fn kill_signal(&self, uid: &str) -> watch::Receiver<bool> {
        if *self.stopping.borrow() {
            return watch::channel(true).1;
        }
        lock(&self.kill_switches)
            .entry(uid.to_string())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    /// Kills every process of pod `uid` and forgets its logs.
    pub fn pod_deleted(&self, uid: &str) {
        if let Some(switch) = lock(&self.kill_switches).remove(uid) {
            let _ = switch.send(true);
        }
        lock(&self.logs).retain(|(pod, _), _| pod != uid);
    }

    /// Kills every process of pod `uid` (it is being deleted) but keeps its logs.
    pub fn pod_terminating(&self, uid: &str) {
        if let Some(switch) = lock(&self.kill_switches).get(uid) {
            let _ = switch.send(true);
        }
    }

    /// Kills every process: kubesim stops.
    pub fn stop_all(&self) {
        let _ = self.stopping.send(true);
        for (_, switch) in lock(&self.kill_switches).drain() {
            let _ = switch.send(true);
        }
    }

    /// A receiver that turns true when kubesim stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The log of `container` in pod `uid`, created empty when new.
    pub fn log(&self, uid: &str, container: &str) -> Arc<LogBuffer> {
        Arc::clone(
            lock(&self.logs)
                .entry((uid.to_string(), container.to_string()))
                .or_default(),
        )
    }

    /// The log of `container` in pod `uid`, if it ever ran locally.
    pub fn existing_log(&self, uid: &str, container: &str) -> Option<Arc<LogBuffer>> {
        lock(&self.logs)
            .get(&(uid.to_string(), container.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_images_parse_and_match_the_longest_prefix() {
        let runtime = PodRuntime::default();
        runtime.set_local_images(vec![
            "stowage/=/bin/false".parse().unwrap(),
            "stowage/mover=/bin/sh".parse().unwrap(),
        ]);
        assert_eq!(
            runtime.binary_for("stowage/mover:test"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            runtime.binary_for("stowage/api:1"),
            Some(PathBuf::from("/bin/false"))
        );
        assert_eq!(runtime.binary_for("nginx:1"), None);
        assert!("no-equals".parse::<LocalImage>().is_err());
        assert!("=/bin/sh".parse::<LocalImage>().is_err());
    }
}
