//! The `dockwright` command: parses flags and calls the library. No logic lives here.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use dockwright::adoptions::Adoptions;
use dockwright::converge::{self, ConvergeOptions};
use dockwright::credentials::Credentials;
use dockwright::desired::Kind;
use dockwright::docker::{
    Docker, DockerRunner, ImageObserver, LogOptions, LogSink, TerminalBuildOutput,
    TerminalPullProgress,
};
use dockwright::duration::parse_duration;
use dockwright::image_records::{default_state_dir, ImageRecords};
use dockwright::report::{self, GetFormat};
use dockwright::source::SourceId;
use dockwright::telemetry::{self, LogFormat};
use dockwright::{labels, source};
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  dockwright apply -f examples/            converge the daemon to the manifests, once
  dockwright diff -f app.yaml              show what apply would do (exit 1 when it would change something)
  dockwright apply -f app/ --prune         also remove containers app/ created and no longer declares
  dockwright prune --orphans --dry-run     list containers no source declared (made before sources)
  dockwright get -o json                   list managed containers
  dockwright logs web -f --tail 20         follow the logs of every replica of `web`
  dockwright delete -f app.yaml            remove the containers the manifests declare
  dockwright agent --manifests /etc/dockwright
                                           keep a directory converged (metrics on 127.0.0.1:9090)
  dockwright convert docker-compose.yml -o app/
                                           turn a Compose file into manifests
  dockwright reference > reference.md      every manifest field, as Markdown
  dockwright completions bash > /etc/bash_completion.d/dockwright";

/// dockwright: declare Docker images and containers in Kubernetes-style YAML; dockwright
/// converges the daemon to them and never touches what it does not own.
#[derive(Parser, Debug)]
#[command(name = "dockwright", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DOCKWRIGHT_LOG_FORMAT")]
    log_format: LogFormat,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Converge the daemon to the manifests once, then exit (0 = converged).
    Apply(ApplyArgs),
    /// Print what `apply` would do; exit 0 = no changes, 1 = changes, 2 = error.
    Diff(DiffArgs),
    /// Remove the containers the manifests declare (only ones carrying our owner label).
    Delete(DeleteArgs),
    /// List managed containers with state, IDs, ports, health and exit codes.
    Get(GetArgs),
    /// Print the logs of a managed container resource (all replicas, prefixed).
    Logs(LogsArgs),
    /// Run continuously: watch a manifest directory and the daemon, keep them converged.
    Agent(Box<AgentArgs>),
    /// Show what a running agent last saw: phase, replicas, waits and errors per resource.
    Status(StatusArgs),
    /// Remove dangling images this owner built or pulled that no container uses.
    Prune(PruneArgs),
    /// Print the CustomResourceDefinitions generated from the manifest types.
    Crd,
    /// Print the manifest reference (Markdown, every field) generated from the CRD schemas.
    Reference,
    /// Print a shell completion script: `dockwright completions bash > /etc/bash_completion.d/dockwright`.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Turn a docker-compose.yml into dockwright manifests (warnings name what cannot be expressed).
    Convert(ConvertArgs),
    /// Kubernetes mode: the leader-elected placement controller (one `Placement` per resource
    /// and node, aggregate status on `Container`s and `Image`s).
    Controller(ControllerArgs),
}

