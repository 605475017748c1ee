//! The FemtoClaw specification suite as data.
//!
//! `docs/spec/` holds sixty specifications, one file each (`FC_<Title_Words>_Specification.md`),
//! with a header table, ten fixed sections and requirements of one fixed form:
//!
//! ```text
//! - **FC-POL-1403** (MUST, implemented) The host MUST deny an action no permit policy matches.
//! ```
//!
//! [`Suite`] parses them (and refuses a file that breaks the form, naming the file, the line and
//! the rule); [`trace`] finds the tests that name requirements (`// Verifies: FC-POL-1403`),
//! checks that spec and tests are in step, and renders `TRACEABILITY.md` and the index table.

pub mod trace;

use std::{fmt, fs, path::Path};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The number of specifications in the suite: 1–40 the enterprise tier, 41–60 the reference tier.
pub const SPECIFICATIONS: u8 = 60;
/// The last specification of the enterprise tier.
pub const ENTERPRISE_LAST: u8 = 40;

/// The domains a requirement identifier may name.
pub const DOMAINS: &[&str] = &[
    "CORE", "EXEC", "PROTO", "CAP", "POL", "SEC", "MEM", "OBS", "CONF", "COMP", "PERF", "EXT",
    "UPG", "CRYPTO", "OPS", "DIST", "ABI", "FORMAL",
];

/// The ten level-2 sections of every specification, in order.
pub const SECTIONS: &[&str] = &[
    "Purpose",
    "Scope",
    "Definitions",
    "Architecture",
    "Behavioral requirements",
    "Security requirements",
    "Observability requirements",
    "Error handling requirements",
    "Compliance requirements",
    "Guarantees",
];

/// The sections that hold requirements (the others hold prose, tables and layouts).
const REQUIREMENT_SECTIONS: std::ops::Range<usize> = 4..9;

/// An RFC 2119 keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keyword {
    Must,
    MustNot,
    Should,
    ShouldNot,
    May,
}

impl Keyword {
    const ALL: [Keyword; 5] = [
        Keyword::MustNot,
        Keyword::Must,
        Keyword::ShouldNot,
        Keyword::Should,
        Keyword::May,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Must => "MUST",
            Keyword::MustNot => "MUST NOT",
            Keyword::Should => "SHOULD",
            Keyword::ShouldNot => "SHOULD NOT",
            Keyword::May => "MAY",
        }
    }

    /// MUST and MUST NOT: an implementation that breaks one is not compliant.
    pub fn is_absolute(self) -> bool {
        matches!(self, Keyword::Must | Keyword::MustNot)
    }

    fn parse(s: &str) -> Option<Keyword> {
        Keyword::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the runtime does what a requirement says now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The runtime does it, and a test verifies it.
    Implemented,
    /// Specified, not built yet.
    Planned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Implemented => "implemented",
            Status::Planned => "planned",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requirement: one testable sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// `FC-<DOMAIN>-<NNNN>`: the spec's domain, its number in two digits, a sequence in two.
    pub id: String,
    /// The number of the specification that defines it.
    pub spec: u8,
    pub keyword: Keyword,
    pub status: Status,
    pub text: String,
    /// The section it stands in.
    pub section: &'static str,
    /// Its line in the specification's file (1-based).
    pub line: usize,
}

/// A specification's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub number: u8,
    pub title: String,
    pub domain: String,
    /// `enterprise` (1–40) or `reference` (41–60).
    pub tier: String,
    /// `implemented`, `partial` or `planned`.
    pub status: String,
    pub version: String,
    /// The file name, e.g. `FC_Host_Call_Gate_Specification.md`.
    pub file: String,
    /// Every identifier the text mentions, with its line (requirements and references).
    pub mentions: Vec<(String, usize)>,
}

/// A broken rule of the suite's form, with where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct SpecError {
    pub file: String,
    /// 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

/// The parsed suite.
#[derive(Clone, Debug, Default)]
pub struct Suite {
    specs: Vec<Spec>,
    requirements: Vec<Requirement>,
}

impl Suite {
    /// The suite compiled into this build.
    pub fn embedded() -> Result<Suite, Vec<SpecError>> {
        Suite::parse(EMBEDDED.iter().copied())
    }

