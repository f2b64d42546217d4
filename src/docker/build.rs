//! Image builds: `POST /build` with the context streamed as a deterministic tar (made on a
//! blocking thread while it is sent), the planner's labels, args and target, and every known
//! registry credential for the `FROM` pulls (`X-Registry-Config`). Build output goes to the
//! logs and to a [`BuildOutput`]; a failure carries the daemon's own words.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::errors::daemon_message;
use super::Docker;
use crate::build_context::{write_tar, EXTERNAL_DOCKERFILE};
use crate::credentials::RegistryCredentials;
use crate::desired::Dockerfile;
use crate::execute::{ActionError, ErrorKind};
use crate::plan::BuildSpec;

/// Size of the chunks the context is sent in.
const CHUNK: usize = 256 * 1024;

/// Receives the output of builds, line by line. Called from concurrent builds.
pub trait BuildOutput: Send + Sync {
    /// One line of `reference`'s build output (without the newline).
    fn line(&self, reference: &str, line: &str);
    /// The build of `reference` ended.
    fn done(&self, reference: &str, ok: bool);
}

/// Build output on a terminal: each line on stderr, prefixed with the image.
#[derive(Debug, Default)]
pub struct TerminalBuildOutput;

impl BuildOutput for TerminalBuildOutput {
    fn line(&self, reference: &str, line: &str) {
        eprintln!("[build {}] {line}", crate::reference::familiar(reference));
    }

    fn done(&self, reference: &str, ok: bool) {
        let word = if ok { "built" } else { "build failed" };
        eprintln!("[build {}] {word}", crate::reference::familiar(reference));
    }
}

/// Builds `spec` and returns the new image ID.
pub(crate) async fn build(
    docker: &Docker,
    spec: &BuildSpec,
    credentials: BTreeMap<String, RegistryCredentials>,
    output: Option<&dyn BuildOutput>,
) -> Result<String, ActionError> {
    let reference = spec.reference.as_str();
    let fail =
        |kind, message: String| ActionError::new(kind, format!("build {reference}: {message}"));
    let (dockerfile, in_context, external) = match &spec.build.dockerfile {
        Dockerfile::InContext(rel) => (rel.clone(), Some(rel.clone()), None),
        Dockerfile::External(path) => {
            let content = tokio::fs::read(path)
                .await
                .map_err(|e| fail(ErrorKind::Io, format!("{}: {e}", path.display())))?;
            (EXTERNAL_DOCKERFILE.to_string(), None, Some(content))
        }
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let context_error: Arc<Mutex<Option<String>>> = Arc::default();
    let writer_error = Arc::clone(&context_error);
    let context: PathBuf = spec.build.context.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_tar(&context, in_context.as_deref(), external.as_deref(), sink)
            .map_err(|e| e.to_string())
            .and_then(|mut sink| sink.flush().map_err(|e| e.to_string()));
        if let Err(message) = result {
            if let Ok(mut slot) = writer_error.lock() {
                *slot = Some(message.clone());
            }
            let _ = tx.blocking_send(Err(io::Error::other(message)));
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });

    let args: HashMap<String, String> = spec.build.args.clone().into_iter().collect();
    let labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    let mut options = BuildImageOptionsBuilder::new()
        .dockerfile(&dockerfile)
        .t(reference)
        .rm(true)
        .forcerm(true)
        .buildargs(&args)
        .labels(&labels);
    if let Some(target) = &spec.build.target {
        options = options.target(target);
    }
    let registry_config: HashMap<String, bollard::auth::DockerCredentials> = credentials
        .into_iter()
        .map(|(registry, c)| (registry, c.to_docker()))
        .collect();
    let registry_config = (!registry_config.is_empty()).then_some(registry_config);
    let mut stream = docker.client.build_image(
        options.build(),
        registry_config,
        Some(bollard::body_try_stream(body)),
    );

    let mut id = None;
    let mut partial = String::new();
    let mut result = Ok(());
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref() {
                    partial.push_str(text);
                    while let Some(end) = partial.find('\n') {
                        let line: String = partial.drain(..=end).collect();
                        emit(reference, line.trim_end(), output);
                    }
                }
                if let Some(found) = info.aux.and_then(|aux| aux.id) {
                    id = Some(found);
                }
            }
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    if !partial.trim().is_empty() {
        emit(reference, partial.trim_end(), output);
    }
    drop(stream);
    let _ = writer.await;
    let context_problem = context_error.lock().ok().and_then(|slot| slot.clone());
    if let Some(output) = output {
        output.done(reference, result.is_ok() && context_problem.is_none());
    }
    if let Some(problem) = context_problem {
        return Err(fail(
            ErrorKind::Io,
            format!("sending the build context: {problem}"),
        ));
    }
    if let Err(error) = result {
        let message = daemon_message(&error);
        let kind = if message.to_ascii_lowercase().contains("unauthorized")
            || message.contains("no basic auth credentials")
        {
            ErrorKind::Unauthorized
        } else {
            ErrorKind::Daemon
        };
        return Err(fail(kind, message));
    }
    let id = match id {
        Some(id) => id,
        None => docker
            .client
            .inspect_image(reference)
            .await
            .ok()
            .and_then(|i| i.id)
            .ok_or_else(|| fail(ErrorKind::Daemon, "the daemon reported no image ID".into()))?,
    };
    tracing::debug!(reference, %id, "built");
    Ok(id)
}

fn emit(reference: &str, line: &str, output: Option<&dyn BuildOutput>) {
    if line.is_empty() {
        return;
    }
    tracing::debug!(image = reference, "{line}");
    if let Some(output) = output {
        output.line(reference, line);
    }
}

/// A `Write` that hands the tar to the request body in chunks (back-pressured by the
/// channel's capacity, so a large context is never held in memory).
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the daemon stopped reading the build context",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
