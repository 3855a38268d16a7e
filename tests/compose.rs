//! The response composer over real sockets: the fields the engine adds, the
//! handler's fields it copies, replaces or honours, bodies that must not be
//! sent, refused responses, large bodies written with `writev` and a backlog,
//! and handlers that never answer.

mod util;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::*;
use warpcore::{Request, RespondError, Response};

type Fields = &'static [(&'static [u8], &'static [u8])];

/// A handler answering every request with `status`, `fields` and `body`.
fn answering(
    status: u16,
    fields: Fields,
    body: &'static [u8],
) -> impl Fn(&Request<'_>, &mut Response<'_>) + Send + Sync {
    move |_req: &Request<'_>, res: &mut Response<'_>| {
        res.respond(status, fields.iter().map(|(n, v)| (*n, *v)), body).expect("respond");
    }
}

#[test]
fn server_name_is_configurable() {
    let s = start_with(answering(200, &[], b"x"), |c| c.server_name = b"edge/1.2 (test)".to_vec());
    let r = s.connect().get("/");
    assert_eq!(r.header("server"), Some("edge/1.2 (test)"));
    assert_eq!(r.header_count("server"), 1);
}

#[test]
fn empty_server_name_sends_no_server_field() {
    let s = start_with(answering(200, &[], b"x"), |c| c.server_name = Vec::new());
    let r = s.connect().get("/");
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header_count("date"), 1);
    assert_eq!(r.text(), "x");
}

#[test]
fn handler_fields_are_copied_in_order() {
    let fields: Fields = &[
        (b"Content-Type", b"text/html; charset=utf-8"),
        (b"Set-Cookie", b"a=1"),
        (b"X-Empty", b""),
        (b"Set-Cookie", b"b=2; Path=/"),
        (b"cache-control", b"no-store"),
    ];
    let s = start(answering(201, fields, b"made"));
    let r = s.connect().get("/");
    assert_eq!(r.status, 201);
    let got: Vec<(&str, &str)> = r
        .headers
        .iter()
        .filter(|(n, _)| !["date", "server", "content-length"].contains(&n.to_ascii_lowercase().as_str()))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Set-Cookie", "a=1"),
            ("X-Empty", ""),
            ("Set-Cookie", "b=2; Path=/"),
            ("cache-control", "no-store"),
        ]
    );
    assert_eq!(r.text(), "made");
}

#[test]
fn handler_framing_fields_are_replaced() {
    let fields: Fields = &[(b"Content-Length", b"999"), (b"Transfer-Encoding", b"chunked"), (b"content-length", b"1")];
    let s = start(answering(200, fields, b"hello"));
    let mut c = s.connect();
    for _ in 0..2 {
        let r = c.get("/");
        assert_eq!(r.header_count("content-length"), 1);
        assert_eq!(r.header("content-length"), Some("5"));
        assert_eq!(r.header("transfer-encoding"), None);
        assert_eq!(r.text(), "hello");
    }
}

#[test]
fn handler_connection_keep_alive_is_dropped_and_close_is_honoured() {
    let s = start(|req: &Request<'_>, res: &mut Response<'_>| {
        let fields: &[(&[u8], &[u8])] =
            if req.path == b"/close" { &[(b"Connection", b"Close")] } else { &[(b"Connection", b"keep-alive")] };
        res.respond(200, fields.iter().copied(), b"ok").unwrap();
    });
    let mut c = s.connect();
    let r = c.get("/keep");
    assert_eq!(r.header("connection"), None, "HTTP/1.1 persists without saying so");
    let r = c.get("/close");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header_count("connection"), 1);
    assert!(c.closed_by_server(), "the server closes after a handler's Connection: close");
    assert!(c.leftover().is_empty());
}

#[test]
fn handler_connection_close_ends_a_pipeline() {
    let s = start(|req: &Request<'_>, res: &mut Response<'_>| {
        let fields: &[(&[u8], &[u8])] = if req.path == b"/close" { &[(b"Connection", b"close")] } else { &[] };
        res.respond(200, fields.iter().copied(), req.path).unwrap();
    });
    let mut c = s.connect();
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /close HTTP/1.1\r\nHost: t\r\n\r\nGET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    let (replies, rest) = parse_responses(&c.read_to_eof(), &[]);
    assert_eq!(replies.iter().map(|r| r.text()).collect::<Vec<_>>(), ["/a", "/close"]);
    assert!(rest.is_empty());
}

