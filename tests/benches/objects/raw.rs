//! The baselines: creating objects with plain POSTs and reading them with plain paginated lists,
//! through the same kube-rs client the workflows use, with no workflow around them.

use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, PostParams};
use serde::Deserialize;
use serde_json::Value;

use crate::mix::{Planned, Type};

/// Creates `objects` in order, `in_flight` at a time; fails on the first refusal, naming it.
pub async fn create_all(
    client: &kube::Client,
    objects: Vec<Planned>,
    in_flight: usize,
) -> anyhow::Result<usize> {
    let count = objects.len();
    futures::stream::iter(objects)
        .map(|planned| async move {
            let body = serde_json::to_vec(&planned.body)?;
            let request =
                kube::core::Request::new(&planned.path).create(&PostParams::default(), body)?;
            client.request::<Value>(request).await.map_err(|err| {
                anyhow::anyhow!(
                    "creating {} {}: {err}",
                    planned.path,
                    planned.body["metadata"]["name"]
                )
            })?;
            anyhow::Ok(())
        })
        .buffer_unordered(in_flight)
        .try_collect::<()>()
        .await?;
    Ok(count)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: PageMeta,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize, Default)]
struct PageMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// Lists every type cluster-wide, `in_flight` types at a time (each by a task of its own, as the
/// collect step lists), in pages of `page_size`, with an optional label selector; returns the
/// objects read (every page parsed).
pub async fn list_all(
    client: &kube::Client,
    types: &[Type],
    in_flight: usize,
    page_size: u32,
    selector: Option<&str>,
) -> anyhow::Result<usize> {
    let counts: Vec<usize> = futures::stream::iter(types.iter().copied())
        .map(|kind| {
            let client = client.clone();
            let selector = selector.map(str::to_string);
            tokio::spawn(
                async move { list_one(&client, kind, page_size, selector.as_deref()).await },
            )
        })
        .buffer_unordered(in_flight)
        .map(|joined| joined?)
        .try_collect()
        .await?;
    Ok(counts.into_iter().sum())
}

/// Lists one type cluster-wide, every page; returns the objects read.
async fn list_one(
    client: &kube::Client,
    kind: Type,
    page_size: u32,
    selector: Option<&str>,
) -> anyhow::Result<usize> {
    let path = kind.path(None);
    let mut listed = 0;
    let mut continue_token = None;
    loop {
        let mut params = ListParams::default().limit(page_size);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        params.continue_token = continue_token.take();
        let request = kube::core::Request::new(&path).list(&params)?;
        let page: Page = client
            .request(request)
            .await
            .map_err(|err| anyhow::anyhow!("listing {path}: {err}"))?;
        listed += page.items.len();
        match page.metadata.continue_token.filter(|t| !t.is_empty()) {
            Some(token) => continue_token = Some(token),
            None => return Ok(listed),
        }
    }
}
