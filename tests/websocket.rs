//! WebSocket conformance against the C demo's `GET /ws` echo, over real
//! sockets, in the categories of the Autobahn test suite: framing, masking,
//! reserved bits and opcodes, fragmentation, pings, UTF-8, limits, the
//! close handshake, and the opening handshake. Each test starts the demo
//! (`build/demo`, or `WARPCORE_DEMO`) as a child process on port 0 and talks
//! to it with the frame-level client of `util/ws.rs`; every read is bounded
//! by `IO_TIMEOUT`. The last section serves WebSockets in-process instead,
//! for what the demo's echo cannot show.

mod util;

use util::ws::*;

/// The demo's default largest message (1 MiB): bigger closes with 1009.
const MAX_MESSAGE: usize = 1 << 20;

fn demo() -> DemoProcess {
    DemoProcess::start(1)
}

/// A protocol violation `frame` (alone on a fresh WebSocket) makes the
/// server send a close frame with `code` and close the TCP connection.
fn fails_with(demo: &DemoProcess, bytes: &[u8], code: u16) {
    let mut c = WsClient::connect(demo.port);
    c.send(bytes);
    c.expect_close(Some(code));
}

fn text_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]).collect()
}

fn bytes_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

// ---------------------------------------------------------------- framing

const LENGTHS: [usize; 7] = [0, 125, 126, 127, 65535, 65536, MAX_MESSAGE - 1];

#[test]
fn text_messages_of_every_length_encoding_are_echoed() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    for len in LENGTHS {
        let payload = text_of(len);
        c.send_message(TEXT, &payload);
        c.expect_message(TEXT, &payload);
    }
}

#[test]
fn binary_messages_of_every_length_encoding_are_echoed() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    for len in LENGTHS {
        let payload = bytes_of(len);
        c.send_message(BINARY, &payload);
        c.expect_message(BINARY, &payload);
    }
}

#[test]
fn a_message_of_exactly_the_limit_is_echoed() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    let payload = bytes_of(MAX_MESSAGE);
    c.send_message(BINARY, &payload);
    c.expect_message(BINARY, &payload);
}

#[test]
fn frames_written_byte_by_byte_are_echoed() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    // A 7-bit, a 16-bit and a 64-bit length, each frame one byte per write.
    for len in [5, 300, 65536 + 3] {
        let payload = bytes_of(len);
        let frame = FrameSpec::new(BINARY, payload.clone()).encode();
        if len > 1000 {
            // The head (10 + 4 bytes) byte by byte, the payload in 999-byte writes.
            c.send_bytewise(&frame[..14]);
            for piece in frame[14..].chunks(999) {
                c.send(piece);
            }
        } else {
            c.send_bytewise(&frame);
        }
        c.expect_message(BINARY, &payload);
    }
    // A text message byte by byte, a ping in the same way.
    c.send_bytewise(&FrameSpec::new(TEXT, "byte by byte").encode());
    c.expect_message(TEXT, b"byte by byte");
    c.send_bytewise(&FrameSpec::new(PING, "p").encode());
    c.expect_message(PONG, b"p");
}

/// Multi-byte text, long enough to cross every 16 KiB boundary inside a character.
fn long_text(len: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity(len + 8);
    while t.len() < len {
        t.extend_from_slice("aé€𝄞".as_bytes());
    }
    t
}

