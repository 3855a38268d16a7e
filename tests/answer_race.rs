//! The C API's response handle when another thread calls it while the handler
//! is still running (src/ffi/response.rs). A handler that answered itself
//! ends its call without a lock; a thread waiting on the handle meanwhile must
//! still be woken, learn `WARPCORE_RESULT_ALREADY_ANSWERED`, and never meet a
//! later request served by the handle's slot. Mixed with deferred answers
//! from other threads and plain answers on the same worker, whose handles
//! share the worker's slot. (Through the C functions from Rust, for the
//! `waiter_announced` hook; the C tests in tests/abi/ cover stale handles.)

mod util;

use std::ffi::c_void;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use util::*;
use warpcore::ffi::config::*;
use warpcore::ffi::request::warpcore_request;
use warpcore::ffi::response::{waiter_announced, warpcore_respond, warpcore_response};
use warpcore::ffi::result::warpcore_result;
use warpcore::ffi::server::*;

/// What the other threads saw: (request number, result of their answer).
static RESULTS: Mutex<Vec<(u32, warpcore_result)>> = Mutex::new(Vec::new());
static THREADS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

fn answer_from_thread(res: *mut warpcore_response, n: u32, body: String) {
    let res = res as usize;
    let t = std::thread::spawn(move || {
        let r = warpcore_respond(res as *mut warpcore_response, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
        RESULTS.lock().unwrap().push((n, r));
    });
    THREADS.lock().unwrap().push(t);
}

/// `/N` by `N % 3`: 0 answers in the call (the handle goes back to the
/// pool); 1 answers itself, then hands the handle to a thread that tries too
/// while the handler is still running (a misuse); 2 defers to a thread that
/// answers at once.
unsafe extern "C" fn handler(_userdata: *mut c_void, req: *const warpcore_request, res: *mut warpcore_response) {
    // SAFETY: the library passes a valid request for the length of the call.
    let req = unsafe { &*req };
    // SAFETY: the path view is valid for the length of the call.
    let path = unsafe { std::slice::from_raw_parts(req.path.ptr, req.path.len) };
    let n: u32 = std::str::from_utf8(&path[1..]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    match n % 3 {
        0 => {
            let body = format!("self {n}");
            let _ = warpcore_respond(res, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
        }
        1 => {
            let body = format!("self {n}");
            let _ = warpcore_respond(res, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
            answer_from_thread(res, n, format!("other {n}"));
            // End the call only once the other thread waits for it (past its
            // few yields, announced); every other time, a little later.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !waiter_announced(res) && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            if n % 2 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        _ => answer_from_thread(res, n, format!("deferred {n}")),
    }
}

fn expected_body(n: u32) -> String {
    if n % 3 == 2 {
        format!("deferred {n}")
    } else {
        format!("self {n}")
    }
}

#[test]
fn a_thread_that_answers_an_answered_handle_is_told_so_and_never_meets_the_next_request() {
    let mut config = std::ptr::null_mut();
    assert_eq!(warpcore_config_new(&mut config), warpcore_result::Ok);
    let listen = b"127.0.0.1:0";
    assert_eq!(warpcore_config_set_listen(config, listen.as_ptr(), listen.len()), warpcore_result::Ok);
    assert_eq!(warpcore_config_set_workers(config, 1), warpcore_result::Ok);
    assert_eq!(warpcore_config_set_handler(config, Some(handler), std::ptr::null_mut()), warpcore_result::Ok);
    let mut server = std::ptr::null_mut();
    assert_eq!(warpcore_server_start(config, &mut server), warpcore_result::Ok);
    warpcore_config_free(config);
    let port = warpcore_server_port(server);

    const REQUESTS: u32 = 64;
    let mut c = Client::connect(port);
    for n in 0..REQUESTS {
        assert_eq!(c.get(&format!("/{n}")).text(), expected_body(n), "request {n}");
    }
    // A waiter the worker failed to wake would sleep for good: bounded here.
    let threads: Vec<_> = THREADS.lock().unwrap().drain(..).collect();
    assert!(
        wait_until(Duration::from_secs(10), || threads.iter().all(|t| t.is_finished())),
        "an answering thread never returned"
    );
    for t in threads {
        t.join().unwrap();
    }
    let results = RESULTS.lock().unwrap();
    assert_eq!(results.len(), (0..REQUESTS).filter(|n| n % 3 != 0).count());
    for &(n, r) in results.iter() {
        let want = if n % 3 == 1 { warpcore_result::AlreadyAnswered } else { warpcore_result::Ok };
        assert_eq!(r, want, "request {n}'s other thread");
    }
    assert_eq!(warpcore_server_shutdown(server, 1000), warpcore_result::Ok);
    warpcore_server_free(server);
}
