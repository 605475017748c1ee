//! The report: one verdict per requirement of the suite, from the outcomes of the cases that
//! verify it, printed as text, JSON or JUnit XML.

use std::fmt::Write as _;

use femtoclaw_spec::{Status, Suite};
use serde_json::{Value as Json, json};

use crate::{Case, Failure, Target, UNOBSERVABLE};

/// What one case did.
#[derive(Debug)]
pub struct Outcome {
    pub case: Case,
    pub result: Result<(), Failure>,
    pub seconds: f64,
}

/// A requirement's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    NotApplicable,
    Planned,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => "not-applicable",
            Verdict::Planned => "planned",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Line {
    pub id: String,
    pub keyword: &'static str,
    /// Whether the keyword is MUST or MUST NOT.
    pub absolute: bool,
    pub verdict: Verdict,
    /// The cases that verify it.
    pub cases: Vec<&'static str>,
    /// Why it failed or does not apply.
    pub reason: String,
}

/// The reason of an implemented requirement that no case verifies yet.
const NO_CASE: &str = "no black-box case";
/// The reason of one whose cases a run with `--only` left out.
const NOT_RUN: &str = "its cases were not selected";
/// The reason's start for one no black-box case can verify ([`UNOBSERVABLE`]).
const NOT_OBSERVABLE: &str = "not observable through a public surface";

fn unobservable(id: &str) -> Option<&'static (&'static str, &'static str)> {
    UNOBSERVABLE.iter().find(|(u, _)| *u == id)
}

/// The whole report.
#[derive(Debug)]
pub struct Report {
    pub target: String,
    pub lines: Vec<Line>,
    pub outcomes: Vec<Outcome>,
}

/// How to print a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Junit,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "junit" => Ok(Format::Junit),
            other => Err(format!("unknown format {other:?} (text, json or junit)")),
        }
    }
}

impl Report {
    pub(crate) fn new(suite: &Suite, target: &Target, outcomes: Vec<Outcome>) -> Report {
        let table = crate::cases();
        let lines = suite
            .requirements()
            .iter()
            .map(|r| {
                let runs: Vec<&Outcome> = outcomes
                    .iter()
                    .filter(|o| o.case.verifies.contains(&r.id.as_str()))
                    .collect();
                let failed: Vec<String> = runs
                    .iter()
                    .filter_map(|o| match &o.result {
                        Err(Failure::Failed(why)) => Some(format!("{}: {why}", o.case.name)),
                        _ => None,
                    })
                    .collect();
                let not_applicable: Vec<String> = runs
                    .iter()
                    .filter_map(|o| match &o.result {
                        Err(Failure::NotApplicable(why)) => Some(format!("{}: {why}", o.case.name)),
                        _ => None,
                    })
                    .collect();
                let passed = runs.iter().any(|o| o.result.is_ok());
                let (verdict, reason) = if r.status == Status::Planned {
                    (Verdict::Planned, String::new())
                } else if !failed.is_empty() {
                    (Verdict::Fail, failed.join("; "))
                } else if passed {
                    (Verdict::Pass, String::new())
                } else if let Some((_, why)) = unobservable(&r.id) {
                    (Verdict::NotApplicable, format!("{NOT_OBSERVABLE}: {why}"))
                } else if runs.is_empty()
                    && table.iter().any(|c| c.verifies.contains(&r.id.as_str()))
                {
                    (Verdict::NotApplicable, NOT_RUN.to_owned())
                } else if runs.is_empty() {
                    (Verdict::NotApplicable, NO_CASE.to_owned())
                } else {
                    (Verdict::NotApplicable, not_applicable.join("; "))
                };
                Line {
                    id: r.id.clone(),
                    keyword: r.keyword.as_str(),
                    absolute: r.keyword.is_absolute(),
                    verdict,
                    cases: runs.iter().map(|o| o.case.name).collect(),
                    reason,
                }
            })
            .collect();
        Report {
            target: match target {
                Target::Binary(path) => format!("binary {}", path.display()),
                Target::Server { url, .. } => format!("server {url}"),
            },
            lines,
            outcomes,
        }
    }

    /// Whether the target conforms: no implemented MUST or MUST NOT fails, and no case failed.
    pub fn conforms(&self) -> bool {
        !self
            .lines
            .iter()
            .any(|l| l.verdict == Verdict::Fail && l.absolute)
            && !self
                .outcomes
                .iter()
                .any(|o| matches!(o.result, Err(Failure::Failed(_))))
    }

