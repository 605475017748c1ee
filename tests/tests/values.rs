//! JSON ↔ WIT: every value type through a real component and back, the errors for each kind of
//! bad input, and the JSON Schemas generated from signatures.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::{Arc, OnceLock};

use femtoclaw_sandbox::{Context, Prepared, Sandbox, SandboxConfig};
use femtoclaw_tests::{FEMTOCLAW_GUEST_TYPES, grant_all};
use serde_json::{Value as Json, json};

fn guest() -> &'static (Sandbox, Arc<Prepared>) {
    static GUEST: OnceLock<(Sandbox, Arc<Prepared>)> = OnceLock::new();
    GUEST.get_or_init(|| {
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let prepared = sandbox.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
        (sandbox, prepared)
    })
}

fn call(function: &str, args: Json) -> Result<Json, String> {
    let (sandbox, prepared) = guest();
    let outcome = sandbox
        .invoke(
            prepared,
            function,
            &args,
            10_000_000,
            &grant_all(prepared),
            Context::deny_all().unwrap(),
        )
        .map_err(|e| e.to_string())?;
    outcome.result.map_err(|e| e.to_string())
}

fn everything() -> Json {
    json!({
        "b": true,
        "u8v": 255, "s8v": -128, "u16v": 65535, "s16v": -32768,
        "u32v": 4_294_967_295u64, "s32v": -2_147_483_648i64,
        "u64v": u64::MAX, "s64v": i64::MIN,
        "f32v": 1.5, "f64v": -0.125,
        "c": "é",
        "s": "snow ☃",
        "l": [1, 2, 3],
        "p": {"x": -1, "y": 2},
        "t": ["pair", 7],
        "v": {"rect": [{"x": 0, "y": 0}, {"x": 3, "y": 4}]},
        "e": "green",
        "o": "some",
        "oo": {"some": null},
        "r": {"err": "bad"},
        "unit-result": {"ok": null},
        "fl": ["read", "exec"],
        "nested": [null, {"x": 5, "y": 6}],
    })
}

// Verifies: FC-EXEC-0701
#[test]
fn every_wit_type_round_trips_through_a_component() {
    let value = everything();
    assert_eq!(call("echo", json!({ "x": value })).unwrap(), value);

    // The other arms of each sum type, and the empty forms.
    let mut other = everything();
    other["v"] = json!({"circle": 2.5});
    other["o"] = Json::Null;
    other["oo"] = json!({"some": 3});
    other["r"] = json!({"ok": 9});
    other["unit-result"] = json!({"err": null});
    other["fl"] = json!([]);
    other["l"] = json!([]);
    assert_eq!(call("echo", json!({ "x": other })).unwrap(), other);

    let mut none = everything();
    none["oo"] = Json::Null;
    assert_eq!(call("echo", json!({ "x": none })).unwrap(), none);
}

// Verifies: FC-EXEC-0702
#[test]
fn record_fields_come_back_in_declaration_order() {
    let out = call("echo", json!({ "x": everything() })).unwrap();
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys.first().map(|k| k.as_str()), Some("b"));
    assert_eq!(keys.last().map(|k| k.as_str()), Some("nested"));
}

// Verifies: FC-EXEC-0703
#[test]
fn variant_cases_without_payload_accept_a_bare_name() {
    assert_eq!(
        call("echo-shape", json!({"x": "empty"})).unwrap(),
        json!({"empty": null})
    );
    assert_eq!(
        call("echo-shape", json!({"x": {"empty": null}})).unwrap(),
        json!({"empty": null})
    );
}

// Verifies: FC-EXEC-0704
#[test]
fn flags_are_canonical_declaration_order_without_duplicates() {
    assert_eq!(
        call("echo-perms", json!({"x": ["exec", "read", "exec"]})).unwrap(),
        json!(["read", "exec"])
    );
}

// Verifies: FC-EXEC-0705
#[test]
fn non_finite_floats_use_named_strings() {
    for name in ["NaN", "Infinity", "-Infinity"] {
        assert_eq!(call("echo-f64", json!({"x": name})).unwrap(), json!(name));
    }
    assert_eq!(call("echo-f64", json!({"x": 1e300})).unwrap(), json!(1e300));
}

// Verifies: FC-EXEC-0706
#[test]
fn optional_parameters_may_be_omitted_and_results_can_be_empty() {
    assert_eq!(call("pair", json!({"a": 1})).unwrap(), json!([1, null]));
    assert_eq!(call("nothing", json!({})).unwrap(), Json::Null);
    assert_eq!(call("nothing", Json::Null).unwrap(), Json::Null);
}

