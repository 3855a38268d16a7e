//! Requests the engine refuses: each gets one error response with
//! `Connection: close`, the handler never sees it, and nothing sent after it
//! on the connection is ever answered (only one response on the wire, then EOF).

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use util::*;
use warpcore::Config;

const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n";

/// A server that counts the requests its handler sees.
fn counting_server(tune: impl FnOnce(&mut Config)) -> (TestServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let s = start_with(
        move |req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>| {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = res.respond(200, std::iter::empty(), req.path);
        },
        tune,
    );
    (s, calls)
}

fn check_only_response(all: &[u8], status: u16, what: &str) {
    let (replies, rest) = parse_responses(all, &[]);
    assert_eq!(
        replies.len(),
        1,
        "{what}: exactly one response expected, got {}: {:?}",
        replies.len(),
        String::from_utf8_lossy(all)
    );
    let r = &replies[0];
    assert_eq!(r.status, status, "{what}: {:?}", String::from_utf8_lossy(all));
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    assert!(rest.is_empty(), "{what}: bytes after the error response: {:?}", String::from_utf8_lossy(&rest));
}

/// `bad` is answered `status` and closes the connection, both when a good
/// request is pipelined right behind it and when one is sent after the
/// error response arrived.
fn assert_refused_with(tune: impl Fn(&mut Config), bad: &[u8], status: u16) {
    let what = String::from_utf8_lossy(&bad[..bad.len().min(120)]).into_owned();
    let (s, calls) = counting_server(tune);

    // In the same write.
    let mut c = s.connect();
    let mut wire = bad.to_vec();
    wire.extend_from_slice(NEXT);
    c.send(&wire);
    check_only_response(&c.read_to_eof(), status, &what);

    // In a later write, once the error has arrived.
    let mut c = s.connect();
    c.send(bad);
    let r = c.read_response(false);
    assert_eq!(r.status, status, "{what}");
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    // The server may already have closed: a failed send is fine, an answer is not.
    let _ = c.stream.write_all(NEXT);
    let rest = c.read_to_eof();
    assert!(rest.is_empty(), "{what}: answered after the error: {:?}", String::from_utf8_lossy(&rest));

    assert_eq!(calls.load(Ordering::SeqCst), 0, "{what}: the handler saw a refused request");
}

fn assert_refused(bad: &[u8], status: u16) {
    assert_refused_with(|_| {}, bad, status);
}

#[test]
fn malformed_request_lines_get_400() {
    let cases: &[&[u8]] = &[
        b"G@T / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        b"GET /\r\nHost: t\r\n\r\n",
        b"GET  HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTPS/1.1\r\nHost: t\r\n\r\n",
        b"GET / http/1.1\r\nHost: t\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a%4 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET ftp://host/ HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: t\r\nX\r\n\r\n",
    ];
    for bad in cases {
        assert_refused(bad, 400);
    }
}

#[test]
fn malformed_header_fields_get_400() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX(y): 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n: empty-name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: \r\n\r\n",
    ];
    for bad in cases {
        assert_refused(bad, 400);
    }
}

#[test]
fn missing_or_repeated_host_in_http11_gets_400() {
    assert_refused(b"GET / HTTP/1.1\r\n\r\n", 400);
    assert_refused(b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400);
    assert_refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

#[test]
fn content_length_with_transfer_encoding_gets_400() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

#[test]
fn differing_content_lengths_get_400() {
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400);
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!", 400);
}

