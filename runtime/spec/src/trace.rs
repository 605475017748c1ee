//! Traceability: which tests verify which requirements, and whether spec and tests are in step.
//!
//! A test names what it verifies in a line comment directly above it (within
//! [`TAG_REACH`] lines of its `fn`, or `def` in Python):
//!
//! ```text
//! // Verifies: FC-POL-1403, FC-POL-1404
//! #[test]
//! fn a_call_no_permit_matches_is_denied() { … }
//! ```

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use crate::{SPECIFICATIONS, Status, Suite, identifiers, is_identifier};

/// How many lines below a tag its test function may begin.
pub const TAG_REACH: usize = 12;

/// The folders (from the repository root) whose sources may hold tests.
pub const SOURCE_ROOTS: &[&str] = &[
    "runtime",
    "tests",
    "capabilities",
    "sdk",
    "benches",
    "examples",
];

/// One `Verifies:` comment and the test it stands above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The source file, relative to the repository root, with `/` separators.
    pub file: String,
    pub line: usize,
    /// The test function's name.
    pub test: String,
    pub ids: Vec<String>,
}

/// Something that keeps spec and tests out of step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// `file:line` (or a file) it is about.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// The tags in every test source under the repository's [`SOURCE_ROOTS`]; tags that are
/// malformed or stand above no function are problems.
pub fn scan_tree(root: &Path) -> (Vec<Tag>, Vec<Problem>) {
    let mut files = Vec::new();
    for dir in SOURCE_ROOTS {
        collect(&root.join(dir), &mut files);
    }
    files.sort();
    let (mut tags, mut problems) = (Vec::new(), Vec::new());
    for path in files {
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let name = relative.to_string_lossy().replace('\\', "/");
        match fs::read_to_string(&path) {
            Ok(text) => scan_source(&name, &text, &mut tags, &mut problems),
            Err(e) => problems.push(Problem {
                at: name,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    (tags, problems)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect(&path, files),
            Ok(t)
                if t.is_file()
                    && matches!(path.extension().and_then(|e| e.to_str()), Some("rs" | "py")) =>
            {
                files.push(path)
            }
            _ => {}
        }
    }
}

/// The tags of one source file.
pub fn scan_source(file: &str, text: &str, tags: &mut Vec<Tag>, problems: &mut Vec<Problem>) {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(list) = trimmed
            .strip_prefix("// Verifies:")
            .or_else(|| trimmed.strip_prefix("# Verifies:"))
        else {
            continue;
        };
        let at = format!("{file}:{}", i + 1);
        let ids: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
        if let Some(bad) = ids.iter().find(|id| !is_identifier(id)) {
            problems.push(Problem {
                at,
                message: format!("{bad:?} is not a requirement identifier FC-<DOMAIN>-<NNNN>"),
            });
            continue;
        }
        let test = lines[i + 1..]
            .iter()
            .take(TAG_REACH)
            .find_map(|l| function_name(l));
        match test {
            Some(test) => tags.push(Tag {
                file: file.to_owned(),
                line: i + 1,
                test,
                ids,
            }),
            None => problems.push(Problem {
                at,
                message: format!("the tag stands above no test function within {TAG_REACH} lines"),
            }),
        }
    }
}

/// `fn name(` / `async fn name(` / `def name(` → `name`.
fn function_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = [
        "fn ",
        "async fn ",
        "pub fn ",
        "pub(crate) fn ",
        "def ",
        "async def ",
    ]
    .iter()
    .find_map(|p| line.strip_prefix(p))?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    (end > 0).then(|| rest[..end].to_owned())
}

