//! Answering through a [`Response`] with a file: a request under a static mount
//! (no handler involved), or a handler's `respond_file`. A plain GET of a small
//! file the worker keeps in memory (`file::small`) is answered by copying its
//! pre-rendered answer with the worker's `Date` and `Server` lines. Otherwise
//! the head is composed like any other; a small body is copied into the output
//! buffer (from memory, or read from the file) so that head and body leave in
//! one `write`, batched with pipelined answers; a larger one is queued as a
//! file segment on the connection and sent with `sendfile` after the head,
//! which goes out with `MSG_MORE` so both share a packet. What the socket does
//! not take waits in the connection's output queue for it to drain.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::error::RespondError;
use super::handler::{Outcome, Response};
use crate::file::range::{ByteRange, Piece};
use crate::file::serve::{Body, FileRequest};
use crate::file::small::SmallFile;
use crate::file::{Fields, FileError, Prepared, Served};
use crate::http::compose::{compose_head, BodyLength};
use crate::http::image::KeepAliveImage;
use crate::net::output::OutQueue;

/// File bodies up to this size are read into the output buffer (`pread`)
/// when the file is not in memory; larger ones are sent with `sendfile`
/// after the head. Measured with
/// `benches/copy_vs_sendfile.py` (layout (a), requests per server CPU-second,
/// medians of 5–7 interleaved rounds on a busy 2-core machine): without
/// pipelining copy and sendfile tie at 1–4 KiB (copy +10 % at 2 KiB), sendfile
/// wins from 8 KiB (+8–12 %) and clearly at 16 KiB (+30 %); with 16-deep
/// pipelining copy wins by 2.7× at 1 KiB and 2× at 4 KiB (the answers leave in
/// one write) and ties at 16 KiB. 4 KiB keeps copy where it never lost.
pub(crate) const COPY_MAX: u64 = 4 * 1024;

