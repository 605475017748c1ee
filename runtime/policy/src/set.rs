//! Loading, validating and digesting a policy set.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cedar_policy as cedar;
use miette::Diagnostic;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Decision;
use crate::error::{PolicyError, Problem, Problems};
use crate::{DEFAULT_POLICY, SCHEMA};

/// `permit` or `forbid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// A `permit` policy.
    Permit,
    /// A `forbid` policy.
    Forbid,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Permit => "permit",
            Self::Forbid => "forbid",
        })
    }
}

/// One loaded policy, as `policy check` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    /// The `@id("...")` annotation if present, else `<file>:<index>` (index from 0 in the file).
    pub id: String,
    /// The file it came from.
    pub file: String,
    /// The line it starts on, from 1.
    pub line: usize,
    /// `permit` or `forbid`.
    pub effect: Effect,
    /// A `permit` annotated `@approval("required")`: what it allows runs only once a person
    /// has approved that exact call.
    pub approval: bool,
    /// Its text as written.
    pub text: String,
}

/// The schema and the Cedar names every request uses, parsed once.
pub(crate) struct Statics {
    pub schema: cedar::Schema,
    pub agent: cedar::EntityTypeName,
    pub user: cedar::EntityTypeName,
    pub group: cedar::EntityTypeName,
    pub capability: cedar::EntityTypeName,
    pub interface: cedar::EntityTypeName,
    pub http_host: cedar::EntityTypeName,
    pub path: cedar::EntityTypeName,
    pub kv_namespace: cedar::EntityTypeName,
    pub secret: cedar::EntityTypeName,
    pub config_key: cedar::EntityTypeName,
    pub address: cedar::EntityTypeName,
    pub action: cedar::EntityTypeName,
}

fn load_statics() -> Result<Statics, String> {
    let (schema, _warnings) =
        cedar::Schema::from_cedarschema_str(SCHEMA).map_err(|e| e.to_string())?;
    let ty = |name: &str| {
        cedar::EntityTypeName::from_str(&format!("FemtoClaw::{name}")).map_err(|e| e.to_string())
    };
    Ok(Statics {
        schema,
        agent: ty("Agent")?,
        user: ty("User")?,
        group: ty("Group")?,
        capability: ty("Capability")?,
        interface: ty("Interface")?,
        http_host: ty("HttpHost")?,
        path: ty("Path")?,
        kv_namespace: ty("KvNamespace")?,
        secret: ty("Secret")?,
        config_key: ty("ConfigKey")?,
        address: ty("Address")?,
        action: ty("Action")?,
    })
}

pub(crate) fn statics() -> Result<Arc<Statics>, PolicyError> {
    static STATICS: OnceLock<Result<Arc<Statics>, String>> = OnceLock::new();
    STATICS
        .get_or_init(|| load_statics().map(Arc::new))
        .clone()
        .map_err(PolicyError::Schema)
}

/// A validated Cedar policy set with FemtoClaw policy ids and a content digest.
///
/// Cheap to clone (shared). A set is immutable: a changed policy is a new set with a new digest.
#[derive(Clone)]
pub struct PolicySet {
    pub(crate) cedar: Arc<cedar::PolicySet>,
    pub(crate) statics: Arc<Statics>,
    infos: Arc<[PolicyInfo]>,
    warnings: Arc<[String]>,
    digest: [u8; 32],
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet")
            .field("policies", &self.infos.len())
            .field("digest", &self.digest_hex())
            .finish()
    }
}

impl PolicySet {
    /// The embedded default policy ([`DEFAULT_POLICY`]), used when the operator gives none.
    pub fn default_policy() -> Result<Self, PolicyError> {
        Self::from_str("default.cedar", DEFAULT_POLICY)
    }

    /// An empty policy set: every request is denied.
    pub fn empty() -> Result<Self, PolicyError> {
        Self::from_sources(std::iter::empty::<(String, String)>())
    }

    /// Policies from `text`, reported under the file name `name`.
    pub fn from_str(name: &str, text: &str) -> Result<Self, PolicyError> {
        Self::from_sources([(name.to_owned(), text.to_owned())])
    }

