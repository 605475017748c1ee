//! Cases of files beyond the gate's table (the read cap, stream writes, renames, links, Rust's
//! `std::fs`), of the Rust SDK's helpers driven through the suite's second guest, of secrets in
//! what a guest writes, of egress (address kinds, pinned connections) and of the token store.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::peer::{Peer, Seen, answer};
use super::{OPEN, failed, hex, read, replays, s, write};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, GUEST, SDK_GUEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.files.read-cap",
        verifies: &["FC-SEC-2106"],
        run: files_read_cap,
    },
    Case {
        name: "cli.files.stream-writes-unsupported",
        verifies: &["FC-SEC-2111"],
        run: files_stream_writes,
    },
    Case {
        name: "cli.files.every-function-gated",
        verifies: &["FC-SEC-2111", "FC-SEC-1904"],
        run: files_every_function_gated,
    },
    Case {
        name: "cli.files.rename-needs-read-and-write",
        verifies: &["FC-SEC-2112"],
        run: files_rename,
    },
    Case {
        name: "cli.files.no-symbolic-links",
        verifies: &["FC-SEC-2113"],
        run: files_symlink,
    },
    Case {
        name: "cli.files.std-fs",
        verifies: &["FC-SEC-2118"],
        run: files_std_fs,
    },
    Case {
        name: "cli.sdk.docs-section",
        verifies: &["FC-EXT-5302"],
        run: sdk_docs,
    },
    Case {
        name: "cli.sdk.kv-helpers",
        verifies: &["FC-EXT-5303"],
        run: sdk_kv,
    },
    Case {
        name: "cli.sdk.log-levels",
        verifies: &["FC-EXT-5305"],
        run: sdk_log,
    },
    Case {
        name: "cli.sdk.config-get",
        verifies: &["FC-EXT-5306", "FC-CAP-1214"],
        run: sdk_config,
    },
    Case {
        name: "cli.sdk.files-helpers",
        verifies: &["FC-EXT-5307"],
        run: sdk_files,
    },
    Case {
        name: "cli.sdk.refusals-are-errors",
        verifies: &["FC-EXT-5316"],
        run: sdk_refusals,
    },
    Case {
        name: "cli.sdk.http-secret-header",
        verifies: &["FC-EXT-5304", "FC-EXT-5313", "FC-CAP-1217"],
        run: sdk_http_secret,
    },
    Case {
        name: "cli.sdk.http-default-redirects",
        verifies: &["FC-EXT-5308"],
        run: sdk_http_redirects,
    },
    Case {
        name: "cli.secret.guest-writes-scrubbed",
        verifies: &["FC-SEC-2211"],
        run: secret_guest_writes,
    },
    Case {
        name: "cli.secret.no-form-anywhere",
        verifies: &["FC-CRYPTO-3505"],
        run: secret_no_form_anywhere,
    },
    Case {
        name: "cli.egress.embedded-ipv4-kinds",
        verifies: &["FC-SEC-2003"],
        run: egress_embedded_kinds,
    },
    Case {
        name: "cli.egress.default-grants-no-special-address",
        verifies: &["FC-POL-1712", "FC-SEC-1904"],
        run: egress_default_no_special_address,
    },
    Case {
        name: "cli.sockets.decided-never-opened",
        verifies: &["FC-CORE-0215", "FC-SEC-1904"],
        run: sockets_decided_never_opened,
    },
    Case {
        name: "cli.egress.connection-pinned",
        verifies: &["FC-SEC-2013"],
        run: egress_pinned,
    },
    Case {
        name: "cli.token.store-private",
        verifies: &["FC-SEC-1814"],
        run: token_store,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Installs `wasm` as capability `name` under a manifest with `requests` (TOML lines).
fn install(host: &Host, name: &str, wasm: &[u8], requests: &str) -> Result<(), Failure> {
    let manifest = format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\nfuel = 500_000_000\n\n[requests]\n{requests}\n"
    );
    let wasm = host.file(&format!("{name}.wasm"), wasm)?;
    let manifest = host.file(&format!("{name}.toml"), manifest.as_bytes())?;
    host.ok(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])?;
    Ok(())
}

/// The first guest's own imports, as a manifest line.
const GUEST_IMPORTS: &str = "imports = [\"femtoclaw:host/log@0.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\"]\nkv = [{ namespace = \"conformance\", write = true }]";

/// A host under `policy` with the first guest installed as `prober`, whose `/data` (writable)
/// is `<data dir>/shared`: the host and that directory.
fn prober(target: &Target, policy: &str) -> Result<(Host, PathBuf), Failure> {
    let host = target.host()?;
    host.policy(policy)?;
    let shared = host.data.path().join("shared");
    std::fs::create_dir_all(&shared).map_err(|e| failed(format!("cannot create shared: {e}")))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    install(
        &host,
        "prober",
        GUEST,
        &format!("{GUEST_IMPORTS}\npaths = [{{ path = \"/data\", write = true }}]"),
    )?;
    Ok((host, shared))
}

/// The first guest's probe `probe` as `capability`: its answer (the invocation must succeed).
fn probe(host: &Host, capability: &str, probe: &str) -> Result<String, Failure> {
    let text = json!({ "text": format!("\u{1}probe:{probe}") }).to_string();
    let run = host.run(&["invoke", capability, "echo", "--args", &text])?;
    run.expect(0, &format!("the probe {probe}"))?;
    Ok(run.json()?.as_str().unwrap_or("").to_owned())
}

/// A forbid of `action` on one path, with an id.
fn forbid(id: &str, action: &str, path: &str) -> String {
    format!(
        "@id(\"{id}\")\nforbid (principal, action == FemtoClaw::Action::\"{action}\", resource == FemtoClaw::Path::\"{path}\");\n"
    )
}

/// The entries of the last invocation.
fn last(entries: &[Json]) -> Vec<Json> {
    let n = entries
        .iter()
        .filter_map(|e| e["entry"]["invocation"].as_u64())
        .max();
    entries
        .iter()
        .map(|e| e["entry"].clone())
        .filter(|e| n.is_some() && e["invocation"].as_u64() == n)
        .collect()
}

/// The host calls among `entries` (of one invocation) of `function`.
fn calls<'a>(entries: &'a [Json], function: &str) -> Vec<&'a Json> {
    entries
        .iter()
        .filter(|e| e["type"] == "host-call" && e["function"] == function)
        .collect()
}

/// The decisions among `entries` with `action` on `resource`.
fn decided<'a>(entries: &'a [Json], action: &str, resource: &str) -> Vec<&'a Json> {
    entries
        .iter()
        .filter(|e| e["type"] == "decision" && e["action"] == action && e["resource"] == resource)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Specification 21: files.

