//! Several listeners per server: TCP addresses, Unix socket paths (driven by
//! curl and by a Rust client), descriptors handed in (`fd://N`, systemd's
//! `LISTEN_FDS` through the C demo), reloads that add and remove them, and the
//! peer a Unix-socket client is reported as.

mod util;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use util::*;
use warpcore::{AccessLogTarget, Config, ErrorKind, Request, Response, Server, UnixPerms};

/// Answers with who asked: the peer as the handler sees it, and the worker.
fn peer_handler(req: &Request<'_>, res: &mut Response<'_>) {
    if req.path == b"/peer" {
        let text =
            format!("{} {} {} {}", String::from_utf8_lossy(req.peer_ip), req.peer.port(), req.peer.is_unix(), req.peer);
        let _ = res.respond(200, std::iter::empty(), text.as_bytes());
    } else {
        demo_handler(req, res);
    }
}

/// A config with `listeners` only (no default TCP address).
fn config_with(listeners: &[&str], workers: usize) -> Config {
    Config {
        listen: String::new(),
        listeners: listeners.iter().map(|l| l.to_string()).collect(),
        workers,
        handler: Some(Arc::new(peer_handler)),
        ..Config::default()
    }
}

fn sock(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn a_unix_socket_serves_curl_and_a_rust_client_and_reports_its_peer() {
    let dir = TempDir::new("listen", "unix");
    let path = sock(&dir, "app.sock");
    let log = dir.join("access.log");
    let mut config = config_with(&["127.0.0.1:0", &format!("unix:{}", path.display())], 2);
    config.access_log = Some(AccessLogTarget::File(log.clone()));
    let server = Server::start(&config).unwrap();
    let listeners = server.listeners();
    assert_eq!(listeners.len(), 2);
    assert_eq!(listeners[1].address, format!("unix:{}", path.display()));
    assert_eq!(listeners[1].tcp, None);
    assert_ne!(server.port(), 0, "the first TCP listener's port");
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket());

    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--unix-socket"])
        .arg(&path)
        .arg("http://localhost/")
        .output()
        .expect("curl runs (scripts/test-deps.sh installs it)");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"Hello, World!");

    let mut c = Client::connect_unix(&path);
    for _ in 0..3 {
        assert_eq!(c.get("/").text(), "Hello, World!");
    }
    assert_eq!(c.get("/peer").text(), "unix: 0 true unix:");
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response(false).text(), "hello");
    // TCP alongside, with its own peer.
    let tcp = Client::connect(server.port()).get("/peer").text();
    assert!(tcp.starts_with("127.0.0.1 ") && tcp.contains(" false 127.0.0.1:"), "{tcp}");
    drop(c);

    server.shutdown(Duration::from_secs(2));
    assert!(!path.exists(), "the socket file is removed when the server stops");
    let lines = std::fs::read_to_string(&log).unwrap();
    let unix_lines: Vec<&str> = lines.lines().filter(|l| l.starts_with("unix: ")).collect();
    assert_eq!(unix_lines.len(), 6, "curl's and the Rust client's requests are logged with peer unix:\n{lines}");
    assert!(unix_lines.iter().any(|l| l.contains("\"GET /peer HTTP/1.1\" 200")), "{lines}");
    assert!(lines.lines().any(|l| l.starts_with("127.0.0.1 ")), "{lines}");
}

