//! slog JSON logging to stderr, and to a vsock port when `agent.log_vport` is
//! set (the runtime connects to it to collect the guest's logs, as with Kata).

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use slog::{o, Drain, Level, Logger};

/// A writer that tees everything to stderr and, once a client has connected,
/// to the log port. Writes to a dead log connection drop it silently: logs
/// must never take the agent down.
#[derive(Clone, Default)]
pub struct LogSink {
    port: Arc<Mutex<Option<Box<dyn Write + Send>>>>,
}

impl LogSink {
    /// Attach the log-port connection (replaces a previous one).
    pub fn attach(&self, conn: Box<dyn Write + Send>) {
        if let Ok(mut port) = self.port.lock() {
            *port = Some(conn);
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        if let Ok(mut port) = self.port.lock() {
            if let Some(conn) = port.as_mut() {
                if conn.write_all(buf).is_err() {
                    *port = None;
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Build the root logger: JSON records with Kata's usual keys, filtered at `level`.
pub fn create_logger(level: Level, sink: LogSink) -> Logger {
    let json = slog_json::Json::new(sink)
        .set_newlines(true)
        .add_default_keys()
        .build()
        .fuse();
    // A mutex instead of slog-async: the agent logs little, and records must
    // be out before a crash or an exec.
    let drain = Mutex::new(json).map(slog::Fuse);
    let drain = slog::LevelFilter::new(drain, level).fuse();
    Logger::root(
        drain,
        o!("name" => "kata-agent", "subsystem" => "root", "pid" => std::process::id().to_string(), "source" => "agent"),
    )
}

/// Serve the log port: accept connections on vsock `port` and send the logs
/// to the latest one. Runs on a plain thread, independent of the runtime.
pub fn serve_log_port(port: u32, sink: LogSink, logger: Logger) {
    std::thread::spawn(move || {
        let listener = match vsock::VsockListener::bind(&vsock::VsockAddr::new(
            vsock::VMADDR_CID_ANY,
            port,
        )) {
            Ok(l) => l,
            Err(e) => {
                slog::error!(logger, "cannot listen on the log port"; "port" => port, "error" => e.to_string());
                return;
            }
        };
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => sink.attach(Box::new(stream)),
                Err(e) => {
                    slog::warn!(logger, "log port accept failed"; "error" => e.to_string());
                }
            }
        }
    });
}