fn files_read_cap(target: &Target) -> Result<(), Failure> {
    let (host, shared) = prober(target, OPEN)?;
    // 3 MiB and 5 bytes, not all one byte, so a short answer is not taken for a whole one.
    let size = (3usize << 20) + 5;
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    write(&shared.join("big.bin"), &bytes)?;
    let got = probe(&host, "prober", "bigread")?;
    let fields: Vec<&str> = got.split(' ').collect();
    let [read, over, exact] = fields.as_slice() else {
        return Err(failed(format!("the read probe answered {got:?}")));
    };
    let answered: u64 = read
        .strip_prefix("read=")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    ensure!(
        answered > 0 && answered <= 1 << 20,
        "descriptor.read of 4 MiB from a {size}-byte file must answer at most 1 MiB (1048576 bytes); it answered {read}"
    );
    ensure!(
        *over == "over=file-too-large",
        "read-via-stream with 1 MiB and 1 byte left must answer file-too-large, not a truncated stream: {over}"
    );
    ensure!(
        *exact == format!("exact=stream:{}", 1 << 20),
        "read-via-stream with exactly 1 MiB left must stream that 1 MiB: {exact}"
    );
    Ok(())
}

fn files_stream_writes(target: &Target) -> Result<(), Failure> {
    let (host, shared) = prober(target, OPEN)?;
    write(&shared.join("streamed.txt"), b"0123456789abcdef")?;
    let got = probe(&host, "prober", "streams")?;
    ensure!(
        got == "write-via-stream=unsupported append-via-stream=unsupported write=2",
        "write-via-stream and append-via-stream must answer unsupported, and descriptor.write write: the guest got {got:?}"
    );
    // The probe streamed `streamed` at 0 and appended `appended`, then wrote `ok` at 0.
    let written = read(&shared.join("streamed.txt"))?;
    ensure!(
        written == b"ok23456789abcdef",
        "the file must hold only what descriptor.write wrote over it; it holds {:?}",
        String::from_utf8_lossy(&written)
    );
    let entries = host.entries()?;
    let own = last(&entries);
    let writes = calls(&own, "[method]descriptor.write");
    ensure!(
        writes.len() == 1,
        "the one descriptor.write must be recorded as a host call: {writes:?}"
    );
    ensure!(
        !decided(&own, "fs.write", "/data/streamed.txt").is_empty(),
        "the write must pass the gate as fs.write on /data/streamed.txt"
    );
    Ok(())
}

/// Every function of `wasi:filesystem` the host gates (`filesystem-error-code`, which only
/// inspects an error the guest holds, is a reviewed one).
const FILE_FUNCTIONS: &[&str] = &[
    "get-directories",
    "[method]descriptor.read-via-stream",
    "[method]descriptor.write-via-stream",
    "[method]descriptor.append-via-stream",
    "[method]descriptor.advise",
    "[method]descriptor.sync-data",
    "[method]descriptor.get-flags",
    "[method]descriptor.get-type",
    "[method]descriptor.set-size",
    "[method]descriptor.set-times",
    "[method]descriptor.read",
    "[method]descriptor.write",
    "[method]descriptor.read-directory",
    "[method]descriptor.sync",
    "[method]descriptor.create-directory-at",
    "[method]descriptor.stat",
    "[method]descriptor.stat-at",
    "[method]descriptor.set-times-at",
    "[method]descriptor.link-at",
    "[method]descriptor.open-at",
    "[method]descriptor.readlink-at",
    "[method]descriptor.remove-directory-at",
    "[method]descriptor.rename-at",
    "[method]descriptor.symlink-at",
    "[method]descriptor.unlink-file-at",
    "[method]descriptor.is-same-object",
    "[method]descriptor.metadata-hash",
    "[method]descriptor.metadata-hash-at",
    "[method]directory-entry-stream.read-directory-entry",
];

fn files_every_function_gated(target: &Target) -> Result<(), Failure> {
    let (host, shared) = prober(target, OPEN)?;
    let got = probe(&host, "prober", "fs-every")?;
    let made: Vec<(&str, &str)> = got.split(';').filter_map(|s| s.split_once('=')).collect();
    let called: Vec<&str> = made.iter().map(|(f, _)| *f).collect();
    ensure!(
        FILE_FUNCTIONS.iter().all(|f| called.contains(f)),
        "the fs-every probe must call every gated filesystem function: it answered {got:?}"
    );
    let own = last(&host.entries()?);
    let recorded: Vec<&str> = own
        .iter()
        .filter(|e| {
            e["type"] == "host-call"
                && e["interface"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("wasi:filesystem/"))
        })
        .filter_map(|e| e["function"].as_str())
        .collect();
    ensure!(
        recorded == called,
        "each filesystem call must be one recorded host call naming it, in the order made: recorded {recorded:?} where the guest made {called:?}"
    );
    let streams: Vec<&Json> = own
        .iter()
        .filter(|e| {
            e["type"] == "host-call"
                && e["interface"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("wasi:io/"))
        })
        .collect();
    ensure!(
        streams.is_empty(),
        "the read from the read-via-stream stream is a reviewed function and must leave no host call: {streams:?}"
    );
    let outcome = |function: &str| {
        made.iter()
            .find(|(f, _)| *f == function)
            .map_or("(missing)", |(_, o)| *o)
    };
    ensure!(
        outcome("[method]descriptor.read-via-stream") == "ok:5",
        "read-via-stream of the file must stream what it holds: {got}"
    );
    for function in [
        "[method]descriptor.write-via-stream",
        "[method]descriptor.append-via-stream",
    ] {
        ensure!(
            outcome(function) == "unsupported",
            "{function} must answer unsupported: {got}"
        );
    }
    let written = read(&shared.join("every.txt"))?;
    ensure!(
        written == b"every",
        "every.txt must hold only what descriptor.write wrote, cut by set-size to 5 bytes; it holds {:?}",
        String::from_utf8_lossy(&written)
    );
    Ok(())
}

