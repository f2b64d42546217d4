//! `dockwright logs`: the logs of one or more containers as `docker logs` gives them (stdout to
//! stdout, stderr to stderr), streams merged as they arrive, each line prefixed with
//! `[name] ` when there is more than one container. Which containers belong to a resource is
//! the caller's business (see [`Docker::list_managed`]).

use std::io::Write;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::stream::{self, StreamExt};

use super::Docker;
use crate::Error;

/// What to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new output until every container's stream ends.
    pub follow: bool,
    /// Only the last N lines of each container (all when `None`).
    pub tail: Option<u64>,
}

/// Where log output goes.
pub struct LogSink<'a> {
    /// Receives stdout (and TTY) output.
    pub stdout: &'a mut (dyn Write + Send),
    /// Receives stderr output.
    pub stderr: &'a mut (dyn Write + Send),
}

impl Docker {
    /// Streams the logs of the named containers into `sink` until they end (without
    /// `follow`: until the current output is written). Partial lines are held back until
    /// their newline (or the end of the stream) so prefixes never land mid-line.
    pub async fn logs(
        &self,
        names: &[String],
        options: LogOptions,
        sink: LogSink<'_>,
    ) -> Result<(), Error> {
        let tail = options
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let query = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .tail(&tail)
            .build();
        let streams = names.iter().enumerate().map(|(index, name)| {
            self.client
                .logs(name, Some(query.clone()))
                .map(move |item| (index, item))
                .boxed()
        });
        let mut merged = stream::select_all(streams);
        let prefixes: Vec<String> = names
            .iter()
            .map(|n| {
                if names.len() > 1 {
                    format!("[{n}] ")
                } else {
                    String::new()
                }
            })
            .collect();
        // Pending partial line per (container, stream): 0 = stdout, 1 = stderr.
        let mut pending: Vec<[Vec<u8>; 2]> = vec![[Vec::new(), Vec::new()]; names.len()];
        let io = |source| Error::Io {
            path: "<log output>".into(),
            source,
        };
        while let Some((index, item)) = merged.next().await {
            let output = item.map_err(|source| Error::Docker {
                operation: format!("logs of {}", names[index]),
                source,
            })?;
            let (which, bytes) = match output {
                LogOutput::StdErr { message } => (1, message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => (0, message),
                LogOutput::StdIn { .. } => continue,
            };
            let buffer = &mut pending[index][which];
            buffer.extend_from_slice(&bytes);
            let out: &mut (dyn Write + Send) = if which == 0 {
                &mut *sink.stdout
            } else {
                &mut *sink.stderr
            };
            while let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=newline).collect();
                out.write_all(prefixes[index].as_bytes()).map_err(io)?;
                out.write_all(&line).map_err(io)?;
            }
            out.flush().map_err(io)?;
        }
        for (index, buffers) in pending.iter().enumerate() {
            for (which, rest) in buffers.iter().enumerate() {
                if rest.is_empty() {
                    continue;
                }
                let out: &mut (dyn Write + Send) = if which == 0 {
                    &mut *sink.stdout
                } else {
                    &mut *sink.stderr
                };
                out.write_all(prefixes[index].as_bytes()).map_err(io)?;
                out.write_all(rest).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
                out.flush().map_err(io)?;
            }
        }
        Ok(())
    }
}
