//! Cases of access to the world outside the sandbox: files below granted directories
//! (specification 21), egress (specification 20) and secrets (specification 22), driven with the
//! first-party `files` and `fetch` capabilities. Where a case needs `fetch` under a manifest of
//! its own (loopback ports the system picks, a secret), it takes the target's embedded component
//! out of a `log export --with-components` (specification 36's framing) and installs it under
//! another name with that manifest.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::peer::{Peer, Reply, Seen, answer};
use super::{OPEN, call, err, failed, hex, write};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.files.read-only-unless-write-granted",
        verifies: &["FC-SEC-2102"],
        run: files_read_only,
    },
    Case {
        name: "cli.files.decided-on-lexical-path",
        verifies: &["FC-SEC-2115"],
        run: files_lexical,
    },
    Case {
        name: "cli.files.escapes-refused",
        verifies: &["FC-SEC-2108", "FC-SEC-2110"],
        run: files_escapes,
    },
    Case {
        name: "cli.files.links-resolved-inside",
        verifies: &["FC-SEC-2109"],
        run: files_links_inside,
    },
    Case {
        name: "cli.files.mounts",
        verifies: &["FC-SEC-2104", "FC-SEC-2105", "FC-SEC-2116"],
        run: files_mounts,
    },
    Case {
        name: "cli.files.replay-touches-no-file",
        verifies: &["FC-SEC-2107"],
        run: files_replay,
    },
    Case {
        name: "cli.secret.echoes-scrubbed",
        verifies: &[
            "FC-SEC-2206",
            "FC-SEC-2209",
            "FC-SEC-2210",
            "FC-SEC-2213",
            "FC-SEC-2220",
        ],
        run: secret_scrubbed,
    },
    Case {
        name: "cli.secret.short-secret-forms",
        verifies: &["FC-SEC-2214"],
        run: secret_short,
    },
    Case {
        name: "cli.secret.size-limit",
        verifies: &["FC-SEC-2215"],
        run: secret_size_limit,
    },
    Case {
        name: "cli.secret.one-destination",
        verifies: &["FC-SEC-2205", "FC-SEC-2207"],
        run: secret_destination,
    },
    Case {
        name: "cli.secret.redirect-resource-scrubbed",
        verifies: &["FC-SEC-2212"],
        run: secret_redirect_resources,
    },
    Case {
        name: "cli.egress.cross-origin-redirect-drops-credentials",
        verifies: &["FC-SEC-2014", "FC-SEC-2015"],
        run: egress_cross_origin_credentials,
    },
    Case {
        name: "cli.egress.address-kinds",
        verifies: &["FC-SEC-2011"],
        run: egress_address_kinds,
    },
    Case {
        name: "cli.egress.redirect-method-rewrite",
        verifies: &["FC-SEC-2006"],
        run: egress_method_rewrite,
    },
    Case {
        name: "cli.egress.url-refusals",
        verifies: &["FC-SEC-2007"],
        run: egress_url_refusals,
    },
    Case {
        name: "cli.egress.tls-handshake",
        verifies: &["FC-SEC-2008"],
        run: egress_tls,
    },
    Case {
        name: "cli.egress.timeouts",
        verifies: &["FC-SEC-2023"],
        run: egress_timeouts,
    },
    Case {
        name: "cli.egress.unresolvable-name",
        verifies: &["FC-SEC-2025"],
        run: egress_unresolvable,
    },
    Case {
        name: "cli.egress.caps-configured",
        verifies: &["FC-SEC-2026"],
        run: egress_caps_configured,
    },
    Case {
        name: "cli.telemetry.no-call-parameters-or-results",
        verifies: &["FC-SEC-2216"],
        run: telemetry_carries_no_calls,
    },
    Case {
        name: "cli.sdk.guest-exports-callable",
        verifies: &["FC-EXT-5301"],
        run: sdk_guest,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

fn mkdir(path: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(path)
        .map_err(|e| failed(format!("cannot create {}: {e}", path.display())))
}

#[cfg(unix)]
fn symlink(target: &str, link: &Path) -> Result<(), Failure> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| failed(format!("cannot link {} to {target}: {e}", link.display())))
}

#[cfg(not(unix))]
fn symlink(_target: &str, _link: &Path) -> Result<(), Failure> {
    Err(Failure::NotApplicable(
        "symbolic links need a Unix host".into(),
    ))
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `invoke CAPABILITY FUNCTION --args ARGS` plus `extra`: the run.
fn invoke(
    host: &Host,
    capability: &str,
    function: &str,
    args: &Json,
    extra: &[&str],
) -> Result<Run, Failure> {
    let text = args.to_string();
    let mut all = vec!["invoke", capability, function, "--args", &text];
    all.extend_from_slice(extra);
    host.run(&all)
}

/// The entries' `entry` objects.
fn bodies(entries: &[Json]) -> Vec<&Json> {
    entries.iter().map(|e| &e["entry"]).collect()
}

/// The decision entries with `action` and `resource`.
fn decisions<'a>(entries: &'a [Json], action: &str, resource: &str) -> Vec<&'a Json> {
    bodies(entries)
        .into_iter()
        .filter(|e| e["type"] == "decision" && e["action"] == action && e["resource"] == resource)
        .collect()
}

/// The host-call entries.
fn host_calls(entries: &[Json]) -> Vec<&Json> {
    bodies(entries)
        .into_iter()
        .filter(|e| e["type"] == "host-call")
        .collect()
}

/// The entries of invocations numbered `from` and after.
fn since(entries: &[Json], from: u64) -> Vec<Json> {
    entries
        .iter()
        .filter(|e| e["entry"]["invocation"].as_u64().is_some_and(|n| n >= from))
        .cloned()
        .collect()
}

/// The number the next invocation gets: one past the highest recorded.
fn next_invocation(host: &Host) -> Result<u64, Failure> {
    Ok(host
        .entries()?
        .iter()
        .filter_map(|e| e["entry"]["invocation"].as_u64())
        .max()
        .map_or(0, |n| n + 1))
}

/// `log export FILE` (plus `extra`): its path.
fn export(host: &Host, name: &str, extra: &[&str]) -> Result<PathBuf, Failure> {
    let file = host.files.path().join(name);
    let path = file.to_string_lossy().into_owned();
    let mut args = vec!["log", "export", path.as_str()];
    args.extend_from_slice(extra);
    host.ok(&args)?;
    Ok(file)
}

/// `replay FILE --key KEY --json` on `on`: the run.
fn replay(on: &Host, file: &Path, key: &str) -> Result<Run, Failure> {
    on.run(&[
        "replay",
        &file.to_string_lossy(),
        "--key",
        key.trim(),
        "--json",
    ])
}

/// Fails unless every invocation of a replay report is `identical`.
fn all_identical(run: &Run, what: &str) -> Result<usize, Failure> {
    run.expect(0, what)?;
    let report = run.json()?;
    let statuses: Vec<&str> = report["invocations"]
        .as_array()
        .map(|r| r.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == "identical"),
        "{what}: every invocation must replay identical: {}",
        excerpt(&run.stdout)
    );
    Ok(statuses.len())
}

fn random_hex(bytes: usize) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut out = String::new();
    while out.len() < bytes * 2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(bytes * 2);
    out
}

// --- The embedded components, taken out of an export. ----------------------------------------

/// The components of an export (section 0x03 of specification 36's framing).
fn export_components(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    Ok(crate::format::Export::parse(bytes)?
        .components
        .unwrap_or_default()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect())
}

/// The component of the embedded capability `name`, taken out of an export of one invocation
/// of it on a fresh data directory (cached for the run).
fn embedded(target: &Target, name: &str, function: &str, args: &Json) -> Result<Vec<u8>, Failure> {
    static CACHE: Mutex<Option<HashMap<String, Vec<u8>>>> = Mutex::new(None);
    if let Some(bytes) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(name).cloned()))
    {
        return Ok(bytes);
    }
    let host = target.host()?;
    invoke(&host, name, function, args, &[])?;
    let file = export(&host, "component.export", &["--with-components"])?;
    let bytes = std::fs::read(&file).map_err(|e| failed(format!("cannot read the export: {e}")))?;
    let components = export_components(&bytes)
        .map_err(|e| failed(format!("log export --with-components: {e}")))?;
    let [component] = components.as_slice() else {
        return Err(failed(format!(
            "an export of one invocation of `{name}` must carry its one component; it carries {}",
            components.len()
        )));
    };
    ensure!(
        component.starts_with(b"\0asm"),
        "the exported component of `{name}` is not WebAssembly"
    );
    if let Ok(mut cache) = CACHE.lock() {
        cache
            .get_or_insert_with(HashMap::new)
            .insert(name.to_owned(), component.clone());
    }
    Ok(component.clone())
}

/// Installs `wasm` with `manifest`.
fn install(host: &Host, stem: &str, wasm: &[u8], manifest: &str) -> Result<(), Failure> {
    let wasm = host.file(&format!("{stem}.wasm"), wasm)?;
    let manifest = host.file(&format!("{stem}.toml"), manifest.as_bytes())?;
    host.ok(&[
        "capability",
        "add",
        &wasm.to_string_lossy(),
        "--manifest",
        &manifest.to_string_lossy(),
    ])?;
    Ok(())
}

/// The capability the egress cases drive: the target's `fetch` component as `probe`, requesting
/// the origins and secrets given.
const PROBE: &str = "probe";