#[derive(Args, Debug)]
struct ControllerArgs {
    /// Address for /metrics, /healthz, /readyz and /state (read-only).
    #[arg(long, default_value = "127.0.0.1:9091")]
    listen: std::net::SocketAddr,
    /// Namespace of the leader-election Lease (the chart passes the release namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "dockwright-controller")]
    lease_name: String,
    /// This replica's identity in the Lease (default: the pod name, else host name and PID).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a Lease record stays valid without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// Parents reconciled at once (API calls in flight).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// Directory of manifests to keep converged (watched; edits apply within a second).
    #[arg(
        long,
        required_unless_present_any = ["kubernetes", "git"],
        conflicts_with_all = ["kubernetes", "git"]
    )]
    manifests: Option<PathBuf>,
    /// Follow a git repository instead of a directory: `https://`, `ssh://` (or scp-like
    /// `user@host:path`), `git://` or `file://` (the ref is polled; a new revision applies only
    /// once all of its manifests parse and validate).
    #[arg(long, value_name = "URL", conflicts_with = "kubernetes")]
    git: Option<String>,
    /// Branch or tag to follow (default: the remote's HEAD branch).
    #[arg(long, value_name = "REF", requires = "git")]
    git_ref: Option<String>,
    /// Directory of the manifests inside the repository (default: the root).
    #[arg(long, value_name = "DIR", requires = "git")]
    git_path: Option<PathBuf>,
    /// How often the ref is polled (one ref advertisement; nothing is downloaded unless it moved).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    git_poll: Duration,
    /// Serve `POST /hooks/git` here: a call signed with --git-webhook-secret (GitHub, Gitea,
    /// Forgejo HMAC; GitLab token) fetches at once instead of at the next poll.
    #[arg(long, value_name = "ADDR", requires_all = ["git", "git_webhook_secret"])]
    git_webhook_listen: Option<std::net::SocketAddr>,
    /// File holding the webhook's shared secret.
    #[arg(long, value_name = "FILE", requires = "git_webhook_listen")]
    git_webhook_secret: Option<PathBuf>,
    /// HTTPS user name (with --git-password-file; with --git-token-file the default is
    /// `x-access-token`).
    #[arg(long, value_name = "NAME", requires = "git")]
    git_username: Option<String>,
    /// File holding the HTTPS password of --git-username (read at every poll).
    #[arg(long, value_name = "FILE", requires_all = ["git", "git_username"], conflicts_with = "git_token_file")]
    git_password_file: Option<PathBuf>,
    /// File holding an HTTPS access token (read at every poll): sent as the basic-auth
    /// password, or as a bearer token to a server that offers only that.
    #[arg(long, value_name = "FILE", requires = "git")]
    git_token_file: Option<PathBuf>,
    /// PEM file of the CA(s) to trust for an https:// server instead of the system roots.
    #[arg(long, value_name = "FILE", requires = "git")]
    git_ca_file: Option<PathBuf>,
    /// Private key for SSH URLs (a deploy key).
    #[arg(long, value_name = "FILE", requires = "git_known_hosts")]
    git_ssh_key: Option<PathBuf>,
    /// known_hosts file pinning the SSH server's host key (required for SSH URLs; a key that
    /// does not match fails the fetch; nothing is ever trusted on first use).
    #[arg(long, value_name = "FILE", requires = "git")]
    git_known_hosts: Option<PathBuf>,
    /// age identity file (`age-keygen` output) decrypting `*.age` secrets in the repository
    /// (`env[].valueFrom.file`, `files[].source`).
    #[arg(long, value_name = "FILE", requires = "git")]
    age_identity: Option<PathBuf>,
    /// Reconcile this node's daemon from the `Container`/`Image` custom resources placed on
    /// it (in-cluster service account, else KUBECONFIG) instead of a manifest directory.
    #[arg(long)]
    kubernetes: bool,
    /// This agent's Node name (Kubernetes mode): placement and the per-node finalizer.
    #[arg(long, env = "NODE_NAME", requires = "kubernetes")]
    node_name: Option<String>,
    #[command(flatten)]
    owner: OwnerArg,
    #[command(flatten)]
    source: SourceArgs,
    /// Address for /metrics, /healthz, /readyz and /state (read-only).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: std::net::SocketAddr,
    /// Full resync interval, the safety net behind the Docker events stream.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    resync: Duration,
    /// First retry delay of a failing resource (doubles up to --backoff-max).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    backoff_initial: Duration,
    /// Longest retry delay of a failing resource.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    backoff_max: Duration,
    /// Daemon actions in flight at once per group (default: sized for the daemon's CPUs).
    #[arg(long)]
    concurrency: Option<usize>,
    #[command(flatten)]
    policy: PolicyArg,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct PolicyArg {
    /// Policy file loosening the safe default (privileged, host namespaces, capabilities,
    /// devices, bind mounts, the Docker socket); without it all of those are refused.
    #[arg(long, value_name = "FILE", env = "DOCKWRIGHT_POLICY")]
    policy: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// The agent's --listen address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    agent: std::net::SocketAddr,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = GetFormat::Table)]
    output: GetFormat,
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// The Compose file.
    file: PathBuf,
    /// Directory to write one manifest per service, network and volume into (host paths are
    /// then written relative to it); default: print one stream to stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Activate a Compose profile (repeatable; default: `COMPOSE_PROFILES`). Services with
    /// profiles are converted only when one of theirs is active.
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
}

