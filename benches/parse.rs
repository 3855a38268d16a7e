//! Micro benchmarks of the request side: head parsing (`http::head::parse`) and
//! chunked body decoding (`http::chunked::ChunkedDecoder`).
//!
//!     cargo bench --bench parse
//!     cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warpcore::http::chunked::ChunkedDecoder;
use warpcore::http::head::{self, HeadLimits, MAX_HEADERS};

/// The defaults of `Config` (32 KiB head, 8 KiB request line, 100 fields).
const LIMITS: HeadLimits =
    HeadLimits { max_head_bytes: 32 * 1024, max_request_line: 8 * 1024, max_header_count: MAX_HEADERS };

/// What `wrk -c64 http://127.0.0.1:PORT/` sends.
const WRK_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// A browser navigation: 10 fields, about 600 bytes.
const BROWSER_GET: &[u8] = b"GET /articles/2026/11/warp-lessons?ref=home&lang=en HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.7,de;q=0.3\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=3f9a1c2b7d4e4f60a1b2c3d4e5f60718; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
If-None-Match: \"5e8c-63b2f1a9\"\r\n\
\r\n";

/// A small form POST; the body follows the head in the same buffer.
const POST_CL: &[u8] = b"POST /echo HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
User-Agent: curl/7.88.1\r\n\
Accept: */*\r\n\
Content-Type: application/x-www-form-urlencoded\r\n\
Content-Length: 27\r\n\
\r\n\
name=warpcore&lang=rust&x=1";

fn bench_head(c: &mut Criterion) {
    let mut group = c.benchmark_group("head_parse");
    for (name, raw) in [("wrk_get", WRK_GET), ("browser_get_10_headers", BROWSER_GET), ("post_content_length", POST_CL)]
    {
        // Sanity: every input is a complete, accepted head.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert!(matches!(head::parse(raw, &mut headers, &LIMITS), Ok(Some(_))), "{name} must parse");

        group.throughput(Throughput::Bytes(raw.len() as u64));
        // A fresh initialised header array per request (what conn.rs did before parse_uninit).
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let parsed = head::parse(black_box(raw), &mut headers, &LIMITS);
                black_box(parsed.map(|p| p.map(|(_, info)| info)))
            })
        });
        // What conn.rs does now: header slots that are not initialised.
        group.bench_function(format!("{name}/uninit_slots"), |b| {
            b.iter(|| {
                let mut slots = head::uninit_headers();
                let parsed = head::parse_uninit(black_box(raw), &mut slots, &LIMITS);
                black_box(parsed.map(|p| p.map(|(_, info)| info)))
            })
        });
        // The parse alone, with one header array reused across iterations: the
        // difference to the line above is the cost of initialising the array.
        group.bench_function(format!("{name}/reused_array"), |b| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            b.iter(|| {
                let parsed = head::parse(black_box(raw), &mut headers, &LIMITS);
                black_box(parsed.map(|p| p.map(|(_, info)| info)))
            })
        });
    }
    group.finish();
}

/// `n` chunks of `size` bytes each, then the last chunk and the end.
fn chunked_body(n: usize, size: usize, extension: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(format!("{size:x}").as_bytes());
        if extension {
            body.extend_from_slice(b";name=value");
        }
        body.extend_from_slice(b"\r\n");
        body.extend((0..size).map(|j| b'a' + ((i + j) % 26) as u8));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Trailer: done\r\n\r\n");
    body
}

fn bench_chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked_decode");
    let cases = [
        ("small_chunks_64x16B", chunked_body(64, 16, false), 64 * 16),
        ("extensions_64x16B", chunked_body(64, 16, true), 64 * 16),
        ("large_chunks_16x4KiB", chunked_body(16, 4096, false), 16 * 4096),
    ];
    for (name, input, decoded_len) in &cases {
        group.throughput(Throughput::Bytes(input.len() as u64));
        // Whole body in one call; the output Vec is reused as the connection reuses its body buffer.
        group.bench_function(format!("{name}/whole"), |b| {
            let mut out = Vec::with_capacity(*decoded_len);
            b.iter(|| {
                out.clear();
                let mut d = ChunkedDecoder::new(1 << 20);
                let r = d.decode(black_box(input), &mut out);
                assert_eq!(r, Ok((input.len(), true)));
                black_box(out.len())
            })
        });
        // Arriving in 1460-byte segments (one TCP MSS on Ethernet), fed as they come.
        group.bench_function(format!("{name}/segments_1460B"), |b| {
            let mut out = Vec::with_capacity(*decoded_len);
            b.iter_batched_ref(
                || ChunkedDecoder::new(1 << 20),
                |d| {
                    out.clear();
                    let mut done = false;
                    for seg in input.chunks(1460) {
                        let (n, fin) = d.decode(black_box(seg), &mut out).unwrap();
                        debug_assert_eq!(n, seg.len());
                        done = fin;
                    }
                    assert!(done);
                    black_box(out.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_head, bench_chunked);
criterion_main!(benches);
