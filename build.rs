// `embed_migrations!` reads `migrations/` at compile time but cannot tell
// Cargo about new folders in it; this makes a new migration trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
}
