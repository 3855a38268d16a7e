//! Minimal hyper 1.x HTTP/1.1 "Hello, World!" peer for `make bench-compare`
//! (benches/harness/bench.py).
//!
//! Usage: hyper-hello PORT [THREADS] [MODE]
//!   MODE = "st" (default): THREADS OS threads, each with its own tokio
//!          current_thread runtime and its own SO_REUSEPORT listener
//!          (the thread-per-core layout TechEmpower's hyper entry uses).
//!   MODE = "mt": one tokio multi_thread runtime with THREADS workers and a
//!          single shared listener (the "default" tokio layout).
//! Binds 127.0.0.1 only.
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

static BODY: &[u8] = b"Hello, World!";

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = if req.uri().path() == "/" {
        Response::new(Full::new(Bytes::from_static(BODY)))
    } else {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(SERVER, HeaderValue::from_static("hyper"));
    Ok(res)
}

fn listener(addr: SocketAddr, reuseport: bool) -> std::net::TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    if reuseport {
        s.set_reuse_port(true).expect("SO_REUSEPORT");
    }
    s.set_nodelay(true).ok();
    s.bind(&addr.into()).expect("bind");
    s.listen(4096).expect("listen");
    s.set_nonblocking(true).expect("nonblocking");
    s.into()
}

async fn serve(l: std::net::TcpListener) {
    let l = TcpListener::from_std(l).expect("from_std");
    loop {
        let (stream, _) = match l.accept().await {
            Ok(x) => x,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8080);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let mode = args.get(3).map(String::as_str).unwrap_or("st");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    if mode == "mt" {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("runtime");
        let l = listener(addr, false);
        eprintln!("hyper-hello: mt runtime, {threads} workers, http://{addr}/");
        rt.block_on(serve(l));
    } else {
        // Bind every listener before spawning so that the port is ready
        // as soon as the first line is printed.
        let ls: Vec<_> = (0..threads).map(|_| listener(addr, true)).collect();
        eprintln!("hyper-hello: {threads} x current_thread + SO_REUSEPORT, http://{addr}/");
        let mut handles = Vec::new();
        for l in ls {
            handles.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(serve(l));
            }));
        }
        for h in handles {
            let _ = h.join();
        }
    }
}
