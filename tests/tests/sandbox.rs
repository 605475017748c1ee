//! The deterministic sandbox: fuel, limits, traps, captured output and the gate's record.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::{Arc, OnceLock};

use femtoclaw_ledger::CallFault;
use femtoclaw_ledger::Value;
use femtoclaw_sandbox::replay::Recorded;
use femtoclaw_sandbox::{
    Context, FUEL_PER_RECORDED_BYTE, Failure, HostContext, InvokeError, Limits, Outcome, Prepared,
    Sandbox, SandboxConfig,
};
use femtoclaw_tests::{
    FEMTOCLAW_GUEST_HOARD, FEMTOCLAW_GUEST_MISBEHAVE, FEMTOCLAW_GUEST_TYPES, grant_all,
};
use serde_json::json;

/// One sandbox for the tests that use the default configuration: each guest compiles once.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).unwrap())
}

fn run(
    sandbox: &Sandbox,
    guest: &Arc<Prepared>,
    f: &str,
    args: serde_json::Value,
    fuel: u64,
) -> Outcome {
    sandbox
        .invoke(
            guest,
            f,
            &args,
            fuel,
            &grant_all(guest),
            Context::deny_all().unwrap(),
        )
        .unwrap()
}

// Verifies: FC-EXEC-0501, FC-EXEC-0601, FC-CRYPTO-3501, FC-CRYPTO-3502, FC-CRYPTO-3503
#[test]
fn endless_loop_stops_with_fuel_exhausted_and_the_same_fuel_every_time() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let runs: Vec<Outcome> = (0..3)
        .map(|_| run(sb, &guest, "spin", json!({}), 2_000_000))
        .collect();
    for outcome in &runs {
        assert_eq!(
            outcome.result,
            Err(Failure::FuelExhausted { budget: 2_000_000 })
        );
        assert_eq!(outcome.fuel_consumed, runs[0].fuel_consumed);
        assert!(
            outcome
                .result
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("fuel exhausted")
        );
        assert!(
            outcome
                .result
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("2000000")
        );
    }
    assert_eq!(runs[0].fuel_consumed, 2_000_000);
}

// Verifies: FC-EXEC-0406, FC-EXEC-0501, FC-CRYPTO-3502
#[test]
fn same_invocation_twice_gives_identical_result_and_fuel() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    let args = json!({"a": -5, "b": "x"});
    let first = run(sb, &guest, "pair", args.clone(), 1_000_000);
    let second = run(sb, &guest, "pair", args, 1_000_000);
    assert_eq!(first.result, Ok(json!([-5, "x"])));
    assert_eq!(first.result, second.result);
    assert_eq!(first.fuel_consumed, second.fuel_consumed);
    assert!(first.fuel_consumed > 0);
    // A separate sandbox (fresh engine) counts the same fuel.
    let other = Sandbox::new(SandboxConfig::default()).unwrap();
    let guest = other.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    let third = run(
        &other,
        &guest,
        "pair",
        json!({"a": -5, "b": "x"}),
        1_000_000,
    );
    assert_eq!(third.fuel_consumed, first.fuel_consumed);
}

// Verifies: FC-EXEC-0610, FC-SEC-1911, FC-CRYPTO-3503
#[test]
fn unbounded_memory_growth_hits_the_memory_limit() {
    let sb = Sandbox::new(SandboxConfig {
        limits: Limits {
            memory_bytes: 16 << 20,
            ..Limits::default()
        },
        ..SandboxConfig::default()
    })
    .unwrap();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let outcome = run(&sb, &guest, "grow", json!({}), u64::MAX / 2);
    match outcome.result {
        Err(Failure::Limit(message)) => assert!(message.contains("memory limit"), "{message}"),
        other => panic!("expected a memory limit, got {other:?}"),
    }
}

// Verifies: FC-EXEC-0611, FC-SEC-1912, FC-CRYPTO-3503
#[test]
fn unbounded_recursion_hits_the_stack_limit() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let outcome = run(
        sb,
        &guest,
        "recurse",
        json!({"depth": 100_000_000u64}),
        u64::MAX / 2,
    );
    match outcome.result {
        Err(Failure::Limit(message)) => assert!(message.contains("stack"), "{message}"),
        other => panic!("expected a stack limit, got {other:?}"),
    }
    // A shallow recursion is fine.
    let ok = run(sb, &guest, "recurse", json!({"depth": 10}), 10_000_000);
    assert!(ok.result.is_ok(), "{:?}", ok.result);
}

