//! Writing the configuration out: the effective values with their sources (`config show`),
//! and the reference table of every key for the documentation.

use std::fmt::Write as _;

use crate::config::Config;
use crate::load::{Effective, Layered};
use crate::schema::{Schema, env_var};

impl Effective {
    /// The effective configuration as a config file, each value followed by its source as a
    /// comment: `listen = "127.0.0.1:8420"  # default`. The text is itself a valid config file
    /// that loads to the same configuration.
    pub fn show(&self) -> String {
        self.layered.show()
    }
}

/// [`Effective::show`].
impl std::fmt::Display for Effective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.show())
    }
}

impl<C: Schema> Layered<C> {
    pub(crate) fn show(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for (key, value, source) in self.entries() {
            if key.section != section {
                if !section.is_empty() {
                    out.push('\n');
                }
                section = key.section;
                let _ = writeln!(out, "[{section}]");
            }
            let source = comment(&source.to_string());
            let _ = writeln!(out, "{} = {value}  # {source}", key.leaf);
        }
        out
    }
}

/// `text` safe in a TOML comment, which ends at a newline and may hold no other control
/// character but tab: those are written escaped (a file path may hold any of them).
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The reference of every key as a Markdown table: key, type, default, environment variable,
/// meaning. It is made from the schema, so it is never out of date; see [`splice_reference`]
/// for keeping a copy in a document current.
pub fn reference() -> String {
    reference_of::<Config>()
}

pub(crate) fn reference_of<C: Schema>() -> String {
    let defaults = C::default();
    let mut out =
        String::from("| key | type | default | environment | meaning |\n|---|---|---|---|---|\n");
    for info in C::KEYS {
        let ty = format!("{}{}", info.ty, info.rule.describe());
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | `{}` | {} |",
            info.key.dotted,
            cell(&ty),
            cell(&(info.render)(&defaults)),
            env_var(info.key.section, info.key.leaf),
            cell(info.doc.trim()),
        );
    }
    out
}

/// `text` safe in a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The line before the reference in a document that includes it.
pub const REFERENCE_START: &str = "<!-- femtoclaw-config reference: generated, do not edit -->";
/// The line after it.
pub const REFERENCE_END: &str = "<!-- end of femtoclaw-config reference -->";

/// `document` with the text between its [`REFERENCE_START`] and [`REFERENCE_END`] lines replaced
/// by the current [`reference()`]; `None` if it does not have the two lines, in order. A test
/// asserting `splice_reference(readme) == Some(readme)` keeps the document's copy current.
pub fn splice_reference(document: &str) -> Option<String> {
    splice(document, &reference())
}

fn splice(document: &str, reference: &str) -> Option<String> {
    let start = document.find(REFERENCE_START)? + REFERENCE_START.len();
    let end = start + document.get(start..)?.find(REFERENCE_END)?;
    let (before, rest) = document.split_at(start);
    let after = rest.get(end - start..)?;
    Some(format!("{before}\n{reference}{after}"))
}
