//! Cases of the compliance area: the target's own `conformance` command, driven as any other
//! command of its command line — its report's lines and formats, its exit codes, and its verdicts
//! on targets that must not conform (one that fails open, one whose `serve` prints nothing).

use std::os::unix::fs::PermissionsExt as _;

use femtoclaw_spec::{Status, Suite};
use serde_json::Value as Json;

use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[Case {
    name: "cli.conformance.command",
    verifies: &[
        "FC-COMP-3001",
        "FC-COMP-3002",
        "FC-COMP-3004",
        "FC-COMP-3005",
        "FC-COMP-3102",
        "FC-COMP-3103",
        "FC-COMP-3105",
        "FC-COMP-3111",
        "FC-COMP-3112",
        "FC-COMP-3115",
        "FC-COMP-5901",
    ],
    run: conformance_command,
}];

/// The case the target's own suite runs against itself: short, and one that must pass.
const PASSING: &str = "cli.trap";
/// A case that fails against a runtime that fails open on a denial.
const DENIAL: &str = "cli.no-permit-means-denied";

/// An executable script in the host's file directory; its path.
fn script(host: &Host, name: &str, body: &str) -> Result<String, Failure> {
    let path = host.file(name, format!("#!/bin/sh\n{body}\n").as_bytes())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Failure::Failed(format!("cannot make {name} executable: {e}")))?;
    Ok(path.to_string_lossy().into_owned())
}

/// `conformance ARGS` of the target; the run and, for `--format json`, the report.
fn conformance(host: &Host, args: &[&str]) -> Result<Run, Failure> {
    let mut all = vec!["conformance"];
    all.extend_from_slice(args);
    host.run(&all)
}

fn report(run: &Run, what: &str) -> Result<Json, Failure> {
    run.json()
        .map_err(|e| Failure::Failed(format!("{what}: {}", failure_text(e))))
}

fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::Failed(why) | Failure::NotApplicable(why) => why,
    }
}

/// The members `object` must have.
fn members(object: &Json, names: &[&str], what: &str) -> Result<(), Failure> {
    for name in names {
        ensure!(
            object.get(name).is_some(),
            "{what} has no member {name:?}: {}",
            excerpt(&object.to_string())
        );
    }
    Ok(())
}