#[test]
fn handler_date_and_server_override_the_engines() {
    let fields: Fields = &[(b"date", b"Sun, 06 Nov 1994 08:49:37 GMT"), (b"SERVER", b"mine")];
    let s = start(answering(200, fields, b""));
    let r = s.connect().get("/");
    assert_eq!(r.header_count("date"), 1);
    assert_eq!(r.header("date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_eq!(r.header_count("server"), 1);
    assert_eq!(r.header("server"), Some("mine"));
    assert_eq!(r.header("content-length"), Some("0"));
}

#[test]
fn engine_date_is_an_imf_fixdate() {
    let s = start(answering(200, &[], b""));
    let r = s.connect().get("/");
    let date = r.header("date").unwrap();
    // `Sun, 06 Nov 1994 08:49:37 GMT`
    let b = date.as_bytes();
    assert_eq!(b.len(), 29, "{date}");
    assert!(b[3] == b',' && b[4] == b' ' && date.ends_with(" GMT"), "{date}");
    assert!(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&date[..3]), "{date}");
}

#[test]
fn no_body_statuses_carry_no_body_and_no_length() {
    for status in [204u16, 304] {
        // The handler offers a body anyway: it must not reach the wire.
        let s = start(answering(status, &[(b"Content-Length", b"4"), (b"ETag", b"\"v1\"")], b"oops"));
        let mut c = s.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
        c.shutdown_write();
        let all = c.read_to_eof();
        let text = String::from_utf8_lossy(&all).into_owned();
        assert!(!text.contains("oops"), "{status}: a body was sent: {text:?}");
        assert!(!text.to_ascii_lowercase().contains("content-length"), "{status}: {text:?}");
        assert!(!text.to_ascii_lowercase().contains("transfer-encoding"), "{status}: {text:?}");
        let (replies, rest) = parse_responses(&all, &[]);
        assert_eq!(replies.len(), 2, "{status}: the connection stays in sync: {text:?}");
        assert!(replies.iter().all(|r| r.status == status && r.header("etag") == Some("\"v1\"")));
        assert!(rest.is_empty());
    }
}

#[test]
fn head_answer_keeps_the_handlers_declared_length() {
    // A handler that answers HEAD without producing the body may state the
    // length GET would have.
    let s = start(|req: &Request<'_>, res: &mut Response<'_>| {
        if req.method == b"HEAD" {
            res.respond(200, [(&b"Content-Length"[..], &b"1234"[..])].into_iter(), b"").unwrap();
        } else {
            res.respond(200, std::iter::empty(), b"get").unwrap();
        }
    });
    let mut c = s.connect();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.header("content-length"), Some("1234"));
    assert_eq!(r.header_count("content-length"), 1);
    assert_eq!(c.get("/").text(), "get");
}

/// What the handler's refused calls returned, in order.
type Seen = Arc<Mutex<Vec<Result<(), RespondError>>>>;

#[test]
fn invalid_status_and_fields_are_refused_and_the_client_still_gets_an_answer() {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let s = start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let none = || std::iter::empty::<(&[u8], &[u8])>();
        let one = |n: &'static [u8], v: &'static [u8]| std::iter::once((n, v));
        let mut results = vec![
            res.respond(99, none(), b"x"),
            res.respond(100, none(), b"x"),
            res.respond(199, none(), b"x"),
            res.respond(600, none(), b"x"),
            res.respond(0, none(), b"x"),
            res.respond(200, one(b"Bad Name", b"v"), b"x"),
            res.respond(200, one(b"", b"v"), b"x"),
            res.respond(200, one(b"X-Ok", b"a\r\nInjected: 1"), b"x"),
            res.respond(200, one(b"X-Ok", b"a\nb"), b"x"),
            res.respond(200, one(b"X-Ok", b"nul\0"), b"x"),
            res.respond(200, one(b"X:Colon", b"v"), b"x"),
        ];
        assert!(!res.is_answered(), "a refused call answers nothing");
        results.push(res.respond(200, one(b"X-Ok", b"yes"), b"finally"));
        results.push(res.respond(200, none(), b"again"));
        results.push(res.respond(500, none(), b"again"));
        *record.lock().unwrap() = results;
    });
    let mut c = s.connect();
    let r = c.get("/");
    assert_eq!((r.status, r.text().as_str(), r.header("x-ok")), (200, "finally", Some("yes")));
    use RespondError::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Err(InvalidStatus),
            Err(InvalidStatus),
            Err(InvalidStatus),
            Err(InvalidStatus),
            Err(InvalidStatus),
            Err(InvalidHeader),
            Err(InvalidHeader),
            Err(InvalidHeader),
            Err(InvalidHeader),
            Err(InvalidHeader),
            Err(InvalidHeader),
            Ok(()),
            Err(AlreadyAnswered),
            Err(AlreadyAnswered),
        ]
    );
    // Nothing of the refused attempts leaked onto the wire; the connection goes on.
    assert_eq!(c.get("/").text(), "finally");
}

