//! `femtoclaw-host conformance`: the compliance suite against the host itself, against a running
//! server, and against targets that must fail it (a binary that does nothing, one that fails
//! open on denials); and the case table's own soundness.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Output;

use femtoclaw_conformance::{Case, Failure, UNOBSERVABLE, cases, check_cases, check_unobservable};
use femtoclaw_spec::Suite;

use super::{Server, token};
use crate::common::{Host, code, stderr, stdout};
use serde_json::Value as Json;

fn conformance(args: &[&str]) -> Output {
    let mut all = vec!["conformance"];
    all.extend_from_slice(args);
    Host::new().run(&all)
}

fn parse_report(out: &Output) -> Json {
    serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", stdout(out)))
}

/// The verdict of each requirement, by id.
fn verdicts(report: &Json) -> std::collections::HashMap<String, String> {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The cases the host's own test runs: some of each surface.
const SAMPLE: &[&str] = &[
    "cli.allowed-call-returns-its-result",
    "cli.trap",
    "cli.checkpoint-signed-by-published-key",
    "http.health",
    "mcp.session-lists-and-calls-tools",
];

// Verifies: FC-COMP-3101, FC-COMP-3102, FC-COMP-3103, FC-COMP-3105, FC-COMP-5901, FC-DIST-4301
// Verifies: FC-COMP-3001, FC-COMP-3002, FC-COMP-3116
#[test]
fn the_host_conforms_every_case_passes_and_every_requirement_has_a_line() {
    // A few cases of each surface: the whole suite runs in CI (`.ci/run`) against the host.
    let mut args = vec!["--format", "json"];
    for case in SAMPLE {
        args.extend(["--only", case]);
    }
    let out = conformance(&args);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = parse_report(&out);
    let suite = Suite::embedded().unwrap();
    let verdicts = verdicts(&report);
    let sampled: Vec<Case> = cases()
        .into_iter()
        .filter(|c| SAMPLE.contains(&c.name))
        .collect();
    assert_eq!(sampled.len(), SAMPLE.len());
    // One line per requirement of the suite, and only those.
    assert_eq!(verdicts.len(), suite.requirements().len());
    for r in suite.requirements() {
        let verdict = &verdicts[&r.id];
        let covered = sampled.iter().any(|c| c.verifies.contains(&r.id.as_str()));
        let want = match (r.status, covered) {
            (femtoclaw_spec::Status::Planned, _) => "planned",
            (_, true) => "pass",
            (_, false) => "not-applicable",
        };
        assert_eq!(verdict, want, "{}", r.id);
    }
    let ran = report["cases"].as_array().unwrap();
    assert_eq!(ran.len(), SAMPLE.len());
    assert!(
        ran.iter().all(|c| c["verdict"] == "pass"),
        "{}",
        stdout(&out)
    );
    assert_eq!(report["summary"]["conforms"], true);
    assert_eq!(report["summary"]["cases-passed"], SAMPLE.len());
    // The requirements no case can observe say why, and are counted apart from those that lack
    // a case yet.
    let reasons: std::collections::HashMap<&str, &str> = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    for (id, why) in UNOBSERVABLE {
        assert_eq!(
            reasons[id],
            format!("not observable through a public surface: {why}"),
            "{id}"
        );
    }
    assert_eq!(report["summary"]["not-observable"], UNOBSERVABLE.len());
    let uncovered = suite
        .requirements()
        .iter()
        .filter(|r| r.status == femtoclaw_spec::Status::Implemented)
        .filter(|r| !cases().iter().any(|c| c.verifies.contains(&r.id.as_str())))
        .filter(|r| !UNOBSERVABLE.iter().any(|(u, _)| *u == r.id))
        .count();
    // Requirements whose cases did not run are not applicable for this run, and not counted
    // as lacking a case; those no case of the suite verifies are.
    assert_eq!(report["summary"]["no-black-box-case"], uncovered);
    for r in suite.requirements() {
        let unselected = r.status == femtoclaw_spec::Status::Implemented
            && !sampled.iter().any(|c| c.verifies.contains(&r.id.as_str()))
            && cases().iter().any(|c| c.verifies.contains(&r.id.as_str()));
        if unselected {
            assert_eq!(
                reasons[r.id.as_str()],
                "its cases were not selected",
                "{}",
                r.id
            );
        }
    }

    // Text: one line per requirement, then the summary.
    let out = conformance(&["--only", "cli.trap"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), suite.requirements().len() + 2, "{text}");
    assert!(lines.last().unwrap().ends_with("; conforms"), "{text}");
    let all = cases();
    let trap = all.iter().find(|c| c.name == "cli.trap").unwrap();
    for id in trap.verifies {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("pass ") && l.contains(id)),
            "{id}: {text}"
        );
    }
}

