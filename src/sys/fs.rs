//! Opening files for the static-file code without leaving a mount directory, and
//! reading what a descriptor refers to.
//!
//! A mount's files are opened with `openat2(RESOLVE_BENEATH)`: the kernel itself
//! refuses any resolution (`..`, an absolute or relative symlink) that would leave
//! the directory, with no window between a check and the open. Where `openat2` is
//! missing (Linux before 5.6, or a seccomp filter that hides it) the file is opened
//! normally and its real path, read back from `/proc/self/fd`, must lie under the
//! mount's canonical path.

use std::ffi::{CStr, OsStr};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What kind of object a descriptor refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Directory,
    /// A device, fifo, socket (or anything else): never served.
    Other,
}

/// The part of `stat` the file machinery uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub kind: FileKind,
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `O_PATH`: resolves the name and pins the inode without opening the object
    /// itself, so no device driver or fifo ever sees an open.
    Probe,
    /// For reading and `sendfile`: `O_RDONLY | O_NONBLOCK | O_NOCTTY`, so that even
    /// a fifo swapped in after the probe cannot block the worker.
    Read,
}

impl Access {
    fn flags(self) -> libc::c_int {
        match self {
            Access::Probe => libc::O_PATH,
            Access::Read => libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        }
    }
}

/// `struct open_how` of `<linux/openat2.h>` (libc's is `non_exhaustive`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Set once `openat2` has answered `ENOSYS`.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `rel` (a relative path, no `..` needed or wanted) beneath the directory
/// `dir`, whose canonical path is `root`. Escaping `dir` fails with `EXDEV` (or
/// `ELOOP` for a magic link or a symlink loop).
pub(crate) fn open_beneath(dir: BorrowedFd<'_>, root: &Path, rel: &CStr, access: Access) -> io::Result<File> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow {
            flags: (access.flags() | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: `rel` is NUL-terminated and `how` is a valid `open_how` of the
        // size passed; both outlive the call, and `dir` is a live descriptor.
        let res = syscall!(syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        ));
        match res {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            Err(e) => return Err(e),
        }
    }
    open_checked(root, rel, access)
}

/// The fallback: open by full path, then require the real path to lie under `root`.
fn open_checked(root: &Path, rel: &CStr, access: Access) -> io::Result<File> {
    let path = root.join(OsStr::from_bytes(rel.to_bytes()));
    let file = open_path(&path, access)?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if real.starts_with(root) {
        Ok(file)
    } else {
        Err(io::Error::from_raw_os_error(libc::EXDEV))
    }
}

/// Opens `path` (following symlinks: the caller trusts it) with `access`.
pub(crate) fn open_path(path: &Path, access: Access) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(access.flags()).open(path)
}

/// Opens a directory to resolve mount paths beneath (`O_PATH | O_DIRECTORY`).
pub(crate) fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(path)
}

/// What `file` refers to (`statx`/`fstat` on the descriptor; works on `O_PATH`
/// descriptors too).
pub(crate) fn stat(file: &File) -> io::Result<Stat> {
    let meta = file.metadata()?;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        FileKind::Regular
    } else if ft.is_dir() {
        FileKind::Directory
    } else {
        FileKind::Other
    };
    Ok(Stat {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::AsFd;

    fn tempdir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("warpcore-sysfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::canonicalize(&dir).unwrap()
    }

    #[test]
    fn opens_beneath_and_refuses_escapes() {
        let root = tempdir("beneath");
        std::fs::write(root.join("sub/a.txt"), b"hello").unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("inside")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("outside")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("sub/up")).unwrap();
        let dir = open_dir(&root).unwrap();
        let c = |s: &str| CString::new(s).unwrap();

        for access in [Access::Probe, Access::Read] {
            let f = open_beneath(dir.as_fd(), &root, &c("sub/a.txt"), access).unwrap();
            let st = stat(&f).unwrap();
            assert_eq!((st.kind, st.size), (FileKind::Regular, 5));
            assert!(open_beneath(dir.as_fd(), &root, &c("inside"), access).is_ok());
            for escape in ["outside", "../etc/hostname", "sub/up/etc/hostname", "/etc/hostname"] {
                let e = open_beneath(dir.as_fd(), &root, &c(escape), access).unwrap_err();
                assert!(matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::ELOOP)), "{escape}: {e}");
            }
            // The fallback refuses the same escapes.
            assert!(open_checked(&root, &c("inside"), access).is_ok());
            assert!(open_checked(&root, &c("outside"), access).is_err());
            assert!(open_checked(&root, &c("sub/up/etc/hostname"), access).is_err());
        }
        let st = stat(&open_beneath(dir.as_fd(), &root, &c("sub"), Access::Probe).unwrap()).unwrap();
        assert_eq!(st.kind, FileKind::Directory);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn probing_a_fifo_does_not_open_it() {
        let root = tempdir("fifo");
        let fifo = CString::new(root.join("f").as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo` is a NUL-terminated path.
        syscall!(mkfifo(fifo.as_ptr(), 0o644)).unwrap();
        let dir = open_dir(&root).unwrap();
        // An O_RDONLY open without O_NONBLOCK would block here until a writer came.
        let f = open_beneath(dir.as_fd(), &root, &CString::new("f").unwrap(), Access::Probe).unwrap();
        assert_eq!(stat(&f).unwrap().kind, FileKind::Other);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
