//! Build-script helper that compiles guest crates of this workspace to wasm32-wasip2 components.
//!
//! The host, the first-party capabilities and the tests all need guest components built from
//! source: none is committed as a binary. A build script names the packages it needs and gets
//! the paths of the built `.wasm` files, plus a generated Rust file of `include_bytes!`
//! constants it can `include!`:
//!
//! ```no_run
//! // build.rs
//! let built = femtoclaw_guest_build::build(&["femtoclaw-cap-hello"]);
//! femtoclaw_guest_build::write_constants(&built, "guests.rs");
//! ```
//!
//! The inner `cargo build` runs in release mode with its own target directory (next to the outer
//! one, so every build script of the workspace shares it), and clears the outer build's flags and
//! wrappers so that a host-only `RUSTFLAGS` or clippy never reaches the wasm build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every guest is compiled for.
pub const TARGET: &str = "wasm32-wasip2";

/// One built guest component.
#[derive(Debug, Clone)]
pub struct Built {
    /// Cargo package name, e.g. `femtoclaw-cap-hello`.
    pub package: String,
    /// Path of the component file.
    pub wasm: PathBuf,
}

impl Built {
    /// `femtoclaw-cap-hello` → `FEMTOCLAW_CAP_HELLO`.
    pub fn const_name(&self) -> String {
        self.package.to_uppercase().replace('-', "_")
    }
}

fn workspace_root() -> PathBuf {
    let mut dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    loop {
        let manifest = dir.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("[workspace]")) {
            return dir;
        }
        if !dir.pop() {
            panic!("no workspace root above {}", env("CARGO_MANIFEST_DIR"));
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("build scripts set `{name}`"))
}

/// The shared directory for guest builds: `<outer target dir>/wasm-guests`, found from `OUT_DIR`
/// (`<target>/<profile>/build/<pkg>-<hash>/out`), or `OUT_DIR` itself when the layout differs.
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let shared = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent);
    match shared {
        Some(target) => target.join("wasm-guests"),
        None => out_dir.join("wasm-guests"),
    }
}

/// Builds `packages` for wasm32-wasip2 in release mode and returns their components.
///
/// Emits `cargo:rerun-if-changed` for the workspace's guest sources, the SDK and `wit/`.
///
/// # Panics
///
/// When the inner build fails: this is a build script, and its output says why.
pub fn build(packages: &[&str]) -> Vec<Built> {
    let root = workspace_root();
    for dir in [
        "wit",
        "sdk",
        "capabilities",
        "tests/guests",
        "examples",
        "runtime/conformance/guest",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let target_dir = guest_target_dir();
    let mut cmd = Command::new(env("CARGO"));
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // Under `cargo clippy` the outer build runs clippy-driver as a wrapper; guests are
        // built, not linted, here (clippy lints them as workspace members on the host target).
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for package in packages {
        cmd.args(["--package", package]);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for guests: {e}"));
    assert!(
        status.success(),
        "building guests {packages:?} for {TARGET} failed; is the target installed? (rust-toolchain.toml lists it)"
    );

    packages
        .iter()
        .map(|package| {
            let wasm = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", package.replace('-', "_")));
            // A private copy: the shared directory may be rebuilt by another checkout's build
            // before this crate's compiler reads the bytes.
            let copy = PathBuf::from(env("OUT_DIR")).join(wasm.file_name().unwrap_or_default());
            std::fs::copy(&wasm, &copy)
                .unwrap_or_else(|e| panic!("guest component {}: {e}", wasm.display()));
            Built {
                package: (*package).to_owned(),
                wasm: copy,
            }
        })
        .collect()
}

/// Writes `$OUT_DIR/<file>` with one `pub const <NAME>: &[u8] = include_bytes!(…);` per guest
/// and a `for_each_guest!` macro listing them, for a crate to `include!`.
pub fn write_constants(built: &[Built], file: &str) {
    let mut out = String::new();
    for guest in built {
        let _ = writeln!(
            out,
            "/// The `{}` component, built for {TARGET}.\npub const {}: &[u8] = include_bytes!({:?});",
            guest.package,
            guest.const_name(),
            guest.wasm.display().to_string()
        );
    }
    let path = PathBuf::from(env("OUT_DIR")).join(file);
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
