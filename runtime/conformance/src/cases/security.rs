//! Cases of the security area: authorization decisions and their forms, the policy language,
//! link-time and call-time grants, egress, files, secrets and tokens.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{GREET, OPEN, call, err, guest_host};
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
        verifies: &["FC-POL-1415"],
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
            "FC-SEC-2103",
            "FC-POL-1701",
            "FC-POL-1702",
            "FC-POL-1704",
            "FC-POL-1715",
        ],
        run: files_paths,
    },
    Case {
        name: "cli.egress.addresses",
        verifies: &[
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
        verifies: &["FC-POL-1707", "FC-SEC-2009", "FC-SEC-2016", "FC-SEC-2017"],
        run: egress_loopback_peer,
    },
    Case {
        name: "cli.egress.redirects",
        verifies: &["FC-POL-1710", "FC-SEC-2004", "FC-SEC-2005"],
        run: egress_redirects,
    },
    Case {
        name: "cli.egress.size-caps",
        verifies: &["FC-SEC-2021", "FC-SEC-2022"],
        run: egress_size_caps,
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
            "FC-SEC-1806",
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
    let p1 =
        "@id(\"p1\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource);\n";
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
        &format!(
            "{}{p2}",
            p1.replace("resource);", "resource) when { true };")
        ),
    )?;
    let text_changed = checked_digest(&check(&host, &one)?)?;
    write(
        &one.join("x.cedar"),
        &format!("{}{p2}", p1.replace("p1", "p3")),
    )?;
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
        run.expect(
            2,
            &format!("{capability}.{function} under a policy that fails to load"),
        )?;
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

// ---------------------------------------------------------------------------------------------
// Specification 14: decisions.

fn policy_explain_decisions(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // The guest under a manifest that omits the log import: one decision that is not consulted.
    probe(
        &host,
        "probe.toml",
        &manifest(
            "probe",
            "acme",
            "imports = [\"wasi:keyvalue/store@0.2.0-draft2\"]\nkv = [{ namespace = \"probe\" }]",
        ),
    )?
    .expect(0, "capability add of the guest as probe")?;
    let policy = "@id(\"b-permit\")\npermit (principal in FemtoClaw::Group::\"ops\", action == FemtoClaw::Action::\"invoke\", resource) when { context has function && context.function == \"echo\" };\n\
        @id(\"a-permit\")\npermit (principal in FemtoClaw::Group::\"ops\", action == FemtoClaw::Action::\"invoke\", resource);\n\
        permit (principal == FemtoClaw::Agent::\"solo\", action == FemtoClaw::Action::\"invoke\", resource) unless { context has function };\n";
    host.policy(policy)?;
    let digest = checked_digest(&check(
        &host,
        &host.data.path().join("policy").join("conformance.cedar"),
    )?)?;
    let ask = |principal: &str, groups: &[&str], function: Option<&str>| {
        let mut args = vec!["--capability", "probe", "--principal", principal];
        for g in groups {
            args.extend_from_slice(&["--group", g]);
        }
        if let Some(f) = function {
            args.extend_from_slice(&["--function", f]);
        }
        explain(&host, &args)
    };
    let expect = |what: &str, e: &Json, allowed: bool, reason: &str, ids: &[&str]| {
        let invoke = &e["invoke"];
        ensure!(
            invoke["allowed"] == allowed
                && invoke["reason"] == reason
                && invoke["policy_ids"] == json!(ids),
            "{what}: the invoke decision must be allowed={allowed}, reason {reason}, policy ids {ids:?}; it is {invoke}"
        );
        Ok(())
    };
    let both = ask("agent:bot", &["ops"], Some("echo"))?;
    expect(
        "a group member invoking echo (two permits)",
        &both,
        true,
        "permitted",
        &["a-permit", "b-permit"],
    )?;
    expect(
        "a group member invoking add",
        &ask("agent:bot", &["ops"], Some("add"))?,
        true,
        "permitted",
        &["a-permit"],
    )?;
    for (groups, what) in [(&[][..], "no group"), (&["other"][..], "another group")] {
        expect(
            &format!("a principal in {what}"),
            &ask("agent:bot", groups, Some("echo"))?,
            false,
            "no_permit",
            &[],
        )?;
    }
    expect(
        "a call without a function (no context.function)",
        &ask("agent:solo", &[], None)?,
        true,
        "permitted",
        &["conformance.cedar:2"],
    )?;
    expect(
        "a call of a named function (context.function)",
        &ask("agent:solo", &[], Some("echo"))?,
        false,
        "no_permit",
        &[],
    )?;
    // Every decision carries the digest, the unconsulted not-requested one included.
    ensure!(
        both["policy_digest"] == digest.as_str(),
        "the explanation's digest is not policy check's {digest}: {}",
        both["policy_digest"]
    );
    let mut all: Vec<&Json> = vec![&both["invoke"]];
    for list in ["imports", "scopes"] {
        all.extend(
            both[list]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| &i["decision"]),
        );
    }
    ensure!(
        all.iter().all(|d| d["policy_digest"] == digest.as_str()),
        "a decision of the explanation does not carry the policy digest {digest}: {both}"
    );
    let log = item(
        &both["imports"],
        "interface",
        "femtoclaw:host/log@0.1.0",
        None,
    )
    .ok_or_else(|| Failure::Failed(format!("the explanation lists no log import: {both}")))?;
    ensure!(
        log["requested"] == false
            && log["linked"] == false
            && log["decision"]["reason"] == "not_requested",
        "the unrequested log import is not refused as not_requested: {log}"
    );
    // The explanation's shape (JSON), sorted imports, and the same answer asked again.
    for key in [
        "principal",
        "capability",
        "capability_digest",
        "publisher",
        "function",
        "policy_digest",
        "invoke",
        "imports",
        "scopes",
    ] {
        ensure!(
            both.get(key).is_some(),
            "the JSON explanation has no `{key}`"
        );
    }
    ensure!(
        both["principal"] == "FemtoClaw::Agent::\"bot\""
            && both["capability"] == "probe@1.0.0"
            && both["publisher"] == "acme"
            && both["function"] == "echo"
            && both["capability_digest"] == sha256_hex(GUEST).as_str(),
        "the explanation does not name the principal, probe@1.0.0, its digest, publisher and function: {both}"
    );
    let names: Vec<&str> = both["imports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["interface"].as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    ensure!(
        names == sorted && names.contains(&"wasi:keyvalue/store@0.2.0-draft2"),
        "the explanation's imports are not every import sorted by interface: {names:?}"
    );
    ensure!(
        both["imports"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|i| i["baseline"].is_boolean()
                && i["requested"].is_boolean()
                && i["linked"].is_boolean()),
        "an import lacks baseline, requested or linked: {}",
        both["imports"]
    );
    let kv = item(&both["scopes"], "scope", "probe", Some("kv.read")).ok_or_else(|| {
        Failure::Failed(format!(
            "the explanation lists no kv.read scope `probe`: {}",
            both["scopes"]
        ))
    })?;
    ensure!(
        kv["granted"] == false && kv["decision"]["reason"] == "no_permit",
        "kv.read `probe` must be refused (no permit): {kv}"
    );
    ensure!(
        ask("agent:bot", &["ops"], Some("echo"))? == both,
        "the same question asked twice got two explanations"
    );
    let text = host.ok(&[
        "policy",
        "explain",
        "--capability",
        "probe",
        "--principal",
        "agent:bot",
        "--group",
        "ops",
        "--function",
        "echo",
    ])?;
    let wanted = [
        "FemtoClaw::Agent::\"bot\" → probe@1.0.0 function `echo` (publisher `acme`)".to_owned(),
        format!("policy digest {digest}"),
        "invoke: allowed: permitted by policy (`a-permit`, `b-permit`)".to_owned(),
        "imports:".to_owned(),
        "  REFUSED femtoclaw:host/log@0.1.0: denied: not requested by manifest".to_owned(),
        "  REFUSED wasi:keyvalue/store@0.2.0-draft2: denied: no policy permits it".to_owned(),
        "scopes:".to_owned(),
        "  REFUSED kv.read probe: denied: no policy permits it".to_owned(),
        "verdict: would be refused".to_owned(),
    ];
    for line in &wanted {
        ensure!(
            text.lines().any(|l| l == line),
            "the explanation text lacks the line {line:?}: {}",
            excerpt(&text)
        );
    }
    // An empty policy set denies everything.
    host.policy("// no policies\n")?;
    let none = ask("user:local", &[], Some("echo"))?;
    expect("the empty policy set", &none, false, "no_permit", &[])?;
    ensure!(
        none["imports"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|i| i["linked"] == false)
            && none["scopes"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|s| s["granted"] == false),
        "the empty policy set allowed an import or a scope: {none}"
    );
    Ok(())
}

