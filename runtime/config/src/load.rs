//! Loading: the embedded defaults, then the file, then the environment, then flags, each layer
//! over the one before, remembering where every value came from.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::config::Config;
use crate::error::ConfigError;
use crate::schema::{Key, Schema, env_var};
use crate::value::Raw;

/// The name of the config file in the data directory.
pub const FILE_NAME: &str = "femtoclaw.toml";

/// Which config file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// The data directory's file: if it does not exist, every key has its default.
    Default(PathBuf),
    /// A file the operator named (`--config`): it must exist.
    Given(PathBuf),
}

impl ConfigFile {
    /// `<data dir>/femtoclaw.toml`, which need not exist.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::Default(data_dir.join(FILE_NAME))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Default(path) | Self::Given(path) => path,
        }
    }
}

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The embedded default.
    Default,
    /// The config file.
    File {
        /// The file.
        path: PathBuf,
        /// The line of the key, 1-based.
        line: usize,
    },
    /// An environment variable.
    Env {
        /// The variable, such as `FEMTOCLAW_SERVER_LISTEN`.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag, such as `--listen`.
        flag: String,
    },
}

/// `default`, `file /x/femtoclaw.toml:3`, `env FEMTOCLAW_LIMITS_DEADLINE_MS`, `flag --listen`.
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Self::Env { var } => write!(f, "env {var}"),
            Self::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// Values given on the command line, over everything else. Each is text, read as its key's
/// type like an environment variable's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: Vec<(Key, String, String)>,
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, given by `flag` (such as `--listen`, named in errors and by
    /// [`Source::Flag`]). A key set twice keeps the last value.
    pub fn set(
        &mut self,
        key: Key,
        flag: impl Into<String>,
        value: impl Into<String>,
    ) -> &mut Self {
        self.entries.push((key, flag.into(), value.into()));
        self
    }

    /// [`Overrides::set`], by value.
    #[must_use]
    pub fn with(mut self, key: Key, flag: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, flag, value);
        self
    }
}

/// The effective configuration: the typed [`Config`] and where each value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub(crate) layered: Layered<Config>,
}

impl Effective {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.layered.config
    }

    /// The configuration, by value.
    pub fn into_config(self) -> Config {
        self.layered.config
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: Key) -> &Source {
        self.layered.source(key)
    }

    /// Every key with its value (as TOML) and its source, in schema order.
    pub fn entries(&self) -> impl Iterator<Item = (Key, String, &Source)> {
        self.layered.entries()
    }
}

impl Config {
    /// Loads the configuration: the embedded defaults, overridden by `file`, then by the
    /// `FEMTOCLAW_<SECTION>_<KEY>` variables of `env`, then by `flags`.
    ///
    /// `env` is the environment to read (`std::env::vars_os()` in the host). Only variables
    /// whose second word is a section name are configuration; one that names no key of that
    /// section is refused (a misspelling would otherwise be silently ignored), and every other
    /// variable is left alone.
    pub fn load<K, V>(
        file: &ConfigFile,
        env: impl IntoIterator<Item = (K, V)>,
        flags: &Overrides,
    ) -> Result<Effective, ConfigError>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut layered = Layered::defaults();
        if let Some(text) = read(file)? {
            layered.apply_file(file.path(), &text)?;
        }
        layered.apply_env(env)?;
        layered.apply_flags(flags)?;
        Ok(Effective { layered })
    }

    /// The configuration of the file text `text`, read from `path` (named in errors and
    /// sources), over the defaults.
    pub fn parse(path: &Path, text: &str) -> Result<Effective, ConfigError> {
        let mut layered = Layered::defaults();
        layered.apply_file(path, text)?;
        Ok(Effective { layered })
    }
}

/// Validates the config file at `path` (which must exist) without looking at the environment.
pub fn check(path: &Path) -> Result<(), ConfigError> {
    Config::load(
        &ConfigFile::Given(path.to_owned()),
        std::iter::empty::<(&str, &str)>(),
        &Overrides::new(),
    )
    .map(drop)
}

/// The file's text, or `None` for a default file that does not exist.
fn read(file: &ConfigFile) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(file.path()) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match file {
            ConfigFile::Default(_) => Ok(None),
            ConfigFile::Given(path) => Err(ConfigError::Missing { path: path.clone() }),
        },
        Err(source) => Err(ConfigError::Read {
            path: file.path().to_owned(),
            source,
        }),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// A configuration of the schema `C` with the source of each key, in [`Schema::KEYS`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layered<C> {
    pub(crate) config: C,
    pub(crate) sources: Vec<Source>,
}

impl<C: Schema> Layered<C> {
    pub(crate) fn defaults() -> Self {
        Self {
            config: C::default(),
            sources: vec![Source::Default; C::KEYS.len()],
        }
    }

