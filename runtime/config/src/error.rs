//! Why a configuration is refused: each error names where the bad value came from (the file
//! and line, the environment variable, or the flag) and the key.

use std::path::PathBuf;

use thiserror::Error;

use crate::value::ValueError;

/// A configuration that cannot be used. Lines are 1-based.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A config file given explicitly (`--config`) does not exist.
    #[error("config file `{}` does not exist", path.display())]
    Missing {
        /// The file given.
        path: PathBuf,
    },
    /// The file exists but cannot be read (or is not UTF-8).
    #[error("cannot read config file `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: {}", at(path, *line), source.message().trim())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line the parser stopped at, when it says.
        line: Option<usize>,
        /// The parser's error: what it found wrong, with the offending line drawn.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A table the schema does not have.
    #[error("{}: unknown section `[{}]` (the sections are {})", at(path, Some(*line)), section.escape_debug(), list(known))]
    UnknownSection {
        /// The file.
        path: PathBuf,
        /// The line that names it.
        line: usize,
        /// The name found.
        section: String,
        /// The sections there are.
        known: Vec<&'static str>,
    },
    /// A section that is not a table, such as `server = 1` or `[[server]]`.
    #[error("{}: `{section}` must be a table, found {found}", at(path, Some(*line)))]
    NotATable {
        /// The file.
        path: PathBuf,
        /// The line that names it.
        line: usize,
        /// The section.
        section: &'static str,
        /// The TOML type found.
        found: &'static str,
    },
    /// A key its section does not have.
    #[error("{}: unknown key `{}` (`[{section}]` has {})", at(path, Some(*line)), key.escape_debug(), list(known))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The line that names it.
        line: usize,
        /// The key found, as `section.key`.
        key: String,
        /// The section.
        section: &'static str,
        /// The keys the section has.
        known: Vec<&'static str>,
    },
    /// A value in the file its key does not accept.
    #[error("{}: `{key}` {source}", at(path, Some(*line)))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line of the key.
        line: usize,
        /// The key, as `section.key`.
        key: &'static str,
        /// What is wrong with the value.
        #[source]
        source: ValueError,
    },
    /// A `FEMTOCLAW_<SECTION>_<KEY>` variable of a known section names no key of it.
    #[error("environment variable `{}` names no key of `[{section}]` (it has {})", var.escape_debug(), list(known))]
    UnknownEnv {
        /// The variable.
        var: String,
        /// The section its name starts with.
        section: &'static str,
        /// The keys the section has.
        known: Vec<&'static str>,
    },
    /// A configuration variable whose value is not Unicode.
    #[error("environment variable `{var}` is not valid Unicode")]
    EnvNotUnicode {
        /// The variable.
        var: String,
    },
    /// A configuration variable its key does not accept.
    #[error("environment variable `{var}` (`{key}`): {source}")]
    Env {
        /// The variable.
        var: String,
        /// The key it overrides, as `section.key`.
        key: &'static str,
        /// What is wrong with the value.
        #[source]
        source: ValueError,
    },
    /// A flag value its key does not accept.
    #[error("`{flag}` (`{key}`): {source}")]
    Flag {
        /// The flag, such as `--listen`.
        flag: String,
        /// The key it overrides, as `section.key`.
        key: &'static str,
        /// What is wrong with the value.
        #[source]
        source: ValueError,
    },
}

impl ConfigError {
    /// The line of the file the error is on, if it is about a line of a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Syntax { line, .. } => *line,
            Self::UnknownSection { line, .. }
            | Self::NotATable { line, .. }
            | Self::UnknownKey { line, .. }
            | Self::Invalid { line, .. } => Some(*line),
            Self::Missing { .. }
            | Self::Read { .. }
            | Self::UnknownEnv { .. }
            | Self::EnvNotUnicode { .. }
            | Self::Env { .. }
            | Self::Flag { .. } => None,
        }
    }
}

/// `` `file` line N ``, or `` `file` `` when the line is not known.
fn at(path: &std::path::Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("`{}` line {line}", path.display()),
        None => format!("`{}`", path.display()),
    }
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}
