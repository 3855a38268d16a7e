//! GET, HEAD, POST bodies, keep-alive and HTTP/1.0 over real sockets.

mod util;

use util::*;

#[test]
fn get_returns_hello_with_engine_headers() {
    let s = start(demo_handler);
    let mut c = s.connect();
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!");
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("server"), Some("warpcore"));
    assert_eq!(r.header("date").map(str::len), Some(29));
    assert_eq!(r.header("connection"), None);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let s = start(demo_handler);
    let mut c = s.connect();
    for _ in 0..100 {
        assert_eq!(c.get("/").text(), "Hello, World!");
    }
}

#[test]
fn connection_close_is_honoured() {
    let s = start(demo_handler);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server());
}

#[test]
fn http10_closes_by_default_and_keeps_alive_on_request() {
    let s = start(demo_handler);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server());

    let mut c = s.connect();
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
}

#[test]
fn head_has_get_headers_and_no_body() {
    let s = start(demo_handler);
    let mut c = s.connect();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.header("content-length"), Some("13"));
    // The next response starts right after the head: no body bytes were sent.
    let next = c.get("/");
    assert_eq!(next.text(), "Hello, World!");
}

#[test]
fn post_body_by_content_length() {
    let s = start(demo_handler);
    let mut c = s.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(c.read_response(false).text(), "hello world");
}

#[test]
fn post_body_arriving_in_pieces() {
    let s = start(demo_handler);
    let mut c = s.connect();
    let body = vec![b'x'; 200_000];
    c.send(format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    for piece in body.chunks(7000) {
        c.send(piece);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let r = c.read_response(false);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body);
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let s = start(demo_handler);
    let mut c = s.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;name=v\r\nhello\r\n");
    c.send(b"6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "hello world");
    assert_eq!(c.get("/").status, 200, "the connection stays usable after a chunked body");
}

#[test]
fn expect_continue_gets_100_before_the_body() {
    let s = start(demo_handler);
    let mut c = s.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response(false);
    assert_eq!(interim.status, 100);
    c.send(b"ping");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "ping"));
}

#[test]
fn path_is_decoded_and_split_from_the_query() {
    let s = start(|req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>| {
        let text = format!(
            "{}|{}|{}",
            String::from_utf8_lossy(req.path),
            String::from_utf8_lossy(req.query),
            String::from_utf8_lossy(req.target)
        );
        let _ = res.respond(200, std::iter::empty(), text.as_bytes());
    });
    let mut c = s.connect();
    assert_eq!(c.get("/a%20b/c?x=1&y=%20").text(), "/a b/c|x=1&y=%20|/a%20b/c?x=1&y=%20");
    assert_eq!(c.get("http://example.com/abs?q").text(), "/abs|q|http://example.com/abs?q");
    assert_eq!(c.get("http://example.com").text(), "/||http://example.com");
}

#[test]
fn request_exposes_headers_peer_and_version() {
    let s = start(|req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>| {
        let text = format!(
            "{} {} {} {}",
            String::from_utf8_lossy(req.header("x-one").unwrap_or(b"-")),
            req.headers.len(),
            String::from_utf8_lossy(req.peer_ip),
            req.minor_version
        );
        let _ = res.respond(200, std::iter::empty(), text.as_bytes());
    });
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-One:   spaced value  \r\n\r\n");
    assert_eq!(c.read_response(false).text(), "spaced value 2 127.0.0.1 1");
}