#[test]
fn big_frames_keep_their_meaning() {
    // The server cuts big frames into fragments before decoding them: the
    // messages, and the errors, must be those of the frames sent.
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    for len in [16 * 1024 + 1, 100_000, 300_001] {
        let text = long_text(len);
        c.send_message(TEXT, &text);
        c.expect_message(TEXT, &text);
    }
    // A fragmented message of big fragments, a ping between them.
    let text = long_text(70_000);
    let (a, b) = text.split_at(40_001);
    c.send_frame(&FrameSpec::new(TEXT, a).fin(false));
    c.send_frame(&FrameSpec::new(PING, "between"));
    c.send_frame(&FrameSpec::new(CONT, b));
    c.expect_message(PONG, b"between");
    c.expect_message(TEXT, &text);
    // Broken big frames fail as small ones do.
    let mut bad = long_text(50_000);
    bad.push(0xff);
    fails_with(&demo, &FrameSpec::new(TEXT, bad).encode(), 1007);
    fails_with(&demo, &FrameSpec::new(BINARY, bytes_of(50_000)).rsv(4).encode(), 1002);
    fails_with(&demo, &FrameSpec::new(BINARY, bytes_of(50_000)).unmasked().encode(), 1002);
    fails_with(&demo, &FrameSpec::new(CONT, bytes_of(50_000)).encode(), 1002);
    let mut wire = FrameSpec::new(BINARY, bytes_of(40_000)).fin(false).encode();
    wire.extend(FrameSpec::new(BINARY, bytes_of(40_000)).encode());
    fails_with(&demo, &wire, 1002);
}

#[test]
fn many_messages_in_one_write_are_echoed_in_order() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend(FrameSpec::new(TEXT, format!("message {i}")).encode());
    }
    c.send(&batch);
    for i in 0..200 {
        c.expect_message(TEXT, format!("message {i}").as_bytes());
    }
}

// ---------------------------------------------------------------- masking

#[test]
fn an_unmasked_client_frame_closes_with_1002() {
    let demo = demo();
    fails_with(&demo, &FrameSpec::new(TEXT, "not masked").unmasked().encode(), 1002);
    fails_with(&demo, &FrameSpec::new(PING, "").unmasked().encode(), 1002);
}

// ---------------------------------------------------------------- reserved bits and opcodes

#[test]
fn reserved_bits_close_with_1002() {
    let demo = demo();
    for rsv in [4, 2, 1, 7] {
        fails_with(&demo, &FrameSpec::new(TEXT, "hello").rsv(rsv).encode(), 1002);
    }
    // On a control frame too, and after a good message.
    let mut c = WsClient::connect(demo.port);
    c.send_message(TEXT, b"good");
    c.expect_message(TEXT, b"good");
    c.send_frame(&FrameSpec::new(PING, "").rsv(2));
    c.expect_close(Some(1002));
}

#[test]
fn reserved_opcodes_close_with_1002() {
    let demo = demo();
    for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        fails_with(&demo, &FrameSpec::new(opcode, "").encode(), 1002);
    }
    let mut c = WsClient::connect(demo.port);
    c.send_message(TEXT, b"good");
    c.expect_message(TEXT, b"good");
    c.send_frame(&FrameSpec::new(0xB, "payload"));
    c.expect_close(Some(1002));
}

// ---------------------------------------------------------------- fragmentation

#[test]
fn a_fragmented_text_message_is_echoed_whole() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_frame(&FrameSpec::new(TEXT, "Hello, ").fin(false));
    c.send_frame(&FrameSpec::new(CONT, "").fin(false));
    c.send_frame(&FrameSpec::new(CONT, "fragmented ").fin(false));
    c.send_frame(&FrameSpec::new(CONT, "world"));
    c.expect_message(TEXT, b"Hello, fragmented world");
}

#[test]
fn a_fragmented_binary_message_is_echoed_whole() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    let payload = bytes_of(200_000);
    let pieces: Vec<&[u8]> = payload.chunks(65_000).collect();
    let mut wire = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { BINARY } else { CONT };
        wire.extend(FrameSpec::new(opcode, piece.to_vec()).fin(i + 1 == pieces.len()).encode());
    }
    c.send(&wire);
    c.expect_message(BINARY, &payload);
    // One fragment per byte.
    c.send_frame(&FrameSpec::new(BINARY, [1u8]).fin(false));
    c.send_frame(&FrameSpec::new(CONT, [2u8]).fin(false));
    c.send_frame(&FrameSpec::new(CONT, [3u8]));
    c.expect_message(BINARY, &[1, 2, 3]);
}

