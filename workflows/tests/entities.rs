//! Entities on a real event store: unique names per owner, optimistic concurrency, shares,
//! deletion, pages and filters, and projections that a replay rebuilds byte for byte.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use stowage_engine::{Store, StoreOptions};
use stowage_workflows::entity::{
    Entities, EntitiesProjection, EntityError, Grantee, Kind, ListQuery, NewEntity, Share,
    ShareLevel,
};

fn open(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(
        Store::open_with(
            dir,
            StoreOptions {
                projections: vec![Arc::new(EntitiesProjection)],
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    )
}

fn rule(name: &str, team: &str) -> NewEntity {
    NewEntity {
        kind: Kind::Rule,
        name: name.into(),
        labels: BTreeMap::from([("team".to_string(), team.to_string())]),
        spec: json!({"n": name}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_keep_names_unique_versions_checked_and_rebuild_identically() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (key, _) = stowage_workflows::sealing::MasterKey::generate().unwrap();
    let entities = Entities::new(store.clone(), Arc::new(key));

    let quiesce = entities
        .create(rule("quiesce", "db"), "alice", "alice")
        .await
        .unwrap();
    assert_eq!((quiesce.version, quiesce.owner.as_str()), (1, "alice"));
    assert_eq!(quiesce.spec, json!({"n": "quiesce"}));
    let err = entities
        .create(rule("quiesce", "web"), "alice", "alice")
        .await
        .unwrap_err();
    assert!(matches!(err, EntityError::NameTaken { .. }), "{err}");
    // Names are per owner: bob may have his own `quiesce`.
    let bobs = entities
        .create(rule("quiesce", "web"), "bob", "bob")
        .await
        .unwrap();
    // A location may share a rule's name.
    entities
        .create(
            NewEntity {
                kind: Kind::Location,
                ..rule("quiesce", "db")
            },
            "alice",
            "alice",
        )
        .await
        .unwrap();

    let updated = entities
        .update(
            Kind::Rule,
            &quiesce.id,
            1,
            quiesce.labels.clone(),
            json!({"n": 2}),
            "alice",
        )
        .await
        .unwrap();
    assert_eq!((updated.version, updated.updated_by.as_str()), (2, "alice"));
    let err = entities
        .update(
            Kind::Rule,
            &quiesce.id,
            1,
            BTreeMap::new(),
            json!({}),
            "carol",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EntityError::VersionConflict {
                expected: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        entities.get(Kind::Rule, &quiesce.id).unwrap().unwrap().spec,
        json!({"n": 2})
    );

    let shares = vec![Share {
        to: Grantee::Group("data-team".into()),
        level: ShareLevel::Restore,
    }];
    let shared = entities
        .share(Kind::Rule, &quiesce.id, 2, shares.clone(), "alice")
        .await
        .unwrap();
    assert_eq!(shared.shares, shares);

    // Pages in creation order, filtered by label and by what the caller may see.
    for n in 0..5 {
        entities
            .create(rule(&format!("r{n}"), "db"), "alice", "alice")
            .await
            .unwrap();
    }
    let all = ListQuery {
        limit: 100,
        ..ListQuery::default()
    };
    assert_eq!(
        entities
            .list(Kind::Rule, &all, |_| true)
            .unwrap()
            .items
            .len(),
        7
    );
    let alices = entities
        .list(Kind::Rule, &all, |record| record.owner == "alice")
        .unwrap();
    assert_eq!(alices.items.len(), 6);
    let web = ListQuery {
        labels: BTreeMap::from([("team".to_string(), "web".to_string())]),
        ..all.clone()
    };
    let page = entities.list(Kind::Rule, &web, |_| true).unwrap();
    assert_eq!(
        page.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [bobs.id.as_str()]
    );
    let mut seen = Vec::new();
    let mut query = ListQuery {
        limit: 3,
        ..ListQuery::default()
    };
    loop {
        let page = entities.list(Kind::Rule, &query, |_| true).unwrap();
        seen.extend(page.items.into_iter().map(|record| record.name));
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => break,
        }
    }
    assert_eq!(seen, ["quiesce", "quiesce", "r0", "r1", "r2", "r3", "r4"]);

    let err = entities
        .delete(Kind::Rule, &quiesce.id, 2, "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(err, EntityError::VersionConflict { current: 3, .. }),
        "{err}"
    );
    entities
        .delete(Kind::Rule, &quiesce.id, 3, "alice")
        .await
        .unwrap();
    assert!(entities.get(Kind::Rule, &quiesce.id).unwrap().is_none());
    let err = entities
        .update(
            Kind::Rule,
            &quiesce.id,
            4,
            BTreeMap::new(),
            json!({}),
            "alice",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EntityError::NotFound { .. }), "{err}");
    // The name is free again.
    entities
        .create(rule("quiesce", "db"), "alice", "alice")
        .await
        .unwrap();

    let live = store.projection_dump().unwrap();
    store.rebuild_projections().await.unwrap();
    assert_eq!(store.projection_dump().unwrap(), live);
}