// Verifies: FC-EXEC-0415, FC-SEC-1917
#[test]
fn guest_trap_reports_its_code() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let ok = run(sb, &guest, "divide", json!({"a": 7, "b": 2}), 10_000_000);
    assert_eq!(ok.result, Ok(json!(3)));
    let outcome = run(sb, &guest, "divide", json!({"a": 7, "b": 0}), 10_000_000);
    match outcome.result {
        Err(Failure::Trap { code, .. }) => assert!(code.contains("unreachable"), "{code}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

// Verifies: FC-EXEC-0507, FC-CAP-1201, FC-CAP-1202, FC-SEC-1905
#[test]
fn stdout_stderr_and_logs_are_captured_not_printed() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let outcome = run(sb, &guest, "chatter", json!({"lines": 3}), 50_000_000);
    assert_eq!(outcome.result, Ok(json!(3)));
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        "line 0\nline 1\nline 2\n"
    );
    assert_eq!(String::from_utf8_lossy(&outcome.stderr), "done\n");
    assert!(!outcome.output_truncated);
    let log = outcome
        .host_calls
        .iter()
        .find(|c| c.interface == femtoclaw_sandbox::LOG_INTERFACE)
        .expect("the log call passed the gate");
    assert_eq!(
        log.params,
        Value::Tuple(vec![
            Value::Enum("info".into()),
            Value::String("wrote 3 lines".into())
        ])
    );
}

// Verifies: FC-EXEC-0609, FC-CAP-1202, FC-SEC-1905
#[test]
fn output_past_the_bound_is_dropped_and_flagged_without_a_trap() {
    let sb = Sandbox::new(SandboxConfig {
        limits: Limits {
            output_bytes: 64,
            ..Limits::default()
        },
        ..SandboxConfig::default()
    })
    .unwrap();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let outcome = run(&sb, &guest, "chatter", json!({"lines": 1000}), 500_000_000);
    assert_eq!(outcome.result, Ok(json!(1000)));
    assert_eq!(outcome.stdout.len(), 64);
    assert!(outcome.output_truncated);
}

// Verifies: FC-CORE-0303, FC-EXEC-0503, FC-EXEC-0504, FC-EXEC-0717, FC-CAP-1203, FC-CAP-1204, FC-SEC-1303, FC-SEC-1304, FC-SEC-1904
#[test]
fn clocks_and_random_pass_the_gate_with_fuel_at_the_call() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let outcome = run(sb, &guest, "sense", json!({}), 10_000_000);
    let result = outcome.result.clone().unwrap();
    let calls: Vec<(&str, &str)> = outcome
        .host_calls
        .iter()
        .map(|c| (c.interface, c.function))
        .collect();
    assert!(
        calls.contains(&("wasi:clocks/wall-clock@0.2.12", "now")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&("wasi:clocks/monotonic-clock@0.2.12", "now")),
        "{calls:?}"
    );
    let random = outcome
        .host_calls
        .iter()
        .find(|c| c.function == "get-random-bytes")
        .expect("random passed the gate");
    assert_eq!(random.params, Value::Tuple(vec![Value::U64(16)]));
    // The recorded random bytes are exactly what the guest got.
    let Value::Tuple(r) = &random.result else {
        panic!("{:?}", random.result)
    };
    let Value::Bytes(bytes) = &r[0] else {
        panic!("{r:?}")
    };
    assert_eq!(result[2], json!(bytes));
    // Fuel at each call is what was left then: within the budget and non-increasing.
    let fuel: Vec<u64> = outcome
        .host_calls
        .iter()
        .map(|c| c.fuel_remaining)
        .collect();
    assert!(fuel.windows(2).all(|w| w[0] >= w[1]), "{fuel:?}");
    assert!(fuel.iter().all(|&f| f < 10_000_000 && f > 0));
}

// Verifies: FC-EXEC-0707, FC-EXEC-0710
#[test]
fn bad_arguments_name_the_parameter_and_the_expected_type() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let cases = [
        (
            json!({"a": "7", "b": 1}),
            "argument `a`: expected an integer in the range of u32, found string \"7\"",
        ),
        (
            json!({"a": -1, "b": 1}),
            "argument `a`: expected an integer in the range of u32",
        ),
        (
            json!({"a": 4294967296u64, "b": 1}),
            "argument `a`: expected an integer in the range of u32",
        ),
        (json!({"a": 1}), "missing argument `b` (u32)"),
        (json!({"a": 1, "b": 2, "c": 3}), "has no parameter `c`"),
        (json!([1, 2]), "arguments must be a JSON object"),
    ];
    for (args, expected) in cases {
        let err = sb
            .invoke(
                &guest,
                "divide",
                &args,
                1_000_000,
                &grant_all(&guest),
                Context::deny_all().unwrap(),
            )
            .unwrap_err();
        assert!(err.is_bad_args());
        assert!(err.to_string().contains(expected), "{args}: {err}");
    }
}

// Verifies: FC-EXEC-0416, FC-CAP-1004
#[test]
fn unknown_function_lists_what_the_capability_exports() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let err = sb
        .invoke(
            &guest,
            "nope",
            &json!({}),
            1_000_000,
            &grant_all(&guest),
            Context::deny_all().unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, InvokeError::UnknownFunction { .. }));
    assert!(err.to_string().contains("spin"), "{err}");
}

