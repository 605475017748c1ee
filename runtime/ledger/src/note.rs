//! C2SP `signed-note` v1 with Ed25519 keys, and C2SP `tlog-checkpoint` v1 bodies.
//!
//! Key id = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[..4]. Verifier keys are
//! `<name>+<8 hex key id>+<base64(0x01 ‖ public key)>`; signer keys are
//! `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 ‖ seed)>` (the Go `sumdb/note` form).
//! A signature line is `— <name> <base64(key id ‖ signature)>` (em dash U+2014).

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::merkle::Hash;

/// Signature type byte for Ed25519 in the signed-note specification.
const ALG_ED25519: u8 = 0x01;

/// The em dash that starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Most signature lines a note may carry (the Go implementation's limit).
const MAX_SIGNATURES: usize = 100;

/// File name of the private key written by [`generate_key`].
pub const KEY_FILE_NAME: &str = "ledger-signing.key";

/// Why a key cannot be parsed, made, written or read.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The key text does not have the expected shape.
    #[error("malformed key `{0}`")]
    Malformed(String),
    /// A key name is empty or contains a space, a plus or a control character.
    #[error("invalid key name `{0}`")]
    BadName(String),
    /// The key id in the text does not match the key.
    #[error("key id in `{0}` does not match the key")]
    IdMismatch(String),
    /// The algorithm byte is not Ed25519.
    #[error("unsupported key algorithm `{0}`")]
    UnsupportedAlgorithm(u8),
    /// Reading or writing the key file failed.
    #[error("key file `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The operating system gave no randomness.
    #[error("no randomness for key generation: {0}")]
    Random(String),
}

/// Why a signed note does not open.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    /// Not a well-formed signed note (text, blank line, signature lines).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// No signature line carries the pinned key's name and id.
    #[error("note has no signature by key `{0}`")]
    UnknownKey(String),
    /// A signature line from the pinned key does not verify.
    #[error("invalid signature by key `{0}`")]
    BadSignature(String),
    /// The note text is not a C2SP checkpoint.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(KeyError::BadName(name.to_owned()));
    }
    Ok(())
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A pinned Ed25519 verifier key with its C2SP name and key id.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::VerifyingKey,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl fmt::Display for VerifierKey {
    /// The C2SP vkey form `<name>+<hex id>+<base64(0x01 ‖ key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = Vec::with_capacity(33);
        material.push(ALG_ED25519);
        material.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            STANDARD.encode(material)
        )
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

/// Splits `<name>+<hex id>+<base64(0x01 ‖ 32 bytes)>` (the form shared by verifier and signer
/// keys) into the name, the id and the 32 key bytes; `bad` is the error for a malformed text.
fn parse_key_parts(
    text: &str,
    bad: impl Fn() -> KeyError,
) -> Result<(&str, [u8; 4], [u8; 32]), KeyError> {
    // The base64 key material may itself contain `+`.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(material)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    check_name(name)?;
    let id = parse_id(id_hex).ok_or_else(&bad)?;
    let material = STANDARD.decode(material).map_err(|_| bad())?;
    let (&alg, bytes) = material.split_first().ok_or_else(&bad)?;
    if alg != ALG_ED25519 {
        return Err(KeyError::UnsupportedAlgorithm(alg));
    }
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    Ok((name, id, bytes))
}

impl VerifierKey {
    /// Parses the C2SP vkey form.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::Malformed(text.to_owned());
        let (name, id, public) = parse_key_parts(text, bad)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| bad())?;
        if key_id(name, &public) != id {
            return Err(KeyError::IdMismatch(text.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// A verifier key for `name` and a raw Ed25519 public key.
    pub fn from_public_key(name: &str, public: &[u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(public)
            .map_err(|_| KeyError::Malformed(hex::encode(public)))?;
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, public),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Verifies a signed note with this (pinned) key and returns its text, including the
    /// final newline. Signatures by other keys are ignored; if any signature line carries
    /// this key's name and id it must verify, and at least one must.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, sigs) = split_note(note)?;
        let mut verified = false;
        for line in sigs {
            let (name, id, sig) = parse_sig_line(line)?;
            if name != self.name || id != self.id {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&sig)
                .map_err(|_| NoteError::BadSignature(self.to_string()))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(self.to_string()))?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::UnknownKey(self.to_string()))
        }
    }
}

fn parse_id(hex_id: &str) -> Option<[u8; 4]> {
    if hex_id.len() != 8 || hex_id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut id = [0u8; 4];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    Some(id)
}

