//! Durable writes, seen from outside the target (specifications 11 and 37): the system calls a
//! command makes, traced with `strace`, and the command killed by `strace`'s fault injection at
//! each rename it makes, after which what it was writing is there whole or not at all.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{GREET, OPEN, failed, s};
use crate::target::{Host, Run, excerpt};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.durability.package-written-whole",
        verifies: &["FC-CAP-1108"],
        run: package_written_whole,
    },
    Case {
        name: "cli.durability.key-written-whole",
        verifies: &["FC-CRYPTO-3710", "FC-CRYPTO-3712"],
        run: key_written_whole,
    },
    Case {
        name: "http.durability.durable-before-answered",
        verifies: &["FC-MEM-2402"],
        run: durable_before_answered,
    },
];

/// The system calls traced: the renames, the syncs and the opens.
const TRACED: &str = "trace=rename,renameat,renameat2,fsync,fdatasync,openat";

/// One traced call of interest, in the order the target made them.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    /// A file or directory synced.
    Sync(PathBuf),
    /// A rename, from and to.
    Rename(PathBuf, PathBuf),
    /// A file opened for writing.
    OpenForWriting(PathBuf),
}

/// Runs `strace true`: a case needs `strace`, and a machine that lets it trace.
fn strace_available() -> Result<(), Failure> {
    let works = std::process::Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        Ok(())
    } else {
        Err(Failure::NotApplicable(
            "`strace` is not installed, or this machine does not let it trace".to_owned(),
        ))
    }
}

/// `args` run under `strace`: the run and the calls it made.
fn traced(host: &Host, args: &[&str]) -> Result<(Run, Vec<Call>), Failure> {
    let trace = host.files.path().join("trace");
    let out = s(&trace);
    let wrapper = [
        "strace", "-f", "-qq", "-y", "-s", "4096", "-o", &out, "-e", TRACED,
    ];
    let run = host.run_command(host.command_under(&wrapper, args), args)?;
    let text = std::fs::read_to_string(&trace)
        .map_err(|e| failed(format!("cannot read the trace {}: {e}", trace.display())))?;
    Ok((run, calls(&text)))
}

/// The lines of a trace, each as its PID and its text, a call interrupted by another
/// thread's joined again (`call(… <unfinished ...>` and `<... call resumed>…` become one line,
/// at the place of its end), in the order the calls ended.
fn ended(trace: &str) -> Vec<(String, String)> {
    let mut open: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if let Some(begun) = call.strip_suffix("<unfinished ...>") {
            open.push((pid.to_owned(), begun.to_owned()));
        } else if call.starts_with("<...") {
            let rest = call.split_once("resumed>").map_or("", |(_, r)| r);
            if let Some(at) = open.iter().position(|(p, _)| p == pid) {
                let (_, begun) = open.remove(at);
                out.push((pid.to_owned(), format!("{begun}{rest}")));
            }
        } else {
            out.push((pid.to_owned(), call.to_owned()));
        }
    }
    out
}

