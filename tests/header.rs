//! include/warpcore.h is what cbindgen generates from src/ffi/ now; with
//! WARPCORE_BLESS=1 the test rewrites it instead (`make header`).

use std::path::Path;

#[test]
fn header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
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