/// Splits a signed note into its text (with final newline) and its signature lines,
/// checking the grammar of the signed-note specification.
pub(crate) fn split_note(note: &str) -> Result<(&str, Vec<&str>), NoteError> {
    if note.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::Malformed("control character"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let text = note
        .get(..split + 1)
        .ok_or(NoteError::Malformed("no text"))?;
    let sigs = note
        .get(split + 2..)
        .ok_or(NoteError::Malformed("no signatures"))?;
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::Malformed("signatures do not end in a newline"));
    };
    let lines: Vec<&str> = sigs.split('\n').collect();
    if lines.is_empty() || lines.len() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("wrong number of signatures"));
    }
    for l in &lines {
        parse_sig_line(l)?;
    }
    Ok((text, lines))
}

fn parse_sig_line(line: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
        "signature line does not start with an em dash",
    ))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(NoteError::Malformed("signature line has no signature"))?;
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::Malformed("bad key name in signature line"));
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| NoteError::Malformed("signature is not base64"))?;
    if raw.len() < 5 {
        return Err(NoteError::Malformed("signature too short"));
    }
    let (id, sig) = raw.split_at(4);
    let id: [u8; 4] = id
        .try_into()
        .map_err(|_| NoteError::Malformed("signature too short"))?;
    Ok((name, id, sig.to_vec()))
}

/// An Ed25519 signing key with its C2SP name and key id.
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey {{ name: {:?}, id: {}, .. }}",
            self.name,
            hex::encode(self.id)
        )
    }
}

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut seed)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Self::from_seed(name, seed)
    }

    /// The key with the given 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim_end_matches('\n');
        let bad = || KeyError::Malformed("PRIVATE+KEY+…".to_owned());
        let rest = text.strip_prefix("PRIVATE+KEY+").ok_or_else(bad)?;
        let (name, id, seed) = parse_key_parts(rest, bad)?;
        let key = Self::from_seed(name, seed)?;
        if key.id != id {
            return Err(KeyError::IdMismatch(format!(
                "PRIVATE+KEY+{name}+{}+…",
                hex::encode(id)
            )));
        }
        Ok(key)
    }

    /// The private form `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`. Secret.
    pub fn to_private_string(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ALG_ED25519);
        material.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            STANDARD.encode(material)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs a note text (which must end in a newline and hold no blank line at its end)
    /// and returns the whole signed note.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.ends_with("\n\n") {
            return Err(NoteError::Malformed("text must end in exactly one newline"));
        }
        if text.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(NoteError::Malformed("control character"));
        }
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }

    /// The signature line (with its newline) for a note text.
    pub fn signature_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// Writes the private form to `path` with mode 0600 (write to a temporary file,
    /// fsync, rename).
    pub fn write_to_file(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        f.write_all(self.to_private_string().as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            crate::segment::sync_dir(dir).map_err(io)?;
        }
        Ok(())
    }

    /// Reads a key written by [`SigningKey::write_to_file`].
    pub fn read_from_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(text.trim_end())
    }

    /// Signs a checkpoint, giving the signed note.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, NoteError> {
        self.sign_note(&checkpoint.to_text())
    }
}

/// Generates a key named `name`, writes it to `dir/ledger-signing.key` with mode 0600
/// and returns it. An existing key file is replaced (record the rotation with an
/// [`crate::Entry::KeyChange`]).
pub fn generate_key(dir: &Path, name: &str) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate(name)?;
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    key.write_to_file(&dir.join(KEY_FILE_NAME))?;
    Ok(key)
}

/// Loads the key written by [`generate_key`] in `dir`.
pub fn load_key(dir: &Path) -> Result<SigningKey, KeyError> {
    SigningKey::read_from_file(&dir.join(KEY_FILE_NAME))
}

/// A C2SP `tlog-checkpoint` v1 body: origin, tree size, root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a checkpoint note text (extension lines are allowed and ignored).
    pub fn parse_text(text: &str) -> Result<Self, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::BadCheckpoint("text does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(NoteError::BadCheckpoint("empty origin"))?;
        let size_line = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("no tree size"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(NoteError::BadCheckpoint("bad tree size"));
        }
        let size = size_line
            .parse::<u64>()
            .map_err(|_| NoteError::BadCheckpoint("bad tree size"))?;
        let root_line = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("no root hash"))?;
        let root: Hash = STANDARD
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::BadCheckpoint("bad root hash"))?;
        if lines.any(str::is_empty) {
            return Err(NoteError::BadCheckpoint("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Opens a signed checkpoint note with the pinned key and parses its body.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, NoteError> {
        Self::parse_text(key.open(note)?)
    }

    /// Parses the body of a signed checkpoint note WITHOUT checking any signature.
    pub fn parse_unverified(note: &str) -> Result<Self, NoteError> {
        match split_note(note) {
            Ok((text, _)) => Self::parse_text(text),
            // An unsigned checkpoint is just the text.
            Err(_) => Self::parse_text(note),
        }
    }
}
