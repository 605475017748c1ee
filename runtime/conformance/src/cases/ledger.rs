//! Cases of the ledger area: the entries' encoding as exports and proofs carry it, the segment
//! files of a data directory, blobs, `log show`, proofs and their notes, the export format,
//! verification with pinned keys and checkpoints, keys and their rotation, recovery of a
//! damaged ledger, the derived index and key-value store, replay, the configuration, quotas
//! and approvals. Every check reads only what the target prints or writes for its operator.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::{OPEN, guest_host, kinds, published_key};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, Target, crypto, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.ledger.entry-encoding",
        verifies: &[
            "FC-MEM-2301",
            "FC-MEM-2302",
            "FC-MEM-2303",
            "FC-MEM-2308",
            "FC-MEM-2310",
            "FC-MEM-2323",
        ],
        run: entry_encoding,
    },
    Case {
        name: "cli.ledger.segment-records",
        verifies: &["FC-MEM-2401", "FC-MEM-2425", "FC-MEM-2427"],
        run: segment_records,
    },
    Case {
        name: "cli.ledger.blobs",
        verifies: &[
            "FC-MEM-2305",
            "FC-MEM-2306",
            "FC-MEM-2406",
            "FC-MEM-2508",
            "FC-CRYPTO-3804",
        ],
        run: blobs,
    },
    Case {
        name: "cli.ledger.show",
        verifies: &["FC-OBS-2701", "FC-OBS-2702"],
        run: show,
    },
    Case {
        name: "cli.ledger.invocation-start-names-everything",
        verifies: &["FC-OBS-2703", "FC-OBS-2704", "FC-ABI-4909"],
        run: invocation_start_names_everything,
    },
    Case {
        name: "cli.ledger.proof-pins-key-index-and-entry",
        verifies: &["FC-OBS-2705", "FC-CRYPTO-3613", "FC-CRYPTO-3805"],
        run: proof_pins_key_index_and_entry,
    },
    Case {
        name: "cli.ledger.proof-note-grammar",
        verifies: &["FC-CRYPTO-3609", "FC-CRYPTO-3610"],
        run: proof_note_grammar,
    },
    Case {
        name: "cli.ledger.export-format",
        verifies: &[
            "FC-OBS-2706",
            "FC-CRYPTO-3627",
            "FC-CRYPTO-3626",
            "FC-ABI-4904",
        ],
        run: export_format,
    },
    Case {
        name: "cli.ledger.export-damage-refused",
        verifies: &["FC-OBS-2717", "FC-CRYPTO-3616"],
        run: export_damage_refused,
    },
    Case {
        name: "cli.ledger.root-mismatch-names-batch",
        verifies: &["FC-CRYPTO-3615", "FC-CRYPTO-3819"],
        run: root_mismatch_names_batch,
    },
    Case {
        name: "cli.ledger.verify-trusts-no-logged-key",
        verifies: &["FC-CRYPTO-3614", "FC-CRYPTO-3801", "FC-OBS-2710"],
        run: verify_trusts_no_logged_key,
    },
    Case {
        name: "cli.key.rotation",
        verifies: &[
            "FC-CRYPTO-3607",
            "FC-CRYPTO-3701",
            "FC-CRYPTO-3702",
            "FC-CRYPTO-3703",
            "FC-CRYPTO-3705",
            "FC-CRYPTO-3714",
            "FC-CRYPTO-3718",
            "FC-CRYPTO-3802",
        ],
        run: key_rotation,
    },
    Case {
        name: "cli.key.file-and-names",
        verifies: &["FC-CRYPTO-3707", "FC-CRYPTO-3716"],
        run: key_file_and_names,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed(message.into())
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `invoke conformance FUNCTION --args ARGS`, which must exit `code`.
fn call(host: &Host, function: &str, args: Json, code: i32) -> Result<Run, Failure> {
    let run = host.invoke(function, &args, &[])?;
    run.expect(code, &format!("invoke conformance {function} {args}"))?;
    Ok(run)
}

/// Writes `<data dir>/femtoclaw.toml`.
fn config(host: &Host, text: &str) -> Result<(), Failure> {
    write(&host.data.path().join("femtoclaw.toml"), text.as_bytes())
}

/// Exports the host's ledger (with `extra` flags); the file's path.
fn export(host: &Host, name: &str, extra: &[&str]) -> Result<PathBuf, Failure> {
    let path = host.files.path().join(name);
    let file = s(&path);
    let mut args = vec!["log", "export", file.as_str()];
    args.extend_from_slice(extra);
    host.ok(&args)?;
    Ok(path)
}

/// The verifier key `key show` prints.
fn key_text(host: &Host) -> Result<String, Failure> {
    Ok(host.ok(&["key", "show"])?.trim().to_owned())
}

// The canonical encoding of specification 23, written from its tables, applied to the JSON form
// `log show --json` prints: the bytes an export or a proof carries must be exactly these.

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
}

fn field<'a>(j: &'a Json, name: &str) -> Result<&'a Json, String> {
    j.get(name)
        .ok_or_else(|| format!("no field `{name}` in {j}"))
}

fn num(j: &Json, name: &str) -> Result<u64, String> {
    field(j, name)?
        .as_u64()
        .ok_or_else(|| format!("`{name}` is not an unsigned integer in {j}"))
}

fn text<'a>(j: &'a Json, name: &str) -> Result<&'a str, String> {
    field(j, name)?
        .as_str()
        .ok_or_else(|| format!("`{name}` is not a string in {j}"))
}

fn hex_bytes(text: &str, len: usize) -> Result<Vec<u8>, String> {
    if text.len() != 2 * len
        || text
            .bytes()
            .any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!("{text:?} is not {len} bytes of lowercase hex"));
    }
    (0..len)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("{text:?} is not base64: {e}"))
}

impl Enc {
    fn str(&mut self, j: &Json, name: &str) -> Result<(), String> {
        let t = text(j, name)?;
        self.bytes(t.as_bytes());
        Ok(())
    }
    fn digest(&mut self, j: &Json, name: &str) -> Result<(), String> {
        let d = hex_bytes(text(j, name)?, 32)?;
        self.0.extend_from_slice(&d);
        Ok(())
    }
    fn strings(&mut self, j: &Json, name: &str) -> Result<(), String> {
        let items = field(j, name)?
            .as_array()
            .ok_or_else(|| format!("`{name}` is not a list"))?;
        self.u32(items.len() as u32);
        for item in items {
            let t = item
                .as_str()
                .ok_or_else(|| format!("`{name}` holds {item}"))?;
            self.bytes(t.as_bytes());
        }
        Ok(())
    }
    fn option(
        &mut self,
        j: &Json,
        name: &str,
        some: impl FnOnce(&mut Self, &Json) -> Result<(), String>,
    ) -> Result<(), String> {
        match field(j, name)? {
            Json::Null => self.u8(0),
            v => {
                self.u8(1);
                some(self, v)?;
            }
        }
        Ok(())
    }
    fn opt_value(&mut self, v: &Json) -> Result<(), String> {
        if v.is_null() {
            self.u8(0);
            Ok(())
        } else {
            self.u8(1);
            self.value(v, 0)
        }
    }

