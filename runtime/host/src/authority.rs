//! Who may invoke what: the policy in force, principals, and the grant of one capability.
//!
//! The policy is read from `--policy` (a `.cedar` file or a directory of them), else from
//! `<data dir>/policy/` when it exists, else the embedded default policy. It is re-read whenever
//! its files change, so a changed policy takes effect on the next invocation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use femtoclaw_policy::{CapabilityRef, Grant, GrantCache, PolicySet, Principal, PrincipalKind};
use femtoclaw_sandbox::catalog::Entry;

use crate::exit::{Code, Failure};

/// The policy files with their modification times and sizes: what "changed" means.
type Stamp = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The embedded default policy.
    Default,
    /// A `.cedar` file or a directory of them.
    Path(PathBuf),
}

impl Source {
    /// `--policy` if given, else `<data dir>/policy` if present, else the default.
    pub fn locate(flag: Option<&Path>, data_dir: &Path) -> Self {
        match flag {
            Some(path) => Source::Path(path.to_owned()),
            None if data_dir.join("policy").exists() => Source::Path(data_dir.join("policy")),
            None => Source::Default,
        }
    }

    /// Loads and validates the policy set.
    pub fn load(&self) -> Result<PolicySet, Failure> {
        let loaded = match self {
            Source::Default => PolicySet::default_policy(),
            Source::Path(path) if path.is_dir() => PolicySet::from_dir(path),
            Source::Path(path) => PolicySet::from_file(path),
        };
        loaded.map_err(|e| Failure::new(Code::InvalidArgs, e))
    }

    fn stamp(&self) -> Stamp {
        let Source::Path(path) = self else {
            return Vec::new();
        };
        let files = if path.is_dir() {
            std::fs::read_dir(path)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![path.clone()]
        };
        let mut stamp: Vec<_> = files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok();
                let modified = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.map_or(0, |m| m.len());
                (f, modified, len)
            })
            .collect();
        stamp.sort();
        stamp
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default policy (embedded)"),
            Source::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The policy in force, reloaded when its files change, and the link-time grants it made.
pub struct Authority {
    source: Source,
    current: Mutex<(Stamp, PolicySet)>,
    grants: GrantCache,
}

impl Authority {
    /// Loads the policy from `source`.
    pub fn new(source: Source) -> Result<Self, Failure> {
        let policy = source.load()?;
        Ok(Self {
            current: Mutex::new((source.stamp(), policy)),
            source,
            grants: GrantCache::default(),
        })
    }

    /// Where the policy comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The policy in force now (re-read if any of its files changed).
    pub fn policy(&self) -> Result<PolicySet, Failure> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = self.source.stamp();
        if stamp != current.0 {
            let policy = self.source.load()?;
            self.grants.retain_policy(&policy.digest());
            *current = (stamp, policy);
        }
        Ok(current.1.clone())
    }

    /// The grant of `entry` for `principal` given the component's `imports` (cached per policy
    /// digest, principal, capability digest and manifest).
    pub fn grant(
        &self,
        policy: &PolicySet,
        principal: &Principal,
        entry: &Entry,
        imports: &[String],
    ) -> Arc<Grant> {
        self.grants.get_or_grant(
            policy,
            principal,
            &capability_ref(entry),
            &entry.manifest.requests,
            imports.iter().map(String::as_str),
        )
    }
}

/// The policy's view of a catalog entry.
pub fn capability_ref(entry: &Entry) -> CapabilityRef {
    CapabilityRef::new(
        entry.manifest.name.clone(),
        entry.manifest.version.clone(),
        entry.sha256.clone(),
        entry.manifest.publisher.clone(),
    )
}

/// Parses `--principal`: `agent:ID`, `user:ID`, or a bare `ID` (a user); `groups` are its groups.
pub fn principal(spec: &str, groups: &[String]) -> Result<Principal, Failure> {
    let (kind, id) = match spec.split_once(':') {
        Some(("agent", id)) => (PrincipalKind::Agent, id),
        Some(("user", id)) => (PrincipalKind::User, id),
        Some((kind, _)) => {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!("principal `{spec}`: unknown kind `{kind}`; use `agent:ID` or `user:ID`"),
            ));
        }
        None => (PrincipalKind::User, spec),
    };
    if id.is_empty() {
        return Err(Failure::new(
            Code::InvalidArgs,
            format!("principal `{spec}` has an empty id"),
        ));
    }
    let base = match kind {
        PrincipalKind::Agent => Principal::agent(id),
        PrincipalKind::User => Principal::user(id),
    };
    Ok(groups.iter().fold(base, |p, g| p.with_group(g.clone())))
}

/// Operator configuration values of a capability: `<data dir>/config/<name>.toml`, a table of
/// strings. Missing file: no values.
pub fn config(data_dir: &Path, name: &str) -> Result<BTreeMap<String, String>, Failure> {
    operator_file(&data_dir.join("config").join(format!("{name}.toml")))
}

/// The fuel budget of one invocation: `requested` (`--fuel`) or the manifest's, refused
/// (naming both numbers) over the operator's `max_fuel`.
pub fn fuel_budget(requested: Option<u64>, entry: &Entry, max_fuel: u64) -> Result<u64, Failure> {
    let (fuel, source) = match requested {
        Some(fuel) => (fuel, "--fuel".to_owned()),
        None => (
            entry.manifest.fuel,
            format!("the manifest of `{}`", entry.manifest.name),
        ),
    };
    if fuel > max_fuel {
        return Err(Failure::new(
            Code::InvalidArgs,
            format!(
                "fuel budget of {fuel} ({source}) is over the operator's max_fuel of {max_fuel}"
            ),
        ));
    }
    Ok(fuel)
}

/// A TOML file the operator may write in the data directory; its default when absent. A
/// malformed one is refused naming the file and what is wrong.
fn operator_file<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            Failure::new(
                Code::InvalidArgs,
                format!("`{}`: {}", path.display(), e.to_string().trim()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(Failure::new(
            Code::Other,
            format!("`{}`: {e}", path.display()),
        )),
    }
}
