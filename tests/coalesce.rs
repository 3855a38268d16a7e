//! Adaptive coalescing (src/worker/coalesce.rs) over real sockets: a busy worker
//! naps and every answer still arrives whole and in order; a client that
//! waits on each answer is not napped on; a zero wait turns naps off. The
//! policy's decisions themselves are unit-tested with a synthetic clock.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use util::*;

/// Runs `clients` connections, each sending sequential GETs and checking
/// every answer, until `done` says so (checked after each answer) or
/// `max_each` requests each; returns the requests answered.
fn load(s: &TestServer, clients: usize, max_each: usize, done: impl Fn() -> bool + Sync) -> usize {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|k| {
                let stop = &stop;
                let port = s.port;
                scope.spawn(move || {
                    let mut c = Client::connect(port);
                    let mut n = 0;
                    while n < max_each && !stop.load(Ordering::Relaxed) {
                        let path = format!("/c{k}/r{n}");
                        assert_eq!(c.get(&path).text(), format!("GET {path} "));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let ended = wait_until(Duration::from_secs(20), || done() || workers.iter().all(|w| w.is_finished()));
        assert!(ended, "the load neither reached its goal nor finished in 20 s");
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

#[test]
fn a_busy_worker_naps_and_every_answer_still_arrives_in_order() {
    // A 1 ms nap needs only ~4,000 events/s to be tried: 8 busy connections
    // reach that on any machine, and rounds stay under the 16 events after
    // which no nap is taken, so the worker's trial must nap.
    let s = start_with(echo_handler, |c| c.coalesce_wait = Duration::from_millis(1));
    let server = &s.server;
    let answered = load(&s, 8, 40_000, || server.stats().coalesce_naps > 0);
    assert!(s.server.stats().coalesce_naps > 0, "no nap in {answered} requests");
    // The connections go on after napping.
    assert_eq!(s.connect().get("/after").text(), "GET /after ");
}

#[test]
fn a_client_waiting_on_each_answer_is_not_napped_on() {
    let s = start(echo_handler);
    let answered = load(&s, 1, 3_000, || false);
    assert_eq!(answered, 3_000);
    // A nap before every poll would be one per request. One trial's worth is
    // allowed: a fast machine may answer one connection quickly enough to try.
    let naps = s.server.stats().coalesce_naps;
    assert!(naps * 10 < answered as u64, "{naps} naps for {answered} sequential requests");
}

#[test]
fn a_zero_wait_never_naps() {
    let s = start_with(echo_handler, |c| c.coalesce_wait = Duration::ZERO);
    let answered = load(&s, 16, 500, || false);
    assert_eq!(answered, 16 * 500);
    assert_eq!(s.server.stats().coalesce_naps, 0);
}

#[test]
fn a_reload_turns_naps_off() {
    let s = start_with(echo_handler, |c| c.coalesce_wait = Duration::from_millis(1));
    let server = &s.server;
    load(&s, 8, 40_000, || server.stats().coalesce_naps > 0);
    assert!(s.server.stats().coalesce_naps > 0);
    let mut config = warpcore::Config {
        listen: "127.0.0.1:0".into(),
        workers: 1,
        handler: Some(Arc::new(echo_handler)),
        coalesce_wait: Duration::ZERO,
        ..warpcore::Config::default()
    };
    s.server.reload(&config).expect("reload");
    // The worker takes the new settings at its next poll; one request later
    // they apply.
    assert_eq!(s.connect().get("/sync").text(), "GET /sync ");
    let before = s.server.stats().coalesce_naps;
    let answered = load(&s, 16, 500, || false);
    assert_eq!(answered, 16 * 500);
    assert_eq!(s.server.stats().coalesce_naps, before);
    config.coalesce_wait = Duration::from_millis(2);
    assert!(s.server.reload(&config).is_err(), "2 ms is over the limit");
}
