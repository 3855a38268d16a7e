//! WebSocket keepalive: a WebSocket quiet for half its idle timeout is
//! pinged instead of closed, so a live peer (one that answers pings, as
//! every browser does) stays connected however long it says nothing; a peer
//! that leaves a ping unanswered for another quiet half is closed with 1011
//! (as the `websockets` package's keepalive timeout) and cut.

mod util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::ws::*;
use util::*;
use warpcore::websocket::{MessageKind, WebSocket, WsOptions};
use warpcore::{Request, Response};

/// What the echo threads saw: the close code of each WebSocket's end.
type Ends = Arc<Mutex<Vec<Option<u16>>>>;

/// A server whose `/ws` accepts a WebSocket with a 2 s idle timeout and
/// echoes text from a thread of its own (`/ws-close` closes it at once with
/// 1000 instead); the sockets are kept in `held`, the close codes their
/// applications got in `ends`.
fn start_echo(held: Arc<Mutex<Vec<Arc<WebSocket>>>>, ends: Ends) -> TestServer {
    start(move |req: &Request<'_>, res: &mut Response<'_>| {
        let ws = Arc::new(WebSocket::accept(res, &[], None, WsOptions::default()).expect("accept"));
        ws.connection().set_idle_timeout(Some(Duration::from_secs(2))).unwrap();
        held.lock().unwrap().push(ws.clone());
        if req.path == b"/ws-close" {
            ws.close(1000, "bye").unwrap();
        }
        let ends = ends.clone();
        std::thread::spawn(move || {
            while let Ok(m) = ws.recv() {
                if m.kind == MessageKind::Close {
                    ends.lock().unwrap().push(m.close_code());
                    break;
                }
                let _ = ws.send(m.kind, m.data);
            }
        });
    })
}

fn ends() -> Ends {
    Arc::new(Mutex::new(Vec::new()))
}

#[test]
fn a_quiet_websocket_whose_peer_answers_pings_stays_up() {
    let held = Arc::new(Mutex::new(Vec::new()));
    let s = start_echo(held.clone(), ends());
    let mut c = WsClient::connect(s.port);
    // Three quiet halves (about 3 s, more than the idle timeout): each
    // brings a ping, answered.
    for _ in 0..3 {
        let f = c.read_frame();
        assert_eq!(f.opcode, PING, "a ping, not {f:?}");
        c.send_frame(&FrameSpec::new(PONG, f.payload));
    }
    c.send_message(TEXT, b"still here");
    loop {
        let f = c.read_frame();
        if f.opcode == PING {
            c.send_frame(&FrameSpec::new(PONG, f.payload));
            continue;
        }
        assert_eq!((f.opcode, f.payload.as_slice()), (TEXT, &b"still here"[..]));
        break;
    }
    assert_eq!(s.server.stats().connections_timed_out, 0);
}

#[test]
fn a_peer_that_leaves_a_ping_unanswered_is_closed_with_1011() {
    let held = Arc::new(Mutex::new(Vec::new()));
    let ends = ends();
    let s = start_echo(held.clone(), ends.clone());
    let mut c = WsClient::connect(s.port);
    let f = c.read_frame();
    assert_eq!(f.opcode, PING);
    // Not answered: after another quiet half, the close, then the end.
    let f = c.read_frame();
    assert_eq!(f.opcode, CLOSE, "a close, not {f:?}");
    assert_eq!(f.close_code(), Some(1011));
    assert_eq!(&f.payload[2..], b"keepalive ping timeout");
    c.expect_eof();
    // The application's last message is the Close with 1006 (none came back).
    assert!(wait_until(IO_TIMEOUT, || !ends.lock().unwrap().is_empty()));
    assert_eq!(*ends.lock().unwrap(), vec![Some(1006)]);
    // Counted with the connections that timed out, as the idle timeout's
    // close of a quiet WebSocket was before pings.
    assert!(wait_until(IO_TIMEOUT, || s.server.stats().connections_timed_out == 1));
}

#[test]
fn data_from_the_peer_counts_as_an_answer() {
    let held = Arc::new(Mutex::new(Vec::new()));
    let s = start_echo(held, ends());
    let mut c = WsClient::connect(s.port);
    // Each ping answered by a message instead of a pong: still up.
    for i in 0..2 {
        let f = c.read_frame();
        assert_eq!(f.opcode, PING);
        let text = format!("message {i}");
        c.send_message(TEXT, text.as_bytes());
        let f = c.read_frame();
        assert_eq!((f.opcode, f.payload), (TEXT, text.into_bytes()));
    }
    let f = c.read_frame();
    assert_eq!(f.opcode, PING, "still pinged, not closed: {f:?}");
}

#[test]
fn a_close_the_peer_never_answers_is_cut_though_pings_are_due() {
    // The closing handshake's bound (5 s) holds with an idle timeout of 2 s,
    // whose quiet halves come first (before, they pushed it away for good).
    let held = Arc::new(Mutex::new(Vec::new()));
    let s = start_echo(held, ends());
    let mut c = WsClient::tcp(s.port);
    c.send(handshake_request("/ws-close", RFC_KEY, "").as_bytes());
    assert_eq!(c.read_head().status, 101);
    let f = c.read_frame();
    assert_eq!((f.opcode, f.close_code()), (CLOSE, Some(1000)));
    // Silent: no close answer, no pong. Cut within the client's 10 s timeout.
    c.expect_eof();
}
