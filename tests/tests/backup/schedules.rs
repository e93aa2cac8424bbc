//! Backup schedules on the engine's controllable clock, backing up a kubesim cluster's namespace
//! to a local-folder location with the real backup and delete workflows: months of daily, weekly
//! and monthly schedules keep exactly the backups their policies say, day by day; a week of
//! failing backups leaves the last good one; a server stopped between ticks and started again
//! neither loses nor doubles a tick; a ten-hour outage gives one catch-up run per schedule; a run
//! due while the previous backup still runs is skipped with its reason; suspension, reclaim and
//! policy changes do what they say.
//!
//! A "server" here is a tokio runtime of its own over the database folder; stopping it drops
//! every task at its next await point, as a killed process would stop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use stowage_engine::{ManualClock, Runtime};
use stowage_workflows::catalog::{BackupStatus, Catalog, CatalogQuery, ScheduleRecord};
use stowage_workflows::entity::{Entities, Kind, NewEntity};
use stowage_workflows::schedule::{SCHEDULE_WORKFLOW, run_scheduler};
use stowage_workflows::schedule_policy::{SchedulePolicy, SchedulePolicySpec};

use super::create;
use super::end_to_end::start;
use crate::kubesim::TestCluster;

const PASSPHRASE: &str = "correct horse battery";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The cluster, the clock, the location's folder and the server's database folder: what
/// outlives a server.
struct World {
    cluster_runtime: tokio::runtime::Runtime,
    cluster: TestCluster,
    clock: ManualClock,
    data: tempfile::TempDir,
    /// The master key every server of this world seals secrets with.
    master_key: Arc<stowage_workflows::sealing::MasterKey>,
    bucket: tempfile::TempDir,
}

/// One server over the world's database.
struct Server {
    tokio: tokio::runtime::Runtime,
    runtime: Runtime,
    entities: Entities,
    catalog: Catalog,
}

