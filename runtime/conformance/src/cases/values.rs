//! Cases of specification 7: values between JSON and WIT through a real component (the suite's
//! `types` guest, which takes and returns every WIT value type), and the same values as the
//! ledger records them.

use serde_json::{Value as Json, json};

use super::execution::add;
use crate::format::{encode, parse_export};
use crate::target::{Host, excerpt};
use crate::{Case, Failure, TYPES_GUEST, Target, ensure};

pub const CASES: &[Case] = &[
    Case {
        name: "cli.values.round-trip",
        verifies: &[
            "FC-EXEC-0701",
            "FC-EXEC-0703",
            "FC-EXEC-0704",
            "FC-EXEC-0705",
            "FC-EXEC-0706",
        ],
        run: round_trip,
    },
    Case {
        name: "cli.values.ledger-forms",
        verifies: &["FC-EXEC-0716", "FC-EXEC-0719"],
        run: ledger_forms,
    },
];

/// A fresh host with the `types` guest installed as capability `types`.
fn types_host(target: &Target) -> Result<Host, Failure> {
    let host = target.host()?;
    host.policy(super::OPEN)?;
    let manifest = "name = \"types\"\nversion = \"0.1.0\"\nfuel = 100_000_000\n";
    add(&host, "types.wasm", TYPES_GUEST, Some(manifest))?
        .expect(0, "capability add of the types guest")?;
    Ok(host)
}

/// `invoke types FUNCTION --args ARGS`: exit 0 and its result.
fn call(host: &Host, function: &str, args: &str) -> Result<Json, Failure> {
    let run = host.run(&["invoke", "types", function, "--args", args])?;
    run.expect(0, &format!("invoke types {function} --args {args}"))?;
    run.json()
}

/// Fails unless `function` of `args` answers `expected`.
fn answers(host: &Host, function: &str, args: &Json, expected: &Json) -> Result<(), Failure> {
    let got = call(host, function, &args.to_string())?;
    ensure!(
        &got == expected,
        "types.{function} of {} answered {} where {} is required",
        excerpt(&args.to_string()),
        excerpt(&got.to_string()),
        excerpt(&expected.to_string())
    );
    Ok(())
}

/// A value of the guest's `everything` record, every field in its produced form, with the
/// sum-type arms and the empty forms `arm` picks.
fn everything(arm: usize) -> Json {
    let shapes = [
        json!({ "circle": 1.5 }),
        json!({ "rect": [{ "x": -1, "y": 2 }, { "x": 3, "y": -4 }] }),
        json!({ "empty": null }),
    ];
    let options = [json!(null), json!("some text")];
    let nested = [json!(null), json!({ "some": null }), json!({ "some": 7 })];
    let results = [json!({ "ok": 4_000_000_000u32 }), json!({ "err": "no" })];
    let units = [json!({ "ok": null }), json!({ "err": null })];
    let flags = [
        json!([]),
        json!(["read", "write", "exec"]),
        json!(["write"]),
    ];
    let lists = [json!([]), json!([0, 1, 4_294_967_295u32])];
    let floats = [
        (json!(0.5), json!(-2.25)),
        (json!("NaN"), json!("Infinity")),
        (json!("-Infinity"), json!(1e300)),
    ];
    json!({
        "b": arm.is_multiple_of(2),
        "u8v": ([0, 255, 7][arm % 3]),
        "s8v": ([-128, 127, 0][arm % 3]),
        "u16v": ([65535, 0, 1][arm % 3]),
        "s16v": ([-32768, 32767, -1][arm % 3]),
        "u32v": ([4_294_967_295u32, 0, 1][arm % 3]),
        "s32v": ([i32::MIN, i32::MAX, 0][arm % 3]),
        "u64v": ([u64::MAX, 0, 1][arm % 3]),
        "s64v": ([i64::MIN, i64::MAX, -1][arm % 3]),
        "f32v": (floats[arm % 3].0),
        "f64v": (floats[arm % 3].1),
        "c": (["a", "é", "🦀"][arm % 3]),
        "s": (["", "text with \"quotes\" and\nlines", "ünïcödé"][arm % 3]),
        "l": (lists[arm % 2]),
        "p": { "x": arm as i64, "y": -(arm as i64) },
        "t": ["tuple", arm],
        "v": (shapes[arm % 3]),
        "e": (["red", "green", "blue"][arm % 3]),
        "o": (options[arm % 2]),
        "oo": (nested[arm % 3]),
        "r": (results[arm % 2]),
        "unit-result": (units[arm % 2]),
        "fl": (flags[arm % 3]),
        "nested": (if arm.is_multiple_of(2) { json!([]) } else { json!([null, { "x": 1, "y": 2 }]) }),
    })
}

