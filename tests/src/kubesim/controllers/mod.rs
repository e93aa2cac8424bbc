//! The simulated controllers that act after the API has answered, as the real ones do: one
//! background task per cluster follows the store's change stream (the way real controllers
//! follow watches) and reconciles whatever a change touches, level-triggered and idempotent, so
//! it reacts to a change however and whenever it is written (a client, another controller, a
//! local process reporting a pod's phase). A full resync runs at start, whenever the stream
//! lagged, and every [`RESYNC_PERIOD`], which retries what failed for a passing reason (as real
//! controllers requeue). Objects every cluster starts with (StorageClass, CSIDriver, snapshot CRDs and class)
//! are installed before serving. Each controller is switched in [`Controllers`].

mod accounts;
pub mod admission;
mod cronjobs;
mod folders;
mod jobs;
mod objects;
mod snapshots;
mod volumes;
mod workloads;

use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use cronjobs::CronJobRunError;

use super::cluster::{Cluster, Controllers};
use super::errors::ApiError;
use super::store::{Change, ChangeType};
use objects::{Objects, controller_of, meta};
use serde_json::Value;

/// How often everything is reconciled again without a change.
pub const RESYNC_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// What the controllers share: the cluster and what they write into it.
struct Context {
    cluster: Arc<Cluster>,
    controllers: Controllers,
    ca_pem: String,
}