#[test]
fn pings_between_fragments_are_answered_in_order() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_frame(&FrameSpec::new(TEXT, "frag1 ").fin(false));
    c.send_frame(&FrameSpec::new(PING, "ping 1"));
    c.send_frame(&FrameSpec::new(CONT, "frag2 ").fin(false));
    c.send_frame(&FrameSpec::new(PING, "ping 2"));
    c.send_frame(&FrameSpec::new(CONT, "frag3"));
    c.expect_message(PONG, b"ping 1");
    c.expect_message(PONG, b"ping 2");
    c.expect_message(TEXT, b"frag1 frag2 frag3");
    // The same in one write.
    let mut wire = FrameSpec::new(BINARY, "a").fin(false).encode();
    wire.extend(FrameSpec::new(PING, "x").encode());
    wire.extend(FrameSpec::new(CONT, "b").encode());
    c.send(&wire);
    c.expect_message(PONG, b"x");
    c.expect_message(BINARY, b"ab");
}

#[test]
fn a_continuation_without_a_start_closes_with_1002() {
    let demo = demo();
    fails_with(&demo, &FrameSpec::new(CONT, "orphan").encode(), 1002);
    fails_with(&demo, &FrameSpec::new(CONT, "orphan").fin(false).encode(), 1002);
    // After a whole message, too.
    let mut c = WsClient::connect(demo.port);
    c.send_message(TEXT, b"whole");
    c.expect_message(TEXT, b"whole");
    c.send_frame(&FrameSpec::new(CONT, "late"));
    c.expect_close(Some(1002));
}

#[test]
fn a_new_data_frame_inside_a_fragmented_message_closes_with_1002() {
    let demo = demo();
    for second in [TEXT, BINARY] {
        let mut wire = FrameSpec::new(TEXT, "first").fin(false).encode();
        wire.extend(FrameSpec::new(second, "second").encode());
        fails_with(&demo, &wire, 1002);
    }
}

#[test]
fn a_fragmented_control_frame_closes_with_1002() {
    let demo = demo();
    for opcode in [PING, PONG, CLOSE] {
        fails_with(&demo, &FrameSpec::new(opcode, "").fin(false).encode(), 1002);
    }
}

// ---------------------------------------------------------------- pings

#[test]
fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_frame(&FrameSpec::new(PING, ""));
    c.expect_message(PONG, b"");
    c.send_frame(&FrameSpec::new(PING, "Hello"));
    c.expect_message(PONG, b"Hello");
    c.send_frame(&FrameSpec::new(PING, bytes_of(100)));
    c.expect_message(PONG, &bytes_of(100));
}

#[test]
fn a_125_byte_ping_is_answered() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_frame(&FrameSpec::new(PING, bytes_of(125)));
    c.expect_message(PONG, &bytes_of(125));
}

#[test]
fn a_126_byte_ping_closes_with_1002() {
    let demo = demo();
    fails_with(&demo, &FrameSpec::new(PING, bytes_of(126)).encode(), 1002);
}

#[test]
fn an_unsolicited_pong_is_ignored() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_frame(&FrameSpec::new(PONG, "unasked"));
    c.send_frame(&FrameSpec::new(PONG, ""));
    c.send_message(TEXT, b"after the pongs");
    c.expect_message(TEXT, b"after the pongs");
}

// ---------------------------------------------------------------- UTF-8

#[test]
fn valid_multibyte_text_is_echoed() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    // 2-, 3- and 4-byte characters, the largest code point, and U+FEFF.
    for text in ["κόσμε", "€ 中文 ﻿", "𝄞 😀 \u{10FFFF}", "Hello-µ@ßöäüàá-UTF-8!!"] {
        c.send_message(TEXT, text.as_bytes());
        c.expect_message(TEXT, text.as_bytes());
    }
}

