//! The application's own reason phrase in the status line, and the answer
//! timeout paused by the application (Warp's `statusMessage` and
//! `pauseTimeout`), over real sockets.

mod util;

use std::time::{Duration, Instant};

use util::*;
use warpcore::{Request, RespondError, Response};

fn status_line(bytes: &[u8]) -> String {
    let end = bytes.windows(2).position(|w| w == b"\r\n").unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn reasons(req: &Request<'_>, res: &mut Response<'_>) {
    let none = std::iter::empty();
    let _ = match req.path {
        b"/respond" => res.set_reason(b"Fine \xe2\x9c\x93").and_then(|()| res.respond(200, none, b"ok")),
        b"/stream" => res.set_reason(b"Streaming Along").and_then(|()| {
            res.start(201, none, None)?;
            res.write(b"abc")?;
            res.end()
        }),
        b"/empty" => res.set_reason(b"").and_then(|()| res.respond(404, none, b"")),
        b"/bad" => {
            assert_eq!(res.set_reason(b"Bad\r\nInjected: 1"), Err(RespondError::InvalidStatus));
            assert_eq!(res.set_reason(b"\x07"), Err(RespondError::InvalidStatus));
            res.respond(200, none, b"refused")
        }
        b"/late" => {
            res.respond(200, none, b"x").unwrap();
            assert_eq!(res.set_reason(b"Too Late"), Err(RespondError::AlreadyAnswered));
            Ok(())
        }
        b"/deferred" => {
            res.set_reason(b"Set In The Call").unwrap();
            let mut d = res.defer().unwrap();
            std::thread::spawn(move || d.respond_bytes(202, std::iter::empty(), b"later"));
            Ok(())
        }
        b"/deferred-set" => {
            let mut d = res.defer().unwrap();
            std::thread::spawn(move || {
                d.set_reason(b"Set Later").unwrap();
                d.start(200, std::iter::empty(), Some(2)).unwrap();
                assert_eq!(d.set_reason(b"x"), Err(RespondError::AlreadyAnswered));
                d.write(b"hi".to_vec().into()).unwrap();
                d.end()
            });
            Ok(())
        }
        _ => res.respond(200, none, b"default"),
    };
}

#[test]
fn the_application_s_reason_phrase_is_sent_for_every_kind_of_answer() {
    let s = start(reasons);
    let cases: &[(&str, &str)] = &[
        ("/respond", "HTTP/1.1 200 Fine \u{2713}"),
        ("/stream", "HTTP/1.1 201 Streaming Along"),
        ("/empty", "HTTP/1.1 404 "),
        ("/bad", "HTTP/1.1 200 OK"),
        ("/late", "HTTP/1.1 200 OK"),
        ("/deferred", "HTTP/1.1 202 Set In The Call"),
        ("/deferred-set", "HTTP/1.1 200 Set Later"),
        ("/other", "HTTP/1.1 200 OK"),
    ];
    // Checked on the raw bytes, one connection each.
    for (path, line) in cases {
        let got = exchange(s.port, format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(status_line(&got), *line, "{path}");
    }
}

/// Answers after `delay` from another thread, having paused the timeout
/// when the path says so.
fn slow(req: &Request<'_>, res: &mut Response<'_>) {
    let pause = req.path.starts_with(b"/pause");
    if req.path == b"/pause-in-call" {
        res.pause_timeout().unwrap();
    }
    let mut d = res.defer().unwrap();
    let later = req.path == b"/pause-later";
    std::thread::spawn(move || {
        if later {
            d.pause_timeout().unwrap();
        }
        std::thread::sleep(Duration::from_millis(3200));
        let _ = d.respond_bytes(200, std::iter::empty(), if pause { b"paused" } else { b"late" });
        let _ = d.pause_timeout();
    });
}

#[test]
fn a_paused_answer_timeout_lets_the_application_take_its_time() {
    let s = start_with(slow, |c| c.answer_timeout = Duration::from_secs(1));
    let started = Instant::now();
    let handles: Vec<_> = ["/pause-in-call", "/pause-later", "/not-paused"]
        .into_iter()
        .map(|path| {
            let port = s.port;
            std::thread::spawn(move || {
                exchange(port, format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
            })
        })
        .collect();
    let got: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(got[0].starts_with(b"HTTP/1.1 200") && got[0].ends_with(b"paused"), "{}", String::from_utf8_lossy(&got[0]));
    assert!(got[1].starts_with(b"HTTP/1.1 200") && got[1].ends_with(b"paused"), "{}", String::from_utf8_lossy(&got[1]));
    assert!(got[2].starts_with(b"HTTP/1.1 503"), "{}", String::from_utf8_lossy(&got[2]));
    assert!(started.elapsed() >= Duration::from_secs(3));
}