#[test]
fn identical_content_lengths_are_accepted() {
    let (s, calls) = counting_server(|_| {});
    let mut c = s.connect();
    c.send(b"POST /same HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response(false).text(), "/same");
    assert_eq!(c.get("/x").text(), "/x");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn unknown_transfer_coding_gets_501() {
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n", 501);
}

#[test]
fn malformed_transfer_coding_gets_400() {
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n", 400);
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: , ,\r\n\r\n", 400);
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
}

#[test]
fn unsupported_versions_get_505() {
    assert_refused(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    assert_refused(b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505);
    assert_refused(b"GET / HTTP/0.9\r\nHost: t\r\n\r\n", 505);
}

/// Answers `PATH minor=N`: what the handler saw of the target and the version.
fn version_server() -> (TestServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let s = start(move |req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>| {
        seen.fetch_add(1, Ordering::SeqCst);
        let text = format!("{} minor={}", String::from_utf8_lossy(req.path), req.minor_version);
        let _ = res.respond(200, std::iter::empty(), text.as_bytes());
    });
    (s, calls)
}

/// RFC 9110 §2.5: a higher minor version of HTTP/1 is served as HTTP/1.1,
/// persistent by default and answered `HTTP/1.1`; it was a 505.
#[test]
fn higher_http1_minor_versions_are_served_as_http11() {
    let (s, calls) = version_server();
    let mut c = s.connect();
    let mut wire = b"GET /two HTTP/1.2\r\nHost: t\r\n\r\nGET /nine HTTP/1.9\nHost: t\n\n".to_vec();
    wire.extend_from_slice(b"GET /last HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n");
    c.send(&wire);
    let all = c.read_to_eof();
    let (replies, rest) = parse_responses(&all, &[]);
    let got: Vec<(u16, String)> = replies.iter().map(|r| (r.status, r.text())).collect();
    assert_eq!(got, [(200, "/two minor=1".into()), (200, "/nine minor=1".into()), (200, "/last minor=1".into())]);
    assert!(rest.is_empty());
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 3, "{text:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Split anywhere in the request line, it waits for the rest.
    let mut c = s.connect();
    for part in [&b"GET /split HTTP/1."[..], b"2", b"\r", b"\nHost: t\r\n\r\n"] {
        c.send(part);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.read_response(false).text(), "/split minor=1");

    // HTTP/1.1's rules come with it: Host is required.
    assert_refused(b"GET / HTTP/1.2\r\n\r\n", 400);
}

/// The request line is `method SP request-target SP HTTP-version` (RFC 9112 §3):
/// a space inside the target made the rest of the line a "version", answered 505.
#[test]
fn whitespace_inside_the_target_gets_400() {
    assert_refused(b"GET / x HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"GET /a b HTTP/2.0\r\nHost: t\r\n\r\n", 400);
}

/// RFC 9112 §3.2: a Host that is no `uri-host [ ":" port ]` is answered 400.
#[test]
fn invalid_host_gets_400() {
    let hosts: &[&[u8]] = &[b"x y", b"x/y", b"x, y", b"0 x", b"/x", b"a@x", b"x:abc", b"[::1", b"[::1]x", b"x%zz"];
    for host in hosts {
        let mut bad = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        bad.extend_from_slice(host);
        bad.extend_from_slice(b"\r\n\r\n");
        assert_refused(&bad, 400);
    }
    // HTTP/1.0 need not send Host, but one it sends is checked as well.
    assert_refused(b"GET / HTTP/1.0\r\nHost: x y\r\n\r\n", 400);
}

#[test]
fn valid_hosts_are_accepted() {
    let (s, calls) = counting_server(|_| {});
    let mut c = s.connect();
    let hosts = ["", "example.com:80", "[::1]:8080", "[::1]", "127.0.0.1:8080", "a-b.c_d~e%41", "x:"];
    for host in hosts {
        c.send(format!("GET /h HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "/h"), "Host: {host:?}");
    }
    c.send(b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "/ten");
    assert_eq!(calls.load(Ordering::SeqCst), hosts.len() + 1);
}

/// Asterisk-form is for OPTIONS only (RFC 9112 §3.2.4); no target carries a
/// fragment (§3.2.1); an absolute-form target has no userinfo (RFC 9110 §4.2.4).
#[test]
fn target_forms_that_do_not_fit_get_400() {
    assert_refused(b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"HEAD * HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"POST * HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 400);
    assert_refused(b"GET /a#b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"GET /# HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"GET http://t/a#b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"GET http://u@t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(b"GET http://u:p@t:80/a HTTP/1.1\r\nHost: t\r\n\r\n", 400);
}

#[test]
fn target_forms_that_fit_are_accepted() {
    let (s, calls) = counting_server(|_| {});
    let mut c = s.connect();
    let cases = [
        ("OPTIONS *", "*"),
        ("GET http://t:80/a@b?c@d", "/a@b"),
        ("GET https://[::1]:8080", "/"),
        ("GET /a@b?c/d", "/a@b"),
    ];
    for (i, (line, path)) in cases.iter().enumerate() {
        c.send(format!("{line} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, *path), "{line}");
        assert_eq!(calls.load(Ordering::SeqCst), i + 1);
    }
}

/// Empty list elements are list syntax a recipient must accept (RFC 9110
/// §5.6.1.2): `, chunked` names one coding, `chunked`. It was a 400.
#[test]
fn empty_transfer_coding_elements_are_ignored() {
    let (s, calls) = counting_server(|_| {});
    let mut c = s.connect();
    for value in [", chunked", "chunked ,", " , chunked , , "] {
        let head = format!("POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {value}\r\n\r\n");
        c.send(format!("{head}5\r\nhello\r\n0\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "/te"), "{value:?}");
    }
    assert_eq!(c.get("/after").text(), "/after");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: , gzip\r\n\r\n", 501);
}

#[test]
fn unknown_expectation_gets_417() {
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417);
}

#[test]
fn too_long_request_line_gets_414() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    assert_refused(long.as_bytes(), 414);
    // Configured lower.
    let line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(100));
    assert_refused_with(|c| c.max_request_line = 64, line.as_bytes(), 414);
}

#[test]
fn too_long_request_line_is_refused_before_it_ends() {
    let (s, calls) = counting_server(|_| {});
    let mut c = s.connect();
    // 9 KiB of request line and no line end yet.
    c.send(format!("GET /{}", "a".repeat(9 * 1024)).as_bytes());
    let r = c.read_response(false);
    assert_eq!(r.status, 414);
    assert_eq!(r.header("connection"), Some("close"));
    let _ = c.stream.write_all(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    let _ = c.stream.write_all(NEXT);
    assert!(c.read_to_eof().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn too_large_head_gets_431() {
    let mut head = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..40 {
        head.push_str(&format!("X-Fill-{i:02}: {}\r\n", "v".repeat(1000)));
    }
    head.push_str("\r\n");
    assert_refused(head.as_bytes(), 431);
}

#[test]
fn too_large_head_is_refused_before_it_ends() {
    let (s, calls) = counting_server(|_| {});
    let mut c = s.connect();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    while head.len() < 40 * 1024 {
        head.push_str(&format!("X-Fill: {}\r\n", "v".repeat(1000)));
    }
    c.send(head.as_bytes());
    let r = c.read_response(false);
    assert_eq!(r.status, 431);
    let _ = c.stream.write_all(b"\r\n");
    let _ = c.stream.write_all(NEXT);
    assert!(c.read_to_eof().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn too_many_header_fields_get_431() {
    let mut head = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        head.push_str(&format!("X-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    assert_refused(head.as_bytes(), 431);
    let few = b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_refused_with(|c| c.max_header_count = 3, few, 431);
}

#[test]
fn body_over_the_limit_by_content_length_gets_413() {
    // Refused from the head alone: the body is never read.
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413);
    assert_refused_with(
        |c| c.max_body_size = 10,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n0123456789a",
        413,
    );
}

#[test]
fn body_at_the_limit_is_accepted() {
    let (s, _calls) = counting_server(|c| c.max_body_size = 10);
    let mut c = s.connect();
    c.send(b"POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_eq!(c.read_response(false).text(), "/cl");
    c.send(b"POST /ch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "/ch");
}

#[test]
fn body_over_the_limit_by_chunks_gets_413() {
    // One chunk larger than the default limit.
    assert_refused(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", 413);
    // Chunks that add up past a configured limit.
    assert_refused_with(
        |c| c.max_body_size = 10,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n",
        413,
    );
}

#[test]
fn body_over_the_limit_by_chunks_arriving_slowly_gets_413() {
    let (s, calls) = counting_server(|c| c.max_body_size = 10);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"6\r\n678901\r\n0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 413);
    let _ = c.stream.write_all(NEXT);
    assert!(c.read_to_eof().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn bad_chunk_framing_gets_400() {
    let cases: &[&[u8]] = &[
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b";ext\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\rXhello\r\n0\r\n\r\n",
        b"ffffffffffffffffff\r\n",
    ];
    for framing in cases {
        let mut bad = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        bad.extend_from_slice(framing);
        assert_refused(&bad, 400);
    }
}

#[test]
fn good_requests_before_a_bad_one_are_answered_and_nothing_after_it() {
    let (s, calls) = counting_server(|_| {});
    let mut c = s.connect();
    let mut wire = b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    wire.extend_from_slice(b"GET / HTTP/1.1\r\nHost : t\r\n\r\n");
    wire.extend_from_slice(NEXT);
    c.send(&wire);
    let (replies, rest) = parse_responses(&c.read_to_eof(), &[]);
    let got: Vec<(u16, String)> = replies.iter().map(|r| (r.status, r.text())).collect();
    assert_eq!(got, [(200, "/one".into()), (200, "/two".into()), (400, "Bad Request\n".into())]);
    assert_eq!(replies[2].header("connection"), Some("close"));
    assert!(rest.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn bad_input_on_one_connection_leaves_others_alone() {
    let (s, _calls) = counting_server(|_| {});
    let mut good = s.connect();
    assert_eq!(good.get("/a").text(), "/a");
    let mut bad = s.connect();
    bad.send(b"GET / HTTP/9.9\r\n\r\n");
    assert_eq!(bad.read_response(false).status, 505);
    assert!(bad.closed_by_server());
    assert_eq!(good.get("/b").text(), "/b");
}