/// In a trace of [`ANSWERED`] with `-y`: that an `fdatasync` of a segment of `ledger` returned
/// before the first write to the caller carrying `marker`.
fn synced_before_written(trace: &str, ledger: &Path, marker: &str) -> Result<(), Failure> {
    let calls = ended(trace);
    let segments = s(&ledger.join("segments"));
    // To the caller: a pipe (a command's stdout) or a socket (a server's connection), never
    // a file such as the ledger's own segments.
    let to_caller = |c: &str| {
        let fd = c.split_once('(').map_or("", |(_, rest)| rest);
        let fd = fd.split_once(',').map_or(fd, |(fd, _)| fd);
        fd.contains("<pipe:[") || fd.contains("<socket:[") || fd.contains("<TCP")
    };
    let written = calls
        .iter()
        .position(|(_, c)| !c.starts_with("fdatasync") && to_caller(c) && c.contains(marker))
        .ok_or_else(|| {
            failed(format!(
                "the trace shows no write of the answer holding {marker:?}"
            ))
        })?;
    let synced = calls[..written]
        .iter()
        .any(|(_, c)| c.starts_with("fdatasync(") && c.contains(&segments) && c.ends_with("= 0"));
    ensure!(
        synced,
        "the answer holding {marker:?} was written before any fdatasync of {segments} returned: {:?}",
        calls[..written.min(calls.len())]
            .iter()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The system calls whose order [`synced_before_written`] reads.
const ANSWERED: &str = "trace=fdatasync,write,writev,sendto,sendmsg";

fn durable_before_answered(target: &Target) -> Result<(), Failure> {
    strace_available()?;
    let host = super::guest_host(target, OPEN)?;
    let ledger = host.data.path().join("ledger");
    // A command prints the result only once its entries are durable.
    let trace = host.files.path().join("invoke.trace");
    let out = s(&trace);
    let marker = "durable-before-answered-cli";
    let args = json!({ "text": marker }).to_string();
    let argv = ["invoke", "conformance", "echo", "--args", &args];
    let wrapper = [
        "strace", "-f", "-qq", "-y", "-s", "256", "-o", &out, "-e", ANSWERED,
    ];
    let run = host.run_command(host.command_under(&wrapper, &argv), &argv)?;
    run.expect(0, "invoke, traced")?;
    ensure!(
        run.stdout.contains(marker),
        "invoke must print the echo: {}",
        excerpt(&run.stdout)
    );
    let text = std::fs::read_to_string(&trace)
        .map_err(|e| failed(format!("cannot read the trace: {e}")))?;
    synced_before_written(&text, &ledger, marker)?;
    // A server sends the answer only once the invocation's entries are durable.
    if !target.owns_servers() {
        return Ok(());
    }
    let token = host
        .ok(&["token", "create", "--principal", "user:local"])?
        .trim()
        .to_owned();
    let trace = host.files.path().join("serve.trace");
    let out = s(&trace);
    let wrapper = [
        "strace", "-f", "-qq", "-y", "-s", "4096", "-o", &out, "-e", ANSWERED,
    ];
    let mut child = host
        .command_under(&wrapper, &["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start serve under strace: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        use std::io::BufRead as _;
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    let answer = line.trim().strip_prefix("listening on ").map(|url| {
        let marker = "durable-before-answered-http";
        crate::target::Server::client()
            .post(format!("{url}/v1/invoke"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(
                json!({
                    "capability": "conformance",
                    "function": "echo",
                    "args": { "text": marker },
                })
                .to_string(),
            )
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    });
    let _ = child.kill();
    let _ = child.wait();
    let (status, body) = match answer {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => return Err(failed(format!("POST /v1/invoke: {e}"))),
        None => {
            return Err(failed(format!(
                "serve under strace must first print `listening on URL`: {:?}",
                line.trim()
            )));
        }
    };
    ensure!(
        status == 200 && body.contains("durable-before-answered-http"),
        "POST /v1/invoke of an echo must answer 200 with it: {status} {}",
        excerpt(&body)
    );
    let text = std::fs::read_to_string(&trace)
        .map_err(|e| failed(format!("cannot read the trace: {e}")))?;
    synced_before_written(&text, &ledger, "durable-before-answered-http")
}

/// `args` run under `strace`, killed when it enters its `nth` rename (from 1).
fn killed_at_rename(host: &Host, args: &[&str], nth: usize) -> Result<Run, Failure> {
    let inject = format!("inject=rename,renameat,renameat2:signal=KILL:when={nth}");
    let wrapper = [
        "strace",
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=rename,renameat,renameat2",
        "-e",
        &inject,
    ];
    host.run_command(host.command_under(&wrapper, args), args)
}

/// The calls of a trace written with `-y`: paths in quotes, descriptors as `N</path>`.
fn calls(trace: &str) -> Vec<Call> {
    let mut out = Vec::new();
    for line in trace.lines() {
        // `PID call(…) = result`, or `PID call(… <unfinished ...>` when another thread
        // interleaves: the arguments are on the first line either way.
        let Some(call) = line.split_once(' ').map(|(_, rest)| rest.trim_start()) else {
            continue;
        };
        if call.starts_with("<...") || call.contains("= -1") {
            continue;
        }
        let name = call.split('(').next().unwrap_or("");
        match name {
            "fsync" | "fdatasync" => {
                if let Some(path) = call
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(path, _)| path)
                {
                    out.push(Call::Sync(PathBuf::from(path)));
                }
            }
            "rename" | "renameat" | "renameat2" => {
                let quoted = quoted_strings(call);
                if let [from, to, ..] = quoted.as_slice() {
                    out.push(Call::Rename(PathBuf::from(from), PathBuf::from(to)));
                }
            }
            "openat" if call.contains("O_WRONLY") || call.contains("O_RDWR") => {
                if let Some(path) = quoted_strings(call).into_iter().next() {
                    out.push(Call::OpenForWriting(PathBuf::from(path)));
                }
            }
            _ => {}
        }
    }
    out
}

/// The double-quoted strings of a traced call, in order (the paths this suite makes need no
/// escapes).
fn quoted_strings(call: &str) -> Vec<String> {
    call.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// How `path` was written in `calls`: it must be the target of a rename from a temporary file
/// of its directory, that file synced before the rename, and never be opened for writing
/// itself. The position of its rename among `calls`.
fn written_through_rename(calls: &[Call], path: &Path) -> Result<usize, Failure> {
    ensure!(
        !calls.contains(&Call::OpenForWriting(path.to_owned())),
        "{} must never be opened for writing in place: {calls:?}",
        path.display()
    );
    let (position, from) = calls
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, c)| match c {
            Call::Rename(from, to) if to == path => Some((i, from)),
            _ => None,
        })
        .ok_or_else(|| {
            failed(format!(
                "{} must be renamed into place, and is not: {calls:?}",
                path.display()
            ))
        })?;
    ensure!(
        from.parent() == path.parent() && from != path,
        "{} must be renamed from a temporary file of its own directory, not {}",
        path.display(),
        from.display()
    );
    ensure!(
        synced_before(calls, from, position),
        "{} must be synced before it is renamed to {}: {calls:?}",
        from.display(),
        path.display()
    );
    Ok(position)
}

/// Whether the bytes at `path` were synced before the call at `before`: synced there, or
/// renamed there from a file synced before.
fn synced_before(calls: &[Call], path: &Path, before: usize) -> bool {
    calls[..before].iter().enumerate().any(|(i, c)| match c {
        Call::Sync(synced) => synced == path,
        Call::Rename(from, to) => to == path && synced_before(calls, from, i),
        Call::OpenForWriting(_) => false,
    })
}

/// A host under [`OPEN`] with its data directory made (its first key, its ledger): what
/// later commands write is then theirs alone.
fn made_host(target: &Target) -> Result<Host, Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let greet: serde_json::Value = serde_json::from_str(GREET).unwrap_or_default();
    host.ok(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        &greet["args"].to_string(),
    ])?;
    Ok(host)
}

/// Whether `capability list --json` lists capability `conformance`.
fn listed(host: &Host) -> Result<bool, Failure> {
    let run = host.run(&["capability", "list", "--json"])?;
    run.expect(0, "capability list --json")?;
    let list = run.json()?;
    let entries = list
        .as_array()
        .or_else(|| list["capabilities"].as_array())
        .cloned()
        .unwrap_or_default();
    Ok(entries
        .iter()
        .any(|c| c["manifest"]["name"] == "conformance" || c["name"] == "conformance"))
}

/// `conformance.add` must run and answer 3.
fn adds(host: &Host, what: &str) -> Result<(), Failure> {
    let run = host.invoke("add", &json!({ "a": 1, "b": 2 }), &[])?;
    run.expect(0, what)?;
    ensure!(
        run.stdout.trim() == "3",
        "{what}: `add` of 1 and 2 must answer 3: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

fn package_written_whole(target: &Target) -> Result<(), Failure> {
    strace_available()?;
    let host = made_host(target)?;
    let wasm = s(&host.file("conformance.wasm", crate::GUEST)?);
    let manifest = s(&host.file("capability.toml", crate::GUEST_MANIFEST.as_bytes())?);
    let add = ["capability", "add", &wasm, "--manifest", &manifest];
    let (run, calls) = traced(&host, &add)?;
    run.expect(0, "capability add, traced")?;
    let versions = host.data.path().join("capabilities").join("conformance");
    let package = std::fs::read_dir(&versions)
        .ok()
        .and_then(|mut dir| dir.next())
        .and_then(Result::ok)
        .map(|e| e.path())
        .ok_or_else(|| failed(format!("no package under {}", versions.display())))?;
    // Every file of the package through a synced temporary file and a rename, the
    // component digest last.
    let mut digest_at = 0;
    let mut others = Vec::new();
    for file in [
        "component.wasm",
        "capability.toml",
        "manifest.sha256",
        "sha256",
    ] {
        let at = written_through_rename(&calls, &package.join(file))?;
        if file == "sha256" {
            digest_at = at;
        } else {
            others.push((file, at));
        }
    }
    ensure!(
        others.iter().all(|(_, at)| *at < digest_at),
        "the component digest `sha256` must be renamed into place after every other file of the package: {others:?} and sha256 at {digest_at}"
    );
    // Killed at each of the install's renames, the capability is either not installed (not
    // listed, not run) or installed whole (listed, and it runs); installing again then works.
    // The index's own renames come when they come, so which kill leaves which is not fixed;
    // a kill before every rename must leave it not installed.
    let renames = calls
        .iter()
        .filter(|c| matches!(c, Call::Rename(..)))
        .count();
    let mut outcomes = Vec::new();
    for nth in 1..=renames {
        let host = made_host(target)?;
        let wasm = s(&host.file("conformance.wasm", crate::GUEST)?);
        let manifest = s(&host.file("capability.toml", crate::GUEST_MANIFEST.as_bytes())?);
        let add = ["capability", "add", &wasm, "--manifest", &manifest];
        let run = killed_at_rename(&host, &add, nth)?;
        ensure!(
            run.code != 0,
            "capability add killed at its rename {nth} of {renames} must not succeed: {}",
            excerpt(&run.stdout)
        );
        let installed = listed(&host)?;
        if installed {
            adds(
                &host,
                &format!("the capability listed after a kill at rename {nth}"),
            )?;
        } else {
            let run = host.invoke("add", &json!({ "a": 1, "b": 2 }), &[])?;
            ensure!(
                run.code != 0,
                "killed at rename {nth}, the capability is not listed, so it must not run: {}",
                excerpt(&run.stdout)
            );
        }
        outcomes.push(installed);
        host.ok(&add)?;
        adds(
            &host,
            &format!("installed again after a kill at rename {nth}"),
        )?;
    }
    ensure!(
        outcomes.first() == Some(&false),
        "killed at its first rename, the install must leave nothing installed: {outcomes:?}"
    );
    Ok(())
}

fn key_written_whole(target: &Target) -> Result<(), Failure> {
    strace_available()?;
    let host = made_host(target)?;
    let key = host.data.path().join("keys").join("ledger-signing.key");
    let old = host.ok(&["key", "show"])?;
    let generate = ["key", "generate", "--name", "femtoclaw.local/ledger"];
    let (run, calls) = traced(&host, &generate)?;
    run.expect(0, "key generate, traced")?;
    // Through a synced temporary file and a rename, the directory synced after.
    let at = written_through_rename(&calls, &key)?;
    let dir = key.parent().map(Path::to_path_buf).unwrap_or_default();
    ensure!(
        calls[at..].contains(&Call::Sync(dir.clone())),
        "the directory {} must be synced after the key file is renamed into place: {calls:?}",
        dir.display()
    );
    let new = host.ok(&["key", "show"])?;
    ensure!(new != old, "key generate must rotate the key");
    // Killed at each of its renames, the key file is the old key or the new one, whole.
    let renames = calls
        .iter()
        .filter(|c| matches!(c, Call::Rename(..)))
        .count();
    for nth in 1..=renames {
        let host = made_host(target)?;
        let old = host.ok(&["key", "show"])?;
        let key = host.data.path().join("keys").join("ledger-signing.key");
        let before = std::fs::read(&key).unwrap_or_default();
        let run = killed_at_rename(&host, &generate, nth)?;
        ensure!(
            run.code != 0,
            "key generate killed at its rename {nth} of {renames} must not succeed"
        );
        let after = std::fs::read(&key).unwrap_or_default();
        let shown = host.run(&["key", "show"])?;
        shown.expect(
            0,
            &format!("key show after key generate was killed at rename {nth}"),
        )?;
        ensure!(
            after == before && shown.stdout == old
                || after.len() == before.len() && shown.stdout != old,
            "killed at rename {nth}, the key file must hold the old key or a new one whole: {} bytes before, {} after, shown {}",
            before.len(),
            after.len(),
            excerpt(&shown.stdout)
        );
        // And the ledger goes on: what is signed next is signed by the key the ledger
        // says is in force, and it verifies.
        let greet: serde_json::Value = serde_json::from_str(GREET).unwrap_or_default();
        host.ok(&[
            "invoke",
            "hello",
            "greet",
            "--args",
            &greet["args"].to_string(),
        ])?;
        host.run(&["log", "verify"])?.expect(
            0,
            &format!(
                "log verify after key generate was killed at rename {nth} and the host went on"
            ),
        )?;
    }
    Ok(())
}
