//! Authorization end to end: default deny, link-time refusal before any guest code runs,
//! call-time denial the guest can handle, forbid over permit, policy errors with their place.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::{Host, code, s, stderr, stdout};

use femtoclaw_tests::{FEMTOCLAW_GUEST_MISBEHAVE, FEMTOCLAW_GUEST_NET, FEMTOCLAW_GUEST_UNPROVIDED};
use serde_json::{Value as Json, json};

/// Permits the local operator to invoke and link anything, and to read config key `region`.
const OPEN_POLICY: &str = r#"
@id("test:invoke")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource);

@id("test:link")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"link", resource);

@id("test:config-region")
permit (principal, action == FemtoClaw::Action::"config.read", resource)
when { resource.name == "region" };
"#;

const MANIFEST: &str = r#"
name = "misbehave"
version = "1.0.0"
publisher = "test"
fuel = 50000000

[requests]
imports = ["femtoclaw:host/log@0.1.0", "wasi:config/store@0.2.0-draft", "wasi:keyvalue/store@0.2.0-draft2", "femtoclaw:host/keyvalue-prefix@0.1.0"]
config = ["region", "token"]
"#;

/// The misbehave guest installed with `manifest`, under [`OPEN_POLICY`].
fn with_misbehave(manifest: &str) -> Host {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, manifest);
    host
}