#[derive(Args, Debug)]
struct Sources {
    /// Manifest files or directories (recursive; *.yaml, *.yml; multi-document).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    paths: Vec<PathBuf>,
    /// age identity file (`age-keygen` output) decrypting `*.age` secret files
    /// (`env[].valueFrom.file`, `files[].source`).
    #[arg(long, value_name = "FILE")]
    age_identity: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SourceArgs {
    /// Name of this source (the `dockwright.dev/source` label on what it creates; pruning
    /// only removes what the same owner and source created). Default: the canonical path of
    /// the manifests' directory (Kubernetes mode: `kubernetes`). Name it so a renamed or
    /// moved directory keeps its containers.
    #[arg(long, value_name = "NAME", env = "DOCKWRIGHT_SOURCE")]
    source: Option<String>,
    /// Take over resources this source declares whose containers another source of the same
    /// owner created: recorded as this source's, without a recreate (logged and shown by
    /// `diff`). Without it such a resource is an error naming the other source.
    #[arg(long)]
    take_over: bool,
}

#[derive(Args, Debug)]
struct OwnerArg {
    /// Owner label value: instances with different owners share a daemon without seeing each other.
    #[arg(long, env = "DOCKWRIGHT_OWNER", default_value = labels::DEFAULT_OWNER)]
    owner: String,
}

#[derive(Args, Debug)]
struct RegistryArgs {
    /// Docker config file (or directory holding config.json) with registry credentials
    /// (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    docker_config: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PruneArgs {
    #[command(flatten)]
    owner: OwnerArg,
    /// Remove the owner's containers that no source declared: made before source labels
    /// existed (`dockwright.dev/source`) and never adopted by a source declaring them. Images
    /// are left alone.
    #[arg(long)]
    orphans: bool,
    /// With --orphans: list them and remove nothing.
    #[arg(long, requires = "orphans")]
    dry_run: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct ApplyArgs {
    #[command(flatten)]
    sources: Sources,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    owner: OwnerArg,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Also remove managed containers whose resource is no longer declared (only ones this
    /// source created: same owner and source).
    #[arg(long)]
    prune: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Daemon actions in flight at once (default: sized for the daemon's CPUs).
    #[arg(long)]
    concurrency: Option<usize>,
    #[command(flatten)]
    policy: PolicyArg,
}

#[derive(Args, Debug)]
struct DiffArgs {
    #[command(flatten)]
    sources: Sources,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    owner: OwnerArg,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Include removals that `apply --prune` would make.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    policy: PolicyArg,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    sources: Sources,
    #[command(flatten)]
    owner: OwnerArg,
}

#[derive(Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    owner: OwnerArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = GetFormat::Table)]
    output: GetFormat,
    /// Ask a running agent (its --listen address) instead of the daemon: adds phases, waits,
    /// last errors and back-off to what the daemon shows.
    #[arg(long)]
    agent: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
struct LogsArgs {
    /// `Container` resource name (`name` or `namespace/name`).
    name: String,
    #[command(flatten)]
    owner: OwnerArg,
    /// Keep streaming new output.
    #[arg(short, long)]
    follow: bool,
    /// Lines from the end of each replica's log (default: all).
    #[arg(long)]
    tail: Option<u64>,
}

/// Exit status for bad input or an unreachable daemon (kubectl's convention for `diff`).
const EXIT_ERROR: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent says what it does: each daemon write at info by default.
    let level = match (
        cli.verbose,
        matches!(cli.command, Command::Agent(_) | Command::Controller(_)),
    ) {
        (0, false) => "warn",
        (0, true) | (1, _) => "warn,dockwright=info",
        _ => "debug",
    };
    telemetry::init(cli.log_format, level);
    dockwright::tls::install_crypto_provider();
    match run(cli.command).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Apply(args) => apply(args).await,
        Command::Diff(args) => diff(args).await,
        Command::Delete(args) => delete(args).await,
        Command::Get(args) => get(args).await,
        Command::Logs(args) => logs(args).await,
        Command::Convert(args) => convert(args),
        Command::Agent(args) => agent(*args).await,
        Command::Controller(args) => controller(args).await,
        Command::Status(args) => status(args).await,
        Command::Prune(args) => prune(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "dockwright",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Reference => {
            print!(
                "{}",
                dockwright::api::reference_markdown().context("rendering the reference")?
            );
            Ok(0)
        }
        Command::Crd => {
            print!(
                "{}",
                dockwright::api::crds_yaml().context("rendering the CRDs")?
            );
            Ok(0)
        }
    }
}

fn load(sources: &Sources) -> anyhow::Result<dockwright::desired::DesiredState> {
    let options = load_options(sources.age_identity.as_deref())?;
    source::load_paths_with(&sources.paths, &options).map_err(|errors| {
        anyhow::anyhow!("{errors}\nno changes were made: fix the manifests and run again")
    })
}

/// The policy (`--policy`, else the safe default) and the owner's secret key, which seals
/// secret env values (see dockwright::secrets). A key that cannot be loaded only holds back
/// the resources that have secret values.
fn gate(arg: &PolicyArg, owner: &str) -> anyhow::Result<dockwright::policy::Gate> {
    use dockwright::policy::{Gate, Policy};
    let policy = match &arg.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    let key = match default_state_dir(owner) {
        Some(dir) => match dockwright::secrets::SecretKey::load_or_create(&dir) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(%error, "no secret key: resources with secret env values are held back");
                None
            }
        },
        None => {
            tracing::warn!("neither XDG_STATE_HOME nor HOME is set: no secret key, resources with secret env values are held back");
            None
        }
    };
    Ok(Gate::new(policy, key))
}

async fn connect() -> anyhow::Result<Docker> {
    Ok(Docker::connect().await?)
}

/// Connects, keeping `owner`'s adoption records (see `dockwright::adoptions`) when it has a
/// state directory.
async fn connect_as(owner: &str) -> anyhow::Result<Docker> {
    Ok(with_adoptions(connect().await?, owner))
}

fn with_adoptions(docker: Docker, owner: &str) -> Docker {
    match default_state_dir(owner) {
        Some(dir) => docker.with_adoptions(Arc::new(Adoptions::new(dir))),
        None => {
            tracing::warn!("neither XDG_STATE_HOME nor HOME is set: containers without a source label cannot be adopted, nor taken over");
            docker
        }
    }
}

/// This run's source: `--source NAME`, else the manifests' directory.
fn source_of(arg: &SourceArgs, paths: &[PathBuf]) -> anyhow::Result<SourceId> {
    Ok(match &arg.source {
        Some(name) => SourceId::named(name.clone())?,
        None => SourceId::of_paths(paths)?,
    })
}

/// Sets the source, take-over and adoption settings of a pass.
fn scope(options: &mut ConvergeOptions, source: &SourceId, arg: &SourceArgs, docker: &Docker) {
    options.source = source.as_str().to_string();
    options.take_over = arg.take_over;
    options.record_adoptions = docker.adoptions().is_some();
    if arg.take_over {
        tracing::warn!(source = %source, "--take-over: resources declared here are taken over from any other source of the same owner");
    }
}

/// The image-aware observer of one pass (registry digest checks done, failures printed),
/// the credentials and the pulled-image records of the owner.
async fn image_observer(
    docker: &Docker,
    desired: &dockwright::desired::DesiredState,
    owner: &str,
    registry: &RegistryArgs,
    prune: bool,
) -> (ImageObserver, Credentials, Option<Arc<ImageRecords>>, bool) {
    let credentials = Credentials::docker_config(registry.docker_config.as_deref());
    let records = default_state_dir(owner).map(|dir| Arc::new(ImageRecords::new(dir)));
    let (observer, failures) = ImageObserver::for_pass(
        docker.clone(),
        &credentials,
        desired,
        prune,
        records.clone(),
    )
    .await;
    for failure in &failures {
        eprintln!("error: {}: {}", failure.resource, failure.error);
    }
    (observer, credentials, records, failures.is_empty())
}

async fn prune(args: PruneArgs) -> anyhow::Result<u8> {
    let owner = args.owner.owner.clone();
    let docker = connect_as(&owner).await?;
    if args.orphans {
        let runner = DockerRunner::new(docker.clone(), owner.clone());
        if args.dry_run {
            let plan = dockwright::prune::plan_orphans(&docker, &owner).await?;
            let text = report::plan_text(&plan);
            print!(
                "{}",
                if text.is_empty() {
                    "no orphans\n".to_string()
                } else {
                    text
                }
            );
            return Ok(0);
        }
        let mut print =
            |r: &dockwright::execute::ActionReport| println!("{}", report::action_line(r));
        let result =
            dockwright::prune::prune_orphans(&docker, &runner, &owner, None, &mut print).await?;
        return Ok(finish(&result, "no orphans", true));
    }
    let empty = dockwright::desired::DesiredState::default();
    let (observer, credentials, records, _) =
        image_observer(&docker, &empty, &owner, &args.registry, true).await;
    let mut runner = DockerRunner::new(docker.clone(), owner.clone()).with_credentials(credentials);
    if let Some(records) = records {
        runner = runner.with_image_records(records);
    }
    let mut print = |r: &dockwright::execute::ActionReport| println!("{}", report::action_line(r));
    let result =
        dockwright::prune::prune_dangling(&observer, &runner, &owner, None, &mut print).await?;
    Ok(finish(&result, "nothing to prune", true))
}

async fn apply(args: ApplyArgs) -> anyhow::Result<u8> {
    let desired = load(&args.sources)?;
    let source = source_of(&args.source, &args.sources.paths)?;
    let docker = connect_as(&args.owner.owner).await?;
    let mut options = ConvergeOptions::new(args.owner.owner.clone());
    scope(&mut options, &source, &args.source, &docker);
    options.prune = args.prune;
    options.concurrency = args.concurrency;
    options.gate = gate(&args.policy, &options.owner)?;
    let (observer, credentials, records, checks_ok) = image_observer(
        &docker,
        &desired,
        &options.owner,
        &args.registry,
        args.prune,
    )
    .await;
    if args.dry_run {
        let (plan, _) = converge::plan_only(&observer, &desired, &options).await?;
        let text = report::plan_text(&plan);
        print!(
            "{}",
            if text.is_empty() {
                "no changes\n".to_string()
            } else {
                text
            }
        );
        return Ok(0);
    }
    let mut runner = DockerRunner::new(docker.clone(), args.owner.owner.clone())
        .with_source(&source)
        .with_credentials(credentials);
    if let Some(records) = records {
        runner = runner.with_image_records(records);
    }
    if std::io::stderr().is_terminal() {
        runner = runner
            .with_progress(Arc::new(TerminalPullProgress::new()))
            .with_build_output(Arc::new(TerminalBuildOutput));
    }
    let mut stdout = std::io::stdout();
    let mut print = |r: &dockwright::execute::ActionReport| {
        if r.outcome != dockwright::execute::Outcome::Deferred {
            let _ = writeln!(stdout, "{}", report::action_line(r));
        }
    };
    let result = converge::converge(&observer, &runner, &desired, &options, &mut print).await?;
    Ok(finish(&result, "no changes", checks_ok))
}

/// Ends `apply`, `delete` and `prune`: `nothing` when the pass had nothing to do, else the
/// summary (on stderr when something failed or is blocked); the exit code is 0 only when the
/// pass converged and `checks_ok`.
fn finish(result: &converge::ConvergeReport, nothing: &str, checks_ok: bool) -> u8 {
    let ok = result.converged() && checks_ok;
    if result.actions.is_empty() && result.blocked.is_empty() {
        println!("{nothing}");
    } else {
        let summary = report::summary_text(&result.actions, &result.blocked);
        if ok {
            print!("{summary}");
        } else {
            eprint!("{summary}");
        }
    }
    u8::from(!ok)
}

/// Logs `message` at the first SIGINT/SIGTERM; each call of the returned function gives a
/// future that completes from then on (one per task that must stop).
fn on_shutdown(
    message: &'static str,
) -> impl Fn() -> futures::future::BoxFuture<'static, ()> + Clone {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("{message}");
        let _ = stop_tx.send(true);
    });
    move || -> futures::future::BoxFuture<'static, ()> {
        let mut rx = stop_rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
    }
}