    /// A value in its JSON form `{"<kind>": payload}`.
    fn value(&mut self, v: &Json, depth: usize) -> Result<(), String> {
        if depth > 100 {
            return Err("values nest too deep".into());
        }
        let Some((kind, p)) = v.as_object().and_then(|o| o.iter().next()) else {
            return Err(format!("{v} is not a value"));
        };
        let int = |p: &Json| p.as_i64().map(|n| n as u64).or_else(|| p.as_u64());
        let bad = || format!("bad {kind} payload {p}");
        match kind.as_str() {
            "bool" => {
                self.u8(0x01);
                self.u8(u8::from(p.as_bool().ok_or_else(bad)?));
            }
            "s8" | "u8" => {
                self.u8(if kind == "s8" { 0x02 } else { 0x06 });
                self.u8(int(p).ok_or_else(bad)? as u8);
            }
            "s16" | "u16" => {
                self.u8(if kind == "s16" { 0x03 } else { 0x07 });
                self.0
                    .extend_from_slice(&(int(p).ok_or_else(bad)? as u16).to_le_bytes());
            }
            "s32" | "u32" | "f32" => {
                self.u8(match kind.as_str() {
                    "s32" => 0x04,
                    "u32" => 0x08,
                    _ => 0x0a,
                });
                self.u32(int(p).ok_or_else(bad)? as u32);
            }
            "s64" | "u64" | "f64" => {
                self.u8(match kind.as_str() {
                    "s64" => 0x05,
                    "u64" => 0x09,
                    _ => 0x0b,
                });
                self.u64(int(p).ok_or_else(bad)?);
            }
            "char" => {
                self.u8(0x0c);
                let c = p.as_str().and_then(|t| t.chars().next()).ok_or_else(bad)?;
                self.u32(c as u32);
            }
            "string" | "enum" => {
                self.u8(if kind == "string" { 0x0d } else { 0x12 });
                self.bytes(p.as_str().ok_or_else(bad)?.as_bytes());
            }
            "list" | "tuple" => {
                self.u8(if kind == "list" { 0x0e } else { 0x10 });
                let items = p.as_array().ok_or_else(bad)?;
                self.u32(items.len() as u32);
                for item in items {
                    self.value(item, depth + 1)?;
                }
            }
            "record" => {
                self.u8(0x0f);
                let fields = p.as_array().ok_or_else(bad)?;
                self.u32(fields.len() as u32);
                for f in fields {
                    let (Some(name), Some(value)) = (f[0].as_str(), f.get(1)) else {
                        return Err(bad());
                    };
                    self.bytes(name.as_bytes());
                    self.value(value, depth + 1)?;
                }
            }
            "variant" => {
                self.u8(0x11);
                self.bytes(text(p, "case")?.as_bytes());
                self.opt_value(p.get("payload").unwrap_or(&Json::Null))?;
            }
            "option" => {
                self.u8(0x13);
                self.opt_value(p)?;
            }
            "result" => {
                self.u8(0x14);
                let (side, inner) = if let Some(ok) = p.get("Ok") {
                    (0, ok)
                } else {
                    (1, p.get("Err").ok_or_else(bad)?)
                };
                self.u8(side);
                self.opt_value(inner)?;
            }
            "flags" => {
                self.u8(0x15);
                let items = p.as_array().ok_or_else(bad)?;
                self.u32(items.len() as u32);
                for item in items {
                    self.bytes(item.as_str().ok_or_else(bad)?.as_bytes());
                }
            }
            "bytes" => {
                self.u8(0x16);
                self.bytes(&b64(p.as_str().ok_or_else(bad)?)?);
            }
            "blob" => {
                self.u8(0x17);
                self.0
                    .extend_from_slice(&hex_bytes(text(p, "sha256")?, 32)?);
                self.u64(num(p, "len")?);
            }
            other => return Err(format!("unknown value kind `{other}`")),
        }
        Ok(())
    }

    fn args(&mut self, j: &Json) -> Result<(), String> {
        let args = field(j, "args")?.as_array().ok_or("`args` is not a list")?;
        self.u32(args.len() as u32);
        for a in args {
            let (Some(name), Some(value)) = (a[0].as_str(), a.get(1)) else {
                return Err(format!("argument {a} is not [name, value]"));
            };
            self.bytes(name.as_bytes());
            self.value(value, 0)?;
        }
        Ok(())
    }
}

/// The kind byte of each entry kind (specification 23's kind table).
const KINDS: [&str; 10] = [
    "invocation-start",
    "host-call",
    "decision",
    "trap",
    "invocation-end",
    "policy-change",
    "key-change",
    "host-call-intent",
    "token-change",
    "approval",
];

/// The canonical encoding of an entry in its JSON form.
fn encode(e: &Json) -> Result<Vec<u8>, String> {
    let kind = text(e, "type")?;
    let number = KINDS
        .iter()
        .position(|k| *k == kind)
        .ok_or_else(|| format!("unknown entry type `{kind}`"))?;
    let mut w = Enc(vec![0x03, number as u8 + 1]);
    match kind {
        "invocation-start" => {
            w.u64(num(e, "invocation")?);
            w.str(e, "principal")?;
            w.strings(e, "groups")?;
            w.str(e, "capability")?;
            w.str(e, "version")?;
            w.digest(e, "component_sha256")?;
            w.digest(e, "manifest_sha256")?;
            w.str(e, "wit_world")?;
            w.digest(e, "engine_digest")?;
            w.str(e, "wasmtime_version")?;
            w.u64(num(e, "fuel_budget")?);
            w.option(e, "policy_digest", |w, v| {
                w.0.extend_from_slice(&hex_bytes(v.as_str().unwrap_or(""), 32)?);
                Ok(())
            })?;
            w.str(e, "function")?;
            w.args(e)?;
            w.option(e, "trace_id", |w, v| {
                w.0.extend_from_slice(&hex_bytes(v.as_str().unwrap_or(""), 16)?);
                Ok(())
            })?;
            w.option(e, "approval", |w, v| {
                w.u64(v.as_u64().ok_or("approval is not a number")?);
                Ok(())
            })?;
        }
        "host-call" | "host-call-intent" => {
            w.u64(num(e, "invocation")?);
            w.u32(num(e, "seq")? as u32);
            w.str(e, "interface")?;
            w.str(e, "function")?;
            w.value(field(e, "params")?, 0)?;
            if kind == "host-call" {
                w.value(field(e, "result")?, 0)?;
            }
            w.u64(num(e, "fuel_remaining")?);
        }
        "decision" => {
            w.u64(num(e, "invocation")?);
            w.str(e, "action")?;
            w.str(e, "resource")?;
            w.u8(u8::from(
                field(e, "allowed")?
                    .as_bool()
                    .ok_or("allowed is not a bool")?,
            ));
            w.strings(e, "policy_ids")?;
            w.digest(e, "policy_digest")?;
        }
        "trap" => {
            w.u64(num(e, "invocation")?);
            w.str(e, "kind")?;
            w.str(e, "message")?;
            w.u64(num(e, "fuel_consumed")?);
        }
        "invocation-end" => {
            w.u64(num(e, "invocation")?);
            w.opt_value(field(e, "result")?)?;
            w.u64(num(e, "fuel_consumed")?);
            w.bytes(&b64(text(e, "stdout")?)?);
            w.bytes(&b64(text(e, "stderr")?)?);
        }
        "policy-change" => {
            w.digest(e, "policy_digest")?;
            w.str(e, "source")?;
        }
        "key-change" => {
            w.str(e, "name")?;
            w.option(e, "old_key_id", |w, v| {
                w.0.extend_from_slice(&hex_bytes(v.as_str().unwrap_or(""), 4)?);
                Ok(())
            })?;
            w.str(e, "new_verifier_key")?;
        }
        "token-change" => {
            w.str(e, "action")?;
            w.str(e, "name")?;
            w.str(e, "principal")?;
            w.strings(e, "groups")?;
            w.option(e, "expires", |w, v| {
                w.u64(v.as_u64().ok_or("expires is not a number")?);
                Ok(())
            })?;
            w.digest(e, "token_sha256")?;
        }
        _ => {
            w.u64(num(e, "request")?);
            w.str(e, "action")?;
            w.digest(e, "fingerprint")?;
            w.str(e, "by")?;
            w.str(e, "reason")?;
            w.u64(num(e, "at")?);
            w.option(e, "expires", |w, v| {
                w.u64(v.as_u64().ok_or("expires is not a number")?);
                Ok(())
            })?;
        }
    }
    Ok(w.0)
}

