//! Link settings for the shared library.
//!
//! `libwarpcore.so` gets the soname `libwarpcore.so.MAJOR`, as C libraries do:
//! a program linked against it records that name, so it keeps loading any later
//! release with the same major version (`make install` installs
//! `libwarpcore.so.MAJOR.MINOR.PATCH` with the links `.so.MAJOR` and `.so`).
//! In the build tree, `make` puts the `.so.MAJOR` link next to the library.
//!
//! Which symbols the library exports needs nothing here: rustc already exports
//! only the `#[no_mangle] extern "C"` functions of a cdylib (tests/symbols.rs checks
//! that they are all `warpcore_*`).

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    let family = env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let vendor = env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    // ELF platforms; Mach-O (install_name) and Windows name libraries differently.
    if family.split(',').any(|f| f == "unix") && vendor != "apple" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwarpcore.so.{major}");
    }
}
