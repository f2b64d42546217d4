//! Turns bollard errors into [`ActionError`]s: a stable kind from the HTTP status (or the
//! transport failure) plus a message naming the call, its target and the daemon's own words.
//! Messages never include request headers, so registry credentials cannot leak into them.

use bollard::errors::Error as BollardError;

use crate::execute::{ActionError, ErrorKind};

/// HTTP status of a daemon error response, if it was one.
pub(crate) fn status_of(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// True for a 404 answer.
pub(crate) fn is_not_found(error: &BollardError) -> bool {
    status_of(error) == Some(404)
}

/// The daemon's message (or the transport error) without bollard's prefix.
pub(crate) fn daemon_message(error: &BollardError) -> String {
    match error {
        BollardError::DockerResponseServerError { message, .. } if !message.is_empty() => {
            message.trim().to_string()
        }
        BollardError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

/// Category of a failed daemon call.
pub(crate) fn kind_of(error: &BollardError) -> ErrorKind {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => match status_code {
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            401 | 403 => ErrorKind::Unauthorized,
            _ => ErrorKind::Daemon,
        },
        BollardError::HyperLegacyError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. }
        | BollardError::SocketNotFoundError(_)
        | BollardError::RequestTimeoutError => ErrorKind::Unreachable,
        _ => ErrorKind::Daemon,
    }
}

/// `"<what> <target>: <daemon message>"` with the kind derived from the error.
pub(crate) fn action_error(what: &str, target: &str, error: &BollardError) -> ActionError {
    let message = daemon_message(error);
    let hint = match kind_of(error) {
        ErrorKind::Unreachable => " (is the Docker daemon running and reachable?)",
        _ => "",
    };
    ActionError::new(kind_of(error), format!("{what} {target}: {message}{hint}"))
}

/// Classifies a pull failure from the daemon's words: registries answer "not found" and
/// "unauthorized" in many spellings, and the daemon often relays them as a 500 or mid-stream.
pub(crate) fn pull_error(reference: &str, error: &BollardError) -> ActionError {
    registry_error("pull", reference, error)
}

/// [`pull_error`] for any registry operation (`pull`, `push`, `check`): `"<what> <reference>:
/// <daemon message> (<hint>)"`.
pub(crate) fn registry_error(what: &str, reference: &str, error: &BollardError) -> ActionError {
    let message = daemon_message(error);
    let lower = message.to_ascii_lowercase();
    let kind = if lower.contains("manifest unknown")
        || lower.contains("not found")
        || lower.contains("does not exist")
        || lower.contains("name unknown")
    {
        ErrorKind::NotFound
    } else if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("access denied")
        || lower.contains("denied")
    {
        ErrorKind::Unauthorized
    } else {
        match kind_of(error) {
            // A 404 from /images/create without a recognised message is still "not found";
            // anything else from the daemon (e.g. registry unreachable) is a daemon error.
            ErrorKind::NotFound => ErrorKind::NotFound,
            ErrorKind::Unauthorized => ErrorKind::Unauthorized,
            ErrorKind::Unreachable => ErrorKind::Unreachable,
            _ => ErrorKind::Daemon,
        }
    };
    let hint = match kind {
        ErrorKind::NotFound => " (check the repository, tag or digest)",
        ErrorKind::Unauthorized => " (the registry refused access: check the credentials for it)",
        _ => "",
    };
    ActionError::new(kind, format!("{what} {reference}: {message}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        }
    }

    #[test]
    fn kinds_follow_status_codes() {
        assert_eq!(kind_of(&server(404, "x")), ErrorKind::NotFound);
        assert_eq!(kind_of(&server(409, "x")), ErrorKind::Conflict);
        assert_eq!(kind_of(&server(500, "x")), ErrorKind::Daemon);
        assert_eq!(
            kind_of(&BollardError::RequestTimeoutError),
            ErrorKind::Unreachable
        );
    }

    #[test]
    fn pull_errors_are_classified_by_message() {
        let r = "127.0.0.1:5000/a:1";
        let cases = [
            (server(404, "manifest for 127.0.0.1:5000/a:1 not found: manifest unknown"), ErrorKind::NotFound),
            (server(500, "Head \"http://127.0.0.1:5000/v2/a/manifests/1\": no basic auth credentials"), ErrorKind::Unauthorized),
            (BollardError::DockerStreamError { error: "unauthorized: authentication required".into() }, ErrorKind::Unauthorized),
            (server(500, "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"), ErrorKind::Daemon),
        ];
        for (error, want) in cases {
            let got = pull_error(r, &error);
            assert_eq!(got.kind, want, "{}", got.message);
            assert!(
                got.message.starts_with("pull 127.0.0.1:5000/a:1: "),
                "{}",
                got.message
            );
        }
    }

    #[test]
    fn messages_carry_the_daemons_words() {
        let e = action_error("start", "web", &server(500, "port is already allocated"));
        assert_eq!(e.message, "start web: port is already allocated");
        assert_eq!(e.kind, ErrorKind::Daemon);
    }
}