/// An export's parts (specification 36's framing).
#[derive(Clone, Debug, PartialEq)]
struct Export {
    entries: Vec<Vec<u8>>,
    checkpoints: Vec<Vec<u8>>,
    components: Option<Vec<([u8; 32], Vec<u8>)>>,
    blobs: Option<Vec<([u8; 32], Vec<u8>)>>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| format!("the export ends inside a field at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn framed(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let count = self.u64()?;
        let mut out = Vec::new();
        for _ in 0..count {
            let len = self.u32()? as usize;
            out.push(self.take(len)?.to_vec());
        }
        Ok(out)
    }
    fn digested(&mut self) -> Result<Vec<([u8; 32], Vec<u8>)>, String> {
        let count = self.u64()?;
        let mut out = Vec::new();
        for _ in 0..count {
            let digest: [u8; 32] = self.take(32)?.try_into().unwrap_or([0; 32]);
            let len = self.u64()? as usize;
            out.push((digest, self.take(len)?.to_vec()));
        }
        Ok(out)
    }
}

impl Export {
    fn parse(bytes: &[u8]) -> Result<Export, String> {
        let mut c = Cursor { bytes, at: 0 };
        if c.take(8)? != b"FCLEDGER" {
            return Err("the export does not begin with the magic FCLEDGER".into());
        }
        if c.u8()? != 0x01 {
            return Err("the export's version byte is not 0x01".into());
        }
        let mut export = Export {
            entries: Vec::new(),
            checkpoints: Vec::new(),
            components: None,
            blobs: None,
        };
        let mut expected = [0x01u8, 0x02].into_iter();
        loop {
            let tag = c.u8()?;
            if let Some(first) = expected.next() {
                if tag != first {
                    return Err(format!("section {tag:#04x} where {first:#04x} must be"));
                }
            }
            match tag {
                0x01 => export.entries = c.framed()?,
                0x02 => export.checkpoints = c.framed()?,
                0x03 if export.components.is_none() && export.blobs.is_none() => {
                    export.components = Some(c.digested()?);
                }
                0x04 if export.blobs.is_none() => export.blobs = Some(c.digested()?),
                0xff => break,
                other => return Err(format!("unexpected section {other:#04x}")),
            }
        }
        if c.at != bytes.len() {
            return Err(format!(
                "{} bytes follow the end marker",
                bytes.len() - c.at
            ));
        }
        Ok(export)
    }

    fn write(&self) -> Vec<u8> {
        let mut w = Enc(b"FCLEDGER".to_vec());
        w.u8(0x01);
        for (tag, items) in [(0x01, &self.entries), (0x02, &self.checkpoints)] {
            w.u8(tag);
            w.u64(items.len() as u64);
            for item in items {
                w.bytes(item);
            }
        }
        for (tag, items) in [(0x03, &self.components), (0x04, &self.blobs)] {
            if let Some(items) = items {
                w.u8(tag);
                w.u64(items.len() as u64);
                for (digest, bytes) in items {
                    w.0.extend_from_slice(digest);
                    w.u64(bytes.len() as u64);
                    w.0.extend_from_slice(bytes);
                }
            }
        }
        w.u8(0xff);
        w.0
    }
}

fn parse_export(path: &Path) -> Result<Export, Failure> {
    Export::parse(&read(path)?).map_err(|e| failed(format!("{}: {e}", path.display())))
}

/// `log verify FILE` with the keys given; the run.
fn verify_file(host: &Host, file: &Path, keys: &[&str]) -> Result<Run, Failure> {
    let file = s(file);
    let mut args = vec!["log", "verify", file.as_str()];
    for key in keys {
        args.extend_from_slice(&["--key", key]);
    }
    host.run(&args)
}

/// A host whose ledger holds every kind of entry: key and policy changes, invocations with
/// host calls, a trap, an effectful call written ahead, a token change and approval steps.
fn every_kind_host(target: &Target) -> Result<Host, Failure> {
    // Anything, but `hello` only once a person approves the call.
    let policy = "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"invoke\" && resource is FemtoClaw::Capability && resource.name == \"hello\" };\n\
        @approval(\"required\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"hello\" };\n";
    let host = guest_host(target, policy)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    call(&host, "recall", json!({ "key": "k" }), 0)?;
    call(&host, "divide", json!({ "a": 1, "b": 0 }), 5)?;
    // An effectful call, written ahead of its effect.
    host.ok(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/note.txt","text":"hi"}"#,
    ])?;
    host.ok(&[
        "token",
        "create",
        "--principal",
        "user:someone",
        "--group",
        "ops",
    ])
    .or_else(|_| host.ok(&["token", "create", "--principal", "user:someone"]))?;
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    host.run(&greet)?
        .expect(13, "a call that needs an approval")?;
    host.ok(&["approval", "grant", "0", "--reason", "fine"])
        .or_else(|_| {
            // The approval's id is the number `approval list` shows.
            let list = host.ok(&["approval", "list", "--json"])?;
            let id = serde_json::from_str::<Json>(&list)
                .ok()
                .and_then(|l| l[0]["id"].as_u64())
                .ok_or_else(|| failed(format!("approval list --json: {}", excerpt(&list))))?;
            host.ok(&["approval", "grant", &id.to_string(), "--reason", "fine"])
        })?;
    host.run(&greet)?.expect(0, "the approved call")?;
    Ok(host)
}

// ---------------------------------------------------------------------------------------------
// Cases.

