//! The types a setting can have: how each is read from the file or from text (an environment
//! variable, a flag), checked against its key's [`Rule`], and written back as TOML.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use toml::de::DeValue;

/// Why a value is not one its key accepts. The key, and where the value came from, are named
/// by the [`ConfigError`](crate::ConfigError) that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    /// The file gives a value of another TOML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// The type the key takes.
        expected: &'static str,
        /// The TOML type found.
        found: &'static str,
    },
    /// Text (an environment variable or a flag) for an integer key that is not plain digits.
    #[error("`{}` is not a plain integer (digits only: no sign, `_` or `0x`)", text.escape_debug())]
    NotPlainInteger {
        /// The text given.
        text: String,
    },
    /// An integer under the key's least value.
    #[error("must be at least {min}, not `{value}`")]
    TooSmall {
        /// The value given, as written.
        value: String,
        /// The least value the key takes.
        min: u64,
    },
    /// An integer over the key's largest value.
    #[error("must be at most {max}, not `{value}`")]
    TooLarge {
        /// The value given, as written.
        value: String,
        /// The largest value the key takes.
        max: u64,
    },
    /// Not a socket address.
    #[error("`{}` is not a socket address (such as `127.0.0.1:8420` or `[::1]:8420`)", text.escape_debug())]
    NotSocketAddr {
        /// The text given.
        text: String,
    },
    /// An element of a list that is not a string.
    #[error("element {index} of the list: expected a string, found {found}")]
    NotAStringElement {
        /// Its position, from 0.
        index: usize,
        /// The TOML type found.
        found: &'static str,
    },
    /// A quota rule that is not one.
    #[error("rule {index} (from 0): {why}")]
    QuotaRule {
        /// Its position in the list, from 0.
        index: usize,
        /// What is wrong with it.
        why: String,
    },
    /// Text (an environment variable) that should be inline TOML and is not.
    #[error("`{}` is not inline TOML: {why}", text.escape_debug())]
    NotToml {
        /// The text given.
        text: String,
        /// What the TOML parser said.
        why: String,
    },
    /// Not an `http://` or `https://` URL.
    #[error("`{}` is not an `http://` or `https://` URL (such as `http://127.0.0.1:4318`)", text.escape_debug())]
    NotUrl {
        /// The text given.
        text: String,
    },
    /// Not one of the strings the key takes.
    #[error("`{}` is not one of {}", text.escape_debug(), choices.iter().map(|c| format!("`{c:?}`")).collect::<Vec<_>>().join(", "))]
    NotOneOf {
        /// The text given.
        text: String,
        /// What the key takes.
        choices: &'static [&'static str],
    },
    /// An element of a list of CPU features that is not a CPU feature flag.
    #[error("element {index} of the list: `{}` is not a CPU feature flag (`has_` and lowercase letters, digits or `_`, such as `has_avx2`)", text.escape_debug())]
    NotCpuFeature {
        /// Its position, from 0.
        index: usize,
        /// The text given.
        text: String,
    },
    /// Not a checkpoint origin line.
    #[error("`{}` is not a checkpoint origin: {why}", text.escape_debug())]
    NotOrigin {
        /// The text given.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A setting's value as it arrives: a TOML value from the file, or text from the environment
/// or a flag.
#[derive(Clone, Copy)]
pub(crate) enum Raw<'a> {
    Toml(&'a DeValue<'a>),
    Text(&'a str),
}

/// What a key accepts beyond its type. One description both checks values and is written into
/// the reference, so the two cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Any value of the type.
    Any,
    /// An integer (for a duration: a number of milliseconds) of at least this.
    AtLeast(u64),
    /// A checkpoint origin line: not empty, no whitespace or control characters.
    Origin,
    /// Empty (off), or an `http://` or `https://` URL.
    EmptyOrUrl,
    /// Empty (off), or a socket address.
    EmptyOrSocketAddr,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A list of CPU feature flags: `has_` and lowercase letters, digits or `_`.
    CpuFeatures,
}

