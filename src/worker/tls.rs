//! The worker's side of TLS: a connection accepted from a TLS listener
//! begins its session, and what sessions report (a handshake done or
//! failed, a move into kernel TLS) is counted and, for failures, logged.
//! A failure costs its connection only.

use crate::conn::context::WorkerCtx;
use crate::conn::ConnState;
use crate::net::listen::Listener;
use crate::net::stream::Stream;
use crate::observe::log::Level;
use crate::observe::stats::bump;
use crate::tls::session::TlsEvent;

/// Begins a TLS session on `stream` when `listener` speaks TLS; false when
/// it cannot (logged): the connection is dropped.
pub(super) fn start(stream: &mut Stream, listener: &Listener, ctx: &WorkerCtx) -> bool {
    let Some(acceptor) = ctx.settings.tls_for(listener) else { return true };
    match stream.start_tls(acceptor) {
        Ok(()) => true,
        Err(e) => {
            bump(&ctx.stats.tls_handshake_failures, 1);
            ctx.settings.log_error(Level::Error, &format!("TLS on {}: cannot begin a session: {e}", listener.address));
            false
        }
    }
}

/// Counts and logs what the connection's TLS session reported, if anything.
pub(super) fn note(state: &ConnState, ctx: &WorkerCtx) {
    while let Some(event) = state.stream.tls_event() {
        note_one(event, state, ctx);
    }
}

fn note_one(event: TlsEvent, state: &ConnState, ctx: &WorkerCtx) {
    match event {
        TlsEvent::Completed { kernel, refused } => {
            bump(&ctx.stats.tls_handshakes, 1);
            if kernel {
                bump(&ctx.stats.tls_kernel, 1);
            }
            if let Some(reason) = refused {
                ctx.settings.log_error(Level::Info, &reason);
            }
        }
        TlsEvent::Failed { handshake: true, reason } => {
            bump(&ctx.stats.tls_handshake_failures, 1);
            ctx.settings.log_error(Level::Info, &format!("TLS handshake with {} failed: {reason}", state.peer));
        }
        TlsEvent::Failed { handshake: false, reason } => {
            ctx.settings.log_error(Level::Info, &format!("TLS session with {} failed: {reason}", state.peer));
        }
    }
}
