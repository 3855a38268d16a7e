//! Request bodies that stream: read as they arrive through a bounded window,
//! from the handler call and from other threads, with 100-continue on first
//! read, the limit applied while streaming, undrained bodies discarded up to a
//! bound, and a stalled sender cut by the body timeout.

mod util;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use util::*;
use warpcore::{BodyError, BodyStream, Deferred, Payload, Request, Response};

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

/// Echoes a streamed body from a thread of its own as it arrives; a body
/// that arrived whole is echoed at once. `/count` answers the body's length
/// instead, `/refuse` answers 401 without reading.
fn streaming_echo(req: &Request<'_>, res: &mut Response<'_>) {
    if req.path == b"/refuse" {
        let _ = res.respond(401, no_headers(), b"no");
        return;
    }
    let Some(mut body) = res.body() else {
        let _ = res.respond(200, no_headers(), req.body);
        return;
    };
    let count = req.path == b"/count";
    let mut d = res.defer().unwrap();
    std::thread::spawn(move || {
        if count {
            let mut total = 0usize;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match body.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) => {
                        let _ = d.respond_bytes(500, no_headers(), format!("{e:?}").as_bytes());
                        return;
                    }
                }
            }
            let _ = d.respond_bytes(200, no_headers(), total.to_string().as_bytes());
            return;
        }
        d.start(200, no_headers(), None).unwrap();
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            match body.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if d.write(Payload::from(chunk[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = d.abort();
                    return;
                }
            }
        }
        let _ = d.end();
    });
}

fn unlimited(c: &mut warpcore::Config) {
    c.max_body_size = u64::MAX;
    c.whole_body_max = 64 * 1024;
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

/// Sends `body` from a thread while this one reads the whole answer, so that
/// neither side waits for the other (the echo streams back as it arrives).
fn upload(port: u16, head: &[u8], body: Vec<u8>) -> Vec<u8> {
    let mut c = Client::connect(port);
    c.send(head);
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&body));
    let reply = c.read_response(false);
    sender.join().unwrap().unwrap();
    assert_eq!(reply.status, 200);
    reply.body
}

#[test]
fn a_large_body_streams_back_as_it_arrives_with_content_length() {
    let s = start_with(streaming_echo, unlimited);
    let body = pattern(8 << 20);
    let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len());
    let echoed = upload(s.port, head.as_bytes(), body.clone());
    assert!(echoed == body, "the echo differs ({} bytes back)", echoed.len());
}

#[test]
fn a_large_chunked_body_streams_too() {
    let s = start_with(streaming_echo, unlimited);
    let body = pattern(3 << 20);
    let mut framed = Vec::new();
    for piece in body.chunks(10_000) {
        framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\nX-Trailer: dropped\r\n\r\n");
    let echoed = upload(s.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", framed);
    assert!(echoed == body, "the echo differs ({} bytes back)", echoed.len());
}

#[test]
fn a_small_body_still_arrives_whole_and_the_connection_goes_on() {
    let s = start_with(streaming_echo, unlimited);
    let mut c = s.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response(false).text(), "hello");
    // A streamed body, then a request after it on the same connection.
    let body = pattern(200_000);
    c.send(format!("POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    c.send(&body);
    assert_eq!(c.read_response(false).text(), "200000");
    assert_eq!(c.get("/echo").status, 200);
}

#[test]
fn expect_100_continue_is_answered_only_when_the_body_is_read() {
    let s = start_with(streaming_echo, unlimited);
    // Refused without reading: the final answer comes instead of 100, and the
    // connection closes (whether the client sends the body cannot be known).
    let mut c = s.connect();
    c.send(b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 401);
    assert!(c.closed_by_server());
    // Read: 100 Continue first, then the answer once the body came.
    let mut c = s.connect();
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response(false);
    assert_eq!(interim.status, 100);
    c.send(&vec![b'x'; 1_000_000]);
    assert_eq!(c.read_response(false).text(), "1000000");
}

/// Answers at once without reading the body.
fn ignores_body(_req: &Request<'_>, res: &mut Response<'_>) {
    let _ = res.respond(200, no_headers(), b"ignored");
}

#[test]
fn an_unread_body_is_discarded_up_to_a_bound_then_the_connection_closes() {
    let s = start_with(ignores_body, unlimited);
    // 200 KB unread: discarded, the connection goes on.
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
    c.send(&vec![b'x'; 200_000]);
    assert_eq!(c.read_response(false).text(), "ignored");
    assert_eq!(c.get("/").text(), "ignored");
    // 50 MB unread: the answer comes, then the connection closes.
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n");
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..50 {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    assert_eq!(c.read_response(false).text(), "ignored");
    assert!(c.closed_by_server(), "past the flush bound the connection closes");
    sender.join().unwrap();
}

#[test]
fn the_body_limit_applies_while_streaming() {
    let s = start_with(streaming_echo, |c| {
        c.max_body_size = 300_000;
        c.whole_body_max = 64 * 1024;
    });
    // Content-Length over the limit: 413 before the handler.
    let mut c = s.connect();
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 300001\r\n\r\n");
    assert_eq!(c.read_response(false).status, 413);
    // Chunked past the limit before the answer began: 413, and the reader
    // learns it.
    let mut c = s.connect();
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut framed = Vec::new();
    for _ in 0..40 {
        framed.extend_from_slice(b"2710\r\n");
        framed.extend_from_slice(&[b'y'; 10_000]);
        framed.extend_from_slice(b"\r\n");
    }
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&framed);
    });
    assert_eq!(c.read_response(false).status, 413);
    assert!(c.closed_by_server());
    sender.join().unwrap();
    // Past the limit after the answer began (the echo streams): closed. The
    // first 80 KB start the stream (past the whole-body maximum); the rest
    // goes only once the echo's head arrived, so that the answer has begun
    // whatever the scheduler does (it would be a 413 otherwise).
    let mut c = s.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut framed = Vec::new();
    for _ in 0..40 {
        framed.extend_from_slice(b"2710\r\n");
        framed.extend_from_slice(&[b'z'; 10_000]);
        framed.extend_from_slice(b"\r\n");
    }
    let rest = framed.split_off(8 * 10_008);
    c.send(&framed);
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    while !all.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.stream.read(&mut chunk).expect("the echo's head");
        assert!(n > 0, "closed before the echo's head");
        all.extend_from_slice(&chunk[..n]);
    }
    assert!(all.starts_with(b"HTTP/1.1 200"), "the echo began");
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&rest);
    });
    let _ = c.stream.read_to_end(&mut all);
    assert!(!all.ends_with(b"0\r\n\r\n"), "the stream never ends properly");
    sender.join().unwrap();
}