// Verifies: FC-EXEC-0407, FC-CAP-1003
#[test]
fn functions_of_exported_interfaces_are_named_interface_hash_function() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    let name = "femtoclaw:types-guest/math@0.1.0#double";
    assert!(guest.functions.iter().any(|f| f.name == name));
    assert_eq!(
        run(sb, &guest, name, json!({"x": 21}), 1_000_000).result,
        Ok(json!(42))
    );
}

// Verifies: FC-EXEC-0711, FC-CAP-1008
#[test]
fn resources_in_a_signature_are_refused_with_a_clear_error() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    let err = sb
        .invoke(
            &guest,
            "femtoclaw:types-guest/counters@0.1.0#make",
            &json!({"start": 1}),
            1_000_000,
            &grant_all(&guest),
            Context::deny_all().unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, InvokeError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("a resource"), "{err}");
}

// Verifies: FC-EXEC-0417, FC-EXEC-0604, FC-SEC-1921
#[test]
fn a_zero_fuel_budget_is_refused() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    assert!(matches!(
        sb.invoke(
            &guest,
            "nothing",
            &json!({}),
            0,
            &grant_all(&guest),
            Context::deny_all().unwrap()
        ),
        Err(InvokeError::NoFuel)
    ));
}

// Verifies: FC-EXEC-0402, FC-EXEC-0405, FC-EXEC-0418, FC-UPG-3413
#[test]
fn precompiled_components_are_cached_on_disk_by_digest_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache: Some(cache_in(dir.path())),
        ..SandboxConfig::default()
    };
    let first = Sandbox::new(config.clone()).unwrap();
    first.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].to_string_lossy().into_owned();
    let digest = hex::encode(femtoclaw_sandbox::catalog::sha256(FEMTOCLAW_GUEST_TYPES));
    assert!(
        name.starts_with(&digest) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A second engine loads it and runs the same; a corrupt entry is recompiled, not trusted.
    let second = Sandbox::new(config.clone()).unwrap();
    let guest = second.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    assert_eq!(
        run(&second, &guest, "echo-f64", json!({"x": 1.5}), 1_000_000).result,
        Ok(json!(1.5))
    );
    std::fs::write(dir.path().join(&name), b"garbage").unwrap();
    let third = Sandbox::new(config).unwrap();
    let guest = third.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    assert_eq!(
        run(&third, &guest, "echo-f64", json!({"x": 2.5}), 1_000_000).result,
        Ok(json!(2.5))
    );

    // Different limits make a different engine digest, so a different cache entry.
    let other = Sandbox::new(SandboxConfig {
        limits: Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        },
        ..SandboxConfig::default()
    })
    .unwrap();
    assert_ne!(other.engine_digest(), third.engine_digest());
}

// Verifies: FC-EXEC-0414, FC-CAP-1002, FC-SEC-1919
#[test]
fn garbage_bytes_are_refused_at_compile_time() {
    let sb = sandbox();
    let err = sb.prepare(b"\0asm\x0d\0\x01\0garbage").unwrap_err();
    assert!(
        err.to_string().contains("cannot compile component"),
        "{err}"
    );
}

