//! The crate's layers only point down: no file of `src/` imports, through
//! any chain, a file that imports it back, and no top-level module a module
//! that imports it back. `scripts/circles.py src` lists the circles
//! (edges from every `crate::`/`super::` path); run it by hand to see them.

use std::path::Path;

#[test]
fn no_import_circle_among_the_source_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("scripts/circles.py"))
        .arg(root.join("src"))
        .output()
        .expect("python3 runs scripts/circles.py");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import circles:\n{report}");
    let zero = |what: &str| {
        report
            .lines()
            .any(|l| l.starts_with("0 circles among") && l.ends_with(what))
    };
    assert!(zero(" files") && zero(" top-level modules"), "{report}");
}