    /// Policies from one file, reported under its file name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_sources([(display_name(path), text)])
    }

    /// Policies from every `*.cedar` file of `dir` (not recursive), in file-name order.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let dir = dir.as_ref();
        let read_dir_err = |source| PolicyError::ReadDir {
            path: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_dir_err)? {
            let path = entry.map_err(read_dir_err)?.path();
            if path.extension().is_some_and(|e| e == "cedar") && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(PolicyError::EmptyDir {
                path: dir.to_owned(),
            });
        }
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
                path: path.clone(),
                source,
            })?;
            sources.push((display_name(&path), text));
        }
        Self::from_sources(sources)
    }

    /// Policies from `(file name, text)` pairs: parsed, given FemtoClaw ids, validated against
    /// the schema (strict mode). Every problem is collected; the error shows the first.
    pub fn from_sources<N, T>(
        sources: impl IntoIterator<Item = (N, T)>,
    ) -> Result<Self, PolicyError>
    where
        N: Into<String>,
        T: Into<String>,
    {
        let statics = statics()?;
        let mut syntax = Vec::new();
        let mut set = cedar::PolicySet::new();
        let mut infos: Vec<PolicyInfo> = Vec::new();
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        let mut index_of: BTreeMap<String, usize> = BTreeMap::new();

        for (file, text) in sources {
            let (file, text): (String, String) = (file.into(), text.into());
            let parsed = match cedar::PolicySet::from_str(&text) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    for e in errors.iter() {
                        syntax.push(problem(&file, &text, e, None, 1));
                    }
                    texts.insert(file, text);
                    continue;
                }
            };
            if let Some(t) = parsed.templates().next() {
                let line = locate(&text, &t.to_cedar(), 0).0;
                syntax.push(Problem {
                    file: file.clone(),
                    line,
                    column: 1,
                    policy_id: None,
                    message: "templates (policies with `?principal` or `?resource` slots) are not accepted; write static policies".to_owned(),
                });
            }
            let count = parsed.num_of_policies();
            let mut cursor = 0;
            for i in 0..count {
                let Some(policy) = parsed.policy(&cedar::PolicyId::new(format!("policy{i}")))
                else {
                    continue;
                };
                let body = policy.to_cedar().unwrap_or_else(|| policy.to_string());
                let (line, end) = locate(&text, &body, cursor);
                cursor = end;
                let id = match policy.annotation("id") {
                    Some(id) if id.trim().is_empty() => {
                        syntax.push(Problem {
                            file: file.clone(),
                            line,
                            column: 1,
                            policy_id: None,
                            message: "the `@id` annotation is empty".to_owned(),
                        });
                        continue;
                    }
                    Some(id) => id.to_owned(),
                    None => format!("{file}:{i}"),
                };
                if let Some(&first) = index_of.get(&id) {
                    let first: &PolicyInfo = &infos[first];
                    syntax.push(Problem {
                        file: file.clone(),
                        line,
                        column: 1,
                        policy_id: Some(id.clone()),
                        message: format!(
                            "duplicate policy id `{id}` (first in `{}` line {})",
                            first.file, first.line
                        ),
                    });
                    continue;
                }
                let effect = match policy.effect() {
                    cedar::Effect::Permit => Effect::Permit,
                    cedar::Effect::Forbid => Effect::Forbid,
                };
                let approval = match (policy.annotation("approval"), effect) {
                    (None, _) => false,
                    (Some("required"), Effect::Permit) => true,
                    (Some(value), _) => {
                        let message = if value == "required" {
                            "`@approval(\"required\")` applies to a `permit`, not a `forbid`"
                                .to_owned()
                        } else {
                            format!("`@approval(\"{value}\")`: the only value is `\"required\"`")
                        };
                        syntax.push(Problem {
                            file: file.clone(),
                            line,
                            column: 1,
                            policy_id: Some(id.clone()),
                            message,
                        });
                        continue;
                    }
                };
                if let Err(e) = set.add(policy.new_id(cedar::PolicyId::new(&id))) {
                    syntax.push(Problem {
                        file: file.clone(),
                        line,
                        column: 1,
                        policy_id: Some(id.clone()),
                        message: e.to_string(),
                    });
                    continue;
                }
                index_of.insert(id.clone(), infos.len());
                infos.push(PolicyInfo {
                    id,
                    file: file.clone(),
                    line,
                    effect,
                    approval,
                    text: body,
                });
            }
            texts.insert(file, text);
        }
        if !syntax.is_empty() {
            return Err(PolicyError::Syntax(Problems(syntax)));
        }

        let validator = cedar::Validator::new(statics.schema.clone());
        let result = validator.validate(&set, cedar::ValidationMode::Strict);
        let locate_in = |id: &cedar::PolicyId| {
            index_of
                .get(AsRef::<str>::as_ref(id))
                .and_then(|&i| infos.get(i))
                .map(|info| (info, texts.get(&info.file).map_or("", String::as_str)))
        };
        let mut invalid = Vec::new();
        let mut warnings = Vec::new();
        let report = |d: &dyn Diagnostic, id: &cedar::PolicyId| match locate_in(id) {
            Some((info, text)) => problem(&info.file, text, d, Some(&info.id), info.line),
            None => Problem {
                file: String::new(),
                line: 1,
                column: 1,
                policy_id: Some(id.to_string()),
                message: message_of(d),
            },
        };
        for e in result.validation_errors() {
            invalid.push(report(e, e.policy_id()));
        }
        for w in result.validation_warnings() {
            // A policy that can never apply is refused: an impossible `forbid` would silently
            // protect nothing, an impossible `permit` is a mistake.
            let impossible = matches!(
                w,
                cedar::ValidationWarning::ImpossiblePolicy(_)
                    | cedar::ValidationWarning::InvalidActionApplication(_)
            );
            let p = report(w, w.policy_id());
            if impossible {
                invalid.push(p);
            } else {
                warnings.push(p.to_string());
            }
        }
        if !invalid.is_empty() {
            return Err(PolicyError::Validation(Problems(invalid)));
        }

        let digest = digest_of(&infos);
        Ok(Self {
            cedar: Arc::new(set),
            statics,
            infos: infos.into(),
            warnings: warnings.into(),
            digest,
        })
    }

    /// The policies, in load order (files in name order, then order within the file).
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.infos
    }

    /// Whether `decision` (an allowed one, by this set) needs a person's approval: one of the
    /// permits that allowed it is annotated `@approval("required")`. Any one suffices, so a
    /// broader permit never waives the approval another asks for.
    pub fn needs_approval(&self, decision: &Decision) -> bool {
        decision.allowed
            && decision.policy_ids.iter().any(|id| {
                self.infos
                    .iter()
                    .any(|info| info.approval && info.id == *id)
            })
    }

    /// The policy ids, in load order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.infos.iter().map(|p| p.id.as_str())
    }

    /// Validator warnings (the policies still load), each naming file and line.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// SHA-256 over the canonical form of the set: the schema, then the `(id, text)` pairs
    /// sorted by id, each length-prefixed. Stable across loads of the same content; any change
    /// of a policy's text or id (or of the schema) changes it. File names and order do not count.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// [`PolicySet::digest`] as lowercase hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