// Verifies: FC-EXEC-0707, FC-EXEC-0708, FC-EXEC-0709
#[test]
fn each_kind_of_bad_value_is_named_with_its_path() {
    let with = |field: &str, value: Json| {
        let mut x = everything();
        x[field] = value;
        call("echo", json!({ "x": x })).unwrap_err()
    };
    let cases = [
        (
            with("b", json!(1)),
            "argument `x.b`: expected a boolean, found number `1`",
        ),
        (
            with("u8v", json!(256)),
            "argument `x.u8v`: expected an integer in the range of u8",
        ),
        (
            with("s8v", json!(1.5)),
            "argument `x.s8v`: expected an integer in the range of s8",
        ),
        (
            with("u64v", json!(-1)),
            "argument `x.u64v`: expected an integer in the range of u64",
        ),
        (
            with("f64v", json!("1.0")),
            "argument `x.f64v`: expected a number (f64)",
        ),
        (
            with("c", json!("ab")),
            "argument `x.c`: expected a string of exactly one character",
        ),
        (
            with("s", json!(null)),
            "argument `x.s`: expected a string, found null",
        ),
        (
            with("l", json!([1, "2"])),
            "argument `x.l[1]`: expected an integer in the range of u32",
        ),
        (
            with("p", json!({"x": 1})),
            "argument `x.p.y`: expected s32, found nothing (the field is missing)",
        ),
        (
            with("p", json!({"x": 1, "y": 2, "z": 3})),
            "argument `x.p.z`: expected one of the fields",
        ),
        (
            with("t", json!(["a"])),
            "argument `x.t`: expected an array of 2 items",
        ),
        (
            with("v", json!({"square": 1})),
            "argument `x.v`: expected {\"<case>\": payload} with a case of variant { circle, rect, empty }",
        ),
        (
            with("v", json!({"circle": null})),
            "argument `x.v.circle`: expected a number (f64), found null",
        ),
        (
            with("v", json!({"empty": 1})),
            "argument `x.v.empty`: expected null (the case has no payload)",
        ),
        (
            with("e", json!("purple")),
            "argument `x.e`: expected a case name of enum { red, green, blue }",
        ),
        (
            with("oo", json!(3)),
            "argument `x.oo`: expected null or {\"some\": …}",
        ),
        (
            with("r", json!({"maybe": 1})),
            "argument `x.r`: expected {\"ok\": …} or {\"err\": …}",
        ),
        (
            with("fl", json!(["read", "fly"])),
            "argument `x.fl[1]`: expected a flag of flags { read, write, exec }",
        ),
        (
            with("nested", json!([{"x": 1, "y": "2"}])),
            "argument `x.nested[0].y`: expected an integer in the range of s32",
        ),
    ];
    for (err, expected) in cases {
        assert!(err.contains(expected), "expected `{expected}` in `{err}`");
    }
}

// Verifies: FC-EXEC-0712, FC-CAP-1005
#[test]
fn args_schema_describes_every_parameter() {
    let (_, prepared) = guest();
    let echo = prepared.function("echo").unwrap();
    let schema = echo.args_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["required"], json!(["x"]));
    let x = &schema["properties"]["x"];
    assert_eq!(x["type"], "object");
    assert_eq!(x["additionalProperties"], false);
    let p = &x["properties"];
    assert_eq!(
        p["u8v"],
        json!({"type": "integer", "minimum": 0, "maximum": 255})
    );
    assert_eq!(
        p["c"],
        json!({"type": "string", "minLength": 1, "maxLength": 1})
    );
    assert_eq!(
        p["l"],
        json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 4_294_967_295u64}})
    );
    assert_eq!(p["e"], json!({"enum": ["red", "green", "blue"]}));
    assert_eq!(p["fl"]["items"], json!({"enum": ["read", "write", "exec"]}));
    assert_eq!(p["t"]["prefixItems"].as_array().unwrap().len(), 2);
    assert_eq!(p["o"]["anyOf"][0], json!({"type": "null"}));
    assert_eq!(p["oo"]["anyOf"][1]["required"], json!(["some"]));
    assert_eq!(p["r"]["oneOf"][0]["required"], json!(["ok"]));
    assert_eq!(p["v"]["oneOf"].as_array().unwrap().len(), 3);
    // Optional fields are not required.
    let required = x["required"].as_array().unwrap();
    assert!(!required.contains(&json!("o")) && required.contains(&json!("b")));

    let pair = prepared.function("pair").unwrap();
    assert_eq!(pair.args_schema()["required"], json!(["a"]));
    assert_eq!(pair.result_schema()["prefixItems"][0]["type"], "integer");
}
