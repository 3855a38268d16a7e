//! The settings a worker applies to the requests it reads: derived from a
//! `Config` at start and on every reload, shared by every worker as one
//! immutable snapshot, swapped whole.

use std::sync::Arc;
use std::time::Duration;

use crate::app::handler::Handler;
use crate::app::hooks::ConnHooks;
use crate::config::Config;
use crate::error::Error;
use crate::file::Site;
use crate::http::head::HeadLimits;
use crate::net::listen::Listener;
use crate::observe::log::{AccessLog, ErrorLog, Level};
use crate::tls::acceptor::Acceptor;

/// The timeouts deadlines are armed with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
    pub write: Duration,
    pub answer: Duration,
}

/// One immutable snapshot of everything `reload` may change.
pub(crate) struct Settings {
    pub handler: Arc<dyn Handler>,
    pub head_limits: HeadLimits,
    pub max_body_size: u64,
    pub whole_body_max: usize,
    /// `Server: NAME\r\n`, or empty.
    pub server_line: Vec<u8>,
    pub stream_high_water: usize,
    pub timeouts: Timeouts,
    pub max_connections: usize,
    pub access_log: Option<Arc<AccessLog>>,
    pub error_log: Option<Arc<dyn ErrorLog>>,
    /// Static mounts, their dotfile policy and file-cache lifetimes.
    pub site: Arc<Site>,
    /// The nap of a busy worker before it polls (see `worker::coalesce`).
    pub coalesce_wait: Duration,
    /// Worker threads under `SCHED_BATCH` (see `worker::sched`).
    pub sched_batch: bool,
    /// A client's FIN ends its pending deferred requests (see `Config`).
    pub client_fin_ends_request: bool,
    /// Told of connections opening and closing (see `app::hooks`).
    pub conn_hooks: Option<Arc<dyn ConnHooks>>,
    /// The TLS of the listeners that speak it, by the address the config
    /// names them by (see `tls_for`).
    pub tls: Vec<(String, Arc<Acceptor>)>,
}

impl Settings {
    /// Validates `config` and builds the snapshot (opening the access log and
    /// the static mounts). When `previous` serves the same mounts, its site is
    /// kept, and with it every worker's file caches.
    pub fn from_config(config: &Config, previous: Option<&Settings>) -> Result<Settings, Error> {
        config.validate()?;
        let mut site = Site::open(
            &config.static_mounts,
            config.static_dotfiles,
            config.fd_cache_lifetime,
            config.file_info_lifetime,
        )?;
        if let Some(previous) = previous.filter(|p| p.site.same_as(&site)) {
            site = previous.site.clone();
        }
        let access_log = match &config.access_log {
            Some(target) => {
                Some(Arc::new(AccessLog::open(target).map_err(|e| Error::io("cannot open the access log", e))?))
            }
            None => None,
        };
        let mut tls = Vec::with_capacity(config.tls.len());
        for (address, setup) in &config.tls {
            if !config.listen_addresses().contains(&address.as_str()) {
                return Err(Error::new(
                    crate::error::ErrorKind::InvalidArgument,
                    format!("TLS is set for {address}, which is not a listener"),
                ));
            }
            // The PROXY header comes in clear before the ClientHello; the
            // handshake starts at accept, so the two do not combine yet.
            if config.proxy_protocol.mode_for(address) != crate::net::proxy_protocol::ProxyProtocol::None {
                return Err(Error::new(
                    crate::error::ErrorKind::InvalidArgument,
                    format!("TLS listener {address}: the PROXY protocol on a TLS listener is not supported yet"),
                ));
            }
            let previous = previous.and_then(|p| p.tls.iter().find(|(a, _)| a == address)).map(|(_, t)| &**t);
            let acceptor = Acceptor::build(setup, previous)
                .map_err(|e| Error::new(e.kind, format!("TLS listener {address}: {}", e.message)))?;
            if let Some(log) = &config.error_log {
                if let Some(why) = acceptor.ktls_unusable_first_time() {
                    let line = format!(
                        "TLS listener {address}: kernel TLS was asked for but is not usable: {why}; \
                         connections stay in user space (logged once)"
                    );
                    log.log(crate::observe::log::Level::Warning, &line);
                }
            }
            tls.push((address.clone(), Arc::new(acceptor)));
        }
        Ok(Settings {
            handler: config.handler.clone().expect("validated config has a handler"),
            head_limits: config.head_limits(),
            max_body_size: config.max_body_size,
            whole_body_max: config.whole_body_max,
            server_line: crate::http::compose::server_line(&config.server_name),
            stream_high_water: config.stream_high_water,
            timeouts: Timeouts {
                header: config.header_timeout,
                idle: config.idle_timeout,
                body: config.body_timeout,
                write: config.write_timeout,
                answer: config.answer_timeout,
            },
            max_connections: config.max_connections,
            access_log,
            error_log: config.error_log.clone(),
            site,
            coalesce_wait: config.coalesce_wait,
            sched_batch: config.sched_batch,
            client_fin_ends_request: config.client_fin_ends_request,
            conn_hooks: config.conn_hooks.clone(),
            tls,
        })
    }

    /// The TLS of `listener`, if it speaks TLS: named in the config by the
    /// address it was bound from, or by the one it is bound to (a reload
    /// may name a port 0 listener by the port it got).
    pub fn tls_for(&self, listener: &Listener) -> Option<&Arc<Acceptor>> {
        self.tls.iter().find(|(a, _)| *a == listener.requested || *a == listener.address).map(|(_, t)| t)
    }

    /// Sends a message to the error log, if there is one.
    pub fn log_error(&self, level: Level, message: &str) {
        if let Some(log) = &self.error_log {
            log.log(level, message);
        }
    }
}