// Verifies: FC-COMP-3101, FC-COMP-3104, FC-COMP-3105
#[test]
fn against_a_server_the_command_line_cases_do_not_apply_and_the_rest_pass() {
    let host = Host::new();
    let operator = token(&host, "user:local", "operator");
    let server = Server::start(&host);
    let out = Host::new().run(&[
        "conformance",
        "--url",
        &server.url,
        "--token",
        &operator,
        "--format",
        "junit",
    ]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let xml = stdout(&out);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");
    // Every command-line case does not apply; every other one passes, or needs what a given
    // server does not offer (a command line, a policy or configuration of its own); none fails.
    let err = stderr(&out);
    for case in cases() {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("{} (", case.name)))
            .unwrap_or_else(|| panic!("{}: {err}", case.name));
        let skipped = line.contains(") not applicable: ");
        assert!(skipped || line.ends_with(") pass"), "{line}");
        assert!(skipped || !case.name.starts_with("cli."), "{line}");
    }
    assert!(err.contains("http.health ("), "{err}");
    assert!(!err.contains("FAIL"), "{err}");
    // A requirement only command-line cases verify is not applicable, never passed.
    let only_cli = cases()
        .iter()
        .filter(|c| c.name.starts_with("cli."))
        .flat_map(|c| c.verifies.iter())
        .find(|id| {
            !cases()
                .iter()
                .any(|c| !c.name.starts_with("cli.") && c.verifies.contains(id))
        })
        .expect("some requirement only the command line shows");
    assert!(
        xml.contains(&format!(
            "name=\"{only_cli}\"><skipped message=\"not applicable: "
        )),
        "{only_cli}: {xml}"
    );
    assert_eq!(server.stop(), 0);
}

/// An executable script in `dir`.
fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