// Verifies: FC-CORE-0112, FC-CORE-0118, FC-CORE-0201, FC-CORE-0214, FC-POL-1410, FC-POL-1415, FC-POL-1420, FC-POL-1507, FC-CONF-2902, FC-CONF-2918
#[test]
fn default_policy_lets_the_local_operator_run_first_party_capabilities_only() {
    let host = Host::new();
    let ok = host.run(&["invoke", "hello", "greet", "--args", r#"{"name":"Ada"}"#]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    // textstats logs and exports its own type interface: both fine under the default policy.
    let stats = host.run(&[
        "invoke",
        "textstats",
        "analyze",
        "--args",
        r#"{"text":"a b a","top":1}"#,
        "--json",
    ]);
    assert_eq!(code(&stats), 0, "{}", stderr(&stats));
    let report: Json = serde_json::from_str(&stdout(&stats)).unwrap();
    assert_eq!(
        report["result"]["top-words"],
        json!([{"word": "a", "count": 2}])
    );
    assert_eq!(
        report["logs"],
        json!([{"level": "debug", "message": "analyzed 3 words"}])
    );
    let agent = host.run(&[
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--principal",
        "agent:bot",
    ]);
    assert_eq!(code(&agent), 7, "{}", stderr(&agent));
    assert!(
        stderr(&agent).contains("denied: `FemtoClaw::Agent::\"bot\"` may not invoke `hello@0.1.0`: denied: no policy permits it"),
        "{}",
        stderr(&agent)
    );
    assert!(stdout(&agent).is_empty());

    // A third-party capability is not first-party: the default policy does not let it run.
    let wasm = host.file("misbehave.wasm", FEMTOCLAW_GUEST_MISBEHAVE);
    let manifest = host.file("capability.toml", MANIFEST.as_bytes());
    assert_eq!(
        code(&host.run(&["capability", "add", s(&wasm), "--manifest", s(&manifest)])),
        0
    );
    let out = host.run(&[
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
}

// Verifies: FC-CORE-0118, FC-CORE-0203, FC-CORE-0220, FC-POL-1605, FC-POL-1618, FC-SEC-1902
#[test]
fn ungranted_import_is_refused_before_guest_code_runs_naming_every_import() {
    // The manifest asks for nothing, so neither log nor config may link.
    let host = with_misbehave("name = \"misbehave\"\nversion = \"1.0.0\"\n");
    let out = host.run(&[
        "invoke",
        "misbehave",
        "chatter",
        "--args",
        r#"{"lines":3}"#,
        "--json",
    ]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`femtoclaw:host/log@0.1.0` (denied: not requested by manifest)"),
        "{err}"
    );
    assert!(
        err.contains("`wasi:config/store@0.2.0-draft` (denied: not requested by manifest)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    // Nothing the guest would have done happened: no output, no result, no fuel report.
    assert!(stdout(&out).is_empty());
}

// Verifies: FC-CORE-0203, FC-POL-1605, FC-SEC-1902
#[test]
fn import_requested_but_not_permitted_by_policy_is_refused() {
    let host = with_misbehave(MANIFEST);
    std::fs::write(
        host.data.path().join("policy/test.cedar"),
        OPEN_POLICY.replace(
            "action == FemtoClaw::Action::\"link\", resource)",
            "action == FemtoClaw::Action::\"link\", resource) when { resource.baseline }",
        ),
    )
    .unwrap();
    let out = host.run(&[
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`femtoclaw:host/log@0.1.0` (denied: no policy permits it)"),
        "{}",
        stderr(&out)
    );
}

// Verifies: FC-CORE-0207, FC-CAP-1205, FC-CAP-1214, FC-EXT-5306, FC-EXT-5316, FC-SEC-1306, FC-SEC-1317, FC-POL-1507, FC-CRYPTO-3518
#[test]
fn call_time_denial_reaches_the_guest_as_an_error_it_handles() {
    let host = with_misbehave(MANIFEST);
    std::fs::create_dir_all(host.data.path().join("config")).unwrap();
    std::fs::write(
        host.data.path().join("config/misbehave.toml"),
        "region = \"eu-west\"\ntoken = \"hunter2\"\nother = \"x\"\n",
    )
    .unwrap();
    let out = host.run(&[
        "invoke",
        "misbehave",
        "read-config",
        "--args",
        r#"{"keys":["region","token","other"]}"#,
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let lines = report["result"].as_array().unwrap();
    assert_eq!(lines[0], json!("region=eu-west"));
    // Requested but not permitted by policy, and permitted by nobody and not requested.
    assert_eq!(
        lines[1],
        json!("token refused: denied: `config.read` on `token` is not granted to this capability")
    );
    assert!(
        lines[2]
            .as_str()
            .unwrap()
            .starts_with("other refused: denied"),
        "{lines:?}"
    );
    assert!(!stdout(&out).contains("hunter2"));
}

// Verifies: FC-POL-1402, FC-POL-1420, FC-POL-1611
#[test]
fn forbid_beats_permit_and_names_the_forbidding_policy() {
    let host = with_misbehave(MANIFEST);
    let forbid = "@id(\"test:no-divide\")\nforbid (principal, action == FemtoClaw::Action::\"invoke\", resource)\nwhen { context has function && context.function == \"divide\" };\n";
    std::fs::write(host.data.path().join("policy/forbid.cedar"), forbid).unwrap();
    let out = host.run(&[
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("forbidden by policy"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("test:no-divide"), "{}", stderr(&out));
    // Other functions are still permitted: the changed policy took effect, nothing restarted.
    let ok = host.run(&["invoke", "misbehave", "chatter", "--args", r#"{"lines":1}"#]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
}

// Verifies: FC-POL-1507, FC-POL-1511, FC-POL-1514
#[test]
fn a_policy_with_a_typo_is_rejected_with_its_file_and_line() {
    let host = Host::new();
    let bad = host.file(
        "bad.cedar",
        b"// comment\n\n@id(\"x\")\npermitt (principal, action, resource);\n",
    );
    let check = host.run(&["policy", "check", s(&bad)]);
    assert_eq!(code(&check), 2, "{}", stderr(&check));
    assert!(stderr(&check).contains("bad.cedar"), "{}", stderr(&check));
    assert!(stderr(&check).contains("line 4"), "{}", stderr(&check));
    let invoke = host.run(&[
        "--policy",
        s(&bad),
        "invoke",
        "hello",
        "greet",
        "--args",
        r#"{"name":"x"}"#,
    ]);
    assert_eq!(code(&invoke), 2, "{}", stderr(&invoke));
    assert!(stderr(&invoke).contains("line 4"), "{}", stderr(&invoke));

    let good = host.file("good.cedar", OPEN_POLICY.as_bytes());
    let check = host.run(&["policy", "check", s(&good)]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    assert!(
        stdout(&check).contains("test:config-region"),
        "{}",
        stdout(&check)
    );
    assert!(
        stdout(&check).contains("3 policies, digest "),
        "{}",
        stdout(&check)
    );
}

// Verifies: FC-CAP-1106, FC-POL-1615, FC-POL-1515
#[test]
fn policy_explain_and_inspect_show_requested_versus_granted() {
    let host = with_misbehave(MANIFEST);
    let out = host.run(&[
        "policy",
        "explain",
        "--capability",
        "misbehave",
        "--function",
        "divide",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let explanation: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(explanation["invoke"]["allowed"], json!(true));
    assert_eq!(explanation["invoke"]["policy_ids"], json!(["test:invoke"]));
    let text = stdout(&host.run(&[
        "policy",
        "explain",
        "--capability",
        "misbehave",
        "--principal",
        "agent:x",
    ]));
    assert!(text.contains("denied"), "{text}");

    let inspect: Json =
        serde_json::from_str(&stdout(&host.run(&["capability", "inspect", "misbehave"]))).unwrap();
    assert_eq!(inspect["requested"]["config"], json!(["region", "token"]));
    let granted = inspect["granted"]["imports"].as_array().unwrap();
    assert!(granted.contains(&json!("wasi:config/store@0.2.0-draft")));
    assert_eq!(inspect["granted"]["refused_imports"], json!([]));
    let denied = inspect["granted"]["denied_scopes"].as_array().unwrap();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["scope"], json!("token"));
}

/// Permits invoking anything, and linking only the virtualized WASI baseline.
const BASELINE_POLICY: &str = r#"
@id("test:invoke")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource);

@id("test:link-baseline")
permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"link", resource)
when { resource.baseline };
"#;

const NET_MANIFEST: &str = "name = \"net\"\nversion = \"1.0.0\"\npublisher = \"test\"\n";

/// The `wasi:sockets` imports of the net guest, as `capability inspect` lists them.
fn sockets_imports(host: &Host) -> Vec<String> {
    let out = host.run(&["capability", "inspect", "net"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let inspect: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let imports: Vec<String> = inspect["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .filter(|i| i.starts_with("wasi:sockets/"))
        .collect();
    assert!(imports.len() >= 3, "{imports:?}");
    imports
}

// Verifies: FC-CORE-0203, FC-CAP-1220, FC-POL-1603, FC-POL-1605, FC-SEC-1909, FC-SEC-1918
#[test]
fn sockets_are_not_baseline_a_component_importing_them_is_refused_naming_each() {
    let host = Host::with_policy(BASELINE_POLICY);
    host.add(FEMTOCLAW_GUEST_NET, NET_MANIFEST);
    let out = host.run(&[
        "invoke",
        "net",
        "tcp-connect",
        "--args",
        r#"{"address":"127.0.0.1:9"}"#,
    ]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let err = stderr(&out);
    for import in sockets_imports(&host) {
        assert!(
            err.contains(&format!("`{import}` (denied")),
            "{import}: {err}"
        );
    }
    // The baseline the guest also imports is granted: only sockets are named.
    assert!(!err.contains("wasi:clocks"), "{err}");
}

/// A host under the open policy with `net@1.0.1`, whose manifest requests every sockets
/// interface the guest imports.
fn sockets_host() -> Host {
    let host = Host::with_policy(OPEN_POLICY);
    host.add(FEMTOCLAW_GUEST_NET, NET_MANIFEST);
    let imports = sockets_imports(&host);
    let manifest = format!(
        "name = \"net\"\nversion = \"1.0.1\"\npublisher = \"test\"\n\n[requests]\nimports = {}\n",
        serde_json::to_string(&imports).unwrap()
    );
    host.add(FEMTOCLAW_GUEST_NET, &manifest);
    host
}

// Verifies: FC-CORE-0215, FC-CAP-1220, FC-SEC-1316, FC-SEC-1910, FC-EXT-5402
#[test]
fn granted_sockets_are_refused_call_by_call_through_the_gate_with_the_decision_recorded() {
    let host = sockets_host();
    for (function, args) in [
        ("tcp-connect", r#"{"address":"127.0.0.1:9"}"#),
        ("udp-bind", r#"{"address":"127.0.0.1:0"}"#),
    ] {
        let out = host.run(&["invoke", "net@1.0.1", function, "--args", args]);
        assert_eq!(code(&out), 0, "{function}: {}", stderr(&out));
        let result: Json = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(result["err"].is_string(), "{function}: {result}");
    }
    let log = host.run(&["log", "show", "--json", "--limit", "1000"]);
    let entries: Vec<Json> = stdout(&log)
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap()["entry"].clone())
        .collect();
    for create in ["create-tcp-socket", "create-udp-socket"] {
        assert!(
            entries
                .iter()
                .any(|e| e["type"] == "host-call" && e["function"] == create),
            "{create} is not recorded"
        );
    }
    let denied: Vec<&Json> = entries
        .iter()
        .filter(|e| e["type"] == "decision" && e["action"] == "net.connect")
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(
        denied
            .iter()
            .all(|d| d["allowed"] == false && d["resource"] == "0.0.0.0")
    );
}

// Verifies: FC-CORE-0118, FC-CORE-0205, FC-CAP-1012, FC-POL-1607, FC-SEC-1901, FC-ABI-4702
#[test]
fn an_import_no_host_provides_is_refused_with_exit_7_naming_every_one() {
    let host = Host::with_policy(OPEN_POLICY);
    let wasm = host.file("unprovided.wasm", FEMTOCLAW_GUEST_UNPROVIDED);
    let out = host.run(&["capability", "add", s(&wasm)]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let err = stderr(&out);
    for import in [
        "femtoclaw:unprovided/elsewhere@0.1.0",
        "femtoclaw:unprovided/nowhere@0.1.0",
    ] {
        assert!(err.contains(&format!("`{import}`")), "{import}: {err}");
    }
}

// Verifies: FC-CORE-0213, FC-CAP-1111, FC-CAP-1116, FC-POL-1416, FC-CRYPTO-3308
#[test]
fn a_manifest_claiming_the_first_party_publisher_is_refused_at_add_and_at_load() {
    let host = Host::new();
    for publisher in ["femtoclaw", "FemtoClaw", " femtoclaw "] {
        let manifest = format!(
            "name = \"spoof\"\nversion = \"1.0.0\"\npublisher = {publisher:?}\n\n[requests]\n\
             imports = [\"femtoclaw:host/log@0.1.0\"]\n"
        );
        let wasm = host.file("spoof.wasm", FEMTOCLAW_GUEST_MISBEHAVE);
        let toml = host.file("spoof.toml", manifest.as_bytes());
        let out = host.run(&["capability", "add", s(&wasm), "--manifest", s(&toml)]);
        assert_eq!(code(&out), 2, "{publisher:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "claims the publisher `{publisher}`, which is reserved"
            )),
            "{}",
            stderr(&out)
        );
    }
    // Nothing was installed, and the default policy's first-party grants stay out of reach.
    let list = stdout(&host.run(&["capability", "list"]));
    assert!(!list.contains("spoof"), "{list}");

    // One installed by hand (or before the publisher was reserved) is refused when loaded.
    host.add(FEMTOCLAW_GUEST_MISBEHAVE, MISBEHAVE_MANIFEST_TEST);
    let installed = host
        .data
        .path()
        .join("capabilities/misbehave/1.0.0/capability.toml");
    let text = std::fs::read_to_string(&installed).unwrap();
    let spoofed = text.replace("publisher = \"test\"", "publisher = \"femtoclaw\"");
    std::fs::write(&installed, &spoofed).unwrap();
    // With its digest recorded too, as an install from before the reservation would be.
    std::fs::write(
        installed.with_file_name("manifest.sha256"),
        hex::encode(femtoclaw_sandbox::catalog::sha256(spoofed.as_bytes())),
    )
    .unwrap();
    let out = host.run(&[
        "invoke",
        "misbehave",
        "divide",
        "--args",
        r#"{"a":4,"b":2}"#,
    ]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    assert!(stderr(&out).contains("is reserved"), "{}", stderr(&out));
}

const MISBEHAVE_MANIFEST_TEST: &str =
    "name = \"misbehave\"\nversion = \"1.0.0\"\npublisher = \"test\"\nfuel = 5000000\n";

// Verifies: FC-POL-1712
#[test]
fn policy_explain_shows_the_default_policy_grants_no_special_address() {
    let host = Host::new();
    let out = host.run(&[
        "policy",
        "explain",
        "--capability",
        "fetch",
        "--address",
        "127.0.0.1",
        "--address",
        "::1",
        "--address",
        "10.1.2.3",
        "--address",
        "169.254.169.254",
        "--address",
        "93.184.215.14",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let explanation: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let addresses = explanation["addresses"].as_array().unwrap();
    let kinds: Vec<(&str, &str, bool)> = addresses
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap(),
                a["kind"].as_str().unwrap(),
                a["granted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("127.0.0.1", "loopback", false),
            ("::1", "loopback", false),
            ("10.1.2.3", "private", false),
            ("169.254.169.254", "metadata", false),
            ("93.184.215.14", "public", true),
        ]
    );
    for a in &addresses[..4] {
        assert_eq!(a["decision"]["reason"], json!("no_permit"), "{a}");
    }
    let bad = host.run(&[
        "policy",
        "explain",
        "--capability",
        "fetch",
        "--address",
        "[::1]",
    ]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--address"), "{}", stderr(&bad));
}

// Verifies: FC-CORE-0215
#[test]
fn a_name_lookup_is_refused_through_the_gate_as_an_error_not_a_trap() {
    let host = sockets_host();
    // `resolve-addresses` borrows the guest's network handle: the host gives it back.
    let out = host.run(&[
        "invoke",
        "net@1.0.1",
        "lookup",
        "--args",
        r#"{"name":"localhost"}"#,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let result: Json = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(result["err"].is_string(), "{result}");
    let log = host.run(&["log", "show", "--json", "--limit", "1000"]);
    let entries: Vec<Json> = stdout(&log)
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap()["entry"].clone())
        .collect();
    let looked_up = entries
        .iter()
        .filter(|e| e["type"] == "host-call" && e["function"] == "resolve-addresses")
        .count();
    let decided = entries
        .iter()
        .filter(|e| e["type"] == "decision" && e["action"] == "net.connect")
        .count();
    assert!(looked_up > 0, "resolve-addresses is not recorded");
    assert_eq!(decided, looked_up);
}
