//! Cases of distribution and compatibility: the digests that fix an installed capability and
//! the reserved identities (specification 33), the local catalog (specification 54), upgrade
//! and migration refusals (specification 34), binary compatibility and the WIT contract
//! (specifications 47 and 48), the command line's machine-readable outputs and telemetry
//! (specification 55), and the single-writer data directory, health and stop of a node
//! (specifications 41 and 43).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

use super::execution::add;
use super::server::list_changed;
use super::{OPEN, failed, guest_host, kinds, read, write};
use crate::target::{Host, Response, Run, Server, excerpt};
use crate::{Case, Failure, GUEST, GUEST_MANIFEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.distribution.digests-stored-and-shown",
        verifies: &["FC-CRYPTO-3301", "FC-CRYPTO-3314"],
        run: digests_stored_and_shown,
    },
    Case {
        name: "cli.distribution.changed-in-place-refused",
        verifies: &["FC-CRYPTO-3302", "FC-CRYPTO-3303", "FC-CRYPTO-3316"],
        run: changed_in_place_refused,
    },
    Case {
        name: "cli.distribution.conflicting-and-interrupted-add",
        verifies: &["FC-CRYPTO-3306"],
        run: conflicting_and_interrupted_add,
    },
    Case {
        name: "cli.distribution.reserved-identities",
        verifies: &["FC-CRYPTO-3308", "FC-CRYPTO-3309", "FC-EXT-5410"],
        run: reserved_identities,
    },
    Case {
        name: "cli.distribution.policy-pins-digest",
        verifies: &["FC-CRYPTO-3307"],
        run: policy_pins_digest,
    },
    Case {
        name: "cli.distribution.replay-finds-by-digest",
        verifies: &["FC-CRYPTO-3304"],
        run: replay_finds_by_digest,
    },
    Case {
        name: "cli.registry.list-and-resolve",
        verifies: &[
            "FC-EXT-5401",
            "FC-EXT-5402",
            "FC-EXT-5403",
            "FC-EXT-5406",
            "FC-UPG-3408",
        ],
        run: list_and_resolve,
    },
    Case {
        name: "cli.registry.refused-packages",
        verifies: &["FC-EXT-5407", "FC-EXT-5408", "FC-EXT-5409"],
        run: refused_packages,
    },
    Case {
        name: "cli.upgrade.earlier-configuration-files",
        verifies: &["FC-UPG-3401"],
        run: earlier_configuration_files,
    },
    Case {
        name: "cli.upgrade.unknown-settings",
        verifies: &["FC-UPG-3402", "FC-UPG-3403"],
        run: unknown_settings,
    },
    Case {
        name: "cli.upgrade.export-version",
        verifies: &["FC-UPG-3405"],
        run: export_version_refused,
    },
    Case {
        name: "cli.upgrade.entry-version",
        verifies: &["FC-UPG-3404"],
        run: entry_version_refused,
    },
    Case {
        name: "cli.upgrade.engine-and-world-recorded",
        verifies: &["FC-UPG-3406", "FC-ABI-4803"],
        run: engine_and_world_recorded,
    },
    Case {
        name: "cli.upgrade.compile-cache-provenance",
        verifies: &["FC-UPG-3413"],
        run: compile_cache_provenance,
    },
    Case {
        name: "cli.upgrade.replay-other-engine",
        verifies: &["FC-UPG-3417"],
        run: replay_other_engine,
    },
    Case {
        name: "http.registry.catalog-changes-while-serving",
        verifies: &["FC-EXT-5404", "FC-EXT-5405"],
        run: catalog_changes_while_serving,
    },
    Case {
        name: "http.cluster.lock-holder-and-successor",
        verifies: &["FC-DIST-4101"],
        run: lock_holder_and_successor,
    },
    Case {
        name: "cli.cluster.origin-kept",
        verifies: &["FC-DIST-4102"],
        run: origin_kept,
    },
    Case {
        name: "http.cluster.health-and-graceful-stop",
        verifies: &["FC-DIST-4301", "FC-DIST-4302"],
        run: health_and_graceful_stop,
    },
    Case {
        name: "cli.tooling.json-outputs",
        verifies: &["FC-EXT-5501", "FC-EXT-5502", "FC-EXT-5504", "FC-EXT-5517"],
        run: json_outputs,
    },
    Case {
        name: "cli.tooling.config-show-sources",
        verifies: &["FC-EXT-5505"],
        run: config_show_sources,
    },
    Case {
        name: "cli.abi.unprovided-imports-refused",
        verifies: &["FC-ABI-4702"],
        run: unprovided_imports_refused,
    },
    Case {
        name: "cli.abi.pre-release-versions-exact",
        verifies: &["FC-ABI-4704"],
        run: pre_release_versions_exact,
    },
    Case {
        name: "cli.abi.earlier-wasi-patch-links",
        verifies: &["FC-ABI-4701", "FC-ABI-4705"],
        run: earlier_wasi_patch_links,
    },
    Case {
        name: "cli.abi.unsupported-features-refused",
        verifies: &["FC-ABI-4709"],
        run: unsupported_features_refused,
    },
    Case {
        name: "http.tooling.otlp-export",
        verifies: &["FC-EXT-5507"],
        run: otlp_export,
    },
    Case {
        name: "http.tooling.telemetry-receiver-down",
        verifies: &["FC-EXT-5516"],
        run: telemetry_receiver_down,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Whether `value` is a string of 64 lowercase hex digits.
fn is_digest(value: &Json) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The suite guest's manifest under another name and version.
fn manifest_as(name: &str, version: &str) -> String {
    GUEST_MANIFEST
        .replace("name = \"conformance\"", &format!("name = \"{name}\""))
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
}

/// The guest's manifest with `line` added at the top level.
fn manifest_with(line: &str) -> String {
    GUEST_MANIFEST.replace("description", &format!("{line}\ndescription"))
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

/// A refused command: exit `code` and nothing on stdout.
fn refused(run: &Run, code: i32, what: &str) -> Result<(), Failure> {
    run.expect(code, what)?;
    ensure!(
        run.stdout.trim().is_empty(),
        "{what}: a refused command printed on stdout: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

/// `capability list --json`, which must be an array.
fn list_json(host: &Host) -> Result<Vec<Json>, Failure> {
    let run = host.run(&["capability", "list", "--json"])?;
    run.expect(0, "capability list --json")?;
    let list = run.json()?;
    list.as_array()
        .cloned()
        .ok_or_else(|| failed(format!("capability list --json is not an array: {list}")))
}

/// The capability list's `(name, version, source)` triples.
fn listed(host: &Host) -> Result<Vec<(String, String, String)>, Failure> {
    Ok(list_json(host)?
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

/// The installed capabilities, as `name@version`.
fn installed(host: &Host) -> Result<Vec<String>, Failure> {
    Ok(listed(host)?
        .into_iter()
        .filter(|(_, _, s)| s == "installed")
        .map(|(n, v, _)| format!("{n}@{v}"))
        .collect())
}

/// The embedded capabilities, in their fixed order.
const EMBEDDED: [&str; 5] = ["fetch", "hello", "textstats", "memory", "files"];

/// The installed package's directory (specification 33's layout).
fn package_dir(host: &Host, name: &str, version: &str) -> PathBuf {
    host.data
        .path()
        .join("capabilities")
        .join(name)
        .join(version)
}

/// `bytes` with one custom section appended: the same code, other bytes.
fn with_custom_section(bytes: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = leb(name.len() as u64);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = bytes.to_vec();
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

/// The last `invocation-start` entry.
fn last_start(entries: &[Json]) -> Result<Json, Failure> {
    entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-start")
        .map(|e| e["entry"].clone())
        .ok_or_else(|| failed("the ledger holds no invocation-start"))
}

/// Writes `<data dir>/femtoclaw.toml`; its path.
fn write_config(host: &Host, text: &str) -> Result<PathBuf, Failure> {
    let path = host.data.path().join("femtoclaw.toml");
    write(&path, text.as_bytes())?;
    Ok(path)
}

/// Runs a command of `host` with extra environment variables.
fn run_env(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Result<Run, Failure> {
    let mut command = host.command(args);
    command.envs(env.iter().copied());
    let out = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| failed(format!("cannot run {}: {e}", args.join(" "))))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a command for at most `within`: what it did, or `None` (killed) when it did not end.
fn run_within(host: &Host, args: &[&str], within: Duration) -> Result<Option<Run>, Failure> {
    let mut child = host
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", args.join(" "))))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| failed(format!("cannot wait for {}: {e}", args.join(" "))))?
        {
            break status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipes' last bytes.
    std::thread::sleep(Duration::from_millis(100));
    let text = |t: &Arc<Mutex<String>>| t.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(Some(Run {
        code: status.code().unwrap_or(-1),
        stdout: text(&stdout),
        stderr: text(&stderr),
    }))
}

/// `invoke hello greet` of Ada.
fn greet(host: &Host) -> Result<Run, Failure> {
    host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#])
}

// ---------------------------------------------------------------------------------------------
// Digests and reserved identities (specification 33).

fn digests_stored_and_shown(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let digest = sha256_hex(GUEST);
    let run = add(
        &host,
        "guest.wasm",
        GUEST,
        Some(&manifest_with("publisher = \"acme\"")),
    )?;
    run.expect(0, "capability add")?;
    ensure!(
        run.stdout.trim() == format!("conformance 1.0.0 sha256:{digest}"),
        "capability add must print `conformance 1.0.0 sha256:{digest}`; it printed {:?}",
        run.stdout.trim()
    );
    // Stored beside the component: `sha256` holds the component's digest, `manifest.sha256`
    // that of the manifest as installed.
    let dir = package_dir(&host, "conformance", "1.0.0");
    let component = read(&dir.join("component.wasm"))?;
    ensure!(
        component == GUEST,
        "the installed component.wasm is not the bytes given to capability add"
    );
    let stored = String::from_utf8_lossy(&read(&dir.join("sha256"))?).into_owned();
    ensure!(
        stored == format!("{digest}\n"),
        "`sha256` beside the component holds {stored:?} where \"{digest}\\n\" is required"
    );
    let manifest = read(&dir.join("capability.toml"))?;
    let manifest_digest = sha256_hex(&manifest);
    let stored = String::from_utf8_lossy(&read(&dir.join("manifest.sha256"))?).into_owned();
    ensure!(
        stored == format!("{manifest_digest}\n"),
        "`manifest.sha256` holds {stored:?} where the installed manifest's digest \"{manifest_digest}\\n\" is required"
    );
    // Inspect: both digests, the publisher and the source, installed and embedded.
    let inspect = |spec: &str| -> Result<Json, Failure> {
        let run = host.run(&["capability", "inspect", spec])?;
        run.expect(0, &format!("capability inspect {spec}"))?;
        run.json()
    };
    let inspected = inspect("conformance")?;
    for (field, want) in [
        ("sha256", json!(digest)),
        ("manifest_sha256", json!(manifest_digest)),
        ("publisher", json!("acme")),
        ("source", json!("installed")),
    ] {
        ensure!(
            inspected[field] == want,
            "capability inspect conformance gives {field} {} where {want} is required",
            inspected[field]
        );
    }
    let hello = inspect("hello")?;
    ensure!(
        is_digest(&hello["sha256"])
            && is_digest(&hello["manifest_sha256"])
            && hello["publisher"] == "femtoclaw"
            && hello["source"] == "embedded",
        "capability inspect hello must give its two digests, publisher femtoclaw and source embedded: sha256 {}, manifest_sha256 {}, publisher {}, source {}",
        hello["sha256"],
        hello["manifest_sha256"],
        hello["publisher"],
        hello["source"]
    );
    // The list shows the component digest, in text and in JSON.
    let text = host.ok(&["capability", "list"])?;
    ensure!(
        text.lines().any(|l| l.starts_with("conformance")
            && l.contains("1.0.0")
            && l.contains(&format!("sha256:{digest}"))),
        "capability list has no line for conformance 1.0.0 with sha256:{digest}: {}",
        excerpt(&text)
    );
    let hello_line = format!("sha256:{}", hello["sha256"].as_str().unwrap_or("?"));
    ensure!(
        text.lines()
            .any(|l| l.starts_with("hello") && l.contains(&hello_line)),
        "capability list has no line for hello with its {hello_line}: {}",
        excerpt(&text)
    );
    let list = list_json(&host)?;
    ensure!(
        list.iter()
            .any(|c| c["manifest"]["name"] == "conformance" && c["sha256"] == digest.as_str()),
        "capability list --json gives conformance no sha256 {digest}"
    );
    Ok(())
}

/// The installed manifest with its line beginning `key` replaced by `line` (or `line` added at
/// the top when it has none).
fn edited_manifest(stored: &str, key: &str, line: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = stored
        .lines()
        .map(|l| {
            if !found && l.trim_start().starts_with(key) {
                found = true;
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        out.insert(0, line.to_owned());
    }
    out.join("\n") + "\n"
}

/// The number of host calls the ledger holds.
fn host_call_count(host: &Host) -> Result<usize, Failure> {
    Ok(kinds(&host.entries()?)
        .iter()
        .filter(|k| *k == "host-call")
        .count())
}

fn changed_in_place_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let dir = package_dir(&host, "conformance", "1.0.0");
    let recall = |key: &str| -> Result<Json, Failure> {
        let run = host.invoke("recall", &json!({ "key": key }), &[])?;
        run.expect(0, &format!("recall {key}"))?;
        run.json()
    };
    let stored_manifest =
        String::from_utf8_lossy(&read(&dir.join("capability.toml"))?).into_owned();
    ensure!(
        stored_manifest
            .lines()
            .any(|l| l.trim_start().starts_with("fuel")),
        "the installed capability.toml has no fuel line: {}",
        excerpt(&stored_manifest)
    );
    let component = read(&dir.join("component.wasm"))?;
    let changes: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "component.wasm",
            with_custom_section(&component, "changed-in-place", b"x"),
            "a component with a section appended",
        ),
        (
            "capability.toml",
            edited_manifest(&stored_manifest, "fuel", "fuel = 60000000").into_bytes(),
            "a manifest whose fuel budget was raised",
        ),
        (
            "capability.toml",
            edited_manifest(&stored_manifest, "publisher", "publisher = \"acme\"").into_bytes(),
            "a manifest given a publisher",
        ),
        (
            "capability.toml",
            stored_manifest
                .replace("conformance", "conformanc3")
                .replace("name = \"conformanc3\"", "name = \"conformance\"")
                .into_bytes(),
            "a manifest whose key-value request names another namespace",
        ),
    ];
    for (i, (file, bytes, what)) in changes.into_iter().enumerate() {
        let path = dir.join(file);
        let original = read(&path)?;
        ensure!(
            bytes != original,
            "{what}: the edit changed nothing (suite error)"
        );
        let expected = sha256_hex(&original);
        let found = sha256_hex(&bytes);
        write(&path, &bytes)?;
        let calls = host_call_count(&host)?;
        let key = format!("refused-{i}");
        let run = host.invoke("remember", &json!({ "key": key, "value": "written" }), &[])?;
        ensure!(
            run.code != 0 && run.stdout.trim().is_empty(),
            "{what}: the capability still ran (exit {}): {}",
            run.code,
            excerpt(&run.stdout)
        );
        names(
            &run,
            what,
            &[
                &lossy(&path),
                "was changed after it was added",
                &format!("expected sha256 {expected}"),
                &format!("found {found}"),
            ],
        )?;
        ensure!(
            host_call_count(&host)? == calls,
            "{what}: the refused invocation made host calls: guest code ran"
        );
        // Restored: it runs again, and the refused call wrote nothing.
        write(&path, &original)?;
        ensure!(
            recall(&key)? == json!({ "ok": null }),
            "{what}: the refused `remember` stored its value: guest code ran before the refusal"
        );
        host.invoke("remember", &json!({ "key": key, "value": "later" }), &[])?
            .expect(0, &format!("{what}: remember once the file is restored"))?;
        ensure!(
            recall(&key)? == json!({ "ok": "later" }),
            "{what}: once restored, the capability does not run as before"
        );
    }
    if !target.owns_servers() {
        return Ok(());
    }
    // A running server loads the capability again for every request: it sees the change too.
    let path = dir.join("component.wasm");
    let serving = Serving::start(host, &[])?;
    let echo = || serving.server.post("/v1/invoke", &echo_call());
    echo()?.expect(200, "POST /v1/invoke of conformance before the change")?;
    write(
        &path,
        &with_custom_section(&component, "changed-while-serving", b"y"),
    )?;
    let response = echo()?;
    ensure!(
        response.status != 200
            && response.text.contains("was changed after it was added")
            && response.text.contains("component.wasm"),
        "a server ran a component changed after capability add, or did not name it: HTTP {} {}",
        response.status,
        excerpt(&response.text)
    );
    write(&path, &component)?;
    echo()?.expect(200, "POST /v1/invoke of conformance once restored")?;
    Ok(())
}

fn conflicting_and_interrupted_add(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?.expect(0, "capability add")?;
    let other = with_custom_section(GUEST, "conformance-other-bytes", b"1");
    let run = add(&host, "other.wasm", &other, Some(GUEST_MANIFEST))?;
    ensure!(
        run.code != 0 && run.stdout.trim().is_empty(),
        "other component bytes under the installed conformance@1.0.0 were accepted (exit {})",
        run.code
    );
    names(
        &run,
        "other bytes under an installed name and version",
        &[
            "conformance@1.0.0",
            &format!("is already installed with sha256 {}", sha256_hex(GUEST)),
        ],
    )?;
    let dir = package_dir(&host, "conformance", "1.0.0");
    ensure!(
        read(&dir.join("component.wasm"))? == GUEST,
        "the refused add replaced the installed component"
    );
    // An installation cut short before its digest was written: not installed.
    add(
        &host,
        "guest.wasm",
        GUEST,
        Some(&manifest_as("conformance", "2.0.0")),
    )?
    .expect(0, "capability add of conformance 2.0.0")?;
    let second = package_dir(&host, "conformance", "2.0.0");
    std::fs::remove_file(second.join("sha256"))
        .map_err(|e| failed(format!("cannot remove the digest of 2.0.0: {e}")))?;
    let list = installed(&host)?;
    ensure!(
        list == ["conformance@1.0.0"],
        "a version directory without its `sha256` must not be installed; capability list shows {list:?}"
    );
    let run = host.run(&[
        "invoke",
        "conformance@2.0.0",
        "echo",
        "--args",
        r#"{"text":"x"}"#,
    ])?;
    run.expect(
        3,
        "invoke of a version whose installation never wrote its digest",
    )?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    run.expect(0, "invoke conformance with 2.0.0 uninstalled")?;
    ensure!(
        last_start(&host.entries()?)?["version"] == "1.0.0",
        "`conformance` resolved to the version whose installation was cut short"
    );
    Ok(())
}

fn reserved_identities(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for publisher in ["femtoclaw", "FemtoClaw", "  FEMTOCLAW ", "\tfemtoclaw"] {
        let line = format!("publisher = {}", json!(publisher));
        let run = add(&host, "guest.wasm", GUEST, Some(&manifest_with(&line)))?;
        refused(
            &run,
            2,
            &format!("capability add with publisher {publisher:?}"),
        )?;
        names(&run, "a reserved publisher", &["reserved"])?;
    }
    for name in EMBEDDED {
        let run = add(
            &host,
            "guest.wasm",
            GUEST,
            Some(&manifest_as(name, "9.9.9")),
        )?;
        refused(
            &run,
            2,
            &format!("capability add under the embedded name {name}"),
        )?;
        names(
            &run,
            &format!("capability add under the embedded name {name}"),
            &[
                name,
                "is the name of a first-party capability embedded in the host",
            ],
        )?;
    }
    // Without a manifest, a file named after an embedded capability.
    let run = add(&host, "Hello.wasm", GUEST, None)?;
    refused(&run, 2, "capability add of Hello.wasm without a manifest")?;
    names(
        &run,
        "capability add of Hello.wasm without a manifest",
        &["is the name of a first-party capability embedded in the host"],
    )?;
    let list = installed(&host)?;
    ensure!(list.is_empty(), "a refused package was installed: {list:?}");
    // Removing an embedded capability: exit 2, and it still runs.
    for name in EMBEDDED {
        let run = host.run(&["capability", "remove", name])?;
        refused(&run, 2, &format!("capability remove {name}"))?;
    }
    greet(&host)?.expect(0, "hello.greet after the refused removals")?;
    ensure!(
        listed(&host)?
            .iter()
            .filter(|(_, _, s)| s == "embedded")
            .count()
            == EMBEDDED.len(),
        "an embedded capability is gone after a refused remove"
    );
    // Installed, then made to claim the publisher with its digest file rewritten to match:
    // refused at load.
    add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?.expect(0, "capability add")?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "invoke before the manifest is forged")?;
    let dir = package_dir(&host, "conformance", "1.0.0");
    let stored = String::from_utf8_lossy(&read(&dir.join("capability.toml"))?).into_owned();
    for publisher in ["femtoclaw", " FemtoClaw  "] {
        let forged = edited_manifest(
            &stored,
            "publisher",
            &format!("publisher = {}", json!(publisher)),
        );
        write(&dir.join("capability.toml"), forged.as_bytes())?;
        write(
            &dir.join("manifest.sha256"),
            format!("{}\n", sha256_hex(forged.as_bytes())).as_bytes(),
        )?;
        let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
        ensure!(
            run.code != 0 && run.stdout.trim().is_empty(),
            "an installed manifest claiming the publisher {publisher:?} was loaded and ran (exit {})",
            run.code
        );
        names(
            &run,
            &format!("an installed manifest claiming {publisher:?}"),
            &["reserved"],
        )?;
    }
    Ok(())
}

fn policy_pins_digest(target: &Target) -> Result<(), Failure> {
    let digest = sha256_hex(GUEST);
    let pinned = |digest: &str| {
        format!(
            "permit (principal == FemtoClaw::User::\"local\", action == FemtoClaw::Action::\"invoke\", resource == FemtoClaw::Capability::\"conformance\")\n\
             when {{ resource.digest == \"{digest}\" }};\n\
             permit (principal, action == FemtoClaw::Action::\"link\", resource);\n"
        )
    };
    let host = guest_host(target, &pinned(&digest))?;
    let run = host.invoke("echo", &json!({ "text": "pinned" }), &[])?;
    run.expect(0, "invoke under a policy pinned to the component's digest")?;
    ensure!(
        run.json()? == json!("pinned"),
        "the pinned call answered {}",
        excerpt(&run.stdout)
    );
    // Another digest, and the same digest in upper case: the attribute is the lowercase hex.
    let mut other = digest.clone().into_bytes();
    other[0] = if other[0] == b'0' { b'1' } else { b'0' };
    for (policy, what) in [
        (pinned(&String::from_utf8_lossy(&other)), "another digest"),
        (pinned(&digest.to_uppercase()), "the digest in upper case"),
    ] {
        host.policy(&policy)?;
        let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
        refused(&run, 7, &format!("invoke under a policy pinned to {what}"))?;
    }
    // Pinned to the guest's digest, other bytes installed under its name are not permitted.
    host.policy(&pinned(&digest))?;
    let other_bytes = with_custom_section(GUEST, "other-bytes", b"2");
    add(
        &host,
        "other.wasm",
        &other_bytes,
        Some(&manifest_as("conformance", "2.0.0")),
    )?
    .expect(0, "capability add of other bytes as conformance 2.0.0")?;
    let run = host.invoke("echo", &json!({ "text": "x" }), &[])?;
    refused(
        &run,
        7,
        "invoke of conformance 2.0.0 (other bytes) under the pin",
    )?;
    host.run(&[
        "invoke",
        "conformance@1.0.0",
        "echo",
        "--args",
        r#"{"text":"x"}"#,
    ])?
    .expect(0, "invoke of conformance@1.0.0 (the pinned bytes)")?;
    Ok(())
}

/// The guest with a custom section appended: a rebuild, same code, other bytes.
fn rebuilt_guest() -> Vec<u8> {
    with_custom_section(GUEST, "conformance-rebuild", b"same code, other bytes")
}

fn replay_finds_by_digest(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("add", &json!({ "a": 40, "b": 2 }), &[])?
        .expect(0, "invoke add")?;
    let entries = host.entries()?;
    let start = last_start(&entries)?;
    let dir = package_dir(&host, "conformance", "1.0.0");
    let manifest_digest = sha256_hex(&read(&dir.join("capability.toml"))?);
    let digest = sha256_hex(GUEST);
    ensure!(
        start["manifest_sha256"] == manifest_digest.as_str(),
        "the invocation-start records manifest_sha256 {} where the installed manifest's SHA-256 is {manifest_digest}",
        start["manifest_sha256"]
    );
    ensure!(
        start["component_sha256"] == digest.as_str(),
        "the invocation-start records component_sha256 {} where the component's is {digest}",
        start["component_sha256"]
    );
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let export = host.files.path().join("bare.export");
    host.ok(&["log", "export", &lossy(&export)])?;
    let elsewhere = target.host()?;
    let replay = |extra: &[&str]| {
        let file = lossy(&export);
        let mut args = vec!["replay", file.as_str(), "--key", key.as_str(), "--json"];
        args.extend_from_slice(extra);
        elsewhere.run(&args)
    };
    let dir_with = |name: &str, files: &[(&str, &[u8])]| -> Result<PathBuf, Failure> {
        let dir = host.files.path().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot make {name}: {e}")))?;
        for (file, bytes) in files {
            write(&dir.join(file), bytes)?;
        }
        Ok(dir)
    };
    // Found nowhere: exit 10 naming the capability.
    let empty = dir_with("empty", &[])?;
    let run = replay(&["--components", &lossy(&empty)])?;
    refused(&run, 10, "replay with the recorded component found nowhere")?;
    names(
        &run,
        "replay with the component found nowhere",
        &["conformance"],
    )?;
    // Found by the recorded digest, under a name that is not the capability's.
    let rebuilt = rebuilt_guest();
    let both = dir_with(
        "both",
        &[
            ("zz-unrelated-name.wasm", GUEST),
            ("conformance-rebuild.wasm", &rebuilt),
        ],
    )?;
    let run = replay(&["--components", &lossy(&both)])?;
    run.expect(
        0,
        "replay with the recorded component under another file name",
    )?;
    let report = run.json()?;
    let first = &report["invocations"][0];
    ensure!(
        first["status"] == "identical" && first["replaced_component"].is_null(),
        "the component whose digest was recorded must be found by digest and replay identical, not replaced: {first}"
    );
    // Only other bytes under the capability's name: replayed as replaced, with their digest.
    let named = dir_with("named", &[("conformance.wasm", &rebuilt)])?;
    let run = replay(&["--components", &lossy(&named)])?;
    run.expect(0, "replay against a rebuild named conformance.wasm")?;
    let report = run.json()?;
    let first = &report["invocations"][0];
    ensure!(
        first["replaced_component"] == sha256_hex(&rebuilt).as_str(),
        "a component given in place of the recorded one must be reported as replaced_component {}: {first}",
        sha256_hex(&rebuilt)
    );
    // On an engine of other settings (another memory limit), with the component at hand: not
    // replayable (exit 10), naming the recorded engine digest, never a divergence.
    let recorded = start["engine_digest"].as_str().unwrap_or("?").to_owned();
    write_config(&elsewhere, "[limits]\nmemory_bytes = 33554432\n")?;
    let run = replay(&["--components", &lossy(&both)])?;
    refused(&run, 10, "replay on an engine with another memory limit")?;
    names(
        &run,
        "replay on an engine with another memory limit",
        &[&recorded],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The local catalog (specification 54).

fn list_and_resolve(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for (name, version) in [
        ("conformance", "0.9.1"),
        ("conformance", "0.10.0"),
        ("conformance", "0.2.0"),
        ("zeta-guest", "1.0.0"),
        ("alpha-guest", "3.0.0"),
    ] {
        add(
            &host,
            &format!("{name}-{version}.wasm"),
            GUEST,
            Some(&manifest_as(name, version)),
        )?
        .expect(0, &format!("capability add {name} {version}"))?;
    }
    // Without a manifest: the file stem, lower case, `_` as `-`, version 0.0.0.
    let run = add(&host, "My_Suite_Guest.wasm", GUEST, None)?;
    run.expect(0, "capability add My_Suite_Guest.wasm without a manifest")?;
    ensure!(
        run.stdout.trim() == format!("my-suite-guest 0.0.0 sha256:{}", sha256_hex(GUEST)),
        "capability add My_Suite_Guest.wasm must install my-suite-guest 0.0.0; it printed {:?}",
        run.stdout.trim()
    );
    let list = list_json(&host)?;
    let order: Vec<String> = list
        .iter()
        .map(|c| {
            format!(
                "{}@{}",
                c["manifest"]["name"].as_str().unwrap_or("?"),
                c["manifest"]["version"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let names: Vec<&str> = list
        .iter()
        .map(|c| c["manifest"]["name"].as_str().unwrap_or("?"))
        .collect();
    ensure!(
        names.len() == 11 && names[..5] == EMBEDDED,
        "capability list must begin with the embedded {EMBEDDED:?}, then the six installed; it lists {order:?}"
    );
    ensure!(
        order[5..]
            == [
                "alpha-guest@3.0.0",
                "conformance@0.2.0",
                "conformance@0.9.1",
                "conformance@0.10.0",
                "my-suite-guest@0.0.0",
                "zeta-guest@1.0.0",
            ],
        "the installed capabilities must follow by name, then version by its numeric parts: {:?}",
        &order[5..]
    );
    for (i, c) in list.iter().enumerate() {
        ensure!(
            c["manifest"].is_object()
                && c["manifest"]["fuel"].is_u64()
                && c["manifest"]["name"].is_string()
                && c["manifest"]["requests"].is_object(),
            "capability list --json entry {i} does not carry its manifest: {c}"
        );
    }
    let text = host.ok(&["capability", "list"])?;
    let text_names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ensure!(
        text_names == names,
        "capability list (text) lists {text_names:?}, not the order of --json {names:?}"
    );
    // `name` is the highest version, `name@version` exactly that one: all three kept.
    for (spec, version) in [
        ("conformance", "0.10.0"),
        ("conformance@0.9.1", "0.9.1"),
        ("conformance@0.2.0", "0.2.0"),
        ("conformance@0.10.0", "0.10.0"),
    ] {
        host.run(&["invoke", spec, "echo", "--args", r#"{"text":"v"}"#])?
            .expect(0, &format!("invoke {spec}"))?;
        let start = last_start(&host.entries()?)?;
        ensure!(
            start["capability"] == "conformance" && start["version"] == version,
            "invoke {spec} ran {}@{} where conformance@{version} is required",
            start["capability"],
            start["version"]
        );
    }
    host.run(&[
        "invoke",
        "conformance@0.3.0",
        "echo",
        "--args",
        r#"{"text":"v"}"#,
    ])?
    .expect(3, "invoke conformance@0.3.0, a version not installed")?;
    // Removing the highest: `name` resolves to the next.
    host.ok(&["capability", "remove", "conformance@0.10.0"])?;
    host.invoke("echo", &json!({ "text": "v" }), &[])?
        .expect(0, "invoke conformance after removing 0.10.0")?;
    let start = last_start(&host.entries()?)?;
    ensure!(
        start["version"] == "0.9.1",
        "with 0.10.0 removed, `conformance` ran {} where 0.9.1 is required",
        start["version"]
    );
    Ok(())
}

fn refused_packages(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    write_config(&host, "[limits]\nmax_fuel = 40000000\n")?;
    let outside = host.data.path().join("escaped");
    let too_long = format!("a{}", "b".repeat(64));
    let mut manifests: Vec<(String, String, String)> = vec![
        (
            GUEST_MANIFEST.replace("fuel = ", "budget = 1\nfuel = "),
            "an unknown top-level field".into(),
            "budget".into(),
        ),
        (
            GUEST_MANIFEST.replace("kv = [", "unknown_request = true\nkv = ["),
            "an unknown field of [requests]".into(),
            "unknown_request".into(),
        ),
    ];
    for name in [
        "",
        "Conformance",
        "1conformance",
        "-conformance",
        "con_formance",
        "con.formance",
        "../escaped",
        "a/b",
        too_long.as_str(),
    ] {
        manifests.push((
            manifest_as(name, "1.0.0").replace("fuel = 50_000_000", "fuel = 1000"),
            format!("the name {name:?}"),
            "invalid capability name".into(),
        ));
    }
    for (manifest, what, needle) in &manifests {
        let run = add(&host, "guest.wasm", GUEST, Some(manifest))?;
        refused(
            &run,
            2,
            &format!("capability add of a manifest with {what}"),
        )?;
        names(&run, &format!("a manifest with {what}"), &[needle])?;
    }
    ensure!(
        !outside.exists() && !host.data.path().join("capabilities").join("a").exists(),
        "a refused name wrote outside the catalog"
    );
    // 64 characters is the longest name accepted.
    let longest = format!("a{}", "b".repeat(63));
    add(
        &host,
        "guest.wasm",
        GUEST,
        Some(&manifest_as(&longest, "1.0.0").replace("fuel = 50_000_000", "fuel = 1000")),
    )?
    .expect(0, "capability add of a 64-character name")?;
    host.ok(&["capability", "remove", &longest])?;
    // A budget over the operator's max_fuel: exit 2, both numbers, nothing installed.
    let run = add(&host, "guest.wasm", GUEST, Some(GUEST_MANIFEST))?;
    refused(
        &run,
        2,
        "capability add with fuel 50000000 over max_fuel 40000000",
    )?;
    names(&run, "a budget over max_fuel", &["50000000", "40000000"])?;
    ensure!(
        !host
            .data
            .path()
            .join("capabilities")
            .join("conformance")
            .exists()
            && installed(&host)?.is_empty(),
        "a package refused for its budget left files in the catalog"
    );
    // Bytes that are not a component.
    for (bytes, what) in [
        (&b"(component)"[..], "component text"),
        (&b"\0asm\x01\0\0\0"[..], "a core module"),
        (&b""[..], "an empty file"),
        (&b"\0asm\x0d\x00\x02\x00"[..], "another layer"),
    ] {
        let run = add(
            &host,
            "bytes.wasm",
            bytes,
            Some(&manifest_as("bytes", "1.0.0").replace("fuel = 50_000_000", "fuel = 1000")),
        )?;
        refused(&run, 2, &format!("capability add of {what}"))?;
        names(
            &run,
            &format!("capability add of {what}"),
            &["is not a WebAssembly component"],
        )?;
    }
    ensure!(
        installed(&host)?.is_empty(),
        "a refused package was installed: {:?}",
        installed(&host)?
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Upgrade and migration (specification 34).

fn earlier_configuration_files(target: &Target) -> Result<(), Failure> {
    for (file, section, text) in [
        ("limits.toml", "limits", "max_fuel = 1000\n"),
        ("http.toml", "http", "max_redirects = 0\n"),
    ] {
        let host = target.host()?;
        host.policy(OPEN)?;
        let path = host.data.path().join(file);
        write(&path, text.as_bytes())?;
        let commands: [&[&str]; 6] = [
            &["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#],
            &["capability", "list"],
            &["log", "show"],
            &["token", "list"],
            &["config", "show"],
            &["serve", "--listen", "127.0.0.1:0"],
        ];
        for args in commands {
            let what = format!("`{}` beside {file}", args.join(" "));
            let run = host.run(args)?;
            refused(&run, 2, &what)?;
            names(
                &run,
                &what,
                &[
                    &format!("`{}` is no longer read", lossy(&path)),
                    &format!("[{section}] section"),
                    "femtoclaw.toml",
                ],
            )?;
        }
        ensure!(
            !host.data.path().join("ledger").exists(),
            "a command refused for {file} opened a ledger"
        );
        // Moved into femtoclaw.toml, the same setting is taken.
        std::fs::remove_file(&path).map_err(|e| failed(format!("cannot remove {file}: {e}")))?;
        write_config(&host, &format!("[{section}]\n{text}"))?;
        let run = greet(&host)?;
        if section == "limits" {
            // max_fuel = 1000 is under hello's budget: the moved setting refuses the call.
            refused(&run, 2, "hello.greet under [limits] max_fuel = 1000")?;
            names(
                &run,
                "hello.greet under [limits] max_fuel = 1000",
                &["max_fuel of 1000"],
            )?;
        } else {
            run.expect(
                0,
                &format!("hello.greet with {file} moved into femtoclaw.toml"),
            )?;
        }
    }
    Ok(())
}

fn unknown_settings(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for (text, line, key) in [
        (
            "[limits]\nmax_fuel = 1000000000\n\n[cluster]\nepoch = 1\n",
            4,
            "[cluster]",
        ),
        (
            "[limits]\nmax_fuel = 1000000000\nmax_fuels = 5\n",
            3,
            "max_fuels",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\n[limits]\n\n\nmemory = 1\n",
            6,
            "memory",
        ),
        ("limits.no_such_key = 1\n", 1, "no_such_key"),
    ] {
        let path = write_config(&host, text)?;
        let run = greet(&host)?;
        let what = format!("a femtoclaw.toml naming {key}");
        refused(&run, 2, &what)?;
        names(
            &run,
            &what,
            &[&format!("`{}` line {line}", lossy(&path)), key],
        )?;
        // The same file given with --config: named by its own path.
        let other = host.file("other.toml", text.as_bytes())?;
        std::fs::remove_file(&path).map_err(|e| failed(format!("cannot remove {e}")))?;
        let run = host.run(&[
            "--config",
            &lossy(&other),
            "invoke",
            "hello",
            "greet",
            "--args",
            r#"{"name":"Ada"}"#,
        ])?;
        let what = format!("a --config file naming {key}");
        refused(&run, 2, &what)?;
        names(
            &run,
            &what,
            &[&format!("`{}` line {line}", lossy(&other)), key],
        )?;
    }
    greet(&host)?.expect(0, "hello.greet without a configuration file")?;
    // An environment variable of a known section naming no key of it.
    for var in [
        "FEMTOCLAW_LIMITS_MAX_FUELS",
        "FEMTOCLAW_SERVER_LISTEN_ADDRESS",
        "FEMTOCLAW_LEDGER_NAME",
    ] {
        let run = run_env(
            &host,
            &["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#],
            &[(var, "1")],
        )?;
        refused(&run, 2, &format!("with {var} set"))?;
        names(&run, &format!("with {var} set"), &[var])?;
    }
    // A key's variable is taken.
    let run = run_env(
        &host,
        &["config", "show"],
        &[("FEMTOCLAW_LIMITS_MAX_FUEL", "123456789")],
    )?;
    run.expect(0, "config show with FEMTOCLAW_LIMITS_MAX_FUEL set")?;
    ensure!(
        run.stdout.contains("123456789"),
        "FEMTOCLAW_LIMITS_MAX_FUEL was not taken: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn export_version_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "invoke echo")?;
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let export = host.files.path().join("ledger.export");
    host.ok(&["log", "export", &lossy(&export), "--with-components"])?;
    let bytes = read(&export)?;
    ensure!(
        bytes.len() > 9 && &bytes[..8] == b"FCLEDGER" && bytes[8] == 0x01,
        "an export must begin with FCLEDGER and the version byte 0x01: {:02x?}",
        &bytes[..bytes.len().min(9)]
    );
    host.ok(&["log", "verify", &lossy(&export)])?;
    for version in [0x00u8, 0x02, 0xff] {
        let mut changed = bytes.clone();
        changed[8] = version;
        let path = host.file(&format!("v{version}.export"), &changed)?;
        let what = format!("an export of version byte {version:#04x}");
        let run = host.run(&["log", "verify", &lossy(&path)])?;
        ensure!(
            run.code != 0 && run.stdout.trim().is_empty(),
            "log verify of {what} did not refuse it (exit {}): {}",
            run.code,
            excerpt(&run.stdout)
        );
        names(
            &run,
            &format!("log verify of {what}"),
            &[&format!("unsupported export version `{version}`")],
        )?;
        let elsewhere = target.host()?;
        let run = elsewhere.run(&["replay", &lossy(&path), "--key", &key, "--json"])?;
        ensure!(
            run.code != 0 && run.stdout.trim().is_empty(),
            "replay of {what} did not refuse it (exit {}): {}",
            run.code,
            excerpt(&run.stdout)
        );
        names(
            &run,
            &format!("replay of {what}"),
            &[&format!("unsupported export version `{version}`")],
        )?;
    }
    Ok(())
}

fn engine_and_world_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "invoke conformance echo")?;
    greet(&host)?.expect(0, "invoke hello greet")?;
    let entries = host.entries()?;
    let starts: Vec<&Json> = entries
        .iter()
        .filter(|e| e["entry"]["type"] == "invocation-start")
        .map(|e| &e["entry"])
        .collect();
    ensure!(
        starts.len() == 2,
        "two invocations must leave two invocation-start entries; the ledger holds {}",
        starts.len()
    );
    for start in starts {
        let what = format!("the invocation-start of {}", start["capability"]);
        ensure!(
            start["wasmtime_version"] == "48.0.8",
            "{what} records wasmtime_version {} where the engine's exact version 48.0.8 is required",
            start["wasmtime_version"]
        );
        ensure!(
            start["wit_world"] == "femtoclaw:host/capability@0.1.0",
            "{what} records wit_world {} where femtoclaw:host/capability@0.1.0 is required",
            start["wit_world"]
        );
    }
    Ok(())
}

/// The compile cache's files for the component of SHA-256 `sha`.
fn cache_files(host: &Host, sha: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(host.data.path().join("cache")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{sha}-")) && n.ends_with(".cwasm"))
        })
        .collect()
}

fn compile_cache_provenance(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let sha = sha256_hex(GUEST);
    let echo = |host: &Host, text: &str| -> Result<(), Failure> {
        let run = host.invoke("echo", &json!({ "text": text }), &[])?;
        run.expect(0, &format!("echo {text:?}"))?;
        ensure!(
            run.json()? == json!(text),
            "echo {text:?} answered {}",
            excerpt(&run.stdout)
        );
        Ok(())
    };
    echo(&host, "compiled")?;
    let files = cache_files(&host, &sha);
    ensure!(
        files.len() == 1,
        "after one call the cache must hold one compiled file of the guest; it holds {files:?}"
    );
    let file = files[0].clone();
    let compiled = read(&file)?;
    // One byte flipped in the middle: the tag no longer matches; recompiled, never loaded.
    let mut damaged = compiled.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    write(&file, &damaged)?;
    echo(&host, "damaged")?;
    ensure!(
        read(&file)? != damaged,
        "a cache file with one byte flipped was kept: it was loaded, not recompiled"
    );
    // Code compiled and tagged by another data directory (another cache key), for the same
    // component and engine: not loaded.
    let elsewhere = guest_host(target, OPEN)?;
    echo(&elsewhere, "elsewhere")?;
    let foreign = cache_files(&elsewhere, &sha);
    ensure!(
        foreign.len() == 1 && foreign[0].file_name() == file.file_name(),
        "another data directory must cache the same component and engine under the same file name: {foreign:?} and {file:?}"
    );
    let foreign = read(&foreign[0])?;
    ensure!(
        foreign != read(&file)?,
        "two data directories tagged their compiled code identically: no key of their own"
    );
    write(&file, &foreign)?;
    echo(&host, "foreign")?;
    ensure!(
        read(&file)? != foreign,
        "code tagged under another data directory's key was loaded, not recompiled"
    );
    // Valid code of another component of this host, under the guest's name: not loaded.
    greet(&host)?.expect(0, "hello.greet")?;
    let cache = host.data.path().join("cache");
    let other = std::fs::read_dir(&cache)
        .map_err(|e| failed(format!("cannot list the cache: {e}")))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p != &file && p.extension().is_some_and(|x| x == "cwasm"))
        .ok_or_else(|| failed("hello.greet left no compiled file in the cache"))?;
    let hello = read(&other)?;
    write(&file, &hello)?;
    echo(&host, "not hello")?;
    ensure!(
        read(&file)? != hello,
        "another component's compiled code was loaded under the guest's name"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A server of the case's own.

/// `serve --listen 127.0.0.1:0` on a host's data directory, killed when dropped.
struct Serving {
    child: Child,
    server: Server,
    stderr: Arc<Mutex<String>>,
}

impl Serving {
    /// Starts `serve` on `host` (which it then owns), with a token of `user:local`.
    fn start(host: Host, env: &[(&str, &str)]) -> Result<Self, Failure> {
        let token = host
            .ok(&[
                "token",
                "create",
                "--principal",
                "user:local",
                "--name",
                &fresh_name(),
            ])?
            .trim()
            .to_owned();
        let mut command = host.command(&["serve", "--listen", "127.0.0.1:0"]);
        command.envs(env.iter().copied());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot start serve: {e}")))?;
        let stderr = drain(child.stderr.take());
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = reader.read_to_string(&mut rest);
            });
        }
        let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "serve must first print `listening on URL`; it printed {:?}, stderr {}",
                line.trim(),
                excerpt(&stderr.lock().map(|s| s.clone()).unwrap_or_default())
            )));
        };
        let mut server = Target::Server {
            url,
            token: token.clone(),
        }
        .server(None)?;
        server.host = Some(host);
        Ok(Serving {
            child,
            server,
            stderr,
        })
    }

    fn host(&self) -> Result<&Host, Failure> {
        self.server
            .host
            .as_ref()
            .ok_or_else(|| failed("the server's data directory is gone"))
    }

    /// Waits at most `within` for the process to exit; its code.
    fn wait(&mut self, within: Duration) -> Result<Option<i32>, Failure> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| failed(format!("cannot wait for serve: {e}")))?
            {
                return Ok(Some(status.code().unwrap_or(-1)));
            }
            if started.elapsed() > within {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token name no other token of the suite's has.
fn fresh_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "distribution-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Reads a pipe to its end in a thread of its own, into a shared string.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                }
                line.clear();
            }
        });
    }
    text
}

/// Another handle on the same server, for requests.
fn view(server: &Server) -> Result<Server, Failure> {
    Target::Server {
        url: server.url.clone(),
        token: server.token.clone(),
    }
    .server(None)
}

/// A request without a token.
fn anonymous(server: &Server, path: &str) -> Result<Response, Failure> {
    server.request(reqwest::Method::GET, path, None, None)
}

/// An MCP JSON-RPC exchange over streamable HTTP.
fn mcp(server: &Server, session: Option<&str>, message: &Json) -> Result<Response, Failure> {
    let mut request = Server::client()
        .post(format!("{}/mcp", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(message.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request
        .send()
        .map_err(|e| failed(format!("/mcp: no answer: {e}")))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .map_err(|e| failed(format!("/mcp: cannot read the body: {e}")))?;
    Ok(Response {
        status,
        headers,
        text,
    })
}

/// An initialized MCP session's id.
fn mcp_session(server: &Server) -> Result<String, Failure> {
    let initialize = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "femtoclaw-conformance", "version": "1" }
        }
    });
    let response = mcp(server, None, &initialize)?;
    response.expect(200, "MCP initialize")?;
    let session = response.header("mcp-session-id").to_owned();
    ensure!(!session.is_empty(), "initialize answered no Mcp-Session-Id");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    mcp(server, Some(&session), &initialized)?.expect(202, "notifications/initialized")?;
    Ok(session)
}

/// The names of the tools `tools/list` offers on a session.
fn mcp_tool_names(server: &Server, session: &str) -> Result<Vec<String>, Failure> {
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let response = mcp(server, Some(session), &list)?;
    response.expect(200, "MCP tools/list")?;
    let answer = response.json()?;
    let tools = answer["result"]["tools"]
        .as_array()
        .ok_or_else(|| failed(format!("tools/list answered no tools: {answer}")))?;
    Ok(tools
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect())
}

/// The messages of a session's event stream (`GET /mcp`), as they come.
fn mcp_events(server: &Server, session: &str) -> Result<std::sync::mpsc::Receiver<Json>, Failure> {
    let response = reqwest::blocking::Client::builder()
        .build()
        .map_err(|e| failed(format!("no HTTP client: {e}")))?
        .get(format!("{}/mcp", server.url))
        .bearer_auth(&server.token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .map_err(|e| failed(format!("GET /mcp: no answer: {e}")))?;
    ensure!(
        response.status().as_u16() == 200,
        "GET /mcp (the session's event stream) got HTTP {}",
        response.status()
    );
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(response);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(data) = line.trim().strip_prefix("data:")
                && let Ok(message) = serde_json::from_str::<Json>(data.trim())
                && sender.send(message).is_err()
            {
                return;
            }
            line.clear();
        }
    });
    Ok(receiver)
}

/// Drops the notifications already received.
fn drain_events(events: &std::sync::mpsc::Receiver<Json>) {
    while events.try_recv().is_ok() {}
}

fn echo_call() -> Json {
    json!({ "capability": "conformance", "function": "echo", "args": { "text": "served" } })
}

fn catalog_changes_while_serving(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case changes the catalog of a server of its own".into(),
        ));
    }
    let host = target.host()?;
    host.policy(OPEN)?;
    let serving = Serving::start(host, &[])?;
    let server = &serving.server;
    let host = serving.host()?;
    let session = mcp_session(server)?;
    let events = mcp_events(server, &session)?;
    let unknown = server.post("/v1/invoke", &echo_call())?;
    unknown.expect(404, "POST /v1/invoke of conformance before it is installed")?;
    // Added through the running server: offered from the next request on, and announced.
    host.install()?;
    let response = server.post("/v1/invoke", &echo_call())?;
    response.expect(
        200,
        "POST /v1/invoke of conformance right after capability add",
    )?;
    ensure!(
        response.json()?["result"] == "served",
        "the capability added while serving answered {}",
        excerpt(&response.text)
    );
    ensure!(
        list_changed(&events, Duration::from_secs(5)),
        "no notifications/tools/list_changed within 5 s of capability add"
    );
    ensure!(
        mcp_tool_names(server, &session)?
            .iter()
            .any(|t| t == "conformance.echo"),
        "after capability add, tools/list does not offer conformance.echo"
    );
    // A second version: a change of the catalog too, announced, and `conformance` is it now.
    drain_events(&events);
    let wasm = host.file("guest-2.wasm", GUEST)?;
    let manifest = host.file(
        "guest-2.toml",
        manifest_as("conformance", "2.0.0").as_bytes(),
    )?;
    host.ok(&[
        "capability",
        "add",
        &lossy(&wasm),
        "--manifest",
        &lossy(&manifest),
    ])?;
    ensure!(
        list_changed(&events, Duration::from_secs(5)),
        "no notifications/tools/list_changed within 5 s of adding conformance 2.0.0"
    );
    let response = server.post("/v1/invoke", &echo_call())?;
    response.expect(200, "POST /v1/invoke of conformance with 2.0.0 added")?;
    // Removed: no longer offered, answered as unknown, announced.
    drain_events(&events);
    host.ok(&["capability", "remove", "conformance@2.0.0"])?;
    ensure!(
        list_changed(&events, Duration::from_secs(5)),
        "no notifications/tools/list_changed within 5 s of removing conformance 2.0.0"
    );
    drain_events(&events);
    host.ok(&["capability", "remove", "conformance"])?;
    let response = server.post("/v1/invoke", &echo_call())?;
    response.expect(
        404,
        "POST /v1/invoke of conformance right after its last version was removed",
    )?;
    ensure!(
        response.json()?["code"] == "unknown",
        "a removed capability must answer as unknown: {}",
        excerpt(&response.text)
    );
    ensure!(
        list_changed(&events, Duration::from_secs(5)),
        "no notifications/tools/list_changed within 5 s of capability remove"
    );
    let offered = mcp_tool_names(server, &session)?;
    ensure!(
        !offered.iter().any(|t| t.starts_with("conformance.")),
        "after capability remove, tools/list still offers {offered:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One writer per data directory, health and stop (specifications 41 and 43).

fn lock_holder_and_successor(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case starts and kills servers of its own".into(),
        ));
    }
    let host = target.host()?;
    host.policy(OPEN)?;
    let data = host.data.path().to_owned();
    let mut first = Serving::start(host, &[])?;
    first
        .server
        .post(
            "/v1/invoke",
            &json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } }),
        )?
        .expect(200, "hello.greet on the first server")?;
    let pid = first.child.id();
    // A second server on the same directory: refused at once, naming the holder.
    let second = run_within(
        first.host()?,
        &["serve", "--listen", "127.0.0.1:0"],
        Duration::from_secs(15),
    )?
    .ok_or_else(|| {
        failed("a second serve on a data directory in use was still running after 15 s: not refused at once")
    })?;
    ensure!(
        second.code != 0 && !second.stdout.contains("listening on"),
        "a second serve on a data directory in use was not refused (exit {}): {}",
        second.code,
        excerpt(&second.stdout)
    );
    names(
        &second,
        "a second serve on a data directory in use",
        &[
            &format!("`{}` is in use by pid {pid} (", data.display()),
            "serve",
        ],
    )?;
    // Killed without a chance to clean up: the next process takes the lock.
    let _ = first.child.kill();
    let _ = first.child.wait();
    let host = first
        .server
        .host
        .take()
        .ok_or_else(|| failed("the data directory is gone"))?;
    drop(first);
    let successor = Serving::start(host, &[])?;
    successor
        .server
        .post(
            "/v1/invoke",
            &json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } }),
        )?
        .expect(
            200,
            "hello.greet on the server that took over the killed one's directory",
        )?;
    let lock = String::from_utf8_lossy(&read(&data.join("lock"))?).into_owned();
    ensure!(
        lock.contains(&format!("pid {} ", successor.child.id())),
        "the lock file names {lock:?}, not the successor's pid {}",
        successor.child.id()
    );
    Ok(())
}

