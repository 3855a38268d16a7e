//! The dotfile policy of static mounts over real sockets: by default a path
//! with a segment starting with `.` is answered 404 as if absent (except
//! `/.well-known/` under a mount at `/`); `static_dotfiles` serves them.

mod util;

use util::*;
use warpcore::{Config, MountSpec};

/// A site with dotfiles, under the system temp dir, removed on drop.
struct Site {
    dir: TempDir,
}

impl Site {
    fn new(name: &str) -> Site {
        let dir = TempDir::new("dotfiles", name);
        for (rel, text) in [
            ("index.html", "home"),
            (".env", "SECRET=1"),
            (".git/config", "[core]"),
            (".git/HEAD", "ref: refs/heads/main"),
            ("sub/.hidden", "hidden"),
            ("sub/visible.txt", "visible"),
            ("sub/.dir/x.txt", "below a dot directory"),
            (".well-known/acme-challenge/tok", "challenge"),
            (".well-known/security.txt", "Contact: x"),
            (".well-known/.secret", "dot below well-known"),
        ] {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Site { dir }
    }

    /// The site mounted at `prefix`, dotfiles allowed or not.
    fn serve(&self, prefix: &str, dotfiles: bool) -> TestServer {
        let dir = self.dir.to_path_buf();
        let prefix = prefix.as_bytes().to_vec();
        start_with(demo_handler, move |c: &mut Config| {
            c.static_mounts.push(MountSpec::new(&prefix, dir).unwrap());
            c.static_dotfiles = dotfiles;
        })
    }
}

fn send(c: &mut Client, method: &str, path: &str) -> Reply {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c.read_response(method == "HEAD")
}

/// Dotfiles, present or not, sent plainly or percent-encoded.
const DOTFILES: &[&str] = &[
    "/.env",
    "/.git/config",
    "/.git/HEAD",
    "/.git/",
    "/.git",
    "/sub/.hidden",
    "/sub/.dir/x.txt",
    "/.missing",
    "/%2eenv",
    "/%2Eenv",
    "/%2egit/config",
    "/sub/%2ehidden",
    "/sub/%2Edir/x.txt",
    "/.well-known/.secret",
    "/.well-known/%2esecret",
];

#[test]
fn dotfiles_are_404_by_default_and_well_known_is_served() {
    let site = Site::new("deny");
    let s = site.serve("/", false);
    let mut c = s.connect();
    let missing = c.get("/no-such-file");
    assert_eq!(missing.status, 404);
    for path in DOTFILES {
        let r = c.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.body, missing.body, "{path}: answered like a missing file");
        assert_eq!(r.header("location"), None, "{path}: no redirect tells a directory is there");
        // Whatever the method: no 405 that would confirm a mount file.
        assert_eq!(send(&mut c, "HEAD", path).status, 404, "HEAD {path}");
        assert_eq!(send(&mut c, "POST", path).status, 404, "POST {path}");
    }
    // What is not a dotfile is served as before, on the same connection.
    assert_eq!(c.get("/").text(), "home");
    assert_eq!(c.get("/sub/visible.txt").text(), "visible");
    // RFC 8615's well-known URIs at the root are served, encoded too.
    assert_eq!(c.get("/.well-known/acme-challenge/tok").text(), "challenge");
    assert_eq!(c.get("/.well-known/security.txt").text(), "Contact: x");
    assert_eq!(c.get("/%2ewell-known/security.txt").text(), "Contact: x");
    assert_eq!(c.get("/.well-known").status, 301);
    // `.` and `..` are still refused as before.
    assert_eq!(c.get("/%2e%2e/etc/passwd").status, 400);
    assert_eq!(c.get("/./index.html").status, 400);
}

#[test]
fn well_known_is_only_exempt_at_the_root_of_the_url() {
    let site = Site::new("prefix");
    let s = site.serve("/static", false);
    let mut c = s.connect();
    assert_eq!(c.get("/static/index.html").text(), "home");
    assert_eq!(c.get("/static/.env").status, 404);
    assert_eq!(c.get("/static/%2egit/config").status, 404);
    assert_eq!(c.get("/static/.well-known/security.txt").status, 404);
}

#[test]
fn static_dotfiles_serves_them_like_any_file() {
    let site = Site::new("allow");
    let s = site.serve("/", true);
    let mut c = s.connect();
    for (path, text) in [
        ("/.env", "SECRET=1"),
        ("/%2eenv", "SECRET=1"),
        ("/.git/config", "[core]"),
        ("/%2Egit/config", "[core]"),
        ("/sub/.hidden", "hidden"),
        ("/sub/%2ehidden", "hidden"),
        ("/sub/.dir/x.txt", "below a dot directory"),
        ("/.well-known/acme-challenge/tok", "challenge"),
        ("/.well-known/.secret", "dot below well-known"),
    ] {
        let r = c.get(path);
        assert_eq!((r.status, r.text().as_str()), (200, text), "{path}");
    }
    assert_eq!(c.get("/.git").status, 301);
    assert_eq!(c.get("/.missing").status, 404);
    assert_eq!(send(&mut c, "POST", "/.env").status, 405);
}

#[test]
fn a_reload_changes_the_policy_for_requests_read_afterwards() {
    let site = Site::new("reload");
    let s = site.serve("/", false);
    let mut c = s.connect();
    assert_eq!(c.get("/.env").status, 404);
    let config = |dotfiles: bool| Config {
        listen: "127.0.0.1:0".into(),
        workers: 1,
        handler: Some(std::sync::Arc::new(demo_handler)),
        static_mounts: vec![MountSpec::new(b"/", site.dir.to_path_buf()).unwrap()],
        static_dotfiles: dotfiles,
        ..Config::default()
    };
    s.server.reload(&config(true)).unwrap();
    assert_eq!(c.get("/.env").text(), "SECRET=1");
    s.server.reload(&config(false)).unwrap();
    assert_eq!(c.get("/.env").status, 404);
}