async fn agent(args: AgentArgs) -> anyhow::Result<u8> {
    use dockwright::agent::{self, AgentOptions, BackoffPolicy};
    use dockwright::metrics::Metrics;
    use dockwright::server::{AgentState, Server};
    use dockwright::source::watch::{ManifestDirWatcher, WatchOptions};

    let stopped = on_shutdown("shutdown requested; finishing in-flight daemon calls");

    let metrics = Arc::new(Metrics::new().context("setting up metrics")?);
    let state = AgentState::new(Arc::clone(&metrics));
    let server = Server::bind(args.listen).await?;
    tracing::info!(listen = %server.local_addr(), "agent endpoints");
    let server = tokio::spawn(server.serve(state.clone(), stopped()));

    if args.kubernetes {
        return kubernetes_agent(args, metrics, state, server, stopped).await;
    }
    let (source, source_id) = if let Some(url) = &args.git {
        let path = args.git_path.as_deref().unwrap_or(Path::new(""));
        let id = match &args.source.source {
            Some(name) => SourceId::named(name.clone())?,
            None => SourceId::git(url, &path.to_string_lossy())?,
        };
        let handle = start_git(&args, url, &state, &metrics, stopped(), stopped()).await?;
        (AgentSource::Git(handle), id)
    } else {
        let manifests = args
            .manifests
            .as_deref()
            .context("--manifests, --git or --kubernetes is required")?;
        let id = match &args.source.source {
            Some(name) => SourceId::named(name.clone())?,
            None => SourceId::directory(manifests)?,
        };
        let watcher = ManifestDirWatcher::initial_load(manifests)?;
        for error in &watcher.snapshot().errors {
            tracing::warn!(%error, "manifest problem; its last good version (if any) stays in effect");
        }
        (
            AgentSource::Dir(watcher.watch(WatchOptions::default())?),
            id,
        )
    };
    tracing::info!(source = %source_id, owner = %args.owner.owner, "source");
    let desired = match &source {
        AgentSource::Dir(handle) => handle.subscribe(),
        AgentSource::Git(handle) => handle.subscribe(),
    };
    let docker = tokio::select! {
        docker = connect_with_retry() => with_adoptions(docker, &args.owner.owner),
        () = stopped() => return Ok(0),
    };
    {
        let docker = docker.clone();
        metrics.set_docker_request_source(Box::new(move || docker.request_counts()));
    }
    let mut options = AgentOptions::new(args.owner.owner.clone());
    options.source = source_id;
    options.take_over = args.source.take_over;
    options.record_adoptions = docker.adoptions().is_some();
    if options.take_over {
        tracing::warn!(source = %options.source, "--take-over: resources declared here are taken over from any other source of the same owner");
    }
    options.gate = gate(&args.policy, &options.owner)?;
    options.resync = args.resync;
    options.backoff = BackoffPolicy {
        initial: args.backoff_initial,
        max: args.backoff_max,
    };
    options.concurrency = args.concurrency;
    options.credentials = Credentials::docker_config(args.registry.docker_config.as_deref());
    options.image_records =
        default_state_dir(&options.owner).map(|dir| Arc::new(ImageRecords::new(dir)));
    agent::run(docker, desired, options, metrics, state, stopped()).await?;
    let _ = server.await;
    drop(source);
    Ok(0)
}

