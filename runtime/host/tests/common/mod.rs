//! The harness the command-line tests share: a host on a temporary data directory, run as a
//! user would run it.

#![allow(dead_code, reason = "each test binary uses part of the harness")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value as Json, json};

/// A policy that lets the local operator do anything.
pub const OPEN_POLICY: &str =
    "permit (principal == FemtoClaw::User::\"local\", action, resource);\n";

/// The misbehave test guest's manifest: it logs, reads config and uses key-value buckets.
pub const MISBEHAVE_MANIFEST: &str = "name = \"misbehave\"\nversion = \"1.0.0\"\nfuel = 5000000\n\n\
    [requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"wasi:config/store@0.2.0-draft\", \
    \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]\n";

/// The hoard test guest's manifest: it logs and asks for random bytes (baseline).
pub const HOARD_MANIFEST: &str = "name = \"hoard\"\nversion = \"1.0.0\"\nfuel = 5000000000\n\n\
    [requests]\nimports = [\"femtoclaw:host/log@0.1.0\"]\n";

/// A host with its own data directory, and a directory for the files the test hands it.
pub struct Host {
    pub data: tempfile::TempDir,
    pub files: tempfile::TempDir,
}

impl Host {
    /// A fresh host under the default policy.
    pub fn new() -> Self {
        Self {
            data: tempfile::tempdir().unwrap(),
            files: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh host whose policy (`<data dir>/policy/test.cedar`) is `policy`.
    pub fn with_policy(policy: &str) -> Self {
        let host = Self::new();
        host.set_policy(policy);
        host
    }

    /// Replaces the policy; it takes effect on the next invocation.
    pub fn set_policy(&self, policy: &str) {
        std::fs::create_dir_all(self.data.path().join("policy")).unwrap();
        std::fs::write(self.data.path().join("policy/test.cedar"), policy).unwrap();
    }

    /// Writes the host's configuration file, `<data dir>/femtoclaw.toml`.
    pub fn configure(&self, toml: &str) {
        std::fs::write(self.data.path().join("femtoclaw.toml"), toml).unwrap();
    }

    /// Writes a file for the host to read.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.files.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Installs `wasm` with `manifest`; the install must succeed.
    pub fn add(&self, wasm: &[u8], manifest: &str) {
        let w = self.file("component.wasm", wasm);
        let m = self.file("capability.toml", manifest.as_bytes());
        let out = self.run(&["capability", "add", s(&w), "--manifest", s(&m)]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }

    /// The command, on this host's data directory.
    pub fn command(&self, args: &[&str]) -> Command {
        command(self.data.path(), args)
    }

    /// Runs the command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// This host's verifier key.
    pub fn key(&self) -> String {
        stdout(&self.run(&["key", "show"])).trim().to_owned()
    }

    /// Exports the ledger with its components (`ledger.export` among the test's files).
    pub fn export(&self) -> PathBuf {
        let export = self.files.path().join("ledger.export");
        let out = self.run(&["log", "export", "--with-components", s(&export)]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        export
    }

    /// Replays `export` on the data directory `data`, pinning this host's key; the JSON report
    /// of a replay that must succeed.
    pub fn replay_on(&self, data: &Path, export: &Path) -> Json {
        let key = self.key();
        let out = command(data, &["replay", s(export), "--key", &key, "--json"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{} {}", stdout(&out), stderr(&out));
        let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(report["divergent"], json!(0), "{report}");
        report
    }

    /// Every ledger entry, as `{"index", "entry"}` objects.
    pub fn entries(&self) -> Vec<Json> {
        stdout(&self.run(&["log", "show", "--limit", "100000", "--json"]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The Python that has the independent checkers the tests use (`tests/run` makes a virtual
/// environment with them and names it in `FEMTOCLAW_PYTHON`).
pub fn python() -> String {
    std::env::var("FEMTOCLAW_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `femtoclaw-host ARGS` on the data directory `data`, ignoring any policy in the environment.
pub fn command(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_femtoclaw-host"));
    cmd.args(args)
        .env("FEMTOCLAW_DATA_DIR", data)
        .env_remove("FEMTOCLAW_POLICY");
    cmd
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The exit code.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