/// A JSON report's requirement lines, checked against `suite`: exactly one per requirement, in
/// the suite's order, planned exactly where the suite says so, and the summary's counts those of
/// the lines and cases. Returns the verdict per identifier.
fn check_lines(
    report: &Json,
    suite: &Suite,
    what: &str,
) -> Result<std::collections::HashMap<String, String>, Failure> {
    members(
        report,
        &["target", "summary", "requirements", "cases"],
        what,
    )?;
    let summary = &report["summary"];
    members(
        summary,
        &[
            "requirements",
            "pass",
            "fail",
            "not-applicable",
            "planned",
            "not-observable",
            "no-black-box-case",
            "cases",
            "cases-passed",
            "cases-failed",
            "cases-not-applicable",
            "conforms",
        ],
        &format!("{what}: the summary"),
    )?;
    let lines = report["requirements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    let want: Vec<&str> = suite.requirements().iter().map(|r| r.id.as_str()).collect();
    ensure!(
        ids == want,
        "{what}: {} requirement lines where the suite has {} requirements, or not in its order",
        ids.len(),
        want.len()
    );
    let mut verdicts = std::collections::HashMap::new();
    let mut counts = std::collections::HashMap::<&str, u64>::new();
    for (line, r) in lines.iter().zip(suite.requirements()) {
        members(
            line,
            &["id", "keyword", "verdict", "cases", "reason"],
            &format!("{what}: the line of {}", r.id),
        )?;
        let verdict = line["verdict"].as_str().unwrap_or("");
        ensure!(
            ["pass", "fail", "not-applicable", "planned"].contains(&verdict),
            "{what}: {} has the verdict {verdict:?}",
            r.id
        );
        ensure!(
            (verdict == "planned") == (r.status == Status::Planned),
            "{what}: {} is {:?} in the suite but {verdict:?} in the report",
            r.id,
            r.status
        );
        ensure!(
            line["keyword"] == r.keyword.as_str(),
            "{what}: {} has the keyword {} where the suite says {}",
            r.id,
            line["keyword"],
            r.keyword.as_str()
        );
        *counts
            .entry(match verdict {
                "pass" => "pass",
                "fail" => "fail",
                "planned" => "planned",
                _ => "not-applicable",
            })
            .or_default() += 1;
        verdicts.insert(r.id.clone(), verdict.to_owned());
    }
    for key in ["pass", "fail", "not-applicable", "planned"] {
        let counted = counts.get(key).copied().unwrap_or(0);
        ensure!(
            summary[key].as_u64() == Some(counted),
            "{what}: the summary counts {} {key} where the lines have {counted}",
            summary[key]
        );
    }
    let apart = summary["not-observable"]
        .as_u64()
        .zip(summary["no-black-box-case"].as_u64())
        .map(|(a, b)| a + b);
    ensure!(
        apart.is_some_and(|a| a <= counts.get("not-applicable").copied().unwrap_or(0)),
        "{what}: the summary counts {apart:?} not observable or without a case among {} not applicable",
        summary["not-applicable"]
    );
    ensure!(
        summary["requirements"].as_u64() == Some(want.len() as u64),
        "{what}: the summary counts {} requirements where the suite has {}",
        summary["requirements"],
        want.len()
    );
    let cases = report["cases"].as_array().cloned().unwrap_or_default();
    let case_count = |v: &str| cases.iter().filter(|c| c["verdict"] == v).count() as u64;
    for (key, verdict) in [
        ("cases-passed", "pass"),
        ("cases-failed", "fail"),
        ("cases-not-applicable", "not-applicable"),
    ] {
        ensure!(
            summary[key].as_u64() == Some(case_count(verdict)),
            "{what}: the summary's {key} is {} where {} cases are {verdict}",
            summary[key],
            case_count(verdict)
        );
    }
    ensure!(
        summary["cases"].as_u64() == Some(cases.len() as u64),
        "{what}: the summary counts {} cases where {} ran",
        summary["cases"],
        cases.len()
    );
    for case in &cases {
        members(
            case,
            &["name", "verifies", "verdict", "reason", "seconds"],
            &format!("{what}: a case"),
        )?;
    }
    // The claim rests on the suite alone: it conforms exactly when no case and no implemented
    // MUST or MUST NOT failed.
    let absolute_failed = lines.iter().zip(suite.requirements()).any(|(l, r)| {
        l["verdict"] == "fail" && r.keyword.is_absolute() && r.status == Status::Implemented
    });
    let conforms = !absolute_failed && case_count("fail") == 0;
    ensure!(
        summary["conforms"] == conforms,
        "{what}: the summary says conforms = {} where the verdicts say {conforms}",
        summary["conforms"]
    );
    Ok(verdicts)
}

/// The case named `name` of a JSON report.
fn case<'a>(report: &'a Json, name: &str, what: &str) -> Result<&'a Json, Failure> {
    report["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["name"] == name))
        .ok_or_else(|| Failure::Failed(format!("{what}: the report has no case {name}")))
}

