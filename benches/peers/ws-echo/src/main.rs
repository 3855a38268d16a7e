//! The WebSocket echo peer of the `ws` suite (benches/harness/bench.py): the
//! canonical tokio-tungstenite echo (`read.forward(write)` of text and binary
//! messages), served the way hyper-hello serves HTTP.
//!
//! Usage: ws-echo PORT [THREADS]
//!   THREADS OS threads, each with its own tokio current_thread runtime and
//!   its own SO_REUSEPORT listener on 127.0.0.1:PORT. `GET /ws` (any path
//!   but `/`) is a WebSocket echo with a 1 MiB message limit (the C demo's);
//!   `GET /` answers "Hello, World!" and closes (the harness's readiness
//!   check). permessage-deflate is not offered (tungstenite has none).
use std::net::SocketAddr;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn listener(addr: SocketAddr) -> std::net::TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.set_reuse_port(true).expect("SO_REUSEPORT");
    s.bind(&addr.into()).expect("bind");
    s.listen(4096).expect("listen");
    s.set_nonblocking(true).expect("nonblocking");
    s.into()
}

/// Whether the request waiting on `stream` is `GET / ` (peeked, not read).
async fn is_hello(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 16];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        if n >= 6 || buf[..n].contains(&b'\n') {
            return Ok(buf[..n].starts_with(b"GET / "));
        }
        stream.readable().await?;
    }
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    match is_hello(&stream).await {
        Ok(true) => {
            let mut stream = stream;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\
                      Connection: close\r\n\r\nHello, World!",
                )
                .await;
            return;
        }
        Ok(false) => {}
        Err(_) => return,
    }
    let config = WebSocketConfig::default().max_message_size(Some(1 << 20)).max_frame_size(Some(1 << 20));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
    let (write, read) = ws.split();
    let _ = read.try_filter(|m| future::ready(m.is_text() || m.is_binary())).forward(write).await;
}

async fn accept_loop(l: std::net::TcpListener) {
    let l = TcpListener::from_std(l).expect("from_std");
    loop {
        if let Ok((stream, _)) = l.accept().await {
            tokio::spawn(serve(stream));
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).expect("usage: ws-echo PORT [THREADS]");
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1).max(1);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let l = listener(addr);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(accept_loop(l));
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
