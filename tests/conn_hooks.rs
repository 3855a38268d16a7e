//! Connection hooks over real sockets: told of each connection as it opens
//! (on the worker thread, before any byte is read; a refusal closes it) and
//! once as it closes, however it ends; a panic in a hook is contained.

mod util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::*;
use warpcore::{ConnHooks, Connection, Request, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Open { id: u64, worker: usize, peer: String, thread: String },
    Close { id: u64, worker: usize, peer: String, thread: String },
}

/// Records every call; refuses peers whose port is in `refuse`, panics for
/// ports in `panic_on`.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    refuse: Mutex<Vec<u16>>,
    panic_on: Mutex<Vec<u16>>,
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

impl ConnHooks for Recorder {
    fn on_open(&self, conn: &Connection<'_>) -> bool {
        let peer = format!("{}:{}", String::from_utf8_lossy(conn.peer_ip), conn.peer.port());
        self.events.lock().unwrap().push(Event::Open {
            id: conn.id,
            worker: conn.worker_index,
            peer,
            thread: thread_name(),
        });
        if self.panic_on.lock().unwrap().contains(&conn.peer.port()) {
            panic!("a hook that panics");
        }
        !self.refuse.lock().unwrap().contains(&conn.peer.port())
    }

    fn on_close(&self, conn: &Connection<'_>) {
        let peer = format!("{}:{}", String::from_utf8_lossy(conn.peer_ip), conn.peer.port());
        self.events.lock().unwrap().push(Event::Close {
            id: conn.id,
            worker: conn.worker_index,
            peer,
            thread: thread_name(),
        });
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn closes(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, Event::Close { .. })).count()
    }
}

fn hello(_req: &Request<'_>, res: &mut Response<'_>) {
    let _ = res.respond(200, std::iter::empty(), b"hello");
}

fn with_hooks(recorder: &Arc<Recorder>) -> impl FnOnce(&mut warpcore::Config) {
    let hooks: Arc<dyn ConnHooks> = recorder.clone();
    move |c| c.conn_hooks = Some(hooks)
}

#[test]
fn open_and_close_pair_up_on_the_worker_thread_with_the_socket_s_peer() {
    let recorder = Arc::new(Recorder::default());
    let s = start_with(hello, with_hooks(&recorder));
    let mut c = s.connect();
    let me = format!("127.0.0.1:{}", c.stream.local_addr().unwrap().port());
    assert_eq!(c.get("/").text(), "hello");
    assert_eq!(c.get("/").text(), "hello");
    drop(c);
    assert!(wait_until(Duration::from_secs(5), || recorder.closes() == 1));
    let events = recorder.events();
    let Event::Open { id, worker, peer, thread } = &events[0] else { panic!("{events:?}") };
    assert_eq!((peer, *worker), (&me, 0));
    assert_eq!(thread, "warpcore-0", "runs on the worker thread");
    assert_eq!(events[1], Event::Close { id: *id, worker: 0, peer: me, thread: "warpcore-0".into() });
}

#[test]
fn a_refused_connection_is_closed_before_anything_is_read_and_still_told_of_its_close() {
    let recorder = Arc::new(Recorder::default());
    let s = start_with(hello, with_hooks(&recorder));
    // Bind the client's port first, so the hook knows whom to refuse.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    recorder.refuse.lock().unwrap().push(port);
    socket.connect(&format!("127.0.0.1:{}", s.port).parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    use std::io::{Read, Write};
    let _ = stream.write_all(GET_CLOSE);
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "nothing is answered: {:?}", String::from_utf8_lossy(&got));
    assert!(wait_until(Duration::from_secs(5), || recorder.closes() == 1));
    let stats = s.server.stats();
    assert_eq!((stats.requests, stats.connections_accepted, stats.connections_active), (0, 1, 0));
    // Others are served.
    assert!(exchange(s.port, GET_CLOSE).ends_with(b"hello"));
}

const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn a_hook_that_panics_refuses_its_connection_and_the_server_goes_on() {
    let recorder = Arc::new(Recorder::default());
    let s = start_with(hello, with_hooks(&recorder));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    recorder.panic_on.lock().unwrap().push(port);
    socket.connect(&format!("127.0.0.1:{}", s.port).parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    use std::io::{Read, Write};
    let _ = stream.write_all(GET_CLOSE);
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty());
    assert!(wait_until(Duration::from_secs(5), || recorder.closes() == 1));
    assert!(exchange(s.port, GET_CLOSE).ends_with(b"hello"));
}

#[test]
fn close_is_told_however_the_connection_ends() {
    let recorder = Arc::new(Recorder::default());
    let s = start_with(hello, |c| {
        with_hooks(&recorder)(c);
        c.idle_timeout = Duration::from_secs(1);
    });
    // The server closes after Connection: close.
    assert!(exchange(s.port, GET_CLOSE).ends_with(b"hello"));
    assert!(wait_until(Duration::from_secs(5), || recorder.closes() == 1));
    // The idle timeout.
    let mut idle = s.connect();
    assert_eq!(idle.get("/").status, 200);
    assert!(idle.closed_by_server());
    assert!(wait_until(Duration::from_secs(5), || recorder.closes() == 2));
    // A bad request.
    assert!(exchange(s.port, b"NOT HTTP\r\n\r\n").starts_with(b"HTTP/1.1 400"));
    assert!(wait_until(Duration::from_secs(5), || recorder.closes() == 3));
    // Open at shutdown: cut at the deadline, told then.
    let mut last = s.connect();
    assert_eq!(last.get("/").status, 200);
    assert!(wait_until(Duration::from_secs(5), || recorder.events().len() == 8));
    s.server.shutdown(Duration::ZERO);
    assert!(wait_until(Duration::from_secs(5), || recorder.closes() == 4));
    let events = recorder.events();
    let opens: Vec<u64> =
        events.iter().filter_map(|e| if let Event::Open { id, .. } = e { Some(*id) } else { None }).collect();
    let mut closes: Vec<u64> =
        events.iter().filter_map(|e| if let Event::Close { id, .. } = e { Some(*id) } else { None }).collect();
    closes.sort();
    assert_eq!(opens, closes, "each open has exactly one close");
}

#[test]
fn a_reload_s_new_hooks_see_new_connections_and_the_old_ones_their_closes() {
    let old = Arc::new(Recorder::default());
    let new = Arc::new(Recorder::default());
    let mut config = warpcore::Config {
        listen: "127.0.0.1:0".into(),
        workers: 1,
        handler: Some(Arc::new(hello)),
        conn_hooks: Some(old.clone()),
        ..warpcore::Config::default()
    };
    let server = warpcore::Server::start(&config).unwrap();
    let port = server.port();
    let mut first = Client::connect(port);
    assert_eq!(first.get("/").status, 200);
    config.listen = format!("127.0.0.1:{port}");
    config.conn_hooks = Some(new.clone());
    server.reload(&config).unwrap();
    let mut second = Client::connect(port);
    assert_eq!(second.get("/").status, 200);
    assert_eq!(first.get("/").status, 200);
    drop(first);
    drop(second);
    assert!(wait_until(Duration::from_secs(5), || old.closes() == 1 && new.closes() == 1));
    assert_eq!(old.events().len(), 2);
    assert_eq!(new.events().len(), 2);
    // No hooks at all after another reload: nothing more is told.
    config.conn_hooks = None;
    server.reload(&config).unwrap();
    assert!(exchange(port, GET_CLOSE).ends_with(b"hello"));
    assert_eq!(new.events().len(), 2);
}
