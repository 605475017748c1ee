//! Capability packages: a component plus its `capability.toml` manifest, installed in the data
//! directory or embedded in the host binary.
//!
//! A capability's identity is the SHA-256 of its component bytes and the SHA-256 of its manifest
//! (what it asks for, its fuel budget, its publisher). Every load re-reads both and re-checks
//! both digests, so a component or a manifest changed on disk after `add` is refused by name;
//! both digests are recorded with every invocation.
//!
//! Layout: `<data dir>/capabilities/<name>/<version>/{component.wasm, capability.toml,
//! manifest.sha256, sha256}` (`sha256`, the component's digest, is written last: without it,
//! nothing is installed).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file of an installed capability that holds its manifest's digest.
const MANIFEST_DIGEST: &str = "manifest.sha256";

/// Default fuel budget of a capability whose manifest names none.
pub const DEFAULT_FUEL: u64 = 100_000_000;

/// Largest component accepted.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// A capability's `capability.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name agents call it by: lowercase letters, digits and `-`.
    pub name: String,
    /// Version: digits, letters, `.`, `-`, `+`.
    pub version: String,
    /// What it does, for agents and operators.
    #[serde(default)]
    pub description: String,
    /// Who publishes it (`femtoclaw` for first-party capabilities).
    #[serde(default)]
    pub publisher: String,
    /// Default fuel budget of one invocation.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// The imports and scopes the capability asks for; it gets at most these, and only what
    /// the policy also grants.
    #[serde(default)]
    pub requests: femtoclaw_policy::Requests,
}

fn default_fuel() -> u64 {
    DEFAULT_FUEL
}

/// Errors of the capability catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A manifest that does not parse or is not valid.
    #[error("manifest `{path}`: {message}")]
    Manifest {
        /// The manifest's path (or `<embedded>`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A name or version that is not allowed.
    #[error("invalid capability {what} `{value}`: {rule}")]
    InvalidName {
        /// `name` or `version`.
        what: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// No capability of that name (and version).
    #[error("unknown capability `{0}`")]
    Unknown(String),
    /// The manifest's bytes no longer match the digest recorded when it was added.
    #[error(
        "manifest `{path}` was changed after it was added: expected sha256 {expected}, found {found}"
    )]
    ManifestChanged {
        /// The file.
        path: PathBuf,
        /// Digest recorded at `add` (`none recorded` for a capability added before manifests
        /// were covered: add it again).
        expected: String,
        /// Digest of the bytes now.
        found: String,
    },
    /// The component's bytes no longer match the digest recorded when it was added.
    #[error(
        "component `{path}` was changed after it was added: expected sha256 {expected}, found {found}"
    )]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// Digest recorded at `add`.
        expected: String,
        /// Digest of the bytes now.
        found: String,
    },
    /// The file is not a WebAssembly component.
    #[error("`{0}` is not a WebAssembly component")]
    NotAComponent(String),
    /// The file is larger than allowed.
    #[error("component `{path}` is {size} bytes, over the limit of {MAX_COMPONENT_BYTES}")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The name belongs to a first-party capability.
    #[error("`{0}` is the name of a first-party capability embedded in the host")]
    Reserved(String),
    /// An installed capability claims the publisher of the embedded ones: identity is proven
    /// (by being embedded), never declared.
    #[error(
        "capability `{name}` claims the publisher `{publisher}`, which is reserved for the capabilities embedded in the host"
    )]
    ReservedPublisher {
        /// The capability.
        name: String,
        /// The publisher it claims.
        publisher: String,
    },
    /// The manifest asks for a larger fuel budget than the operator allows.
    #[error(
        "capability `{name}` asks for a fuel budget of {fuel}, over the operator's max_fuel of {max_fuel}"
    )]
    FuelOverCeiling {
        /// The capability.
        name: String,
        /// The manifest's fuel budget.
        fuel: u64,
        /// The operator's ceiling.
        max_fuel: u64,
    },
    /// The same name and version is installed already with other bytes.
    #[error("capability `{name}@{version}` is already installed with sha256 {existing}")]
    Exists {
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// The installed digest.
        existing: String,
    },
    /// Reading or writing the data directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a capability comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Embedded in the host binary (first-party).
    Embedded,
    /// Installed with `capability add`.
    Installed,
}

