//! Cases of the security area: authorization decisions and their forms, the policy language,
//! link-time and call-time grants, egress, files, secrets and tokens.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{GREET, OPEN, guest_host, kinds};
use crate::target::{Host, Run, Server, excerpt};
use crate::{Case, Failure, GUEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.policy.check-refusals",
        verifies: &[
            "FC-POL-1501",
            "FC-POL-1502",
            "FC-POL-1503",
            "FC-POL-1504",
            "FC-POL-1505",
            "FC-POL-1512",
            "FC-POL-1517",
        ],
        run: policy_check_refusals,
    },
    Case {
        name: "cli.policy.check-lists",
        verifies: &["FC-POL-1506", "FC-POL-1514", "FC-POL-1516"],
        run: policy_check_lists,
    },
    Case {
        name: "cli.policy.digest",
        verifies: &["FC-POL-1509"],
        run: policy_digest,
    },
    Case {
        name: "cli.policy.source",
        verifies: &["FC-POL-1507", "FC-POL-1511"],
        run: policy_source,
    },
    Case {
        name: "cli.policy.explain-decisions",
        verifies: &[
            "FC-POL-1401",
            "FC-POL-1403",
            "FC-POL-1404",
            "FC-POL-1405",
            "FC-POL-1407",
            "FC-POL-1411",
            "FC-POL-1515",
        ],
        run: policy_explain_decisions,
    },
    Case {
        name: "cli.policy.capability-context",
        verifies: &["FC-POL-1406"],
        run: policy_capability_context,
    },
    Case {
        name: "cli.policy.evaluation-error-skipped",
        verifies: &["FC-POL-1408"],
        run: policy_evaluation_error_skipped,
    },
    Case {
        name: "cli.policy.default-and-publisher",
        verifies: &["FC-POL-1415", "FC-POL-1416"],
        run: policy_default_and_publisher,
    },
    Case {
        name: "cli.policy.invoke-decision",
        verifies: &["FC-POL-1410", "FC-POL-1418", "FC-POL-1421"],
        run: policy_invoke_decision,
    },
    Case {
        name: "cli.policy.change-recorded",
        verifies: &["FC-POL-1513"],
        run: policy_change_recorded,
    },
    Case {
        name: "cli.link.manifest-and-baseline",
        verifies: &[
            "FC-POL-1601",
            "FC-POL-1602",
            "FC-POL-1603",
            "FC-POL-1616",
            "FC-POL-1618",
        ],
        run: link_manifest_and_baseline,
    },
    Case {
        name: "cli.link.scopes",
        verifies: &["FC-POL-1608", "FC-POL-1615", "FC-POL-1619"],
        run: link_scopes,
    },
    Case {
        name: "cli.files.paths",
        verifies: &[
            "FC-SEC-2101",
            "FC-POL-1701",
            "FC-POL-1702",
            "FC-POL-1704",
            "FC-POL-1711",
            "FC-POL-1715",
        ],
        run: files_paths,
    },
    Case {
        name: "cli.egress.addresses",
        verifies: &[
            "FC-POL-1707",
            "FC-POL-1712",
            "FC-POL-1713",
            "FC-POL-1717",
            "FC-SEC-2001",
            "FC-SEC-2002",
            "FC-SEC-2010",
            "FC-SEC-2011",
            "FC-SEC-2012",
            "FC-SEC-2020",
        ],
        run: egress_addresses,
    },
    Case {
        name: "cli.egress.loopback-peer",
        verifies: &["FC-SEC-2009", "FC-SEC-2016", "FC-SEC-2017"],
        run: egress_loopback_peer,
    },
    Case {
        name: "cli.secret.store",
        verifies: &[
            "FC-SEC-2201",
            "FC-SEC-2202",
            "FC-SEC-2203",
            "FC-SEC-2204",
            "FC-SEC-2208",
            "FC-SEC-2219",
        ],
        run: secret_store,
    },
    Case {
        name: "cli.token.records",
        verifies: &[
            "FC-SEC-1801",
            "FC-SEC-1802",
            "FC-SEC-1803",
            "FC-SEC-1807",
            "FC-SEC-1808",
            "FC-SEC-1812",
            "FC-SEC-1814",
            "FC-SEC-1819",
            "FC-SEC-1820",
            "FC-SEC-1824",
            "FC-SEC-1826",
        ],
        run: token_records,
    },
    Case {
        name: "http.token.lifecycle",
        verifies: &[
            "FC-SEC-1804",
            "FC-SEC-1805",
            "FC-SEC-1809",
            "FC-SEC-1811",
            "FC-SEC-1815",
            "FC-SEC-1825",
            "FC-SEC-5601",
            "FC-SEC-5606",
        ],
        run: http_token_lifecycle,
    },
    Case {
        name: "http.policy.reload",
        verifies: &["FC-POL-1508", "FC-POL-1611"],
        run: http_policy_reload,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Writes `<data dir>/policy/<name>` (the policy directory's files are the operator's input).
fn cedar(host: &Host, name: &str, text: &str) -> Result<(), Failure> {
    let dir = host.data.path().join("policy");
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(name), text))
        .map_err(|e| Failure::Failed(format!("cannot write policy {name}: {e}")))
}

