//! Static files the Warp/Mighttpd way: mounts served by the engine without a
//! handler call, file answers from handlers, per-worker fd and file-info caches
//! that never serve a stale file, conditionals, ranges and MIME types.
//!
//! One concept per file: `mount` (prefixes and safe path mapping), `info_cache`
//! (stat results, negative entries too), `fd_cache` (open files by identity),
//! `watch` (inotify invalidation), `validator` (ETag, Last-Modified, HTTP dates),
//! `conditional` (If-* evaluation), `range` (Range and multipart/byteranges),
//! `mime` (Content-Type), `serve` (the planner), `small` (small files' bytes and
//! answers in memory). [`StaticFiles`] ties them together for one worker; it is
//! reached through the worker's context and shares nothing mutable with other
//! workers.
//!
//! A request costs, once its path is cached: two hash lookups and no system
//! call until the body is sent. A small file's (up to 8 KiB) costs one hash
//! lookup and a copy of its pre-rendered answer when the request is a plain
//! GET, and no system call of its own at all: its bytes are in memory, at most
//! 4 MiB of them per worker (`small`). A change to a cached file is reported by inotify
//! and drops its entry at once, and so is a directory on its path renamed,
//! replaced or removed (`mv dir dir.old; mv dir.new dir`, the mount's own
//! directory too: a mount is opened by its path at each lookup); entries also
//! expire (file info after 1 s by
//! default, unused descriptors after 10 s) so that a change inotify cannot see
//! (a write through a hard link elsewhere, say) is still picked up.

pub(crate) mod conditional;
pub(crate) mod fd_cache;
pub(crate) mod info;
pub(crate) mod info_cache;
pub(crate) mod mime;
pub(crate) mod mount;
mod query;
pub(crate) mod range;
pub(crate) mod serve;
pub(crate) mod small;
pub(crate) mod validator;
pub(crate) mod watch;

use std::ffi::CStr;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::{Registry, Token};

use crate::error::Error;
use crate::sys::fs::{self, Access, FileKind};
use fd_cache::{FdCache, FileId};
use info::{FileInfo, Info};
use info_cache::InfoCache;
pub use mount::MountSpec;
use mount::{Mounts, Route};
pub(crate) use query::FileQuery;
use serve::{Body, FileRequest, Plan};
use small::{SmallFile, SMALL_FILE_MAX};
use validator::{Check, Validators};
use watch::{Change, Watch, Watcher};

/// The request header fields, looked up by case-insensitive name.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    headers: &'a [httparse::Header<'a>],
}

impl<'a> Fields<'a> {
    pub fn new(headers: &'a [httparse::Header<'a>]) -> Fields<'a> {
        Fields { headers }
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// Whether any field's name satisfies `f`.
    pub fn any_name(&self, f: impl Fn(&str) -> bool) -> bool {
        self.headers.iter().any(|h| f(h.name))
    }

    /// Every value of the field `name`, in order.
    pub fn values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        let headers = self.headers;
        headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// Cache counters of a server, summed over its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCacheStats {
    /// Requests whose file information came from the cache.
    pub info_hits: u64,
    /// Requests that had to look the path up (`open(O_PATH)` + `fstat`).
    pub info_misses: u64,
    /// File bodies sent without opening their file: from an already open
    /// descriptor or, for a small file, from its bytes kept in memory.
    pub fd_hits: u64,
    /// File bodies that had to open their file.
    pub fd_misses: u64,
}

/// One worker's counters, written by that worker only and read by anyone.
#[derive(Default)]
#[repr(align(64))]
struct Counters {
    info_hits: AtomicU64,
    info_misses: AtomicU64,
    fd_hits: AtomicU64,
    fd_misses: AtomicU64,
}

/// One writer: a plain load and store, no locked instruction.
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// What a settings snapshot says about files: the mounts, opened, whether
/// they serve dotfiles, and the cache lifetimes. Shared read-only by every worker; a reload builds a new one
/// (or keeps the old one when nothing about the mounts changed).
pub(crate) struct Site {
    mounts: Mounts,
    /// Serve paths with a segment starting with `.` (see `mount::hidden`).
    dotfiles: bool,
    fd_lifetime: Duration,
    info_lifetime: Duration,
}

impl Site {
    /// Opens the mounts' directories (an error names the one at fault).
    pub fn open(
        specs: &[MountSpec],
        dotfiles: bool,
        fd_lifetime: Duration,
        info_lifetime: Duration,
    ) -> Result<Arc<Site>, Error> {
        Ok(Arc::new(Site { mounts: Mounts::open(specs)?, dotfiles, fd_lifetime, info_lifetime }))
    }

    /// Whether `self` serves exactly what `other` serves: same prefixes, same
    /// directories (by identity, so a mount whose path now leads elsewhere, as
    /// with a `current -> release-N` symlink, counts as changed), same dotfile
    /// policy and lifetimes.
    pub fn same_as(&self, other: &Site) -> bool {
        self.mounts.same_as(&other.mounts)
            && self.dotfiles == other.dotfiles
            && self.fd_lifetime == other.fd_lifetime
            && self.info_lifetime == other.info_lifetime
    }
}