/// The load options of `--age-identity FILE`: the identities are read once, at start.
fn load_options(age_identity: Option<&Path>) -> anyhow::Result<source::LoadOptions> {
    let age = match age_identity {
        Some(path) => Some(Arc::new(
            source::decrypt::AgeIdentities::from_file(path)
                .map_err(|e| anyhow::anyhow!("--age-identity: {e}"))?,
        )),
        None => None,
    };
    Ok(source::LoadOptions { age })
}

/// Where the agent's desired state comes from (kept alive while the agent runs).
enum AgentSource {
    Dir(dockwright::source::watch::WatchHandle),
    Git(dockwright::source::git::GitHandle),
}

/// The git source's authentication flags (paths only; the files are read when used).
fn git_auth(args: &AgentArgs) -> dockwright::source::git::GitAuth {
    use dockwright::source::git::{GitAuth, HttpCredentials, HttpSecret, SshAuth};
    let secret = match (&args.git_password_file, &args.git_token_file) {
        (Some(p), _) => Some(HttpSecret::PasswordFile(p.clone())),
        (None, Some(t)) => Some(HttpSecret::TokenFile(t.clone())),
        (None, None) => None,
    };
    GitAuth {
        http: secret.map(|secret| HttpCredentials {
            username: args.git_username.clone(),
            secret,
        }),
        ca_file: args.git_ca_file.clone(),
        ssh: args.git_known_hosts.as_ref().map(|known_hosts| SshAuth {
            key: args.git_ssh_key.clone(),
            known_hosts: known_hosts.clone(),
        }),
    }
}

