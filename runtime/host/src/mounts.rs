//! Where a capability's granted paths live on the host.
//!
//! A capability sees a directory only when its manifest requests the path and the policy grants
//! `fs.read` on it (writable when `fs.write` is granted too). The operator decides which host
//! directory backs it, in `<data dir>/mounts.toml`:
//!
//! ```toml
//! # For every capability: the guest's `/data` is the host's `/srv/shared`.
//! "/data" = "/srv/shared"
//!
//! # For the `files` capability only (it wins over the lines above).
//! [files]
//! "/notes" = "/home/me/notes"
//! ```
//!
//! A mapping covers the paths below it (`/data/in` is `/srv/shared/in`); a relative host path
//! is relative to the data directory; a mapped directory must exist. A granted path no mapping
//! covers is `<data dir>/files/<capability>/<path>`, created on demand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use femtoclaw_policy::{PathGrant, Scope, path_covers};
use femtoclaw_sandbox::Preopen;

use crate::exit::{Code, Failure};

/// Guest path → host directory, for every capability or for one.
#[derive(Debug, Default)]
struct Mounts {
    all: BTreeMap<String, PathBuf>,
    by_capability: BTreeMap<String, BTreeMap<String, PathBuf>>,
}

/// The preopens of capability `name` for its granted `paths`: those with `fs.read` granted.
pub fn preopens(data_dir: &Path, name: &str, paths: &[PathGrant]) -> Result<Vec<Preopen>, Failure> {
    let granted: Vec<&PathGrant> = paths.iter().filter(|p| p.read).collect();
    if granted.is_empty() {
        return Ok(Vec::new());
    }
    let mounts = Mounts::load(data_dir)?;
    granted
        .into_iter()
        .map(|grant| {
            let host = match mounts.resolve(name, &grant.path) {
                Some(host) => checked(host)?,
                None => default_dir(data_dir, name, &grant.path)?,
            };
            Ok(Preopen {
                guest: grant.path.clone(),
                host,
                writable: grant.write,
            })
        })
        .collect()
}

impl Mounts {
    /// `<data dir>/mounts.toml`; none when the file is missing.
    fn load(data_dir: &Path) -> Result<Self, Failure> {
        let file = data_dir.join("mounts.toml");
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(Failure::new(
                    Code::Other,
                    format!("mounts `{}`: {e}", file.display()),
                ));
            }
        };
        let bad = |message: String| {
            Failure::new(
                Code::InvalidArgs,
                format!("mounts `{}`: {message}", file.display()),
            )
        };
        let table: BTreeMap<String, toml::Value> =
            toml::from_str(&text).map_err(|e| bad(e.to_string().trim().to_owned()))?;
        let mut mounts = Self::default();
        for (key, value) in table {
            match value {
                toml::Value::String(host) => {
                    let guest = guest_path(&key).map_err(&bad)?;
                    mounts.all.insert(guest, data_dir.join(host));
                }
                toml::Value::Table(entries) => {
                    let own = mounts.by_capability.entry(key.clone()).or_default();
                    for (guest, host) in entries {
                        let toml::Value::String(host) = host else {
                            return Err(bad(format!(
                                "`{key}.{guest}` must be a host directory (a string)"
                            )));
                        };
                        own.insert(guest_path(&guest).map_err(&bad)?, data_dir.join(host));
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "`{key}` must be a guest path mapped to a host directory, or a table named after a capability"
                    )));
                }
            }
        }
        Ok(mounts)
    }

    /// The host directory of `guest` for capability `name`: the capability's own mappings
    /// first, then everyone's; the longest mapping that covers it wins.
    fn resolve(&self, name: &str, guest: &str) -> Option<PathBuf> {
        let best = |mounts: &BTreeMap<String, PathBuf>| {
            mounts
                .iter()
                .filter(|(base, _)| path_covers(base, guest))
                .max_by_key(|(base, _)| base.len())
                .map(|(base, host)| {
                    let rest = guest.strip_prefix(base.as_str()).unwrap_or_default();
                    host.join(rest.trim_start_matches('/'))
                })
        };
        self.by_capability
            .get(name)
            .and_then(best)
            .or_else(|| best(&self.all))
    }
}

/// A mapping's guest path, normalized.
fn guest_path(text: &str) -> Result<String, String> {
    match Scope::path(text) {
        Ok(Scope::Path(path)) => Ok(path),
        Ok(_) => Err(format!("`{text}` is not a path")),
        Err(e) => Err(e.to_string()),
    }
}

/// A mapped directory, which must exist.
fn checked(host: PathBuf) -> Result<PathBuf, Failure> {
    if host.is_dir() {
        Ok(host)
    } else {
        Err(Failure::new(
            Code::Other,
            format!(
                "mounted directory `{}` does not exist or is not a directory",
                host.display()
            ),
        ))
    }
}

/// `<data dir>/files/<capability>/<guest path>`, created when missing.
fn default_dir(data_dir: &Path, name: &str, guest: &str) -> Result<PathBuf, Failure> {
    let dir = data_dir
        .join("files")
        .join(name)
        .join(guest.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::new(
            Code::Other,
            format!("cannot create `{}` for `{guest}`: {e}", dir.display()),
        )
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn grant(path: &str, write: bool) -> PathGrant {
        PathGrant {
            path: path.to_owned(),
            read: true,
            write,
        }
    }

    // Verifies: FC-SEC-2102, FC-SEC-2104
    #[test]
    fn unmapped_paths_default_under_the_data_dir_and_mappings_cover_below() {
        let data = tempfile::tempdir().unwrap();
        let shared = tempfile::tempdir().unwrap();
        std::fs::create_dir(shared.path().join("in")).unwrap();
        std::fs::write(
            data.path().join("mounts.toml"),
            format!(
                "\"/data\" = {:?}\n[other]\n\"/data\" = \"elsewhere\"\n",
                shared.path()
            ),
        )
        .unwrap();
        let got = preopens(
            data.path(),
            "files",
            &[grant("/data/in", true), grant("/scratch", false)],
        )
        .unwrap();
        assert_eq!(got[0].host, shared.path().join("in"));
        assert!(got[0].writable);
        assert_eq!(got[1].host, data.path().join("files/files/scratch"));
        assert!(got[1].host.is_dir());
        assert!(!got[1].writable);
    }

    // Verifies: FC-SEC-2105
    #[test]
    fn a_missing_mapped_directory_is_named() {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("mounts.toml"), "\"/data\" = \"nowhere\"\n").unwrap();
        let err = preopens(data.path(), "files", &[grant("/data", false)]).unwrap_err();
        assert!(err.message.contains("nowhere"), "{}", err.message);
    }
}