    /// How many lines have `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.lines.iter().filter(|l| l.verdict == verdict).count()
    }

    fn summary(&self) -> Json {
        let cases = |f: fn(&Outcome) -> bool| self.outcomes.iter().filter(|o| f(o)).count();
        json!({
            "requirements": self.lines.len(),
            "pass": self.count(Verdict::Pass),
            "fail": self.count(Verdict::Fail),
            "not-applicable": self.count(Verdict::NotApplicable),
            "planned": self.count(Verdict::Planned),
            "not-observable": self.lines.iter().filter(|l| l.reason.starts_with(NOT_OBSERVABLE)).count(),
            "no-black-box-case": self.lines.iter().filter(|l| l.reason == NO_CASE).count(),
            "cases": self.outcomes.len(),
            "cases-passed": cases(|o| o.result.is_ok()),
            "cases-failed": cases(|o| matches!(o.result, Err(Failure::Failed(_)))),
            "cases-not-applicable": cases(|o| matches!(o.result, Err(Failure::NotApplicable(_)))),
            "conforms": self.conforms(),
        })
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Json => {
                let requirements: Vec<Json> = self
                    .lines
                    .iter()
                    .map(|l| {
                        json!({
                            "id": l.id,
                            "keyword": l.keyword,
                            "verdict": l.verdict.as_str(),
                            "cases": l.cases,
                            "reason": l.reason,
                        })
                    })
                    .collect();
                let cases: Vec<Json> = self
                    .outcomes
                    .iter()
                    .map(|o| {
                        let (verdict, reason) = match &o.result {
                            Ok(()) => ("pass", ""),
                            Err(Failure::Failed(why)) => ("fail", why.as_str()),
                            Err(Failure::NotApplicable(why)) => ("not-applicable", why.as_str()),
                        };
                        json!({
                            "name": o.case.name,
                            "verifies": o.case.verifies,
                            "verdict": verdict,
                            "reason": reason,
                            "seconds": (o.seconds * 1000.0).round() / 1000.0,
                        })
                    })
                    .collect();
                let report = json!({
                    "target": self.target,
                    "summary": self.summary(),
                    "requirements": requirements,
                    "cases": cases,
                });
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                )
            }
            Format::Junit => self.junit(),
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let _ = write!(
                out,
                "{:<14} {:<16} {:<11}",
                l.verdict.as_str(),
                l.id,
                l.keyword
            );
            if !l.cases.is_empty() {
                let _ = write!(out, " {}", l.cases.join(", "));
            }
            if !l.reason.is_empty() && l.verdict != Verdict::Pass {
                let _ = write!(out, " — {}", l.reason);
            }
            out.push('\n');
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "\n{}: {} requirements: {} pass, {} fail, {} not applicable ({} not observable, {} without a case yet), {} planned; {} cases: {} passed, {} failed, {} not applicable; {}",
            self.target,
            s["requirements"],
            s["pass"],
            s["fail"],
            s["not-applicable"],
            s["not-observable"],
            s["no-black-box-case"],
            s["planned"],
            s["cases"],
            s["cases-passed"],
            s["cases-failed"],
            s["cases-not-applicable"],
            if self.conforms() {
                "conforms"
            } else {
                "does NOT conform"
            }
        );
        // The failed cases again, last, so that the tail of a long run says what failed.
        for o in &self.outcomes {
            if let Err(Failure::Failed(why)) = &o.result {
                let _ = writeln!(
                    out,
                    "failed case {} ({:.1} s): {why}",
                    o.case.name, o.seconds
                );
            }
        }
        out
    }

    /// JUnit XML: one test case per requirement.
    fn junit(&self) -> String {
        let mut body = String::new();
        for l in &self.lines {
            let _ = write!(
                body,
                "    <testcase classname=\"femtoclaw.conformance\" name=\"{}\">",
                xml(&l.id)
            );
            match l.verdict {
                Verdict::Pass => {}
                Verdict::Fail => {
                    let _ = write!(
                        body,
                        "<failure message=\"{}\">{}</failure>",
                        xml(&l.reason),
                        xml(&l.cases.join(", "))
                    );
                }
                Verdict::NotApplicable => {
                    let _ = write!(
                        body,
                        "<skipped message=\"not applicable: {}\"/>",
                        xml(&l.reason)
                    );
                }
                Verdict::Planned => body.push_str("<skipped message=\"planned\"/>"),
            }
            body.push_str("</testcase>\n");
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"femtoclaw-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n{body}  </testsuite>\n</testsuites>\n",
            self.lines.len(),
            self.count(Verdict::Fail),
            self.count(Verdict::NotApplicable) + self.count(Verdict::Planned),
        )
    }
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
