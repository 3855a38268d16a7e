//! What a server tells its operator: the error and access logs, and the
//! counters `Server::stats` sums.

pub mod log;
pub(crate) mod stats;
