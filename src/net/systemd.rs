//! systemd socket activation: the listening sockets a service manager opened
//! for this process, as descriptors 3, 4, … named by `LISTEN_FDS` (what
//! `sd_listen_fds(3)` reads).

use std::os::fd::RawFd;

use crate::error::{Error, ErrorKind};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// The descriptors passed to this process: none when `LISTEN_PID` is unset
/// or names another process (the variables were meant for a parent). When
/// they are this process's, the variables are removed, as
/// `sd_listen_fds(1)` does, so that children do not take them for theirs.
/// Removing environment variables races with other threads reading the
/// environment: call this before starting threads.
pub(crate) fn take_listen_fds() -> Result<Vec<RawFd>, Error> {
    let ours =
        std::env::var("LISTEN_PID").ok().and_then(|pid| pid.trim().parse::<u32>().ok()) == Some(std::process::id());
    if !ours {
        return Ok(Vec::new());
    }
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.trim().parse::<u16>().ok());
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let count =
        count.ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "LISTEN_FDS is not a count of descriptors"))?;
    Ok((0..count as RawFd).map(|i| FIRST + i).collect())
}
