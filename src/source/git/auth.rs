//! How the git source authenticates, and the checks that keep credentials out of sight.
//!
//! - Smart HTTP(S): a user and password, or a token, each read from a file at every poll (a
//!   rotated token is picked up without a restart). They reach the server only through gix's
//!   credential hook, after the server asked (401), never through the URL, `.git/config`, a
//!   log, an error message, `/state` or a metric. A token goes as the basic-auth password
//!   (user `--git-username`, default `x-access-token`: GitHub, GitLab, Gitea/Forgejo and
//!   Bitbucket all take a token that way); only a server that offers `Bearer` and not
//!   `Basic` gets it as a bearer token. Credentials are only ever sent over `https://`.
//!   `--git-ca-file` replaces the system roots with a private CA's (as git's `http.sslCAInfo`).
//! - SSH: the system `ssh` with a key file and a **pinned** `known_hosts`: strict host key
//!   checking, no global known_hosts, no learning of new keys, no prompts. Its log goes to a
//!   file so a host key mismatch becomes one clear error naming the host.

use std::fmt;
use std::path::{Path, PathBuf};

use super::DisplayUrl;

/// Default basic-auth user sent with a token (GitHub's name for it; others ignore the user).
pub const TOKEN_USER: &str = "x-access-token";
/// Largest credential or CA file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A credential file: a password or a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpSecret {
    /// `--git-password-file`: sent as the basic-auth password of `--git-username`.
    PasswordFile(PathBuf),
    /// `--git-token-file`: basic-auth password (or bearer token where only that is offered).
    TokenFile(PathBuf),
}

/// HTTP(S) credentials: where they are, never what they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCredentials {
    /// `--git-username` (required with a password; default [`TOKEN_USER`] with a token).
    pub username: Option<String>,
    /// The file holding the secret.
    pub secret: HttpSecret,
}

/// SSH: the key and the pinned known_hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshAuth {
    /// `--git-ssh-key` (`None`: ssh's default keys are not used either; the server must
    /// accept the connection without a key, which is rare).
    pub key: Option<PathBuf>,
    /// `--git-known-hosts`: the only host keys trusted.
    pub known_hosts: PathBuf,
}

/// Everything the fetcher needs to authenticate. Holds paths only, so `Debug` shows no secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitAuth {
    /// HTTP(S) credentials.
    pub http: Option<HttpCredentials>,
    /// `--git-ca-file`: PEM certificates trusted instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// SSH settings (required for SSH URLs).
    pub ssh: Option<SshAuth>,
}

/// A secret read from a file. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself: only to hand it to the transport.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The URL's transport, as far as authentication is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `git://`, `file://` or a local path: no authentication.
    Plain,
    /// `http://` (credentials refused: they would travel in clear text).
    Http,
    /// `https://`.
    Https,
    /// `ssh://` or scp-like `user@host:path`.
    Ssh,
}

/// The transport of `url`, or why it is not supported.
pub fn transport_of(url: &str) -> Result<Transport, String> {
    let shown = DisplayUrl::new(url);
    let scheme = match url.split_once("://") {
        Some((scheme, _)) => scheme.to_ascii_lowercase(),
        None => {
            // scp-like `user@host:path` (or `host:path`) is SSH; a path is local.
            let before_slash = url.split('/').next().unwrap_or("");
            if before_slash.contains(':') {
                "ssh".into()
            } else {
                "file".into()
            }
        }
    };
    match scheme.as_str() {
        "git" | "file" => Ok(Transport::Plain),
        "http" => Ok(Transport::Http),
        "https" => Ok(Transport::Https),
        "ssh" | "git+ssh" | "ssh+git" => Ok(Transport::Ssh),
        other => Err(format!(
            "{shown}: unknown transport {other:?}; use https://, ssh://, git:// or file://"
        )),
    }
}