fn origin_kept(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    greet(&host)?.expect(0, "hello.greet")?;
    let note = host.ok(&["log", "checkpoint"])?;
    let origin = note.lines().next().unwrap_or("").to_owned();
    ensure!(
        origin == "femtoclaw.local/ledger",
        "the checkpoint's origin is {origin:?} where the default femtoclaw.local/ledger is required"
    );
    write_config(&host, "[ledger]\norigin = \"elsewhere.example/log\"\n")?;
    let run = greet(&host)?;
    refused(
        &run,
        2,
        "a call under another ledger.origin than the checkpoints name",
    )?;
    names(
        &run,
        "a call under another ledger.origin",
        &[
            "femtoclaw.local/ledger",
            "elsewhere.example/log",
            "a ledger keeps its origin",
        ],
    )?;
    std::fs::remove_file(host.data.path().join("femtoclaw.toml"))
        .map_err(|e| failed(format!("cannot remove femtoclaw.toml: {e}")))?;
    let run = run_env(
        &host,
        &["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#],
        &[("FEMTOCLAW_LEDGER_ORIGIN", "env.example/log")],
    )?;
    refused(
        &run,
        2,
        "a call with FEMTOCLAW_LEDGER_ORIGIN naming another origin",
    )?;
    greet(&host)?.expect(0, "hello.greet under its own origin again")?;
    let note = host.ok(&["log", "checkpoint"])?;
    ensure!(
        note.lines().next() == Some("femtoclaw.local/ledger"),
        "the ledger's checkpoints no longer name femtoclaw.local/ledger: {}",
        excerpt(&note)
    );
    host.ok(&["log", "verify"])?;
    Ok(())
}

fn health_and_graceful_stop(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        // Health needs no server of the case's own.
        let server = target.server(None)?;
        for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let response = anonymous(&server, path)?;
            response.expect(200, &format!("GET {path} without a token"))?;
            ensure!(
                response.text.trim() == body,
                "GET {path} answered {:?} where {body:?} is required",
                response.text
            );
        }
        return Err(Failure::NotApplicable(
            "the stop of a server needs one of the case's own".into(),
        ));
    }
    let host = guest_host(target, OPEN)?;
    write_config(
        &host,
        "[server]\nshutdown_grace_ms = 8000\n[limits]\nmax_fuel = 1000000000000000\n",
    )?;
    let mut serving = Serving::start(host, &[])?;
    let server = view(&serving.server)?;
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        for token in [None, Some("not-a-token")] {
            let response = server.request(reqwest::Method::GET, path, token, None)?;
            response.expect(200, &format!("GET {path} with token {token:?}"))?;
            ensure!(
                response.text.trim() == body,
                "GET {path} answered {:?} where {body:?} is required",
                response.text
            );
        }
    }
    server
        .post("/v1/invoke", &echo_call())?
        .expect(200, "a warm-up call")?;
    // In flight when told to stop: a call that ends by its own deadline within the grace.
    let (url, token) = (server.url.clone(), server.token.clone());
    let in_flight = std::thread::spawn(move || {
        Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(
                json!({
                    "capability": "conformance", "function": "spin", "args": {},
                    "fuel": 1_000_000_000_000_000u64, "deadline_ms": 4000
                })
                .to_string(),
            )
            .send()
            .map_err(|e| e.to_string())
            .and_then(|r| {
                let status = r.status().as_u16();
                r.text().map(|t| (status, t)).map_err(|e| e.to_string())
            })
    });
    std::thread::sleep(Duration::from_millis(400));
    let pid = serving.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| failed(format!("cannot send SIGTERM: {e}")))?;
    // New requests are refused while the call in flight still runs.
    let signalled = Instant::now();
    let mut accepting = true;
    while signalled.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(100));
        if anonymous(&server, "/healthz").is_err() {
            accepting = false;
            break;
        }
    }
    ensure!(
        !accepting && !in_flight.is_finished(),
        "requests must stop being accepted once the server is told to stop, while the call in flight runs; 2.5 s after SIGTERM it still accepted them (or the call in flight had ended)"
    );
    let code = serving.wait(Duration::from_secs(20))?;
    ensure!(
        code == Some(0),
        "after SIGTERM serve must exit 0; it exited {code:?} (None: not within 20 s); stderr {}",
        excerpt(&serving.stderr.lock().map(|s| s.clone()).unwrap_or_default())
    );
    let answer = in_flight
        .join()
        .map_err(|_| failed("the client thread panicked"))?;
    match &answer {
        Ok((422, text)) if text.contains("deadline") => {}
        other => {
            return Err(failed(format!(
                "the invocation in flight, ending within the grace, must be answered (422 deadline); it got {other:?}"
            )));
        }
    }
    let host = serving.host()?;
    host.ok(&["log", "verify"])?;
    let entries = host.entries()?;
    let ends = kinds(&entries)
        .iter()
        .filter(|k| *k == "invocation-end")
        .count();
    ensure!(
        ends == 2,
        "the warm-up and the call in flight must both be recorded as ended; the ledger holds {ends} invocation-end"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Machine-readable output (specification 55).

fn json_outputs(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // invoke --json: one object.
    let message = "json-outputs";
    let run = host.invoke(
        "note",
        &json!({ "message": message }),
        &["--json", "--fuel", "7654321"],
    )?;
    run.expect(0, "invoke note --json")?;
    let report: Json = serde_json::from_str(run.stdout.trim()).map_err(|e| {
        failed(format!(
            "invoke --json must print one JSON object ({e}): {}",
            excerpt(&run.stdout)
        ))
    })?;
    ensure!(
        report.is_object(),
        "invoke --json printed {report}, not an object"
    );
    ensure!(
        report["result"] == json!(message.len()),
        "invoke --json's result is {} where {} is required",
        report["result"],
        message.len()
    );
    ensure!(
        report["fuel"]["budget"] == json!(7_654_321)
            && report["fuel"]["consumed"]
                .as_u64()
                .is_some_and(|c| c > 0 && c <= 7_654_321),
        "invoke --json's fuel must be the budget 7654321 and the fuel consumed: {}",
        report["fuel"]
    );
    ensure!(
        report["stdout"].is_string() && report["stderr"].is_string(),
        "invoke --json has no captured stdout and stderr strings: {report}"
    );
    ensure!(
        report["logs"] == json!([{ "level": "info", "message": message }]),
        "invoke --json's logs must be [{{level: info, message: {message:?}}}]: {}",
        report["logs"]
    );
    let receipt = &report["receipt"];
    ensure!(
        receipt["invocation"].is_u64()
            && receipt["indexes"].as_array().is_some_and(|i| !i.is_empty())
            && receipt["tree_size"].is_u64()
            && receipt["root"].is_string(),
        "invoke --json's receipt must hold invocation, indexes, tree_size and root: {receipt}"
    );
    // log show --json: one {index, entry} per line, in index order.
    let out = host.ok(&["log", "show", "--json"])?;
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() >= 4,
        "log show --json printed {} lines",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        let value: Json = serde_json::from_str(line).map_err(|e| {
            failed(format!(
                "log show --json line {i} is not JSON ({e}): {line}"
            ))
        })?;
        let keys: Vec<&String> = value
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        ensure!(
            keys.len() == 2 && value["index"] == json!(i) && value["entry"]["type"].is_string(),
            "log show --json line {i} must be {{index: {i}, entry}}: {line}"
        );
    }
    // capability list, token list, approval list --json: arrays; no token in token list.
    let token = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "agent:json",
            "--name",
            "json-outputs",
        ])?
        .trim()
        .to_owned();
    ensure!(
        token.len() >= 16,
        "token create printed {token:?}, not a token"
    );
    for args in [
        &["capability", "list", "--json"][..],
        &["token", "list", "--json"],
        &["approval", "list", "--json"],
    ] {
        let run = host.run(args)?;
        run.expect(0, &args.join(" "))?;
        let value = run.json()?;
        ensure!(
            value.is_array(),
            "{} printed {}, not a JSON array",
            args.join(" "),
            excerpt(&run.stdout)
        );
        if args[0] == "token" {
            let listed = value.as_array().cloned().unwrap_or_default();
            ensure!(
                listed
                    .iter()
                    .any(|t| t["name"] == "json-outputs" && t["principal"] == "agent:json"),
                "token list --json does not list the token json-outputs of agent:json: {}",
                excerpt(&run.stdout)
            );
            let secret = token.rsplit(['.', '_', ':']).next().unwrap_or(&token);
            ensure!(
                !run.stdout.contains(&token) && (secret.len() < 16 || !run.stdout.contains(secret)),
                "token list --json contains the token itself"
            );
        }
    }
    // A failure with --json: reported on stderr with its exit code, stdout empty.
    for (args, code) in [
        (
            &[
                "invoke",
                "conformance",
                "no-such-function",
                "--args",
                "{}",
                "--json",
            ][..],
            3,
        ),
        (
            &[
                "invoke",
                "no-such-capability",
                "f",
                "--args",
                "{}",
                "--json",
            ],
            3,
        ),
        (
            &[
                "invoke",
                "conformance",
                "divide",
                "--args",
                r#"{"a":1,"b":0}"#,
                "--json",
            ],
            5,
        ),
        (&["capability", "inspect", "no-such-capability"], 3),
    ] {
        let run = host.run(args)?;
        let what = args.join(" ");
        run.expect(code, &what)?;
        ensure!(
            run.stdout.trim().is_empty(),
            "{what} failed but printed on stdout: {}",
            excerpt(&run.stdout)
        );
        ensure!(
            run.stderr.contains("error"),
            "{what} failed without reporting it on stderr: {}",
            excerpt(&run.stderr)
        );
    }
    write(&host.data.path().join("limits.toml"), b"max_fuel = 1\n")?;
    for args in [
        &["capability", "list", "--json"][..],
        &["token", "list", "--json"],
        &["log", "show", "--json"],
    ] {
        let run = host.run(args)?;
        let what = format!("{} beside a limits.toml", args.join(" "));
        refused(&run, 2, &what)?;
        ensure!(
            run.stderr.contains("limits.toml"),
            "{what}: stderr does not say why: {}",
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn config_show_sources(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let path = write_config(&host, "[ledger]\norigin = \"file.example/log\"\n")?;
    let run = run_env(
        &host,
        &["config", "show"],
        &[("FEMTOCLAW_LIMITS_MAX_FUEL", "123456789")],
    )?;
    run.expect(0, "config show")?;
    let mut section = String::new();
    let mut seen = std::collections::BTreeMap::new();
    for line in run.stdout.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let Some((key, rest)) = line.split_once(" = ") else {
            return Err(failed(format!(
                "config show: {line:?} is neither a section nor `key = value`"
            )));
        };
        let Some((value, source)) = rest.rsplit_once("  # ").or_else(|| rest.rsplit_once(" # "))
        else {
            return Err(failed(format!(
                "config show: {line:?} has no trailing `# source` comment"
            )));
        };
        ensure!(
            !section.is_empty() && !key.contains(' ') && !value.trim().is_empty(),
            "config show: {line:?} is not a key of a section with a value"
        );
        seen.insert(
            format!("{section}.{key}"),
            (value.trim().to_owned(), source.trim().to_owned()),
        );
    }
    for (key, value, source) in [
        (
            "limits.max_fuel",
            "123456789".to_owned(),
            "env FEMTOCLAW_LIMITS_MAX_FUEL".to_owned(),
        ),
        (
            "ledger.origin",
            "\"file.example/log\"".to_owned(),
            format!("file {}:2", lossy(&path)),
        ),
        (
            "limits.memory_bytes",
            "67108864".to_owned(),
            "default".to_owned(),
        ),
    ] {
        let got = seen.get(key);
        ensure!(
            got.is_some_and(|(v, s)| v.replace('_', "") == value && *s == source),
            "config show must give {key} = {value}  # {source}; it gives {got:?}"
        );
    }
    ensure!(
        seen.len() >= 20
            && seen.values().all(|(_, s)| s == "default"
                || s.starts_with("env ")
                || s.starts_with("file ")
                || s.starts_with("flag ")),
        "config show: every key must carry its source (default, env, file, flag): {seen:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Binary compatibility (specification 47): components of the case's own, written byte by byte.

/// A component-model name: 0x00, its length, its bytes.
fn cname(name: &str) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend(leb(name.len() as u64));
    out.extend_from_slice(name.as_bytes());
    out
}

/// A core or plain name: its length, its bytes.
fn name(name: &str) -> Vec<u8> {
    let mut out = leb(name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out
}

fn section(out: &mut Vec<u8>, id: u8, items: u64, content: &[u8]) {
    let mut body = leb(items);
    body.extend_from_slice(content);
    out.push(id);
    out.extend(leb(body.len() as u64));
    out.extend(body);
}

/// How the core module of a crafted component is built.
#[derive(Clone, Copy)]
enum Core {
    /// `run` calls every imported function and answers 7.
    Plain,
    /// As plain, with a shared memory (the threads proposal).
    SharedMemory,
    /// `run` answers an atomic load from its memory (the threads proposal).
    Atomic,
}

/// A component that imports each `(interface, functions)` as an instance of `func() -> u64`
/// functions, and exports `run: func() -> u32`, which calls each of them once and answers 7.
fn crafted(imports: &[(&str, &[&str])], core: Core) -> Vec<u8> {
    let functions: Vec<(usize, &str)> = imports
        .iter()
        .enumerate()
        .flat_map(|(i, (_, fs))| fs.iter().map(move |f| (i, *f)))
        .collect();
    let k = imports.len() as u64;
    let n = functions.len() as u64;
    let mut out = b"\0asm\x0d\x00\x01\x00".to_vec();
    // Types 0..k: one instance type per import.
    if k > 0 {
        let mut types = Vec::new();
        for (_, fs) in imports {
            types.push(0x42);
            types.extend(leb(1 + fs.len() as u64));
            types.extend([0x01, 0x40, 0x00, 0x00, 0x77]);
            for f in *fs {
                types.push(0x04);
                types.extend(cname(f));
                types.extend([0x01, 0x00]);
            }
        }
        section(&mut out, 7, k, &types);
        let mut items = Vec::new();
        for (i, (interface, _)) in imports.iter().enumerate() {
            items.extend(cname(interface));
            items.push(0x05);
            items.extend(leb(i as u64));
        }
        section(&mut out, 10, k, &items);
    }
    if n > 0 {
        // Component functions 0..n aliased from the instances, lowered to core functions 0..n.
        let mut aliases = Vec::new();
        let mut lowers = Vec::new();
        for (j, (i, f)) in functions.iter().enumerate() {
            aliases.extend([0x01, 0x00]);
            aliases.extend(leb(*i as u64));
            aliases.extend(name(f));
            lowers.extend([0x01, 0x00]);
            lowers.extend(leb(j as u64));
            lowers.push(0x00);
        }
        section(&mut out, 6, n, &aliases);
        section(&mut out, 8, n, &lowers);
    }
    // The core module.
    let mut module = b"\0asm\x01\x00\x00\x00".to_vec();
    section(
        &mut module,
        1,
        2,
        &[0x60, 0x00, 0x01, 0x7e, 0x60, 0x00, 0x01, 0x7f],
    );
    if n > 0 {
        let mut items = Vec::new();
        for j in 0..n {
            items.extend(name("host"));
            items.extend(name(&format!("f{j}")));
            items.extend([0x00, 0x00]);
        }
        section(&mut module, 2, n, &items);
    }
    section(&mut module, 3, 1, &[0x01]);
    match core {
        Core::Plain => {}
        Core::SharedMemory => section(&mut module, 5, 1, &[0x03, 0x01, 0x01]),
        Core::Atomic => section(&mut module, 5, 1, &[0x00, 0x01]),
    }
    let mut export = name("run");
    export.push(0x00);
    export.extend(leb(n));
    section(&mut module, 7, 1, &export);
    let mut body = vec![0x00];
    match core {
        Core::Atomic => body.extend([0x41, 0x00, 0xfe, 0x10, 0x02, 0x00]),
        Core::Plain | Core::SharedMemory => {
            for j in 0..n {
                body.push(0x10);
                body.extend(leb(j));
                body.push(0x1a);
            }
            body.extend([0x41, 0x07]);
        }
    }
    body.push(0x0b);
    let mut code = leb(body.len() as u64);
    code.extend(body);
    section(&mut module, 10, 1, &code);
    out.push(0x01);
    out.extend(leb(module.len() as u64));
    out.extend(module);
    // Core instances: 0 the lowered imports (when any), then the module's.
    let mut instances = Vec::new();
    let module_instance: u64 = if n > 0 {
        instances.push(0x01);
        instances.extend(leb(n));
        for j in 0..n {
            instances.extend(name(&format!("f{j}")));
            instances.push(0x00);
            instances.extend(leb(j));
        }
        instances.extend([0x00, 0x00, 0x01]);
        instances.extend(name("host"));
        instances.extend([0x12, 0x00]);
        1
    } else {
        instances.extend([0x00, 0x00, 0x00]);
        0
    };
    section(&mut out, 2, module_instance + 1, &instances);
    // `run`: aliased as core function n, lifted with type k as component function n.
    let mut alias = vec![0x00, 0x00, 0x01];
    alias.extend(leb(module_instance));
    alias.extend(name("run"));
    section(&mut out, 6, 1, &alias);
    section(&mut out, 7, 1, &[0x40, 0x00, 0x00, 0x79]);
    let mut lift = vec![0x00, 0x00];
    lift.extend(leb(n));
    lift.push(0x00);
    lift.extend(leb(k));
    section(&mut out, 8, 1, &lift);
    let mut export = cname("run");
    export.push(0x01);
    export.extend(leb(n));
    export.push(0x00);
    section(&mut out, 11, 1, &export);
    out
}

const CRAFTED_MANIFEST: &str = "name = \"crafted\"\nversion = \"1.0.0\"\ndescription = \"A component of the suite's own.\"\nfuel = 1000000\n";

/// `capability add` of a crafted component as `crafted` 1.0.0.
fn add_crafted(host: &Host, wasm: &[u8]) -> Result<Run, Failure> {
    add(host, "crafted.wasm", wasm, Some(CRAFTED_MANIFEST))
}

fn unprovided_imports_refused(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let wasm = crafted(
        &[
            ("wasi:clocks/monotonic-clock@0.2.12", &["now"]),
            ("wasi:nowhere/thing@0.2.0", &["get"]),
            ("femtoclaw:host/log@0.2.0", &["log"]),
            ("femtoclaw:host/log@0.1.0", &["shout"]),
            ("wasi:cli/exit@0.2.12", &["exit-with-code"]),
            ("wasi:clocks/wall-clock@0.3.0", &["now"]),
        ],
        Core::Plain,
    );
    let run = add_crafted(&host, &wasm)?;
    refused(
        &run,
        7,
        "capability add of a component with unprovided imports",
    )?;
    names(
        &run,
        "the refusal of unprovided imports",
        &[
            "the host does not provide what the component imports",
            "wasi:nowhere/thing@0.2.0",
            "femtoclaw:host/log@0.2.0",
            "femtoclaw:host/log@0.1.0#shout",
            "wasi:cli/exit@0.2.12#exit-with-code",
            "wasi:clocks/wall-clock@0.3.0",
        ],
    )?;
    ensure!(
        !run.stderr.contains("monotonic-clock"),
        "the refusal names the provided wasi:clocks/monotonic-clock@0.2.12: {}",
        excerpt(&run.stderr)
    );
    ensure!(
        installed(&host)?.is_empty(),
        "the refused component was installed"
    );
    // Each alone, refused the same way.
    for (interface, function, named) in [
        (
            "wasi:nowhere/thing@0.2.0",
            "get",
            "wasi:nowhere/thing@0.2.0",
        ),
        (
            "femtoclaw:host/log@0.1.0",
            "shout",
            "femtoclaw:host/log@0.1.0#shout",
        ),
        (
            "wasi:cli/exit@0.2.12",
            "exit-with-code",
            "wasi:cli/exit@0.2.12#exit-with-code",
        ),
    ] {
        let run = add_crafted(&host, &crafted(&[(interface, &[function])], Core::Plain))?;
        refused(
            &run,
            7,
            &format!("capability add of a component importing {named}"),
        )?;
        names(&run, &format!("a component importing {named}"), &[named])?;
    }
    ensure!(
        installed(&host)?.is_empty(),
        "a refused component was installed"
    );
    Ok(())
}

fn pre_release_versions_exact(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    for (interface, function) in [
        ("wasi:keyvalue/store@0.2.0-draft", "open"),
        ("wasi:keyvalue/store@0.2.0-draft3", "open"),
        ("wasi:keyvalue/store@0.2.0", "open"),
        ("wasi:keyvalue/store@0.2.1-draft2", "open"),
        ("wasi:config/store@0.2.0-draft2", "get"),
        ("wasi:config/store@0.2.0", "get"),
        ("femtoclaw:host/log@0.0.1", "log"),
        ("wasi:clocks/monotonic-clock@0.0.12", "now"),
    ] {
        let run = add_crafted(&host, &crafted(&[(interface, &[function])], Core::Plain))?;
        refused(
            &run,
            7,
            &format!("capability add of a component importing {interface}"),
        )?;
        names(
            &run,
            &format!("a component importing {interface}"),
            &[interface],
        )?;
    }
    ensure!(
        installed(&host)?.is_empty(),
        "a refused component was installed"
    );
    // The identical pre-release versions match.
    let wasm = crafted(
        &[
            ("wasi:keyvalue/store@0.2.0-draft2", &[]),
            ("wasi:config/store@0.2.0-draft", &[]),
        ],
        Core::Plain,
    );
    add_crafted(&host, &wasm)?.expect(0, "capability add of a component importing wasi:keyvalue/store@0.2.0-draft2 and wasi:config/store@0.2.0-draft")?;
    let run = host.run(&["invoke", "crafted", "run", "--args", "{}"])?;
    run.expect(0, "invoke crafted run")?;
    ensure!(
        run.json()? == json!(7),
        "crafted run answered {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn earlier_wasi_patch_links(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // The suite's guest, as Rust's wasm32-wasip2 std built it, imports WASI at 0.2.0 (beside
    // the host's own 0.2.12): it links and runs unchanged. The crafted component below imports
    // 0.2.6.
    for import in [&b"wasi:cli/environment@0.2.0"[..], b"wasi:io/streams@0.2.0"] {
        ensure!(
            contains(GUEST, import),
            "the suite's guest does not import {} (suite error)",
            String::from_utf8_lossy(import)
        );
    }
    let run = host.invoke("echo", &json!({ "text": "linked" }), &[])?;
    run.expect(0, "invoke of the guest importing WASI 0.2.0")?;
    ensure!(
        run.json()? == json!("linked"),
        "the guest answered {}",
        excerpt(&run.stdout)
    );
    let wasm = crafted(
        &[
            ("wasi:clocks/monotonic-clock@0.2.0", &["now"]),
            ("wasi:random/random@0.2.6", &["get-random-u64"]),
        ],
        Core::Plain,
    );
    add_crafted(&host, &wasm)?.expect(
        0,
        "capability add of a component importing wasi:clocks/monotonic-clock@0.2.0 and wasi:random/random@0.2.6",
    )?;
    let run = host.run(&["invoke", "crafted", "run", "--args", "{}"])?;
    run.expect(0, "invoke crafted run (calling both imports)")?;
    ensure!(
        run.json()? == json!(7),
        "crafted run answered {}",
        excerpt(&run.stdout)
    );
    // Recorded under the host's provided name and version, not the imported one.
    let entries = host.entries()?;
    let calls: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["entry"]["type"] == "host-call")
        .map(|e| {
            (
                e["entry"]["interface"].as_str().unwrap_or("?").to_owned(),
                e["entry"]["function"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    for (interface, function) in [
        ("wasi:clocks/monotonic-clock@0.2.12", "now"),
        ("wasi:random/random@0.2.12", "get-random-u64"),
    ] {
        ensure!(
            calls.iter().any(|(i, f)| i == interface && f == function),
            "the call of {function} must be recorded under the provided {interface}; the host calls are {calls:?}"
        );
    }
    ensure!(
        !calls
            .iter()
            .any(|(i, _)| i.ends_with("@0.2.0") || i.ends_with("@0.2.6")),
        "a host call is recorded under the version the component imported: {calls:?}"
    );
    Ok(())
}

fn unsupported_features_refused(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let mut stream = crafted(&[], Core::Plain);
    // A type section defining `stream<u8>`, a type of component-model async.
    section(&mut stream, 7, 1, &[0x66, 0x01, 0x7d]);
    for (wasm, what, feature) in [
        (
            crafted(&[], Core::SharedMemory),
            "a shared memory",
            "threads",
        ),
        (
            crafted(&[], Core::Atomic),
            "an atomic instruction",
            "threads",
        ),
        (stream, "a stream type (component-model async)", "async"),
    ] {
        let run = add_crafted(&host, &wasm)?;
        ensure!(
            run.code != 0 && run.stdout.trim().is_empty(),
            "a component with {what} was accepted (exit {}): {}",
            run.code,
            excerpt(&run.stdout)
        );
        names(
            &run,
            &format!("a component with {what}"),
            &["cannot compile component", feature],
        )?;
        let invoked = host.run(&["invoke", "crafted", "run", "--args", "{}"])?;
        invoked.expect(3, &format!("invoke of the refused component with {what}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Telemetry (specification 55): OTLP receivers of the case's own on the loopback interface.

/// What an OTLP receiver was sent: (path or stream, content type, body).
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver: answers every request 200 with an empty protobuf body.
fn http_receiver() -> Result<(String, Received), Failure> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot bind a receiver: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| failed(format!("no receiver address: {e}")))?;
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || serve_http(stream, &sink));
        }
    });
    Ok((format!("http://{address}"), received))
}

fn serve_http(mut stream: std::net::TcpStream, sink: &Received) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        let path = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_owned();
        let header = |name: &str| {
            head.lines()
                .skip(1)
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        let content_type = header("content-type");
        while buffer.len() < end + 4 + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[end + 4..end + 4 + length].to_vec();
        buffer.drain(..end + 4 + length);
        if let Ok(mut sink) = sink.lock() {
            sink.push((path, content_type, body));
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(answer).is_err() {
            return;
        }
    }
}

/// An OTLP/gRPC receiver: HTTP/2 without TLS, answering every call with status 0. What it
/// records per stream: ("stream N", the first bytes of its header block, its DATA).
fn grpc_receiver() -> Result<(String, Received), Failure> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot bind a receiver: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| failed(format!("no receiver address: {e}")))?;
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                let _ = serve_h2(stream, &sink);
            });
        }
    });
    Ok((format!("http://{address}"), received))
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = vec![
        (length >> 16) as u8,
        (length >> 8) as u8,
        length as u8,
        kind,
        flags,
    ];
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn serve_h2(mut stream: std::net::TcpStream, sink: &Received) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut preface = [0u8; 24];
    stream.read_exact(&mut preface)?;
    if &preface != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
        if let Ok(mut sink) = sink.lock() {
            sink.push(("no HTTP/2 preface".into(), String::new(), preface.to_vec()));
        }
        return Ok(());
    }
    stream.write_all(&h2_frame(0x4, 0, 0, &[]))?;
    let mut data: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::new();
    loop {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head)?;
        let length =
            (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload)?;
        match kind {
            // SETTINGS: acknowledged.
            0x4 if flags & 0x1 == 0 => stream.write_all(&h2_frame(0x4, 0x1, 0, &[]))?,
            // PING: answered.
            0x6 if flags & 0x1 == 0 => stream.write_all(&h2_frame(0x6, 0x1, 0, &payload))?,
            0x1 | 0x0 => {
                if kind == 0x0 {
                    let padded = flags & 0x8 != 0;
                    let body = if padded && !payload.is_empty() {
                        let pad = usize::from(payload[0]);
                        payload[1..payload.len().saturating_sub(pad)].to_vec()
                    } else {
                        payload.clone()
                    };
                    data.entry(id).or_default().extend(body);
                    if !payload.is_empty() {
                        // Give the window back, for the connection and the stream.
                        let n = (payload.len() as u32).to_be_bytes();
                        stream.write_all(&h2_frame(0x8, 0, 0, &n))?;
                        stream.write_all(&h2_frame(0x8, 0, id, &n))?;
                    }
                } else {
                    data.entry(id).or_default();
                }
                if flags & 0x1 != 0 {
                    let body = data.remove(&id).unwrap_or_default();
                    if let Ok(mut sink) = sink.lock() {
                        sink.push((format!("stream {id}"), String::new(), body));
                    }
                    // :status 200, content-type application/grpc; an empty message; grpc-status 0.
                    let mut headers = vec![0x88, 0x0f, 0x10, 16];
                    headers.extend_from_slice(b"application/grpc");
                    stream.write_all(&h2_frame(0x1, 0x4, id, &headers))?;
                    stream.write_all(&h2_frame(0x0, 0, id, &[0, 0, 0, 0, 0]))?;
                    let mut trailers = vec![0x00, 11];
                    trailers.extend_from_slice(b"grpc-status");
                    trailers.extend([1, b'0']);
                    stream.write_all(&h2_frame(0x1, 0x5, id, &trailers))?;
                }
            }
            // GOAWAY: done.
            0x7 => return Ok(()),
            _ => {}
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Waits at most `within` until `done` holds of what `received` holds.
fn wait_for(
    received: &Received,
    within: Duration,
    done: impl Fn(&[(String, String, Vec<u8>)]) -> bool,
) -> bool {
    let started = Instant::now();
    loop {
        if received.lock().map(|r| done(&r)).unwrap_or(false) {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server of the case's own exporting to `url` over `protocol`, which answers one
/// invocation and is then stopped (SIGTERM), so that what it holds is exported.
fn serve_and_stop(target: &Target, url: &str, protocol: &str) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    write_config(
        &host,
        &format!("[telemetry]\notlp_endpoint = \"{url}\"\notlp_protocol = \"{protocol}\"\n"),
    )?;
    let mut serving = Serving::start(host, &[])?;
    serving
        .server
        .post(
            "/v1/invoke",
            &json!({ "capability": "hello", "function": "greet", "args": { "name": "Ada" } }),
        )?
        .expect(
            200,
            &format!("hello.greet on a server exporting over {protocol}"),
        )?;
    let pid = serving.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| failed(format!("cannot send SIGTERM: {e}")))?;
    let code = serving.wait(Duration::from_secs(20))?;
    ensure!(
        code == Some(0),
        "the server exporting over {protocol} did not exit 0 within 20 s of SIGTERM: {code:?}"
    );
    Ok(())
}

fn otlp_export(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case points a server of its own at receivers of its own".into(),
        ));
    }
    // OTLP over HTTP with protobuf bodies.
    let (url, received) = http_receiver()?;
    serve_and_stop(target, &url, "http/protobuf")?;
    let exported = |path: &str, needle: &'static [u8]| {
        let path = path.to_owned();
        move |r: &[(String, String, Vec<u8>)]| {
            r.iter().any(|(p, t, b)| {
                *p == path
                    && t.starts_with("application/x-protobuf")
                    && contains(b, needle)
                    && contains(b, b"femtoclaw-host")
            })
        }
    };
    let seen = || {
        received
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(p, t, b)| format!("{p} {t} {} bytes", b.len()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    ensure!(
        wait_for(
            &received,
            Duration::from_secs(10),
            exported("/v1/traces", b"femtoclaw.invoke")
        ),
        "no POST /v1/traces of application/x-protobuf holding the span femtoclaw.invoke of service femtoclaw-host came; the receiver got {:?}",
        seen()
    );
    ensure!(
        wait_for(
            &received,
            Duration::from_secs(10),
            exported("/v1/metrics", b"femtoclaw.invocations")
        ),
        "no POST /v1/metrics of application/x-protobuf holding the metric femtoclaw.invocations of service femtoclaw-host came; the receiver got {:?}",
        seen()
    );
    // OTLP over gRPC.
    let (url, received) = grpc_receiver()?;
    serve_and_stop(target, &url, "grpc")?;
    let call = |needle: &'static [u8]| {
        move |r: &[(String, String, Vec<u8>)]| {
            r.iter().any(|(p, _, b)| {
                // A gRPC message: uncompressed, its length, then the protobuf request.
                p.starts_with("stream ")
                    && b.len() > 5
                    && b[0] == 0
                    && u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize == b.len() - 5
                    && contains(b, needle)
                    && contains(b, b"femtoclaw-host")
            })
        }
    };
    let seen = || {
        received
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(p, _, b)| format!("{p}: {} bytes", b.len()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    ensure!(
        wait_for(
            &received,
            Duration::from_secs(10),
            call(b"femtoclaw.invoke")
        ),
        "no gRPC call holding the span femtoclaw.invoke of service femtoclaw-host came; the receiver got {:?}",
        seen()
    );
    ensure!(
        wait_for(
            &received,
            Duration::from_secs(10),
            call(b"femtoclaw.invocations")
        ),
        "no gRPC call holding the metric femtoclaw.invocations of service femtoclaw-host came; the receiver got {:?}",
        seen()
    );
    Ok(())
}

fn telemetry_receiver_down(target: &Target) -> Result<(), Failure> {
    if !target.owns_servers() {
        return Err(Failure::NotApplicable(
            "the case points a server of its own at a receiver that never answers".into(),
        ));
    }
    // A receiver that accepts connections and never answers, and one that is not there.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot bind a receiver: {e}")))?;
    let silent_url = format!(
        "http://{}",
        silent
            .local_addr()
            .map_err(|e| failed(format!("no address: {e}")))?
    );
    let held: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            if let Ok(mut keep) = keep.lock() {
                keep.push(stream);
            }
        }
    });
    let down_url = {
        let gone = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| failed(format!("cannot bind: {e}")))?;
        format!(
            "http://{}",
            gone.local_addr()
                .map_err(|e| failed(format!("no address: {e}")))?
        )
    };
    // Past the first export (every 5 s) for the receivers that never answer.
    for (url, protocol, what, calls) in [
        (
            &silent_url,
            "http/protobuf",
            "an OTLP/HTTP receiver that never answers",
            8,
        ),
        (
            &silent_url,
            "grpc",
            "an OTLP/gRPC receiver that never answers",
            8,
        ),
        (
            &down_url,
            "http/protobuf",
            "an OTLP receiver that is down",
            4,
        ),
    ] {
        let host = target.host()?;
        host.policy(OPEN)?;
        write_config(
            &host,
            &format!("[telemetry]\notlp_endpoint = \"{url}\"\notlp_protocol = \"{protocol}\"\n"),
        )?;
        let before = held.lock().map(|h| h.len()).unwrap_or(0);
        let serving = Serving::start(host, &[])?;
        let started = Instant::now();
        for i in 0..calls {
            let call = Instant::now();
            let response = serving.server.post(
                "/v1/invoke",
                &json!({ "capability": "hello", "function": "greet", "args": { "name": format!("Ada {i}") } }),
            )?;
            let took = call.elapsed();
            response.expect(200, &format!("hello.greet with {what}"))?;
            ensure!(
                took < Duration::from_secs(5),
                "with {what}, invocation {i} took {took:?}: telemetry delayed it"
            );
            std::thread::sleep(Duration::from_millis(1000));
        }
        ensure!(
            started.elapsed() < Duration::from_secs(40),
            "with {what}, {calls} invocations took {:?}",
            started.elapsed()
        );
        if url == &silent_url {
            let connected = (0..100).any(|_| {
                std::thread::sleep(Duration::from_millis(100));
                held.lock().map(|h| h.len()).unwrap_or(0) > before
            });
            ensure!(
                connected,
                "the server never connected to {what}: its telemetry was not on"
            );
        }
    }
    Ok(())
}