fn entry_encoding(target: &Target) -> Result<(), Failure> {
    let host = every_kind_host(target)?;
    let entries = host.entries()?;
    let file = export(&host, "all.export", &[])?;
    let exported = parse_export(&file)?;
    ensure!(
        exported.entries.len() == entries.len(),
        "the export holds {} entries; log show {}",
        exported.entries.len(),
        entries.len()
    );
    let mut seen = std::collections::BTreeSet::new();
    for (i, (shown, bytes)) in entries.iter().zip(&exported.entries).enumerate() {
        let entry = &shown["entry"];
        ensure!(
            bytes.first() == Some(&0x03),
            "entry {i} begins with {:?} where the version byte 0x03 is required",
            bytes.first()
        );
        let kind = entry["type"].as_str().unwrap_or("?");
        let number = KINDS.iter().position(|k| *k == kind).map(|n| n as u8 + 1);
        ensure!(
            number.is_some() && bytes.get(1).copied() == number,
            "entry {i} ({kind}) has kind byte {:?} where the kind table gives {number:?}",
            bytes.get(1)
        );
        seen.insert(kind.to_owned());
        let ours =
            encode(entry).map_err(|e| failed(format!("entry {i} as log show prints it: {e}")))?;
        ensure!(
            &ours == bytes,
            "entry {i} ({kind}): the exported bytes are not the canonical encoding of the entry log show prints\n  exported  {}\n  canonical {}",
            excerpt(&hex(bytes)),
            excerpt(&hex(&ours))
        );
    }
    ensure!(
        seen.len() == KINDS.len(),
        "the ledger was to hold every entry kind; it holds {seen:?}"
    );
    // The proof of an entry carries the same bytes, and its leaf hash is SHA-256(0x00 ‖ bytes):
    // the independent verifier computes the leaf that way and reaches the signed root.
    let key = published_key(&host)?;
    for i in [0, entries.len() / 2, entries.len() - 1] {
        let proof = host.ok(&["log", "prove", &i.to_string()])?;
        let again = host.ok(&["log", "prove", &i.to_string()])?;
        let (_, bytes, _) =
            crypto::proof(&proof, &key).map_err(|e| failed(format!("log prove {i}: {e}")))?;
        ensure!(
            bytes == exported.entries[i],
            "the proof of entry {i} carries other bytes than the export"
        );
        let (_, twice, _) =
            crypto::proof(&again, &key).map_err(|e| failed(format!("log prove {i}: {e}")))?;
        ensure!(
            twice == bytes,
            "entry {i} was encoded to other bytes the second time"
        );
    }
    Ok(())
}

/// A segment's records: (kind, check, payload).
fn records(bytes: &[u8]) -> Result<(u64, Vec<(u8, [u8; 8], Vec<u8>)>), String> {
    let mut c = Cursor { bytes, at: 0 };
    if c.take(8)? != b"FCLSEG\0\x01" {
        return Err("the segment does not begin with FCLSEG 0x00 0x01".into());
    }
    let first = c.u64()?;
    let mut out = Vec::new();
    while c.at < bytes.len() {
        let len = c.u32()? as usize;
        if len > 64 << 20 {
            return Err(format!("a record of {len} bytes at {}", c.at - 4));
        }
        let kind = c.u8()?;
        let check: [u8; 8] = c.take(8)?.try_into().unwrap_or([0; 8]);
        out.push((kind, check, c.take(len)?.to_vec()));
    }
    Ok((first, out))
}

fn segment(host: &Host) -> PathBuf {
    host.data.path().join("ledger/segments/00000000.seg")
}

fn segment_records(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "remember", json!({ "key": "k", "value": "v" }), 0)?;
    let file = export(&host, "segments.export", &[])?;
    let exported = parse_export(&file)?;
    let path = segment(&host);
    let (first, records) =
        records(&read(&path)?).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    ensure!(
        first == 0,
        "segment 00000000 names first index {first}, not 0"
    );
    let mut entries = Vec::new();
    let mut commits = Vec::new();
    let mut pending = 0;
    for (i, (kind, check, payload)) in records.iter().enumerate() {
        let prefix = match kind {
            0x00 => 0x00u8,
            0x02 => 0x02,
            other => return Err(failed(format!("record {i} has kind {other:#04x}"))),
        };
        let mut h = Sha256::new();
        h.update([prefix]);
        h.update(payload);
        let digest: [u8; 32] = h.finalize().into();
        ensure!(
            check[..] == digest[..8],
            "record {i}'s check is not SHA-256({prefix:#04x} ‖ payload)[..8]"
        );
        if *kind == 0x00 {
            entries.push(payload.clone());
            pending += 1;
        } else {
            ensure!(pending > 0, "commit record {i} closes an empty batch");
            commits.push((entries.len(), String::from_utf8_lossy(payload).into_owned()));
            pending = 0;
        }
    }
    ensure!(
        pending == 0,
        "the segment ends with entries no commit record closes"
    );
    ensure!(
        entries == exported.entries,
        "the segment's entry records are not the ledger's entries as exported"
    );
    let key = published_key(&host)?;
    for (size, note) in &commits {
        let checkpoint = crypto::checkpoint(note, &key)
            .map_err(|e| failed(format!("the commit record after {size} entries: {e}")))?;
        ensure!(
            checkpoint.size == *size as u64,
            "the commit record after {size} entries carries a checkpoint of size {}",
            checkpoint.size
        );
    }
    let latest = host.ok(&["log", "checkpoint"])?;
    ensure!(
        commits.last().map(|(_, n)| n.as_str()) == Some(latest.as_str()),
        "the last commit record is not byte for byte the checkpoint log checkpoint prints"
    );
    let run = host.run(&["log", "verify"])?;
    run.expect(0, "log verify")?;
    ensure!(
        run.stdout.starts_with(&format!(
            "ok: {} entries, {} checkpoints verified",
            entries.len(),
            commits.len()
        )),
        "reopening must give {} entries and one checkpoint per batch ({}): {}",
        entries.len(),
        commits.len(),
        excerpt(&run.stdout)
    );
    Ok(())
}