/// Writes a file under `dir`, creating its parent.
fn write(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))
}

/// `policy check PATH`.
fn check(host: &Host, path: &Path) -> Result<Run, Failure> {
    host.run(&["policy", "check", &path.to_string_lossy()])
}

/// The digest `policy check` ends with.
fn checked_digest(run: &Run) -> Result<String, Failure> {
    run.expect(0, "policy check")?;
    let last = run.stdout.trim_end().lines().last().unwrap_or("");
    let digest = last.rsplit("digest ").next().unwrap_or("");
    ensure!(
        last.contains(" policies, digest ") && is_hex64(digest),
        "policy check does not end with `<n> policies, digest <hex>`: {}",
        excerpt(&run.stdout)
    );
    Ok(digest.to_owned())
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `policy explain --json` with `args`.
fn explain(host: &Host, args: &[&str]) -> Result<Json, Failure> {
    let mut all = vec!["policy", "explain", "--json"];
    all.extend_from_slice(args);
    let run = host.run(&all)?;
    run.expect(0, &all.join(" "))?;
    run.json()
}

/// Installs the suite's guest under another manifest.
fn probe(host: &Host, file: &str, manifest: &str) -> Result<Run, Failure> {
    let wasm = host.file("probe.wasm", GUEST)?;
    let manifest = host.file(file, manifest.as_bytes())?;
    host.run(&[
        "capability",
        "add",
        &wasm.to_string_lossy(),
        "--manifest",
        &manifest.to_string_lossy(),
    ])
}

/// A manifest of the suite's guest named `name`, published by `publisher`, with `requests`.
fn manifest(name: &str, publisher: &str, requests: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\npublisher = \"{publisher}\"\nfuel = 50_000_000\n\n[requests]\n{requests}\n"
    )
}

/// The guest's own requests.
const GUEST_REQUESTS: &str = "imports = [\"femtoclaw:host/log@0.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]\nkv = [{ namespace = \"conformance\", write = true }]";

/// One decision of an explanation's imports or scopes.
fn item<'a>(list: &'a Json, key: &str, value: &str, action: Option<&str>) -> Option<&'a Json> {
    list.as_array()?
        .iter()
        .find(|i| i[key] == value && action.is_none_or(|a| i["action"] == a))
}

/// `invoke CAPABILITY FUNCTION --args ARGS` of an embedded capability: its printed result.
fn call(host: &Host, capability: &str, function: &str, args: &Json) -> Result<Json, Failure> {
    let text = args.to_string();
    let run = host.run(&["invoke", capability, function, "--args", &text])?;
    run.expect(0, &format!("invoke {capability} {function} {text}"))?;
    run.json()
}

/// The `err` text of a result, or "".
fn err(result: &Json) -> String {
    result["err"].as_str().unwrap_or("").to_owned()
}

/// The entries of invocation `n`.
fn of_invocation(entries: &[Json], n: u64) -> Vec<&Json> {
    entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["invocation"] == n)
        .collect()
}

/// The decision entries with `action` and `resource`.
fn decisions<'a>(entries: &'a [Json], action: &str, resource: &str) -> Vec<&'a Json> {
    entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "decision" && e["action"] == action && e["resource"] == resource)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[cfg(not(unix))]
fn mode(_path: &Path) -> u32 {
    0
}

// ---------------------------------------------------------------------------------------------
// Specification 15: the policy language.

