//! The Service address allocators, as the API server runs them when a Service is created: a
//! clusterIP from 10.96.0.0/16 and, for NodePort and LoadBalancer Services, a nodePort from
//! 30000-32767 per port number (and a healthCheckNodePort for a LoadBalancer with
//! `externalTrafficPolicy: Local`). Values any stored Service holds are taken; a requested one
//! that is taken (or a nodePort out of the range) is refused with the real 422.
//!
//! Allocation reads every stored Service, so callers hold [`ServiceAllocators::lock`] from the
//! allocation until the Service is stored: two creates never pick the same value.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

use super::errors::{ApiError, FieldCause};
use super::store::Store;

/// The first and last node ports of the default range.
const NODE_PORTS: (u32, u32) = (30000, 32767);
/// The service CIDR, 10.96.0.0/16: its network address and size.
const SERVICE_NETWORK: (u32, u32) = (u32::from_be_bytes([10, 96, 0, 0]), 1 << 16);
/// Offsets kubesim does not hand out: the network address, `kubernetes` (.1) and the first few.
const FIRST_OFFSET: u32 = 10;

/// Where the next search for a free value starts (so values are not reused at once).
#[derive(Debug, Default)]
pub struct Hints {
    next_ip: u32,
    next_port: u32,
}

/// The allocators of one cluster.
#[derive(Debug, Default)]
pub struct ServiceAllocators {
    hints: Mutex<Hints>,
}

impl ServiceAllocators {
    /// Holds the allocators; keep the guard until the allocated Service is stored.
    pub fn lock(&self) -> MutexGuard<'_, Hints> {
        // The hints are only where a search starts: any value left by a panic is still valid.
        self.hints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The clusterIPs and node ports every stored Service holds.
struct Taken {
    ips: HashSet<String>,
    ports: HashSet<u32>,
}

fn taken(store: &Store) -> Taken {
    let mut taken = Taken {
        ips: HashSet::new(),
        ports: HashSet::new(),
    };
    for service in store.list("/services", None, None, 0, |_| true).items {
        let spec = &service["spec"];
        let ips = spec["clusterIPs"].as_array().into_iter().flatten();
        for ip in ips.chain(std::iter::once(&spec["clusterIP"])) {
            if let Some(ip) = ip.as_str().filter(|ip| is_address(ip)) {
                taken.ips.insert(ip.to_string());
            }
        }
        for port in spec["ports"].as_array().into_iter().flatten() {
            if let Some(port) = port_number(&port["nodePort"]) {
                taken.ports.insert(port);
            }
        }
        if let Some(port) = port_number(&spec["healthCheckNodePort"]) {
            taken.ports.insert(port);
        }
    }
    taken
}

/// Whether a clusterIP value is an address (not empty, not `None` of a headless Service).
fn is_address(ip: &str) -> bool {
    !ip.is_empty() && ip != "None"
}

fn port_number(value: &Value) -> Option<u32> {
    value
        .as_u64()
        .and_then(|port| u32::try_from(port).ok())
        .filter(|port| *port != 0)
}

fn invalid(name: &str, field: String, message: String) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        name,
        vec![FieldCause {
            field,
            message,
            reason: "FieldValueInvalid",
        }],
    )
}

impl Hints {
    /// Gives a new Service `name` its clusterIP (unless headless or ExternalName) and its node
    /// ports, or refuses values that are taken.
    pub fn allocate(
        &mut self,
        store: &Store,
        name: &str,
        object: &mut Value,
    ) -> Result<(), ApiError> {
        let service_type = object
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if service_type == "ExternalName" {
            return Ok(());
        }
        let mut taken = taken(store);
        let spec = &mut object["spec"];
        if spec.get("type").is_none() {
            spec["type"] = json!("ClusterIP");
        }
        self.cluster_ip(&mut taken, name, spec)?;
        let node_ports = service_type == "NodePort"
            || (service_type == "LoadBalancer"
                && spec["allocateLoadBalancerNodePorts"].as_bool() != Some(false));
        self.node_ports(&mut taken, name, spec, node_ports)?;
        if service_type == "LoadBalancer" && spec["externalTrafficPolicy"] == "Local" {
            match port_number(&spec["healthCheckNodePort"]) {
                Some(port) if taken.ports.contains(&port) => {
                    return Err(invalid(
                        name,
                        "spec.healthCheckNodePort".into(),
                        format!(
                            "Invalid value: {port}: failed to allocate requested HealthCheck \
                             NodePort {port}: provided port is already allocated"
                        ),
                    ));
                }
                Some(_) => {}
                None => spec["healthCheckNodePort"] = json!(self.next_node_port(&taken, name)?),
            }
        }
        Ok(())
    }