impl World {
    /// A cluster with namespace `shop` holding a ConfigMap, the clock at `now`.
    fn new(now: &str) -> Self {
        let cluster_runtime = multi_thread();
        let cluster = cluster_runtime.block_on(async {
            let cluster = start("schedules").await;
            let client = super::connect(&cluster).await.client;
            make_shop(&client).await;
            cluster
        });
        Self {
            cluster_runtime,
            cluster,
            clock: ManualClock::new(at(now).timestamp_millis()),
            data: tempfile::tempdir().unwrap(),
            master_key: Arc::new(stowage_workflows::sealing::MasterKey::generate().unwrap().0),
            bucket: tempfile::tempdir().unwrap(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(stowage_engine::Clock::now_ms(&self.clock)).unwrap()
    }

    fn set(&self, to: DateTime<Utc>) {
        self.clock.set(to.timestamp_millis());
    }

    /// Starts a server: open the database, resume its runs, run the scheduler.
    fn server(&self) -> Server {
        let tokio = multi_thread();
        let clock: Arc<dyn stowage_engine::Clock> = Arc::new(self.clock.clone());
        let runtime = tokio.block_on(async {
            let store = Arc::new(
                stowage::open_store_with_clock(&self.data.path().join("db"), clock.clone())
                    .unwrap(),
            );
            let settings = stowage::WorkflowSettings {
                clock: Some(clock),
                ..Default::default()
            };
            let entities = Entities::new(store, self.master_key.clone());
            let runtime = stowage::server_runtime(entities.clone(), settings).unwrap();
            runtime.recover().await.unwrap();
            tokio::spawn(run_scheduler(runtime.clone(), entities.clone()));
            (runtime, entities)
        });
        let (runtime, entities) = runtime;
        let store = runtime.store().clone();
        Server {
            tokio,
            entities,
            catalog: Catalog::new(store),
            runtime,
        }
    }

    /// Runs a Deployment `db` (pods labelled `app=db`) in `shop`, for rules to exec in.
    fn run_pod(&self) {
        self.cluster_runtime.block_on(async {
            let client = super::connect(&self.cluster).await;
            create(
                &client.client,
                "apps/v1",
                "Deployment",
                "deployments",
                json!({
                    "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "db"}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                             "template": {"metadata": {"labels": {"app": "db"}},
                               "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}
                }),
            )
            .await;
            super::end_to_end::database_running(&client).await;
        });
    }

    /// Deletes or creates namespace `shop` (and its ConfigMap).
    fn shop(&self, present: bool) {
        self.cluster_runtime.block_on(async {
            let client = super::connect(&self.cluster).await.client;
            let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(client.clone());
            if present {
                make_shop(&client).await;
            } else {
                namespaces
                    .delete("shop", &Default::default())
                    .await
                    .unwrap();
                crate::kubesim::eventually("namespace shop is gone", || {
                    let namespaces = namespaces.clone();
                    async move {
                        namespaces
                            .get_opt("shop")
                            .await
                            .unwrap()
                            .is_none()
                            .then_some(())
                    }
                })
                .await;
            }
        });
    }
}

async fn make_shop(client: &kube::Client) {
    create(
        client,
        "v1",
        "Namespace",
        "namespaces",
        json!({"metadata": {"name": "shop"}}),
    )
    .await;
    create(
        client,
        "v1",
        "ConfigMap",
        "configmaps",
        json!({"metadata": {"name": "settings", "namespace": "shop"}, "data": {"k": "v"}}),
    )
    .await;
}

impl Server {
    /// Stops the server as a kill would: every task dropped where it waits.
    fn stop(self) {
        let Server {
            tokio,
            runtime,
            entities,
            catalog,
        } = self;
        drop((runtime, entities, catalog));
        tokio.shutdown_timeout(Duration::from_secs(10));
    }

    fn create(&self, kind: Kind, name: &str, spec: Value) -> String {
        self.tokio.block_on(async {
            self.entities
                .create(
                    NewEntity {
                        kind,
                        name: name.into(),
                        labels: BTreeMap::new(),
                        spec,
                    },
                    "alice",
                    "alice",
                )
                .await
                .unwrap()
                .id
        })
    }

    /// Sets schedule `id`'s `suspended` flag, as the suspend and resume routes do.
    fn suspend(&self, id: &str, suspended: bool) {
        self.tokio.block_on(async {
            let record = self
                .entities
                .get(Kind::BackupSchedule, id)
                .unwrap()
                .unwrap();
            let mut spec = record.spec.clone();
            spec["suspended"] = json!(suspended);
            self.entities
                .update(
                    Kind::BackupSchedule,
                    id,
                    record.version,
                    record.labels,
                    spec,
                    "alice",
                )
                .await
                .unwrap();
        });
    }

    /// Waits until schedule `id`'s waiting tick has seen it suspended (or resumed).
    fn noticed(&self, id: &str, suspended: bool) {
        self.tokio.block_on(async {
            crate::kubesim::eventually("the tick notices", || async {
                let tick = self.record(id).tick;
                let state = self.runtime.run_state(&tick).unwrap()?;
                (state.progress.get("wait")?["suspended"] == json!(suspended)).then_some(())
            })
            .await
        });
    }

    /// Replaces the spec of the policy schedule `id` follows.
    fn change_policy(&self, schedule: &str, spec: Value) {
        self.tokio.block_on(async {
            let record = self
                .entities
                .get(Kind::BackupSchedule, schedule)
                .unwrap()
                .unwrap();
            let policy = record.spec["policy"].as_str().unwrap();
            let current = self
                .entities
                .get(Kind::SchedulePolicy, policy)
                .unwrap()
                .unwrap();
            self.entities
                .update(
                    Kind::SchedulePolicy,
                    policy,
                    current.version,
                    current.labels,
                    spec,
                    "alice",
                )
                .await
                .unwrap();
        });
    }

    /// Deletes schedule `id`.
    fn delete(&self, id: &str) {
        self.tokio.block_on(async {
            let record = self
                .entities
                .get(Kind::BackupSchedule, id)
                .unwrap()
                .unwrap();
            self.entities
                .delete(Kind::BackupSchedule, id, record.version, "alice")
                .await
                .unwrap();
        });
    }

    /// Registers the world's cluster and location; returns their ids.
    fn register(&self, world: &World) -> (String, String) {
        let kubeconfig = std::fs::read_to_string(world.cluster.sim.kubeconfig_path()).unwrap();
        let cluster = self.create(Kind::Cluster, "prod", json!({"kubeconfig": kubeconfig}));
        let location = self.create(
            Kind::Location,
            "vault",
            json!({
                "location": {"kind": {"type": "local", "root": world.bucket.path()}, "prefix": "repo"},
                "passphrase": PASSPHRASE
            }),
        );
        (cluster, location)
    }

    /// A policy and a schedule of namespace `shop` following it; returns the schedule's id.
    fn schedule(&self, name: &str, policy: Value, cluster: &str, location: &str) -> String {
        self.schedule_reclaiming(name, policy, cluster, location, "retain")
    }

    /// [`Server::schedule`] with reclaim policy `reclaim`.
    fn schedule_reclaiming(
        &self,
        name: &str,
        policy: Value,
        cluster: &str,
        location: &str,
        reclaim: &str,
    ) -> String {
        let policy = self.create(Kind::SchedulePolicy, name, policy);
        self.create(
            Kind::BackupSchedule,
            name,
            json!({
                "policy": policy,
                "backup": {"cluster": cluster, "location": location, "namespaces": ["shop"]},
                "reclaim": reclaim
            }),
        )
    }

    fn record(&self, schedule: &str) -> ScheduleRecord {
        self.catalog.schedule(schedule).unwrap().unwrap_or_default()
    }

    /// Waits until each schedule in `due` has run its tick for the time given (a backup or a
    /// skip, then retention) and nothing runs but one waiting tick per schedule of `all`.
    fn settle(&self, all: &[&str], due: &[(&str, DateTime<Utc>)]) {
        self.tokio.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let ran = due.iter().all(|(schedule, time)| {
                    self.record(schedule).last_due.map(|last| at(&last)) == Some(*time)
                });
                let open = self.runtime.open_runs().unwrap();
                let waiting = open.iter().all(|run| {
                    self.runtime.run_state(run).unwrap().is_some_and(|state| {
                        state.workflow == SCHEDULE_WORKFLOW && !state.outputs.contains_key("wait")
                    })
                });
                if ran && waiting && open.len() == all.len() {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the schedules did not settle: due {due:?}, open runs {:?}",
                    open.iter()
                        .map(|run| self.runtime.run_state(run).unwrap())
                        .collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    /// The schedule's backups with `status`, by name.
    fn backups(&self, schedule: &str, status: BackupStatus) -> BTreeSet<String> {
        let query = CatalogQuery {
            schedule: Some(schedule.into()),
            status: Some(status.as_str().into()),
            limit: 1000,
            ..CatalogQuery::default()
        };
        let page = self.catalog.backups(&query, |_| true).unwrap();
        assert!(page.next_after.is_none());
        page.items.into_iter().map(|backup| backup.name).collect()
    }

    /// The backups the location's repository holds, by id.
    fn stored(&self, world: &World) -> usize {
        self.tokio.block_on(async {
            let location: stowage_storage::Location = serde_json::from_value(json!({
                "kind": {"type": "local", "root": world.bucket.path()}, "prefix": "repo"
            }))
            .unwrap();
            let repository = stowage_storage::Repository::open(&location, PASSPHRASE)
                .await
                .unwrap();
            repository.backups().await.unwrap().len()
        })
    }
}

/// The name a schedule gives its backup due at `time`.
fn backup_name(schedule: &str, time: DateTime<Utc>) -> String {
    format!("{schedule}-{}", time.format("%Y%m%d-%H%M%S"))
}

fn policy(spec: &Value) -> SchedulePolicy {
    SchedulePolicySpec::parse(spec).unwrap()
}

/// The times `policy` names after `from`, up to and including `until`.
fn times(policy: &SchedulePolicy, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut times = Vec::new();
    let mut now = from;
    while let Some(next) = policy.next_run(now).filter(|next| *next <= until) {
        times.push(next);
        now = next;
    }
    times
}

#[test]
fn three_months_of_daily_weekly_and_monthly_schedules_keep_what_their_policies_say() {
    let world = World::new("2026-01-01T00:00:00Z");
    let server = world.server();
    let (cluster, location) = server.register(&world);
    let specs = [
        (
            "daily",
            json!({"schedule": {"daily": {"times": ["02:00"]}}, "retain": 7}),
        ),
        (
            "weekly",
            json!({"schedule": {"weekly": {"days": ["sun"], "time": "02:00"}}, "retain": 4}),
        ),
        (
            "monthly",
            json!({"schedule": {"monthly": {"dates": [15], "relative": [{"week": "first", "day": "mon"}], "time": "02:00"}}, "retain": 3}),
        ),
    ];
    let start = world.now();
    let end = at("2026-04-01T00:00:00Z");
    let mut schedules = Vec::new();
    let mut calendar: BTreeMap<DateTime<Utc>, Vec<usize>> = BTreeMap::new();
    for (index, (name, spec)) in specs.iter().enumerate() {
        schedules.push(server.schedule(name, spec.clone(), &cluster, &location));
        for time in times(&policy(spec), start, end) {
            calendar.entry(time).or_default().push(index);
        }
    }
    let ids: Vec<&str> = schedules.iter().map(String::as_str).collect();
    server.settle(&ids, &[]);

    let mut made: Vec<Vec<DateTime<Utc>>> = vec![Vec::new(); specs.len()];
    for (time, due) in &calendar {
        world.set(*time);
        let due_now: Vec<(&str, DateTime<Utc>)> =
            due.iter().map(|index| (ids[*index], *time)).collect();
        server.settle(&ids, &due_now);
        for index in due {
            made[*index].push(*time);
        }
        // The day's check: each schedule keeps exactly its newest `retain` backups.
        for (index, (name, spec)) in specs.iter().enumerate() {
            let retain = spec["retain"].as_u64().unwrap() as usize;
            let expected: BTreeSet<String> = made[index]
                .iter()
                .rev()
                .take(retain)
                .map(|time| backup_name(name, *time))
                .collect();
            assert_eq!(
                server.backups(ids[index], BackupStatus::Completed),
                expected,
                "{name} on {time}"
            );
        }
        // The status index moved with every backup: running, completed, deleting, gone.
        let by_status = |status: BackupStatus| {
            let query = CatalogQuery {
                status: Some(status.as_str().into()),
                limit: 1000,
                ..CatalogQuery::default()
            };
            server
                .catalog
                .backups(&query, |_| true)
                .unwrap()
                .items
                .len()
        };
        let kept: usize = specs
            .iter()
            .enumerate()
            .map(|(index, (_, spec))| {
                made[index]
                    .len()
                    .min(spec["retain"].as_u64().unwrap() as usize)
            })
            .sum();
        assert_eq!(by_status(BackupStatus::Completed), kept, "on {time}");
        assert_eq!(by_status(BackupStatus::Running), 0, "on {time}");
        assert_eq!(by_status(BackupStatus::Deleting), 0, "on {time}");
    }
    assert_eq!(made[0].len(), 90, "daily runs in January to March");
    assert_eq!(made[1].len(), 13, "Sundays in January to March");
    assert_eq!(made[2].len(), 6, "first Mondays and 15ths");
    for (index, _) in specs.iter().enumerate() {
        let record = server.record(ids[index]);
        assert_eq!(record.backups_started, made[index].len() as u64);
        assert_eq!(record.skipped, 0);
    }
    // The location holds what the catalog keeps, and nothing of the backups deleted.
    assert_eq!(server.stored(&world), 7 + 4 + 3);
    server.stop();
}

#[test]
fn a_week_of_failing_backups_keeps_the_last_good_one() {
    let world = World::new("2026-03-01T00:00:00Z");
    let server = world.server();
    let (cluster, location) = server.register(&world);
    let spec = json!({"schedule": {"daily": {"times": ["02:00"]}}, "retain": 2});
    let schedule = server.schedule("nightly", spec.clone(), &cluster, &location);
    server.settle(&[&schedule], &[]);
    let days = times(&policy(&spec), world.now(), at("2026-03-13T00:00:00Z"));
    for (day, time) in days.iter().enumerate() {
        // Days 3 to 9 (a week) find namespace `shop` gone: their backups fail.
        if day == 3 {
            world.shop(false);
        }
        if day == 10 {
            world.shop(true);
        }
        world.set(*time);
        server.settle(&[&schedule], &[(&schedule, *time)]);
        let completed = server.backups(&schedule, BackupStatus::Completed);
        let failed = server.backups(&schedule, BackupStatus::Failed);
        match day {
            0..=2 => assert_eq!(failed.len(), 0),
            3..=9 => {
                // The two last good backups stay; the failures do not count as copies.
                let good: BTreeSet<String> = [days[1], days[2]]
                    .iter()
                    .map(|time| backup_name("nightly", *time))
                    .collect();
                assert_eq!(completed, good, "day {day}");
                assert_eq!(failed.len(), day - 2, "day {day}");
            }
            10 => {
                // Good again: the newest two good ones are kept; the failures are newer than
                // the oldest kept one and stay visible.
                let kept = [days[2], days[10]].map(|time| backup_name("nightly", time));
                assert_eq!(completed, kept.into(), "day {day}");
                assert_eq!(failed.len(), 7, "day {day}");
            }
            _ => {
                // Now the failures are older than every backup kept, and are let go.
                let kept = [days[10], days[11]].map(|time| backup_name("nightly", time));
                assert_eq!(completed, kept.into(), "day {day}");
                assert_eq!(failed.len(), 0, "day {day}");
            }
        }
    }
    server.stop();
}

#[test]
fn a_server_stopped_between_ticks_neither_loses_nor_doubles_one_and_an_outage_catches_up_once() {
    let world = World::new("2026-05-04T00:00:00Z");
    let server = world.server();
    let (cluster, location) = server.register(&world);
    let hourly_spec = json!({"schedule": {"interval": {"minutes": 60}}, "retain": 100});
    let daily_spec = json!({"schedule": {"daily": {"times": ["06:00"]}}, "retain": 100});
    let hourly = server.schedule("hourly", hourly_spec, &cluster, &location);
    let daily = server.schedule("daily", daily_spec, &cluster, &location);
    let all = [hourly.as_str(), daily.as_str()];
    server.settle(&all, &[]);

    // 01:00 runs; the server stops at 01:30 and is back at 01:45, before the 02:00 tick.
    world.set(at("2026-05-04T01:00:00Z"));
    server.settle(&all, &[(&hourly, at("2026-05-04T01:00:00Z"))]);
    world.set(at("2026-05-04T01:30:00Z"));
    server.stop();
    world.set(at("2026-05-04T01:45:00Z"));
    let server = world.server();
    server.settle(&all, &[]);
    world.set(at("2026-05-04T02:00:00Z"));
    server.settle(&all, &[(&hourly, at("2026-05-04T02:00:00Z"))]);
    let names = |schedule: &str| server.backups(schedule, BackupStatus::Completed);
    assert_eq!(
        names(&hourly),
        ["hourly-20260504-010000", "hourly-20260504-020000"]
            .map(String::from)
            .into(),
    );

    // Down from 02:30 to 12:30: ten hourly times and the daily 06:00 pass while it is down.
    world.set(at("2026-05-04T02:30:00Z"));
    server.stop();
    world.set(at("2026-05-04T12:30:00Z"));
    let server = world.server();
    // One catch-up run each, for the first time missed, and nothing else.
    server.settle(
        &all,
        &[
            (&hourly, at("2026-05-04T03:00:00Z")),
            (&daily, at("2026-05-04T06:00:00Z")),
        ],
    );
    let names = |schedule: &str| server.backups(schedule, BackupStatus::Completed);
    assert_eq!(names(&hourly).len(), 3, "{:?}", names(&hourly));
    assert!(names(&hourly).contains("hourly-20260504-030000"));
    assert_eq!(
        names(&daily),
        ["daily-20260504-060000"].map(String::from).into()
    );
    // Then the times after the outage, as usual: 13:00 is the next hourly run.
    world.set(at("2026-05-04T13:00:00Z"));
    server.settle(&all, &[(&hourly, at("2026-05-04T13:00:00Z"))]);
    let hourly_names = server.backups(&hourly, BackupStatus::Completed);
    assert_eq!(hourly_names.len(), 4, "{hourly_names:?}");
    assert!(hourly_names.contains("hourly-20260504-130000"));
    assert_eq!(server.record(&hourly).backups_started, 4);
    assert_eq!(server.record(&daily).backups_started, 1);

    // A chain that stopped (its waiting tick cancelled here; a database error would do the same)
    // is started again when the server starts, counted from then.
    let tick = server.record(&hourly).tick;
    server
        .tokio
        .block_on(server.runtime.cancel(&tick, "alice"))
        .unwrap();
    server.settle(&[&daily], &[]);
    server.stop();
    world.set(at("2026-05-04T13:20:00Z"));
    let server = world.server();
    server.settle(&all, &[]);
    world.set(at("2026-05-04T14:00:00Z"));
    server.settle(&all, &[(&hourly, at("2026-05-04T14:00:00Z"))]);
    assert_eq!(server.record(&hourly).backups_started, 5);
    server.stop();
}

#[test]
fn a_suspended_schedule_waits_resumes_at_its_next_time_and_deletion_reclaims_as_asked() {
    let world = World::new("2026-06-01T00:00:00Z");
    let server = world.server();
    let (cluster, location) = server.register(&world);
    let daily = json!({"schedule": {"daily": {"times": ["02:00"]}}, "retain": 10});
    let reclaimed =
        server.schedule_reclaiming("reclaimed", daily.clone(), &cluster, &location, "delete");
    let kept = server.schedule_reclaiming("kept", daily, &cluster, &location, "retain");
    let all = [reclaimed.as_str(), kept.as_str()];
    server.settle(&all, &[]);
    for day in ["2026-06-01T02:00:00Z", "2026-06-02T02:00:00Z"] {
        world.set(at(day));
        server.settle(&all, &[(&reclaimed, at(day)), (&kept, at(day))]);
    }

    // Suspended over the 3rd: only `kept` runs; resumed at noon, the 3rd is not made up.
    server.suspend(&reclaimed, true);
    server.noticed(&reclaimed, true);
    world.set(at("2026-06-03T02:00:00Z"));
    server.settle(&all, &[(&kept, at("2026-06-03T02:00:00Z"))]);
    world.set(at("2026-06-03T12:00:00Z"));
    server.suspend(&reclaimed, false);
    server.noticed(&reclaimed, false);
    server.settle(&all, &[]);
    assert_eq!(server.record(&reclaimed).backups_started, 2);
    world.set(at("2026-06-04T02:00:00Z"));
    server.settle(
        &all,
        &[
            (&reclaimed, at("2026-06-04T02:00:00Z")),
            (&kept, at("2026-06-04T02:00:00Z")),
        ],
    );
    let names = |schedule: &str| server.backups(schedule, BackupStatus::Completed);
    assert_eq!(
        names(&reclaimed),
        [
            "reclaimed-20260601-020000",
            "reclaimed-20260602-020000",
            "reclaimed-20260604-020000"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(names(&kept).len(), 4);

    // Deleted: each chain ends; `reclaimed` takes its backups with it, `kept` leaves them.
    server.delete(&reclaimed);
    server.delete(&kept);
    server.settle(&[], &[]);
    assert_eq!(names(&reclaimed), BTreeSet::new());
    assert_eq!(names(&kept).len(), 4);
    assert_eq!(server.stored(&world), 4);
    for schedule in all {
        assert_eq!(
            server.record(schedule).ended.as_deref(),
            Some("the schedule was deleted")
        );
    }
    server.stop();
}

#[test]
fn a_policy_change_moves_every_schedule_that_follows_it_from_its_next_run() {
    let world = World::new("2026-07-01T00:00:00Z");
    let server = world.server();
    let (cluster, location) = server.register(&world);
    let policy = server.create(
        Kind::SchedulePolicy,
        "shared",
        json!({"schedule": {"daily": {"times": ["02:00"]}}, "retain": 5}),
    );
    let schedule = |name: &str| {
        server.create(
            Kind::BackupSchedule,
            name,
            json!({
                "policy": policy,
                "backup": {"cluster": cluster, "location": location, "namespaces": ["shop"]}
            }),
        )
    };
    let first = schedule("first");
    let second = schedule("second");
    let all = [first.as_str(), second.as_str()];
    server.settle(&all, &[]);
    world.set(at("2026-07-01T02:00:00Z"));
    server.settle(
        &all,
        &[
            (&first, at("2026-07-01T02:00:00Z")),
            (&second, at("2026-07-01T02:00:00Z")),
        ],
    );
    // From 02:00 to 05:30: both waiting ticks move to 05:30 today, not 02:00 tomorrow.
    world.set(at("2026-07-01T03:00:00Z"));
    server.change_policy(
        &first,
        json!({"schedule": {"daily": {"times": ["05:30"]}}, "retain": 5}),
    );
    server.settle(&all, &[]);
    world.set(at("2026-07-01T05:30:00Z"));
    server.settle(
        &all,
        &[
            (&first, at("2026-07-01T05:30:00Z")),
            (&second, at("2026-07-01T05:30:00Z")),
        ],
    );
    for (schedule, name) in [(&first, "first"), (&second, "second")] {
        assert_eq!(
            server.backups(schedule, BackupStatus::Completed),
            [
                format!("{name}-20260701-020000"),
                format!("{name}-20260701-053000")
            ]
            .into()
        );
    }
    server.stop();
}

#[test]
fn a_run_due_while_the_previous_backup_still_runs_is_skipped_with_its_reason() {
    let world = World::new("2026-08-01T00:00:00Z");
    world.run_pod();
    let server = world.server();
    let (cluster, location) = server.register(&world);
    // A pre-rule that takes a few seconds keeps the 02:00 backup running past 02:30.
    let rule = server.create(
        Kind::Rule,
        "slow-checkpoint",
        json!({"pod_selector": {"matchLabels": {"app": "db"}},
               "actions": [{"command": ["sh", "-c", "sleep 3"]}]}),
    );
    let policy = server.create(
        Kind::SchedulePolicy,
        "half-hourly",
        json!({"schedule": {"interval": {"minutes": 30}}, "retain": 5}),
    );
    let schedule = server.create(
        Kind::BackupSchedule,
        "busy",
        json!({
            "policy": policy,
            "backup": {"cluster": cluster, "location": location, "namespaces": ["shop"],
                       "pre_rules": [rule], "volumes": "skip"}
        }),
    );
    let all = [schedule.as_str()];
    server.settle(&all, &[]);
    world.set(at("2026-08-01T00:30:00Z"));
    server
        .tokio
        .block_on(crate::kubesim::eventually("the backup running", || async {
            (server.record(&schedule).backups_started == 1).then_some(())
        }));
    world.set(at("2026-08-01T01:00:00Z"));
    server.settle(&all, &[(&schedule, at("2026-08-01T01:00:00Z"))]);
    let record = server.record(&schedule);
    assert_eq!(record.backups_started, 1, "{record:?}");
    assert_eq!(record.skipped, 1, "{record:?}");
    let skipped = record.last_skipped.unwrap();
    assert!(
        skipped.reason.contains("busy-20260801-003000") && skipped.reason.contains("still running"),
        "{skipped:?}"
    );
    assert_eq!(at(&skipped.due), at("2026-08-01T01:00:00Z"));
    // The next time runs as usual.
    world.set(at("2026-08-01T01:30:00Z"));
    server.settle(&all, &[(&schedule, at("2026-08-01T01:30:00Z"))]);
    assert_eq!(
        server.backups(&schedule, BackupStatus::Completed),
        ["busy-20260801-003000", "busy-20260801-013000"]
            .map(String::from)
            .into()
    );
    server.stop();
}
