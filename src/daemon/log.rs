//! Where the daemon's log goes, as with Ceph's daemons: the `log file` (default
//! `/var/log/ceph/$cluster-$name.log`), reopened on SIGHUP so logrotate can move it away;
//! warnings and errors also on stderr while in the foreground (`err_to_stderr`); everything
//! on stderr with `-d` / `log_to_stderr`, or when the log file cannot be opened. The level
//! comes from `RUST_LOG` (default `info`): Ceph's `debug_*` levels are not ours.
//!
//! Lines are written by a thread of the log's own, fed through a bounded queue, so logging
//! never blocks a tokio worker on the disk; lines that find the queue full are dropped and
//! counted, and the count is logged once room returns.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Lines the queue holds before dropping.
const QUEUE_LINES: usize = 8192;

enum Msg {
    Line(Vec<u8>),
    Reopen,
}

/// Reopens the log file; cheap to clone.
#[derive(Clone)]
pub struct LogFile {
    tx: Option<SyncSender<Msg>>,
}

impl LogFile {
    /// Asks the writer to reopen the file (SIGHUP). A no-op without a log file.
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Msg::Reopen);
        }
    }
}

/// Sets up logging; the file is `None` for stderr only. Returns what SIGHUP reopens, and
/// why the file could not be used (to be logged once logging works).
pub fn init(file: Option<&Path>, foreground: bool) -> (LogFile, Option<String>) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let opened = file.map(|p| open(p).map(|f| (p.to_path_buf(), f)));
    match opened {
        Some(Ok((path, f))) => {
            let (tx, rx) = sync_channel(QUEUE_LINES);
            let dropped = Arc::new(AtomicU64::new(0));
            let writer = QueueWriter {
                tx: tx.clone(),
                dropped: dropped.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name("log".into())
                .spawn(move || write_lines(path, f, rx, dropped));
            if let Err(e) = spawned {
                tracing_subscriber::registry()
                    .with(stderr_layer().with_filter(filter()))
                    .init();
                return (
                    LogFile { tx: None },
                    Some(format!("log writer thread: {e}")),
                );
            }
            let to_file = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter());
            let errors = foreground
                .then(|| stderr_layer().with_filter(tracing_subscriber::filter::LevelFilter::WARN));
            tracing_subscriber::registry()
                .with(to_file)
                .with(errors)
                .init();
            (LogFile { tx: Some(tx) }, None)
        }
        other => {
            tracing_subscriber::registry()
                .with(stderr_layer().with_filter(filter()))
                .init();
            let why = match other {
                Some(Err((path, e))) => Some(format!("cannot open log file {path}: {e}")),
                _ => None,
            };
            (LogFile { tx: None }, why)
        }
    }
}

fn stderr_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // Colours only for a terminal: redirected output is read by scripts and editors.
    tracing_subscriber::fmt::layer()
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr)
}

fn open(path: &Path) -> Result<File, (String, io::Error)> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| (path.display().to_string(), e))
}

fn write_lines(path: PathBuf, mut file: File, rx: Receiver<Msg>, dropped: Arc<AtomicU64>) {
    for msg in rx {
        match msg {
            Msg::Line(line) => {
                let _ = file.write_all(&line);
            }
            Msg::Reopen => match open(&path) {
                Ok(f) => file = f,
                Err((p, e)) => {
                    let _ = writeln!(file, "cannot reopen log file {p}: {e}; keeping the old one");
                }
            },
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(file, "log: {lost} lines dropped (the disk was too slow)");
        }
    }
}

/// One event's formatted text, queued whole when the formatter is done with it.
struct QueueWriter {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

struct Line<'a> {
    queue: &'a QueueWriter,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.buf);
        if let Err(TrySendError::Full(_)) = self.queue.tx.try_send(Msg::Line(line)) {
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            queue: self,
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_and_a_reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let (tx, rx) = sync_channel(4);
        let dropped = Arc::new(AtomicU64::new(0));
        let file = open(&path).unwrap();
        let p = path.clone();
        let d = dropped.clone();
        let writer = std::thread::spawn(move || write_lines(p, file, rx, d));
        let queue = QueueWriter { tx, dropped };
        writeln!(queue.make_writer(), "one").unwrap();
        let rotated = dir.path().join("d.log.1");
        // Wait for the first line before rotating.
        while std::fs::read_to_string(&path)
            .unwrap_or_default()
            .is_empty()
        {
            std::thread::yield_now();
        }
        std::fs::rename(&path, &rotated).unwrap();
        queue.tx.send(Msg::Reopen).unwrap();
        writeln!(queue.make_writer(), "two").unwrap();
        drop(queue);
        writer.join().unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }
}