impl Rule {
    /// The rule as the reference writes it after the type: ` ≥ 1`, or nothing.
    pub(crate) fn describe(self) -> String {
        match self {
            Self::Any => String::new(),
            Self::AtLeast(min) => format!(" ≥ {min}"),
            Self::Origin => " (not empty, no whitespace or control characters)".to_owned(),
            Self::EmptyOrUrl => " (empty: off, or an `http://` or `https://` URL)".to_owned(),
            Self::EmptyOrSocketAddr => " (empty: off, or a socket address)".to_owned(),
            Self::OneOf(choices) => {
                let choices: Vec<String> = choices.iter().map(|c| format!("`{c:?}`")).collect();
                format!(" (one of {})", choices.join(", "))
            }
            Self::CpuFeatures => " (each `has_…`, such as `has_avx2`)".to_owned(),
        }
    }

    fn min(self) -> u64 {
        match self {
            Self::AtLeast(min) => min,
            Self::Any
            | Self::Origin
            | Self::EmptyOrUrl
            | Self::EmptyOrSocketAddr
            | Self::OneOf(_)
            | Self::CpuFeatures => 0,
        }
    }
}

/// A type a setting can have.
pub(crate) trait Value: Sized {
    /// The type's name in the reference.
    const TYPE: &'static str;

    /// Reads a value, refusing one the rule does not accept.
    fn parse(raw: Raw<'_>, rule: Rule) -> Result<Self, ValueError>;

    /// The value as a TOML value, quoted where TOML needs it.
    fn to_toml(&self) -> String;
}

/// TOML integers are 64-bit signed: no key takes more, so what [`Value::to_toml`] writes reads
/// back with any TOML parser.
const TOML_MAX: u64 = i64::MAX.unsigned_abs();

/// An integer of at least the rule's least value and at most `max` (and [`TOML_MAX`]).
fn integer(raw: Raw<'_>, rule: Rule, max: u64) -> Result<u64, ValueError> {
    let (written, value) = match raw {
        Raw::Toml(DeValue::Integer(integer)) => (
            integer.to_string(),
            i128::from_str_radix(integer.as_str(), integer.radix()).ok(),
        ),
        Raw::Toml(other) => {
            return Err(ValueError::WrongType {
                expected: "an integer",
                found: other.type_str(),
            });
        }
        Raw::Text(text) => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ValueError::NotPlainInteger {
                    text: text.to_owned(),
                });
            }
            (text.to_owned(), text.parse::<i128>().ok())
        }
    };
    let max = max.min(TOML_MAX);
    let min = rule.min();
    match value {
        Some(v) if v < i128::from(min) => Err(ValueError::TooSmall {
            value: written,
            min,
        }),
        Some(v) if v <= i128::from(max) => u64::try_from(v).map_err(|_| ValueError::TooSmall {
            value: written.clone(),
            min,
        }),
        // Beyond 128 bits: the sign says which end.
        None if written.starts_with('-') => Err(ValueError::TooSmall {
            value: written,
            min,
        }),
        Some(_) | None => Err(ValueError::TooLarge {
            value: written,
            max,
        }),
    }
}

/// A TOML string, or the text as given.
fn string<'a>(raw: Raw<'a>, expected: &'static str) -> Result<&'a str, ValueError> {
    match raw {
        Raw::Toml(DeValue::String(s)) => Ok(s),
        Raw::Toml(other) => Err(ValueError::WrongType {
            expected,
            found: other.type_str(),
        }),
        Raw::Text(text) => Ok(text),
    }
}

/// A string as a TOML basic string, escaped.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