fn probe_host(
    target: &Target,
    policy: &str,
    origins: &[String],
    secrets: &[&str],
) -> Result<Host, Failure> {
    let wasm = embedded(target, "fetch", "get", &json!({ "url": "ftp://x/" }))?;
    let host = target.host()?;
    host.policy(policy)?;
    let manifest = format!(
        "name = \"{PROBE}\"\nversion = \"1.0.0\"\nfuel = 500_000_000\n\n[requests]\nimports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\"]\nhttp = {}\nsecrets = {}\n",
        json!(origins),
        json!(secrets),
    );
    install(&host, PROBE, &wasm, &manifest)?;
    Ok(host)
}

/// `probe.request` with the fields given (method GET unless set): the printed result.
fn request(host: &Host, fields: Json) -> Result<Json, Failure> {
    let mut args = json!({ "method": "GET" });
    if let (Some(args), Some(fields)) = (args.as_object_mut(), fields.as_object()) {
        for (k, v) in fields {
            args.insert(k.clone(), v.clone());
        }
    }
    call(host, PROBE, "request", &args)
}

// --- A loopback peer. ------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Specification 21: files.

/// The host directory backing the `files` capability's `/data` when no mapping covers it.
pub(super) fn default_data(host: &Host) -> PathBuf {
    host.data.path().join("files").join("files").join("data")
}

/// `files.read-file PATH`: the result.
fn read_file(host: &Host, path: &str) -> Result<Json, Failure> {
    call(host, "files", "read-file", &json!({ "path": path }))
}

/// `files.write-file PATH TEXT`: the result.
fn write_file(host: &Host, path: &str, text: &str) -> Result<Json, Failure> {
    call(
        host,
        "files",
        "write-file",
        &json!({ "path": path, "text": text }),
    )
}

/// `files.list-dir DIR`: the result.
fn list_dir(host: &Host, dir: &str) -> Result<Json, Failure> {
    call(host, "files", "list-dir", &json!({ "dir": dir }))
}

/// A forbid of `action` on one path, with an id.
fn forbid(id: &str, action: &str, path: &str) -> String {
    format!(
        "@id(\"{id}\")\nforbid (principal, action == FemtoClaw::Action::\"{action}\", resource == FemtoClaw::Path::\"{path}\");\n"
    )
}

fn files_read_only(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let dir = default_data(&host);
    write(&dir.join("old.txt"), b"before")?;
    // fs.read on /data, and fs.write on every path below it, but not on /data itself: the
    // directory is handed over read-only.
    host.policy(&format!("{OPEN}{}", forbid("ro", "fs.write", "/data")))?;
    let read = read_file(&host, "/data/old.txt")?;
    ensure!(
        read["ok"] == "before",
        "a directory granted fs.read must be readable: read-file /data/old.txt gave {read}"
    );
    let wrote = write_file(&host, "/data/new.txt", "written")?;
    ensure!(
        !err(&wrote).is_empty(),
        "a directory granted fs.read but not fs.write must be read-only: write-file /data/new.txt gave {wrote}"
    );
    let replaced = write_file(&host, "/data/old.txt", "replaced")?;
    ensure!(
        !err(&replaced).is_empty(),
        "a directory granted fs.read but not fs.write must be read-only: write-file /data/old.txt gave {replaced}"
    );
    ensure!(
        !dir.join("new.txt").exists()
            && read_text(&dir.join("old.txt")).as_deref() == Some("before"),
        "a write to a read-only directory changed it: new.txt exists {}, old.txt holds {:?}",
        dir.join("new.txt").exists(),
        read_text(&dir.join("old.txt"))
    );
    // With fs.write granted on /data too, the same writes go through.
    host.policy(OPEN)?;
    let wrote = write_file(&host, "/data/new.txt", "written")?;
    ensure!(
        wrote["ok"] == 7 && read_text(&dir.join("new.txt")).as_deref() == Some("written"),
        "with fs.write granted on /data, write-file /data/new.txt must write the file: {wrote}"
    );
    Ok(())
}

/// The host calls of `files` whose recorded result holds the error code `code`.
fn failed_calls<'a>(entries: &'a [Json], code: &str) -> Vec<&'a Json> {
    host_calls(entries)
        .into_iter()
        .filter(|c| c["result"].to_string().contains(&format!("\"{code}\"")))
        .collect()
}

fn files_lexical(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let dir = default_data(&host);
    write(&dir.join("a.txt"), b"alpha")?;
    write(&dir.join("b.txt"), b"bravo")?;
    mkdir(&dir.join("sub"))?;
    host.policy(&format!(
        "{OPEN}{}{}",
        forbid("no-read-b", "fs.read", "/data/b.txt"),
        forbid("no-write-ro", "fs.write", "/data/ro.txt")
    ))?;
    let from = next_invocation(&host)?;
    // Through sub/..: decided on /data/a.txt.
    let read = read_file(&host, "/data/sub/../a.txt")?;
    ensure!(
        read["ok"] == "alpha",
        "read-file /data/sub/../a.txt: {read}"
    );
    let refused = read_file(&host, "/data/sub/../b.txt")?;
    let wrote = write_file(&host, "/data/c.txt", "charlie")?;
    let refused_write = write_file(&host, "/data/sub/../ro.txt", "nope")?;
    let listed = list_dir(&host, "/data/sub/..")?;
    let above = read_file(&host, "/data/../../a.txt")?;
    let missing = read_file(&host, "/data/missing.txt")?;
    ensure!(
        !err(&above).is_empty() && !err(&missing).is_empty(),
        "a path climbing above / and a missing file must be errors: {above} / {missing}"
    );
    ensure!(
        err(&refused).contains("denied by the policy") && !refused.to_string().contains("bravo"),
        "reading /data/b.txt under a forbid on it must be refused as `access` (denied by the policy), without its bytes: {refused}"
    );
    ensure!(wrote["ok"] == 7, "write-file /data/c.txt: {wrote}");
    ensure!(
        err(&refused_write).contains("denied by the policy") && !dir.join("ro.txt").exists(),
        "writing /data/ro.txt under a forbid of fs.write on it must be refused as `access` and create nothing: {refused_write}"
    );
    ensure!(
        listed["ok"].to_string().contains("a.txt"),
        "list-dir /data/sub/.. must list /data: {listed}"
    );
    let entries = since(&host.entries()?, from);
    let digest = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "decision")
        .map(|e| e["entry"]["policy_digest"].clone())
        .unwrap_or(Json::Null);
    for (action, resource, allowed, ids) in [
        (
            "fs.read",
            "/data/a.txt",
            true,
            json!(["conformance.cedar:0"]),
        ),
        ("fs.read", "/data/b.txt", false, json!(["no-read-b"])),
        (
            "fs.write",
            "/data/c.txt",
            true,
            json!(["conformance.cedar:0"]),
        ),
        ("fs.write", "/data/ro.txt", false, json!(["no-write-ro"])),
        ("fs.read", "/data", true, json!(["conformance.cedar:0"])),
    ] {
        let found = decisions(&entries, action, resource);
        ensure!(
            found.iter().any(|d| d["allowed"] == allowed
                && d["policy_ids"] == ids
                && d["policy_digest"] == digest),
            "no {action} decision on the lexical path {resource} recorded as allowed={allowed} with policy ids {ids}: {found:?}"
        );
    }
    for written in [
        "/data/sub/../a.txt",
        "/data/sub/../b.txt",
        "/data/sub/../ro.txt",
        "/data/sub/..",
    ] {
        ensure!(
            !entries
                .iter()
                .any(|e| e["entry"]["type"] == "decision" && e["entry"]["resource"] == written),
            "a decision was made on {written} as written rather than on its lexical path"
        );
    }
    // Every refusal is a recorded host call with its error code.
    ensure!(
        failed_calls(&entries, "access").len() >= 2,
        "the two refused file operations must be recorded as host calls with the error code `access`: {}",
        excerpt(&json!(host_calls(&entries)).to_string())
    );
    for code in ["not-permitted", "no-entry"] {
        ensure!(
            !failed_calls(&entries, code).is_empty(),
            "a file operation refused as `{code}` must be recorded as a host call with that code: {}",
            excerpt(&json!(host_calls(&entries)).to_string())
        );
    }
    Ok(())
}

