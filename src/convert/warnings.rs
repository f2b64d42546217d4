//! What `convert` could not express: one [`Warning`] per field, with the Compose path and what
//! became of it, plus the advice for keys users often meet. Nothing is dropped without one.
//! (`profiles`, `extends`, `include`, `secrets` and `configs` are converted: see their modules.)

use std::fmt;

/// A Compose field that was converted approximately or not at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The Compose service it concerns (`None` for top-level fields).
    pub service: Option<String>,
    /// Dotted path in the Compose file, e.g. `services.web.security_opt`.
    pub field: String,
    /// What happened and, where possible, what to do.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Collects the warnings of one conversion, in the order they are found.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    pub(crate) list: Vec<Warning>,
}

impl Warnings {
    /// A warning about `field` (a full dotted path) of `service`.
    pub(crate) fn push(
        &mut self,
        service: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let w = Warning {
            service: service.map(str::to_string),
            field: field.into(),
            message: message.into(),
        };
        if !self.list.contains(&w) {
            self.list.push(w);
        }
    }

    /// One warning per key that no converter consumed. `x-` extension keys are for tools and
    /// are skipped, as Compose skips them.
    pub(crate) fn unsupported(&mut self, service: Option<&str>, prefix: &str, keys: &[String]) {
        for key in keys.iter().filter(|k| !k.starts_with("x-")) {
            let message = hint(key).unwrap_or("not supported by dockwright; dropped");
            let field = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            self.push(service, field, message);
        }
    }
}

/// Advice for keys people often use that have no dockwright field.
fn hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "links" | "external_links" => {
            "dropped; services on a shared network resolve each other by name"
        }
        "security_opt" | "userns_mode" | "sysctls" | "ulimits" => {
            "not supported by dockwright (no kernel settings); dropped"
        }
        "init" | "tty" | "stdin_open" | "logging" | "dns" | "dns_search" | "extra_hosts"
        | "domainname" | "stop_signal" | "shm_size" | "platform" | "read_only" => {
            "not supported by dockwright yet; dropped"
        }
        "reservations" => "not supported (dockwright sets limits only); dropped",
        "ipv6_address" | "link_local_ips" | "mac_address" => {
            "not supported by dockwright (a network attachment has aliases and an IPv4 address); dropped"
        }
        "priority" => "dropped: dockwright connects a container's networks in file order",
        _ => return None,
    })
}