    pub(crate) fn source(&self, key: Key) -> &Source {
        C::find(key.section, key.leaf)
            .and_then(|(i, _)| self.sources.get(i))
            .unwrap_or(&Source::Default)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (Key, String, &Source)> {
        C::KEYS
            .iter()
            .zip(&self.sources)
            .map(|(info, source)| (info.key, (info.render)(&self.config), source))
    }

    /// Applies the file text `text` of `path`. Of several errors, the first in the file is
    /// reported.
    pub(crate) fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let document = DeTable::parse(text).map_err(|source| ConfigError::Syntax {
            path: path.to_owned(),
            line: source.span().map(|span| line_of(text, span.start)),
            source: Box::new(source),
        })?;
        let mut errors = Vec::new();
        for (section, value) in document.get_ref() {
            let line = line_of(text, section.span().start);
            let Some(&name) = C::SECTIONS.iter().find(|s| **s == section.get_ref()) else {
                errors.push((
                    section.span().start,
                    ConfigError::UnknownSection {
                        path: path.to_owned(),
                        line,
                        section: section.get_ref().to_string(),
                        known: C::SECTIONS.to_vec(),
                    },
                ));
                continue;
            };
            let DeValue::Table(table) = value.get_ref() else {
                errors.push((
                    section.span().start,
                    ConfigError::NotATable {
                        path: path.to_owned(),
                        line,
                        section: name,
                        found: value.get_ref().type_str(),
                    },
                ));
                continue;
            };
            for (key, value) in table {
                if let Err(e) = self.apply_file_key(path, text, name, key, value.get_ref()) {
                    errors.push((key.span().start, e));
                }
            }
        }
        first(errors)
    }

    /// Applies `section.key = value` of the file text `text` of `path`.
    fn apply_file_key(
        &mut self,
        path: &Path,
        text: &str,
        section: &'static str,
        key: &Spanned<DeString<'_>>,
        value: &DeValue<'_>,
    ) -> Result<(), ConfigError> {
        let line = line_of(text, key.span().start);
        let Some((index, info)) = C::find(section, key.get_ref()) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                line,
                key: format!("{section}.{}", key.get_ref()),
                section,
                known: C::keys_of(section),
            });
        };
        (info.set)(&mut self.config, Raw::Toml(value)).map_err(|source| ConfigError::Invalid {
            path: path.to_owned(),
            line,
            key: info.key.dotted,
            source,
        })?;
        if let Some(source) = self.sources.get_mut(index) {
            *source = Source::File {
                path: path.to_owned(),
                line,
            };
        }
        Ok(())
    }

    /// Applies the configuration variables of `env`. Of several errors, the one of the first
    /// variable by name is reported.
    pub(crate) fn apply_env<K, V>(
        &mut self,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), ConfigError>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut errors = Vec::new();
        for (var, value) in env {
            // A name that is not Unicode names no key.
            let Some(var) = var.as_ref().to_str() else {
                continue;
            };
            if let Err(e) = self.apply_env_var(var, value.as_ref()) {
                errors.push((var.to_owned(), e));
            }
        }
        first(errors)
    }

    /// Applies the variable `var` if it is configuration.
    fn apply_env_var(&mut self, var: &str, value: &OsStr) -> Result<(), ConfigError> {
        // Only variables whose second word is a section are configuration.
        let Some(&section) = C::SECTIONS
            .iter()
            .find(|s| var.starts_with(&format!("FEMTOCLAW_{}_", s.to_ascii_uppercase())))
        else {
            return Ok(());
        };
        let found = C::KEYS
            .iter()
            .enumerate()
            .find(|(_, k)| k.key.section == section && env_var(section, k.key.leaf) == var);
        let Some((index, info)) = found else {
            return Err(ConfigError::UnknownEnv {
                var: var.to_owned(),
                section,
                known: C::keys_of(section),
            });
        };
        let Some(value) = value.to_str() else {
            return Err(ConfigError::EnvNotUnicode {
                var: var.to_owned(),
            });
        };
        (info.set)(&mut self.config, Raw::Text(value)).map_err(|source| ConfigError::Env {
            var: var.to_owned(),
            key: info.key.dotted,
            source,
        })?;
        if let Some(source) = self.sources.get_mut(index) {
            *source = Source::Env {
                var: var.to_owned(),
            };
        }
        Ok(())
    }

    /// Applies `flags`, in the order given. The first refused is reported.
    pub(crate) fn apply_flags(&mut self, flags: &Overrides) -> Result<(), ConfigError> {
        for (key, flag, value) in &flags.entries {
            // A `Key` is made by the schema that lists it, so it is always found.
            let Some((index, info)) = C::find(key.section, key.leaf) else {
                continue;
            };
            (info.set)(&mut self.config, Raw::Text(value)).map_err(|source| ConfigError::Flag {
                flag: flag.clone(),
                key: info.key.dotted,
                source,
            })?;
            if let Some(source) = self.sources.get_mut(index) {
                *source = Source::Flag { flag: flag.clone() };
            }
        }
        Ok(())
    }
}

/// The error that sorts first, if any.
fn first<O: Ord>(mut errors: Vec<(O, ConfigError)>) -> Result<(), ConfigError> {
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    match errors.into_iter().next() {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}