fn files_rename(target: &Target) -> Result<(), Failure> {
    let policy = format!(
        "{OPEN}{}{}",
        forbid("no-read", "fs.read", "/data/kept.txt"),
        forbid("no-write", "fs.write", "/data/fixed.txt")
    );
    let (host, shared) = prober(target, &policy)?;
    for name in ["kept.txt", "fixed.txt", "free.txt"] {
        write(&shared.join(name), format!("content of {name}").as_bytes())?;
    }
    let kept = probe(&host, "prober", "rename:kept.txt:out-of-kept.txt")?;
    let kept_entries = last(&host.entries()?);
    let fixed = probe(&host, "prober", "rename:fixed.txt:out-of-fixed.txt")?;
    let free = probe(&host, "prober", "rename:free.txt:out-of-free.txt")?;
    ensure!(
        kept == "access",
        "rename-at of a source under a forbid of fs.read must answer access: {kept:?}"
    );
    ensure!(
        fixed == "access",
        "rename-at of a source under a forbid of fs.write must answer access: {fixed:?}"
    );
    ensure!(
        free == "ok",
        "rename-at of a source granted both must succeed: {free:?}"
    );
    for (from, to, moved) in [
        ("kept.txt", "out-of-kept.txt", false),
        ("fixed.txt", "out-of-fixed.txt", false),
        ("free.txt", "out-of-free.txt", true),
    ] {
        ensure!(
            shared.join(from).exists() != moved && shared.join(to).exists() == moved,
            "after the rename of {from}: it must {} ({to} {})",
            if moved {
                "be moved"
            } else {
                "stay where it was"
            },
            if shared.join(to).exists() {
                "exists"
            } else {
                "does not exist"
            }
        );
    }
    let refused = decided(&kept_entries, "fs.read", "/data/kept.txt");
    ensure!(
        refused.iter().any(|d| d["allowed"] == false),
        "the refused fs.read on the rename's source must be recorded: {refused:?}"
    );
    Ok(())
}

fn files_symlink(target: &Target) -> Result<(), Failure> {
    let (host, shared) = prober(target, OPEN)?;
    write(&shared.join("target.txt"), b"linked to")?;
    for (arg, link) in [
        ("target.txt:inside-link", "inside-link"),
        ("/etc/passwd:outside-link", "outside-link"),
    ] {
        let got = probe(&host, "prober", &format!("symlink:{arg}"))?;
        ensure!(
            got == "not-permitted",
            "symlink-at {arg} must answer not-permitted: {got:?}"
        );
        ensure!(
            std::fs::symlink_metadata(shared.join(link)).is_err(),
            "symlink-at {arg} created {link}"
        );
    }
    Ok(())
}

fn files_std_fs(target: &Target) -> Result<(), Failure> {
    let host = sdk_host(target, OPEN, &[])?;
    let shared = host.data.path().join("shared");
    write(&shared.join("given.txt"), b"given by the operator")?;
    let got = sdk_ok(&host, "std-fs", "")?;
    let steps: Vec<(&str, &str)> = got.split(';').filter_map(|s| s.split_once('=')).collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("(missing)", |(_, v)| *v)
    };
    for (name, expected) in [
        ("read", "given by the operator"),
        ("stat", "21:true"),
        ("mkdir", "ok"),
        ("list", "given.txt,made"),
        ("rename", "ok"),
        ("moved", "given by the operator"),
        ("remove", "ok"),
        ("rmdir", "ok"),
    ] {
        ensure!(
            step(name) == expected,
            "std::fs below a granted read-write /data: step {name} must give {expected:?}; it gave {:?} (all: {got})",
            step(name)
        );
    }
    ensure!(
        step("write").starts_with("err("),
        "std::fs::write writes through a stream and must be refused: {:?} (all: {got})",
        step("write")
    );
    let written = std::fs::read(shared.join("written.txt")).unwrap_or_default();
    ensure!(
        written.is_empty(),
        "the refused std::fs::write must write nothing; written.txt holds {:?}",
        String::from_utf8_lossy(&written)
    );
    ensure!(
        !shared.join("given.txt").exists() && !shared.join("made").exists(),
        "the rename and removals must reach the host directory"
    );
    replays(target, &host)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 37: the Rust SDK, through the suite's second guest.

/// The second guest's imports, as its manifest requests them.
const SDK_IMPORTS: &str = "imports = [\"femtoclaw:host/log@0.1.0\", \"femtoclaw:host/http@0.1.0\", \"wasi:keyvalue/store@0.2.0-draft2\", \"femtoclaw:host/keyvalue-prefix@0.1.0\", \"wasi:config/store@0.2.0-draft\"]";

/// A host under `policy` with the second guest installed as `sdk`, requesting namespace `sdk`,
/// the configuration keys `region` and `absent`, `/data` writable (`<data dir>/shared`),
/// `origins` and the secret `tok`.
fn sdk_host(target: &Target, policy: &str, origins: &[String]) -> Result<Host, Failure> {
    let host = target.host()?;
    host.policy(policy)?;
    std::fs::create_dir_all(host.data.path().join("shared"))
        .map_err(|e| failed(format!("cannot create shared: {e}")))?;
    write(
        &host.data.path().join("mounts.toml"),
        b"\"/data\" = \"shared\"\n",
    )?;
    let requests = format!(
        "{SDK_IMPORTS}\nkv = [{{ namespace = \"sdk\", write = true }}]\nconfig = [\"region\", \"absent\"]\npaths = [{{ path = \"/data\", write = true }}]\nhttp = {}\nsecrets = [\"tok\"]",
        json!(origins)
    );
    install(&host, "sdk", SDK_GUEST, &requests)?;
    Ok(host)
}

/// `invoke sdk run` of `helper` with `arg`, plus `extra`.
fn sdk_run(host: &Host, helper: &str, arg: &str, extra: &[&str]) -> Result<Run, Failure> {
    let args = json!({ "helper": helper, "arg": arg }).to_string();
    let mut all = vec!["invoke", "sdk", "run", "--args", &args];
    all.extend_from_slice(extra);
    host.run(&all)
}

/// The helper's answer (the invocation must succeed).
fn sdk_ok(host: &Host, helper: &str, arg: &str) -> Result<String, Failure> {
    let run = sdk_run(host, helper, arg, &[])?;
    run.expect(0, &format!("the SDK helper {helper} {arg:?}"))?;
    Ok(run.json()?.as_str().unwrap_or("").to_owned())
}