/// Starts following `--git URL`: resumes the last applied revision, polls once before the
/// agent starts (so the first pass sees the repository, unless the server is down), and keeps
/// `/state` and the `dockwright_source_*` metrics in step with the follower's status.
async fn start_git(
    args: &AgentArgs,
    url: &str,
    state: &dockwright::server::AgentState,
    metrics: &Arc<dockwright::metrics::Metrics>,
    stopped: futures::future::BoxFuture<'static, ()>,
    stopped_webhook: futures::future::BoxFuture<'static, ()>,
) -> anyhow::Result<dockwright::source::git::GitHandle> {
    use dockwright::source::git::{self, GitFollower, GitOptions};

    let auth = git_auth(args);
    if args.git_username.is_some() && auth.http.is_none() {
        anyhow::bail!("--git-username needs --git-password-file or --git-token-file");
    }
    git::check_transport(url, &auth).map_err(|e| anyhow::anyhow!("--git {e}"))?;
    let path = git::check_path(args.git_path.as_deref().unwrap_or(Path::new("")))
        .map_err(|e| anyhow::anyhow!("--git-path: {e}"))?;
    let state_dir = default_state_dir(&args.owner.owner)
        .context("--git needs a state directory: set XDG_STATE_HOME or HOME")?
        .join("git");
    let options = GitOptions {
        url: url.to_string(),
        reference: args.git_ref.clone(),
        path,
        poll: args.git_poll,
        state_dir,
        auth,
        load: load_options(args.age_identity.as_deref())?,
    };
    tracing::info!(url = %options.display_url(), reference = options.reference_label(), identity = %options.identity(), "following a git repository");
    let webhook = match (&args.git_webhook_listen, &args.git_webhook_secret) {
        (Some(addr), Some(secret)) => {
            let secret = git::webhook::WebhookSecret::from_file(secret)
                .map_err(|e| anyhow::anyhow!("--git-webhook-secret {e}"))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--git-webhook-listen {addr}"))?;
            Some((listener, secret))
        }
        _ => None,
    };
    let handle = GitFollower::new(options)
        .start()
        .context("starting the git follower thread")?;
    if let Some((listener, secret)) = webhook {
        let addr = listener.local_addr().context("webhook listener address")?;
        tracing::info!(listen = %addr, path = git::webhook::HOOK_PATH, "git webhook endpoint");
        tokio::spawn(git::webhook::serve(
            listener,
            secret,
            handle.trigger_fn(),
            stopped_webhook,
        ));
    }
    let mut status = handle.status();
    {
        let state = state.clone();
        let metrics = Arc::clone(metrics);
        let mut status = handle.status();
        tokio::spawn(async move {
            loop {
                let current = status.borrow_and_update().clone();
                metrics.sync_source(&current);
                state.publish_source(&current);
                if status.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    // The first poll (bounded by the server's answer or a shutdown).
    tokio::select! {
        _ = status.wait_for(|s| s.fetches + s.fetch_failures > 0) => {}
        () = stopped => {}
    }
    Ok(handle)
}

/// `agent --kubernetes`: the same endpoints and metrics, the kube controllers instead of the
/// manifest watcher and agent loop.
async fn kubernetes_agent<S, F>(
    args: AgentArgs,
    metrics: Arc<dockwright::metrics::Metrics>,
    state: dockwright::server::AgentState,
    server: tokio::task::JoinHandle<S>,
    stopped: F,
) -> anyhow::Result<u8>
where
    F: Fn() -> futures::future::BoxFuture<'static, ()> + Clone + Send + 'static,
{
    use dockwright::agent::BackoffPolicy;
    use dockwright::kubernetes::NodeOptions;

    let node_name = args
        .node_name
        .clone()
        .context("--kubernetes needs --node-name (or NODE_NAME)")?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster service account or KUBECONFIG)")?;
    let docker = tokio::select! {
        // Adoption records only where the operator gave the pod a state directory (see the
        // image records below); without, unlabelled containers are adopted without a record.
        docker = connect_with_retry() => match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            Some(_) => with_adoptions(docker, &args.owner.owner),
            None => docker,
        },
        () = stopped() => return Ok(0),
    };
    {
        let docker = docker.clone();
        metrics.set_docker_request_source(Box::new(move || docker.request_counts()));
    }
    if args.source.take_over {
        anyhow::bail!("--take-over is for file and git sources; in Kubernetes mode remove the resource from the other source instead");
    }
    let mut options = NodeOptions::new(node_name, args.owner.owner.clone());
    let agent = &mut options.agent;
    agent.source = match &args.source.source {
        Some(name) => dockwright::source::SourceId::named(name.clone())?,
        None => dockwright::source::SourceId::kubernetes(),
    };
    agent.gate = gate(&args.policy, &agent.owner)?;
    // The pod does not share the node's filesystem: judge host paths as written, never
    // through the pod's own symlinks.
    agent.gate.paths = dockwright::policy::PathResolver::Lexical;
    agent.resync = args.resync;
    agent.backoff = BackoffPolicy {
        initial: args.backoff_initial,
        max: args.backoff_max,
    };
    agent.concurrency = args.concurrency;
    agent.record_adoptions = docker.adoptions().is_some();
    agent.credentials = dockwright::credentials::Credentials::docker_config(None);
    // Pulls are recorded (for `dockwright prune` on the node) only where the operator gave
    // the pod a state directory: the pod's own filesystem is read-only or lost on restart.
    agent.image_records = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .and_then(|_| default_state_dir(&agent.owner))
        .map(|dir| Arc::new(ImageRecords::new(dir)));
    dockwright::kubernetes::run(client, docker, options, metrics, state, stopped()).await?;
    let _ = server.await;
    Ok(0)
}

/// `dockwright controller`: campaigns for the Lease and, while leading, keeps the `Placement`s
/// and the parents' aggregate status; serves the read-only endpoints all along.
async fn controller(args: ControllerArgs) -> anyhow::Result<u8> {
    use dockwright::kubernetes::controller::{
        self, ControllerMetrics, ControllerOptions, LeaseOptions, WorkerOptions,
    };
    use dockwright::metrics::Metrics;
    use dockwright::server::{AgentState, Server};

    let stopped = on_shutdown("shutdown requested; giving the lease up");
    let metrics = Arc::new(Metrics::new().context("setting up metrics")?);
    let controller_metrics =
        Arc::new(ControllerMetrics::register(&metrics).context("setting up metrics")?);
    let state = AgentState::new(Arc::clone(&metrics));
    let server = Server::bind(args.listen).await?;
    tracing::info!(listen = %server.local_addr(), "controller endpoints");
    let server = tokio::spawn(server.serve(state.clone(), stopped()));
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster service account or KUBECONFIG)")?;
    // One list up front: a refused token, missing CRDs or RBAC fail the start (exit status 2).
    kube::Api::<dockwright::api::Container>::all(client.clone())
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
        .context("listing Containers (token, CRDs and the controller's ClusterRole)")?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "dockwright".into());
        format!("{host}-{}", std::process::id())
    });
    let mut lease = LeaseOptions::new(&args.lease_namespace, &args.lease_name, identity);
    lease.duration = args.lease_duration;
    lease.renew_deadline = args.lease_duration * 2 / 3;
    lease.retry = (args.lease_duration / 7).max(Duration::from_millis(200));
    let options = ControllerOptions {
        lease,
        worker: WorkerOptions {
            concurrency: args.concurrency,
            ..WorkerOptions::default()
        },
    };
    // Ready as a replica (leader or standby); /metrics says which.
    state.set_ready();
    controller::run(client, options, controller_metrics, stopped()).await;
    let _ = server.await;
    Ok(0)
}