/// Every worker's cache counters, kept for the server's whole life.
pub(crate) struct FileCounters {
    counters: Box<[Counters]>,
}

impl FileCounters {
    pub fn new(workers: usize) -> Arc<FileCounters> {
        Arc::new(FileCounters { counters: (0..workers).map(|_| Counters::default()).collect() })
    }

    /// The counters summed over every worker.
    pub fn stats(&self) -> FileCacheStats {
        let mut s = FileCacheStats::default();
        for c in self.counters.iter() {
            s.info_hits += c.info_hits.load(Ordering::Relaxed);
            s.info_misses += c.info_misses.load(Ordering::Relaxed);
            s.fd_hits += c.fd_hits.load(Ordering::Relaxed);
            s.fd_misses += c.fd_misses.load(Ordering::Relaxed);
        }
        s
    }
}

/// A plan and, when its body needs them, the file's bytes.
pub(crate) struct Prepared {
    pub plan: Plan,
    pub file: Option<Arc<File>>,
}

/// What a worker answers a file request with.
pub(crate) enum Served {
    /// A plain GET of a small file in memory: its whole `200` answer.
    Image(Arc<SmallFile>),
    /// A plan, with the file's bytes when they are in memory (then
    /// `Prepared::file` is None and a one-range body is copied from them).
    /// Boxed: the pre-rendered answer, the common one, moves in a word.
    Plan(Box<Prepared>, Option<Arc<SmallFile>>),
}

fn planned(plan: Plan) -> Served {
    served(no_file(plan), None)
}

fn served(prepared: Prepared, small: Option<Arc<SmallFile>>) -> Served {
    Served::Plan(Box::new(prepared), small)
}

/// Why a handler's file cannot be served; nothing was sent.
#[derive(Debug)]
pub(crate) struct FileError(pub io::Error);

/// Cache keys start with a 4-byte tag: a mount's index, or this for a handler's path.
const DIRECT: [u8; 4] = [0xff; 4];

/// The multipart boundary: a fixed prefix and 16 random hex digits.
const BOUNDARY_LEN: usize = 25;

/// One worker's static-file machinery.
pub(crate) struct StaticFiles {
    site: Arc<Site>,
    counters: Arc<FileCounters>,
    worker: usize,
    info: InfoCache,
    fds: FdCache,
    watch: Watcher,
    decoded: Vec<u8>,
    rel: Vec<u8>,
    key: Vec<u8>,
    dir_key: Vec<u8>,
    cpath: Vec<u8>,
    boundary: [u8; BOUNDARY_LEN],
}

impl StaticFiles {
    /// The machinery of worker `worker`; the watcher registers with `registry`
    /// under `token` when it first needs to (without a registry nothing is
    /// cached: every request looks its path up).
    pub fn new(
        site: Arc<Site>,
        counters: Arc<FileCounters>,
        worker: usize,
        registry: Option<Registry>,
        token: Token,
    ) -> StaticFiles {
        let boundary = random_boundary(worker);
        StaticFiles {
            info: InfoCache::new(site.info_lifetime),
            fds: FdCache::new(site.fd_lifetime),
            site,
            counters,
            worker,
            watch: Watcher::new(registry, token),
            decoded: Vec::new(),
            rel: Vec::new(),
            key: Vec::new(),
            dir_key: Vec::new(),
            cpath: Vec::new(),
            boundary,
        }
    }

    /// Switches to the site of a newer settings snapshot. When the mounts
    /// changed, cached file information and directory watches go: their keys
    /// name mounts by index, and an index may now mean another directory.
    /// Open descriptors stay, keyed by file identity; bodies in flight keep
    /// their own.
    pub fn use_site(&mut self, site: &Arc<Site>) {
        if Arc::ptr_eq(&self.site, site) {
            return;
        }
        self.info.clear();
        self.info.set_lifetime(site.info_lifetime);
        self.fds.set_lifetime(site.fd_lifetime);
        self.watch.reset();
        self.site = site.clone();
    }

    /// Whether any mount is configured (if not, requests skip the mount lookup).
    pub fn has_mounts(&self) -> bool {
        !self.site.mounts.is_empty()
    }

