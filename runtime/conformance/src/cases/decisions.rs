//! Cases of the decisions area: the forms a decision takes (its JSON, its digest computed from
//! the canonical form of the policy set, the `policy-change` entries that announce a new one),
//! the documented configuration defaults and the order of its layers.

use std::collections::BTreeMap;
use std::process::Stdio;

use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::peer::{Peer, Reply, Seen};
use super::{OPEN, failed, guest_host, s};
use crate::target::{Host, excerpt};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.decisions.policy-digest-canonical",
        verifies: &["FC-POL-1519", "FC-UPG-3407"],
        run: policy_digest_canonical,
    },
    Case {
        name: "cli.decisions.json-form",
        verifies: &["FC-POL-1419", "FC-POL-1420"],
        run: json_form,
    },
    Case {
        name: "cli.decisions.documented-defaults",
        verifies: &["FC-CORE-0124", "FC-CONF-2811"],
        run: documented_defaults,
    },
    Case {
        name: "cli.decisions.config-layers",
        verifies: &["FC-CONF-2805", "FC-CONF-2807"],
        run: config_layers,
    },
    Case {
        name: "cli.decisions.call-time-model",
        verifies: &["FC-POL-1720", "FC-POL-1705", "FC-POL-1417"],
        run: call_time_model,
    },
    Case {
        name: "cli.decisions.canonical-scopes",
        verifies: &["FC-POL-1719", "FC-POL-1711"],
        run: canonical_scopes,
    },
    Case {
        name: "cli.decisions.refused-packages-install-nothing",
        verifies: &["FC-CAP-1116"],
        run: package_refusals,
    },
    Case {
        name: "http.decisions.grant-cache-keys",
        verifies: &["FC-POL-1610", "FC-POL-1417"],
        run: grant_cache_keys,
    },
    Case {
        name: "cli.decisions.failure-classes",
        verifies: &["FC-CORE-0123"],
        run: failure_classes,
    },
    Case {
        name: "cli.decisions.request-shapes",
        verifies: &["FC-POL-1422", "FC-POL-1706"],
        run: request_shapes,
    },
    Case {
        name: "cli.decisions.secret-names-exact",
        verifies: &["FC-POL-1705"],
        run: secret_names_exact,
    },
    Case {
        name: "cli.decisions.malformed-entries-cover-nothing",
        verifies: &["FC-POL-1613"],
        run: malformed_entries_cover_nothing,
    },
];

/// Specification 28, as this suite documents it: the defaults of the configuration keys.
const CONFIGURATION: &str = include_str!("../../../../docs/spec/FC_Configuration_Specification.md");

/// The schema text specification 15's digest is computed over, byte for byte.
const SCHEMA: &str = include_str!("../../../policy/schema/femtoclaw.cedarschema");

// ---------------------------------------------------------------------------------------------
// Helpers.

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Specification 15's digest of the policies `(id, text)`, computed by the suite.
fn canonical_digest(policies: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = policies.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"femtoclaw-policy-set-v1");
    field(SCHEMA.as_bytes());
    field(&(sorted.len() as u64).to_be_bytes());
    for (id, text) in sorted {
        field(id.as_bytes());
        field(text.as_bytes());
    }
    super::hex(&h.finalize())
}

/// `policy check PATH`: the digest it ends with.
fn checked_digest(host: &Host, path: &std::path::Path) -> Result<String, Failure> {
    let run = host.run(&["policy", "check", &s(path)])?;
    run.expect(0, &format!("policy check {}", path.display()))?;
    let last = run.stdout.trim_end().lines().last().unwrap_or("");
    let digest = last.rsplit("digest ").next().unwrap_or("");
    ensure!(
        is_hex64(digest),
        "policy check does not end with `<n> policies, digest <hex>`: {}",
        excerpt(&run.stdout)
    );
    Ok(digest.to_owned())
}