/// Installs the objects every cluster starts with, then starts the controllers' task, which
/// ends when `stop` turns true or its sender goes.
pub fn start(
    cluster: &Arc<Cluster>,
    controllers: Controllers,
    ca_pem: &str,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, ApiError> {
    let objects = Objects { cluster };
    if controllers.volumes {
        volumes::install(&objects)?;
    }
    if controllers.csi_snapshots {
        snapshots::install(&objects)?;
    }
    let context = Context {
        cluster: Arc::clone(cluster),
        controllers,
        ca_pem: ca_pem.to_string(),
    };
    Ok(tokio::spawn(run(context, stop)))
}

/// What the CronJob controller does when a schedule time of CronJob `name` comes (see
/// `cronjobs.rs`); answers the Job it created.
pub fn run_cron_job(
    cluster: &Arc<Cluster>,
    namespace: &str,
    name: &str,
    scheduled: chrono::DateTime<chrono::Utc>,
) -> Result<Arc<Value>, CronJobRunError> {
    cronjobs::run(&Objects { cluster }, namespace, name, scheduled)
}

async fn run(context: Context, mut stop: watch::Receiver<bool>) {
    let store = context.cluster.store();
    let mut changes = match store.watch_from(store.resource_version()) {
        Ok((_, receiver)) => receiver,
        Err(oldest) => {
            tracing::error!(oldest, "kubesim controllers could not follow the store");
            return;
        }
    };
    context.resync();
    let mut resync = tokio::time::interval(RESYNC_PERIOD);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        tokio::select! {
            _ = resync.tick() => context.resync(),
            stopped = stop.changed() => {
                if stopped.is_err() || *stop.borrow() {
                    return;
                }
            }
            change = changes.recv() => match change {
                Ok(change) => context.handle(&change),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "kubesim controllers lagged; resyncing");
                    context.resync();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

impl Context {
    fn objects(&self) -> Objects<'_> {
        Objects {
            cluster: &self.cluster,
        }
    }

    /// Reconciles everything, as after a relist.
    fn resync(&self) {
        let objects = self.objects();
        let each = |kind: &objects::Kind, reconcile: &dyn Fn(&str, &str)| {
            for object in objects.list(kind, None, |_| true) {
                reconcile(meta(&object, "namespace"), meta(&object, "name"));
            }
        };
        if self.controllers.service_accounts {
            for namespace in self
                .cluster
                .store()
                .list("/namespaces", None, None, 0, |_| true)
                .items
            {
                accounts::reconcile(&objects, meta(&namespace, "name"), &self.ca_pem);
            }
        }
        if self.controllers.workloads {
            each(&objects::DEPLOYMENTS, &|ns, name| {
                workloads::deployment(&objects, ns, name)
            });
            each(&objects::REPLICA_SETS, &|ns, name| {
                workloads::replica_set(&objects, ns, name)
            });
            each(&objects::REPLICATION_CONTROLLERS, &|ns, name| {
                workloads::replication_controller(&objects, ns, name)
            });
            each(&objects::STATEFUL_SETS, &|ns, name| {
                workloads::stateful_set(&objects, ns, name)
            });
            each(&objects::DAEMON_SETS, &|ns, name| {
                workloads::daemon_set(&objects, ns, name)
            });
        }
        if self.controllers.jobs {
            each(&objects::JOBS, &|ns, name| {
                jobs::reconcile(&objects, ns, name)
            });
            each(&objects::CRON_JOBS, &|ns, name| {
                cronjobs::reconcile(&objects, ns, name)
            });
        }
        if self.controllers.volumes {
            each(&objects::VOLUMES, &|_, name| {
                volumes::volume(&objects, name)
            });
            each(&objects::CLAIMS, &|ns, name| {
                volumes::claim(&objects, ns, name)
            });
        }
        if self.controllers.csi_snapshots {
            each(&objects::SNAPSHOTS, &|ns, name| {
                snapshots::snapshot(&objects, ns, name)
            });
        }
    }

    /// A pod changed: its controller reconciles.
    fn pod_owner(&self, objects: &Objects<'_>, pod: &Value, namespace: &str) {
        let on = &self.controllers;
        match controller_of(pod) {
            Some(("ReplicaSet", owner)) if on.workloads => {
                workloads::replica_set(objects, namespace, owner)
            }
            Some(("ReplicationController", owner)) if on.workloads => {
                workloads::replication_controller(objects, namespace, owner)
            }
            Some(("StatefulSet", owner)) if on.workloads => {
                workloads::stateful_set(objects, namespace, owner)
            }
            Some(("DaemonSet", owner)) if on.workloads => {
                workloads::daemon_set(objects, namespace, owner)
            }
            Some(("Job", owner)) if on.jobs => jobs::reconcile(objects, namespace, owner),
            _ => {}
        }
    }

    /// Reconciles what one change touches.
    fn handle(&self, change: &Change) {
        let objects = self.objects();
        let object = &change.object;
        let namespace = meta(object, "namespace");
        let name = meta(object, "name");
        let deleted = change.change == ChangeType::Deleted;
        let on = &self.controllers;
        match &*change.resource {
            "/namespaces" if on.service_accounts && !deleted => {
                accounts::reconcile(&objects, name, &self.ca_pem)
            }
            "/serviceaccounts" | "/configmaps" if on.service_accounts && deleted => {
                accounts::reconcile(&objects, namespace, &self.ca_pem)
            }
            "apps/deployments" if on.workloads && !deleted => {
                workloads::deployment(&objects, namespace, name)
            }
            "apps/replicasets" if on.workloads => {
                if !deleted {
                    workloads::replica_set(&objects, namespace, name);
                }
                if let Some(("Deployment", owner)) = controller_of(object) {
                    workloads::deployment(&objects, namespace, owner);
                }
            }
            "/replicationcontrollers" if on.workloads && !deleted => {
                workloads::replication_controller(&objects, namespace, name)
            }
            "apps/statefulsets" if on.workloads && !deleted => {
                workloads::stateful_set(&objects, namespace, name)
            }
            "apps/daemonsets" if on.workloads && !deleted => {
                workloads::daemon_set(&objects, namespace, name)
            }
            "batch/jobs" if on.jobs => {
                if !deleted {
                    jobs::reconcile(&objects, namespace, name);
                }
                if let Some(("CronJob", owner)) = controller_of(object) {
                    cronjobs::reconcile(&objects, namespace, owner);
                }
            }
            "batch/cronjobs" if on.jobs && !deleted => {
                cronjobs::reconcile(&objects, namespace, name)
            }
            "/pods" => {
                let finished = matches!(objects::pod_phase(object), "Succeeded" | "Failed");
                if on.volumes && (deleted || finished || objects::is_deleting(object)) {
                    for claim in volumes::claims_of(object) {
                        volumes::claim(&objects, namespace, &claim);
                    }
                }
                self.pod_owner(&objects, object, namespace);
            }

            "/persistentvolumeclaims" if on.volumes || on.csi_snapshots => {
                if on.volumes {
                    if deleted {
                        volumes::claim_gone(&objects, object);
                    } else {
                        volumes::claim(&objects, namespace, name);
                    }
                }
                if on.csi_snapshots && !deleted {
                    snapshots::waiting_for_claim(&objects, namespace, name);
                }
            }
            "/persistentvolumes" if on.volumes => {
                if deleted {
                    volumes::volume_gone(&objects, object);
                } else {
                    volumes::volume(&objects, name);
                }
            }
            "storage.k8s.io/storageclasses" if on.volumes && !deleted => {
                volumes::pending_claims(&objects, None)
            }
            "snapshot.storage.k8s.io/volumesnapshots" if on.csi_snapshots => {
                if deleted {
                    snapshots::snapshot_gone(&objects, object);
                } else {
                    snapshots::snapshot(&objects, namespace, name);
                }
                if on.volumes {
                    volumes::pending_claims(&objects, Some(namespace));
                }
            }
            "snapshot.storage.k8s.io/volumesnapshotcontents" if on.csi_snapshots => {
                if deleted {
                    snapshots::content_gone(&objects, object);
                } else {
                    snapshots::content(&objects, object);
                }
            }
            _ => {}
        }
    }
}

/// Logs a controller's failed write; the next change or resync retries it.
fn report(what: &str, name: &str, result: Result<impl Sized, ApiError>) {
    match result {
        // Creating in a namespace that is going away: the namespace takes the owner along.
        Err(error) if error.code == 403 => {
            tracing::debug!(%error, name, "kubesim controller: {what} refused");
        }
        Err(error) => tracing::warn!(%error, name, "kubesim controller: {what} failed"),
        Ok(_) => {}
    }
}
