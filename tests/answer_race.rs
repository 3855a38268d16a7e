//! The C API's response handle when another thread calls it while the handler
//! is still running (src/ffi/response.rs). A handler that answered itself
//! ends its call without a lock; a thread waiting on the handle meanwhile must
//! still be woken, learn `WARPCORE_RESULT_ALREADY_ANSWERED`, and never meet a
//! later request that reuses the handle. Mixed with deferred answers from
//! other threads on the same worker, whose handles come from the same pool.
//! (Through the C functions from Rust: the misuse leaks its handle by design,
//! which the C tests' LeakSanitizer would report.)

mod util;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use util::*;
use warpcore::ffi::config::*;
use warpcore::ffi::request::warpcore_request;
use warpcore::ffi::response::{warpcore_respond, warpcore_response};
use warpcore::ffi::result::warpcore_result;
use warpcore::ffi::server::*;

/// What the other threads saw: (request number, result of their answer).
static RESULTS: Mutex<Vec<(u32, warpcore_result)>> = Mutex::new(Vec::new());
static THREADS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

fn answer_from_thread(res: *mut warpcore_response, n: u32, body: String, entered: Option<&'static AtomicBool>) {
    let res = res as usize;
    let t = std::thread::spawn(move || {
        if let Some(flag) = entered {
            flag.store(true, Ordering::Release);
        }
        let r = warpcore_respond(res as *mut warpcore_response, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
        RESULTS.lock().unwrap().push((n, r));
    });
    THREADS.lock().unwrap().push(t);
}

/// `/N`: odd N answers itself, then hands the handle to a thread that tries
/// too while the handler is still running (a misuse); even N defers to a
/// thread that answers at once.
unsafe extern "C" fn handler(_userdata: *mut c_void, req: *const warpcore_request, res: *mut warpcore_response) {
    // SAFETY: the library passes a valid request for the length of the call.
    let req = unsafe { &*req };
    // SAFETY: the path view is valid for the length of the call.
    let path = unsafe { std::slice::from_raw_parts(req.path.ptr, req.path.len) };
    let n: u32 = std::str::from_utf8(&path[1..]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    if n % 2 == 1 {
        let body = format!("self {n}");
        let _ = warpcore_respond(res, 200, std::ptr::null(), 0, body.as_ptr(), body.len());
        static ENTERED: AtomicBool = AtomicBool::new(false);
        ENTERED.store(false, Ordering::Relaxed);
        answer_from_thread(res, n, format!("other {n}"), Some(&ENTERED));
        // Let the other thread reach its wait (past its few yields) before
        // the call ends.
        while !ENTERED.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(30));
    } else {
        answer_from_thread(res, n, format!("deferred {n}"), None);
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

    const REQUESTS: u32 = 24;
    let mut c = Client::connect(port);
    for n in 0..REQUESTS {
        let want = if n % 2 == 1 { format!("self {n}") } else { format!("deferred {n}") };
        assert_eq!(c.get(&format!("/{n}")).text(), want, "request {n}");
    }
    for t in THREADS.lock().unwrap().drain(..) {
        t.join().unwrap();
    }
    let results = RESULTS.lock().unwrap();
    assert_eq!(results.len(), REQUESTS as usize);
    for &(n, r) in results.iter() {
        let want = if n % 2 == 1 { warpcore_result::AlreadyAnswered } else { warpcore_result::Ok };
        assert_eq!(r, want, "request {n}'s other thread");
    }
    assert_eq!(warpcore_server_shutdown(server, 1000), warpcore_result::Ok);
    warpcore_server_free(server);
}