/// Keeps the reader and the handle for the test, then answers from it.
fn handing_over(tx: mpsc::Sender<(BodyStream, Deferred)>) -> impl warpcore::Handler {
    let tx = Mutex::new(tx);
    move |_req: &Request<'_>, res: &mut Response<'_>| {
        let mut body = res.body().expect("a streamed body");
        // On the worker thread a read never waits.
        let mut buf = [0u8; 16];
        assert!(matches!(body.read(&mut buf), Ok(_) | Err(BodyError::WouldBlock)));
        let d = res.defer().unwrap();
        let _ = tx.lock().unwrap().send((body, d));
    }
}

#[test]
fn a_stalled_sender_is_cut_by_the_body_timeout_and_its_reader_learns_it() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(handing_over(tx), |c| {
        unlimited(c);
        c.body_timeout = Duration::from_secs(1);
    });
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    c.send(&[b'a'; 1000]);
    let (mut body, _d) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 4096];
    let end = loop {
        match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n,
            Err(e) => break Err(e),
        }
    };
    assert_eq!(got, 1000);
    assert_eq!(end, Err(BodyError::Closed));
    assert!(c.closed_by_server());
}

#[test]
fn on_a_worker_thread_a_read_never_waits() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(handing_over(tx), unlimited);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    let (mut body, mut d) = rx.recv_timeout(IO_TIMEOUT).expect("the handler returned without waiting");
    c.send(&vec![b'q'; 100_000]);
    let mut all = Vec::new();
    body.read_to_end(&mut all, 1 << 20).unwrap();
    assert_eq!(all.len(), 100_000);
    d.respond_bytes(200, no_headers(), b"read").unwrap();
    assert_eq!(c.read_response(false).text(), "read");
}

/// Takes the reader and hands it to the test with the handle (`/refuse`
/// refuses with 401 after taking it; `/stream` streams 40 KiB and a tail in
/// the call).
fn takes_reader(tx: mpsc::Sender<(BodyStream, Deferred)>) -> impl warpcore::Handler {
    let tx = Mutex::new(tx);
    move |req: &Request<'_>, res: &mut Response<'_>| {
        let body = res.body().expect("a streamed body");
        match req.path {
            b"/refuse" => {
                let _ = res.respond(401, no_headers(), b"no");
                drop(body);
            }
            b"/stream" => {
                res.start(200, no_headers(), None).unwrap();
                res.write(&[b'B'; 40960]).unwrap();
                res.write(b"tail").unwrap();
                res.end().unwrap();
                drop(body);
            }
            _ => {
                let d = res.defer().unwrap();
                let _ = tx.lock().unwrap().send((body, d));
            }
        }
    }
}

#[test]
fn a_fin_mid_body_tells_the_reader_at_once() {
    let (tx, rx) = mpsc::channel();
    let s = start_with(takes_reader(tx), unlimited);
    let mut c = s.connect();
    c.send(b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    let (mut body, _d) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    c.send(&[b'f'; 100_000]);
    c.shutdown_write();
    // Read on a thread: told at once, well before any timeout of the server's
    // could end the connection (the answer timeout is 60 s).
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = 0;
        let end = loop {
            match body.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => got += n,
                Err(e) => break Err(e),
            }
        };
        let _ = done_tx.send((got, end));
    });
    let result = done_rx.recv_timeout(IO_TIMEOUT).expect("the reader learns of the FIN at once");
    assert_eq!(result, (100_000, Err(BodyError::Closed)), "the body cannot end whole");
}

#[test]
fn a_refusal_after_taking_the_reader_sends_no_100_and_closes() {
    let (tx, _rx) = mpsc::channel();
    let s = start_with(takes_reader(tx), unlimited);
    let mut c = s.connect();
    c.send(b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 401, "the final answer, not a 100, comes first");
    assert!(c.closed_by_server());
}

#[test]
fn a_stream_begun_in_the_call_sends_its_100_before_its_head_not_inside_its_body() {
    let (tx, _rx) = mpsc::channel();
    let s = start_with(takes_reader(tx), unlimited);
    let mut c = s.connect();
    c.send(b"POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_response(false).status, 100);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    let mut want = vec![b'B'; 40960];
    want.extend_from_slice(b"tail");
    assert!(r.body == want, "the body is whole, with nothing spliced in ({} bytes)", r.body.len());
}

#[test]
fn a_chunked_body_of_tiny_chunks_streams_instead_of_hitting_413() {
    let s = start_with(streaming_echo, unlimited);
    let mut framed = Vec::new();
    for _ in 0..200_000 {
        framed.extend_from_slice(b"1\r\nz\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    let mut c = s.connect();
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&framed));
    let r = c.read_response(false);
    sender.join().unwrap().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "200000"));
}
