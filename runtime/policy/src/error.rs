//! Errors: loading a policy set, and malformed manifest requests.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One problem found in a policy file, located by file, line and column (both from 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file name (or the name given to [`crate::PolicySet::from_str`]).
    pub file: String,
    /// Line, counted from 1.
    pub line: usize,
    /// Column in characters, counted from 1.
    pub column: usize,
    /// The id of the policy the problem is in, when known.
    pub policy_id: Option<String>,
    /// Cedar's message (with its hint, when it gives one).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy file `{}` line {}, column {}: ",
            self.file, self.line, self.column
        )?;
        if let Some(id) = &self.policy_id {
            // Cedar's validation messages already name the policy.
            if !self.message.contains(&format!("`{id}`")) {
                write!(f, "policy `{id}`: ")?;
            }
        }
        f.write_str(&self.message)
    }
}

/// Problems found while loading a policy set; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// The problems, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_first() {
            None => f.write_str("no problem recorded"),
            Some((first, rest)) => {
                write!(f, "{first}")?;
                if !rest.is_empty() {
                    write!(f, " (and {} more)", rest.len())?;
                }
                Ok(())
            }
        }
    }
}

/// Loading a policy set failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy file could not be read.
    #[error("cannot read policy file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A policy directory could not be listed.
    #[error("cannot list policy directory `{path}`: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A policy directory holds no `*.cedar` file.
    #[error("policy directory `{path}` holds no `*.cedar` file")]
    EmptyDir {
        /// The directory.
        path: PathBuf,
    },
    /// A policy file is not valid Cedar (or uses a feature FemtoClaw does not accept).
    #[error("{0}")]
    Syntax(Problems),
    /// A policy does not validate against the FemtoClaw schema.
    #[error("{0}")]
    Validation(Problems),
    /// The embedded schema did not load (a defect of this build).
    #[error("the embedded FemtoClaw schema is invalid: {0}")]
    Schema(String),
}

impl PolicyError {
    /// The located problems, for syntax and validation errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Syntax(p) | Self::Validation(p) => &p.0,
            _ => &[],
        }
    }
}

/// A manifest request (or a call-time scope) is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestsError {
    /// An import is not `namespace:package/interface@version`.
    #[error("malformed import `{entry}`: {reason}")]
    Import {
        /// The entry as written.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// An HTTP entry is not `scheme://host[:port]`.
    #[error("malformed http origin `{entry}`: {reason}")]
    Http {
        /// The entry as written.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// A path is not absolute or climbs above the root.
    #[error("malformed path `{entry}`: {reason}")]
    Path {
        /// The entry as written.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// A key-value namespace, secret or config key is empty or holds control characters, or an
    /// address is not an IP address.
    #[error("malformed {kind} name `{entry}`")]
    Name {
        /// `kv namespace`, `secret`, `config key` or `address`.
        kind: &'static str,
        /// The entry as written.
        entry: String,
    },
    /// An unknown call action.
    #[error("unknown call action `{action}`")]
    Action {
        /// The action as written.
        action: String,
    },
}