#[test]
fn invalid_utf8_in_one_frame_closes_with_1007() {
    let demo = demo();
    let bad: [&[u8]; 6] = [
        b"\xff",
        b"ok \xc0\x80",              // an overlong NUL
        b"\xed\xa0\x80",             // a UTF-16 surrogate
        b"\xf4\x90\x80\x80",         // above U+10FFFF
        b"\xce\xba\xe1\xbd",         // a character cut short at the end
        b"\xce\xba\xe1\xbd\xb9\x80", // a stray continuation byte
    ];
    for text in bad {
        fails_with(&demo, &FrameSpec::new(TEXT, text).encode(), 1007);
    }
}

#[test]
fn an_invalid_sequence_split_across_fragments_closes_with_1007() {
    let demo = demo();
    // "\xf0\x90" starts a 4-byte character; "\x28" cannot continue it.
    let mut wire = FrameSpec::new(TEXT, b"ab\xf0\x90".to_vec()).fin(false).encode();
    wire.extend(FrameSpec::new(CONT, b"\x28\x8c".to_vec()).encode());
    fails_with(&demo, &wire, 1007);
    // A message whose first fragment is already invalid fails without
    // waiting for the rest (fail fast).
    fails_with(&demo, &FrameSpec::new(TEXT, b"\xce\xba\xf4\x90\x80\x80".to_vec()).fin(false).encode(), 1007);
}

#[test]
fn valid_text_split_mid_character_across_fragments_is_echoed() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    let text = "κόσμε 𝄞";
    let bytes = text.as_bytes();
    // Split inside the 4-byte character and inside a 2-byte one.
    let cut1 = 1;
    let cut2 = bytes.len() - 2;
    c.send_frame(&FrameSpec::new(TEXT, &bytes[..cut1]).fin(false));
    c.send_frame(&FrameSpec::new(CONT, &bytes[cut1..cut2]).fin(false));
    c.send_frame(&FrameSpec::new(CONT, &bytes[cut2..]));
    c.expect_message(TEXT, bytes);
    // One fragment per byte.
    for (i, b) in bytes.iter().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONT };
        c.send_frame(&FrameSpec::new(opcode, [*b]).fin(i + 1 == bytes.len()));
    }
    c.expect_message(TEXT, bytes);
}

// ---------------------------------------------------------------- limits

#[test]
fn a_frame_over_the_limit_closes_with_1009_at_its_head() {
    let demo = demo();
    // Only the head is sent: the length alone is refused.
    for len in [MAX_MESSAGE as u64 + 1, 1 << 40, u64::MAX >> 1] {
        fails_with(&demo, &frame_header(true, 0, BINARY, Some(MASK), len), 1009);
    }
}

#[test]
fn a_fragmented_message_over_the_limit_closes_with_1009() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    let half = bytes_of(MAX_MESSAGE / 2);
    c.send_frame(&FrameSpec::new(BINARY, half.clone()).fin(false));
    c.send_frame(&FrameSpec::new(CONT, half).fin(false));
    c.send_frame(&FrameSpec::new(CONT, [0u8]));
    c.expect_close(Some(1009));
}

// ---------------------------------------------------------------- close

#[test]
fn a_client_close_with_a_reason_is_answered_with_1000_and_tcp_close() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_message(TEXT, b"before");
    c.expect_message(TEXT, b"before");
    c.send_close(1000, b"done here");
    c.expect_close(Some(1000));
}

#[test]
fn a_close_with_an_empty_payload_is_answered() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_frame(&FrameSpec::new(CLOSE, ""));
    let reply = c.expect_close(None);
    assert!(reply.payload.is_empty(), "an empty close is answered with an empty close");
}

#[test]
fn a_one_byte_close_payload_closes_with_1002() {
    let demo = demo();
    fails_with(&demo, &FrameSpec::new(CLOSE, [0x03]).encode(), 1002);
}

