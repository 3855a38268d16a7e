//! include/warpcore.h is what cbindgen generates from src/ffi/ now; with
//! WARPCORE_BLESS=1 `header_is_fresh` rewrites it instead (`make header` runs
//! only that test). Its version macros are Cargo.toml's version.

use std::path::Path;

/// The `WARPCORE_VERSION*` macros, placed after the includes (before
/// cbindgen.toml's `after_includes`). cbindgen cannot
/// evaluate `env!` in a Rust constant, so they are written here from the
/// version cargo read from Cargo.toml.
fn version_macros() -> String {
    let (major, minor, patch) =
        (env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"), env!("CARGO_PKG_VERSION_PATCH"));
    format!(
        "
// The version of the library this header belongs to: `#if` can test the
// numbers. `warpcore_version()` gives the version of the library a program runs
// with, which may be a later release with the same major version.
#define WARPCORE_VERSION_MAJOR {major}
#define WARPCORE_VERSION_MINOR {minor}
#define WARPCORE_VERSION_PATCH {patch}
// The same version as a string, `\"MAJOR.MINOR.PATCH\"`.
#define WARPCORE_VERSION \"{major}.{minor}.{patch}\""
    )
}

#[test]
fn header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(version_macros() + "\n\n" + config.after_includes.as_deref().unwrap_or(""));
    let bindings = cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = root.join("include/warpcore.h");
    if std::env::var_os("WARPCORE_BLESS").is_some() {
        let old = std::fs::read(&path).unwrap_or_default();
        if old != fresh {
            std::fs::write(&path, &fresh).expect("write include/warpcore.h");
        }
        return;
    }
    let committed = std::fs::read(&path).expect("include/warpcore.h exists");
    assert!(
        committed == fresh,
        "include/warpcore.h differs from what cbindgen generates now; run `make header` and commit it"
    );
}

/// The committed header's version macros against the `version` line of
/// Cargo.toml, read as text (not through cargo's environment).
#[test]
fn version_macros_match_cargo_toml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let version = manifest
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a version line in Cargo.toml's [package]");
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "Cargo.toml's version {version} is not MAJOR.MINOR.PATCH");

    let header = std::fs::read_to_string(root.join("include/warpcore.h")).expect("include/warpcore.h");
    let define = |name: &str| -> String {
        let prefix = format!("#define {name} ");
        let mut found = header.lines().filter_map(|l| l.strip_prefix(prefix.as_str()));
        let value = found.next().unwrap_or_else(|| panic!("include/warpcore.h does not define {name}"));
        assert!(found.next().is_none(), "include/warpcore.h defines {name} twice");
        value.trim().to_string()
    };
    assert_eq!(define("WARPCORE_VERSION_MAJOR"), parts[0]);
    assert_eq!(define("WARPCORE_VERSION_MINOR"), parts[1]);
    assert_eq!(define("WARPCORE_VERSION_PATCH"), parts[2]);
    assert_eq!(define("WARPCORE_VERSION"), format!("\"{version}\""));
}