// Verifies: FC-CORE-0207, FC-CORE-0216, FC-CAP-1214, FC-CAP-1222, FC-SEC-1305, FC-SEC-1306, FC-POL-1702, FC-POL-1715
#[test]
fn call_time_decisions_are_recorded_with_policy_ids_and_digest() {
    use femtoclaw_policy::{CallAction, CapabilityRef, PolicySet, Principal, Reason, Requests};
    let policy = PolicySet::from_str(
        "test.cedar",
        "@id(\"test:region\")\npermit (principal, action == FemtoClaw::Action::\"config.read\", resource)\nwhen { resource.name == \"region\" };\n",
    )
    .unwrap();
    let requests: Requests = toml::from_str("config = [\"region\", \"token\"]").unwrap();
    let cap = CapabilityRef::new("misbehave", "1.0.0", "", "test");
    let context = Context {
        host: HostContext {
            config: [("region", "eu"), ("token", "t0p"), ("other", "o")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ..HostContext::default()
        },
        ..Context::new(Arc::new(policy.call_checker(
            &Principal::local(),
            &cap,
            &requests,
        )))
    };
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let outcome = sb
        .invoke(
            &guest,
            "read-config",
            &json!({"keys": ["region", "token", "other"]}),
            10_000_000,
            &grant_all(&guest),
            context,
        )
        .unwrap();
    let result = outcome.result.unwrap();
    assert_eq!(result[0], json!("region=eu"));
    assert!(
        result[1]
            .as_str()
            .unwrap()
            .starts_with("token refused: denied"),
        "{result}"
    );
    assert!(!result.to_string().contains("t0p"));

    let decisions: Vec<_> = outcome
        .host_calls
        .iter()
        .flat_map(|c| c.decisions.iter())
        .collect();
    assert_eq!(decisions.len(), 3);
    assert!(decisions.iter().all(|d| d.action == CallAction::ConfigRead));
    assert!(
        decisions
            .iter()
            .all(|d| d.decision.policy_digest == policy.digest())
    );
    let (region, token, other) = (&decisions[0], &decisions[1], &decisions[2]);
    assert_eq!(
        (region.resource.as_str(), region.decision.allowed),
        ("region", true)
    );
    assert_eq!(region.decision.policy_ids, ["test:region"]);
    assert_eq!(
        (token.resource.as_str(), token.decision.allowed),
        ("token", false)
    );
    assert_eq!(token.decision.reason, Reason::NoPermit);
    assert!(token.decision.policy_ids.is_empty());
    assert_eq!(other.decision.reason, Reason::NotRequested);
    // The denied call's recorded result is the error the guest saw, not a trap.
    let denied_call = &outcome.host_calls[1];
    assert_eq!(denied_call.function, "get");
    assert!(
        matches!(&denied_call.result, Value::Tuple(r) if matches!(&r[0], Value::Result(Err(_))))
    );
}

// Verifies: FC-CORE-0204, FC-POL-1606, FC-SEC-1902
#[test]
fn invoke_refuses_a_link_grant_that_does_not_cover_every_import() {
    let sb = sandbox();
    let hello = sb
        .prepare(femtoclaw_capabilities::find("hello").unwrap().component)
        .unwrap();
    let misbehave = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    // A grant for hello's imports does not let misbehave, which imports more, run.
    let err = sb
        .invoke(
            &misbehave,
            "divide",
            &json!({"a": 4, "b": 2}),
            1_000_000,
            &grant_all(&hello),
            Context::deny_all().unwrap(),
        )
        .unwrap_err();
    let InvokeError::NotGranted { imports } = &err else {
        panic!("{err}");
    };
    assert!(!imports.is_empty());
    assert!(
        imports.iter().all(|i| !hello.imports.contains(i)),
        "{imports:?}"
    );
    assert!(
        imports.iter().all(|i| misbehave.imports.contains(i)),
        "{imports:?}"
    );
}

/// Replays `outcome` (a run of `function` of `wasm` with `fuel`) on `sandbox`; it must be
/// identical.
fn replays_identically(
    sandbox: &Sandbox,
    wasm: &[u8],
    function: &str,
    fuel: u64,
    outcome: &Outcome,
) {
    let guest = sandbox.prepare(wasm).unwrap();
    let (replayed, divergence) = sandbox
        .replay(
            &guest,
            function,
            &outcome.args,
            fuel,
            &Recorded::of(outcome),
        )
        .unwrap();
    assert_eq!(divergence, None, "{function}");
    assert_eq!(replayed.fuel_consumed, outcome.fuel_consumed);
}

// Verifies: FC-EXEC-0415, FC-EXEC-0511, FC-EXEC-0613, FC-CAP-1223, FC-SEC-1307, FC-SEC-1308, FC-SEC-1914, FC-CRYPTO-3807
#[test]
fn a_host_call_that_fails_is_recorded_with_its_fault_and_replays_with_it() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_HOARD).unwrap();
    for (function, args, cap) in [
        (
            "log-big",
            json!({"bytes": 17 << 10}),
            "exceeds the limit of 16384",
        ),
        (
            "random-big",
            json!({"len": 2 << 20}),
            "exceeds the limit of 1048576",
        ),
    ] {
        let outcome = run(sb, &guest, function, args, 50_000_000);
        let Err(Failure::Trap { code, message }) = &outcome.result else {
            panic!("{function}: {:?}", outcome.result);
        };
        assert_eq!(code, "host");
        assert!(message.contains(cap), "{message}");
        let [call] = &outcome.host_calls[..] else {
            panic!("{function}: {:?}", outcome.host_calls);
        };
        let Some(CallFault::Trap(recorded)) = CallFault::from_value(&call.result) else {
            panic!("{function}: {:?}", call.result);
        };
        assert!(recorded.contains(cap), "{recorded}");
        replays_identically(sb, FEMTOCLAW_GUEST_HOARD, function, 50_000_000, &outcome);
    }
}

// Verifies: FC-EXEC-0512, FC-EXEC-0605, FC-SEC-1308, FC-SEC-1312
#[test]
fn host_bytes_cost_fuel_at_the_documented_rate_and_replay_charges_the_same() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_HOARD).unwrap();
    let fuel = 50_000_000;
    let small = run(sb, &guest, "random-big", json!({"len": 16}), fuel);
    let big = run(sb, &guest, "random-big", json!({"len": 1 << 20}), fuel);
    assert_eq!(big.result, Ok(json!(1 << 20)));
    // The rate the README documents; the guest's own work for the larger buffer is small.
    assert_eq!(FUEL_PER_RECORDED_BYTE, 1);
    let extra = big.fuel_consumed - small.fuel_consumed;
    assert!(
        ((1 << 20)..(1 << 20) + 1_000).contains(&extra),
        "1 MiB more of host bytes cost {extra} more fuel"
    );
    replays_identically(sb, FEMTOCLAW_GUEST_HOARD, "random-big", fuel, &big);
    // A budget that pays for the guest's work but not for the host's ends out of fuel.
    let short = run(
        sb,
        &guest,
        "random-big",
        json!({"len": 1 << 20}),
        small.fuel_consumed * 4,
    );
    assert_eq!(
        short.result,
        Err(Failure::FuelExhausted {
            budget: small.fuel_consumed * 4
        })
    );
    assert_eq!(short.host_calls.len(), 1, "the call is recorded");
    replays_identically(
        sb,
        FEMTOCLAW_GUEST_HOARD,
        "random-big",
        small.fuel_consumed * 4,
        &short,
    );
}

