//! `log show | checkpoint | verify | export | prove | verify-proof | reindex`.

use std::path::{Path, PathBuf};

use femtoclaw_host::{Code, Failure, Host, kv, records};
use femtoclaw_ledger::{Ledger, LedgerError};
use serde_json::json;

use super::{Global, internal, out, out_bytes};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print entries.
    Show {
        /// First index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most entries to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint note, byte-exact.
    Checkpoint,
    /// Verify the ledger (or an exported file), read-only: leaves, roots, every checkpoint's
    /// signature by the pinned key in force at its position, consistency, blobs. A torn tail is
    /// reported, never cut. Exit 8 names the first bad position.
    Verify {
        /// A verifier key to pin (`name+hex id+base64`; repeat for rotated keys, as `key show
        /// --all` prints them); default: the keys this host's ledger records. With no key at
        /// all, only a log whose checkpoints are all unsigned verifies, and the output says so.
        #[arg(long)]
        key: Vec<String>,
        /// A checkpoint note seen before (`log checkpoint` output), pinned: the log must hold
        /// it, so one rolled back or forked since fails (exit 8). Repeatable.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// An exported ledger file; default: this host's ledger.
        file: Option<PathBuf>,
    },
    /// Export entries and checkpoints to one self-contained file.
    Export {
        /// Where to write it.
        file: PathBuf,
        /// Include every component the invocations ran, so replay needs this file alone.
        #[arg(long)]
        with_components: bool,
    },
    /// Print an inclusion proof of entry `index` (C2SP tlog-proof, with the entry as `extra`).
    Prove {
        /// The entry's index.
        index: u64,
    },
    /// Check an inclusion proof against a pinned key.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
        /// The verifier key to pin.
        #[arg(long)]
        key: String,
    },
    /// Rebuild the derived index and the key-value store from the segments.
    Reindex,
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        match self {
            // Verification opens nothing for writing: it runs without the host.
            Command::Verify {
                key,
                checkpoint,
                file,
            } => verify(&global.data_dir, file.as_deref(), &key, &checkpoint),
            Command::VerifyProof { file, key } => verify_proof(&file, &key),
            Command::Show { from, limit, json } => show(&global.open(true)?, from, limit, json),
            Command::Checkpoint => {
                let host = global.open(true)?;
                let note = host
                    .records()?
                    .with_ledger(|l| l.latest_checkpoint().map(str::to_owned))
                    .ok_or_else(|| Failure::new(Code::Other, "the ledger has no checkpoint yet"))?;
                out_bytes(note.as_bytes());
                Ok(())
            }
            Command::Export {
                file,
                with_components,
            } => {
                let host = global.open(true)?;
                if with_components {
                    femtoclaw_host::replay::export_with_components(&host, &file)?;
                } else {
                    host.records()?
                        .with_ledger(|l| l.export(&file))
                        .map_err(failed)?;
                }
                out(&format!("exported to {}", file.display()));
                Ok(())
            }
            Command::Prove { index } => {
                let host = global.open(true)?;
                let proof = host
                    .records()?
                    .with_ledger(|l| l.prove(index))
                    .map_err(failed)?;
                out_bytes(proof.as_bytes());
                Ok(())
            }
            Command::Reindex => reindex(&global.open(true)?),
        }
    }
}

fn failed(e: LedgerError) -> Failure {
    Failure::new(Code::Other, format!("ledger: {e}"))
}

/// `log show`: entries as JSON, one per line; for a terminal, with what guests wrote escaped.
fn show(host: &Host, from: u64, limit: usize, json: bool) -> Result<(), Failure> {
    let entries = host
        .records()?
        .with_ledger(|l| l.iter(from, limit))
        .map_err(failed)?;
    for (index, entry) in entries {
        let value = serde_json::to_value(&entry).map_err(internal)?;
        if json {
            out(&json!({ "index": index, "entry": value }).to_string());
        } else {
            out(&format!(
                "{index:>6}  {}",
                terminal_safe(&value.to_string())
            ));
        }
    }
    Ok(())
}