/// A capability in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The manifest.
    pub manifest: Manifest,
    /// SHA-256 of the component bytes, hex.
    pub sha256: String,
    /// SHA-256 of the manifest bytes (as installed, or embedded), hex.
    pub manifest_sha256: String,
    /// Where it comes from.
    pub source: Source,
    #[serde(skip)]
    location: Location,
}

#[derive(Debug, Clone)]
enum Location {
    Embedded(Builtin),
    File(PathBuf),
}

/// A capability's bytes, read and checked against its digest.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The catalog entry.
    pub entry: Entry,
    /// The component bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256.
    pub digest: [u8; 32],
    /// The SHA-256 of the manifest the entry holds, checked.
    pub manifest_digest: [u8; 32],
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Manifest {
    /// Refuses a publisher reserved for the embedded capabilities (`femtoclaw`, in any case or
    /// spacing), for a capability that is not one of them.
    fn check_publisher(&self) -> Result<(), CatalogError> {
        let reserved = femtoclaw_policy::CapabilityRef::FIRST_PARTY;
        if self.publisher.trim().eq_ignore_ascii_case(reserved) {
            return Err(CatalogError::ReservedPublisher {
                name: self.name.clone(),
                publisher: self.publisher.clone(),
            });
        }
        Ok(())
    }

    /// Parses and validates a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| CatalogError::Manifest {
            path: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// A manifest for a component added without one: the name from the file stem, `0.0.0`.
    pub fn from_stem(path: &Path) -> Result<Self, CatalogError> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_lowercase()
            .replace('_', "-");
        let manifest = Manifest {
            name: stem,
            version: "0.0.0".to_owned(),
            description: String::new(),
            publisher: String::new(),
            fuel: DEFAULT_FUEL,
            requests: femtoclaw_policy::Requests::default(),
        };
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(CatalogError::InvalidName {
                what: "name",
                value: self.name.clone(),
                rule: "1 to 64 lowercase letters, digits and `-`, starting with a letter",
            });
        }
        let version_ok = !self.version.is_empty()
            && self.version.len() <= 64
            && self.version.starts_with(|c: char| c.is_ascii_digit())
            && self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
        if !version_ok {
            return Err(CatalogError::InvalidName {
                what: "version",
                value: self.version.clone(),
                rule: "starts with a digit; letters, digits, `.`, `-` and `+` only",
            });
        }
        self.requests
            .validate()
            .map_err(|e| CatalogError::Manifest {
                path: self.name.clone(),
                message: format!("[requests]: {e}"),
            })?;
        if self.fuel == 0 {
            return Err(CatalogError::Manifest {
                path: self.name.clone(),
                message: "`fuel` must be greater than 0".to_owned(),
            });
        }
        Ok(())
    }
}

/// An embedded, first-party capability: manifest text and component bytes.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The `capability.toml` text.
    pub manifest: &'static str,
    /// The component.
    pub component: &'static [u8],
}

/// The capabilities this host can run.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    embedded: Vec<Entry>,
    /// Counts the installs and removals this catalog made, for those who watch it.
    changes: tokio::sync::watch::Sender<u64>,
}