fn conformance_command(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let Target::Binary(binary) = target else {
        return Err(Failure::NotApplicable(
            "the target is a server: it has no command line".into(),
        ));
    };
    let suite = Suite::embedded().map_err(|e| {
        Failure::Failed(format!(
            "the suite's own specification suite is malformed: {e:?}"
        ))
    })?;

    // Against itself, one passing case: JSON with every member, one line per requirement.
    let run = conformance(&host, &["--only", PASSING, "--format", "json"])?;
    run.expect(0, &format!("conformance --only {PASSING}"))?;
    let what = format!("conformance --only {PASSING} --format json");
    let json = report(&run, &what)?;
    let verdicts = check_lines(&json, &suite, &what)?;
    ensure!(
        json["summary"]["conforms"] == true && json["summary"]["cases"] == 1,
        "{what}: a run of one passing case does not conform: {}",
        json["summary"]
    );
    let passing = case(&json, PASSING, &what)?;
    ensure!(
        passing["verdict"] == "pass",
        "{what}: {PASSING} is {} ({})",
        passing["verdict"],
        passing["reason"]
    );
    for id in passing["verifies"].as_array().cloned().unwrap_or_default() {
        let id = id.as_str().unwrap_or("");
        ensure!(
            verdicts.get(id).is_some_and(|v| v == "pass"),
            "{what}: {id}, which the passing {PASSING} verifies, is {:?}",
            verdicts.get(id)
        );
    }
    ensure!(
        verdicts.values().any(|v| v == "not-applicable"),
        "{what}: requirements no case ran for are not not-applicable"
    );
    // Progress on standard error: the case's name, its duration, its outcome.
    ensure!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&format!("{PASSING} ("))
                && l.contains(" s) ")
                && l.ends_with("pass")),
        "{what}: standard error has no line `{PASSING} (SECONDS s) pass`: {}",
        excerpt(&run.stderr)
    );

    // Text: one line per requirement, a blank line, the summary.
    let run = conformance(&host, &["--only", PASSING])?;
    run.expect(0, &format!("conformance --only {PASSING}"))?;
    let lines: Vec<&str> = run.stdout.lines().collect();
    let n = suite.requirements().len();
    ensure!(
        lines.len() == n + 2 && lines[n].is_empty() && lines[n + 1].ends_with("; conforms"),
        "conformance in text: {} lines where {n} requirement lines, a blank line and a summary ending `; conforms` are required; the last: {:?}",
        lines.len(),
        lines.last()
    );
    for (line, r) in lines.iter().zip(suite.requirements()) {
        let verdict = line.split_whitespace().next().unwrap_or("");
        ensure!(
            line.split_whitespace().nth(1) == Some(r.id.as_str())
                && verdicts.get(&r.id).is_some_and(|v| v == verdict),
            "conformance in text: the line {line:?} is not the verdict of {} the JSON report gives",
            r.id
        );
    }

    // JUnit: one test case per requirement.
    let run = conformance(&host, &["--only", PASSING, "--format", "junit"])?;
    run.expect(0, &format!("conformance --only {PASSING} --format junit"))?;
    let xml = &run.stdout;
    ensure!(
        xml.starts_with("<?xml") && xml.contains("<testsuite name=\"femtoclaw-conformance\""),
        "conformance --format junit: not a JUnit test suite named femtoclaw-conformance: {}",
        excerpt(xml)
    );
    let testcases = xml.matches("<testcase ").count();
    ensure!(
        testcases == n,
        "conformance --format junit: {testcases} test cases where the suite has {n} requirements"
    );
    for r in suite.requirements() {
        ensure!(
            xml.contains(&format!(
                "classname=\"femtoclaw.conformance\" name=\"{}\"",
                r.id
            )),
            "conformance --format junit: no test case femtoclaw.conformance {}",
            r.id
        );
    }

    // Bad arguments: exit 2.
    for args in [
        &["--format", "yaml"][..],
        &["--url", "http://127.0.0.1:9"][..],
        &[
            "--binary",
            "/bin/true",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "t",
        ][..],
    ] {
        conformance(&host, args)?.expect(2, &format!("conformance {}", args.join(" ")))?;
    }

    // A runtime that fails open — a denial (exit 7) turned into success — does not conform, and
    // the requirements the denial case verifies fail with it; the tail of the text says why.
    let real = binary.to_string_lossy();
    let open = script(
        &host,
        "fail-open",
        &format!("\"{real}\" \"$@\"; c=$?; [ $c -eq 7 ] && exit 0; exit $c"),
    )?;
    let run = conformance(
        &host,
        &["--binary", &open, "--only", DENIAL, "--format", "json"],
    )?;
    let what = format!("conformance --binary FAIL-OPEN --only {DENIAL}");
    run.expect(1, &what)?;
    let json = report(&run, &what)?;
    let verdicts = check_lines(&json, &suite, &what)?;
    ensure!(
        json["summary"]["conforms"] == false,
        "{what}: a runtime that fails open is reported as conforming"
    );
    let denial = case(&json, DENIAL, &what)?;
    ensure!(
        denial["verdict"] == "fail",
        "{what}: {DENIAL} is {} against a runtime that fails open",
        denial["verdict"]
    );
    for id in denial["verifies"].as_array().cloned().unwrap_or_default() {
        let id = id.as_str().unwrap_or("");
        ensure!(
            verdicts.get(id).is_some_and(|v| v == "fail"),
            "{what}: {id}, which the failed {DENIAL} verifies, is {:?}",
            verdicts.get(id)
        );
    }
    let run = conformance(&host, &["--binary", &open, "--only", DENIAL])?;
    run.expect(1, &what)?;
    let tail: Vec<&str> = run.stdout.lines().rev().take(2).collect();
    ensure!(
        tail.len() == 2
            && tail[1].ends_with("; does NOT conform")
            && tail[0].starts_with(&format!("failed case {DENIAL} (")),
        "{what} in text: the report does not end with the summary and then `failed case {DENIAL} (…`: {tail:?}"
    );

    // A binary whose `serve` prints nothing fails the server cases, naming what it must print.
    let nothing = script(&host, "nothing", "exit 0")?;
    let run = conformance(
        &host,
        &[
            "--binary",
            &nothing,
            "--only",
            "http.health",
            "--format",
            "json",
        ],
    )?;
    let what = "conformance --binary EXIT-0 --only http.health";
    run.expect(1, what)?;
    let json = report(&run, what)?;
    check_lines(&json, &suite, what)?;
    let health = case(&json, "http.health", what)?;
    ensure!(
        health["verdict"] == "fail"
            && health["reason"]
                .as_str()
                .is_some_and(|r| r.contains("listening on URL")),
        "{what}: http.health does not fail naming `listening on URL`: {health}"
    );
    Ok(())
}
