//! HTTP/1.1 wire format: request heads, chunked bodies, response heads, dates.

pub mod chunked;
pub mod compose;
pub mod date;
pub mod head;
pub mod image;
pub mod percent;
pub mod status;
pub(crate) mod stream;
