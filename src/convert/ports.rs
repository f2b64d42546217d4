//! Compose `ports` (short and long syntax, ranges) and `expose` → `PortSpec`s. A port without
//! a host port is published on a random one (`hostIP: 0.0.0.0`), as Compose does; what cannot
//! be expressed (SCTP, a host range for one container port) is warned about.

use super::compose::{LongPort, Port};
use super::to_manifests::ServiceCx;
use super::warnings::Warnings;
use super::ConvertError;
use crate::api::{PortSpec, Protocol};

/// Most ports one `ports` entry may expand to (a range); more is surely a mistake.
pub const MAX_PORTS_PER_ENTRY: u32 = 1000;

fn protocol(
    sc: &ServiceCx<'_>,
    field: &str,
    p: &str,
    w: &mut Warnings,
) -> Result<Option<Protocol>, ConvertError> {
    match p.to_ascii_lowercase().as_str() {
        "" | "tcp" => Ok(Some(Protocol::Tcp)),
        "udp" => Ok(Some(Protocol::Udp)),
        "sctp" => {
            sc.warn(w, field, "SCTP is not supported by dockwright; dropped");
            Ok(None)
        }
        _ => Err(sc.err(
            field,
            format!("unknown protocol {p:?}; expected tcp or udp"),
        )),
    }
}

/// `"80"` or `"8000-8010"` → inclusive range.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    let parse = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} is not a port number (1-65535)")),
        }
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let n = parse(s)?;
            (n, n)
        }
    };
    if a > b {
        return Err(format!("port range {s:?} ends before it starts"));
    }
    Ok((a, b))
}

/// Pairs host and container ranges into port specs.
fn expand_ports(
    sc: &ServiceCx<'_>,
    field: &str,
    host_ip: Option<String>,
    host: Option<(u16, u16)>,
    container: (u16, u16),
    protocol: Protocol,
    w: &mut Warnings,
) -> Result<Vec<PortSpec>, ConvertError> {
    let count = u32::from(container.1 - container.0) + 1;
    if count > MAX_PORTS_PER_ENTRY {
        return Err(sc.err(
            field,
            format!("a range of {count} ports is more than the limit of {MAX_PORTS_PER_ENTRY}"),
        ));
    }
    // Compose publishes a port without a host port on a random one; so does hostIP alone.
    let host_ip = host_ip.or_else(|| host.is_none().then(|| "0.0.0.0".to_string()));
    let host_ports: Vec<Option<u16>> = match host {
        None => vec![None; count as usize],
        Some((a, b)) if a == b && count == 1 => vec![Some(a)],
        Some((a, b)) if u32::from(b - a) + 1 == count => (a..=b).map(Some).collect(),
        Some((a, b)) if count == 1 => {
            sc.warn(
                w,
                field,
                format!("a host port range ({a}-{b}) for one container port cannot be expressed; published on host port {a}"),
            );
            vec![Some(a)]
        }
        Some(_) => {
            return Err(sc.err(
                field,
                "the host and container port ranges have different lengths",
            ))
        }
    };
    Ok((container.0..=container.1)
        .zip(host_ports)
        .map(|(container_port, host_port)| PortSpec {
            container_port,
            host_port,
            host_ip: host_ip.clone(),
            protocol,
        })
        .collect())
}

pub(super) fn port(
    sc: &ServiceCx<'_>,
    i: usize,
    p: &Port,
    w: &mut Warnings,
) -> Result<Vec<PortSpec>, ConvertError> {
    let field = format!("ports[{i}]");
    match p {
        Port::Short(s) => {
            let (body, proto) = match s.rsplit_once('/') {
                Some((b, p)) => (b, p),
                None => (s.as_str(), "tcp"),
            };
            let Some(protocol) = protocol(sc, &field, proto, w)? else {
                return Ok(Vec::new());
            };
            let mut parts = body.rsplitn(3, ':');
            let container = parts.next().unwrap_or_default();
            let host = parts.next();
            let ip = parts.next();
            let bad = |m: String| sc.err(&field, format!("invalid port {s:?}: {m}"));
            let container = port_range(container).map_err(bad)?;
            let host = match host {
                None | Some("") => None,
                Some(h) => Some(port_range(h).map_err(bad)?),
            };
            let ip = match ip {
                None => None,
                Some(ip) => {
                    let ip = ip.trim_start_matches('[').trim_end_matches(']');
                    if ip.parse::<std::net::IpAddr>().is_err() {
                        return Err(bad(format!("{ip:?} is not an IP address")));
                    }
                    Some(ip.to_string())
                }
            };
            expand_ports(sc, &field, ip, host, container, protocol, w)
        }
        Port::Long(l) => long_port(sc, &field, l, w),
    }
}

fn long_port(
    sc: &ServiceCx<'_>,
    field: &str,
    l: &LongPort,
    w: &mut Warnings,
) -> Result<Vec<PortSpec>, ConvertError> {
    sc.unsupported(w, field, &l.other.0);
    // `mode` (host or ingress) only matters to Swarm's routing mesh; one daemon ignores it.
    let Some(protocol) = protocol(sc, field, l.protocol.as_deref().unwrap_or("tcp"), w)? else {
        return Ok(Vec::new());
    };
    if l.target == 0 {
        return Err(sc.err(&format!("{field}.target"), "must be between 1 and 65535"));
    }
    let host = match l.published.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(port_range(p).map_err(|m| sc.err(&format!("{field}.published"), m))?),
    };
    let ip = match l.host_ip.as_deref() {
        None | Some("") => None,
        Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => Some(ip.to_string()),
        Some(ip) => {
            return Err(sc.err(
                &format!("{field}.host_ip"),
                format!("{ip:?} is not an IP address"),
            ))
        }
    };
    expand_ports(sc, field, ip, host, (l.target, l.target), protocol, w)
}

/// `expose: ["3000", "8000-8001/udp"]`: container ports, not published.
pub(super) fn expose(sc: &ServiceCx<'_>, i: usize, e: &str) -> Result<Vec<PortSpec>, ConvertError> {
    let field = format!("expose[{i}]");
    let (body, proto) = e.rsplit_once('/').unwrap_or((e, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => {
            return Err(sc.err(
                &field,
                format!("unknown protocol {proto:?}; expected tcp or udp"),
            ))
        }
    };
    let (a, b) = port_range(body).map_err(|m| sc.err(&field, m))?;
    if u32::from(b - a) + 1 > MAX_PORTS_PER_ENTRY {
        return Err(sc.err(&field, "range too large"));
    }
    Ok((a..=b)
        .map(|container_port| PortSpec {
            container_port,
            host_port: None,
            host_ip: None,
            protocol,
        })
        .collect())
}
