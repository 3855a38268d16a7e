//! Micro benchmarks of the response side: composing a response head
//! (`http::compose::compose_head`, into one reused buffer as the worker does) and
//! the date cache (`http::date`).
//!
//!     cargo bench --bench compose
//!     cargo bench --bench compose -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use warpcore::http::compose::{
    compose_head, compose_head_rendered, render_fields, server_line, BodyLength, RequestMeta,
};
use warpcore::http::date::{format_http_date, DateCache, HTTP_DATE_LEN};

const KEEP_ALIVE_11: RequestMeta = RequestMeta { minor: 1, keep_alive: true, is_head: false };

type Fields = &'static [(&'static [u8], &'static [u8])];

/// The demo's `GET /` answer: one handler field, a 13-byte body.
const HELLO: Fields = &[(b"Content-Type", b"text/plain")];

/// A typical application answer: six handler fields.
const APP: Fields = &[
    (b"Content-Type", b"text/html; charset=utf-8"),
    (b"Cache-Control", b"private, max-age=0, must-revalidate"),
    (b"ETag", b"\"5e8c-63b2f1a9\""),
    (b"Vary", b"Accept-Encoding"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Set-Cookie", b"session=3f9a1c2b7d4e4f60a1b2c3d4e5f60718; Path=/; HttpOnly; SameSite=Lax"),
];

fn bench_compose(c: &mut Criterion) {
    let mut cache = DateCache::default();
    cache.refresh();
    let server = server_line(b"warpcore");
    cache.set_server_line(&server);
    let env = cache.compose_env();

    let mut group = c.benchmark_group("compose_head");
    let cases: [(&str, Fields, BodyLength, RequestMeta); 4] = [
        ("hello_1_field", HELLO, BodyLength::Known(13), KEEP_ALIVE_11),
        ("app_6_fields", APP, BodyLength::Known(5120), KEEP_ALIVE_11),
        ("chunked_1_field", HELLO, BodyLength::Chunked, KEEP_ALIVE_11),
        ("http10_close", HELLO, BodyLength::Known(13), RequestMeta { minor: 0, keep_alive: false, is_head: false }),
    ];
    for (name, fields, length, meta) in cases {
        // One output buffer for the whole run, cleared per response as the worker
        // clears its batch buffer after each write: no allocation once warm.
        let mut out: Vec<u8> = Vec::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let pairs = black_box(fields).iter().map(|(n, v)| (*n, *v));
                let composed = compose_head(&mut out, &env, black_box(200), pairs, length, meta);
                black_box((composed.is_ok(), out.len()))
            })
        });
    }
    // 16 pipelined answers gathered into one buffer, as for wrk's pipeline.lua.
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    group.bench_function("hello_1_field/batch_of_16", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..16 {
                let pairs = black_box(HELLO).iter().map(|(n, v)| (*n, *v));
                let _ = compose_head(&mut out, &env, 200, pairs, BodyLength::Known(13), KEEP_ALIVE_11);
                out.extend_from_slice(b"Hello, World!");
            }
            black_box(out.len())
        })
    });
    // A handler that sets its own Date and Server: the engine's lines come out again.
    let own: Fields =
        &[(b"Content-Type", b"text/plain"), (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"), (b"Server", b"app")];
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    group.bench_function("own_date_and_server", |b| {
        b.iter(|| {
            out.clear();
            let pairs = black_box(own).iter().map(|(n, v)| (*n, *v));
            black_box(compose_head(&mut out, &env, 200, pairs, BodyLength::Known(13), KEEP_ALIVE_11).is_ok())
        })
    });
    // A deferred answer: fields rendered on the answering thread, the head
    // composed around them on the worker.
    let mut rendered: Vec<u8> = Vec::with_capacity(256);
    group.bench_function("app_6_fields/deferred_render", |b| {
        b.iter(|| {
            rendered.clear();
            let pairs = black_box(APP).iter().map(|(n, v)| (*n, *v));
            black_box(render_fields(&mut rendered, pairs).is_ok())
        })
    });
    let fields = render_fields(&mut rendered, APP.iter().map(|(n, v)| (*n, *v))).unwrap();
    group.bench_function("app_6_fields/deferred_compose", |b| {
        b.iter(|| {
            out.clear();
            let r = compose_head_rendered(
                &mut out,
                &env,
                200,
                black_box(&rendered),
                &fields,
                BodyLength::Known(5120),
                KEEP_ALIVE_11,
            );
            black_box(r.is_ok())
        })
    });
    group.finish();
}

fn bench_date(c: &mut Criterion) {
    let mut group = c.benchmark_group("date");
    // The per-loop-turn call: reads the clock, formats only when the second changed.
    group.bench_function("cache_refresh", |b| {
        let mut cache = DateCache::default();
        b.iter(|| {
            cache.refresh();
            black_box(cache.get()[28])
        })
    });
    // What a second change (or a cache-less server, per response) costs.
    group.bench_function("format_http_date", |b| {
        let mut out = [0u8; HTTP_DATE_LEN];
        let mut t: u64 = 1_795_000_000;
        b.iter(|| {
            t += 1;
            format_http_date(black_box(t), &mut out);
            black_box(out[28])
        })
    });
    group.finish();
}

criterion_group!(benches, bench_compose, bench_date);
criterion_main!(benches);