impl GitAuth {
    /// Checks that these settings fit `url`: credentials come from files, never from the
    /// URL; credentials only over HTTPS; SSH only with a pinned known_hosts; the files exist
    /// and read (so a typo fails at start, not at the first poll). Messages name flags and
    /// files, never a secret.
    pub fn check(&self, url: &str) -> Result<Transport, String> {
        let transport = transport_of(url)?;
        let shown = DisplayUrl::new(url);
        if super::url::has_userinfo(url) && transport != Transport::Ssh {
            return Err(format!(
                "{shown}: credentials in the URL are refused; use --git-username with --git-password-file or --git-token-file"
            ));
        }
        if transport == Transport::Ssh && url_has_password(url) {
            return Err(format!(
                "{shown}: a password in an SSH URL is refused; use --git-ssh-key"
            ));
        }
        match transport {
            Transport::Https => {}
            Transport::Http if self.http.is_some() => {
                return Err(format!(
                    "{shown}: credentials are sent only over https:// (never in clear text)"
                ))
            }
            _ if self.http.is_some() => {
                return Err(format!(
                    "{shown}: --git-password-file and --git-token-file are for https:// URLs"
                ))
            }
            _ => {}
        }
        if self.ca_file.is_some() && transport != Transport::Https {
            return Err(format!("{shown}: --git-ca-file is for https:// URLs"));
        }
        match (&self.ssh, transport) {
            (None, Transport::Ssh) => {
                return Err(format!(
                    "{shown}: SSH needs --git-known-hosts FILE with the server's pinned host key (host keys are never trusted on first use)"
                ))
            }
            (Some(_), t) if t != Transport::Ssh => {
                return Err(format!(
                    "{shown}: --git-ssh-key and --git-known-hosts are for SSH URLs"
                ))
            }
            _ => {}
        }
        if let Some(http) = &self.http {
            if matches!(http.secret, HttpSecret::PasswordFile(_)) && http.username.is_none() {
                return Err("--git-password-file needs --git-username".into());
            }
            http.secret()?;
        }
        if let Some(ca) = &self.ca_file {
            ca_certificates(ca)?;
        }
        if let Some(ssh) = &self.ssh {
            let known = read_limited(&ssh.known_hosts, "--git-known-hosts")?;
            if !known
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                return Err(format!(
                    "--git-known-hosts {}: holds no host key",
                    ssh.known_hosts.display()
                ));
            }
            if let Some(key) = &ssh.key {
                std::fs::metadata(key)
                    .map_err(|e| format!("--git-ssh-key {}: {e}", key.display()))?;
            }
        }
        Ok(transport)
    }
}

