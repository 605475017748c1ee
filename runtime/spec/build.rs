//! Compiles the specification suite (`docs/spec/FC_*_Specification.md`) into the crate, so the
//! `conformance` command reports on the suite it was built with.

use std::{env, fs, path::PathBuf};

fn main() {
    // The package's directory as cargo gives it to this run (not as it was when the script was
    // compiled: a build directory may serve more than one checkout).
    let manifest = env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let dir = PathBuf::from(manifest).join("../../docs/spec");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => panic!("reading the specification suite {}: {e}", dir.display()),
    };
    files.retain(|p| femtoclaw_file(p));
    assert!(
        !files.is_empty(),
        "no FC_*_Specification.md in {}: a build must embed the suite it implements",
        dir.display()
    );
    files.sort();
    let mut out = String::from("pub(crate) const EMBEDDED: &[(&str, &str)] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let target = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = fs::write(&target, out) {
        panic!("writing {}: {e}", target.display());
    }
}

fn femtoclaw_file(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("FC_") && n.ends_with("_Specification.md"))
}
