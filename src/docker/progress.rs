//! Pull progress: the [`PullProgress`] trait the runner reports to, and a terminal
//! implementation with one bar per image (layers summed). The CLI chooses whether to show
//! bars (only on a terminal); the runner only reports numbers.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Receives download progress of image pulls. Called from concurrent pulls.
pub trait PullProgress: Send + Sync {
    /// Layer `layer` of `reference` has `current` of `total` bytes downloaded.
    fn update(&self, reference: &str, layer: &str, current: u64, total: u64);
    /// The pull of `reference` ended (successfully or not).
    fn done(&self, reference: &str);
}

/// Progress bars on a terminal: one per reference, showing the sum over its layers.
///
/// Owned by the CLI for one `apply`; the runner calls it from concurrent pulls.
pub struct TerminalPullProgress {
    bars: MultiProgress,
    pulls: Mutex<HashMap<String, Pull>>,
}

struct Pull {
    bar: ProgressBar,
    layers: HashMap<String, (u64, u64)>,
}

impl TerminalPullProgress {
    /// Draws on stderr.
    pub fn new() -> Self {
        Self {
            bars: MultiProgress::new(),
            pulls: Mutex::new(HashMap::new()),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template("pulling {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

impl Default for TerminalPullProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl PullProgress for TerminalPullProgress {
    fn update(&self, reference: &str, layer: &str, current: u64, total: u64) {
        let Ok(mut pulls) = self.pulls.lock() else {
            return;
        };
        let pull = pulls.entry(reference.to_string()).or_insert_with(|| {
            let bar = self.bars.add(ProgressBar::new(0));
            bar.set_style(Self::style());
            bar.set_message(reference.to_string());
            Pull {
                bar,
                layers: HashMap::new(),
            }
        });
        pull.layers.insert(layer.to_string(), (current, total));
        let (current, total) = pull
            .layers
            .values()
            .fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
        pull.bar.set_length(total);
        pull.bar.set_position(current.min(total));
    }

    fn done(&self, reference: &str) {
        let Ok(mut pulls) = self.pulls.lock() else {
            return;
        };
        if let Some(pull) = pulls.remove(reference) {
            pull.bar.finish_and_clear();
            self.bars.remove(&pull.bar);
        }
    }
}