impl Response<'_> {
    /// Answers the request from a static mount if one covers `raw_path` (the
    /// path as sent); false when none does and the handler must answer.
    pub(crate) fn serve_static(&mut self, raw_path: &[u8], query: &[u8]) -> bool {
        if !self.file.files.has_mounts() {
            return false;
        }
        let image_fits = KeepAliveImage::fits(&self.meta_now());
        let req = FileRequest { method: self.file.method, fields: Fields::new(self.file.headers), image_fits };
        let Some(served) = self.file.files.plan_mount(&req, raw_path, query) else { return false };
        let _ = self.send_served(served, &[]);
        true
    }

    /// Answers with the file at `path` and `status`, with the handling a static
    /// mount gives: `Content-Type` by extension, `Last-Modified`, `ETag`,
    /// `Accept-Ranges`; for a 200, the preconditions (304, 412) and `Range`
    /// (206, 416, multipart). `headers` are the handler's own fields; one named
    /// like the engine's (`Content-Type`, `ETag`, `Last-Modified`, …) replaces
    /// it, and a handler's `ETag` or `Last-Modified` is what preconditions are
    /// checked against. Files are served through the worker's caches.
    ///
    /// Errors: `FileUnavailable` when the path is missing, a directory, not a
    /// regular file or unreadable (nothing is sent; the request may be
    /// answered again), and those of [`Response::respond`].
    pub fn respond_file(&mut self, status: u16, headers: &[(&[u8], &[u8])], path: &Path) -> Result<(), RespondError> {
        match self.outcome {
            Outcome::Pending => {}
            Outcome::Broken => return Err(RespondError::Closed),
            _ => return Err(RespondError::AlreadyAnswered),
        }
        if !(200..=599).contains(&status) {
            return Err(RespondError::InvalidStatus);
        }
        let image_fits = KeepAliveImage::fits(&self.meta_now());
        let req = FileRequest { method: self.file.method, fields: Fields::new(self.file.headers), image_fits };
        let served = self
            .file
            .files
            .plan_path(&req, status, path, headers)
            .map_err(|FileError(e)| RespondError::FileUnavailable(e.kind()))?;
        self.send_served(served, headers)
    }

    fn send_served(&mut self, served: Served, given: &[(&[u8], &[u8])]) -> Result<(), RespondError> {
        match served {
            Served::Image(small) => {
                let image = small.image();
                let at = self.out.len();
                image.compose(self.out, &self.env);
                self.apply_reason(at);
                self.outcome = Outcome::Answered { close: false };
                self.status = 200;
                self.body_bytes = image.body_len();
                Ok(())
            }
            Served::Plan(prepared, small) => self.send_prepared(*prepared, small.as_deref(), given),
        }
    }

    /// Sends a plan; a one-range body comes from `small` when the file is in
    /// memory, else from the prepared file.
    fn send_prepared(
        &mut self,
        prepared: Prepared,
        small: Option<&SmallFile>,
        given: &[(&[u8], &[u8])],
    ) -> Result<(), RespondError> {
        let Prepared { plan, file } = prepared;
        let start = self.out.len();
        let composed = compose_head(
            self.out,
            &self.env,
            plan.status,
            plan.fields.after(given),
            BodyLength::Known(plan.length),
            self.meta,
        )?;
        self.apply_reason(start);
        self.outcome = Outcome::Answered { close: composed.close };
        self.status = plan.status;
        if composed.omit_body {
            return Ok(());
        }
        self.body_bytes = plan.length;
        match (&plan.body, file) {
            (Body::Empty, _) => Ok(()),
            (Body::Text(text), _) => {
                self.out.extend_from_slice(text);
                Ok(())
            }
            (Body::File(r), _) if small.is_some() => self.copy_from_memory(small.map_or(&[], |s| s.body()), r, start),
            (Body::File(r), Some(file)) if r.len <= COPY_MAX && self.backlog.is_empty() => {
                self.copy_into_out(&file, r, start)
            }
            (body, file) => self.queue(|q| push_file_body(q, body, file)),
        }
    }

    /// Copies the range of a file in memory into the output buffer after the
    /// head (whatever the connection's queue holds: the copy is small). A range
    /// beyond the bytes cannot be planned; if it were, the head is taken back
    /// and the request is left unanswered.
    fn copy_from_memory(&mut self, bytes: &[u8], r: &ByteRange, head_start: usize) -> Result<(), RespondError> {
        let range = usize::try_from(r.start).ok().zip(usize::try_from(r.start + r.len).ok());
        match range.and_then(|(a, b)| bytes.get(a..b)) {
            Some(body) => {
                self.out.extend_from_slice(body);
                Ok(())
            }
            None => {
                self.take_back(head_start);
                Err(RespondError::FileUnavailable(std::io::ErrorKind::UnexpectedEof))
            }
        }
    }

    /// Takes a composed answer back out of the output buffer: the request is
    /// left unanswered.
    fn take_back(&mut self, head_start: usize) {
        self.out.truncate(head_start);
        self.outcome = Outcome::Pending;
        self.status = 0;
        self.body_bytes = 0;
    }

    /// Reads the range into the output buffer after the head. A short read
    /// means the file shrank since its stat: the head is taken back and the
    /// request is left unanswered.
    fn copy_into_out(&mut self, file: &File, r: &ByteRange, head_start: usize) -> Result<(), RespondError> {
        let at = self.out.len();
        self.out.resize(at + r.len as usize, 0);
        match file.read_exact_at(&mut self.out[at..], r.start) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.take_back(head_start);
                Err(RespondError::FileUnavailable(e.kind()))
            }
        }
    }

    /// Moves what is gathered in the output buffer to the connection's queue,
    /// adds the body's pieces, and sends what the socket takes now.
    fn queue(&mut self, push: impl FnOnce(&mut OutQueue)) -> Result<(), RespondError> {
        self.count_before_writing();
        let was_empty = self.backlog.is_empty();
        self.backlog.push_copy(self.out);
        self.out.clear();
        push(self.backlog);
        if was_empty && !self.held && self.backlog.flush(self.stream).is_err() {
            self.backlog.clear();
            self.outcome = Outcome::Broken;
            return Err(RespondError::Closed);
        }
        Ok(())
    }
}

/// Queues a planned body that needs the file (one range, or the pieces of a
/// multipart body); other bodies were written with the head.
pub(crate) fn push_file_body(queue: &mut OutQueue, body: &Body, file: Option<Arc<File>>) {
    match (body, file) {
        (Body::File(r), Some(file)) => queue.push_file(file, r.start, r.len),
        (Body::Parts(pieces), Some(file)) => {
            for piece in pieces {
                match piece {
                    Piece::Bytes(b) => queue.push_copy(b),
                    Piece::File(r) => queue.push_file(file.clone(), r.start, r.len),
                }
            }
        }
        (Body::File(_) | Body::Parts(_), None) => unreachable!("a plan with a file body comes with its file"),
        (Body::Empty | Body::Text(_), _) => {}
    }
}
