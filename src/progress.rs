//! Progress bars for a person at a terminal, and a log writer that keeps them intact.
//!
//! Bars are drawn only when logs are human-readable text on a terminal; with JSON logs or
//! a redirected stderr they are hidden, so machines read clean JSON lines. Log lines are
//! written through [`LogWriter`], which lifts the active bar out of the way first.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Called once by logging set-up: draw bars or not.
pub(crate) fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// A bar of `len` steps (hidden unless enabled); it becomes the active bar until dropped
/// with [`finish`].
pub(crate) fn bar(len: u64, label: &str) -> ProgressBar {
    let pb = if ENABLED.load(Ordering::Relaxed) {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let template = format!("{label} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{elapsed}})");
    pb.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb.clone());
    pb
}

/// Report progress inside a long stage: `done` of `total` units of `what` (passes,
/// snapshots, rows), as a JSON/text log line and on the active bar's message.
pub(crate) fn step(what: &str, done: usize, total: usize) {
    tracing::info!(what, done, total, "progress");
    if let Some(pb) = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let stage = pb.message();
        let stage = stage.split(" · ").next().unwrap_or_default().to_string();
        pb.set_message(format!("{stage} · {what} {done}/{total}"));
    }
}

/// Progress of work done in parallel: each [`Counter::tick`] reports one more unit done.
pub(crate) struct Counter {
    what: &'static str,
    total: usize,
    done: AtomicUsize,
}

impl Counter {
    pub(crate) fn new(what: &'static str, total: usize) -> Self {
        Counter { what, total, done: AtomicUsize::new(0) }
    }

    pub(crate) fn tick(&self) {
        step(self.what, self.done.fetch_add(1, Ordering::Relaxed) + 1, self.total);
    }
}

/// Remove the bar from the screen and stop routing logs around it.
pub(crate) fn finish(pb: &ProgressBar) {
    pb.finish_and_clear();
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Stderr for `tracing`, suspending the active bar while a line is written.
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match active {
            Some(pb) if !pb.is_hidden() => pb.suspend(|| std::io::stderr().write_all(buf)).map(|_| buf.len()),
            _ => std::io::stderr().write_all(buf).map(|_| buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}