fn sdk_docs(target: &Target) -> Result<(), Failure> {
    let host = sdk_host(target, OPEN, &[])?;
    let run = host.run(&["capability", "inspect", "sdk"])?;
    run.expect(0, "capability inspect sdk")?;
    let inspected = run.json()?;
    let functions = inspected["functions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let described = |pred: &dyn Fn(&str) -> bool| {
        functions
            .iter()
            .find(|f| f["name"].as_str().is_some_and(pred))
            .map(|f| f["description"].clone())
    };
    let world = described(&|n| n == "run");
    ensure!(
        world
            == Some(json!(
                "Runs the SDK helper `helper` with `arg`; what it gave, as text."
            )),
        "the world-level export `run` must be described by its WIT doc comment: {world:?}"
    );
    let interface = described(&|n| n.ends_with("shout"));
    ensure!(
        interface
            == Some(json!(
                "Returns `text` upper-cased.\nA second line of the comment."
            )),
        "the export `shout` of the exported interface must be described by its doc comment, its lines joined by a line break: {interface:?} (functions: {:?})",
        functions
            .iter()
            .map(|f| f["name"].clone())
            .collect::<Vec<_>>()
    );
    // The call name the host describes is the one it invokes.
    let name = functions
        .iter()
        .filter_map(|f| f["name"].as_str())
        .find(|n| n.ends_with("shout"))
        .unwrap_or("shout")
        .to_owned();
    let run = host.run(&["invoke", "sdk", &name, "--args", r#"{"text":"docs"}"#])?;
    run.expect(0, &format!("invoke sdk {name}"))?;
    ensure!(
        run.json()? == json!("DOCS"),
        "invoke sdk {name} answered {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn sdk_kv(target: &Target) -> Result<(), Failure> {
    let host = sdk_host(target, OPEN, &[])?;
    let got = sdk_ok(&host, "kv", "250")?;
    ensure!(
        got == "got=v2 gone=true keys=249 first=p/00000 last=p/00249 sorted=true other=false",
        "kv::set of 250 keys p/…, kv::get of p/00002, kv::delete of p/00001 and kv::keys of p/ must give v2, nothing, and the 249 keys left in order across every page: {got:?}"
    );
    let own = last(&host.entries()?);
    let of = |interface: &str, function: &str| {
        own.iter()
            .filter(|e| {
                e["type"] == "host-call"
                    && e["interface"]
                        .as_str()
                        .is_some_and(|i| i.starts_with(interface))
                    && e["function"]
                        .as_str()
                        .is_some_and(|f| f.ends_with(function))
            })
            .count()
    };
    for (interface, function, at_least) in [
        ("wasi:keyvalue/store", "set", 251),
        ("wasi:keyvalue/store", "get", 2),
        ("wasi:keyvalue/store", "delete", 1),
        ("femtoclaw:host/keyvalue-prefix", "list-keys-with-prefix", 3),
    ] {
        let n = of(interface, function);
        ensure!(
            n >= at_least,
            "the helpers must go through {interface} {function} (at least {at_least} calls, a page of 100 keys per listing call); {n} recorded"
        );
    }
    let listed = host.ok(&["kv", "list"])?;
    ensure!(
        listed.contains("p/00000")
            && listed.contains("p/00249")
            && listed.contains("q/other")
            && !listed.contains("p/00001"),
        "after the invocation the store must hold the keys set and not the one deleted: {}",
        excerpt(&listed)
    );
    Ok(())
}

fn sdk_log(target: &Target) -> Result<(), Failure> {
    let host = sdk_host(target, OPEN, &[])?;
    let run = sdk_run(&host, "log", "", &["--json"])?;
    run.expect(0, "the SDK's log helpers (invoke --json)")?;
    let report = run.json()?;
    let levels = ["trace", "debug", "info", "warn", "error"];
    let expected: Vec<Json> = levels
        .iter()
        .map(|l| json!({ "level": l, "message": format!("sdk-level-{l}") }))
        .collect();
    ensure!(
        report["logs"] == json!(expected),
        "log::trace … log::error must each be reported with the invocation at its level: {}",
        report["logs"]
    );
    let own = last(&host.entries()?);
    let logs: Vec<&Json> = calls(&own, "log")
        .into_iter()
        .filter(|c| c["interface"] == "femtoclaw:host/log@0.1.0")
        .collect();
    let recorded: Vec<Json> = logs.iter().map(|c| c["params"].clone()).collect();
    let wanted: Vec<Json> = levels
        .iter()
        .map(|l| json!({ "tuple": [{ "enum": l }, { "string": format!("sdk-level-{l}") }] }))
        .collect();
    ensure!(
        recorded == wanted,
        "each helper must make exactly one log call at its level: {recorded:?}"
    );
    Ok(())
}

fn sdk_config(target: &Target) -> Result<(), Failure> {
    let host = sdk_host(target, OPEN, &[])?;
    write(
        &host.data.path().join("config").join("sdk.toml"),
        b"region = \"eu-west-3\"\nhidden = \"hidden-value-7\"\n",
    )?;
    let region = sdk_ok(&host, "config", "region")?;
    ensure!(
        region == "value=eu-west-3",
        "config::get of a granted key must return the operator's value: {region:?}"
    );
    let absent = sdk_ok(&host, "config", "absent")?;
    ensure!(
        absent == "none",
        "config::get of a granted key with no value must return None: {absent:?}"
    );
    let hidden = sdk_ok(&host, "config", "hidden")?;
    ensure!(
        hidden.starts_with("upstream=denied: ") && !hidden.contains("hidden-value-7"),
        "config::get of a key the manifest does not request must surface upstream(\"denied: …\") without the value: {hidden:?}"
    );
    // The refusal is recorded as a decision, with the policy digest it was taken under.
    let entries = host.entries()?;
    let refused = entries.iter().map(|e| &e["entry"]).find(|e| {
        e["type"] == "decision"
            && e["action"] == "config.read"
            && e["allowed"] == false
            && e["resource"].as_str().is_some_and(|r| r.contains("hidden"))
    });
    ensure!(
        refused.is_some_and(
            |d| d["policy_digest"].as_str().is_some_and(|h| h.len() == 64)
                && d["policy_ids"].is_array()
        ),
        "the refused config.read of `hidden` must be recorded as a decision with its policy ids and digest: {refused:?}"
    );
    ensure!(
        !entries
            .iter()
            .any(|e| e.to_string().contains("hidden-value-7")),
        "the refused key's value reached the ledger"
    );
    Ok(())
}

fn sdk_files(target: &Target) -> Result<(), Failure> {
    let host = sdk_host(target, OPEN, &[])?;
    let shared = host.data.path().join("shared");
    write(&shared.join("old.txt"), b"there before")?;
    std::fs::create_dir_all(shared.join("sub"))
        .map_err(|e| failed(format!("cannot create sub: {e}")))?;
    let got = sdk_ok(&host, "files", "")?;
    ensure!(
        got == "write=ok read=written by the sdk list=old.txt:file,sdk.txt:file,sub:directory",
        "files::write, files::read_to_string and files::list in /data must write, read back and list it: {got:?}"
    );
    let written = read(&shared.join("sdk.txt"))?;
    ensure!(
        written == b"written by the sdk",
        "files::write must reach the granted directory: sdk.txt holds {:?}",
        String::from_utf8_lossy(&written)
    );
    let old = sdk_ok(&host, "files-read", "/data/old.txt")?;
    ensure!(
        old == "text=there before",
        "files::read_to_string of a file the operator put there: {old:?}"
    );
    Ok(())
}

fn sdk_refusals(target: &Target) -> Result<(), Failure> {
    let policy = format!(
        "{OPEN}{}",
        forbid("no-hidden", "fs.read", "/data/hidden.txt")
    );
    let host = sdk_host(target, &policy, &[])?;
    write(
        &host.data.path().join("shared").join("hidden.txt"),
        b"never read",
    )?;
    let from = host.entries()?.len();
    for (helper, arg, starts, what) in [
        (
            "files-read",
            "/data/hidden.txt",
            "error=access ",
            "a file read the policy forbids (access)",
        ),
        (
            "config",
            "hidden",
            "upstream=denied: ",
            "a configuration key not granted (upstream)",
        ),
        (
            "kv-open",
            "elsewhere",
            "error=Error::AccessDenied",
            "a namespace not granted (access-denied)",
        ),
        (
            "http-get",
            "http://127.0.0.1:9/",
            "error=denied: ",
            "an origin not granted (denied)",
        ),
    ] {
        let run = sdk_run(&host, helper, arg, &[])?;
        run.expect(
            0,
            &format!("{what}: the helper must return an error value, the invocation must not trap"),
        )?;
        let got = run.json()?.as_str().unwrap_or("").to_owned();
        ensure!(
            got.starts_with(starts) && !got.contains("never read"),
            "{what}: the helper must surface the refusal as an error starting {starts:?}; the capability got {got:?}"
        );
    }
    let entries = host.entries()?;
    ensure!(
        !entries[from..].iter().any(|e| e["entry"]["type"] == "trap"),
        "a refused helper call trapped"
    );
    Ok(())
}

fn base64(engine: &impl base64::Engine, bytes: &[u8]) -> String {
    engine.encode(bytes)
}

/// The searched forms of `value`, each with a label: as it is, percent-encoded in either case,
/// JSON-escaped as `\uXXXX` in either case, base64 (standard and URL-safe, padded or not) and
/// hex in either case.
fn forms(value: &str) -> Vec<(&'static str, String)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let percent = |upper: bool| -> String {
        value
            .bytes()
            .map(|b| {
                if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
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
    let bytes = value.as_bytes();
    vec![
        ("literal", value.to_owned()),
        ("percent-upper", percent(true)),
        ("percent-lower", percent(false)),
        ("json-unicode-lower", unicode(false)),
        ("json-unicode-upper", unicode(true)),
        ("base64", base64(&STANDARD, bytes)),
        ("base64-unpadded", base64(&STANDARD_NO_PAD, bytes)),
        ("base64url", base64(&URL_SAFE, bytes)),
        ("base64url-unpadded", base64(&URL_SAFE_NO_PAD, bytes)),
        ("hex-lower", hex(bytes)),
        ("hex-upper", hex(bytes).to_ascii_uppercase()),
    ]
}

/// The labels of the forms of `value` found in `text`.
fn found_in(value: &str, text: &str) -> Vec<&'static str> {
    forms(value)
        .into_iter()
        .filter(|(_, f)| text.contains(f.as_str()))
        .map(|(label, _)| label)
        .collect()
}

/// Every string of a JSON value, each also base64-decoded when it is base64, one a line.
fn strings(value: &Json) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    let mut walk = vec![value];
    while let Some(v) = walk.pop() {
        match v {
            Json::String(s) => {
                out.push_str(s);
                out.push('\n');
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    out.push('\n');
                }
            }
            Json::Array(items) => walk.extend(items),
            Json::Object(map) => walk.extend(map.values()),
            _ => {}
        }
    }
    out
}

/// Fails when the ledger (`log show`, `log show --json` and its strings decoded, `log export`)
/// holds `value` in a searched form.
fn ledger_clean(host: &Host, value: &str) -> Result<(), Failure> {
    let shown = host.ok(&["log", "show"])?;
    let json = host.ok(&["log", "show", "--json", "--limit", "100000"])?;
    let decoded: String = json
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .map(|e| strings(&e))
        .collect();
    let file = host.files.path().join("secret.export");
    host.ok(&["log", "export", &s(&file)])?;
    let exported = String::from_utf8_lossy(&read(&file)?).into_owned();
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
    Ok(())
}

fn sdk_http_secret(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|seen| {
        let auth = seen.header("authorization").unwrap_or("none").to_owned();
        answer("200 OK", &[("x-auth", &auth)], &format!("auth={auth}"))
    })?;
    let origin = peer.origin();
    let host = sdk_host(target, OPEN, std::slice::from_ref(&origin))?;
    let value = "sdk-Secret-v4lue-93x";
    super::set_secret(&host, "tok", value)?;
    let got = sdk_ok(&host, "http", &format!("{origin}/echo"))?;
    let seen = peer.seen();
    ensure!(
        seen.len() == 1,
        "the helper must send one request; the server saw {}",
        seen.len()
    );
    ensure!(
        seen[0].header("authorization") == Some(&format!("Bearer {value}")),
        "the host must fill the secret header named by the helper: the server saw authorization {:?}",
        seen[0].header("authorization")
    );
    ensure!(
        got == format!("status=200 url={origin}/echo body=auth=Bearer [redacted]"),
        "the guest must get the server's echo of the secret as [redacted]: {got:?}"
    );
    let own = last(&host.entries()?);
    let sends: Vec<&Json> = own
        .iter()
        .filter(|e| {
            e["type"] == "host-call"
                && e["interface"] == "femtoclaw:host/http@0.1.0"
                && e["function"] == "send"
        })
        .collect();
    ensure!(
        sends.len() == 1,
        "the helper must make one femtoclaw:host/http send: {} recorded",
        sends.len()
    );
    let params = sends[0]["params"].to_string();
    ensure!(
        params.contains("\"tok\"") && params.contains("authorization") && !params.contains(value),
        "the recorded request must carry the secret header by the secret's name only: {params}"
    );
    ensure!(
        decided(&own, "secret.use", &format!("tok@{origin}"))
            .iter()
            .any(|d| d["allowed"] == true),
        "the secret's use must be decided and recorded as tok@{origin}"
    );
    drop(peer);
    ledger_clean(&host, value)
}

fn sdk_http_redirects(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|_| answer("302 Found", &[("location", "/again")], ""))?;
    let origin = peer.origin();
    let host = sdk_host(target, OPEN, std::slice::from_ref(&origin))?;
    let got = sdk_ok(&host, "http-get", &format!("{origin}/start"))?;
    let seen = peer.seen().len();
    ensure!(
        got.starts_with("error=too many redirects"),
        "http::get of a URL that always redirects must end in too-many-redirects: {got:?}"
    );
    ensure!(
        seen == 6,
        "http::get must follow 5 redirects (6 requests) where the host allows 10; the server saw {seen}"
    );
    // A count the capability sets instead.
    let got = sdk_ok(&host, "http-redirects", &format!("2|{origin}/start"))?;
    let seen = peer.seen().len() - 6;
    ensure!(
        got.starts_with("error=too many redirects") && seen == 3,
        "Request::max_redirects(2) must follow 2 redirects (3 requests): the server saw {seen}, the capability got {got:?}"
    );
    Ok(())
}