/// Replaces the policy directory's files with `files`.
fn policy_files(host: &Host, files: &[(&str, String)]) -> Result<(), Failure> {
    let dir = host.data.path().join("policy");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot create the policy: {e}")))?;
    for (name, text) in files {
        super::write(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// The entries with their index, from `from` on.
fn entries_from(host: &Host, from: usize) -> Result<Vec<Json>, Failure> {
    Ok(host.entries()?.into_iter().skip(from).collect())
}

fn echo(host: &Host) -> Result<(), Failure> {
    host.invoke("echo", &json!({"text": "x"}), &[])?
        .expect(0, "conformance.echo")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 15: the digest; specification 34: policy-change entries.

const P_INVOKE: &str = "@id(\"invoke-local\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);";
const P_LINK: &str = "@id(\"link-all\") permit (principal, action == FemtoClaw::Action::\"link\", resource)\n  when { context.capability.name == \"conformance\" };";
const P_KV: &str = "@id(\"kv\")\npermit (\n    principal,\n    action in [FemtoClaw::Action::\"kv.read\", FemtoClaw::Action::\"kv.write\"],\n    resource\n);";
const P_NOTE: &str = "@id(\"no-spin\")\n@note(\"ignored\")\nforbid (principal, action == FemtoClaw::Action::\"invoke\", resource)\n  when { context has function && context.function == \"spin\" };";

fn policy_digest_canonical(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let all = [
        ("invoke-local", P_INVOKE),
        ("link-all", P_LINK),
        ("kv", P_KV),
        ("no-spin", P_NOTE),
    ];
    let want = canonical_digest(&all);
    // Two files, comments and blank lines between the policies.
    let layout_one = vec![
        (
            "a.cedar",
            format!("// the operator's policies\n{P_INVOKE}\n\n// between\n {P_LINK}\n"),
        ),
        ("b.cedar", format!("{P_KV}   // trailing\n\n\n{P_NOTE}\n")),
    ];
    policy_files(&host, &layout_one)?;
    host.install()?;
    let dir = host.data.path().join("policy");
    let checked = checked_digest(&host, &dir)?;
    ensure!(
        checked == want,
        "the digest of four policies must be specification 15's canonical SHA-256 ({want}); policy check says {checked}"
    );
    let explained = host.run(&["policy", "explain", "--json", "--capability", "conformance"])?;
    explained.expect(0, "policy explain")?;
    let explained = explained.json()?;
    ensure!(
        explained["policy_digest"] == want.as_str()
            && explained["invoke"]["policy_digest"] == want.as_str(),
        "policy explain must name the canonical digest {want}: {}",
        excerpt(&explained.to_string())
    );
    let before = host.entries()?.len();
    echo(&host)?;
    let first = entries_from(&host, before)?;
    let changes: Vec<&Json> = first
        .iter()
        .filter(|e| e["entry"]["type"] == "policy-change")
        .collect();
    let first_decision = first.iter().position(|e| e["entry"]["type"] == "decision");
    let change_at = first
        .iter()
        .position(|e| e["entry"]["type"] == "policy-change");
    ensure!(
        changes.len() == 1
            && changes[0]["entry"]["policy_digest"] == want.as_str()
            && change_at.is_some()
            && first_decision.is_some_and(|d| change_at.is_some_and(|c| c < d)),
        "the first decision under the operator's policy must follow one policy-change entry naming {want}: {}",
        excerpt(&serde_json::to_string(&first).unwrap_or_default())
    );
    for e in first.iter().filter(|e| e["entry"]["type"] == "decision") {
        ensure!(
            e["entry"]["policy_digest"] == want.as_str(),
            "a decision under the operator's policy must carry the canonical digest {want}: {}",
            e["entry"]
        );
    }
    // Comments and layout between policies, file names and file order: the same digest, no
    // policy-change entry.
    let layouts = [
        vec![
            ("z.cedar", format!("{P_NOTE}\n{P_INVOKE}\n")),
            (
                "m.cedar",
                format!("\n\n// moved\n{P_LINK}\n{P_KV}\n// end\n"),
            ),
        ],
        vec![(
            "only.cedar",
            format!("{P_KV}\n{P_LINK}\n\n\n\n{P_NOTE} // x\n\t{P_INVOKE}"),
        )],
    ];
    for layout in &layouts {
        policy_files(&host, layout)?;
        let names: Vec<&str> = layout.iter().map(|(n, _)| *n).collect();
        let checked = checked_digest(&host, &dir)?;
        ensure!(
            checked == want,
            "moving the same policies into the files {names:?}, with other comments and layout between them, must keep the digest {want}; policy check says {checked}"
        );
        let before = host.entries()?.len();
        echo(&host)?;
        let later = entries_from(&host, before)?;
        ensure!(
            !later.iter().any(|e| e["entry"]["type"] == "policy-change"),
            "a policy-change entry was appended though only comments, layout between policies, file names and order changed ({names:?}): {}",
            excerpt(&serde_json::to_string(&later).unwrap_or_default())
        );
    }
    // Layout inside a policy is part of its text: another digest, announced before the first
    // decision made under it.
    let spaced = P_KV.replace("    resource\n", "    resource   \n");
    let moved = canonical_digest(&[
        ("invoke-local", P_INVOKE),
        ("link-all", P_LINK),
        ("kv", &spaced),
        ("no-spin", P_NOTE),
    ]);
    ensure!(moved != want, "the suite's two policy texts hash alike");
    policy_files(
        &host,
        &[(
            "a.cedar",
            format!("{P_INVOKE}\n{P_LINK}\n{spaced}\n{P_NOTE}\n"),
        )],
    )?;
    let checked = checked_digest(&host, &dir)?;
    ensure!(
        checked == moved,
        "spaces inside a policy change its text and so the canonical digest to {moved}; policy check says {checked}"
    );
    let before = host.entries()?.len();
    echo(&host)?;
    let later = entries_from(&host, before)?;
    let change_at = later
        .iter()
        .position(|e| e["entry"]["type"] == "policy-change");
    let decision_at = later.iter().position(|e| e["entry"]["type"] == "decision");
    ensure!(
        change_at.is_some_and(|c| later[c]["entry"]["policy_digest"] == moved.as_str()
            && decision_at.is_some_and(|d| c < d))
            && later
                .iter()
                .filter(|e| e["entry"]["type"] == "policy-change")
                .count()
                == 1,
        "after a policy's own layout changed, one policy-change entry naming {moved} must come before the first decision under it: {}",
        excerpt(&serde_json::to_string(&later).unwrap_or_default())
    );
    // Back to the embedded default policy: another digest, announced as such.
    std::fs::remove_dir_all(&dir).map_err(|e| failed(format!("cannot remove the policy: {e}")))?;
    let before = host.entries()?.len();
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet under the default policy")?;
    let later = entries_from(&host, before)?;
    let change = later
        .iter()
        .position(|e| e["entry"]["type"] == "policy-change");
    let decision = later.iter().position(|e| e["entry"]["type"] == "decision");
    let ok = match (change, decision) {
        (Some(c), Some(d)) => {
            let digest = later[c]["entry"]["policy_digest"].as_str().unwrap_or("");
            c < d
                && is_hex64(digest)
                && digest != moved
                && later[d]["entry"]["policy_digest"] == digest
        }
        _ => false,
    };
    ensure!(
        ok,
        "returning to the embedded default policy must append a policy-change entry with its digest before its first decision: {}",
        excerpt(&serde_json::to_string(&later).unwrap_or_default())
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 14: the decision's JSON form.

/// Checks one decision's JSON form; its reason.
fn decision_form(d: &Json, digest: &str, what: &str) -> Result<String, Failure> {
    let object = d
        .as_object()
        .ok_or_else(|| failed(format!("{what}: the decision is not an object: {d}")))?;
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    ensure!(
        keys == ["allowed", "errors", "policy_digest", "policy_ids", "reason"],
        "{what}: a decision must have exactly allowed, reason, policy_ids, errors and policy_digest: {d}"
    );
    let allowed = d["allowed"]
        .as_bool()
        .ok_or_else(|| failed(format!("{what}: `allowed` is not a boolean: {d}")))?;
    let reason = d["reason"].as_str().unwrap_or("");
    ensure!(
        [
            "permitted",
            "forbidden",
            "no_permit",
            "not_requested",
            "malformed"
        ]
        .contains(&reason),
        "{what}: `reason` must be one of the snake-case reasons: {d}"
    );
    ensure!(
        allowed == (reason == "permitted"),
        "{what}: `allowed` and `reason` disagree: {d}"
    );
    for list in ["policy_ids", "errors"] {
        let items = d[list]
            .as_array()
            .ok_or_else(|| failed(format!("{what}: `{list}` is not an array: {d}")))?;
        let texts: Vec<&str> = items.iter().filter_map(Json::as_str).collect();
        ensure!(
            texts.len() == items.len(),
            "{what}: `{list}` must hold strings: {d}"
        );
        let mut sorted = texts.clone();
        sorted.sort_unstable();
        ensure!(sorted == texts, "{what}: `{list}` must be sorted: {d}");
    }
    ensure!(
        d["policy_digest"] == digest,
        "{what}: `policy_digest` must be the set's lowercase hex digest {digest}: {d}"
    );
    Ok(reason.to_owned())
}

/// A decision's text form, as specification 14 renders it.
fn text_form(d: &Json) -> String {
    let reason = match d["reason"].as_str().unwrap_or("") {
        "permitted" => "permitted by policy",
        "forbidden" => "forbidden by policy",
        "no_permit" => "no policy permits it",
        "not_requested" => "not requested by manifest",
        _ => "malformed request",
    };
    let mut out = format!(
        "{}: {reason}",
        if d["allowed"] == true {
            "allowed"
        } else {
            "denied"
        }
    );
    let ids: Vec<String> = d["policy_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(|i| format!("`{i}`")))
        .collect();
    if !ids.is_empty() {
        out.push_str(&format!(" ({})", ids.join(", ")));
    }
    for e in d["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!("; {}", e.as_str().unwrap_or("")));
    }
    out
}

const FORMS: &str = r#"@id("zz-invoke")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource);
@id("mm-invoke")
permit (principal, action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"conformance");
@id("no-divide")
forbid (principal, action == FemtoClaw::Action::"invoke", resource)
  when { context has function && context.function == "divide" };
@id("link")
permit (principal, action == FemtoClaw::Action::"link", resource);
@id("kv-read")
permit (principal, action == FemtoClaw::Action::"kv.read", resource);
"#;

fn json_form(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let policy = FORMS;
    host.policy(policy)?;
    host.install()?;
    let path = host.data.path().join("policy");
    let digest = checked_digest(&host, &path)?;
    let e = host.run(&[
        "policy",
        "explain",
        "--json",
        "--capability",
        "conformance",
        "--function",
        "echo",
    ])?;
    e.expect(0, "policy explain")?;
    let e = e.json()?;
    let mut reasons = std::collections::BTreeSet::new();
    let invoke = &e["invoke"];
    reasons.insert(decision_form(invoke, &digest, "the invoke decision")?);
    ensure!(
        invoke["allowed"] == true && invoke["policy_ids"] == json!(["mm-invoke", "zz-invoke"]),
        "conformance.echo must be permitted by `mm-invoke` and `zz-invoke`, sorted: {invoke}"
    );
    for import in e["imports"].as_array().into_iter().flatten() {
        reasons.insert(decision_form(
            &import["decision"],
            &digest,
            &format!("the link decision of {}", import["interface"]),
        )?);
    }
    for scope in e["scopes"].as_array().into_iter().flatten() {
        reasons.insert(decision_form(
            &scope["decision"],
            &digest,
            &format!("the decision of {} {}", scope["action"], scope["scope"]),
        )?);
    }
    ensure!(
        e["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["action"] == "kv.write" && s["decision"]["reason"] == "no_permit"),
        "kv.write on the guest's namespace, requested but not permitted, must be decided `no_permit`: {}",
        excerpt(&e["scopes"].to_string())
    );
    // A forbidden invocation: its JSON form, and the refusal renders the same decision.
    let divide = host.run(&[
        "policy",
        "explain",
        "--json",
        "--capability",
        "conformance",
        "--function",
        "divide",
    ])?;
    divide.expect(0, "policy explain --function divide")?;
    let divide = divide.json()?;
    let forbidden = &divide["invoke"];
    reasons.insert(decision_form(
        forbidden,
        &digest,
        "the invoke decision of divide",
    )?);
    ensure!(
        forbidden["reason"] == "forbidden" && forbidden["policy_ids"] == json!(["no-divide"]),
        "conformance.divide must be forbidden by `no-divide`: {forbidden}"
    );
    let run = host.invoke("divide", &json!({"a": 1, "b": 1}), &[])?;
    run.expect(7, "conformance.divide under a forbid")?;
    ensure!(
        run.stderr.contains(&text_form(forbidden)),
        "the refusal must render the decision's JSON form {forbidden} as `{}`: {}",
        text_form(forbidden),
        excerpt(&run.stderr)
    );
    // Another principal: no permit.
    let other = host.run(&[
        "policy",
        "explain",
        "--json",
        "--capability",
        "hello",
        "--principal",
        "agent:x",
    ])?;
    other.expect(0, "policy explain --principal agent:x")?;
    let other = other.json()?;
    reasons.insert(decision_form(
        &other["invoke"],
        &digest,
        "agent:x's invoke decision",
    )?);
    // Not requested: an import the guest's manifest does not list.
    let wasm = host.file("lean.wasm", crate::GUEST)?;
    let manifest = host.file(
        "lean.toml",
        b"name = \"lean\"\nversion = \"1.0.0\"\npublisher = \"acme\"\nfuel = 50_000_000\n\n[requests]\nimports = [\"femtoclaw:host/log@0.1.0\"]\n",
    )?;
    host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])?
        .expect(0, "capability add lean")?;
    let lean = host.run(&["policy", "explain", "--json", "--capability", "lean"])?;
    lean.expect(0, "policy explain --capability lean")?;
    let lean = lean.json()?;
    for import in lean["imports"].as_array().into_iter().flatten() {
        reasons.insert(decision_form(
            &import["decision"],
            &digest,
            &format!("lean's link decision of {}", import["interface"]),
        )?);
    }
    for want in ["permitted", "forbidden", "no_permit", "not_requested"] {
        ensure!(
            reasons.contains(want),
            "no decision had the reason `{want}` (seen {reasons:?})"
        );
    }
    // The refusals of the other reasons render their decisions too: an import the manifest does
    // not request, an invocation no policy permits.
    let refused: Vec<String> = lean["imports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["decision"]["reason"] == "not_requested")
        .map(|i| text_form(&i["decision"]))
        .collect();
    let run = host.run(&["invoke", "lean", "echo", "--args", r#"{"text":"x"}"#])?;
    ensure!(
        run.code == 7 && !refused.is_empty() && refused.iter().all(|t| run.stderr.contains(t)),
        "the refusal of lean's unrequested imports must render each decision as {refused:?}: exit {}, {}",
        run.code,
        excerpt(&run.stderr)
    );
    // Under a policy that permits only the invocation of `conformance`.
    host.policy(
        "@id(\"mm-invoke\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"conformance\");\n",
    )?;
    let hello = host.run(&["policy", "explain", "--json", "--capability", "hello"])?;
    hello.expect(0, "policy explain --capability hello")?;
    let unpermitted = hello.json()?["invoke"].clone();
    ensure!(
        unpermitted["reason"] == "no_permit",
        "the local user's invocation of hello must be decided `no_permit` under this policy: {unpermitted}"
    );
    let run = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?;
    ensure!(
        run.code == 7 && run.stderr.contains(&text_form(&unpermitted)),
        "the refusal of an invocation no policy permits must render its decision as `{}`: exit {}, {}",
        text_form(&unpermitted),
        run.code,
        excerpt(&run.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 28 and specification 1: the documented defaults.

/// The keys table of specification 28: `section.key` → default as written.
fn documented_defaults_table() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in CONFIGURATION.lines() {
        if line.starts_with("### The keys") {
            inside = true;
            continue;
        }
        if inside && line.starts_with("### ") {
            break;
        }
        if !inside || !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let key = cells[0].trim_start_matches("| ").trim_matches('`');
        let default = cells[2].trim_matches('`');
        out.insert(key.to_owned(), default.to_owned());
    }
    out
}

fn documented_defaults(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let documented = documented_defaults_table();
    ensure!(
        documented.len() >= 20 && documented.contains_key("limits.memory_bytes"),
        "the suite cannot read specification 28's table of keys ({} keys)",
        documented.len()
    );
    let shown = host.ok(&["config", "show"])?;
    let mut seen = BTreeMap::new();
    for (section, key, value, source) in super::ledger::shown_config(&shown)? {
        ensure!(
            source == "default",
            "on a fresh data directory {section}.{key} shows the source {source}"
        );
        seen.insert(format!("{section}.{key}"), value);
    }
    for (key, want) in &documented {
        let got = seen.get(key);
        ensure!(
            got == Some(want),
            "on a host without a configuration file {key} must have the default specification 28 documents, {want}; config show says {got:?}"
        );
    }
    let extra: Vec<&String> = seen
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    ensure!(
        extra.is_empty(),
        "config show prints keys specification 28 does not document: {extra:?}"
    );
    // The sandbox's own limits behave as documented: a budget at max_fuel runs, one over it is
    // refused.
    host.policy(OPEN)?;
    host.install()?;
    let max = documented
        .get("limits.max_fuel")
        .cloned()
        .unwrap_or_default();
    let over = max
        .parse::<u64>()
        .map_err(|_| failed(format!("limits.max_fuel is documented as {max}")))?
        + 1;
    let at = host.invoke("echo", &json!({"text": "x"}), &["--fuel", &max])?;
    at.expect(
        0,
        &format!("conformance.echo with --fuel {max} (the default max_fuel)"),
    )?;
    let run = host.invoke(
        "echo",
        &json!({"text": "x"}),
        &["--fuel", &over.to_string()],
    )?;
    run.expect(
        2,
        &format!("conformance.echo with --fuel {over}, over the default max_fuel"),
    )?;
    // The ledger's origin: the checkpoint names the documented default.
    let origin = documented
        .get("ledger.origin")
        .map(|o| o.trim_matches('"').to_owned())
        .unwrap_or_default();
    let note = host.ok(&["log", "checkpoint"])?;
    ensure!(
        note.lines().next() == Some(origin.as_str()),
        "the checkpoint of a host without configuration must name the documented origin {origin}: {}",
        excerpt(&note)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 28: layers.

/// Runs `args` with `vars` in the environment; exit code, stdout, stderr.
fn with_env(host: &Host, args: &[&str], vars: &[(&str, &str)]) -> Result<(i32, String), Failure> {
    let mut command = host.command(args);
    for (k, v) in vars {
        command.env(k, v);
    }
    let out = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| failed(format!("cannot run {}: {e}", args.join(" "))))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// `config show`: `section.key` → (value, source).
fn shown(text: &str) -> BTreeMap<String, (String, String)> {
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if let Some((pair, source)) = line.split_once("  # ")
            && let Some((key, value)) = pair.split_once(" = ")
        {
            out.insert(
                format!("{section}.{key}"),
                (value.to_owned(), source.to_owned()),
            );
        }
    }
    out
}

/// `serve` with `args` and `vars`: the address it says it listens on (the server stopped).
fn listens_on(host: &Host, args: &[&str], vars: &[(&str, &str)]) -> Result<String, Failure> {
    use std::io::BufRead as _;
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut command = host.command(&all);
    for (k, v) in vars {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(line.trim().to_owned())
}

/// A free loopback port.
fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed(format!("no free port: {e}")))
}

fn config_layers(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let file = host.data.path().join("femtoclaw.toml");
    super::write(
        &file,
        b"# layers\n[limits]\nmax_fuel = 7000\n\ndeadline_ms = 9000\n[server]\nqueue = 3\nlisten = \"127.0.0.1:1\"\n",
    )?;
    let path = s(&file);
    let vars = [
        ("FEMTOCLAW_LIMITS_DEADLINE_MS", "8000"),
        ("FEMTOCLAW_SERVER_CONCURRENCY", "2"),
    ];
    let (code, out) = with_env(&host, &["config", "show"], &vars)?;
    ensure!(
        code == 0,
        "config show with a file and variables: exit {code}"
    );
    let got = shown(&out);
    let want = [
        ("limits.max_fuel", "7000", format!("file {path}:3")),
        (
            "limits.deadline_ms",
            "8000",
            "env FEMTOCLAW_LIMITS_DEADLINE_MS".to_owned(),
        ),
        ("server.queue", "3", format!("file {path}:7")),
        (
            "server.concurrency",
            "2",
            "env FEMTOCLAW_SERVER_CONCURRENCY".to_owned(),
        ),
        ("server.listen", "\"127.0.0.1:1\"", format!("file {path}:8")),
        ("server.per_principal", "4", "default".to_owned()),
    ];
    for (key, value, source) in &want {
        let shown = got.get(*key);
        ensure!(
            shown.is_some_and(|(v, s)| v == value && s == source),
            "{key} must be {value} from `{source}` (default, then file, then environment, each later winning, with the file's line and the variable's name); config show says {shown:?}"
        );
    }
    // The flag wins over the environment and the file; given twice, the last counts.
    let (a, b, c) = (free_port()?, free_port()?, free_port()?);
    let env_listen = format!("127.0.0.1:{a}");
    let line = listens_on(
        &host,
        &[],
        &[("FEMTOCLAW_SERVER_LISTEN", env_listen.as_str())],
    )?;
    ensure!(
        line == format!("listening on http://{env_listen}"),
        "with server.listen in the file and FEMTOCLAW_SERVER_LISTEN={env_listen}, serve must listen on the variable's address; it printed {line:?}"
    );
    let first = format!("127.0.0.1:{b}");
    let last = format!("127.0.0.1:{c}");
    let line = listens_on(
        &host,
        &["--listen", &first, "--listen", &last],
        &[("FEMTOCLAW_SERVER_LISTEN", env_listen.as_str())],
    )?;
    ensure!(
        line == format!("listening on http://{last}"),
        "serve --listen {first} --listen {last} must listen on the last flag's address, over the variable and the file; it printed {line:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 17: call-time decisions against a model.

/// A manifest's key-value entries for the suite's guest, which opens, reads and writes the
/// namespace `conformance`: (its `kv` line, covers kv.read, covers kv.write).
const KV_MANIFESTS: &[(&str, bool, bool)] = &[
    ("kv = []", false, false),
    ("kv = [{ namespace = \"conformance\" }]", true, false),
    (
        "kv = [{ namespace = \"conformance\", write = true }]",
        true,
        true,
    ),
    (
        "kv = [{ namespace = \"conformance\", write = false }, { namespace = \"conformance-x\", write = true }]",
        true,
        false,
    ),
    (
        "kv = [{ namespace = \"Conformance\", write = true }, { namespace = \"conform\", write = true }, { namespace = \"conformance \", write = true }]",
        false,
        false,
    ),
];

/// Policies on the two key-value actions (beside invoke and link): (text, permits kv.read,
/// permits kv.write).
const KV_POLICIES: &[(&str, bool, bool)] = &[
    ("", false, false),
    (
        "@id(\"kv-read\")\npermit (principal, action == FemtoClaw::Action::\"kv.read\", resource);\n",
        true,
        false,
    ),
    (
        "@id(\"kv-any\")\npermit (principal, action in [FemtoClaw::Action::\"kv.read\", FemtoClaw::Action::\"kv.write\"], resource == FemtoClaw::KvNamespace::\"conformance\");\n",
        true,
        true,
    ),
    (
        "@id(\"kv-all\")\npermit (principal, action, resource) when { resource has name };\n@id(\"no-write\")\nforbid (principal, action == FemtoClaw::Action::\"kv.write\", resource);\n",
        true,
        false,
    ),
    (
        "@id(\"kv-write\")\npermit (principal, action == FemtoClaw::Action::\"kv.write\", resource) when { resource.name == \"conformance\" };\n",
        false,
        true,
    ),
];

const INVOKE_AND_LINK: &str = "@id(\"invoke\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n@id(\"link\")\npermit (principal, action == FemtoClaw::Action::\"link\", resource);\n";

/// The guest's requests but for its key-value entries.
const GUEST_IMPORTS: &str = "imports = [\"femtoclaw:host/log@0.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]";

/// Installs the suite's guest as `name` under the `kv` line.
fn install_as(host: &Host, name: &str, requests: &str) -> Result<(), Failure> {
    let wasm = host.file(&format!("{name}.wasm"), crate::GUEST)?;
    let manifest = format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\npublisher = \"acme\"\nfuel = 50_000_000\n\n[requests]\n{requests}\n"
    );
    let manifest = host.file(&format!("{name}.toml"), manifest.as_bytes())?;
    host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])?
        .expect(
            0,
            &format!("capability add of the guest as {name} ({requests})"),
        )?;
    Ok(())
}

/// `invoke NAME FUNCTION`: whether the guest's result is `ok`, and the invocation's decisions
/// as (action, resource, allowed).
fn kv_call(
    host: &Host,
    name: &str,
    function: &str,
    args: &Json,
) -> Result<(bool, Vec<Decided>), Failure> {
    let before = host.entries()?.len();
    let text = args.to_string();
    let run = host.run(&["invoke", name, function, "--args", &text])?;
    run.expect(0, &format!("{name}.{function}"))?;
    let result = run.json()?;
    let entries = entries_from(host, before)?;
    let decisions = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "decision" && e["action"] != "invoke")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["resource"].as_str().unwrap_or("").to_owned(),
                e["allowed"] == true,
            )
        })
        .collect();
    Ok((result.get("ok").is_some(), decisions))
}

fn call_time_model(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(INVOKE_AND_LINK)?;
    for (i, (kv, _, _)) in KV_MANIFESTS.iter().enumerate() {
        install_as(&host, &format!("kv{i}"), &format!("{GUEST_IMPORTS}\n{kv}"))?;
    }
    for (policy, permits_read, permits_write) in KV_POLICIES {
        host.policy(&format!("{INVOKE_AND_LINK}{policy}"))?;
        for (i, (kv, covers_read, covers_write)) in KV_MANIFESTS.iter().enumerate() {
            let name = format!("kv{i}");
            let read = *covers_read && *permits_read;
            let write = *covers_write && *permits_write;
            let what = format!("under the manifest entries `{kv}` and the policy {policy:?}");
            // remember: open (kv.read), then set (kv.write).
            let (ok, decisions) =
                kv_call(&host, &name, "remember", &json!({"key": "k", "value": "v"}))?;
            let mut want = vec![("kv.read".to_owned(), "conformance".to_owned(), read)];
            if read {
                want.push(("kv.write".to_owned(), "conformance".to_owned(), write));
            }
            ensure!(
                ok == (read && write) && decisions == want,
                "{what}, remember must {} with the decisions {want:?} (allowed exactly when an entry of exactly that name covers the action, `write = true` for a write, and the policy permits it); it {} with {decisions:?}",
                if read && write {
                    "succeed"
                } else {
                    "be refused"
                },
                if ok { "succeeded" } else { "was refused" }
            );
            // recall: open and get, both kv.read, the second remembered or not, alike.
            let (ok, decisions) = kv_call(&host, &name, "recall", &json!({"key": "k"}))?;
            let all_alike = decisions
                .iter()
                .all(|d| d.0 == "kv.read" && d.1 == "conformance" && d.2 == read);
            ensure!(
                ok == read && !decisions.is_empty() && all_alike && (!read || decisions.len() == 2),
                "{what}, recall must {} and every kv.read decision of it be allowed={read}; it {} with {decisions:?}",
                if read { "succeed" } else { "be refused" },
                if ok { "succeeded" } else { "was refused" }
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 17: canonical scope texts and concrete scopes.

/// An HTTP scope as specification 17 defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host_ {
    Name(String),
    V4(std::net::Ipv4Addr),
    V6(std::net::Ipv6Addr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: Host_,
    port: u16,
}

/// Parses a recorded origin `scheme://host:port` (`[v6]` in brackets): canonical text only.
fn parse_origin(text: &str) -> Option<Origin> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, port) = v6.split_once("]:")?;
        (Host_::V6(addr.parse().ok()?), port)
    } else {
        let (host, port) = rest.rsplit_once(':')?;
        let name_ok = !host.is_empty()
            && !host.ends_with('.')
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
            });
        if !name_ok {
            return None;
        }
        match host.parse::<std::net::Ipv4Addr>() {
            Ok(v4) => (Host_::V4(v4), port),
            Err(_) => (Host_::Name(host.to_owned()), port),
        }
    };
    let number: u16 = port.parse().ok()?;
    if number == 0 || port != number.to_string() {
        return None;
    }
    Some(Origin {
        scheme: scheme.to_owned(),
        host,
        port: number,
    })
}

/// The suite's own reading of a request URL's origin (scheme, lowercase host without a trailing
/// dot, the default port when none).
fn origin_of_url(scheme: &str, host: Host_, port: Option<u16>) -> Origin {
    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
    Origin {
        scheme: scheme.to_owned(),
        host,
        port,
    }
}

/// Whether a recorded path is absolute and normalized.
fn normalized_path(text: &str) -> bool {
    text == "/"
        || (text.starts_with('/')
            && !text.ends_with('/')
            && text[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."))
}

/// A recorded call decision: (action, resource, allowed).
type Decided = (String, String, bool);

/// The decisions recorded from index `from` on: (action, resource, allowed).
fn decisions_from(host: &Host, from: usize) -> Result<Vec<Decided>, Failure> {
    Ok(entries_from(host, from)?
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "decision" && e["action"] != "invoke")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["resource"].as_str().unwrap_or("").to_owned(),
                e["allowed"] == true,
            )
        })
        .collect())
}

fn canonical_scopes(target: &Target) -> Result<(), Failure> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let host = guest_host(target, OPEN)?;
    super::write(
        &host.data.path().join("femtoclaw.toml"),
        b"[http]\ntimeout_ms = 3000\n",
    )?;
    super::set_secret(&host, "tok", "CANONICAL-SECRET")?;
    let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
    // Each URL (loopback only), the origin the suite reads in it, and the address it names.
    let urls: Vec<(&str, Origin, Option<&str>)> = vec![
        (
            "HTTP://127.0.0.1/x",
            origin_of_url("http", Host_::V4(Ipv4Addr::LOCALHOST), None),
            Some("127.0.0.1"),
        ),
        (
            "http://[::1]/",
            origin_of_url("http", Host_::V6(Ipv6Addr::LOCALHOST), None),
            Some("::1"),
        ),
        (
            "http://[::FFFF:127.0.0.1]:80/",
            origin_of_url("http", Host_::V6(mapped), None),
            Some("127.0.0.1"),
        ),
        (
            "http://[0:0:0:0:0:ffff:7f00:1]/",
            origin_of_url("http", Host_::V6(mapped), None),
            Some("127.0.0.1"),
        ),
        (
            "https://127.0.0.1:443/",
            origin_of_url("https", Host_::V4(Ipv4Addr::LOCALHOST), None),
            Some("127.0.0.1"),
        ),
        (
            "http://127.0.0.1:9/",
            origin_of_url("http", Host_::V4(Ipv4Addr::LOCALHOST), Some(9)),
            None,
        ),
        (
            "http://LocalHost./",
            origin_of_url("http", Host_::Name("localhost".into()), None),
            None,
        ),
    ];
    let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (url, want, address) in &urls {
        let before = host.entries()?.len();
        let args = json!({"url": url}).to_string();
        host.run(&["invoke", "fetch", "get", "--args", &args])?
            .expect(0, &format!("fetch.get {url}"))?;
        let decided = decisions_from(&host, before)?;
        let http: Vec<&(String, String, bool)> =
            decided.iter().filter(|d| d.0 == "http.request").collect();
        ensure!(
            http.len() == 1,
            "fetch.get {url} must take one http.request decision: {decided:?}"
        );
        let parsed = parse_origin(&http[0].1);
        ensure!(
            parsed.as_ref() == Some(want),
            "the http.request decision of {url} must be recorded as the canonical text of {want:?}, which parses back to it; it was recorded as {:?} (parsed {parsed:?})",
            http[0].1
        );
        texts
            .entry(format!("{want:?}"))
            .or_default()
            .push(http[0].1.clone());
        if let (Some(address), true) = (address, http[0].2) {
            for d in decided.iter().filter(|d| d.0 == "net.connect") {
                let ip: Option<std::net::IpAddr> = d.1.parse().ok();
                let canonical = ip.map(|ip| ip.to_canonical().to_string());
                ensure!(
                    canonical.as_deref() == Some(d.1.as_str()) && d.1 == *address,
                    "the net.connect decision of {url} must be on the canonical text {address} (an IPv4-mapped address shown as IPv4), which parses back to it; it was {:?}",
                    d.1
                );
            }
            ensure!(
                decided.iter().any(|d| d.0 == "net.connect"),
                "fetch.get {url}, a loopback address granted by the policy, took no net.connect decision: {decided:?}"
            );
        }
    }
    for (scope, spellings) in &texts {
        ensure!(
            spellings.windows(2).all(|w| w[0] == w[1]),
            "one scope {scope} must have one canonical text; it was recorded as {spellings:?}"
        );
    }
    // A secret's decision: `<secret>@<origin>`.
    let before = host.entries()?.len();
    let args = json!({"method": "GET", "url": "http://127.0.0.1:9/", "secret-headers": [{"name": "authorization", "secret": "tok", "prefix": "Bearer "}]}).to_string();
    host.run(&["invoke", "fetch", "request", "--args", &args])?
        .expect(0, "fetch.request with a secret")?;
    let decided = decisions_from(&host, before)?;
    let secret: Vec<&(String, String, bool)> =
        decided.iter().filter(|d| d.0 == "secret.use").collect();
    let parsed = secret.first().and_then(|d| {
        let (name, origin) = d.1.rsplit_once('@')?;
        Some((name.to_owned(), parse_origin(origin)?))
    });
    ensure!(
        secret.len() == 1
            && parsed
                == Some((
                    "tok".to_owned(),
                    origin_of_url("http", Host_::V4(Ipv4Addr::LOCALHOST), Some(9))
                )),
        "the secret.use decision must be recorded as `tok@http://127.0.0.1:9`, which parses back to the secret and its destination: {decided:?}"
    );
    // A host pattern is not a concrete scope: refused, no request decided or sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot listen: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    listener
        .set_nonblocking(true)
        .map_err(|e| failed(e.to_string()))?;
    for url in ["http://*.localhost/", "http://*/", "http://*:80/"] {
        let before = host.entries()?.len();
        let args = json!({"url": url}).to_string();
        let run = host.run(&["invoke", "fetch", "get", "--args", &args])?;
        run.expect(0, &format!("fetch.get {url}"))?;
        let got = run.json()?;
        let decided = decisions_from(&host, before)?;
        ensure!(
            got["err"].as_str().is_some_and(|e| e.contains("malformed"))
                && !decided.iter().any(|d| d.2),
            "fetch.get {url} names a host pattern, not a concrete host: it must be refused as malformed with nothing allowed; it answered {got} with the decisions {decided:?}"
        );
    }
    ensure!(
        listener.accept().is_err(),
        "a connection reached the suite's listener on port {port}"
    );
    // Paths: decided on the normalized path, so `..` never passes as a path under /data.
    let data = host.data.path().join("files").join("files").join("data");
    std::fs::create_dir_all(&data).map_err(|e| failed(e.to_string()))?;
    for (path, want, under) in [
        ("/data/./a/../b.txt", "/data/b.txt", true),
        ("/data/x/../b.txt", "/data/b.txt", true),
        ("/data/../files/b.txt", "/files/b.txt", false),
        ("/data/../data2/b.txt", "/data2/b.txt", false),
    ] {
        let before = host.entries()?.len();
        let args = json!({"path": path}).to_string();
        host.run(&["invoke", "files", "read-file", "--args", &args])?
            .expect(0, &format!("files.read-file {path}"))?;
        let decided = decisions_from(&host, before)?;
        let fs: Vec<&(String, String, bool)> =
            decided.iter().filter(|d| d.0 == "fs.read").collect();
        ensure!(
            !fs.is_empty()
                && fs
                    .iter()
                    .all(|d| normalized_path(&d.1) && d.1 == want && d.2 == under),
            "files.read-file {path} must be decided on the normalized path {want} ({}); recorded {decided:?}",
            if under {
                "under /data: allowed"
            } else {
                "not under /data: denied"
            }
        );
    }
    // Key-value: the namespace's name.
    let before = host.entries()?.len();
    host.invoke("recall", &json!({"key": "k"}), &[])?
        .expect(0, "conformance.recall")?;
    let decided = decisions_from(&host, before)?;
    ensure!(
        !decided.is_empty()
            && decided
                .iter()
                .all(|d| d.0 == "kv.read" && d.1 == "conformance"),
        "recall's decisions must be on the namespace's name `conformance`: {decided:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 10: refused packages install nothing.

/// `POST /admin` on the server's admin socket: the status and body.
#[cfg(unix)]
fn admin(host: &Host, body: &Json) -> Result<(u16, String), Failure> {
    use std::io::{Read as _, Write as _};
    let socket = host.data.path().join("admin.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(&socket)
        .map_err(|e| failed(format!("cannot connect to {}: {e}", socket.display())))?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let text = body.to_string();
    let request = format!(
        "POST /admin HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| failed(format!("cannot write to the admin socket: {e}")))?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, answer))
}

/// What the catalog holds: `capability list --json` and the capabilities directory's files.
fn catalog(host: &Host) -> Result<(String, Vec<std::path::PathBuf>), Failure> {
    let list = host.ok(&["capability", "list", "--json"])?;
    let files = super::snapshot(&host.data.path().join("capabilities"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    Ok((list, files))
}

fn package_refusals(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let manifest = |name: &str, publisher: &str, fuel: &str| {
        format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\npublisher = \"{publisher}\"\nfuel = {fuel}\n\n[requests]\n{GUEST_IMPORTS}\n"
        )
    };
    let good = host.file("good.wasm", crate::GUEST)?;
    let mut big = crate::GUEST.to_vec();
    // A custom section that takes the component past 64 MiB.
    let pad = 64 * 1024 * 1024 + 1 - big.len().min(64 * 1024 * 1024);
    big.push(0);
    let mut len = (pad + 8) as u64;
    let mut leb = Vec::new();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            leb.push(byte);
            break;
        }
        leb.push(byte | 0x80);
    }
    big.extend_from_slice(&leb);
    big.push(3);
    big.extend_from_slice(b"pad");
    big.resize(big.len() + pad + 4, 0);
    let big = host.file("big.wasm", &big)?;
    let core = host.file("core.wasm", b"\0asm\x01\0\0\0")?;
    let junk = host.file("junk.wasm", b"not a component at all")?;
    let cases: Vec<(&str, std::path::PathBuf, String)> = vec![
        (
            "a manifest that is not TOML",
            good.clone(),
            "name = \"x\"\nversion = [\n".to_owned(),
        ),
        (
            "a manifest with an unknown key",
            good.clone(),
            manifest("unknownkey", "acme", "1000") + "colour = \"red\"\n",
        ),
        (
            "a bad name",
            good.clone(),
            manifest("Bad_Name", "acme", "1000"),
        ),
        (
            "the reserved publisher",
            good.clone(),
            manifest("mine", " FemtoClaw ", "1000"),
        ),
        ("a fuel of 0", good.clone(), manifest("nofuel", "acme", "0")),
        (
            "a component over 64 MiB",
            big,
            manifest("huge", "acme", "1000"),
        ),
        (
            "a core module",
            core,
            manifest("coremodule", "acme", "1000"),
        ),
        (
            "bytes that are no WebAssembly",
            junk,
            manifest("junk", "acme", "1000"),
        ),
    ];
    let before = catalog(&host)?;
    let mut paths = Vec::new();
    for (i, (what, wasm, text)) in cases.iter().enumerate() {
        let m = host.file(&format!("m{i}.toml"), text.as_bytes())?;
        let run = host.run(&["capability", "add", &s(wasm), "--manifest", &s(&m)])?;
        ensure!(
            run.code == 2,
            "capability add of a package with {what} must be refused with exit 2: exit {}, stderr {}",
            run.code,
            excerpt(&run.stderr)
        );
        ensure!(
            catalog(&host)? == before,
            "capability add of a package with {what} was refused but installed something"
        );
        paths.push((what, wasm.clone(), m));
    }
    // Through the server's admin channel: HTTP 400, nothing installed.
    #[cfg(unix)]
    if target.owns_servers() {
        let server = target.server(None)?;
        let Some(served) = server.host.as_ref() else {
            return Ok(());
        };
        let before = catalog(served)?;
        for (what, wasm, m) in &paths {
            let (status, answer) = admin(
                served,
                &json!({"op": "capability-add", "component": s(wasm), "manifest": s(m)}),
            )?;
            ensure!(
                status == 400 && answer.contains("bad-arguments"),
                "capability-add through the admin channel of a package with {what} must answer 400 bad-arguments: {}",
                excerpt(&answer)
            );
            ensure!(
                catalog(served)? == before,
                "capability-add through the admin channel of a package with {what} was refused but installed something"
            );
        }
        // The same channel installs a good package, so the refusals are the packages'.
        let m = served.file("ok.toml", manifest("fine", "acme", "1000").as_bytes())?;
        let w = served.file("ok.wasm", crate::GUEST)?;
        let (status, answer) = admin(
            served,
            &json!({"op": "capability-add", "component": s(&w), "manifest": s(&m)}),
        )?;
        ensure!(
            status == 200,
            "capability-add through the admin channel of a good package must answer 200: {}",
            excerpt(&answer)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 16: the grant cache's key.

/// The guest with a custom section appended: other bytes, the same imports and exports.
fn other_bytes() -> Vec<u8> {
    let mut bytes = crate::GUEST.to_vec();
    bytes.extend_from_slice(&[0, 9, 4, b'p', b'a', b'd', b'2', 1, 2, 3, 4]);
    bytes
}

fn grant_cache_keys(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case installs capabilities and makes tokens on the server's data directory".into(),
        ));
    }
    let digest = super::hex(&super::sha256(crate::GUEST));
    let link = format!(
        "@id(\"link\")\npermit (principal, action == FemtoClaw::Action::\"link\", resource)\n  when {{ principal == FemtoClaw::User::\"ann\" && principal in FemtoClaw::Group::\"linkers\" && context.capability.name == \"grant\" && context.capability.version == \"1.0.0\" && context.capability.publisher == \"acme\" && context.capability.digest == \"{digest}\" }};\n"
    );
    let invoke =
        "@id(\"invoke\")\npermit (principal, action == FemtoClaw::Action::\"invoke\", resource);\n";
    let policy = format!("{invoke}{link}");
    let server = target.server(Some(&policy))?;
    let host = server
        .host
        .as_ref()
        .ok_or_else(|| failed("the suite's server has no data directory"))?;
    let token = |principal: &str, groups: &[&str]| -> Result<String, Failure> {
        let mut args = vec!["token", "create", "--principal", principal, "--name"];
        let name = format!("{principal}-{}", groups.join("-")).replace(':', "-");
        args.push(&name);
        for g in groups {
            args.push("--group");
            args.push(g);
        }
        Ok(host.ok(&args)?.trim().to_owned())
    };
    let add = |name: &str,
               version: &str,
               publisher: &str,
               imports: &str,
               bytes: &[u8]|
     -> Result<(), Failure> {
        let wasm = host.file(&format!("{name}-{version}-{publisher}.wasm"), bytes)?;
        let manifest = format!(
            "name = \"{name}\"\nversion = \"{version}\"\npublisher = \"{publisher}\"\nfuel = 50_000_000\n\n[requests]\n{imports}\n"
        );
        let m = host.file(
            &format!("{name}-{version}-{publisher}.toml"),
            manifest.as_bytes(),
        )?;
        host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&m)])?
            .expect(0, &format!("capability add {name}@{version} ({publisher})"))?;
        Ok(())
    };
    let remove = |what: &str| -> Result<(), Failure> {
        host.run(&["capability", "remove", what])?
            .expect(0, &format!("capability remove {what}"))?;
        Ok(())
    };
    let call = |token: &str, capability: &str| -> Result<u16, Failure> {
        let body = json!({"capability": capability, "function": "echo", "args": {"text": "x"}});
        let response = server.request(
            reqwest::Method::POST,
            "/v1/invoke",
            Some(token),
            Some(&body),
        )?;
        Ok(response.status)
    };
    add("grant", "1.0.0", "acme", GUEST_IMPORTS, crate::GUEST)?;
    let ann = token("user:ann", &["linkers"])?;
    let expect =
        |token: &str, capability: &str, allowed: bool, what: &str| -> Result<(), Failure> {
            // Warm the cache with the grant that links, then ask with the one part changed.
            let warm = call(&ann, "grant")?;
            ensure!(
                warm == 200,
                "user:ann (group linkers) must invoke grant@1.0.0 from acme: HTTP {warm}"
            );
            let status = call(token, capability)?;
            ensure!(
                (status == 200) == allowed && (allowed || status == 403),
                "{what}: the grant must be computed afresh and {}; HTTP {status}",
                if allowed {
                    "link"
                } else {
                    "refuse to link (403)"
                }
            );
            Ok(())
        };
    expect(
        &ann,
        "grant",
        true,
        "the same principal and capability again",
    )?;
    let bob = token("user:bob", &["linkers"])?;
    expect(
        &bob,
        "grant",
        false,
        "another principal id (user:bob, same groups)",
    )?;
    let agent = token("agent:ann", &["linkers"])?;
    expect(
        &agent,
        "grant",
        false,
        "another principal kind (agent:ann, same groups)",
    )?;
    let alone = token("user:ann", &[])?;
    expect(
        &alone,
        "grant",
        false,
        "other groups (user:ann in no group)",
    )?;
    // The same bytes under another name.
    add("grant2", "1.0.0", "acme", GUEST_IMPORTS, crate::GUEST)?;
    expect(
        &ann,
        "grant2",
        false,
        "the same component under another name",
    )?;
    // Other bytes, another version, another publisher, other requests: each reinstalled in
    // place of grant@1.0.0, then grant@1.0.0 restored.
    let restore =
        || -> Result<(), Failure> { add("grant", "1.0.0", "acme", GUEST_IMPORTS, crate::GUEST) };
    for (what, version, publisher, imports, bytes) in [
        (
            "another component digest",
            "1.0.0",
            "acme",
            GUEST_IMPORTS.to_owned(),
            other_bytes(),
        ),
        (
            "another version",
            "1.0.1",
            "acme",
            GUEST_IMPORTS.to_owned(),
            crate::GUEST.to_vec(),
        ),
        (
            "another publisher",
            "1.0.0",
            "acme-two",
            GUEST_IMPORTS.to_owned(),
            crate::GUEST.to_vec(),
        ),
        (
            "other manifest requests",
            "1.0.0",
            "acme",
            "imports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]"
                .to_owned(),
            crate::GUEST.to_vec(),
        ),
    ] {
        let warm = call(&ann, "grant")?;
        ensure!(warm == 200, "user:ann must invoke grant@1.0.0: HTTP {warm}");
        remove("grant")?;
        add("grant", version, publisher, &imports, &bytes)?;
        let status = call(&ann, "grant")?;
        ensure!(
            status == 403,
            "grant reinstalled with {what} must get a freshly computed grant, which the policy refuses (403); HTTP {status}"
        );
        remove("grant")?;
        restore()?;
    }
    // Another policy digest.
    expect(&ann, "grant", true, "grant@1.0.0 restored")?;
    host.policy(&format!("{policy}@id(\"no-link\")\nforbid (principal, action == FemtoClaw::Action::\"link\", resource) when {{ context.capability.name == \"grant\" }};\n"))?;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let status = call(&ann, "grant")?;
    ensure!(
        status == 403,
        "after the policy changed to forbid the link, the grant must be computed afresh (403); HTTP {status}"
    );
    host.policy(&policy)?;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let status = call(&ann, "grant")?;
    ensure!(
        status == 200,
        "after the policy changed back, grant must link again; HTTP {status}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 1: the exit-code table, on the command line and over HTTP.

/// Invokes `hello` only once per hour; `conformance.add` only once approved; `note` forbidden.
const CLASSES: &str = "@id(\"all\")\npermit (principal == FemtoClaw::User::\"local\", action, resource)\n  unless { action == FemtoClaw::Action::\"invoke\" && context has function && context.function == \"add\" };\n@approval(\"required\")\n@id(\"add-approved\")\npermit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource)\n  when { context has function && context.function == \"add\" };\n@id(\"no-note\")\nforbid (principal, action == FemtoClaw::Action::\"invoke\", resource)\n  when { context has function && context.function == \"note\" };\n";

const QUOTA: &str = "[[quotas.rules]]\nprincipal = \"*\"\ncapability = \"hello\"\ninvocations = 1\nper_ms = 3600000\n";

/// (what, capability, function, args, flags, HTTP members, exit code, class, status).
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Json,
    Vec<&'a str>,
    Json,
    i32,
    &'a str,
    u16,
);

fn failure_classes(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, CLASSES)?;
    super::write(&host.data.path().join("femtoclaw.toml"), QUOTA.as_bytes())?;
    // (what, function or capability, args, extra flags / HTTP members, exit code, class, status)
    let deep = "\u{1}probe:recurse:100000000";
    let table: Vec<Row> = vec![
        (
            "a value that does not fit its WIT type",
            "conformance",
            "echo",
            json!({"text": 5}),
            vec![],
            json!({}),
            2,
            "bad-arguments",
            400,
        ),
        (
            "an unknown function",
            "conformance",
            "no-such-function",
            json!({}),
            vec![],
            json!({}),
            3,
            "unknown",
            404,
        ),
        (
            "an exhausted fuel budget",
            "conformance",
            "spin",
            json!({}),
            vec!["--fuel", "1000000"],
            json!({"fuel": 1000000}),
            4,
            "fuel-exhausted",
            422,
        ),
        (
            "a trap",
            "conformance",
            "divide",
            json!({"a": 1, "b": 0}),
            vec![],
            json!({}),
            5,
            "trapped",
            422,
        ),
        (
            "a stack limit",
            "conformance",
            "echo",
            json!({"text": deep}),
            vec!["--fuel", "10000000000"],
            json!({"fuel": 10_000_000_000u64}),
            6,
            "limit",
            422,
        ),
        (
            "a forbidden invocation",
            "conformance",
            "note",
            json!({"message": "m"}),
            vec![],
            json!({}),
            7,
            "denied",
            403,
        ),
        (
            "a deadline",
            "conformance",
            "spin",
            json!({}),
            vec!["--fuel", "10000000000", "--deadline-ms", "300"],
            json!({"fuel": 10_000_000_000u64, "deadline_ms": 300}),
            11,
            "deadline",
            422,
        ),
        (
            "a call that needs approval",
            "conformance",
            "add",
            json!({"a": 1, "b": 2}),
            vec![],
            json!({}),
            13,
            "approval-pending",
            202,
        ),
    ];
    for (what, capability, function, args, flags, _, code, _, _) in &table {
        let text = args.to_string();
        let mut all = vec!["invoke", *capability, *function, "--args", text.as_str()];
        all.extend_from_slice(flags);
        let run = host.run(&all)?;
        ensure!(
            run.code == *code,
            "{what} must exit {code} on the command line: exit {}, stderr {}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    // A component changed on disk: exit 1, on a host of its own.
    let changed = guest_host(target, OPEN)?;
    let stored = changed
        .data
        .path()
        .join("capabilities")
        .join("conformance")
        .join("1.0.0")
        .join("component.wasm");
    let mut bytes = super::read(&stored)?;
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01;
    }
    super::write(&stored, &bytes)?;
    let run = changed.invoke("echo", &json!({"text": "x"}), &[])?;
    ensure!(
        run.code == 1,
        "a component changed on disk must exit 1 (other): exit {}, stderr {}",
        run.code,
        excerpt(&run.stderr)
    );
    // Over quota: the second hello.greet within the hour.
    let greet = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
    host.run(&greet)?
        .expect(0, "the first hello.greet under a quota of one")?;
    host.run(&greet)?
        .expect(12, "a hello.greet over its quota")?;
    // Integrity: a tampered export; cannot replay: an export whose component is missing.
    let export = host.files.path().join("ledger.export");
    host.ok(&["log", "export", &s(&export)])?;
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let elsewhere = target.host()?;
    let run = elsewhere.run(&["replay", &s(&export), "--key", &key])?;
    ensure!(
        run.code == 10,
        "replaying an export whose component this host lacks must exit 10 (cannot-replay): exit {}, stderr {}",
        run.code,
        excerpt(&run.stderr)
    );
    let mut bytes = super::read(&export)?;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    let tampered = host.file("tampered.export", &bytes)?;
    let run = elsewhere.run(&["log", "verify", &s(&tampered), "--key", &key])?;
    ensure!(
        run.code == 8,
        "verifying a tampered export must exit 8 (integrity): exit {}, stderr {}",
        run.code,
        excerpt(&run.stderr)
    );
    // Over HTTP: the class names and statuses of the same failures.
    if !target.owns_servers() {
        return Ok(());
    }
    let server = target.server(Some(CLASSES))?;
    let served = server
        .host
        .as_ref()
        .ok_or_else(|| failed("the suite's server has no data directory"))?;
    served.install()?;
    let mut names = std::collections::BTreeSet::new();
    for (what, capability, function, args, _, members, _, class, status) in &table {
        let mut body = json!({"capability": capability, "function": function, "args": args});
        if let (Some(b), Some(m)) = (body.as_object_mut(), members.as_object()) {
            for (k, v) in m {
                b.insert(k.clone(), v.clone());
            }
        }
        let response = server.post("/v1/invoke", &body)?;
        let got = response.json().unwrap_or(Json::Null);
        ensure!(
            response.status == *status && got["code"] == *class,
            "{what} must answer HTTP {status} with the class `{class}`: HTTP {}, {}",
            response.status,
            excerpt(&response.text)
        );
        names.insert(*class);
    }
    // A component changed on disk: `other`.
    let stored = served
        .data
        .path()
        .join("capabilities")
        .join("conformance")
        .join("1.0.0")
        .join("component.wasm");
    let mut bytes = super::read(&stored)?;
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01;
    }
    super::write(&stored, &bytes)?;
    let response = server.post(
        "/v1/invoke",
        &json!({"capability": "conformance", "function": "echo", "args": {"text": "x"}}),
    )?;
    let got = response.json().unwrap_or(Json::Null);
    ensure!(
        response.status == 500 && got["code"] == "other",
        "a component changed on disk must answer HTTP 500 with the class `other`: HTTP {}, {}",
        response.status,
        excerpt(&response.text)
    );
    names.insert("other");
    ensure!(
        names.len() == table.len() + 1,
        "one class per kind of failure: {names:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 14: the shapes of requests, as a policy written for any runtime sees them.

/// The first-party fetch component, as a recorded invocation exported it.
fn fetch_component(host: &Host) -> Result<Vec<u8>, Failure> {
    host.run(&[
        "invoke",
        "fetch",
        "get",
        "--args",
        r#"{"url":"http://127.0.0.1:9/"}"#,
    ])?
    .expect(0, "fetch.get")?;
    let export = host.files.path().join("fetch.export");
    host.ok(&["log", "export", &s(&export), "--with-components"])?;
    let bytes = super::read(&export)?;
    let digest = host
        .entries()?
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "invocation-start" && e["capability"] == "fetch")
        .and_then(|e| e["component_sha256"].as_str().map(str::to_owned))
        .ok_or_else(|| failed("the fetch invocation names no component digest"))?;
    let components = crate::format::Export::parse(&bytes)
        .map_err(|e| failed(format!("log export --with-components: {e}")))?
        .components
        .ok_or_else(|| failed("the export has no components section"))?;
    components
        .into_iter()
        .find(|(d, _)| super::hex(d) == digest)
        .map(|(_, w)| w)
        .ok_or_else(|| failed(format!("the export holds no component {digest}")))
}

/// `invoke NAME FUNCTION --args ARGS`.
fn invoke_as(
    host: &Host,
    name: &str,
    function: &str,
    args: &Json,
) -> Result<crate::target::Run, Failure> {
    let args = args.to_string();
    host.run(&["invoke", name, function, "--args", &args])
}

fn request_shapes(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let fetch = fetch_component(&host)?;
    let fetch_digest = super::hex(&super::sha256(&fetch));
    let guest_digest = super::hex(&super::sha256(crate::GUEST));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot listen: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let other = free_port()?;
    let wasm = host.file("shaped.wasm", &fetch)?;
    let manifest = format!(
        "name = \"shaped\"\nversion = \"2.1.0\"\npublisher = \"acme\"\nfuel = 500_000_000\n\n[requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\nhttp = [\"http://127.0.0.1:{port}\", \"http://127.0.0.1:{other}\"]\nsecrets = [\"tok\"]\n"
    );
    let manifest = host.file("shaped.toml", manifest.as_bytes())?;
    host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])?
        .expect(0, "capability add of the fetch component as shaped")?;
    install_as(
        &host,
        "keeper",
        &format!("{GUEST_IMPORTS}\nkv = [{{ namespace = \"conformance\", write = true }}]"),
    )?;
    // Every attribute of every shape, each policy naming exactly one request.
    let policy = format!(
        r#"@id("invoke-shaped")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"shaped")
  when {{ resource.name == "shaped" && resource.version == "2.1.0" && resource.publisher == "acme" && resource.digest == "{fetch_digest}" && context has function && context.function == "request" }};
@id("invoke-keeper")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"keeper")
  when {{ resource.digest == "{guest_digest}" && !(context has function && context.function == "echo") }};
@id("invoke-bare")
permit (principal in FemtoClaw::Group::"ops", action == FemtoClaw::Action::"invoke", resource)
  unless {{ context has function }};
@id("link-host")
permit (principal, action == FemtoClaw::Action::"link", resource)
  when {{ resource.package == "femtoclaw:host" && resource.version == "0.1.0" && !resource.baseline && (resource.name == "log" || resource.name == "http") && context.capability.publisher == "acme" }};
@id("link-baseline")
permit (principal, action == FemtoClaw::Action::"link", resource)
  when {{ resource.baseline && context.capability.version like "*.*.*" }};
@id("link-kv")
permit (principal, action == FemtoClaw::Action::"link", resource == FemtoClaw::Interface::"wasi:keyvalue/store@0.2.0-draft2")
  when {{ resource.package == "wasi:keyvalue" && resource.name == "store" && resource.version == "0.2.0-draft2" && context.capability.name == "keeper" }};
@id("http-port")
permit (principal, action == FemtoClaw::Action::"http.request", resource)
  when {{ resource.scheme == "http" && resource.host == "127.0.0.1" && (resource.port == {port} || resource.port == {other}) && context.capability.digest == "{fetch_digest}" }};
@id("connect-loopback")
permit (principal, action == FemtoClaw::Action::"net.connect", resource)
  when {{ resource.address.isLoopback() && resource.address.isInRange(ip("127.0.0.0/8")) && resource.kind == "loopback" && context.capability.name == "shaped" }};
@id("secret-to-port")
permit (principal, action == FemtoClaw::Action::"secret.use", resource == FemtoClaw::Secret::"tok")
  when {{ resource.name == "tok" && context.destination == FemtoClaw::HttpHost::"http://127.0.0.1:{port}" && context.destination.port == {port} && context.destination.scheme == "http" && context.destination.host == "127.0.0.1" && context.capability.name == "shaped" }};
@id("kv-read")
permit (principal, action == FemtoClaw::Action::"kv.read", resource == FemtoClaw::KvNamespace::"conformance")
  when {{ resource.name == "conformance" && context.capability.publisher == "acme" }};
"#
    );
    host.policy(&policy)?;
    super::set_secret(&host, "tok", "SHAPES-SECRET")?;
    // The peer answers each request and records what it received.
    let peer = Peer::on(listener, |_: &Seen| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_vec(),
        )
    })?;
    let call = |url: &str| -> Result<(Json, Vec<Json>), Failure> {
        let before = host.entries()?.len();
        let args = json!({"method": "GET", "url": url, "secret-headers": [{"name": "authorization", "secret": "tok", "prefix": "Bearer "}]}).to_string();
        let run = host.run(&["invoke", "shaped", "request", "--args", &args])?;
        run.expect(0, &format!("shaped.request {url}"))?;
        let decided = entries_from(&host, before)?
            .into_iter()
            .filter(|e| e["entry"]["type"] == "decision")
            .map(|e| e["entry"].clone())
            .collect();
        Ok((run.json()?, decided))
    };
    let url = format!("http://127.0.0.1:{port}/");
    let (got, decided) = call(&url)?;
    let seen = peer
        .seen()
        .first()
        .map(|r| String::from_utf8_lossy(&r.bytes).into_owned())
        .unwrap_or_default();
    let by =
        |action: &str| -> Vec<&Json> { decided.iter().filter(|e| e["action"] == action).collect() };
    let ids = |action: &str| -> Vec<Json> {
        by(action).iter().map(|e| e["policy_ids"].clone()).collect()
    };
    for (action, id) in [
        ("invoke", "invoke-shaped"),
        ("http.request", "http-port"),
        ("net.connect", "connect-loopback"),
        ("secret.use", "secret-to-port"),
    ] {
        ensure!(
            !by(action).is_empty()
                && by(action)
                    .iter()
                    .all(|e| e["allowed"] == true && e["policy_ids"] == json!([id])),
            "the {action} request of shaped.request {url} must be allowed by `{id}` alone, a policy written on specification 14's shapes; recorded {:?} (the call answered {got})",
            ids(action)
        );
    }
    ensure!(
        got["ok"].is_object() && seen.contains("Bearer SHAPES-SECRET"),
        "shaped.request {url} must be sent with the secret: it answered {got}; the peer saw {:?}",
        excerpt(&seen)
    );
    // The same secret towards another port of the same host: the destination decides.
    let url = format!("http://127.0.0.1:{other}/");
    let (got, decided) = call(&url)?;
    let refused: Vec<&Json> = decided
        .iter()
        .filter(|e| e["action"] == "secret.use")
        .collect();
    ensure!(
        got["err"].is_string()
            && refused.len() == 1
            && refused[0]["allowed"] == false
            && refused[0]["resource"] == format!("tok@http://127.0.0.1:{other}"),
        "the secret sent to http://127.0.0.1:{other} must be denied, its destination being that origin: it answered {got}; recorded {refused:?}"
    );
    // Link and key-value shapes: keeper links its host and baseline imports and reads.
    let before = host.entries()?.len();
    let run = invoke_as(&host, "keeper", "recall", &json!({"key": "k"}))?;
    run.expect(0, "keeper.recall")?;
    let result = run.json()?;
    let decided: Vec<Json> = entries_from(&host, before)?
        .into_iter()
        .filter(|e| e["entry"]["type"] == "decision")
        .map(|e| e["entry"].clone())
        .collect();
    ensure!(
        result.get("ok").is_some()
            && decided.iter().any(|e| e["action"] == "kv.read"
                && e["allowed"] == true
                && e["policy_ids"] == json!(["kv-read"])),
        "keeper.recall must link and read by `kv-read`: it answered {result}; recorded {decided:?}"
    );
    let explained = host.run(&[
        "policy",
        "explain",
        "--json",
        "--capability",
        "keeper",
        "--function",
        "recall",
    ])?;
    explained.expect(0, "policy explain keeper")?;
    let explained = explained.json()?;
    for import in explained["imports"].as_array().into_iter().flatten() {
        let interface = import["interface"].as_str().unwrap_or("");
        let want = if interface == "femtoclaw:host/log@0.1.0" {
            json!(["link-host"])
        } else if interface.starts_with("femtoclaw:host/") {
            json!([])
        } else if interface.starts_with("wasi:keyvalue/") {
            json!(["link-kv"])
        } else {
            json!(["link-baseline"])
        };
        let linked = want != json!([]);
        ensure!(
            import["linked"] == linked && import["decision"]["policy_ids"] == want,
            "keeper's import {interface} must be decided by {want} (the Interface shape: package, name, version, baseline; the capability as context.capability): {import}"
        );
    }
    // The principal and its groups; an invocation without a function carries none.
    let explain = |extra: &[&str]| -> Result<Json, Failure> {
        let mut args = vec![
            "policy",
            "explain",
            "--json",
            "--capability",
            "hello",
            "--principal",
            "agent:robot",
        ];
        args.extend_from_slice(extra);
        let run = host.run(&args)?;
        run.expect(0, &args.join(" "))?;
        run.json()
    };
    let bare = explain(&["--group", "ops"])?;
    let named = explain(&["--group", "ops", "--function", "greet"])?;
    let outsider = explain(&["--group", "dev"])?;
    ensure!(
        bare["invoke"]["policy_ids"] == json!(["invoke-bare"])
            && named["invoke"]["allowed"] == false
            && outsider["invoke"]["allowed"] == false,
        "a member of group ops may invoke without a function (no context.function), not with one, and a member of dev not at all: {}, {}, {}",
        bare["invoke"],
        named["invoke"],
        outsider["invoke"]
    );
    let echo = invoke_as(&host, "keeper", "echo", &json!({"text": "x"}))?;
    ensure!(
        echo.code == 7,
        "keeper.echo is excluded by context.function: it must be denied (exit 7); exit {}",
        echo.code
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 17: secrets are covered by their exact name.

fn secret_names_exact(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let fetch = fetch_component(&host)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot listen: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let wasm = host.file("secretive.wasm", &fetch)?;
    for (name, secrets) in [
        ("near", "[\"to\", \"tok2\", \"TOK\", \"xtok\"]"),
        ("exact", "[\"tok\"]"),
    ] {
        let manifest = format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\npublisher = \"acme\"\nfuel = 500_000_000\n\n[requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\nhttp = [\"http://127.0.0.1:{port}\"]\nsecrets = {secrets}\n"
        );
        let m = host.file(&format!("{name}.toml"), manifest.as_bytes())?;
        host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&m)])?
            .expect(
                0,
                &format!("capability add of the fetch component as {name}"),
            )?;
    }
    super::set_secret(&host, "tok", "EXACT-SECRET")?;
    let peer = Peer::on(listener, |_: &Seen| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_vec(),
        )
    })?;
    let call = |name: &str| -> Result<(Json, Vec<Decided>), Failure> {
        let before = host.entries()?.len();
        let args = json!({"method": "GET", "url": format!("http://127.0.0.1:{port}/"), "secret-headers": [{"name": "authorization", "secret": "tok", "prefix": "Bearer "}]}).to_string();
        let run = host.run(&["invoke", name, "request", "--args", &args])?;
        run.expect(0, &format!("{name}.request"))?;
        Ok((run.json()?, decisions_from(&host, before)?))
    };
    let (near, near_decided) = call("near")?;
    let (exact, exact_decided) = call("exact")?;
    let seen: Vec<String> = peer
        .seen()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.bytes).into_owned())
        .collect();
    let uses = |d: &[Decided]| -> Vec<Decided> {
        d.iter().filter(|d| d.0 == "secret.use").cloned().collect()
    };
    let resource = format!("tok@http://127.0.0.1:{port}");
    ensure!(
        near["err"].is_string()
            && uses(&near_decided) == vec![("secret.use".to_owned(), resource.clone(), false)],
        "a manifest requesting the secrets to, tok2, TOK and xtok does not cover the secret tok: its use must be denied even under a policy permitting everything; it answered {near}, recorded {near_decided:?}"
    );
    ensure!(
        exact["ok"].is_object()
            && uses(&exact_decided) == vec![("secret.use".to_owned(), resource.clone(), true)],
        "a manifest requesting the secret tok covers it: its use must be allowed under a policy permitting everything; it answered {exact}, recorded {exact_decided:?}"
    );
    ensure!(
        seen.iter().filter(|r| r.contains("EXACT-SECRET")).count() == 1
            && seen.last().is_some_and(|r| r.contains("EXACT-SECRET")),
        "the secret must reach the server once, from the capability whose manifest names it exactly; the server saw {} requests, {} with the secret",
        seen.len(),
        seen.iter().filter(|r| r.contains("EXACT-SECRET")).count()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 16: a malformed scope entry covers nothing.

fn malformed_entries_cover_nothing(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let fetch = fetch_component(&host)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot listen: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    listener
        .set_nonblocking(true)
        .map_err(|e| failed(e.to_string()))?;
    let six = std::net::TcpListener::bind(format!("[::1]:{port}"))
        .map_err(|e| failed(format!("cannot listen on [::1]:{port}: {e}")))?;
    six.set_nonblocking(true)
        .map_err(|e| failed(e.to_string()))?;
    // Each malformed spelling of the origin the call goes to: one a lenient reading covers.
    let entries = [
        format!("http://127.0.0.1:{port}/path"),
        format!("http://127.0.0.1:{port}?q=1"),
        format!("http://user@127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}#f"),
        format!("http://::1:{port}"),
        format!("http://127.0.0.1:{port}:{port}"),
    ];
    let wasm = host.file("malformed.wasm", &fetch)?;
    let manifest = |http: &str| {
        format!(
            "name = \"malformed\"\nversion = \"1.0.0\"\npublisher = \"acme\"\nfuel = 500_000_000\n\n[requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\nhttp = [{http}]\n"
        )
    };
    // Each refused at install, by a fresh catalog.
    for (i, entry) in entries.iter().enumerate() {
        // Named apart, so that only the entry can put `malformed` in the refusal.
        let text =
            manifest(&format!("{entry:?}")).replace("\"malformed\"", &format!("\"entry{i}\""));
        let m = host.file(&format!("entry{i}.toml"), text.as_bytes())?;
        let run = host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&m)])?;
        ensure!(
            run.code == 2
                && run.stderr.contains("malformed")
                && run.stderr.contains(entry.as_str()),
            "capability add of a manifest requesting the malformed origin {entry} must be refused with exit 2 naming it as malformed: exit {}, stderr {}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    // Installed with a good entry, then the stored manifest holding only the malformed ones
    // (its recorded digest updated): nothing covers the call.
    let m = host.file("good.toml", manifest("\"http://127.0.0.1:1\"").as_bytes())?;
    host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&m)])?
        .expect(0, "capability add of the fetch component as malformed")?;
    let dir = host
        .data
        .path()
        .join("capabilities")
        .join("malformed")
        .join("1.0.0");
    let list = entries
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let stored = manifest(&list);
    super::write(&dir.join("capability.toml"), stored.as_bytes())?;
    super::write(
        &dir.join("manifest.sha256"),
        format!("{}\n", super::hex(&super::sha256(stored.as_bytes()))).as_bytes(),
    )?;
    let before = host.entries()?.len();
    let url = format!("http://127.0.0.1:{port}/");
    let args = json!({"url": url}).to_string();
    let run = host.run(&["invoke", "malformed", "get", "--args", &args])?;
    let decided = decisions_from(&host, before)?;
    let answered = run.json().ok();
    let refused = run.code != 0 || answered.as_ref().is_some_and(|a| a["err"].is_string());
    ensure!(
        refused && !decided.iter().any(|d| d.0 == "http.request" && d.2),
        "with only malformed http entries in its manifest, malformed.get {url} must be covered by none of them: exit {}, answer {}, stderr {}, decisions {decided:?}",
        run.code,
        excerpt(&run.stdout),
        excerpt(&run.stderr)
    );
    ensure!(
        listener.accept().is_err(),
        "a malformed manifest entry let a connection reach 127.0.0.1:{port}"
    );
    let url = format!("http://[::1]:{port}/");
    let before = host.entries()?.len();
    let args = json!({"url": url}).to_string();
    let run = host.run(&["invoke", "malformed", "get", "--args", &args])?;
    let decided = decisions_from(&host, before)?;
    ensure!(
        !decided.iter().any(|d| d.0 == "http.request" && d.2) && six.accept().is_err(),
        "with only malformed http entries in its manifest, malformed.get {url} must be covered by none of them: exit {}, answer {}, decisions {decided:?}",
        run.code,
        excerpt(&run.stdout)
    );
    Ok(())
}
