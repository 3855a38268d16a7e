//! Two handlers on two workers, each still inside its call, answering each
//! other's C response handle: a worker thread never waits for another's
//! handler call, so each is told `WARPCORE_RESULT_WOULD_BLOCK` at once
//! (before, each waited for the other's call to end, for good). Through the C
//! functions from Rust, as tests/answer_race.rs.

mod util;

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use util::workers::connect_to_worker;
use util::*;
use warpcore::ffi::config::*;
use warpcore::ffi::request::warpcore_request;
use warpcore::ffi::response::{warpcore_respond, warpcore_response};
use warpcore::ffi::result::warpcore_result;
use warpcore::ffi::server::*;

/// Each worker's handle, while its `/meet` handler runs.
static HANDLES: Mutex<[usize; 2]> = Mutex::new([0; 2]);
/// Handlers that have tried the other's handle.
static TRIED: AtomicUsize = AtomicUsize::new(0);
static RESULTS: Mutex<Vec<warpcore_result>> = Mutex::new(Vec::new());

/// Spins until `done`, for at most 10 s (the other handler is on its way).
fn meet(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        std::thread::yield_now();
    }
}

unsafe extern "C" fn handler(_userdata: *mut c_void, req: *const warpcore_request, res: *mut warpcore_response) {
    // SAFETY: the library passes a valid request for the length of the call.
    let req = unsafe { &*req };
    // SAFETY: the path view is valid for the length of the call.
    let path = unsafe { std::slice::from_raw_parts(req.path.ptr, req.path.len) };
    let me = req.worker_index as usize;
    if path == b"/whoami" {
        let body = me.to_string();
        let _ = warpcore_respond(res, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
        return;
    }
    HANDLES.lock().unwrap()[me] = res as usize;
    meet(|| HANDLES.lock().unwrap().iter().all(|&h| h != 0));
    let other = HANDLES.lock().unwrap()[1 - me] as *mut warpcore_response;
    let body = b"from the other worker";
    let r = warpcore_respond(other, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
    RESULTS.lock().unwrap().push(r);
    // Both stay inside their calls until both have tried.
    TRIED.fetch_add(1, Ordering::SeqCst);
    meet(|| TRIED.load(Ordering::SeqCst) == 2);
    let body = format!("own {me}");
    let _ = warpcore_respond(res, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
}

#[test]
fn handlers_answering_each_others_handles_are_told_would_block_not_made_to_wait() {
    let mut config = std::ptr::null_mut();
    assert_eq!(warpcore_config_new(&mut config), warpcore_result::Ok);
    let listen = b"127.0.0.1:0";
    assert_eq!(warpcore_config_set_listen(config, listen.as_ptr(), listen.len()), warpcore_result::Ok);
    assert_eq!(warpcore_config_set_workers(config, 2), warpcore_result::Ok);
    assert_eq!(warpcore_config_set_handler(config, Some(handler), std::ptr::null_mut()), warpcore_result::Ok);
    let mut server = std::ptr::null_mut();
    assert_eq!(warpcore_server_start(config, &mut server), warpcore_result::Ok);
    warpcore_config_free(config);
    let port = warpcore_server_port(server);

    let mut clients: Vec<Client> = (0..2).map(|w| connect_to_worker(port, w, None)).collect();
    for c in &mut clients {
        c.send(b"GET /meet HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for (w, c) in clients.iter_mut().enumerate() {
        // A deadlock shows here as a read timeout (the server is then left
        // running: its workers could not be stopped).
        assert_eq!(c.read_response(false).text(), format!("own {w}"));
    }
    assert_eq!(*RESULTS.lock().unwrap(), vec![warpcore_result::WouldBlock; 2]);
    assert_eq!(warpcore_server_shutdown(server, 1000), warpcore_result::Ok);
    warpcore_server_free(server);
}