    /// Plans the answer to a request for `raw_path` (as sent, not decoded) with
    /// `query`, or `None` when no mount covers the path.
    pub fn plan_mount(&mut self, req: &FileRequest<'_>, raw_path: &[u8], query: &[u8]) -> Option<Served> {
        let (mount, dir_form) = match self.site.mounts.route(raw_path, &mut self.decoded, &mut self.rel) {
            Route::NoMount => return None,
            Route::Bad => return Some(planned(serve::error(400))),
            Route::Found { mount, dir_form } => (mount, dir_form),
        };
        // Before anything else, the method included: a dotfile's answer must
        // not tell whether it exists.
        if !self.site.dotfiles && mount::hidden(&self.rel, self.site.mounts.get(mount).prefix == b"/") {
            return Some(planned(serve::error(404)));
        }
        if !req.is_get() && !req.is_head() {
            return Some(planned(serve::method_not_allowed()));
        }
        if dir_form {
            if !self.rel.is_empty() {
                self.rel.push(b'/');
            }
            self.rel.extend_from_slice(b"index.html");
        }
        self.key.clear();
        self.key.extend_from_slice(&(mount as u32).to_be_bytes());
        if !self.rel.is_empty() {
            self.key.push(b'/');
            self.key.extend_from_slice(&self.rel);
        }
        let plain = req.is_plain_get();
        let (info, small, cached) = match self.lookup(Target::Mount(mount), plain) {
            Found::Image(small) => return Some(Served::Image(small)),
            Found::Info(info, small, cached) => (info, small, cached),
        };
        let plan = match info {
            Info::File(fi) => {
                return Some(self.prepare(req, 200, fi, (small, cached, plain), Target::Mount(mount), &[]));
            }
            Info::Directory if !dir_form => {
                let m = self.site.mounts.get(mount);
                let mut location = Vec::with_capacity(m.prefix.len() + self.rel.len() + query.len() + 3);
                mount::directory_url(&mut location, &m.prefix, &self.rel);
                if !query.is_empty() {
                    location.push(b'?');
                    location.extend_from_slice(query);
                }
                serve::redirect(&location)
            }
            Info::Refused => serve::error(403),
            Info::Directory | Info::Missing | Info::Outside => serve::error(404),
        };
        Some(planned(plan))
    }

