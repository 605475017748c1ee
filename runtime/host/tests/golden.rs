//! The golden ledger: a recording kept in `tests/golden/` that every CI run replays against the
//! freshly built test guest. It fails when a change to the engine, the gate, the recording or
//! the guest toolchain changes what a recorded invocation does (divergence, exit 9) or makes it
//! unreplayable (exit 10: another wasmtime version or engine configuration).
//!
//! Re-record it — only when such a change is intended — with:
//!
//! ```sh
//! FEMTOCLAW_BLESS=1 cargo test -p femtoclaw-host --test golden
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{MISBEHAVE_MANIFEST, OPEN_POLICY, command};

use femtoclaw_tests::FEMTOCLAW_GUEST_MISBEHAVE;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn run(data: &Path, args: &[&str]) -> Output {
    command(data, args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Records the golden invocations into `tests/golden/ledger.export` (entries and signed
/// checkpoints, no components: those are built from source) and its verifier key.
fn bless(components: &Path) {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    std::fs::create_dir_all(d.join("policy")).unwrap();
    std::fs::write(d.join("policy/golden.cedar"), OPEN_POLICY).unwrap();
    std::fs::create_dir_all(d.join("config")).unwrap();
    std::fs::write(d.join("config/misbehave.toml"), "region = \"eu\"\n").unwrap();
    let manifest = components.join("capability.toml");
    std::fs::write(
        &manifest,
        format!("{MISBEHAVE_MANIFEST}config = [\"region\"]\n"),
    )
    .unwrap();
    let wasm = components.join("misbehave.wasm");
    let out = run(
        d,
        &[
            "capability",
            "add",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for args in [
        &[
            "invoke",
            "misbehave",
            "divide",
            "--args",
            r#"{"a":84,"b":2}"#,
        ][..],
        &["invoke", "misbehave", "chatter", "--args", r#"{"lines":3}"#],
        &["invoke", "misbehave", "sense"],
        &[
            "invoke",
            "misbehave",
            "read-config",
            "--args",
            r#"{"keys":["region","missing"]}"#,
        ],
        &[
            "invoke",
            "misbehave",
            "recurse",
            "--args",
            r#"{"depth":50}"#,
        ],
        &[
            "invoke",
            "misbehave",
            "divide",
            "--args",
            r#"{"a":1,"b":0}"#,
        ],
        &["invoke", "misbehave", "spin"],
        &[
            "invoke",
            "misbehave",
            "divide",
            "--args",
            r#"{"a":1,"b":1}"#,
            "--principal",
            "agent:bot",
        ],
    ] {
        let out = run(d, args);
        assert!(
            [0, 4, 5, 7].contains(&out.status.code().unwrap_or(-1)),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let out = run(
        d,
        &["log", "export", dir.join("ledger.export").to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = run(d, &["key", "show"]);
    std::fs::write(dir.join("ledger.key"), &key.stdout).unwrap();
}

// Verifies: FC-CORE-0317, FC-EXEC-0402, FC-EXEC-0519, FC-CRYPTO-3824
#[test]
fn the_golden_ledger_replays_identically_against_the_current_build() {
    let components = tempfile::tempdir().unwrap();
    std::fs::write(
        components.path().join("misbehave.wasm"),
        FEMTOCLAW_GUEST_MISBEHAVE,
    )
    .unwrap();
    if std::env::var_os("FEMTOCLAW_BLESS").is_some() {
        bless(components.path());
    }
    let dir = golden_dir();
    let key = std::fs::read_to_string(dir.join("ledger.key")).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = run(
        empty.path(),
        &[
            "replay",
            dir.join("ledger.export").to_str().unwrap(),
            "--key",
            key.trim(),
            "--components",
            components.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "golden ledger replay failed (exit {:?}); if the change is intended, re-record with \
         FEMTOCLAW_BLESS=1 cargo test -p femtoclaw-host --test golden\n{}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let report = text(&out.stdout);
    assert!(
        report.contains("7 identical, 0 divergent, 1 refused"),
        "{report}"
    );
}
