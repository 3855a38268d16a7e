//! Pipelined requests: many in one write, answered in order, their responses
//! gathered into one write; requests split across writes anywhere.

mod util;

use std::time::Duration;

use util::*;

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

fn post_chunked(path: &str, pieces: &[&str]) -> String {
    let mut s = format!("POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for p in pieces {
        s.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    s.push_str("0\r\n\r\n");
    s
}

fn head(path: &str) -> String {
    format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// A mixed batch: what to send, whether each answers a HEAD, and the bodies
/// `echo_handler` answers with (HEAD: none, but its Content-Length).
fn mixed_batch() -> (Vec<u8>, Vec<bool>, Vec<String>) {
    let mut wire = String::new();
    let mut heads = Vec::new();
    let mut expected = Vec::new();
    for i in 0..24 {
        let path = format!("/r{i}");
        match i % 4 {
            0 => {
                wire.push_str(&get(&path));
                heads.push(false);
                expected.push(format!("GET {path} "));
            }
            1 => {
                let body = format!("body-{i}-{}", "x".repeat(i * 7));
                wire.push_str(&post(&path, &body));
                heads.push(false);
                expected.push(format!("POST {path} {body}"));
            }
            2 => {
                wire.push_str(&head(&path));
                heads.push(true);
                expected.push(format!("HEAD {path} "));
            }
            _ => {
                wire.push_str(&post_chunked(&path, &["chunk-a;", "chunk-b"]));
                heads.push(false);
                expected.push(format!("POST {path} chunk-a;chunk-b"));
            }
        }
    }
    (wire.into_bytes(), heads, expected)
}

fn check_mixed(replies: &[Reply], heads: &[bool], expected: &[String]) {
    assert_eq!(replies.len(), expected.len());
    for ((r, head), want) in replies.iter().zip(heads).zip(expected) {
        assert_eq!(r.status, 200);
        if *head {
            assert!(r.body.is_empty());
            assert_eq!(r.header("content-length"), Some(want.len().to_string().as_str()), "HEAD states GET's length");
        } else {
            assert_eq!(&r.text(), want);
        }
    }
}

#[test]
fn sixteen_gets_in_one_write_are_answered_in_order() {
    let s = start(echo_handler);
    let mut c = s.connect();
    let wire: String = (0..16).map(|i| get(&format!("/{i}"))).collect();
    c.send(wire.as_bytes());
    for i in 0..16 {
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("GET /{i} "));
    }
    // The connection is still usable afterwards.
    assert_eq!(c.get("/after").text(), "GET /after ");
}

#[test]
fn responses_of_a_batch_leave_in_one_write() {
    let s = start(demo_handler);
    let mut c = s.connect();
    // Warm the connection so the batch is handled by a running worker.
    assert_eq!(c.get("/").status, 200);
    let wire = get("/").repeat(16);
    c.send(wire.as_bytes());
    // The first read returns as soon as any byte arrives: if the server wrote
    // the 16 responses separately it would usually see only the first ones.
    // Gathered, they are all there. (This cannot fail spuriously when the
    // server gathers; it can only miss a regression by luck.)
    let first = c.read_once(IO_TIMEOUT).expect("responses arrive");
    let (replies, rest) = parse_responses(&first, &[]);
    assert_eq!(
        replies.len(),
        16,
        "all 16 responses in the first read; got {} and {} stray bytes",
        replies.len(),
        rest.len()
    );
    assert!(rest.is_empty());
    assert!(replies.iter().all(|r| r.status == 200 && r.text() == "Hello, World!"));
    // And nothing more follows.
    assert_eq!(c.read_once(Duration::from_millis(200)), None);
}

#[test]
fn mixed_methods_with_bodies_in_one_write() {
    let s = start(echo_handler);
    let mut c = s.connect();
    let (wire, heads, expected) = mixed_batch();
    c.send(&wire);
    let replies: Vec<Reply> = heads.iter().map(|&h| c.read_response(h)).collect();
    check_mixed(&replies, &heads, &expected);
}

#[test]
fn a_batch_split_anywhere_is_answered_the_same() {
    let s = start(echo_handler);
    let (wire, heads, expected) = mixed_batch();
    // Split points inside request lines, headers, CRLFs, Content-Length bodies,
    // chunk-size lines and chunk data, and between requests.
    let mut points: Vec<usize> = (1..wire.len()).step_by(37).collect();
    points.extend([wire.len() / 2, wire.len() / 2 + 1, wire.len() - 1]);
    for at in points {
        let mut c = s.connect();
        c.send(&wire[..at]);
        // Let the server see the first part on its own.
        std::thread::sleep(Duration::from_millis(2));
        c.send(&wire[at..]);
        let replies: Vec<Reply> = heads.iter().map(|&h| c.read_response(h)).collect();
        check_mixed(&replies, &heads, &expected);
    }
}

#[test]
fn a_request_split_in_the_middle_of_a_pipeline() {
    let s = start(echo_handler);
    let mut c = s.connect();
    // Eight whole requests, then half of the ninth's request line.
    let mut first: String = (0..8).map(|i| get(&format!("/a{i}"))).collect();
    first.push_str("POST /mid");
    c.send(first.as_bytes());
    // The eight complete ones are answered without waiting for the rest.
    for i in 0..8 {
        assert_eq!(c.read_response(false).text(), format!("GET /a{i} "));
    }
    // The rest of the ninth (head and part of its body), then the body's end
    // and more requests.
    c.send(b"dle HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    std::thread::sleep(Duration::from_millis(20));
    let mut rest = String::from("56789");
    rest.push_str(&(0..8).map(|i| get(&format!("/b{i}"))).collect::<String>());
    c.send(rest.as_bytes());
    assert_eq!(c.read_response(false).text(), "POST /middle 0123456789");
    for i in 0..8 {
        assert_eq!(c.read_response(false).text(), format!("GET /b{i} "));
    }
}

#[test]
fn byte_at_a_time_pipeline() {
    let s = start(echo_handler);
    let mut c = s.connect();
    let wire = format!("{}{}{}", get("/x"), post("/y", "hello"), post_chunked("/z", &["ab", "cd"]));
    for b in wire.as_bytes() {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(c.read_response(false).text(), "GET /x ");
    assert_eq!(c.read_response(false).text(), "POST /y hello");
    assert_eq!(c.read_response(false).text(), "POST /z abcd");
}

#[test]
fn a_large_pipeline_is_answered_completely_and_in_order() {
    // More responses than fit in one gathering buffer: the worker writes in
    // several batches and must keep the order.
    let s = start(echo_handler);
    let mut c = s.connect();
    let n = 2000;
    let wire: String = (0..n).map(|i| get(&format!("/{i:05}"))).collect();
    let writer = {
        let mut stream = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            stream.write_all(wire.as_bytes()).unwrap();
        })
    };
    for i in 0..n {
        assert_eq!(c.read_response(false).text(), format!("GET /{i:05} "));
    }
    writer.join().unwrap();
}

#[test]
fn connection_close_in_a_pipeline_ends_it() {
    let s = start(echo_handler);
    let mut c = s.connect();
    let wire = format!("{}GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n{}", get("/one"), get("/never"));
    c.send(wire.as_bytes());
    let all = c.read_to_eof();
    let (replies, rest) = parse_responses(&all, &[]);
    assert_eq!(replies.len(), 2, "the request after `Connection: close` is not answered");
    assert_eq!(replies[0].text(), "GET /one ");
    assert_eq!(replies[1].text(), "GET /last ");
    assert_eq!(replies[1].header("connection"), Some("close"));
    assert!(rest.is_empty());
}