fn blobs(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let big = "b".repeat(16384);
    let small = "s".repeat(16383);
    call(&host, "remember", json!({ "key": "big", "value": big }), 0)?;
    call(
        &host,
        "remember",
        json!({ "key": "small", "value": small }),
        0,
    )?;
    let digest = hex(&sha256(big.as_bytes()));
    let entries = host.entries()?;
    let sets: Vec<&Json> = entries
        .iter()
        .filter(|e| {
            e["entry"]["type"] == "host-call" && e["entry"]["function"] == "[method]bucket.set"
        })
        .collect();
    ensure!(
        sets.len() == 2,
        "two set calls were to be recorded: {:?}",
        kinds(&entries)
    );
    let blob = &sets[0]["entry"]["params"]["tuple"][2];
    ensure!(
        blob["blob"]["sha256"] == json!(digest) && blob["blob"]["len"] == json!(16384),
        "a 16384-byte value must be recorded as a blob reference by its SHA-256 and length: {blob}"
    );
    let inline = &sets[1]["entry"]["params"]["tuple"][2];
    ensure!(
        inline["bytes"].as_str().map(|b| b64(b).map(|v| v.len())) == Some(Ok(16383)),
        "a 16383-byte value must stay inline: {}",
        excerpt(&inline.to_string())
    );
    // The encoding: tag 0x17, the digest, the length as a u64.
    let file = export(&host, "blobs.export", &[])?;
    let exported = parse_export(&file)?;
    let index = sets[0]["index"].as_u64().unwrap_or(0) as usize;
    let mut reference = vec![0x17];
    reference.extend_from_slice(&sha256(big.as_bytes()));
    reference.extend_from_slice(&16384u64.to_le_bytes());
    ensure!(
        exported.entries[index]
            .windows(reference.len())
            .any(|w| w == reference),
        "the set call's encoding holds no blob reference 0x17 ‖ SHA-256 ‖ u64 length"
    );
    let blobs = exported.blobs.clone().unwrap_or_default();
    ensure!(
        blobs.len() == 1 && blobs[0].0 == sha256(big.as_bytes()) && blobs[0].1 == big.as_bytes(),
        "the export must carry the one blob the entries refer to"
    );
    // Beside the ledger, by digest.
    let path = host.data.path().join("ledger/blobs").join(&digest);
    ensure!(
        read(&path)? == big.as_bytes(),
        "{} does not hold the value's bytes",
        path.display()
    );
    let run = host.run(&["log", "verify"])?;
    run.expect(0, "log verify")?;
    ensure!(
        run.stdout.contains("1 blob"),
        "log verify does not report the one blob it checked: {}",
        excerpt(&run.stdout)
    );
    // Read back whole, by a later invocation.
    let run = call(&host, "recall", json!({ "key": "big" }), 0)?;
    ensure!(
        run.json()?.to_string().contains(&big),
        "the 16 KiB value did not read back whole"
    );
    // A blob whose bytes no longer match its digest is never returned, and verification fails.
    let mut damaged = big.clone().into_bytes();
    damaged[100] = b'X';
    write(&path, &damaged)?;
    host.run(&["log", "verify"])?.expect(
        8,
        "log verify with a blob whose bytes do not match its digest",
    )?;
    let run = host.invoke("recall", &json!({ "key": "big" }), &[])?;
    ensure!(
        !run.stdout.contains("bbbbbbbbbbX"),
        "a blob whose bytes do not match its digest was returned"
    );
    std::fs::remove_file(&path).map_err(|e| failed(e.to_string()))?;
    host.run(&["log", "verify"])?
        .expect(8, "log verify with a blob missing")?;
    Ok(())
}

fn show(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // Control characters (C0 and C1) and bidirectional overrides a guest returned.
    let hostile = "a\u{1b}[31mb\u{202e}c\u{7}d\u{85}e\u{2066}f";
    call(&host, "echo", json!({ "text": hostile }), 0)?;
    // Then invocation only, no import linked: each call is refused at link, after its start
    // and one decision per import are recorded (many entries, quickly).
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n",
    )?;
    while host.entries()?.len() < 105 {
        host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
            .expect(7, "hello.greet refused at link")?;
    }
    let all = host.entries()?;
    let default = host.ok(&["log", "show", "--json"])?;
    let lines: Vec<&str> = default.lines().collect();
    ensure!(
        lines.len() == 100,
        "log show --json printed {} lines where the default limit is 100",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        let j: Json = serde_json::from_str(line).map_err(|e| failed(format!("line {i}: {e}")))?;
        ensure!(
            j.as_object().map(|o| o.len()) == Some(2)
                && j["index"] == json!(i)
                && j["entry"] == all[i]["entry"],
            "line {i} of log show --json is not {{\"index\": {i}, \"entry\": …}}: {}",
            excerpt(line)
        );
    }
    let from = host.ok(&["log", "show", "--json", "--from", "7", "--limit", "3"])?;
    let indexes: Vec<u64> = from
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter_map(|j| j["index"].as_u64())
        .collect();
    ensure!(
        indexes == [7, 8, 9],
        "log show --json --from 7 --limit 3 printed indexes {indexes:?}"
    );
    // Without --json: six right-aligned columns, two spaces, the JSON with controls escaped.
    let plain = host.run(&["log", "show", "--limit", "1000"])?;
    plain.expect(0, "log show")?;
    let lines: Vec<&str> = plain.stdout.lines().collect();
    ensure!(
        lines.len() == all.len(),
        "log show printed {} lines for {} entries",
        lines.len(),
        all.len()
    );
    for (i, line) in lines.iter().enumerate() {
        ensure!(
            line.len() > 8 && line[..6] == format!("{i:>6}") && &line[6..8] == "  ",
            "line {i} does not begin with the index right-aligned in six columns and two spaces: {}",
            excerpt(line)
        );
        ensure!(
            !line.chars().any(|c| c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)),
            "line {i} holds a raw control character or bidirectional override"
        );
        let j: Json = serde_json::from_str(&line[8..]).map_err(|e| {
            failed(format!(
                "line {i} of log show is not JSON after the index: {e}"
            ))
        })?;
        ensure!(
            j == all[i]["entry"],
            "line {i} of log show does not parse as the same entry as log show --json"
        );
    }
    ensure!(
        ["\\u001b", "\\u202e", "\\u0007", "\\u0085", "\\u2066"]
            .iter()
            .all(|e| plain.stdout.contains(e)),
        "the controls and overrides are not shown as \\u001b, \\u202e, \\u0007, \\u0085, \\u2066"
    );
    Ok(())
}