#[test]
fn a_stale_socket_file_is_replaced_a_live_one_and_other_files_refused() {
    let dir = TempDir::new("listen", "stale");
    let path = sock(&dir, "s.sock");
    let address = format!("unix:{}", path.display());
    // A stale socket: its listener is gone, the file stays.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = Server::start(&config_with(&[&address], 1)).unwrap();
    assert_eq!(Client::connect_unix(&path).get("/").status, 200);
    // Live: a second server is refused and leaves the first one's file alone.
    let e = Server::start(&config_with(&[&address], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::AddressInUse, "{e}");
    assert_eq!(Client::connect_unix(&path).get("/").status, 200);
    server.shutdown(Duration::ZERO);
    assert!(!path.exists());

    // Not a socket: refused, never removed.
    std::fs::write(&path, b"precious").unwrap();
    let e = Server::start(&config_with(&[&address], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidAddress, "{e}");
    assert!(e.message.contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/nonexistent-target", &path).unwrap();
    let e = Server::start(&config_with(&[&address], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidAddress, "a symlink is not a socket: {e}");
}

#[test]
fn a_socket_file_replaced_while_serving_is_not_removed_at_the_end() {
    let dir = TempDir::new("listen", "replaced");
    let path = sock(&dir, "s.sock");
    let server = Server::start(&config_with(&[&format!("unix:{}", path.display())], 1)).unwrap();
    std::fs::remove_file(&path).unwrap();
    let newer = UnixListener::bind(&path).unwrap();
    server.shutdown(Duration::ZERO);
    drop(server);
    assert!(path.exists(), "another server's file stays");
    drop(newer);
}

#[test]
fn mode_and_owner_are_applied_before_it_listens() {
    let dir = TempDir::new("listen", "mode");
    let path = sock(&dir, "m.sock");
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // Root may give the file away; anyone may give it to themselves.
    let (owner, group) = if uid == 0 { (65534, 65534) } else { (uid, gid) };
    let mut config = config_with(&[&format!("unix:{}", path.display())], 1);
    config.unix_perms = UnixPerms { mode: Some(0o660), uid: Some(owner), gid: Some(group) };
    let server = Server::start(&config).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (owner, group));
    assert_eq!(Client::connect_unix(&path).get("/").status, 200);
    server.shutdown(Duration::ZERO);

    config.unix_perms = UnixPerms { mode: Some(0o10000), ..Default::default() };
    assert_eq!(Server::start(&config).err().unwrap().kind, ErrorKind::InvalidArgument);
    if uid != 0 {
        // Giving the file to another user needs privilege: refused, no file left.
        config.unix_perms = UnixPerms { mode: None, uid: Some(0), gid: None };
        assert_eq!(Server::start(&config).err().unwrap().kind, ErrorKind::Io);
        assert!(!path.exists());
    }
}

#[test]
fn descriptors_handed_in_are_served_and_closed_at_the_end() {
    let dir = TempDir::new("listen", "fd");
    let path = sock(&dir, "handed.sock");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let unix = UnixListener::bind(&path).unwrap();
    let (tcp_fd, unix_fd) = (tcp.into_raw_fd(), unix.into_raw_fd());
    let server = Server::start(&config_with(&[&format!("fd://{tcp_fd}"), &format!("fd://{unix_fd}")], 2)).unwrap();
    let listeners = server.listeners();
    assert_eq!(listeners[0].address, format!("127.0.0.1:{port}"), "shown by its socket's address");
    assert_eq!(listeners[1].address, format!("unix:{}", path.display()));
    assert_eq!(server.port(), port);
    assert_eq!(Client::connect(port).get("/").text(), "Hello, World!");
    assert_eq!(Client::connect_unix(&path).get("/peer").text(), "unix: 0 true unix:");
    server.shutdown(Duration::ZERO);
    // The server owned them: closed now, so nobody listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(UnixStream::connect(&path).is_err());
    assert!(path.exists(), "a socket file the server did not make is not removed");
}

#[test]
fn a_descriptor_that_is_no_listening_socket_is_refused_and_left_open() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let e = Server::start(&config_with(&[&format!("fd://{}", file.as_raw_fd())], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidAddress);
    assert!(e.message.contains("not a socket"), "{e}");
    // A socket that does not listen.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let e = Server::start(&config_with(&[&format!("fd://{}", socket.as_raw_fd())], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidAddress);
    assert!(e.message.contains("not listening"), "{e}");
    // A good descriptor before a bad address: given back open on the failure.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good = format!("fd://{}", tcp.as_raw_fd());
    let e = Server::start(&config_with(&[&good, "unix:"], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidAddress);
    let e = Server::start(&config_with(&[&good, "192.0.2.1:1"], 1)).err().unwrap();
    assert_ne!(e.kind, ErrorKind::InvalidArgument, "{e}");
    tcp.set_nonblocking(true).expect("still open and ours");
    let _client = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
    assert!(tcp.accept().is_ok(), "still listening");
    // Named twice: one descriptor cannot be owned twice.
    let e = Server::start(&config_with(&[&good, &good], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("twice"), "{e}");
    // Not a stream socket.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = Server::start(&config_with(&[&format!("fd://{}", udp.as_raw_fd())], 1)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidAddress);
}

/// The descriptor number of this process's socket listening at `path`
/// (found through /proc: its inode in /proc/net/unix, then the link to it).
fn listening_fd_of(path: &Path) -> i32 {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let inode = table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() == 8 && Path::new(fields[7]) == path && fields[5] == "01").then(|| fields[6].to_owned())
        })
        .expect("the socket listens");
    let link = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_str() == Some(&link)))
        .and_then(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .expect("a descriptor of this process")
}

/// `fd://N` naming a socket the server already owns (found by its number,
/// say, or a descriptor a reload closed whose number the server's next
/// socket took) would be owned twice: closed when one listener goes while the
/// other still polls it, and closed again later, whatever it is by then.
#[test]
fn a_descriptor_the_server_already_owns_is_refused() {
    let dir = TempDir::new("listen", "own");
    let path = sock(&dir, "own.sock");
    let unix = format!("unix:{}", path.display());
    let config = config_with(&["127.0.0.1:0", &unix], 2);
    let server = Server::start(&config).unwrap();
    let own = format!("fd://{}", listening_fd_of(&path));
    for listeners in [vec![unix.clone(), own.clone()], vec![own.clone()]] {
        let mut again = config.clone();
        again.listeners = [vec![format!("127.0.0.1:{}", server.port())], listeners].concat();
        let e = server.reload(&again).expect_err("refused");
        assert_eq!(e.kind, ErrorKind::InvalidAddress, "{e}");
        assert!(e.message.contains("already"), "{e}");
        assert_eq!(server.listeners().len(), 2, "nothing changed");
    }
    assert_eq!(Client::connect_unix(&path).get("/").text(), "Hello, World!");
    server.shutdown(Duration::ZERO);
}

#[test]
fn bad_addresses_are_refused_by_add_listener() {
    let mut config = Config::default();
    for bad in ["", "unix:", "fd://", "fd://-3", "fd://x", "nohost", "a:b", ":80", "[::1:80"] {
        assert_eq!(config.add_listener(bad).unwrap_err().kind, ErrorKind::InvalidAddress, "{bad:?}");
    }
    let long = format!("unix:/{}", "x".repeat(200));
    assert_eq!(config.add_listener(&long).unwrap_err().kind, ErrorKind::InvalidAddress);
    assert!(config.listeners.is_empty());
    config.add_listener("unix:/tmp/x.sock").unwrap();
    config.add_listener("[::1]:0").unwrap();
    config.add_listener("localhost:0").unwrap();
    assert_eq!(config.listen_addresses(), vec!["127.0.0.1:8080", "unix:/tmp/x.sock", "[::1]:0", "localhost:0"]);
    config.listen.clear();
    assert_eq!(config.listen_addresses(), vec!["unix:/tmp/x.sock", "[::1]:0", "localhost:0"]);
}

#[test]
fn a_server_on_a_unix_socket_alone_has_no_port() {
    let dir = TempDir::new("listen", "noport");
    let path = sock(&dir, "only.sock");
    let server = Server::start(&config_with(&[&format!("unix:{}", path.display())], 1)).unwrap();
    assert_eq!(server.port(), 0);
    assert_eq!(server.listeners().len(), 1);
}

#[test]
fn reload_adds_and_removes_listeners_and_connections_on_a_removed_one_finish() {
    let dir = TempDir::new("listen", "reload");
    let (old_path, new_path) = (sock(&dir, "old.sock"), sock(&dir, "new.sock"));
    let (held_tx, held_rx) = mpsc::channel();
    let held_tx = Mutex::new(held_tx);
    let handler = move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/deferred" {
            let _ = held_tx.lock().unwrap().send(res.defer().unwrap());
        } else {
            peer_handler(req, res);
        }
    };
    let old_unix = format!("unix:{}", old_path.display());
    let new_unix = format!("unix:{}", new_path.display());
    let mut config = config_with(&["127.0.0.1:0", &old_unix], 2);
    config.handler = Some(Arc::new(handler));
    let server = Server::start(&config).unwrap();
    let port = server.port();

    // Keep-alive connections on the listener about to go: one idle, one
    // waiting for a deferred answer.
    let mut idle = Client::connect_unix(&old_path);
    assert_eq!(idle.get("/").status, 200);
    let mut waiting = Client::connect_unix(&old_path);
    waiting.send(b"GET /deferred HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut deferred = held_rx.recv_timeout(IO_TIMEOUT).unwrap();
    let mut tcp = Client::connect(port);
    assert_eq!(tcp.get("/").status, 200);

    // A new address that cannot be bound: nothing changes.
    let mut bad = config.clone();
    bad.listeners = vec!["127.0.0.1:0".into(), old_unix.clone(), "192.0.2.1:1".into()];
    assert!(server.reload(&bad).is_err());
    assert_eq!(server.listeners().len(), 2);
    assert!(UnixStream::connect(&old_path).is_ok());

    config.listeners = vec!["127.0.0.1:0".into(), new_unix.clone(), "127.0.0.1:0".into()];
    server.reload(&config).unwrap();
    let listeners = server.listeners();
    assert_eq!(listeners.len(), 3);
    assert_eq!(listeners[0].tcp.unwrap().port(), port, "an unchanged address keeps its socket");
    assert_eq!(listeners[1].address, new_unix);
    let added_port = listeners[2].tcp.unwrap().port();
    assert_ne!(added_port, port);
    assert_eq!(server.port(), port);

    // The dropped listener no longer accepts, and its file is gone.
    assert!(!old_path.exists());
    assert!(UnixStream::connect(&old_path).is_err());
    // The new ones serve; the kept one's connection never noticed.
    assert_eq!(Client::connect_unix(&new_path).get("/peer").text(), "unix: 0 true unix:");
    assert_eq!(Client::connect(added_port).get("/").status, 200);
    assert_eq!(tcp.get("/").status, 200);
    // Connections that came through the dropped listener go on.
    assert_eq!(idle.get("/").text(), "Hello, World!");
    deferred.respond(200, std::iter::empty(), warpcore::Payload::from(b"late".to_vec())).unwrap();
    assert_eq!(waiting.read_response(false).text(), "late");
    assert_eq!(waiting.get("/peer").text(), "unix: 0 true unix:");

    // Back to TCP only.
    config.listeners = vec!["127.0.0.1:0".into()];
    server.reload(&config).unwrap();
    assert_eq!(server.listeners().len(), 1);
    assert!(!new_path.exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", added_port)).is_err());
    assert_eq!(idle.get("/").status, 200);
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn the_workers_of_one_unix_socket_all_accept() {
    let dir = TempDir::new("listen", "workers");
    let path = sock(&dir, "w.sock");
    let mut config = config_with(&[&format!("unix:{}", path.display())], 2);
    config.handler = Some(Arc::new(|req: &Request<'_>, res: &mut Response<'_>| {
        // A worker held in its handler cannot accept: the next connection
        // must wake the other one.
        std::thread::sleep(Duration::from_millis(300));
        let _ = res.respond(200, std::iter::empty(), req.worker_index.to_string().as_bytes());
    }));
    let server = Server::start(&config).unwrap();
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (path, seen) = (path.clone(), seen.clone());
            std::thread::spawn(move || {
                let worker = Client::connect_unix(&path).get("/").text();
                seen.lock().unwrap().insert(worker);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["0", "1"], "both workers accepted");
    assert_eq!(server.stats().connections_accepted, 6);
}

#[test]
fn the_limits_hold_on_a_unix_socket() {
    let dir = TempDir::new("listen", "hostile");
    let path = sock(&dir, "h.sock");
    let mut config = config_with(&[&format!("unix:{}", path.display())], 1);
    config.max_body_size = 1024;
    config.max_connections = 2;
    let server = Server::start(&config).unwrap();
    let one = |bytes: &[u8]| {
        let mut c = Client::connect_unix(&path);
        c.send(bytes);
        let status = c.read_response(false).status;
        assert!(c.closed_by_server());
        status
    };
    assert_eq!(one(b"GARBAGE\r\n\r\n"), 400);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    assert_eq!(one(long_line.as_bytes()), 414);
    let big_head = format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "b".repeat(40 * 1024));
    assert_eq!(one(big_head.as_bytes()), 431);
    assert_eq!(one(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"), 413);
    // At the connection limit the third client waits in the backlog until
    // one of the first two leaves.
    let mut a = Client::connect_unix(&path);
    let mut b = Client::connect_unix(&path);
    assert_eq!((a.get("/").status, b.get("/").status), (200, 200));
    let mut third = Client::connect_unix(&path);
    third.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(third.read_once(Duration::from_millis(300)).is_none(), "not accepted at the limit");
    drop(a);
    assert_eq!(third.read_response(false).status, 200);
    assert_eq!(b.get("/").status, 200);
    server.shutdown(Duration::ZERO);
}

#[test]
fn shutdown_answers_a_request_sent_on_an_idle_keep_alive_connection_as_it_begins() {
    let s = start_with(demo_handler, |c| c.workers = 1);
    let mut c = s.connect();
    assert_eq!(c.get("/").status, 200);
    let server = Arc::new(s);
    let stopper = {
        let server = server.clone();
        std::thread::spawn(move || server.server.shutdown(Duration::from_secs(5)))
    };
    // Sent once the drain has begun (the listener is closed), on the idle
    // connection: answered, with Connection: close, then closed.
    assert!(wait_until(IO_TIMEOUT, || std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err()));
    let r = c.get("/");
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(c.closed_by_server());
    let report = stopper.join().unwrap();
    assert_eq!(report.connections_cut, 0);
}

/// A listening TCP socket on fd 3 of a child, with `LISTEN_PID` naming the
/// child and `LISTEN_FDS=1`, as systemd starts a socket-activated service:
/// the C demo serves on it.
#[test]
fn the_demo_serves_sockets_passed_by_systemd() {
    let demo = match std::env::var_os("WARPCORE_DEMO") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/demo"),
    };
    assert!(demo.is_file(), "the C demo is missing at {} (run make)", demo.display());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    // `$$` is the shell's PID, which `exec` hands to the demo.
    command
        .args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --workers 2", demo.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    use std::os::unix::process::CommandExt;
    // SAFETY: dup2 and fcntl are async-signal-safe; they put the listener at
    // 3, the first descriptor systemd passes, without close-on-exec (dup2
    // clears it; a listener that is 3 already has it cleared by hand).
    unsafe {
        command.pre_exec(move || {
            let rc = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if rc == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("sh runs the demo");
    drop(listener);
    let mut child = child::ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(IO_TIMEOUT).expect("the demo announces its listener");
    assert_eq!(line, format!("listening on 127.0.0.1:{port}"));
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "one listener only: no default 8080");
    let mut c = Client::connect(port);
    assert_eq!(c.get("/").text(), "Hello, World!");
    // SAFETY: kill(2) on our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// A reload that drops a listener closes it at once, even while an external
/// worker that would poll it has not been run yet; one that runs later
/// serves the listeners of the reload.
#[test]
fn a_dropped_listener_closes_though_an_external_worker_has_not_run() {
    let dir = TempDir::new("listen", "external");
    let (a, b) = (sock(&dir, "a.sock"), sock(&dir, "b.sock"));
    let mut config = config_with(&[&format!("unix:{}", a.display())], 1);
    config.external_workers = true;
    let server = Arc::new(Server::start(&config).unwrap());
    config.listeners = vec![format!("unix:{}", b.display())];
    server.reload(&config).unwrap();
    assert!(!a.exists() && UnixStream::connect(&a).is_err());
    let runner = {
        let server = server.clone();
        std::thread::spawn(move || server.run_worker(0))
    };
    assert_eq!(Client::connect_unix(&b).get("/").status, 200);
    server.shutdown(Duration::ZERO);
    runner.join().unwrap().unwrap();
}
