//! A 1 GiB stream to a slow reader: the server holds back at the high-water
//! mark instead of buffering. Alone in its test binary so that RSS measures
//! this stream only.

mod util;

use std::io::Read;
use std::time::{Duration, Instant};

use util::*;
use warpcore::{Payload, Request, Response};

fn no_headers<'a>() -> std::iter::Empty<(&'a [u8], &'a [u8])> {
    std::iter::empty()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_large_stream_to_a_slow_reader_stays_within_the_high_water_mark() {
    const TOTAL: usize = 1 << 30;
    const CHUNK: usize = 256 * 1024;
    let s = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            d.start(200, no_headers(), Some(TOTAL as u64)).unwrap();
            // A fresh buffer per write: without backpressure they would pile up.
            for _ in 0..TOTAL / CHUNK {
                d.write(Payload::from(vec![b'z'; CHUNK])).unwrap();
            }
            d.end().unwrap();
        });
    });
    let before = rss_kib();
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0usize;
    let mut peak = before;
    let started = Instant::now();
    let mut first = true;
    while received < TOTAL + 60 {
        let n = c.stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early at {received}");
        received += n;
        if received % (64 << 20) < n {
            // A slow reader: pause now and then so the server must hold back.
            std::thread::sleep(Duration::from_millis(50));
            peak = peak.max(rss_kib());
        }
        assert!(started.elapsed() < Duration::from_secs(120), "stream too slow");
        if first {
            // The first read starts with the response head.
            received -= find_head_end(&buf[..n]).expect("the head arrives in the first read");
            first = false;
        }
        if received >= TOTAL {
            break;
        }
    }
    assert_eq!(received, TOTAL);
    let growth = peak.saturating_sub(before);
    assert!(growth < 16 * 1024, "RSS grew by {growth} KiB while streaming 1 GiB");
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}