fn secret_guest_writes(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|_| answer("200 OK", &[], "fine"))?;
    let origin = peer.origin();
    let host = sdk_host(target, OPEN, std::slice::from_ref(&origin))?;
    let value = "Leak3d-sEcret/v+l 7q";
    super::set_secret(&host, "tok", value)?;
    let mut text = String::from("keep=plain words stay\n");
    for (label, form) in forms(value) {
        text.push_str(&format!("{label}={form}\n"));
    }
    // The guest gets the text XORed: no searched form of the value is in its arguments.
    let hidden = hex(&text.bytes().map(|b| b ^ 0x5a).collect::<Vec<_>>());
    ensure!(
        found_in(value, &hidden).is_empty(),
        "the suite's own transformation left a searched form"
    );
    let run = sdk_run(&host, "leak", &format!("{origin}/x|{hidden}"), &["--json"])?;
    run.expect(0, "the guest writing the secret it reconstructed")?;
    let report = run.json()?;
    ensure!(
        peer.seen().len() == 1,
        "the guest must use the secret in one request first"
    );
    let log = report["logs"][0]["message"].as_str().unwrap_or_default();
    let stdout = report["stdout"].as_str().unwrap_or_default();
    let stderr = report["stderr"].as_str().unwrap_or_default();
    for (what, part) in [("log message", log), ("stdout", stdout), ("stderr", stderr)] {
        let found = found_in(value, part);
        ensure!(
            found.is_empty(),
            "the guest's {what} must be scrubbed of the secret it used; it holds the forms {found:?}: {}",
            excerpt(part)
        );
        for (label, _) in forms(value) {
            let line = part
                .lines()
                .find(|l| l.starts_with(&format!("{label}=")))
                .unwrap_or_default();
            ensure!(
                line.contains("[redacted]"),
                "the {label} form in the guest's {what} must stand as [redacted]: line {line:?}"
            );
        }
        ensure!(
            part.starts_with("keep=plain words stay\n"),
            "text in the guest's {what} that is not a secret must be left as it was: {}",
            excerpt(part)
        );
    }
    drop(peer);
    ledger_clean(&host, value)
}

