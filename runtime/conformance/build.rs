//! Builds the suite's own guest components, which the cases install on the target under test,
//! the test guest the golden ledger kept with the sources was recorded with, so that a case
//! replays that ledger against the target, and the test guest whose Rust `std::net` calls import
//! `wasi:sockets`.

fn main() {
    println!("cargo:rerun-if-changed=sdk-guest");
    // The SDK guest is built apart: cargo unifies features across one build, and its SDK
    // `files` feature would change the SDK code the other guests link, the golden ledger's
    // guest among them, whose bytes must be those it was recorded with.
    let mut built = femtoclaw_guest_build::build(&[
        "femtoclaw-conformance-guest",
        "femtoclaw-guest-types",
        "femtoclaw-guest-misbehave",
        "femtoclaw-guest-net",
    ]);
    built.extend(femtoclaw_guest_build::build(&[
        "femtoclaw-conformance-sdk-guest",
    ]));
    femtoclaw_guest_build::write_constants(&built, "guests.rs");
    embed_wit();
}

/// `WIT`: every file of the workspace's `wit/`, by its path below it (the build helper already
/// reruns this script when `wit/` changes).
fn embed_wit() {
    let manifest = std::path::PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let wit = manifest.join("../../wit");
    let mut files = Vec::new();
    let mut dirs = vec![wit.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "wit") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = String::from(
        "/// The workspace's `wit/`: each file's path below it and its text.\npub const WIT: &[(&str, &str)] = &[\n",
    );
    for file in files {
        let relative = file
            .strip_prefix(&wit)
            .unwrap_or(&file)
            .display()
            .to_string();
        let absolute = file.canonicalize().unwrap_or(file).display().to_string();
        out.push_str(&format!(
            "    ({relative:?}, include_str!({absolute:?})),\n"
        ));
    }
    out.push_str("];\n");
    let path = std::path::PathBuf::from(env("OUT_DIR")).join("wit.rs");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}