fn policy_check_refusals(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let file = host.files.path().join("conformance.cedar");
    let attribute_line = "when { \"é✓\" != \"\" && resource.colour == \"x\" };";
    let attribute_column = attribute_line
        .find("resource.colour")
        .map_or(0, |at| attribute_line[..at].chars().count() + 1);
    let attribute = format!(
        "permit (principal, action == FemtoClaw::Action::\"invoke\", resource)\n{attribute_line}\n"
    );
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "an unknown entity type",
            "permit (principal == FemtoClaw::Robot::\"x\", action, resource);\n".into(),
            "line 1, column 22: ".into(),
            "FemtoClaw::Robot",
        ),
        (
            "an unknown attribute (after non-ASCII characters)",
            attribute.clone(),
            format!("line 2, column {attribute_column}: "),
            "colour",
        ),
        (
            "an unknown action",
            "\n\npermit (principal, action == FemtoClaw::Action::\"fly\", resource);\n".into(),
            "line 3, column ".into(),
            "fly",
        ),
        (
            "a template",
            "permit (principal == ?principal, action, resource);\n".into(),
            "line 1, column ".into(),
            "template",
        ),
        (
            "an impossible policy",
            "@id(\"never\")\npermit (principal, action == FemtoClaw::Action::\"link\", resource is FemtoClaw::Capability);\n".into(),
            "line 1, column ".into(),
            "`never`",
        ),
        (
            "a duplicate id",
            "@id(\"a\")\npermit (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);\n".into(),
            "line 3, column 1: ".into(),
            "duplicate policy id `a` (first in `conformance.cedar` line 1)",
        ),
        (
            "an empty id",
            "@id(\"\")\npermit (principal, action, resource);\n".into(),
            "line 1, column 1: ".into(),
            "the `@id` annotation is empty",
        ),
        (
            "an approval value other than required",
            "@approval(\"maybe\")\npermit (principal, action, resource);\n".into(),
            "line 1, column 1: ".into(),
            "policy `conformance.cedar:0`: `@approval(\"maybe\")`",
        ),
        (
            "an approval on a forbid",
            "@approval(\"required\")\nforbid (principal, action, resource);\n".into(),
            "line 1, column 1: ".into(),
            "policy `conformance.cedar:0`: `@approval(\"required\")` applies to a `permit`",
        ),
        (
            "a syntax error after a valid policy",
            format!("{OPEN}permit (principal, action, resource) garbage\n"),
            "line 2, column ".into(),
            "",
        ),
    ];
    for (what, text, at, names) in cases {
        write(&file, &text)?;
        let run = check(&host, &file)?;
        run.expect(2, &format!("policy check of {what}"))?;
        let prefix = format!("error: policy file `conformance.cedar` {at}");
        ensure!(
            run.stderr.starts_with(&prefix) && run.stderr.contains(names),
            "policy check of {what}: the refusal must begin `{prefix}` and name {names:?}; it is {}",
            excerpt(&run.stderr)
        );
        ensure!(
            run.stdout.trim().is_empty(),
            "policy check of {what} listed policies of a refused set: {}",
            excerpt(&run.stdout)
        );
    }
    // The valid policy of a set with a syntax error does not load alone: nothing runs.
    host.policy(&format!(
        "{OPEN}permit (principal, action, resource) garbage\n"
    ))?;
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(2, "an invocation under a policy set with a syntax error")?;
    Ok(())
}