// ---------------------------------------------------------------------------------------------
// Specification 20: egress.

fn egress_embedded_kinds(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    // Every HTTP action but net.connect, so that only the address kinds decide.
    host.policy(
        "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"net.connect\" };\n",
    )?;
    for (address, kind) in [
        // IPv4-mapped, of every kind.
        ("[::ffff:192.168.1.1]", "private"),
        ("[::ffff:100.64.0.1]", "private"),
        ("[::ffff:169.254.1.1]", "link-local"),
        ("[::ffff:224.0.0.1]", "multicast"),
        ("[::ffff:255.255.255.255]", "broadcast"),
        ("[::ffff:192.0.2.1]", "reserved"),
        ("[::ffff:0.1.2.3]", "unspecified"),
        // IPv4-translated and IPv4-compatible.
        ("[::ffff:0:127.0.0.1]", "loopback"),
        ("[::ffff:0:169.254.169.254]", "metadata"),
        ("[::192.168.0.1]", "private"),
        // NAT64.
        ("[64:ff9b::7f00:1]", "loopback"),
        ("[64:ff9b::a9fe:a9fe]", "metadata"),
        ("[64:ff9b::e000:1]", "multicast"),
        // 6to4.
        ("[2002:7f00:1::]", "loopback"),
        ("[2002:c0a8:101::]", "private"),
        ("[2002:c000:201::]", "reserved"),
        // Transition ranges around a public IPv4 are never public.
        ("[64:ff9b:1::101:101]", "reserved"),
        ("[2001::fefe:fefe]", "reserved"),
    ] {
        let url = format!("http://{address}/");
        let args = json!({ "url": url }).to_string();
        let run = host.run(&["invoke", "fetch", "get", "--args", &args])?;
        run.expect(0, &format!("fetch {url}"))?;
        let got = run.json()?;
        let message = got["err"].as_str().unwrap_or_default();
        ensure!(
            message.starts_with("denied: `")
                && message.contains("resolves only to addresses `net.connect` is not granted on: ")
                && message.ends_with(&format!("({kind})")),
            "{url} must be classified {kind} (the kind of the IPv4 address it carries) and denied with net.connect granted nowhere: {got}"
        );
    }
    Ok(())
}

fn egress_default_no_special_address(target: &Target) -> Result<(), Failure> {
    // No policy of the case's own: the host's embedded default is in force.
    let host = target.host()?;
    let peer = Peer::start(|_| answer("200 OK", &[], "reached"))?;
    let port = peer.port;
    let six = TcpListener::bind(("::1", port))
        .ok()
        .map(|l| Peer::on(l, |_: &Seen| answer("200 OK", &[], "six")))
        .transpose()?;
    let special = [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
    ];
    // What the default policy decides on each, for the one capability it lets reach HTTP.
    let mut args = vec!["policy", "explain", "--capability", "fetch", "--json"];
    for (address, _) in special {
        args.extend(["--address", address]);
    }
    let run = host.run(&args)?;
    run.expect(0, &args.join(" "))?;
    let explanation = run.json()?;
    let listed = explanation["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        listed.len() == special.len(),
        "policy explain must list net.connect on each of the {} addresses asked about: {explanation}",
        special.len()
    );
    for ((address, kind), got) in special.iter().zip(&listed) {
        ensure!(
            got["address"] == *address && got["kind"] == *kind,
            "policy explain must name {address} as a {kind} address: {got}"
        );
        ensure!(
            got["granted"] == false && got["decision"]["allowed"] == false,
            "the default policy must grant no net.connect on {address} ({kind}): {got}"
        );
    }
    // And what an invocation meets: every such URL refused, the refusal recorded, no
    // connection made.
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let args = json!({ "url": url }).to_string();
        let run = host.run(&["invoke", "fetch", "get", "--args", &args])?;
        run.expect(0, &format!("fetch {url} under the default policy"))?;
        let got = run.json()?;
        ensure!(
            got["err"].as_str().is_some_and(|e| e.starts_with("denied")),
            "fetch {url} under the default policy must be refused: {got}"
        );
        let own = last(&host.entries()?);
        let sends: Vec<&Json> = calls(&own, "send")
            .into_iter()
            .filter(|c| c["interface"] == "femtoclaw:host/http@0.1.0")
            .collect();
        ensure!(
            sends.len() == 1,
            "fetch {url} must leave its femtoclaw:host/http#send as one recorded host call: {own:?}"
        );
        let egress: Vec<&Json> = own
            .iter()
            .filter(|e| {
                e["type"] == "decision"
                    && ["http.request", "net.connect"].contains(&e["action"].as_str().unwrap_or(""))
            })
            .collect();
        ensure!(
            !egress.is_empty() && egress.iter().all(|e| e["allowed"] == false),
            "fetch {url} under the default policy must leave its refusal, and no allowed http.request or net.connect, in the ledger: {egress:?}"
        );
    }
    ensure!(
        peer.seen().is_empty(),
        "under the default policy a fetch reached the loopback peer on 127.0.0.1:{port}"
    );
    if let Some(six) = &six {
        ensure!(
            six.seen().is_empty(),
            "under the default policy a fetch reached the loopback peer on [::1]:{port}"
        );
    }
    Ok(())
}