fn digest_of(infos: &[PolicyInfo]) -> [u8; 32] {
    let mut sorted: Vec<&PolicyInfo> = infos.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"femtoclaw-policy-set-v1");
    field(SCHEMA.as_bytes());
    field(&(sorted.len() as u64).to_be_bytes());
    for p in sorted {
        field(p.id.as_bytes());
        field(p.text.as_bytes());
    }
    h.finalize().into()
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Find `needle` in `text` at or after byte `from`; return (line of its start, byte end).
fn locate(text: &str, needle: &str, from: usize) -> (usize, usize) {
    let found = text
        .get(from..)
        .and_then(|rest| rest.find(needle))
        .map(|at| at + from);
    match found {
        Some(at) => (line_col(text, at).0, at + needle.len()),
        None => (1, from),
    }
}

/// 1-based (line, column in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn message_of(d: &dyn Diagnostic) -> String {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message.push_str("; ");
        message.push_str(&help.to_string());
    }
    message
}

/// A problem located by the first labelled span of `d` (offsets into the file's text), or at
/// `fallback_line` when Cedar gives no span.
fn problem(
    file: &str,
    text: &str,
    d: &dyn Diagnostic,
    policy_id: Option<&str>,
    fallback_line: usize,
) -> Problem {
    let offset = d
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = match offset {
        Some(offset) => line_col(text, offset),
        None => (fallback_line, 1),
    };
    Problem {
        file: file.to_owned(),
        line,
        column,
        policy_id: policy_id.map(str::to_owned),
        message: message_of(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: FC-POL-1517
    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 100), (3, 2));
    }

    #[test]
    fn embedded_schema_loads() {
        assert!(statics().is_ok());
    }
}