// Verifies: FC-EXEC-0512, FC-EXEC-0606, FC-SEC-1313, FC-SEC-1318, FC-SEC-1913, FC-CRYPTO-3503
#[test]
fn host_calls_past_the_recorded_bytes_cap_end_the_invocation_with_a_limit() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_HOARD).unwrap();
    let context = Context {
        max_recorded_bytes: 4 << 20,
        ..Context::deny_all().unwrap()
    };
    let fuel = 1_000_000_000;
    let outcome = sb
        .invoke(
            &guest,
            "hoard-random",
            &json!({"turns": 100, "len": 1 << 20}),
            fuel,
            &grant_all(&guest),
            context,
        )
        .unwrap();
    let Err(Failure::Limit(message)) = &outcome.result else {
        panic!("{:?}", outcome.result);
    };
    assert!(
        message.contains("recorded-bytes limit of 4194304 bytes"),
        "{message}"
    );
    // Three calls fit; the fourth is recorded with the limit in place of its 1 MiB.
    assert_eq!(outcome.host_calls.len(), 4);
    let recorded: u64 = outcome
        .host_calls
        .iter()
        .map(|c| c.params.encoded_len() + c.result.encoded_len())
        .sum();
    assert!(recorded <= 4 << 20, "{recorded} bytes recorded");
    assert!(matches!(
        CallFault::from_value(&outcome.host_calls[3].result),
        Some(CallFault::Limit(_))
    ));
    // Replay answers from the recording, whatever its own cap.
    replays_identically(sb, FEMTOCLAW_GUEST_HOARD, "hoard-random", fuel, &outcome);
}