#[test]
fn invalid_close_codes_close_with_1002() {
    let demo = demo();
    for code in [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535] {
        let mut c = WsClient::connect(demo.port);
        c.send_close(code, b"");
        let f = c.read_frame();
        assert_eq!(f.opcode, CLOSE, "close code {code}: a close frame, not {f:?}");
        assert_eq!(f.close_code(), Some(1002), "close code {code} is answered with 1002");
        c.expect_eof();
    }
}

#[test]
fn valid_close_codes_are_echoed() {
    let demo = demo();
    for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        let mut c = WsClient::connect(demo.port);
        c.send_close(code, b"");
        let f = c.read_frame();
        assert_eq!(f.opcode, CLOSE, "close code {code}: a close frame, not {f:?}");
        assert_eq!(f.close_code(), Some(code), "close code {code} is echoed");
        c.expect_eof();
    }
}

#[test]
fn invalid_utf8_in_a_close_reason_closes_with_1007() {
    let demo = demo();
    fails_with(&demo, &FrameSpec::new(CLOSE, close_payload(1000, b"bad \xff reason")).encode(), 1007);
}

#[test]
fn a_close_reason_of_123_bytes_is_answered() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    c.send_close(1000, &text_of(123));
    c.expect_close(Some(1000));
}

#[test]
fn nothing_is_echoed_after_the_close() {
    let demo = demo();
    let mut c = WsClient::connect(demo.port);
    // A message right behind the close (same write) is not answered.
    let mut wire = FrameSpec::new(CLOSE, close_payload(1000, b"")).encode();
    wire.extend(FrameSpec::new(TEXT, "too late").encode());
    c.send(&wire);
    let f = c.read_frame();
    assert_eq!((f.opcode, f.close_code()), (CLOSE, Some(1000)), "the close is answered: {f:?}");
    // No echo of "too late": the connection ends (a reset is allowed, as
    // the message stayed unread).
    c.expect_eof();
}

// ---------------------------------------------------------------- opening handshake

#[test]
fn a_handshake_without_a_key_gets_400() {
    let demo = demo();
    let mut c = WsClient::tcp(demo.port);
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let (head, _) = c.read_response();
    assert_eq!(head.status, 400, "{head:?}");
    // A key that is not 16 bytes in base64 too.
    let mut c = WsClient::tcp(demo.port);
    c.send(handshake_request("/ws", "c2hvcnQ=", "").as_bytes());
    assert_eq!(c.read_response().0.status, 400);
}

#[test]
fn version_8_gets_426_naming_version_13() {
    let demo = demo();
    let mut c = WsClient::tcp(demo.port);
    let request =
        handshake_request("/ws", RFC_KEY, "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    c.send(request.as_bytes());
    let (head, _) = c.read_response();
    assert_eq!(head.status, 426, "{head:?}");
    assert_eq!(head.field("sec-websocket-version"), Some("13"));
}

#[test]
fn post_to_ws_gets_405() {
    let demo = demo();
    let mut c = WsClient::tcp(demo.port);
    c.send(b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let (head, _) = c.read_response();
    assert_eq!(head.status, 405, "{head:?}");
    assert_eq!(head.field("allow"), Some("GET"));
    // A POST that asks to upgrade is refused the same way.
    let mut c = WsClient::tcp(demo.port);
    c.send(handshake_request("/ws", RFC_KEY, "Content-Length: 0\r\n").replacen("GET", "POST", 1).as_bytes());
    assert_eq!(c.read_response().0.status, 405);
}

#[test]
fn the_rfc_example_key_gets_its_accept_value() {
    let demo = demo();
    let mut c = WsClient::tcp(demo.port);
    c.send(handshake_request("/ws", RFC_KEY, "Origin: http://example.com\r\n").as_bytes());
    let head = c.read_head();
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.field("sec-websocket-accept"), Some(RFC_ACCEPT));
    assert!(head.field("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")), "{head:?}");
    assert!(head.field("connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")), "{head:?}");
    assert_eq!(head.field("sec-websocket-extensions"), None, "permessage-deflate is not offered");
}

