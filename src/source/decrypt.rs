//! age-encrypted secret files: `env[].valueFrom.file` and `files[].source` may name a
//! `*.age` file (the age format, X25519 recipients, binary or ASCII-armored), decrypted in
//! memory with the identities of `--age-identity FILE`. The plaintext goes where a plain
//! file's content goes (the secret value, the bytes copied into the container) and nowhere
//! else: never to disk, a log, an error message, a label or `/state`.
//!
//! Messages name the file and what to do, never a byte of a key or of the plaintext.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Largest identity file read (an age-keygen file is about 190 bytes per key).
const MAX_IDENTITY_FILE_BYTES: u64 = 64 * 1024;

/// Whether `path` names an age-encrypted file (`*.age`).
pub fn is_age_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "age")
}

/// The X25519 identities of an `--age-identity` file. `Debug` names only the file.
pub struct AgeIdentities {
    path: PathBuf,
    identities: Vec<age::x25519::Identity>,
}

impl fmt::Debug for AgeIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeIdentities")
            .field("path", &self.path)
            .field("keys", &self.identities.len())
            .finish()
    }
}

/// The identity file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("age identity file {path}: {message}")]
pub struct IdentityError {
    /// The identity file.
    pub path: PathBuf,
    /// What is wrong with it (never its content).
    pub message: String,
}

impl AgeIdentities {
    /// Reads an identity file as `age-keygen` writes it: `AGE-SECRET-KEY-1…` lines, `#`
    /// comments and blank lines. At least one key is required.
    pub fn from_file(path: &Path) -> Result<Self, IdentityError> {
        let err = |message: String| IdentityError {
            path: path.to_path_buf(),
            message,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(MAX_IDENTITY_FILE_BYTES + 1)
                    .read_to_string(&mut text)
            })
            .map_err(|e| err(e.to_string()))?;
        if text.len() as u64 > MAX_IDENTITY_FILE_BYTES {
            return Err(err(format!(
                "larger than {MAX_IDENTITY_FILE_BYTES} bytes; not an identity file"
            )));
        }
        let identities = Self::parse(&text).map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            identities,
        })
    }

    fn parse(text: &str) -> Result<Vec<age::x25519::Identity>, String> {
        let mut identities = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The parse error would not quote the key, but say only where it is.
            let identity = age::x25519::Identity::from_str(line).map_err(|_| {
                format!(
                    "line {} is not an X25519 identity (AGE-SECRET-KEY-1…); only age-keygen keys are supported",
                    n + 1
                )
            })?;
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err("holds no AGE-SECRET-KEY-1… line".into());
        }
        Ok(identities)
    }

    /// The identity file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public keys (recipients) of the identities, as `age -r` takes them.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// Decrypts `ciphertext` (binary or armored age) into memory, refusing a plaintext
    /// longer than `limit` bytes. The message says why, without any content.
    pub fn decrypt(&self, ciphertext: &[u8], limit: u64) -> Result<Vec<u8>, String> {
        let reader = age::armor::ArmoredReader::new(ciphertext);
        let decryptor = age::Decryptor::new(reader).map_err(|e| describe(&e, self))?;
        if decryptor.is_scrypt() {
            return Err(
                "is encrypted with a passphrase; encrypt it to an X25519 recipient (age -r)".into(),
            );
        }
        let mut plaintext = Vec::new();
        decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| describe(&e, self))?
            .take(limit + 1)
            .read_to_end(&mut plaintext)
            .map_err(|e| format!("cannot be decrypted: {e}"))?;
        if plaintext.len() as u64 > limit {
            return Err(format!("decrypts to more than the limit of {limit} bytes"));
        }
        Ok(plaintext)
    }
}

fn describe(error: &age::DecryptError, identities: &AgeIdentities) -> String {
    match error {
        age::DecryptError::NoMatchingKeys => format!(
            "is not encrypted to any key of the age identity file {} (encrypt it to one of: {})",
            identities.path.display(),
            identities.recipients().join(", ")
        ),
        age::DecryptError::InvalidHeader
        | age::DecryptError::UnknownFormat
        | age::DecryptError::Io(_) => "is not an age-encrypted file (the name ends in .age)".into(),
        other => format!("cannot be decrypted: {other}"),
    }
}

/// A decrypted file.
pub struct Decrypted {
    /// The plaintext (only in memory).
    pub plaintext: Vec<u8>,
    /// `age:sha256:<hex>` of the encrypted bytes: a digest that says nothing of the plaintext.
    pub encrypted_digest: String,
}

