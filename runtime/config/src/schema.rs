//! How a schema is described: the [`schema!`] macro turns one list of sections and keys (doc,
//! type, default, rule) into the typed structs, their `Default`s, the [`Key`] constants and the
//! table of [`KeyInfo`] that loading, `show` and the reference all read. Adding a key is one
//! entry in that list.

use crate::value::{Raw, Rule, ValueError};

/// One configuration key, named for code: the constants in [`key`](crate::key), such as
/// [`key::server::listen`](crate::key::server::listen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The section, such as `server`.
    pub(crate) section: &'static str,
    /// The key within it, such as `listen`.
    pub(crate) leaf: &'static str,
    /// Both, as `server.listen`.
    pub(crate) dotted: &'static str,
}

impl Key {
    /// The key as `section.key`, such as `server.listen`.
    pub fn name(&self) -> &'static str {
        self.dotted
    }

    /// The environment variable that overrides it, such as `FEMTOCLAW_SERVER_LISTEN`.
    pub fn env_var(&self) -> String {
        env_var(self.section, self.leaf)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dotted)
    }
}

/// `FEMTOCLAW_<SECTION>_<KEY>`.
pub(crate) fn env_var(section: &str, name: &str) -> String {
    format!(
        "FEMTOCLAW_{}_{}",
        section.to_ascii_uppercase(),
        name.to_ascii_uppercase()
    )
}

/// Everything known about one key of the schema `C`.
pub(crate) struct KeyInfo<C> {
    pub(crate) key: Key,
    /// The key's doc comment, one line.
    pub(crate) doc: &'static str,
    /// The type's name in the reference.
    pub(crate) ty: &'static str,
    pub(crate) rule: Rule,
    /// Parses `raw` as the key's type under its rule and stores it.
    pub(crate) set: fn(&mut C, Raw<'_>) -> Result<(), ValueError>,
    /// The key's current value as TOML.
    pub(crate) render: fn(&C) -> String,
}

/// A configuration described by [`schema!`].
pub(crate) trait Schema: Default + Sized + 'static {
    /// The section names, in order.
    const SECTIONS: &'static [&'static str];
    /// Every key, section by section, in order.
    const KEYS: &'static [KeyInfo<Self>];

    /// The keys of `section`, by name.
    fn keys_of(section: &str) -> Vec<&'static str> {
        Self::KEYS
            .iter()
            .filter(|k| k.key.section == section)
            .map(|k| k.key.leaf)
            .collect()
    }

    /// The key `leaf` of `section`, with its position in [`Schema::KEYS`].
    fn find(section: &str, leaf: &str) -> Option<(usize, &'static KeyInfo<Self>)> {
        Self::KEYS
            .iter()
            .enumerate()
            .find(|(_, k)| k.key.section == section && k.key.leaf == leaf)
    }
}

/// A key's name in the file: the one after `as`, or else the field's.
macro_rules! key_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $key:ident) => {
        stringify!($key)
    };
}

/// Describes a configuration once:
///
/// ```text
/// schema! {
///     /// The configuration.
///     pub struct Config;
///
///     /// A section.
///     [section] Section {
///         /// A key (its doc is its meaning in the reference).
///         field: u64 = 4, Rule::AtLeast(1);
///         /// A key whose file name differs from the field's.
///         timeout as timeout_ms: Duration = Duration::from_secs(30), Rule::AtLeast(1);
///     }
/// }
/// ```
///
/// Each default is written once, here; the rule after it is optional (`Rule::Any`).
macro_rules! schema {
    (
        $(#[doc = $config_doc:literal])*
        pub struct $Config:ident;
        $(
            $(#[doc = $section_doc:literal])*
            [$section:ident] $Section:ident {
                $(
                    $(#[doc = $doc:literal])*
                    $field:ident $(as $key:ident)?: $ty:ty = $default:expr $(, $rule:expr)?;
                )*
            }
        )*
    ) => {
        $(#[doc = $config_doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $Config {
            $(
                $(#[doc = $section_doc])*
                pub $section: $Section,
            )*
        }

        impl Default for $Config {
            fn default() -> Self {
                Self { $($section: $Section::default(),)* }
            }
        }

        $(
            $(#[doc = $section_doc])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            pub struct $Section {
                $(
                    $(#[doc = $doc])*
                    pub $field: $ty,
                )*
            }

            impl Default for $Section {
                fn default() -> Self {
                    Self { $($field: $default,)* }
                }
            }
        )*

        /// The keys, as constants named like the fields of the configuration, for
        /// [`Overrides`](crate::Overrides) and [`Effective::source`](crate::Effective::source).
        pub mod key {
            $(
                $(#[doc = $section_doc])*
                #[allow(non_upper_case_globals)]
                pub mod $section {
                    $(
                        $(#[doc = $doc])*
                        pub const $field: $crate::Key = $crate::Key {
                            section: stringify!($section),
                            leaf: $crate::schema::key_name!($field $($key)?),
                            dotted: concat!(stringify!($section), ".", $crate::schema::key_name!($field $($key)?)),
                        };
                    )*
                }
            )*
        }

        impl $crate::schema::Schema for $Config {
            const SECTIONS: &'static [&'static str] = &[$(stringify!($section)),*];
            const KEYS: &'static [$crate::schema::KeyInfo<Self>] = &[$($(
                $crate::schema::KeyInfo {
                    key: key::$section::$field,
                    doc: concat!($($doc),*),
                    ty: <$ty as $crate::value::Value>::TYPE,
                    rule: $crate::schema::schema!(@rule $($rule)?),
                    set: |config: &mut Self, raw| {
                        config.$section.$field = <$ty as $crate::value::Value>::parse(
                            raw,
                            $crate::schema::schema!(@rule $($rule)?),
                        )?;
                        Ok(())
                    },
                    render: |config: &Self| {
                        $crate::value::Value::to_toml(&config.$section.$field)
                    },
                },
            )*)*];
        }
    };
    (@rule) => { $crate::value::Rule::Any };
    (@rule $rule:expr) => { $rule };
}

pub(crate) use {key_name, schema};