/// Every arm of every sum type of `everything`, empty lists and flags, and the extremes of every
/// integer type, through the component and back to the same JSON; the accepted forms of a case
/// without payload, of flags and of non-finite floats; omitted options, `null` arguments and a
/// function without results.
fn round_trip(target: &Target) -> Result<(), Failure> {
    let host = types_host(target)?;
    for arm in 0..6 {
        let value = everything(arm);
        answers(&host, "echo", &json!({ "x": value }), &value)?;
    }
    for shape in [
        json!({ "circle": -0.0 }),
        json!({ "rect": [{ "x": 0, "y": 0 }, { "x": 1, "y": 1 }] }),
    ] {
        answers(&host, "echo-shape", &json!({ "x": shape }), &shape)?;
    }
    // A case without payload: the bare name or with null, returned with null.
    for accepted in [json!("empty"), json!({ "empty": null })] {
        answers(
            &host,
            "echo-shape",
            &json!({ "x": accepted }),
            &json!({ "empty": null }),
        )?;
    }
    for color in ["red", "green", "blue"] {
        answers(&host, "echo-color", &json!({ "x": color }), &json!(color))?;
    }
    // Flags: duplicates ignored, returned in declaration order.
    for (given, produced) in [
        (
            json!(["exec", "read", "exec", "read"]),
            json!(["read", "exec"]),
        ),
        (json!(["write", "write"]), json!(["write"])),
        (json!([]), json!([])),
    ] {
        answers(&host, "echo-perms", &json!({ "x": given }), &produced)?;
    }
    // Floats: the three strings for non-finite values, numbers for the rest.
    for (given, produced) in [
        (json!("NaN"), json!("NaN")),
        (json!("Infinity"), json!("Infinity")),
        (json!("-Infinity"), json!("-Infinity")),
        (json!(2.5), json!(2.5)),
        (json!(-1e-300), json!(-1e-300)),
        (json!(3), json!(3.0)),
    ] {
        answers(&host, "echo-f64", &json!({ "x": given }), &produced)?;
    }
    let run = host.run(&["invoke", "types", "echo-f64", "--args", r#"{"x":"nan"}"#])?;
    ensure!(
        run.code == 2 && run.stdout.is_empty(),
        "a float given as \"nan\" (not one of the three strings) must be refused with exit 2: exit {}, stdout {}",
        run.code,
        excerpt(&run.stdout)
    );
    // An option parameter may be omitted; null arguments are `{}`; no results is null.
    answers(&host, "pair", &json!({ "a": -5 }), &json!([-5, null]))?;
    answers(
        &host,
        "pair",
        &json!({ "a": 9, "b": "given" }),
        &json!([9, "given"]),
    )?;
    answers(&host, "nothing", &json!({}), &json!(null))?;
    answers(&host, "nothing", &json!(null), &json!(null))?;
    let run = host.run(&["invoke", "types", "pair", "--args", "null"])?;
    ensure!(
        run.code == 2 && run.stderr.contains("missing argument `a`"),
        "null arguments must be taken as {{}}, so pair of null is missing its argument `a`: exit {}, {}",
        run.code,
        excerpt(&run.stderr)
    );
    Ok(())
}

/// The ledger's JSON form of every value kind (`log show --json` of the echo of `everything`)
/// encodes, by specification 23's canonical encoding, to exactly the bytes the export holds,
/// and the floats are recorded by their raw bits.
fn ledger_forms(target: &Target) -> Result<(), Failure> {
    let host = types_host(target)?;
    for arm in 0..3 {
        let value = everything(arm);
        call(&host, "echo", &json!({ "x": value }).to_string())?;
    }
    call(&host, "echo-f64", r#"{"x":"-Infinity"}"#)?;
    let entries = host.entries()?;
    let path = host.files.path().join("values.export");
    host.ok(&["log", "export", &path.to_string_lossy()])?;
    let exported = parse_export(&path)?;
    ensure!(
        exported.entries.len() == entries.len(),
        "the export holds {} entries; log show {}",
        exported.entries.len(),
        entries.len()
    );
    let mut values = 0;
    for (i, (shown, bytes)) in entries.iter().zip(&exported.entries).enumerate() {
        let entry = &shown["entry"];
        let ours = encode(entry)
            .map_err(|e| super::failed(format!("entry {i} as log show prints it: {e}")))?;
        ensure!(
            &ours == bytes,
            "entry {i} ({}): its JSON form encodes to {} bytes that differ from the {} the export holds",
            entry["type"],
            ours.len(),
            bytes.len()
        );
        if entry["type"] == "invocation-start" || entry["type"] == "invocation-end" {
            values += 1;
        }
    }
    ensure!(
        values >= 8,
        "the ledger holds {values} invocation starts and ends where the 4 invocations need 8"
    );
    // -Infinity as an f64 keeps its bits: 0xfff0000000000000.
    let result = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "invocation-end")
        .map(|e| e["entry"]["result"].clone())
        .unwrap_or_default();
    ensure!(
        result == json!({ "f64": 0xfff0_0000_0000_0000u64 }),
        "the recorded result of echo-f64 of -Infinity must be the f64 of its raw bits 0xfff0000000000000: {}",
        excerpt(&result.to_string())
    );
    Ok(())
}