    /// The suite in a directory (its `FC_*_Specification.md` files).
    pub fn load(dir: &Path) -> Result<Suite, Vec<SpecError>> {
        let listing = fs::read_dir(dir).map_err(|e| {
            vec![SpecError {
                file: dir.display().to_string(),
                line: 0,
                message: format!("cannot read the specification directory: {e}"),
            }]
        })?;
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("FC_") && name.ends_with("_Specification.md")) {
                continue;
            }
            match fs::read_to_string(entry.path()) {
                Ok(text) => files.push((name, text)),
                Err(e) => errors.push(SpecError {
                    file: name,
                    line: 0,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        files.sort();
        let parsed = Suite::parse(files.iter().map(|(n, t)| (n.as_str(), t.as_str())));
        match (parsed, errors.is_empty()) {
            (Ok(suite), true) => Ok(suite),
            (Ok(_), false) => Err(errors),
            (Err(more), _) => Err(errors.into_iter().chain(more).collect()),
        }
    }

    /// Parses specification files given as (file name, text); every broken rule is reported.
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Suite, Vec<SpecError>> {
        let mut suite = Suite::default();
        let mut errors = Vec::new();
        for (name, text) in files {
            parse_spec(name, text, &mut suite, &mut errors);
        }
        suite.specs.sort_by_key(|s| s.number);
        let mut seen = std::collections::HashMap::new();
        for r in &suite.requirements {
            let file = suite
                .spec(r.spec)
                .map(|s| s.file.clone())
                .unwrap_or_default();
            if let Some((other, line)) = seen.insert(r.id.clone(), (file.clone(), r.line)) {
                errors.push(SpecError {
                    file,
                    line: r.line,
                    message: format!("{} is defined twice (also at {other}:{line})", r.id),
                });
            }
        }
        let mut numbers = std::collections::HashMap::new();
        for s in &suite.specs {
            if let Some(other) = numbers.insert(s.number, s.file.clone()) {
                errors.push(SpecError {
                    file: s.file.clone(),
                    line: 1,
                    message: format!("specification {} is also {other}", s.number),
                });
            }
        }
        if errors.is_empty() {
            Ok(suite)
        } else {
            Err(errors)
        }
    }

    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }

    pub fn spec(&self, number: u8) -> Option<&Spec> {
        self.specs.iter().find(|s| s.number == number)
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn requirement(&self, id: &str) -> Option<&Requirement> {
        self.requirements.iter().find(|r| r.id == id)
    }
}

fn parse_spec(file: &str, text: &str, suite: &mut Suite, errors: &mut Vec<SpecError>) {
    let error = |line: usize, message: String| SpecError {
        file: file.to_owned(),
        line,
        message,
    };
    let before = errors.len();
    let lines: Vec<&str> = text.lines().collect();
    let Some((number, title)) = lines.first().and_then(|l| title_line(l)) else {
        errors.push(error(
            1,
            "the first line must be `# FemtoClaw Specification N: Title`".into(),
        ));
        return;
    };
    let expected = file_name(&title);
    if file != expected {
        errors.push(error(
            1,
            format!("a specification titled {title:?} must be named {expected}"),
        ));
    }
    if !(1..=SPECIFICATIONS).contains(&number) {
        errors.push(error(
            1,
            format!("specification number {number} is outside 1–{SPECIFICATIONS}"),
        ));
    }

    // The header table: `| Field | Value |` rows before the first section.
    let mut fields = std::collections::HashMap::new();
    for (i, line) in lines.iter().enumerate().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if line.trim_start().starts_with('|') && cells.len() == 2 {
            fields.insert(cells[0].to_owned(), (cells[1].to_owned(), i + 1));
        }
    }
    let mut field = |name: &str| match fields.get(name) {
        Some((value, _)) => value.clone(),
        None => {
            errors.push(error(0, format!("the header table has no `{name}` row")));
            String::new()
        }
    };
    let (header_number, domain, tier, status, version) = (
        field("Number"),
        field("Domain"),
        field("Tier"),
        field("Status"),
        field("Version"),
    );
    if !header_number.is_empty() && header_number != number.to_string() {
        errors.push(error(
            0,
            format!("the header says Number {header_number}, the title {number}"),
        ));
    }
    if !domain.is_empty() && !DOMAINS.contains(&domain.as_str()) {
        errors.push(error(
            0,
            format!("unknown domain {domain:?} (one of {})", DOMAINS.join(" ")),
        ));
    }
    let want_tier = if number <= ENTERPRISE_LAST {
        "enterprise"
    } else {
        "reference"
    };
    if !tier.is_empty() && tier != want_tier {
        errors.push(error(
            0,
            format!("specification {number} is in the {want_tier} tier, not {tier:?}"),
        ));
    }
    if !status.is_empty() && !["implemented", "partial", "planned"].contains(&status.as_str()) {
        errors.push(error(
            0,
            format!("unknown status {status:?} (implemented, partial or planned)"),
        ));
    }

    // The ten sections, in order, and the requirements in theirs.
    let mut section: Option<usize> = None;
    let mut requirements = Vec::new();
    let mut mentions = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        mentions.extend(identifiers(line).into_iter().map(|id| (id, n)));
        if let Some(heading) = line.strip_prefix("## ") {
            let next = section.map_or(0, |s| s + 1);
            match SECTIONS.get(next) {
                Some(want) if *want == heading.trim() => section = Some(next),
                Some(want) => {
                    errors.push(error(
                        n,
                        format!("section {heading:?} where `## {want}` must come"),
                    ));
                    section = SECTIONS
                        .iter()
                        .position(|s| *s == heading.trim())
                        .or(Some(next));
                }
                None => errors.push(error(
                    n,
                    format!("section {heading:?} after `## Guarantees`"),
                )),
            }
            continue;
        }
        if !line.starts_with("- **FC-") {
            continue;
        }
        match requirement_line(line) {
            Err(message) => errors.push(error(n, message)),
            Ok((id, keyword, req_status, text)) => {
                let in_section = section.filter(|s| REQUIREMENT_SECTIONS.contains(s));
                let Some(s) = in_section else {
                    errors.push(error(
                        n,
                        format!("{id} stands outside the requirement sections"),
                    ));
                    continue;
                };
                let mut parts = id.splitn(3, '-').skip(1);
                let (id_domain, digits) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if id_domain != domain {
                    errors.push(error(
                        n,
                        format!("{id} must be in this specification's domain {domain}"),
                    ));
                }
                if digits.get(..2) != Some(format!("{number:02}").as_str()) {
                    errors.push(error(
                        n,
                        format!("{id} must begin its number with the specification's {number:02}"),
                    ));
                }
                if !has_keyword(&text, keyword) {
                    errors.push(error(
                        n,
                        format!("{id} is marked {keyword} but its sentence does not say {keyword}"),
                    ));
                }
                requirements.push(Requirement {
                    id,
                    spec: number,
                    keyword,
                    status: req_status,
                    text,
                    section: SECTIONS[s],
                    line: n,
                });
            }
        }
    }
    if section != Some(SECTIONS.len() - 1) {
        let missing: Vec<&str> = SECTIONS[section.map_or(0, |s| s + 1)..].to_vec();
        errors.push(error(
            0,
            format!("missing sections: {}", missing.join(", ")),
        ));
    }
    let implemented = requirements
        .iter()
        .filter(|r| r.status == Status::Implemented)
        .count();
    let consistent = match status.as_str() {
        "implemented" => implemented == requirements.len() && implemented > 0,
        "planned" => implemented == 0,
        "partial" => implemented > 0 && implemented < requirements.len(),
        _ => true,
    };
    if !consistent {
        errors.push(error(0, format!(
            "status {status:?} does not match its requirements ({implemented} of {} implemented)",
            requirements.len()
        )));
    }
    if errors.len() > before {
        return;
    }
    suite.requirements.extend(requirements);
    suite.specs.push(Spec {
        number,
        title,
        domain,
        tier,
        status,
        version,
        file: file.to_owned(),
        mentions,
    });
}