/// Reads `path` (at most `limit` encrypted bytes plus the age overhead) and decrypts it.
/// `what` names the kind of file in messages (`secret file`, `files source`). Without
/// identities the message says which flag is missing.
pub fn read_age_file(
    path: &Path,
    identities: Option<&AgeIdentities>,
    limit: u64,
    what: &str,
) -> Result<Decrypted, String> {
    let Some(identities) = identities else {
        return Err(format!(
            "{what} {} is age-encrypted; give the key with --age-identity FILE (agent --git, apply, diff, delete)",
            path.display()
        ));
    };
    // Armor and per-chunk tags add well under a third; the plaintext limit is checked again.
    let max_read = limit.saturating_mul(2).saturating_add(64 * 1024);
    let mut ciphertext = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max_read + 1).read_to_end(&mut ciphertext))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{what} {} does not exist", path.display()),
            _ => format!("cannot read {what} {}: {e}", path.display()),
        })?;
    if ciphertext.len() as u64 > max_read {
        return Err(format!(
            "{what} {} is larger than the limit of {limit} bytes",
            path.display()
        ));
    }
    let plaintext = identities
        .decrypt(&ciphertext, limit)
        .map_err(|message| format!("{what} {} {message}", path.display()))?;
    Ok(Decrypted {
        plaintext,
        encrypted_digest: format!("age:sha256:{}", hex::encode(Sha256::digest(&ciphertext))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys made once with Debian's `age-keygen`, and a file encrypted to the first with
    /// `age -r age15x9p8… -a` (test-only; they protect nothing).
    const KEY: &str = "AGE-SECRET-KEY-1DCX3XU2D6WJEKU95Z4S24Q2TWXTNR4KG0CVL7GZMK2TGKAMPK4XSJ028WK";
    const OTHER_KEY: &str =
        "AGE-SECRET-KEY-1FQ2TMCNJQXNA9L4AK5JWZSJHPL5P3CA3UE20HXG96V8QZ8KQL8USSDJ80R";
    const ARMORED: &str = "-----BEGIN AGE ENCRYPTED FILE-----
YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBMQ0pxMjhBUW4yOE9yYWw0
L0hnRkpia3NrQzZnRDRSTklLM3VKc1VqZXd3Ck5JVmZkYUc1SmlRZnNiakJndFN0
NXBka3kwYW1KcmRVTkxSWkdqUWlNWm8KLS0tIHRFZmFyK0pDcDdzdDBjamRaVTl0
VnFqNjZhbjhNQ29OSTN2ekN4WFhUUmcKsQgE8KJF3D34baKWkCioqcVC8zZhkwsK
7gXLKxTgR9CEwaOZ2Zgu/YFzqmNe
-----END AGE ENCRYPTED FILE-----
";

    fn identities(text: &str) -> AgeIdentities {
        AgeIdentities {
            path: PathBuf::from("/keys/agent.txt"),
            identities: AgeIdentities::parse(text).unwrap(),
        }
    }

    #[test]
    fn identity_files_as_age_keygen_writes_them() {
        let ids = identities(&format!(
            "# created: 2024-01-01T00:00:00Z\n# public key: age1…\n{KEY}\n\n"
        ));
        assert_eq!(ids.identities.len(), 1);
        assert!(ids.recipients()[0].starts_with("age1"));
        let e = AgeIdentities::parse("# only comments\n").err().unwrap();
        assert!(e.contains("no AGE-SECRET-KEY"), "{e}");
        let e = AgeIdentities::parse("AGE-SECRET-KEY-1NOTAKEY\n")
            .err()
            .unwrap();
        assert!(e.contains("line 1") && !e.contains("NOTAKEY"), "{e}");
        assert!(!format!("{ids:?}").contains("AGE-SECRET"));
    }

    #[test]
    fn a_file_from_the_age_tool_decrypts_with_its_key_only() {
        assert_eq!(
            identities(KEY).decrypt(ARMORED.as_bytes(), 1024).unwrap(),
            b"s3cret-value\n"
        );
        let e = identities(KEY).decrypt(ARMORED.as_bytes(), 4).unwrap_err();
        assert!(e.contains("limit of 4 bytes"), "{e}");
        let e = identities(OTHER_KEY)
            .decrypt(ARMORED.as_bytes(), 1024)
            .unwrap_err();
        assert!(
            e.contains("not encrypted to any key") && e.contains("/keys/agent.txt"),
            "{e}"
        );
        assert!(!e.contains("s3cret") && !e.contains("AGE-SECRET"), "{e}");
    }

    /// Through the manifest loader: the secret env gets the plaintext (one newline removed),
    /// the file gets it byte for byte, and the file's digest is of the encrypted bytes.
    #[test]
    fn the_loader_decrypts_secret_env_and_files() {
        use crate::source::{load_paths_with, LoadOptions};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw.age"), ARMORED).unwrap();
        std::fs::write(
            dir.path().join("app.yaml"),
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {name: web}\nspec:\n  image: busybox:1\n  env: [{name: PW, valueFrom: {file: pw.age}}]\n  files: [{path: /etc/pw, source: pw.age}]\n",
        )
        .unwrap();
        let paths = [dir.path().to_path_buf()];
        let errors = load_paths_with(&paths, &LoadOptions::default()).unwrap_err();
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert!(errors.to_string().contains("--age-identity"), "{errors}");
        let options = LoadOptions {
            age: Some(std::sync::Arc::new(identities(KEY))),
        };
        let desired = load_paths_with(&paths, &options).unwrap();
        let config = &desired.containers.values().next().unwrap().config;
        assert_eq!(config.secret_env[0].value.expose(), "s3cret-value");
        assert_eq!(config.files[0].content.as_slice(), b"s3cret-value\n");
        let encrypted = hex::encode(Sha256::digest(ARMORED.as_bytes()));
        assert_eq!(config.files[0].digest, format!("age:sha256:{encrypted}"));
    }

    #[test]
    fn garbage_is_not_decrypted_and_says_so() {
        let ids = identities(KEY);
        let e = ids.decrypt(b"plain text, not age", 1024).unwrap_err();
        assert!(e.contains("not an age-encrypted file"), "{e}");
    }

    #[test]
    fn only_age_names_are_decrypted() {
        assert!(is_age_file(Path::new("secrets/db.password.age")));
        assert!(!is_age_file(Path::new("secrets/db.password")));
        assert!(!is_age_file(Path::new("age")));
    }

    #[test]
    fn without_an_identity_the_flag_is_named() {
        let Err(e) = read_age_file(Path::new("/r/pw.age"), None, 10, "secret file") else {
            panic!("decrypted without an identity");
        };
        assert!(
            e.contains("/r/pw.age") && e.contains("--age-identity"),
            "{e}"
        );
    }
}
