//! Server-side printing: the `meta.k8s.io/v1` `Table` a client gets for a list or an object
//! when it asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (as `kubectl get`
//! does), with the real default columns of the common built-in kinds, a custom resource's
//! `additionalPrinterColumns` (or Name and Age), and Name and Created At for other kinds.

use serde_json::{Map, Value, json};

use super::registry::text;
use super::resources::ResourceInfo;
use super::store::Store;

/// Whether `accept` asks for a Table.
pub(crate) fn wanted(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let parameters: Vec<&str> = media.split(';').map(str::trim).collect();
        parameters.contains(&"as=Table")
            && parameters.contains(&"g=meta.k8s.io")
            && (parameters.contains(&"v=v1") || parameters.contains(&"v=v1beta1"))
    })
}

/// One column: name, type, priority (1 = only with `-o wide`) and how to compute the cell.
struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
}

const fn column(name: &'static str, kind: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        kind,
        priority: 0,
        cell,
    }
}

const fn wide(name: &'static str, kind: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        kind,
        priority: 1,
        cell,
    }
}

fn or_none(value: &str) -> Value {
    json!(if value.is_empty() { "<none>" } else { value })
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn count(object: &Value, fields: &[&str]) -> Value {
    let total: usize = fields
        .iter()
        .filter_map(|field| object.get(*field).and_then(Value::as_object))
        .map(Map::len)
        .sum();
    json!(total)
}

/// Kubernetes' short human duration (`45s`, `3m20s`, `5h`, `12d`, `2y30d`).
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    if seconds < 60 * 2 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 60 * 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{years}y")
    }
}

/// The age of a timestamp, as printed; `<unknown>` when it is missing or malformed.
fn since(timestamp: &str) -> Value {
    match chrono::DateTime::parse_from_rfc3339(timestamp) {
        Ok(time) => json!(human_duration(
            (chrono::Utc::now() - time.with_timezone(&chrono::Utc)).num_seconds()
        )),
        Err(_) => json!("<unknown>"),
    }
}

fn name(object: &Value) -> Value {
    json!(text(object, "/metadata/name"))
}

fn age(object: &Value) -> Value {
    since(text(object, "/metadata/creationTimestamp"))
}

fn created_at(object: &Value) -> Value {
    json!(text(object, "/metadata/creationTimestamp"))
}

fn pod_ready(pod: &Value) -> Value {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    json!(format!("{ready}/{total}"))
}

/// The STATUS column of a pod, computed as kubectl's printer does.
fn pod_status(pod: &Value) -> Value {
    let mut reason = text(pod, "/status/phase").to_string();
    if !text(pod, "/status/reason").is_empty() {
        reason = text(pod, "/status/reason").to_string();
    }
    let mut running = false;
    for status in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .rev()
    {
        let waiting = text(status, "/state/waiting/reason");
        let terminated = status.pointer("/state/terminated");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if let Some(terminated) = terminated {
            reason = match (text(terminated, "/reason"), int(terminated, "/signal")) {
                ("", 0) => format!("ExitCode:{}", int(terminated, "/exitCode")),
                ("", signal) => format!("Signal:{signal}"),
                (why, _) => why.to_string(),
            };
        } else if status.get("ready").and_then(Value::as_bool) == Some(true)
            && status.pointer("/state/running").is_some()
        {
            running = true;
        }
    }
    if reason == "Completed" && running {
        reason = "Running".into();
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    json!(reason)
}

fn pod_restarts(pod: &Value) -> Value {
    let restarts: i64 = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|statuses| statuses.iter().map(|s| int(s, "/restartCount")).sum())
        .unwrap_or(0);
    json!(restarts.to_string())
}

fn service_external_ip(service: &Value) -> Value {
    let external: Vec<&str> = service
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|ips| ips.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match text(service, "/spec/type") {
        "ExternalName" => json!(text(service, "/spec/externalName")),
        "LoadBalancer" => {
            let ingress: Vec<&str> = service
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")))
                        .filter_map(Value::as_str)
                        .collect()
                })
                .unwrap_or_default();
            let all = [ingress, external].concat();
            json!(if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            })
        }
        _ => or_none(&external.join(",")),
    }
}

