//! The engine's determinism and replay (specifications 7, 12, 27, 33, 49 and 59), through the
//! suite's guest: its probes reach the virtualized clocks, randomness, context and output
//! (`echo` of a text beginning with SOH `probe:`), and its `variant:*` probes do what two bytes
//! of its data say, so that the suite makes a component that behaves differently by changing
//! those bytes. The golden ledger kept with the sources is replayed with the test guest it was
//! recorded with, built by the suite's build script.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::sandbox::{last_invocation, numbers, of_invocation};
use super::{OPEN, failed, guest_host, hex, recorded_bytes, s, sha256, write};
use crate::target::{Host, Run, Server, excerpt};
use crate::{Case, Failure, GUEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.engine.gated-clocks-and-random",
        verifies: &["FC-EXEC-0503", "FC-EXEC-0504"],
        run: gated_clocks_and_random,
    },
    Case {
        name: "cli.engine.every-clock-and-random-function-gated",
        verifies: &["FC-EXEC-0503", "FC-EXEC-0504", "FC-SEC-1904"],
        run: every_clock_and_random_function_gated,
    },
    Case {
        name: "cli.engine.timers-trap",
        verifies: &["FC-EXEC-0505"],
        run: timers_trap,
    },
    Case {
        name: "cli.engine.closed-context",
        verifies: &["FC-EXEC-0506"],
        run: closed_context,
    },
    Case {
        name: "cli.engine.output-captured-and-recorded",
        verifies: &["FC-EXEC-0507"],
        run: output_captured_and_recorded,
    },
    Case {
        name: "cli.engine.changed-component-diverges",
        verifies: &["FC-CRYPTO-3813", "FC-CRYPTO-3814"],
        run: changed_component_diverges,
    },
    Case {
        name: "cli.engine.replay-finds-components-by-digest",
        verifies: &["FC-CRYPTO-3305"],
        run: replay_finds_components_by_digest,
    },
    Case {
        name: "cli.engine.cpu-features-left-unused",
        verifies: &[
            "FC-EXEC-0403",
            "FC-EXEC-0404",
            "FC-EXEC-0419",
            "FC-ABI-4707",
            "FC-ABI-4708",
            "FC-CRYPTO-3825",
        ],
        run: cpu_features_left_unused,
    },
    Case {
        name: "cli.engine.golden-ledger-replays",
        verifies: &["FC-EXEC-0519", "FC-CRYPTO-3824"],
        run: golden_ledger_replays,
    },
    Case {
        name: "http.engine.runaway-guests-ended",
        verifies: &["FC-CRYPTO-3503"],
        run: runaway_guests_ended,
    },
    Case {
        name: "http.engine.no-turn-in-time",
        verifies: &["FC-PERF-5809"],
        run: no_turn_in_time,
    },
    Case {
        name: "http.engine.invoke-spans",
        verifies: &["FC-CORE-0115"],
        run: invoke_spans,
    },
    Case {
        name: "cli.engine.deterministic-configuration",
        verifies: &["FC-EXEC-0502"],
        run: deterministic_engine,
    },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The text that makes the guest's `echo` run `probe`.
fn probe_text(probe: &str) -> String {
    format!("\u{1}probe:{probe}")
}

/// `invoke conformance echo` of a probe, with `extra` arguments.
fn probe(host: &Host, probe: &str, extra: &[&str]) -> Result<Run, Failure> {
    host.invoke("echo", &json!({ "text": probe_text(probe) }), extra)
}

/// The string a successful probe answered.
fn answer(run: &Run, what: &str) -> Result<String, Failure> {
    run.expect(0, what)?;
    run.json()?.as_str().map(str::to_owned).ok_or_else(|| {
        failed(format!(
            "{what}: the result is not a string: {}",
            run.stdout
        ))
    })
}

/// The entries of the last invocation.
fn last_entries(host: &Host) -> Result<Vec<Json>, Failure> {
    let entries = host.entries()?;
    let n = last_invocation(&entries)?;
    Ok(of_invocation(&entries, n).into_iter().cloned().collect())
}