fn files_escapes(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let dir = default_data(&host);
    mkdir(&dir)?;
    // Outside the preopen: beside it (where a naive `..` lands) and elsewhere on the host.
    let beside = host.data.path().join("files").join("files");
    write(&beside.join("leak.txt"), b"BESIDE-CANARY")?;
    let outside = host.files.path().join("outside");
    write(&outside.join("canary.txt"), b"OUTSIDE-CANARY")?;
    let out = outside.to_string_lossy().into_owned();
    symlink(&out, &dir.join("out"))?;
    symlink("../../..", &dir.join("up"))?;
    symlink(&format!("{out}/created.txt"), &dir.join("dangling-out"))?;
    symlink("target.txt", &dir.join("dangling-in"))?;
    let rooted = format!("/fc-conformance-{}.txt", random_hex(6));
    let from = next_invocation(&host)?;
    let mut results = Vec::new();
    for path in [
        "/data/../leak.txt".to_owned(),
        format!("/data/..{out}/canary.txt"),
        format!("{out}/canary.txt"),
        "/data/out/canary.txt".to_owned(),
        "/data/up/files/files/leak.txt".to_owned(),
    ] {
        let got = read_file(&host, &path)?;
        ensure!(
            !err(&got).is_empty() && !got.to_string().contains("CANARY"),
            "read-file {path} leaves /data and must be refused without its bytes: {got}"
        );
        results.push(got);
    }
    let listed = list_dir(&host, "/data/out")?;
    ensure!(
        !err(&listed).is_empty() && !listed.to_string().contains("canary"),
        "list-dir /data/out (a link out of /data) must be refused: {listed}"
    );
    for (path, lands) in [
        ("/data/../new.txt".to_owned(), beside.join("new.txt")),
        (format!("/data/..{out}/new.txt"), outside.join("new.txt")),
        (rooted.clone(), PathBuf::from(&rooted)),
        ("/data/out/new.txt".to_owned(), outside.join("new.txt")),
        (
            "/data/out/canary.txt".to_owned(),
            outside.join("canary.txt"),
        ),
        (
            "/data/up/files/files/leak.txt".to_owned(),
            beside.join("leak.txt"),
        ),
        ("/data/dangling-out".to_owned(), outside.join("created.txt")),
    ] {
        let got = write_file(&host, &path, "WRITTEN")?;
        ensure!(
            !err(&got).is_empty(),
            "write-file {path} leaves /data and must be refused: {got}"
        );
        ensure!(
            read_text(&lands).is_none_or(|t| !t.contains("WRITTEN")),
            "write-file {path} was refused but wrote {}",
            lands.display()
        );
    }
    ensure!(
        read_text(&outside.join("canary.txt")).as_deref() == Some("OUTSIDE-CANARY")
            && read_text(&beside.join("leak.txt")).as_deref() == Some("BESIDE-CANARY")
            && !outside.join("created.txt").exists()
            && !beside.join("new.txt").exists(),
        "a refused operation changed something outside /data"
    );
    // A dangling link inside /data whose target the policy withholds.
    host.policy(&format!(
        "{OPEN}{}",
        forbid("no-target", "fs.write", "/data/target.txt")
    ))?;
    let got = write_file(&host, "/data/dangling-in", "WRITTEN")?;
    ensure!(
        !err(&got).is_empty() && !dir.join("target.txt").exists(),
        "write-file through the dangling link /data/dangling-in must not create /data/target.txt, which is not granted: {got}"
    );
    // The `..` and absolute attempts were put to the policy and recorded.
    let entries = since(&host.entries()?, from);
    for resource in [
        "/leak.txt".to_owned(),
        format!("{out}/canary.txt"),
        "/new.txt".to_owned(),
        format!("{out}/new.txt"),
        rooted.clone(),
    ] {
        ensure!(
            bodies(&entries).iter().any(|e| e["type"] == "decision"
                && e["action"].as_str().is_some_and(|a| a.starts_with("fs."))
                && e["resource"] == resource.as_str()),
            "the attempt on {resource} (by .. or an absolute path) is not recorded as a decision"
        );
    }
    Ok(())
}

fn files_links_inside(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let dir = default_data(&host);
    write(&dir.join("private").join("secret.txt"), b"HIDDEN")?;
    mkdir(&dir.join("private").join("inner"))?;
    write(&dir.join("secret.txt"), b"PUBLIC")?;
    write(&dir.join("open").join("note.txt"), b"NOTE")?;
    symlink("private", &dir.join("alias"))?;
    symlink("private/inner", &dir.join("deep"))?;
    symlink("open", &dir.join("door"))?;
    host.policy(&format!(
        "{OPEN}{}{}",
        forbid("hide", "fs.read", "/data/private/secret.txt"),
        forbid("keep", "fs.write", "/data/private/secret.txt"),
    ))?;
    // A link to a granted path is followed.
    let note = read_file(&host, "/data/door/note.txt")?;
    ensure!(
        note["ok"] == "NOTE",
        "read-file /data/door/note.txt through a link to /data/open must read it: {note}"
    );
    let from = next_invocation(&host)?;
    for path in ["/data/alias/secret.txt", "/data/deep/../secret.txt"] {
        let got = read_file(&host, path)?;
        ensure!(
            err(&got).contains("denied by the policy") && !got.to_string().contains("HIDDEN"),
            "read-file {path} reaches /data/private/secret.txt, which the policy withholds: it must be refused as `access`; it gave {got}"
        );
    }
    let got = write_file(&host, "/data/alias/secret.txt", "CHANGED")?;
    ensure!(
        err(&got).contains("denied by the policy")
            && read_text(&dir.join("private").join("secret.txt")).as_deref() == Some("HIDDEN"),
        "write-file /data/alias/secret.txt reaches /data/private/secret.txt, on which fs.write is forbidden: it must be refused and change nothing; it gave {got}"
    );
    let entries = since(&host.entries()?, from);
    for (action, id) in [("fs.read", "hide"), ("fs.write", "keep")] {
        ensure!(
            decisions(&entries, action, "/data/private/secret.txt")
                .iter()
                .any(|d| d["allowed"] == false && d["policy_ids"] == json!([id])),
            "no refused {action} decision on the resolved path /data/private/secret.txt is recorded"
        );
    }
    Ok(())
}