/// `log reindex`: the derived index, then the key-value store, rebuilt from the segments.
fn reindex(host: &Host) -> Result<(), Failure> {
    let records = host.records()?;
    let n = records.with_ledger(Ledger::reindex).map_err(failed)?;
    let pairs = kv::rebuild(&*host.kv()?, records)?;
    out(&format!(
        "reindexed {n} entries; the key-value store holds {pairs} pairs"
    ));
    Ok(())
}

/// `log verify`, read-only: exit 8 (integrity) names the first bad position. Without `--key`
/// it pins the keys this host's ledger records, each in force from the key change naming it.
/// With no key at all, only a log whose checkpoints are all bare (signed by nobody) verifies,
/// and the output says its signatures were not checked; a signed one is refused (exit 2),
/// never called verified with signatures nobody checked.
fn verify(
    data_dir: &Path,
    file: Option<&Path>,
    keys: &[String],
    checkpoints: &[PathBuf],
) -> Result<(), Failure> {
    let ledger_dir = records::ledger_dir(data_dir);
    let has_ledger = ledger_dir.join("segments").is_dir();
    if file.is_none() && !has_ledger {
        return Err(Failure::new(
            Code::Other,
            format!("there is no ledger in `{}` yet", ledger_dir.display()),
        ));
    }
    let recorded;
    let keys = if keys.is_empty() && has_ledger {
        recorded = femtoclaw_ledger::recorded_keys(&ledger_dir).map_err(records::integrity)?;
        recorded.as_slice()
    } else {
        keys
    };
    let unpinned = keys.is_empty();
    let mut options = records::pinned(keys)?;
    for path in checkpoints {
        let note = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                Code::InvalidArgs,
                format!("--checkpoint `{}`: {e}", path.display()),
            )
        })?;
        options.checkpoints.push(note);
    }
    // The host's own record of its latest checkpoint is pinned last, so that a ledger rolled
    // back behind it fails here too.
    let head = records::head_record(data_dir);
    if file.is_none()
        && let Ok(note) = std::fs::read_to_string(&head)
    {
        options.checkpoints.push(note);
    }
    let integrity = records::integrity;
    let report = match file {
        Some(file) => femtoclaw_ledger::verify_export_file(file, &options).map_err(integrity)?,
        None => femtoclaw_ledger::verify_dir(&ledger_dir, &options).map_err(integrity)?,
    };
    if unpinned && report.unchecked_signed > 0 {
        return Err(Failure::new(
            Code::InvalidArgs,
            format!(
                "no key to verify with: pass --key ({} of the {} checkpoints are signed, and no key is recorded to check them with)",
                report.unchecked_signed, report.checkpoints
            ),
        ));
    }
    let unchecked = if unpinned {
        "; signatures not checked: the checkpoints are unsigned"
    } else {
        ""
    };
    out(&format!(
        "ok: {} entries, {} checkpoints verified{unchecked}",
        report.entries, report.checkpoints
    ));
    if file.is_none() {
        let blobs = femtoclaw_ledger::verify_dir_blobs(&ledger_dir).map_err(integrity)?;
        out(&format!("ok: {blobs} blobs match their digests"));
    }
    if report.torn_tail_bytes > 0 {
        out(&format!(
            "note: the last segment ends in {} bytes never acknowledged ({} complete entries after the last commit), not verified and left as they are; the host cuts them when it next opens the ledger",
            report.torn_tail_bytes, report.uncommitted_entries
        ));
    }
    Ok(())
}

/// `log verify-proof`.
fn verify_proof(file: &Path, key: &str) -> Result<(), Failure> {
    let key = femtoclaw_ledger::VerifierKey::parse(key)
        .map_err(|e| Failure::new(Code::InvalidArgs, format!("--key: {e}")))?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(Code::InvalidArgs, format!("{}: {e}", file.display())))?;
    let proof = femtoclaw_ledger::verify_proof(&text, &key)
        .map_err(|e| Failure::new(Code::Integrity, format!("proof verification failed: {e}")))?;
    out(&format!(
        "ok: entry {} is in the tree of size {}",
        proof.index, proof.checkpoint.size
    ));
    Ok(())
}

/// JSON text with every character a terminal could act on escaped (`\uXXXX`, still valid
/// JSON): JSON escapes the C0 controls, not DEL, the C1 controls (`U+009B` starts an escape
/// sequence on some terminals) or the bidirectional overrides that reorder what is shown.
fn terminal_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}
