//! `Config::sched_batch`: the worker threads run under `SCHED_BATCH` while it
//! is on, and go back to `SCHED_OTHER` when a reload turns it off or their
//! worker ends; a thread the embedder lends is left as it was found.

mod util;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use util::workers::connect_to_worker;
use util::*;
use warpcore::{Config, Request, Response, Server};

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// The calling thread's id, from `/proc/thread-self` (`PID/task/TID`).
fn own_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

/// The policy of thread `tid` of this process: field 41 of its `stat`.
fn policy_of(tid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("the thread's stat");
    // Fields after the command name, which is in parentheses and may hold spaces, start at field 3.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(41 - 3).unwrap().parse().unwrap()
}

/// Answers `/whoami` with the worker index (for `connect_to_worker`) and
/// anything else with the id of the thread it runs on.
fn tid_handler(req: &Request<'_>, res: &mut Response<'_>) {
    let body = match req.path {
        b"/whoami" => req.worker_index.to_string(),
        _ => own_tid().to_string(),
    };
    let _ = res.respond(200, std::iter::empty(), body.as_bytes());
}

/// The thread ids of each of the server's `workers` workers.
fn worker_tids(port: u16, workers: usize) -> Vec<u32> {
    (0..workers).map(|w| connect_to_worker(port, w, None).get("/tid").text().parse().unwrap()).collect()
}

fn policies(tids: &[u32]) -> Vec<u32> {
    tids.iter().map(|&t| policy_of(t)).collect()
}

fn config(sched_batch: bool, workers: usize) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        workers,
        handler: Some(Arc::new(tid_handler)),
        sched_batch,
        ..Config::default()
    }
}

#[test]
fn the_workers_run_under_sched_batch_only_when_it_is_on() {
    assert!(!Config::default().sched_batch, "off by default");
    let on = Server::start(&config(true, 2)).expect("start");
    let off = Server::start(&config(false, 2)).expect("start");
    assert_eq!(policies(&worker_tids(on.port(), 2)), [SCHED_BATCH; 2]);
    assert_eq!(policies(&worker_tids(off.port(), 2)), [SCHED_OTHER; 2]);
    assert_eq!(policy_of(own_tid()), SCHED_OTHER, "the thread that started them is untouched");
}

#[test]
fn a_reload_moves_the_workers_back_and_forth() {
    let server = Server::start(&config(true, 2)).expect("start");
    let tids = worker_tids(server.port(), 2);
    assert_eq!(policies(&tids), [SCHED_BATCH; 2]);
    // A reload returns once every worker took the new settings.
    let mut c = config(false, 2);
    c.listen = format!("127.0.0.1:{}", server.port());
    server.reload(&c).expect("reload");
    assert_eq!(policies(&tids), [SCHED_OTHER; 2]);
    c.sched_batch = true;
    server.reload(&c).expect("reload");
    assert_eq!(policies(&tids), [SCHED_BATCH; 2]);
    assert_eq!(worker_tids(server.port(), 2), tids, "the same threads");
}

/// Runs worker 0 of a one-worker server with `sched_batch` on a thread that
/// first puts itself under `before`; returns the thread's policy as the
/// handler saw it, after a reload turning the setting off, and after
/// `run_worker` returned.
fn external_worker(before: u32) -> (u32, u32, u32) {
    let mut c = config(true, 1);
    c.external_workers = true;
    let server = Arc::new(Server::start(&c).expect("start"));
    let (tx, rx) = mpsc::channel();
    let runner = {
        let server = server.clone();
        std::thread::spawn(move || {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: a valid sched_param for the calling thread (pid 0).
            assert_eq!(unsafe { libc::sched_setscheduler(0, before as i32, &param) }, 0);
            tx.send(own_tid()).unwrap();
            server.run_worker(0).expect("run_worker");
            policy_of(own_tid())
        })
    };
    let tid = rx.recv_timeout(IO_TIMEOUT).unwrap();
    let mut client = Client::connect(server.port());
    assert_eq!(client.get("/tid").text(), tid.to_string(), "the handler runs on the lent thread");
    let running = policy_of(tid);
    c.listen = format!("127.0.0.1:{}", server.port());
    c.sched_batch = false;
    server.reload(&c).expect("reload");
    let reloaded = policy_of(tid);
    c.sched_batch = true;
    server.reload(&c).expect("reload");
    server.shutdown(Duration::from_secs(2));
    (running, reloaded, runner.join().unwrap())
}

#[test]
fn an_external_worker_thread_is_left_as_it_was_found() {
    // Moved while it runs the worker, back once a reload turns it off, moved
    // again by the next, back before run_worker returns.
    assert_eq!(external_worker(SCHED_OTHER), (SCHED_BATCH, SCHED_OTHER, SCHED_OTHER));
    // Under SCHED_BATCH already (the embedder's choice): never touched.
    assert_eq!(external_worker(SCHED_BATCH), (SCHED_BATCH, SCHED_BATCH, SCHED_BATCH));
    // Under SCHED_IDLE (5): never touched either.
    assert_eq!(external_worker(5), (5, 5, 5));
}

#[test]
fn threads_a_handler_starts_inherit_the_policy() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let s = start_with(
        move |_req: &Request<'_>, res: &mut Response<'_>| {
            let inherited = std::thread::spawn(|| policy_of(own_tid())).join().unwrap();
            let _ = tx.lock().unwrap().send(inherited);
            let _ = res.respond(200, std::iter::empty(), b"");
        },
        |c| c.sched_batch = true,
    );
    assert_eq!(s.connect().get("/").status, 200);
    assert_eq!(rx.recv_timeout(IO_TIMEOUT).unwrap(), SCHED_BATCH);
}
