//! The specification suite and the tests stay in step: every implemented MUST and MUST NOT is
//! verified by a test that names it, every name a test or a specification uses exists, every
//! identifier is defined once, and `docs/spec/TRACEABILITY.md` and the index are current
//! (regenerate both with `FEMTOCLAW_BLESS=1 cargo test -p femtoclaw-spec`).

use std::{fs, path::PathBuf};

use femtoclaw_spec::{
    Keyword, Status, Suite,
    trace::{self, Tag},
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn suite() -> Suite {
    match Suite::load(&root().join("docs/spec")) {
        Ok(suite) => suite,
        Err(errors) => panic!(
            "the specification suite breaks its own form:\n{}",
            errors
                .iter()
                .map(|e| format!("  {e}\n"))
                .collect::<String>()
        ),
    }
}

fn tags() -> Vec<Tag> {
    let (tags, problems) = trace::scan_tree(&root());
    assert!(problems.is_empty(), "malformed tags:\n{}", list(&problems));
    tags
}

fn list(problems: &[trace::Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

/// Compares a generated file with the committed one, or writes it when blessing.
fn current(path: &str, generated: &str) {
    let path = root().join(path);
    if std::env::var_os("FEMTOCLAW_BLESS").is_some() {
        fs::write(&path, generated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with FEMTOCLAW_BLESS=1 cargo test -p femtoclaw-spec",
        path.display()
    );
}

// Verifies: FC-COMP-6001, FC-COMP-6002, FC-COMP-6003
#[test]
fn every_implemented_must_is_verified_and_every_name_exists() {
    let suite = suite();
    let problems = trace::check(&suite, &tags());
    assert!(
        problems.is_empty(),
        "spec and tests are out of step:\n{}",
        list(&problems)
    );
}

// Verifies: FC-COMP-6004
#[test]
fn the_traceability_matrix_is_current() {
    let suite = suite();
    current(
        "docs/spec/TRACEABILITY.md",
        &trace::traceability(&suite, &tags()),
    );
}

// Verifies: FC-COMP-6005
#[test]
fn the_index_lists_every_specification_and_names_only_real_requirements() {
    let suite = suite();
    let path = root().join("docs/spec/README.md");
    let readme = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let unknown = trace::unknown_mentions(&suite, &readme);
    assert!(
        unknown.is_empty(),
        "the index names identifiers the suite does not define: {unknown:?}"
    );
    let generated = trace::with_index(&readme, &suite)
        .unwrap_or_else(|| panic!("{} has no index markers", path.display()));
    current("docs/spec/README.md", &generated);
}

/// The compiled-in suite (what `femtoclaw-host conformance` reports on) is the suite on disk.
#[test]
fn the_embedded_suite_is_the_one_on_disk() {
    let embedded = Suite::embedded().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(embedded.requirements(), suite().requirements());
}

// Verifies: FC-COMP-6002
#[test]
fn removing_a_tag_from_a_real_test_fails_the_check() {
    let suite = suite();
    let tags = tags();
    // The first implemented MUST that exactly one tag verifies, and that tag's file.
    let verifying = trace::verifying(&suite, &tags);
    let (id, tag) = suite
        .requirements()
        .iter()
        .filter(|r| r.status == Status::Implemented && r.keyword.is_absolute())
        .find_map(|r| {
            let tests = verifying.get(r.id.as_str())?;
            let mut carrying = tags.iter().filter(|t| t.ids.contains(&r.id));
            let tag = carrying.next()?;
            (tests.len() == 1 && carrying.next().is_none()).then(|| (r.id.clone(), tag.clone()))
        })
        .unwrap_or_else(|| panic!("no requirement is verified by exactly one tag"));
    let text = fs::read_to_string(root().join(&tag.file)).unwrap_or_default();
    let untagged: String = text
        .lines()
        .enumerate()
        .filter(|(i, _)| i + 1 != tag.line)
        .map(|(_, l)| format!("{l}\n"))
        .collect();

    let mut others: Vec<Tag> = tags
        .iter()
        .filter(|t| t.file != tag.file)
        .cloned()
        .collect();
    let mut problems = Vec::new();
    trace::scan_source(&tag.file, &untagged, &mut others, &mut problems);
    assert!(problems.is_empty());
    let found = trace::check(&suite, &others);
    assert!(
        found
            .iter()
            .any(|p| p.message.contains(&id) && p.message.contains("no test verifies")),
        "removing the tag of {id} from {} went unnoticed: {found:?}",
        tag.file
    );
}

// --- The checker against small suites built for the purpose ---

fn spec(number: u8, domain: &str, status: &str, requirements: &str) -> (String, String) {
    let title = format!("Sample Number {number}");
    let tier = if number <= 40 {
        "enterprise"
    } else {
        "reference"
    };
    let mut text = format!(
        "# FemtoClaw Specification {number}: {title}\n\n| Field | Value |\n|---|---|\n| Number | {number} |\n\
         | Domain | {domain} |\n| Tier | {tier} |\n| Status | {status} |\n| Version | 1.0 |\n\n"
    );
    for section in femtoclaw_spec::SECTIONS {
        text.push_str(&format!("## {section}\n\nProse.\n\n"));
        if *section == "Behavioral requirements" {
            text.push_str(requirements);
            text.push('\n');
        }
    }
    (femtoclaw_spec::file_name(&title), text)
}

fn parse(files: &[(String, String)]) -> Result<Suite, Vec<femtoclaw_spec::SpecError>> {
    Suite::parse(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

fn errors(files: &[(String, String)]) -> String {
    match parse(files) {
        Ok(_) => panic!("the suite was accepted"),
        Err(e) => e.iter().map(|e| format!("{e}\n")).collect(),
    }
}

/// A tag line, spelt so this file's own scan does not take it for one.
fn tag_line(ids: &str) -> String {
    format!("// {}: {ids}", "Verifies")
}

#[test]
fn a_requirement_is_parsed_with_its_keyword_status_and_section() {
    let files = [spec(
        14,
        "POL",
        "partial",
        "- **FC-POL-1401** (MUST NOT, implemented) The host MUST NOT link an ungranted import.\n\
         - **FC-POL-1402** (SHOULD, planned) The host SHOULD explain a denial.",
    )];
    let suite = parse(&files).unwrap_or_else(|e| panic!("{e:?}"));
    let r = &suite.requirements()[0];
    assert_eq!(
        (r.id.as_str(), r.keyword, r.status, r.spec),
        ("FC-POL-1401", Keyword::MustNot, Status::Implemented, 14)
    );
    assert_eq!(r.section, "Behavioral requirements");
    assert_eq!(suite.requirements()[1].status, Status::Planned);
    assert_eq!(
        suite.specs()[0].file,
        "FC_Sample_Number_14_Specification.md"
    );
}

// Verifies: FC-COMP-6001
#[test]
fn an_identifier_defined_twice_is_refused_naming_both_places() {
    let files = [spec(
        14,
        "POL",
        "implemented",
        "- **FC-POL-1401** (MUST, implemented) It MUST deny.\n- **FC-POL-1401** (MUST, implemented) It MUST deny too.",
    )];
    let e = errors(&files);
    assert!(
        e.contains("FC-POL-1401 is defined twice (also at FC_Sample_Number_14_Specification.md:"),
        "{e}"
    );
    // Two files claiming one number.
    let mut other = spec(
        14,
        "POL",
        "implemented",
        "- **FC-POL-1402** (MUST, implemented) It MUST deny.",
    );
    other.0 = "FC_Sample_Number_14_Specification.md".into();
    let e = errors(&[
        spec(
            14,
            "POL",
            "implemented",
            "- **FC-POL-1401** (MUST, implemented) It MUST deny.",
        ),
        other,
    ]);
    assert!(e.contains("specification 14 is also"), "{e}");
}

// Verifies: FC-COMP-6001
#[test]
fn a_malformed_specification_is_refused_naming_the_rule_it_breaks() {
    let cases: &[(&str, &str)] = &[
        (
            "- **FC-POL-1401** (MUSTN'T, implemented) It MUST deny.",
            "unknown keyword",
        ),
        (
            "- **FC-POL-1401** (MUST, done) It MUST deny.",
            "unknown status",
        ),
        (
            "- **FC-POL-1401** (MUST, implemented) It denies.",
            "does not say MUST",
        ),
        (
            "- **FC-SEC-1401** (MUST, implemented) It MUST deny.",
            "domain POL",
        ),
        (
            "- **FC-POL-1501** (MUST, implemented) It MUST deny.",
            "specification's 14",
        ),
        (
            "- **FC-POL-14011** (MUST, implemented) It MUST deny.",
            "not an identifier",
        ),
        ("- **FC-POL-1401** It MUST deny.", "a requirement is"),
    ];
    for (line, want) in cases {
        let e = errors(&[spec(14, "POL", "implemented", line)]);
        assert!(
            e.contains(want),
            "{line:?} should be refused with {want:?}: {e}"
        );
    }
    // A section out of place, a section missing, a requirement outside the requirement sections.
    let (name, text) = spec(
        14,
        "POL",
        "implemented",
        "- **FC-POL-1401** (MUST, implemented) It MUST deny.",
    );
    let swapped = text.replace("## Scope", "## Scope2");
    assert!(errors(&[(name.clone(), swapped)]).contains("where `## Scope` must come"));
    let cut = text
        .split("## Guarantees")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(errors(&[(name.clone(), cut)]).contains("missing sections: Guarantees"));
    let outside = text.replace(
        "## Purpose\n\nProse.",
        "## Purpose\n\n- **FC-POL-1402** (MUST, implemented) It MUST.",
    );
    assert!(errors(&[(name.clone(), outside)]).contains("outside the requirement sections"));
    // A header that disagrees with the title, the tier or its requirements.
    let renamed = ("FC_Other_Specification.md".to_owned(), text.clone());
    assert!(errors(&[renamed]).contains("must be named FC_Sample_Number_14_Specification.md"));
    assert!(
        errors(&[(
            name.clone(),
            text.replace("| Tier | enterprise |", "| Tier | reference |")
        )])
        .contains("enterprise tier")
    );
    assert!(
        errors(&[(
            name.clone(),
            text.replace("| Status | implemented |", "| Status | planned |")
        )])
        .contains("does not match")
    );
    assert!(
        errors(&[(name, text.replace("| Domain | POL |", "| Domain | LAW |"))])
            .contains("unknown domain")
    );
}

// Verifies: FC-COMP-6002, FC-COMP-6003
#[test]
fn the_check_names_an_unverified_must_an_unknown_tag_and_a_verified_plan() {
    let files = [spec(
        14,
        "POL",
        "partial",
        "- **FC-POL-1401** (MUST, implemented) It MUST deny.\n\
         - **FC-POL-1402** (SHOULD, implemented) It SHOULD explain; see FC-POL-1499.\n\
         - **FC-POL-1403** (MUST, planned) It MUST one day do more.",
    )];
    let suite = parse(&files).unwrap_or_else(|e| panic!("{e:?}"));
    let source = format!(
        "{}\n#[test]\nfn denies() {{}}\n\n{}\nfn stray() {{}}\n\n{}\n\nconst NOT_A_TEST: u8 = 0;\n",
        tag_line("FC-POL-1403, FC-POL-1404"),
        tag_line("FC-POL-9"),
        tag_line("FC-POL-1402")
    );
    let (mut tags, mut problems) = (Vec::new(), Vec::new());
    trace::scan_source("t.rs", &source, &mut tags, &mut problems);
    let scanned: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        scanned.iter().any(|p| p.starts_with("t.rs:5:")
            && p.contains("\"FC-POL-9\" is not a requirement identifier")),
        "{scanned:?}"
    );
    assert!(
        scanned
            .iter()
            .any(|p| p.starts_with("t.rs:8:") && p.contains("above no test function")),
        "{scanned:?}"
    );
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].test, "denies");

    let found: Vec<String> = trace::check(&suite, &tags)
        .iter()
        .map(|p| p.to_string())
        .collect();
    let has = |want: &str| found.iter().any(|p| p.contains(want));
    assert!(
        has("FC-POL-1401 is an implemented MUST that no test verifies"),
        "{found:?}"
    );
    assert!(
        has("FC-POL-1404 is not a requirement of the suite"),
        "{found:?}"
    );
    assert!(
        has("FC-POL-1403 is planned, yet denies verifies it"),
        "{found:?}"
    );
    assert!(
        has("FC-POL-1499 is not a requirement of the suite"),
        "{found:?}"
    );
    assert!(has("specification 1 has no file"), "{found:?}");
    // The SHOULD needs no test; the MUST is satisfied once a test names it.
    assert!(!has("FC-POL-1402"), "{found:?}");
    tags.push(Tag {
        file: "t.rs".into(),
        line: 20,
        test: "denies_too".into(),
        ids: vec!["FC-POL-1401".into()],
    });
    let found = trace::check(&suite, &tags);
    assert!(
        !found.iter().any(|p| p.message.contains("FC-POL-1401 ")),
        "{found:?}"
    );
}

// Verifies: FC-COMP-3007, FC-COMP-3113
#[test]
fn ci_runs_the_whole_test_suite_and_the_whole_compliance_suite_against_the_host() {
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    let commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    // The README's test command, which runs `cargo test --workspace` and with it this check.
    let tests = fs::read_to_string(root().join("tests/run")).unwrap();
    assert!(commands.contains(&"bash tests/run"), "{ci}");
    assert!(
        tests
            .lines()
            .any(|l| l.trim_start().starts_with("cargo test --workspace")),
        "{tests}"
    );
    // Then every case of the compliance suite against the host the tests built: no `--only`,
    // and nothing that would let a failure pass.
    let suite: Vec<&&str> = commands
        .iter()
        .filter(|l| l.contains("femtoclaw-host\" conformance"))
        .collect();
    assert_eq!(suite.len(), 1, "{ci}");
    assert!(
        !suite[0].contains("--only") && !suite[0].contains("||") && !suite[0].contains("; true"),
        "{}",
        suite[0]
    );
    assert!(commands.contains(&"set -euo pipefail"), "{ci}");
}
