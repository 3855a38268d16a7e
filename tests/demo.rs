//! The C demo binary (`build/demo`, built by `make`): it announces its port,
//! serves `GET /` and `POST /echo`, and stops with status 0 on SIGTERM/SIGINT.
//!
//! The binary is taken from `WARPCORE_DEMO` (the Makefile passes it), else
//! `build/demo` in the repository. A missing binary fails the test: run `make`.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use util::*;

fn demo_path() -> PathBuf {
    let path = match std::env::var_os("WARPCORE_DEMO") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/demo"),
    };
    assert!(path.is_file(), "the C demo is missing at {} (build it with `make`, or set WARPCORE_DEMO)", path.display());
    path
}

/// A running demo; killed (SIGKILL, by its PID) and reaped when dropped, so a
/// failing test never leaves it behind.
struct Demo {
    child: Child,
    port: u16,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let child = Command::new(demo_path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the demo starts");
        let mut demo = Demo { child, port: 0 };
        let stdout = demo.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(IO_TIMEOUT).expect("the demo prints its address within the timeout");
        let addr = line
            .trim_end()
            .strip_prefix("listening on 127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        demo.port = addr.parse().unwrap_or_else(|_| panic!("no port in {line:?}"));
        assert_ne!(demo.port, 0, "the real port is printed, not 0");
        demo
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped
        // (Drop reaps it), so the PID cannot have been reused.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the demo did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn check_routes(port: u16) {
    let mut c = Client::connect(port);
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\necho me back");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "echo me back"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "abc");
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(c.get("/missing").status, 404);
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn demo_serves_and_stops_on_sigterm() {
    let mut demo = Demo::start(&["--port", "0", "--workers", "2"]);
    check_routes(demo.port);
    // Several connections, so both workers are likely involved.
    for _ in 0..20 {
        assert_eq!(Client::connect(demo.port).get("/").status, 200);
    }
    // An idle keep-alive connection does not hold the shutdown up.
    let mut idle = Client::connect(demo.port);
    assert_eq!(idle.get("/").status, 200);

    demo.signal(libc::SIGTERM);
    let status = demo.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status:?}");
    assert!(idle.closed_by_server());
    assert!(std::net::TcpStream::connect(("127.0.0.1", demo.port)).is_err(), "nothing listens any more");
}

#[test]
fn demo_stops_on_sigint() {
    let mut demo = Demo::start(&["--host", "127.0.0.1", "--port", "0", "--workers", "1"]);
    assert_eq!(Client::connect(demo.port).get("/").text(), "Hello, World!");
    demo.signal(libc::SIGINT);
    let status = demo.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status after SIGINT: {status:?}");
}

#[test]
fn demo_reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(demo_path())
        .args(["--port", &port, "--workers", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "no 'listening on' line");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn demo_rejects_bad_flags() {
    for args in [&["--bogus"][..], &["--port", "70000"], &["--workers", "x"], &["--port"], &["--listen"]] {
        let child = Command::new(demo_path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the demo starts");
        let mut demo = Demo { child, port: 0 };
        let status = demo.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(2), "{args:?}");
        let mut err = String::new();
        demo.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(err.contains("usage"), "{args:?}: {err}");
    }
}

/// `--config FILE`: listeners (TCP and Unix), static mounts and limits from
/// the file; SIGHUP reads it again and applies it live (a listener moved, a
/// mount swapped, a limit lifted) while a connection on the dropped listener
/// goes on; a file that does not read, or does not apply, is reported on
/// stderr and the running settings stay.
#[test]
fn demo_reads_its_config_file_and_rereads_it_on_sighup() {
    use std::io::Write;
    let dir = TempDir::new("demo", "config");
    let (www, www2) = (dir.join("www"), dir.join("www2"));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&www2).unwrap();
    std::fs::write(www.join("a.txt"), b"from www").unwrap();
    std::fs::write(www2.join("a.txt"), b"from www2").unwrap();
    let (a_sock, b_sock) = (dir.join("a.sock"), dir.join("b.sock"));
    let config = dir.join("demo.conf");
    let write_config = |text: String| {
        // Replaced whole (rename), as an editor or a deploy would.
        let tmp = dir.join("demo.conf.new");
        std::fs::File::create(&tmp).unwrap().write_all(text.as_bytes()).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    write_config(format!(
        "# the demo's settings\nlisten 127.0.0.1:0\nlisten unix:{}\n\nstatic /s={}\nmax_body_size 1024\nidle_timeout_ms 15000\nworkers 2\n",
        a_sock.display(),
        www.display()
    ));
    let child = Command::new(demo_path())
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let mut demo = Demo { child, port: 0 };
    let lines = |pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        rx
    };
    let out = lines(Box::new(demo.child.stdout.take().unwrap()));
    let err = lines(Box::new(demo.child.stderr.take().unwrap()));
    let first = out.recv_timeout(IO_TIMEOUT).expect("a listening line");
    demo.port = first.strip_prefix("listening on 127.0.0.1:").and_then(|p| p.parse().ok()).expect(&first);
    assert_eq!(out.recv_timeout(IO_TIMEOUT).unwrap(), format!("listening on unix:{}", a_sock.display()));

    let mut tcp = Client::connect(demo.port);
    assert_eq!(tcp.get("/s/a.txt").text(), "from www");
    tcp.send(&[&b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n"[..], &[b'x'; 2000]].concat());
    assert_eq!(tcp.read_response(false).status, 413, "max_body_size from the file");
    let mut on_a = util::Client::connect_unix(&a_sock);
    assert_eq!(on_a.get("/").text(), "Hello, World!");

    // The new file: the TCP listener kept (its port too), the Unix one moved,
    // the mount swapped, the body limit gone.
    write_config(format!(
        "listen 127.0.0.1:0\nlisten unix:{}\nstatic /t={}\nworkers 2\n",
        b_sock.display(),
        www2.display()
    ));
    demo.signal(libc::SIGHUP);
    let reloaded = err.recv_timeout(IO_TIMEOUT).expect("the reload is reported");
    assert!(reloaded.contains("reloaded (2 listeners)"), "{reloaded}");
    assert!(!a_sock.exists() && b_sock.exists());
    assert_eq!(Client::connect(demo.port).get("/t/a.txt").text(), "from www2");
    assert_eq!(Client::connect(demo.port).get("/s/a.txt").status, 404);
    assert_eq!(util::Client::connect_unix(&b_sock).get("/").status, 200);
    let mut c = Client::connect(demo.port);
    c.send(&[&b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n"[..], &[b'y'; 2000]].concat());
    assert_eq!(c.read_response(false).body.len(), 2000);
    // The connection that came through the dropped listener is still served.
    assert_eq!(on_a.get("/").text(), "Hello, World!");

    // A file that does not read: reported, nothing changes.
    write_config(format!("listen unix:{}\nbogus_setting 1\n", a_sock.display()));
    demo.signal(libc::SIGHUP);
    let refused = err.recv_timeout(IO_TIMEOUT).expect("the bad file is reported");
    assert!(refused.contains("demo.conf:2: unknown setting 'bogus_setting'"), "{refused}");
    // A file that reads but does not apply (a missing directory): reported too.
    write_config(format!("listen unix:{}\nstatic /u={}\n", a_sock.display(), dir.join("missing").display()));
    demo.signal(libc::SIGHUP);
    let refused = err.recv_timeout(IO_TIMEOUT).expect("the failed reload is reported");
    assert!(refused.contains("reload (the running settings stay)"), "{refused}");
    assert!(!a_sock.exists(), "nothing of the failed reload is left");
    assert_eq!(Client::connect(demo.port).get("/t/a.txt").text(), "from www2");
    assert_eq!(util::Client::connect_unix(&b_sock).get("/").status, 200);

    demo.signal(libc::SIGTERM);
    assert_eq!(demo.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(!b_sock.exists(), "the socket file goes with the server");
}

/// The config file as docs/deployment.md shows it, comments after the values
/// included; a NUL byte or an overlong line is refused with its line number,
/// not cut short or split into two lines that then read as settings.
#[test]
fn demo_reads_comments_after_values_and_refuses_nul_bytes_and_long_lines() {
    let dir = TempDir::new("demo", "comments");
    let sock = dir.join("app.sock");
    let config = dir.join("app.conf");
    std::fs::write(
        &config,
        format!(
            "# /etc/app/app.conf\nlisten 127.0.0.1:0\nlisten unix:{}\nunix_socket_mode 0660 -1 -1      # mode, then uid and gid (-1: unchanged)\n\
             workers 2                        # read at start; a reload cannot change it\n\
             max_body_size 1048576            # or: unlimited\nmax_connections 10000\n\theader_timeout_ms 30000\t#tab\n",
            sock.display()
        ),
    )
    .unwrap();
    let mut demo = Demo::start(&["--config", config.to_str().unwrap()]);
    check_routes(demo.port);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777, 0o660);
    demo.signal(libc::SIGTERM);
    assert_eq!(demo.wait_exit(Duration::from_secs(5)).code(), Some(0));

    let refused = |text: &[u8], why: &str| {
        std::fs::write(&config, text).unwrap();
        let out = Command::new(demo_path()).arg("--config").arg(&config).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(why), "{why:?} not in {err:?}");
    };
    refused(b"listen 127.0.0.1:0\nworkers 2\0 junk\n", "app.conf:2: NUL byte");
    let long = [&b"listen 127.0.0.1:0\0"[..], &[b'x'; 1100], b" static /a=/nonexistent\n"].concat();
    refused(&long, "app.conf:1: NUL byte");
    let long = [&b"# "[..], &[b'x'; 1100], b"\nlisten 127.0.0.1:0\n"].concat();
    refused(&long, "app.conf:1: line too long");
}

/// `--listen` (repeatable) in place of `--host`/`--port`: one line per
/// listener, in order; with `--port` as well, that one first.
#[test]
fn demo_listens_on_every_listen_flag() {
    let dir = TempDir::new("demo", "listen");
    let sock = dir.join("d.sock");
    let unix = format!("unix:{}", sock.display());
    let child = Command::new(demo_path())
        .args(["--port", "0", "--listen", &unix, "--listen", "[::1]:0", "--workers", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let mut demo = Demo { child, port: 0 };
    let mut stdout = BufReader::new(demo.child.stdout.take().unwrap());
    let mut line = || {
        let mut l = String::new();
        stdout.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    };
    let first = line();
    demo.port = first.strip_prefix("listening on 127.0.0.1:").and_then(|p| p.parse().ok()).expect(&first);
    assert_eq!(line(), format!("listening on {unix}"));
    let v6 = line();
    assert!(v6.starts_with("listening on [::1]:"), "{v6}");
    assert_eq!(Client::connect(demo.port).get("/").status, 200);
    assert_eq!(util::Client::connect_unix(&sock).get("/").status, 200);
    demo.signal(libc::SIGTERM);
    assert_eq!(demo.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

/// The Haskell demo's `GET /ws` (wai-websockets over `responseRaw`): text
/// and binary messages come back as they went, a 300 KB one too, the close
/// is answered with its code and the connection then closes. The binary is
/// `WARPCORE_DEMO_HS` (the Makefile passes it), else `build/demo-hs`: run
/// `make haskell`.
fn hs_demo_echoes_websocket_messages(args: &[&str]) {
    use std::io::Write;
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::protocol::{frame::CloseFrame, Role, WebSocket};
    use tungstenite::{Error, Message};

    let path = std::env::var_os("WARPCORE_DEMO_HS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/demo-hs"));
    assert!(path.is_file(), "the Haskell demo is missing at {} (make haskell)", path.display());
    let child =
        Command::new(&path).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().expect("demo-hs starts");
    let mut demo = Demo { child, port: 0 };
    let mut line = String::new();
    BufReader::new(demo.child.stdout.take().unwrap()).read_line(&mut line).expect("demo-hs prints its address");
    demo.port = line.trim_end().strip_prefix("listening on 127.0.0.1:").and_then(|p| p.parse().ok()).expect(&line);

    let mut stream = std::net::TcpStream::connect(("127.0.0.1", demo.port)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // The key of RFC 6455's example, whose accept value the RFC gives.
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let mut got = Vec::new();
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("the handshake's answer");
        assert!(n > 0, "closed before the handshake's answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");

    let mut ws = WebSocket::from_partially_read(stream, got[end..].to_vec(), Role::Client, None);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello, wörld"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(big),
        Message::text("after the big one"),
    ];
    for m in messages.iter().chain(messages.iter()) {
        ws.send(m.clone()).unwrap();
        assert_eq!(&ws.read().unwrap(), m);
    }
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal)),
            Ok(other) => panic!("after the close: {other:?}"),
            Err(Error::ConnectionClosed) => break,
            Err(e) => panic!("the close was not answered cleanly: {e}"),
        }
    }
    let mut rest = [0u8; 16];
    assert_eq!(ws.get_mut().read(&mut rest).unwrap(), 0, "the server closes the connection after the close");
}

#[test]
fn haskell_demo_echoes_websocket_messages() {
    hs_demo_echoes_websocket_messages(&["--host", "127.0.0.1", "--port", "0", "--workers", "2"]);
}

/// Bytes of a deterministic upload, made as they are sent.
fn upload_bytes(seed: u64, len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut state = seed | 1;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(256 * 1024);
        left -= n;
        let chunk = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        Some(chunk)
    })
}

/// POSTs `len` bytes to `/echo` (with Content-Length, or chunked) while
/// reading the answer on this thread; returns the SHA-256 of what was sent and
/// of the body that came back.
fn echo_upload(port: u16, seed: u64, len: usize, chunked: bool) -> ([u8; 32], [u8; 32]) {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut c = Client::connect(port);
    c.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = if chunked {
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
    } else {
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n")
    };
    let mut writer = c.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let sender = std::thread::spawn(move || {
        let mut sent = Sha256::new();
        writer.write_all(head.as_bytes()).unwrap();
        for chunk in upload_bytes(seed, len) {
            sent.update(&chunk);
            if chunked {
                writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
            }
            writer.write_all(&chunk).unwrap();
            if chunked {
                writer.write_all(b"\r\n").unwrap();
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").unwrap();
        }
        sent.finalize().into()
    });
    // The echo is chunked: decode it as it comes, hashing the data.
    let mut received = Sha256::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut read_more = |buf: &mut Vec<u8>| {
        // An interrupted read is retried (as read_exact does).
        let n = loop {
            match c.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.expect("the echo arrives"),
            }
        };
        assert!(n > 0, "the connection closed mid-echo");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(&mut buf);
    };
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..head_end]));
    buf.drain(..head_end);
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            read_more(&mut buf);
        };
        let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            read_more(&mut buf);
        }
        received.update(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            break;
        }
    }
    (sender.join().unwrap(), received.finalize().into())
}