/// `# FemtoClaw Specification 14: Authorization Model` → (14, "Authorization Model").
fn title_line(line: &str) -> Option<(u8, String)> {
    let rest = line.strip_prefix("# FemtoClaw Specification ")?;
    let (number, title) = rest.split_once(": ")?;
    Some((number.parse().ok()?, title.trim().to_owned()))
}

/// The file name a title gives: its words (without a parenthesised part) joined by `_`.
pub fn file_name(title: &str) -> String {
    let mut plain = String::new();
    let mut depth = 0usize;
    for c in title.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    format!("FC_{}_Specification.md", words.join("_"))
}

/// `- **FC-POL-1403** (MUST, implemented) text`.
fn requirement_line(line: &str) -> Result<(String, Keyword, Status, String), String> {
    let form =
        "a requirement is `- **FC-<DOMAIN>-<NNNN>** (<KEYWORD>, <implemented|planned>) <sentence>`";
    let rest = line.strip_prefix("- **").ok_or(form)?;
    let (id, rest) = rest.split_once("** (").ok_or(form)?;
    if !is_identifier(id) {
        return Err(format!(
            "{id:?} is not an identifier FC-<DOMAIN>-<NNNN> with a known domain"
        ));
    }
    let (tags, text) = rest.split_once(") ").ok_or(form)?;
    let (keyword, status) = tags.split_once(", ").ok_or(form)?;
    let keyword = Keyword::parse(keyword).ok_or_else(|| {
        format!("{id}: unknown keyword {keyword:?} (MUST, MUST NOT, SHOULD, SHOULD NOT, MAY)")
    })?;
    let status = match status {
        "implemented" => Status::Implemented,
        "planned" => Status::Planned,
        other => {
            return Err(format!(
                "{id}: unknown status {other:?} (implemented or planned)"
            ));
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{id} has no sentence"));
    }
    Ok((id.to_owned(), keyword, status, text.to_owned()))
}

fn has_keyword(text: &str, keyword: Keyword) -> bool {
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    let want: Vec<&str> = keyword.as_str().split(' ').collect();
    words.windows(want.len()).any(|w| w == want.as_slice())
}

/// `FC-<DOMAIN>-<NNNN>` with a known domain and four digits.
pub fn is_identifier(s: &str) -> bool {
    let mut parts = s.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("FC"), Some(domain), Some(digits), None)
            if DOMAINS.contains(&domain) && digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit())
    )
}

/// Every identifier-shaped word in a line (`FC-` followed by a domain and four digits).
pub fn identifiers(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("FC-") {
        let tail = &rest[at..];
        let end = tail
            .char_indices()
            .skip(3)
            .find(|(_, c)| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '-'))
            .map_or(tail.len(), |(i, _)| i);
        let candidate = tail[..end].trim_end_matches('-');
        if is_identifier(candidate) {
            found.push(candidate.to_owned());
        }
        rest = &tail[3..];
    }
    found
}