    fn cluster_ip(
        &mut self,
        taken: &mut Taken,
        name: &str,
        spec: &mut Value,
    ) -> Result<(), ApiError> {
        let requested = spec["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .or_else(|| spec["clusterIPs"][0].as_str())
            .map(str::to_string);
        let ip = match requested {
            Some(ip) if !is_address(&ip) => {
                // Headless: `None` in both fields.
                if spec["clusterIPs"].is_null() {
                    spec["clusterIPs"] = json!([ip]);
                }
                return Ok(());
            }
            Some(ip) if taken.ips.contains(&ip) => {
                // Shown as Go prints the field: []string{"10.96.0.10"}.
                let requested = spec["clusterIPs"].as_array().map_or_else(
                    || format!("{ip:?}"),
                    |ips| {
                        let ips: Vec<String> = ips.iter().map(Value::to_string).collect();
                        ips.join(", ")
                    },
                );
                return Err(invalid(
                    name,
                    "spec.clusterIPs".into(),
                    format!(
                        "Invalid value: []string{{{requested}}}: failed to allocate IP {ip}: \
                         provided IP is already allocated"
                    ),
                ));
            }
            Some(ip) => ip,
            None => self.next_ip(taken)?,
        };
        taken.ips.insert(ip.clone());
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        Ok(())
    }

    fn next_ip(&mut self, taken: &Taken) -> Result<String, ApiError> {
        let (network, size) = SERVICE_NETWORK;
        let usable = size - FIRST_OFFSET - 1;
        for step in 0..usable {
            let offset = FIRST_OFFSET + (self.next_ip + step) % usable;
            let ip = Ipv4Addr::from(network + offset).to_string();
            if !taken.ips.contains(&ip) {
                self.next_ip = (self.next_ip + step + 1) % usable;
                return Ok(ip);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        ))
    }

    /// Node ports for every port of the spec (one per port number, as TCP and UDP on the same
    /// port share theirs); with `allocate` false, only requested ones are checked.
    fn node_ports(
        &mut self,
        taken: &mut Taken,
        name: &str,
        spec: &mut Value,
        allocate: bool,
    ) -> Result<(), ApiError> {
        let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let requested: Vec<(String, Option<u32>)> = ports
            .iter()
            .map(|port| (port["port"].to_string(), port_number(&port["nodePort"])))
            .collect();
        let mut by_port: BTreeMap<String, u32> = BTreeMap::new();
        for (index, port) in ports.iter_mut().enumerate() {
            let number = port["port"].to_string();
            let wanted = port_number(&port["nodePort"]);
            if let Some(&given) = by_port.get(&number)
                && wanted.is_none_or(|wanted| wanted == given)
            {
                port["nodePort"] = json!(given);
                continue;
            }
            // A later port of the same number may name the node port this one shares.
            let wanted = wanted.or_else(|| {
                requested
                    .iter()
                    .skip(index + 1)
                    .find(|(other, node_port)| *other == number && node_port.is_some())
                    .and_then(|(_, node_port)| *node_port)
            });
            let field = || format!("spec.ports[{index}].nodePort");
            let node_port = match wanted {
                None if !allocate => continue,
                None => self.next_node_port(taken, name)?,
                Some(wanted) if !(NODE_PORTS.0..=NODE_PORTS.1).contains(&wanted) => {
                    return Err(invalid(
                        name,
                        field(),
                        format!(
                            "Invalid value: {wanted}: provided port is not in the valid range. \
                             The range of valid ports is {}-{}",
                            NODE_PORTS.0, NODE_PORTS.1
                        ),
                    ));
                }
                Some(wanted) if taken.ports.contains(&wanted) => {
                    return Err(invalid(
                        name,
                        field(),
                        format!("Invalid value: {wanted}: provided port is already allocated"),
                    ));
                }
                Some(wanted) => wanted,
            };
            taken.ports.insert(node_port);
            by_port.insert(number, node_port);
            port["nodePort"] = json!(node_port);
        }
        Ok(())
    }

    fn next_node_port(&mut self, taken: &Taken, name: &str) -> Result<u32, ApiError> {
        let size = NODE_PORTS.1 - NODE_PORTS.0 + 1;
        for step in 0..size {
            let port = NODE_PORTS.0 + (self.next_port + step) % size;
            if !taken.ports.contains(&port) {
                self.next_port = (self.next_port + step + 1) % size;
                return Ok(port);
            }
        }
        Err(ApiError::internal(format!(
            "failed to allocate a nodePort for Service {name:?}: range is full"
        )))
    }
}