#[test]
fn demo_echoes_a_gibibyte_upload_as_it_arrives() {
    let demo = Demo::start(&["--port", "0", "--workers", "2"]);
    let started = Instant::now();
    let (sent, back) = echo_upload(demo.port, 7, 1 << 30, false);
    assert_eq!(sent, back, "the SHA-256 of the echo differs from the upload's");
    eprintln!("1 GiB through POST /echo of the C demo in {:?}", started.elapsed());
    let (sent, back) = echo_upload(demo.port, 8, 64 << 20, true);
    assert_eq!(sent, back, "the chunked upload's echo differs");
}

#[test]
fn a_hundred_concurrent_uploads_cost_the_demo_little_memory() {
    let demo = Demo::start(&["--port", "0", "--workers", "2"]);
    // Warm: one upload, so the engine's own buffers are counted before.
    let (sent, back) = echo_upload(demo.port, 1, 1 << 20, false);
    assert_eq!(sent, back);
    let pid = demo.child.id();
    let before = util::child::rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(util::child::rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let port = demo.port;
    let uploads: Vec<_> =
        (0..100).map(|i| std::thread::spawn(move || echo_upload(port, 100 + i, 10 << 20, i % 2 == 1))).collect();
    for upload in uploads {
        let (sent, back) = upload.join().unwrap();
        assert_eq!(sent, back);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let grown = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before);
    eprintln!("100 concurrent 10 MiB uploads echoed: the demo grew by {grown} KiB at most");
    assert!(grown < 32 * 1024, "100 concurrent 10 MiB uploads grew the demo by {grown} KiB");
}
