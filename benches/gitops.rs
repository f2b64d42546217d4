//! GitOps fetch benchmark (issue 12), against a real `git daemon` on loopback: (a) a no-op
//! poll (the ref did not move: one connection, the ref advertisement, nothing downloaded) and
//! (b) the first fetch + checkout of a repository of `DW_BENCH_GIT_FILES` files (10 000) beside
//! `git clone --depth 1` of the same repository; (c) a no-op poll over smart HTTPS with basic
//! auth (`git http-backend` behind the tests' TLS server) beside `git ls-remote` of the same
//! URL, with the HTTP requests each makes. Prints a table; not a timed test.
//!
//! Run: `cargo bench --bench gitops`. `DW_BENCH_GIT_TRIALS` (5) sets the trials of (b),
//! `DW_BENCH_GIT_POLLS` (50) those of (a). No Docker involved: the agent's Docker calls on a
//! no-op poll are checked (0) by `tests/git.rs`.

#[path = "../tests/common/git.rs"]
#[allow(dead_code)]
mod git;
#[path = "../tests/common/git_servers.rs"]
#[allow(dead_code)]
mod git_servers;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dockwright::source::git::{checkout, Fetcher, Polled};
use git::{GitDaemon, TestRepo};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let files = env_or("DW_BENCH_GIT_FILES", 10_000);
    let trials = env_or("DW_BENCH_GIT_TRIALS", 5).max(1);
    let polls = env_or("DW_BENCH_GIT_POLLS", 50).max(1);

    let repo = TestRepo::new();
    for i in 0..files {
        repo.write(
            &format!("d{:03}/f{i:05}.yaml", i / 100),
            &format!("# file {i}\nkey: value-{i}\n"),
        );
    }
    let commit = repo.commit("many files");
    let daemon = GitDaemon::serve(&repo);
    let url = daemon.url();

    // (b) first fetch + checkout vs git clone --depth 1.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..trials {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut fetcher = Fetcher::new(dir.path().join("repo.git"), &url, None);
        let polled = fetcher.poll().expect("fetch");
        let Polled::Fetched { commit: got, .. } = polled else {
            panic!("the first poll fetches")
        };
        assert_eq!(got, commit);
        let written =
            checkout::write_commit(fetcher.repo_dir(), &got, &dir.path().join("checkout"))
                .expect("checkout");
        ours.push(started.elapsed());
        assert_eq!(written, files);

        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = Command::new("git")
            .args(["clone", "-q", "--depth", "1", &url])
            .arg(dir.path().join("clone"))
            .output()
            .unwrap();
        theirs.push(started.elapsed());
        assert!(out.status.success(), "{out:?}");
    }

    // (a) no-op polls.
    let dir = tempfile::tempdir().unwrap();
    let mut fetcher = Fetcher::new(dir.path().join("repo.git"), &url, None);
    assert!(matches!(fetcher.poll(), Ok(Polled::Fetched { .. })));
    let mut noop = Vec::new();
    for _ in 0..polls {
        let started = Instant::now();
        assert_eq!(fetcher.poll().expect("poll"), Polled::Unchanged);
        noop.push(started.elapsed());
    }
    let mut ls_remote = Vec::new();
    for _ in 0..polls.min(20) {
        let started = Instant::now();
        let out = Command::new("git")
            .args(["ls-remote", &url, "HEAD"])
            .output()
            .unwrap();
        ls_remote.push(started.elapsed());
        assert!(out.status.success());
    }

    // (c) no-op polls over HTTPS with basic auth.
    let server = git_servers::HttpsGit::serve(&repo.served, "dwbench", "bench-pa55");
    let https = server.url("ops.git");
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("password");
    std::fs::write(&password, "bench-pa55\n").unwrap();
    let auth = dockwright::source::git::GitAuth {
        http: Some(dockwright::source::git::HttpCredentials {
            username: Some("dwbench".into()),
            secret: dockwright::source::git::HttpSecret::PasswordFile(password),
        }),
        ca_file: Some(server.ca.ca_pem.clone()),
        ssh: None,
    };
    let requests =
        || server.served.load(Ordering::SeqCst) + server.unauthorized.load(Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut fetcher =
        Fetcher::new(dir.path().join("repo.git"), &https, None).with_auth(auth.clone());
    assert!(matches!(fetcher.poll(), Ok(Polled::Fetched { .. })));
    let (mut https_noop, before) = (Vec::new(), requests());
    for _ in 0..polls {
        let started = Instant::now();
        assert_eq!(fetcher.poll().expect("poll"), Polled::Unchanged);
        https_noop.push(started.elapsed());
    }
    let ours_requests = (requests() - before) as f64 / polls as f64;
    let helper = "!f() { echo username=dwbench; echo password=bench-pa55; }; f";
    let (mut https_ls, before, runs) = (Vec::new(), requests(), polls.min(20));
    for _ in 0..runs {
        let started = Instant::now();
        let out = Command::new("git")
            .args(["-c", &format!("credential.helper={helper}")])
            .args(["ls-remote", &https, "HEAD"])
            .env("GIT_SSL_CAINFO", &server.ca.ca_pem)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap();
        https_ls.push(started.elapsed());
        assert!(out.status.success(), "{out:?}");
    }
    let theirs_requests = (requests() - before) as f64 / runs as f64;

    let (o, t) = (median(ours), median(theirs));
    println!("| measure | dockwright (gix) | git CLI |");
    println!("|---|---|---|");
    println!(
        "| first fetch + checkout, {files} files (median of {trials}) | {} | {} (`git clone --depth 1`); ratio {:.2}× |",
        ms(o),
        ms(t),
        o.as_secs_f64() / t.as_secs_f64()
    );
    println!(
        "| no-op poll (median of {polls}) | {} | {} (`git ls-remote`) |",
        ms(median(noop)),
        ms(median(ls_remote))
    );
    println!(
        "| no-op poll over HTTPS + basic auth (median of {polls}) | {}, {ours_requests:.1} HTTP requests | {}, {theirs_requests:.1} HTTP requests (`git ls-remote`) |",
        ms(median(https_noop)),
        ms(median(https_ls))
    );
}