    /// Plans a handler's answer with the file at `path` and `status`; the
    /// handler's own `fields` override the engine's of the same name (its
    /// `ETag` and `Last-Modified` are then what preconditions are checked
    /// against). Fails, sending nothing, when the path is not a readable
    /// regular file.
    pub fn plan_path(
        &mut self,
        req: &FileRequest<'_>,
        status: u16,
        path: &Path,
        fields: &[(&[u8], &[u8])],
    ) -> Result<Served, FileError> {
        self.key.clear();
        self.key.extend_from_slice(&DIRECT);
        self.key.extend_from_slice(path.as_os_str().as_bytes());
        let plain = status == 200 && fields.is_empty() && req.is_plain_get();
        let (info, small, cached) = match self.lookup(Target::Path(path), plain) {
            Found::Image(small) => return Ok(Served::Image(small)),
            Found::Info(info, small, cached) => (info, small, cached),
        };
        match info {
            Info::File(fi) => Ok(self.prepare(req, status, fi, (small, cached, plain), Target::Path(path), fields)),
            Info::Missing | Info::Outside => Err(FileError(io::Error::from_raw_os_error(libc::ENOENT))),
            Info::Directory => Err(FileError(io::Error::from_raw_os_error(libc::EISDIR))),
            Info::Refused => Err(FileError(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a readable regular file (a device, fifo or socket, or no permission)",
            ))),
        }
    }

    /// Plans the answer with the file `fi` and finds its body: in memory
    /// (`small`, the file's bytes when its info entry holds them), else from
    /// the file, opened when the body needs it, and kept in memory from then
    /// on when it is small and its info is cached (`cached`). A plain GET
    /// (`plain`: no preconditions, no `Range`, status 200, no handler fields)
    /// of a file in memory is answered with its pre-rendered answer. If the
    /// file turns out to have changed since its stat, the plan is made again
    /// from the descriptor just opened.
    fn prepare(
        &mut self,
        req: &FileRequest<'_>,
        status: u16,
        fi: FileInfo,
        (small, cached, plain): (Option<Arc<SmallFile>>, bool, bool),
        target: Target<'_>,
        fields: &[(&[u8], &[u8])],
    ) -> Served {
        if let (true, Some(small)) = (plain, &small) {
            bump(&self.counters().fd_hits);
            return Served::Image(small.clone());
        }
        let now = unix_now();
        let plan = self.plan_with(req, status, &fi, fields, now);
        if !plan.needs_file() || req.is_head() {
            return planned(plan);
        }
        if let (Some(_), Body::File(_)) = (&small, &plan.body) {
            bump(&self.counters().fd_hits);
            return served(no_file(plan), small);
        }
        match self.open(target, &fi) {
            Opened::Same(file) => {
                let small = if small.is_none() && cached { self.keep_small(&file, &fi, now) } else { None };
                match small {
                    Some(small) if plain => Served::Image(small),
                    Some(small) if matches!(plan.body, Body::File(_)) => served(no_file(plan), Some(small)),
                    _ => served(Prepared { plan, file: Some(file) }, None),
                }
            }
            // Serve what was opened, described by its own stat.
            Opened::Changed(file, fresh) => {
                served(Prepared { plan: self.plan_with(req, status, &fresh, fields, now), file: Some(file) }, None)
            }
            Opened::Gone(Info::Refused) => planned(serve::error(403)),
            Opened::Gone(_) => planned(serve::error(404)),
        }
    }

    /// Reads the small file `fi` from `file` into memory and gives it to its
    /// info entry (`self.key`); None when it is not small, there is no room
    /// for it, or it changed since its stat. When the entry cannot take it
    /// (gone meanwhile, or no room after all), the bytes read still serve
    /// this request: they are the file `fi` describes.
    fn keep_small(&mut self, file: &File, fi: &FileInfo, now: u64) -> Option<Arc<SmallFile>> {
        let at = Instant::now();
        if fi.stat.size > SMALL_FILE_MAX || !self.info.has_room(SmallFile::estimated_cost(fi.stat.size), at) {
            return None;
        }
        let small = Arc::new(SmallFile::load(file, fi, now)?);
        self.info.attach(&self.key, small.clone(), at);
        Some(small)
    }

    fn plan_with(
        &self,
        req: &FileRequest<'_>,
        status: u16,
        fi: &FileInfo,
        fields: &[(&[u8], &[u8])],
        now: u64,
    ) -> Plan {
        plan_file(req, status, fi, fields, now, &self.boundary)
    }

    /// What the path in `self.key` (and `self.rel` for a mount) is, from the
    /// cache or looked up: for a `plain` GET of a file in memory, its
    /// pre-rendered answer at once.
    fn lookup(&mut self, target: Target<'_>, plain: bool) -> Found {
        let now = Instant::now();
        if let Some((info, small)) = self.info.get(&self.key, now) {
            let counters = &self.counters.counters[self.worker];
            bump(&counters.info_hits);
            return match small {
                Some(small) if plain => {
                    bump(&counters.fd_hits);
                    Found::Image(small.clone())
                }
                _ => Found::Info(*info, small.cloned(), true),
            };
        }
        bump(&self.counters().info_misses);
        // Watch first, then stat: a change in between is then reported.
        let cacheable = self.watch_parents(target);
        let info = match self.open_target(target, Access::Probe) {
            Ok(file) => match fs::stat(&file) {
                Ok(st) => classify(&st, &self.key),
                Err(e) => info_of_error(&e),
            },
            Err(e) => info_of_error(&e),
        };
        let cached = cacheable && self.info.insert(&self.key, info, now);
        Found::Info(info, None, cached)
    }

    fn counters(&self) -> &Counters {
        &self.counters.counters[self.worker]
    }

    /// Opens the target for reading, through the fd cache.
    fn open(&mut self, target: Target<'_>, fi: &FileInfo) -> Opened {
        let now = Instant::now();
        let id = FileId::of(&fi.stat);
        if let Some(file) = self.fds.get(&id, now) {
            bump(&self.counters().fd_hits);
            return Opened::Same(file);
        }
        bump(&self.counters().fd_misses);
        let file = match self.open_target(target, Access::Read) {
            Ok(f) => f,
            Err(e) => {
                let info = info_of_error(&e);
                self.info.invalidate(&self.key);
                return Opened::Gone(info);
            }
        };
        let st = match fs::stat(&file) {
            Ok(st) if st.kind == FileKind::Regular => st,
            _ => {
                self.info.invalidate(&self.key);
                return Opened::Gone(Info::Refused);
            }
        };
        let file = Arc::new(file);
        let fresh_id = FileId::of(&st);
        self.fds.insert(fresh_id, file.clone(), now);
        if fresh_id == id {
            Opened::Same(file)
        } else {
            let Info::File(fresh) = classify(&st, &self.key) else { unreachable!("a regular file") };
            self.info.invalidate(&self.key);
            Opened::Changed(file, fresh)
        }
    }

    fn open_target(&mut self, target: Target<'_>, access: Access) -> io::Result<File> {
        match target {
            Target::Mount(index) => {
                let m = self.site.mounts.get(index);
                self.cpath.clear();
                self.cpath.extend_from_slice(if self.rel.is_empty() { b"." } else { &self.rel });
                self.cpath.push(0);
                let rel =
                    CStr::from_bytes_with_nul(&self.cpath).map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
                // The root by its path, at every lookup, not a descriptor kept
                // since start: a directory swapped in at that path (`mv www.new
                // www`) is what the mount serves from then on.
                let root = fs::open_dir(&m.root)?;
                fs::open_beneath(root.as_fd(), &m.root, rel, access)
            }
            Target::Path(path) => fs::open_path(path, access),
        }
    }

    /// Watches every directory from the mount's root down to the target's
    /// parent (a handler's path: its parent only). False when one cannot be
    /// watched: then the result must not be cached.
    fn watch_parents(&mut self, target: Target<'_>) -> bool {
        match target {
            Target::Mount(index) => {
                let m = self.site.mounts.get(index);
                let tag = &self.key[..4];
                let rel = &self.rel;
                let ends = std::iter::once(0).chain(rel.iter().enumerate().filter(|(_, &b)| b == b'/').map(|(i, _)| i));
                for end in ends {
                    self.dir_key.clear();
                    self.dir_key.extend_from_slice(tag);
                    if end > 0 {
                        self.dir_key.push(b'/');
                        self.dir_key.extend_from_slice(&rel[..end]);
                    }
                    match self.watch.watch(&self.dir_key, || mount::join(&m.root, &rel[..end])) {
                        Watch::Watched => {}
                        // A missing subdirectory's creation is reported by its
                        // parent's watch; the root's parent is not watched.
                        Watch::Missing => return end > 0,
                        Watch::Unwatched => return false,
                    }
                }
                true
            }
            Target::Path(path) => {
                let Some(parent) = path.parent() else { return false };
                let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                self.dir_key.clear();
                self.dir_key.extend_from_slice(&DIRECT);
                self.dir_key.extend_from_slice(parent.as_os_str().as_bytes());
                // A missing parent's creation would not be reported: not cached.
                matches!(self.watch.watch(&self.dir_key, || parent.to_path_buf()), Watch::Watched)
            }
        }
    }

    /// Drains the watcher: called when its descriptor is readable, before the
    /// worker handles the other events of the same wakeup.
    pub fn on_watch_event(&mut self) {
        let info = &mut self.info;
        self.watch.drain(|change| match change {
            Change::Below(key) => info.invalidate(key),
            Change::All => info.clear(),
        });
    }

    /// Drops expired info entries and closes descriptors unused for their
    /// lifetime; called about once a second.
    pub fn sweep(&mut self) {
        let now = Instant::now();
        self.info.sweep(now);
        self.fds.sweep(now);
    }
}