/// A CPU feature this host has, as a Cranelift ISA flag: code compiled without it differs.
fn a_cpu_feature_of_this_host() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        let detected = [
            ("has_avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("has_popcnt", std::arch::is_x86_feature_detected!("popcnt")),
            ("has_sse42", std::arch::is_x86_feature_detected!("sse4.2")),
        ];
        if let Some((flag, _)) = detected.iter().find(|(_, on)| *on) {
            return flag;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("lse") {
        return "has_lse";
    }
    panic!("no optional CPU feature found on this host to compile without");
}

// Verifies: FC-EXEC-0403, FC-EXEC-0419, FC-CRYPTO-3825, FC-ABI-4707
#[test]
fn a_ledger_replays_on_a_cpu_without_the_recording_cpus_features() {
    let feature = a_cpu_feature_of_this_host();
    let dir = tempfile::tempdir().unwrap();
    let native = Sandbox::new(SandboxConfig {
        cache: Some(cache_in(dir.path())),
        ..SandboxConfig::default()
    })
    .unwrap();
    let reduced = Sandbox::new(SandboxConfig {
        cache: Some(cache_in(dir.path())),
        disabled_cpu_features: vec![feature.to_owned()],
        ..SandboxConfig::default()
    })
    .unwrap();
    assert_eq!(native.engine_digest(), reduced.engine_digest(), "{feature}");
    assert_ne!(native.cache_key(), reduced.cache_key(), "{feature}");
    // Each compiles its own code into the cache.
    native.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    reduced.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    // Recorded on either, replayed on the other: identical.
    for (recorder, replayer) in [(&native, &reduced), (&reduced, &native)] {
        let guest = recorder.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
        for (function, args) in [
            ("sense", json!({})),
            ("recurse", json!({"depth": 50})),
            ("chatter", json!({"lines": 3})),
        ] {
            let outcome = run(recorder, &guest, function, args, 5_000_000);
            assert!(outcome.result.is_ok(), "{function}: {:?}", outcome.result);
            replays_identically(
                replayer,
                FEMTOCLAW_GUEST_MISBEHAVE,
                function,
                5_000_000,
                &outcome,
            );
        }
    }
}

// Verifies: FC-EXEC-0404, FC-ABI-4708
#[test]
fn only_cpu_feature_flags_may_be_disabled() {
    for flag in ["opt_level", "has_no_such_feature"] {
        let err = Sandbox::new(SandboxConfig {
            disabled_cpu_features: vec![flag.to_owned()],
            ..SandboxConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains(flag), "{err}");
    }
}

// ---- write-ahead and the watchdog ----------------------------------------------------------

mod write_ahead {
    use std::ops::Range;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use femtoclaw_ledger::Entry;
    use femtoclaw_policy::{CapabilityRef, PathRequest, PolicySet, Principal, Requests};
    use femtoclaw_sandbox::record::{self, Journal, Sink, Start};
    use femtoclaw_sandbox::{Context, Failure, HostContext, Outcome, Preopen};
    use serde_json::json;

    /// What the sink saw at each append: the entries, and the file's bytes at that moment.
    type Seen = Vec<(Vec<Entry>, Option<Vec<u8>>)>;

    /// A ledger stand-in that looks at the file the guest writes each time it is asked to make
    /// entries durable, or refuses every append.
    struct Observer {
        file: PathBuf,
        refuse: bool,
        seen: Mutex<Seen>,
    }

    impl Sink for Observer {
        fn append(
            &self,
            entries: Vec<Entry>,
        ) -> Result<Range<u64>, Box<dyn std::error::Error + Send + Sync>> {
            if self.refuse {
                return Err("the disk is full".into());
            }
            let mut seen = self.seen.lock().unwrap();
            let first = seen.iter().map(|(e, _)| e.len() as u64).sum::<u64>();
            let n = entries.len() as u64;
            seen.push((entries, std::fs::read(&self.file).ok()));
            Ok(first..first + n)
        }
    }

    fn start() -> Start {
        Start {
            invocation: 7,
            principal: Principal::local().to_string(),
            groups: Vec::new(),
            capability: "files".into(),
            version: "0.1.0".into(),
            component_sha256: [1; 32],
            manifest_sha256: [3; 32],
            engine_digest: super::sandbox().engine_digest(),
            fuel_budget: 50_000_000,
            policy_digest: [2; 32],
            function: "write-file".into(),
            trace_id: None,
            approval: None,
        }
    }

    /// Runs the files capability's `write-file` of `text` to `/data/note.txt`, `dir` mapped to
    /// `/data` and writable, journaled to `sink`.
    fn write_file(dir: &Path, text: &str, sink: Arc<Observer>) -> Outcome {
        let sb = super::sandbox();
        let prepared = sb
            .prepare(femtoclaw_capabilities::find("files").unwrap().component)
            .unwrap();
        let policy =
            PolicySet::from_str("files.cedar", "permit (principal, action, resource);\n").unwrap();
        let requests = Requests {
            paths: vec![PathRequest {
                path: "/data".into(),
                write: true,
            }],
            ..Requests::default()
        };
        let cap = CapabilityRef::new("files", "0.1.0", "", "femtoclaw");
        let invoke = policy.authorize_invoke_function(&Principal::local(), &cap, None);
        let context = Context {
            host: HostContext {
                preopens: vec![Preopen {
                    guest: "/data".into(),
                    host: dir.to_owned(),
                    writable: true,
                }],
                ..HostContext::default()
            },
            journal: Some(Journal::new(start(), invoke.clone(), sink)),
            ..Context::new(Arc::new(policy.call_checker(
                &Principal::local(),
                &cap,
                &requests,
            )))
        };
        let args = json!({ "path": "/data/note.txt", "text": text });
        let outcome = sb
            .invoke(
                &prepared,
                "write-file",
                &args,
                50_000_000,
                &femtoclaw_tests::grant_all(&prepared),
                context,
            )
            .unwrap();
        // What the host appends at the end follows what was written ahead, without a gap or a
        // repeat: together they are the invocation's whole record.
        let rest = record::ran(&start(), &invoke, &outcome);
        let whole = record::ran(
            &start(),
            &invoke,
            &Outcome {
                written_ahead: Vec::new(),
                ..outcome.clone()
            },
        );
        assert_eq!(rest.len() + outcome.written_ahead.len(), whole.len());
        assert_eq!(rest[..], whole[outcome.written_ahead.len()..]);
        outcome
    }

    // Verifies: FC-CORE-0208, FC-CORE-0216, FC-CORE-0305, FC-SEC-1310, FC-SEC-1314, FC-MEM-2410, FC-MEM-2411
    #[test]
    fn a_file_write_is_durable_before_the_file_is_created_or_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("note.txt");
        let sink = Arc::new(Observer {
            file: file.clone(),
            refuse: false,
            seen: Mutex::default(),
        });
        let outcome = write_file(dir.path(), "hello, ledger", sink.clone());
        assert_eq!(outcome.result, Ok(json!({ "ok": 13 })));
        assert_eq!(std::fs::read(&file).unwrap(), b"hello, ledger");

        let seen = sink.seen.lock().unwrap();
        // The create (open with `create`) and the write were each written ahead.
        let intents: Vec<(&str, Option<&Vec<u8>>)> = seen
            .iter()
            .flat_map(|(entries, file)| {
                entries.iter().filter_map(move |e| match e {
                    Entry::HostCallIntent { function, .. } => {
                        Some((function.as_str(), file.as_ref()))
                    }
                    _ => None,
                })
            })
            .collect();
        assert_eq!(
            intents,
            [
                ("[method]descriptor.open-at", None),
                ("[method]descriptor.write", Some(&Vec::new())),
            ],
            "each intent is durable while the file does not exist yet, then while it is empty"
        );
        // The first batch opens the invocation; every intent comes after the decisions that
        // allowed its call.
        let all: Vec<&Entry> = seen.iter().flat_map(|(e, _)| e).collect();
        assert!(matches!(
            all[0],
            Entry::InvocationStart { invocation: 7, .. }
        ));
        assert!(matches!(all[1], Entry::Decision { action, .. } if action == "invoke"));
        for (i, e) in all.iter().enumerate() {
            if let Entry::HostCallIntent { .. } = e {
                assert!(
                    matches!(all[i - 1], Entry::Decision { action, allowed: true, .. } if action == "fs.write"),
                    "{:?}",
                    all[i - 1]
                );
            }
        }
        assert_eq!(outcome.written_ahead.len(), all.len());
        // A call that changes nothing is not written ahead: no intent for reads or stats.
        assert_eq!(
            outcome
                .host_calls
                .iter()
                .filter(|c| c.intent.is_some())
                .count(),
            2
        );
    }

    // Verifies: FC-CORE-0218, FC-SEC-1311, FC-MEM-2421
    #[test]
    fn a_write_that_cannot_be_recorded_first_is_not_performed_and_traps() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("note.txt");
        let sink = Arc::new(Observer {
            file: file.clone(),
            refuse: true,
            seen: Mutex::default(),
        });
        let outcome = write_file(dir.path(), "never written", sink);
        match &outcome.result {
            Err(Failure::Trap { code, message }) => {
                assert_eq!(code, "host");
                assert!(
                    message.contains("cannot make host call")
                        && message.contains("durable before performing it")
                        && message.contains("the disk is full"),
                    "{message}"
                );
            }
            other => panic!("expected a trap, got {other:?}"),
        }
        assert!(!file.exists(), "the file was created unrecorded");
        assert!(outcome.written_ahead.is_empty());
    }

    // Verifies: FC-EXEC-0410, FC-CRYPTO-3503
    #[test]
    fn a_spinning_guest_with_fuel_to_spare_stops_at_its_deadline() {
        let sb = super::sandbox();
        let guest = sb.prepare(super::FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
        let context = Context {
            deadline: Duration::from_millis(200),
            ..Context::deny_all().unwrap()
        };
        let started = std::time::Instant::now();
        let outcome = sb
            .invoke(
                &guest,
                "spin",
                &json!({}),
                u64::MAX / 2,
                &femtoclaw_tests::grant_all(&guest),
                context,
            )
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stopped within a generous bound"
        );
        let failure = outcome.result.unwrap_err();
        assert_eq!(failure.kind(), "deadline");
        assert_eq!(
            failure.to_string(),
            "deadline exceeded: the invocation ran past its deadline of 200 ms"
        );
        assert!(outcome.fuel_consumed > 0);
    }
}

