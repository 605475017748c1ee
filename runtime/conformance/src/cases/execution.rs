//! Cases of the execution area: the command line's invocation and packaging surfaces, the
//! authority checks and the ledger entries they leave, the host-call gate, limits and metering,
//! value encoding, the compile cache and replay (specifications 1–7 and 10–13).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::{OPEN, guest_host, kinds};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, GUEST, GUEST_MANIFEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.invoke.json-report",
        verifies: &[
            "FC-CORE-0102",
            "FC-CORE-0313",
            "FC-CORE-0304",
            "FC-CAP-1201",
        ],
        run: invoke_json_report,
    },
    Case {
        name: "cli.invoke.args-sources",
        verifies: &["FC-CORE-0103"],
        run: invoke_args_sources,
    },
    Case {
        name: "cli.capability.add-with-and-without-manifest",
        verifies: &["FC-CORE-0104", "FC-CAP-1101", "FC-CAP-1102"],
        run: capability_add_with_and_without_manifest,
    },
    Case {
        name: "cli.capability.list-order-and-versions",
        verifies: &[
            "FC-CORE-0105",
            "FC-CAP-1009",
            "FC-CAP-1015",
            "FC-CAP-1019",
            "FC-CAP-1103",
        ],
        run: capability_list_order_and_versions,
    },
    Case {
        name: "cli.capability.changed-after-add",
        verifies: &["FC-CORE-0106", "FC-CORE-0212", "FC-CAP-1112", "FC-CAP-1113"],
        run: capability_changed_after_add,
    },
    Case {
        name: "cli.capability.reserved-publisher",
        verifies: &["FC-CORE-0213", "FC-CAP-1111"],
        run: capability_reserved_publisher,
    },
    Case {
        name: "cli.capability.refused-packages",
        verifies: &[
            "FC-CAP-1001",
            "FC-CAP-1002",
            "FC-EXEC-0414",
            "FC-CAP-1109",
            "FC-CAP-1110",
            "FC-CAP-1118",
            "FC-EXEC-0615",
        ],
        run: capability_refused_packages,
    },
    Case {
        name: "cli.capability.same-name-and-version",
        verifies: &["FC-CAP-1107"],
        run: capability_same_name_and_version,
    },
    Case {
        name: "cli.authority.refused-invocation-recorded",
        verifies: &["FC-CORE-0202", "FC-CORE-0311"],
        run: refused_invocation_recorded,
    },
    Case {
        name: "cli.authority.policy-reread-and-recorded",
        verifies: &["FC-CORE-0210"],
        run: policy_reread_and_recorded,
    },
    Case {
        name: "cli.invoke.start-entry",
        verifies: &["FC-CORE-0302", "FC-CAP-1115", "FC-EXEC-0401"],
        run: invoke_start_entry,
    },
    Case {
        name: "cli.gate.host-calls-recorded",
        verifies: &[
            "FC-CORE-0216",
            "FC-CORE-0303",
            "FC-CAP-1204",
            "FC-SEC-1303",
            "FC-SEC-1304",
            "FC-SEC-1305",
            "FC-EXEC-0717",
        ],
        run: host_calls_recorded,
    },
    Case {
        name: "cli.gate.denied-calls-are-errors-without-effect",
        verifies: &[
            "FC-CORE-0207",
            "FC-SEC-1306",
            "FC-SEC-1309",
            "FC-CAP-1215",
            "FC-CAP-1216",
            "FC-CAP-1219",
            "FC-CAP-1222",
        ],
        run: denied_calls_are_errors_without_effect,
    },
    Case {
        name: "cli.gate.fuel-per-recorded-byte",
        verifies: &["FC-EXEC-0605", "FC-SEC-1312"],
        run: fuel_per_recorded_byte,
    },
    Case {
        name: "cli.kv.trapped-writes-not-applied",
        verifies: &["FC-CAP-1207", "FC-CAP-1208", "FC-CORE-0211"],
        run: trapped_writes_not_applied,
    },
    Case {
        name: "cli.limits.fuel-budget-and-ceiling",
        verifies: &[
            "FC-EXEC-0602",
            "FC-EXEC-0603",
            "FC-EXEC-0604",
            "FC-EXEC-0417",
            "FC-CAP-1114",
        ],
        run: fuel_budget_and_ceiling,
    },
    Case {
        name: "cli.limits.recorded-bytes-cap",
        verifies: &["FC-EXEC-0606", "FC-SEC-1313", "FC-SEC-1318"],
        run: recorded_bytes_cap,
    },
    Case {
        name: "cli.gate.host-fault-traps-and-replays",
        verifies: &["FC-SEC-1307", "FC-EXEC-0511"],
        run: host_fault_traps_and_replays,
    },
    Case {
        name: "cli.limits.memory",
        verifies: &["FC-EXEC-0610"],
        run: memory_limit,
    },
    Case {
        name: "cli.limits.deadline-configured",
        verifies: &["FC-EXEC-0607"],
        run: deadline_configured,
    },
    Case {
        name: "cli.config.limit-keys",
        verifies: &["FC-EXEC-0617", "FC-EXEC-0618", "FC-EXEC-0619"],
        run: config_limit_keys,
    },
    Case {
        name: "cli.invoke.exit-codes",
        verifies: &["FC-CORE-0114", "FC-CORE-0116"],
        run: invoke_exit_codes,
    },
    Case {
        name: "cli.quota.refusal-recorded",
        verifies: &["FC-CORE-0121", "FC-CORE-0217"],
        run: quota_refusal_recorded,
    },
    Case {
        name: "cli.approval.bound-to-the-call",
        verifies: &[
            "FC-CORE-0122",
            "FC-CORE-0307",
            "FC-CORE-0308",
            "FC-CORE-0312",
        ],
        run: approval_bound_to_the_call,
    },
    Case {
        name: "cli.replay.from-the-recording-only",
        verifies: &["FC-EXEC-0508", "FC-EXEC-0512", "FC-SEC-1308"],
        run: replay_from_the_recording_only,
    },
    Case {
        name: "cli.replay.interrupted-and-unbounded",
        verifies: &["FC-EXEC-0514", "FC-EXEC-0515"],
        run: replay_interrupted_and_unbounded,
    },
    Case {
        name: "cli.exec.same-invocation-same-record",
        verifies: &[
            "FC-EXEC-0406",
            "FC-EXEC-0501",
            "FC-CORE-0309",
            "FC-EXEC-0520",
        ],
        run: same_invocation_same_record,
    },
    Case {
        name: "cli.capability.inspect",
        verifies: &[
            "FC-CAP-1005",
            "FC-CAP-1007",
            "FC-CAP-1010",
            "FC-CAP-1018",
            "FC-CAP-1106",
            "FC-EXEC-0712",
        ],
        run: capability_inspect,
    },
    Case {
        name: "cli.capability.docs-section",
        verifies: &["FC-EXEC-0408", "FC-CAP-1006"],
        run: capability_docs_section,
    },
    Case {
        name: "cli.exec.unknown-function-lists-exports",
        verifies: &["FC-EXEC-0416", "FC-CAP-1004"],
        run: unknown_function_lists_exports,
    },
    Case {
        name: "cli.values.json-conversion",
        verifies: &[
            "FC-EXEC-0702",
            "FC-EXEC-0708",
            "FC-EXEC-0709",
            "FC-EXEC-0710",
        ],
        run: values_json_conversion,
    },
    Case {
        name: "cli.engine.compile-cache",
        verifies: &[
            "FC-EXEC-0405",
            "FC-EXEC-0412",
            "FC-EXEC-0413",
            "FC-EXEC-0418",
        ],
        run: compile_cache,
    },
    Case {
        name: "http.capability.admin-channel",
        verifies: &["FC-CORE-0108", "FC-CORE-0111", "FC-CAP-1104", "FC-CAP-1105"],
        run: admin_channel,
    },
    Case {
        name: "cli.remote.same-exit-codes",
        verifies: &["FC-CORE-0109"],
        run: remote_same_exit_codes,
    },
    Case {
        name: "http.authority.policy-reread",
        verifies: &["FC-CORE-0107"],
        run: http_policy_reread,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Runs a command of `host` with extra environment variables and, when given, `stdin`.
fn run_with(
    host: &Host,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Result<Run, Failure> {
    let mut command = host.command(args);
    command.envs(env.iter().copied());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot run {}: {e}", args.join(" "))))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes)
            .map_err(|e| Failure::Failed(format!("cannot write stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Failure::Failed(format!("cannot wait for {}: {e}", args.join(" "))))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Writes the operator's configuration file `<data dir>/femtoclaw.toml`; its path.
fn write_config(host: &Host, text: &str) -> Result<PathBuf, Failure> {
    let path = host.data.path().join("femtoclaw.toml");
    std::fs::write(&path, text)
        .map_err(|e| Failure::Failed(format!("cannot write the configuration: {e}")))?;
    Ok(path)
}

/// The entries of invocation `n`, in ledger order.
fn of_invocation(entries: &[Json], n: u64) -> Vec<&Json> {
    entries
        .iter()
        .filter(|e| e["entry"]["invocation"].as_u64() == Some(n))
        .collect()
}

/// The invocation number of the last `invocation-start`.
fn last_invocation(entries: &[Json]) -> Result<u64, Failure> {
    entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .and_then(|e| e["entry"]["invocation"].as_u64())
        .ok_or_else(|| Failure::Failed("the ledger holds no invocation-start".into()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Installs `wasm` (written as `file`) with `manifest` (none: without `--manifest`).
pub(super) fn add(
    host: &Host,
    file: &str,
    wasm: &[u8],
    manifest: Option<&str>,
) -> Result<Run, Failure> {
    let wasm = host.file(file, wasm)?;
    match manifest {
        Some(text) => {
            let manifest = host.file(&format!("{file}.toml"), text.as_bytes())?;
            host.run(&[
                "capability",
                "add",
                &lossy(&wasm),
                "--manifest",
                &lossy(&manifest),
            ])
        }
        None => host.run(&["capability", "add", &lossy(&wasm)]),
    }
}

/// The suite guest's manifest under another name and version.
fn manifest_as(name: &str, version: &str) -> String {
    GUEST_MANIFEST
        .replace("name = \"conformance\"", &format!("name = \"{name}\""))
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
}

/// A failed command: the exit code, nothing on stdout and one `error: ` line on stderr.
fn failed(run: &Run, code: i32, what: &str) -> Result<(), Failure> {
    run.expect(code, what)?;
    ensure!(
        run.stdout.trim().is_empty(),
        "{what}: a failed command printed on stdout: {}",
        excerpt(&run.stdout)
    );
    ensure!(
        run.stderr.lines().count() == 1 && run.stderr.starts_with("error: "),
        "{what}: the failure is not one stderr line beginning `error: `: {}",
        excerpt(&run.stderr)
    );
    Ok(())
}

/// Fails unless `run`'s stderr contains every one of `needles`.
fn names(run: &Run, what: &str, needles: &[&str]) -> Result<(), Failure> {
    for needle in needles {
        ensure!(
            run.stderr.contains(needle),
            "{what}: the message does not contain {needle:?}: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

/// The capability list's `(name, version, source)` triples.
fn listed(host: &Host) -> Result<Vec<(String, String, String)>, Failure> {
    let run = host.run(&["capability", "list", "--json"])?;
    run.expect(0, "capability list --json")?;
    let list = run.json()?;
    let list = list.as_array().ok_or_else(|| {
        Failure::Failed(format!("capability list --json is not an array: {list}"))
    })?;
    Ok(list
        .iter()
        .map(|c| {
            (
                c["manifest"]["name"].as_str().unwrap_or("?").to_owned(),
                c["manifest"]["version"].as_str().unwrap_or("?").to_owned(),
                c["source"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect())
}

/// The embedded capabilities, in their fixed order.
const EMBEDDED: [&str; 5] = ["fetch", "hello", "textstats", "memory", "files"];

/// The guest with one custom section `name` holding `payload` appended: the same code, other
/// bytes.
fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = leb(name.len() as u64);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    out.extend(leb(content.len() as u64));
    out.extend(content);
    out
}

fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Reads an unsigned LEB128 at `at`; the value and the position after it.
fn read_leb(bytes: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The guest's top-level sections: `(id, start of the section, end of it, custom name)`.
fn sections(wasm: &[u8]) -> Option<Vec<(u8, usize, usize, String)>> {
    let mut out = Vec::new();
    let mut at = 8;
    while at < wasm.len() {
        let start = at;
        let id = wasm[at];
        let (size, body) = read_leb(wasm, at + 1)?;
        let end = body.checked_add(usize::try_from(size).ok()?)?;
        if end > wasm.len() {
            return None;
        }
        let name = if id == 0 {
            let (len, name_at) = read_leb(wasm, body)?;
            let name_end = name_at + usize::try_from(len).ok()?;
            String::from_utf8_lossy(wasm.get(name_at..name_end)?).into_owned()
        } else {
            String::new()
        };
        out.push((id, start, end, name));
        at = end;
    }
    Some(out)
}

/// `wasm` (a component or a core module) with its custom section `name` removed, or its payload
/// replaced, wherever it is: at the top level or inside a nested core module or component.
fn replace_custom_section(wasm: &[u8], name: &str, payload: Option<&[u8]>) -> Option<Vec<u8>> {
    let component = wasm.get(4..8)? == [0x0d, 0x00, 0x01, 0x00];
    let mut out = wasm[..8].to_vec();
    let mut found = false;
    for (id, start, end, section) in sections(wasm)? {
        let (_, body) = read_leb(wasm, start + 1)?;
        let content = &wasm[body..end];
        if !found && id == 0 && section == name {
            found = true;
            if let Some(payload) = payload {
                let mut content = leb(name.len() as u64);
                content.extend_from_slice(name.as_bytes());
                content.extend_from_slice(payload);
                out.push(0);
                out.extend(leb(content.len() as u64));
                out.extend(content);
            }
            continue;
        }
        if !found
            && component
            && (id == 1 || id == 4)
            && let Some(edited) = replace_custom_section(content, name, payload)
        {
            found = true;
            out.push(id);
            out.extend(leb(edited.len() as u64));
            out.extend(edited);
            continue;
        }
        out.extend_from_slice(&wasm[start..end]);
    }
    found.then_some(out)
}

// ---------------------------------------------------------------------------------------------
// Invocation on the command line.

fn invoke_json_report(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let message = "conformance-note";
    let run = host.invoke("note", &json!({ "message": message }), &["--json"])?;
    run.expect(0, "invoke note --json")?;
    let report = run.json()?;
    ensure!(
        report.is_object() && report["result"] == json!(message.len()),
        "invoke --json must print one object whose result is {}: {}",
        message.len(),
        excerpt(&run.stdout)
    );
    let budget = report["fuel"]["budget"].as_u64();
    let consumed = report["fuel"]["consumed"].as_u64();
    ensure!(
        budget.is_some() && consumed.is_some_and(|c| c > 0),
        "--json has no fuel.budget and fuel.consumed: {report}"
    );
    ensure!(
        report["stdout"].is_string() && report["stderr"].is_string(),
        "--json has no captured stdout and stderr: {report}"
    );
    ensure!(
        report["logs"] == json!([{ "level": "info", "message": message }]),
        "--json must return the guest's log with the outcome as [{{level: info, message}}]; it has {}",
        report["logs"]
    );
    let indexes: Vec<u64> = report["receipt"]["indexes"]
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_u64).collect())
        .unwrap_or_default();
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        report["receipt"]["invocation"].as_u64() == Some(n),
        "the receipt names invocation {} where the ledger's is {n}",
        report["receipt"]["invocation"]
    );
    let own = of_invocation(&entries, n);
    let expected: Vec<u64> = own.iter().filter_map(|e| e["index"].as_u64()).collect();
    ensure!(
        indexes == expected,
        "the receipt's indexes {indexes:?} are not those of the invocation's entries {expected:?}"
    );
    ensure!(
        own.first()
            .is_some_and(|e| e["entry"]["type"] == "invocation-start")
            && own
                .last()
                .is_some_and(|e| e["entry"]["type"] == "invocation-end"),
        "the receipt's first index is not the start or its last not the end: {:?}",
        own.iter().map(|e| &e["entry"]["type"]).collect::<Vec<_>>()
    );
    let end = own
        .last()
        .map(|e| &e["entry"])
        .cloned()
        .unwrap_or(Json::Null);
    ensure!(
        end["fuel_consumed"].as_u64() == consumed,
        "the invocation-end records fuel consumed {} where the caller was told {consumed:?}",
        end["fuel_consumed"]
    );
    // The log call passed the gate: recorded with its level as an enum and its message.
    ensure!(
        own.iter().any(|e| {
            let e = &e["entry"];
            e["type"] == "host-call"
                && e["interface"] == "femtoclaw:host/log@0.1.0"
                && e["function"] == "log"
                && e["params"] == json!({ "tuple": [{ "enum": "info" }, { "string": message }] })
        }),
        "the log call is not recorded as a host call with params (enum info, string message)"
    );
    // Never printed by the host: a plain invocation prints the result only.
    let run = host.invoke("note", &json!({ "message": message }), &[])?;
    run.expect(0, "invoke note")?;
    ensure!(
        run.stdout.trim() == message.len().to_string() && !run.stderr.contains(message),
        "the host printed the guest's log message: stdout {:?}, stderr {:?}",
        excerpt(&run.stdout),
        excerpt(&run.stderr)
    );
    Ok(())
}

fn invoke_args_sources(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let args = json!({ "text": "from somewhere" });
    let inline = host.invoke("echo", &args, &[])?;
    inline.expect(0, "--args inline")?;
    let file = host.file("args.json", args.to_string().as_bytes())?;
    let at_file = format!("@{}", lossy(&file));
    let from_file = host.run(&["invoke", "conformance", "echo", "--args", &at_file])?;
    from_file.expect(0, "--args @FILE")?;
    let from_stdin = run_with(
        &host,
        &["invoke", "conformance", "echo", "--args", "-"],
        &[],
        Some(args.to_string().as_bytes()),
    )?;
    from_stdin.expect(0, "--args - (stdin)")?;
    for (run, what) in [
        (&inline, "inline"),
        (&from_file, "@FILE"),
        (&from_stdin, "stdin"),
    ] {
        ensure!(
            run.json()? == json!("from somewhere"),
            "--args {what} gave {}",
            excerpt(&run.stdout)
        );
    }
    let missing = host.files.path().join("no-such-args.json");
    let run = host.run(&[
        "invoke",
        "conformance",
        "echo",
        "--args",
        &format!("@{}", lossy(&missing)),
    ])?;
    failed(&run, 2, "--args @FILE of a missing file")?;
    names(
        &run,
        "--args @FILE of a missing file",
        &["no-such-args.json"],
    )?;
    let bad = host.file("not-json.txt", b"{ this is not JSON")?;
    let run = host.run(&[
        "invoke",
        "conformance",
        "echo",
        "--args",
        &format!("@{}", lossy(&bad)),
    ])?;
    failed(&run, 2, "--args @FILE of a file that is not JSON")?;
    names(
        &run,
        "--args @FILE of a file that is not JSON",
        &["not-json.txt"],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Packages.

fn capability_add_with_and_without_manifest(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let digest = sha256_hex(GUEST);
    let run = add(&host, "Suite_Guest.wasm", GUEST, None)?;
    run.expect(0, "capability add without --manifest")?;
    ensure!(
        run.stdout.trim() == format!("suite-guest 0.0.0 sha256:{digest}"),
        "capability add Suite_Guest.wasm must print `suite-guest 0.0.0 sha256:{digest}`; it printed {:?}",
        run.stdout.trim()
    );
    let run = add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?;
    run.expect(0, "capability add --manifest")?;
    ensure!(
        run.stdout.trim() == format!("conformance 1.0.0 sha256:{digest}"),
        "capability add with the manifest must print `conformance 1.0.0 sha256:{digest}`; it printed {:?}",
        run.stdout.trim()
    );
    let list = listed(&host)?;
    for (name, version) in [("suite-guest", "0.0.0"), ("conformance", "1.0.0")] {
        ensure!(
            list.iter()
                .any(|(n, v, s)| n == name && v == version && s == "installed"),
            "capability list does not list the installed {name} {version}: {list:?}"
        );
    }
    let run = host.invoke("echo", &json!({ "text": "installed" }), &[])?;
    run.expect(0, "invoke of the installed capability")?;
    ensure!(
        run.json()? == json!("installed"),
        "the installed capability answered {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn capability_list_order_and_versions(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for (name, version) in [
        ("conformance", "1.9.0"),
        ("conformance", "1.10.0"),
        ("conformance", "1.2.0"),
        ("alpha-guest", "1.0.0"),
    ] {
        add(
            &host,
            &format!("{name}-{version}.wasm"),
            GUEST,
            Some(&manifest_as(name, version)),
        )?
        .expect(0, &format!("capability add {name} {version}"))?;
    }
    let run = host.run(&["capability", "list", "--json"])?;
    run.expect(0, "capability list --json")?;
    let list = run.json()?;
    let list = list.as_array().cloned().unwrap_or_default();
    let order: Vec<(String, String)> = list
        .iter()
        .map(|c| {
            (
                c["manifest"]["name"].as_str().unwrap_or("?").to_owned(),
                c["manifest"]["version"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        names.len() == 9 && names[..5] == EMBEDDED,
        "capability list must begin with the embedded {EMBEDDED:?} in that order, then the four installed; it lists {order:?}"
    );
    let installed: Vec<(&str, &str)> = order[5..]
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    ensure!(
        installed
            == [
                ("alpha-guest", "1.0.0"),
                ("conformance", "1.2.0"),
                ("conformance", "1.9.0"),
                ("conformance", "1.10.0"),
            ],
        "the installed capabilities are not listed by name and version (1.10.0 after 1.9.0): {installed:?}"
    );
    let digest = sha256_hex(GUEST);
    for (i, c) in list.iter().enumerate() {
        let source = if i < 5 { "embedded" } else { "installed" };
        ensure!(
            c["manifest"]["fuel"].is_u64() && c["manifest"]["requests"].is_object(),
            "entry {i} does not carry its manifest: {c}"
        );
        ensure!(
            c["source"] == source,
            "entry {i} has source {} where {source} is required",
            c["source"]
        );
        let hex = |v: &Json| {
            v.as_str()
                .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        ensure!(
            hex(&c["sha256"]) && hex(&c["manifest_sha256"]),
            "entry {i} has no sha256 and manifest_sha256: {c}"
        );
        if i >= 5 {
            ensure!(
                c["sha256"] == digest.as_str(),
                "installed entry {i} has sha256 {} where the component's is {digest}",
                c["sha256"]
            );
        }
    }
    // `name` selects the highest version, `name@version` exactly that one.
    for (spec, version) in [
        ("conformance", "1.10.0"),
        ("conformance@1.2.0", "1.2.0"),
        ("conformance@1.9.0", "1.9.0"),
    ] {
        host.run(&["invoke", spec, "echo", "--args", r#"{"text":"v"}"#])?
            .expect(0, &format!("invoke {spec}"))?;
        let entries = host.entries()?;
        let n = last_invocation(&entries)?;
        let ran = of_invocation(&entries, n)
            .first()
            .map(|e| e["entry"]["version"].clone())
            .unwrap_or(Json::Null);
        ensure!(
            ran == version,
            "invoke {spec} ran version {ran} where {version} is required"
        );
    }
    Ok(())
}

/// The installed package's directory (specification 11's layout).
fn package_dir(host: &Host, name: &str, version: &str) -> PathBuf {
    host.data
        .path()
        .join("capabilities")
        .join(name)
        .join(version)
}

fn capability_changed_after_add(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let dir = package_dir(&host, "conformance", "1.0.0");
    for (file, what) in [
        ("component.wasm", "component"),
        ("capability.toml", "manifest"),
    ] {
        let path = dir.join(file);
        let original = std::fs::read(&path).map_err(|e| {
            Failure::Failed(format!(
                "the installed package has no {}: {e}",
                path.display()
            ))
        })?;
        host.invoke("echo", &json!({ "text": "before" }), &[])?
            .expect(0, "invoke before the change")?;
        let mut changed = original.clone();
        if file == "capability.toml" {
            changed.extend_from_slice(b"\n# a comment only\n");
        } else {
            changed.extend_from_slice(&[0, 3, 1, b'x', 0]);
        }
        std::fs::write(&path, &changed)
            .map_err(|e| Failure::Failed(format!("cannot change {file}: {e}")))?;
        let run = host.invoke("echo", &json!({ "text": "after" }), &[])?;
        ensure!(
            run.code != 0 && run.stdout.trim().is_empty(),
            "a {what} changed after capability add still ran (exit {}): {}",
            run.code,
            excerpt(&run.stdout)
        );
        names(
            &run,
            &format!("a {what} changed after capability add"),
            &[
                file,
                "was changed after it was added",
                "expected sha256",
                "found",
            ],
        )?;
        std::fs::write(&path, &original)
            .map_err(|e| Failure::Failed(format!("cannot restore {file}: {e}")))?;
        host.invoke("echo", &json!({ "text": "restored" }), &[])?
            .expect(0, &format!("invoke with the {what} restored"))?;
    }
    Ok(())
}

fn capability_reserved_publisher(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for publisher in ["femtoclaw", "FemtoClaw", " FEMTOCLAW "] {
        let manifest = GUEST_MANIFEST.replace(
            "description",
            &format!("publisher = \"{publisher}\"\ndescription"),
        );
        let run = add(&host, "guest.wasm", GUEST, Some(&manifest))?;
        failed(
            &run,
            2,
            &format!("capability add with publisher {publisher:?}"),
        )?;
        names(&run, "a reserved publisher", &["reserved"])?;
    }
    ensure!(
        listed(&host)?.iter().all(|(_, _, s)| s == "embedded"),
        "a package refused for its publisher was installed"
    );
    // An installed manifest rewritten to claim it, its digest file rewritten to match: refused
    // when loaded.
    add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?.expect(0, "capability add")?;
    let dir = package_dir(&host, "conformance", "1.0.0");
    let stored = std::fs::read_to_string(dir.join("capability.toml"))
        .map_err(|e| Failure::Failed(format!("the package has no capability.toml: {e}")))?;
    let forged: String = if stored.contains("publisher = ") {
        stored
            .lines()
            .map(|l| {
                if l.starts_with("publisher = ") {
                    "publisher = \" Femtoclaw \"".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    } else {
        format!("publisher = \" Femtoclaw \"\n{stored}")
    };
    std::fs::write(dir.join("capability.toml"), &forged)
        .and_then(|()| {
            std::fs::write(
                dir.join("manifest.sha256"),
                format!("{}\n", sha256_hex(forged.as_bytes())),
            )
        })
        .map_err(|e| Failure::Failed(format!("cannot rewrite the package: {e}")))?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    ensure!(
        run.code != 0 && run.stdout.trim().is_empty(),
        "an installed manifest claiming the publisher ` Femtoclaw ` was loaded and ran"
    );
    names(
        &run,
        "an installed manifest claiming the reserved publisher",
        &["claims the publisher", "reserved"],
    )?;
    Ok(())
}

fn capability_refused_packages(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let outside = host.data.path().join("..").join("etc");
    let existed = outside.exists();
    for (manifest, what, needle) in [
        (
            GUEST_MANIFEST.replace("fuel = ", "fule = "),
            "an unknown key",
            "fule",
        ),
        (
            GUEST_MANIFEST.replace("fuel = 50_000_000", "fuel = \"plenty\""),
            "a malformed fuel",
            "fuel",
        ),
        (
            manifest_as("../../etc", "1.0.0"),
            "the name ../../etc",
            "invalid capability name",
        ),
        (
            manifest_as("hello", "1.0.0"),
            "the name of an embedded capability",
            "is the name of a first-party capability",
        ),
        (
            GUEST_MANIFEST.replace("fuel = 50_000_000", "fuel = 0"),
            "fuel = 0",
            "fuel",
        ),
    ] {
        let run = add(&host, "guest.wasm", GUEST, Some(&manifest))?;
        failed(&run, 2, &format!("a manifest with {what}"))?;
        names(&run, &format!("a manifest with {what}"), &[needle])?;
    }
    ensure!(
        existed || !outside.exists(),
        "capability add of the name ../../etc wrote {}",
        outside.display()
    );
    // Not a component: text, and a core module.
    for (bytes, what) in [
        (&b"this is not WebAssembly"[..], "a text file"),
        (&b"\0asm\x01\0\0\0"[..], "a core module"),
    ] {
        let run = add(&host, "not-a-component.wasm", bytes, Some(GUEST_MANIFEST))?;
        failed(&run, 2, &format!("capability add of {what}"))?;
        names(
            &run,
            &format!("capability add of {what}"),
            &["is not a WebAssembly component"],
        )?;
    }
    // A component header followed by bytes that do not compile.
    let run = add(
        &host,
        "broken.wasm",
        b"\0asm\x0d\x00\x01\x00\x01\xff\xff\xff\xff\x0f",
        Some(GUEST_MANIFEST),
    )?;
    ensure!(
        run.code != 0 && run.stderr.contains("cannot compile component"),
        "a component that does not compile must be refused with `cannot compile component`: exit {}, {}",
        run.code,
        excerpt(&run.stderr)
    );
    // Over 64 MiB (a sparse file: its size is what counts).
    let big = host.files.path().join("big.wasm");
    std::fs::File::create(&big)
        .and_then(|mut f| {
            f.write_all(b"\0asm\x0d\x00\x01\x00")?;
            f.set_len(64 * 1024 * 1024 + 1)
        })
        .map_err(|e| Failure::Failed(format!("cannot write big.wasm: {e}")))?;
    let manifest = host.file("big.toml", GUEST_MANIFEST.as_bytes())?;
    let run = host.run(&[
        "capability",
        "add",
        &lossy(&big),
        "--manifest",
        &lossy(&manifest),
    ])?;
    failed(&run, 2, "a component over 64 MiB")?;
    ensure!(
        listed(&host)?.iter().all(|(_, _, s)| s == "embedded"),
        "a refused package was installed: {:?}",
        listed(&host)?
    );
    Ok(())
}

fn capability_same_name_and_version(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let first = add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?;
    first.expect(0, "capability add")?;
    let again = add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?;
    again.expect(0, "capability add of the same bytes again")?;
    ensure!(
        again.stdout == first.stdout,
        "adding the same bytes again printed {:?}, not {:?}",
        again.stdout.trim(),
        first.stdout.trim()
    );
    let other = with_custom_section(GUEST, "conformance-other-bytes", b"1");
    let run = add(&host, "other.wasm", &other, Some(GUEST_MANIFEST))?;
    ensure!(
        run.code != 0,
        "other bytes under the installed conformance@1.0.0 were accepted"
    );
    names(
        &run,
        "other bytes under an installed name@version",
        &[&format!(
            "is already installed with sha256 {}",
            sha256_hex(GUEST)
        )],
    )?;
    let run = host.invoke("echo", &json!({ "text": "still" }), &[])?;
    run.expect(0, "invoke after the refused add")?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n)
            .first()
            .is_some_and(|e| e["entry"]["component_sha256"] == sha256_hex(GUEST).as_str()),
        "the installed component was replaced by the refused bytes"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Authority and the ledger.

fn refused_invocation_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(
        target,
        &OPEN.replace("User::\"local\"", "User::\"someone-else\""),
    )?;
    let run = host.invoke("echo", &json!({ "text": "refused" }), &[])?;
    run.expect(7, "an invocation no policy permits")?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    let types: Vec<&str> = own
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap_or("?"))
        .collect();
    ensure!(
        types == ["invocation-start", "decision", "invocation-end"],
        "a refused invocation must be recorded as start, the refusing decision, end; it is {types:?}"
    );
    let decision = &own[1]["entry"];
    ensure!(
        decision["action"] == "invoke"
            && decision["allowed"] == json!(false)
            && decision["resource"] == "conformance@1.0.0",
        "the refusing decision is not action invoke, allowed false, resource conformance@1.0.0: {decision}"
    );
    ensure!(
        own[2]["entry"]["result"].is_null(),
        "the refused invocation's end has a result: {}",
        own[2]["entry"]
    );
    Ok(())
}

/// The entries' `policy-change` digests, in order.
fn policy_changes(entries: &[Json]) -> Vec<(u64, String)> {
    entries
        .iter()
        .filter(|e| e["entry"]["type"] == "policy-change")
        .map(|e| {
            (
                e["index"].as_u64().unwrap_or(0),
                e["entry"]["policy_digest"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// The index and the entry of the first decision of invocation `n`.
fn first_decision(entries: &[Json], n: u64) -> Result<(u64, Json), Failure> {
    of_invocation(entries, n)
        .into_iter()
        .find(|e| e["entry"]["type"] == "decision")
        .map(|e| (e["index"].as_u64().unwrap_or(0), e["entry"].clone()))
        .ok_or_else(|| Failure::Failed(format!("invocation {n} has no decision")))
}

fn policy_reread_and_recorded(target: &Target) -> Result<(), Failure> {
    let other = OPEN.replace("User::\"local\"", "User::\"someone-else\"");
    let host = guest_host(target, &other)?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(7, "a call the first policy does not permit")?;
    host.policy(OPEN)?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "the same call once the policy permits it")?;
    let entries = host.entries()?;
    let changes = policy_changes(&entries);
    let n = last_invocation(&entries)?;
    let (at, decision) = first_decision(&entries, n)?;
    let Some((change_at, digest)) = changes.last().cloned() else {
        return Err(Failure::Failed(
            "no policy-change entry was recorded".into(),
        ));
    };
    ensure!(
        changes.len() == 2 && change_at < at && decision["policy_digest"] == digest.as_str(),
        "two policies must leave two policy-change entries, the second before the first decision it made (index {at}) with its digest; the ledger holds {changes:?}"
    );
    // Comments and blank lines only: the same digest, no new entry.
    host.policy(&format!(
        "// the operator's note\n\n{OPEN}\n// another note\n"
    ))?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "the call under the recommented policy")?;
    let entries = host.entries()?;
    ensure!(
        policy_changes(&entries).len() == 2,
        "a policy changed only in comments and layout was recorded as a policy-change: {:?}",
        policy_changes(&entries)
    );
    // A changed policy: recorded before its first decision.
    host.policy(&format!("@id(\"renamed\")\n{OPEN}"))?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "the call under the changed policy")?;
    let entries = host.entries()?;
    let changes = policy_changes(&entries);
    let n = last_invocation(&entries)?;
    let (at, decision) = first_decision(&entries, n)?;
    let previous_end = entries
        .iter()
        .filter(|e| {
            e["entry"]["type"] == "invocation-end" && e["entry"]["invocation"].as_u64() < Some(n)
        })
        .filter_map(|e| e["index"].as_u64())
        .max()
        .unwrap_or(0);
    ensure!(
        changes.len() == 3
            && changes[2].0 < at
            && changes[2].0 > previous_end
            && changes[2].1 != changes[1].1
            && decision["policy_digest"] == changes[2].1.as_str(),
        "a changed policy must be recorded once, between the last invocation and its own first decision, with the digest that decision names; the ledger holds {changes:?}, the decision at {at}"
    );
    Ok(())
}

fn invoke_start_entry(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let list = host.run(&["capability", "list", "--json"])?;
    list.expect(0, "capability list --json")?;
    let list = list.json()?;
    for (capability, function, args, fuel) in [
        ("conformance", "echo", json!({ "text": "start" }), None),
        (
            "conformance",
            "add",
            json!({ "a": 1, "b": 2 }),
            Some(1_234_567u64),
        ),
        ("hello", "greet", json!({ "name": "Ada" }), None),
    ] {
        let args_text = args.to_string();
        let mut all = vec!["invoke", capability, function, "--args", &args_text];
        let fuel_text = fuel.map(|f| f.to_string()).unwrap_or_default();
        if fuel.is_some() {
            all.extend(["--fuel", &fuel_text]);
        }
        host.run(&all)?
            .expect(0, &format!("invoke {capability} {function}"))?;
        let entries = host.entries()?;
        let n = last_invocation(&entries)?;
        let start = of_invocation(&entries, n)[0]["entry"].clone();
        let package = list
            .as_array()
            .and_then(|l| l.iter().find(|c| c["manifest"]["name"] == capability))
            .cloned()
            .unwrap_or(Json::Null);
        let budget = fuel.map_or(package["manifest"]["fuel"].clone(), |f| json!(f));
        let policy = policy_changes(&entries)
            .last()
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        for (field, want) in [
            ("capability", json!(capability)),
            ("function", json!(function)),
            ("version", package["manifest"]["version"].clone()),
            ("wit_world", json!("femtoclaw:host/capability@0.1.0")),
            ("wasmtime_version", json!("48.0.8")),
            ("fuel_budget", budget),
            ("policy_digest", json!(policy)),
            ("component_sha256", package["sha256"].clone()),
            ("manifest_sha256", package["manifest_sha256"].clone()),
        ] {
            ensure!(
                start[field] == want && !want.is_null(),
                "the start of {capability}.{function} records {field} {} where {want} is required",
                start[field]
            );
        }
        if capability == "conformance" {
            let stored = std::fs::read(
                package_dir(&host, "conformance", "1.0.0").join("capability.toml"),
            )
            .map_err(|e| Failure::Failed(format!("cannot read the installed manifest: {e}")))?;
            ensure!(
                start["manifest_sha256"] == sha256_hex(&stored).as_str()
                    && start["component_sha256"] == sha256_hex(GUEST).as_str(),
                "the start's digests are not the SHA-256 of the installed manifest and component"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The host-call gate.

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The host calls of invocation `n`, in order.
fn host_calls(entries: &[Json], n: u64) -> Vec<Json> {
    of_invocation(entries, n)
        .into_iter()
        .filter(|e| e["entry"]["type"] == "host-call")
        .map(|e| e["entry"].clone())
        .collect()
}

/// Checks that the host calls of invocation `n` are numbered 0, 1, … with fuel never
/// increasing, each with interface, function, params, result and fuel; the calls.
fn numbered_calls(entries: &[Json], n: u64) -> Result<Vec<Json>, Failure> {
    let calls = host_calls(entries, n);
    let mut fuel = u64::MAX;
    for (i, call) in calls.iter().enumerate() {
        ensure!(
            call["seq"].as_u64() == Some(i as u64),
            "host call {i} of invocation {n} has seq {}",
            call["seq"]
        );
        let left = call["fuel_remaining"].as_u64().ok_or_else(|| {
            Failure::Failed(format!("host call {i} records no fuel remaining: {call}"))
        })?;
        ensure!(
            left <= fuel,
            "the fuel remaining rose from {fuel} to {left} at host call {i}"
        );
        fuel = left;
        ensure!(
            call["interface"]
                .as_str()
                .is_some_and(|s| s.contains(':') && s.contains('/') && s.contains('@'))
                && call["function"].is_string()
                && call["params"].is_object()
                && call.get("result").is_some(),
            "host call {i} lacks a versioned interface, function, params or result: {call}"
        );
    }
    Ok(calls)
}

fn host_calls_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let value = "välue ✓ 1";
    host.invoke("remember", &json!({ "key": "k", "value": value }), &[])?
        .expect(0, "remember")?;
    let run = host.invoke("recall", &json!({ "key": "k" }), &[])?;
    run.expect(0, "recall")?;
    ensure!(
        run.json()? == json!({ "ok": value }),
        "recall answered {} where {{\"ok\": {value:?}}} is required",
        excerpt(&run.stdout)
    );
    let entries = host.entries()?;
    let last = last_invocation(&entries)?;
    for n in [last - 1, last] {
        let calls = numbered_calls(&entries, n)?;
        ensure!(
            !calls.is_empty(),
            "invocation {n} made key-value calls but records none"
        );
        // Every key-value call: its decision first, with everything a decision keeps.
        let own = of_invocation(&entries, n);
        for (i, e) in own.iter().enumerate() {
            if e["entry"]["type"] != "host-call" {
                continue;
            }
            let before = own[..i]
                .iter()
                .rev()
                .take_while(|d| d["entry"]["type"] == "decision")
                .map(|d| d["entry"].clone())
                .collect::<Vec<_>>();
            let call = &e["entry"];
            ensure!(
                before.iter().any(|d| {
                    d["action"]
                        .as_str()
                        .is_some_and(|a| a == "kv.read" || a == "kv.write")
                        && d["resource"] == "conformance"
                        && d["allowed"] == json!(true)
                        && d["policy_ids"].as_array().is_some_and(|p| !p.is_empty())
                        && d["policy_digest"].as_str().is_some_and(|s| s.len() == 64)
                }),
                "host call {} ({}) is not preceded by its kv decision with action, resource, allowed, policy ids and digest",
                call["seq"],
                call["function"]
            );
            ensure!(
                call["interface"] == "wasi:keyvalue/store@0.2.0-draft2",
                "a key-value call is recorded under interface {}",
                call["interface"]
            );
        }
    }
    // The write's bytes and the read's are recorded as bytes, exactly.
    let set = host_calls(&entries, last - 1)
        .into_iter()
        .find(|c| c["function"] == "[method]bucket.set")
        .ok_or_else(|| Failure::Failed("remember recorded no bucket.set".into()))?;
    let encoded = b64(value.as_bytes());
    ensure!(
        set["params"]["tuple"]
            .as_array()
            .is_some_and(|p| p.iter().any(|v| v == &json!({ "bytes": encoded }))),
        "bucket.set does not record the value as bytes {encoded}: {}",
        set["params"]
    );
    let get = host_calls(&entries, last)
        .into_iter()
        .find(|c| c["function"] == "[method]bucket.get")
        .ok_or_else(|| Failure::Failed("recall recorded no bucket.get".into()))?;
    ensure!(
        get["result"]
            .to_string()
            .contains(&format!("{{\"bytes\":\"{encoded}\"}}")),
        "bucket.get does not record the bytes the guest received ({encoded}): {}",
        get["result"]
    );
    Ok(())
}

fn denied_calls_are_errors_without_effect(target: &Target) -> Result<(), Failure> {
    let policy = format!(
        "{OPEN}@id(\"no-effects\")\nforbid (principal, action in [FemtoClaw::Action::\"kv.write\", FemtoClaw::Action::\"fs.write\", FemtoClaw::Action::\"http.request\"], resource);\n"
    );
    let host = guest_host(target, &policy)?;
    // Key-value: the write is an error the guest handles; nothing is stored.
    let run = host.invoke("remember", &json!({ "key": "k", "value": "v" }), &[])?;
    run.expect(
        0,
        "remember under a policy denying kv.write (a handled error)",
    )?;
    ensure!(
        run.json()?.get("err").is_some(),
        "a denied write must reach the guest as an error it returns: {}",
        excerpt(&run.stdout)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    ensure!(
        !own.iter().any(|e| e["entry"]["type"] == "trap"),
        "a denied key-value write trapped the invocation"
    );
    let decisions: Vec<&Json> = own
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "decision" && e["action"] != "invoke")
        .collect();
    ensure!(
        decisions.iter().any(|d| d["action"] == "kv.read"
            && d["resource"] == "conformance"
            && d["allowed"] == json!(true))
            && decisions.iter().any(|d| d["action"] == "kv.write"
                && d["resource"] == "conformance"
                && d["allowed"] == json!(false)
                && d["policy_ids"] == json!(["no-effects"])
                && d["policy_digest"].as_str().is_some_and(|s| s.len() == 64)),
        "the invocation must record the allowed kv.read and the denied kv.write (policy no-effects, with the digest); it records {decisions:?}"
    );
    let set = host_calls(&entries, n)
        .into_iter()
        .find(|c| c["function"] == "[method]bucket.set")
        .ok_or_else(|| Failure::Failed("the denied write is not recorded as a call".into()))?;
    ensure!(
        set["result"].to_string().contains("access-denied"),
        "the denied write's recorded result is not access-denied: {}",
        set["result"]
    );
    let recall = host.invoke("recall", &json!({ "key": "k" }), &[])?;
    recall.expect(0, "recall")?;
    ensure!(
        recall.json()? == json!({ "ok": null }),
        "a denied write stored its key: recall answered {}",
        excerpt(&recall.stdout)
    );
    ensure!(
        !host.ok(&["kv", "list"])?.contains("conformance/k"),
        "kv list shows the key of a denied write"
    );
    // Deleting needs kv.write too: the memory capability's delete is denied, its note kept.
    host.policy(OPEN)?;
    host.run(&[
        "invoke",
        "memory",
        "put",
        "--args",
        r#"{"key":"kept","text":"note"}"#,
    ])?
    .expect(0, "memory put under a policy permitting it")?;
    host.policy(&policy)?;
    let run = host.run(&["invoke", "memory", "delete", "--args", r#"{"key":"kept"}"#])?;
    run.expect(0, "memory delete under a policy denying kv.write")?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n).iter().any(|e| {
            let e = &e["entry"];
            e["type"] == "decision"
                && e["action"] == "kv.write"
                && e["resource"] == "memory"
                && e["allowed"] == json!(false)
        }) && host_calls(&entries, n)
            .iter()
            .any(|c| c["function"] == "[method]bucket.delete"
                && c["result"].to_string().contains("access-denied")),
        "a delete under a policy denying kv.write is not answered access-denied with its denied kv.write decision"
    );
    let kept = host.run(&["invoke", "memory", "get", "--args", r#"{"key":"kept"}"#])?;
    kept.expect(0, "memory get")?;
    ensure!(
        kept.json()? == json!({ "ok": "note" }),
        "a denied delete changed the store: memory get answered {}",
        excerpt(&kept.stdout)
    );
    // Reads and listings need kv.read: denied, they answer access-denied and read nothing.
    host.policy(&format!(
        "{OPEN}@id(\"no-reads\")\nforbid (principal, action == FemtoClaw::Action::\"kv.read\", resource);\n"
    ))?;
    for (capability, function, args) in [
        ("conformance", "recall", r#"{"key":"k"}"#),
        ("memory", "list", r#"{"prefix":"","limit":10}"#),
    ] {
        let run = host.run(&["invoke", capability, function, "--args", args])?;
        run.expect(
            0,
            &format!("{capability}.{function} under a policy denying kv.read"),
        )?;
        ensure!(
            run.json()?.get("err").is_some(),
            "{capability}.{function} under a policy denying kv.read answered {}",
            excerpt(&run.stdout)
        );
        let entries = host.entries()?;
        let n = last_invocation(&entries)?;
        ensure!(
            of_invocation(&entries, n).iter().any(|e| {
                let e = &e["entry"];
                e["type"] == "decision"
                    && e["action"] == "kv.read"
                    && e["allowed"] == json!(false)
                    && e["policy_ids"] == json!(["no-reads"])
            }) && host_calls(&entries, n)
                .iter()
                .any(|c| c["result"].to_string().contains("access-denied")),
            "{capability}.{function} is not answered access-denied with its denied kv.read decision"
        );
    }
    host.policy(&policy)?;
    // Files: the denied write creates nothing.
    let run = host.run(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/denied.txt","text":"no"}"#,
    ])?;
    run.expect(0, "files write-file under a policy denying fs.write")?;
    ensure!(
        run.json()?.get("err").is_some(),
        "a denied file write did not answer an error: {}",
        excerpt(&run.stdout)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n).iter().any(|e| {
            let e = &e["entry"];
            e["type"] == "decision"
                && e["action"] == "fs.write"
                && e["resource"] == "/data/denied.txt"
                && e["allowed"] == json!(false)
        }) && host_calls(&entries, n)
            .iter()
            .any(|c| c["result"].to_string().contains("\"access\"")),
        "the denied file write is not recorded with its fs.write decision and an `access` answer"
    );
    let created = walk(host.data.path())
        .into_iter()
        .chain(walk(host.files.path()))
        .any(|p| p.ends_with("denied.txt"));
    ensure!(!created, "a denied file write created denied.txt");
    // A path not granted at all, and one leaving the preopen.
    let run = host.run(&[
        "invoke",
        "files",
        "read-file",
        "--args",
        r#"{"path":"/etc/hostname"}"#,
    ])?;
    run.expect(0, "files read-file of a path not granted")?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n).iter().any(|e| {
            let e = &e["entry"];
            e["type"] == "decision" && e["action"] == "fs.read" && e["allowed"] == json!(false)
        }) && host_calls(&entries, n)
            .iter()
            .any(|c| c["result"].to_string().contains("\"access\"")),
        "a path not granted is not answered `access` with its decision recorded"
    );
    let run = host.run(&[
        "invoke",
        "files",
        "read-file",
        "--args",
        r#"{"path":"/data/../../etc/hostname"}"#,
    ])?;
    run.expect(0, "files read-file of a path leaving the preopen")?;
    ensure!(
        run.json()?.get("err").is_some(),
        "a path leaving the preopen was not refused: {}",
        excerpt(&run.stdout)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        host_calls(&entries, n)
            .iter()
            .any(|c| c["params"].to_string().contains("etc/hostname")
                && c["result"].to_string().contains("Err")),
        "the refused path leaving the preopen is not recorded"
    );
    // HTTP: denied with the decision recorded, and no request reaches the peer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::Failed(format!("cannot listen on 127.0.0.1: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::Failed(format!("cannot set the listener nonblocking: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::Failed(format!("no local address: {e}")))?
        .port();
    let url = format!("http://127.0.0.1:{port}/secret");
    let run = host.run(&[
        "invoke",
        "fetch",
        "get",
        "--args",
        &json!({ "url": url }).to_string(),
    ])?;
    run.expect(0, "fetch get of an origin not granted (a handled error)")?;
    let origin = format!("http://127.0.0.1:{port}");
    let text = format!("denied: `http.request` on `{origin}` is not granted to this capability");
    ensure!(
        run.json()? == json!({ "err": text }),
        "the denial must read {text:?}; the capability answered {}",
        excerpt(&run.stdout)
    );
    ensure!(
        listener.accept().is_err(),
        "a denied HTTP request connected to the peer"
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n).iter().any(|e| {
            let e = &e["entry"];
            e["type"] == "decision"
                && e["action"] == "http.request"
                && e["resource"] == origin.as_str()
                && e["allowed"] == json!(false)
        }) && host_calls(&entries, n)
            .iter()
            .any(|c| c["result"].to_string().contains("denied")),
        "the denied HTTP request is not recorded with its http.request decision and the denial"
    );
    Ok(())
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `(budget, fuel left at host call `seq`, fuel consumed)` of invocation `n`.
fn fuel_at(entries: &[Json], n: u64, seq: u64) -> Result<(u64, u64, u64), Failure> {
    let own = of_invocation(entries, n);
    let budget = own.first().and_then(|e| e["entry"]["fuel_budget"].as_u64());
    let left = own
        .iter()
        .find(|e| e["entry"]["type"] == "host-call" && e["entry"]["seq"].as_u64() == Some(seq))
        .and_then(|e| e["entry"]["fuel_remaining"].as_u64());
    let consumed = own
        .last()
        .filter(|e| e["entry"]["type"] == "invocation-end")
        .and_then(|e| e["entry"]["fuel_consumed"].as_u64());
    match (budget, left, consumed) {
        (Some(b), Some(l), Some(c)) => Ok((b, l, c)),
        _ => Err(Failure::Failed(format!(
            "invocation {n} lacks a budget, host call {seq} or an end with fuel"
        ))),
    }
}

/// Exports the ledger with its components and replays it on a fresh data directory: the
/// replay report.
fn replay_all(target: &Target, host: &Host, env: &[(&str, &str)]) -> Result<(Run, Json), Failure> {
    let export = host.files.path().join("replay.export");
    let _ = std::fs::remove_file(&export);
    host.ok(&["log", "export", &lossy(&export), "--with-components"])?;
    let key = host.ok(&["key", "show"])?;
    let elsewhere = target.host()?;
    let run = run_with(
        &elsewhere,
        &["replay", &lossy(&export), "--key", key.trim(), "--json"],
        env,
        None,
    )?;
    let report = run.json().unwrap_or(Json::Null);
    Ok((run, report))
}

/// The statuses of a replay report's invocations.
fn statuses(report: &Json) -> Vec<String> {
    report["invocations"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|i| i["status"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn fuel_per_recorded_byte(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let mut after = Vec::new();
    for length in [1000usize, 3000] {
        host.invoke("note", &json!({ "message": "m".repeat(length) }), &[])?
            .expect(0, "note")?;
        let entries = host.entries()?;
        let n = last_invocation(&entries)?;
        let (budget, left, consumed) = fuel_at(&entries, n, 0)?;
        after.push((budget - left, consumed - (budget - left)));
    }
    // The guest's work after the log call does not depend on the message: what the call itself
    // cost differs by exactly the 2000 more bytes it recorded.
    ensure!(
        after[1].1 - after[0].1 == 2000,
        "logging 3000 bytes rather than 1000 must cost exactly 2000 more fuel at the call; it cost {} then {}",
        after[0].1,
        after[1].1
    );
    // A budget that pays for the guest's work up to the call but not for its 3000 bytes.
    let budget = after[1].0 + 1000;
    let run = host.invoke(
        "note",
        &json!({ "message": "m".repeat(3000) }),
        &["--fuel", &budget.to_string()],
    )?;
    run.expect(
        4,
        "a budget that pays for the guest's work but not the host's bytes",
    )?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    ensure!(
        own.iter().any(|e| e["entry"]["type"] == "host-call")
            && own.iter().any(|e| e["entry"]["type"] == "trap"
                && e["entry"]["kind"] == "fuel-exhausted"
                && e["entry"]["fuel_consumed"] == json!(budget)),
        "the call must stay recorded and the invocation end fuel-exhausted with its whole budget: {:?}",
        kinds(&own.into_iter().cloned().collect::<Vec<_>>())
    );
    // In replay the bytes are charged alike: every invocation replays identically.
    let (run, report) = replay_all(target, &host, &[])?;
    run.expect(0, "replay of the recordings")?;
    ensure!(
        statuses(&report) == ["identical"; 3],
        "replay must charge the recorded bytes as the recording did (three identical): {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn trapped_writes_not_applied(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let long = |c: &str| c.repeat(4000);
    // A probe of the same lengths: the fuel the guest uses up to its write.
    host.invoke("remember", &json!({ "key": "p", "value": long("x") }), &[])?
        .expect(0, "remember p")?;
    let entries = host.entries()?;
    let (budget, left, _) = fuel_at(&entries, last_invocation(&entries)?, 1)?;
    let before_write = budget - left;
    for value in ["first", "second"] {
        host.invoke("remember", &json!({ "key": "k", "value": value }), &[])?
            .expect(0, "remember k")?;
    }
    // The third write is made, but its invocation runs out of fuel paying for it.
    let fuel = (before_write + 100).to_string();
    host.invoke(
        "remember",
        &json!({ "key": "k", "value": long("c") }),
        &["--fuel", &fuel],
    )?
    .expect(4, "a write whose invocation then runs out of fuel")?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        host_calls(&entries, n)
            .iter()
            .any(|c| c["function"] == "[method]bucket.set"),
        "the trapped invocation's write is not recorded"
    );
    let recall = host.invoke("recall", &json!({ "key": "k" }), &[])?;
    recall.expect(0, "recall k")?;
    ensure!(
        recall.json()? == json!({ "ok": "second" }),
        "after writes `first`, `second` and a trapped third, the store must hold `second`; recall answered {}",
        excerpt(&recall.stdout)
    );
    let live = host.ok(&["kv", "list"])?;
    ensure!(
        live.contains("conformance/k = \"second\""),
        "kv list does not show k = \"second\": {}",
        excerpt(&live)
    );
    // The store is derived: lost, it is rebuilt from the ledger alone, equal to what it was.
    std::fs::remove_dir_all(host.data.path().join("kv"))
        .map_err(|e| Failure::Failed(format!("cannot remove the key-value store: {e}")))?;
    host.ok(&["log", "reindex"])?;
    let rebuilt = host.ok(&["kv", "list"])?;
    ensure!(
        rebuilt == live,
        "log reindex did not rebuild the store as it was: {} then {}",
        excerpt(&live),
        excerpt(&rebuilt)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Limits and metering.

/// The start entry of the last invocation.
fn last_start(host: &Host) -> Result<Json, Failure> {
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    Ok(of_invocation(&entries, n)[0]["entry"].clone())
}

fn fuel_budget_and_ceiling(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // The manifest's budget, unless --fuel is given.
    let run = host.invoke("echo", &json!({ "text": "x" }), &["--json"])?;
    run.expect(0, "invoke")?;
    ensure!(
        run.json()?["fuel"]["budget"] == json!(50_000_000)
            && last_start(&host)?["fuel_budget"] == json!(50_000_000),
        "without --fuel the budget must be the manifest's 50000000: {}",
        excerpt(&run.stdout)
    );
    let run = host.invoke(
        "echo",
        &json!({ "text": "x" }),
        &["--json", "--fuel", "7654321"],
    )?;
    run.expect(0, "invoke --fuel 7654321")?;
    ensure!(
        run.json()?["fuel"]["budget"] == json!(7_654_321)
            && last_start(&host)?["fuel_budget"] == json!(7_654_321),
        "--fuel 7654321 must be the budget: {}",
        excerpt(&run.stdout)
    );
    // Zero: refused before anything runs.
    let before = host.entries()?.len();
    let run = host.invoke("echo", &json!({ "text": "x" }), &["--fuel", "0"])?;
    failed(&run, 2, "--fuel 0")?;
    let entries = host.entries()?;
    ensure!(
        !entries[before..]
            .iter()
            .any(|e| e["entry"]["type"] == "invocation-end"
                && e["entry"]["fuel_consumed"] != json!(0)),
        "a budget of 0 ran guest code"
    );
    // Over the default ceiling of 10 000 000 000.
    let run = host.invoke("echo", &json!({ "text": "x" }), &["--fuel", "10000000001"])?;
    failed(&run, 2, "--fuel over max_fuel")?;
    names(
        &run,
        "--fuel over max_fuel",
        &["10000000001", "10000000000", "--fuel"],
    )?;
    // A lowered ceiling: the manifest's budget is refused at every invocation, --fuel up to the
    // ceiling runs, and a manifest over it is refused at install.
    write_config(&host, "[limits]\nmax_fuel = 40000000\n")?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    failed(&run, 2, "a manifest budget over a lowered max_fuel")?;
    names(
        &run,
        "a manifest budget over a lowered max_fuel",
        &["50000000", "40000000", "manifest"],
    )?;
    host.invoke("echo", &json!({ "text": "x" }), &["--fuel", "40000000"])?
        .expect(0, "--fuel equal to max_fuel")?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &["--fuel", "40000001"])?;
    failed(&run, 2, "--fuel over a lowered max_fuel")?;
    names(
        &run,
        "--fuel over a lowered max_fuel",
        &["40000001", "40000000", "--fuel"],
    )?;
    write_config(&host, "[limits]\nmax_fuel = 50000000\n")?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "a manifest budget equal to max_fuel")?;
    let run = add(
        &host,
        "greedy.wasm",
        GUEST,
        Some(&manifest_as("greedy", "1.0.0").replace("fuel = 50_000_000", "fuel = 60_000_000")),
    )?;
    failed(&run, 2, "capability add of a manifest over max_fuel")?;
    names(
        &run,
        "capability add of a manifest over max_fuel",
        &["60000000", "50000000", "`greedy`"],
    )?;
    Ok(())
}

fn recorded_bytes_cap(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let env = [("FEMTOCLAW_LIMITS_MAX_RECORDED_BYTES", "1000")];
    let args = json!({ "message": "r".repeat(2000) }).to_string();
    let run = run_with(
        &host,
        &["invoke", "conformance", "note", "--args", &args],
        &env,
        None,
    )?;
    failed(&run, 6, "a host call past a recorded-bytes cap of 1000")?;
    names(
        &run,
        "a host call past the recorded-bytes cap",
        &["recorded-bytes limit of 1000 bytes exceeded"],
    )?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    ensure!(
        calls.len() == 1 && calls[0]["result"]["variant"]["case"] == "limit",
        "the call past the cap must be recorded with a `limit` fault in place of its result: {calls:?}"
    );
    let own = of_invocation(&entries, n);
    ensure!(
        own.iter().any(|e| e["entry"]["type"] == "trap"
            && e["entry"]["kind"] == "limit"
            && e["entry"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("recorded-bytes limit of 1000 bytes exceeded"))),
        "the invocation does not end with a `limit` trap naming the cap of 1000 bytes"
    );
    // Under the cap, the same call runs.
    let run = run_with(
        &host,
        &[
            "invoke",
            "conformance",
            "note",
            "--args",
            r#"{"message":"short"}"#,
        ],
        &env,
        None,
    )?;
    run.expect(0, "a host call within the cap")?;
    Ok(())
}

fn host_fault_traps_and_replays(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // A log message over 16 KiB: the host refuses the call.
    let run = host.invoke("note", &json!({ "message": "f".repeat(17_000) }), &[])?;
    failed(&run, 5, "a log message over 16 KiB")?;
    names(&run, "a log message over 16 KiB", &["16384"])?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    ensure!(
        calls.len() == 1
            && calls[0]["result"]["variant"]["case"].is_string()
            && calls[0]["result"].to_string().contains("16384"),
        "the failed call must be recorded with its fault in place of the result: {calls:?}"
    );
    let own = of_invocation(&entries, n);
    ensure!(
        own.iter().any(|e| e["entry"]["type"] == "trap")
            && own.last().is_some_and(
                |e| e["entry"]["type"] == "invocation-end" && e["entry"]["result"].is_null()
            ),
        "the host fault did not trap the invocation"
    );
    // Replayed: the fault is answered from the recording, and the invocation is identical.
    let (run, report) = replay_all(target, &host, &[])?;
    run.expect(0, "replay of an invocation with a host fault")?;
    ensure!(
        statuses(&report) == ["identical"],
        "an invocation whose call faulted must replay identically: {}",
        excerpt(&run.stdout)
    );
    // A limit in the host: the recorded-bytes cap, recorded as the call's fault, trapping.
    let args = json!({ "message": "l".repeat(600) }).to_string();
    let run = run_with(
        &host,
        &["invoke", "conformance", "note", "--args", &args],
        &[("FEMTOCLAW_LIMITS_MAX_RECORDED_BYTES", "500")],
        None,
    )?;
    ensure!(
        run.code != 0 && run.stdout.trim().is_empty(),
        "a call past the recorded-bytes cap did not fail the invocation"
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    let own = of_invocation(&entries, n);
    ensure!(
        calls.len() == 1
            && calls[0]["result"]["variant"]["case"] == "limit"
            && own.iter().any(|e| e["entry"]["type"] == "trap"),
        "a call failing on a host limit must be recorded with its fault and trap the invocation: {calls:?}"
    );
    Ok(())
}

fn memory_limit(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // The guest starts with 17 pages; 18 pages leave no room for a 300 000-byte argument.
    let limit = 18 * 65_536;
    write_config(&host, &format!("[limits]\nmemory_bytes = {limit}\n"))?;
    host.invoke("echo", &json!({ "text": "small" }), &[])?
        .expect(0, "a call within the memory limit")?;
    let args = host.file(
        "big-args.json",
        json!({ "text": "m".repeat(300_000) })
            .to_string()
            .as_bytes(),
    )?;
    let run = host.run(&[
        "invoke",
        "conformance",
        "echo",
        "--args",
        &format!("@{}", lossy(&args)),
    ])?;
    failed(&run, 6, "memory growth past the limit")?;
    let message = format!("memory limit of {limit} bytes exceeded");
    names(&run, "memory growth past the limit", &[&message])?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n)
            .iter()
            .any(|e| e["entry"]["type"] == "trap"
                && e["entry"]["kind"] == "limit"
                && e["entry"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&message))),
        "the invocation's trap is not of kind `limit` with {message:?}"
    );
    Ok(())
}

fn deadline_configured(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    write_config(&host, "[limits]\ndeadline_ms = 300\n")?;
    for extra in [&[][..], &["--deadline-ms", "100000"][..]] {
        let mut args = vec!["--fuel", "10000000000"];
        args.extend_from_slice(extra);
        let started = Instant::now();
        let run = host.invoke("spin", &json!({}), &args)?;
        let took = started.elapsed();
        failed(&run, 11, &format!("spin under deadline_ms = 300 {extra:?}"))?;
        names(&run, "the operator's deadline", &["300 ms"])?;
        ensure!(
            took < Duration::from_secs(10),
            "a deadline of 300 ms took {took:?} {extra:?}"
        );
    }
    let run = host.invoke("spin", &json!({}), &["--deadline-ms", "0"])?;
    run.expect(2, "--deadline-ms 0")?;
    ensure!(
        run.stdout.trim().is_empty(),
        "--deadline-ms 0 printed a result: {}",
        excerpt(&run.stdout)
    );
    // Without configuration the operator's deadline is 30 000 ms; a shorter request is kept.
    std::fs::remove_file(host.data.path().join("femtoclaw.toml"))
        .map_err(|e| Failure::Failed(format!("cannot remove the configuration: {e}")))?;
    let shown = host.ok(&["config", "show"])?;
    ensure!(
        shown.lines().any(|l| l.starts_with("deadline_ms = 30000")),
        "the default deadline_ms is not 30000: {}",
        excerpt(&shown)
    );
    let run = host.invoke(
        "spin",
        &json!({}),
        &["--fuel", "10000000000", "--deadline-ms", "200"],
    )?;
    failed(&run, 11, "spin with --deadline-ms 200")?;
    names(&run, "a caller's shorter deadline", &["200 ms"])?;
    Ok(())
}

fn config_limit_keys(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let shown = host.ok(&["config", "show"])?;
    for line in [
        "max_fuel = 10000000000",
        "deadline_ms = 30000",
        "max_recorded_bytes = 67108864",
        "memory_bytes = 67108864",
    ] {
        ensure!(
            shown
                .lines()
                .any(|l| l.starts_with(line) && l.contains("default")),
            "config show does not give the default `{line}`: {}",
            excerpt(&shown)
        );
    }
    for (key, value, env) in [
        ("max_fuel", "123456789", "FEMTOCLAW_LIMITS_MAX_FUEL"),
        ("deadline_ms", "4321", "FEMTOCLAW_LIMITS_DEADLINE_MS"),
        (
            "max_recorded_bytes",
            "654321",
            "FEMTOCLAW_LIMITS_MAX_RECORDED_BYTES",
        ),
        ("memory_bytes", "2097152", "FEMTOCLAW_LIMITS_MEMORY_BYTES"),
    ] {
        let run = run_with(&host, &["config", "show"], &[(env, value)], None)?;
        run.expect(0, &format!("config show with {env}"))?;
        ensure!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{key} = {value}")) && l.contains(env)),
            "with {env}={value}, config show must give `{key} = {value}` naming {env}: {}",
            excerpt(&run.stdout)
        );
    }
    for (key, value) in [
        ("max_fuel", "0"),
        ("deadline_ms", "0"),
        ("max_recorded_bytes", "0"),
        ("memory_bytes", "65535"),
    ] {
        let path = write_config(&host, &format!("# limits\n\n[limits]\n{key} = {value}\n"))?;
        let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
        failed(&run, 2, &format!("limits.{key} = {value}"))?;
        names(
            &run,
            &format!("limits.{key} = {value}"),
            &[&lossy(&path), "line 4", &format!("limits.{key}")],
        )?;
    }
    let path = write_config(&host, "[limits]\nmemory_bytes = 65536\n")?;
    ensure!(
        host.run(&["config", "show"])?.code == 0,
        "limits.memory_bytes = 65536 (the least value) was refused in {}",
        path.display()
    );
    Ok(())
}

fn invoke_exit_codes(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let big = host.file(
        "big-args.json",
        json!({ "text": "m".repeat(300_000) })
            .to_string()
            .as_bytes(),
    )?;
    let big = format!("@{}", lossy(&big));
    let cases: [(&[&str], i32, &str); 8] = [
        (
            &["invoke", "conformance", "echo", "--args", "{not json"],
            2,
            "arguments that are not JSON",
        ),
        (
            &["invoke", "conformance", "echo", "--args", r#"{"text":5}"#],
            2,
            "a value that does not fit its WIT type",
        ),
        (
            &[
                "invoke",
                "conformance",
                "echo",
                "--args",
                r#"{"text":"x"}"#,
                "--fuel",
                "0",
            ],
            2,
            "a fuel budget of 0",
        ),
        (
            &["invoke", "no-such-capability", "echo"],
            3,
            "an unknown capability",
        ),
        (
            &["invoke", "conformance", "no-such-function"],
            3,
            "an unknown function",
        ),
        (
            &[
                "invoke",
                "conformance",
                "divide",
                "--args",
                r#"{"a":1,"b":0}"#,
            ],
            5,
            "a guest trap",
        ),
        (
            &["invoke", "conformance", "spin", "--fuel", "100000"],
            4,
            "fuel exhaustion",
        ),
        (
            &["invoke", "conformance", "echo", "--args", &big],
            6,
            "a memory limit",
        ),
    ];
    write_config(
        &host,
        &format!("[limits]\nmemory_bytes = {}\n", 18 * 65_536),
    )?;
    for (args, code, what) in cases {
        let run = host.run(args)?;
        failed(&run, code, what)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Quotas and approvals.

fn quota_refusal_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    write_config(
        &host,
        "[[quotas.rules]]\ncapability = \"conformance\"\ninvocations = 1\nper_ms = 600000\n",
    )?;
    host.invoke("echo", &json!({ "text": "first" }), &[])?
        .expect(0, "the first invocation a quota of one admits")?;
    let run = host.invoke("echo", &json!({ "text": "second" }), &[])?;
    failed(&run, 12, "a second invocation over a quota of one")?;
    names(
        &run,
        "the quota refusal",
        &["quotas.rules[0]", "retry in", " ms"],
    )?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    ensure!(
        own.iter().any(|e| e["entry"]["type"] == "trap"
            && e["entry"]["kind"] == "limit"
            && e["entry"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("quotas.rules[0]"))),
        "the refused invocation is not recorded with a `limit` trap naming quotas.rules[0]: {:?}",
        own.iter().map(|e| &e["entry"]).collect::<Vec<_>>()
    );
    Ok(())
}

/// The approval fingerprint an auditor recomputes from a start entry (specification 40).
fn fingerprint(start: &Json) -> Option<String> {
    let text = |v: &Json| v.as_str().map(str::to_owned);
    let field = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    // The arguments: only strings, which is all the cases use.
    let args = start["args"].as_array()?;
    let mut encoded = (args.len() as u32).to_le_bytes().to_vec();
    for arg in args {
        field(&mut encoded, arg[0].as_str()?);
        encoded.push(0x0d);
        field(&mut encoded, arg[1]["string"].as_str()?);
    }
    let mut message = b"femtoclaw-approval-v1".to_vec();
    for key in ["principal", "capability", "version", "function"] {
        field(&mut message, &text(&start[key])?);
    }
    message.extend_from_slice(&Sha256::digest(&encoded));
    Some(sha256_hex(&message))
}

/// Whether a recorded approval number is `id`.
fn is_id(value: &Json, id: &str) -> bool {
    value.as_u64().is_some_and(|n| id.parse() == Ok(n))
}

/// The pending approval's id an exit-13 answer names.
fn pending_id(run: &Run) -> Result<String, Failure> {
    let at = run.stderr.find("pending as approval ").ok_or_else(|| {
        Failure::Failed(format!(
            "the answer does not name the pending approval: {}",
            excerpt(&run.stderr)
        ))
    })?;
    let id: String = run.stderr[at + "pending as approval ".len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    ensure!(
        run.stderr
            .contains(&format!("femtoclaw-host approval grant {id}")),
        "the answer does not name the command that grants approval {id}: {}",
        excerpt(&run.stderr)
    );
    Ok(id)
}

fn approval_bound_to_the_call(target: &Target) -> Result<(), Failure> {
    let policy = "permit (principal == FemtoClaw::User::\"local\", action, resource) when { resource is FemtoClaw::Interface || resource is FemtoClaw::KvNamespace };\n\
        @approval(\"required\")\n\
        permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n";
    let host = guest_host(target, policy)?;
    let call = json!({ "text": "approve me" });
    let run = host.invoke("echo", &call, &[])?;
    failed(&run, 13, "a call that needs an approval")?;
    let id = pending_id(&run)?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let start = of_invocation(&entries, n)[0]["entry"].clone();
    ensure!(
        start["args"] == json!([["text", { "string": "approve me" }]]),
        "the pending call's start does not record its arguments: {start}"
    );
    ensure!(
        entries.iter().any(|e| e["entry"]["type"] == "approval"
            && e["entry"]["action"] == "request"
            && is_id(&e["entry"]["request"], &id)),
        "no approval request entry records approval {id}"
    );
    // The same call again while it is pending: the same approval.
    let again = host.invoke("echo", &call, &[])?;
    failed(&again, 13, "the identical call while pending")?;
    ensure!(
        pending_id(&again)? == id,
        "the identical call while {id} is pending asked for another approval: {}",
        excerpt(&again.stderr)
    );
    host.ok(&["approval", "grant", &id])?;
    // Other arguments: a new approval.
    let other = host.invoke("echo", &json!({ "text": "something else" }), &[])?;
    failed(
        &other,
        13,
        "a call with other arguments than the granted one",
    )?;
    ensure!(
        pending_id(&other)? != id,
        "a call with other arguments was let through on approval {id}"
    );
    // The granted call runs once, its start naming the approval.
    let run = host.invoke("echo", &call, &[])?;
    run.expect(0, "the granted call")?;
    ensure!(
        run.json()? == json!("approve me"),
        "the granted call answered {}",
        excerpt(&run.stdout)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let start = of_invocation(&entries, n)[0]["entry"].clone();
    ensure!(
        is_id(&start["approval"], &id),
        "the start of the call that spent approval {id} names approval {}",
        start["approval"]
    );
    let granted = entries
        .iter()
        .find(|e| {
            e["entry"]["type"] == "approval"
                && e["entry"]["action"] == "grant"
                && is_id(&e["entry"]["request"], &id)
        })
        .map(|e| e["entry"]["fingerprint"].clone())
        .ok_or_else(|| Failure::Failed(format!("no grant entry records approval {id}")))?;
    let recomputed = fingerprint(&start);
    ensure!(
        recomputed.as_deref().is_some_and(|f| granted == f),
        "the grant's fingerprint {granted} is not the one recomputed from the start that spent it ({recomputed:?})"
    );
    // Spent: the same call asks for a new approval.
    let after = host.invoke("echo", &call, &[])?;
    failed(&after, 13, "the same call after its grant was spent")?;
    ensure!(pending_id(&after)? != id, "the grant {id} was spent twice");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Replay.

fn replay_from_the_recording_only(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("remember", &json!({ "key": "k", "value": "recorded" }), &[])?
        .expect(0, "remember")?;
    host.invoke("recall", &json!({ "key": "k" }), &[])?
        .expect(0, "recall")?;
    host.run(&[
        "invoke",
        "files",
        "write-file",
        "--args",
        r#"{"path":"/data/replayed.txt","text":"recorded"}"#,
    ])?
    .expect(0, "files write-file")?;
    host.run(&[
        "invoke",
        "files",
        "read-file",
        "--args",
        r#"{"path":"/data/replayed.txt"}"#,
    ])?
    .expect(0, "files read-file")?;
    let export = host.files.path().join("state.export");
    host.ok(&["log", "export", &lossy(&export), "--with-components"])?;
    // Change the state the recording read: the store and the file.
    host.invoke(
        "remember",
        &json!({ "key": "k", "value": "changed since" }),
        &[],
    )?
    .expect(0, "remember again")?;
    let written: Vec<PathBuf> = walk(host.data.path())
        .into_iter()
        .filter(|p| p.ends_with("replayed.txt"))
        .collect();
    ensure!(
        written.len() == 1,
        "files write-file left no single replayed.txt in the data directory: {written:?}"
    );
    std::fs::remove_file(&written[0])
        .map_err(|e| Failure::Failed(format!("cannot remove the written file: {e}")))?;
    let kv_before = host.ok(&["kv", "list"])?;
    let size_before = host.entries()?.len();
    let key = host.ok(&["key", "show"])?;
    // On the very data directory, with a recorded-bytes cap smaller than what was recorded.
    let run = run_with(
        &host,
        &["replay", &lossy(&export), "--key", key.trim(), "--json"],
        &[("FEMTOCLAW_LIMITS_MAX_RECORDED_BYTES", "16")],
        None,
    )?;
    run.expect(0, "replay")?;
    let report = run.json()?;
    ensure!(
        statuses(&report) == ["identical"; 4],
        "the four recordings must replay identically from the ledger, whatever the store, the files and the recorded-bytes cap are now: {}",
        excerpt(&run.stdout)
    );
    ensure!(
        host.entries()?.len() == size_before,
        "replay wrote ledger entries"
    );
    ensure!(
        host.ok(&["kv", "list"])? == kv_before,
        "replay changed the key-value store"
    );
    ensure!(
        !written[0].exists(),
        "replay wrote the file the recording wrote"
    );
    Ok(())
}

fn replay_interrupted_and_unbounded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke(
        "spin",
        &json!({}),
        &["--fuel", "10000000000", "--deadline-ms", "200"],
    )?
    .expect(11, "spin past its deadline")?;
    let started = Instant::now();
    host.invoke("spin", &json!({}), &["--fuel", "1500000000"])?
        .expect(4, "spin to fuel exhaustion")?;
    let recorded = started.elapsed();
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "echo")?;
    // A replay deadline far shorter than the recorded run took: replay is bounded by fuel only.
    let deadline = (recorded.as_millis() / 10).max(1).to_string();
    let (run, report) = replay_all(
        target,
        &host,
        &[("FEMTOCLAW_LIMITS_DEADLINE_MS", &deadline)],
    )?;
    run.expect(0, "replay")?;
    ensure!(
        statuses(&report) == ["interrupted", "identical", "identical"]
            && report["interrupted"] == json!(1)
            && report["identical"] == json!(2)
            && report["divergent"] == json!(0),
        "a recording ended by its deadline must be reported interrupted and counted neither identical nor divergent, and a {recorded:?} run must replay under a {deadline} ms deadline: {}",
        excerpt(&run.stdout)
    );
    // Bytes changed without a valid signature: an integrity failure before any replay.
    let export = host.files.path().join("replay.export");
    let mut bytes = std::fs::read(&export)
        .map_err(|e| Failure::Failed(format!("cannot read the export: {e}")))?;
    let at = bytes
        .windows(b"spin".len())
        .rposition(|w| w == b"spin")
        .ok_or_else(|| Failure::Failed("the export does not name the function spin".into()))?;
    bytes[at] = b'S';
    let forged = host.file("forged.export", &bytes)?;
    let key = host.ok(&["key", "show"])?;
    let run = host.run(&["replay", &lossy(&forged), "--key", key.trim(), "--json"])?;
    run.expect(8, "replay of an export with one byte changed")?;
    ensure!(
        !run.stdout.contains("divergent\": 1") && !run.stdout.contains("\"status\""),
        "a forged export was replayed: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Determinism.

/// An entry with its invocation number removed.
fn without_invocation(entry: &Json) -> Json {
    let mut entry = entry["entry"].clone();
    if let Some(map) = entry.as_object_mut() {
        map.remove("invocation");
    }
    entry
}

fn same_invocation_same_record(target: &Target) -> Result<(), Failure> {
    let args = json!({ "key": "same", "value": "the same value" });
    let mut consumed = Vec::new();
    let mut records = Vec::new();
    // Two fresh processes, each building its engine, on two data directories.
    for _ in 0..2 {
        let host = guest_host(target, OPEN)?;
        for _ in 0..2 {
            let run = host.invoke("remember", &args, &["--json"])?;
            run.expect(0, "remember")?;
            consumed.push(run.json()?["fuel"]["consumed"].clone());
        }
        let entries = host.entries()?;
        let n = last_invocation(&entries)?;
        for i in [n - 1, n] {
            records.push(
                of_invocation(&entries, i)
                    .into_iter()
                    .map(without_invocation)
                    .collect::<Vec<_>>(),
            );
        }
        let run = host.invoke("spin", &json!({}), &["--fuel", "123457", "--json"])?;
        run.expect(4, "spin on 123457 fuel")?;
        let exhausted = host.entries()?;
        let n = last_invocation(&exhausted)?;
        ensure!(
            of_invocation(&exhausted, n)
                .last()
                .is_some_and(|e| e["entry"]["fuel_consumed"] == json!(123_457)),
            "a run that exhausts a budget of 123457 did not consume exactly it"
        );
    }
    ensure!(
        consumed.iter().all(|c| c == &consumed[0] && c.is_u64()),
        "the same invocation consumed different fuel: {consumed:?}"
    );
    ensure!(
        records.iter().all(|r| r == &records[0]),
        "recording the same invocation again gave other entries (invocation numbers aside): {}",
        excerpt(&format!("{records:?}"))
    );
    // On one engine: a server invoking the same function twice.
    let server = target.server(Some(OPEN))?;
    if let Some(host) = &server.host {
        host.install()?;
    }
    let body = json!({ "capability": "conformance", "function": "remember", "args": args });
    let mut served = Vec::new();
    for _ in 0..2 {
        let response = server.post("/v1/invoke", &body)?;
        response.expect(200, "POST /v1/invoke remember")?;
        let answer = response.json()?;
        ensure!(
            answer["result"] == json!({ "ok": null }),
            "on one engine remember answered {answer}"
        );
        served.push(answer["fuel"]["consumed"].clone());
    }
    ensure!(
        served.iter().all(|c| c == &consumed[0]),
        "on one engine the same invocation consumed {served:?}, where fresh engines consumed {}",
        consumed[0]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Components: their functions, descriptions and schemas.

/// `capability inspect` of `spec` (for `principal`, when given), as JSON.
fn inspect(host: &Host, spec: &str, principal: Option<&str>) -> Result<Json, Failure> {
    let mut args = vec!["capability", "inspect", spec];
    if let Some(principal) = principal {
        args.extend(["--principal", principal]);
    }
    let run = host.run(&args)?;
    run.expect(0, &args.join(" "))?;
    run.json()
}

/// The guest's functions and their WIT doc comments.
const GUEST_DOCS: [(&str, &str); 7] = [
    ("echo", "Returns `text` unchanged."),
    ("add", "`a + b`, wrapping."),
    ("divide", "`a / b`; traps when `b` is 0."),
    (
        "spin",
        "Loops forever: ends only when the fuel or the deadline does.",
    ),
    ("note", "Logs `message` at info level; returns its length."),
    (
        "remember",
        "Stores `value` under `key` in namespace `conformance`.",
    ),
    (
        "recall",
        "The value under `key` in namespace `conformance`, if any.",
    ),
];

/// The function `name` of an inspection.
fn function<'a>(inspected: &'a Json, name: &str) -> Result<&'a Json, Failure> {
    inspected["functions"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .ok_or_else(|| Failure::Failed(format!("capability inspect lists no function {name}")))
}

fn capability_inspect(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let inspected = inspect(&host, "conformance", None)?;
    for (field, want) in [
        ("name", json!("conformance")),
        ("version", json!("1.0.0")),
        (
            "description",
            json!("The compliance suite's own capability."),
        ),
        ("publisher", json!("")),
        ("fuel", json!(50_000_000)),
        ("sha256", json!(sha256_hex(GUEST))),
        ("source", json!("installed")),
    ] {
        ensure!(
            inspected[field] == want,
            "capability inspect gives {field} {} where {want} is required",
            inspected[field]
        );
    }
    let stored = std::fs::read(package_dir(&host, "conformance", "1.0.0").join("capability.toml"))
        .map_err(|e| Failure::Failed(format!("cannot read the installed manifest: {e}")))?;
    ensure!(
        inspected["manifest_sha256"] == sha256_hex(&stored).as_str(),
        "capability inspect's manifest_sha256 is not the installed manifest's digest"
    );
    let names: Vec<&str> = inspected["functions"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        names == GUEST_DOCS.map(|(n, _)| n),
        "capability inspect lists the functions {names:?}"
    );
    for (name, doc) in GUEST_DOCS {
        let f = function(&inspected, name)?;
        ensure!(
            f["description"] == doc,
            "{name}'s description is {} where its WIT doc comment is {doc:?}",
            f["description"]
        );
        ensure!(
            f["params"].is_array() && f["result_schema"].is_object(),
            "{name} has no typed parameters or result_schema: {f}"
        );
    }
    let schema = |properties: Json, required: Json| {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    };
    let s64 = json!({ "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX });
    let u32 = json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX });
    for (name, params, want) in [
        (
            "echo",
            json!([{ "name": "text", "type": "string" }]),
            schema(json!({ "text": { "type": "string" } }), json!(["text"])),
        ),
        (
            "add",
            json!([{ "name": "a", "type": "s64" }, { "name": "b", "type": "s64" }]),
            schema(json!({ "a": s64, "b": s64 }), json!(["a", "b"])),
        ),
        (
            "divide",
            json!([{ "name": "a", "type": "u32" }, { "name": "b", "type": "u32" }]),
            schema(json!({ "a": u32, "b": u32 }), json!(["a", "b"])),
        ),
        ("spin", json!([]), schema(json!({}), json!([]))),
    ] {
        let f = function(&inspected, name)?;
        ensure!(
            f["params"] == params,
            "{name}'s typed parameters are {} where {params} is required",
            f["params"]
        );
        ensure!(
            f["args_schema"] == want,
            "{name}'s args_schema is {} where {want} is required",
            f["args_schema"]
        );
    }
    // A variant, an enum and an option: textstats.find.
    let textstats = inspect(&host, "textstats", None)?;
    let case = |c: &str| json!({ "type": "object", "properties": { c: { "type": "string" } }, "required": [c], "additionalProperties": false });
    let want = schema(
        json!({
            "text": { "type": "string" },
            "pattern": { "oneOf": [case("literal"), case("word"), case("prefix")] },
            "case": { "enum": ["sensitive", "insensitive"] },
            "limit": { "anyOf": [{ "type": "null" }, u32] },
        }),
        json!(["text", "pattern", "case"]),
    );
    let find = function(&textstats, "find")?;
    ensure!(
        find["args_schema"] == want,
        "textstats.find's args_schema is {} where {want} is required",
        find["args_schema"]
    );
    // The imports, what is requested and what the policy grants.
    let imports = inspected["imports"].as_array().cloned().unwrap_or_default();
    ensure!(
        imports.contains(&json!("femtoclaw:host/log@0.1.0"))
            && imports.contains(&json!("wasi:keyvalue/store@0.2.0-draft2")),
        "capability inspect does not list the component's imports: {imports:?}"
    );
    let manifest_requests: Json = json!({
        "imports": ["femtoclaw:host/log@0.1.0", "wasi:keyvalue/store@0.2.0-draft2", "femtoclaw:host/keyvalue-prefix@0.1.0"],
        "kv": [{ "namespace": "conformance", "write": true }],
    });
    ensure!(
        inspected["requested"]["imports"] == manifest_requests["imports"]
            && inspected["requested"]["kv"] == manifest_requests["kv"],
        "capability inspect's requested is not the manifest's requests: {}",
        inspected["requested"]
    );
    let granted = &inspected["granted"];
    ensure!(
        granted["principal"] == "FemtoClaw::User::\"local\""
            && granted["policy_digest"]
                .as_str()
                .is_some_and(|d| d.len() == 64)
            && granted["imports"]
                .as_array()
                .is_some_and(|i| i.contains(&json!("femtoclaw:host/log@0.1.0")))
            && granted["refused_imports"] == json!([])
            && granted["scopes"].as_array().is_some_and(|s| s.len() == 2)
            && granted["denied_scopes"] == json!([]),
        "under a policy permitting everything, inspect must grant the local user every requested import and scope: {granted}"
    );
    let other = inspect(&host, "conformance", Some("agent:bot"))?;
    let granted = &other["granted"];
    ensure!(
        granted["principal"] == "FemtoClaw::Agent::\"bot\""
            && granted["imports"] == json!([])
            && granted["scopes"] == json!([])
            && granted["refused_imports"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            && granted["denied_scopes"]
                .as_array()
                .is_some_and(|r| r.len() == 2),
        "for a principal the policy grants nothing, inspect must grant nothing: {granted}"
    );
    // Every function of every embedded capability is described.
    for name in EMBEDDED {
        let inspected = inspect(&host, name, None)?;
        let functions = inspected["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(!functions.is_empty(), "{name} lists no functions");
        for f in functions {
            ensure!(
                f["description"]
                    .as_str()
                    .is_some_and(|d| !d.trim().is_empty()),
                "{name}.{} carries no description",
                f["name"]
            );
        }
    }
    // And the SDK-built guest runs.
    let run = host.invoke("echo", &json!({ "text": "sdk" }), &[])?;
    run.expect(0, "invoke echo")?;
    Ok(())
}

fn capability_docs_section(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let described = inspect(&host, "conformance", None)?;
    ensure!(
        function(&described, "echo")?["description"] == GUEST_DOCS[0].1,
        "echo's description is not its doc comment"
    );
    let stripped = replace_custom_section(GUEST, "femtoclaw:docs", None)
        .ok_or_else(|| Failure::Failed("the suite's guest has no femtoclaw:docs section".into()))?;
    let garbled = replace_custom_section(GUEST, "femtoclaw:docs", Some(b"\xff\xfe{ not docs"))
        .ok_or_else(|| Failure::Failed("the suite's guest has no femtoclaw:docs section".into()))?;
    for (bytes, version, what) in [
        (&stripped, "2.0.0", "without a femtoclaw:docs section"),
        (
            &garbled,
            "3.0.0",
            "with an unreadable femtoclaw:docs section",
        ),
    ] {
        add(
            &host,
            &format!("guest-{version}.wasm"),
            bytes,
            Some(&manifest_as("conformance", version)),
        )?
        .expect(0, &format!("capability add of the guest {what}"))?;
        let spec = format!("conformance@{version}");
        let inspected = inspect(&host, &spec, None)?;
        for (name, _) in GUEST_DOCS {
            let d = &function(&inspected, name)?["description"];
            ensure!(
                d.is_null() || d == "",
                "the guest {what} still describes {name}: {d}"
            );
        }
        let run = host.run(&[
            "invoke",
            &spec,
            "echo",
            "--args",
            r#"{"text":"undocumented"}"#,
        ])?;
        run.expect(0, &format!("invoke of the guest {what}"))?;
        ensure!(
            run.json()? == json!("undocumented"),
            "the guest {what} answered {}",
            excerpt(&run.stdout)
        );
    }
    Ok(())
}

fn unknown_function_lists_exports(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let before = host.entries()?.len();
    let run = host.invoke("no-such-function", &json!({}), &[])?;
    failed(&run, 3, "an unknown function")?;
    names(&run, "an unknown function", &["unknown function"])?;
    let listed = run
        .stderr
        .split_once("exports:")
        .map(|(_, l)| {
            l.split(',')
                .map(|f| f.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    ensure!(
        listed == GUEST_DOCS.map(|(n, _)| n.to_owned()),
        "the refusal must list the exported functions {:?}; it lists {listed:?}",
        GUEST_DOCS.map(|(n, _)| n)
    );
    let entries = host.entries()?;
    ensure!(
        !entries[before..]
            .iter()
            .any(|e| e["entry"]["type"] == "host-call"
                || (e["entry"]["type"] == "invocation-end"
                    && e["entry"]["fuel_consumed"] != json!(0))),
        "an unknown function ran guest code"
    );
    Ok(())
}

fn values_json_conversion(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // A record comes back with its fields in declaration order.
    let run = host.run(&[
        "invoke",
        "textstats",
        "analyze",
        "--args",
        r#"{"text":"One two. Three","top":1}"#,
    ])?;
    run.expect(0, "textstats analyze")?;
    let order = [
        "\"bytes\"",
        "\"characters\"",
        "\"words\"",
        "\"lines\"",
        "\"sentences\"",
        "\"average-word-length\"",
        "\"top-words\"",
    ];
    let at: Vec<Option<usize>> = order.iter().map(|k| run.stdout.find(k)).collect();
    ensure!(
        at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1]),
        "the stats record's keys are not in declaration order {order:?}: {}",
        excerpt(&run.stdout)
    );
    let word = run.stdout.find("\"word\"");
    let count = run.stdout.find("\"count\"");
    ensure!(
        word.is_some() && count.is_some() && word < count,
        "the word-count record's keys are not in declaration order: {}",
        excerpt(&run.stdout)
    );
    // Mismatches name the path inside the parameter.
    for (capability, function, args, message) in [
        (
            "textstats",
            "find",
            json!({ "text": "a", "pattern": { "literal": 3 }, "case": "sensitive" }),
            "argument `pattern.literal`: expected a string, found ",
        ),
        (
            "fetch",
            "get",
            json!({ "url": "http://127.0.0.1:9/", "headers": [{ "name": "a", "value": 1 }] }),
            "argument `headers[0].value`: expected a string, found ",
        ),
        (
            "fetch",
            "get",
            json!({ "url": "http://127.0.0.1:9/", "headers": [{ "name": "a", "value": "b", "extra": 1 }] }),
            "argument `headers[0].extra`: expected ",
        ),
        (
            "fetch",
            "get",
            json!({ "url": "http://127.0.0.1:9/", "headers": [{ "name": "a" }] }),
            "argument `headers[0].value`: expected ",
        ),
    ] {
        let run = host.run(&["invoke", capability, function, "--args", &args.to_string()])?;
        failed(&run, 2, &format!("{capability}.{function} {args}"))?;
        names(&run, &format!("{capability}.{function} {args}"), &[message])?;
    }
    // The arguments object itself: not an object, an unknown parameter, a missing one.
    for (args, needles) in [
        ("[1]", &["JSON object"][..]),
        (r#""text""#, &["JSON object"][..]),
        (r#"{"text":"a","zz":1}"#, &["`zz`"][..]),
        ("{}", &["`text`", "string"][..]),
    ] {
        let run = host.run(&["invoke", "conformance", "echo", "--args", args])?;
        failed(&run, 2, &format!("echo --args {args}"))?;
        names(&run, &format!("echo --args {args}"), needles)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The compile cache.

/// The guest's compile-cache files: `<sha256>-<16 hex>.cwasm` in `<data dir>/cache`.
fn cache_files(host: &Host, sha: &str) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(host.data.path().join("cache")) else {
        return Vec::new();
    };
    read.flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&format!("{sha}-")))
                .and_then(|n| n.strip_suffix(".cwasm"))
                .is_some_and(|k| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Failed(format!("cannot read {}: {e}", path.display())))
}

fn compile_cache(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let sha = sha256_hex(GUEST);
    let echo = |text: &str| -> Result<(), Failure> {
        let run = host.invoke("echo", &json!({ "text": text }), &[])?;
        run.expect(0, "invoke echo")?;
        ensure!(
            run.json()? == json!(text),
            "echo answered {} where {text:?} is required",
            excerpt(&run.stdout)
        );
        Ok(())
    };
    echo("compiled")?;
    let files = cache_files(&host, &sha);
    ensure!(
        files.len() == 1,
        "after a call, <data dir>/cache must hold one {sha}-<16 hex>.cwasm; it holds {files:?}"
    );
    let file = files[0].clone();
    let compiled = read(&file)?;
    let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    // Another process: another engine, which loads the cached code.
    echo("loaded")?;
    ensure!(
        read(&file)? == compiled
            && std::fs::metadata(&file).and_then(|m| m.modified()).ok() == modified,
        "a second engine did not load the cached code: the cache file was rewritten"
    );
    // Cut short: recompiled, replaced, and the call runs as without a cache.
    std::fs::write(&file, &compiled[..compiled.len() / 2])
        .map_err(|e| Failure::Failed(format!("cannot truncate the cache file: {e}")))?;
    echo("truncated")?;
    ensure!(
        read(&file)?.len() == compiled.len(),
        "a truncated cache file was not replaced"
    );
    // Valid code of another component under the guest's name: never loaded.
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])?
        .expect(0, "hello.greet")?;
    let cache = host.data.path().join("cache");
    let other = std::fs::read_dir(&cache)
        .map_err(|e| Failure::Failed(format!("cannot list the cache: {e}")))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p != &file && p.extension().is_some_and(|x| x == "cwasm"))
        .ok_or_else(|| Failure::Failed("hello left no cache file".into()))?;
    let hello = read(&other)?;
    std::fs::write(&file, &hello)
        .map_err(|e| Failure::Failed(format!("cannot overwrite the cache file: {e}")))?;
    echo("not hello")?;
    ensure!(
        read(&file)? != hello,
        "another component's cached code was kept under the guest's name"
    );
    // Code tagged under another key: a new cache key makes every file unusable.
    let key_file = host.data.path().join("keys").join("cache.key");
    let key = read(&key_file)?;
    ensure!(
        key.len() == 32,
        "keys/cache.key holds {} bytes, not 32",
        key.len()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        ensure!(mode == 0o600, "keys/cache.key has mode {mode:o}, not 600");
    }
    ensure!(
        !key_file.starts_with(&cache),
        "the cache key is kept inside the cache"
    );
    let elsewhere = guest_host(target, OPEN)?;
    elsewhere
        .invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "echo on another data directory")?;
    let other_key = read(&elsewhere.data.path().join("keys").join("cache.key"))?;
    ensure!(
        other_key != key,
        "two data directories were given the same cache key"
    );
    let tagged = read(&file)?;
    std::fs::write(&key_file, &other_key)
        .map_err(|e| Failure::Failed(format!("cannot replace the cache key: {e}")))?;
    echo("another key")?;
    ensure!(
        read(&file)? != tagged,
        "code tagged under another key was loaded, not recompiled and replaced"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A server on the data directory.

/// `serve --listen 127.0.0.1:0` on a host's data directory, stopped when dropped.
pub(super) struct Serving {
    child: std::process::Child,
    pub(super) url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn serve(host: &Host) -> Result<Serving, Failure> {
    use std::io::BufRead as _;
    let mut child = host
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot start serve: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    let url = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let serving = Serving {
        child,
        url: url.clone().unwrap_or_default(),
    };
    ensure!(
        url.is_some(),
        "serve --listen 127.0.0.1:0 must first print `listening on URL`; it printed {:?}",
        line.trim()
    );
    Ok(serving)
}

/// `POST /v1/invoke` of `body` with `token`: the status.
fn post_invoke(url: &str, token: &str, body: &Json) -> Result<(u16, String), Failure> {
    let response = crate::target::Server::client()
        .post(format!("{url}/v1/invoke"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map_err(|e| Failure::Failed(format!("/v1/invoke: no answer: {e}")))?;
    let status = response.status().as_u16();
    Ok((status, response.text().unwrap_or_default()))
}

fn admin_channel(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let token = host.ok(&["token", "create", "--principal", "user:local"])?;
    let token = token.trim();
    let serving = serve(&host)?;
    let socket = host.data.path().join("admin.sock");
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        let meta = std::fs::metadata(&socket)
            .map_err(|e| Failure::Failed(format!("a serving host has no admin.sock: {e}")))?;
        ensure!(
            meta.file_type().is_socket() && meta.permissions().mode() & 0o777 == 0o600,
            "admin.sock is not a socket of mode 0600 (mode {:o})",
            meta.permissions().mode() & 0o777
        );
    }
    let echo =
        json!({ "capability": "conformance", "function": "echo", "args": { "text": "served" } });
    let (status, _) = post_invoke(&serving.url, token, &echo)?;
    ensure!(
        status == 404,
        "an uninstalled capability answered HTTP {status}, not 404"
    );
    // Installed while the server runs, through it: the same answer as locally.
    let local = target.host()?;
    let expected = add(&local, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?;
    expected.expect(0, "capability add on a data directory no server holds")?;
    let run = add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?;
    run.expect(0, "capability add while a server holds the data directory")?;
    ensure!(
        run.stdout == expected.stdout,
        "capability add through the server printed {:?}, locally {:?}",
        run.stdout.trim(),
        expected.stdout.trim()
    );
    let (status, text) = post_invoke(&serving.url, token, &echo)?;
    ensure!(
        status == 200 && text.contains("served"),
        "the capability added while the server runs is not served at the next request: HTTP {status} {}",
        excerpt(&text)
    );
    // A second process may not open the ledger the server holds.
    let run = host.run(&["kv", "list"])?;
    ensure!(
        run.code != 0
            && run.stderr.contains(&serving.child.id().to_string())
            && run.stderr.contains("serve"),
        "a second process opening the held ledger must be refused naming pid {} and what it does: exit {}, {}",
        serving.child.id(),
        run.code,
        excerpt(&run.stderr)
    );
    // Removed: unknown from the next request, over HTTP and on the command line.
    let run = host.run(&["capability", "remove", "conformance"])?;
    run.expect(0, "capability remove while serving")?;
    ensure!(
        run.stdout == expected.stdout,
        "capability remove printed {:?}, not the removed one's line {:?}",
        run.stdout.trim(),
        expected.stdout.trim()
    );
    let (status, _) = post_invoke(&serving.url, token, &echo)?;
    ensure!(
        status == 404,
        "a removed capability answered HTTP {status}, not 404"
    );
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    failed(&run, 3, "invoke of a removed capability")?;
    let run = host.run(&["capability", "remove", "hello"])?;
    failed(&run, 2, "capability remove of an embedded capability")?;
    let run = local.run(&["capability", "remove", "hello"])?;
    failed(
        &run,
        2,
        "capability remove hello on a data directory no server holds",
    )?;
    let run = local.run(&["capability", "remove", "conformance"])?;
    run.expect(0, "capability remove locally")?;
    let run = local.invoke("echo", &json!({ "text": "x" }), &[])?;
    failed(&run, 3, "invoke of a capability removed locally")?;
    Ok(())
}

fn remote_same_exit_codes(target: &Target) -> Result<(), Failure> {
    let server = target.server(Some(OPEN))?;
    if let Some(host) = &server.host {
        host.install()?;
    }
    let local = guest_host(target, OPEN)?;
    let client = target.host()?;
    let calls: [(&str, &str, &[&str]); 6] = [
        ("echo", r#"{"text":"remote"}"#, &[]),
        ("echo", r#"{"text":1}"#, &[]),
        ("no-such-function", "{}", &[]),
        ("divide", r#"{"a":1,"b":0}"#, &[]),
        ("spin", "{}", &["--fuel", "100000"]),
        ("add", r#"{"a":40,"b":2}"#, &["--fuel", "0"]),
    ];
    for (function, args, extra) in calls {
        let mut local_args = vec!["invoke", "conformance", function, "--args", args];
        local_args.extend_from_slice(extra);
        let here = local.run(&local_args)?;
        let mut remote_args = local_args.clone();
        remote_args.extend(["--remote", &server.url, "--token", &server.token]);
        let there = client.run(&remote_args)?;
        ensure!(
            there.code == here.code,
            "invoke {function} {args} {extra:?} exits {} through --remote where locally it exits {}: {}",
            there.code,
            here.code,
            excerpt(&there.stderr)
        );
        if here.code == 0 {
            ensure!(
                there.stdout == here.stdout,
                "invoke --remote printed {:?} where locally {:?}",
                there.stdout.trim(),
                here.stdout.trim()
            );
        }
    }
    let unknown = client.run(&[
        "invoke",
        "no-such-capability",
        "echo",
        "--remote",
        &server.url,
        "--token",
        &server.token,
    ])?;
    failed(&unknown, 3, "invoke --remote of an unknown capability")?;
    Ok(())
}

fn http_policy_reread(target: &Target) -> Result<(), Failure> {
    let other = OPEN.replace("User::\"local\"", "User::\"someone-else\"");
    let server = target.server(Some(&other))?;
    let Some(host) = &server.host else {
        return Err(Failure::NotApplicable(
            "the server's policy is not the suite's".into(),
        ));
    };
    let greet = json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } });
    let response = server.post("/v1/invoke", &greet)?;
    response.expect(403, "a call the server's policy does not permit")?;
    host.policy(&format!("// now permitted\n{OPEN}"))?;
    let response = server.post("/v1/invoke", &greet)?;
    response.expect(
        200,
        "the same call once the policy file permits it, without a restart",
    )?;
    host.policy(&format!("// denied again, a longer file\n{other}"))?;
    let response = server.post("/v1/invoke", &greet)?;
    response.expect(
        403,
        "the same call once the policy file no longer permits it",
    )?;
    Ok(())
}
