//! Git fixtures for the GitOps tests and benchmark: a repository the test commits to (with the
//! `git` CLI, never with the code under test) and a real `git daemon` serving it on a loopback
//! port, which can be stopped and started again on the same port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `git args` in `dir` with a fixed identity; panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=dwtest",
            "-c",
            "user.email=dwtest@localhost",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository (`<root>/srv/ops.git`, what the server serves) and a working clone
/// (`<root>/work`) the test edits, commits and pushes from.
pub struct TestRepo {
    _root: tempfile::TempDir,
    /// The directory `git daemon` serves (its base path).
    pub served: PathBuf,
    /// The bare repository.
    pub bare: PathBuf,
    /// The working clone.
    pub work: PathBuf,
}

impl TestRepo {
    /// An empty bare repository with `main` as HEAD, and its clone.
    pub fn new() -> TestRepo {
        let root = tempfile::Builder::new().prefix("dwgit").tempdir().unwrap();
        let served = root.path().join("srv");
        let bare = served.join("ops.git");
        let work = root.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        TestRepo {
            _root: root,
            served,
            bare,
            work,
        }
    }

    /// Writes `file` (relative, parents created) in the working clone.
    pub fn write(&self, file: &str, text: &str) {
        let path = self.work.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Removes `file` from the working clone.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.work.join(file)).unwrap();
    }

    /// Commits everything and pushes `main`; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "origin", "main"]);
        self.head()
    }

    /// The working clone's HEAD commit.
    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Force-pushes `commit` as `main` (and resets the clone to it).
    pub fn force_push(&self, commit: &str) {
        git(&self.work, &["reset", "-q", "--hard", commit]);
        git(&self.work, &["push", "-q", "-f", "origin", "main"]);
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

/// A `git daemon` on a loopback port serving a [`TestRepo`]; killed on drop.
pub struct GitDaemon {
    served: PathBuf,
    /// The address it listens on (kept across [`GitDaemon::stop`] and [`GitDaemon::start`]).
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl GitDaemon {
    /// Starts serving `repo` on a free loopback port.
    pub fn serve(repo: &TestRepo) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut daemon = GitDaemon {
            served: repo.served.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
        };
        daemon.start();
        daemon
    }

    /// `git://127.0.0.1:PORT/ops.git`.
    pub fn url(&self) -> String {
        format!("git://{}/ops.git", self.addr)
    }

    /// Starts the daemon (again) and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={}", self.addr.port()))
            .arg(format!("--base-path={}", self.served.display()))
            .arg(&self.served)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: stopping it kills the per-connection children too, which
            // hold the listening socket (a killed parent alone leaves the port accepting).
            .process_group(0)
            .spawn()
            .expect("spawn git daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "git daemon never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon and its children (SIGKILL to the process group).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .output();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