macro_rules! unsigned {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            const TYPE: &'static str = "integer";

            fn parse(raw: Raw<'_>, rule: Rule) -> Result<Self, ValueError> {
                let max = u64::try_from(<$ty>::MAX).unwrap_or(u64::MAX);
                let value = integer(raw, rule, max)?;
                // In range: `integer` checked against this type's largest value.
                Self::try_from(value).map_err(|_| ValueError::TooLarge {
                    value: value.to_string(),
                    max,
                })
            }

            fn to_toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

unsigned!(u32, u64, usize);

/// A duration, written as a whole number of milliseconds.
impl Value for Duration {
    const TYPE: &'static str = "milliseconds";

    fn parse(raw: Raw<'_>, rule: Rule) -> Result<Self, ValueError> {
        integer(raw, rule, u64::MAX).map(Duration::from_millis)
    }

    fn to_toml(&self) -> String {
        u64::try_from(self.as_millis())
            .unwrap_or(u64::MAX)
            .to_string()
    }
}

impl Value for SocketAddr {
    const TYPE: &'static str = "socket address";

    fn parse(raw: Raw<'_>, _rule: Rule) -> Result<Self, ValueError> {
        let text = string(raw, "a socket address string")?;
        text.parse().map_err(|_| ValueError::NotSocketAddr {
            text: text.to_owned(),
        })
    }

    fn to_toml(&self) -> String {
        quoted(&self.to_string())
    }
}

impl Value for String {
    const TYPE: &'static str = "string";

    fn parse(raw: Raw<'_>, rule: Rule) -> Result<Self, ValueError> {
        let text = string(raw, "a string")?;
        if rule == Rule::Origin {
            let why = if text.is_empty() {
                Some("it is empty")
            } else if text.chars().any(char::is_whitespace) {
                Some("it contains whitespace")
            } else if text.chars().any(char::is_control) {
                Some("it contains a control character")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ValueError::NotOrigin {
                    text: text.to_owned(),
                    why,
                });
            }
        }
        match rule {
            Rule::EmptyOrUrl if !text.is_empty() && !is_url(text) => {
                return Err(ValueError::NotUrl {
                    text: text.to_owned(),
                });
            }
            Rule::EmptyOrSocketAddr if !text.is_empty() && text.parse::<SocketAddr>().is_err() => {
                return Err(ValueError::NotSocketAddr {
                    text: text.to_owned(),
                });
            }
            Rule::OneOf(choices) if !choices.contains(&text) => {
                return Err(ValueError::NotOneOf {
                    text: text.to_owned(),
                    choices,
                });
            }
            _ => {}
        }
        Ok(text.to_owned())
    }

    fn to_toml(&self) -> String {
        quoted(self)
    }
}

/// `has_` and lowercase letters, digits or `_`: the form of Cranelift's CPU feature flags.
fn is_cpu_feature(text: &str) -> bool {
    text.strip_prefix("has_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// `http://host…` or `https://host…`, with a host and no whitespace or control characters.
fn is_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// A list of strings: a TOML array, or comma-separated text (`a,b`; empty text is the empty
/// list).
impl Value for Vec<String> {
    const TYPE: &'static str = "list of strings";

    fn parse(raw: Raw<'_>, rule: Rule) -> Result<Self, ValueError> {
        let items: Vec<String> = match raw {
            Raw::Toml(DeValue::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item.get_ref() {
                    DeValue::String(s) => Ok(s.to_string()),
                    other => Err(ValueError::NotAStringElement {
                        index,
                        found: other.type_str(),
                    }),
                })
                .collect::<Result<_, _>>()?,
            Raw::Toml(other) => {
                return Err(ValueError::WrongType {
                    expected: "an array of strings",
                    found: other.type_str(),
                });
            }
            Raw::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        if rule == Rule::CpuFeatures
            && let Some((index, text)) = items
                .iter()
                .enumerate()
                .find(|(_, item)| !is_cpu_feature(item))
        {
            return Err(ValueError::NotCpuFeature {
                index,
                text: text.clone(),
            });
        }
        Ok(items)
    }

    fn to_toml(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| quoted(s)).collect();
        format!("[{}]", items.join(", "))
    }
}
