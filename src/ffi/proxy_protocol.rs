//! The PROXY protocol on listeners: which listeners' connections start with
//! a load balancer's header that names the client.

use super::cast::{try_mut, try_slice};
use super::config::{update, warpcore_config};
use super::result::{fail, warpcore_result};
use crate::net::proxy_protocol::ProxyProtocol;

symbol_versions!();

/// Whether a listener's connections start with a PROXY protocol header
/// (HAProxy's, version 1 or 2), for `warpcore_config_set_proxy_protocol` and
/// `warpcore_config_set_listener_proxy_protocol`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum warpcore_proxy_protocol {
    /// No header is expected: the connections are plain HTTP (the default).
    None = 0,
    /// Every connection must start with a header; one without, or with a
    /// malformed one, is closed with nothing sent (nginx's `proxy_protocol`,
    /// Warp's `setProxyProtocolRequired`).
    Required = 1,
    /// A connection may start with a header (Warp's
    /// `setProxyProtocolOptional`). Only for a listener every client of which
    /// is trusted: on one open to others, any client could claim any address.
    Optional = 2,
}

fn parse_mode(value: u32) -> Result<ProxyProtocol, warpcore_result> {
    ProxyProtocol::from_u32(value).ok_or_else(|| {
        fail(warpcore_result::InvalidArgument, format!("{value} is not a warpcore_proxy_protocol (0, 1 or 2)"))
    })
}

/// Sets the PROXY protocol mode (a `warpcore_proxy_protocol`) of every
/// listener that has none of its own (`warpcore_config_set_listener_proxy_protocol`),
/// as Warp's server-wide `setProxyProtocol*`. Default
/// `WARPCORE_PROXY_PROTOCOL_NONE`.
///
/// With a header, the client address it carries (its source address and
/// port, for TCP over IPv4 or IPv6) becomes the connection's peer: the
/// request's `peer_ip` and `peer_port` and the access log show it. A v1
/// `UNKNOWN`, a v2 `LOCAL` command (a balancer's own health check) and the v2
/// families other than TCP keep the socket's peer; v2 TLVs are skipped. The
/// header must arrive whole within the header timeout
/// (`WARPCORE_TIMEOUT_HEADER`) of the connection's start; a v1 header is at
/// most 107 bytes, a v2 header at most the head size
/// (`warpcore_config_set_max_head_size`), refused as soon as its length field
/// says more. The connection hooks (`warpcore_config_set_connection_hooks`)
/// run before the header is read, with the socket's peer. Applies on
/// `warpcore_server_reload` too, to the connections accepted after it.
///
/// Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` for a value that is not a mode.
#[no_mangle]
pub extern "C" fn warpcore_config_set_proxy_protocol(config: *mut warpcore_config, mode: u32) -> warpcore_result {
    ffi_boundary!({
        let mode = ok_or_return!(parse_mode(mode));
        update(config, |c| c.proxy_protocol.default = mode)
    })
}

/// Sets the PROXY protocol mode (a `warpcore_proxy_protocol`) of one listener:
/// the one `config` names `address` (`len` bytes, exactly as given to
/// `warpcore_config_set_listen` or `warpcore_config_add_listener`, or an
/// `fd://N` of `warpcore_config_add_systemd_listeners`), in place of the mode
/// of `warpcore_config_set_proxy_protocol`: so that one server takes headers
/// from its load balancer's port only, and direct clients elsewhere cannot
/// claim an address (nginx's `listen ... proxy_protocol`). What a header does
/// is said there. `warpcore_config_clear_listeners` forgets these modes with
/// the listeners.
///
/// Errors: `WARPCORE_RESULT_INVALID_ARGUMENT` for a value that is not a mode,
/// or an address that is not one of the config's listeners (nothing changed).
#[no_mangle]
pub extern "C" fn warpcore_config_set_listener_proxy_protocol(
    config: *mut warpcore_config,
    address: *const u8,
    len: usize,
    mode: u32,
) -> warpcore_result {
    ffi_boundary!({
        let bytes = ok_or_return!(try_slice(address, len, "address"));
        let mode = ok_or_return!(parse_mode(mode));
        let current = ok_or_return!(try_mut(config, "config"));
        let Some(address) = std::str::from_utf8(bytes)
            .ok()
            .filter(|a| current.inner.listen_addresses().contains(a) && !a.is_empty())
            .map(str::to_owned)
        else {
            return fail(
                warpcore_result::InvalidArgument,
                format!("'{}' is not a listener of this config", String::from_utf8_lossy(bytes)),
            );
        };
        update(config, |c| {
            c.proxy_protocol.listeners.retain(|(a, _)| *a != address);
            c.proxy_protocol.listeners.push((address, mode));
        })
    })
}