/// What `lookup` found.
enum Found {
    /// A plain GET's pre-rendered answer: the file is in memory.
    Image(Arc<SmallFile>),
    /// The path's info, the file's bytes when they are in memory, and whether
    /// the info is cached (then its entry may take the bytes).
    Info(Info, Option<Arc<SmallFile>>, bool),
}

#[derive(Clone, Copy)]
enum Target<'p> {
    Mount(usize),
    Path(&'p Path),
}

enum Opened {
    Same(Arc<File>),
    /// The file changed between its stat and the open: this is what was opened.
    Changed(Arc<File>, FileInfo),
    Gone(Info),
}

/// Plans a file answer with `fi`; the handler's `fields` may name the
/// Content-Type and the validators preconditions are checked against.
fn plan_file(
    req: &FileRequest<'_>,
    status: u16,
    fi: &FileInfo,
    fields: &[(&[u8], &[u8])],
    now: u64,
    boundary: &[u8; BOUNDARY_LEN],
) -> Plan {
    let given = |name: &str| fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| *v);
    let content_type = given("content-type").unwrap_or(fi.content_type.as_bytes());
    let (etag, lm) = (given("etag"), given("last-modified"));
    let check = if etag.is_some() || lm.is_some() {
        let modified = lm.and_then(validator::parse_http_date);
        Check { etag: etag.map(<[u8]>::trim_ascii), modified, modified_strong: modified.is_some_and(|m| m < now) }
    } else {
        fi.validators.check()
    };
    serve::file(req, status, fi, &check, content_type, now, boundary)
}

/// Plans a handler's file answer away from the worker (a deferred handle, on
/// the answering thread): the path is looked up and the file opened here,
/// without the worker's caches. Errors as for [`StaticFiles::plan_path`].
pub(crate) fn plan_detached(
    req: &FileRequest<'_>,
    status: u16,
    path: &Path,
    fields: &[(&[u8], &[u8])],
) -> Result<Prepared, FileError> {
    let mut key = DIRECT.to_vec();
    key.extend_from_slice(path.as_os_str().as_bytes());
    let refused = || {
        FileError(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a readable regular file (a device, fifo or socket, or no permission)",
        ))
    };
    // Probe first (O_PATH): a fifo or device is never opened for reading.
    let probe = fs::open_path(path, Access::Probe).map_err(FileError)?;
    let st = fs::stat(&probe).map_err(FileError)?;
    let fi = match classify(&st, &key) {
        Info::File(fi) => fi,
        Info::Directory => return Err(FileError(io::Error::from_raw_os_error(libc::EISDIR))),
        _ => return Err(refused()),
    };
    let boundary = random_boundary(0);
    let now = unix_now();
    let plan = plan_file(req, status, &fi, fields, now, &boundary);
    if !plan.needs_file() || req.is_head() {
        return Ok(no_file(plan));
    }
    let file = fs::open_path(path, Access::Read).map_err(FileError)?;
    let opened = fs::stat(&file).map_err(FileError)?;
    if opened.kind != FileKind::Regular {
        return Err(refused());
    }
    if FileId::of(&opened) == FileId::of(&fi.stat) {
        return Ok(Prepared { plan, file: Some(Arc::new(file)) });
    }
    // Replaced between the probe and the open: serve what was opened.
    let Info::File(fresh) = classify(&opened, &key) else { return Err(refused()) };
    Ok(Prepared { plan: plan_file(req, status, &fresh, fields, now, &boundary), file: Some(Arc::new(file)) })
}

/// A multipart boundary: the fixed prefix and 16 hex digits from a random
/// hasher seeded with `salt`.
fn random_boundary(salt: usize) -> [u8; BOUNDARY_LEN] {
    let mut boundary = *b"warpcore-0000000000000000";
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(salt);
    let mut n = h.finish();
    for b in boundary[9..].iter_mut().rev() {
        *b = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
    }
    boundary
}

fn no_file(plan: Plan) -> Prepared {
    Prepared { plan, file: None }
}

fn classify(st: &fs::Stat, key: &[u8]) -> Info {
    match st.kind {
        FileKind::Regular => Info::File(FileInfo {
            stat: *st,
            validators: Validators::of(st, unix_now()),
            content_type: mime::content_type(&key[4..]),
        }),
        FileKind::Directory => Info::Directory,
        FileKind::Other => Info::Refused,
    }
}

