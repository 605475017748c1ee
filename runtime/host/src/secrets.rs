//! The operator's secrets: values capabilities may use (as an HTTP header the host fills in)
//! and never see.
//!
//! Each secret is one file `<data dir>/secrets/<name>`, mode 0600, in a directory of mode 0700.
//! `secret set` reads the value from stdin and never prints it; `secret list` shows names only.
//! The ledger records a use by the secret's name, never its value.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use femtoclaw_sandbox::{SecretSource, SecretValue};

use crate::exit::{Code, Failure};

/// The secret store of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under `data_dir` (nothing is created until a secret is set).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("secrets"),
        }
    }

    /// Stores `value` as secret `name`, replacing any previous value.
    pub fn set(&self, name: &str, value: &str) -> Result<(), Failure> {
        check_name(name)?;
        if value.is_empty() {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!("the value of secret `{name}` is empty"),
            ));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io(&self.dir, &e))?;
        // An existing directory keeps its mode: make it private again.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io(&self.dir, &e))?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(value.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(&path, &e)
        })
    }

    /// The names of the stored secrets, sorted.
    pub fn list(&self) -> Result<Vec<String>, Failure> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, &e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(&self.dir, &e))?;
            if let Some(name) = entry.file_name().to_str()
                && check_name(name).is_ok()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes secret `name`; an error if there is none.
    pub fn remove(&self, name: &str) -> Result<(), Failure> {
        check_name(name)?;
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
                Code::Unknown,
                format!("there is no secret named `{name}`"),
            )),
            Err(e) => Err(io(&path, &e)),
        }
    }
}

impl SecretSource for Store {
    fn secret(&self, name: &str) -> Result<Option<SecretValue>, String> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        match fs::read_to_string(self.dir.join(name)) {
            Ok(value) => Ok(Some(SecretValue::new(value))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("the secret store: {e}")),
        }
    }
}

/// A secret name: 1 to 128 ASCII letters, digits, `-`, `_` or `.`, not starting with `.`.
fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            Code::InvalidArgs,
            format!(
                "`{name}` is not a secret name: use 1 to 128 ASCII letters, digits, `-`, `_` or `.`, not starting with `.`"
            ),
        ))
    }
}

/// The value read from stdin for `secret set`: everything, less one final line break.
pub fn read_value(mut input: impl std::io::Read) -> Result<String, Failure> {
    let mut value = String::new();
    input.read_to_string(&mut value).map_err(|e| {
        Failure::new(
            Code::InvalidArgs,
            format!("cannot read the secret's value from stdin (UTF-8 text expected): {e}"),
        )
    })?;
    let trimmed = value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(&value);
    Ok(trimmed.to_owned())
}

fn io(path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(Code::Other, format!("`{}`: {e}", path.display()))
}