/// Connects to the daemon, retrying with back-off while it is not there yet (an agent started
/// before the daemon must wait, not exit).
async fn connect_with_retry() -> Docker {
    let mut delay = Duration::from_millis(200);
    loop {
        match Docker::connect().await {
            Ok(docker) => return docker,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "docker daemon not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let status = dockwright::agent::fetch_status(args.agent).await?;
    print!("{}", report::render_status(&status, args.output)?);
    Ok(0)
}

fn convert(args: ConvertArgs) -> anyhow::Result<u8> {
    let conversion = dockwright::convert::convert_file_with(
        &args.file,
        args.profiles.clone(),
        args.output.clone(),
    )?;
    for warning in &conversion.warnings {
        eprintln!("warning: {warning}");
    }
    match &args.output {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, yaml) in &conversion.documents {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        None => print!("{}", conversion.to_stream()),
    }
    Ok(0)
}

async fn diff(args: DiffArgs) -> anyhow::Result<u8> {
    let desired = load(&args.sources)?;
    let source = source_of(&args.source, &args.sources.paths)?;
    let docker = connect_as(&args.owner.owner).await?;
    let mut options = ConvergeOptions::new(args.owner.owner.clone());
    scope(&mut options, &source, &args.source, &docker);
    options.prune = args.prune;
    options.gate = gate(&args.policy, &options.owner)?;
    let (observer, ..) = image_observer(
        &docker,
        &desired,
        &options.owner,
        &args.registry,
        args.prune,
    )
    .await;
    let (plan, _) = converge::plan_only(&observer, &desired, &options).await?;
    if plan.is_empty() {
        return Ok(0);
    }
    print!("{}", report::plan_text(&plan));
    Ok(1)
}

async fn delete(args: DeleteArgs) -> anyhow::Result<u8> {
    let desired = load(&args.sources)?;
    let docker = connect().await?;
    let options = ConvergeOptions::new(args.owner.owner.clone());
    let keys: BTreeSet<_> = desired.containers.keys().cloned().collect();
    let runner = DockerRunner::new(docker.clone(), args.owner.owner.clone());
    let mut print = |r: &dockwright::execute::ActionReport| println!("{}", report::action_line(r));
    let result = converge::delete(&docker, &runner, &keys, &options, &mut print).await?;
    Ok(finish(&result, "nothing to delete", true))
}

async fn get(args: GetArgs) -> anyhow::Result<u8> {
    if let Some(addr) = args.agent {
        let status = dockwright::agent::fetch_status(addr).await?;
        print!("{}", report::render_status(&status, args.output)?);
        return Ok(0);
    }
    let docker = connect().await?;
    let containers = docker.list_managed(&args.owner.owner).await?;
    print!("{}", report::render_get(&containers, args.output)?);
    Ok(0)
}

async fn logs(args: LogsArgs) -> anyhow::Result<u8> {
    let docker = connect().await?;
    let (namespace, name) = match args.name.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => (
            dockwright::desired::DEFAULT_NAMESPACE.to_string(),
            args.name.clone(),
        ),
    };
    let mut containers: Vec<_> = docker
        .list_managed(&args.owner.owner)
        .await?
        .into_iter()
        .filter(|c| {
            c.resource.as_ref().is_some_and(|k| {
                k.kind == Kind::Container && k.namespace == namespace && k.name == name
            })
        })
        .collect();
    if containers.is_empty() {
        anyhow::bail!(
            "no managed container belongs to Container/{namespace}/{name} (owner {:?})",
            args.owner.owner
        );
    }
    containers.sort_by_key(|c| c.replica);
    let names: Vec<String> = containers.into_iter().map(|c| c.name).collect();
    let options = LogOptions {
        follow: args.follow,
        tail: args.tail,
    };
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    docker
        .logs(
            &names,
            options,
            LogSink {
                stdout: &mut stdout,
                stderr: &mut stderr,
            },
        )
        .await?;
    Ok(0)
}
