//! The PROXY protocol header a connection of such a listener starts with
//! (see `net::proxy_protocol`): read before the first request, its client
//! address becomes the connection's peer (the request view, the access log);
//! a malformed one, or none where one is required, closes the connection
//! with nothing sent.

use super::context::WorkerCtx;
use super::ConnState;
use crate::net::peer::{Peer, PeerText};
use crate::net::proxy_protocol::{self, Header, ProxyProtocol};
use crate::observe::stats::bump;

impl ConnState {
    /// Whether the connection still waits for its PROXY protocol header.
    pub fn awaits_proxy_header(&self) -> bool {
        self.proxy != ProxyProtocol::None
    }

    /// Takes the header at the start of `input`: `Ok(bytes it used)` (all of
    /// `input` when the connection is to close), or `Err(bytes needed in
    /// all)` (0 when unknown) while it is incomplete.
    pub(super) fn take_proxy_header(&mut self, input: &[u8], ctx: &mut WorkerCtx) -> Result<usize, usize> {
        match proxy_protocol::parse(input, self.proxy, ctx.settings.head_limits.max_head_bytes) {
            Header::Incomplete(need) => Err(need),
            Header::Absent => {
                self.proxy = ProxyProtocol::None;
                Ok(0)
            }
            Header::Found { len, peer } => {
                self.proxy = ProxyProtocol::None;
                if let Some(addr) = peer {
                    self.peer = Peer::Ip(addr);
                    self.peer_text = PeerText::new(&self.peer);
                }
                Ok(len)
            }
            Header::Invalid(_) => {
                self.proxy = ProxyProtocol::None;
                bump(&ctx.stats.parse_errors, 1);
                self.close_after_flush = true;
                Ok(input.len())
            }
        }
    }
}