fn policy_check_lists(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let dir = host.files.path().join("set");
    write(
        &dir.join("b.cedar"),
        "@id(\"z-last\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource);\nforbid (principal == FemtoClaw::Agent::\"x\", action, resource);\n",
    )?;
    write(
        &dir.join("a.cedar"),
        "// first file by name\n\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource) when { resource.name == \"a\u{202e}b\" };\n",
    )?;
    write(&dir.join("notes.txt"), "this is not a policy")?;
    write(&dir.join("sub").join("c.cedar"), "not cedar at all")?;
    let run = check(&host, &dir)?;
    let digest = checked_digest(&run)?;
    let expected = [
        format!("{:<40} {:<7} a.cedar:3", "a.cedar:0", "permit"),
        format!("{:<40} {:<7} b.cedar:1", "z-last", "permit"),
        format!("{:<40} {:<7} b.cedar:3", "b.cedar:1", "forbid"),
        format!("3 policies, digest {digest}"),
    ];
    let lines: Vec<&str> = run.stdout.trim_end().lines().collect();
    ensure!(
        lines == expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "policy check of a directory (a.cedar, b.cedar, notes.txt, sub/) must list {expected:?}; it printed {lines:?}"
    );
    ensure!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("warning: policy file `a.cedar` line 3, column ")),
        "the BIDI-character warning is not printed on stderr with its file and line: {}",
        excerpt(&run.stderr)
    );
    let empty = host.files.path().join("empty");
    std::fs::create_dir_all(&empty).map_err(|e| Failure::Failed(e.to_string()))?;
    let run = check(&host, &empty)?;
    run.expect(2, "policy check of an empty directory")?;
    ensure!(
        run.stderr.contains("holds no `*.cedar` file") && run.stderr.contains("empty`"),
        "the refusal of an empty directory does not name it: {}",
        excerpt(&run.stderr)
    );
    let missing = host.files.path().join("missing.cedar");
    let run = check(&host, &missing)?;
    run.expect(2, "policy check of a missing file")?;
    ensure!(
        run.stderr.contains(&*missing.to_string_lossy()),
        "the refusal of a missing file does not name its path: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

fn policy_digest(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let p1 = "@id(\"p1\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource);\n";
    let p2 = "@id(\"p2\")\nforbid (principal == FemtoClaw::Agent::\"x\", action, resource);\n";
    let one = host.files.path().join("one");
    write(&one.join("x.cedar"), &format!("{p1}{p2}"))?;
    let two = host.files.path().join("two");
    write(&two.join("a.cedar"), &format!("// moved\n\n{p2}"))?;
    write(&two.join("b.cedar"), &format!("\n{p1}\n// trailing\n"))?;
    let first = checked_digest(&check(&host, &one)?)?;
    let again = checked_digest(&check(&host, &one)?)?;
    let moved = checked_digest(&check(&host, &two)?)?;
    ensure!(
        first == again,
        "two loads of the same policies gave digests {first} and {again}"
    );
    ensure!(
        first == moved,
        "the same annotated policies in other files, in another order, gave digest {moved}, not {first}"
    );
    write(
        &one.join("x.cedar"),
        &format!("{}{p2}", p1.replace("resource);", "resource) when { true };")),
    )?;
    let text_changed = checked_digest(&check(&host, &one)?)?;
    write(&one.join("x.cedar"), &format!("{}{p2}", p1.replace("p1", "p3")))?;
    let id_changed = checked_digest(&check(&host, &one)?)?;
    ensure!(
        text_changed != first && id_changed != first && text_changed != id_changed,
        "a changed policy text or id must change the digest: {first}, text changed {text_changed}, id changed {id_changed}"
    );
    Ok(())
}

fn policy_source(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let echo = |extra: &[&str], env: Option<&Path>| -> Result<i32, Failure> {
        let mut all = vec!["invoke", "conformance", "echo", "--args", r#"{"text":"x"}"#];
        all.extend_from_slice(extra);
        let mut command = host.command(&all);
        if let Some(path) = env {
            command.env("FEMTOCLAW_POLICY", path);
        }
        let out = command
            .output()
            .map_err(|e| Failure::Failed(format!("cannot run the binary: {e}")))?;
        Ok(out.status.code().unwrap_or(-1))
    };
    ensure!(
        echo(&[], None)? == 0,
        "the policy in <data dir>/policy (permitting the call) was not used"
    );
    let elsewhere = host.file(
        "elsewhere.cedar",
        OPEN.replace("User::\"local\"", "User::\"someone-else\"")
            .as_bytes(),
    )?;
    let path = elsewhere.to_string_lossy().into_owned();
    let code = echo(&["--policy", &path], None)?;
    ensure!(
        code == 7,
        "--policy naming a policy that permits nothing for the operator: exit {code}, not 7"
    );
    let code = echo(&[], Some(&elsewhere))?;
    ensure!(
        code == 7,
        "FEMTOCLAW_POLICY naming a policy that permits nothing for the operator: exit {code}, not 7"
    );
    // A policy that fails to load refuses every invocation, naming the file and the line.
    host.policy(&format!(
        "{OPEN}permit (principal, action == FemtoClaw::Action::\"invoke\", resource)\n  when {{ resource.colour == \"red\" }};\n"
    ))?;
    for (capability, function, args) in [
        ("conformance", "echo", r#"{"text":"x"}"#),
        ("hello", "greet", r#"{"name":"Ada"}"#),
    ] {
        let run = host.run(&["invoke", capability, function, "--args", args])?;
        run.expect(2, &format!("{capability}.{function} under a policy that fails to load"))?;
        ensure!(
            run.stderr.contains("`conformance.cedar` line 3"),
            "the refusal does not name conformance.cedar line 3: {}",
            excerpt(&run.stderr)
        );
    }
    // Without <data dir>/policy, the embedded default policy: first-party only.
    std::fs::remove_dir_all(host.data.path().join("policy"))
        .map_err(|e| Failure::Failed(format!("cannot remove the policy: {e}")))?;
    let code = echo(&[], None)?;
    ensure!(
        code == 7,
        "the default policy let the operator invoke an installed capability: exit {code}"
    );
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet under the default policy")?;
    Ok(())
}
