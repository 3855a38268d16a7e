//! A Unix socket's file: making way for it where a stale one was left behind,
//! its mode and owner, and its removal once the server is done with it.
//!
//! A socket file outlives the process that bound it, so a server that was
//! killed leaves one, and binding the path again fails. Such a file is
//! replaced only when it is a socket that nobody listens on (a `connect`
//! is refused); a live one is left alone (the address is in use) and any
//! other kind of file is refused, never removed. At the end, the file is
//! removed only if it is still the one this server made (same device and
//! inode): a newer server that replaced it keeps its own.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::{Error, ErrorKind};

/// The mode and owner given to the socket files a server makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnixPerms {
    /// Permission bits (`0o660`); None leaves what the umask gave.
    pub mode: Option<u32>,
    /// Owner and group; None leaves each as it is.
    pub uid: Option<u32>,
    /// See `uid`.
    pub gid: Option<u32>,
}

/// The socket file a listener made, removed when dropped if it is still that
/// file. Dropped before the socket, whose hold on the inode keeps its number
/// from being reused by a newer file meanwhile.
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino && meta.file_type().is_socket() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds a listening Unix stream socket at `path`, replacing a stale socket
/// file, with `perms` applied before it listens (so nobody connects through
/// the umask's mode).
pub(crate) fn bind(path: &Path, backlog: u32, perms: &UnixPerms) -> Result<(Socket, SocketFile), Error> {
    let shown = path.display();
    make_way(path)?;
    let addr = SockAddr::unix(path)
        .map_err(|e| Error::new(ErrorKind::InvalidAddress, format!("unix:{shown} cannot be a socket address: {e}")))?;
    let socket =
        Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None).map_err(|e| Error::io("socket", e))?;
    socket.bind(&addr).map_err(|e| Error::io(&format!("cannot bind unix:{shown}"), e))?;
    // From here the file is ours: removed again if anything below fails.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(&format!("cannot open unix:{shown}"), e))?;
    let meta = file.metadata().map_err(|e| Error::io(&format!("cannot stat unix:{shown}"), e))?;
    // Removed by its absolute path: the program may change its working
    // directory before the server stops (a daemon's chdir to /).
    let absolute = std::env::current_dir().map_or_else(|_| path.to_owned(), |dir| dir.join(path));
    let made = SocketFile { path: absolute, dev: meta.dev(), ino: meta.ino() };
    if !meta.file_type().is_socket() {
        return Err(Error::new(ErrorKind::Io, format!("unix:{shown} was replaced while it was being bound")));
    }
    // Through the descriptor's /proc link, so a file swapped in at the path
    // meanwhile is never the one changed.
    use std::os::fd::AsRawFd;
    let pinned = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    if let Some(mode) = perms.mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pinned, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(&format!("cannot set the mode of unix:{shown} to {mode:o}"), e))?;
    }
    if perms.uid.is_some() || perms.gid.is_some() {
        std::os::unix::fs::chown(&pinned, perms.uid, perms.gid)
            .map_err(|e| Error::io(&format!("cannot set the owner of unix:{shown}"), e))?;
    }
    socket.listen(backlog as i32).map_err(|e| Error::io(&format!("cannot listen on unix:{shown}"), e))?;
    Ok((socket, made))
}

/// Nothing at `path`, or a stale socket file removed: binding may go on.
fn make_way(path: &Path) -> Result<(), Error> {
    make_way_probing(path, is_live)
}

/// `make_way`, with `live` telling whether a server listens at the path.
fn make_way_probing(path: &Path, mut live: impl FnMut(&Path) -> bool) -> Result<(), Error> {
    let shown = path.display();
    // Held open while it is probed, so that its inode number cannot go to a
    // file that replaces it meanwhile (ext4 gives a freed number to the next
    // file at once): the same number below then means the same file.
    let look = |e| Error::io(&format!("cannot look at unix:{shown}"), e);
    let held = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(look(e)),
    };
    let before = held.metadata().map_err(look)?;
    if !before.file_type().is_socket() {
        return Err(Error::new(
            ErrorKind::InvalidAddress,
            format!("unix:{shown} exists and is not a socket: it is left alone"),
        ));
    }
    if live(path) {
        return Err(Error::new(ErrorKind::AddressInUse, format!("unix:{shown} is in use: a server listens on it")));
    }
    // Removed only if it is still the file that refused the connection.
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == before.dev() && now.ino() == before.ino() => {
            std::fs::remove_file(path).map_err(|e| Error::io(&format!("cannot remove stale unix:{shown}"), e))
        }
        Ok(_) => Err(Error::new(ErrorKind::AddressInUse, format!("unix:{shown} was replaced meanwhile"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&format!("cannot look at unix:{shown}"), e)),
    }
}

/// Whether a server listens at `path`: a non-blocking connect that is not
/// refused (one that would wait, on a full backlog, counts as live).
fn is_live(path: &Path) -> bool {
    let Ok(addr) = SockAddr::unix(path) else { return false };
    let Ok(probe) = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None) else { return true };
    match probe.connect(&addr) {
        Ok(()) => true,
        Err(e) => !matches!(e.raw_os_error(), Some(libc::ECONNREFUSED) | Some(libc::ENOENT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warpcore-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    #[test]
    fn stale_replaced_live_refused_other_files_kept() {
        let path = temp_path("stale");
        // A stale socket: bound, never listening... then closed.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (socket, file) = bind(&path, 16, &UnixPerms::default()).unwrap();
        // Live now: a second bind is refused and the file stays.
        let e = bind(&path, 16, &UnixPerms::default()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::AddressInUse, "{e}");
        drop(socket);
        drop(file);
        assert!(!path.exists(), "removed at the end");
        std::fs::write(&path, b"data").unwrap();
        let e = bind(&path, 16, &UnixPerms::default()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidAddress, "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Another server that replaces the stale file with its live socket
    /// while it is probed (two starting at once) keeps its file. The stale
    /// file's inode number must not be free to go to the new file meanwhile:
    /// on ext4 it goes at once.
    #[test]
    fn a_stale_file_replaced_while_probed_is_left() {
        let path = temp_path("race");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let mut other = None;
        let e = make_way_probing(&path, |p| {
            std::fs::remove_file(p).unwrap();
            other = Some(std::os::unix::net::UnixListener::bind(p).unwrap());
            false // what the stale file answered
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AddressInUse, "{e}");
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok(), "the other server's socket is reachable");
        drop(other);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_replaced_file_is_not_removed() {
        let path = temp_path("replaced");
        let (socket, file) = bind(&path, 16, &UnixPerms { mode: Some(0o600), ..Default::default() }).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"new").unwrap();
        drop(file);
        drop(socket);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