fn invocation_start_names_everything(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke(
        "add",
        &json!({ "a": 1, "b": 2 }),
        &["--group", "ops", "--fuel", "7000000"],
    )?
    .expect(0, "add in group ops")?;
    host.invoke("spin", &json!({}), &["--fuel", "200000"])?
        .expect(4, "spin")?;
    std::fs::remove_dir_all(host.data.path().join("policy")).map_err(|e| failed(e.to_string()))?;
    host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ])?
    .expect(7, "hello.greet as agent:bot under the default policy")?;
    let list: Json = serde_json::from_str(&host.ok(&["capability", "list", "--json"])?)
        .map_err(|e| failed(format!("capability list --json: {e}")))?;
    let manifest = list
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|c| c["sha256"] == json!(hex(&sha256(crate::GUEST))))
        })
        .map(|c| c["manifest_sha256"].clone())
        .ok_or_else(|| {
            failed(format!(
                "capability list --json does not list the guest: {list}"
            ))
        })?;
    let entries = host.entries()?;
    let start = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "invocation-start")
        .ok_or_else(|| failed("no invocation start"))?;
    let component = hex(&sha256(crate::GUEST));
    for (name, want) in [
        ("principal", json!("FemtoClaw::User::\"local\"")),
        ("groups", json!(["ops"])),
        ("capability", json!("conformance")),
        ("version", json!("1.0.0")),
        ("component_sha256", json!(component)),
        ("manifest_sha256", manifest),
        ("function", json!("add")),
        ("fuel_budget", json!(7_000_000)),
    ] {
        ensure!(
            start[name] == want,
            "the invocation start's {name} is {} where {want} is required",
            start[name]
        );
    }
    ensure!(
        start["args"].to_string().contains("\"a\"") && start["args"].to_string().contains("\"b\""),
        "the start does not record the arguments a and b: {}",
        start["args"]
    );
    for name in ["wit_world", "wasmtime_version"] {
        ensure!(
            start[name].as_str().is_some_and(|v| !v.is_empty()),
            "the start names no {name}: {start}"
        );
    }
    ensure!(
        start["wasmtime_version"].as_str().is_some_and(
            |v| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok())
        ),
        "the start's wasmtime version is not an exact version: {}",
        start["wasmtime_version"]
    );
    for name in ["engine_digest", "policy_digest"] {
        ensure!(
            start[name].as_str().is_some_and(|v| v.len() == 64),
            "the start names no {name}: {start}"
        );
    }
    // Every entry of an invocation carries its number.
    for e in &entries {
        let e = &e["entry"];
        let own = [
            "invocation-start",
            "host-call",
            "host-call-intent",
            "decision",
            "trap",
            "invocation-end",
        ];
        if own.contains(&e["type"].as_str().unwrap_or("")) {
            ensure!(
                e["invocation"].is_u64(),
                "an entry of an invocation carries no invocation number: {e}"
            );
        }
    }
    let trap = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "trap");
    ensure!(
        trap.is_some_and(|t| t["kind"] == "fuel-exhausted" && t["fuel_consumed"] == json!(200_000)),
        "the fuel exhaustion is not recorded as a fuel-exhausted trap with the fuel consumed: {trap:?}"
    );
    ensure!(
        entries
            .iter()
            .map(|e| &e["entry"])
            .any(|e| e["type"] == "decision"
                && e["action"] == "invoke"
                && e["resource"] == "hello@0.1.0"
                && e["allowed"] == json!(false)),
        "the denial of hello.greet is not recorded as a decision invoke on hello@0.1.0, allowed false"
    );
    Ok(())
}

fn proof_pins_key_index_and_entry(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let key = key_text(&host)?;
    let other = target.host()?;
    other.ok(&["key", "generate"])?;
    let other_key = key_text(&other)?;
    let checkpoint = host.ok(&["log", "checkpoint"])?;
    ensure!(
        checkpoint.ends_with('\n') && checkpoint.contains("\n\n\u{2014} "),
        "log checkpoint does not print a signed note: {}",
        excerpt(&checkpoint)
    );
    ensure!(
        read(&host.data.path().join("latest-checkpoint"))
            .map(|b| b == checkpoint.as_bytes())
            .unwrap_or(true),
        "log checkpoint is not byte for byte the latest checkpoint"
    );
    let proof = host.ok(&["log", "prove", "4"])?;
    ensure!(
        proof.ends_with(&checkpoint),
        "the proof does not carry the latest checkpoint verbatim"
    );
    let proof_file = host.file("honest.proof", proof.as_bytes())?;
    let verify =
        |file: &Path, key: &str| host.run(&["log", "verify-proof", &s(file), "--key", key]);
    verify(&proof_file, &key)?.expect(0, "log verify-proof of an honest proof")?;
    // Verifying needs the proof and the key alone: another data directory.
    other
        .run(&["log", "verify-proof", &s(&proof_file), "--key", &key])?
        .expect(0, "log verify-proof on another data directory")?;
    verify(&proof_file, &other_key)?.expect(8, "log verify-proof with another key")?;
    // Another index.
    let moved = proof.replacen("\nindex 4\n", "\nindex 3\n", 1);
    ensure!(
        moved != proof,
        "the proof has no `index 4` line: {}",
        excerpt(&proof)
    );
    let moved_file = host.file("moved.proof", moved.as_bytes())?;
    verify(&moved_file, &key)?.expect(8, "log verify-proof of a proof whose index was changed")?;
    let parsed = crypto::Key::parse(&key).map_err(failed)?;
    ensure!(
        crypto::proof(&moved, &parsed).is_err(),
        "a proof whose index was changed still verifies independently"
    );
    // Other entry bytes: the entry of index 3 in the proof of index 4.
    let three = host.ok(&["log", "prove", "3"])?;
    let extra3 = three
        .lines()
        .find(|l| l.starts_with("extra "))
        .unwrap_or("");
    let extra4 = proof
        .lines()
        .find(|l| l.starts_with("extra "))
        .unwrap_or("");
    let swapped = proof.replacen(extra4, extra3, 1);
    let swapped_file = host.file("swapped.proof", swapped.as_bytes())?;
    verify(&swapped_file, &key)?.expect(8, "log verify-proof of a proof carrying another entry")?;
    Ok(())
}

fn proof_note_grammar(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let key = key_text(&host)?;
    let proof = host.ok(&["log", "prove", "2"])?;
    let note_at = proof.find("\n\n").map(|i| i + 2).unwrap_or(0);
    let (head, note) = proof.split_at(note_at);
    let signature = note
        .lines()
        .find(|l| l.starts_with('\u{2014}'))
        .unwrap_or("")
        .to_owned();
    let name = key.split('+').next().unwrap_or("");
    let foreign = "\u{2014} someone.else/log AAAAAJ7OS1Yz3tqkXNxGdCsRK8b5sGN/gpqyxn8fAhY1zDUGyTYqPxcwk+7R9uaAGRAiB0k8MLnp3ckSQvDVUB+XPjSpzQM=";
    let other_id = {
        // A signature with the pinned key's name and id whose bytes do not verify.
        let encoded = signature.rsplit(' ').next().unwrap_or("");
        let mut raw = b64(encoded).map_err(failed)?;
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        format!("\u{2014} {name} {}", STANDARD.encode(raw))
    };
    let many: String = (0..101).map(|_| format!("{foreign}\n")).collect();
    let cases: Vec<(String, i32, &str)> = vec![
        (format!("{head}{note}"), 0, "the honest proof"),
        (
            format!("{head}{note}{foreign}\n"),
            0,
            "a further signature by another key",
        ),
        (
            format!("{head}{}", note.replacen(&signature, &other_id, 1)),
            8,
            "a signature by the pinned key's name and id that does not verify",
        ),
        (
            format!("{head}{}", note.replacen(&format!("{signature}\n"), "", 1)),
            8,
            "no signature",
        ),
        (
            format!("{head}{}", note.trim_end_matches('\n')),
            8,
            "no final newline",
        ),
        (
            format!("{head}{note}not a signature\n"),
            8,
            "a line that is not a signature",
        ),
        (format!("{head}{note}{many}"), 8, "more than 100 signatures"),
        (
            format!("{head}{}", note.replacen("\n\n", "\n", 1)),
            8,
            "no blank line before the signatures",
        ),
        (
            format!("{head}{}", note.replacen('\n', "\u{7}\n", 1)),
            8,
            "a control character in the note",
        ),
    ];
    for (i, (text, code, what)) in cases.iter().enumerate() {
        let file = host.file(&format!("note{i}.proof"), text.as_bytes())?;
        host.run(&["log", "verify-proof", &s(&file), "--key", &key])?
            .expect(*code, &format!("log verify-proof of a proof with {what}"))?;
    }
    Ok(())
}