/// The offsets of the exported entries (their first byte) in an export.
fn entry_offsets(bytes: &[u8]) -> Result<Vec<(usize, usize)>, Failure> {
    let bad = || {
        failed("the export's entry section is not FCLEDGER 0x01, 0x01, a count and framed entries")
    };
    if bytes.len() < 18 || &bytes[..8] != b"FCLEDGER" || bytes[8] != 0x01 || bytes[9] != 0x01 {
        return Err(bad());
    }
    let count = u64::from_le_bytes(bytes[10..18].try_into().map_err(|_| bad())?);
    let mut at = 18;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = u32::from_le_bytes(
            bytes
                .get(at..at + 4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        at += 4;
        if at + len > bytes.len() {
            return Err(bad());
        }
        out.push((at, len));
        at += len;
    }
    Ok(out)
}

fn entry_version_refused(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("echo", &json!({ "text": "x" }), &[])?
        .expect(0, "invoke echo")?;
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let export = host.files.path().join("ledger.export");
    host.ok(&["log", "export", &lossy(&export), "--with-components"])?;
    let bytes = read(&export)?;
    let offsets = entry_offsets(&bytes)?;
    let entries = host.entries()?;
    ensure!(
        offsets.len() == entries.len(),
        "the export holds {} entries where log show lists {}",
        offsets.len(),
        entries.len()
    );
    let index = entries
        .iter()
        .position(|e| e["entry"]["type"] == "invocation-start")
        .ok_or_else(|| failed("the ledger holds no invocation-start"))?;
    let (at, _) = offsets[index];
    ensure!(
        bytes[at] == 0x03,
        "entry {index} does not begin with the version byte 0x03"
    );
    let elsewhere = target.host()?;
    // Re-signed unchanged, the export verifies: what follows fails for the entry alone.
    let same = resigned(&host, &bytes, index, |_| {})?;
    let path = host.file("resigned.export", &same)?;
    host.run(&["log", "verify", &lossy(&path), "--key", &key])?
        .expect(0, "log verify of the export re-signed unchanged")?;
    for version in [1u8, 2, 4, 0] {
        for garbled in [false, true] {
            // Re-signed with the host's key: the export is sound but for the entry itself.
            let changed = resigned(&host, &bytes, index, |entry| {
                entry[0] = version;
                if garbled {
                    // Every other byte made meaningless: only the version may be read.
                    for b in &mut entry[1..] {
                        *b = 0xff;
                    }
                }
            })?;
            let path = host.file("changed.export", &changed)?;
            let what = format!(
                "an export whose entry {index} has version byte {version}{}",
                if garbled { " and garbage after it" } else { "" }
            );
            let run = host.run(&["log", "verify", &lossy(&path), "--key", &key])?;
            ensure!(
                run.code != 0 && run.stdout.trim().is_empty(),
                "log verify of {what} did not refuse it (exit {})",
                run.code
            );
            names(
                &run,
                &format!("log verify of {what}"),
                &[
                    &format!("unsupported encoding version `{version}`"),
                    &index.to_string(),
                ],
            )?;
            let run = elsewhere.run(&["replay", &lossy(&path), "--key", &key, "--json"])?;
            ensure!(
                run.code != 0 && run.stdout.trim().is_empty(),
                "replay of {what} did not refuse it (exit {})",
                run.code
            );
            names(
                &run,
                &format!("replay of {what}"),
                &[&format!("unsupported encoding version `{version}`")],
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// An export re-signed with the host's own key, to show a recording of another engine.

fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let mut h = Sha256::new();
            h.update([0x01]);
            h.update(merkle_root(&leaves[..k]));
            h.update(merkle_root(&leaves[k..]));
            h.finalize().into()
        }
    }
}

/// The export with `edit` applied to the bytes of entry `index`, and every checkpoint that
/// covers it re-signed by the signing key of `host` (its `keys/ledger-signing.key`).
fn resigned(
    host: &Host,
    export: &[u8],
    index: usize,
    edit: impl Fn(&mut Vec<u8>),
) -> Result<Vec<u8>, Failure> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let bad = |what: &str| failed(format!("the export: {what}"));
    let offsets = entry_offsets(export)?;
    let mut entries: Vec<Vec<u8>> = offsets
        .iter()
        .map(|(at, len)| export[*at..at + len].to_vec())
        .collect();
    edit(&mut entries[index]);
    let leaves: Vec<[u8; 32]> = entries
        .iter()
        .map(|e| {
            let mut h = Sha256::new();
            h.update([0x00]);
            h.update(e);
            h.finalize().into()
        })
        .collect();
    // The signing key: PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>.
    let text = String::from_utf8_lossy(&read(
        &host.data.path().join("keys").join("ledger-signing.key"),
    )?)
    .trim()
    .to_owned();
    let parts: Vec<&str> = text.splitn(5, '+').collect();
    let [_, _, key_name, key_id, seed] = parts.as_slice() else {
        return Err(bad("the signing key is not PRIVATE+KEY+name+id+key"));
    };
    let seed = STANDARD
        .decode(seed)
        .map_err(|_| bad("the signing key is not base64"))?;
    let seed: [u8; 32] = seed
        .get(1..33)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("the signing key is not 0x01 and 32 bytes"))?;
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let id: Vec<u8> = (0..4)
        .map(|i| u8::from_str_radix(key_id.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("the signing key's id is not hex"))?;
    // After the entries: 0x02, the checkpoints, then the rest as it is.
    let end = offsets.last().map_or(18, |(at, len)| at + len);
    if export.get(end) != Some(&0x02) {
        return Err(bad("no checkpoint section after the entries"));
    }
    let count = u64::from_le_bytes(
        export
            .get(end + 1..end + 9)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("no checkpoint count"))?,
    );
    let mut at = end + 9;
    let mut notes = Vec::new();
    for _ in 0..count {
        let len = u32::from_le_bytes(
            export
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("a checkpoint length"))?,
        ) as usize;
        notes.push(
            String::from_utf8_lossy(
                export
                    .get(at + 4..at + 4 + len)
                    .ok_or_else(|| bad("a checkpoint"))?,
            )
            .into_owned(),
        );
        at += 4 + len;
    }
    let rest = &export[at..];
    let mut out = export[..18].to_vec();
    for e in &entries {
        out.extend((e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out.push(0x02);
    out.extend(count.to_le_bytes());
    for note in notes {
        let body_end = note
            .find("\n\n")
            .ok_or_else(|| bad("a checkpoint note has no signature"))?
            + 1;
        let mut lines: Vec<String> = note[..body_end].lines().map(str::to_owned).collect();
        let size: usize = lines
            .get(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("a checkpoint has no size"))?;
        let note = if size > index && size <= leaves.len() {
            lines[2] = STANDARD.encode(merkle_root(&leaves[..size]));
            let body = lines.join("\n") + "\n";
            let signature = ed25519_dalek::Signer::sign(&signing, body.as_bytes());
            let mut blob = id.clone();
            blob.extend(signature.to_bytes());
            format!("{body}\n\u{2014} {key_name} {}\n", STANDARD.encode(blob))
        } else {
            note
        };
        out.extend((note.len() as u32).to_le_bytes());
        out.extend_from_slice(note.as_bytes());
    }
    out.extend_from_slice(rest);
    Ok(out)
}

fn replay_other_engine(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("add", &json!({ "a": 40, "b": 2 }), &[])?
        .expect(0, "invoke add")?;
    let entries = host.entries()?;
    let index = entries
        .iter()
        .position(|e| e["entry"]["type"] == "invocation-start")
        .ok_or_else(|| failed("the ledger holds no invocation-start"))?;
    let start = &entries[index]["entry"];
    let recorded_digest = start["engine_digest"].as_str().unwrap_or("?").to_owned();
    let version = start["wasmtime_version"].as_str().unwrap_or("?").to_owned();
    let key = host.ok(&["key", "show"])?.trim().to_owned();
    let path = host.files.path().join("full.export");
    host.ok(&["log", "export", &lossy(&path), "--with-components"])?;
    let export = read(&path)?;
    let replay =
        |on: &Host, file: &Path| on.run(&["replay", &lossy(file), "--key", &key, "--json"]);
    let elsewhere = target.host()?;
    replay(&elsewhere, &path)?.expect(0, "replay of the export on a like engine")?;
    // Another engine configuration (another memory limit): exit 10 naming both digests.
    write_config(&elsewhere, "[limits]\nmemory_bytes = 33554432\n")?;
    let run = replay(&elsewhere, &path)?;
    refused(&run, 10, "replay on an engine with another memory limit")?;
    names(
        &run,
        "replay on an engine with another memory limit",
        &[&recorded_digest],
    )?;
    let current = run
        .stderr
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 64 && *w != recorded_digest)
        .map(str::to_owned);
    ensure!(
        current.is_some(),
        "the refusal does not name this engine's configuration digest beside the recorded one: {}",
        excerpt(&run.stderr)
    );
    std::fs::remove_file(elsewhere.data.path().join("femtoclaw.toml"))
        .map_err(|e| failed(format!("cannot remove femtoclaw.toml: {e}")))?;
    // Recorded with another wasmtime version, in an export that verifies: exit 10 naming both.
    let other = if version == "48.0.7" {
        "48.0.6"
    } else {
        "48.0.7"
    };
    ensure!(
        other.len() == version.len(),
        "wasmtime_version {version} is not of the form 48.0.8"
    );
    let forged = resigned(&host, &export, index, |entry| {
        if let Some(at) = entry
            .windows(version.len())
            .position(|w| w == version.as_bytes())
        {
            entry[at..at + version.len()].copy_from_slice(other.as_bytes());
        }
    })?;
    let forged_path = host.file("other-wasmtime.export", &forged)?;
    host.run(&["log", "verify", &lossy(&forged_path), "--key", &key])?
        .expect(
            0,
            "log verify of the export recorded with another wasmtime version, re-signed",
        )?;
    let run = replay(&elsewhere, &forged_path)?;
    refused(
        &run,
        10,
        "replay of an invocation recorded with another wasmtime version",
    )?;
    names(
        &run,
        "replay of an invocation recorded with another wasmtime version",
        &[&format!("wasmtime {other}"), &version],
    )?;
    Ok(())
}
