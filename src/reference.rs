//! Image references: validation and canonical form, following the distribution reference
//! grammar (`[domain/]path[:tag][@algo:hex]`). The canonical form is fully qualified
//! (`docker.io/library/busybox:latest`), so the same image written two ways compares equal.

use std::fmt;

/// Why a reference is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {problem}")]
pub struct ReferenceError {
    /// The reference as written.
    pub input: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (with port), `docker.io` by default.
    pub domain: String,
    /// Repository path, `library/` added for single-component Docker Hub names.
    pub path: String,
    /// Tag, when given (or `latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// Digest `algo:hex`, when given.
    pub digest: Option<String>,
}

const DEFAULT_DOMAIN: &str = "docker.io";

impl Reference {
    /// Parses and normalises a reference.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |problem| ReferenceError {
            input: input.to_string(),
            problem,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        if input.len() > 512 {
            return Err(err("longer than 512 characters"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(err)?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                validate_tag(tag).map_err(err)?;
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_domain(first).map_err(err)?;
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if path.is_empty() {
            return Err(err("missing repository name"));
        }
        for component in path.split('/') {
            validate_component(component).map_err(err)?;
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Self {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path` without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// True when the reference pins a digest.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// True for `:latest` without a digest (kubelet defaults to `Always` then).
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref() == Some("latest")
    }
}

impl fmt::Display for Reference {
    /// The canonical form: `domain/path@digest` when pinned, else `domain/path:tag`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.digest, &self.tag) {
            (Some(d), _) => write!(f, "{}/{}@{}", self.domain, self.path, d),
            (None, Some(t)) => write!(f, "{}/{}:{}", self.domain, self.path, t),
            (None, None) => write!(f, "{}/{}", self.domain, self.path),
        }
    }
}

/// The short form Docker prints (`busybox:latest`, `team/web:1`): Docker Hub's domain and
/// `library/` dropped. Unparsable input is returned unchanged.
pub fn familiar(input: &str) -> String {
    let Ok(r) = Reference::parse(input) else {
        return input.to_string();
    };
    let full = r.to_string();
    let short = full.strip_prefix("docker.io/").unwrap_or(&full);
    short.strip_prefix("library/").unwrap_or(short).to_string()
}

/// Canonical form of a reference, or why it is invalid.
pub fn canonicalize(input: &str) -> Result<String, ReferenceError> {
    Reference::parse(input).map(|r| r.to_string())
}

fn validate_digest(d: &str) -> Result<(), &'static str> {
    let (algo, hex) = d.split_once(':').ok_or("digest must be algorithm:hex")?;
    if algo.is_empty()
        || !algo
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
    {
        return Err("invalid digest algorithm");
    }
    if algo == "sha256" && hex.len() != 64 {
        return Err("sha256 digest must have 64 hex digits");
    }
    if hex.len() < 32
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("digest must be lowercase hex");
    }
    Ok(())
}

fn validate_tag(t: &str) -> Result<(), &'static str> {
    let mut bytes = t.bytes();
    let first = bytes.next().ok_or("empty tag")?;
    if t.len() > 128 {
        return Err("tag longer than 128 characters");
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err("tag must start with a letter, digit or underscore");
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err("tag may only contain letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

fn validate_domain(d: &str) -> Result<(), &'static str> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || d.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err("registry port must be numeric");
        }
    }
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        && !host.starts_with('-')
        && !host.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err("invalid registry host")
    }
}

fn validate_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("repository names must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // separators: '.', '_', '__', or one or more '-'
        match b {
            b'.' => i += 1,
            b'_' => {
                i += if bytes.get(i + 1) == Some(&b'_') {
                    2
                } else {
                    1
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            b if b.is_ascii_uppercase() => return Err("repository names must be lowercase"),
            _ => return Err("repository names may only contain a-z, 0-9, '.', '_' and '-'"),
        }
        if !bytes.get(i).copied().is_some_and(alnum) {
            return Err("separators must be followed by a letter or digit");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("team/web", "docker.io/team/web:latest"),
            ("127.0.0.1:5000/team/web:1.4", "127.0.0.1:5000/team/web:1.4"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b/c:v1.0-rc_1", "localhost:5000/a/b/c:v1.0-rc_1"),
            ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
            ("ghcr.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "ghcr.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            ("x:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "docker.io/library/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            ("my__app.v2-x", "docker.io/library/my__app.v2-x:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalize(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox@sha256:abc",
            ":tag",
            "a//b",
            "-a",
            "a-",
            "a:b:c/d",
            "busy box",
            "a@md5",
            "reg.io:x/app",
            "a._b",
        ] {
            assert!(canonicalize(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/team/web:1"), "team/web:1");
        assert_eq!(
            familiar("127.0.0.1:5000/team/web:1"),
            "127.0.0.1:5000/team/web:1"
        );
    }

    #[test]
    fn latest_detection() {
        assert!(Reference::parse("busybox")
            .map(|r| r.is_latest())
            .unwrap_or(false));
        assert!(!Reference::parse("busybox:1")
            .map(|r| r.is_latest())
            .unwrap_or(true));
    }
}