/// Each host-call entry as `interface#function`.
fn call_names(calls: &[&Json]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            format!(
                "{}#{}",
                c["interface"].as_str().unwrap_or("?"),
                c["function"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn b64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The tag before the two bytes the guest's `variant:*` probes read.
const VARIANT_TAG: &[u8] = b"femtoclaw-conformance-variant:";

/// The guest with the two bytes after its variant tag set to `bytes`: the same code, behaving
/// as those bytes say. Fails unless the tag is in the component exactly once.
fn variant(bytes: [u8; 2]) -> Result<Vec<u8>, Failure> {
    let at = find(GUEST, VARIANT_TAG)
        .ok_or_else(|| failed("the suite's guest does not hold its variant tag"))?;
    ensure!(
        find(&GUEST[at + 1..], VARIANT_TAG).is_none(),
        "the suite's guest holds its variant tag twice"
    );
    let mut out = GUEST.to_vec();
    let start = at + VARIANT_TAG.len();
    ensure!(
        out.get(start..start + 2) == Some(&[0xff, 0xfe][..]),
        "the suite's guest does not hold ff fe after its variant tag"
    );
    out[start..start + 2].copy_from_slice(&bytes);
    Ok(out)
}

/// A directory of `files` under the host's files directory.
fn dir_with(host: &Host, name: &str, files: &[(&str, &[u8])]) -> Result<PathBuf, Failure> {
    let dir = host.files.path().join(name);
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot make {name}: {e}")))?;
    for (file, bytes) in files {
        write(&dir.join(file), bytes)?;
    }
    Ok(dir)
}

/// `log export FILE` (plus `extra`) of the host; the file.
fn export(host: &Host, name: &str, extra: &[&str]) -> Result<PathBuf, Failure> {
    let file = host.files.path().join(name);
    let path = s(&file);
    let mut args = vec!["log", "export", path.as_str()];
    args.extend_from_slice(extra);
    host.ok(&args)?;
    Ok(file)
}

/// The host's verifier key, as `key show` prints it.
fn key_of(host: &Host) -> Result<String, Failure> {
    Ok(host.ok(&["key", "show"])?.trim().to_owned())
}

/// `replay FILE --key KEY --json` (plus `extra`) on `on`.
fn replay(on: &Host, file: &Path, key: &str, extra: &[&str]) -> Result<Run, Failure> {
    let path = s(file);
    let mut args = vec!["replay", path.as_str(), "--key", key, "--json"];
    args.extend_from_slice(extra);
    on.run(&args)
}

/// The per-invocation reports of a `replay --json`.
fn reported(run: &Run) -> Result<Vec<Json>, Failure> {
    let report = run.json()?;
    report["invocations"].as_array().cloned().ok_or_else(|| {
        failed(format!(
            "replay --json lists no invocations: {}",
            excerpt(&run.stdout)
        ))
    })
}

fn statuses(invocations: &[Json]) -> Vec<String> {
    invocations
        .iter()
        .map(|i| i["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn write_config(host: &Host, text: &str) -> Result<(), Failure> {
    write(&host.data.path().join("femtoclaw.toml"), text.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Specification 7: what reaches the guest, and what is recorded of it.

fn gated_clocks_and_random(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let rounds = 3;
    let read_back = answer(
        &probe(&host, &format!("gated:{rounds}"), &[])?,
        "the gated probe",
    )?;
    // What the guest read, round by round: wall seconds, wall nanoseconds, monotonic, random.
    let mut seen = Vec::new();
    for round in read_back.split(';') {
        let parts: Vec<&str> = round.split(' ').collect();
        let numbers: Vec<u64> = parts
            .iter()
            .take(3)
            .filter_map(|p| p.parse().ok())
            .collect();
        ensure!(
            parts.len() == 4 && numbers.len() == 3 && parts[3].len() == 16,
            "the gated probe answered {read_back:?}"
        );
        seen.push((numbers, unhex(parts[3])));
    }
    ensure!(
        seen.len() == rounds,
        "the gated probe answered {read_back:?}"
    );
    let entries = last_entries(&host)?;
    let budget = entries
        .iter()
        .find(|e| e["type"] == "invocation-start")
        .and_then(|e| numbers(&e["fuel_budget"]).first().copied())
        .or_else(|| {
            entries
                .iter()
                .find(|e| e["type"] == "invocation-start")
                .and_then(|e| e["budget"].as_u64())
        });
    let mut calls: Vec<&Json> = entries
        .iter()
        .filter(|e| e["type"] == "host-call")
        .collect();
    calls.sort_by_key(|c| c["seq"].as_u64().unwrap_or(u64::MAX));
    let gated: Vec<&Json> = calls
        .iter()
        .copied()
        .filter(|c| {
            c["interface"]
                .as_str()
                .is_some_and(|i| i.starts_with("wasi:clocks/") || i.starts_with("wasi:random/"))
        })
        .collect();
    let named = call_names(&gated);
    let want: Vec<String> = (0..rounds)
        .flat_map(|_| {
            [
                "wasi:clocks/wall-clock@0.2.12#now",
                "wasi:clocks/monotonic-clock@0.2.12#now",
                "wasi:random/random@0.2.12#get-random-bytes",
            ]
        })
        .map(str::to_owned)
        .collect();
    ensure!(
        named == want,
        "every clock reading and random request must be one recorded host call, in the order made: {named:?} where {want:?} is required"
    );
    for (round, (numbers_read, bytes)) in seen.iter().enumerate() {
        let (wall, mono, random) = (gated[3 * round], gated[3 * round + 1], gated[3 * round + 2]);
        let wall_recorded = numbers(&wall["result"]);
        ensure!(
            wall_recorded.contains(&numbers_read[0]) && wall_recorded.contains(&numbers_read[1]),
            "round {round}: wall-clock.now is recorded as {} where the guest read {} s {} ns",
            wall["result"],
            numbers_read[0],
            numbers_read[1]
        );
        ensure!(
            numbers(&mono["result"]).contains(&numbers_read[2]),
            "round {round}: monotonic-clock.now is recorded as {} where the guest read {}",
            mono["result"],
            numbers_read[2]
        );
        let recorded = recorded_bytes(&random["result"]);
        ensure!(
            recorded.iter().any(|b| b == bytes),
            "round {round}: get-random-bytes is recorded as {} where the guest received {}",
            random["result"],
            hex(bytes)
        );
    }
    // The fuel left at each call: recorded, within the budget, never increasing; the work the
    // guest does between rounds shows as less fuel left.
    let mut left = Vec::new();
    for c in &calls {
        let Some(fuel) = c["fuel_remaining"].as_u64() else {
            return Err(failed(format!(
                "host call {} is recorded without the fuel left at it: {c}",
                c["seq"]
            )));
        };
        left.push(fuel);
    }
    ensure!(
        left.windows(2).all(|w| w[1] <= w[0]),
        "the fuel left at the host calls must never increase from one call to the next: {left:?}"
    );
    if let Some(budget) = budget {
        ensure!(
            left.first().is_some_and(|f| *f < budget),
            "the fuel left at the first call ({:?}) must be below the budget {budget}",
            left.first()
        );
    }
    let at_rounds: Vec<u64> = (0..rounds)
        .filter_map(|r| gated[3 * r]["fuel_remaining"].as_u64())
        .collect();
    ensure!(
        at_rounds.windows(2).all(|w| w[1] < w[0]),
        "the guest works between rounds, yet the fuel left at each round's first call does not fall: {at_rounds:?}"
    );
    // Two invocations get their own random bytes and clock readings, each the one recorded;
    // replayed elsewhere, the recorded ones reach the guest again: the result is reproduced.
    let again = answer(
        &probe(&host, &format!("gated:{rounds}"), &[])?,
        "the gated probe again",
    )?;
    ensure!(
        again != read_back,
        "two invocations read the same clocks and random bytes: {again:?}"
    );
    let file = export(&host, "gated.export", &["--with-components"])?;
    let elsewhere = target.host()?;
    let run = replay(&elsewhere, &file, &key_of(&host)?, &[])?;
    run.expect(0, "replay of the gated invocations")?;
    let report = reported(&run)?;
    ensure!(
        statuses(&report) == ["identical", "identical"],
        "the invocations that read the clocks and random bytes must replay identically from their recording: {}",
        excerpt(&run.stdout)
    );
    Ok(())
}

/// Every function of the clocks and random interfaces the host links, but the timers (which trap,
/// [`timers_trap`]), in the order the `every-source` probe calls them.
const SOURCES: &[&str] = &[
    "wasi:clocks/wall-clock@0.2.12#now",
    "wasi:clocks/wall-clock@0.2.12#resolution",
    "wasi:clocks/monotonic-clock@0.2.12#now",
    "wasi:clocks/monotonic-clock@0.2.12#resolution",
    "wasi:random/random@0.2.12#get-random-bytes",
    "wasi:random/random@0.2.12#get-random-u64",
    "wasi:random/insecure@0.2.12#get-insecure-random-bytes",
    "wasi:random/insecure@0.2.12#get-insecure-random-u64",
    "wasi:random/insecure-seed@0.2.12#insecure-seed",
];

fn every_clock_and_random_function_gated(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let read_back = answer(
        &probe(&host, "every-source", &[])?,
        "the every-source probe",
    )?;
    let answers: Vec<&str> = read_back.split(';').collect();
    ensure!(
        answers.len() == SOURCES.len(),
        "the every-source probe answered {read_back:?}"
    );
    let entries = last_entries(&host)?;
    let mut calls: Vec<&Json> = entries
        .iter()
        .filter(|e| e["type"] == "host-call")
        .collect();
    calls.sort_by_key(|c| c["seq"].as_u64().unwrap_or(u64::MAX));
    let named = call_names(&calls);
    // The stream write (and the `get-stdout` before it) are reviewed deterministic functions:
    // no host call of theirs is recorded.
    ensure!(
        named == SOURCES,
        "each clock and random function must be one recorded host call naming it, and the stdout write none: the invocation recorded {named:?} where {SOURCES:?} is required"
    );
    for ((function, call), read) in SOURCES.iter().zip(&calls).zip(&answers) {
        let recorded = numbers(&call["result"]);
        let bytes = recorded_bytes(&call["result"]);
        let holds = read.split(' ').all(|part| match part.parse::<u64>() {
            Ok(n) if part.len() != 16 || !function.contains("bytes") => recorded.contains(&n),
            _ => bytes.iter().any(|b| *b == unhex(part)),
        });
        ensure!(
            holds,
            "{function} is recorded as {} where the guest received {read}",
            call["result"]
        );
    }
    let left: Vec<Option<u64>> = calls.iter().map(|c| c["fuel_remaining"].as_u64()).collect();
    ensure!(
        left.iter().all(Option::is_some) && left.windows(2).all(|w| w[1] <= w[0]),
        "each call must be recorded with the fuel left at it, never increasing: {left:?}"
    );
    let end = entries
        .iter()
        .find(|e| e["type"] == "invocation-end")
        .ok_or_else(|| failed("the every-source invocation has no end"))?;
    ensure!(
        recorded_bytes(&end["stdout"])
            .iter()
            .any(|b| b == b"streamed")
            || end["stdout"].as_str() == Some("streamed"),
        "the stdout write must reach the captured output, recorded with the end: {}",
        end["stdout"]
    );
    // The timers: answered through the gate too, their trap the call's recorded answer.
    for (name, function) in [
        ("duration", "subscribe-duration"),
        ("instant", "subscribe-instant"),
    ] {
        probe(&host, name, &[])?.expect(5, &format!("a {function} timer"))?;
        let entries = last_entries(&host)?;
        let timers: Vec<&Json> = entries
            .iter()
            .filter(|e| {
                e["type"] == "host-call"
                    && e["interface"] == "wasi:clocks/monotonic-clock@0.2.12"
                    && e["function"] == function
            })
            .collect();
        ensure!(
            timers.len() == 1,
            "the {function} timer must be one recorded host call naming it: {entries:?}"
        );
    }
    Ok(())
}

fn timers_trap(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    for (name, function) in [
        ("duration", "subscribe-duration"),
        ("instant", "subscribe-instant"),
    ] {
        let begun = Instant::now();
        let run = probe(&host, name, &[])?;
        let took = begun.elapsed();
        run.expect(5, &format!("a {function} timer"))?;
        ensure!(
            run.stderr
                .contains("timers would make execution depend on wall-clock time")
                && run.stderr.contains(function),
            "a {function} timer must trap saying timers would make execution depend on wall-clock time: {}",
            excerpt(&run.stderr)
        );
        ensure!(
            !run.stdout.contains("waited") && took < Duration::from_secs(30),
            "a {function} timer was waited on: {} after {took:?}",
            excerpt(&run.stdout)
        );
        let entries = last_entries(&host)?;
        let traps: Vec<&Json> = entries.iter().filter(|e| e["type"] == "trap").collect();
        ensure!(
            traps.len() == 1
                && traps[0]["message"].as_str().is_some_and(|m| {
                    m.contains("timers would make execution depend on wall-clock time")
                }),
            "the invocation of a {function} timer must be recorded ending in its trap: {traps:?}"
        );
    }
    Ok(())
}

fn closed_context(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let want = [
        "env=0 args=0 cwd=none stdin=closed terminals=false,false,false",
        "env=0 args=0 cwd=none stdin=0 bytes terminals=false,false,false",
    ];
    let text = json!({ "text": probe_text("context") }).to_string();
    // The host's own environment, arguments and stdin are full; the guest's are not.
    let mut child = host
        .command(&["invoke", "conformance", "echo", "--args", &text])
        .env("FEMTOCLAW_CONFORMANCE_LEAK", "environment")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run invoke: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"stdin of the host\n");
    }
    let out = wait_bounded(child, Duration::from_secs(60))?;
    let seen = answer(&out, "the context probe")?;
    ensure!(
        want.contains(&seen.as_str()),
        "the guest must see no environment variable, no argument, an empty stdin and no terminal; it saw {seen:?}"
    );
    // On a terminal: the host's stdin, stdout and stderr a pseudo-terminal, the guest's not.
    // (With util-linux `script`, where there is one.)
    let script = std::process::Command::new("script")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("util-linux"));
    if script {
        let binary = match target {
            Target::Binary(binary) => binary.clone(),
            Target::Server { .. } => return Ok(()),
        };
        let shell_quote = |t: &str| format!("'{}'", t.replace('\'', r"'\''"));
        let command = format!(
            "{} invoke conformance echo --args {}",
            shell_quote(&s(&binary)),
            shell_quote(&text)
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("FEMTOCLAW_DATA_DIR", host.data.path())
            .env_remove("FEMTOCLAW_POLICY")
            .env_remove("FEMTOCLAW_TOKEN")
            .env_remove("FEMTOCLAW_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run script: {e}")))?;
        drop(child.stdin.take());
        let out = wait_bounded(child, Duration::from_secs(60))?;
        let printed = out.stdout.replace('\r', "");
        let line = printed
            .lines()
            .find(|l| l.contains("env="))
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned();
        ensure!(
            want.contains(&line.as_str()),
            "run on a terminal, the host must still give the guest no terminal and an empty stdin; it saw {line:?} (output {})",
            excerpt(&printed)
        );
    }
    Ok(())
}

/// Waits for `child` at most `limit`, its output collected.
fn wait_bounded(mut child: Child, limit: Duration) -> Result<Run, Failure> {
    let collect = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = collect(child.stderr.take().map(|p| Box::new(p) as _));
    let begun = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if begun.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("the command did not end within {limit:?}")));
            }
        }
    };
    Ok(Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn output_captured_and_recorded(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let (out, err) = ("o".repeat(10), "e".repeat(5));
    // Without --json: the result alone on stdout, nothing of the guest's output anywhere.
    let run = probe(&host, "print:10:5", &[])?;
    run.expect(0, "a guest writing to stdout and stderr")?;
    ensure!(
        run.stdout.trim() == "\"printed, 0 chunks refused\"",
        "the host must print the result alone, never the guest's output: stdout {}",
        excerpt(&run.stdout)
    );
    ensure!(
        !run.stderr.contains("ooooo") && !run.stderr.contains("eeeee"),
        "the guest's output reached the host's stderr: {}",
        excerpt(&run.stderr)
    );
    // Recorded with the invocation's end, as the bytes written.
    let entries = last_entries(&host)?;
    let last = entries.last().cloned().unwrap_or_default();
    ensure!(
        last["type"] == "invocation-end",
        "the invocation's last entry is {} where its invocation-end is required",
        last["type"]
    );
    ensure!(
        last["stdout"].as_str().and_then(b64) == Some(out.clone().into_bytes())
            && last["stderr"].as_str().and_then(b64) == Some(err.clone().into_bytes()),
        "the invocation-end must record the guest's stdout {out:?} and stderr {err:?}: {last}"
    );
    // Invalid UTF-8 is recorded as written, byte for byte.
    let run = probe(&host, "variant:output", &[])?;
    run.expect(0, "a guest writing invalid UTF-8")?;
    let entries = last_entries(&host)?;
    let end = entries
        .iter()
        .find(|e| e["type"] == "invocation-end")
        .cloned()
        .unwrap_or_default();
    ensure!(
        end["stdout"].as_str().and_then(b64) == Some(vec![0xff, 0xfe])
            && end["stderr"].as_str().and_then(b64) == Some(vec![0xfe, 0xff]),
        "the invocation-end must record stdout ff fe and stderr fe ff as written: {end}"
    );
    // A server prints none of it either.
    let own = Own::start(target, &host, "")?;
    let response = own.invoke(&json!({
        "capability": "conformance",
        "function": "echo",
        "args": { "text": probe_text("print:10:5") },
    }))?;
    ensure!(
        response.0 == 200,
        "POST /v1/invoke of a guest writing output: HTTP {}: {}",
        response.0,
        excerpt(&response.1)
    );
    std::thread::sleep(Duration::from_millis(300));
    let (stdout, stderr) = own.printed();
    ensure!(
        !stdout.contains("ooooo")
            && !stderr.contains("ooooo")
            && !stdout.contains("eeeee")
            && !stderr.contains("eeeee"),
        "the server printed the guest's output: stdout {}, stderr {}",
        excerpt(&stdout),
        excerpt(&stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 49: replay against a component that behaves differently.

fn changed_component_diverges(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // The recording: two invocations the change leaves alone, and one of each the change
    // touches (the result, the work before the first host call, the output's bytes).
    host.invoke("add", &json!({ "a": 40, "b": 2 }), &[])?
        .expect(0, "add")?;
    let result = answer(&probe(&host, "variant:result", &[])?, "variant:result")?;
    ensure!(result == "fffe", "variant:result answered {result:?}");
    answer(&probe(&host, "variant:fuel", &[])?, "variant:fuel")?;
    host.invoke("echo", &json!({ "text": "unchanged" }), &[])?
        .expect(0, "echo")?;
    answer(&probe(&host, "variant:output", &[])?, "variant:output")?;
    let key = key_of(&host)?;
    let bare = export(&host, "bare.export", &[])?;
    let elsewhere = target.host()?;
    // The control: the recorded bytes, found by digest, replay identically.
    let same = dir_with(&elsewhere, "same", &[("conformance.wasm", GUEST)])?;
    let run = replay(&elsewhere, &bare, &key, &["--components", &s(&same)])?;
    run.expect(0, "replay against the recorded component")?;
    let control = reported(&run)?;
    ensure!(
        statuses(&control) == ["identical"; 5],
        "against the recorded component every invocation must replay identically: {}",
        excerpt(&run.stdout)
    );
    // The same code with the two bytes swapped: fe ff for ff fe. As text both are two
    // replacement characters, so only a comparison of bytes tells the outputs apart.
    ensure!(
        String::from_utf8_lossy(&[0xff, 0xfe]) == String::from_utf8_lossy(&[0xfe, 0xff]),
        "the suite's two outputs differ as text"
    );
    let changed = variant([0xfe, 0xff])?;
    let other = dir_with(&elsewhere, "changed", &[("conformance.wasm", &changed)])?;
    let run = replay(&elsewhere, &bare, &key, &["--components", &s(&other)])?;
    run.expect(9, "replay against a component that behaves differently")?;
    let report = reported(&run)?;
    ensure!(
        statuses(&report)
            == [
                "identical",
                "divergent",
                "divergent",
                "identical",
                "divergent"
            ],
        "against the changed component add and echo must stay identical and the three changed behaviours diverge: {}",
        excerpt(&run.stdout)
    );
    let divergence = |i: usize| report[i]["divergence"].clone();
    let d = divergence(1);
    ensure!(
        d["class"] == "RESULT" && d["what"] == "result",
        "a different result must diverge as class RESULT with what `result`: {d}"
    );
    let d = divergence(2);
    ensure!(
        d["class"] == "FUEL" && d["seq"] == json!(0),
        "more work before the first host call must diverge as class FUEL at seq 0: {d}"
    );
    let d = divergence(4);
    ensure!(
        d["class"] == "RESULT" && d["what"] == "stdout",
        "stdout ff fe against fe ff (the same text, other bytes) must diverge as class RESULT with what `stdout`: {d}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 33: replay finds a component by its digest.

fn replay_finds_components_by_digest(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    host.invoke("add", &json!({ "a": 40, "b": 2 }), &[])?
        .expect(0, "add")?;
    let key = key_of(&host)?;
    let bare = export(&host, "bare.export", &[])?;
    let full = export(&host, "full.export", &["--with-components"])?;
    let identical = |run: &Run, what: &str| -> Result<Json, Failure> {
        run.expect(0, what)?;
        let report = reported(run)?;
        ensure!(
            statuses(&report) == ["identical"],
            "{what}: the invocation must replay identically: {}",
            excerpt(&run.stdout)
        );
        Ok(report[0].clone())
    };
    // In the export itself, on a data directory with no catalog.
    let elsewhere = target.host()?;
    let first = identical(
        &replay(&elsewhere, &full, &key, &[])?,
        "replay of an export with its components",
    )?;
    ensure!(
        first["replaced_component"].is_null(),
        "the recorded component found in the export is not a replacement: {first}"
    );
    // In the host's catalog.
    identical(
        &replay(&host, &bare, &key, &[])?,
        "replay of a bare export on the host whose catalog holds the component",
    )?;
    // Found nowhere: exit 10, naming the capability.
    let empty = dir_with(&elsewhere, "empty", &[])?;
    let run = replay(&elsewhere, &bare, &key, &["--components", &s(&empty)])?;
    run.expect(10, "replay with the recorded component found nowhere")?;
    ensure!(
        run.stderr.contains("conformance"),
        "a replay whose component is found nowhere must name the capability: {}",
        excerpt(&run.stderr)
    );
    // In a directory, under names that are not the capability's, among other components.
    let changed = variant([0x00, 0x00])?;
    let both = dir_with(
        &elsewhere,
        "renamed",
        &[("zz-any-name.bin", GUEST), ("another.wasm", &changed)],
    )?;
    let first = identical(
        &replay(&elsewhere, &bare, &key, &["--components", &s(&both)])?,
        "replay with the recorded component under another file name",
    )?;
    ensure!(
        first["replaced_component"].is_null(),
        "the component whose digest was recorded must be found by its digest, not reported replaced: {first}"
    );
    // Given in its place with other bytes: replayed, reported as replaced by their digest.
    let named = dir_with(&elsewhere, "named", &[("conformance.wasm", &changed)])?;
    let first = identical(
        &replay(&elsewhere, &bare, &key, &["--components", &s(&named)])?,
        "replay against other bytes named conformance.wasm",
    )?;
    let digest = hex(&sha256(&changed));
    ensure!(
        first["replaced_component"] == digest.as_str(),
        "other bytes given in place of the recorded component must be reported as replaced_component {digest}: {first}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 12 and 49: the golden ledger kept with the sources.

/// The golden export and its verifier key, as kept in `tests/golden/`.
const GOLDEN: &[u8] = include_bytes!("../../../../tests/golden/ledger.export");
const GOLDEN_KEY: &str = include_str!("../../../../tests/golden/ledger.key");

fn golden_ledger_replays(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    let file = host.file("golden.export", GOLDEN)?;
    let components = dir_with(&host, "components", &[("misbehave.wasm", crate::MISBEHAVE)])?;
    let run = host.run(&[
        "replay",
        &s(&file),
        "--key",
        GOLDEN_KEY.trim(),
        "--components",
        &s(&components),
    ])?;
    run.expect(0, "replay of the golden ledger")?;
    ensure!(
        run.stdout.contains("7 identical, 0 divergent, 1 refused"),
        "the golden ledger must replay `7 identical, 0 divergent, 1 refused`: {}",
        excerpt(&run.stdout)
    );
    let run = replay(
        &host,
        &file,
        GOLDEN_KEY.trim(),
        &["--components", &s(&components)],
    )?;
    run.expect(0, "replay --json of the golden ledger")?;
    let report = run.json()?;
    ensure!(
        report["identical"] == json!(7)
            && report["divergent"] == json!(0)
            && report["refused"] == json!(1),
        "the golden ledger's report must count 7 identical, 0 divergent, 1 refused: {}",
        excerpt(&run.stdout)
    );
    // Recorded by an earlier build with the engine digest the target's build records now.
    let now = guest_host(target, OPEN)?;
    now.invoke("add", &json!({ "a": 1, "b": 2 }), &[])?
        .expect(0, "add")?;
    let engine = last_entries(&now)?
        .iter()
        .find(|e| e["type"] == "invocation-start")
        .and_then(|e| e["engine_digest"].as_str().map(str::to_owned))
        .ok_or_else(|| failed("the invocation-start records no engine_digest"))?;
    let digest = unhex(&engine);
    ensure!(
        digest.len() == 32 && find(GOLDEN, &digest).is_some(),
        "the golden ledger was not recorded with the engine digest {engine} the target records"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specifications 4 and 47: CPU features left unused.

/// The variable of `engine.disabled_cpu_features`.
const CPU_FEATURES: &str = "FEMTOCLAW_ENGINE_DISABLED_CPU_FEATURES";

/// Every optional CPU feature flag of the compiler for the suite's architecture (the target's,
/// on the same machine), so that the compiled code uses a baseline instruction set whatever
/// this CPU has.
fn optional_cpu_features() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => {
            "has_sse3,has_ssse3,has_sse41,has_sse42,has_popcnt,has_avx,has_avx2,has_fma,has_bmi1,has_bmi2,has_lzcnt,has_avx512f,has_avx512vl,has_avx512dq,has_avx512bitalg,has_avx512vbmi"
        }
        "aarch64" => "has_lse,has_pauth,has_fp16",
        _ => "",
    }
}

/// The calls recorded on each engine: plain arithmetic, text through memory, a trap, gated
/// random bytes and clocks.
fn cpu_feature_calls(host: &Host, features: Option<&str>) -> Result<(), Failure> {
    let calls = [
        ("add", json!({ "a": -7, "b": 9_000_000_000i64 }), 0),
        ("echo", json!({ "text": "δοκιμή ✓" }), 0),
        ("echo", json!({ "text": probe_text("random:32") }), 0),
        ("echo", json!({ "text": probe_text("clocks") }), 0),
        ("divide", json!({ "a": 1, "b": 0 }), 5),
    ];
    for (function, args, code) in calls {
        let text = args.to_string();
        let argv = ["invoke", "conformance", function, "--args", &text];
        let mut command = host.command(&argv);
        if let Some(features) = features {
            command.env(CPU_FEATURES, features);
        }
        host.run_command(command, &argv)?.expect(
            code,
            &format!("{function} {text} (CPU features left unused: {features:?})"),
        )?;
    }
    Ok(())
}

/// The `engine_digest` of every invocation of the host's ledger.
fn engine_digests(host: &Host) -> Result<Vec<String>, Failure> {
    Ok(host
        .entries()?
        .iter()
        .filter(|e| e["entry"]["type"] == "invocation-start")
        .map(|e| {
            e["entry"]["engine_digest"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect())
}

/// The names of the compiled files of the cache of a host.
fn cached(host: &Host) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(host.data.path().join("cache"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cwasm"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn cpu_features_left_unused(target: &Target) -> Result<(), Failure> {
    let features = optional_cpu_features();
    if features.is_empty() {
        return Err(Failure::NotApplicable(format!(
            "the suite knows no CPU feature flag of {}",
            std::env::consts::ARCH
        )));
    }
    // What is not a CPU feature flag stops the host, naming the key and the flag.
    for (value, named) in [
        ("opt_level", "opt_level"),
        ("has_avx2,enable_simd", "enable_simd"),
        ("has_no_such_feature", "has_no_such_feature"),
    ] {
        let host = target.host()?;
        let argv = ["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#];
        let mut command = host.command(&argv);
        command.env(CPU_FEATURES, value);
        let run = host.run_command(command, &argv)?;
        ensure!(
            run.code == 2
                && run.stderr.contains(named)
                && run.stderr.contains("engine.disabled_cpu_features")
                && run.stdout.is_empty(),
            "{CPU_FEATURES}={value} must stop the host with exit 2, naming `engine.disabled_cpu_features` and `{named}`: exit {}, stdout {}, stderr {}",
            run.code,
            excerpt(&run.stdout),
            excerpt(&run.stderr)
        );
        ensure!(
            !host.data.path().join("ledger").exists()
                || host
                    .entries()?
                    .iter()
                    .all(|e| e["entry"]["type"] != "invocation-start"),
            "{CPU_FEATURES}={value}: no invocation may be recorded"
        );
    }
    // Recorded with the features left unused, replayed with all of them, and the other way
    // round: identical, fuel included, under one engine digest.
    let mut digests = Vec::new();
    for (recorder, replayer) in [(Some(features), None), (None, Some(features))] {
        let host = guest_host(target, OPEN)?;
        cpu_feature_calls(&host, recorder)?;
        let replayed = super::replays_under(target, &host, replayer.map(|f| (CPU_FEATURES, f)))?;
        ensure!(
            replayed == 5,
            "the 5 invocations recorded (CPU features left unused: {recorder:?}) must replay identical (left unused: {replayer:?}); {replayed} did"
        );
        digests.extend(engine_digests(&host)?);
    }
    ensure!(
        digests.len() == 10 && digests.iter().all(|d| d.len() == 64 && *d == digests[0]),
        "every invocation must record one engine digest, with the CPU features left unused or not: {digests:?}"
    );
    // The compile cache keeps the code of each apart: two files for the one component.
    let host = guest_host(target, OPEN)?;
    cpu_feature_calls(&host, None)?;
    let native = cached(&host);
    cpu_feature_calls(&host, Some(features))?;
    let both = cached(&host);
    let component = hex(&sha256(GUEST));
    let of_guest: Vec<&String> = both.iter().filter(|n| n.starts_with(&component)).collect();
    ensure!(
        of_guest.len() == 2 && native.iter().filter(|n| n.starts_with(&component)).count() == 1,
        "the compile cache must hold one `.cwasm` of the guest per CPU feature set (the cache key covers them): with all features {native:?}, then with some left unused {both:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A server of the case's own.

/// `serve` on a data directory the case prepared, its output kept.
struct Own {
    child: Child,
    url: String,
    token: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Own {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut bytes = Vec::new();
        while reader.read_until(b'\n', &mut bytes).is_ok_and(|n| n > 0) {
            if let Ok(mut text) = sink.lock() {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
            bytes.clear();
        }
    });
    text
}

impl Own {
    /// `serve --listen 127.0.0.1:0` on `host` with `config` as its `femtoclaw.toml` (none
    /// written when empty), and a token of `user:local`.
    fn start(target: &Target, host: &Host, config: &str) -> Result<Own, Failure> {
        Self::start_with(target, host, config, &[])
    }

    /// [`Own::start`] with `env` set for the server.
    fn start_with(
        target: &Target,
        host: &Host,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<Own, Failure> {
        if !target.owns_servers() {
            return Err(Failure::NotApplicable(
                "the case needs a server of its own".into(),
            ));
        }
        if !config.is_empty() {
            write_config(host, config)?;
        }
        let token = host
            .ok(&["token", "create", "--principal", "user:local"])?
            .trim()
            .to_owned();
        let mut child = host
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot start serve: {e}")))?;
        let stderr = drain(
            child
                .stderr
                .take()
                .ok_or_else(|| failed("no stderr pipe"))?,
        );
        let mut reader = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| failed("no stdout pipe"))?,
        );
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "serve must first print `listening on URL`; it printed {:?}",
                line.trim()
            )));
        };
        let stdout = drain(reader);
        Ok(Own {
            child,
            url,
            token,
            stdout,
            stderr,
        })
    }

    /// `POST /v1/invoke` of `body`: the status, the body and the `Retry-After` header.
    fn invoke(&self, body: &Json) -> Result<(u16, String, String), Failure> {
        post(&self.url, &self.token, body)
    }

    /// What the server printed so far.
    fn printed(&self) -> (String, String) {
        let get = |t: &Arc<Mutex<String>>| t.lock().map(|t| t.clone()).unwrap_or_default();
        (get(&self.stdout), get(&self.stderr))
    }

    /// The server's ledger entries from `from` on (`GET /v1/ledger/entries`, page by page).
    fn entries(&self, from: u64) -> Result<Vec<Json>, Failure> {
        let mut all: Vec<Json> = Vec::new();
        loop {
            let at = from + all.len() as u64;
            let response = Server::client()
                .get(format!(
                    "{}/v1/ledger/entries?from={at}&limit=1000",
                    self.url
                ))
                .bearer_auth(&self.token)
                .send()
                .map_err(|e| failed(format!("GET /v1/ledger/entries: {e}")))?;
            let text = response.text().unwrap_or_default();
            let body: Json = serde_json::from_str(&text).map_err(|e| {
                failed(format!(
                    "GET /v1/ledger/entries: not JSON ({e}): {}",
                    excerpt(&text)
                ))
            })?;
            let page = body["entries"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }
}

fn post(url: &str, token: &str, body: &Json) -> Result<(u16, String, String), Failure> {
    let response = Server::client()
        .post(format!("{url}/v1/invoke"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map_err(|e| failed(format!("POST /v1/invoke: no answer: {e}")))?;
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok((status, response.text().unwrap_or_default(), retry))
}

fn echo_probe(probe: &str, extra: Json) -> Json {
    let mut body = json!({
        "capability": "conformance",
        "function": "echo",
        "args": { "text": probe_text(probe) },
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn call_of(function: &str, args: Json, extra: Json) -> Json {
    let mut body = json!({ "capability": "conformance", "function": function, "args": args });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

// ---------------------------------------------------------------------------------------------
// Specification 59: a guest that does not stop by itself.

fn runaway_guests_ended(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    let own = Own::start(
        target,
        &host,
        "[limits]\nmax_fuel = 100000000000\ndeadline_ms = 60000\n",
    )?;
    let healthy = |what: &str| -> Result<(), Failure> {
        let (status, text, _) =
            own.invoke(&call_of("add", json!({ "a": 40, "b": 2 }), json!({})))?;
        let body: Json = serde_json::from_str(&text).unwrap_or_default();
        ensure!(
            status == 200 && body["result"] == json!(42),
            "after {what}, the next invocation must run as before: HTTP {status}: {}",
            excerpt(&text)
        );
        Ok(())
    };
    healthy("nothing")?;
    let runaways: [(&str, Json, &str, &str); 5] = [
        (
            "a loop",
            call_of("spin", json!({}), json!({ "fuel": 20_000_000 })),
            "fuel-exhausted",
            "",
        ),
        (
            "a loop with a deadline",
            call_of(
                "spin",
                json!({}),
                json!({ "fuel": 100_000_000_000u64, "deadline_ms": 300 }),
            ),
            "deadline",
            "",
        ),
        (
            "memory growing",
            echo_probe("grow", json!({ "fuel": 100_000_000_000u64 })),
            "limit",
            "memory",
        ),
        (
            "a recursion",
            echo_probe("recurse:100000000", json!({ "fuel": 100_000_000_000u64 })),
            "limit",
            "stack",
        ),
        (
            "host work without end",
            echo_probe("logs:1000000000", json!({ "fuel": 3_000_000 })),
            "",
            "",
        ),
    ];
    for (what, body, kind, names) in runaways {
        let mark = own.entries(0)?.len() as u64;
        let begun = Instant::now();
        let (status, text, _) = own.invoke(&body)?;
        let took = begun.elapsed();
        ensure!(
            status != 200 && took < Duration::from_secs(60),
            "{what} must be ended: HTTP {status} after {took:?}: {}",
            excerpt(&text)
        );
        let entries = own.entries(mark)?;
        let traps: Vec<Json> = entries
            .iter()
            .map(|e| e.get("entry").cloned().unwrap_or_else(|| e.clone()))
            .filter(|e| e["type"] == "trap")
            .collect();
        let kinds: Vec<&str> = traps.iter().filter_map(|t| t["kind"].as_str()).collect();
        let fits = |t: &Json| {
            let k = t["kind"].as_str().unwrap_or("");
            let kind_fits = if kind.is_empty() {
                ["fuel-exhausted", "limit", "deadline"].contains(&k)
            } else {
                k == kind
            };
            kind_fits && t["message"].as_str().is_some_and(|m| m.contains(names))
        };
        ensure!(
            traps.len() == 1 && fits(&traps[0]),
            "{what} must be recorded as the invocation's trap of kind {}: the traps recorded are {kinds:?} ({traps:?})",
            if kind.is_empty() {
                "fuel-exhausted, limit or deadline"
            } else {
                kind
            }
        );
        healthy(what)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 58: a request that gets no turn in time.

fn no_turn_in_time(target: &Target) -> Result<(), Failure> {
    let timeout = Duration::from_millis(1500);
    // One place, and a request that holds it past the others' time: a spin, whose own time
    // is the request's, behind the compilation of its component (the compile cache emptied),
    // which the request's time does not bound. The one that waits behind it gets no turn.
    for attempt in 1..=3 {
        let host = guest_host(target, OPEN)?;
        if let Ok(read) = std::fs::read_dir(host.data.path().join("cache")) {
            for file in read.flatten() {
                let _ = std::fs::remove_file(file.path());
            }
        }
        let own = Own::start(
            target,
            &host,
            &format!(
                "[server]\nconcurrency = 1\nqueue = 4\nrequest_timeout_ms = {}\n\n[limits]\nmax_fuel = 100000000000000\n",
                timeout.as_millis()
            ),
        )?;
        let mark = own.entries(0)?.len() as u64;
        let (url, token) = (own.url.clone(), own.token.clone());
        let holder = std::thread::spawn(move || {
            let begun = Instant::now();
            let answer = post(
                &url,
                &token,
                &call_of("spin", json!({}), json!({ "fuel": 100_000_000_000_000u64 })),
            );
            answer.map(|a| (a, begun.elapsed()))
        });
        std::thread::sleep(Duration::from_millis(25));
        let begun = Instant::now();
        let waiter = own.invoke(&call_of("add", json!({ "a": 1, "b": 2 }), json!({})))?;
        let waiter = (waiter, begun.elapsed());
        let holder = holder
            .join()
            .map_err(|_| failed("the holding request's thread failed"))??;
        // The one refused is the one that waited: the add, or, had it taken the place first
        // on a slow machine, the spin.
        let (((status, text, retry), waited), function, other) = if holder.0.0 == 503 {
            (holder, "spin", waiter)
        } else {
            (waiter, "add", holder)
        };
        ensure!(
            other.0.0 != 503,
            "with one place, both requests were refused: {} and {}",
            excerpt(&text),
            excerpt(&other.0.1)
        );
        // An add served must have had its turn in time: it runs in microseconds.
        let add = if function == "add" {
            (status, waited)
        } else {
            (other.0.0, other.1)
        };
        ensure!(
            add.0 != 200 || add.1 < timeout + Duration::from_millis(300),
            "a request that waited {:?}, longer than server.request_timeout_ms = {}, was served instead of refused",
            add.1,
            timeout.as_millis()
        );
        ensure!(
            add.0 == 200 || add.0 == 503,
            "the add waiting for the one place must be served in time or refused 503 `busy`: HTTP {}: {}",
            add.0,
            excerpt(if function == "add" { &text } else { &other.0.1 })
        );
        if status != 503 {
            // Each had its turn in time: the holder did not outlast the other. Try again.
            if attempt < 3 {
                continue;
            }
            return Err(failed(format!(
                "in three tries no request waited past server.request_timeout_ms behind a spin compiling its component (the last waited {waited:?}: HTTP {status})"
            )));
        }
        if function == "add" {
            ensure!(
                other.0.0 == 422 && other.0.1.contains("deadline"),
                "the spin holding the place must end at the request's time with `deadline`: HTTP {}: {}",
                other.0.0,
                excerpt(&other.0.1)
            );
        }
        let document: Json = serde_json::from_str(&text).unwrap_or_default();
        ensure!(
            document["code"] == "busy"
                && document["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("server.request_timeout_ms")),
            "a request that got no turn within server.request_timeout_ms must be refused 503 `busy` naming the setting: HTTP {status}: {}",
            excerpt(&text)
        );
        ensure!(
            retry == "1",
            "the 503 `busy` refusal's Retry-After is {retry:?} where 1 is required"
        );
        ensure!(
            waited + Duration::from_millis(100) >= timeout,
            "the request was refused after {waited:?}, before its {} ms were up",
            timeout.as_millis()
        );
        // Recorded as the other `busy` refusals are: a refused invocation of the call asked,
        // its `limit` trap naming the limit.
        let entries: Vec<Json> = own
            .entries(mark)?
            .iter()
            .map(|e| e.get("entry").cloned().unwrap_or_else(|| e.clone()))
            .collect();
        let trap = entries.iter().find(|e| {
            e["type"] == "trap"
                && e["kind"] == "limit"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("server.request_timeout_ms"))
        });
        let Some(trap) = trap else {
            return Err(failed(format!(
                "the 503 refusal is not recorded as a `limit` trap naming server.request_timeout_ms: {}",
                excerpt(&Json::Array(entries.clone()).to_string())
            )));
        };
        let refused = trap["invocation"].clone();
        ensure!(
            entries.iter().any(|e| e["type"] == "invocation-start"
                && e["invocation"] == refused
                && e["function"] == function),
            "the limit trap is not of an invocation of the refused call ({function}): {trap}"
        );
        ensure!(
            !entries.iter().any(|e| e["type"] == "invocation-end"
                && e["invocation"] == refused
                && !e["result"].is_null()),
            "the refused invocation is recorded with a result: {}",
            excerpt(&Json::Array(entries.clone()).to_string())
        );
        // The server serves again.
        let (status, text, _) =
            own.invoke(&call_of("add", json!({ "a": 1, "b": 2 }), json!({})))?;
        ensure!(
            status == 200,
            "after the refusal the server must serve again: HTTP {status}: {}",
            excerpt(&text)
        );
        return Ok(());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Specification 1: every invocation in a `femtoclaw.invoke` span.

fn invoke_spans(target: &Target) -> Result<(), Failure> {
    use super::operations::{Answer, Any, QUICK_EXPORT, Receiver, telemetry_config};
    let receiver = Receiver::start(Answer::Promptly)?;
    let host = guest_host(target, OPEN)?;
    let nobody = host
        .ok(&[
            "token",
            "create",
            "--principal",
            "agent:nobody",
            "--name",
            "nobody",
        ])?
        .trim()
        .to_owned();
    let own = Own::start_with(
        target,
        &host,
        &format!(
            "{}\n[limits]\nmax_fuel = 100000000000\n",
            telemetry_config(&receiver.url)
        ),
        &QUICK_EXPORT,
    )?;
    // One of each ending: a return, a trap, fuel exhausted, a limit, a deadline, a denial.
    let calls: [(Json, &str, &str, &str); 6] = [
        (
            call_of("add", json!({ "a": 40, "b": 2 }), json!({})),
            "add",
            "ok",
            "",
        ),
        (
            call_of("divide", json!({ "a": 1, "b": 0 }), json!({})),
            "divide",
            "trapped",
            "",
        ),
        (
            call_of("spin", json!({}), json!({ "fuel": 1_000_000 })),
            "spin",
            "fuel-exhausted",
            "",
        ),
        (
            echo_probe("recurse:100000000", json!({ "fuel": 100_000_000_000u64 })),
            "echo",
            "limit",
            "",
        ),
        (
            call_of(
                "spin",
                json!({}),
                json!({ "fuel": 100_000_000_000u64, "deadline_ms": 200 }),
            ),
            "spin",
            "deadline",
            "",
        ),
        (
            call_of("add", json!({ "a": 1, "b": 1 }), json!({})),
            "add",
            "denied",
            "nobody",
        ),
    ];
    for (body, function, outcome, who) in &calls {
        let token = if who.is_empty() { &own.token } else { &nobody };
        let (status, text, _) = post(&own.url, token, body)?;
        ensure!(
            (status == 200) == (*outcome == "ok"),
            "{function} ({outcome}): HTTP {status}: {}",
            excerpt(&text)
        );
    }
    let entries: Vec<Json> = own
        .entries(0)?
        .into_iter()
        .map(|e| e.get("entry").cloned().unwrap_or(e))
        .collect();
    let starts: Vec<&Json> = entries
        .iter()
        .filter(|e| e["type"] == "invocation-start")
        .collect();
    ensure!(
        starts.len() == calls.len(),
        "the ledger starts {} invocations where {} were asked for",
        starts.len(),
        calls.len()
    );
    let begun = Instant::now();
    loop {
        let spans = receiver.spans("/v1/traces");
        let mut problems = Vec::new();
        for ((_, function, outcome, _), start) in calls.iter().zip(&starts) {
            let n = start["invocation"].as_u64().unwrap_or(u64::MAX);
            let Some(span) = spans.iter().find(|s| {
                s.name == "femtoclaw.invoke"
                    && s.int("femtoclaw.invocation") == i64::try_from(n).ok()
            }) else {
                problems.push(format!(
                    "invocation {n} ({function}, {outcome}) has no femtoclaw.invoke span"
                ));
                continue;
            };
            let consumed = entries
                .iter()
                .filter(|e| {
                    e["invocation"].as_u64() == Some(n)
                        && (e["type"] == "invocation-end" || e["type"] == "trap")
                })
                .find_map(|e| e["fuel_consumed"].as_u64())
                .unwrap_or(0);
            let int = |v: Option<u64>| {
                v.and_then(|v| i64::try_from(v).ok())
                    .map_or(Any::Other, Any::Int)
            };
            let text = |v: &Json| Any::Text(v.as_str().unwrap_or("?").to_owned());
            for (key, want) in [
                ("femtoclaw.capability", text(&start["capability"])),
                ("femtoclaw.capability.version", text(&start["version"])),
                ("femtoclaw.function", Any::Text((*function).to_owned())),
                ("femtoclaw.principal", text(&start["principal"])),
                ("femtoclaw.invocation", int(Some(n))),
                ("femtoclaw.fuel.budget", int(start["fuel_budget"].as_u64())),
                ("femtoclaw.fuel.consumed", int(Some(consumed))),
                ("femtoclaw.outcome", Any::Text((*outcome).to_owned())),
            ] {
                // A refused invocation did not run: it consumed no fuel, and may carry none.
                let refused = *outcome == "denied" && key == "femtoclaw.fuel.consumed";
                if refused && matches!(span.attribute(key), None | Some(Any::Int(0))) {
                    continue;
                }
                if span.attribute(key) != Some(&want) {
                    problems.push(format!(
                        "invocation {n} ({function}, {outcome}): its femtoclaw.invoke span carries {key} = {:?} where {want:?} is required",
                        span.attribute(key)
                    ));
                }
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        if begun.elapsed() > Duration::from_secs(15) {
            return Err(failed(problems.join("; ")));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Specification 7: the engine's deterministic configuration.

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

fn sleb(mut n: i64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0) {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb(body.len() as u64));
    out.extend_from_slice(body);
    out
}

fn wasm_name(text: &str) -> Vec<u8> {
    let mut out = leb(text.len() as u64);
    out.extend_from_slice(text.as_bytes());
    out
}

/// A component of the suite's own, written byte by byte, importing nothing: its core module
/// has one function per `(name, body)` of type `[] -> [i32]` (and the memory section `memory`,
/// if any), each lifted with the canonical options `options` as `name: func() -> u32`.
fn tiny_component(functions: &[(&str, Vec<u8>)], memory: Option<&[u8]>, options: &[u8]) -> Vec<u8> {
    let n = functions.len() as u64;
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(section(1, &[0x01, 0x60, 0x00, 0x01, 0x7f]));
    let mut types = leb(n);
    types.extend(std::iter::repeat_n(0x00, functions.len()));
    module.extend(section(3, &types));
    if let Some(memory) = memory {
        module.extend(section(5, memory));
    }
    let mut exports = leb(n);
    let mut code = leb(n);
    for (i, (name, body)) in functions.iter().enumerate() {
        exports.extend(wasm_name(name));
        exports.push(0x00);
        exports.extend(leb(i as u64));
        let mut function = vec![0x00];
        function.extend_from_slice(body);
        function.push(0x0b);
        code.extend(leb(function.len() as u64));
        code.extend(function);
    }
    module.extend(section(7, &exports));
    module.extend(section(10, &code));
    let mut c = b"\0asm\x0d\x00\x01\x00".to_vec();
    c.extend(section(1, &module));
    c.extend(section(2, &[0x01, 0x00, 0x00, 0x00]));
    let mut aliases = leb(n);
    let mut lifts = leb(n);
    let mut lifted = leb(n);
    for (i, (name, _)) in functions.iter().enumerate() {
        aliases.extend([0x00, 0x00, 0x01, 0x00]);
        aliases.extend(wasm_name(name));
        lifts.extend([0x00, 0x00]);
        lifts.extend(leb(i as u64));
        lifts.extend_from_slice(options);
        lifts.push(0x00);
        lifted.push(0x00);
        lifted.extend(wasm_name(name));
        lifted.push(0x01);
        lifted.extend(leb(i as u64));
        lifted.push(0x00);
    }
    c.extend(section(6, &aliases));
    c.extend(section(7, &[0x01, 0x40, 0x00, 0x00, 0x79]));
    c.extend(section(8, &lifts));
    c.extend(section(11, &lifted));
    c
}

/// `f32.reinterpret_i32(i32.const bits)`.
fn f32_bits(bits: u32) -> Vec<u8> {
    let mut out = vec![0x41];
    out.extend(sleb(i64::from(bits as i32)));
    out.push(0xbe);
    out
}

fn f32_const(value: f32) -> Vec<u8> {
    let mut out = vec![0x43];
    out.extend(value.to_le_bytes());
    out
}

/// Installs `component` as `name` under a manifest of its own: the command's outcome.
fn add_component(host: &Host, name: &str, component: &[u8]) -> Result<Run, Failure> {
    let wasm = host.file(&format!("{name}.wasm"), component)?;
    let manifest = host.file(
        &format!("{name}.toml"),
        format!("name = \"{name}\"\nversion = \"1.0.0\"\nfuel = 1_000_000\n").as_bytes(),
    )?;
    host.run(&["capability", "add", &s(&wasm), "--manifest", &s(&manifest)])
}

fn deterministic_engine(target: &Target) -> Result<(), Failure> {
    let host = guest_host(target, OPEN)?;
    // NaN canonicalization: a NaN computed, or one with a payload and either sign carried
    // through arithmetic, comes out as the canonical positive quiet NaN.
    let trunc_of = |lane: Vec<u8>| {
        let mut body = lane;
        body.extend([0xfd, 0x13]); // f32x4.splat
        body.push(0xfd);
        body.extend(leb(0x101)); // i32x4.relaxed_trunc_f32x4_s
        body.extend([0xfd, 0x1b, 0x00]); // i32x4.extract_lane 0
        body
    };
    let mut div = f32_const(0.0);
    div.extend(f32_const(0.0));
    div.extend([0x95, 0xbc]); // f32.div, i32.reinterpret_f32
    let carried = |bits: u32| {
        let mut body = f32_bits(bits);
        body.extend(f32_const(1.0));
        body.extend([0x92, 0xbc]); // f32.add, i32.reinterpret_f32
        body
    };
    let mut wide = vec![0x42];
    wide.extend(sleb(0x7ff4_0000_0000_0001_u64 as i64));
    wide.push(0xbf); // f64.reinterpret_i64
    wide.push(0x44);
    wide.extend(1.0f64.to_le_bytes());
    wide.extend([0xa0, 0xbd, 0x42, 0x20, 0x88, 0xa7]); // f64.add, i64.reinterpret, >> 32, wrap
    let functions = [
        ("nan-div", div),
        ("nan-payload", carried(0x7fa0_0001)),
        ("nan-negative", carried(0xffa0_0001)),
        ("nan-wide", wide),
        // Relaxed SIMD, deterministic: the truncation of NaN and of 3e9 saturates as
        // `i32x4.trunc_sat_f32x4_s` does, whatever the CPU's own instruction gives.
        ("relaxed-nan", trunc_of(f32_bits(0x7fc0_0000))),
        ("relaxed-big", trunc_of(f32_const(3e9))),
    ];
    add_component(&host, "floats", &tiny_component(&functions, None, &[0x00]))?.expect(
        0,
        "capability add of a component computing NaNs and relaxed SIMD",
    )?;
    for (function, want) in [
        ("nan-div", 0x7fc0_0000u64),
        ("nan-payload", 0x7fc0_0000),
        ("nan-negative", 0x7fc0_0000),
        ("nan-wide", 0x7ff8_0000),
        ("relaxed-nan", 0),
        ("relaxed-big", 0x7fff_ffff),
    ] {
        let run = host.run(&["invoke", "floats", function])?;
        run.expect(0, &format!("floats.{function}"))?;
        let got = run.json()?.as_u64();
        ensure!(
            got == Some(want),
            "floats.{function} answered {} where {want:#x} is required ({})",
            got.map_or_else(|| run.stdout.trim().to_owned(), |g| format!("{g:#x}")),
            if function.starts_with("nan") {
                "NaNs must be canonicalized"
            } else {
                "relaxed SIMD must be deterministic"
            }
        );
    }
    // No threads, no shared memory, no component-model concurrency: each refused by name.
    for (name, component, needle) in [
        (
            "shared-memory",
            tiny_component(
                &[("f", vec![0x41, 0x00])],
                Some(&[0x01, 0x03, 0x01, 0x01]),
                &[0x00],
            ),
            "thread",
        ),
        (
            "atomics",
            tiny_component(
                &[("f", vec![0xfe, 0x03, 0x00, 0x41, 0x00])],
                Some(&[0x01, 0x00, 0x01]),
                &[0x00],
            ),
            "thread",
        ),
        (
            "async-lift",
            tiny_component(&[("f", vec![0x41, 0x00])], None, &[0x01, 0x06]),
            "async",
        ),
    ] {
        let run = add_component(&host, name, &component)?;
        let refused = if run.code == 0 {
            host.run(&["invoke", name, "f"])?
        } else {
            run
        };
        ensure!(
            refused.code != 0 && refused.stderr.contains(needle),
            "a component using {name} must be refused, naming {needle:?}: exit {}: {}",
            refused.code,
            excerpt(&refused.stderr)
        );
    }
    // A fixed stack limit: the deepest recursion that runs is found, and it is the same on
    // the command line, again, and in a server.
    let deep = |depth: u64| -> Result<bool, Failure> {
        let run = probe(
            &host,
            &format!("recurse:{depth}"),
            &["--fuel", "10000000000"],
        )?;
        match run.code {
            0 => Ok(true),
            6 if run.stderr.contains("stack") => Ok(false),
            _ => Err(failed(format!(
                "a recursion {depth} frames deep: exit {}: {}",
                run.code,
                excerpt(&run.stderr)
            ))),
        }
    };
    let (mut low, mut high) = (1_000u64, 4_000_000u64);
    ensure!(
        deep(low)? && !deep(high)?,
        "a recursion {low} frames deep must run and one {high} deep overflow the stack"
    );
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if deep(middle)? {
            low = middle;
        } else {
            high = middle;
        }
    }
    ensure!(
        deep(low)? && !deep(high)?,
        "the stack limit moved between runs: {low} frames ran, then did not, or {high} overflowed, then did not"
    );
    let own = Own::start(target, &host, "")?;
    for (depth, runs) in [(low, true), (high, false)] {
        let (status, text, _) = own.invoke(&echo_probe(
            &format!("recurse:{depth}"),
            json!({ "fuel": 10_000_000_000u64 }),
        ))?;
        ensure!(
            (status == 200) == runs && (runs || text.contains("stack")),
            "in a server a recursion {depth} frames deep must {} as on the command line: HTTP {status}: {}",
            if runs { "run" } else { "overflow the stack" },
            excerpt(&text)
        );
    }
    Ok(())
}
