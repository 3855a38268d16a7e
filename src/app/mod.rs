//! What an application sees: the `Handler` it implements, the borrowed
//! `Request`, the `Response` it answers through inside the call, and the
//! `Deferred` handle that answers from any thread after it, and the `Upgraded`
//! handle of a connection that switched protocols.

pub mod body;
pub mod deferred;
pub(crate) mod deferred_shared;
pub(crate) mod error;
pub mod handler;
pub(crate) mod head;
pub mod hooks;
pub(crate) mod mailbox;
pub(crate) mod prepared;
pub(crate) mod respond_file;
pub mod upgrade;
pub(crate) mod upgrade_shared;
pub(crate) mod waiting;
