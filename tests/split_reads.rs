//! However a valid pipelined byte stream is cut into reads, the server sees the
//! same requests and sends the same responses, byte for byte but the Date.
//!
//! The stream is sent cut at every single offset, then at seeded random sets of
//! offsets, with a pause after each write (TCP_NODELAY is on) so the server
//! really reads the pieces separately. The handler echoes what it parsed, so a
//! request misread under some split shows up as a different response.

mod util;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// Pause after each piece: long enough for the server to read it on its own.
const PAUSE: Duration = Duration::from_millis(2);
const RANDOM_SPLITS: usize = 150;
const MAX_RANDOM_CUTS: usize = 12;
const CLIENT_THREADS: usize = 8;

/// A valid stream: GET, HEAD, POSTs by Content-Length (empty too) and chunked
/// (extensions, trailers, bare LF line ends), a 404, an HTTP/1.0 keep-alive, and
/// a final `Connection: close` so the server ends the exchange. No
/// `Expect: 100-continue`: whether the interim response is sent depends,
/// rightly, on whether the body was already there.
fn pipelined_stream() -> Vec<u8> {
    let parts: [&[u8]; 10] = [
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Seq: 1\r\n\r\n",
        b"HEAD /head?q=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n",
        b"GET /missing%20page HTTP/1.1\r\nhost: t\r\nAccept: */*\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"POST /echo HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nX-Seq: 9\r\n\r\n\r\n\r\n",
        b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ];
    parts.concat()
}

/// Answers every request with what the server parsed from it.
fn echo_parsed(req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>) {
    let mut text = format!(
        "{} {} path={} query={} 1.{}\n",
        String::from_utf8_lossy(req.method),
        String::from_utf8_lossy(req.target),
        String::from_utf8_lossy(req.path),
        String::from_utf8_lossy(req.query),
        req.minor_version
    );
    for h in req.headers {
        text += &format!("{}: {}\n", h.name, String::from_utf8_lossy(h.value));
    }
    text += &format!("body[{}]={}\n", req.body.len(), String::from_utf8_lossy(req.body));
    let status = if req.path == b"/missing page" { 404 } else { 200 };
    let _ = res.respond(status, [(&b"Content-Type"[..], &b"text/plain"[..])].into_iter(), text.as_bytes());
}

/// Sends `stream` cut at `cuts` (sorted offsets), pausing after each piece, and
/// returns everything the server sent until it closed, Date values blanked.
fn exchange_in_pieces(port: u16, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut c = Client::connect(port);
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
        if end > start {
            c.stream.write_all(&stream[start..end]).expect("send");
            thread::sleep(PAUSE);
            start = end;
        }
    }
    let mut out = Vec::new();
    c.stream.read_to_end(&mut out).expect("read until the server closes");
    blank_dates(out)
}

fn blank_dates(mut bytes: Vec<u8>) -> Vec<u8> {
    const NAME: &[u8] = b"\r\nDate: ";
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(NAME.len()).position(|w| w.eq_ignore_ascii_case(NAME)) {
        let value = i + at + NAME.len();
        let end = value + bytes[value..].iter().position(|&b| b == b'\r').expect("Date ends with CRLF");
        bytes[value..end].fill(b'#');
        i = end;
    }
    bytes
}

/// xorshift64*: a fixed seed gives the same splits on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_split_of_a_pipelined_stream_gives_the_same_responses() {
    let server = start_with(echo_parsed, |c| c.workers = 2);
    let stream = pipelined_stream();
    let expected = exchange_in_pieces(server.port, &stream, &[]);
    let replies = String::from_utf8_lossy(&expected);
    assert_eq!(replies.matches("HTTP/1.1 ").count(), 10, "one response per request:\n{replies}");
    for needle in
        ["body[11]=hello world", "body[16]=hello 0123456789", "body[3]=abc", "body[4]=\r\n\r\n", "HTTP/1.1 404"]
    {
        assert!(replies.contains(needle), "{needle:?} missing from:\n{replies}");
    }

    // Every single cut point, then seeded random multi-point cuts.
    let mut splits: Vec<Vec<usize>> = (1..stream.len()).map(|at| vec![at]).collect();
    let mut rng = Rng(0x5eed_f00d_cafe_d00d);
    for _ in 0..RANDOM_SPLITS {
        let n = 2 + rng.below(MAX_RANDOM_CUTS - 1);
        let mut cuts: Vec<usize> = (0..n).map(|_| 1 + rng.below(stream.len() - 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        splits.push(cuts);
    }
    // A few with one byte per read over a stretch, where state machines hurt most.
    for from in [0, stream.len() / 3, stream.len() - 80] {
        splits.push((from + 1..from + 80).collect());
    }

    let started = Instant::now();
    let splits = Arc::new(splits);
    let next = Arc::new(AtomicUsize::new(0));
    let expected = Arc::new(expected);
    let stream = Arc::new(stream);
    let workers: Vec<_> = (0..CLIENT_THREADS)
        .map(|_| {
            let (splits, next, expected, stream) = (splits.clone(), next.clone(), expected.clone(), stream.clone());
            let port = server.port;
            thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(cuts) = splits.get(i) else { return };
                let got = exchange_in_pieces(port, &stream, cuts);
                assert!(
                    got == *expected,
                    "cut at {cuts:?}, the responses differ:\n--- expected\n{}\n--- got\n{}",
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(&got)
                );
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a split gave different responses");
    }
    eprintln!("{} splits checked in {:?}", splits.len(), started.elapsed());
}