fn is_component(bytes: &[u8]) -> bool {
    // Magic, then the component-model layer (version 0x0d, layer 1).
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

impl Catalog {
    /// Opens the catalog under `data_dir` with the given embedded capabilities.
    pub fn open(data_dir: &Path, builtins: &[Builtin]) -> Result<Self, CatalogError> {
        let embedded = builtins
            .iter()
            .map(|b| {
                Ok(Entry {
                    manifest: Manifest::parse(b.manifest, "<embedded>")?,
                    sha256: hex::encode(sha256(b.component)),
                    manifest_sha256: hex::encode(sha256(b.manifest.as_bytes())),
                    source: Source::Embedded,
                    location: Location::Embedded(*b),
                })
            })
            .collect::<Result<_, CatalogError>>()?;
        Ok(Self {
            dir: data_dir.join("capabilities"),
            embedded,
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Installs the component at `wasm` with the manifest at `manifest` (or one derived from the
    /// file name), whose fuel budget may not exceed `max_fuel`. Adding the same bytes twice is a
    /// no-op.
    pub fn add(
        &self,
        wasm: &Path,
        manifest: Option<&Path>,
        max_fuel: u64,
    ) -> Result<Entry, CatalogError> {
        let manifest = match manifest {
            Some(path) => {
                let text = fs::read_to_string(path).map_err(io(path))?;
                Manifest::parse(&text, &path.display().to_string())?
            }
            None => Manifest::from_stem(wasm)?,
        };
        if manifest.fuel > max_fuel {
            return Err(CatalogError::FuelOverCeiling {
                name: manifest.name,
                fuel: manifest.fuel,
                max_fuel,
            });
        }
        if self
            .embedded
            .iter()
            .any(|e| e.manifest.name == manifest.name)
        {
            return Err(CatalogError::Reserved(manifest.name));
        }
        manifest.check_publisher()?;
        let size = fs::metadata(wasm).map_err(io(wasm))?.len();
        if size > MAX_COMPONENT_BYTES {
            return Err(CatalogError::TooLarge {
                path: wasm.display().to_string(),
                size,
            });
        }
        let bytes = fs::read(wasm).map_err(io(wasm))?;
        if !is_component(&bytes) {
            return Err(CatalogError::NotAComponent(wasm.display().to_string()));
        }
        let digest = hex::encode(sha256(&bytes));

        let dir = self.dir.join(&manifest.name).join(&manifest.version);
        if let Ok(existing) = fs::read_to_string(dir.join("sha256")) {
            let existing = existing.trim().to_owned();
            if existing != digest {
                return Err(CatalogError::Exists {
                    name: manifest.name,
                    version: manifest.version,
                    existing,
                });
            }
        }
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let manifest_text = toml::to_string(&manifest).map_err(|e| CatalogError::Manifest {
            path: manifest.name.clone(),
            message: e.to_string(),
        })?;
        write_durably(&dir.join("component.wasm"), &bytes)?;
        write_durably(&dir.join("capability.toml"), manifest_text.as_bytes())?;
        let manifest_sha256 = hex::encode(sha256(manifest_text.as_bytes()));
        write_durably(
            &dir.join(MANIFEST_DIGEST),
            format!("{manifest_sha256}\n").as_bytes(),
        )?;
        // The digest last: a capability without it is not installed.
        write_durably(&dir.join("sha256"), format!("{digest}\n").as_bytes())?;
        self.changed();
        Ok(Entry {
            manifest,
            sha256: digest,
            manifest_sha256,
            source: Source::Installed,
            location: Location::File(dir.join("component.wasm")),
        })
    }

    /// Uninstalls `spec` (`name@version`, or `name` for its highest installed version): its
    /// digest goes first, so that a removal cut short leaves it uninstalled, then its files. An
    /// embedded capability cannot be removed. An invocation already running keeps the
    /// component it loaded.
    pub fn remove(&self, spec: &str) -> Result<Entry, CatalogError> {
        let entry = self.find(spec)?;
        let Location::File(component) = &entry.location else {
            return Err(CatalogError::Reserved(entry.manifest.name));
        };
        let dir = component.parent().unwrap_or(&self.dir);
        let digest = dir.join("sha256");
        fs::remove_file(&digest).map_err(io(&digest))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        fs::remove_dir_all(dir).map_err(io(dir))?;
        if let Some(name_dir) = dir.parent() {
            // The last version gone, its name's directory goes too; one still holding others stays.
            let _ = fs::remove_dir(name_dir);
        }
        self.changed();
        Ok(entry)
    }

    /// A watch that sees each install and removal this catalog makes (the MCP server tells
    /// its clients that their tool lists changed).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|count| *count += 1);
    }

    /// Every capability, embedded first, then installed ones by name and version.
    pub fn list(&self) -> Result<Vec<Entry>, CatalogError> {
        let mut all = self.embedded.clone();
        let mut installed = Vec::new();
        let names = match fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        for name in names {
            let name = name.map_err(io(&self.dir))?.path();
            let Ok(versions) = fs::read_dir(&name) else {
                continue;
            };
            for version in versions {
                let dir = version.map_err(io(&name))?.path();
                let Ok(digest) = fs::read_to_string(dir.join("sha256")) else {
                    continue; // an interrupted `add`: not installed
                };
                let manifest_path = dir.join("capability.toml");
                let text = fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
                let manifest_sha256 = fs::read_to_string(dir.join(MANIFEST_DIGEST))
                    .map(|d| d.trim().to_owned())
                    .unwrap_or_default();
                installed.push(Entry {
                    manifest: Manifest::parse(&text, &manifest_path.display().to_string())?,
                    sha256: digest.trim().to_owned(),
                    manifest_sha256,
                    source: Source::Installed,
                    location: Location::File(dir.join("component.wasm")),
                });
            }
        }
        installed.sort_by(|a, b| {
            (&a.manifest.name, version_key(&a.manifest.version))
                .cmp(&(&b.manifest.name, version_key(&b.manifest.version)))
        });
        all.extend(installed);
        Ok(all)
    }

    /// Finds `name` (highest version) or `name@version`.
    pub fn find(&self, spec: &str) -> Result<Entry, CatalogError> {
        let (name, version) = match spec.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        self.list()?
            .into_iter()
            .filter(|e| e.manifest.name == name && version.is_none_or(|v| e.manifest.version == v))
            .max_by(|a, b| version_key(&a.manifest.version).cmp(&version_key(&b.manifest.version)))
            .ok_or_else(|| CatalogError::Unknown(spec.to_owned()))
    }

    /// Reads the component and the manifest of `entry` and checks their digests; the entry
    /// returned holds the manifest read from the checked bytes.
    pub fn load(&self, entry: &Entry) -> Result<Loaded, CatalogError> {
        let mut entry = entry.clone();
        let manifest_digest = match &entry.location {
            Location::Embedded(builtin) => sha256(builtin.manifest.as_bytes()),
            Location::File(component) => {
                let path = component.with_file_name("capability.toml");
                let bytes = fs::read(&path).map_err(io(&path))?;
                let digest = sha256(&bytes);
                if hex::encode(digest) != entry.manifest_sha256 {
                    return Err(CatalogError::ManifestChanged {
                        path,
                        expected: match entry.manifest_sha256.as_str() {
                            "" => "none recorded".to_owned(),
                            recorded => recorded.to_owned(),
                        },
                        found: hex::encode(digest),
                    });
                }
                let text = String::from_utf8_lossy(&bytes);
                entry.manifest = Manifest::parse(&text, &path.display().to_string())?;
                // One installed before the publisher was reserved gains nothing by it either.
                entry.manifest.check_publisher()?;
                digest
            }
        };
        let bytes = match &entry.location {
            Location::Embedded(builtin) => builtin.component.to_vec(),
            Location::File(path) => fs::read(path).map_err(io(path))?,
        };
        let digest = sha256(&bytes);
        if hex::encode(digest) != entry.sha256 {
            let path = match &entry.location {
                Location::File(p) => p.clone(),
                Location::Embedded(_) => PathBuf::from("<embedded>"),
            };
            return Err(CatalogError::DigestMismatch {
                path,
                expected: entry.sha256.clone(),
                found: hex::encode(digest),
            });
        }
        Ok(Loaded {
            entry,
            bytes,
            digest,
            manifest_digest,
        })
    }
}

/// Orders versions numerically by their dotted parts (`0.10.0` after `0.9.1`).
fn version_key(version: &str) -> Vec<(u64, String)> {
    version
        .split(['.', '-', '+'])
        .map(|part| (part.parse().unwrap_or(u64::MAX), part.to_owned()))
        .collect()
}

/// Writes `path` through a temporary file (named per process and per write, so two hosts, or
/// two threads of one, writing the same file never share one), fsync'd, then renamed into place.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{write}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}