fn info_of_error(e: &io::Error) -> Info {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => Info::Missing,
        Some(libc::EXDEV) | Some(libc::ELOOP) => Info::Outside,
        _ => Info::Refused,
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::serve::Body;
    use super::*;
    use std::path::PathBuf;

    struct TestSite {
        dir: PathBuf,
        files: StaticFiles,
        _poll: mio::Poll,
    }

    impl Drop for TestSite {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn site(name: &str, watched: bool) -> TestSite {
        site_with(name, watched, Duration::from_secs(60))
    }

    fn site_with(name: &str, watched: bool, info_lifetime: Duration) -> TestSite {
        let dir = std::env::temp_dir().join(format!("warpcore-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.join("docs/index.html"), b"<p>docs</p>").unwrap();
        let spec = MountSpec::new(b"/s", &dir).unwrap();
        let site = Site::open(&[spec], false, Duration::from_secs(10), info_lifetime).unwrap();
        let poll = mio::Poll::new().unwrap();
        let registry = watched.then(|| poll.registry().try_clone().unwrap());
        TestSite { dir, files: StaticFiles::new(site, FileCounters::new(1), 0, registry, Token(9)), _poll: poll }
    }

    /// A plan as the tests read it: the body from memory or from the file.
    struct Got {
        plan: Plan,
        file: Option<Arc<File>>,
        small: Option<Arc<SmallFile>>,
    }

    /// The planned answer; the tests that want pre-rendered answers ask for them.
    fn got(served: Served) -> Got {
        match served {
            Served::Plan(prepared, small) => {
                let Prepared { plan, file } = *prepared;
                Got { plan, file, small }
            }
            Served::Image(_) => panic!("a pre-rendered answer where none fits"),
        }
    }

    fn get(files: &mut StaticFiles, path: &str, query: &str) -> Got {
        get_with(files, "GET", path, query, &[])
    }

    fn get_with(files: &mut StaticFiles, method: &str, path: &str, query: &str, h: &[(&'static str, &str)]) -> Got {
        let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
        got(ask(files, method, &target, h, false))
    }

    /// Asks for `target` (a path and maybe `?query`), `image_fits` as the connection says.
    fn ask(
        files: &mut StaticFiles,
        method: &str,
        target: &str,
        h: &[(&'static str, &str)],
        image_fits: bool,
    ) -> Served {
        let headers: Vec<_> = h.iter().map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
        let req = FileRequest { method: method.as_bytes(), fields: Fields::new(&headers), image_fits };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        files.plan_mount(&req, path.as_bytes(), query.as_bytes()).expect("a mount covers it")
    }

    fn body(p: &Got) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let Body::File(r) = p.plan.body else { panic!("no file body: {}", p.plan.status) };
        if let Some(small) = &p.small {
            return small.body()[r.start as usize..(r.start + r.len) as usize].to_vec();
        }
        let mut buf = vec![0; r.len as usize];
        p.file.as_ref().unwrap().read_exact_at(&mut buf, r.start).unwrap();
        buf
    }

    #[test]
    fn serves_files_index_redirects_and_errors() {
        let mut s = site("basic", true);
        let f = &mut s.files;
        let p = get(f, "/s/a.txt", "");
        assert_eq!((p.plan.status, body(&p)), (200, b"hello".to_vec()));
        assert_eq!(p.plan.fields.get("content-type"), Some(&b"text/plain; charset=utf-8"[..]));
        let p = get(f, "/s/docs/", "");
        assert_eq!((p.plan.status, body(&p)), (200, b"<p>docs</p>".to_vec()));
        let p = get(f, "/s/docs", "x=1&y");
        assert_eq!((p.plan.status, p.plan.fields.get("location")), (301, Some(&b"/s/docs/?x=1&y"[..])));
        assert_eq!(get(f, "/s", "").plan.fields.get("location"), Some(&b"/s/"[..]));
        assert_eq!(get(f, "/s/", "").plan.status, 404, "no index.html at the root");
        assert_eq!(get(f, "/s/nope", "").plan.status, 404);
        assert_eq!(get(f, "/s/a.txt/", "").plan.status, 404);
        assert_eq!(get(f, "/s/%2e%2e/x", "").plan.status, 400);
        assert_eq!(get_with(f, "POST", "/s/a.txt", "", &[]).plan.status, 405);
        let head = get_with(f, "HEAD", "/s/a.txt", "", &[]);
        assert_eq!((head.plan.status, head.plan.length, head.file.is_none()), (200, 5, true));
        let req = FileRequest { method: b"GET", fields: Fields::new(&[]), image_fits: true };
        assert!(f.plan_mount(&req, b"/other", b"").is_none());
    }

    #[test]
    fn a_file_served_many_times_is_opened_once() {
        let mut s = site("once", true);
        for _ in 0..1000 {
            assert_eq!(get(&mut s.files, "/s/a.txt", "").plan.status, 200);
        }
        let st = s.files.counters.stats();
        assert_eq!((st.info_misses, st.info_hits, st.fd_misses, st.fd_hits), (1, 999, 1, 999));
        // Misses are cached too.
        get(&mut s.files, "/s/missing", "");
        get(&mut s.files, "/s/missing", "");
        assert_eq!(s.files.counters.stats().info_misses, 2);
    }

    #[test]
    fn changes_are_seen_at_once() {
        let mut s = site("fresh", true);
        assert_eq!(body(&get(&mut s.files, "/s/a.txt", "")), b"hello");
        // Rewritten in place, same size.
        std::fs::write(s.dir.join("a.txt"), b"HELLO").unwrap();
        s.files.on_watch_event();
        assert_eq!(body(&get(&mut s.files, "/s/a.txt", "")), b"HELLO");
        // Rewritten in place, another size.
        std::fs::write(s.dir.join("a.txt"), b"hi").unwrap();
        s.files.on_watch_event();
        assert_eq!(body(&get(&mut s.files, "/s/a.txt", "")), b"hi");
        // Replaced by a rename.
        std::fs::write(s.dir.join("new.tmp"), b"renamed").unwrap();
        std::fs::rename(s.dir.join("new.tmp"), s.dir.join("a.txt")).unwrap();
        s.files.on_watch_event();
        assert_eq!(body(&get(&mut s.files, "/s/a.txt", "")), b"renamed");
        // Created after a cached miss, in a directory created after it too.
        assert_eq!(get(&mut s.files, "/s/later/x.txt", "").plan.status, 404);
        std::fs::create_dir(s.dir.join("later")).unwrap();
        std::fs::write(s.dir.join("later/x.txt"), b"x").unwrap();
        s.files.on_watch_event();
        assert_eq!(body(&get(&mut s.files, "/s/later/x.txt", "")), b"x");
        // Deleted.
        std::fs::remove_file(s.dir.join("a.txt")).unwrap();
        s.files.on_watch_event();
        assert_eq!(get(&mut s.files, "/s/a.txt", "").plan.status, 404);
    }

    #[test]
    fn without_watches_nothing_is_cached_and_nothing_is_stale() {
        let mut s = site("unwatched", false);
        assert_eq!(body(&get(&mut s.files, "/s/a.txt", "")), b"hello");
        std::fs::write(s.dir.join("a.txt"), b"HELLO").unwrap();
        assert_eq!(body(&get(&mut s.files, "/s/a.txt", "")), b"HELLO");
        assert_eq!(s.files.counters.stats().info_hits, 0);
    }

    #[test]
    fn special_files_and_escaping_links_are_not_served() {
        let mut s = site("special", true);
        let fifo = std::ffi::CString::new(s.dir.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: test-only; `fifo` is NUL-terminated.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink("/etc/passwd", s.dir.join("out")).unwrap();
        std::os::unix::fs::symlink("a.txt", s.dir.join("in")).unwrap();
        assert_eq!(get(&mut s.files, "/s/fifo", "").plan.status, 403);
        assert_eq!(get(&mut s.files, "/s/out", "").plan.status, 404);
        assert_eq!(body(&get(&mut s.files, "/s/in", "")), b"hello");
    }

    #[test]
    fn handler_files_get_conditionals_and_their_own_validators() {
        let mut s = site("direct", true);
        let path = s.dir.join("a.txt");
        let req = FileRequest { method: b"GET", fields: Fields::new(&[]), image_fits: false };
        let p = got(s.files.plan_path(&req, 200, &path, &[]).unwrap());
        assert_eq!(body(&p), b"hello");
        let etag = p.plan.fields.get("etag").unwrap().to_vec();
        let inm = [httparse::Header { name: "If-None-Match", value: &etag }];
        let req = FileRequest { method: b"GET", fields: Fields::new(&inm), image_fits: true };
        let status = |s: &mut StaticFiles, fields: &[(&[u8], &[u8])]| {
            got(s.plan_path(&req, 200, &path, fields).unwrap()).plan.status
        };
        assert_eq!(status(&mut s.files, &[]), 304);
        // The handler's ETag is what is compared.
        assert_eq!(status(&mut s.files, &[(b"ETag", b"\"mine\"")]), 200);
        let mine = [httparse::Header { name: "If-None-Match", value: b"\"mine\"" }];
        let req = FileRequest { method: b"GET", fields: Fields::new(&mine), image_fits: true };
        assert_eq!(got(s.files.plan_path(&req, 200, &path, &[(b"ETag", b"\"mine\"")]).unwrap()).plan.status, 304);
        assert!(s.files.plan_path(&req, 200, &s.dir.join("missing"), &[]).is_err());
        assert!(s.files.plan_path(&req, 200, &s.dir, &[]).is_err());
    }
    /// The body of a pre-rendered answer, which must be the plain 200.
    fn image_body(served: Served) -> Vec<u8> {
        let Served::Image(small) = served else { panic!("not a pre-rendered answer") };
        let mut out = Vec::new();
        let env = crate::http::compose::ComposeEnv { common: b"", version: 0 };
        small.image().compose(&mut out, &env);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: "), "{}", String::from_utf8_lossy(&out));
        small.body().to_vec()
    }

    #[test]
    fn small_files_are_answered_from_memory() {
        let mut s = site("small", true);
        let f = &mut s.files;
        // The first request reads the file; the next ones find it in memory.
        assert_eq!(image_body(ask(f, "GET", "/s/a.txt", &[], true)), b"hello");
        assert_eq!(image_body(ask(f, "GET", "/s/a.txt", &[], true)), b"hello");
        assert_eq!(image_body(ask(f, "GET", "/s/docs/", &[], true)), b"<p>docs</p>");
        let st = f.counters.stats();
        assert_eq!((st.fd_misses, st.fd_hits), (2, 1), "{st:?}");
        assert!(f.info.small_bytes() > 16);

        // Everything but a plain GET is planned, with the body from memory.
        let p = get(f, "/s/a.txt", "");
        assert_eq!((p.plan.status, body(&p), p.file.is_none()), (200, b"hello".to_vec(), true));
        let p = get_with(f, "GET", "/s/a.txt", "", &[("Range", "bytes=1-3")]);
        assert_eq!((p.plan.status, body(&p)), (206, b"ell".to_vec()));
        assert_eq!(p.plan.fields.get("content-range"), Some(&b"bytes 1-3/5"[..]));
        let etag = String::from_utf8(p.plan.fields.get("etag").unwrap().to_vec()).unwrap();
        let p = got(ask(f, "GET", "/s/a.txt", &[("If-None-Match", &etag)], true));
        assert_eq!((p.plan.status, p.plan.body), (304, Body::Empty));
        let p = got(ask(f, "HEAD", "/s/a.txt", &[], false));
        assert_eq!(
            (p.plan.status, p.plan.length, p.plan.body),
            (200, 5, Body::File(range::ByteRange { start: 0, len: 5 }))
        );
        // Several ranges come from the file.
        let p = get_with(f, "GET", "/s/a.txt", "", &[("Range", "bytes=0-0,2-2")]);
        assert_eq!((p.plan.status, p.small.is_none(), p.file.is_some()), (206, true, true));
        // A handler's own fields: planned, the body from memory.
        let req = FileRequest { method: b"GET", fields: Fields::new(&[]), image_fits: true };
        let path = s.dir.join("a.txt");
        let p = got(s.files.plan_path(&req, 200, &path, &[(b"Content-Type", b"x/y")]).unwrap());
        assert_eq!(body(&p), b"hello");
        assert!(matches!(s.files.plan_path(&req, 200, &path, &[]).unwrap(), Served::Image(_)));
    }

    #[test]
    fn small_files_in_memory_follow_their_changes() {
        let mut s = site("small-fresh", true);
        assert_eq!(image_body(ask(&mut s.files, "GET", "/s/a.txt", &[], true)), b"hello");
        std::fs::write(s.dir.join("a.txt"), b"HELLO").unwrap();
        s.files.on_watch_event();
        assert_eq!(image_body(ask(&mut s.files, "GET", "/s/a.txt", &[], true)), b"HELLO");
        assert_eq!(image_body(ask(&mut s.files, "GET", "/s/a.txt", &[], true)), b"HELLO");
        std::fs::write(s.dir.join("new.tmp"), b"renamed").unwrap();
        std::fs::rename(s.dir.join("new.tmp"), s.dir.join("a.txt")).unwrap();
        s.files.on_watch_event();
        assert_eq!(image_body(ask(&mut s.files, "GET", "/s/a.txt", &[], true)), b"renamed");
        let p = get_with(&mut s.files, "GET", "/s/a.txt", "", &[("Range", "bytes=-3")]);
        assert_eq!(body(&p), b"med");
        std::fs::remove_file(s.dir.join("a.txt")).unwrap();
        s.files.on_watch_event();
        assert_eq!(got(ask(&mut s.files, "GET", "/s/a.txt", &[], true)).plan.status, 404);
        assert_eq!(s.files.info.small_bytes(), 0);
        // Without watches nothing is kept.
        let mut u = site("small-unwatched", false);
        assert_eq!(body(&got(ask(&mut u.files, "GET", "/s/a.txt", &[], true))), b"hello");
        assert_eq!(u.files.info.small_bytes(), 0);
    }

    #[test]
    fn small_files_in_memory_stay_under_the_cap() {
        let lifetime = Duration::from_millis(300);
        let mut s = site_with("small-cap", true, lifetime);
        let size = small::SMALL_FILE_MAX as usize;
        let count = small::SMALL_CACHE_MAX / size + 8;
        for i in 0..count {
            std::fs::write(s.dir.join(format!("f{i}")), vec![b'a' + (i % 26) as u8; size]).unwrap();
        }
        let mut images = 0;
        for i in 0..count {
            let path = format!("/s/f{i}");
            // Every file is served whole, from memory or from its descriptor.
            let served = ask(&mut s.files, "GET", &path, &[], true);
            let bytes = match served {
                Served::Image(small) => {
                    images += 1;
                    small.body().to_vec()
                }
                other => body(&got(other)),
            };
            assert_eq!(bytes, vec![b'a' + (i % 26) as u8; size]);
            assert!(s.files.info.small_bytes() <= small::SMALL_CACHE_MAX);
        }
        assert!(images > 0 && images < count, "{images} of {count} in memory");
        // Once entries expire, the files asked for are taken in again.
        std::thread::sleep(lifetime);
        let last = format!("/s/f{}", count - 1);
        ask(&mut s.files, "GET", &last, &[], true);
        assert!(matches!(ask(&mut s.files, "GET", &last, &[], true), Served::Image(_)));
        assert!(s.files.info.small_bytes() <= small::SMALL_CACHE_MAX);
    }
}
