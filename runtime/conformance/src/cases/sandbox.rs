//! Cases of the sandbox area: what a capability's component may import and how the host refuses
//! the rest, what it makes of bytes that are not a component, traps and limits, the virtualized
//! WASI context, the engine digest, the compile cache's authenticity, sockets, configuration
//! values, and the HTTP interface seen from a loopback peer (specifications 4, 6, 10, 12, 13
//! and 19).
//!
//! Three kinds of component are used: the suite's guest, whose `echo` runs a probe of the
//! virtualized context for a text beginning with SOH `probe:` (see the guest); the guest's own
//! bytes with an import name changed in place to one of the same length (an import the host
//! does not provide, or a compatible version of one it does); and small components written here
//! byte by byte, for what the guest cannot import or export without changing what every other
//! case relies on (sockets, configuration, interface exports, resources, tables).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::execution::{add, serve};
use super::{OPEN, call, err, guest_host, recorded_bytes, replays, write};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, GUEST, GUEST_MANIFEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.sandbox.unprovided-imports-refused",
        verifies: &["FC-SEC-1901", "FC-CAP-1012"],
        run: unprovided_imports_refused,
    },
    Case {
        name: "cli.sandbox.semver-compatible-imports",
        verifies: &["FC-CAP-1011"],
        run: semver_compatible_imports,
    },
    Case {
        name: "cli.sandbox.not-a-component",
        verifies: &["FC-SEC-1919", "FC-CAP-1016"],
        run: not_a_component,
    },
    Case {
        name: "cli.sandbox.oversized-component-not-read",
        verifies: &["FC-CAP-1014"],
        run: oversized_component_not_read,
    },
    Case {
        name: "cli.sandbox.inspect-lists-every-import",
        verifies: &["FC-SEC-1918"],
        run: inspect_lists_every_import,
    },
    Case {
        name: "cli.sandbox.trap-code",
        verifies: &["FC-SEC-1917"],
        run: trap_code,
    },
    Case {
        name: "cli.sandbox.zero-fuel-refused",
        verifies: &["FC-SEC-1921"],
        run: zero_fuel_refused,
    },
    Case {
        name: "cli.sandbox.memory-limit-named",
        verifies: &["FC-SEC-1911"],
        run: memory_limit_named,
    },
    Case {
        name: "cli.engine.digest-of-settings",
        verifies: &["FC-EXEC-0402"],
        run: engine_digest_of_settings,
    },
    Case {
        name: "cli.sandbox.compile-cache-tag",
        verifies: &["FC-SEC-1915"],
        run: compile_cache_tag,
    },
    Case {
        name: "cli.sandbox.http-send-recorded",
        verifies: &["FC-CAP-1209", "FC-SEC-1310", "FC-SEC-1314"],
        run: http_send_recorded,
    },
    Case {
        name: "cli.sandbox.http-caps-and-deadline",
        verifies: &["FC-CAP-1218", "FC-EXEC-0608"],
        run: http_caps_and_deadline,
    },
    Case {
        name: "cli.sandbox.replay-touches-nothing",
        verifies: &["FC-CAP-1210"],
        run: replay_touches_nothing,
    },
    Case {
        name: "cli.sandbox.ungranted-imports-named",
        verifies: &["FC-SEC-1902"],
        run: ungranted_imports_named,
    },
    Case {
        name: "cli.sandbox.denial-text",
        verifies: &["FC-SEC-1317"],
        run: denial_text,
    },
    Case {
        name: "http.engine.prepared-once",
        verifies: &["FC-EXEC-0411"],
        run: prepared_once,
    },
    Case {
        name: "cli.sandbox.host-faults-named",
        verifies: &["FC-SEC-1914", "FC-EXEC-0613", "FC-CAP-1223"],
        run: host_faults_named,
    },
    Case {
        name: "cli.sandbox.clocks-and-random-recorded",
        verifies: &["FC-CAP-1203"],
        run: clocks_and_random_recorded,
    },
    Case {
        name: "cli.sandbox.output-captured",
        verifies: &["FC-SEC-1905", "FC-CAP-1202", "FC-EXEC-0609"],
        run: output_captured,
    },
    Case {
        name: "cli.sandbox.empty-context",
        verifies: &["FC-SEC-1906", "FC-CAP-1213"],
        run: empty_context,
    },
    Case {
        name: "cli.sandbox.timers-trap",
        verifies: &["FC-SEC-1908", "FC-CAP-1224"],
        run: timers_trap,
    },
    Case {
        name: "cli.sandbox.stack-limit",
        verifies: &["FC-SEC-1912", "FC-EXEC-0611"],
        run: stack_limit,
    },
    Case {
        name: "cli.sandbox.trap-codes",
        verifies: &["FC-EXEC-0415"],
        run: trap_codes,
    },
    Case {
        name: "http.sandbox.fresh-store",
        verifies: &["FC-SEC-1907"],
        run: fresh_store,
    },
    Case {
        name: "cli.sandbox.kv-listing-pages",
        verifies: &["FC-CAP-1212"],
        run: kv_listing_pages,
    },
    Case {
        name: "http.gate.host-call-spans",
        verifies: &["FC-SEC-1315"],
        run: host_call_spans,
    },
    Case {
        name: "cli.sandbox.writes-not-through-streams",
        verifies: &["FC-CAP-1225"],
        run: writes_not_through_streams,
    },
    Case {
        name: "cli.sandbox.sockets-need-a-grant",
        verifies: &["FC-SEC-1909"],
        run: sockets_need_a_grant,
    },
    Case {
        name: "cli.sandbox.socket-creation-refused",
        verifies: &["FC-SEC-1910", "FC-SEC-1316", "FC-CAP-1220"],
        run: socket_creation_refused,
    },
    Case {
        name: "cli.sandbox.export-names",
        verifies: &["FC-CAP-1003", "FC-EXEC-0407"],
        run: export_names,
    },
    Case {
        name: "http.sandbox.resource-functions",
        verifies: &["FC-CAP-1017", "FC-CAP-1008", "FC-EXEC-0711"],
        run: resource_functions,
    },
    Case {
        name: "cli.sandbox.table-limit",
        verifies: &["FC-EXEC-0614"],
        run: table_limit,
    },
    Case {
        name: "cli.sandbox.limit-failures-recorded-by-kind",
        verifies: &["FC-EXEC-0616"],
        run: limit_failures_recorded_by_kind,
    },
    Case {
        name: "cli.sandbox.config-values",
        verifies: &["FC-CAP-1205", "FC-CAP-1211"],
        run: config_values,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `bytes` with every occurrence of `from` replaced by `to` (of the same length), and how many
/// there were.
fn patch(bytes: &[u8], from: &str, to: &str) -> (Vec<u8>, usize) {
    assert_eq!(from.len(), to.len(), "a patch keeps the length");
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = bytes.to_vec();
    let mut count = 0;
    let mut at = 0;
    while at + from.len() <= out.len() {
        if &out[at..at + from.len()] == from {
            out[at..at + from.len()].copy_from_slice(to);
            count += 1;
            at += from.len();
        } else {
            at += 1;
        }
    }
    (out, count)
}

/// The guest with `from` renamed `to` everywhere; fails when the guest does not hold `from`.
fn renamed(from: &str, to: &str) -> Result<Vec<u8>, Failure> {
    let (bytes, count) = patch(GUEST, from, to);
    ensure!(count > 0, "the suite's guest does not hold {from:?}");
    Ok(bytes)
}

/// The suite guest's manifest as capability `name`, importing `imports`.
fn manifest_with(name: &str, imports: &[&str]) -> String {
    let listed: Vec<String> = imports.iter().map(|i| format!("{i:?}")).collect();
    format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\nfuel = 50_000_000\n\n[requests]\nimports = [{}]\nkv = [{{ namespace = \"conformance\", write = true }}]\n",
        listed.join(", ")
    )
}

/// The guest's own imports, as its manifest lists them.
const IMPORTS: [&str; 3] = [
    "femtoclaw:host/log@0.1.0",
    "wasi:keyvalue/store@0.2.0-draft2",
    "femtoclaw:host/keyvalue-prefix@0.1.0",
];

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
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

/// The names `capability list --json` shows.
fn listed(host: &Host) -> Result<Vec<String>, Failure> {
    let run = host.run(&["capability", "list", "--json"])?;
    run.expect(0, "capability list --json")?;
    Ok(run
        .json()?
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["manifest"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Writes `<data dir>/femtoclaw.toml`.
fn write_config(host: &Host, text: &str) -> Result<(), Failure> {
    std::fs::write(host.data.path().join("femtoclaw.toml"), text)
        .map_err(|e| Failure::Failed(format!("cannot write the configuration: {e}")))
}

/// The entries of invocation `n`, in ledger order.
pub(super) fn of_invocation(entries: &[Json], n: u64) -> Vec<&Json> {
    entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["invocation"].as_u64() == Some(n))
        .collect()
}

/// The invocation number of the last `invocation-start`.
pub(super) fn last_invocation(entries: &[Json]) -> Result<u64, Failure> {
    entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .and_then(|e| e["entry"]["invocation"].as_u64())
        .ok_or_else(|| Failure::Failed("the ledger holds no invocation-start".into()))
}

/// How many invocations the ledger starts.
fn started(host: &Host) -> Result<usize, Failure> {
    Ok(host
        .entries()?
        .iter()
        .filter(|e| e["entry"]["type"] == "invocation-start")
        .count())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Failed(format!("cannot read {}: {e}", path.display())))
}

/// Runs a command of `host` with extra environment variables.
fn run_env(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Result<Run, Failure> {
    let out = host
        .command(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Failure::Failed(format!("cannot run {}: {e}", args.join(" "))))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A LEB128 unsigned number at `at`: its value and the position after it.
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

/// A component's top-level sections: `(id, payload start, payload end)`.
fn sections(wasm: &[u8]) -> Option<Vec<(u8, usize, usize)>> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" || wasm[4..8] != [0x0d, 0x00, 0x01, 0x00] {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        let (size, start) = read_leb(wasm, at + 1)?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        if end > wasm.len() {
            return None;
        }
        out.push((id, start, end));
        at = end;
    }
    Some(out)
}

/// The names of a component's top-level imports, read from its import sections (id 10).
fn import_names(wasm: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for (id, start, end) in sections(wasm)? {
        if id != 10 {
            continue;
        }
        let payload = &wasm[..end];
        let (count, mut at) = read_leb(payload, start)?;
        for _ in 0..count {
            // importname': 0x00 name, or 0x01 name versionsuffix.
            let form = *payload.get(at)?;
            let (len, from) = read_leb(payload, at + 1)?;
            let to = from + usize::try_from(len).ok()?;
            names.push(String::from_utf8(payload.get(from..to)?.to_vec()).ok()?);
            at = to;
            if form == 0x01 {
                let (len, from) = read_leb(payload, at)?;
                at = from + usize::try_from(len).ok()?;
            }
            // externdesc: a sort and an index, or a bound.
            let sort = *payload.get(at)?;
            at += 1;
            match sort {
                0x00 => {
                    at += 1;
                    at = read_leb(payload, at)?.1;
                }
                0x01 | 0x04 | 0x05 => at = read_leb(payload, at)?.1,
                0x02 | 0x03 => {
                    let bound = *payload.get(at)?;
                    at += 1;
                    if !(sort == 0x03 && bound == 0x01) {
                        at = read_leb(payload, at)?.1;
                    }
                }
                _ => return None,
            }
        }
    }
    Some(names)
}

// ---------------------------------------------------------------------------------------------
// Specifications 10 and 19: what links.

fn unprovided_imports_refused(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    // Two interfaces no host provides, one function of an interface it provides.
    let bytes = renamed("femtoclaw:host/log@0.1.0", "femtoclaw:host/lox@0.1.0")?;
    let (bytes, count) = patch(
        &bytes,
        "wasi:random/random@0.2.12",
        "wasi:random/randon@0.2.12",
    );
    ensure!(
        count > 0,
        "the suite's guest does not import wasi:random/random"
    );
    let (bytes, count) = patch(
        &bytes,
        "[method]bucket.list-keys",
        "[method]bucket.list-keyz",
    );
    ensure!(
        count > 0,
        "the suite's guest does not import bucket.list-keys"
    );
    let imports = [
        "femtoclaw:host/lox@0.1.0",
        "wasi:keyvalue/store@0.2.0-draft2",
    ];
    let run = add(
        &host,
        "unprovided.wasm",
        &bytes,
        Some(&manifest_with("unprovided", &imports)),
    )?;
    failed(
        &run,
        7,
        "capability add of a component with unprovided imports",
    )?;
    names(
        &run,
        "capability add of a component with unprovided imports",
        &[
            "`femtoclaw:host/lox@0.1.0`",
            "`wasi:random/randon@0.2.12`",
            "`wasi:keyvalue/store@0.2.0-draft2#[method]bucket.list-keyz`",
        ],
    )?;
    ensure!(
        !run.stderr.contains("`wasi:keyvalue/store@0.2.0-draft2`")
            && !run.stderr.contains("[method]bucket.get`"),
        "the refusal names the provided wasi:keyvalue/store as unprovided: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        !listed(&host)?.iter().any(|n| n == "unprovided"),
        "a component refused for its imports was installed"
    );
    let run = host.run(&["invoke", "unprovided", "echo", "--args", r#"{"text":"x"}"#])?;
    ensure!(
        run.code != 0 && run.stdout.trim().is_empty(),
        "the refused component answered an invocation: exit {}, {}",
        run.code,
        excerpt(&run.stdout)
    );
    ensure!(
        started(&host)? == 0,
        "a component refused for its imports started an invocation"
    );
    // The unprovided import alone, the rest of the component provided: still refused, named.
    let bytes = renamed("femtoclaw:host/log@0.1.0", "femtoclaw:nohost/l@0.1.0")?;
    let run = add(
        &host,
        "elsewhere.wasm",
        &bytes,
        Some(&manifest_with(
            "elsewhere",
            &["femtoclaw:nohost/l@0.1.0", IMPORTS[1], IMPORTS[2]],
        )),
    )?;
    failed(
        &run,
        7,
        "capability add of a component importing one unprovided interface",
    )?;
    names(
        &run,
        "capability add of a component importing one unprovided interface",
        &["`femtoclaw:nohost/l@0.1.0`"],
    )?;
    ensure!(
        !run.stderr.contains("keyvalue"),
        "the refusal names provided imports: {}",
        excerpt(&run.stderr)
    );
    // The guest itself installs and runs on the same host.
    add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?
        .expect(0, "capability add of the guest")?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "invoke echo of the guest")?;
    Ok(())
}

fn semver_compatible_imports(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    // A later patch of femtoclaw:host/log@0.1.0: the same minor of a 0.x interface, linked.
    let bytes = renamed("femtoclaw:host/log@0.1.0", "femtoclaw:host/log@0.1.7")?;
    add(
        &host,
        "patch.wasm",
        &bytes,
        Some(&manifest_with(
            "patch",
            &["femtoclaw:host/log@0.1.7", IMPORTS[1], IMPORTS[2]],
        )),
    )?
    .expect(
        0,
        "capability add of a component importing femtoclaw:host/log@0.1.7",
    )?;
    let run = host.run(&[
        "invoke",
        "patch",
        "note",
        "--args",
        r#"{"message":"semver"}"#,
        "--json",
    ])?;
    run.expect(0, "note through femtoclaw:host/log@0.1.7")?;
    let out = run.json()?;
    ensure!(
        out["result"] == json!(6)
            && out["logs"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["message"] == "semver")),
        "a log call through a compatible version must reach the host's log: {}",
        excerpt(&run.stdout)
    );
    // Another minor of 0.x, and another major: not compatible, so not provided.
    for (version, what) in [
        ("0.2.0", "another minor of 0.x"),
        ("1.1.0", "another major"),
    ] {
        let name = format!("femtoclaw:host/log@{version}");
        let bytes = renamed("femtoclaw:host/log@0.1.0", &name)?;
        let run = add(
            &host,
            "incompatible.wasm",
            &bytes,
            Some(&manifest_with(
                "incompatible",
                &[&name, IMPORTS[1], IMPORTS[2]],
            )),
        )?;
        failed(
            &run,
            7,
            &format!("capability add importing {name} ({what})"),
        )?;
        names(
            &run,
            &format!("an import of {name}"),
            &[&format!("`{name}`")],
        )?;
    }
    ensure!(
        !listed(&host)?.iter().any(|n| n == "incompatible"),
        "a component importing an incompatible version was installed"
    );
    Ok(())
}

/// The guest with its `femtoclaw:docs` custom section's payload replaced by `payload`.
fn with_docs(payload: &[u8]) -> Option<Vec<u8>> {
    // The section sits in a core module nested in the component: find its name, rewrite the
    // enclosing sizes. Simpler and as good for the case: append a second, malformed section
    // after blanking the name of the original (same length, so no size changes).
    let (blanked, count) = patch(GUEST, "femtoclaw:docs", "femtoclaw:xxxx");
    if count == 0 {
        return None;
    }
    let name = b"femtoclaw:docs";
    let mut body = Vec::new();
    body.extend_from_slice(&leb(name.len() as u64));
    body.extend_from_slice(name);
    body.extend_from_slice(payload);
    let mut out = blanked;
    out.push(0);
    out.extend_from_slice(&leb(body.len() as u64));
    out.extend_from_slice(&body);
    Some(out)
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

fn not_a_component(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cut = GUEST[..GUEST.len() / 2].to_vec();
    let short = GUEST[..GUEST.len() - 1].to_vec();
    let mut garbage = GUEST[..8].to_vec();
    garbage.extend_from_slice(b"\x01\xff\xff\xff\x0fnot a section");
    // Not a component at all: refused as such before anything is compiled.
    for (file, bytes, what, message) in [
        (
            "text.wasm",
            b"this is not a component".to_vec(),
            "text",
            "is not a WebAssembly component",
        ),
        (
            "core.wasm",
            core_module,
            "a core module",
            "is not a WebAssembly component",
        ),
        // A component's header, then bytes that do not compile.
        (
            "cut.wasm",
            cut,
            "the guest cut in half",
            "cannot compile component",
        ),
        (
            "short.wasm",
            short,
            "the guest without its last byte",
            "cannot compile component",
        ),
        (
            "garbage.wasm",
            garbage,
            "a component header and garbage",
            "cannot compile component",
        ),
    ] {
        let run = add(
            &host,
            file,
            &bytes,
            Some(&manifest_with("broken", &IMPORTS)),
        )?;
        ensure!(
            run.code != 0 && run.code != 101 && !run.stderr.contains("panicked"),
            "capability add of {what} must be refused as an error, not a crash: exit {}, {}",
            run.code,
            excerpt(&run.stderr)
        );
        failed(&run, run.code, &format!("capability add of {what}"))?;
        names(&run, &format!("capability add of {what}"), &[message])?;
    }
    ensure!(
        !listed(&host)?.iter().any(|n| n == "broken"),
        "bytes that are not a component were installed"
    );
    // A docs section that does not read: ignored, the functions described by nothing, and run.
    for (payload, what) in [
        (&b"{\"echo\": \"cut sh"[..], "JSON cut short"),
        (
            &b"{\"echo\": 5}"[..],
            "JSON that is not an object of strings",
        ),
        (&[0xff, 0xfe, 0x00][..], "bytes that are not UTF-8"),
    ] {
        let bytes = with_docs(payload)
            .ok_or_else(|| Failure::Failed("the guest has no femtoclaw:docs section".into()))?;
        let name = "undocumented";
        let run = add(
            &host,
            "undocumented.wasm",
            &bytes,
            Some(&manifest_with(name, &IMPORTS)),
        )?;
        run.expect(
            0,
            &format!("capability add of the guest with a docs section of {what}"),
        )?;
        let inspected = host.run(&["capability", "inspect", name])?;
        inspected.expect(
            0,
            &format!("capability inspect with a docs section of {what}"),
        )?;
        let inspected = inspected.json()?;
        let functions = inspected["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(
            functions.len() == 7
                && functions
                    .iter()
                    .all(|f| f["description"].as_str().is_none_or(|d| d.is_empty())),
            "a docs section of {what} must be ignored: every function listed, none described: {}",
            Json::Array(functions)
        );
        let run = host.run(&["invoke", name, "echo", "--args", r#"{"text":"still"}"#])?;
        run.expect(
            0,
            &format!("echo of a component with a docs section of {what}"),
        )?;
        ensure!(
            run.json()? == json!("still"),
            "echo answered {}",
            excerpt(&run.stdout)
        );
        host.run(&["capability", "remove", name])?;
    }
    Ok(())
}

fn oversized_component_not_read(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // A sparse file of 64 GiB: reading it into memory would take far longer than the case
    // allows, and more memory than the machine has.
    let path = host.files.path().join("huge.wasm");
    let file = std::fs::File::create(&path)
        .map_err(|e| Failure::Failed(format!("cannot create the sparse file: {e}")))?;
    file.set_len(64 << 30)
        .map_err(|e| Failure::NotApplicable(format!("cannot make a sparse file of 64 GiB: {e}")))?;
    drop(file);
    let manifest = host.file("huge.toml", manifest_with("huge", &IMPORTS).as_bytes())?;
    let mut child = host
        .command(&[
            "capability",
            "add",
            &lossy(&path),
            "--manifest",
            &lossy(&manifest),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot run capability add: {e}")))?;
    let begun = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if begun.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Failed(
                    "capability add of a 64 GiB file did not end within 20 s: it reads the bytes instead of refusing the size".into(),
                ));
            }
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr,
    };
    failed(&run, 2, "capability add of a component of 64 GiB")?;
    names(
        &run,
        "capability add of a component of 64 GiB",
        &["68719476736", "67108864"],
    )?;
    ensure!(
        !listed(&host)?.iter().any(|n| n == "huge"),
        "a component over 64 MiB was installed"
    );
    Ok(())
}

fn inspect_lists_every_import(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let section = import_names(GUEST).ok_or_else(|| {
        Failure::Failed("the suite cannot read its guest's import section".into())
    })?;
    let run = host.run(&["capability", "inspect", "conformance"])?;
    run.expect(0, "capability inspect conformance")?;
    let inspected = run.json()?;
    let listed: Vec<String> = inspected["imports"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for name in &listed {
        ensure!(
            section.contains(name),
            "capability inspect lists {name}, which the component does not import (it imports {section:?})"
        );
    }
    for import in [
        "femtoclaw:host/log@0.1.0",
        "wasi:keyvalue/store@0.2.0-draft2",
    ] {
        ensure!(
            listed.iter().any(|l| l == import),
            "capability inspect does not list the import {import}: {listed:?}"
        );
    }
    // Each import of the section it leaves out must need nothing from the host: renamed to an
    // interface no host provides, the component still installs. Each it lists is needed:
    // renamed, the component is refused naming it.
    let unlisted: Vec<&String> = section.iter().filter(|n| !listed.contains(n)).collect();
    let mut probes: Vec<(&String, bool)> = unlisted.iter().map(|n| (*n, false)).collect();
    probes.extend(
        listed
            .iter()
            .filter(|l| l.starts_with("wasi:") && !IMPORTS.contains(&l.as_str()))
            .take(2)
            .map(|n| (n, true)),
    );
    for (i, (name, needed)) in probes.into_iter().enumerate() {
        let (package, rest) = name.split_once('/').unwrap_or((name.as_str(), ""));
        let fake = format!("zz:{}/{rest}", "z".repeat(package.len().saturating_sub(3)));
        let (bytes, count) = patch(GUEST, name, &fake);
        ensure!(count > 0, "the suite cannot rename the import {name}");
        let probe = format!("probe{i}");
        let run = add(
            &host,
            &format!("{probe}.wasm"),
            &bytes,
            Some(&manifest_with(&probe, &IMPORTS)),
        )?;
        if needed {
            ensure!(
                run.code == 7 && run.stderr.contains(&format!("`{fake}`")),
                "{name} is listed as an import the host must provide, yet renamed {fake} it is not refused as unprovided: exit {}, {}",
                run.code,
                excerpt(&run.stderr)
            );
        } else {
            ensure!(
                run.code == 0,
                "capability inspect leaves out the import {name}, yet renamed {fake} the component is refused: exit {}, {}",
                run.code,
                excerpt(&run.stderr)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 6 and 19: traps and limits.

fn trap_code(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = host.invoke("divide", &json!({ "a": 7, "b": 0 }), &[])?;
    failed(&run, 5, "divide by zero")?;
    names(&run, "divide by zero", &["unreachable"])?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    let traps: Vec<&&Json> = own.iter().filter(|e| e["type"] == "trap").collect();
    ensure!(
        traps.len() == 1
            && traps[0]["kind"] == "trap"
            && traps[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("unreachable")),
        "a divide by zero must be recorded as one trap of kind `trap` carrying its code `unreachable`: {traps:?}"
    );
    // Contained: the next invocation runs.
    let run = host.invoke("divide", &json!({ "a": 84, "b": 2 }), &[])?;
    run.expect(0, "divide after a trap")?;
    ensure!(
        run.json()? == json!(42),
        "84 / 2 answered {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn zero_fuel_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let before = host.entries()?.len();
    let run = host.invoke("note", &json!({ "message": "ran" }), &["--fuel", "0"])?;
    failed(&run, 2, "--fuel 0")?;
    names(&run, "--fuel 0", &["fuel budget must be greater than 0"])?;
    let entries = host.entries()?;
    ensure!(
        !entries[before..].iter().any(|e| {
            let t = &e["entry"]["type"];
            t == "invocation-start" || t == "host-call" || t == "invocation-end"
        }),
        "a budget of 0 started an invocation: {:?}",
        &entries[before..]
    );
    // A manifest with a budget of 0 is refused at install.
    let manifest = GUEST_MANIFEST
        .replace("name = \"conformance\"", "name = \"nofuel\"")
        .replace("fuel = 50_000_000", "fuel = 0");
    let run = add(&host, "nofuel.wasm", GUEST, Some(&manifest))?;
    ensure!(
        run.code == 2 && run.stderr.contains("fuel") && run.stderr.contains("greater than 0"),
        "a manifest with fuel = 0 must be refused at install (exit 2, naming fuel): exit {}, {}",
        run.code,
        excerpt(&run.stderr)
    );
    ensure!(
        !listed(&host)?.iter().any(|n| n == "nofuel"),
        "a manifest with fuel = 0 was installed"
    );
    Ok(())
}

fn memory_limit_named(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // The guest starts with 17 pages; 18 leave no room for a 300 000-byte argument.
    let limit = 18 * 65_536;
    let env = [("FEMTOCLAW_LIMITS_MEMORY_BYTES", "1179648")];
    let small = run_env(
        &host,
        &[
            "invoke",
            "conformance",
            "echo",
            "--args",
            r#"{"text":"small"}"#,
        ],
        &env,
    )?;
    small.expect(0, "a call within the memory limit")?;
    let args = host.file(
        "big-args.json",
        json!({ "text": "m".repeat(300_000) })
            .to_string()
            .as_bytes(),
    )?;
    let at = format!("@{}", lossy(&args));
    let run = run_env(
        &host,
        &["invoke", "conformance", "echo", "--args", &at],
        &env,
    )?;
    failed(&run, 6, "memory growth past limits.memory_bytes")?;
    let prefix = format!("memory limit of {limit} bytes exceeded (growing to ");
    names(&run, "memory growth past the limit", &[&prefix])?;
    let growing: u64 = run
        .stderr
        .split(&prefix)
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ensure!(
        growing > limit,
        "the limit failure must name the size the memory was growing to, over {limit}: {}",
        excerpt(&run.stderr)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n)
            .iter()
            .any(|e| e["type"] == "trap"
                && e["kind"] == "limit"
                && e["message"].as_str().is_some_and(|m| m.contains(&prefix))),
        "the invocation's trap is not of kind `limit` naming the memory limit"
    );
    // Contained: the same host runs the next call under the default limit.
    host.invoke("echo", &json!({ "text": "after" }), &[])?
        .expect(0, "a call after a memory limit failure")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 4: the engine digest and the compile cache.

/// The engine digest specification 4 defines for `memory_bytes` on this machine.
fn expected_digest(memory_bytes: u64) -> String {
    let settings = [
        ("wasmtime", "48.0.8".to_owned()),
        ("consume_fuel", "true".to_owned()),
        ("cranelift_nan_canonicalization", "true".to_owned()),
        ("relaxed_simd_deterministic", "true".to_owned()),
        ("wasm_threads", "false".to_owned()),
        ("shared_memory", "false".to_owned()),
        ("concurrency_support", "false".to_owned()),
        ("wasm_component_model_async", "false".to_owned()),
        ("epoch_interruption", "true".to_owned()),
        ("max_wasm_stack", "524288".to_owned()),
        ("memory_bytes", memory_bytes.to_string()),
        ("table_elements", "20000".to_owned()),
        ("instances", "32".to_owned()),
        ("tables", "32".to_owned()),
        ("memories", "8".to_owned()),
        ("output_bytes", "1048576".to_owned()),
        ("target_arch", std::env::consts::ARCH.to_owned()),
    ];
    let text: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    sha256_hex(text.as_bytes())
}

/// The engine digest the last invocation-start records, as lowercase hex.
fn recorded_digest(host: &Host) -> Result<String, Failure> {
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let start = of_invocation(&entries, n)[0];
    let digest = &start["engine_digest"];
    if let Some(hex) = digest.as_str() {
        return Ok(hex.to_ascii_lowercase());
    }
    if let Some(bytes) = digest.as_array() {
        return Ok(bytes
            .iter()
            .filter_map(Json::as_u64)
            .map(|b| format!("{b:02x}"))
            .collect());
    }
    Err(Failure::Failed(format!(
        "the invocation-start records no engine_digest: {start}"
    )))
}

fn engine_digest_of_settings(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "invoke echo")?;
    let default = recorded_digest(&host)?;
    let want = expected_digest(64 << 20);
    ensure!(
        default == want,
        "the engine digest under the default limits must be the SHA-256 of the settings lines ({want}); the start records {default}"
    );
    write_config(&host, "[limits]\nmemory_bytes = 33554432\n")?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "invoke echo with memory_bytes = 33554432")?;
    let lowered = recorded_digest(&host)?;
    let want = expected_digest(32 << 20);
    ensure!(
        lowered == want && lowered != default,
        "with memory_bytes = 33554432 the engine digest must change to {want}; the start records {lowered}"
    );
    Ok(())
}

/// The guest's compile-cache files, `<data dir>/cache/<sha256>-<16 hex>.cwasm`.
fn cache_file(host: &Host, sha: &str) -> Result<PathBuf, Failure> {
    let files: Vec<PathBuf> = std::fs::read_dir(host.data.path().join("cache"))
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix(&format!("{sha}-")))
                        .and_then(|n| n.strip_suffix(".cwasm"))
                        .is_some_and(|k| k.len() == 16)
                })
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        files.len() == 1,
        "<data dir>/cache must hold one {sha}-<16 hex>.cwasm; it holds {files:?}"
    );
    Ok(files[0].clone())
}

fn compile_cache_tag(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let sha = sha256_hex(GUEST);
    let echo = |text: &str| -> Result<(), Failure> {
        let run = host.invoke("echo", &json!({ "text": text }), &[])?;
        run.expect(0, &format!("echo {text:?}"))?;
        ensure!(
            run.json()? == json!(text),
            "echo answered {} where {text:?} is required",
            excerpt(&run.stdout)
        );
        Ok(())
    };
    echo("compiled")?;
    let file = cache_file(&host, &sha)?;
    let good = read(&file)?;
    ensure!(good.len() > 64, "the cache file holds {} bytes", good.len());
    // One bit of the tag flipped, the code intact: the tag does not verify, so the file is
    // recompiled and replaced (a host that loaded it unchecked would leave it as it is).
    let mut tag_flipped = good.clone();
    let last = tag_flipped.len() - 1;
    tag_flipped[last] ^= 0x01;
    // One bit of the code flipped, the tag kept: the tag does not verify either.
    let mut code_flipped = good.clone();
    let middle = code_flipped.len() / 2;
    code_flipped[middle] ^= 0x10;
    // The tag cut off: the code alone.
    let untagged = good[..good.len() - 32].to_vec();
    for (bytes, what) in [
        (tag_flipped, "a tag with one bit flipped"),
        (code_flipped, "code with one bit flipped under its old tag"),
        (untagged, "the code without its tag"),
    ] {
        write(&file, &bytes)?;
        echo(what)?;
        let now = read(&file)?;
        ensure!(
            now != bytes,
            "a cache file holding {what} was kept: it must be recompiled and replaced"
        );
        ensure!(
            now.len() == good.len(),
            "after {what}, the cache file was replaced by {} bytes where the compiled code and tag take {}",
            now.len(),
            good.len()
        );
    }
    // The replaced file verifies: the next process loads it as it is.
    let kept = read(&file)?;
    echo("loaded")?;
    ensure!(
        read(&file)? == kept,
        "a cache file the host wrote itself was not loaded but rewritten"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 12 and 13: HTTP seen from a loopback peer.

/// What a peer does with each request before answering it.
type Hook = Box<dyn Fn(&str) + Send + Sync>;

/// A loopback HTTP peer on port 80 of an address of its own in 127.0.0.0/8 (port 80 is the only
/// one the embedded `fetch`'s manifest covers; an address of its own keeps it apart from any
/// other listener). Each connection is answered on a thread of its own, after `delay`, with
/// `reply`; the requests it read are kept. It stops when dropped.
struct Peer {
    ip: String,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    fn start(reply: &str, delay: Duration, hook: Option<Hook>) -> Result<Peer, Failure> {
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
        let mut bound = None;
        for attempt in 0..20u32 {
            let n = seed.wrapping_add(attempt.wrapping_mul(7919));
            let ip = format!(
                "127.{}.{}.{}",
                100 + n % 100,
                (n / 100) % 250 + 1,
                (n / 25_000) % 250 + 2
            );
            if let Ok(listener) = TcpListener::bind(format!("{ip}:80")) {
                bound = Some((ip, listener));
                break;
            }
        }
        let Some((ip, listener)) = bound else {
            return Err(Failure::NotApplicable(
                "cannot listen on port 80 of a loopback address, the only port fetch's manifest covers".into(),
            ));
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| Failure::Failed(format!("cannot set up the peer: {e}")))?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reply = reply.to_owned();
        let hook = Arc::new(hook);
        let accepting = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (seen, stop, reply, hook) = (
                                Arc::clone(&seen),
                                Arc::clone(&stop),
                                reply.clone(),
                                Arc::clone(&hook),
                            );
                            std::thread::spawn(move || {
                                serve_one(
                                    stream,
                                    &seen,
                                    &stop,
                                    &reply,
                                    delay,
                                    hook.as_ref().as_ref(),
                                );
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(Peer {
            ip,
            seen,
            stop,
            accepting: Some(accepting),
        })
    }

    /// The requests read so far.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `permit` of `net.connect` on this peer's address alone, every other action permitted.
    fn policy(&self, extra: &str) -> String {
        format!(
            "permit (principal == FemtoClaw::User::\"local\", action, resource) unless {{ action == FemtoClaw::Action::\"net.connect\" }};\npermit (principal, action == FemtoClaw::Action::\"net.connect\", resource) when {{ resource.address == ip(\"{}\") }};\n{extra}",
            self.ip
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (head and a `content-length` body), keeps it, runs the hook, waits out
/// `delay` (or until stopped) and answers `reply`.
fn serve_one(
    mut stream: TcpStream,
    seen: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    reply: &str,
    delay: Duration,
    hook: Option<&Hook>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    if let Some(hook) = hook {
        hook(&text);
    }
    if let Ok(mut seen) = seen.lock() {
        seen.push(text);
    }
    let until = Instant::now() + delay;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = stream.write_all(reply.as_bytes());
}

/// An HTTP/1.1 answer 200 with `body`.
fn ok_reply(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-peer: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A token of this run, for URLs and values nobody else uses.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{what}-{:x}-{nanos:x}", std::process::id())
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn segment(host: &Host) -> PathBuf {
    host.data.path().join("ledger/segments/00000000.seg")
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn http_send_recorded(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let path = format!("/{}", unique("written-ahead"));
    // When the request reaches the peer, the ledger's segment must already hold it: the
    // intent is made durable before the call acts.
    let ahead = Arc::new(Mutex::new(None::<bool>));
    let hook: Hook = {
        let (ahead, segment, needle) = (Arc::clone(&ahead), segment(&host), path.clone());
        Box::new(move |_| {
            let bytes = std::fs::read(&segment).unwrap_or_default();
            if let Ok(mut a) = ahead.lock() {
                *a = Some(find(&bytes, needle.as_bytes()));
            }
        })
    };
    let peer = Peer::start(&ok_reply("peer-says-hello"), Duration::ZERO, Some(hook))?;
    host.policy(&peer.policy(""))?;
    let url = format!("http://{}{path}", peer.ip);
    let args = json!({
        "method": "POST",
        "url": url,
        "headers": [{ "name": "x-probe", "value": "probe-value-1" }],
        "body": "ping-body",
    });
    let run = host.run(&[
        "invoke",
        "fetch",
        "request",
        "--args",
        &args.to_string(),
        "--json",
    ])?;
    run.expect(0, "fetch.request to the granted peer")?;
    let out = run.json()?;
    let got = &out["result"];
    ensure!(
        got["ok"]["status"] == 200 && got["ok"]["text"] == "peer-says-hello",
        "fetch.request to a granted origin and address must get the peer's answer: {got}"
    );
    let seen = peer.seen();
    ensure!(
        seen.len() == 1,
        "the peer must see exactly one request; it saw {seen:?}"
    );
    let request = seen[0].to_ascii_lowercase();
    ensure!(
        request.starts_with(&format!("post {path} http/1.1\r\n"))
            && request.contains("\r\nx-probe: probe-value-1\r\n")
            && request.ends_with("\r\n\r\nping-body"),
        "the request the host performed is not the one asked for: {:?}",
        seen[0]
    );
    ensure!(
        *ahead
            .lock()
            .map_err(|_| Failure::Failed("poisoned".into()))?
            == Some(true),
        "when the request reached the peer, the ledger did not yet hold the call's intent (its URL {path})"
    );
    // The exchange is recorded as the call's params and result.
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    let sends: Vec<&&Json> = own
        .iter()
        .filter(|e| e["type"] == "host-call" && e["function"] == "send")
        .collect();
    ensure!(
        sends.len() == 1,
        "the invocation must record one send host call: {own:?}"
    );
    let params = sends[0]["params"].to_string();
    let result = sends[0]["result"].to_string();
    ensure!(
        sends[0]["interface"] == "femtoclaw:host/http@0.1.0"
            && params.contains(&url)
            && params.contains("POST")
            && params.contains("probe-value-1"),
        "the send's params must record the request (method, URL, headers): {params}"
    );
    let body_recorded = result.contains("peer-says-hello")
        || result.contains(&b64(b"peer-says-hello"))
        || result.contains(&format!("{:?}", b"peer-says-hello".to_vec()).replace(' ', ""));
    ensure!(
        result.contains("200") && result.contains("x-peer") && body_recorded,
        "the send's result must record the response (status 200, its headers and body): {result}"
    );
    // Written ahead, then continued: the decisions, then the intent, then the call, each once,
    // the indexes of the whole invocation gap-free.
    let types: Vec<&str> = own.iter().filter_map(|e| e["type"].as_str()).collect();
    let intent = types.iter().position(|t| *t == "host-call-intent");
    let call_at = types.iter().position(|t| *t == "host-call");
    let decided: Vec<usize> = own
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e["type"] == "decision"
                && (e["action"] == "http.request" || e["action"] == "net.connect")
        })
        .map(|(i, _)| i)
        .collect();
    ensure!(
        intent.is_some_and(|i| decided.len() >= 2
            && decided.iter().all(|d| *d < i)
            && call_at.is_some_and(|c| c > i))
            && types.iter().filter(|t| **t == "host-call-intent").count() == 1
            && types.first() == Some(&"invocation-start")
            && types.last() == Some(&"invocation-end"),
        "the invocation must record its start, the http.request and net.connect decisions, then the intent, then the call, then its end, each once: {types:?}"
    );
    let indexes: Vec<u64> = entries
        .iter()
        .filter(|e| e["entry"]["invocation"].as_u64() == Some(n))
        .filter_map(|e| e["index"].as_u64())
        .collect();
    ensure!(
        indexes.len() == own.len() && indexes.windows(2).all(|w| w[1] == w[0] + 1),
        "the invocation's entries are not at consecutive indexes: {indexes:?}"
    );
    let receipt: Vec<u64> = out["receipt"]["indexes"]
        .as_array()
        .map(|i| i.iter().filter_map(Json::as_u64).collect())
        .unwrap_or_default();
    ensure!(
        receipt == indexes,
        "the receipt's indexes (written ahead, then at the end) must be exactly the invocation's entries {indexes:?}: {receipt:?}"
    );
    let all: Vec<u64> = entries.iter().filter_map(|e| e["index"].as_u64()).collect();
    ensure!(
        all.iter().enumerate().all(|(i, x)| *x == i as u64),
        "the ledger's indexes are not 0, 1, …: {all:?}"
    );
    Ok(())
}

fn http_caps_and_deadline(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let peer = Peer::start(&ok_reply("slow"), Duration::from_secs(25), None)?;
    host.policy(&peer.policy(""))?;
    write_config(
        &host,
        "[http]\nmax_request_bytes = 1000\ntimeout_ms = 2000\n",
    )?;
    let url = format!("http://{}/", peer.ip);
    // A body one byte over the host's cap: refused, nothing sent.
    let over = call(
        &host,
        "fetch",
        "post",
        &json!({ "url": url, "content-type": "text/plain", "body": "o".repeat(1001) }),
    )?;
    ensure!(
        over.get("err").is_some() && err(&over).contains("1000"),
        "a request body over http.max_request_bytes = 1000 must be refused naming the cap: {over}"
    );
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        peer.seen().is_empty(),
        "a request over http.max_request_bytes reached the peer: {:?}",
        peer.seen()
    );
    // A capability asking for a longer timeout than the host's 2 s still gets 2 s.
    let begun = Instant::now();
    let slow = call(
        &host,
        "fetch",
        "request",
        &json!({ "method": "POST", "url": url, "body": "o".repeat(1000), "timeout-ms": 60_000 }),
    )?;
    let took = begun.elapsed();
    ensure!(
        err(&slow).contains("timeout") || err(&slow).contains("timed out"),
        "a request to a peer answering after 25 s must time out at the host's timeout_ms: {slow}"
    );
    ensure!(
        took < Duration::from_secs(16),
        "a capability asking timeout-ms 60000 extended the host's timeout_ms = 2000: the call took {took:?}"
    );
    ensure!(
        peer.seen().len() == 1,
        "a body of exactly max_request_bytes must be sent: the peer saw {:?}",
        peer.seen()
    );
    // A blocking call is bounded by the invocation's deadline: exit 11 at the deadline.
    write_config(&host, "[http]\ntimeout_ms = 60000\n")?;
    let begun = Instant::now();
    let run = host.run(&[
        "invoke",
        "fetch",
        "get",
        "--args",
        &json!({ "url": url }).to_string(),
        "--deadline-ms",
        "2500",
    ])?;
    let took = begun.elapsed();
    failed(&run, 11, "fetch.get outlasting --deadline-ms 2500")?;
    names(&run, "fetch.get outlasting its deadline", &["2500 ms"])?;
    ensure!(
        took < Duration::from_secs(16),
        "a request outlasting a 2500 ms deadline did not end at the deadline: it took {took:?} (the peer answers after 25 s)"
    );
    Ok(())
}

fn replay_touches_nothing(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let peer = Peer::start(&ok_reply("recorded-answer"), Duration::ZERO, None)?;
    host.policy(&peer.policy(""))?;
    // The capability's /data is <data dir>/shared.
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared)
        .map_err(|e| Failure::Failed(format!("cannot create shared: {e}")))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    let got = call(
        &host,
        "fetch",
        "get",
        &json!({ "url": format!("http://{}/r", peer.ip) }),
    )?;
    ensure!(
        got["ok"]["text"] == "recorded-answer",
        "fetch.get of the peer: {got}"
    );
    let wrote = call(
        &host,
        "files",
        "write-file",
        &json!({ "path": "/data/note.txt", "text": "recorded-file" }),
    )?;
    ensure!(
        wrote["ok"].is_number(),
        "write-file /data/note.txt: {wrote}"
    );
    let read_back = call(
        &host,
        "files",
        "read-file",
        &json!({ "path": "/data/note.txt" }),
    )?;
    ensure!(
        read_back["ok"] == "recorded-file",
        "read-file /data/note.txt: {read_back}"
    );
    let put = call(
        &host,
        "memory",
        "put",
        &json!({ "key": "k", "text": "recorded-value" }),
    )?;
    ensure!(put.get("ok").is_some(), "memory.put: {put}");
    let got_kv = call(&host, "memory", "get", &json!({ "key": "k" }))?;
    ensure!(got_kv["ok"] == "recorded-value", "memory.get: {got_kv}");
    let requests = peer.seen().len();
    ensure!(requests == 1, "the peer saw {requests} requests, not 1");
    // Replayed elsewhere: a data directory whose /data holds another file, an empty store, and
    // the peer still listening.
    let export = host.files.path().join("replay.export");
    host.ok(&["log", "export", &lossy(&export), "--with-components"])?;
    let key = host.ok(&["key", "show"])?;
    let elsewhere = target.host()?;
    let decoy = elsewhere.data.path().join("shared");
    std::fs::create_dir_all(&decoy)
        .map_err(|e| Failure::Failed(format!("cannot create shared: {e}")))?;
    write(&decoy.join("note.txt"), b"decoy")?;
    write(
        &elsewhere.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    elsewhere.policy(&peer.policy(""))?;
    let run = elsewhere.run(&["replay", &lossy(&export), "--key", key.trim(), "--json"])?;
    run.expect(0, "replay of HTTP, file and key-value calls")?;
    let report = run.json()?;
    let statuses: Vec<&str> = report["invocations"]
        .as_array()
        .map(|r| r.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        statuses.len() == 5 && statuses.iter().all(|s| *s == "identical"),
        "the five invocations must replay identical from the ledger: {}",
        excerpt(&run.stdout)
    );
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        peer.seen().len() == requests,
        "replay sent a request to the network: the peer saw {:?}",
        peer.seen()
    );
    ensure!(
        read(&decoy.join("note.txt"))? == b"decoy"
            && std::fs::read_dir(&decoy).map(|d| d.count()).unwrap_or(0) == 1,
        "replay touched the files of the data directory it ran on"
    );
    ensure!(
        !elsewhere.ok(&["kv", "list"])?.contains("memory"),
        "replay wrote to the key-value store of the data directory it ran on"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 13, 16 and 19: link grants and denials.

fn ungranted_imports_named(target: &Target) -> Result<(), Failure> {
    let host = guest_host(
        target,
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource) when { resource.name == \"log\" };\n",
    )?;
    let run = host.run(&["capability", "inspect", "conformance"])?;
    run.expect(0, "capability inspect conformance")?;
    let imports: Vec<String> = run.json()?["imports"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        imports.len() > 3,
        "capability inspect lists too few imports: {imports:?}"
    );
    let run = host.invoke("note", &json!({ "message": "never" }), &[])?;
    failed(
        &run,
        7,
        "an invocation whose link grant covers only the log import",
    )?;
    let line = run.stderr.trim_end();
    for import in &imports {
        let named = format!("`{import}` (denied: no policy permits it)");
        if import == "femtoclaw:host/log@0.1.0" {
            ensure!(
                !line.contains(&format!("`{import}`")),
                "the granted log import is named as refused: {line}"
            );
        } else {
            ensure!(
                line.contains(&named),
                "the refusal must name {named}: {line}"
            );
        }
    }
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    ensure!(
        !own.iter()
            .any(|e| e["type"] == "host-call" || e["type"] == "host-call-intent")
            && own.last().is_some_and(|e| e["type"] == "invocation-end"
                && e["result"].is_null()
                && e["fuel_consumed"] == json!(0)),
        "a refused link ran guest code: {own:?}"
    );
    // A manifest that does not list the log import: not requested, whatever the policy.
    host.policy(OPEN)?;
    let manifest = manifest_with("unlisted", &IMPORTS[1..]);
    add(&host, "unlisted.wasm", GUEST, Some(&manifest))?.expect(0, "capability add as unlisted")?;
    let run = host.run(&[
        "invoke",
        "unlisted",
        "note",
        "--args",
        r#"{"message":"never"}"#,
    ])?;
    failed(&run, 7, "an import the manifest does not request")?;
    names(
        &run,
        "an import the manifest does not request",
        &["`femtoclaw:host/log@0.1.0` (denied: not requested by manifest)"],
    )?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        !of_invocation(&entries, n)
            .iter()
            .any(|e| e["type"] == "host-call" || e["type"] == "host-call-intent"),
        "an invocation refused at link made a host call"
    );
    Ok(())
}

fn denial_text(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let peer = Peer::start(&ok_reply("never"), Duration::ZERO, None)?;
    host.policy(&peer.policy(
        "forbid (principal, action == FemtoClaw::Action::\"http.request\", resource) when { resource.host == \"denied.invalid\" };\n",
    ))?;
    let denied = call(
        &host,
        "fetch",
        "get",
        &json!({ "url": "http://denied.invalid/x" }),
    )?;
    let want =
        "denied: `http.request` on `http://denied.invalid:80` is not granted to this capability";
    ensure!(
        err(&denied).contains(want),
        "an http.request denial must read {want:?}: {denied}"
    );
    let secret = call(
        &host,
        "fetch",
        "request",
        &json!({ "method": "GET", "url": format!("http://{}/s", peer.ip), "secret-headers": [{ "name": "authorization", "secret": "tok", "prefix": "Bearer " }] }),
    )?;
    let want = format!(
        "denied: `secret.use` on `tok@http://{}:80` is not granted to this capability",
        peer.ip
    );
    ensure!(
        err(&secret).contains(&want),
        "a secret.use denial must read {want:?}: {secret}"
    );
    ensure!(
        peer.seen().is_empty(),
        "a denied request reached the peer: {:?}",
        peer.seen()
    );
    Ok(())
}

fn prepared_once(target: &Target) -> Result<(), Failure> {
    let mut server = target.server(Some(OPEN))?;
    let Some(host) = server.host.take() else {
        return Err(Failure::NotApplicable(
            "the case needs the data directory of a server of its own".into(),
        ));
    };
    host.install()?;
    let sha = sha256_hex(GUEST);
    let echo = |text: &str| -> Result<(), Failure> {
        let answer = server.post(
            "/v1/invoke",
            &json!({ "capability": "conformance", "function": "echo", "args": { "text": text } }),
        )?;
        answer.expect(200, &format!("POST /v1/invoke echo {text:?}"))?;
        ensure!(
            answer.json()?["result"] == json!(text),
            "echo answered {}",
            excerpt(&answer.text)
        );
        Ok(())
    };
    echo("first")?;
    let file = cache_file(&host, &sha)?;
    std::fs::remove_file(&file)
        .map_err(|e| Failure::Failed(format!("cannot remove the cache file: {e}")))?;
    // Prepared in memory: the next invocations compile nothing, so write no cache file.
    echo("second")?;
    echo("third")?;
    ensure!(
        !file.exists(),
        "a second invocation of a component the server had prepared compiled it again (it wrote {})",
        file.display()
    );
    // Another process has no such memory: it compiles, and writes the file again.
    drop(server);
    host.invoke("echo", &json!({ "text": "again" }), &[])?
        .expect(0, "echo after the server stopped")?;
    ensure!(
        cache_file(&host, &sha).is_ok(),
        "a new process did not compile the component into the cache: the case cannot tell compiling from not"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 6, 12 and 19: the virtualized context, through the guest's probes (`echo` of
// a text beginning with SOH `probe:` runs the probe it names; see the guest).

/// The text that makes the guest's `echo` run `probe`.
fn probe_text(probe: &str) -> String {
    format!("\u{1}probe:{probe}")
}

/// `invoke conformance echo` of a probe, with `extra` arguments.
fn probe(host: &Host, probe: &str, extra: &[&str]) -> Result<Run, Failure> {
    host.invoke("echo", &json!({ "text": probe_text(probe) }), extra)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The host calls of invocation `n`.
fn host_calls(entries: &[Json], n: u64) -> Vec<Json> {
    of_invocation(entries, n)
        .into_iter()
        .filter(|e| e["type"] == "host-call")
        .cloned()
        .collect()
}

/// Every number in a JSON value.
pub(super) fn numbers(value: &Json) -> Vec<u64> {
    let mut found = Vec::new();
    let mut walk = vec![value];
    while let Some(v) = walk.pop() {
        match v {
            Json::Number(n) => found.extend(n.as_u64()),
            Json::Array(items) => walk.extend(items),
            Json::Object(map) => walk.extend(map.values()),
            _ => {}
        }
    }
    found
}

fn host_faults_named(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    for (probe_name, function, want) in [
        (
            "random:1048577",
            "get-random-bytes",
            "random request of 1048577 bytes exceeds the limit of 1048576",
        ),
        (
            "",
            "log",
            "log message of 16385 bytes exceeds the limit of 16384",
        ),
    ] {
        let run = if probe_name.is_empty() {
            host.invoke("note", &json!({ "message": "l".repeat(16_385) }), &[])?
        } else {
            probe(&host, probe_name, &[])?
        };
        failed(&run, 5, &format!("a {function} call over its limit"))?;
        names(
            &run,
            &format!("a {function} call over its limit"),
            &[want, "host"],
        )?;
        let entries = host.entries()?;
        let n = last_invocation(&entries)?;
        let calls = host_calls(&entries, n);
        let faulted = calls.iter().find(|c| c["function"] == function);
        ensure!(
            faulted.is_some_and(|c| c["result"]["variant"]["case"] == "trap"
                && c["result"].to_string().contains(want)),
            "the {function} call over its limit must be recorded with its fault (trap: {want}): {calls:?}"
        );
        let traps: Vec<&Json> = of_invocation(&entries, n)
            .into_iter()
            .filter(|e| e["type"] == "trap")
            .collect();
        ensure!(
            traps.len() == 1
                && traps[0]["kind"] == "trap"
                && traps[0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("host") && m.contains(want)),
            "the invocation must end with one `host` trap naming the limit: {traps:?}"
        );
    }
    // At the limits, the calls run.
    let run = probe(&host, "random:1048576", &["--fuel", "10000000000"])?;
    run.expect(0, "a random request of exactly 1048576 bytes")?;
    ensure!(
        run.json()?
            .as_str()
            .is_some_and(|h| h.len() == 2 * 1_048_576),
        "a random request of 1048576 bytes did not give 1048576 bytes"
    );
    host.invoke("note", &json!({ "message": "l".repeat(16_384) }), &[])?
        .expect(0, "a log message of exactly 16384 bytes")?;
    // Replayed: each fault answered from the recording, each invocation identical.
    let replayed = replays(target, &host)?;
    ensure!(
        replayed == 4,
        "the 4 faulted invocations must replay identically: {replayed} replayed"
    );
    Ok(())
}

fn clocks_and_random_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = probe(&host, "random:32", &[])?;
    run.expect(0, "32 random bytes")?;
    let received = unhex(run.json()?.as_str().unwrap_or(""));
    ensure!(
        received.len() == 32,
        "the guest did not get 32 random bytes: {}",
        excerpt(&run.stdout)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    let random: Vec<&Json> = calls
        .iter()
        .filter(|c| {
            c["interface"] == "wasi:random/random@0.2.12" && c["function"] == "get-random-bytes"
        })
        .collect();
    ensure!(
        random.len() == 1 && recorded_bytes(&random[0]["result"]).contains(&received),
        "get-random-bytes must be recorded with exactly the bytes the guest received ({}): {random:?}",
        run.stdout.trim()
    );
    let run = probe(&host, "clocks", &[])?;
    run.expect(0, "the clocks")?;
    let read = run.json()?.as_str().unwrap_or("").to_owned();
    let parts: Vec<u64> = read.split(' ').filter_map(|p| p.parse().ok()).collect();
    ensure!(parts.len() == 3, "the clocks probe answered {read:?}");
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    let wall = calls
        .iter()
        .find(|c| c["interface"] == "wasi:clocks/wall-clock@0.2.12" && c["function"] == "now");
    let mono = calls
        .iter()
        .find(|c| c["interface"] == "wasi:clocks/monotonic-clock@0.2.12" && c["function"] == "now");
    ensure!(
        wall.is_some_and(|w| {
            let got = numbers(&w["result"]);
            got.contains(&parts[0]) && got.contains(&parts[1])
        }),
        "wall-clock.now must pass the gate and be recorded with the time the guest read ({} s {} ns): {wall:?}",
        parts[0],
        parts[1]
    );
    ensure!(
        mono.is_some_and(|m| numbers(&m["result"]).contains(&parts[2])),
        "monotonic-clock.now must pass the gate and be recorded with the instant the guest read ({}): {mono:?}",
        parts[2]
    );
    Ok(())
}

fn output_captured(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = probe(&host, "print:10:5", &["--json"])?;
    run.expect(0, "a guest writing to stdout and stderr")?;
    let out = run.json()?;
    ensure!(
        out["stdout"] == "oooooooooo"
            && out["stderr"] == "eeeee"
            && out["output_truncated"] == false,
        "the guest's stdout and stderr must be returned with the outcome: {}",
        excerpt(&run.stdout)
    );
    ensure!(
        !run.stderr.contains("eeeee"),
        "the guest's stderr reached the host's own stderr: {}",
        excerpt(&run.stderr)
    );
    let run = probe(&host, "print:10:5", &[])?;
    run.expect(0, "a guest writing to stdout and stderr")?;
    ensure!(
        run.stdout.trim() == "\"printed, 0 chunks refused\"" && !run.stderr.contains("eeeee"),
        "without --json the host must print the result alone, never the guest's output: stdout {}, stderr {}",
        excerpt(&run.stdout),
        excerpt(&run.stderr)
    );
    // Past the bound of 1 MiB each: the excess dropped, flagged, no trap.
    let run = probe(&host, "print:1048586:1048580", &["--json"])?;
    run.expect(0, "a guest writing more than 1 MiB to stdout and stderr")?;
    let out = run.json()?;
    let stdout = out["stdout"].as_str().unwrap_or("");
    let stderr = out["stderr"].as_str().unwrap_or("");
    ensure!(
        stdout.len() == 1_048_576 && stdout.bytes().all(|b| b == b'o'),
        "stdout must be kept to its first 1048576 bytes; {} bytes came",
        stdout.len()
    );
    ensure!(
        stderr.len() == 1_048_576 && stderr.bytes().all(|b| b == b'e'),
        "stderr must be kept to its first 1048576 bytes; {} bytes came",
        stderr.len()
    );
    ensure!(
        out["output_truncated"] == true
            && out["result"]
                .as_str()
                .is_some_and(|r| r.starts_with("printed")),
        "output past the bound must be flagged truncated, the function returning: {}",
        excerpt(&format!("{} {}", out["output_truncated"], out["result"]))
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        !of_invocation(&entries, n)
            .iter()
            .any(|e| e["type"] == "trap"),
        "output past its bound trapped the invocation"
    );
    Ok(())
}

fn empty_context(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // The host's own environment, arguments and stdin are full; the guest's are not.
    let text = json!({ "text": probe_text("context") }).to_string();
    let mut child = host
        .command(&["invoke", "conformance", "echo", "--args", &text])
        .env("FEMTOCLAW_CONFORMANCE_SECRET", "leaked-environment")
        .env("HOME", "/root")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot run invoke: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"leaked-stdin\n");
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Failure::Failed(format!("invoke: {e}")))?;
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.expect(0, "the context probe")?;
    let seen = run.json()?.as_str().unwrap_or("").to_owned();
    ensure!(
        seen == "env=0 args=0 cwd=none stdin=closed terminals=false,false,false"
            || seen == "env=0 args=0 cwd=none stdin=0 bytes terminals=false,false,false",
        "the guest must get no environment, no arguments, no working directory, an empty stdin and no terminal; it saw {seen:?}"
    );
    Ok(())
}

fn timers_trap(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    for (probe_name, function) in [
        ("duration", "subscribe-duration"),
        ("instant", "subscribe-instant"),
    ] {
        let run = probe(&host, probe_name, &[])?;
        failed(&run, 5, &format!("a {function} timer"))?;
        names(
            &run,
            &format!("a {function} timer"),
            &[
                function,
                "timers would make execution depend on wall-clock time",
            ],
        )?;
        ensure!(
            !run.stdout.contains("waited"),
            "a {function} timer was waited on: {}",
            excerpt(&run.stdout)
        );
    }
    Ok(())
}

fn stack_limit(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let run = probe(&host, "recurse:1000", &[])?;
    run.expect(0, "a recursion 1000 frames deep")?;
    ensure!(
        run.json()?
            .as_str()
            .is_some_and(|r| r.parse::<u64>().is_ok()),
        "a shallow recursion answered {}",
        excerpt(&run.stdout)
    );
    let run = probe(&host, "recurse:100000000", &["--fuel", "10000000000"])?;
    failed(&run, 6, "a recursion 100000000 frames deep")?;
    names(&run, "an unbounded recursion", &["stack limit exceeded"])?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n)
            .iter()
            .any(|e| e["type"] == "trap"
                && e["kind"] == "limit"
                && e["message"].as_str().is_some_and(|m| m.contains("stack"))),
        "the invocation's trap must be of kind `limit` naming the stack"
    );
    probe(&host, "recurse:10", &[])?.expect(0, "a recursion after a stack overflow")?;
    Ok(())
}

fn trap_codes(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    type Call<'a> = Box<dyn Fn() -> Result<Run, Failure> + 'a>;
    let calls: [(&str, Call, &str); 3] = [
        (
            "a divide by zero",
            Box::new(|| host.invoke("divide", &json!({ "a": 1, "b": 0 }), &[])),
            "unreachable",
        ),
        (
            "a log message over 16 KiB",
            Box::new(|| host.invoke("note", &json!({ "message": "x".repeat(16_385) }), &[])),
            "host",
        ),
        (
            "a guest exit",
            Box::new(|| probe(&host, "exit", &[])),
            "exit",
        ),
    ];
    for (what, invoke, code) in calls {
        let run = invoke()?;
        failed(&run, 5, what)?;
        let entries = host.entries()?;
        let n = last_invocation(&entries)?;
        let trap = of_invocation(&entries, n)
            .into_iter()
            .find(|e| e["type"] == "trap")
            .cloned()
            .unwrap_or(Json::Null);
        let message = trap["message"].as_str().unwrap_or("");
        ensure!(
            trap["kind"] == "trap"
                && (message.starts_with(&format!("guest trapped: {code}"))
                    || message.contains(&format!("`{code}`"))
                    || message.contains(&format!(": {code}:"))),
            "{what} must be a trap with code `{code}`: {trap}"
        );
        ensure!(
            run.stderr.contains(code),
            "{what}: the failure does not carry the trap code {code}: {}",
            excerpt(&run.stderr)
        );
        ensure!(
            !run.stdout.contains("exited"),
            "{what}: the guest ran on past its end: {}",
            excerpt(&run.stdout)
        );
    }
    Ok(())
}

fn fresh_store(target: &Target) -> Result<(), Failure> {
    let server = target.server(Some(OPEN))?;
    let Some(host) = server.host.as_ref() else {
        return Err(Failure::NotApplicable(
            "the case needs the data directory of a server of its own".into(),
        ));
    };
    host.install()?;
    // Each invocation bumps a counter in the guest's memory and leaves a stdout handle open in
    // the host's table: a fresh store shows the counter at 0 and hands out the same handle.
    let mut first = None;
    for i in 0..3 {
        let answer = server.post(
            "/v1/invoke",
            &json!({ "capability": "conformance", "function": "echo", "args": { "text": probe_text("fresh") } }),
        )?;
        answer.expect(200, "POST /v1/invoke of the fresh probe")?;
        let got = answer.json()?["result"].as_str().unwrap_or("").to_owned();
        let (count, handle) = got.split_once(' ').unwrap_or((got.as_str(), ""));
        ensure!(
            count == "0",
            "invocation {i} of one server saw what an earlier one left in the guest's memory: the counter it bumps read {count}"
        );
        let first = first.get_or_insert_with(|| handle.to_owned());
        ensure!(
            !handle.is_empty() && handle == first.as_str(),
            "invocation {i} of one server was handed stdout as handle {handle:?} where the first was {first:?}: the host's table kept what an earlier invocation left open"
        );
    }
    Ok(())
}

/// How many keys the recorded `key-response` lists.
fn listed_keys(value: &Json) -> Option<usize> {
    let mut walk = vec![value];
    while let Some(v) = walk.pop() {
        match v {
            Json::Array(items) => {
                if items.len() == 2 && items[0] == "keys" {
                    return items[1]["list"].as_array().map(Vec::len);
                }
                walk.extend(items);
            }
            Json::Object(map) => walk.extend(map.values()),
            _ => {}
        }
    }
    None
}

fn kv_listing_pages(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // One key already in the store, 150 more written by the listing invocation itself.
    host.invoke("remember", &json!({ "key": "p/stored", "value": "v" }), &[])?
        .expect(0, "remember p/stored")?;
    let run = probe(&host, "kvlist:150", &[])?;
    run.expect(0, "a listing of the invocation's own pending writes")?;
    let got = run.json()?.as_str().unwrap_or("").to_owned();
    ensure!(
        got == "keys=151 pages=2",
        "listing 150 pending keys and one stored must give 151 keys in 2 pages of 100; the guest got {got:?}"
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let pages: Vec<Json> = host_calls(&entries, n)
        .into_iter()
        .filter(|c| {
            c["function"]
                .as_str()
                .is_some_and(|f| f == "list-keys-with-prefix" || f.ends_with("list-keys"))
        })
        .collect();
    ensure!(
        pages.len() == 2,
        "the invocation must record two listing calls (two pages): {pages:?}"
    );
    {
        let pair = &pages;
        let (first, second) = (
            listed_keys(&pair[0]["result"]),
            listed_keys(&pair[1]["result"]),
        );
        ensure!(
            first == Some(100) && second == Some(51),
            "a listing must give 100 keys on its first page and the other 51 on the next: {first:?} then {second:?}"
        );
        ensure!(
            pair[0]["result"]
                .to_string()
                .contains("\"cursor\",{\"option\":{")
                && pair[1]["params"].to_string().contains("{\"option\":{"),
            "the first page must carry a cursor the second listing continues from: {} / {}",
            pair[0]["result"],
            pair[1]["params"]
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 13: each gated call's span and count.

/// The fields of a protobuf message: `(number, varint value, length-delimited bytes)`.
fn proto_fields(mut buf: &[u8]) -> Option<Vec<(u64, u64, Vec<u8>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (key, at) = read_leb(buf, 0)?;
        buf = &buf[at..];
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let (v, at) = read_leb(buf, 0)?;
                out.push((number, v, Vec::new()));
                buf = &buf[at..];
            }
            1 => {
                out.push((number, 0, buf.get(..8)?.to_vec()));
                buf = &buf[8..];
            }
            2 => {
                let (len, at) = read_leb(buf, 0)?;
                let end = at + usize::try_from(len).ok()?;
                out.push((number, 0, buf.get(at..end)?.to_vec()));
                buf = &buf[end..];
            }
            5 => {
                out.push((number, 0, buf.get(..4)?.to_vec()));
                buf = &buf[4..];
            }
            _ => return None,
        }
    }
    Some(out)
}

/// One exported span: name, span id, parent span id, trace id and attributes (as text).
#[derive(Debug, Clone)]
struct Span {
    name: String,
    id: Vec<u8>,
    parent: Vec<u8>,
    trace: Vec<u8>,
    attributes: Vec<(String, String)>,
}

/// The spans of an OTLP `ExportTraceServiceRequest`.
fn spans_of(body: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    let field = |fields: &[(u64, u64, Vec<u8>)], n: u64| -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter(|f| f.0 == n)
            .map(|f| f.2.clone())
            .collect()
    };
    let Some(request) = proto_fields(body) else {
        return spans;
    };
    for resource in field(&request, 1) {
        let Some(resource) = proto_fields(&resource) else {
            continue;
        };
        for scope in field(&resource, 2) {
            let Some(scope) = proto_fields(&scope) else {
                continue;
            };
            for span in field(&scope, 2) {
                let Some(span) = proto_fields(&span) else {
                    continue;
                };
                let one = |n: u64| field(&span, n).into_iter().next().unwrap_or_default();
                let mut attributes = Vec::new();
                for kv in field(&span, 9) {
                    let Some(kv) = proto_fields(&kv) else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(&field(&kv, 1).concat()).into_owned();
                    let value = field(&kv, 2)
                        .first()
                        .and_then(|v| proto_fields(v))
                        .and_then(|v| v.into_iter().next())
                        .map(|(n, int, bytes)| match n {
                            1 => String::from_utf8_lossy(&bytes).into_owned(),
                            2 | 3 => int.to_string(),
                            _ => String::new(),
                        })
                        .unwrap_or_default();
                    attributes.push((key, value));
                }
                spans.push(Span {
                    name: String::from_utf8_lossy(&one(5)).into_owned(),
                    id: one(2),
                    parent: one(4),
                    trace: one(1),
                    attributes,
                });
            }
        }
    }
    spans
}

/// The requests a collector received: path and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A loopback OTLP/HTTP collector: keeps each request's path and body, answers 200.
struct Collector {
    port: u16,
    got: Received,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start() -> Result<Collector, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Failure::Failed(format!("cannot listen on loopback: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Failure::Failed(format!("no local address: {e}")))?
            .port();
        let _ = listener.set_nonblocking(true);
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (got, stop) = (Arc::clone(&got), Arc::clone(&stop));
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut data = Vec::new();
                    let mut buf = vec![0u8; 65_536];
                    let (path, body) = loop {
                        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if data.len() >= end + 4 + length {
                                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                                break (path, data[end + 4..end + 4 + length].to_vec());
                            }
                        }
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break (String::new(), Vec::new()),
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    };
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    if let Ok(mut got) = got.lock() {
                        got.push((path, body));
                    }
                }
            })
        };
        Ok(Collector {
            port,
            got,
            stop,
            thread: Some(thread),
        })
    }

    /// Every span exported so far.
    fn spans(&self) -> Vec<Span> {
        self.got
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|(p, _)| p.ends_with("/v1/traces"))
                    .flat_map(|(_, b)| spans_of(b))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn host_call_spans(target: &Target) -> Result<(), Failure> {
    let host = guest_host(
        target,
        &format!(
            "{OPEN}forbid (principal, action == FemtoClaw::Action::\"kv.write\", resource);\n"
        ),
    )?;
    let collector = Collector::start()?;
    write_config(
        &host,
        &format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\notlp_protocol = \"http/protobuf\"\n",
            collector.port
        ),
    )?;
    let token = host.ok(&["token", "create", "--principal", "user:local"])?;
    let token = token.trim();
    let serving = serve(&host)?;
    let client = crate::target::Server::client();
    let invoke = |function: &str, args: Json| -> Result<Json, Failure> {
        let response = client
            .post(format!("{}/v1/invoke", serving.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({ "capability": "conformance", "function": function, "args": args })
                    .to_string(),
            )
            .send()
            .map_err(|e| Failure::Failed(format!("POST /v1/invoke {function}: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        ensure!(
            status == 200,
            "POST /v1/invoke {function}: HTTP {status}: {}",
            excerpt(&text)
        );
        serde_json::from_str(&text).map_err(|e| Failure::Failed(format!("not JSON ({e}): {text}")))
    };
    // A call with no decision (log), one allowed (kv.read), one denied (kv.write).
    invoke("note", json!({ "message": "spanned" }))?;
    invoke("recall", json!({ "key": "k" }))?;
    let refused = invoke("remember", json!({ "key": "k", "value": "v" }))?;
    ensure!(
        refused["result"].get("err").is_some(),
        "remember under a policy forbidding kv.write must answer an error: {refused}"
    );
    let wanted = [
        ("femtoclaw:host/log@0.1.0", "none"),
        ("wasi:keyvalue/store@0.2.0-draft2", "allow"),
        ("wasi:keyvalue/store@0.2.0-draft2", "deny"),
    ];
    // Spans are exported in batches: wait for them.
    let begun = Instant::now();
    let attr = |s: &Span, k: &str| {
        s.attributes
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let spans = loop {
        let spans = collector.spans();
        let calls: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == "femtoclaw.host_call")
            .collect();
        let all = wanted.iter().all(|(interface, decision)| {
            calls.iter().any(|s| {
                attr(s, "femtoclaw.host_call.interface") == *interface
                    && attr(s, "femtoclaw.host_call.decision") == *decision
            })
        });
        if all || begun.elapsed() > Duration::from_secs(20) {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "femtoclaw.host_call")
        .collect();
    ensure!(
        !calls.is_empty(),
        "no femtoclaw.host_call span was exported within 20 s ({} spans: {:?})",
        spans.len(),
        spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
    );
    for (interface, decision) in wanted {
        let span = calls.iter().find(|s| {
            attr(s, "femtoclaw.host_call.interface") == interface
                && attr(s, "femtoclaw.host_call.decision") == decision
        });
        let Some(span) = span else {
            return Err(Failure::Failed(format!(
                "no femtoclaw.host_call span with interface {interface} and decision {decision}: {calls:?}"
            )));
        };
        ensure!(
            attr(span, "femtoclaw.host_call.fuel_left")
                .parse::<u64>()
                .is_ok_and(|f| f > 0 && f <= 50_000_000),
            "the host_call span carries no fuel left: {span:?}"
        );
        let parent = spans
            .iter()
            .find(|p| p.id == span.parent && p.trace == span.trace);
        ensure!(
            parent.is_some_and(|p| p.name == "femtoclaw.invoke"),
            "the host_call span must be a child of the invocation's femtoclaw.invoke span; its parent is {parent:?}"
        );
    }
    // Counted by interface and decision.
    let response = client
        .get(format!("{}/metrics", serving.url))
        .bearer_auth(token)
        .send()
        .map_err(|e| Failure::Failed(format!("GET /metrics: {e}")))?;
    let text = response.text().unwrap_or_default();
    for (interface, decision) in wanted {
        let counted = text.lines().any(|l| {
            l.starts_with("femtoclaw_host_calls_total{")
                && l.contains(&format!("interface=\"{interface}\""))
                && l.contains(&format!("decision=\"{decision}\""))
                && l.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .is_some_and(|n| n >= 1.0)
        });
        ensure!(
            counted,
            "femtoclaw_host_calls_total does not count {interface} with decision {decision}: {}",
            excerpt(
                &text
                    .lines()
                    .filter(|l| l.contains("host_calls"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        );
    }
    drop(serving);
    Ok(())
}

fn writes_not_through_streams(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // The guest again, as a capability whose manifest requests /data writable; its /data is
    // <data dir>/shared.
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared)
        .map_err(|e| Failure::Failed(format!("cannot create shared: {e}")))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    let manifest = format!(
        "{}paths = [{{ path = \"/data\", write = true }}]\n",
        manifest_with("writer", &IMPORTS)
    );
    add(&host, "writer.wasm", GUEST, Some(&manifest))?.expect(0, "capability add as writer")?;
    let text = json!({ "text": probe_text("streams") }).to_string();
    let run = host.run(&["invoke", "writer", "echo", "--args", &text])?;
    run.expect(0, "the stream-write probe")?;
    let got = run.json()?.as_str().unwrap_or("").to_owned();
    ensure!(
        got == "write-via-stream=unsupported append-via-stream=unsupported write=2",
        "write-via-stream and append-via-stream must answer unsupported, descriptor.write write: the guest got {got:?}"
    );
    let written = read(&shared.join("streamed.txt"))?;
    ensure!(
        written == b"ok",
        "the file must hold only what descriptor.write wrote (\"ok\"); it holds {:?}",
        String::from_utf8_lossy(&written)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    ensure!(
        calls
            .iter()
            .any(|c| c["function"] == "[method]descriptor.write"),
        "the descriptor.write is not recorded as a host call: {:?}",
        calls
            .iter()
            .map(|c| c["function"].clone())
            .collect::<Vec<_>>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 19: sockets are not baseline.

/// A section: its id, then its contents with their length.
fn section(id: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb(contents.len() as u64));
    out.extend_from_slice(contents);
    out
}

/// A name as the binary format writes it: its length, then its bytes.
fn name(text: &str) -> Vec<u8> {
    let mut out = leb(text.len() as u64);
    out.extend_from_slice(text.as_bytes());
    out
}

/// A component of the suite's own, written byte by byte: it imports
/// `wasi:sockets/instance-network@0.2.12` (`instance-network`, over the `network` resource of a
/// types-only import of `wasi:sockets/network@0.2.12`) and `wasi:sockets/tcp@0.2.12`
/// (`[method]tcp-socket.is-listening`), and exports `probe: func() -> u32`, answering 7 without
/// calling either.
fn sockets_component() -> Vec<u8> {
    let mut c = b"\0asm\x0d\x00\x01\x00".to_vec();
    // type 0: instance { export "network" (sub resource) }
    let mut t0 = vec![0x42, 0x01, 0x04, 0x00];
    t0.extend(name("network"));
    t0.extend([0x03, 0x01]);
    c.extend(section(7, &[&[0x01][..], &t0].concat()));
    // instance 0: import wasi:sockets/network@0.2.12
    let mut import = vec![0x01, 0x00];
    import.extend(name("wasi:sockets/network@0.2.12"));
    import.extend([0x05, 0x00]);
    c.extend(section(10, &import));
    // type 1: alias export "network" of instance 0
    let mut alias = vec![0x01, 0x03, 0x00, 0x00];
    alias.extend(name("network"));
    c.extend(section(6, &alias));
    // type 2: instance { alias outer type 1; own<0>; func() -> own; export instance-network }
    let mut t2 = vec![0x42, 0x04];
    t2.extend([0x02, 0x03, 0x02, 0x01, 0x01]);
    t2.extend([0x01, 0x69, 0x00]);
    t2.extend([0x01, 0x40, 0x00, 0x00, 0x01]);
    t2.extend([0x04, 0x00]);
    t2.extend(name("instance-network"));
    t2.extend([0x01, 0x02]);
    // type 3: instance { export "tcp-socket" (sub resource); borrow<0>; func(self) -> bool;
    // export [method]tcp-socket.is-listening }
    let mut t3 = vec![0x42, 0x04, 0x04, 0x00];
    t3.extend(name("tcp-socket"));
    t3.extend([0x03, 0x01]);
    t3.extend([0x01, 0x68, 0x00]);
    t3.extend([0x01, 0x40, 0x01]);
    t3.extend(name("self"));
    t3.extend([0x01, 0x00, 0x7f]);
    t3.extend([0x04, 0x00]);
    t3.extend(name("[method]tcp-socket.is-listening"));
    t3.extend([0x01, 0x02]);
    c.extend(section(7, &[&[0x02][..], &t2, &t3].concat()));
    // instances 1 and 2: the two imports with functions
    let mut imports = vec![0x02, 0x00];
    imports.extend(name("wasi:sockets/instance-network@0.2.12"));
    imports.extend([0x05, 0x02, 0x00]);
    imports.extend(name("wasi:sockets/tcp@0.2.12"));
    imports.extend([0x05, 0x03]);
    c.extend(section(10, &imports));
    // core module 0: (func (export "probe") (result i32) i32.const 7)
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: [] -> [i32]
        0x03, 0x02, 0x01, 0x00, // function 0 of type 0
        0x07, 0x09, 0x01, 0x05, b'p', b'r', b'o', b'b', b'e', 0x00, 0x00, // export "probe"
        0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x07, 0x0b, // code: i32.const 7
    ];
    c.extend(section(1, module));
    // core instance 0: instantiate module 0
    c.extend(section(2, &[0x01, 0x00, 0x00, 0x00]));
    // core func 0: alias core export "probe" of core instance 0
    let mut alias = vec![0x01, 0x00, 0x00, 0x01, 0x00];
    alias.extend(name("probe"));
    c.extend(section(6, &alias));
    // type 4: func() -> u32
    c.extend(section(7, &[0x01, 0x40, 0x00, 0x00, 0x79]));
    // func 0: lift core func 0 as type 4
    c.extend(section(8, &[0x01, 0x00, 0x00, 0x00, 0x00, 0x04]));
    // export "probe"
    let mut export = vec![0x01, 0x00];
    export.extend(name("probe"));
    export.extend([0x01, 0x00, 0x00]);
    c.extend(section(11, &export));
    c
}

fn sockets_need_a_grant(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // The `network` import exports a resource type only: the host links it, so it needs a
    // grant like the others.
    let sockets = [
        "wasi:sockets/instance-network@0.2.12",
        "wasi:sockets/network@0.2.12",
        "wasi:sockets/tcp@0.2.12",
    ];
    let requests = |listed: &[&str]| {
        let listed: Vec<String> = listed.iter().map(|i| format!("{i:?}")).collect();
        format!(
            "name = \"sockets\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n\n[requests]\nimports = [{}]\n",
            listed.join(", ")
        )
    };
    host.policy(OPEN)?;
    let wasm = sockets_component();
    add(&host, "sockets.wasm", &wasm, Some(&requests(&[])))?
        .expect(0, "capability add of a component importing wasi:sockets")?;
    // Not requested by the manifest: refused even under a policy permitting every link.
    let run = host.run(&["invoke", "sockets", "probe"])?;
    failed(
        &run,
        7,
        "wasi:sockets imports the manifest does not request",
    )?;
    for import in sockets {
        names(
            &run,
            "wasi:sockets imports the manifest does not request",
            &[&format!("`{import}` (denied: not requested by manifest)")],
        )?;
    }
    // Requested, but the policy links the baseline only: sockets are not baseline.
    host.run(&["capability", "remove", "sockets"])?;
    add(&host, "sockets.wasm", &wasm, Some(&requests(&sockets)))?
        .expect(0, "capability add requesting the wasi:sockets imports")?;
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource) when { resource.baseline };\n",
    )?;
    let run = host.run(&["invoke", "sockets", "probe"])?;
    failed(
        &run,
        7,
        "wasi:sockets imports under a baseline-only link grant",
    )?;
    for import in sockets {
        names(
            &run,
            "wasi:sockets imports under a baseline-only link grant",
            &[&format!("`{import}` (denied: no policy permits it)")],
        )?;
    }
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let own = of_invocation(&entries, n);
    for import in sockets {
        ensure!(
            own.iter().any(|e| e["type"] == "decision"
                && e["action"] == "link"
                && e["resource"] == import
                && e["allowed"] == false),
            "the refused link of {import} is not recorded as a decision: {own:?}"
        );
    }
    ensure!(
        own.last().is_some_and(|e| e["type"] == "invocation-end"
            && e["result"].is_null()
            && e["fuel_consumed"] == json!(0)),
        "a refused sockets link ran guest code: {own:?}"
    );
    // One of the two granted explicitly: the other still named.
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource) when { resource.baseline };\n\
         permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource == FemtoClaw::Interface::\"wasi:sockets/tcp@0.2.12\");\n",
    )?;
    let run = host.run(&["invoke", "sockets", "probe"])?;
    failed(&run, 7, "one wasi:sockets import granted, one not")?;
    names(
        &run,
        "one wasi:sockets import granted, one not",
        &[
            "`wasi:sockets/instance-network@0.2.12` (denied: no policy permits it)",
            "`wasi:sockets/network@0.2.12` (denied: no policy permits it)",
        ],
    )?;
    ensure!(
        !run.stderr.contains("`wasi:sockets/tcp@0.2.12`"),
        "the granted wasi:sockets/tcp is named as refused: {}",
        excerpt(&run.stderr)
    );
    // Both granted explicitly: the component runs.
    host.policy(OPEN)?;
    let run = host.run(&["invoke", "sockets", "probe"])?;
    run.expect(
        0,
        "a component whose wasi:sockets imports are requested and granted",
    )?;
    ensure!(
        run.json()? == json!(7),
        "the sockets probe answered {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

/// The cases of `wasi:sockets`' `error-code`, in order.
const SOCKET_ERRORS: [&str; 21] = [
    "unknown",
    "access-denied",
    "not-supported",
    "invalid-argument",
    "out-of-memory",
    "timeout",
    "concurrency-conflict",
    "not-in-progress",
    "would-block",
    "invalid-state",
    "new-socket-limit",
    "address-not-bindable",
    "address-in-use",
    "remote-unreachable",
    "connection-refused",
    "connection-reset",
    "connection-aborted",
    "datagram-too-large",
    "name-unresolvable",
    "temporary-resolver-failure",
    "permanent-resolver-failure",
];

/// A component of the suite's own, written byte by byte, for `kind` `tcp` or `udp`: it imports
/// `wasi:sockets/<kind>-create-socket@0.2.12` (and the `<kind>-socket` resource of
/// `wasi:sockets/<kind>@0.2.12`) and exports `probe: func() -> u32`, which calls
/// `create-<kind>-socket(ipv4)` and answers 1000 × the result's discriminant plus its payload's
/// low byte (an error `e` gives 1000 + e's index; a socket, its handle).
fn socket_creating_component(kind: &str) -> Vec<u8> {
    let resource = format!("{kind}-socket");
    let resource_interface = format!("wasi:sockets/{kind}@0.2.12");
    let create_interface = format!("wasi:sockets/{kind}-create-socket@0.2.12");
    let create = format!("create-{kind}-socket");
    let mut c = b"\0asm\x0d\x00\x01\x00".to_vec();
    // type 0: instance { export "<kind>-socket" (sub resource) }; instance 0 imports it.
    let mut t0 = vec![0x01, 0x42, 0x01, 0x04, 0x00];
    t0.extend(name(&resource));
    t0.extend([0x03, 0x01]);
    c.extend(section(7, &t0));
    let mut import = vec![0x01, 0x00];
    import.extend(name(&resource_interface));
    import.extend([0x05, 0x00]);
    c.extend(section(10, &import));
    // type 1: the resource.
    let mut alias = vec![0x01, 0x03, 0x00, 0x00];
    alias.extend(name(&resource));
    c.extend(section(6, &alias));
    // type 2: instance { create-<kind>-socket: func(address-family) -> result<own, error-code> }
    let mut t2 = vec![0x01, 0x42, 0x0a];
    t2.extend([0x02, 0x03, 0x02, 0x01, 0x01]); // 0: alias outer type 1
    t2.extend([0x04, 0x00]); // 1: export "<kind>-socket" (eq 0)
    t2.extend(name(&resource));
    t2.extend([0x03, 0x00, 0x00]);
    t2.extend([0x01, 0x69, 0x01]); // 2: own<1>
    t2.extend([0x01, 0x6d, 0x02]); // 3: enum ip-address-family
    t2.extend(name("ipv4"));
    t2.extend(name("ipv6"));
    t2.extend([0x04, 0x00]); // 4: export "ip-address-family" (eq 3)
    t2.extend(name("ip-address-family"));
    t2.extend([0x03, 0x00, 0x03]);
    t2.extend([0x01, 0x6d]); // 5: enum error-code
    t2.extend(leb(SOCKET_ERRORS.len() as u64));
    for case in SOCKET_ERRORS {
        t2.extend(name(case));
    }
    t2.extend([0x04, 0x00]); // 6: export "error-code" (eq 5)
    t2.extend(name("error-code"));
    t2.extend([0x03, 0x00, 0x05]);
    t2.extend([0x01, 0x6a, 0x01, 0x02, 0x01, 0x06]); // 7: result<2, 6>
    t2.extend([0x01, 0x40, 0x01]); // 8: func(address-family: 4) -> 7
    t2.extend(name("address-family"));
    t2.extend([0x04, 0x00, 0x07]);
    t2.extend([0x04, 0x00]); // export "create-<kind>-socket" (func 8)
    t2.extend(name(&create));
    t2.extend([0x01, 0x08]);
    c.extend(section(7, &t2));
    let mut import = vec![0x01, 0x00];
    import.extend(name(&create_interface));
    import.extend([0x05, 0x02]);
    c.extend(section(10, &import));
    // func 0: the imported create-<kind>-socket.
    let mut alias = vec![0x01, 0x01, 0x00, 0x01];
    alias.extend(name(&create));
    c.extend(section(6, &alias));
    // core module 0: a memory; core instance 0; core memory 0.
    let memory: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x05, 0x03, 0x01, 0x00, 0x01, // one memory of one page
        0x07, 0x07, 0x01, 0x03, b'm', b'e', b'm', 0x02, 0x00, // export "mem"
    ];
    c.extend(section(1, memory));
    c.extend(section(2, &[0x01, 0x00, 0x00, 0x00]));
    let mut alias = vec![0x01, 0x00, 0x02, 0x01, 0x00];
    alias.extend(name("mem"));
    c.extend(section(6, &alias));
    // core func 0: create-<kind>-socket lowered with memory 0.
    c.extend(section(8, &[0x01, 0x01, 0x00, 0x00, 0x01, 0x03, 0x00]));
    // core module 1: calls it with ipv4 and a return area at 8, answers from the area.
    let caller: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x0a, 0x02, 0x60, 0x02, 0x7f, 0x7f, 0x00, 0x60, 0x00, 0x01, 0x7f, // types
        0x02, 0x1b, 0x02, // imports: host.create, host.mem
        0x04, b'h', b'o', b's', b't', 0x06, b'c', b'r', b'e', b'a', b't', b'e', 0x00, 0x00, //
        0x04, b'h', b'o', b's', b't', 0x03, b'm', b'e', b'm', 0x02, 0x00, 0x01, //
        0x03, 0x02, 0x01, 0x01, // function 1 of type 1
        0x07, 0x09, 0x01, 0x05, b'p', b'r', b'o', b'b', b'e', 0x00, 0x01, // export "probe"
        0x0a, 0x19, 0x01, 0x17, 0x00, // code, one body of 23 bytes, no locals
        0x41, 0x00, 0x41, 0x08, 0x10, 0x00, // create(ipv4, 8)
        0x41, 0x00, 0x2d, 0x00, 0x08, 0x41, 0xe8, 0x07, 0x6c, // load8_u(8) * 1000
        0x41, 0x00, 0x2d, 0x00, 0x0c, 0x6a, 0x0b, // + load8_u(12)
    ];
    c.extend(section(1, caller));
    // core instance 1: { create, mem }; core instance 2: module 1 with host = instance 1.
    let mut instances = vec![0x02, 0x01, 0x02];
    instances.extend(name("create"));
    instances.extend([0x00, 0x00]);
    instances.extend(name("mem"));
    instances.extend([0x02, 0x00]);
    instances.extend([0x00, 0x01, 0x01]);
    instances.extend(name("host"));
    instances.extend([0x12, 0x01]);
    c.extend(section(2, &instances));
    // core func 1: "probe" of core instance 2; type 3: func() -> u32; func 1 lifts it.
    let mut alias = vec![0x01, 0x00, 0x00, 0x01, 0x02];
    alias.extend(name("probe"));
    c.extend(section(6, &alias));
    c.extend(section(7, &[0x01, 0x40, 0x00, 0x00, 0x79]));
    c.extend(section(8, &[0x01, 0x00, 0x00, 0x01, 0x00, 0x03]));
    let mut export = vec![0x01, 0x00];
    export.extend(name("probe"));
    export.extend([0x01, 0x01, 0x00]);
    c.extend(section(11, &export));
    c
}

fn socket_creation_refused(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    for kind in ["tcp", "udp"] {
        let imports = [
            format!("wasi:sockets/{kind}@0.2.12"),
            format!("wasi:sockets/{kind}-create-socket@0.2.12"),
        ];
        let name = format!("{kind}-sockets");
        let manifest = format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n\n[requests]\nimports = [{:?}, {:?}]\n",
            imports[0], imports[1]
        );
        host.policy(OPEN)?;
        add(
            &host,
            &format!("{kind}.wasm"),
            &socket_creating_component(kind),
            Some(&manifest),
        )?
        .expect(
            0,
            &format!("capability add of a component creating a {kind} socket"),
        )?;
        // Not baseline: without a link grant of their own, refused, each import named.
        host.policy(
            "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource);\n\
             permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"link\", resource) when { resource.baseline };\n",
        )?;
        let run = host.run(&["invoke", &name, "probe"])?;
        failed(
            &run,
            7,
            &format!("{kind} sockets under a baseline-only link grant"),
        )?;
        for import in &imports {
            names(
                &run,
                &format!("{kind} sockets under a baseline-only link grant"),
                &[&format!("`{import}` (denied: no policy permits it)")],
            )?;
        }
        // Linked: the socket-creating call asks net.connect on the unspecified address and
        // answers an error, never a socket.
        let create = format!("create-{kind}-socket");
        for (policy, want, allowed) in [
            (
                format!(
                    "{OPEN}forbid (principal, action == FemtoClaw::Action::\"net.connect\", resource);\n"
                ),
                "access-denied",
                false,
            ),
            (OPEN.to_owned(), "not-supported", true),
        ] {
            host.policy(&policy)?;
            let run = host.run(&["invoke", &name, "probe"])?;
            run.expect(0, &format!("{create} with net.connect allowed={allowed}"))?;
            let answer = run.json()?.as_u64().unwrap_or(0);
            let index = SOCKET_ERRORS.iter().position(|e| *e == want).unwrap_or(0) as u64;
            ensure!(
                answer == 1000 + index,
                "with net.connect {} on the unspecified address, {create} must answer the error {want} ({}), creating no socket; the component read {answer} (1000 × discriminant + payload)",
                if allowed { "allowed" } else { "refused" },
                1000 + index
            );
            let entries = host.entries()?;
            let n = last_invocation(&entries)?;
            let own = of_invocation(&entries, n);
            let decided = own.iter().position(|e| {
                e["type"] == "decision"
                    && e["action"] == "net.connect"
                    && e["resource"] == "0.0.0.0"
                    && e["allowed"] == allowed
            });
            let called = own.iter().position(|e| {
                e["type"] == "host-call"
                    && e["interface"] == imports[1].as_str()
                    && e["function"] == create.as_str()
            });
            ensure!(
                decided.is_some() && called.is_some_and(|c| Some(c) > decided),
                "{create} must pass the gate: a net.connect decision on 0.0.0.0 (allowed={allowed}), then the call, recorded: {own:?}"
            );
            ensure!(
                own.get(called.unwrap_or(0))
                    .is_some_and(|c| c["result"].to_string().contains(want)),
                "the recorded {create} does not answer {want}: {:?}",
                called.and_then(|c| own.get(c))
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 4 and 10: how exported functions are named.

/// A component of the suite's own, written byte by byte, importing nothing: it exports
/// `probe: func() -> u32` (7) at the world level and `answer: func() -> u32` (42) in the
/// exported interface `femtoclaw:probe/tools@1.0.0`.
fn interface_component() -> Vec<u8> {
    let mut c = b"\0asm\x0d\x00\x01\x00".to_vec();
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: [] -> [i32]
        0x03, 0x03, 0x02, 0x00, 0x00, // two functions of type 0
        0x07, 0x12, 0x02, // exports "probe" and "answer"
        0x05, b'p', b'r', b'o', b'b', b'e', 0x00, 0x00, //
        0x06, b'a', b'n', b's', b'w', b'e', b'r', 0x00, 0x01, //
        0x0a, 0x0b, 0x02, // code
        0x04, 0x00, 0x41, 0x07, 0x0b, // i32.const 7
        0x04, 0x00, 0x41, 0x2a, 0x0b, // i32.const 42
    ];
    c.extend(section(1, module));
    c.extend(section(2, &[0x01, 0x00, 0x00, 0x00]));
    let mut alias = vec![0x02, 0x00, 0x00, 0x01, 0x00];
    alias.extend(name("probe"));
    alias.extend([0x00, 0x00, 0x01, 0x00]);
    alias.extend(name("answer"));
    c.extend(section(6, &alias));
    c.extend(section(7, &[0x01, 0x40, 0x00, 0x00, 0x79]));
    c.extend(section(
        8,
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        ],
    ));
    // instance 0: { answer: func 1 }
    let mut instance = vec![0x01, 0x01, 0x01, 0x00];
    instance.extend(name("answer"));
    instance.extend([0x01, 0x01]);
    c.extend(section(5, &instance));
    let mut export = vec![0x02, 0x00];
    export.extend(name("probe"));
    export.extend([0x01, 0x00, 0x00, 0x00]);
    export.extend(name("femtoclaw:probe/tools@1.0.0"));
    export.extend([0x05, 0x00, 0x00]);
    c.extend(section(11, &export));
    c
}

fn export_names(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let manifest = "name = \"exports\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n";
    add(
        &host,
        "exports.wasm",
        &interface_component(),
        Some(manifest),
    )?
    .expect(0, "capability add of a component exporting an interface")?;
    let run = host.run(&["capability", "inspect", "exports"])?;
    run.expect(0, "capability inspect exports")?;
    let inspected = run.json()?;
    let mut functions: Vec<String> = inspected["functions"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    functions.sort();
    ensure!(
        functions == ["femtoclaw:probe/tools@1.0.0#answer", "probe"],
        "a world-level export must be named by its name and an interface's function as <interface>#<function>: capability inspect lists {functions:?}"
    );
    for (function, want) in [("probe", 7), ("femtoclaw:probe/tools@1.0.0#answer", 42)] {
        let run = host.run(&["invoke", "exports", function])?;
        run.expect(0, &format!("invoke exports {function}"))?;
        ensure!(
            run.json()? == json!(want),
            "invoke exports {function} must call it and answer {want}: {}",
            excerpt(&run.stdout)
        );
    }
    // The interface's function is not reachable by its bare name, nor under another version.
    for function in ["answer", "femtoclaw:probe/tools@1.0.1#answer"] {
        let run = host.run(&["invoke", "exports", function])?;
        failed(&run, 3, &format!("invoke exports {function}"))?;
    }
    Ok(())
}

/// A component of the suite's own, written byte by byte, importing nothing: it defines and
/// exports the resource `thing`, and exports `take: func(t: own<thing>) -> u32` (9) and
/// `probe: func() -> u32` (7).
fn resource_component() -> Vec<u8> {
    let mut c = b"\0asm\x0d\x00\x01\x00".to_vec();
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x0a, 0x02, 0x60, 0x00, 0x01, 0x7f, 0x60, 0x01, 0x7f, 0x01, 0x7f, // types
        0x03, 0x03, 0x02, 0x00, 0x01, // probe: type 0, take: type 1
        0x07, 0x10, 0x02, // exports "probe" and "take"
        0x05, b'p', b'r', b'o', b'b', b'e', 0x00, 0x00, //
        0x04, b't', b'a', b'k', b'e', 0x00, 0x01, //
        0x0a, 0x0b, 0x02, // code
        0x04, 0x00, 0x41, 0x07, 0x0b, // i32.const 7
        0x04, 0x00, 0x41, 0x09, 0x0b, // i32.const 9
    ];
    c.extend(section(1, module));
    c.extend(section(2, &[0x01, 0x00, 0x00, 0x00]));
    let mut alias = vec![0x02, 0x00, 0x00, 0x01, 0x00];
    alias.extend(name("probe"));
    alias.extend([0x00, 0x00, 0x01, 0x00]);
    alias.extend(name("take"));
    c.extend(section(6, &alias));
    // type 0: resource (rep i32), no destructor; exported as "thing": type 1.
    c.extend(section(7, &[0x01, 0x3f, 0x7f, 0x00]));
    let mut export = vec![0x01, 0x00];
    export.extend(name("thing"));
    export.extend([0x03, 0x00, 0x00]);
    c.extend(section(11, &export));
    // type 2: own<1>; type 3: func(t: 2) -> u32; type 4: func() -> u32.
    let mut types = vec![0x03, 0x69, 0x01, 0x40, 0x01];
    types.extend(name("t"));
    types.extend([0x02, 0x00, 0x79, 0x40, 0x00, 0x00, 0x79]);
    c.extend(section(7, &types));
    // func 0: probe (type 4); func 1: take (type 3).
    c.extend(section(
        8,
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00, 0x03,
        ],
    ));
    let mut export = vec![0x02, 0x00];
    export.extend(name("probe"));
    export.extend([0x01, 0x00, 0x00, 0x00]);
    export.extend(name("take"));
    export.extend([0x01, 0x01, 0x00]);
    c.extend(section(11, &export));
    c
}

fn resource_functions(target: &Target) -> Result<(), Failure> {
    let mut server = target.server(Some(OPEN))?;
    let Some(host) = server.host.take() else {
        return Err(Failure::NotApplicable(
            "the case needs the data directory of a server of its own".into(),
        ));
    };
    let manifest = "name = \"things\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n";
    add(&host, "things.wasm", &resource_component(), Some(manifest))?
        .expect(0, "capability add of a component exporting a resource")?;
    // Listed, with the reason it cannot cross JSON.
    let run = host.run(&["capability", "inspect", "things"])?;
    run.expect(0, "capability inspect things")?;
    let inspected = run.json()?;
    let functions = inspected["functions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let take = functions.iter().find(|f| f["name"] == "take");
    ensure!(
        take.is_some_and(|t| t["unsupported"]
            .as_str()
            .is_some_and(|u| u.contains("resource"))),
        "a function with a resource in its signature must stay listed with the reason in `unsupported`: {functions:?}"
    );
    ensure!(
        functions
            .iter()
            .any(|f| f["name"] == "probe" && f["unsupported"].is_null()),
        "the component's other function must be listed as supported: {functions:?}"
    );
    // Not offered as an MCP tool; the other function is.
    let initialize = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "femtoclaw-conformance", "version": "1" } }
    });
    let mcp = |session: Option<&str>, body: &Json| -> Result<crate::target::Response, Failure> {
        let mut request = crate::target::Server::client()
            .post(format!("{}/mcp", server.url))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        let response = request
            .send()
            .map_err(|e| Failure::Failed(format!("/mcp: no answer: {e}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        Ok(crate::target::Response {
            status,
            headers,
            text,
        })
    };
    let answer = mcp(None, &initialize)?;
    answer.expect(200, "MCP initialize")?;
    let session = answer.header("mcp-session-id").to_owned();
    mcp(
        Some(&session),
        &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
    )?
    .expect(202, "notifications/initialized")?;
    let answer = mcp(
        Some(&session),
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
    )?;
    answer.expect(200, "MCP tools/list")?;
    let tools: Vec<String> = answer.json()?["result"]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        tools.iter().any(|t| t == "things.probe") && !tools.iter().any(|t| t == "things.take"),
        "MCP must offer things.probe and not things.take, whose types cannot cross JSON: {tools:?}"
    );
    // Refused at call time, naming the resource, without running guest code.
    let answer = server.post(
        "/v1/invoke",
        &json!({ "capability": "things", "function": "take", "args": { "t": 1 } }),
    )?;
    ensure!(
        answer.status >= 400 && answer.status < 500 && answer.text.contains("resource"),
        "invoking a function with a resource in its signature must be refused naming the resource: HTTP {} {}",
        answer.status,
        excerpt(&answer.text)
    );
    drop(server);
    let before = host.entries()?;
    let run = host.run(&["invoke", "things", "take", "--args", r#"{"t":1}"#])?;
    ensure!(
        run.code == 2
            && run.stdout.trim().is_empty()
            && run.stderr.contains("`t`")
            && run.stderr.contains("a resource"),
        "invoke things take must be refused (exit 2) naming its parameter's path and `a resource`: exit {}, {}",
        run.code,
        excerpt(&run.stderr)
    );
    let entries = host.entries()?;
    ensure!(
        !entries[before.len()..].iter().any(|e| {
            e["entry"]["type"] == "host-call"
                || (e["entry"]["type"] == "invocation-end"
                    && e["entry"]["fuel_consumed"] != json!(0))
        }),
        "a function with a resource in its signature ran guest code: {:?}",
        &entries[before.len()..]
    );
    let run = host.run(&["invoke", "things", "probe"])?;
    run.expect(0, "invoke things probe")?;
    ensure!(
        run.json()? == json!(7),
        "things.probe answered {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 6: the table limit.

/// A component of the suite's own, written byte by byte, importing nothing: its core module has
/// a table of one funcref; `small: func() -> s32` grows it by 100 elements and `big` by 30 000,
/// each answering what `table.grow` gave (the old size, or -1).
fn table_component() -> Vec<u8> {
    let mut c = b"\0asm\x0d\x00\x01\x00".to_vec();
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: [] -> [i32]
        0x03, 0x03, 0x02, 0x00, 0x00, // two functions of type 0
        0x04, 0x04, 0x01, 0x70, 0x00, 0x01, // a table of funcref, at least 1
        0x07, 0x0f, 0x02, // exports "small" and "big"
        0x05, b's', b'm', b'a', b'l', b'l', 0x00, 0x00, //
        0x03, b'b', b'i', b'g', 0x00, 0x01, //
        0x0a, 0x18, 0x02, // code
        0x0a, 0x00, 0xd0, 0x70, 0x41, 0xe4, 0x00, 0xfc, 0x0f, 0x00, 0x0b, // grow by 100
        0x0b, 0x00, 0xd0, 0x70, 0x41, 0xb0, 0xea, 0x01, 0xfc, 0x0f, 0x00, 0x0b, // by 30000
    ];
    c.extend(section(1, module));
    c.extend(section(2, &[0x01, 0x00, 0x00, 0x00]));
    let mut alias = vec![0x02, 0x00, 0x00, 0x01, 0x00];
    alias.extend(name("small"));
    alias.extend([0x00, 0x00, 0x01, 0x00]);
    alias.extend(name("big"));
    c.extend(section(6, &alias));
    c.extend(section(7, &[0x01, 0x40, 0x00, 0x00, 0x7a]));
    c.extend(section(
        8,
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        ],
    ));
    let mut export = vec![0x02, 0x00];
    export.extend(name("small"));
    export.extend([0x01, 0x00, 0x00, 0x00]);
    export.extend(name("big"));
    export.extend([0x01, 0x01, 0x00]);
    c.extend(section(11, &export));
    c
}

fn table_limit(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let manifest = "name = \"tables\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n";
    add(&host, "tables.wasm", &table_component(), Some(manifest))?
        .expect(0, "capability add of a component growing a table")?;
    let run = host.run(&["invoke", "tables", "small"])?;
    run.expect(0, "a table grown by 100 elements")?;
    ensure!(
        run.json()? == json!(1),
        "growing a table of 1 by 100 within the limit must succeed (table.grow answering 1): {}",
        excerpt(&run.stdout)
    );
    let run = host.run(&["invoke", "tables", "big"])?;
    failed(&run, 6, "a table grown past 20000 elements")?;
    names(
        &run,
        "a table grown past 20000 elements",
        &["table limit of 20000 elements exceeded"],
    )?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    ensure!(
        of_invocation(&entries, n)
            .iter()
            .any(|e| e["type"] == "trap"
                && e["kind"] == "limit"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("table limit of 20000 elements exceeded"))),
        "the invocation's trap must be of kind `limit` naming the table limit"
    );
    Ok(())
}

/// The `trap` entry of the host's last invocation.
fn last_trap(host: &Host, what: &str) -> Result<Json, Failure> {
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let traps: Vec<&Json> = of_invocation(&entries, n)
        .into_iter()
        .filter(|e| e["type"] == "trap")
        .collect();
    match traps.as_slice() {
        [trap] => Ok((*trap).clone()),
        _ => Err(super::failed(format!(
            "{what}: the invocation must record one trap entry, not {traps:?}"
        ))),
    }
}

/// Runs `args` (with one more environment variable), which must exit `code`; its trap must be
/// of `kind` and name `names`.
fn recorded_as(
    host: &Host,
    what: &str,
    args: &[&str],
    variable: Option<(&str, &str)>,
    code: i32,
    kind: &str,
    names: &str,
) -> Result<Json, Failure> {
    let mut command = host.command(args);
    command.envs(variable);
    let run = host.run_command(command, args)?;
    failed(&run, code, what)?;
    let trap = last_trap(host, what)?;
    ensure!(
        trap["kind"] == kind && trap["message"].as_str().is_some_and(|m| m.contains(names)),
        "{what}: the trap entry must be of kind `{kind}` naming {names:?}: {trap}"
    );
    Ok(trap)
}

fn limit_failures_recorded_by_kind(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let cap = ("FEMTOCLAW_LIMITS_MAX_RECORDED_BYTES", "65536");
    let probes = [
        (
            "memory growing past its limit",
            "grow",
            None,
            "memory limit",
        ),
        (
            "a recursion past the stack",
            "recurse:100000000",
            None,
            "stack",
        ),
        (
            "host calls recording past the cap",
            "logs:100000",
            Some(cap),
            "recorded-bytes limit of 65536 bytes",
        ),
    ];
    for (what, probe, env, names) in probes {
        let args = json!({ "text": format!("\u{1}probe:{probe}") }).to_string();
        let argv = [
            "invoke",
            "conformance",
            "echo",
            "--args",
            &args,
            "--fuel",
            "10000000000",
        ];
        recorded_as(&host, what, &argv, env, 6, "limit", names)?;
    }
    // A table grown past its limit, in a component of the suite's own.
    let manifest = "name = \"tables\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n";
    add(&host, "tables.wasm", &table_component(), Some(manifest))?
        .expect(0, "capability add of a component growing a table")?;
    recorded_as(
        &host,
        "a table grown past its limit",
        &["invoke", "tables", "big"],
        None,
        6,
        "limit",
        "table limit of 20000 elements",
    )?;
    // Fuel exhausted: the kind, and all the budget consumed.
    let trap = recorded_as(
        &host,
        "a loop out of fuel",
        &["invoke", "conformance", "spin", "--fuel", "2000000"],
        None,
        4,
        "fuel-exhausted",
        "",
    )?;
    ensure!(
        trap["fuel_consumed"] == json!(2_000_000),
        "a loop out of its 2000000 fuel must record all of it consumed: {trap}"
    );
    // A quota refusal, before the guest runs.
    std::fs::write(
        host.data.path().join("femtoclaw.toml"),
        "[[quotas.rules]]\ncapability = \"conformance\"\ninvocations = 1\nper_ms = 3600000\n",
    )
    .map_err(|e| super::failed(format!("cannot write the configuration: {e}")))?;
    let add_args = r#"{"a":1,"b":2}"#;
    let first = ["invoke", "conformance", "add", "--args", add_args];
    host.run(&first)?
        .expect(0, "the one invocation the quota allows")?;
    recorded_as(
        &host,
        "an invocation over its quota",
        &first,
        None,
        12,
        "limit",
        "quotas.rules[0]",
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 12: the operator's configuration values.

/// A component of the suite's own, written byte by byte: it imports
/// `wasi:config/store@0.2.0-draft` and exports `probe: func() -> u32`, which calls `get("k")`,
/// `get("other")` and `get-all()` (their answers are what the ledger records) and answers 7.
fn config_component() -> Vec<u8> {
    let mut c = b"\0asm\x0d\x00\x01\x00".to_vec();
    // type 0: the instance type of wasi:config/store.
    let mut t0 = vec![0x01, 0x42, 0x0b];
    t0.extend([0x01, 0x71, 0x02]); // 0: variant error
    t0.extend(name("upstream"));
    t0.extend([0x01, 0x73, 0x00]);
    t0.extend(name("io"));
    t0.extend([0x01, 0x73, 0x00]);
    t0.extend([0x04, 0x00]); // 1: export "error" (eq 0)
    t0.extend(name("error"));
    t0.extend([0x03, 0x00, 0x00]);
    t0.extend([0x01, 0x6b, 0x73]); // 2: option<string>
    t0.extend([0x01, 0x6a, 0x01, 0x02, 0x01, 0x01]); // 3: result<2, 1>
    t0.extend([0x01, 0x40, 0x01]); // 4: func(key: string) -> 3
    t0.extend(name("key"));
    t0.extend([0x73, 0x00, 0x03]);
    t0.extend([0x04, 0x00]); // export "get"
    t0.extend(name("get"));
    t0.extend([0x01, 0x04]);
    t0.extend([0x01, 0x6f, 0x02, 0x73, 0x73]); // 5: tuple<string, string>
    t0.extend([0x01, 0x70, 0x05]); // 6: list<5>
    t0.extend([0x01, 0x6a, 0x01, 0x06, 0x01, 0x01]); // 7: result<6, 1>
    t0.extend([0x01, 0x40, 0x00, 0x00, 0x07]); // 8: func() -> 7
    t0.extend([0x04, 0x00]); // export "get-all"
    t0.extend(name("get-all"));
    t0.extend([0x01, 0x08]);
    c.extend(section(7, &t0));
    let mut import = vec![0x01, 0x00];
    import.extend(name("wasi:config/store@0.2.0-draft"));
    import.extend([0x05, 0x00]);
    c.extend(section(10, &import));
    // funcs 0 and 1: the imported get and get-all.
    let mut alias = vec![0x02, 0x01, 0x00, 0x00];
    alias.extend(name("get"));
    alias.extend([0x01, 0x00, 0x00]);
    alias.extend(name("get-all"));
    c.extend(section(6, &alias));
    // core module 0: a memory and a bump allocator.
    let allocator: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x09, 0x01, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, // realloc's type
        0x03, 0x02, 0x01, 0x00, // realloc
        0x05, 0x03, 0x01, 0x00, 0x01, // a memory of one page
        0x06, 0x07, 0x01, 0x7f, 0x01, 0x41, 0x80, 0x08, 0x0b, // next free byte: 1024
        0x07, 0x11, 0x02, 0x03, b'm', b'e', b'm', 0x02, 0x00, // export "mem"
        0x07, b'r', b'e', b'a', b'l', b'l', b'o', b'c', 0x00, 0x00, // export "realloc"
        0x0a, 0x0d, 0x01, 0x0b, 0x00, // code: old next, next += size
        0x23, 0x00, 0x23, 0x00, 0x20, 0x03, 0x6a, 0x24, 0x00, 0x0b,
    ];
    c.extend(section(1, allocator));
    c.extend(section(2, &[0x01, 0x00, 0x00, 0x00]));
    // core memory 0 and core func 0 (realloc) of core instance 0.
    let mut alias = vec![0x02, 0x00, 0x02, 0x01, 0x00];
    alias.extend(name("mem"));
    alias.extend([0x00, 0x00, 0x01, 0x00]);
    alias.extend(name("realloc"));
    c.extend(section(6, &alias));
    // core funcs 1 and 2: get and get-all lowered with memory 0, realloc 0, UTF-8.
    c.extend(section(
        8,
        &[
            0x02, 0x01, 0x00, 0x00, 0x03, 0x03, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00, 0x01, 0x03,
            0x03, 0x00, 0x04, 0x00, 0x00,
        ],
    ));
    // core module 1: "kother" at 0; probe calls get(k), get(other), get-all.
    let caller: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x0f, 0x03, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00,
        0x01, 0x7f, // types
        0x02, 0x27, 0x03, // imports
        0x04, b'h', b'o', b's', b't', 0x03, b'g', b'e', b't', 0x00, 0x00, //
        0x04, b'h', b'o', b's', b't', 0x07, b'g', b'e', b't', b'-', b'a', b'l', b'l', 0x00,
        0x01, //
        0x04, b'h', b'o', b's', b't', 0x03, b'm', b'e', b'm', 0x02, 0x00, 0x01, //
        0x03, 0x02, 0x01, 0x02, // probe of type 2
        0x07, 0x09, 0x01, 0x05, b'p', b'r', b'o', b'b', b'e', 0x00, 0x02, // export "probe"
        0x0a, 0x1d, 0x01, 0x1b, 0x00, // code
        0x41, 0x00, 0x41, 0x01, 0x41, 0xc0, 0x00, 0x10, 0x00, // get("k") into 64
        0x41, 0x01, 0x41, 0x05, 0x41, 0xe0, 0x00, 0x10, 0x00, // get("other") into 96
        0x41, 0x80, 0x01, 0x10, 0x01, // get-all into 128
        0x41, 0x07, 0x0b, // 7
        0x0b, 0x0c, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x06, b'k', b'o', b't', b'h', b'e', b'r',
    ];
    c.extend(section(1, caller));
    let mut instances = vec![0x02, 0x01, 0x03];
    instances.extend(name("get"));
    instances.extend([0x00, 0x01]);
    instances.extend(name("get-all"));
    instances.extend([0x00, 0x02]);
    instances.extend(name("mem"));
    instances.extend([0x02, 0x00]);
    instances.extend([0x00, 0x01, 0x01]);
    instances.extend(name("host"));
    instances.extend([0x12, 0x01]);
    c.extend(section(2, &instances));
    let mut alias = vec![0x01, 0x00, 0x00, 0x01, 0x02];
    alias.extend(name("probe"));
    c.extend(section(6, &alias));
    c.extend(section(7, &[0x01, 0x40, 0x00, 0x00, 0x79]));
    c.extend(section(8, &[0x01, 0x00, 0x00, 0x03, 0x00, 0x01]));
    let mut export = vec![0x01, 0x00];
    export.extend(name("probe"));
    export.extend([0x01, 0x02, 0x00]);
    c.extend(section(11, &export));
    c
}

fn config_values(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let manifest = "name = \"settings\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n\n[requests]\nimports = [\"wasi:config/store@0.2.0-draft\"]\nconfig = [\"k\"]\n";
    add(&host, "settings.wasm", &config_component(), Some(manifest))?
        .expect(0, "capability add of a component reading its configuration")?;
    let dir = host.data.path().join("config");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Failed(format!("cannot create config: {e}")))?;
    write(
        &dir.join("settings.toml"),
        b"k = \"value-of-k\"\nother = \"value-of-other\"\n",
    )?;
    let run = host.run(&["invoke", "settings", "probe"])?;
    run.expect(0, "the configuration probe")?;
    ensure!(
        run.json()? == json!(7),
        "the probe answered {}",
        excerpt(&run.stdout)
    );
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    ensure!(
        calls.len() == 3,
        "the probe must record three config calls: {calls:?}"
    );
    let text = |c: &Json| c["result"].to_string();
    ensure!(
        text(&calls[0]).contains("value-of-k"),
        "get of a key granted by manifest and policy must answer the operator's value: {}",
        calls[0]
    );
    ensure!(
        text(&calls[1]).contains("upstream")
            && text(&calls[1]).contains("denied: ")
            && !text(&calls[1]).contains("value-of-other"),
        "get of a key the manifest does not request must answer upstream(\"denied: …\") without its value: {}",
        calls[1]
    );
    ensure!(
        text(&calls[2]).contains("value-of-k") && !text(&calls[2]).contains("value-of-other"),
        "get-all must answer only the granted pairs: {}",
        calls[2]
    );
    let own = of_invocation(&entries, n);
    let decision = |key: &str| {
        own.iter()
            .find(|e| {
                e["type"] == "decision" && e["action"] == "config.read" && e["resource"] == key
            })
            .map(|e| (*e).clone())
            .unwrap_or(Json::Null)
    };
    let other = decision("other");
    ensure!(
        other["allowed"] == false
            && other["policy_digest"].is_string()
            && other["policy_ids"] == json!([]),
        "the refusal of `other` must be recorded as a config.read decision with no policy id and the digest: {other}"
    );
    ensure!(
        decision("k")["allowed"] == true,
        "the grant of `k` must be recorded as an allowed config.read decision: {}",
        decision("k")
    );
    // The policy refuses the key the manifest requests: no-permit, never its value.
    host.policy(&format!(
        "{OPEN}@id(\"no-config\")\nforbid (principal, action == FemtoClaw::Action::\"config.read\", resource);\n"
    ))?;
    let run = host.run(&["invoke", "settings", "probe"])?;
    run.expect(
        0,
        "the configuration probe under a policy refusing config.read",
    )?;
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    let calls = host_calls(&entries, n);
    ensure!(
        calls.len() == 3
            && !calls
                .iter()
                .any(|c| c["result"].to_string().contains("value-of-"))
            && calls[0]["result"].to_string().contains("denied: "),
        "under a policy refusing config.read no value may be answered: {calls:?}"
    );
    let refused = of_invocation(&entries, n)
        .into_iter()
        .find(|e| e["type"] == "decision" && e["action"] == "config.read" && e["resource"] == "k")
        .cloned()
        .unwrap_or(Json::Null);
    ensure!(
        refused["allowed"] == false && refused["policy_ids"] == json!(["no-config"]),
        "the refusal of `k` must be recorded with the forbidding policy's id: {refused}"
    );
    Ok(())
}
