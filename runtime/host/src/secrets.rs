//! The operator's secrets: values capabilities may use (as an HTTP header the host fills in)
//! and never see.
//!
//! Each secret is one file `<data dir>/secrets/<name>`, mode 0600, in a directory of mode 0700.
//! `secret set` reads the value from stdin and never prints it; `secret list` shows names only.
//! The ledger records a use by the secret's name, never its value.

use std::path::Path;

use femtoclaw_sandbox::scrub::MAX_SECRET_BYTES;
use femtoclaw_sandbox::{SecretSource, SecretValue};

use crate::exit::{Code, Failure};
use crate::private::{PrivateDir, Replace, check_name};

/// The secret store of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PrivateDir,
}

/// The longest secret name.
const MAX_NAME: usize = 128;

impl Store {
    /// The store under `data_dir` (nothing is created until a secret is set).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: PrivateDir::new(data_dir.join("secrets")),
        }
    }

    /// Stores `value` as secret `name`, replacing any previous value.
    pub fn set(&self, name: &str, value: &str) -> Result<(), Failure> {
        check_name(name, "secret", MAX_NAME)?;
        if value.is_empty() {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!("the value of secret `{name}` is empty"),
            ));
        }
        // The scrubber searches for no longer secret, so the host would never use it.
        if value.len() > MAX_SECRET_BYTES {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!(
                    "the value of secret `{name}` is {} bytes long, more than the {MAX_SECRET_BYTES} bytes the host can scrub",
                    value.len()
                ),
            ));
        }
        self.dir.write(name, value.as_bytes(), Replace::Yes)?;
        Ok(())
    }

    /// The names of the stored secrets, sorted.
    pub fn list(&self) -> Result<Vec<String>, Failure> {
        Ok(self
            .dir
            .files()?
            .into_iter()
            .filter(|name| check_name(name, "secret", MAX_NAME).is_ok())
            .collect())
    }

    /// Removes secret `name`; an error if there is none.
    pub fn remove(&self, name: &str) -> Result<(), Failure> {
        check_name(name, "secret", MAX_NAME)?;
        if self.dir.remove(name)? {
            Ok(())
        } else {
            Err(Failure::new(
                Code::Unknown,
                format!("there is no secret named `{name}`"),
            ))
        }
    }
}

impl SecretSource for Store {
    fn secret(&self, name: &str) -> Result<Option<SecretValue>, String> {
        if check_name(name, "secret", MAX_NAME).is_err() {
            return Ok(None);
        }
        match self.dir.read(name) {
            Ok(value) => Ok(value.map(SecretValue::new)),
            Err(e) => Err(format!("the secret store: {}", e.message)),
        }
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