fn export_format(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(
        &host,
        "remember",
        json!({ "key": "big", "value": "x".repeat(20000) }),
        0,
    )?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    let key = key_text(&host)?;
    let plain = export(&host, "plain.export", &[])?;
    let full = export(&host, "full.export", &["--with-components"])?;
    let bytes = read(&full)?;
    ensure!(
        bytes.starts_with(b"FCLEDGER\x01\x01"),
        "the export does not begin with FCLEDGER, version 0x01 and the entries section"
    );
    let parsed = parse_export(&full)?;
    ensure!(
        parsed.write() == bytes,
        "the export is not framed as specification 36's table: written again it differs"
    );
    let entries = host.entries()?;
    ensure!(
        parsed.entries.len() == entries.len(),
        "the export holds {} entries; the ledger {}",
        parsed.entries.len(),
        entries.len()
    );
    let run = host.run(&["log", "verify"])?;
    let checkpoints = run
        .stdout
        .split(" entries, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    ensure!(
        checkpoints == Some(parsed.checkpoints.len()),
        "the export holds {} checkpoints; log verify counted {checkpoints:?}",
        parsed.checkpoints.len()
    );
    ensure!(
        parsed.checkpoints.last().map(|c| c.as_slice())
            == Some(host.ok(&["log", "checkpoint"])?.as_bytes()),
        "the export's last checkpoint is not the latest, byte for byte"
    );
    let components = parsed.components.clone().unwrap_or_default();
    ensure!(
        components.len() == 1
            && components[0].0 == sha256(crate::GUEST)
            && components[0].1 == crate::GUEST,
        "--with-components must add the component the invocations ran, by its SHA-256"
    );
    ensure!(
        parse_export(&plain)?
            .components
            .is_none_or(|c| c.is_empty()),
        "an export without --with-components carries components"
    );
    ensure!(
        parsed.blobs.as_ref().is_some_and(|b| b.len() == 1),
        "the export does not carry the blob its entries refer to"
    );
    // Verified on another data directory, with the key alone.
    let elsewhere = target.host()?;
    for file in [&plain, &full] {
        let run = verify_file(&elsewhere, file, &[&key])?;
        run.expect(0, "log verify of an export on another data directory")?;
        ensure!(
            run.stdout
                .starts_with(&format!("ok: {} entries, ", entries.len())),
            "log verify of the export does not say ok: {} entries: {}",
            entries.len(),
            excerpt(&run.stdout)
        );
    }
    // Without its components or blobs sections an export still verifies; a component or blob
    // whose bytes do not match its digest does not.
    let mut bare = parsed.clone();
    bare.components = None;
    bare.blobs = None;
    let bare_file = host.file("bare.export", &bare.write())?;
    verify_file(&elsewhere, &bare_file, &[&key])?
        .expect(0, "an export without components and blobs")?;
    let mut forged = parsed.clone();
    if let Some(c) = forged.components.as_mut() {
        c[0].1[1000] ^= 0x01;
    }
    let forged_file = host.file("component.export", &forged.write())?;
    verify_file(&elsewhere, &forged_file, &[&key])?
        .expect(8, "an export whose component does not match its SHA-256")?;
    let mut forged = parsed.clone();
    if let Some(b) = forged.blobs.as_mut() {
        b[0].1[10] ^= 0x01;
    }
    let forged_file = host.file("blob.export", &forged.write())?;
    verify_file(&elsewhere, &forged_file, &[&key])?
        .expect(8, "an export whose blob does not match its SHA-256")?;
    // A changed magic or version byte.
    for (at, what) in [(0, "magic"), (8, "version byte")] {
        let mut changed = bytes.clone();
        changed[at] ^= 0x02;
        let file = host.file("header.export", &changed)?;
        verify_file(&elsewhere, &file, &[&key])?
            .expect(8, &format!("an export with its {what} changed"))?;
    }
    Ok(())
}