/// Installs the `std::net` test guest as `net` 1.0.0 requesting every `wasi:sockets` interface
/// it imports (as `capability inspect` of an install requesting none lists them).
fn net_host(target: &Target, policy: &str) -> Result<Host, Failure> {
    let host = target.host()?;
    host.policy(policy)?;
    let wasm = host.file("net.wasm", crate::NET)?;
    let bare = host.file("bare.toml", b"name = \"net-bare\"\nversion = \"1.0.0\"\n")?;
    host.ok(&["capability", "add", &s(&wasm), "--manifest", &s(&bare)])?;
    let inspect: Json = serde_json::from_str(&host.ok(&["capability", "inspect", "net-bare"])?)
        .map_err(|e| failed(format!("capability inspect is not JSON: {e}")))?;
    let sockets: Vec<&str> = inspect["imports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .filter(|i| i.starts_with("wasi:sockets/"))
        .collect();
    ensure!(
        ["tcp-create-socket", "udp-create-socket", "ip-name-lookup"]
            .iter()
            .all(|n| sockets.iter().any(|i| i.contains(&format!("/{n}@")))),
        "the std::net guest must import wasi:sockets tcp-create-socket, udp-create-socket and ip-name-lookup; capability inspect lists {sockets:?}"
    );
    let manifest = format!(
        "name = \"net\"\nversion = \"1.0.0\"\n\n[requests]\nimports = {}\n",
        json!(sockets)
    );
    let manifest = host.file("net.toml", manifest.as_bytes())?;
    host.ok(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])?;
    Ok(host)
}

