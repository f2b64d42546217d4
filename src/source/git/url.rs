//! The repository URL as it may be shown: in logs, on `/state`, in metrics and in the source
//! identity. Credentials never appear there, so they are stripped here, once, and everything
//! that displays a URL takes the [`DisplayUrl`].

use std::fmt;

/// A repository URL with any credentials removed: `https://user:token@host/r` shows as
/// `https://host/r`; `ssh://git:pw@host/r` as `ssh://git@host/r` (an SSH user name is an
/// address, not a secret); scp-like `git@host:r` and local paths are unchanged.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DisplayUrl(String);

impl DisplayUrl {
    /// Strips the credentials of `url`.
    pub fn new(url: &str) -> Self {
        Self(strip_credentials(url))
    }

    /// The stripped URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `url` carries a user name or password in its authority (`scheme://user@host`). The
/// agent refuses those for HTTP(S): credentials come from a file, never from the URL.
pub fn has_userinfo(url: &str) -> bool {
    split_authority(url).is_some_and(|(_, authority, _)| authority.contains('@'))
}

fn strip_credentials(url: &str) -> String {
    let Some((scheme, authority, rest)) = split_authority(url) else {
        return url.to_string();
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let keep_user = scheme.eq_ignore_ascii_case("ssh") || scheme.eq_ignore_ascii_case("git+ssh");
    let user = userinfo.split(':').next().unwrap_or("");
    if keep_user && !user.is_empty() {
        format!("{scheme}://{user}@{host}{rest}")
    } else {
        format!("{scheme}://{host}{rest}")
    }
}

/// `(scheme, authority, rest)` of a `scheme://authority/rest` URL.
fn split_authority(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped() {
        for (url, shown) in [
            (
                "https://user:tok3n@example.com/org/repo.git",
                "https://example.com/org/repo.git",
            ),
            (
                "https://tok3n@example.com/org/repo",
                "https://example.com/org/repo",
            ),
            ("ssh://git:pw@host:2222/r.git", "ssh://git@host:2222/r.git"),
            ("ssh://git@host/r.git", "ssh://git@host/r.git"),
            ("git://127.0.0.1:9418/r.git", "git://127.0.0.1:9418/r.git"),
            ("file:///srv/repo.git", "file:///srv/repo.git"),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("https://example.com/a@b", "https://example.com/a@b"),
        ] {
            assert_eq!(DisplayUrl::new(url).as_str(), shown, "{url}");
        }
    }

    #[test]
    fn userinfo_is_detected_in_the_authority_only() {
        assert!(has_userinfo("https://u:p@h/r"));
        assert!(!has_userinfo("https://h/r@x"));
        assert!(!has_userinfo("git@github.com:org/repo.git"));
    }
}
