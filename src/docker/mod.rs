//! The Docker adapter: the only place that speaks the Docker API (bollard 0.21). It observes
//! (four list calls), runs plan actions ([`DockerRunner`]) and streams logs; everything it
//! hands out is a dockwright type, so no bollard type leaks past this module.
//!
//! Every request body is limited to what an API-1.41 daemon (Docker 20.10) accepts, because
//! bollard's version negotiation changes the URL prefix but not the bodies it sends.

mod build;
mod client;
mod conflict;
mod create;
mod ensure;
mod errors;
mod events;
mod files;
mod images;
mod logs;
mod objects;
mod observe;
mod progress;
mod pull;
mod registry;
mod restarts;
mod runner;
mod wait;

pub use build::{BuildOutput, TerminalBuildOutput};
pub use client::{Docker, DEFAULT_HOST, OPERATIONS};
pub use create::create_body;
pub use events::DaemonEvent;
pub use files::files_tar;
pub use images::{settle_pulls, ImageObserver};
pub use logs::{LogOptions, LogSink};
pub use objects::network_request;
pub use observe::concurrency_for_cpus;
pub use progress::{PullProgress, TerminalPullProgress};
pub use registry::{check_updates, CheckFailure};
pub use restarts::{RestartCounts, ToRead};
pub use runner::{DockerRunner, DEFAULT_AWAIT_TIMEOUT, DEFAULT_POLL_INTERVAL};