#[test]
fn frames_pipelined_after_the_handshake_are_read() {
    let demo = demo();
    let mut c = WsClient::tcp(demo.port);
    let mut wire = handshake_request("/ws", RFC_KEY, "").into_bytes();
    wire.extend(FrameSpec::new(TEXT, "right behind the handshake").encode());
    wire.extend(FrameSpec::new(PING, "and a ping").encode());
    wire.extend(FrameSpec::new(BINARY, bytes_of(3000)).encode());
    c.send(&wire);
    assert_eq!(c.read_head().status, 101);
    // The library answers the ping as it decodes it, the demo echoes the
    // messages after: the pong may come first; the echoes keep their order.
    let frames: Vec<Frame> = (0..3).map(|_| c.read_frame()).collect();
    let (pongs, data): (Vec<&Frame>, Vec<&Frame>) = frames.iter().partition(|f| f.opcode == PONG);
    assert_eq!(pongs.len(), 1, "{frames:?}");
    assert_eq!(pongs[0].payload, b"and a ping");
    assert_eq!((data[0].opcode, &data[0].payload[..]), (TEXT, &b"right behind the handshake"[..]));
    assert_eq!((data[1].opcode, &data[1].payload), (BINARY, &bytes_of(3000)));
    c.send_close(1000, b"");
    c.expect_close(Some(1000));
}

// ------------------------------------------------- in-process applications

/// A WebSocket served by a thread of the test's own: it fills the
/// connection's queue past its mark while the client does not read, then
/// waits in `recv`. The client's close is decoded while the answer cannot be
/// queued; once the client reads, the answer leaves, and the WebSocket must
/// end (the `Close` for the waiting `recv`, the TCP connection closed), not
/// wait for the idle timeout.
#[test]
fn a_close_answered_under_backpressure_still_ends_the_websocket() {
    use std::sync::{mpsc, Mutex};
    use warpcore::websocket::{MessageKind, WebSocket, WsOptions};
    use warpcore::{Request, Response};

    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let server = util::start(move |_req: &Request<'_>, res: &mut Response<'_>| {
        let ws = WebSocket::accept(res, &[], None, WsOptions::default()).unwrap();
        let tx = tx.lock().unwrap().clone();
        std::thread::spawn(move || {
            let big = bytes::Bytes::from(vec![7u8; 256 * 1024]);
            // Until the socket's buffers are full too: refused twice, 100 ms apart.
            loop {
                while ws.send_with(MessageKind::Binary, big.clone(), false).is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(100));
                if ws.send_with(MessageKind::Binary, big.clone(), false).is_err() {
                    break;
                }
            }
            let end = loop {
                match ws.recv() {
                    Ok(m) if m.kind == MessageKind::Close => break m.close_code(),
                    Ok(_) => {}
                    Err(e) => panic!("recv failed: {e:?}"),
                }
            };
            tx.send(end).unwrap();
        });
    });
    let client = util::Client::connect_with_rcvbuf(server.port, 4096);
    let mut c = WsClient::from_stream(client.stream);
    c.send(handshake_request("/ws", RFC_KEY, "").as_bytes());
    assert_eq!(c.read_head().status, 101);
    // The queue is past its mark by now; the close is decoded behind it.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    c.send_close(1000, b"bye");
    std::thread::sleep(std::time::Duration::from_millis(300));
    loop {
        let f = c.read_frame();
        if f.opcode == CLOSE {
            assert_eq!(f.close_code(), Some(1000));
            break;
        }
        assert_eq!(f.opcode, BINARY);
    }
    c.expect_eof();
    assert_eq!(rx.recv_timeout(util::IO_TIMEOUT), Ok(Some(1000)), "the waiting recv got the end");
}
