//! Directories swapped under a static mount, over real sockets: the deploy
//! move `mv dir dir.old; mv dir.new dir`, for a subdirectory and for the
//! mounted directory itself. Cache lifetimes are an hour here, so an answer
//! with the new content can only come from the watches, never from an expiry.

mod util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use util::*;
use warpcore::{Config, MountSpec};

/// The tree a test swaps directories in, in a TempDir.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = TempDir::new("swaps", name);
        Tree { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `mv from to`.
    fn mv(&self, from: &str, to: &str) {
        std::fs::rename(self.path(from), self.path(to)).unwrap();
    }

    /// `/static` → `www` (one worker, so every request meets the same caches),
    /// with both cache lifetimes at an hour.
    fn serve(&self) -> TestServer {
        let www = self.path("www");
        start_with(demo_handler, move |c: &mut Config| {
            c.static_mounts.push(MountSpec::new(b"/static", www).unwrap());
            c.file_info_lifetime = Duration::from_secs(3600);
            c.fd_cache_lifetime = Duration::from_secs(3600);
        })
    }
}

fn body(c: &mut Client, path: &str) -> String {
    let r = c.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

/// Gives `path` the modification time of `like`, so that only the inode tells
/// the two files apart.
fn same_mtime(path: &Path, like: &Path) {
    let mtime = std::fs::metadata(like).unwrap().modified().unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
}

#[test]
fn a_swapped_subdirectory_is_served_and_watched_at_once() {
    let t = Tree::new("subdir");
    t.write("www/sub/a.txt", "old a");
    t.write("www/sub/deep/b.txt", "old b");
    t.write("www/sub.new/a.txt", "new a");
    t.write("www/sub.new/deep/b.txt", "new b");
    let s = t.serve();
    let mut c = s.connect();
    assert_eq!(body(&mut c, "/static/sub/a.txt"), "old a");
    assert_eq!(body(&mut c, "/static/sub/deep/b.txt"), "old b");
    assert_eq!(c.get("/static/sub/later.txt").status, 404);

    t.mv("www/sub", "www/sub.old");
    t.mv("www/sub.new", "www/sub");
    assert_eq!(body(&mut c, "/static/sub/a.txt"), "new a");
    assert_eq!(body(&mut c, "/static/sub/deep/b.txt"), "new b");
    assert_eq!(c.get("/static/sub/later.txt").status, 404);

    // Edits under the new directory (and the one below it) are seen at once:
    // the watches follow the path, not the inodes that were there first.
    t.write("www/sub/a.txt", "a edited after the swap");
    assert_eq!(body(&mut c, "/static/sub/a.txt"), "a edited after the swap");
    t.write("www/sub/deep/b.txt", "b edited after the swap");
    assert_eq!(body(&mut c, "/static/sub/deep/b.txt"), "b edited after the swap");
    t.write("www/sub/later.txt", "created after the swap");
    assert_eq!(body(&mut c, "/static/sub/later.txt"), "created after the swap");

    // The old directory, still on disk, no longer speaks for the path.
    t.write("www/sub.old/a.txt", "the old tree, edited");
    assert_eq!(body(&mut c, "/static/sub/a.txt"), "a edited after the swap");
    assert_eq!(body(&mut c, "/static/sub.old/a.txt"), "the old tree, edited");
}

#[test]
fn the_mount_directory_swapped_is_served_and_watched_at_once() {
    let t = Tree::new("root");
    t.write("www/index.html", "old index");
    t.write("www/docs/page.html", "old page");
    t.write("www.new/index.html", "new index");
    t.write("www.new/docs/page.html", "new page");
    let s = t.serve();
    let mut c = s.connect();
    assert_eq!(body(&mut c, "/static/"), "old index");
    assert_eq!(body(&mut c, "/static/docs/page.html"), "old page");
    assert_eq!(c.get("/static/only-new.txt").status, 404);
    t.write("www.new/only-new.txt", "only in the new tree");

    t.mv("www", "www.old");
    t.mv("www.new", "www");
    assert_eq!(body(&mut c, "/static/"), "new index");
    assert_eq!(body(&mut c, "/static/docs/page.html"), "new page");
    assert_eq!(body(&mut c, "/static/only-new.txt"), "only in the new tree");
    // A new connection meets the same caches and the same answer.
    assert_eq!(body(&mut s.connect(), "/static/docs/page.html"), "new page");

    t.write("www/docs/page.html", "page edited after the swap");
    assert_eq!(body(&mut c, "/static/docs/page.html"), "page edited after the swap");
    t.write("www/index.html", "index edited after the swap");
    assert_eq!(body(&mut c, "/static/"), "index edited after the swap");
    std::fs::remove_file(t.path("www/only-new.txt")).unwrap();
    assert_eq!(c.get("/static/only-new.txt").status, 404);

    // And once more, with requests while no directory stands at the path:
    // their 404 is not kept, since nothing would report the new one's arrival.
    t.write("www.next/index.html", "next index");
    t.mv("www", "www.older");
    assert_eq!(c.get("/static/").status, 404);
    assert_eq!(c.get("/static/index.html").status, 404);
    t.mv("www.next", "www");
    assert_eq!(body(&mut c, "/static/"), "next index");
    t.write("www/index.html", "next index, edited");
    assert_eq!(body(&mut c, "/static/"), "next index, edited");
}

#[test]
fn a_file_under_a_swapped_directory_is_never_served_from_an_old_descriptor() {
    // Same size, same modification time: only the inode differs, which is what
    // the fd cache's key must tell apart.
    let t = Tree::new("fd");
    t.write("www/sub/f.txt", "AAAA");
    t.write("www/sub.new/f.txt", "BBBB");
    same_mtime(&t.path("www/sub.new/f.txt"), &t.path("www/sub/f.txt"));
    let s = t.serve();
    let mut c = s.connect();
    let first = c.get("/static/sub/f.txt");
    assert_eq!(first.text(), "AAAA");
    t.mv("www/sub", "www/sub.old");
    t.mv("www/sub.new", "www/sub");
    let second = c.get("/static/sub/f.txt");
    assert_eq!(second.text(), "BBBB");
    assert_ne!(second.header("etag"), first.header("etag"));
    // Rewritten in place after the swap, same size again.
    t.write("www/sub/f.txt", "CCCC");
    let third = c.get("/static/sub/f.txt");
    assert_eq!(third.text(), "CCCC");
    assert_ne!(third.header("etag"), second.header("etag"));
    let st = s.server.file_cache_stats();
    assert_eq!(st.fd_hits, 0, "no body came from a descriptor opened before its change: {st:?}");
}

#[test]
fn a_subdirectory_deleted_and_recreated_is_watched_anew() {
    let t = Tree::new("recreate");
    t.write("www/sub/a.txt", "first");
    let s = t.serve();
    let mut c = s.connect();
    assert_eq!(body(&mut c, "/static/sub/a.txt"), "first");
    std::fs::remove_dir_all(t.path("www/sub")).unwrap();
    assert_eq!(c.get("/static/sub/a.txt").status, 404);
    t.write("www/sub/a.txt", "second");
    assert_eq!(body(&mut c, "/static/sub/a.txt"), "second");
    t.write("www/sub/a.txt", "second, edited");
    assert_eq!(body(&mut c, "/static/sub/a.txt"), "second, edited");
}