fn export_damage_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "x" }), 0)?;
    let key = key_text(&host)?;
    let file = export(&host, "small.export", &["--with-components"])?;
    let bytes = read(&file)?;
    let parsed = parse_export(&file)?;
    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    // Cut at bytes all along the file, the component's bytes included.
    let step = (bytes.len() / 40).max(1);
    for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        damaged.push((format!("cut at byte {cut}"), bytes[..cut].to_vec()));
    }
    // One bit flipped in every section.
    let component_at = bytes.len() - crate::GUEST.len() / 2;
    for at in [
        3,
        8,
        9,
        12,
        20,
        40,
        100,
        200,
        400,
        bytes.len() / 3,
        component_at,
        bytes.len() - 1,
    ] {
        for bit in [0, 7] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << bit;
            damaged.push((format!("bit {bit} of byte {at} flipped"), flipped));
        }
    }
    // Sections out of order, an unknown section, bytes after the end marker.
    let mut w = parsed.write();
    w.push(0x00);
    damaged.push(("a byte after the end marker".into(), w));
    let mut unknown = parsed.clone();
    unknown.components = None;
    let mut w = unknown.write();
    w.pop();
    w.extend_from_slice(&[0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
    damaged.push(("an unknown section 0x07".into(), w));
    let entries_section = {
        let mut e = Enc(Vec::new());
        e.u8(0x01);
        e.u64(parsed.entries.len() as u64);
        for entry in &parsed.entries {
            e.bytes(entry);
        }
        e.0
    };
    let mut swapped = Enc(b"FCLEDGER\x01".to_vec());
    swapped.u8(0x02);
    swapped.u64(parsed.checkpoints.len() as u64);
    for c in &parsed.checkpoints {
        swapped.bytes(c);
    }
    swapped.0.extend_from_slice(&entries_section);
    swapped.u8(0xff);
    damaged.push((
        "the checkpoints section before the entries".into(),
        swapped.0,
    ));
    let elsewhere = target.host()?;
    for (what, bytes) in damaged {
        let file = host.file("damaged.export", &bytes)?;
        let run = verify_file(&elsewhere, &file, &[&key])?;
        ensure!(
            run.code == 8,
            "log verify of an export with {what}: exit {} where 8 (integrity) is required; stderr: {}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn root_mismatch_names_batch(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    call(&host, "echo", json!({ "text": "two" }), 0)?;
    call(&host, "echo", json!({ "text": "six" }), 0)?;
    let key = key_text(&host)?;
    let file = export(&host, "honest.export", &[])?;
    let parsed = parse_export(&file)?;
    let sizes: Vec<u64> = parsed
        .checkpoints
        .iter()
        .filter_map(|c| {
            String::from_utf8_lossy(c)
                .lines()
                .nth(1)
                .and_then(|n| n.parse().ok())
        })
        .collect();
    // The entry `echo two` started: alter it, remove it, repeat it, swap it with its neighbour.
    let target_index = host
        .entries()?
        .iter()
        .position(|e| {
            e["entry"]["type"] == "invocation-start" && e["entry"]["invocation"] == json!(1)
        })
        .ok_or_else(|| failed("no start of invocation 1"))?;
    let first_covering = *sizes
        .iter()
        .find(|s| **s > target_index as u64)
        .ok_or_else(|| failed("no checkpoint covers the entry"))?;
    let previous = sizes
        .iter()
        .filter(|s| **s <= target_index as u64)
        .max()
        .copied()
        .unwrap_or(0);
    let mut altered = parsed.clone();
    let entry = &mut altered.entries[target_index];
    let at = entry
        .windows(4)
        .position(|w| w == b"echo")
        .unwrap_or(entry.len() - 1);
    entry[at] = b'E';
    let mut removed = parsed.clone();
    removed.entries.remove(target_index);
    let mut added = parsed.clone();
    added
        .entries
        .insert(target_index, parsed.entries[target_index].clone());
    let mut reordered = parsed.clone();
    reordered.entries.swap(target_index, target_index + 1);
    let elsewhere = target.host()?;
    for (what, export) in [
        ("altered", altered),
        ("removed", removed),
        ("added", added),
        ("reordered", reordered),
    ] {
        let file = host.file("changed.export", &export.write())?;
        let run = verify_file(&elsewhere, &file, &[&key])?;
        run.expect(8, &format!("log verify of an export with an entry {what}"))?;
        let range = format!("{previous}..{first_covering}");
        ensure!(
            run.stderr.contains("ledger verification failed") && run.stderr.contains(&range),
            "an entry {what}: the failure must say `ledger verification failed` and name the batch {range} whose root no longer matches: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn verify_trusts_no_logged_key(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    call(&host, "echo", json!({ "text": "one" }), 0)?;
    let key = key_text(&host)?;
    let other = target.host()?;
    other.ok(&["key", "generate"])?;
    let other_key = key_text(&other)?;
    let file = export(&host, "ledger.export", &[])?;
    let entries = host.entries()?.len();
    let run = verify_file(&other, &file, &[&key])?;
    run.expect(0, "log verify of an export with its signer's key")?;
    ensure!(
        run.stdout.starts_with(&format!("ok: {entries} entries, "))
            && run.stdout.contains(" checkpoints verified"),
        "log verify does not print `ok: {entries} entries, M checkpoints verified`: {}",
        excerpt(&run.stdout)
    );
    // The export carries its key in its first key change; verification must not trust it.
    for run in [
        verify_file(&other, &file, &[&other_key])?,
        host.run(&["log", "verify", "--key", &other_key])?,
    ] {
        run.expect(8, "log verify with a key other than the signer's")?;
        ensure!(
            run.stderr.contains("not signed by a pinned key"),
            "the failure does not say the checkpoint is signed by an unknown key: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn key_rotation(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let first = host.ok(&["key", "generate", "--name", "conformance.example/log"])?;
    let first = first.trim().to_owned();
    let parsed = crypto::Key::parse(&first)
        .map_err(|e| failed(format!("key generate printed {first:?}: {e}")))?;
    ensure!(
        parsed.name == "conformance.example/log",
        "the key is named {}, not conformance.example/log",
        parsed.name
    );
    ensure!(
        key_text(&host)? == first,
        "key show does not print the key key generate made"
    );
    host.install()?;
    call(&host, "echo", json!({ "text": "before" }), 0)?;
    host.run(&["log", "verify", "--key", &first])?
        .expect(0, "log verify with the first key alone")?;
    let before = host.entries()?.len();
    let second = host.ok(&["key", "generate", "--name", "conformance.example/log"])?;
    let second = second.trim().to_owned();
    crypto::Key::parse(&second).map_err(|e| failed(format!("the rotated key {second:?}: {e}")))?;
    ensure!(second != first, "a rotation printed the same key");
    ensure!(
        key_text(&host)? == second,
        "key show does not print the new key after a rotation"
    );
    call(&host, "echo", json!({ "text": "after" }), 0)?;
    let entries = host.entries()?;
    let changes: Vec<&Json> = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "key-change")
        .collect();
    ensure!(
        changes.len() == 2,
        "one rotation must leave two key changes; the ledger holds {}",
        changes.len()
    );
    ensure!(
        changes[0]["old_key_id"].is_null() && changes[0]["new_verifier_key"] == json!(first),
        "the first key change must name the first key with no old key id: {}",
        changes[0]
    );
    let first_id = first.split('+').nth(1).unwrap_or("");
    ensure!(
        changes[1]["old_key_id"] == json!(first_id)
            && changes[1]["new_verifier_key"] == json!(second),
        "the rotation's key change must name the old key id {first_id} and the new key: {}",
        changes[1]
    );
    // The rotation is signed under the old key; later checkpoints under the new one.
    let at = entries
        .iter()
        .position(|e| e["entry"] == *changes[1])
        .unwrap_or(before);
    let old = crypto::Key::parse(&first).map_err(failed)?;
    let new = crypto::Key::parse(&second).map_err(failed)?;
    let proof = host.ok(&["log", "prove", &at.to_string()])?;
    crypto::proof(&proof, &new)
        .map_err(|e| failed(format!("the latest checkpoint by the new key: {e}")))?;
    let file = export(&host, "rotated.export", &[])?;
    let parsed = parse_export(&file)?;
    for note in &parsed.checkpoints {
        let note = String::from_utf8_lossy(note);
        let size: usize = note
            .lines()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let key = if size <= at + 1 { &old } else { &new };
        crypto::checkpoint(&note, key).map_err(|e| {
            failed(format!(
                "the checkpoint of size {size} is not signed by the key in force (rotation at {at}): {e}"
            ))
        })?;
    }
    let all = host.ok(&["key", "show", "--all"])?;
    ensure!(
        all.lines().collect::<Vec<_>>() == [first.as_str(), second.as_str()],
        "key show --all must print the first and the new key, oldest first: {}",
        excerpt(&all)
    );
    let elsewhere = target.host()?;
    verify_file(&elsewhere, &file, &[&first, &second])?
        .expect(0, "log verify pinning both keys")?;
    verify_file(&elsewhere, &file, &[&second])?
        .expect(8, "log verify pinning the new key alone")?;
    host.run(&["log", "verify"])?
        .expect(0, "log verify without --key of a rotated ledger")?;
    Ok(())
}

fn key_file_and_names(target: &Target) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    for bad in ["", "a+b", "a b", "a\tb", "a\u{7}b"] {
        let host = target.host()?;
        let run = host.run(&["key", "generate", "--name", bad])?;
        ensure!(run.code != 0, "key generate --name {bad:?} was accepted");
        let left: Vec<_> = std::fs::read_dir(host.data.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        ensure!(
            !host.data.path().join("keys/ledger-signing.key").exists()
                && !host.data.path().join("ledger").exists(),
            "key generate --name {bad:?} wrote to the data directory: {left:?}"
        );
    }
    let host = target.host()?;
    let printed = host.ok(&["key", "generate"])?;
    let path = host.data.path().join("keys/ledger-signing.key");
    let mode = std::fs::metadata(&path)
        .map_err(|e| failed(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    ensure!(
        mode & 0o777 == 0o600,
        "the key file has mode {:o}, not 600",
        mode & 0o777
    );
    ensure!(
        key_text(&host)? == printed.trim(),
        "the key file does not load back as the key key generate printed"
    );
    Ok(())
}
