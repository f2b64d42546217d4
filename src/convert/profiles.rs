//! Compose profiles: which services are converted. A service without `profiles` always is;
//! one with profiles only when one of them is active. Active profiles are the `--profile`
//! names given, else `COMPOSE_PROFILES` (comma-separated), as the Compose CLI takes them; `*`
//! activates every profile.
//!
//! A converted service that `depends_on` a service left out is an error, as in Compose ("was
//! pulled in as a dependency ... but is not enabled by the active profiles"), unless the
//! dependency says `required: false`, in which case it is dropped with a warning. Converting
//! cannot "target" services, so dependencies never switch profiles on by themselves.

use std::collections::BTreeSet;

use super::compose::Service;

/// The active profiles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Active {
    names: BTreeSet<String>,
    all: bool,
}

impl Active {
    /// From the CLI's names, or `COMPOSE_PROFILES` when none were given.
    pub(super) fn new(given: &[String], compose_profiles: Option<&str>) -> Self {
        let names: Vec<String> = if given.is_empty() {
            compose_profiles
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        } else {
            given.to_vec()
        };
        Self {
            all: names.iter().any(|n| n == "*"),
            names: names.into_iter().collect(),
        }
    }

    /// Whether `service` is converted.
    pub(super) fn enables(&self, service: &Service) -> bool {
        service.profiles.is_empty()
            || self.all
            || service.profiles.iter().any(|p| self.names.contains(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(profiles: &[&str]) -> Service {
        Service {
            profiles: profiles.iter().map(|s| s.to_string()).collect(),
            ..Service::default()
        }
    }

    #[test]
    fn cli_names_win_over_the_variable() {
        let a = Active::new(&[], Some("debug, tools"));
        assert!(a.enables(&service(&[])));
        assert!(a.enables(&service(&["tools"])));
        assert!(!a.enables(&service(&["other"])));
        let a = Active::new(&["other".into()], Some("debug"));
        assert!(a.enables(&service(&["other"])));
        assert!(!a.enables(&service(&["debug"])));
        assert!(Active::new(&["*".into()], None).enables(&service(&["x"])));
        assert!(!Active::new(&[], None).enables(&service(&["x"])));
    }
}