/// Whether an `ssh://user:password@host` URL carries a password.
fn url_has_password(url: &str) -> bool {
    let Some((_, after)) = url.split_once("://") else {
        return false;
    };
    let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

impl HttpCredentials {
    /// Reads the secret file (one trailing newline removed; a token also trimmed).
    pub fn secret(&self) -> Result<Secret, String> {
        let (path, flag) = match &self.secret {
            HttpSecret::PasswordFile(p) => (p, "--git-password-file"),
            HttpSecret::TokenFile(p) => (p, "--git-token-file"),
        };
        let mut text = read_limited(path, flag)?;
        if matches!(self.secret, HttpSecret::TokenFile(_)) {
            text = text.trim().to_string();
        } else if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        if text.is_empty() {
            return Err(format!("{flag} {}: the file is empty", path.display()));
        }
        if text.chars().any(char::is_control) {
            return Err(format!(
                "{flag} {}: holds control characters (one line expected)",
                path.display()
            ));
        }
        Ok(Secret(text))
    }

    /// The credentials to answer a server's challenge with (`www_authenticate`: its
    /// `WWW-Authenticate` headers): basic auth, or a bearer token for a token where the
    /// server offers only `Bearer`.
    pub fn answer(
        &self,
        www_authenticate: &[impl AsRef<[u8]>],
    ) -> Result<gix::sec::identity::Credentials, String> {
        let secret = self.secret()?;
        let offers = |scheme: &str| {
            www_authenticate.iter().any(|h| {
                let h = h.as_ref();
                h.len() >= scheme.len()
                    && h[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
                    && h.get(scheme.len()).is_none_or(|b| *b == b' ')
            })
        };
        let bearer =
            matches!(self.secret, HttpSecret::TokenFile(_)) && offers("bearer") && !offers("basic");
        Ok(if bearer {
            gix::sec::identity::Credentials::Encoded {
                authtype: "Bearer".into(),
                credential: secret.0,
                oauth_refresh_token: None,
            }
        } else {
            gix::sec::identity::Credentials::UsernamePassword {
                username: self
                    .username
                    .clone()
                    .unwrap_or_else(|| TOKEN_USER.to_string()),
                password: secret.0,
                oauth_refresh_token: None,
            }
        })
    }
}

/// The certificates of a PEM file, for the HTTP client.
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = read_limited(path, "--git-ca-file")?;
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| format!("--git-ca-file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--git-ca-file {}: holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_limited(path: &Path, flag: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{flag} {}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(text)
}

impl SshAuth {
    /// The `core.sshCommand` that pins the host key: the system `ssh` with strict checking
    /// against `known_hosts` only (no global file, no learning new keys), the key alone
    /// (`IdentitiesOnly`), no prompts (`BatchMode`), and its log in `log`.
    pub fn command(&self, log: &Path) -> String {
        let mut args: Vec<String> = vec!["ssh".into()];
        let mut opt = |o: String| {
            args.push("-o".into());
            args.push(o);
        };
        opt("BatchMode=yes".into());
        opt("StrictHostKeyChecking=yes".into());
        opt(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        opt("GlobalKnownHostsFile=/dev/null".into());
        opt("UpdateHostKeys=no".into());
        opt("CheckHostIP=no".into());
        opt("IdentitiesOnly=yes".into());
        opt("PasswordAuthentication=no".into());
        opt("KbdInteractiveAuthentication=no".into());
        opt("ConnectTimeout=20".into());
        opt("LogLevel=ERROR".into());
        match &self.key {
            Some(key) => {
                args.push("-i".into());
                args.push(key.display().to_string());
            }
            None => opt("IdentityFile=none".into()),
        }
        args.push("-E".into());
        args.push(log.display().to_string());
        args.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A clear message for what ssh logged, when it is a host key or login problem.
    pub fn explain(&self, log: &str, host: &str) -> Option<String> {
        let file = self.known_hosts.display();
        if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || log.contains("has changed and you have requested strict checking")
        {
            return Some(format!(
                "host key for {host} does not match the pinned known_hosts ({file}); the fetch was refused. If the server's key was rotated on purpose, put its new key in {file}"
            ));
        }
        if log.contains("host key is known for") || log.contains("Host key verification failed") {
            return Some(format!(
                "no host key for {host} is pinned in the known_hosts ({file}); the fetch was refused (host keys are never trusted on first use)"
            ));
        }
        if log.contains("Permission denied") {
            return Some(format!(
                "{host} refused the SSH key (Permission denied); check --git-ssh-key and the deploy key on the server"
            ));
        }
        None
    }
}

/// `'text'` for `sh`, with embedded quotes escaped.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@".contains(&b))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The host (and port) an SSH URL connects to, as ssh names it in its messages.
pub fn ssh_host(url: &str) -> String {
    let authority = match url.split_once("://") {
        Some((_, after)) => &after[..after.find('/').unwrap_or(after.len())],
        None => url.split(':').next().unwrap_or(url),
    };
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn transports_are_recognised() {
        assert_eq!(transport_of("git://h/r").unwrap(), Transport::Plain);
        assert_eq!(transport_of("/srv/r.git").unwrap(), Transport::Plain);
        assert_eq!(transport_of("https://h/r").unwrap(), Transport::Https);
        assert_eq!(transport_of("http://h/r").unwrap(), Transport::Http);
        assert_eq!(transport_of("git@github.com:o/r").unwrap(), Transport::Ssh);
        assert_eq!(transport_of("ssh://git@h:22/r").unwrap(), Transport::Ssh);
        let e = transport_of("ftp://u:tok@h/r").unwrap_err();
        assert!(!e.contains("tok"), "{e}");
    }

    #[test]
    fn credentials_never_come_from_the_url_and_go_only_over_https() {
        let dir = tempfile::tempdir().unwrap();
        let token = GitAuth {
            http: Some(HttpCredentials {
                username: None,
                secret: HttpSecret::TokenFile(file(dir.path(), "t", "tok3n\n")),
            }),
            ..GitAuth::default()
        };
        assert_eq!(token.check("https://h/r.git").unwrap(), Transport::Https);
        for (url, needle) in [
            ("https://u:tok3n@h/r.git", "credentials in the URL"),
            ("http://h/r.git", "only over https"),
            ("git://h/r.git", "for https"),
        ] {
            let e = token.check(url).unwrap_err();
            assert!(e.contains(needle) && !e.contains("tok3n"), "{url}: {e}");
        }
        let e = GitAuth::default().check("ssh://git:pw@h/r").unwrap_err();
        assert!(
            e.contains("password in an SSH URL") && !e.contains("pw@"),
            "{e}"
        );
        let password = GitAuth {
            http: Some(HttpCredentials {
                username: None,
                secret: HttpSecret::PasswordFile(file(dir.path(), "p", "pw\n")),
            }),
            ..GitAuth::default()
        };
        assert!(password
            .check("https://h/r")
            .unwrap_err()
            .contains("--git-username"));
    }

    #[test]
    fn ssh_needs_a_pinned_known_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let e = GitAuth::default().check("git@h:o/r.git").unwrap_err();
        assert!(e.contains("--git-known-hosts"), "{e}");
        let empty = GitAuth {
            ssh: Some(SshAuth {
                key: None,
                known_hosts: file(dir.path(), "kh", "# nothing\n"),
            }),
            ..GitAuth::default()
        };
        assert!(empty
            .check("ssh://git@h/r")
            .unwrap_err()
            .contains("no host key"));
    }

    #[test]
    fn a_token_is_basic_auth_unless_the_server_offers_only_bearer() {
        let dir = tempfile::tempdir().unwrap();
        let creds = HttpCredentials {
            username: None,
            secret: HttpSecret::TokenFile(file(dir.path(), "t", " tok3n \n")),
        };
        let basic = creds.answer(&["Basic realm=\"git\""]).unwrap();
        assert_eq!(
            basic,
            gix::sec::identity::Credentials::UsernamePassword {
                username: TOKEN_USER.into(),
                password: "tok3n".into(),
                oauth_refresh_token: None
            }
        );
        let none: [&str; 0] = [];
        assert!(matches!(
            creds.answer(&none).unwrap(),
            gix::sec::identity::Credentials::UsernamePassword { .. }
        ));
        let bearer = creds.answer(&["Bearer realm=\"git\""]).unwrap();
        assert!(matches!(
            bearer,
            gix::sec::identity::Credentials::Encoded { ref authtype, .. } if authtype == "Bearer"
        ));
        assert_eq!(format!("{:?}", creds.secret().unwrap()), "<redacted>");
    }

    #[test]
    fn the_ssh_command_pins_the_host_key_and_quotes_paths() {
        let ssh = SshAuth {
            key: Some(PathBuf::from("/keys/deploy key")),
            known_hosts: PathBuf::from("/keys/known_hosts"),
        };
        let cmd = ssh.command(Path::new("/state/ssh.log"));
        for part in [
            "-o StrictHostKeyChecking=yes",
            "-o UserKnownHostsFile=/keys/known_hosts",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o IdentitiesOnly=yes",
            "-o BatchMode=yes",
            "-i '/keys/deploy key'",
            "-E /state/ssh.log",
        ] {
            assert!(cmd.contains(part), "{part} in {cmd}");
        }
        let changed = "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.\n";
        assert!(ssh
            .explain(changed, "[127.0.0.1]:2222")
            .unwrap()
            .starts_with("host key for [127.0.0.1]:2222 does not match the pinned known_hosts"));
        assert_eq!(ssh_host("ssh://git@127.0.0.1:2222/r.git"), "127.0.0.1:2222");
        assert_eq!(ssh_host("git@github.com:org/r.git"), "github.com");
    }
}
