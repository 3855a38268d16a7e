//! Static mounts and file answers over real sockets: semantics (RFC 9110
//! §13–14), path safety, cache freshness, large and slowly read files.

mod util;

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use util::*;
use warpcore::{Config, MountSpec, RespondError};

/// The files a test serves, in a TempDir.
struct Site {
    dir: TempDir,
}

impl Site {
    fn new(name: &str) -> Site {
        let dir = TempDir::new("static", name);
        std::fs::create_dir_all(dir.join("www/docs")).unwrap();
        std::fs::write(dir.join("www/hello.txt"), b"Hello, file!\n").unwrap();
        std::fs::write(dir.join("www/docs/index.html"), b"<!doctype html><p>docs</p>\n").unwrap();
        std::fs::write(dir.join("www/digits.txt"), b"0123456789").unwrap();
        std::fs::write(dir.join("secret.txt"), b"TOP SECRET").unwrap();
        Site { dir }
    }

    fn www(&self) -> PathBuf {
        self.dir.join("www")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.www().join(rel)
    }

    /// A server with `/static` → `www/` and the demo handler for the rest.
    fn serve(&self) -> TestServer {
        let www = self.www();
        start_with(demo_handler, move |c: &mut Config| {
            c.static_mounts.push(MountSpec::new(b"/static", www).unwrap());
        })
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

fn request(c: &mut Client, method: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n");
    for (n, v) in extra {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("\r\n");
    c.send(text.as_bytes());
    c.read_response(method == "HEAD")
}

#[test]
fn get_sends_the_file_with_its_metadata() {
    let site = Site::new("get");
    let s = site.serve();
    let mut c = s.connect();
    let r = c.get("/static/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Hello, file!\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("last-modified").map(str::len), Some(29));
    let etag = r.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");
    assert!(r.header("date").is_some() && r.header("server").is_some());
    // The handler still answers what no mount covers, on the same connection.
    assert_eq!(c.get("/").text(), "Hello, World!");
    assert_eq!(c.get("/staticx").status, 404);
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let site = Site::new("head");
    let s = site.serve();
    let mut c = s.connect();
    let get = c.get("/static/hello.txt");
    let head = request(&mut c, "HEAD", "/static/hello.txt", &[]);
    assert_eq!(head.status, 200);
    for name in ["content-type", "content-length", "etag", "last-modified", "accept-ranges"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    assert_eq!(c.get("/static/digits.txt").body, b"0123456789", "no body bytes were sent for HEAD");
}

#[test]
fn conditional_gets_give_304() {
    let site = Site::new("304");
    let s = site.serve();
    let mut c = s.connect();
    let r = c.get("/static/hello.txt");
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();

    let r = request(&mut c, "GET", "/static/hello.txt", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), None);
    let r = request(&mut c, "GET", "/static/hello.txt", &[("If-None-Match", &format!("\"x\", W/{etag}"))]);
    assert_eq!(r.status, 304);
    let r = request(&mut c, "GET", "/static/hello.txt", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    // If-None-Match wins over If-Modified-Since, both ways.
    let r = request(&mut c, "GET", "/static/hello.txt", &[("If-None-Match", "\"other\""), ("If-Modified-Since", &lm)]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, file!\n"[..]));
    let old = "Thu, 01 Jan 1970 00:00:01 GMT";
    let r = request(&mut c, "GET", "/static/hello.txt", &[("If-None-Match", &etag), ("If-Modified-Since", old)]);
    assert_eq!(r.status, 304);
    let r = request(&mut c, "HEAD", "/static/hello.txt", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(c.get("/static/digits.txt").body, b"0123456789");
}

#[test]
fn failed_preconditions_give_412() {
    let site = Site::new("412");
    let s = site.serve();
    let mut c = s.connect();
    let etag = c.get("/static/hello.txt").header("etag").unwrap().to_string();
    assert_eq!(request(&mut c, "GET", "/static/hello.txt", &[("If-Match", "\"nope\"")]).status, 412);
    assert_eq!(request(&mut c, "GET", "/static/hello.txt", &[("If-Match", &etag)]).status, 200);
    assert_eq!(request(&mut c, "GET", "/static/hello.txt", &[("If-Match", "*")]).status, 200);
    let past = "Thu, 01 Jan 1970 00:00:01 GMT";
    assert_eq!(request(&mut c, "GET", "/static/hello.txt", &[("If-Unmodified-Since", past)]).status, 412);
    let future = "Fri, 31 Dec 9999 23:59:59 GMT";
    assert_eq!(request(&mut c, "GET", "/static/hello.txt", &[("If-Unmodified-Since", future)]).status, 200);
}

#[test]
fn single_ranges_in_all_three_forms() {
    let site = Site::new("range");
    let s = site.serve();
    let mut c = s.connect();
    for (range, body, content_range) in [
        ("bytes=2-4", &b"234"[..], "bytes 2-4/10"),
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=8-100", b"89", "bytes 8-9/10"),
    ] {
        let r = request(&mut c, "GET", "/static/digits.txt", &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, body, "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.header("etag").is_some());
    }
    // Malformed: the whole file.
    assert_eq!(request(&mut c, "GET", "/static/digits.txt", &[("Range", "bytes=5-2")]).status, 200);
    // HEAD ignores Range.
    let r = request(&mut c, "HEAD", "/static/digits.txt", &[("Range", "bytes=0-0")]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("10")));
}

#[test]
fn unsatisfiable_range_gives_416_with_the_size() {
    let site = Site::new("416");
    let s = site.serve();
    let mut c = s.connect();
    let r = request(&mut c, "GET", "/static/digits.txt", &[("Range", "bytes=10-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    assert_eq!(c.get("/static/digits.txt").status, 200, "the connection stays usable");
}

#[test]
fn if_range_chooses_between_part_and_whole() {
    let site = Site::new("ifrange");
    let s = site.serve();
    let mut c = s.connect();
    let etag = c.get("/static/digits.txt").header("etag").unwrap().to_string();
    let r = request(&mut c, "GET", "/static/digits.txt", &[("Range", "bytes=0-1"), ("If-Range", &etag)]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"01"[..]));
    let r = request(&mut c, "GET", "/static/digits.txt", &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"0123456789"[..]));
}

#[test]
fn several_ranges_give_multipart_byteranges() {
    let site = Site::new("multi");
    let content = pattern(100_000);
    std::fs::write(site.path("data.bin"), &content).unwrap();
    let s = site.serve();
    let mut c = s.connect();
    let r = request(&mut c, "GET", "/static/data.bin", &[("Range", "bytes=0-9, 50000-69999, -5")]);
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").expect(ct).to_string();
    // Split the body into parts and check each one's range and bytes.
    let delimiter = format!("--{boundary}");
    let body = r.body;
    let mut parts = Vec::new();
    let mut rest = &body[..];
    while let Some(i) = find(rest, delimiter.as_bytes()) {
        let after = &rest[i + delimiter.len()..];
        if after.starts_with(b"--") {
            break;
        }
        let next = find(after, format!("\r\n{delimiter}").as_bytes()).unwrap();
        parts.push(&after[..next]);
        rest = &after[next..];
    }
    let expected = [(0usize, 9usize), (50_000, 69_999), (99_995, 99_999)];
    assert_eq!(parts.len(), expected.len());
    for (part, (a, b)) in parts.iter().zip(expected) {
        let head_end = find(part, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&part[..head_end]).to_lowercase();
        assert!(head.contains("content-type: application/octet-stream"), "{head}");
        assert!(head.contains(&format!("content-range: bytes {a}-{b}/100000")), "{head}");
        assert!(part[head_end + 4..] == content[a..=b]);
    }
    assert_eq!(c.get("/static/digits.txt").body, b"0123456789");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn other_methods_get_405_with_allow() {
    let site = Site::new("405");
    let s = site.serve();
    let mut c = s.connect();
    c.send(b"POST /static/hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response(false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(request(&mut c, "DELETE", "/static/hello.txt", &[]).status, 405);
    assert_eq!(c.get("/static/hello.txt").status, 200);
}

#[test]
fn directories_index_and_redirect() {
    let site = Site::new("dirs");
    let s = site.serve();
    let mut c = s.connect();
    let r = c.get("/static/docs/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.body, b"<!doctype html><p>docs</p>\n");
    let r = c.get("/static/docs?x=1&y=two");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/static/docs/?x=1&y=two"));
    let r = c.get("/static");
    assert_eq!((r.status, r.header("location")), (301, Some("/static/")));
    assert_eq!(c.get("/static/").status, 404, "no index.html, no listing");
}

#[test]
fn missing_files_give_404() {
    let site = Site::new("404");
    let s = site.serve();
    let mut c = s.connect();
    for path in ["/static/nope.txt", "/static/nope/deeper.txt", "/static/hello.txt/", "/static/hello.txt/x"] {
        assert_eq!(c.get(path).status, 404, "{path}");
    }
    // A cached miss turns into a hit as soon as the file appears.
    std::fs::write(site.path("nope.txt"), b"now here").unwrap();
    assert_eq!(c.get("/static/nope.txt").body, b"now here");
}

#[test]
fn traversal_never_leaves_the_mount() {
    let site = Site::new("traversal");
    let s = site.serve();
    for path in [
        "/static/../secret.txt",
        "/static/docs/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/.%2e/secret.txt",
        "/static/docs%2f..%2f..%2fsecret.txt",
        "/static/..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/..\\secret.txt",
        "/static/hello.txt%00.png",
        "/static/%00",
        "/static//../secret.txt",
    ] {
        let mut c = s.connect();
        let r = c.get(path);
        assert!(matches!(r.status, 400 | 403 | 404), "{path}: {}", r.status);
        assert!(!r.text().contains("SECRET"), "{path}");
    }
}

#[test]
fn a_symlink_out_of_the_mount_is_not_followed() {
    let site = Site::new("symlink");
    std::os::unix::fs::symlink(site.dir.join("secret.txt"), site.path("escape.txt")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", site.path("relative.txt")).unwrap();
    std::os::unix::fs::symlink(&site.dir, site.path("up")).unwrap();
    std::os::unix::fs::symlink("hello.txt", site.path("inside.txt")).unwrap();
    let s = site.serve();
    let mut c = s.connect();
    for path in ["/static/escape.txt", "/static/relative.txt", "/static/up/secret.txt"] {
        let r = c.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("SECRET"));
    }
    assert_eq!(c.get("/static/inside.txt").body, b"Hello, file!\n", "links within the mount work");
}

#[test]
fn a_fifo_in_the_mount_is_never_opened() {
    let site = Site::new("fifo");
    let status = std::process::Command::new("mkfifo").arg(site.path("pipe.txt")).status().expect("mkfifo runs");
    assert!(status.success());
    let s = site.serve();
    let mut c = s.connect();
    let started = Instant::now();
    assert_eq!(c.get("/static/pipe.txt").status, 403);
    assert_eq!(request(&mut c, "HEAD", "/static/pipe.txt", &[]).status, 403);
    assert!(started.elapsed() < Duration::from_secs(2), "the worker did not block");
    assert_eq!(c.get("/static/hello.txt").status, 200);
}

#[test]
fn a_file_rewritten_in_place_is_served_fresh_at_once() {
    let site = Site::new("rewrite");
    std::fs::write(site.path("v.txt"), b"version 1").unwrap();
    let s = site.serve();
    let mut c = s.connect();
    let first = c.get("/static/v.txt");
    assert_eq!(first.body, b"version 1");
    // Same size.
    std::fs::write(site.path("v.txt"), b"version 2").unwrap();
    let second = c.get("/static/v.txt");
    assert_eq!(second.body, b"version 2");
    assert_ne!(second.header("etag"), first.header("etag"));
    // Another size, seen from a new connection too.
    std::fs::write(site.path("v.txt"), b"version three, longer").unwrap();
    assert_eq!(c.get("/static/v.txt").body, b"version three, longer");
    assert_eq!(s.connect().get("/static/v.txt").body, b"version three, longer");
    // A large file rewritten (the sendfile path).
    let big1 = pattern(300_000);
    std::fs::write(site.path("big.bin"), &big1).unwrap();
    assert!(c.get("/static/big.bin").body == big1);
    let big2: Vec<u8> = big1.iter().map(|b| b.wrapping_add(1)).collect();
    std::fs::write(site.path("big.bin"), &big2).unwrap();
    assert!(c.get("/static/big.bin").body == big2);
}

#[test]
fn a_file_replaced_by_rename_is_served_fresh_at_once() {
    let site = Site::new("rename");
    std::fs::write(site.path("r.txt"), b"old contents").unwrap();
    let s = site.serve();
    let mut c = s.connect();
    assert_eq!(c.get("/static/r.txt").body, b"old contents");
    for round in 0..5 {
        let text = format!("new contents {round}");
        std::fs::write(site.path("r.tmp"), &text).unwrap();
        std::fs::rename(site.path("r.tmp"), site.path("r.txt")).unwrap();
        assert_eq!(c.get("/static/r.txt").text(), text);
    }
    std::fs::remove_file(site.path("r.txt")).unwrap();
    assert_eq!(c.get("/static/r.txt").status, 404);
}

#[test]
fn one_file_served_a_thousand_times_is_opened_once() {
    let site = Site::new("once");
    let s = site.serve();
    let mut c = s.connect();
    for _ in 0..1000 {
        assert_eq!(c.get("/static/hello.txt").status, 200);
    }
    let st = s.server.file_cache_stats();
    assert_eq!(st.fd_misses, 1, "{st:?}");
    assert_eq!(st.fd_hits, 999, "{st:?}");
    assert!(st.info_hits >= 990, "{st:?}");
}

#[test]
fn small_files_answered_from_memory_keep_every_answer_and_follow_changes() {
    let site = Site::new("small-memory");
    let s = site.serve();
    let mut c = s.connect();
    // The first GET reads the file; the next ones are answered from memory,
    // with the same head.
    let first = c.get("/static/digits.txt");
    let again = c.get("/static/digits.txt");
    assert_eq!((again.status, again.body.as_slice()), (200, &b"0123456789"[..]));
    for name in ["content-type", "content-length", "etag", "last-modified", "accept-ranges", "server"] {
        assert_eq!(again.header(name), first.header(name), "{name}");
    }
    let st = s.server.file_cache_stats();
    assert_eq!((st.fd_misses, st.fd_hits), (1, 1), "read once, then from memory: {st:?}");

    // Ranges, conditionals, HEAD and HTTP/1.0 with the file in memory.
    let r = request(&mut c, "GET", "/static/digits.txt", &[("Range", "bytes=2-4")]);
    assert_eq!((r.status, r.body.as_slice(), r.header("content-range")), (206, &b"234"[..], Some("bytes 2-4/10")));
    let etag = again.header("etag").unwrap().to_string();
    let r = request(&mut c, "GET", "/static/digits.txt", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = request(&mut c, "GET", "/static/digits.txt", &[("If-Match", "\"other\"")]);
    assert_eq!(r.status, 412);
    let r = request(&mut c, "GET", "/static/digits.txt", &[("Range", "bytes=0-0,9-9")]);
    assert_eq!(r.status, 206);
    assert!(find(&r.body, b"\r\n\r\n0\r\n").is_some() && find(&r.body, b"\r\n\r\n9\r\n").is_some());
    let r = request(&mut c, "HEAD", "/static/digits.txt", &[]);
    assert_eq!((r.status, r.header("content-length"), r.body.len()), (200, Some("10"), 0));
    let old = exchange(s.port, b"GET /static/digits.txt HTTP/1.0\r\n\r\n");
    assert!(old.starts_with(b"HTTP/1.1 200 OK\r\n") && old.ends_with(b"\r\n\r\n0123456789"));
    assert!(find(&old, b"Connection: close\r\n").is_some());

    // Rewritten in place (same size, then shorter), then replaced by a rename:
    // each change is seen by the next request, whole and in part.
    std::fs::write(site.path("digits.txt"), b"abcdefghij").unwrap();
    let r = c.get("/static/digits.txt");
    assert_eq!(r.body, b"abcdefghij");
    assert_ne!(r.header("etag"), Some(etag.as_str()));
    std::fs::write(site.path("digits.txt"), b"xyz").unwrap();
    assert_eq!(c.get("/static/digits.txt").body, b"xyz");
    assert_eq!(c.get("/static/digits.txt").body, b"xyz");
    std::fs::write(site.path("digits.tmp"), b"renamed").unwrap();
    std::fs::rename(site.path("digits.tmp"), site.path("digits.txt")).unwrap();
    let r = request(&mut c, "GET", "/static/digits.txt", &[("Range", "bytes=-4")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"amed"[..]));
    assert_eq!(c.get("/static/digits.txt").body, b"renamed");
    std::fs::remove_file(site.path("digits.txt")).unwrap();
    assert_eq!(c.get("/static/digits.txt").status, 404);

    // Around the size limit, each twice; and pipelined with each other.
    for len in [8 * 1024 - 1, 8 * 1024, 8 * 1024 + 1] {
        let name = format!("p{len}.bin");
        std::fs::write(site.path(&name), pattern(len)).unwrap();
        for _ in 0..2 {
            assert_eq!(c.get(&format!("/static/{name}")).body, pattern(len), "{len} bytes");
        }
    }
    let batch = "GET /static/p8192.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(batch.repeat(3).as_bytes());
    for _ in 0..3 {
        assert_eq!(c.read_response(false).body, pattern(8 * 1024));
        assert_eq!(c.read_response(false).body, b"Hello, file!\n");
    }
}

#[test]
fn a_one_mebibyte_file_arrives_intact() {
    let site = Site::new("1m");
    let content = pattern(1 << 20);
    std::fs::write(site.path("1m.bin"), &content).unwrap();
    let s = site.serve();
    let mut c = s.connect();
    for _ in 0..3 {
        let r = c.get("/static/1m.bin");
        assert_eq!(r.header("content-length"), Some("1048576"));
        assert!(r.body == content);
    }
    // HTTP/1.0 without keep-alive: all of it, then the close.
    let mut c = s.connect();
    c.send(b"GET /static/1m.bin HTTP/1.0\r\n\r\n");
    let r = c.read_response(false);
    assert!(r.body == content);
    assert!(c.closed_by_server());
}

#[test]
fn a_slow_reader_gets_a_large_file_intact() {
    let site = Site::new("slow");
    let content = pattern(8 << 20);
    std::fs::write(site.path("big.bin"), &content).unwrap();
    let s = site.serve();
    let mut stream = Client::connect_with_rcvbuf(s.port, 16 * 1024).stream;
    use std::io::Write;
    stream
        .write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /static/digits.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Let the server fill the socket and wait for it to drain.
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(60);
    let total_head_guess = content.len() + 400;
    while got.len() < total_head_guess {
        assert!(Instant::now() < deadline, "timed out with {} bytes", got.len());
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        if got.len() < 2 << 20 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if find(&got, b"0123456789").is_some() && got.ends_with(b"0123456789") {
            break;
        }
    }
    let head_end = find(&got, b"\r\n\r\n").unwrap() + 4;
    assert!(String::from_utf8_lossy(&got[..head_end]).contains("Content-Length: 8388608"));
    assert!(got[head_end..head_end + content.len()] == content[..], "the body arrived intact");
    let rest = String::from_utf8_lossy(&got[head_end + content.len()..]).into_owned();
    assert!(rest.starts_with("HTTP/1.1 200 OK") && rest.ends_with("0123456789"), "then the pipelined answer: {rest}");
}

#[test]
fn pipelined_requests_mix_files_and_handler_answers_in_order() {
    let site = Site::new("pipeline");
    let big = pattern(200_000);
    std::fs::write(site.path("big.bin"), &big).unwrap();
    let s = site.serve();
    let mut c = s.connect();
    let mut batch = Vec::new();
    for path in
        ["/static/digits.txt", "/static/big.bin", "/", "/static/hello.txt", "/static/big.bin", "/static/missing"]
    {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&batch);
    assert_eq!(c.read_response(false).body, b"0123456789");
    assert!(c.read_response(false).body == big);
    assert_eq!(c.read_response(false).text(), "Hello, World!");
    assert_eq!(c.read_response(false).body, b"Hello, file!\n");
    assert!(c.read_response(false).body == big);
    assert_eq!(c.read_response(false).status, 404);
}

#[test]
fn percent_encoded_names_and_mime_types() {
    let site = Site::new("names");
    std::fs::write(site.path("a b.css"), b"p{}").unwrap();
    std::fs::write(site.path("app.js"), b"1").unwrap();
    std::fs::write(site.path("data.json"), b"{}").unwrap();
    std::fs::write(site.path("noext"), b"?").unwrap();
    let s = site.serve();
    let mut c = s.connect();
    let r = c.get("/static/a%20b.css");
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/css; charset=utf-8")));
    assert_eq!(c.get("/static/app.js").header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(c.get("/static/data.json").header("content-type"), Some("application/json"));
    assert_eq!(c.get("/static/noext").header("content-type"), Some("application/octet-stream"));
}

#[test]
fn handlers_answer_with_files_and_get_the_same_handling() {
    let site = Site::new("respond-file");
    let base = site.www();
    let s = start(move |req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>| {
        let name = std::str::from_utf8(req.path).unwrap().trim_start_matches("/file/");
        let path = base.join(name);
        let extra: &[(&[u8], &[u8])] = if name == "hello.txt" { &[(b"Cache-Control", b"max-age=60")] } else { &[] };
        match res.respond_file(200, extra, &path) {
            Ok(()) => {}
            Err(RespondError::FileUnavailable(_)) => {
                let _ = res.respond(404, std::iter::empty(), b"handler says no\n");
            }
            Err(e) => panic!("{e:?}"),
        }
    });
    let mut c = s.connect();
    let r = c.get("/file/hello.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, file!\n"[..]));
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(request(&mut c, "GET", "/file/hello.txt", &[("If-None-Match", &etag)]).status, 304);
    let r = request(&mut c, "GET", "/file/digits.txt", &[("Range", "bytes=3-5")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"345"[..]));
    let r = c.get("/file/missing.txt");
    assert_eq!((r.status, r.text().as_str()), (404, "handler says no\n"));
    assert_eq!(c.get("/file/docs").status, 404, "a directory is not a file");
}

#[test]
fn a_missing_mount_directory_fails_at_start() {
    let spec = MountSpec::new(b"/x", "/nonexistent/warpcore/test/dir").unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        workers: 1,
        handler: Some(std::sync::Arc::new(demo_handler)),
        static_mounts: vec![spec],
        ..Config::default()
    };
    assert!(warpcore::Server::start(&config).is_err());
}

#[test]
fn several_workers_each_serve_fresh_files() {
    let site = Site::new("workers");
    std::fs::write(site.path("w.txt"), b"one").unwrap();
    let www = site.www();
    let s = start_with(demo_handler, move |c: &mut Config| {
        c.workers = 2;
        c.static_mounts.push(MountSpec::new(b"/", www).unwrap());
    });
    let mut clients: Vec<Client> = (0..8).map(|_| s.connect()).collect();
    for c in clients.iter_mut() {
        assert_eq!(c.get("/w.txt").body, b"one");
    }
    std::fs::write(site.path("w.txt"), b"two").unwrap();
    for c in clients.iter_mut() {
        assert_eq!(c.get("/w.txt").body, b"two");
    }
}

/// The C demo (from `WARPCORE_DEMO`, which `make test` sets) with `--static`
/// mounts. Killed if a test panics before `stop`, so no demo outlives its test.
struct Demo {
    child: Option<std::process::Child>,
    port: u16,
}

impl Demo {
    fn start(mounts: &[String]) -> Option<Demo> {
        let Some(demo) = std::env::var_os("WARPCORE_DEMO") else {
            eprintln!("WARPCORE_DEMO is not set (make test sets it): not run");
            return None;
        };
        let mut cmd = std::process::Command::new(demo);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--workers", "2"]);
        for m in mounts {
            cmd.args(["--static", m]);
        }
        let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("demo starts");
        let mut out = child.stdout.take().unwrap();
        let mut demo = Demo { child: Some(child), port: 0 };
        let mut line = String::new();
        let mut byte = [0u8; 1];
        while !line.ends_with('\n') {
            assert_eq!(out.read(&mut byte).unwrap(), 1, "demo printed its address");
            line.push(byte[0] as char);
        }
        demo.port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        Some(demo)
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Stops it the way an operator would (SIGTERM to this child, by its pid)
    /// and expects a clean exit.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A real browser (headless Chromium) loads examples/www from the demo; the
/// page's script marks it "all loaded" only when the JSON, the image and the
/// stylesheet all arrived, which the dumped DOM shows.
#[test]
fn a_browser_loads_the_example_site_from_the_demo() {
    let www = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/www");
    let Some(demo) = Demo::start(&[format!("/static={}", www.display())]) else { return };
    let port = demo.port;
    let profile = Site::new("chromium-profile");
    let out = std::process::Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.dir.display()))
        .args(["--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("http://127.0.0.1:{port}/static/"))
        .output()
        .expect("chromium runs (make test-deps installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("all loaded: libwarpcore serves 5 files"), "the page did not load fully:\n{dom}");
    demo.stop();
}

/// The C demo with `--static`: a client that resets the connection in the
/// middle of a large file must not kill it with SIGPIPE (C programs keep the
/// default disposition). Runs when `make test` provides the demo.
#[test]
fn the_c_demo_survives_clients_that_reset_during_a_file() {
    let site = Site::new("demo");
    std::fs::write(site.path("big.bin"), pattern(16 << 20)).unwrap();
    let Some(mut demo) = Demo::start(&[format!("/static={}", site.www().display())]) else { return };
    let port = demo.port;
    for _ in 0..5 {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(8 * 1024).unwrap();
        socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
        use std::io::Write;
        (&socket).write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let _ = (&socket).read(&mut buf);
        // Linger 0: close sends a reset while the server is still sending.
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        drop(socket);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut c = Client::connect(port);
    assert_eq!(c.get("/static/hello.txt").body, b"Hello, file!\n", "the demo is still alive");
    assert!(demo.is_running());
    demo.stop();
}

/// The config `Site::serve` starts with, with other mounts, for reloads.
fn config_with_mounts(mounts: &[(&str, PathBuf)]) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        workers: 1,
        handler: Some(std::sync::Arc::new(demo_handler)),
        static_mounts: mounts.iter().map(|(p, d)| MountSpec::new(p.as_bytes(), d.clone()).unwrap()).collect(),
        ..Config::default()
    }
}

#[test]
fn reload_changes_the_mounts_for_requests_read_afterwards() {
    let site = Site::new("reload-mounts");
    let other = site.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("hello.txt"), b"Hello, other!\n").unwrap();
    let s = site.serve();
    let mut c = s.connect();
    assert_eq!(c.get("/static/hello.txt").text(), "Hello, file!\n");

    // Same prefix, another directory; a second prefix for the first one.
    s.server.reload(&config_with_mounts(&[("/static", other.clone()), ("/more", site.www())])).unwrap();
    assert_eq!(c.get("/static/hello.txt").text(), "Hello, other!\n", "the kept-alive connection sees the new mount");
    assert_eq!(c.get("/static/digits.txt").status, 404, "nothing cached from the old directory is served");
    assert_eq!(c.get("/more/digits.txt").text(), "0123456789");

    // Without mounts the handler answers every path.
    s.server.reload(&config_with_mounts(&[])).unwrap();
    let r = c.get("/static/hello.txt");
    assert_eq!((r.status, r.text().as_str()), (404, "Not Found\n"));

    // The new site's files are watched like the first one's: a rewrite is seen at once.
    s.server.reload(&config_with_mounts(&[("/static", other.clone())])).unwrap();
    assert_eq!(c.get("/static/hello.txt").text(), "Hello, other!\n");
    std::fs::write(other.join("hello.txt"), b"rewritten\n").unwrap();
    assert_eq!(c.get("/static/hello.txt").text(), "rewritten\n");
}

#[test]
fn a_reload_with_a_missing_directory_is_refused_and_changes_nothing() {
    let site = Site::new("reload-missing");
    let s = site.serve();
    let missing = site.dir.join("not-there");
    let e = s.server.reload(&config_with_mounts(&[("/static", missing)])).unwrap_err();
    assert!(e.message.contains("not-there"), "the error names the directory: {e}");
    assert_eq!(s.connect().get("/static/hello.txt").text(), "Hello, file!\n");
}

#[test]
fn a_reload_keeps_the_caches_when_the_mounts_are_the_same() {
    let site = Site::new("reload-same");
    let s = site.serve();
    let mut c = s.connect();
    assert_eq!(c.get("/static/hello.txt").status, 200);
    s.server.reload(&config_with_mounts(&[("/static", site.www())])).unwrap();
    assert_eq!(c.get("/static/hello.txt").status, 200);
    let st = s.server.file_cache_stats();
    assert_eq!((st.fd_misses, st.info_misses), (1, 1), "the file was looked up and opened once: {st:?}");
}

#[test]
fn a_reload_follows_a_mount_symlink_to_its_new_target() {
    // The usual deploy: `current -> release-N`, switched atomically, then a reload.
    let site = Site::new("reload-symlink");
    let (one, two) = (site.dir.join("release-1"), site.dir.join("release-2"));
    for (dir, text) in [(&one, "one\n"), (&two, "two\n")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("index.html"), text).unwrap();
    }
    let current = site.dir.join("current");
    std::os::unix::fs::symlink(&one, &current).unwrap();
    let config = config_with_mounts(&[("/site", current.clone())]);
    let s = start_with(demo_handler, |c| c.static_mounts = config.static_mounts.clone());
    let mut c = s.connect();
    assert_eq!(c.get("/site/").text(), "one\n");
    let tmp = site.dir.join("current.tmp");
    std::os::unix::fs::symlink(&two, &tmp).unwrap();
    std::fs::rename(&tmp, &current).unwrap();
    s.server.reload(&config).unwrap();
    assert_eq!(c.get("/site/").text(), "two\n");
}

#[test]
fn a_file_in_flight_finishes_after_its_mount_is_reloaded_away() {
    let site = Site::new("reload-inflight");
    let content = pattern(8 << 20);
    std::fs::write(site.path("big.bin"), &content).unwrap();
    let s = site.serve();
    let mut stream = Client::connect_with_rcvbuf(s.port, 16 * 1024).stream;
    use std::io::Write;
    stream.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = vec![0u8; 4096];
    let n = stream.read(&mut got).unwrap();
    got.truncate(n);
    assert!(got.starts_with(b"HTTP/1.1 200 OK"));
    // Mid-body: the mount goes and the file is deleted.
    s.server.reload(&config_with_mounts(&[])).unwrap();
    std::fs::remove_file(site.path("big.bin")).unwrap();
    let head_end = find(&got, b"\r\n\r\n").unwrap() + 4;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut chunk = vec![0u8; 64 * 1024];
    while got.len() < head_end + content.len() {
        assert!(Instant::now() < deadline, "timed out with {} bytes", got.len());
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got[head_end..] == content[..], "the body arrived whole and unchanged");
    stream.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut rest = vec![0u8; 1024];
    let n = stream.read(&mut rest).unwrap();
    assert!(rest[..n].starts_with(b"HTTP/1.1 404"), "the next request goes to the handler");
}

#[test]
fn deferred_handles_answer_with_files_from_other_threads() {
    let site = Site::new("deferred-file");
    let big = pattern(3 << 20);
    std::fs::write(site.path("big.bin"), &big).unwrap();
    let base = site.www();
    let s = start(move |req: &warpcore::Request<'_>, res: &mut warpcore::Response<'_>| {
        let name = std::str::from_utf8(req.path).unwrap().trim_start_matches('/').to_string();
        let path = base.join(&name);
        let mut d = res.defer().unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(if name == "hello.txt" { 20 } else { 0 }));
            // A bad field is refused with nothing sent; the handle stays usable
            // (if not, the client sees a 500, not the file).
            let bad: &[(&[u8], &[u8])] = &[(b"Bad Name", b"x")];
            if path.is_file() {
                assert_eq!(d.respond_file(200, bad, &path), Err(RespondError::InvalidHeader));
            }
            let extra: &[(&[u8], &[u8])] = &[(b"X-From", b"thread")];
            match d.respond_file(200, extra, &path) {
                Ok(()) => {}
                Err(RespondError::FileUnavailable(_)) => {
                    d.respond(404, std::iter::empty(), warpcore::Payload::from(b"thread says no\n".to_vec())).unwrap()
                }
                Err(e) => panic!("{e:?}"),
            }
        });
    });
    let mut c = s.connect();
    let r = c.get("/hello.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, file!\n"[..]));
    assert_eq!(r.header("x-from"), Some("thread"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let etag = r.header("etag").unwrap().to_string();
    // The request's conditionals and ranges were kept for the other thread.
    assert_eq!(request(&mut c, "GET", "/hello.txt", &[("If-None-Match", &etag)]).status, 304);
    let r = request(&mut c, "GET", "/digits.txt", &[("Range", "bytes=3-5")]);
    assert_eq!((r.status, r.body.as_slice(), r.header("content-range")), (206, &b"345"[..], Some("bytes 3-5/10")));
    let r = request(&mut c, "HEAD", "/big.bin", &[]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("3145728")));
    let r = c.get("/missing.txt");
    assert_eq!((r.status, r.text().as_str()), (404, "thread says no\n"));
    // Pipelined: a slow small file, a large one, a missing one, answered in order.
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    let a = c.read_response(false);
    let b = c.read_response(false);
    let n = c.read_response(false);
    assert_eq!(a.body, b"Hello, file!\n");
    assert!(b.status == 200 && b.body == big, "the large file arrived whole");
    assert_eq!(n.status, 404);
}
