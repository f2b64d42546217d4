//! A second, real Docker daemon on this machine, standing in for another node's: its own socket,
//! data root, exec root (and so its own containerd), cgroup parent and bridge, and no iptables
//! rules. The bridge is one the test creates (`dwtbr<index>`, 10.213.<index>.0/24): a daemon
//! started with `--bridge none` deletes the machine's `docker0`, which the main daemon needs.
//! The test image is loaded into it from the main daemon, so nothing is pulled. Dropping it
//! removes its containers, stops it and deletes everything it made.
//!
//! Needs root (dockerd does); the tests that use it run on machines where the tests already
//! talk to the root daemon.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{run, TEST_IMAGE};

/// A running extra daemon.
pub struct NodeDaemon {
    dir: PathBuf,
    bridge: String,
    child: Child,
}

impl NodeDaemon {
    /// Starts daemon number `index` (1..=250; one per index at a time on the machine) under a
    /// fresh directory in `parent` and loads the test image into it.
    pub fn start(parent: &Path, name: &str, index: u8) -> NodeDaemon {
        let dir = parent.join(format!("dockerd-{name}"));
        let bridge = format!("dwtbr{index}");
        let _ = run(Command::new("ip").args(["link", "delete", &bridge]));
        for args in [
            vec!["link", "add", bridge.as_str(), "type", "bridge"],
            vec![
                "addr",
                "add",
                &format!("10.213.{index}.1/24"),
                "dev",
                &bridge,
            ],
            vec!["link", "set", bridge.as_str(), "up"],
        ] {
            let out = run(Command::new("ip").args(&args));
            assert!(out.success(), "ip {args:?}: {out}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // An empty config file: the machine's /etc/docker/daemon.json sets data-root, which
        // would clash with the flag.
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let socket = dir.join("docker.sock");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bridge", &bridge, "--iptables=false", "--ip-masq=false"])
            .args(["--cgroup-parent", &format!("dockwright-test-{name}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start dockerd for {name}: {e}"));
        let daemon = NodeDaemon { dir, bridge, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !daemon.docker(&["version"]).success() {
            assert!(
                Instant::now() < deadline,
                "dockerd for {name} did not come up:\n{}",
                std::fs::read_to_string(daemon.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let load = run(Command::new("sh").arg("-c").arg(format!(
            "docker save {TEST_IMAGE} | docker -H {} load",
            daemon.host()
        )));
        assert!(load.success(), "load the test image into {name}: {load}");
        daemon
    }

    /// `DOCKER_HOST` for this daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// The docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> super::Run {
        run(Command::new("docker").arg("-H").arg(self.host()).args(args))
    }
}

impl Drop for NodeDaemon {
    fn drop(&mut self) {
        // Containers first (a `sleep` ignores SIGTERM as PID 1, which would hold the daemon's
        // shutdown for its whole timeout), then the daemon, then whatever it left mounted.
        let ids = self.docker(&["ps", "-aq"]).stdout;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let exec = self.dir.join("exec");
        let _ = Command::new("pkill")
            .args(["-9", "-f", &format!("address {}", exec.display())])
            .status();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in ours {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = run(Command::new("ip").args(["link", "delete", &self.bridge]));
    }
}