fn policy_capability_context(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    for (name, publisher) in [("probe", "acme"), ("other", "acme"), ("probe2", "evil")] {
        probe(
            &host,
            &format!("{name}.toml"),
            &manifest(name, publisher, GUEST_REQUESTS),
        )?
        .expect(0, &format!("capability add of the guest as {name}"))?;
    }
    let digest = sha256_hex(GUEST);
    let policy = format!(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action, resource) when {{ context has capability && (context.capability.name == \"probe\" || context.capability.name == \"probe2\") && context.capability.publisher == \"acme\" && context.capability.version == \"1.0.0\" && context.capability.digest == \"{digest}\" }};\n"
    );
    host.policy(&policy)?;
    for (name, granted) in [("probe", true), ("other", false), ("probe2", false)] {
        let e = explain(&host, &["--capability", name])?;
        let imports = e["imports"].as_array().cloned().unwrap_or_default();
        let scopes = e["scopes"].as_array().cloned().unwrap_or_default();
        ensure!(
            !imports.is_empty() && !scopes.is_empty(),
            "{name}: the explanation lists no imports or scopes: {e}"
        );
        ensure!(
            imports.iter().all(|i| i["linked"] == granted)
                && scopes.iter().all(|s| s["granted"] == granted),
            "{name}: a policy on context.capability (name probe/probe2, publisher acme, version 1.0.0, the component's digest) must {} every import and scope; the explanation is {e}",
            if granted { "grant" } else { "refuse" }
        );
    }
    Ok(())
}

fn policy_evaluation_error_skipped(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(&format!(
        "{OPEN}@id(\"boom\")\nforbid (principal, action, resource) when {{ 9223372036854775807 + 1 > 0 }};\n\
         @id(\"boom2\")\npermit (principal == FemtoClaw::Agent::\"x\", action, resource) when {{ 9223372036854775807 + 1 > 0 }};\n"
    ))?;
    let local = explain(&host, &["--capability", "hello", "--function", "greet"])?;
    let invoke = &local["invoke"];
    ensure!(
        invoke["allowed"] == true
            && invoke["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e.to_string().contains("boom"))),
        "a forbid that fails to evaluate must be skipped, its error kept: {invoke}"
    );
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet past a forbid that fails to evaluate")?;
    let agent = explain(&host, &["--capability", "hello", "--principal", "agent:x"])?;
    let invoke = &agent["invoke"];
    ensure!(
        invoke["allowed"] == false
            && invoke["reason"] == "no_permit"
            && invoke["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e.to_string().contains("boom2"))),
        "a permit that fails to evaluate must be skipped (no permit), its error kept: {invoke}"
    );
    Ok(())
}

fn policy_default_and_publisher(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    probe(
        &host,
        "probe.toml",
        &manifest("probe", "acme", GUEST_REQUESTS),
    )?
    .expect(0, "capability add of the guest as probe")?;
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    host.run(&greet)?
        .expect(0, "the operator's hello.greet under the default policy")?;
    for principal in ["agent:local", "user:other", "agent:bot"] {
        let mut args = greet.to_vec();
        args.extend_from_slice(&["--principal", principal]);
        host.run(&args)?.expect(
            7,
            &format!("hello.greet as {principal} under the default policy"),
        )?;
    }
    host.run(&["invoke", "probe", "echo", "--args", r#"{"text":"x"}"#])?
        .expect(7, "a third-party capability under the default policy")?;
    // The reserved publisher cannot be claimed.
    for claimed in ["femtoclaw", " FemtoClaw ", "FEMTOCLAW"] {
        let name = format!("fake{}", claimed.trim().len() + claimed.len());
        let run = probe(
            &host,
            "fake.toml",
            &manifest(&name, claimed, GUEST_REQUESTS),
        )?;
        ensure!(
            run.code != 0,
            "capability add of a manifest claiming publisher {claimed:?} succeeded"
        );
        host.run(&["invoke", &name, "echo", "--args", r#"{"text":"x"}"#])?
            .expect(3, &format!("invoking {name}, refused at install"))?;
    }
    Ok(())
}

fn policy_invoke_decision(target: &Target) -> Result<(), Failure> {
    let policy = format!(
        "{OPEN}@id(\"no-conformance\")\nforbid (principal, action == FemtoClaw::Action::\"invoke\", resource) when {{ resource.name == \"conformance\" }};\n"
    );
    let host = guest_host(target, &policy)?;
    let digest = checked_digest(&check(
        &host,
        &host.data.path().join("policy").join("conformance.cedar"),
    )?)?;
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet")?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    run.expect(7, "a forbidden invocation")?;
    let message = "denied: `FemtoClaw::User::\"local\"` may not invoke `conformance@1.0.0`: denied: forbidden by policy (`no-conformance`)";
    ensure!(
        run.stderr.contains(message),
        "the refusal must read {message:?}; it is {}",
        excerpt(&run.stderr)
    );
    let entries = host.entries()?;
    let allowed = decisions(&entries, "invoke", "hello@0.1.0");
    let denied = decisions(&entries, "invoke", "conformance@1.0.0");
    ensure!(
        allowed.len() == 1
            && allowed[0]["allowed"] == true
            && allowed[0]["policy_ids"] == json!(["conformance.cedar:0"])
            && allowed[0]["policy_digest"] == digest.as_str(),
        "the allowed invocation's invoke decision is not recorded with its policy and digest: {allowed:?}"
    );
    ensure!(
        denied.len() == 1
            && denied[0]["allowed"] == false
            && denied[0]["policy_ids"] == json!(["no-conformance"])
            && denied[0]["policy_digest"] == digest.as_str(),
        "the denied invocation's invoke decision is not recorded with its forbid and digest: {denied:?}"
    );
    // Refused before any guest code ran: start, the decision, an end without a result.
    let n = denied[0]["invocation"].as_u64().unwrap_or(u64::MAX);
    let its = of_invocation(&entries, n);
    let types: Vec<&str> = its.iter().filter_map(|e| e["type"].as_str()).collect();
    ensure!(
        types == ["invocation-start", "decision", "invocation-end"]
            && its[2]["result"].is_null()
            && its[2]["fuel_consumed"] == json!(0),
        "a refused invocation must record only its start, the decision and an end with no result or fuel: {its:?}"
    );
    // The forms of --principal.
    for (principal, named) in [
        ("agent:bot", "`FemtoClaw::Agent::\"bot\"`"),
        ("user:ada", "`FemtoClaw::User::\"ada\"`"),
        ("ada", "`FemtoClaw::User::\"ada\"`"),
    ] {
        let run = host.invoke("echo", &json!({ "text": "x" }), &["--principal", principal])?;
        run.expect(7, &format!("--principal {principal}"))?;
        ensure!(
            run.stderr.contains(named),
            "--principal {principal} must act as {named}: {}",
            excerpt(&run.stderr)
        );
    }
    for bad in ["robot:x", "agent:", "user:"] {
        let run = host.invoke("echo", &json!({ "text": "x" }), &["--principal", bad])?;
        run.expect(2, &format!("--principal {bad}"))?;
        ensure!(
            run.stderr.contains("principal"),
            "the refusal of --principal {bad} does not name the argument: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn policy_change_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let echo = || -> Result<(), Failure> {
        host.invoke("echo", &json!({ "text": "x" }), &[])?
            .expect(0, "echo")
            .map(|_| ())
    };
    let changes = |entries: &[Json]| -> Vec<(usize, Json)> {
        entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e["entry"]["type"] == "policy-change")
            .map(|(i, e)| (i, e["entry"].clone()))
            .collect()
    };
    let file = host.data.path().join("policy").join("conformance.cedar");
    let first = checked_digest(&check(&host, &file)?)?;
    echo()?;
    echo()?;
    let entries = host.entries()?;
    let recorded: Vec<(usize, Json)> = changes(&entries)
        .into_iter()
        .filter(|(_, c)| c["policy_digest"] == first.as_str())
        .collect();
    ensure!(
        recorded.len() == 1
            && recorded[0].1["source"]
                .as_str()
                .is_some_and(|s| s.contains("policy")),
        "two invocations under one policy must leave one policy-change entry with its digest {first} and source: {:?}",
        changes(&entries)
    );
    let first_decision = entries.iter().position(|e| {
        e["entry"]["type"] == "decision" && e["entry"]["policy_digest"] == first.as_str()
    });
    ensure!(
        first_decision.is_some_and(|d| d > recorded[0].0),
        "the policy-change entry is not before the first decision under {first}"
    );
    // An edit that changes no policy records nothing; a changed policy once.
    write(&file, &format!("// a comment only\n{OPEN}\n"))?;
    echo()?;
    let before = changes(&host.entries()?).len();
    write(
        &file,
        &OPEN.replace("resource);", "resource) when { true };"),
    )?;
    let second = checked_digest(&check(&host, &file)?)?;
    echo()?;
    echo()?;
    let entries = host.entries()?;
    let all = changes(&entries);
    let new: Vec<&(usize, Json)> = all
        .iter()
        .filter(|(_, c)| c["policy_digest"] == second.as_str())
        .collect();
    ensure!(
        before == 1 && all.len() == 2 && new.len() == 1,
        "a comment-only edit must record no policy-change and a changed policy exactly one: {all:?}"
    );
    let first_decision = entries.iter().position(|e| {
        e["entry"]["type"] == "decision" && e["entry"]["policy_digest"] == second.as_str()
    });
    ensure!(
        first_decision.is_some_and(|d| d > new[0].0),
        "the new policy-change entry is not before the first decision under {second}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 16: link time.

fn link_manifest_and_baseline(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // The guest imports log@0.1.0; this manifest lists log@0.1.1 instead, interfaces of every
    // non-baseline sort, and one baseline interface the component does not import.
    let requests = "imports = [\"femtoclaw:host/log@0.1.1\", \"wasi:cli/exit\", \"wasi:cli/stdout@0.2.0-rc1\", \"wasi:keyvalue/store@0.2.0-draft2\", \"wasi:sockets/tcp@0.2.0\", \"wasi:cli/environment@0.3.0\", \"wasi:clocks/timezone@0.2.0\", \"wasi:random/random@0.2.3\"]\nkv = [{ namespace = \"probe\", write = true }]";
    probe(&host, "probe.toml", &manifest("probe", "acme", requests))?
        .expect(0, "capability add of the guest as probe")?;
    host.policy(OPEN)?;
    let e = explain(&host, &["--capability", "probe"])?;
    let log = item(&e["imports"], "interface", "femtoclaw:host/log@0.1.0", None)
        .ok_or_else(|| Failure::Failed(format!("the explanation lists no log import: {e}")))?;
    ensure!(
        log["linked"] == false
            && log["decision"]["reason"] == "not_requested"
            && log["decision"]["policy_ids"] == json!([]),
        "an import the policy permits but the manifest does not list must be refused as not_requested: {log}"
    );
    for (interface, baseline) in [
        ("wasi:sockets/tcp@0.2.0", false),
        ("femtoclaw:host/log@0.1.1", false),
        ("wasi:cli/exit", false),
        ("wasi:cli/stdout@0.2.0-rc1", false),
        ("wasi:cli/environment@0.3.0", false),
        ("wasi:clocks/timezone@0.2.0", false),
        ("wasi:random/random@0.2.3", true),
    ] {
        let i = item(&e["imports"], "interface", interface, None)
            .ok_or_else(|| Failure::Failed(format!("the explanation lists no {interface}: {e}")))?;
        ensure!(
            i["baseline"] == baseline && i["linked"] == true,
            "{interface} must be {}baseline and link under a permit-all policy: {i}",
            if baseline { "" } else { "not " }
        );
    }
    let baseline: Vec<String> = e["imports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["baseline"] == true && i["requested"] == false)
        .filter_map(|i| i["interface"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        !baseline.is_empty()
            && e["imports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["baseline"] == true && i["requested"] == false)
                .all(|i| i["linked"] == true),
        "the component's unlisted baseline imports must link under a permit-all policy: {e}"
    );
    let run = host.run(&["invoke", "probe", "echo", "--args", r#"{"text":"x"}"#])?;
    run.expect(7, "a component whose log import the manifest does not list")?;
    let message = "denied: `probe@1.0.0` imports what is not granted to `FemtoClaw::User::\"local\"`: `femtoclaw:host/log@0.1.0` (denied: not requested by manifest)";
    ensure!(
        run.stderr.contains(message),
        "the link refusal must read {message:?}; it is {}",
        excerpt(&run.stderr)
    );
    // Invocation permitted, no link permit: every import refused, baseline included, in one
    // message, and recorded one decision each.
    host.policy("permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n")?;
    let e = explain(&host, &["--capability", "probe"])?;
    let imports: Vec<&Json> = e["imports"].as_array().into_iter().flatten().collect();
    for i in &imports {
        let want = if i["requested"] == true || i["baseline"] == true {
            "no_permit"
        } else {
            "not_requested"
        };
        ensure!(
            i["linked"] == false && i["decision"]["reason"] == want,
            "without a link permit, {} must be refused as {want}: {i}",
            i["interface"]
        );
    }
    let run = host.run(&["invoke", "probe", "echo", "--args", r#"{"text":"x"}"#])?;
    run.expect(7, "a component none of whose imports is permitted")?;
    let prefix =
        "denied: `probe@1.0.0` imports what is not granted to `FemtoClaw::User::\"local\"`: ";
    let listed = run.stderr.split(prefix).nth(1).unwrap_or("").trim_end();
    // Every import of the component (as `capability inspect` lists them) is named, with its
    // decision, `, `-separated, and recorded as a link decision.
    let inspect: Json = serde_json::from_str(&host.ok(&["capability", "inspect", "probe"])?)
        .map_err(|err| Failure::Failed(format!("capability inspect is not JSON: {err}")))?;
    let component: Vec<String> = inspect["imports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect();
    let parts: Vec<String> = component
        .iter()
        .map(|interface| {
            let reason = if interface.starts_with("femtoclaw:host/log") {
                "not requested by manifest"
            } else {
                "no policy permits it"
            };
            format!("`{interface}` (denied: {reason})")
        })
        .collect();
    let mut named: Vec<&str> = listed.split(", ").collect();
    named.sort_unstable();
    let mut wanted: Vec<&str> = parts.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    ensure!(
        component.len() > 2 && named == wanted,
        "the refusal must name every import of the component with its decision, separated by `, `: {}",
        excerpt(&run.stderr)
    );
    let entries = host.entries()?;
    let last = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .and_then(|e| e["entry"]["invocation"].as_u64())
        .unwrap_or(u64::MAX);
    let its = of_invocation(&entries, last);
    for interface in &component {
        let recorded = its.iter().any(|d| {
            d["type"] == "decision"
                && d["action"] == "link"
                && d["resource"] == interface.as_str()
                && d["allowed"] == false
                && d["policy_ids"] == json!([])
                && d["policy_digest"] == e["policy_digest"]
        });
        ensure!(
            recorded,
            "the link refusal of {interface} is not recorded as a decision (link, the interface, denied, its digest): {its:?}"
        );
    }
    let types: Vec<&str> = its.iter().filter_map(|e| e["type"].as_str()).collect();
    ensure!(
        types.first() == Some(&"invocation-start")
            && types.last() == Some(&"invocation-end")
            && its.last().is_some_and(|end| end["result"].is_null())
            && !types.contains(&"host-call"),
        "a link refusal must record its start, the decisions and an end without a result: {types:?}"
    );
    Ok(())
}

fn link_scopes(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let requests = format!(
        "{}\nhttp = [\"https://*.example.com\", \"http://api.example.com:8080\"]\nsecrets = [\"tok\"]\npaths = [{{ path = \"/data\" }}]\nconfig = [\"k\"]\nkv = [{{ namespace = \"ns\", write = true }}]",
        GUEST_REQUESTS.lines().next().unwrap_or("")
    );
    probe(&host, "probe.toml", &manifest("probe", "acme", &requests))?
        .expect(0, "capability add of the guest as probe")?;
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action in [FemtoClaw::Action::\"invoke\", FemtoClaw::Action::\"link\", FemtoClaw::Action::\"kv.read\"], resource);\n\
         @id(\"pattern\")\npermit (principal, action == FemtoClaw::Action::\"http.request\", resource) when { resource.host == \"*.example.com\" };\n\
         @id(\"to-api\")\npermit (principal, action == FemtoClaw::Action::\"secret.use\", resource == FemtoClaw::Secret::\"tok\") when { context.destination.host == \"api.example.com\" && context.destination.port == 8080 };\n\
         permit (principal, action == FemtoClaw::Action::\"fs.read\", resource == FemtoClaw::Path::\"/data\");\n",
    )?;
    let e = explain(&host, &["--capability", "probe"])?;
    for (action, scope, granted) in [
        ("http.request", "https://*.example.com", true),
        ("http.request", "http://api.example.com:8080", false),
        ("secret.use", "tok", true),
        ("fs.read", "/data", true),
        ("config.read", "k", false),
        ("kv.read", "ns", true),
        ("kv.write", "ns", false),
    ] {
        let s = item(&e["scopes"], "scope", scope, Some(action)).ok_or_else(|| {
            Failure::Failed(format!(
                "the explanation lists no {action} {scope}: {}",
                e["scopes"]
            ))
        })?;
        ensure!(
            s["granted"] == granted,
            "{action} {scope} must be {}: {s}",
            if granted { "granted" } else { "refused" }
        );
    }
    ensure!(
        e["scopes"].as_array().map_or(0, Vec::len) == 7,
        "the explanation must list exactly the seven requested scope entries: {}",
        e["scopes"]
    );
    let secret = item(&e["scopes"], "scope", "tok", Some("secret.use"));
    ensure!(
        secret.is_some_and(|s| s["decision"]["policy_ids"] == json!(["to-api"])),
        "the secret must be granted by the policy permitting it to http://api.example.com:8080: {secret:?}"
    );
    // What `capability inspect` shows as granted is the same grant.
    let inspect = host.ok(&["capability", "inspect", "probe"])?;
    let inspect: Json = serde_json::from_str(&inspect)
        .map_err(|err| Failure::Failed(format!("capability inspect is not JSON: {err}")))?;
    let granted = &inspect["granted"];
    let denied_scopes = granted["denied_scopes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        granted["principal"] == "FemtoClaw::User::\"local\""
            && granted["policy_digest"] == e["policy_digest"]
            && granted["imports"].as_array().is_some_and(|i| !i.is_empty())
            && granted["refused_imports"].is_array()
            && granted["scopes"].as_array().map_or(0, Vec::len) == 4
            && denied_scopes.len() == 3
            && denied_scopes
                .iter()
                .all(|d| d["decision"]["allowed"] == false)
            && denied_scopes
                .iter()
                .any(|d| d["action"] == "config.read" && d["scope"] == "k"),
        "capability inspect's grant must show the principal, digest, imports, refused imports, four granted and three refused scopes: {granted}"
    );
    // A secret with no origin to go to is not requested.
    let requests = "imports = [\"femtoclaw:host/log@0.1.0\"]\nsecrets = [\"tok\"]";
    probe(&host, "lonely.toml", &manifest("lonely", "acme", requests))?.expect(
        0,
        "capability add of a manifest with a secret and no origin",
    )?;
    let e = explain(&host, &["--capability", "lonely"])?;
    let s = item(&e["scopes"], "scope", "tok", Some("secret.use"));
    ensure!(
        s.is_some_and(|s| s["granted"] == false
            && s["decision"]["reason"] == "not_requested"
            && s["decision"]["errors"]
                .to_string()
                .contains("the manifest requests no HTTP origin to send it to")),
        "a secret with no requested origin must be refused as not_requested saying so: {s:?}"
    );
    // Malformed requests are refused at install, naming the entry.
    for (requests, names) in [
        ("http = [\"https://a.*.com\"]", "https://a.*.com"),
        ("http = [\"ftp://example.com\"]", "ftp://example.com"),
        (
            "http = [\"https://example.com:70000\"]",
            "https://example.com:70000",
        ),
        ("paths = [{ path = \"/data/../..\" }]", "/data/../.."),
        ("bogus = [\"x\"]", "bogus"),
    ] {
        let run = probe(&host, "bad.toml", &manifest("bad", "acme", requests))?;
        ensure!(
            run.code != 0 && run.stderr.contains(names),
            "capability add of [requests] {requests} must be refused naming {names}: exit {}, {}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 17 and 21: call-time decisions on files.

fn files_paths(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // Under the default policy, no directory.
    let listed = call(&host, "files", "list-dir", &json!({ "dir": "/data" }))?;
    ensure!(
        err(&listed).contains("no directory is granted"),
        "under the default policy files must be handed no directory: {listed}"
    );
    // fs.write alone hands no directory either.
    host.policy(&format!(
        "{OPEN}forbid (principal, action == FemtoClaw::Action::\"fs.read\", resource);\n"
    ))?;
    let listed = call(&host, "files", "list-dir", &json!({ "dir": "/data" }))?;
    ensure!(
        err(&listed).contains("no directory is granted"),
        "a path granted fs.write but not fs.read must not be handed over: {listed}"
    );
    // Every file access allowed but one forbid; the manifest requests /data alone.
    host.policy(&format!(
        "{OPEN}@id(\"hide-secret\")\nforbid (principal, action == FemtoClaw::Action::\"fs.read\", resource == FemtoClaw::Path::\"/data/secret.txt\");\n"
    ))?;
    let wrote = call(
        &host,
        "files",
        "write-file",
        &json!({ "path": "/data/ok.txt", "text": "content" }),
    )?;
    ensure!(wrote["ok"] == json!(7), "write-file /data/ok.txt: {wrote}");
    // The hidden file, put in place on the host (the default mount of specification 21), cannot
    // be overwritten either: opening it to write needs fs.read too.
    let hidden = host.data.path().join("files/files/data/secret.txt");
    std::fs::write(&hidden, "hidden")
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", hidden.display())))?;
    let wrote = call(
        &host,
        "files",
        "write-file",
        &json!({ "path": "/data/secret.txt", "text": "content" }),
    )?;
    ensure!(
        err(&wrote).contains("denied by the policy"),
        "write-file /data/secret.txt under a forbid of fs.read must be denied: {wrote}"
    );
    ensure!(
        std::fs::read_to_string(&hidden).is_ok_and(|t| t == "hidden"),
        "write-file /data/secret.txt under a forbid of fs.read changed the file"
    );
    let read = call(
        &host,
        "files",
        "read-file",
        &json!({ "path": "/data/ok.txt" }),
    )?;
    ensure!(read["ok"] == "content", "read-file /data/ok.txt: {read}");
    for (path, what) in [
        ("/data/secret.txt", "a path the policy forbids"),
        (
            "/database/x",
            "a sibling sharing the requested path's prefix",
        ),
        ("/etc/hostname", "a path the manifest does not request"),
        (
            "/data/../etc/hostname",
            "a path climbing out of /data by ..",
        ),
    ] {
        let read = call(&host, "files", "read-file", &json!({ "path": path }))?;
        ensure!(
            err(&read).contains("denied by the policy"),
            "read-file {path} ({what}) must be denied: {read}"
        );
    }
    let entries = host.entries()?;
    let digest = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "decision")
        .map(|e| e["entry"]["policy_digest"].clone())
        .unwrap_or(Json::Null);
    for (resource, allowed, ids) in [
        ("/data/ok.txt", true, json!(["conformance.cedar:0"])),
        ("/data/secret.txt", false, json!(["hide-secret"])),
        ("/database/x", false, json!([])),
        ("/etc/hostname", false, json!([])),
    ] {
        let found = decisions(&entries, "fs.read", resource);
        ensure!(
            found.iter().any(|d| d["allowed"] == allowed
                && d["policy_ids"] == ids
                && d["policy_digest"] == digest),
            "no fs.read decision on {resource} recorded as allowed={allowed} with policy ids {ids} and the digest: {found:?}"
        );
    }
    ensure!(
        decisions(&entries, "fs.read", "/data/../etc/hostname").is_empty(),
        "a path with .. was decided as written, not normalized"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 17 and 20: egress.

/// `fetch.get URL`: the result.
fn fetch_get(host: &Host, url: &str) -> Result<Json, Failure> {
    call(host, "fetch", "get", &json!({ "url": url }))
}

/// Every HTTP action but `net.connect` for the operator, and net.connect per `connect`.
fn egress_policy(connect: &str) -> String {
    format!(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless {{ action == FemtoClaw::Action::\"net.connect\" }};\n{connect}"
    )
}

fn egress_addresses(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // A listener that must never be reached.
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::Failed(format!("cannot listen on loopback: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::Failed(format!("cannot set the listener non-blocking: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    for url in [
        "http://127.0.0.1/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://localhost/".to_owned(),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let got = fetch_get(&host, &url)?;
        ensure!(
            err(&got).starts_with("denied: `http.request` on "),
            "under the default policy fetch {url} must be denied http.request: {got}"
        );
    }
    host.policy(&egress_policy(
        "@id(\"link-local\")\npermit (principal, action == FemtoClaw::Action::\"net.connect\", resource) when { resource.kind == \"link-local\" };\n",
    ))?;
    let got = fetch_get(&host, &format!("http://127.0.0.1:{port}/"))?;
    ensure!(
        err(&got)
            == format!(
                "denied: `http.request` on `http://127.0.0.1:{port}` is not granted to this capability"
            ),
        "an origin the manifest does not request must be denied: {got}"
    );
    for (url, host_text, refused) in [
        ("http://127.0.0.1/", "127.0.0.1", "127.0.0.1 (loopback)"),
        ("http://[::1]/", "::1", "::1 (loopback)"),
        ("http://localhost/", "localhost", " (loopback)"),
        ("http://10.1.2.3/", "10.1.2.3", "10.1.2.3 (private)"),
        ("http://[::ffff:127.0.0.1]/", "", "127.0.0.1 (loopback)"),
        (
            "http://169.254.169.254/",
            "169.254.169.254",
            "169.254.169.254 (metadata)",
        ),
        (
            "http://[fd00:ec2::254]/",
            "fd00:ec2::254",
            "fd00:ec2::254 (metadata)",
        ),
    ] {
        let started = std::time::Instant::now();
        let got = fetch_get(&host, url)?;
        let text = err(&got);
        ensure!(
            text.starts_with("denied: `")
                && text.contains(&format!(
                    "{host_text}` resolves only to addresses `net.connect` is not granted on: "
                ))
                && text.contains(refused),
            "fetch {url}, no net.connect granted (link-local only) must be denied naming {refused}: {got}"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the refusal of {url} took {:?}",
            started.elapsed()
        );
    }
    ensure!(
        matches!(listener.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a denied request reached the loopback listener"
    );
    let entries = host.entries()?;
    for (action, resource) in [
        ("http.request", format!("http://127.0.0.1:{port}")),
        ("net.connect", "127.0.0.1".to_owned()),
        ("net.connect", "169.254.169.254".to_owned()),
    ] {
        ensure!(
            decisions(&entries, action, &resource)
                .iter()
                .any(|d| d["allowed"] == false),
            "no refused {action} decision on {resource} is recorded"
        );
    }
    ensure!(
        decisions(&entries, "http.request", "http://127.0.0.1:80")
            .iter()
            .any(|d| d["allowed"] == true),
        "the allowed http.request on http://127.0.0.1:80 is not recorded"
    );
    let shown = host.ok(&["log", "show"])?;
    ensure!(
        shown.contains("net.connect") && shown.contains("http.request"),
        "log show does not show the hops' decisions"
    );
    Ok(())
}

/// A peer answering every connection with `reply` until `stop` is set (at most 10 s); the
/// requests it read.
fn peer(
    listener: TcpListener,
    reply: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let _ = listener.set_nonblocking(true);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < until {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = vec![0u8; 65536];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.push(String::from_utf8_lossy(&got).into_owned());
                    let _ = stream.write_all(reply.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        seen
    })
}

fn egress_loopback_peer(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // The fetch manifest requests the default ports only, so the peer must be on port 80.
    let Ok(listener) = TcpListener::bind("127.0.0.1:80") else {
        return Err(Failure::NotApplicable(
            "cannot listen on 127.0.0.1:80, the only loopback port fetch's manifest covers".into(),
        ));
    };
    host.policy(&egress_policy(
        "permit (principal, action == FemtoClaw::Action::\"net.connect\", resource) when { resource.address == ip(\"127.0.0.1\") };\n",
    ))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = peer(
        listener,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
            .to_owned(),
        stop.clone(),
    );
    let got = fetch_get(&host, "http://127.0.0.1/x")?;
    // Host-owned headers are refused before anything is decided or sent.
    let owned = call(
        &host,
        "fetch",
        "request",
        &json!({ "method": "GET", "url": "http://127.0.0.1/y", "headers": [{ "name": "Host", "value": "evil.example" }] }),
    )?;
    let owned_secret = call(
        &host,
        "fetch",
        "request",
        &json!({ "method": "GET", "url": "http://127.0.0.1/z", "secret-headers": [{ "name": "transfer-encoding", "secret": "tok", "prefix": "" }] }),
    )?;
    let other = fetch_get(&host, "http://127.0.0.2/")?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = served
        .join()
        .map_err(|_| Failure::Failed("the peer thread panicked".into()))?;
    ensure!(
        got["ok"]["status"] == 200 && got["ok"]["text"] == "hello",
        "fetch http://127.0.0.1/x with net.connect granted on 127.0.0.1 did not get the peer's answer: {got}"
    );
    ensure!(
        seen.len() == 1,
        "the peer must see exactly one request (the refused ones send nothing); it saw {seen:?}"
    );
    let request = seen[0].to_ascii_lowercase();
    ensure!(
        request.starts_with("get /x http/1.1\r\n")
            && request.contains("\r\nhost: 127.0.0.1\r\n")
            && request.contains("\r\naccept-encoding: identity\r\n"),
        "the request must carry Host 127.0.0.1 and accept-encoding identity: {:?}",
        seen[0]
    );
    for (result, header) in [(&owned, "Host"), (&owned_secret, "transfer-encoding")] {
        ensure!(
            err(result).contains("invalid")
                && err(result).contains(&format!("header `{header}` is set by the host")),
            "a capability setting `{header}` must get invalid-request naming it: {result}"
        );
    }
    ensure!(
        err(&other).contains("127.0.0.2 (loopback)"),
        "net.connect granted on 127.0.0.1 alone must refuse 127.0.0.2: {other}"
    );
    let entries = host.entries()?;
    ensure!(
        !entries
            .iter()
            .any(|e| e["entry"]["type"] == "decision" && e["entry"]["action"] == "secret.use"),
        "a request with a host-owned secret header decided on the secret"
    );
    ensure!(
        decisions(&entries, "net.connect", "127.0.0.1")
            .iter()
            .any(|d| d["allowed"] == true),
        "the allowed net.connect on 127.0.0.1 is not recorded"
    );
    let send = entries.iter().map(|e| &e["entry"]).find(|e| {
        e["type"] == "host-call"
            && e["function"] == "send"
            && e["params"].to_string().contains("http://127.0.0.1/x")
    });
    ensure!(
        send.is_some_and(|s| {
            let result = s["result"].to_string();
            result.contains("200") && result.contains("Ok")
        }),
        "the send's request and its 200 response are not recorded with the call: {send:?}"
    );
    // Replay on another data directory, the peer gone: answered from the recording.
    let export = host.files.path().join("egress.export");
    host.ok(&[
        "log",
        "export",
        &export.to_string_lossy(),
        "--with-components",
    ])?;
    let key = host.ok(&["key", "show"])?;
    let elsewhere = target.host()?;
    let run = elsewhere.run(&[
        "replay",
        &export.to_string_lossy(),
        "--key",
        key.trim(),
        "--json",
    ])?;
    run.expect(0, "replay of the egress invocations with the peer gone")?;
    let report = run.json()?;
    let statuses: Vec<&str> = report["invocations"]
        .as_array()
        .map(|r| r.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == "identical"),
        "every egress invocation must replay identical without the peer: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn egress_redirects(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let Ok(listener) = TcpListener::bind("127.0.0.1:80") else {
        return Err(Failure::NotApplicable(
            "cannot listen on 127.0.0.1:80, the only loopback port fetch's manifest covers".into(),
        ));
    };
    let elsewhere = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::Failed(format!("cannot listen on loopback: {e}")))?;
    let _ = elsewhere.set_nonblocking(true);
    let port = elsewhere.local_addr().map(|a| a.port()).unwrap_or(0);
    host.policy(&egress_policy(
        "permit (principal, action == FemtoClaw::Action::\"net.connect\", resource) when { resource.address == ip(\"127.0.0.1\") };\n",
    ))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Every request is redirected to /again on the same origin.
    let served = peer(
        listener,
        "HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_owned(),
        stop.clone(),
    );
    let request = |max: u32| {
        call(
            &host,
            "fetch",
            "request",
            &json!({ "method": "GET", "url": "http://127.0.0.1/start", "max-redirects": max }),
        )
    };
    let zero = request(0)?;
    let two = request(2)?;
    // The host's cap is below the request's.
    write(
        &host.data.path().join("femtoclaw.toml"),
        "[http]\nmax_redirects = 1\n",
    )?;
    let capped = request(5)?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = served
        .join()
        .map_err(|_| Failure::Failed("the peer thread panicked".into()))?;
    ensure!(
        zero["ok"]["status"] == 302,
        "max-redirects 0 must return the redirect itself: {zero}"
    );
    ensure!(
        err(&two).contains("redirect") && err(&capped).contains("redirect"),
        "past the redirects allowed the call must answer too-many-redirects: {two} / {capped}"
    );
    ensure!(
        seen.len() == 1 + 3 + 2,
        "the peer must see 1 request (max-redirects 0), 3 (max-redirects 2) and 2 (http.max_redirects 1 below max-redirects 5); it saw {}",
        seen.len()
    );
    // A redirect to an origin the manifest does not cover is decided and not sent.
    std::fs::remove_file(host.data.path().join("femtoclaw.toml"))
        .map_err(|e| Failure::Failed(format!("cannot remove femtoclaw.toml: {e}")))?;
    let listener = TcpListener::bind("127.0.0.1:80")
        .map_err(|e| Failure::Failed(format!("cannot listen on 127.0.0.1:80 again: {e}")))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = peer(
        listener,
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/next\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        stop.clone(),
    );
    let moved = fetch_get(&host, "http://127.0.0.1/moved")?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = served
        .join()
        .map_err(|_| Failure::Failed("the peer thread panicked".into()))?;
    ensure!(
        seen.len() == 1
            && err(&moved).contains(&format!("`http.request` on `http://127.0.0.1:{port}`")),
        "a redirect to http://127.0.0.1:{port} (not requested) must be denied naming it: {moved}"
    );
    ensure!(
        matches!(elsewhere.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the denied redirect hop was sent"
    );
    let entries = host.entries()?;
    ensure!(
        decisions(
            &entries,
            "http.request",
            &format!("http://127.0.0.1:{port}")
        )
        .iter()
        .any(|d| d["allowed"] == false)
            && decisions(&entries, "http.request", "http://127.0.0.1:80").len() >= 7,
        "every hop's http.request decision must be recorded, the refused redirect's included"
    );
    Ok(())
}

fn egress_size_caps(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(&egress_policy(
        "permit (principal, action == FemtoClaw::Action::\"net.connect\", resource) when { resource.address == ip(\"127.0.0.1\") };\n",
    ))?;
    let config = host.data.path().join("femtoclaw.toml");
    // A misspelt key and a bad value are refused, naming the file, the line and the key.
    for (text, names) in [
        (
            "[http]\nmax_redirect = 3\n",
            "line 2: unknown key `http.max_redirect`",
        ),
        ("[http]\n\ntimeout_ms = 0\n", "line 3: `http.timeout_ms`"),
    ] {
        write(&config, text)?;
        let run = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
        run.expect(
            2,
            &format!("an invocation under the configuration {text:?}"),
        )?;
        ensure!(
            run.stderr.contains("femtoclaw.toml` ") && run.stderr.contains(names),
            "the refusal of {text:?} must name femtoclaw.toml and {names}: {}",
            excerpt(&run.stderr)
        );
    }
    // A body over http.max_request_bytes: refused before any decision or byte.
    write(
        &config,
        "[http]\nmax_request_bytes = 10\nmax_response_bytes = 8\n",
    )?;
    let before = host.entries()?.len();
    let got = call(
        &host,
        "fetch",
        "post",
        &json!({ "url": "http://127.0.0.1:9/", "content-type": "text/plain", "body": "hello world" }),
    )?;
    ensure!(
        err(&got).starts_with("too large: ")
            && err(&got).contains("11")
            && err(&got).contains("10"),
        "an 11-byte body over a 10-byte cap must answer too-large naming both: {got}"
    );
    let entries = host.entries()?;
    ensure!(
        !entries[before..]
            .iter()
            .any(|e| e["entry"]["type"] == "decision"
                && e["entry"]["action"] != "invoke"
                && e["entry"]["action"] != "link"),
        "a body over the cap was decided on"
    );
    // Responses over the cap, declared and streamed.
    let Ok(listener) = TcpListener::bind("127.0.0.1:80") else {
        return Err(Failure::NotApplicable(
            "cannot listen on 127.0.0.1:80, the only loopback port fetch's manifest covers".into(),
        ));
    };
    for (reply, what) in [
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\n01234567890123456789",
            "a declared 20-byte body",
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n01234567890123456789",
            "a 20-byte body without a length",
        ),
    ] {
        let listener = listener
            .try_clone()
            .map_err(|e| Failure::Failed(format!("cannot share the listener: {e}")))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let served = peer(listener, reply.to_owned(), stop.clone());
        let got = fetch_get(&host, "http://127.0.0.1/big")?;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = served.join();
        ensure!(
            err(&got).starts_with("too large: "),
            "{what} over http.max_response_bytes 8 must answer too-large: {got}"
        );
    }
    // The request's own cap, lower than the host's, applies too.
    write(&config, "[http]\nmax_response_bytes = 1000\n")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = peer(
        listener,
        "HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\n01234567890123456789"
            .to_owned(),
        stop.clone(),
    );
    let got = call(
        &host,
        "fetch",
        "request",
        &json!({ "method": "GET", "url": "http://127.0.0.1/big", "max-response-bytes": 8 }),
    )?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = served.join();
    ensure!(
        err(&got).starts_with("too large: "),
        "a 20-byte body over the request's max-response-bytes 8 must answer too-large: {got}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 22: secrets.

fn secret_store(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let value = "s3cr3t-Value-4217";
    let run = host.secret_set("tok", format!("{value}\n").as_bytes())?;
    run.expect(0, "secret set tok")?;
    ensure!(
        !run.stdout.contains(value) && !run.stderr.contains(value),
        "secret set printed the value"
    );
    let dir = host.data.path().join("secrets");
    let stored = std::fs::read(dir.join("tok"))
        .map_err(|e| Failure::Failed(format!("<data dir>/secrets/tok: {e}")))?;
    ensure!(
        stored == value.as_bytes(),
        "<data dir>/secrets/tok must hold the value without its final line break; it holds {} bytes",
        stored.len()
    );
    if cfg!(unix) {
        ensure!(
            mode(&dir) == 0o700 && mode(&dir.join("tok")) == 0o600,
            "the secret directory and file must be modes 0700 and 0600; they are {:o} and {:o}",
            mode(&dir),
            mode(&dir.join("tok"))
        );
    }
    host.secret_set("other", b"second\r\n")?
        .expect(0, "secret set other")?;
    let list = host.ok(&["secret", "list"])?;
    ensure!(
        list.lines().collect::<Vec<_>>() == ["other", "tok"],
        "secret list must print the names only, sorted: {}",
        excerpt(&list)
    );
    let long = "x".repeat(129);
    for bad in [".hidden", "a/b", "..", &long, "sp ace"] {
        host.secret_set(bad, b"v")?
            .expect(2, &format!("secret set {bad:?}"))?;
    }
    host.secret_set("empty", b"\n")?
        .expect(2, "secret set of an empty value")?;
    host.secret_set("binary", b"\xff\xfe\n")?
        .expect(2, "secret set of input that is not UTF-8")?;
    // fetch's manifest requests no secret: using one is decided, recorded by name and denied.
    host.policy(&egress_policy(""))?;
    let listener = TcpListener::bind("127.0.0.1:80").ok();
    if let Some(l) = &listener {
        let _ = l.set_nonblocking(true);
    }
    let got = call(
        &host,
        "fetch",
        "request",
        &json!({ "method": "GET", "url": "http://127.0.0.1/", "secret-headers": [{ "name": "authorization", "secret": "tok", "prefix": "Bearer " }] }),
    )?;
    ensure!(
        err(&got)
            == "denied: `secret.use` on `tok@http://127.0.0.1:80` is not granted to this capability",
        "a secret the capability may not use must be denied naming tok@http://127.0.0.1:80: {got}"
    );
    if let Some(l) = &listener {
        ensure!(
            matches!(l.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a request whose secret was denied was sent"
        );
    }
    let entries = host.entries()?;
    ensure!(
        decisions(&entries, "secret.use", "tok@http://127.0.0.1:80")
            .iter()
            .any(|d| d["allowed"] == false),
        "the secret.use decision is not recorded as tok@http://127.0.0.1:80"
    );
    ensure!(
        !serde_json::to_string(&entries)
            .unwrap_or_default()
            .contains(value),
        "the ledger holds the secret's value"
    );
    host.ok(&["secret", "remove", "tok"])?;
    host.run(&["secret", "remove", "tok"])?
        .expect(3, "secret remove of a secret no longer stored")?;
    let list = host.ok(&["secret", "list"])?;
    ensure!(
        list.trim() == "other",
        "after remove, secret list shows {list:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 18: tokens.

fn token_records(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let token = host.ok(&[
        "token",
        "create",
        "--principal",
        "agent:bot",
        "--group",
        "ops",
        "--expires",
        "1h",
    ])?;
    let token = token.trim_end_matches('\n');
    ensure!(
        token.len() == 47
            && token.starts_with("fct_")
            && !token.contains('\n')
            && token[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "token create must print one token, fct_ and 43 base64url characters: {token:?}"
    );
    let second = host.ok(&[
        "token",
        "create",
        "--principal",
        "user:ada",
        "--name",
        "a-first",
    ])?;
    ensure!(second.trim() != token, "two tokens are equal");
    let digest = sha256_hex(token.as_bytes());
    let dir = host.data.path().join("tokens");
    let record = std::fs::read_to_string(dir.join("bot.json"))
        .map_err(|e| Failure::Failed(format!("<data dir>/tokens/bot.json: {e}")))?;
    ensure!(
        !record.contains(&token[4..]),
        "the token store holds the token itself"
    );
    let record: Json = serde_json::from_str(&record)
        .map_err(|e| Failure::Failed(format!("the token record is not JSON: {e}")))?;
    ensure!(
        record["name"] == "bot"
            && record["principal"] == "agent:bot"
            && record["groups"] == json!(["ops"])
            && record["created"].is_u64()
            && record["expires"]
                .as_u64()
                .zip(record["created"].as_u64())
                .is_some_and(|(e, c)| e == c + 3600)
            && record["sha256"] == digest.as_str(),
        "the token record must hold name, principal, groups, created, expires (+1h) and the token's SHA-256: {record}"
    );
    for (what, listed) in [
        ("token list", host.ok(&["token", "list"])?),
        ("token list --json", host.ok(&["token", "list", "--json"])?),
    ] {
        ensure!(
            !listed.contains(&token[4..]) && !listed.contains(&digest),
            "{what} shows the token or its digest"
        );
    }
    let listed: Json = serde_json::from_str(&host.ok(&["token", "list", "--json"])?)
        .map_err(|e| Failure::Failed(format!("token list --json is not JSON: {e}")))?;
    let names: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    ensure!(
        names == ["a-first", "bot"]
            && listed[1]["principal"] == "agent:bot"
            && listed[1]["groups"] == json!(["ops"])
            && listed[1]["created"] == record["created"]
            && listed[1]["expires"] == record["expires"]
            && listed[0]["expires"].is_null(),
        "token list --json must show name, principal, groups, created and expires, sorted by name: {listed}"
    );
    if cfg!(unix) {
        ensure!(
            mode(&dir) == 0o700 && mode(&dir.join("bot.json")) == 0o600,
            "the token directory and record must be modes 0700 and 0600"
        );
    }
    let count = host.entries()?.len();
    for ttl in ["30s", "2m", "12h", "30d"] {
        let name = format!("ttl-{ttl}");
        host.ok(&[
            "token",
            "create",
            "--principal",
            "agent:ttl",
            "--name",
            &name,
            "--expires",
            ttl,
        ])?;
    }
    let count = count + 4;
    for ttl in ["0s", "5", "5w", "-5m", "1.5h", "99999999999999999999d", "h"] {
        host.run(&[
            "token",
            "create",
            "--principal",
            "agent:ttl",
            "--name",
            "bad-ttl",
            "--expires",
            ttl,
        ])?
        .expect(2, &format!("token create --expires {ttl}"))?;
    }
    let long = "n".repeat(65);
    for (args, what) in [
        (
            vec!["--principal", "agent:x", "--name", ".dot"],
            "a name starting with .",
        ),
        (
            vec!["--principal", "agent:x", "--name", "a/b"],
            "a name with /",
        ),
        (
            vec!["--principal", "agent:x", "--name", long.as_str()],
            "a 65-character name",
        ),
        (vec!["--principal", "robot:x"], "an unknown principal kind"),
        (vec!["--principal", "agent:bot"], "a name already taken"),
    ] {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(&args);
        let run = host.run(&all)?;
        ensure!(run.code != 0, "token create with {what} succeeded");
    }
    let run = host.run(&["token", "revoke", "nobody"])?;
    ensure!(
        run.code != 0 && run.stderr.contains("nobody"),
        "token revoke of an unknown name must fail naming it: exit {}, {}",
        run.code,
        excerpt(&run.stderr)
    );
    ensure!(
        host.entries()?.len() == count,
        "a refused token command recorded something"
    );
    let revoked = host.ok(&["token", "revoke", "bot"])?;
    ensure!(
        revoked.trim() == "token `bot` revoked",
        "token revoke printed {revoked:?}"
    );
    ensure!(
        !dir.join("bot.json").exists(),
        "the revoked token's record is still there"
    );
    let shown = host.ok(&["log", "show", "--json", "--limit", "100000"])?;
    let changes: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("\"token-change\"") && l.contains("\"name\":\"bot\""))
        .collect();
    ensure!(
        changes.len() == 2,
        "the ledger must hold bot's create and revoke: {changes:?}"
    );
    let order = [
        "\"type\"",
        "\"action\"",
        "\"name\"",
        "\"principal\"",
        "\"groups\"",
        "\"expires\"",
        "\"token_sha256\"",
    ];
    for (line, action) in changes.iter().zip(["create", "revoke"]) {
        let entry: Json = serde_json::from_str(line).unwrap_or(Json::Null);
        let e = &entry["entry"];
        ensure!(
            e["action"] == action
                && e["principal"] == "agent:bot"
                && e["groups"] == json!(["ops"])
                && e["expires"] == record["expires"]
                && e["token_sha256"] == digest.as_str(),
            "the {action} token-change entry must name bot, agent:bot, ops, the expiry and the token's SHA-256: {e}"
        );
        let at: Vec<usize> = order.iter().filter_map(|k| line.find(k)).collect();
        ensure!(
            at.len() == order.len() && at.windows(2).all(|w| w[0] < w[1]),
            "the {action} token-change fields are not in the order {order:?}: {line}"
        );
    }
    let export = host.files.path().join("tokens.export");
    host.ok(&["log", "export", &export.to_string_lossy()])?;
    let exported = std::fs::read(&export).map_err(|e| Failure::Failed(e.to_string()))?;
    ensure!(
        !shown.contains(&token[4..]) && find(&exported, &token.as_bytes()[4..]).is_none(),
        "the ledger holds the token itself"
    );
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Specifications 18 and 56 over HTTP.

fn greet_body() -> Json {
    serde_json::from_str(GREET).unwrap_or(Json::Null)
}

fn invoke_as(
    server: &Server,
    token: Option<&str>,
    body: &Json,
) -> Result<crate::target::Response, Failure> {
    server.request(reqwest::Method::POST, "/v1/invoke", token, Some(body))
}

fn http_token_lifecycle(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case makes tokens on the server's data directory".into(),
        ));
    }
    let policy = format!(
        "{OPEN}permit (principal in FemtoClaw::Group::\"ops\", action, resource) when {{ resource has name && resource.name == \"hello\" || context has capability && context.capability.name == \"hello\" }};\n"
    );
    let server = target.server(Some(&policy))?;
    let Some(host) = server.host.as_ref() else {
        return Err(Failure::NotApplicable("no data directory".into()));
    };
    // Made while the server runs: accepted from the next request.
    let token = host.ok(&[
        "token",
        "create",
        "--principal",
        "agent:bot",
        "--group",
        "ops",
    ])?;
    let token = token.trim().to_owned();
    let response = invoke_as(&server, Some(&token), &greet_body())?;
    response.expect(200, "hello.greet with a token made while the server runs")?;
    let page = server.get("/v1/ledger/entries?from=0&limit=1000")?;
    page.expect(200, "GET /v1/ledger/entries")?;
    let page = page.json()?;
    let start = page["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "invocation-start");
    ensure!(
        start.is_some_and(
            |s| s["principal"] == "FemtoClaw::Agent::\"bot\"" && s["groups"] == json!(["ops"])
        ),
        "the invocation-start entry must name the token's principal and groups: {start:?}"
    );
    // The body carries no principal.
    let mut smuggled = greet_body();
    smuggled["principal"] = json!("user:local");
    invoke_as(&server, Some(&token), &smuggled)?
        .expect(400, "POST /v1/invoke with a principal field")?;
    // Unknown credentials.
    let forged = format!("fct_{}", "A".repeat(43));
    for (credential, what) in [
        (forged.as_str(), "a well-formed unknown token"),
        (&token[4..], "the token without its fct_ prefix"),
    ] {
        invoke_as(&server, Some(credential), &greet_body())?.expect(401, what)?;
    }
    // Every route but the public ones needs the token.
    for path in ["/v1/ledger/checkpoint", "/v1/capabilities"] {
        let response = server.request(reqwest::Method::GET, path, None, None)?;
        ensure!(
            response.status == 401,
            "GET {path} without a token answered {}",
            response.status
        );
    }
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        server
            .request(reqwest::Method::GET, path, None, None)?
            .expect(200, &format!("GET {path} without a token"))?;
    }
    for (path, resource) in [
        ("/.well-known/oauth-protected-resource", server.url.clone()),
        (
            "/.well-known/oauth-protected-resource/mcp",
            format!("{}/mcp", server.url),
        ),
    ] {
        let response = server.request(reqwest::Method::GET, path, None, None)?;
        response.expect(200, &format!("GET {path} without a token"))?;
        let metadata = response.json()?;
        ensure!(
            metadata["resource"]
                .as_str()
                .map(|r| r.trim_end_matches('/'))
                == Some(resource.as_str())
                && metadata["bearer_methods_supported"] == json!(["header"]),
            "{path} must name resource {resource} and bearer methods [\"header\"]: {metadata}"
        );
    }
    // Revoked: refused from the next request.
    host.ok(&["token", "revoke", "bot"])?;
    invoke_as(&server, Some(&token), &greet_body())?.expect(401, "a revoked token")?;
    // Expired: refused, naming the token.
    let brief = host.ok(&[
        "token",
        "create",
        "--principal",
        "agent:brief",
        "--group",
        "ops",
        "--expires",
        "1s",
    ])?;
    let brief = brief.trim().to_owned();
    let mut last = None;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        let response = invoke_as(&server, Some(&brief), &greet_body())?;
        if response.status == 401 {
            last = Some(response);
            break;
        }
    }
    let response = last.ok_or_else(|| {
        Failure::Failed("a token made with --expires 1s was still accepted after 3 s".into())
    })?;
    ensure!(
        response.text.contains("`brief`") && response.text.contains("expired"),
        "the refusal of an expired token must name it: {}",
        excerpt(&response.text)
    );
    Ok(())
}

fn http_policy_reload(target: &Target) -> Result<(), Failure> {
    let server = target.server(Some(OPEN))?;
    let Some(host) = server.host.as_ref() else {
        return Err(Failure::NotApplicable("no data directory".into()));
    };
    server
        .post("/v1/invoke", &greet_body())?
        .expect(200, "hello.greet under a permit-all policy")?;
    host.policy(&format!(
        "{OPEN}@id(\"no-hello\")\nforbid (principal, action == FemtoClaw::Action::\"invoke\", resource) when {{ resource.name == \"hello\" }};\n"
    ))?;
    let response = server.post("/v1/invoke", &greet_body())?;
    response.expect(
        403,
        "hello.greet after a forbid was added, without a restart",
    )?;
    ensure!(
        response.text.contains("no-hello"),
        "the refusal does not name the new forbid: {}",
        excerpt(&response.text)
    );
    // Linking follows the policy too: invoke permitted, link refused, then permitted again.
    host.policy("permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n")?;
    let response = server.post("/v1/invoke", &greet_body())?;
    response.expect(403, "hello.greet once link permits were removed")?;
    ensure!(
        response.text.contains("imports what is not granted"),
        "the refusal is not a link refusal: {}",
        excerpt(&response.text)
    );
    host.policy(&format!("{OPEN}// linking permitted again\n"))?;
    server
        .post("/v1/invoke", &greet_body())?
        .expect(200, "hello.greet once linking is permitted again")?;
    Ok(())
}