fn sockets_decided_never_opened(target: &Target) -> Result<(), Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failed(format!("cannot listen on loopback: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| failed(format!("cannot set the listener non-blocking: {e}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let no_connect = "permit (principal == FemtoClaw::User::\"local\", action, resource) unless { action == FemtoClaw::Action::\"net.connect\" };\n";
    for (policy, allowed, named) in [
        (OPEN, true, "everything permitted"),
        (no_connect, false, "net.connect not permitted"),
    ] {
        let host = net_host(target, policy)?;
        for (function, args, opening) in [
            (
                "tcp-connect",
                json!({ "address": format!("127.0.0.1:{port}") }),
                "create-tcp-socket",
            ),
            (
                "udp-bind",
                json!({ "address": "127.0.0.1:0" }),
                "create-udp-socket",
            ),
            (
                "lookup",
                json!({ "name": "localhost" }),
                "resolve-addresses",
            ),
        ] {
            let got = super::call(&host, "net", function, &args)?;
            ensure!(
                got["err"].is_string(),
                "with {named}, the guest's {function} {args} must get an error: {got}"
            );
            let own = last(&host.entries()?);
            let opened = calls(&own, opening);
            ensure!(
                !opened.is_empty(),
                "with {named}, {function} must reach wasi:sockets {opening}, recorded as a host call: {own:?}"
            );
            // The lookup first takes the instance's network handle: a host call of its own.
            ensure!(
                function != "lookup" || calls(&own, "instance-network").len() == 1,
                "with {named}, the lookup's instance-network must be recorded as a host call: {own:?}"
            );
            let decisions: Vec<&Json> = own
                .iter()
                .filter(|e| e["type"] == "decision" && e["action"] == "net.connect")
                .collect();
            ensure!(
                decisions.len() == opened.len(),
                "with {named}, each of the {} {opening} calls must ask the policy for net.connect once, recorded as a decision: {decisions:?}",
                opened.len()
            );
            ensure!(
                decisions.iter().all(|d| d["allowed"] == allowed
                    && ["0.0.0.0", "::"].contains(&d["resource"].as_str().unwrap_or(""))),
                "with {named}, the recorded net.connect decisions of {function} must be {}, on the unspecified address: {decisions:?}",
                if allowed { "allowed" } else { "denied" }
            );
        }
        ensure!(
            listener.accept().is_err(),
            "with {named}, the guest's tcp-connect to 127.0.0.1:{port} opened a connection to the suite's listener"
        );
    }
    Ok(())
}

/// Runs a command of `host` with `env` set, to completion (at most 120 s).
fn run_env(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Result<Run, Failure> {
    let mut command = host.command(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", args.join(" "))))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < crate::target::COMMAND_LIMIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("`{}` did not end", args.join(" "))));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("{}: {e}", args.join(" "))))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn egress_pinned(target: &Target) -> Result<(), Failure> {
    let peer = Peer::start(|_| answer("200 OK", &[], "reached"))?;
    let port = peer.port;
    // Where a connection must never go: a proxy named by the environment, and ::1 on the
    // peer's port (`localhost` resolves to it too, but net.connect is granted on 127.0.0.1 only).
    let proxy = Peer::start(|_| answer("200 OK", &[], "proxied"))?;
    let six = TcpListener::bind(("::1", port))
        .ok()
        .map(|l| Peer::on(l, |_: &Seen| answer("200 OK", &[], "six")))
        .transpose()?;
    let origins = [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ];
    let policy = format!(
        "{OPEN}@id(\"v4-only\")\nforbid (principal, action == FemtoClaw::Action::\"net.connect\", resource) unless {{ resource.address == ip(\"127.0.0.1\") }};\n"
    );
    let host = sdk_host(target, &policy, &origins)?;
    let via = proxy.origin();
    let env = [
        ("http_proxy", via.as_str()),
        ("HTTP_PROXY", via.as_str()),
        ("https_proxy", via.as_str()),
        ("HTTPS_PROXY", via.as_str()),
        ("all_proxy", via.as_str()),
        ("ALL_PROXY", via.as_str()),
        ("no_proxy", ""),
        ("NO_PROXY", ""),
    ];
    for origin in &origins {
        let args = json!({ "helper": "http-get", "arg": format!("{origin}/pinned") }).to_string();
        let run = run_env(&host, &["invoke", "sdk", "run", "--args", &args], &env)?;
        run.expect(
            0,
            &format!("GET {origin}/pinned with a proxy in the environment"),
        )?;
        let got = run.json()?.as_str().unwrap_or("").to_owned();
        ensure!(
            got.starts_with("status=200 ") && got.ends_with("body=reached"),
            "GET {origin}/pinned must reach the decided address 127.0.0.1:{port} directly: {got:?}"
        );
    }
    ensure!(
        proxy.seen().is_empty(),
        "the host sent {} request(s) through the proxy the environment names",
        proxy.seen().len()
    );
    if let Some(six) = &six {
        ensure!(
            six.seen().is_empty(),
            "a connection went to ::1, an address of localhost net.connect is not granted on"
        );
    }
    ensure!(
        peer.seen().len() == 2 && peer.seen().iter().all(|s| s.path == "/pinned"),
        "the peer must see the two requests; it saw {:?}",
        peer.seen()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 18: the token store.

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

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn token_store(target: &Target) -> Result<(), Failure> {
    if !cfg!(unix) {
        return Err(Failure::NotApplicable(
            "file modes are Unix permissions".into(),
        ));
    }
    let host = target.host()?;
    let token = host.ok(&["token", "create", "--principal", "user:ada"])?;
    let dir = host.data.path().join("tokens");
    let file = dir.join("ada.json");
    ensure!(
        mode(&dir) == 0o700 && mode(&file) == 0o600,
        "the token directory and record must be modes 0700 and 0600; they are {:o} and {:o}",
        mode(&dir),
        mode(&file)
    );
    let before = read(&file)?;
    let record: Json = serde_json::from_slice(&before)
        .map_err(|e| failed(format!("tokens/ada.json is not JSON: {e}")))?;
    ensure!(
        record["name"] == "ada"
            && record["principal"] == "user:ada"
            && !String::from_utf8_lossy(&before).contains(token.trim()),
        "tokens/ada.json must be ada's record, without the token: {record}"
    );
    // The same name again: refused, the record left as it was, nothing left behind.
    let again = host.run(&[
        "token",
        "create",
        "--principal",
        "agent:other",
        "--name",
        "ada",
    ])?;
    ensure!(
        again.code != 0 && again.stdout.trim().is_empty() && again.stderr.contains("ada"),
        "token create of an existing name must be refused naming it, printing no token: exit {}, stderr {}",
        again.code,
        excerpt(&again.stderr)
    );
    ensure!(
        read(&file)? == before,
        "a token create of an existing name replaced its record"
    );
    host.ok(&[
        "token",
        "create",
        "--principal",
        "agent:bot",
        "--name",
        "second",
    ])?;
    ensure!(
        mode(&dir.join("second.json")) == 0o600,
        "the second record must be mode 0600; it is {:o}",
        mode(&dir.join("second.json"))
    );
    let left = names(&dir);
    ensure!(
        left == ["ada.json", "second.json"],
        "the token directory must hold the two records and no temporary file: {left:?}"
    );
    Ok(())
}

/// A peer echoing the secret of `authorization: Bearer` in every form, in headers and body;
/// `/start` first redirects to `/final?t=<the value as hex>`, `/away` to a host named after it.
fn echo_peer() -> Result<Peer, Failure> {
    Peer::start(|seen| {
        let value = seen
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        if seen.path.starts_with("/start") {
            let location = format!("/final?t={}", hex(value.as_bytes()));
            return answer("302 Found", &[("location", &location)], "");
        }
        if seen.path.starts_with("/away") {
            let location = format!("http://{value}.invalid/next");
            return answer("302 Found", &[("location", &location)], "");
        }
        let forms = forms(&value);
        let mut body = String::from("keep=plain text stays\n");
        for (label, form) in &forms {
            body.push_str(&format!("{label}={form}\n"));
        }
        let headers: Vec<(String, String)> = forms
            .iter()
            .map(|(label, f)| (format!("x-echo-{label}"), f.clone()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        answer("200 OK", &headers, &body)
    })
}

fn secret_no_form_anywhere(target: &Target) -> Result<(), Failure> {
    let peer = echo_peer()?;
    let origin = peer.origin();
    let host = sdk_host(target, OPEN, std::slice::from_ref(&origin))?;
    // A value a host name can hold, so that the redirect's host can be named after it.
    let value = "k9zq7s3cretv4lue";
    super::set_secret(&host, "tok", value)?;
    let echoed = sdk_ok(&host, "http-full", &format!("{origin}/start"))?;
    ensure!(
        peer.seen().len() == 2
            && peer
                .seen()
                .iter()
                .all(|s| s.header("authorization") == Some(&format!("Bearer {value}"))),
        "the host must send the secret on both hops of the same origin"
    );
    let found = found_in(value, &echoed);
    ensure!(
        found.is_empty(),
        "what the guest got of the echo holds the secret in the forms {found:?}: {}",
        excerpt(&echoed)
    );
    for (label, _) in forms(value) {
        for prefix in [format!("x-echo-{label}: "), format!("{label}=")] {
            let line = echoed
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_default();
            ensure!(
                line.contains("[redacted]"),
                "the {label} form echoed as `{prefix}…` must reach the guest as [redacted]: {line:?}"
            );
        }
    }
    let url = echoed
        .lines()
        .find_map(|l| l.split(" url=").nth(1))
        .and_then(|u| u.split(' ').next())
        .unwrap_or_default();
    ensure!(
        url == format!("{origin}/final?t=[redacted]"),
        "the final URL, which carried the value as hex, must reach the guest as {origin}/final?t=[redacted]: {url:?}"
    );
    ensure!(
        echoed.contains("keep=plain text stays"),
        "text that is not a secret must reach the guest unchanged: {}",
        excerpt(&echoed)
    );
    // A redirect to a host named after the secret.
    let away = sdk_ok(&host, "http-full", &format!("{origin}/away"))?;
    ensure!(
        away.contains("http://[redacted].invalid") && found_in(value, &away).is_empty(),
        "a redirect to a host named after the secret must reach the guest with [redacted] for it: {away:?}"
    );
    // The guest writes what it reconstructed to its log, stdout and stderr.
    let mut text = String::from("keep=plain words stay\n");
    for (label, form) in forms(value) {
        text.push_str(&format!("{label}={form}\n"));
    }
    let hidden = hex(&text.bytes().map(|b| b ^ 0x5a).collect::<Vec<_>>());
    let run = sdk_run(&host, "leak", &format!("{origin}/x|{hidden}"), &["--json"])?;
    run.expect(0, "the guest writing the secret it reconstructed")?;
    let report = run.json()?;
    for (what, part) in [
        ("log message", report["logs"][0]["message"].as_str()),
        ("stdout", report["stdout"].as_str()),
        ("stderr", report["stderr"].as_str()),
    ] {
        let part = part.unwrap_or_default();
        let found = found_in(value, part);
        ensure!(
            found.is_empty(),
            "the guest's {what} holds the secret in the forms {found:?}"
        );
        let redacted = part.matches("[redacted]").count();
        ensure!(
            redacted == forms(value).len(),
            "each of the {} forms in the guest's {what} must read [redacted]; {redacted} do: {}",
            forms(value).len(),
            excerpt(part)
        );
    }
    drop(peer);
    ledger_clean(&host, value)
}
