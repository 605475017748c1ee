//! The ledger's formats as the suite writes and reads them, from the specifications alone: the
//! canonical entry encoding of specification 23, applied to the JSON form `log show --json`
//! prints, and the export file of specification 36. Cases compare what a target exports with
//! these bytes, and forge exports with them.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value as Json;

use crate::Failure;

pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
}

pub(crate) fn field<'a>(j: &'a Json, name: &str) -> Result<&'a Json, String> {
    j.get(name)
        .ok_or_else(|| format!("no field `{name}` in {j}"))
}

pub(crate) fn num(j: &Json, name: &str) -> Result<u64, String> {
    field(j, name)?
        .as_u64()
        .ok_or_else(|| format!("`{name}` is not an unsigned integer in {j}"))
}

pub(crate) fn text<'a>(j: &'a Json, name: &str) -> Result<&'a str, String> {
    field(j, name)?
        .as_str()
        .ok_or_else(|| format!("`{name}` is not a string in {j}"))
}

pub(crate) fn hex_bytes(text: &str, len: usize) -> Result<Vec<u8>, String> {
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

pub(crate) fn b64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("{text:?} is not base64: {e}"))
}

impl Enc {
    pub(crate) fn str(&mut self, j: &Json, name: &str) -> Result<(), String> {
        let t = text(j, name)?;
        self.bytes(t.as_bytes());
        Ok(())
    }
    pub(crate) fn digest(&mut self, j: &Json, name: &str) -> Result<(), String> {
        let d = hex_bytes(text(j, name)?, 32)?;
        self.0.extend_from_slice(&d);
        Ok(())
    }
    pub(crate) fn strings(&mut self, j: &Json, name: &str) -> Result<(), String> {
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
    pub(crate) fn option(
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
    pub(crate) fn opt_value(&mut self, v: &Json) -> Result<(), String> {
        if v.is_null() {
            self.u8(0);
            Ok(())
        } else {
            self.u8(1);
            self.value(v, 0)
        }
    }

    /// A value in its JSON form `{"<kind>": payload}`.
    pub(crate) fn value(&mut self, v: &Json, depth: usize) -> Result<(), String> {
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

    pub(crate) fn args(&mut self, j: &Json) -> Result<(), String> {
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
pub(crate) const KINDS: [&str; 10] = [
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
pub(crate) fn encode(e: &Json) -> Result<Vec<u8>, String> {
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

/// Components or blobs: each SHA-256 and its bytes.
pub(crate) type Digested = Vec<([u8; 32], Vec<u8>)>;

/// An export's parts (specification 36's framing).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Export {
    pub(crate) entries: Vec<Vec<u8>>,
    pub(crate) checkpoints: Vec<Vec<u8>>,
    pub(crate) components: Option<Digested>,
    pub(crate) blobs: Option<Digested>,
}

pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| format!("the export ends inside a field at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    pub(crate) fn framed(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let count = self.u64()?;
        let mut out = Vec::new();
        for _ in 0..count {
            let len = self.u32()? as usize;
            out.push(self.take(len)?.to_vec());
        }
        Ok(out)
    }
    pub(crate) fn digested(&mut self) -> Result<Digested, String> {
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
    pub(crate) fn parse(bytes: &[u8]) -> Result<Export, String> {
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
            if let Some(first) = expected.next()
                && tag != first
            {
                return Err(format!("section {tag:#04x} where {first:#04x} must be"));
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

    /// The tree size each checkpoint claims (the note's second line).
    pub(crate) fn sizes(&self) -> Vec<u64> {
        self.checkpoints
            .iter()
            .map(|c| {
                String::from_utf8_lossy(c)
                    .lines()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    pub(crate) fn write(&self) -> Vec<u8> {
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

/// The export file at `path`, parsed.
pub(crate) fn parse_export(path: &Path) -> Result<Export, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", path.display())))?;
    Export::parse(&bytes).map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))
}
