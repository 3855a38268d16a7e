//! The error log (an optional callback) and the access log (Apache combined
//! format, buffered per worker, flushed at least once a second and at
//! shutdown, to a file or a callback). The library prints nothing by itself.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How serious an error-log message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed and was contained (a panic, a listener error).
    Error = 0,
    /// Something degraded (accepting paused for lack of descriptors).
    Warning = 1,
    /// For information.
    Info = 2,
}

/// Receives error-log messages, on whichever thread the event happened.
pub trait ErrorLog: Send + Sync + 'static {
    /// One message, without a trailing newline.
    fn log(&self, level: Level, message: &str);
}

/// Receives batches of complete access-log lines (each ending in `\n`) from a
/// worker thread.
pub trait AccessLogSink: Send + Sync + 'static {
    /// Writes `lines`.
    fn write(&self, lines: &[u8]);
}

/// Where access-log lines go.
#[derive(Clone)]
pub enum AccessLogTarget {
    /// Appended to this file; reopened by `Server::reopen_logs` (rotation).
    File(PathBuf),
    /// Handed to this sink.
    Sink(Arc<dyn AccessLogSink>),
}

/// The shared end of the access log.
pub(crate) enum AccessLog {
    File { path: PathBuf, file: Mutex<File> },
    Sink(Arc<dyn AccessLogSink>),
}

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        Ok(match target {
            AccessLogTarget::File(path) => AccessLog::File { file: Mutex::new(open_append(path)?), path: path.clone() },
            AccessLogTarget::Sink(sink) => AccessLog::Sink(sink.clone()),
        })
    }

    /// Writes a batch of lines: one `write` to an `O_APPEND` file, so lines of
    /// different workers never interleave.
    pub fn write(&self, lines: &[u8]) {
        match self {
            AccessLog::File { file, .. } => {
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                let _ = f.write_all(lines);
            }
            AccessLog::Sink(sink) => sink.write(lines),
        }
    }

    /// Reopens the file (after it was moved away for rotation).
    pub fn reopen(&self) -> std::io::Result<()> {
        if let AccessLog::File { path, file } = self {
            let fresh = open_append(path)?;
            *file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
        Ok(())
    }
}

fn open_append(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What the access log needs to know about a request, copied at dispatch time
/// when the answer is deferred.
pub(crate) struct LogStart {
    /// `HOST - - [DATE] "REQUEST LINE" `
    pub head: Vec<u8>,
    /// ` "REFERER" "USER-AGENT"\n`
    pub tail: Vec<u8>,
}

/// A worker's buffer of formatted lines and its cached log date.
pub(crate) struct AccessBuffer {
    pub lines: Vec<u8>,
    date_second: u64,
    date: [u8; 28],
}

impl Default for AccessBuffer {
    fn default() -> Self {
        AccessBuffer { lines: Vec::with_capacity(64 * 1024), date_second: u64::MAX, date: [b' '; 28] }
    }
}

/// The request fields a log line shows.
pub(crate) struct LogRequest<'a> {
    pub peer: &'a [u8],
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub minor: u8,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

impl AccessBuffer {
    /// `[26/Nov/2026:12:34:56 +0000]`, formatted once a second.
    fn date(&mut self) -> &[u8] {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if now != self.date_second {
            self.date_second = now;
            let mut http = [0u8; crate::http::date::HTTP_DATE_LEN];
            crate::http::date::format_http_date(now, &mut http);
            // "Sun, 06 Nov 1994 08:49:37 GMT" -> "[06/Nov/1994:08:49:37 +0000]"
            let mut d = [0u8; 28];
            d[0] = b'[';
            d[1..3].copy_from_slice(&http[5..7]);
            d[3] = b'/';
            d[4..7].copy_from_slice(&http[8..11]);
            d[7] = b'/';
            d[8..12].copy_from_slice(&http[12..16]);
            d[12] = b':';
            d[13..21].copy_from_slice(&http[17..25]);
            d[21..28].copy_from_slice(b" +0000]");
            self.date = d;
        }
        &self.date
    }

    /// Formats the parts of a line that come from the request.
    pub fn start(&mut self, req: &LogRequest<'_>, head: &mut Vec<u8>, tail: &mut Vec<u8>) {
        head.extend_from_slice(req.peer);
        head.extend_from_slice(b" - - ");
        head.extend_from_slice(self.date());
        head.extend_from_slice(b" \"");
        escape_into(req.method, head);
        head.push(b' ');
        escape_into(req.target, head);
        head.extend_from_slice(if req.minor == 0 { b" HTTP/1.0\" " } else { b" HTTP/1.1\" " });
        tail.extend_from_slice(b" \"");
        escape_into(req.referer.unwrap_or(b"-"), tail);
        tail.extend_from_slice(b"\" \"");
        escape_into(req.user_agent.unwrap_or(b"-"), tail);
        tail.extend_from_slice(b"\"\n");
    }

    /// Appends a complete line for a request answered with `status` and `bytes`
    /// of body.
    pub fn record(&mut self, req: &LogRequest<'_>, status: u16, bytes: u64) {
        let mut lines = std::mem::take(&mut self.lines);
        let mut tail = Vec::new();
        self.start(req, &mut lines, &mut tail);
        push_status_bytes(&mut lines, status, bytes);
        lines.extend_from_slice(&tail);
        self.lines = lines;
    }

    /// Appends the line of a deferred request, now answered.
    pub fn finish(&mut self, start: &LogStart, status: u16, bytes: u64) {
        self.lines.extend_from_slice(&start.head);
        push_status_bytes(&mut self.lines, status, bytes);
        self.lines.extend_from_slice(&start.tail);
    }
}

fn push_status_bytes(out: &mut Vec<u8>, status: u16, bytes: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    if bytes == 0 {
        out.push(b'-');
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(bytes).as_bytes());
    }
}

/// Apache's escaping: `"` and `\` backslashed, other non-printables as `\xhh`.
fn escape_into(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_combined_lines() {
        let mut buf = AccessBuffer::default();
        let req = LogRequest {
            peer: b"127.0.0.1",
            method: b"GET",
            target: b"/a\"b",
            minor: 1,
            referer: None,
            user_agent: Some(b"curl/8\x01"),
        };
        buf.record(&req, 200, 13);
        let line = String::from_utf8(buf.lines.clone()).unwrap();
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(line.ends_with("] \"GET /a\\\"b HTTP/1.1\" 200 13 \"-\" \"curl/8\\x01\"\n"), "{line}");
        assert_eq!(line.find('[').unwrap() + 28, line.find(']').unwrap() + 1);
    }
}
