//! A worker killed by a panic that escapes containment (here: an error log
//! that panics while a contained panic is reported) gives back what it held:
//! its connections close and their slots return to the connection limit, and
//! its mailbox refuses deferred answers and releases what was posted to it.
//! Before, the slots stayed counted (the limit slowly filled) and the mailbox
//! stayed open, holding what handles posted until the server was freed.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::workers::{connect_to_worker, shutdown_within, SHUTDOWN_LIMIT};
use util::*;
use warpcore::{Config, Deferred, ErrorLog, Level, Request, RespondError, Response};

const HELLO: &[u8] = b"subscribed\n";

/// An error log that panics on any message about the `/die` request's panic:
/// the panic it raises inside the worker's containment is reported through it
/// again, and that second panic escapes.
struct FatalLog;

impl ErrorLog for FatalLog {
    fn log(&self, _level: Level, message: &str) {
        if message.contains("die-now") {
            panic!("the error log fails on: {message}");
        }
    }
}

#[derive(Default)]
struct Slots {
    sub: Mutex<Option<Deferred>>,
    /// `/die` says it is inside its handler, then waits for the go.
    in_die: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

/// `GET /whoami`: the worker's index. `GET /sub`: a chunked stream started in
/// the call, deferred into `slots.sub`. `GET /die`: tells the test it is
/// running, waits for its go, then panics with "die-now". Else `hello`.
fn handler(slots: Arc<Slots>) -> impl warpcore::Handler {
    move |req: &Request<'_>, res: &mut Response<'_>| {
        let _ = match req.path {
            b"/whoami" => res.respond(200, std::iter::empty(), req.worker_index.to_string().as_bytes()),
            b"/sub" => {
                res.start(200, std::iter::empty(), None).unwrap();
                res.write(HELLO).unwrap();
                *slots.sub.lock().unwrap() = Some(res.defer().unwrap());
                Ok(())
            }
            b"/die" => {
                let _ = slots.in_die.lock().unwrap().take().unwrap().send(());
                let go = slots.go.lock().unwrap().take().unwrap();
                let _ = go.recv_timeout(IO_TIMEOUT);
                panic!("die-now");
            }
            _ => res.respond(200, std::iter::empty(), b"hello"),
        };
    }
}

#[test]
fn a_worker_killed_past_containment_gives_back_its_connections_and_closes_its_mailbox() {
    let slots = Arc::new(Slots::default());
    let (in_die_tx, in_die) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    *slots.in_die.lock().unwrap() = Some(in_die_tx);
    *slots.go.lock().unwrap() = Some(go_rx);
    let tune = |c: &mut Config| {
        c.workers = 2;
        c.error_log = Some(Arc::new(FatalLog));
    };
    let s = start_with(handler(slots.clone()), tune);
    let port = s.port;

    // Worker 0 holds three connections: a subscriber whose answer is deferred,
    // an idle one, and the one that will kill it.
    let mut sub = connect_to_worker(port, 0, None);
    sub.send(b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(IO_TIMEOUT, || slots.sub.lock().unwrap().is_some()), "the subscriber is deferred");
    let mut idle = connect_to_worker(port, 0, None);
    let mut dier = connect_to_worker(port, 0, None);
    // The probes that reached worker 1 are closed: exactly those three remain.
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().connections_active == 3), "{:?}", s.server.stats());
    // Room for four connections, three of them worker 0's.
    let mut limited = Config { listen: "127.0.0.1:0".into(), max_connections: 4, ..Config::default() };
    limited.handler = Some(Arc::new(handler(slots.clone())));
    tune(&mut limited);
    s.server.reload(&limited).unwrap();

    dier.send(b"GET /die HTTP/1.1\r\nHost: t\r\n\r\n");
    in_die.recv_timeout(IO_TIMEOUT).expect("the /die handler runs");
    // While worker 0 is inside that handler, an answer is posted to its
    // mailbox and waits there.
    let mut d = slots.sub.lock().unwrap().take().unwrap();
    let released = Arc::new(AtomicUsize::new(0));
    let payload = counted(b"posted before".to_vec(), &released);
    assert_eq!(d.write(payload), Ok(()));
    go.send(()).unwrap();

    // Worker 0 dies: its connections close.
    for c in [&mut sub, &mut idle, &mut dier] {
        assert!(c.closed_by_server(), "worker 0's connections are closed");
    }
    assert!(wait_until(IO_TIMEOUT, || released.load(Ordering::SeqCst) == 1), "what its mailbox held is released");
    let refused = Arc::new(AtomicUsize::new(0));
    let late = counted(b"posted after".to_vec(), &refused);
    assert_eq!(d.write(late), Err(RespondError::Closed), "a handle of the dead worker gets Closed");
    assert_eq!(refused.load(Ordering::SeqCst), 1, "and its payload is released");
    drop(d);
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().connections_active == 0), "{:?}", s.server.stats());

    // All four slots are free again: four connections at once, all answered
    // (by worker 1, the only one left).
    let mut four: Vec<Client> = (0..4).map(|_| s.connect()).collect();
    for c in &mut four {
        let r = c.get("/whoami");
        assert_eq!((r.status, r.text()), (200, "1".to_owned()));
    }
    // A listener added by a reload after the death: worker 0's socket of it
    // does not listen either, so every connection reaches worker 1.
    limited.listeners = vec!["127.0.0.1:0".into()];
    s.server.reload(&limited).unwrap();
    let added = s.server.listeners()[1].tcp.unwrap().port();
    drop(four);
    for _ in 0..8 {
        let r = Client::connect(added).get("/whoami");
        assert_eq!((r.status, r.text()), (200, "1".to_owned()));
    }
    let report = shutdown_within(s.server, Duration::from_secs(1), SHUTDOWN_LIMIT);
    assert_eq!(report.requests_finished, 0, "{report:?}");
}