// Verifies: FC-EXEC-0510, FC-CRYPTO-3814
#[test]
fn replay_compares_captured_output_as_bytes() {
    let sb = sandbox();
    let guest = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let mut outcome = run(sb, &guest, "divide", json!({"a": 4, "b": 2}), 1_000_000);
    let mut recorded = Recorded::of(&outcome);
    assert_eq!(recorded.compare(&outcome), None);
    // Two different invalid UTF-8 outputs read alike as text; as bytes they differ.
    recorded.stdout = vec![b'o', b'k', 0xff];
    outcome.stdout = vec![b'o', b'k', 0xfe];
    let divergence = recorded.compare(&outcome).unwrap();
    assert_eq!(
        divergence.to_string(),
        r"RESULT: stdout differs: expected ok\xff, got ok\xfe"
    );
}

/// A compile cache in `dir`, under a fixed test key.
fn cache_in(dir: &std::path::Path) -> femtoclaw_sandbox::CompileCache {
    femtoclaw_sandbox::CompileCache {
        dir: dir.to_owned(),
        key: [7; 32],
    }
}

// Verifies: FC-EXEC-0412, FC-SEC-1915, FC-UPG-3413, FC-CRYPTO-3511
#[test]
fn a_cache_file_the_host_did_not_write_is_recompiled_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache: Some(cache_in(dir.path())),
        ..SandboxConfig::default()
    };
    let hello = femtoclaw_capabilities::find("hello").unwrap().component;
    let writer = Sandbox::new(config.clone()).unwrap();
    writer.prepare(hello).unwrap();
    writer.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let file = |name_start: String| {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&name_start)
            })
            .unwrap()
    };
    let digest = |bytes: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let hello_file = file(digest(hello));
    let misbehave_file = file(digest(FEMTOCLAW_GUEST_MISBEHAVE));

    // Someone who can write the cache puts valid code of another component, compiled by the
    // same engine and even tagged under another key, in hello's place.
    let other_key = Sandbox::new(SandboxConfig {
        cache: Some(femtoclaw_sandbox::CompileCache {
            dir: dir.path().join("other"),
            key: [9; 32],
        }),
        ..SandboxConfig::default()
    })
    .unwrap();
    other_key.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    for forged in [
        std::fs::read(&misbehave_file).unwrap(),
        std::fs::read(file_in(&dir.path().join("other"))).unwrap(),
    ] {
        std::fs::write(&hello_file, &forged).unwrap();
        let reader = Sandbox::new(config.clone()).unwrap();
        let prepared = reader.prepare(hello).unwrap();
        // Hello's own code runs, recompiled; the forged file is replaced.
        assert!(prepared.function("greet").is_ok(), "{prepared:?}");
        assert_ne!(std::fs::read(&hello_file).unwrap(), forged);
    }
}