// Verifies: FC-COMP-3103, FC-COMP-3104, FC-COMP-3109, FC-COMP-3112, FC-COMP-3002, FC-COMP-3004
// Verifies: FC-COMP-3115
#[test]
fn targets_that_do_not_conform_fail_naming_the_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::embedded().unwrap();

    // A binary that does nothing and says yes to everything conforms to nothing.
    let nothing = script(dir.path(), "nothing", "exit 0");
    let out = conformance(&["--binary", &nothing, "--format", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = parse_report(&out);
    assert_eq!(report["summary"]["conforms"], false);
    assert_eq!(report["summary"]["cases-passed"], 0, "{}", stdout(&out));

    // A real runtime wrapped to fail open: a denial (exit 7) becomes success. The policy
    // cases must fail, and the requirements they verify with them.
    let real = env!("CARGO_BIN_EXE_femtoclaw-host");
    let open = script(
        dir.path(),
        "fail-open",
        &format!("\"{real}\" \"$@\"; c=$?; [ $c -eq 7 ] && exit 0; exit $c"),
    );
    let mut args = vec!["--binary", open.as_str(), "--format", "json"];
    for case in [
        "cli.no-permit-means-denied",
        "cli.forbid-overrides-permit",
        "cli.ungranted-import-refused-at-link",
        "cli.trap",
        "cli.fuel-exhaustion",
    ] {
        args.extend(["--only", case]);
    }
    let out = conformance(&args);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = parse_report(&out);
    let failed: Vec<&str> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for denial in [
        "cli.no-permit-means-denied",
        "cli.forbid-overrides-permit",
        "cli.ungranted-import-refused-at-link",
    ] {
        assert!(failed.contains(&denial), "{denial}: {failed:?}");
    }
    assert!(
        !failed.contains(&"cli.trap") && !failed.contains(&"cli.fuel-exhaustion"),
        "{}",
        stdout(&out)
    );
    let verdicts = verdicts(&report);
    let all = cases();
    let denied = all
        .iter()
        .find(|c| c.name == "cli.no-permit-means-denied")
        .unwrap();
    for id in denied.verifies {
        assert_eq!(verdicts[*id], "fail", "{id}");
    }
    assert!(
        report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["reason"].as_str().unwrap().contains("exit 0 where 7")),
        "{}",
        stdout(&out)
    );
    assert!(suite.requirements().len() == verdicts.len());

    // A runtime whose published checkpoint was altered after signing: the suite's own
    // verifier refuses it, though the target would never say so itself.
    let forger = script(
        dir.path(),
        "forger",
        &format!(
            "if [ \"$1 $2\" = \"log checkpoint\" ]; then \"{real}\" \"$@\" | sed '2s/.*/999999/'; exit 0; fi; exec \"{real}\" \"$@\""
        ),
    );
    let out = conformance(&[
        "--binary",
        &forger,
        "--format",
        "json",
        "--only",
        "cli.checkpoint",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = parse_report(&out);
    assert_eq!(report["cases"][0]["verdict"], "fail", "{}", stdout(&out));
    assert!(
        report["cases"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("signature by the pinned key does not verify"),
        "{}",
        stdout(&out)
    );
    // In text, the last line names the failed case and why, after the summary.
    let out = conformance(&["--binary", &forger, "--only", "cli.checkpoint"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    let tail: Vec<&str> = text.lines().rev().take(2).collect();
    assert!(tail[1].ends_with("; does NOT conform"), "{text}");
    assert!(
        tail[0].starts_with("failed case cli.checkpoint-signed-by-published-key (")
            && tail[0].contains("signature by the pinned key does not verify"),
        "{text}"
    );

    // A binary whose `serve` prints nothing fails the server cases, naming what it must print.
    let out = conformance(&[
        "--binary",
        &nothing,
        "--format",
        "json",
        "--only",
        "http.health",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("must first print `listening on URL`"),
        "{}",
        stdout(&out)
    );

    // Bad arguments are refused with exit 2.
    let out = conformance(&["--url", "http://127.0.0.1:9"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = conformance(&["--format", "yaml"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

fn noop(_: &femtoclaw_conformance::Target) -> Result<(), Failure> {
    Ok(())
}

// Verifies: FC-COMP-3106, FC-COMP-3116
#[test]
fn a_case_table_naming_unknown_planned_or_nothing_is_refused() {
    let suite = Suite::embedded().unwrap();
    check_cases(&suite, &cases()).unwrap();
    let planned = suite
        .requirements()
        .iter()
        .find(|r| r.status == femtoclaw_spec::Status::Planned)
        .unwrap();
    // An implemented requirement some case verifies.
    const IMPLEMENTED: &str = "FC-CORE-0101";
    let bad = [
        Case {
            name: "unknown",
            verifies: &["FC-CORE-0199"],
            run: noop,
        },
        Case {
            name: "nothing",
            verifies: &[],
            run: noop,
        },
        Case {
            name: "twice",
            verifies: &[IMPLEMENTED],
            run: noop,
        },
        Case {
            name: "twice",
            verifies: &[IMPLEMENTED],
            run: noop,
        },
    ];
    let problems = check_cases(&suite, &bad).unwrap_err().join("\n");
    assert!(
        problems.contains("case unknown names FC-CORE-0199, which is not a requirement"),
        "{problems}"
    );
    assert!(
        problems.contains("case nothing verifies nothing"),
        "{problems}"
    );
    assert!(
        problems.contains("case twice is defined twice"),
        "{problems}"
    );
    let leaked: &'static str = Box::leak(planned.id.clone().into_boxed_str());
    let leaked: &'static [&'static str] = Box::leak(Box::new([leaked]));
    let planned_case = [Case {
        name: "planned",
        verifies: leaked,
        run: noop,
    }];
    let problems = check_cases(&suite, &planned_case).unwrap_err().join("\n");
    assert!(problems.contains("which is planned"), "{problems}");

    // The list of requirements no black-box case can observe is sound, and a broken one is
    // refused: unknown, planned, verified by a case, listed twice, or without a reason.
    check_unobservable(&suite, &cases(), UNOBSERVABLE).unwrap();
    let bad = [
        ("FC-CORE-0199", "unknown"),
        (planned.id.as_str(), "planned"),
        (IMPLEMENTED, "a case verifies it"),
        ("FC-COMP-3006", "once"),
        ("FC-COMP-3006", "twice"),
        ("FC-COMP-3007", " "),
    ];
    let problems = check_unobservable(&suite, &cases(), &bad)
        .unwrap_err()
        .join("\n");
    for want in [
        "FC-CORE-0199, listed as not observable, is not a requirement",
        &format!("{}, listed as not observable, is planned", planned.id),
        &format!(
            "{IMPLEMENTED} is listed as not observable, yet case cli.allowed-call-returns-its-result verifies it"
        ),
        "FC-COMP-3006 is listed twice",
        "FC-COMP-3007 is listed as not observable without a reason",
    ] {
        assert!(problems.contains(want), "{want}: {problems}");
    }
}