/// Everything that keeps the suite and the tests out of step: an unknown identifier in a test or
/// a specification, an implemented MUST or MUST NOT no test verifies, a planned requirement a test
/// verifies, a specification number of 1–60 with no file.
pub fn check(suite: &Suite, tags: &[Tag]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for n in 1..=SPECIFICATIONS {
        if suite.spec(n).is_none() {
            problems.push(Problem {
                at: "docs/spec".into(),
                message: format!("specification {n} has no file"),
            });
        }
    }
    for spec in suite.specs() {
        for (id, line) in &spec.mentions {
            if suite.requirement(id).is_none() {
                problems.push(Problem {
                    at: format!("docs/spec/{}:{line}", spec.file),
                    message: format!("{id} is not a requirement of the suite"),
                });
            }
        }
    }
    let verifying = verifying(suite, tags);
    for tag in tags {
        for id in &tag.ids {
            let at = format!("{}:{}", tag.file, tag.line);
            match suite.requirement(id) {
                None => problems.push(Problem {
                    at,
                    message: format!("{id} is not a requirement of the suite"),
                }),
                Some(r) if r.status == Status::Planned => problems.push(Problem {
                    at,
                    message: format!(
                        "{id} is planned, yet {} verifies it: mark it implemented",
                        tag.test
                    ),
                }),
                Some(_) => {}
            }
        }
    }
    for r in suite.requirements() {
        if r.status == Status::Implemented
            && r.keyword.is_absolute()
            && !verifying.contains_key(r.id.as_str())
        {
            let file = suite
                .spec(r.spec)
                .map(|s| s.file.as_str())
                .unwrap_or_default();
            problems.push(Problem {
                at: format!("docs/spec/{file}:{}", r.line),
                message: format!(
                    "{} is an implemented {} that no test verifies (tag one `// Verifies: {}`)",
                    r.id, r.keyword, r.id
                ),
            });
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Requirement identifier → the tests (`file::test`) that verify it.
pub fn verifying<'a>(suite: &Suite, tags: &'a [Tag]) -> BTreeMap<&'a str, Vec<String>> {
    let mut map: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for tag in tags {
        for id in &tag.ids {
            if suite.requirement(id).is_some() {
                let test = format!("{}::{}", tag.file, tag.test);
                let tests = map.entry(id.as_str()).or_default();
                if !tests.contains(&test) {
                    tests.push(test);
                }
            }
        }
    }
    map
}

/// `docs/spec/TRACEABILITY.md`: every requirement and the tests that verify it.
pub fn traceability(suite: &Suite, tags: &[Tag]) -> String {
    let verifying = verifying(suite, tags);
    let reqs = suite.requirements();
    let count = |f: &dyn Fn(&crate::Requirement) -> bool| reqs.iter().filter(|r| f(r)).count();
    let mut out = String::new();
    let _ = writeln!(out, "# Traceability: requirement → tests\n");
    let _ = writeln!(
        out,
        "Generated from `docs/spec/` and the test sources by the traceability check \
         (`cargo test -p femtoclaw-spec`); regenerate with `FEMTOCLAW_BLESS=1 cargo test -p femtoclaw-spec`. \
         Do not edit by hand.\n"
    );
    let _ = writeln!(
        out,
        "{} requirements: {} implemented ({} MUST or MUST NOT, every one verified by a test), {} planned; {} verifying tests.\n",
        reqs.len(),
        count(&|r| r.status == Status::Implemented),
        count(&|r| r.status == Status::Implemented && r.keyword.is_absolute()),
        count(&|r| r.status == Status::Planned),
        {
            let mut tests: Vec<&String> = verifying.values().flatten().collect();
            tests.sort();
            tests.dedup();
            tests.len()
        }
    );
    for spec in suite.specs() {
        let _ = writeln!(
            out,
            "## {} {} ([{}]({}))\n",
            spec.number, spec.title, spec.file, spec.file
        );
        let _ = writeln!(
            out,
            "| Requirement | Keyword | Status | Verified by |\n|---|---|---|---|"
        );
        for r in reqs.iter().filter(|r| r.spec == spec.number) {
            let tests = verifying.get(r.id.as_str()).map(|t| {
                t.iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join("<br>")
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.id,
                r.keyword,
                r.status,
                tests.unwrap_or_else(|| "—".into())
            );
        }
        out.push('\n');
    }
    out
}

/// The markers around the generated index table in `docs/spec/README.md`.
pub const INDEX_BEGIN: &str = "<!-- index: generated by the traceability check; do not edit -->";
pub const INDEX_END: &str = "<!-- end of index -->";

/// The index table: number, title, domain, tier, status and requirement counts.
pub fn index(suite: &Suite) -> String {
    let mut out = String::from(
        "| # | Specification | Domain | Tier | Status | Requirements (implemented / planned) |\n|---|---|---|---|---|---|\n",
    );
    for s in suite.specs() {
        let reqs = suite.requirements().iter().filter(|r| r.spec == s.number);
        let (implemented, planned) = reqs.fold((0, 0), |(i, p), r| match r.status {
            Status::Implemented => (i + 1, p),
            Status::Planned => (i, p + 1),
        });
        let _ = writeln!(
            out,
            "| {} | [{}]({}) | {} | {} | {} | {implemented} / {planned} |",
            s.number, s.title, s.file, s.domain, s.tier, s.status
        );
    }
    out
}

/// The README with its index table replaced by the current one; `None` when it has no markers.
pub fn with_index(readme: &str, suite: &Suite) -> Option<String> {
    let (head, rest) = readme.split_once(INDEX_BEGIN)?;
    let (_, tail) = rest.split_once(INDEX_END)?;
    Some(format!(
        "{head}{INDEX_BEGIN}\n{}{INDEX_END}{tail}",
        index(suite)
    ))
}

/// Identifiers a Markdown text mentions that the suite does not define (e.g. the index's
/// guarantees table), with their lines.
pub fn unknown_mentions(suite: &Suite, text: &str) -> Vec<(String, usize)> {
    text.lines()
        .enumerate()
        .flat_map(|(i, l)| identifiers(l).into_iter().map(move |id| (id, i + 1)))
        .filter(|(id, _)| suite.requirement(id).is_none())
        .collect()
}