fn files_mounts(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let data = host.data.path();
    let mounts = data.join("mounts.toml");
    // No mapping: <data dir>/files/files/data, created on demand.
    let default = default_data(&host);
    ensure!(
        !default.exists(),
        "the default directory exists before anything was granted"
    );
    let wrote = write_file(&host, "/data/one.txt", "one")?;
    ensure!(
        wrote["ok"] == 3 && read_text(&default.join("one.txt")).as_deref() == Some("one"),
        "with no mapping, /data of `files` must be <data dir>/files/files/data, created on demand: {wrote}"
    );
    // Everyone's mappings: the longest covering one wins; a relative host path is relative to
    // the data directory; a mapping covers the paths below it.
    let (root, shared, own, other) = (
        host.files.path().join("root"),
        host.files.path().join("shared"),
        host.files.path().join("own"),
        host.files.path().join("other"),
    );
    for d in [
        &root.join("data"),
        &shared,
        &own,
        &other,
        &data.join("relative"),
    ] {
        mkdir(d)?;
    }
    let cases: [(String, PathBuf, &str); 4] = [
        (
            format!("\"/\" = {}\n", json!(root)),
            root.join("data"),
            "a mapping of / covers /data",
        ),
        (
            format!("\"/\" = {}\n\"/data\" = {}\n", json!(root), json!(shared)),
            shared.clone(),
            "the longest covering mapping wins",
        ),
        (
            format!(
                "\"/data\" = {}\n\n[files]\n\"/data\" = {}\n\n[memory]\n\"/data\" = {}\n",
                json!(shared),
                json!(own),
                json!(other)
            ),
            own.clone(),
            "the capability's own table wins over the top-level mappings",
        ),
        (
            "\"/data\" = \"relative\"\n".to_owned(),
            data.join("relative"),
            "a relative host path is relative to the data directory",
        ),
    ];
    for (i, (text, backing, what)) in cases.iter().enumerate() {
        write(&mounts, text.as_bytes())?;
        let name = format!("mapped-{i}.txt");
        let wrote = write_file(&host, &format!("/data/{name}"), "mapped")?;
        ensure!(
            wrote["ok"] == 6 && read_text(&backing.join(&name)).as_deref() == Some("mapped"),
            "{what}: under mounts.toml {text:?}, /data/{name} must be {}; write-file gave {wrote}",
            backing.join(&name).display()
        );
        let read = read_file(&host, &format!("/data/{name}"))?;
        ensure!(
            read["ok"] == "mapped",
            "{what}: read-file /data/{name}: {read}"
        );
    }
    // A mapped directory that does not exist: the invocation fails before the guest runs.
    let missing = host.files.path().join("missing-dir");
    write(
        &mounts,
        format!("\"/data\" = {}\n", json!(missing)).as_bytes(),
    )?;
    let from = next_invocation(&host)?;
    let run = invoke(
        &host,
        "files",
        "write-file",
        &json!({ "path": "/data/x.txt", "text": "x" }),
        &[],
    )?;
    ensure!(
        run.code != 0
            && run.stderr.contains(&missing.to_string_lossy().into_owned())
            && run.stdout.trim().is_empty(),
        "an invocation whose /data is mapped to the missing {} must fail naming it: exit {}, stdout {:?}, stderr {:?}",
        missing.display(),
        run.code,
        excerpt(&run.stdout),
        excerpt(&run.stderr)
    );
    ensure!(
        !missing.exists(),
        "the missing mapped directory was created"
    );
    let entries = since(&host.entries()?, from);
    ensure!(
        host_calls(&entries).is_empty()
            && !entries
                .iter()
                .any(|e| e["entry"]["type"] == "invocation-end"
                    && e["entry"]["result"].to_string().contains("ok")),
        "the guest ran although its mapped directory does not exist: {:?}",
        bodies(&entries)
            .iter()
            .map(|e| &e["type"])
            .collect::<Vec<_>>()
    );
    // Bad mount files: refused naming the file, exit 2.
    for (text, what) in [
        ("\"/data\" = \n", "a file that does not parse"),
        (
            "\"data\" = \"somewhere\"\n",
            "a key that is not a guest path",
        ),
        (
            "\"/data\" = 5\n",
            "a value that is neither a string nor a table",
        ),
        (
            "[files]\n\"/data\" = true\n",
            "a capability table mapping to something else than a string",
        ),
        (
            "[files]\n\"notes\" = \"x\"\n",
            "a capability table with a key that is not a guest path",
        ),
    ] {
        write(&mounts, text.as_bytes())?;
        let run = invoke(
            &host,
            "files",
            "read-file",
            &json!({ "path": "/data/one.txt" }),
            &[],
        )?;
        ensure!(
            run.code == 2 && run.stderr.contains("mounts.toml"),
            "{what} ({text:?}) must be refused naming mounts.toml with exit 2: exit {}, stderr {:?}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    Ok(())
}

fn files_replay(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let shared = host.files.path().join("shared");
    write(&shared.join("kept.txt"), b"kept-content")?;
    write(
        &host.data.path().join("mounts.toml"),
        format!("\"/data\" = {}\n", json!(shared)).as_bytes(),
    )?;
    let from = next_invocation(&host)?;
    let read = read_file(&host, "/data/kept.txt")?;
    let wrote = write_file(&host, "/data/made.txt", "made-content")?;
    let listed = list_dir(&host, "/data")?;
    ensure!(
        read["ok"] == "kept-content"
            && wrote["ok"] == 12
            && listed["ok"].to_string().contains("made.txt"),
        "read, write and list of /data: {read} / {wrote} / {listed}"
    );
    let entries = since(&host.entries()?, from);
    let calls = host_calls(&entries);
    ensure!(
        calls
            .iter()
            .any(|c| c["result"].to_string().contains("kept-content")
                || c["result"].to_string().contains(&hex(b"kept-content"))
                || c["result"].to_string().contains(&base64(b"kept-content"))),
        "the bytes a read returned are not recorded with its call: {}",
        excerpt(&json!(calls).to_string())
    );
    ensure!(
        ["made.txt", "kept.txt"]
            .iter()
            .all(|name| calls.iter().any(|c| c["result"].to_string().contains(name))),
        "the listing of /data (made.txt, kept.txt) is not recorded with its calls' results: {}",
        excerpt(&json!(calls).to_string())
    );
    let file = export(&host, "files.export", &["--with-components"])?;
    let key = host.ok(&["key", "show"])?;
    // The files change, and the mapped directory goes away: replay needs neither.
    write(&shared.join("kept.txt"), b"changed")?;
    std::fs::remove_file(shared.join("made.txt"))
        .map_err(|e| failed(format!("cannot remove made.txt: {e}")))?;
    let run = replay(&host, &file, &key)?;
    let n = all_identical(
        &run,
        "replay of the file operations on the same data directory, the files changed",
    )?;
    ensure!(
        n >= 3,
        "the replay reports {n} invocations where the export holds 3 or more"
    );
    ensure!(
        read_text(&shared.join("kept.txt")).as_deref() == Some("changed")
            && !shared.join("made.txt").exists(),
        "replay wrote a file: kept.txt holds {:?}, made.txt exists {}",
        read_text(&shared.join("kept.txt")),
        shared.join("made.txt").exists()
    );
    std::fs::remove_dir_all(&shared)
        .map_err(|e| failed(format!("cannot remove the mapped directory: {e}")))?;
    let elsewhere = target.host()?;
    let run = replay(&elsewhere, &file, &key)?;
    all_identical(
        &run,
        "replay of the file operations on another data directory, the mapped directory gone",
    )?;
    ensure!(
        !shared.exists() && !elsewhere.data.path().join("files").exists(),
        "replay created a directory for the files it replayed"
    );
    Ok(())
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Specification 22: secrets.

fn percent(value: &str, upper: bool, plus: bool) -> String {
    value
        .bytes()
        .map(|b| match b {
            b' ' if plus => "+".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' if plus => (b as char).to_string(),
            _ if upper => format!("%{b:02X}"),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

fn b64(engine: &impl base64::Engine, bytes: &[u8]) -> String {
    engine.encode(bytes)
}

/// The searched forms of `value` a server is likely to write, each with a label: as it is,
/// percent-encoded (upper and lower case, form encoding), JSON-escaped (as serde_json writes it,
/// with `\/`, as `\uXXXX` in either case), base64 (standard and URL-safe, padded or not, alone
/// and inside longer base64 at every alignment) and hex in either case.
fn forms(value: &str) -> Vec<(String, String)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let serde = serde_json::to_string(value).unwrap_or_default();
    let serde = serde.trim_matches('"').to_owned();
    let slashed = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('/', "\\/");
    let unicode = |upper: bool| -> String {
        value
            .chars()
            .map(|c| {
                if upper {
                    format!("\\u{:04X}", c as u32)
                } else {
                    format!("\\u{:04x}", c as u32)
                }
            })
            .collect()
    };
    let mut out = vec![
        ("literal".to_owned(), value.to_owned()),
        ("percent-upper".to_owned(), percent(value, true, false)),
        ("percent-lower".to_owned(), percent(value, false, false)),
        ("form-encoded".to_owned(), percent(value, true, true)),
        ("json-serde".to_owned(), serde),
        ("json-slash".to_owned(), slashed),
        ("json-unicode-lower".to_owned(), unicode(false)),
        ("json-unicode-upper".to_owned(), unicode(true)),
        ("base64".to_owned(), b64(&STANDARD, value.as_bytes())),
        (
            "base64-unpadded".to_owned(),
            b64(&STANDARD_NO_PAD, value.as_bytes()),
        ),
        ("base64url".to_owned(), b64(&URL_SAFE, value.as_bytes())),
        (
            "base64url-unpadded".to_owned(),
            b64(&URL_SAFE_NO_PAD, value.as_bytes()),
        ),
        ("hex-lower".to_owned(), hex(value.as_bytes())),
        (
            "hex-upper".to_owned(),
            hex(value.as_bytes()).to_ascii_uppercase(),
        ),
    ];
    for prefix in [":", "u:", "us:"] {
        out.push((
            format!("basic-{}", prefix.len()),
            b64(&STANDARD, format!("{prefix}{value}:tail").as_bytes()),
        ));
        out.push((
            format!("basic-url-{}", prefix.len()),
            b64(&URL_SAFE_NO_PAD, format!("{prefix}{value}:tail").as_bytes()),
        ));
    }
    out
}

/// The forms of `value` found in `text`: their labels.
fn found_in(value: &str, text: &str) -> Vec<String> {
    forms(value)
        .into_iter()
        .filter(|(_, f)| text.contains(f.as_str()))
        .map(|(label, _)| label)
        .collect()
}

/// Every string of a JSON value, joined by new lines.
fn strings(value: &Json) -> String {
    fn walk(value: &Json, out: &mut String) {
        match value {
            Json::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Json::Array(items) => items.iter().for_each(|i| walk(i, out)),
            // Recorded bytes (`{"bytes": BASE64}`), decoded.
            Json::Object(map)
                if map.len() == 1 && map.get("bytes").is_some_and(Json::is_string) =>
            {
                use base64::Engine as _;
                let text = map.get("bytes").and_then(Json::as_str).unwrap_or_default();
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    out.push('\n');
                }
                out.push_str(text);
                out.push('\n');
            }
            Json::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(value, &mut out);
    out
}

/// The value of the secret a request carried in `authorization: Bearer …`, or "".
fn bearer(seen: &Seen) -> String {
    seen.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

/// A peer echoing the secret of `authorization: Bearer` in every form, in headers and body;
/// `/start` first redirects to `/final?t=<the value percent-encoded>`.
fn echo_peer() -> Result<Peer, Failure> {
    Peer::start(|seen| {
        let value = bearer(seen);
        if seen.path.starts_with("/start") {
            let location = format!("/final?t={}", percent(&value, true, false));
            return answer("302 Found", &[("location", &location)], "");
        }
        let forms = forms(&value);
        let mut body = String::from("keep=plain text 0123 stays\n");
        for (label, form) in &forms {
            body.push_str(&format!("{label}={form}\n"));
        }
        body.push_str(&format!("json={}\n", json!({ "token": value })));
        let headers: Vec<(String, String)> = forms
            .iter()
            .enumerate()
            .map(|(i, (_, f))| (format!("x-echo-{i}"), f.clone()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain([("x-keep", "plain header stays")])
            .collect();
        answer("200 OK", &headers, &body)
    })
}

/// The secret's value never in the ledger, `log show`, `log show --json` or `log export`.
fn ledger_clean(host: &Host, value: &str, name_resource: &str) -> Result<(), Failure> {
    let shown = host.ok(&["log", "show"])?;
    let json = host.ok(&["log", "show", "--json", "--limit", "100000"])?;
    let decoded: String = json
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .map(|e| strings(&e))
        .collect();
    let file = export(host, "secret.export", &[])?;
    let bytes = std::fs::read(&file).map_err(|e| failed(format!("cannot read the export: {e}")))?;
    let exported = String::from_utf8_lossy(&bytes).into_owned();
    for (what, text) in [
        ("log show", &shown),
        ("log show --json", &json),
        ("the strings of log show --json", &decoded),
        ("log export", &exported),
    ] {
        let found = found_in(value, text);
        ensure!(
            found.is_empty(),
            "{what} holds the secret's value in the forms {found:?}"
        );
    }
    ensure!(
        shown.contains(name_resource) && json.contains(name_resource),
        "log show must name the secret as {name_resource}"
    );
    Ok(())
}

fn secret_scrubbed(target: &Target) -> Result<(), Failure> {
    let peer = echo_peer()?;
    let origin = peer.origin();
    let looped = Peer::start(|seen| {
        let value = bearer(seen);
        answer(
            "302 Found",
            &[(
                "location",
                &format!("/loop?v={}", percent(&value, false, false)),
            )],
            "",
        )
    })?;
    let host = probe_host(target, OPEN, &[origin.clone(), looped.origin()], &["tok"])?;
    let value = "Zq7 s3cr&t/\"v+lue9x";
    super::set_secret(&host, "tok", value)?;
    let secret = json!([{ "name": "authorization", "secret": "tok", "prefix": "Bearer " }]);
    let got = request(
        &host,
        json!({ "url": format!("{origin}/start"), "secret-headers": secret }),
    )?;
    // The host filled the header itself: the server saw the value.
    let seen = peer.seen();
    ensure!(
        seen.len() == 2 && seen.iter().all(|s| bearer(s) == value),
        "the host must send `authorization: Bearer <value>` on both hops; the peer saw {:?}",
        seen.iter()
            .map(|s| s.header("authorization"))
            .collect::<Vec<_>>()
    );
    let response = &got["ok"];
    ensure!(
        response["status"] == 200,
        "the echo request must succeed: {got}"
    );
    let text = response["text"].as_str().unwrap_or_default();
    let headers = strings(&response["headers"]);
    let url = response["url"].as_str().unwrap_or_default();
    for (what, part) in [
        ("body", text),
        ("headers", headers.as_str()),
        ("final URL", url),
        ("printed result", got.to_string().as_str()),
    ] {
        let found = found_in(value, part);
        ensure!(
            found.is_empty(),
            "the response's {what} handed to the guest holds the secret in the forms {found:?}: {}",
            excerpt(part)
        );
    }
    // Every echoed form stands as [redacted]; other text is left as it was.
    for (label, _) in forms(value) {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{label}=")))
            .unwrap_or_default();
        ensure!(
            line.contains("[redacted]"),
            "the {label} form echoed in the body must stand as [redacted]: line {line:?}"
        );
    }
    ensure!(
        text.starts_with("keep=plain text 0123 stays\n") && headers.contains("plain header stays"),
        "text that is not a secret must be left unchanged: {}",
        excerpt(text)
    );
    ensure!(
        url.starts_with(&format!("{origin}/final?t=")) && url.contains("[redacted]"),
        "the final URL must stand with [redacted] for the value: {url}"
    );
    let echoed = response["headers"].as_array().cloned().unwrap_or_default();
    let redacted_headers = echoed
        .iter()
        .filter(|h| h["name"].as_str().is_some_and(|n| n.starts_with("x-echo-")))
        .filter(|h| {
            h["value"]
                .as_str()
                .is_some_and(|v| v.contains("[redacted]"))
        })
        .count();
    ensure!(
        redacted_headers == forms(value).len(),
        "every header echoing a form of the secret must hold [redacted]; {redacted_headers} of {} do",
        forms(value).len()
    );
    // An error message naming a URL that holds the value.
    let looping = request(
        &host,
        json!({ "url": format!("{}/loop", looped.origin()), "secret-headers": secret, "max-redirects": 1 }),
    )?;
    let message = err(&looping);
    ensure!(
        message.contains("redirect")
            && message.contains("[redacted]")
            && found_in(value, &message).is_empty(),
        "an error naming a URL that holds the secret must hold [redacted] in its place: {looping}"
    );
    drop(looped);
    drop(peer);
    ledger_clean(&host, value, &format!("tok@{origin}"))?;
    Ok(())
}

fn secret_short(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|seen| {
        let value = bearer(seen);
        let body = format!(
            "literal={value}\npercent={}\njson={}\nbase64={}\nhex={}\nHEX={}\n",
            percent(&value, false, false),
            value
                .chars()
                .map(|c| format!("\\u{:04x}", c as u32))
                .collect::<String>(),
            base64(value.as_bytes()),
            hex(value.as_bytes()),
            hex(value.as_bytes()).to_ascii_uppercase()
        );
        answer("200 OK", &[], &body)
    })?;
    let origin = peer.origin();
    let host = probe_host(target, OPEN, std::slice::from_ref(&origin), &["short"])?;
    let value = "q7x";
    super::set_secret(&host, "short", value)?;
    let got = request(
        &host,
        json!({ "url": format!("{origin}/"), "secret-headers": [{ "name": "authorization", "secret": "short", "prefix": "Bearer " }] }),
    )?;
    let text = got["ok"]["text"].as_str().unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let expected = [
        "literal=[redacted]".to_owned(),
        "percent=[redacted]".to_owned(),
        "json=[redacted]".to_owned(),
        format!("base64={}", base64(value.as_bytes())),
        format!("hex={}", hex(value.as_bytes())),
        format!("HEX={}", hex(value.as_bytes()).to_ascii_uppercase()),
    ];
    ensure!(
        peer.seen().first().is_some_and(|s| bearer(s) == value),
        "the host did not send the short secret"
    );
    ensure!(
        lines == expected,
        "a 3-byte secret must be redacted as it is, percent-encoded and JSON-escaped, and its 4-character base64 and 6-character hex left alone: expected {expected:?}, the guest got {lines:?}"
    );
    Ok(())
}

/// The longest secret the host scrubs, and so stores and uses (specification 22).
const MAX_SECRET_BYTES: usize = 8192;

/// `len` letters and digits that are no English text: a secret nothing else in an answer holds.
fn secret_of(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

fn secret_size_limit(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|seen| {
        let value = bearer(seen);
        let body = format!(
            "literal={value}\nbase64={}\nhex={}\n",
            base64(value.as_bytes()),
            hex(value.as_bytes())
        );
        answer("200 OK", &[], &body)
    })?;
    let origin = peer.origin();
    let host = probe_host(
        target,
        OPEN,
        std::slice::from_ref(&origin),
        &["big", "edge"],
    )?;
    let names = |host: &Host| host.ok(&["secret", "list"]);
    let before = names(&host)?;

    // One byte over the limit: refused naming the limit, and nothing stored.
    let over = secret_of(MAX_SECRET_BYTES + 1);
    let refused = host.secret_set("big", format!("{over}\n").as_bytes())?;
    refused.expect(2, "secret set of an 8193-byte value")?;
    ensure!(
        refused.stderr.contains("8192") && refused.stderr.contains("`big`"),
        "secret set of an 8193-byte value must name the secret and the limit of 8192 bytes: {}",
        excerpt(&refused.stderr)
    );
    ensure!(
        !refused.stdout.contains(&over[..64]) && !refused.stderr.contains(&over[..64]),
        "secret set printed the refused value"
    );
    let after = names(&host)?;
    ensure!(
        after == before,
        "a refused secret must leave the store as it was: secret list showed {before:?}, then {after:?}"
    );
    ensure!(
        !host.data.path().join("secrets").join("big").exists(),
        "the refused secret was stored in <data dir>/secrets/big"
    );

    // At the limit: stored, sent, and every echoed form scrubbed.
    let value = secret_of(MAX_SECRET_BYTES);
    super::set_secret(&host, "edge", &value)?;
    let listed = names(&host)?;
    ensure!(
        listed.lines().any(|l| l == "edge"),
        "secret list must show a stored 8192-byte secret: {}",
        excerpt(&listed)
    );
    let got = request(
        &host,
        json!({ "url": format!("{origin}/"), "secret-headers": [{ "name": "authorization", "secret": "edge", "prefix": "Bearer " }] }),
    )?;
    ensure!(
        peer.seen().first().is_some_and(|s| bearer(s) == value),
        "the host must send an 8192-byte secret whole: {}",
        excerpt(&got.to_string())
    );
    let text = got["ok"]["text"].as_str().unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    ensure!(
        lines.len() == 3
            && lines[0] == "literal=[redacted]"
            && lines.iter().all(|l| l.contains("[redacted]")),
        "every form of an 8192-byte secret echoed must stand as [redacted]: the guest got {}",
        excerpt(text)
    );
    let forms = [
        value.clone(),
        base64(value.as_bytes()),
        hex(value.as_bytes()),
    ];
    let entries = serde_json::to_string(&host.entries()?).unwrap_or_default();
    for form in &forms {
        let piece = &form[form.len() / 2..form.len() / 2 + 64];
        ensure!(
            !text.contains(piece) && !entries.contains(piece),
            "a form of the 8192-byte secret reached the guest or the ledger"
        );
    }
    Ok(())
}

fn secret_destination(target: &Target) -> Result<(), Failure> {
    let peer = Peer::fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned(),
    )?;
    let other = Peer::fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned(),
    )?;
    let (port, other_port) = (peer.port, other.port);
    let origins = [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{other_port}"),
        format!("http://localhost:{port}"),
    ];
    // Everything, but `tok` only for http://127.0.0.1:<port>.
    let policy = format!(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless {{ action == FemtoClaw::Action::\"secret.use\" }};\n\
         @id(\"tok-here\")\npermit (principal, action == FemtoClaw::Action::\"secret.use\", resource == FemtoClaw::Secret::\"tok\") when {{ context.destination.scheme == \"http\" && context.destination.host == \"127.0.0.1\" && context.destination.port == {port} }};\n\
         @id(\"absent\")\npermit (principal, action == FemtoClaw::Action::\"secret.use\", resource == FemtoClaw::Secret::\"absent\");\n"
    );
    let host = probe_host(target, &policy, &origins, &["tok", "absent"])?;
    let value = "dest-Secret-83kq";
    super::set_secret(&host, "tok", value)?;
    let with = |url: String, secret: &str| {
        request(
            &host,
            json!({ "url": url, "secret-headers": [{ "name": "x-api-key", "secret": secret, "prefix": "" }] }),
        )
    };
    let sent = with(format!("http://127.0.0.1:{port}/here"), "tok")?;
    ensure!(
        sent["ok"]["status"] == 200,
        "the secret's one destination must be reached: {sent}"
    );
    ensure!(
        peer.seen().len() == 1 && peer.seen()[0].header("x-api-key") == Some(value),
        "the destination must get the secret in x-api-key"
    );
    for (url, resource, what) in [
        (
            format!("http://127.0.0.1:{other_port}/port"),
            format!("tok@http://127.0.0.1:{other_port}"),
            "another port of the same server",
        ),
        (
            format!("http://localhost:{port}/name"),
            format!("tok@http://localhost:{port}"),
            "another name of the same server",
        ),
    ] {
        let got = with(url.clone(), "tok")?;
        ensure!(
            err(&got)
                == format!(
                    "denied: `secret.use` on `{resource}` is not granted to this capability"
                ),
            "the secret sent to {what} ({url}) must be denied naming {resource}: {got}"
        );
    }
    ensure!(
        peer.seen().len() == 1 && other.seen().is_empty(),
        "a request whose secret was denied was sent: the destination saw {} requests, the other port {}",
        peer.seen().len(),
        other.seen().len()
    );
    let entries = host.entries()?;
    for (resource, allowed) in [
        (format!("tok@http://127.0.0.1:{port}"), true),
        (format!("tok@http://127.0.0.1:{other_port}"), false),
        (format!("tok@http://localhost:{port}"), false),
    ] {
        ensure!(
            decisions(&entries, "secret.use", &resource)
                .iter()
                .any(|d| d["allowed"] == allowed),
            "no secret.use decision on {resource} recorded as allowed={allowed}"
        );
    }
    // A secret the store does not hold.
    let got = with(format!("http://127.0.0.1:{port}/absent"), "absent")?;
    ensure!(
        err(&got).starts_with("invalid request: ") && err(&got).contains("`absent`"),
        "a secret header naming a secret the store does not hold must answer invalid-request naming it: {got}"
    );
    ensure!(
        peer.seen().len() == 1,
        "a request naming a missing secret was sent"
    );
    Ok(())
}

fn secret_redirect_resources(target: &Target) -> Result<(), Failure> {
    let value = format!("k9z{}", random_hex(5));
    let name_host = format!("{value}.invalid");
    let location = format!("http://{name_host}/next");
    let peer = Peer::fixed(format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))?;
    let origin = peer.origin();
    let host = probe_host(target, OPEN, std::slice::from_ref(&origin), &["hostish"])?;
    super::set_secret(&host, "hostish", &value)?;
    let from = next_invocation(&host)?;
    let got = request(
        &host,
        json!({ "url": format!("{origin}/go"), "secret-headers": [{ "name": "x-api-key", "secret": "hostish", "prefix": "" }] }),
    )?;
    let message = err(&got);
    ensure!(
        message.starts_with("denied: `http.request` on `http://[redacted].invalid:80`")
            && !message.contains(&value),
        "a redirect to a host named after the secret must be denied with [redacted] in the host's place: {got}"
    );
    let entries = since(&host.entries()?, from);
    let requests: Vec<&Json> = bodies(&entries)
        .into_iter()
        .filter(|e| e["type"] == "decision" && e["action"] == "http.request")
        .collect();
    ensure!(
        requests
            .iter()
            .any(|d| d["resource"] == "http://[redacted].invalid:80" && d["allowed"] == false),
        "the refused hop's http.request decision must be recorded on http://[redacted].invalid:80: {requests:?}"
    );
    ensure!(
        !serde_json::to_string(&entries)
            .unwrap_or_default()
            .contains(&value),
        "the ledger holds the secret's value"
    );
    Ok(())
}

fn egress_cross_origin_credentials(target: &Target) -> Result<(), Failure> {
    let back: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let other = {
        let back = back.clone();
        Peer::start(move |_| {
            let to = back.lock().map(|b| b.clone()).unwrap_or_default();
            answer("302 Found", &[("location", &format!("{to}/back"))], "")
        })?
    };
    let to = other.origin();
    let first = Peer::start(move |seen| {
        if seen.path.starts_with("/go") {
            answer("302 Found", &[("location", &format!("{to}/landed"))], "")
        } else {
            answer("200 OK", &[], "done")
        }
    })?;
    if let Ok(mut b) = back.lock() {
        *b = first.origin();
    }
    let host = probe_host(
        target,
        OPEN,
        &[first.origin(), other.origin()],
        &["tok", "second"],
    )?;
    let value = "cross-Origin-Secret-55";
    super::set_secret(&host, "tok", value)?;
    super::set_secret(&host, "second", "second-Secret-77")?;
    let got = request(
        &host,
        json!({
            "url": format!("{}/go", first.origin()),
            "headers": [
                { "name": "authorization", "value": "Basic cGxhaW46Y3JlZA==" },
                { "name": "cookie", "value": "sid=plain-cookie" },
                { "name": "x-plain", "value": "kept" }
            ],
            "secret-headers": [
                { "name": "x-api-key", "secret": "tok", "prefix": "Key " },
                { "name": "x-second", "secret": "second", "prefix": "" }
            ]
        }),
    )?;
    ensure!(
        got["ok"]["status"] == 200 && got["ok"]["text"] == "done",
        "the redirects /go → other origin → back must be followed: {got}"
    );
    let (a, b) = (first.seen(), other.seen());
    ensure!(
        a.len() == 2 && b.len() == 1,
        "the first origin must see 2 requests and the other 1; they saw {} and {}",
        a.len(),
        b.len()
    );
    ensure!(
        a[0].header("x-api-key") == Some(&format!("Key {value}"))
            && a[0].header("x-second") == Some("second-Secret-77")
            && a[0].header("authorization").is_some()
            && a[0].header("cookie").is_some(),
        "the first hop must carry the secret headers and the capability's credentials: {:?}",
        a[0].headers
    );
    for (seen, what) in [
        (&b[0], "the hop to the other origin"),
        (&a[1], "the hop back to the first origin"),
    ] {
        for name in [
            "x-api-key",
            "x-second",
            "authorization",
            "cookie",
            "proxy-authorization",
        ] {
            ensure!(
                seen.header(name).is_none(),
                "{what} after a redirect to another origin must not carry `{name}`: {:?}",
                seen.headers
            );
        }
        let sent = String::from_utf8_lossy(&seen.bytes).into_owned();
        ensure!(
            !sent.contains(value) && !sent.contains("second-Secret-77"),
            "{what} carries a secret's value"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 20: egress.

fn egress_method_rewrite(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|seen| {
        let code = seen.path.trim_start_matches('/');
        match code {
            "301" => answer("301 Moved Permanently", &[("location", "/got")], ""),
            "302" => answer("302 Found", &[("location", "/got")], ""),
            "303" => answer("303 See Other", &[("location", "/got")], ""),
            _ => answer("200 OK", &[], "landed"),
        }
    })?;
    let origin = peer.origin();
    let host = probe_host(target, OPEN, std::slice::from_ref(&origin), &[])?;
    for (method, code) in [
        ("PUT", "303"),
        ("POST", "303"),
        ("DELETE", "303"),
        ("POST", "301"),
        ("POST", "302"),
    ] {
        let before = peer.seen().len();
        let got = request(
            &host,
            json!({
                "method": method,
                "url": format!("{origin}/{code}"),
                "headers": [{ "name": "content-type", "value": "text/plain" }],
                "body": "payload-bytes"
            }),
        )?;
        ensure!(
            got["ok"]["status"] == 200 && got["ok"]["text"] == "landed",
            "{method} answered {code} must be followed: {got}"
        );
        let seen = peer.seen();
        ensure!(
            seen.len() == before + 2,
            "{method} answered {code}: the peer must see two requests; it saw {}",
            seen.len() - before
        );
        let (first, next) = (&seen[before], &seen[before + 1]);
        ensure!(
            first.method == method && first.body == b"payload-bytes",
            "the first request must be {method} with its body: {} {:?}",
            first.method,
            String::from_utf8_lossy(&first.body)
        );
        ensure!(
            next.method == "GET"
                && next.path == "/got"
                && next.body.is_empty()
                && next.header("content-type").is_none()
                && next.header("content-length").is_none_or(|l| l == "0"),
            "{method} answered {code} must be followed with a GET without the body or its content type; the peer saw {} {} with headers {:?} and body {:?}",
            next.method,
            next.path,
            next.headers,
            String::from_utf8_lossy(&next.body)
        );
    }
    Ok(())
}

fn egress_url_refusals(target: &Target) -> Result<(), Failure> {
    let host = probe_host(target, OPEN, &["http://127.0.0.1:9".to_owned()], &[])?;
    let from = next_invocation(&host)?;
    for (url, what) in [
        ("/relative/path", "a URL that is not absolute"),
        ("127.0.0.1:9/x", "a URL without a scheme"),
        ("ftp://127.0.0.1:9/file", "an ftp URL"),
        ("file:///etc/passwd", "a file URL"),
        ("ws://127.0.0.1:9/", "a ws URL"),
        ("http://", "an http URL without a host"),
        ("mailto:someone@example.com", "a URL naming no host"),
    ] {
        let got = request(&host, json!({ "url": url }))?;
        ensure!(
            err(&got).starts_with("invalid request: "),
            "{what} (`{url}`) must be refused as invalid-request: {got}"
        );
    }
    let entries = since(&host.entries()?, from);
    ensure!(
        !bodies(&entries).iter().any(|e| e["type"] == "decision"
            && (e["action"] == "http.request" || e["action"] == "net.connect")),
        "a refused URL was decided on"
    );
    let calls = host_calls(&entries);
    ensure!(
        calls.len() >= 7
            && calls
                .iter()
                .filter(|c| c["result"].to_string().contains("invalid-request"))
                .count()
                >= 7,
        "every refused URL must be recorded as a send answered invalid-request: {calls:?}"
    );
    Ok(())
}

fn egress_tls(target: &Target) -> Result<(), Failure> {
    // A peer that speaks plain HTTP to whatever it is sent.
    let peer = Peer::fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nplain".to_owned(),
    )?;
    let url = format!("https://127.0.0.1:{}/", peer.port);
    let host = probe_host(
        target,
        OPEN,
        &[format!("https://127.0.0.1:{}", peer.port)],
        &[],
    )?;
    let run = invoke(
        &host,
        PROBE,
        "request",
        &json!({ "method": "GET", "url": url }),
        &[],
    )?;
    run.expect(0, "an https request whose handshake fails")?;
    let got = run.json()?;
    let seen = peer.seen();
    ensure!(
        seen.first()
            .is_some_and(|s| s.bytes.len() > 5 && s.bytes[0] == 0x16 && s.bytes[1] == 0x03),
        "an https request must begin with a TLS handshake record (0x16 0x03); the peer got {:?}",
        seen.first()
            .map(|s| excerpt(&String::from_utf8_lossy(&s.bytes)))
    );
    let message = err(&got);
    ensure!(
        !message.is_empty()
            && !message.starts_with("timeout")
            && !got.to_string().contains("plain"),
        "a failed TLS handshake must answer an error other than a timeout, as a result of the invocation: {got}"
    );
    Ok(())
}

fn egress_timeouts(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|_| Reply::Hang)?;
    let url = format!("{}/slow", peer.origin());
    let host = probe_host(target, OPEN, &[peer.origin()], &[])?;
    let timed = |args: Json, extra: &[&str], what: &str| -> Result<(Run, Duration), Failure> {
        let started = Instant::now();
        let run = invoke(&host, PROBE, "request", &args, extra)?;
        let took = started.elapsed();
        ensure!(
            took < Duration::from_secs(20),
            "{what}: the request must end by its timeout, well before the host's default 30 s; it took {took:?}"
        );
        ensure!(
            took >= Duration::from_millis(2000),
            "{what}: the request ended after {took:?}, before its 2.5 s timeout"
        );
        Ok((run, took))
    };
    // The request's own timeout-ms, below the host's.
    let (run, _) = timed(
        json!({ "method": "GET", "url": url, "timeout-ms": 2500 }),
        &[],
        "timeout-ms 2500",
    )?;
    run.expect(0, "a request that times out")?;
    ensure!(
        err(&run.json()?).starts_with("timeout: "),
        "a request past its timeout-ms must answer timeout: {}",
        excerpt(&run.stdout)
    );
    // The host's http.timeout_ms cuts a longer timeout-ms.
    write(
        &host.data.path().join("femtoclaw.toml"),
        b"[http]\ntimeout_ms = 2500\n",
    )?;
    let (run, _) = timed(
        json!({ "method": "GET", "url": url, "timeout-ms": 60000 }),
        &[],
        "http.timeout_ms 2500 under timeout-ms 60000",
    )?;
    run.expect(0, "a request that times out")?;
    ensure!(
        err(&run.json()?).starts_with("timeout: "),
        "a request past http.timeout_ms must answer timeout: {}",
        excerpt(&run.stdout)
    );
    // The invocation's time left cuts both.
    std::fs::remove_file(host.data.path().join("femtoclaw.toml"))
        .map_err(|e| failed(format!("cannot remove femtoclaw.toml: {e}")))?;
    let from = next_invocation(&host)?;
    let (run, _) = timed(
        json!({ "method": "GET", "url": url, "timeout-ms": 60000 }),
        &["--deadline-ms", "2500"],
        "an invocation deadline of 2.5 s",
    )?;
    ensure!(
        run.code == 0 || run.code == 11,
        "a request cut by the invocation's deadline: exit {} where 0 (timeout answered) or 11 (deadline) is required",
        run.code
    );
    let entries = since(&host.entries()?, from);
    ensure!(
        host_calls(&entries)
            .iter()
            .any(|c| c["function"] == "send" && c["result"].to_string().contains("timeout")),
        "the send cut by the invocation's time left must be recorded answering timeout: {}",
        excerpt(&json!(host_calls(&entries)).to_string())
    );
    Ok(())
}

fn egress_unresolvable(target: &Target) -> Result<(), Failure> {
    let name = format!("no-such-host-{}.invalid", random_hex(4));
    let host = probe_host(target, OPEN, &["http://*.invalid".to_owned()], &[])?;
    let got = request(
        &host,
        json!({ "url": format!("http://{name}/"), "timeout-ms": 8000 }),
    )?;
    let message = err(&got);
    ensure!(
        (message.starts_with("dns: ") || message.starts_with("timeout: "))
            && message.contains(&name),
        "a name that does not resolve must answer dns or timeout naming `{name}`: {got}"
    );
    Ok(())
}

fn egress_caps_configured(target: &Target) -> Result<(), Failure> {
    let echo = Peer::fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\n01234567890123456789"
            .to_owned(),
    )?;
    let looping = Peer::fixed(
        "HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_owned(),
    )?;
    let hang = Peer::start(|_| Reply::Hang)?;
    let host = probe_host(
        target,
        OPEN,
        &[echo.origin(), looping.origin(), hang.origin()],
        &[],
    )?;
    let config = host.data.path().join("femtoclaw.toml");
    // Each key's misspelling and a bad value, refused naming the file, the line and the key.
    for (text, line, key) in [
        (
            "[http]\nmax_request_byte = 10\n",
            2,
            "http.max_request_byte",
        ),
        (
            "[http]\nmax_request_bytes = -1\n",
            2,
            "http.max_request_bytes",
        ),
        (
            "[http]\n\nmax_response_bytes = \"big\"\n",
            3,
            "http.max_response_bytes",
        ),
        (
            "[http]\nmax_responses_bytes = 10\n",
            2,
            "http.max_responses_bytes",
        ),
        ("[http]\ntimeout_ms = 0\n", 2, "http.timeout_ms"),
        ("[http]\ntimeout = 10\n", 2, "http.timeout"),
        (
            "# caps\n[http]\nmax_redirects = 1.5\n",
            3,
            "http.max_redirects",
        ),
        ("[http]\nmax_redirect = 1\n", 2, "http.max_redirect"),
    ] {
        write(&config, text.as_bytes())?;
        let run = invoke(
            &host,
            PROBE,
            "get",
            &json!({ "url": format!("{}/", echo.origin()) }),
            &[],
        )?;
        ensure!(
            run.code == 2
                && run.stderr.contains("femtoclaw.toml")
                && run.stderr.contains(&format!("line {line}"))
                && run.stderr.contains(&format!("`{key}`")),
            "femtoclaw.toml {text:?} must be refused (exit 2) naming the file, line {line} and `{key}`: exit {}, stderr {:?}",
            run.code,
            excerpt(&run.stderr)
        );
    }
    ensure!(
        echo.seen().is_empty(),
        "an invocation under a refused configuration sent a request"
    );
    // Each key takes effect.
    write(
        &config,
        b"[http]\nmax_request_bytes = 10\nmax_response_bytes = 8\ntimeout_ms = 2500\nmax_redirects = 1\n",
    )?;
    let posted = request(
        &host,
        json!({ "method": "POST", "url": format!("{}/", echo.origin()), "body": "eleven byte" }),
    )?;
    ensure!(
        err(&posted).starts_with("too large: ")
            && err(&posted).contains("11")
            && err(&posted).contains("10"),
        "an 11-byte body under http.max_request_bytes 10 must answer too-large naming both: {posted}"
    );
    ensure!(
        echo.seen().is_empty(),
        "a body over http.max_request_bytes was sent"
    );
    let big = request(&host, json!({ "url": format!("{}/", echo.origin()) }))?;
    ensure!(
        err(&big).starts_with("too large: "),
        "a 20-byte response under http.max_response_bytes 8 must answer too-large: {big}"
    );
    let redirected = request(
        &host,
        json!({ "url": format!("{}/start", looping.origin()), "max-redirects": 5 }),
    )?;
    ensure!(
        err(&redirected).starts_with("too many redirects: ") && looping.seen().len() == 2,
        "http.max_redirects 1 must stop a request asking for 5 after one redirect (2 requests); it answered {redirected} after {} requests",
        looping.seen().len()
    );
    let started = Instant::now();
    let slow = request(&host, json!({ "url": format!("{}/", hang.origin()) }))?;
    let took = started.elapsed();
    ensure!(
        err(&slow).starts_with("timeout: ") && took < Duration::from_secs(20),
        "http.timeout_ms 2500 must end a request to a silent server with timeout well before 30 s: {slow} after {took:?}"
    );
    // Back to the defaults: the same requests go through.
    std::fs::remove_file(&config)
        .map_err(|e| failed(format!("cannot remove femtoclaw.toml: {e}")))?;
    let posted = request(
        &host,
        json!({ "method": "POST", "url": format!("{}/", echo.origin()), "body": "eleven byte" }),
    )?;
    ensure!(
        posted["ok"]["status"] == 200 && posted["ok"]["text"] == "01234567890123456789",
        "without the caps, the same POST must go through: {posted}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 53: the Rust SDK, through the suite's own guest.

fn sdk_guest(target: &Target) -> Result<(), Failure> {
    let host = super::guest_host(target, OPEN)?;
    let from = next_invocation(&host)?;
    for (function, args, expected) in [
        ("echo", json!({ "text": "sdk" }), json!("sdk")),
        ("add", json!({ "a": 40, "b": 2 }), json!(42)),
        ("divide", json!({ "a": 84, "b": 2 }), json!(42)),
        ("note", json!({ "message": "sdk-log-line" }), json!(12)),
        (
            "remember",
            json!({ "key": "k", "value": "v" }),
            json!({ "ok": null }),
        ),
        ("recall", json!({ "key": "k" }), json!({ "ok": "v" })),
    ] {
        let run = host.invoke(function, &args, &[])?;
        run.expect(0, &format!("invoke conformance {function}"))?;
        let got = run.json()?;
        ensure!(
            got == expected,
            "conformance.{function}({args}) must answer {expected}: {got}"
        );
    }
    // The export that never returns is callable too: it runs until its fuel ends (exit 4).
    let run = host.invoke("spin", &json!({}), &["--fuel", "1000000"])?;
    run.expect(4, "invoke conformance spin --fuel 1000000")?;
    let entries = since(&host.entries()?, from);
    let logs: Vec<&Json> = host_calls(&entries)
        .into_iter()
        .filter(|c| c["interface"] == "femtoclaw:host/log@0.1.0" && c["function"] == "log")
        .collect();
    ensure!(
        logs.len() == 1
            && logs[0]["params"]
                == json!({ "tuple": [{ "enum": "info" }, { "string": "sdk-log-line" }] }),
        "log::info must make exactly one log call at level info, recorded with the invocation: {logs:?}"
    );
    let run = host.invoke("note", &json!({ "message": "reported-line" }), &["--json"])?;
    run.expect(0, "invoke conformance note --json")?;
    ensure!(
        run.stdout.contains("reported-line") && run.stdout.contains("info"),
        "the host must report the log line with the invocation (invoke --json): {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 22 and 26: what telemetry carries.

fn telemetry_carries_no_calls(target: &Target) -> Result<(), Failure> {
    let receiver =
        Peer::start(|_| answer("200 OK", &[("content-type", "application/x-protobuf")], ""))?;
    let value = "Telemetry-Secret-4471";
    let result_marker = "ResultMarker-9d2e";
    let upstream = Peer::start(move |seen| {
        let echoed = seen.header("x-api-key").unwrap_or_default().to_owned();
        answer(
            "200 OK",
            &[("x-echo", &echoed)],
            &format!("{result_marker} {echoed}"),
        )
    })?;
    let host = probe_host(
        target,
        OPEN,
        std::slice::from_ref(&upstream.origin()),
        &["tok"],
    )?;
    super::set_secret(&host, "tok", value)?;
    write(
        &host.data.path().join("femtoclaw.toml"),
        format!("[telemetry]\notlp_endpoint = \"{}\"\n", receiver.origin()).as_bytes(),
    )?;
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": format!("{PROBE}.request"), "arguments": {
            "method": "GET",
            "url": format!("{}/path", upstream.origin()),
            "secret-headers": [{ "name": "x-api-key", "secret": "tok", "prefix": "" }]
        } }
    });
    let input = [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "conformance", "version": "1" } } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        call,
    ]
    .iter()
    .map(|m| format!("{m}\n"))
    .collect::<String>();
    let mut child = host
        .command(&["mcp"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run mcp: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(
                    "mcp over stdio did not end within 30 s of its input's end",
                ));
            }
        }
    }
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    ensure!(
        stdout.contains(result_marker) && upstream.seen().len() == 1,
        "the tool call must reach the upstream server and answer its body: {}",
        excerpt(&stdout)
    );
    let exported = receiver.seen();
    let traces: Vec<&Seen> = exported.iter().filter(|s| s.path == "/v1/traces").collect();
    ensure!(
        !traces.is_empty()
            && traces
                .iter()
                .any(|s| s.body.windows(19).any(|w| w == b"femtoclaw.host_call")),
        "with telemetry.otlp_endpoint set, mcp must export its spans, a femtoclaw.host_call among them, to /v1/traces; the receiver got {:?}",
        exported
            .iter()
            .map(|s| (&s.path, s.body.len()))
            .collect::<Vec<_>>()
    );
    for seen in &exported {
        let body = String::from_utf8_lossy(&seen.body);
        let found = found_in(value, &body);
        ensure!(
            found.is_empty(),
            "the export to {} carries the secret's value in the forms {found:?}",
            seen.path
        );
        for (marker, what) in [
            (result_marker, "the send's result (the response body)"),
            (" -> 200", "the log call's parameter (its message)"),
            ("/path", "the send's parameter (its URL)"),
        ] {
            ensure!(
                !body.contains(marker),
                "the export to {} carries {what}: {marker:?}",
                seen.path
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 20: address kinds.

fn egress_address_kinds(target: &Target) -> Result<(), Failure> {
    let peer = Peer::fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nhere".to_owned(),
    )?;
    let port = peer.port;
    let origins = [
        "http://*".to_owned(),
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ];
    // Every origin granted, no address.
    let policy = format!(
        "{OPEN}@id(\"no-address\")\nforbid (principal, action == FemtoClaw::Action::\"net.connect\", resource);\n"
    );
    let host = probe_host(target, &policy, &origins, &[])?;
    let get = |url: &str| call(&host, PROBE, "get", &json!({ "url": url }));
    let refused = |url: &str, kind: &str| -> Result<(), Failure> {
        let got = get(url)?;
        let message = err(&got);
        ensure!(
            message.starts_with("denied: `")
                && message.contains("resolves only to addresses `net.connect` is not granted on: ")
                && message.ends_with(&format!("({kind})")),
            "{url}, with the origin granted and no address, must be denied naming its address as {kind}: {got}"
        );
        Ok(())
    };
    for (address, kind) in [
        ("169.254.169.254", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("127.5.5.5", "loopback"),
        ("[::1]", "loopback"),
        ("0.1.2.3", "unspecified"),
        ("[::]", "unspecified"),
        ("10.9.9.9", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("100.127.255.255", "private"),
        ("169.254.1.1", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[fc00::1]", "unique-local"),
        ("[fdff::1]", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("239.1.1.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("192.0.0.1", "reserved"),
        ("192.0.2.5", "reserved"),
        ("198.18.0.1", "reserved"),
        ("198.19.255.255", "reserved"),
        ("198.51.100.1", "reserved"),
        ("203.0.113.9", "reserved"),
        ("240.0.0.1", "reserved"),
        ("[2001:db8::1]", "reserved"),
        ("[100::1]", "reserved"),
        ("[fec0::1]", "reserved"),
        // IPv6 carrying IPv4: that address's kind.
        ("[::ffff:10.0.0.1]", "private"),
        ("[::ffff:0:10.0.0.1]", "private"),
        ("[::10.0.0.1]", "private"),
        ("[64:ff9b::a00:1]", "private"),
        ("[2002:a00:1::]", "private"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:169.254.169.254]", "metadata"),
        ("[2002:a9fe:a9fe::]", "metadata"),
        ("[64:ff9b:1::a00:1]", "private"),
        // Teredo: the client's IPv4 is the last 32 bits inverted (10.0.0.1 here).
        ("[2001:0:4136:e378:8000:63bf:f5ff:fffe]", "private"),
        // Local-use NAT64 and Teredo around a public IPv4 are never public.
        ("[64:ff9b:1::808:808]", "reserved"),
        ("[2001::f7f7:f7f7]", "reserved"),
    ] {
        refused(&format!("http://{address}/"), kind)?;
    }
    // Loopback by name and by literal, on the peer's granted origin: refused, nothing sent.
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
    ] {
        refused(&url, "loopback")?;
    }
    ensure!(
        peer.seen().is_empty(),
        "a request refused at net.connect reached the loopback peer"
    );
    // net.connect granted on 127.0.0.1: the literal and the name reach the peer; ::1 stays refused.
    host.policy(&format!(
        "{OPEN}@id(\"no-other\")\nforbid (principal, action == FemtoClaw::Action::\"net.connect\", resource) unless {{ resource.address == ip(\"127.0.0.1\") }};\n"
    ))?;
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        let got = get(&url)?;
        ensure!(
            got["ok"]["status"] == 200 && got["ok"]["text"] == "here",
            "{url} with net.connect granted on 127.0.0.1 must reach the peer: {got}"
        );
    }
    refused(&format!("http://[::1]:{port}/"), "loopback")?;
    ensure!(
        peer.seen().len() == 2,
        "the peer must see the two granted requests; it saw {}",
        peer.seen().len()
    );
    Ok(())
}
