//! Build steps the compiler cannot see:
//! - `embed_migrations!` reads `migrations/` at compile time but cannot tell
//!   Cargo about new folders in it, nor `include_str!` about new templates:
//!   these make a change there trigger a rebuild;
//! - the vendored Scalar bundle for `/docs` (3.5 MB) is gzipped here, once,
//!   so the binary serves it compressed without compressing per request, and
//!   its digest names it, so browsers may cache it for good.

use std::io::Write;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=assets/scalar/standalone.js");

    let script = std::fs::read("assets/scalar/standalone.js").expect("the vendored Scalar bundle");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&script).expect("gzip in memory");
    let gzipped = gzip.finish().expect("gzip in memory");
    std::fs::write(out.join("scalar.js.gz"), gzipped).expect("write to OUT_DIR");

    use sha2::Digest;
    let digest = sha2::Sha256::digest(&script);
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=SCALAR_JS_DIGEST={short}");
}