fn file_in(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

// Verifies: FC-EXEC-0409, FC-EXEC-0616, FC-SEC-1920, FC-PERF-5807
/// The pooling allocator holds as many invocations at once as it is sized for (here more than
/// the 64 it once held whatever the configuration), and one more than that fails to
/// instantiate, saying so, while the others run on. Bounded: each spins to a deadline of at
/// most 3 s.
#[test]
fn the_pool_holds_the_invocations_it_is_sized_for_and_refuses_one_more() {
    use std::time::Duration;

    use femtoclaw_sandbox::Context;
    use femtoclaw_sandbox::engine::Pool;
    let sized = |invocations| {
        Sandbox::new(SandboxConfig {
            pool: Pool { invocations },
            ..SandboxConfig::default()
        })
        .unwrap()
    };
    let spin = |sandbox: &Sandbox, guest: &Arc<Prepared>, deadline_ms: u64| {
        let context = Context {
            deadline: Duration::from_millis(deadline_ms),
            ..Context::deny_all().unwrap()
        };
        let grant = femtoclaw_tests::grant_all(guest);
        sandbox.invoke(guest, "spin", &json!({}), u64::MAX / 2, &grant, context)
    };

    let wide = sized(70);
    let guest = wide.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let spinning: Vec<_> = (0..70)
            .map(|_| scope.spawn(|| spin(&wide, &guest, 1500)))
            .collect();
        spinning.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for outcome in outcomes {
        let failure = outcome.unwrap().result.unwrap_err();
        assert_eq!(failure.kind(), "deadline", "{failure}");
    }

    let narrow = sized(2);
    let guest = narrow.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    std::thread::scope(|scope| {
        let spinning: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| spin(&narrow, &guest, 3000)))
            .collect();
        // Both hold their slots for 3 s; the third finds none.
        std::thread::sleep(Duration::from_millis(500));
        let refused = spin(&narrow, &guest, 3000).unwrap().result.unwrap_err();
        assert_eq!(refused.kind(), "limit", "{refused}");
        assert!(
            refused
                .to_string()
                .contains("maximum concurrent limit of 2"),
            "{refused}"
        );
        for t in spinning {
            assert_eq!(
                t.join().unwrap().unwrap().result.unwrap_err().kind(),
                "deadline"
            );
        }
    });
}

// Verifies: FC-EXEC-0408, FC-CAP-1006, FC-CAP-1007, FC-CAP-1016, FC-EXT-5302, FC-ABI-4701
/// Every function of every first-party capability, world-level or of an exported interface,
/// is described by the doc comment of its WIT, which the SDK keeps in the component; a
/// component without docs (built without the SDK's macro) describes nothing and still runs;
/// bytes that are not a component, or are cut short, describe nothing and never panic.
#[test]
fn functions_are_described_by_their_wit_doc_comments() {
    let sb = sandbox();
    for capability in femtoclaw_capabilities::ALL {
        let prepared = sb.prepare(capability.component).unwrap();
        for f in &prepared.functions {
            let doc = f.doc.as_deref().unwrap_or_default();
            assert!(
                !doc.is_empty(),
                "`{}`: `{}` has no description",
                capability.name,
                f.name
            );
        }
    }
    // A function of an exported interface, under the name the host calls it by.
    let types = sb.prepare(FEMTOCLAW_GUEST_TYPES).unwrap();
    let double = types
        .functions
        .iter()
        .find(|f| f.name.ends_with("/math@0.1.0#double"))
        .unwrap();
    assert_eq!(double.doc.as_deref(), Some("Twice `x`."), "{types:?}");
    let misbehave = sb.prepare(FEMTOCLAW_GUEST_MISBEHAVE).unwrap();
    assert!(misbehave.functions.iter().all(|f| f.doc.is_none()));
    let hello = femtoclaw_capabilities::find("hello").unwrap().component;
    for cut in [0, 8, hello.len() / 2, hello.len() - 1] {
        let _ = femtoclaw_sandbox::docs(&hello[..cut]);
    }
    assert!(femtoclaw_sandbox::docs(b"not wasm").is_empty());
}
