//! Reloads made at once from handlers on two workers (and from outside) all
//! return, the server answers afterwards and shuts down in time. Before, a
//! worker reloading waited for the other's acknowledgement while the other,
//! itself inside a reload, waited for the first's: nothing was answered again
//! and shutdown hung.

mod util;

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use util::workers::{connect_to_worker, shutdown_within, SHUTDOWN_LIMIT};
use util::*;
use warpcore::{Config, Handler, Request, Response, Server};

/// What the reloading handler needs: the server and the handler itself
/// (weakly, so nothing keeps itself alive), and a meeting point for the
/// first reloads of both workers.
#[derive(Default)]
struct Reloads {
    server: OnceLock<(Weak<Server>, Weak<dyn Handler>)>,
    /// Per worker: one of its handlers is about to reload.
    arrived: [AtomicBool; 2],
    count: AtomicUsize,
}

fn config(handler: Option<Arc<dyn Handler>>, name: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        workers: 2,
        handler,
        server_name: name.as_bytes().to_vec(),
        ..Config::default()
    }
}

/// `GET /whoami`: the worker's index. `GET /reload`: once a handler of each
/// worker has arrived (so that both workers are inside a reload together),
/// reloads with a new server name and answers 200, or 500 if it failed.
/// Anything else: `hello`.
fn reloading(state: Arc<Reloads>) -> Arc<dyn Handler> {
    Arc::new(move |req: &Request<'_>, res: &mut Response<'_>| {
        let _ = match req.path {
            b"/whoami" => res.respond(200, std::iter::empty(), req.worker_index.to_string().as_bytes()),
            b"/reload" => {
                state.arrived[req.worker_index].store(true, Ordering::SeqCst);
                // Bounded: a worker whose partner never comes reloads alone.
                let deadline = Instant::now() + Duration::from_secs(5);
                while !state.arrived.iter().all(|a| a.load(Ordering::SeqCst)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let (server, handler) = state.server.get().unwrap();
                let n = state.count.fetch_add(1, Ordering::SeqCst);
                let result = match server.upgrade() {
                    Some(server) => server.reload(&config(handler.upgrade(), &format!("handler-{n}"))),
                    None => return,
                };
                let status = if result.is_ok() { 200 } else { 500 };
                res.respond(status, std::iter::empty(), format!("{result:?}").as_bytes())
            }
            _ => res.respond(200, std::iter::empty(), b"hello"),
        };
    })
}

/// Sends `/reload` on `per_worker` connections of each worker at once and
/// reads every answer (each read bounded by `IO_TIMEOUT`).
fn reload_round(port: u16, state: &Reloads, per_worker: usize) {
    for a in &state.arrived {
        a.store(false, Ordering::SeqCst);
    }
    let mut clients: Vec<Client> =
        (0..per_worker).flat_map(|_| [connect_to_worker(port, 0, None), connect_to_worker(port, 1, None)]).collect();
    for c in &mut clients {
        c.send(b"GET /reload HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for c in &mut clients {
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn concurrent_reloads_from_handlers_on_two_workers_all_return() {
    let state = Arc::new(Reloads::default());
    let handler = reloading(state.clone());
    // Left running (leaked) if the test fails: deadlocked workers cannot shut down.
    let server = ManuallyDrop::new(Arc::new(Server::start(&config(Some(handler.clone()), "start")).unwrap()));
    assert!(state.server.set((Arc::downgrade(&*server), Arc::downgrade(&handler))).is_ok());
    let port = server.port();

    // Six at once (three per worker), as reported; then more, with reloads
    // from outside running meanwhile.
    reload_round(port, &state, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let outside = {
        let (server, handler, stop) = (Arc::downgrade(&*server), handler.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let Some(server) = server.upgrade() else { break };
                server.reload(&config(Some(handler.clone()), &format!("outside-{n}"))).unwrap();
                n += 1;
            }
            n
        })
    };
    for _ in 0..3 {
        reload_round(port, &state, 8);
    }
    stop.store(true, Ordering::SeqCst);
    let outside_reloads = outside.join().unwrap();
    assert!(outside_reloads > 0);
    assert_eq!(state.count.load(Ordering::SeqCst), 6 + 3 * 16);

    // A plain GET afterwards, and the last reload is the one in force.
    server.reload(&config(Some(handler.clone()), "final")).unwrap();
    for w in 0..2 {
        let r = connect_to_worker(port, w, None).get("/");
        assert_eq!((r.status, r.text()), (200, "hello".to_owned()));
        assert_eq!(r.header("server"), Some("final"), "worker {w}");
    }
    let server = Arc::into_inner(ManuallyDrop::into_inner(server)).expect("the only strong reference");
    shutdown_within(server, Duration::from_secs(1), SHUTDOWN_LIMIT);
}

#[test]
fn a_handler_reloads_another_server_with_fewer_workers() {
    let other =
        Arc::new(Server::start(&Config { workers: 1, ..config(Some(Arc::new(demo_handler)), "other") }).unwrap());
    let target = other.clone();
    let reloaded = Arc::new(AtomicUsize::new(0));
    let counted = reloaded.clone();
    let handler: Arc<dyn Handler> = Arc::new(move |req: &Request<'_>, res: &mut Response<'_>| {
        if req.path == b"/whoami" {
            let _ = res.respond(200, std::iter::empty(), req.worker_index.to_string().as_bytes());
            return;
        }
        let fresh = Config { workers: 1, ..config(Some(Arc::new(demo_handler)), "reloaded") };
        let status = match target.reload(&fresh) {
            Ok(()) => 200,
            Err(_) => 500,
        };
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = res.respond(status, std::iter::empty(), b"");
    });
    let server = Server::start(&config(Some(handler), "first")).unwrap();
    // Each of the two workers reloads the one-worker server from a handler.
    for worker in 0..2 {
        let mut c = connect_to_worker(server.port(), worker, None);
        assert_eq!(c.get("/").status, 200, "the reload from worker {worker} succeeded");
    }
    assert_eq!(reloaded.load(Ordering::SeqCst), 2);
    let reply = Client::connect(other.port()).get("/");
    assert_eq!(reply.header("server"), Some("reloaded"), "the other server took the new settings");
    shutdown_within(server, Duration::ZERO, SHUTDOWN_LIMIT);
    other.shutdown(Duration::ZERO);
}