fn service_ports(service: &Value) -> Value {
    let ports: Vec<String> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|port| {
                    let protocol = match text(port, "/protocol") {
                        "" => "TCP",
                        protocol => protocol,
                    };
                    match int(port, "/nodePort") {
                        0 => format!("{}/{protocol}", int(port, "/port")),
                        node => format!("{}:{node}/{protocol}", int(port, "/port")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(&ports.join(","))
}

fn selector_text(object: &Value, pointer: &str) -> Value {
    let pairs: Vec<String> = object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    or_none(&pairs.join(","))
}

fn template_field(object: &Value, field: &str) -> Value {
    let values: Vec<&str> = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    json!(values.join(","))
}

fn access_modes(modes: Option<&Value>) -> Value {
    let short: Vec<&str> = modes
        .and_then(Value::as_array)
        .map(|modes| {
            modes
                .iter()
                .filter_map(Value::as_str)
                .map(|mode| match mode {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect()
        })
        .unwrap_or_default();
    json!(short.join(","))
}

/// The columns of a built-in kind, or `None` for kinds printed with the default columns.
fn built_in_columns(group: &str, plural: &str) -> Option<Vec<Column>> {
    Some(match (group, plural) {
        ("", "pods") => vec![
            column("Name", "string", name),
            column("Ready", "string", pod_ready),
            column("Status", "string", pod_status),
            column("Restarts", "string", pod_restarts),
            column("Age", "string", age),
            wide("IP", "string", |p| or_none(text(p, "/status/podIP"))),
            wide("Node", "string", |p| or_none(text(p, "/spec/nodeName"))),
            wide("Nominated Node", "string", |p| {
                or_none(text(p, "/status/nominatedNodeName"))
            }),
            wide("Readiness Gates", "string", |_| json!("<none>")),
        ],
        ("", "namespaces") => vec![
            column("Name", "string", name),
            column("Status", "string", |n| json!(text(n, "/status/phase"))),
            column("Age", "string", age),
        ],
        ("", "configmaps") => vec![
            column("Name", "string", name),
            column("Data", "string", |c| count(c, &["data", "binaryData"])),
            column("Age", "string", age),
        ],
        ("", "secrets") => vec![
            column("Name", "string", name),
            column("Type", "string", |s| json!(text(s, "/type"))),
            column("Data", "string", |s| count(s, &["data"])),
            column("Age", "string", age),
        ],
        ("", "serviceaccounts") => vec![
            column("Name", "string", name),
            column("Secrets", "string", |s| {
                json!(
                    s.get("secrets")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                )
            }),
            column("Age", "string", age),
        ],
        ("", "services") => vec![
            column("Name", "string", name),
            column("Type", "string", |s| json!(text(s, "/spec/type"))),
            column("Cluster-IP", "string", |s| {
                or_none(text(s, "/spec/clusterIP"))
            }),
            column("External-IP", "string", service_external_ip),
            column("Port(s)", "string", service_ports),
            column("Age", "string", age),
            wide("Selector", "string", |s| selector_text(s, "/spec/selector")),
        ],
        ("apps", "deployments") => vec![
            column("Name", "string", name),
            column("Ready", "string", |d| {
                json!(format!(
                    "{}/{}",
                    int(d, "/status/readyReplicas"),
                    d.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ))
            }),
            column("Up-to-date", "string", |d| {
                json!(int(d, "/status/updatedReplicas"))
            }),
            column("Available", "string", |d| {
                json!(int(d, "/status/availableReplicas"))
            }),
            column("Age", "string", age),
            wide("Containers", "string", |d| template_field(d, "name")),
            wide("Images", "string", |d| template_field(d, "image")),
            wide("Selector", "string", |d| {
                selector_text(d, "/spec/selector/matchLabels")
            }),
        ],
        ("apps", "replicasets") => vec![
            column("Name", "string", name),
            column("Desired", "integer", |r| {
                json!(
                    r.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )
            }),
            column("Current", "integer", |r| json!(int(r, "/status/replicas"))),
            column("Ready", "integer", |r| {
                json!(int(r, "/status/readyReplicas"))
            }),
            column("Age", "string", age),
            wide("Containers", "string", |r| template_field(r, "name")),
            wide("Images", "string", |r| template_field(r, "image")),
            wide("Selector", "string", |r| {
                selector_text(r, "/spec/selector/matchLabels")
            }),
        ],
        ("apps", "statefulsets") => vec![
            column("Name", "string", name),
            column("Ready", "string", |s| {
                json!(format!(
                    "{}/{}",
                    int(s, "/status/readyReplicas"),
                    s.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ))
            }),
            column("Age", "string", age),
            wide("Containers", "string", |s| template_field(s, "name")),
            wide("Images", "string", |s| template_field(s, "image")),
        ],
        ("", "persistentvolumeclaims") => vec![
            column("Name", "string", name),
            column("Status", "string", |c| json!(text(c, "/status/phase"))),
            column("Volume", "string", |c| json!(text(c, "/spec/volumeName"))),
            column("Capacity", "string", |c| {
                json!(text(c, "/status/capacity/storage"))
            }),
            column("Access Modes", "string", |c| {
                access_modes(c.pointer("/status/accessModes"))
            }),
            column("StorageClass", "string", |c| {
                json!(text(c, "/spec/storageClassName"))
            }),
            column("VolumeAttributesClass", "string", |c| {
                or_none(text(c, "/spec/volumeAttributesClassName"))
            }),
            column("Age", "string", age),
            wide("VolumeMode", "string", |c| {
                json!(text(c, "/spec/volumeMode"))
            }),
        ],
        ("", "persistentvolumes") => vec![
            column("Name", "string", name),
            column("Capacity", "string", |v| {
                json!(text(v, "/spec/capacity/storage"))
            }),
            column("Access Modes", "string", |v| {
                access_modes(v.pointer("/spec/accessModes"))
            }),
            column("Reclaim Policy", "string", |v| {
                json!(text(v, "/spec/persistentVolumeReclaimPolicy"))
            }),
            column("Status", "string", |v| json!(text(v, "/status/phase"))),
            column("Claim", "string", |v| {
                let claim = text(v, "/spec/claimRef/name");
                json!(if claim.is_empty() {
                    String::new()
                } else {
                    format!("{}/{claim}", text(v, "/spec/claimRef/namespace"))
                })
            }),
            column("StorageClass", "string", |v| {
                json!(text(v, "/spec/storageClassName"))
            }),
            column("VolumeAttributesClass", "string", |v| {
                or_none(text(v, "/spec/volumeAttributesClassName"))
            }),
            column("Reason", "string", |v| json!(text(v, "/status/reason"))),
            column("Age", "string", age),
            wide("VolumeMode", "string", |v| {
                json!(text(v, "/spec/volumeMode"))
            }),
        ],
        _ => return None,
    })
}

/// A custom resource's printer columns: `additionalPrinterColumns` of its version (simple
/// `.a.b` JSONPaths), or Name and Age.
fn custom_columns(store: &Store, resource: &ResourceInfo) -> Option<Vec<Value>> {
    let crd = store.get(
        "apiextensions.k8s.io/customresourcedefinitions",
        "",
        &format!("{}.{}", resource.plural, resource.group),
    )?;
    let columns = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(resource.version.as_str()))?
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Some(columns)
}

/// The value at a simple JSONPath (`.spec.size`, `.status.conditions[0].type`).
fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = object;
    for part in path.trim_start_matches('.').split('.') {
        let (field, index) = match part.split_once('[') {
            Some((field, rest)) => (field, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !field.is_empty() {
            current = current.get(field)?;
        }
        if let Some(index) = index {
            current = current.get(index)?;
        }
    }
    Some(current)
}

fn definition(name: &str, kind: &str, format: &str, priority: u64, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

/// The `object` of a row: metadata only unless `includeObject=Object` (or nothing for `None`).
fn row_object(object: &Value, include: &str, api_version: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => {
            let mut shown = object.clone();
            shown["apiVersion"] = json!(api_version);
            shown
        }
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
        }),
    }
}

/// The Table of `objects`; `metadata` is the list metadata (resourceVersion, continue).
pub(crate) fn table(
    store: &Store,
    resource: &ResourceInfo,
    objects: &[&Value],
    metadata: Value,
    include: &str,
) -> Value {
    let api_version = resource.api_version();
    let name_definition = definition(
        "Name",
        "string",
        "name",
        0,
        "Name must be unique within a namespace.",
    );
    let (definitions, rows): (Vec<Value>, Vec<Vec<Value>>) = if let Some(columns) =
        built_in_columns(&resource.group, &resource.plural)
    {
        let definitions = columns
            .iter()
            .map(|c| {
                let format = if c.name == "Name" { "name" } else { "" };
                definition(c.name, c.kind, format, c.priority.into(), "")
            })
            .collect();
        let rows = objects
            .iter()
            .map(|o| columns.iter().map(|c| (c.cell)(o)).collect())
            .collect();
        (definitions, rows)
    } else if let Some(custom) = custom_columns(store, resource) {
        let custom = if custom.is_empty() {
            vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
        } else {
            custom
        };
        let mut definitions = vec![name_definition];
        definitions.extend(custom.iter().map(|c| {
            definition(
                c.get("name").and_then(Value::as_str).unwrap_or_default(),
                c.get("type").and_then(Value::as_str).unwrap_or("string"),
                c.get("format").and_then(Value::as_str).unwrap_or_default(),
                c.get("priority").and_then(Value::as_u64).unwrap_or(0),
                c.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )
        }));
        let rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![name(o)];
                cells.extend(custom.iter().map(|c| {
                    let path = c
                        .get("jsonPath")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let value = json_path(o, path).cloned().unwrap_or(Value::Null);
                    match (c.get("type").and_then(Value::as_str), &value) {
                        (Some("date"), Value::String(time)) => since(time),
                        _ => value,
                    }
                }));
                cells
            })
            .collect();
        (definitions, rows)
    } else {
        let definitions = vec![
            name_definition,
            definition(
                "Created At",
                "date",
                "",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ];
        let rows = objects
            .iter()
            .map(|o| vec![name(o), created_at(o)])
            .collect();
        (definitions, rows)
    };
    let rows: Vec<Value> = objects
        .iter()
        .zip(rows)
        .map(|(object, cells)| {
            json!({"cells": cells, "object": row_object(object, include, &api_version)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(5 * 3600 + 60), "5h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(40 * 86400), "40d");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn only_table_accept_headers_ask_for_tables() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
        assert!(!wanted(
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
        ));
    }

    #[test]
    fn pod_status_follows_the_containers() {
        let pod = json!({
            "status": {"phase": "Failed", "containerStatuses": [
                {"state": {"terminated": {"exitCode": 3, "reason": "Error"}}}
            ]},
        });
        assert_eq!(pod_status(&pod), "Error");
        let waiting = json!({
            "status": {"phase": "Pending", "containerStatuses": [
                {"state": {"waiting": {"reason": "ContainerCreating"}}}
            ]},
        });
        assert_eq!(pod_status(&waiting), "ContainerCreating");
    }
}
