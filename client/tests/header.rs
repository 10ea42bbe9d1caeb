//! `include/awp_client.h` is the header cbindgen makes from the code: a C
//! ABI change that is not in the checked-in header fails here (and so in
//! CI). `AWP_BLESS=1 cargo test -p awp-client --test header` rewrites it.

use std::path::Path;

#[test]
fn the_checked_in_header_is_what_the_code_makes() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut made = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen makes the header")
        .write(&mut made);
    let path = crate_dir.join("include/awp_client.h");
    if std::env::var_os("AWP_BLESS").is_some() {
        std::fs::write(&path, &made).expect("write the header");
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == made,
        "include/awp_client.h differs from what the code makes; run \
         AWP_BLESS=1 cargo test -p awp-client --test header and commit it.\nmade:\n{}",
        String::from_utf8_lossy(&made)
    );
}
