//! Networks and volumes a container needs: inspected, created with the owner label when
//! missing, and otherwise used as they are (an existing unmanaged one is never modified).

use std::collections::HashMap;

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;

use super::errors::{action_error, is_not_found, status_of};
use super::Docker;
use crate::execute::ActionError;
use crate::labels;

/// Makes sure network `name` exists.
///
/// API 1.41 creates a second network of the same name unless asked `CheckDuplicate`, which
/// bollard 0.21's request type no longer carries. So after creating, we list the networks of
/// that name; if an older one exists (by the daemon's creation time, ties broken by ID), we
/// remove *our own* just-created network (no container uses it yet) and use the older one.
/// The earliest network always wins, whenever each racer looks, and nobody else's network is
/// ever touched.
pub(crate) async fn ensure_network(
    docker: &Docker,
    owner: &str,
    source: &str,
    name: &str,
) -> Result<(), ActionError> {
    match docker.client.inspect_network(name, None).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(action_error("inspect network", name, &e)),
    }
    let request = NetworkCreateRequest {
        name: name.to_string(),
        labels: Some(HashMap::from_iter(labels::ownership(owner, source))),
        ..Default::default()
    };
    let created = match docker.client.create_network(request).await {
        Ok(created) => created,
        // Newer daemons refuse duplicates with 409: someone else just created it.
        Err(e) if status_of(&e) == Some(409) => return Ok(()),
        Err(e) => return Err(action_error("create network", name, &e)),
    };
    tracing::debug!(network = name, id = %created.id, "network created");
    let filters = HashMap::from([("name", vec![name.to_string()])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let same_name: Vec<(Option<(i64, u32)>, String)> =
        match docker.client.list_networks(Some(options)).await {
            // The name filter matches substrings; keep exact matches.
            Ok(list) => list
                .into_iter()
                .filter(|n| n.name.as_deref() == Some(name))
                .filter_map(|n| Some((n.created.as_deref().and_then(parse_rfc3339), n.id?)))
                .collect(),
            Err(e) => return Err(action_error("list networks named", name, &e)),
        };
    let ours = same_name
        .iter()
        .find(|(_, id)| *id == created.id)
        .map(|(t, _)| *t)
        .unwrap_or(None);
    let older_exists = same_name
        .iter()
        .any(|(t, id)| *id != created.id && is_older((*t, id), (ours, &created.id)));
    if older_exists {
        tracing::info!(network = name, duplicate = %created.id, "an older network of this name exists (concurrent create); removing ours");
        if let Err(e) = docker.client.remove_network(&created.id).await {
            if !is_not_found(&e) {
                return Err(action_error("remove duplicate network", name, &e));
            }
        }
    }
    Ok(())
}

/// Makes sure volume `name` exists. Volume creation is idempotent in Docker, so a concurrent
/// create simply returns the same volume.
pub(crate) async fn ensure_volume(
    docker: &Docker,
    owner: &str,
    source: &str,
    name: &str,
) -> Result<(), ActionError> {
    match docker.client.inspect_volume(name).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(action_error("inspect volume", name, &e)),
    }
    let request = VolumeCreateRequest {
        name: Some(name.to_string()),
        labels: Some(HashMap::from_iter(labels::ownership(owner, source))),
        ..Default::default()
    };
    docker
        .client
        .create_volume(request)
        .await
        .map_err(|e| action_error("create volume", name, &e))?;
    tracing::debug!(volume = name, "volume created");
    Ok(())
}

/// Orders networks by creation time, then ID; an unknown time counts as newest.
fn is_older(a: (Option<(i64, u32)>, &String), b: (Option<(i64, u32)>, &String)) -> bool {
    match (a.0, b.0) {
        (Some(ta), Some(tb)) if ta != tb => ta < tb,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        _ => a.1 < b.1,
    }
}

/// Parses the daemon's RFC 3339 timestamps (`2024-05-01T10:11:12.123456789+02:00`) into Unix
/// seconds and nanoseconds.
fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (year, month, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let offset_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, offset) = rest.split_at(offset_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':');
    let (hour, minute, second) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        u32::try_from(num(&digits)? * 10i64.pow(9 - digits.len() as u32)).ok()?
    };
    let offset_seconds = match offset {
        "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (h, m) = o[1..].split_once(':')?;
            sign * (num(h)? * 3600 + num(m)? * 60)
        }
    };
    // Days from civil (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((
        days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds,
        nanos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_unix_time() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_rfc3339("2024-05-01T10:11:12.5Z"),
            Some((1_714_558_272, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T12:11:12.123456789+02:00"),
            Some((1_714_558_272, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T09:11:12.12-01:00"),
            Some((1_714_558_272, 120_000_000))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn the_earliest_network_wins_then_the_smallest_id() {
        let (a, b) = ("a".to_string(), "b".to_string());
        assert!(is_older((Some((1, 5)), &b), (Some((1, 6)), &a)));
        assert!(is_older((Some((1, 5)), &a), (Some((1, 5)), &b)));
        assert!(!is_older((None, &a), (Some((1, 5)), &b)));
        assert!(is_older((Some((9, 0)), &b), (None, &a)));
    }
}