#[test]
fn a_handler_that_only_fails_to_respond_gets_a_500() {
    let s = start(|_req: &Request<'_>, res: &mut Response<'_>| {
        assert_eq!(res.respond(42, std::iter::empty(), b"x"), Err(RespondError::InvalidStatus));
        assert_eq!(
            res.respond(200, std::iter::once((&b"X"[..], &b"\r\n"[..])), b"x"),
            Err(RespondError::InvalidHeader)
        );
    });
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    let (replies, rest) = parse_responses(&c.read_to_eof(), &[]);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 500);
    assert_eq!(replies[0].header("connection"), Some("close"));
    assert!(rest.is_empty());
}

#[test]
fn a_handler_that_never_answers_gets_a_500_and_the_connection_closes() {
    let s = start(|_req: &Request<'_>, _res: &mut Response<'_>| {});
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    let (replies, rest) = parse_responses(&c.read_to_eof(), &[]);
    assert_eq!(replies.len(), 1, "one 500, and the pipelined request is not answered");
    assert_eq!(replies[0].status, 500);
    assert_eq!(replies[0].header("connection"), Some("close"));
    assert!(rest.is_empty());
}

/// 5 MiB of a pattern that shows misplaced or repeated bytes.
fn big_body() -> Vec<u8> {
    (0..5u32 << 20).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

fn big_handler(body: Arc<Vec<u8>>) -> impl Fn(&Request<'_>, &mut Response<'_>) + Send + Sync {
    move |req: &Request<'_>, res: &mut Response<'_>| {
        let fields = std::iter::once((&b"Content-Type"[..], &b"application/octet-stream"[..]));
        match req.path {
            b"/big" => res.respond(200, fields, &body).unwrap(),
            // Just under and just over the size from which bodies go out directly.
            b"/edge-below" => res.respond(200, fields, &body[..32 * 1024 - 1]).unwrap(),
            b"/edge" => res.respond(200, fields, &body[..32 * 1024]).unwrap(),
            _ => res.respond(200, fields, req.path).unwrap(),
        }
    }
}

#[test]
fn a_large_body_arrives_intact() {
    let body = Arc::new(big_body());
    let s = start(big_handler(body.clone()));
    let mut c = s.connect();
    for _ in 0..2 {
        let r = c.get("/big");
        assert_eq!(r.header("content-length"), Some((5u32 << 20).to_string().as_str()));
        assert!(r.body == *body, "body differs");
    }
    assert_eq!(c.get("/edge-below").body, body[..32 * 1024 - 1]);
    assert_eq!(c.get("/edge").body, body[..32 * 1024]);
    assert_eq!(c.get("/small").text(), "/small");
}

#[test]
fn a_large_body_arrives_intact_to_a_slow_reader() {
    let body = Arc::new(big_body());
    let s = start(big_handler(body.clone()));
    // A small receive window: the server's writev stops short and the rest
    // waits in the connection's backlog, written as the client reads.
    let mut c = Client::connect_with_rcvbuf(s.port, 4096);
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut reads = 0u32;
    let head_end = loop {
        let n = c.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&chunk[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let total = head_end + body.len();
    while got.len() < total {
        let n = c.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "closed after {} of {total} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        reads += 1;
        if reads % 128 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(got.len(), total, "no bytes beyond the body");
    assert!(got[head_end..] == body[..], "body differs");
    // The connection is still in sync.
    assert_eq!(c.get("/after").text(), "/after");
}

#[test]
fn large_and_small_bodies_pipelined_to_a_slow_reader_keep_their_order() {
    let body = Arc::new(big_body());
    let s = start(big_handler(body.clone()));
    let mut c = Client::connect_with_rcvbuf(s.port, 4096);
    // While the first large body is backed up, the later responses (small and
    // large) must queue behind it.
    let order = ["/big", "/one", "/edge", "/big", "/two", "/edge-below", "/three"];
    let wire: String = order.iter().map(|p| format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n")).collect();
    c.send(wire.as_bytes());
    std::thread::sleep(Duration::from_millis(100));
    for p in order {
        let r = c.read_response(false);
        let want: &[u8] = match p {
            "/big" => &body,
            "/edge" => &body[..32 * 1024],
            "/edge-below" => &body[..32 * 1024 - 1],
            other => other.as_bytes(),
        };
        assert!(r.body == want, "{p}: body differs ({} bytes)", r.body.len());
    }
}

#[test]
fn a_large_body_to_http10_closes_after_it() {
    let body = Arc::new(big_body());
    let s = start(big_handler(body.clone()));
    let mut c = Client::connect_with_rcvbuf(s.port, 4096);
    c.send(b"GET /big HTTP/1.0\r\n\r\n");
    let all = c.read_to_eof();
    let (replies, rest) = parse_responses(&all, &[]);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].header("connection"), Some("close"));
    assert!(replies[0].body == *body);
    assert!(rest.is_empty());
}
