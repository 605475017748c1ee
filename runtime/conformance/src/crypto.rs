//! An independent verifier of what a target publishes: C2SP signed notes with an Ed25519
//! verifier key, checkpoints, and RFC 6962 inclusion proofs in C2SP `tlog-proof@v1` form. The
//! cases check the target's signatures and proofs with this code, never with the target's own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// A verifier key `<name>+<8 hex key id>+<base64(0x01 ‖ public key)>`.
#[derive(Debug)]
pub struct Key {
    pub name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl Key {
    pub fn parse(text: &str) -> Result<Key, String> {
        let text = text.trim();
        // The name holds no `+`; the base64 key may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hex_id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("{text:?} is not a verifier key name+id+key"));
        };
        let raw = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the verifier key's key is not base64: {e}"))?;
        let [0x01, public @ ..] = raw.as_slice() else {
            return Err("the verifier key is not an Ed25519 (0x01) key".into());
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| "the verifier key's Ed25519 key is not 32 bytes".to_owned())?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| format!("the verifier key is not a valid Ed25519 point: {e}"))?;
        let id = key_id(name, &public);
        if hex(&id) != hex_id {
            return Err(format!(
                "the verifier key's id {hex_id} is not SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4] = {}",
                hex(&id)
            ));
        }
        Ok(Key {
            name: name.to_owned(),
            id,
            key,
        })
    }
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hash = Sha256::new();
    hash.update(name.as_bytes());
    hash.update([0x0A, 0x01]);
    hash.update(public);
    let digest = hash.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint whose signature by the key verified.
#[derive(Debug)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

/// Verifies a signed checkpoint note: the body's signature by `key`, then the body's three
/// lines (origin, tree size, base64 root).
pub fn checkpoint(note: &str, key: &Key) -> Result<Checkpoint, String> {
    let Some(split) = note.find("\n\n") else {
        return Err("the note has no blank line between body and signatures".into());
    };
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    let mut signed = false;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(format!("{line:?} is not a signature line `— name base64`"));
        };
        let Some((name, encoded)) = rest.split_once(' ') else {
            return Err(format!("{line:?} is not a signature line `— name base64`"));
        };
        let raw = STANDARD
            .decode(encoded)
            .map_err(|e| format!("a signature is not base64: {e}"))?;
        if name != key.name || raw.len() != 68 || raw[..4] != key.id {
            continue;
        }
        let signature = Signature::from_slice(&raw[4..]).map_err(|e| e.to_string())?;
        key.key
            .verify(body.as_bytes(), &signature)
            .map_err(|_| "the checkpoint's signature by the pinned key does not verify")?;
        signed = true;
    }
    if !signed {
        return Err(format!("no signature by the pinned key {}", key.name));
    }
    let lines: Vec<&str> = body.lines().collect();
    let [origin, size, root, ..] = lines.as_slice() else {
        return Err("the checkpoint body has fewer than three lines".into());
    };
    let size = size
        .parse()
        .map_err(|_| format!("the tree size {size:?} is not a number"))?;
    let root: [u8; 32] = STANDARD
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or("the root is not 32 base64 bytes")?;
    Ok(Checkpoint {
        origin: (*origin).to_owned(),
        size,
        root,
    })
}

/// Verifies a `tlog-proof@v1`: its checkpoint by `key`, then the entry (`extra`) at `index`
/// against the checkpoint's root. The verified entry bytes and checkpoint.
pub fn proof(text: &str, key: &Key) -> Result<(u64, Vec<u8>, Checkpoint), String> {
    let Some(split) = text.find("\n\n") else {
        return Err("the proof has no blank line before its checkpoint".into());
    };
    let (head, note) = (&text[..split], &text[split + 2..]);
    let mut lines = head.lines();
    if lines.next() != Some("c2sp.org/tlog-proof@v1") {
        return Err("the proof does not begin `c2sp.org/tlog-proof@v1`".into());
    }
    let mut entry = None;
    let mut index = None;
    let mut path = Vec::new();
    for line in lines {
        if let Some(extra) = line.strip_prefix("extra ") {
            entry = Some(
                STANDARD
                    .decode(extra)
                    .map_err(|e| format!("extra is not base64: {e}"))?,
            );
        } else if let Some(n) = line.strip_prefix("index ") {
            index = Some(n.parse::<u64>().map_err(|_| format!("index {n:?}"))?);
        } else {
            let hash: [u8; 32] = STANDARD
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| format!("{line:?} is not a base64 hash"))?;
            path.push(hash);
        }
    }
    let (Some(entry), Some(index)) = (entry, index) else {
        return Err("the proof lacks its extra or index line".into());
    };
    let checkpoint = checkpoint(note, key)?;
    let leaf = node(&[0x00], &entry, &[]);
    let root = inclusion_root(index, checkpoint.size, leaf, &path)
        .ok_or("the inclusion path does not fit the index and tree size")?;
    if root != checkpoint.root {
        return Err("the inclusion path does not lead to the checkpoint's root".into());
    }
    Ok((index, entry, checkpoint))
}

fn node(prefix: &[u8], left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(prefix);
    hash.update(left);
    hash.update(right);
    hash.finalize().into()
}

/// RFC 9162 §2.1.3.2: the root an inclusion path gives for leaf `index` of a tree of `size`.
fn inclusion_root(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node(&[0x01], p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&[0x01], &r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}
