//! What the user sees while the xtask works: verbosity (`-q`, `-v`), color
//! (`--color`, as cargo does) and the progress of long phases.
//!
//! A phase that can take more than a few seconds (a kernel build, a cargo
//! build, apt, a boot) runs inside a [`Phase`]: on a terminal a live spinner
//! with the phase, the elapsed time and, when the phase writes a log, the
//! number of log lines and the last one (with an ETA when an earlier run of
//! the same log says how many lines to expect); when stderr is not a terminal
//! (CI logs) one line when it starts, a heartbeat every 28 s and one when it
//! ends, so a log never goes silent for long.

use std::fmt::Display;
use std::fs;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How often a phase speaks up when stderr is not a terminal: a little under
/// 30 s, so that a CI log never goes 30 s without a line even with the
/// ticker's granularity and a loaded host (measured: 30.2 s at exactly 30).
pub const HEARTBEAT: Duration = Duration::from_secs(28);
/// Passes `-q`/`-v` on to the xtask processes `cargo xtask test` starts.
pub const VERBOSITY_ENV: &str = "KATA_XTASK_VERBOSITY";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

impl Verbosity {
    pub fn name(self) -> &'static str {
        match self {
            Verbosity::Quiet => "quiet",
            Verbosity::Normal => "normal",
            Verbosity::Verbose => "verbose",
        }
    }

    fn parse(s: &str) -> Option<Verbosity> {
        [Verbosity::Quiet, Verbosity::Normal, Verbosity::Verbose]
            .into_iter()
            .find(|v| v.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Color when stderr is a terminal.
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    verbosity: Verbosity,
    color: bool,
    tty: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Fix verbosity and color for this process (from the command line; a
/// parent `cargo xtask test` passes its own through the environment).
pub fn init(quiet: bool, verbose: bool, color: Option<ColorChoice>) {
    let inherited = std::env::var(VERBOSITY_ENV)
        .ok()
        .and_then(|v| Verbosity::parse(&v));
    let verbosity = match (quiet, verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => inherited.unwrap_or(Verbosity::Normal),
    };
    let tty = std::io::stderr().is_terminal();
    let color = match color.or_else(color_from_env) {
        Some(ColorChoice::Always) => true,
        Some(ColorChoice::Never) => false,
        Some(ColorChoice::Auto) | None => tty,
    };
    let _ = SETTINGS.set(Settings {
        verbosity,
        color,
        tty,
    });
}

/// `CARGO_TERM_COLOR`, as cargo reads it.
fn color_from_env() -> Option<ColorChoice> {
    match std::env::var("CARGO_TERM_COLOR").ok()?.as_str() {
        "always" => Some(ColorChoice::Always),
        "never" => Some(ColorChoice::Never),
        "auto" => Some(ColorChoice::Auto),
        _ => None,
    }
}

fn settings() -> Settings {
    *SETTINGS.get().unwrap_or(&Settings {
        verbosity: Verbosity::Normal,
        color: false,
        tty: false,
    })
}

pub fn verbosity() -> Verbosity {
    settings().verbosity
}

/// The bars on screen (one line per running phase, nested phases too);
/// messages go above them instead of through them.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// How many bars are on screen.
static ACTIVE_BARS: Mutex<usize> = Mutex::new(0);

fn print(line: &str) {
    let active = ACTIVE_BARS.lock().map(|n| *n).unwrap_or(0);
    if active == 0 || bars().println(line).is_err() {
        eprintln!("{line}");
    }
}

/// A line of normal output (not with `-q`).
pub fn info(msg: impl Display) {
    if verbosity() >= Verbosity::Normal {
        print(&msg.to_string());
    }
}

/// A line only `-v` shows (command lines, log paths).
pub fn detail(msg: impl Display) {
    if verbosity() >= Verbosity::Verbose {
        print(&msg.to_string());
    }
}

/// A warning, shown even with `-q`.
pub fn warn(msg: impl Display) {
    print(&format!("{} {msg}", styled("warning:", 33)));
}

/// `text` in the ANSI color `code` when color is on.
pub fn styled(text: &str, code: u8) -> String {
    if settings().color {
        format!("\x1b[1;{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `1m05s` or `12.3 s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A long phase of work; see the module comment. Ends with [`Phase::done`];
/// dropped without it (an error), it says how long it ran before failing.
pub struct Phase {
    name: String,
    started: Instant,
    log: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
    finished: bool,
}

impl Phase {
    pub fn start(name: impl Into<String>) -> Phase {
        Phase::begin(name.into(), None)
    }

    /// A phase whose tools write to `log`: its progress is the log's growth.
    pub fn with_log(name: impl Into<String>, log: &Path) -> Phase {
        Phase::begin(name.into(), Some(log.to_path_buf()))
    }

    fn begin(name: String, log: Option<PathBuf>) -> Phase {
        let s = settings();
        let expected = log.as_deref().and_then(expected_lines);
        let stop = Arc::new(AtomicBool::new(false));
        let mut phase = Phase {
            name: name.clone(),
            started: Instant::now(),
            log: log.clone(),
            stop: stop.clone(),
            ticker: None,
            bar: None,
            finished: false,
        };
        if s.verbosity == Verbosity::Quiet {
            return phase;
        }
        if let Some(l) = &log {
            detail(format!("{name}: log {}", l.display()));
        }
        if s.tty {
            let bar = bars().add(new_bar(&name, expected));
            if let Ok(mut active) = ACTIVE_BARS.lock() {
                *active += 1;
            }
            phase.bar = Some(bar.clone());
            phase.ticker = Some(std::thread::spawn(move || {
                tick(&stop, Duration::from_millis(500), log.as_deref(), |p| {
                    bar.set_position(p.lines);
                    bar.set_message(p.last);
                })
            }));
        } else {
            eprintln!("{name} ...");
            let started = phase.started;
            phase.ticker = Some(std::thread::spawn(move || {
                let mut next = started + HEARTBEAT;
                tick(&stop, Duration::from_millis(250), log.as_deref(), |p| {
                    if Instant::now() >= next {
                        next += HEARTBEAT;
                        eprintln!("{}", heartbeat(&name, started.elapsed(), &p, expected));
                    }
                })
            }));
        }
        phase
    }

    /// The phase succeeded: say so with its time (and remember the log's
    /// length as the next run's ETA).
    pub fn done(mut self, detail: impl Display) {
        self.finished = true;
        self.stop_ticker();
        if let Some(log) = &self.log {
            if let Ok(n) = count_lines(log) {
                let _ = fs::write(expected_path(log), n.to_string());
            }
        }
        let detail = detail.to_string();
        let sep = if detail.is_empty() { "" } else { ", " };
        info(format!(
            "{}: done in {}{sep}{detail}",
            self.name,
            elapsed(self.started.elapsed())
        ));
    }

    fn stop_ticker(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            bars().remove(&bar);
            if let Ok(mut active) = ACTIVE_BARS.lock() {
                *active = active.saturating_sub(1);
            }
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.stop_ticker();
        if !self.finished && verbosity() > Verbosity::Quiet {
            eprintln!(
                "{}: {} after {}",
                self.name,
                styled("failed", 31),
                elapsed(self.started.elapsed())
            );
        }
    }
}

fn new_bar(name: &str, expected: Option<u64>) -> ProgressBar {
    let (bar, template) = match expected {
        Some(n) => (
            ProgressBar::new(n),
            "{spinner} {prefix} [{elapsed_precise}] {bar:30} {pos}/{len} lines, ETA {eta} {wide_msg}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {prefix} [{elapsed_precise}] {pos} lines {wide_msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// What a phase's log says so far.
#[derive(Default)]
struct LogProgress {
    lines: u64,
    last: String,
}

/// Call `f` every `every` until `stop`, with the log's progress.
fn tick(stop: &AtomicBool, every: Duration, log: Option<&Path>, mut f: impl FnMut(LogProgress)) {
    let mut reader = log.map(LogReader::new);
    while !stop.load(Ordering::Relaxed) {
        let p = reader.as_mut().map(LogReader::poll).unwrap_or_default();
        f(p);
        std::thread::sleep(every);
    }
}

/// The heartbeat line of a phase that is not on a terminal.
fn heartbeat(name: &str, ran: Duration, p: &LogProgress, expected: Option<u64>) -> String {
    let mut line = format!("{name}: still running, {}", elapsed(ran));
    if p.lines > 0 {
        line.push_str(&format!(", {} log lines", p.lines));
        if let Some(eta) = eta(ran, p.lines, expected) {
            line.push_str(&format!(
                " of ~{}, ETA {}",
                expected.unwrap_or(0),
                elapsed(eta)
            ));
        }
        if !p.last.is_empty() {
            line.push_str(&format!(": {}", p.last));
        }
    }
    line
}

/// Time left at the current rate, when an earlier run says how much to expect.
fn eta(ran: Duration, done: u64, expected: Option<u64>) -> Option<Duration> {
    let total = expected?;
    if done == 0 || done >= total {
        return None;
    }
    Some(ran.mul_f64((total - done) as f64 / done as f64))
}

/// Reads a growing log incrementally: line count and last complete line.
struct LogReader {
    path: PathBuf,
    offset: u64,
    progress: LogProgress,
}

impl LogReader {
    fn new(path: &Path) -> LogReader {
        LogReader {
            path: path.to_path_buf(),
            offset: 0,
            progress: LogProgress::default(),
        }
    }

    fn poll(&mut self) -> LogProgress {
        let mut chunk = Vec::new();
        if let Ok(mut f) = fs::File::open(&self.path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < self.offset {
                // Truncated: a new run of the log.
                self.offset = 0;
                self.progress = LogProgress::default();
            }
            if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                let _ = f.take(1 << 20).read_to_end(&mut chunk);
            }
        }
        if let Some(end) = chunk.iter().rposition(|&b| b == b'\n') {
            let complete = &chunk[..=end];
            self.offset += complete.len() as u64;
            self.progress.lines += complete.iter().filter(|&&b| b == b'\n').count() as u64;
            let text = String::from_utf8_lossy(&complete[..end]);
            if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                self.progress.last = last.trim().chars().take(100).collect();
            }
        }
        LogProgress {
            lines: self.progress.lines,
            last: self.progress.last.clone(),
        }
    }
}

fn expected_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".lines");
    PathBuf::from(name)
}

fn expected_lines(log: &Path) -> Option<u64> {
    fs::read_to_string(expected_path(log))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn count_lines(log: &Path) -> std::io::Result<u64> {
    let bytes = fs::read(log)?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_names_phase_time_count_and_eta() {
        let p = LogProgress {
            lines: 250,
            last: "CC kernel/fork.o".into(),
        };
        let line = heartbeat("kernel x86_64", Duration::from_secs(60), &p, Some(1000));
        assert!(HEARTBEAT < Duration::from_secs(30));
        assert_eq!(
            line,
            "kernel x86_64: still running, 1m00s, 250 log lines of ~1000, ETA 3m00s: CC kernel/fork.o"
        );
        let bare = heartbeat(
            "boot",
            Duration::from_secs(30),
            &LogProgress::default(),
            None,
        );
        assert_eq!(bare, "boot: still running, 30.0 s");
    }

    #[test]
    fn log_reader_counts_complete_lines_and_restarts_on_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("step.log");
        fs::write(&log, "one\ntwo\nthr").unwrap();
        let mut r = LogReader::new(&log);
        let p = r.poll();
        assert_eq!((p.lines, p.last.as_str()), (2, "two"));
        fs::write(&log, "one\ntwo\nthree\nfour\n").unwrap();
        assert_eq!(r.poll().lines, 4);
        fs::write(&log, "new\n").unwrap();
        let p = r.poll();
        assert_eq!((p.lines, p.last.as_str()), (1, "new"));
    }

    #[test]
    fn no_eta_without_an_earlier_run() {
        assert_eq!(eta(Duration::from_secs(10), 5, None), None);
        assert_eq!(
            eta(Duration::from_secs(10), 5, Some(10)),
            Some(Duration::from_secs(10))
        );
    }
}
