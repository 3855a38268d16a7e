//! Answers held until the end of a poll round (src/worker/held.rs): each connection
//! gets its own answers, in order, also when the socket takes only part of
//! them at the end of the round.

mod util;

use std::time::Duration;

use util::*;

#[test]
fn many_connections_answered_in_one_round_each_get_their_own_answers() {
    let s = start(echo_handler);
    let mut clients: Vec<Client> = (0..64).map(|_| s.connect()).collect();
    for round in 0..3 {
        // All requests are written before any answer is read, so the worker
        // finds many connections ready at once and holds their answers.
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(format!("GET /c{i}/r{round} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c.read_response(false);
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), format!("GET /c{i}/r{round} "));
        }
    }
}

#[test]
fn held_answers_the_socket_cannot_take_whole_arrive_later_in_order() {
    let s = start(echo_handler);
    // A client with a 4 KiB receive window that reads nothing for a while:
    // the server's send buffer (up to tcp_wmem's 4 MiB) fills, and a round's
    // held answers then meet a socket that takes part of them or nothing; the
    // rest must wait for the socket to drain and follow in order. Requests
    // are padded to be larger than their answers, so that no read's answers
    // reach the size that is written at once instead of held.
    let mut c = Client::connect_with_rcvbuf(s.port, 4096);
    let n = 100_000;
    let pad = "p".repeat(150);
    let wire: String = (0..n).map(|i| format!("GET /{i:05} HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n")).collect();
    let writer = {
        let mut stream = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            stream.write_all(wire.as_bytes()).unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..n {
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("GET /{i:05} "));
    }
    writer.join().unwrap();
    // The connection goes on.
    assert_eq!(c.get("/after").text(), "GET /after ");
}

// A FIN with the request: the answer is not held (the connection closes)
// but sent at once, and the close follows it.
#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer_then_the_close() {
    let s = start(echo_handler);
    let mut c = s.connect();
    c.send(b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n");
    c.shutdown_write();
    let r = c.read_response(false);
    assert_eq!(r.text(), "GET /last ");
    assert!(c.closed_by_server());
}
