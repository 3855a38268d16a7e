//! Link settings for the shared library.
//!
//! `libwarpcore.so` gets the soname `libwarpcore.so.MAJOR`, as C libraries do:
//! a program linked against it records that name, so it keeps loading any later
//! release with the same major version (`make install` installs
//! `libwarpcore.so.MAJOR.MINOR.PATCH` with the links `.so.MAJOR` and `.so`).
//! In the build tree, `make` puts the `.so.MAJOR` link next to the library.
//!
//! Every exported function carries a symbol version (`WARPCORE_0.1`, …), the
//! node of abi/libwarpcore.map that names it. rustc links a cdylib with a
//! version script of its own that lists every exported function, and the
//! linker gives that list precedence over any script added here, so the
//! versions cannot come from the script alone: for each file of src/ffi/ this
//! writes `$OUT_DIR/symver/src/ffi/FILE.rs.s`, one `.symver NAME, NAME@@NODE,
//! remove` per function of the file, which the file assembles into its own
//! module (`symbol_versions!()`: the assembler needs each function defined in
//! the object that versions it), and passes the map to the linker, which
//! defines the nodes (and keeps everything else local). The `remove` leaves only the versioned name in the objects, so the
//! static archive links as before. rustc already exports only the
//! `#[no_mangle] extern "C"` functions; tests/install/run.sh checks the
//! exported symbols and their versions.

use std::env;
use std::fs;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The `.symver` lines need each function in the object that versions it,
    // which only a build with one codegen unit (the release profile: fat LTO)
    // guarantees; `make` asks for them when it builds the library it ships
    // (WARPCORE_SYMBOL_VERSIONS=1). Test and lint builds go without.
    println!("cargo:rustc-check-cfg=cfg(warpcore_symbol_versions)");
    println!("cargo:rerun-if-env-changed=WARPCORE_SYMBOL_VERSIONS");
    if env::var("WARPCORE_SYMBOL_VERSIONS").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-cfg=warpcore_symbol_versions");
    }
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    let family = env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let vendor = env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    let ffi = Path::new(&root).join("src/ffi");
    let mut files = exported_functions(&ffi);
    // ELF platforms; Mach-O (install_name) and Windows name libraries differently.
    if family.split(',').any(|f| f == "unix") && vendor != "apple" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwarpcore.so.{major}");
        let map = Path::new(&root).join("abi/libwarpcore.map");
        println!("cargo:rerun-if-changed={}", map.display());
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
        let nodes = version_nodes(&fs::read_to_string(&map).expect("abi/libwarpcore.map"));
        for (_, names, symver) in &mut files {
            for name in names.iter() {
                let node =
                    node_of(&nodes, name).unwrap_or_else(|| panic!("{name} matches no node of abi/libwarpcore.map"));
                symver.push_str(&format!(".symver {name}, {name}@@{node}, remove\n"));
            }
        }
    }
    let dir = Path::new(&out).join("symver/src/ffi");
    fs::create_dir_all(&dir).expect("create $OUT_DIR/symver/src/ffi");
    for (file, _, symver) in files {
        fs::write(dir.join(format!("{file}.s")), symver).expect("write $OUT_DIR/symver/src/ffi/*.s");
    }
}

/// Each file of `dir` (`server.rs`) with its `pub extern "C" fn warpcore_*`
/// names, and an empty string for its `.symver` lines.
fn exported_functions(dir: &Path) -> Vec<(String, Vec<String>, String)> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("src/ffi") {
        let path = entry.expect("src/ffi entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            println!("cargo:rerun-if-changed={}", path.display());
            let text = fs::read_to_string(&path).expect("read src/ffi/*.rs");
            let mut names = Vec::new();
            for rest in text.split("pub extern \"C\" fn ").skip(1) {
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name.starts_with("warpcore_") {
                    names.push(name);
                }
            }
            let file = path.file_name().expect("a file name").to_string_lossy().into_owned();
            files.push((file, names, String::new()));
        }
    }
    files
}

/// The nodes of a version script, in order, each with its `global:` patterns.
fn version_nodes(script: &str) -> Vec<(String, Vec<String>)> {
    let mut text = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("/*") {
        text.push_str(&rest[..start]);
        rest = rest[start..].find("*/").map_or("", |end| &rest[start + end + 2..]);
    }
    text.push_str(rest);
    let text = text.replace('{', " { ").replace('}', " } ").replace(';', " ; ").replace(':', " : ");
    let mut nodes = Vec::new();
    let mut tokens = text.split_whitespace().peekable();
    while let Some(name) = tokens.next() {
        if name == ";" {
            continue;
        }
        assert_eq!(tokens.next(), Some("{"), "abi/libwarpcore.map: node {name} has no {{");
        let (mut patterns, mut global) = (Vec::new(), true);
        for token in tokens.by_ref() {
            match token {
                "}" => break,
                "global" | "local" => global = token == "global",
                ":" | ";" => {}
                pattern if global => patterns.push(pattern.to_string()),
                _ => {}
            }
        }
        while tokens.peek().is_some_and(|t| *t != ";") {
            tokens.next(); // the parent node
        }
        nodes.push((name.to_string(), patterns));
    }
    nodes
}

/// The node a function belongs to: the one naming it exactly, else the first
/// whose `prefix*` pattern matches it (as the linker decides).
fn node_of<'a>(nodes: &'a [(String, Vec<String>)], name: &str) -> Option<&'a str> {
    let exact = nodes.iter().find(|(_, p)| p.iter().any(|p| p == name));
    let wild = || {
        nodes.iter().find(|(_, p)| p.iter().any(|p| p.strip_suffix('*').is_some_and(|prefix| name.starts_with(prefix))))
    };
    exact.or_else(wild).map(|(node, _)| node.as_str())
}
