//! Manifest ∩ policy: grants, link checks, call checks, the cache, explain.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad data

use std::sync::Arc;

use femtoclaw_policy::{
    CallAction, CapabilityRef, GrantCache, GrantKey, KvRequest, PathRequest, PolicySet, Principal,
    Reason, Requests, Scope,
};

const PERMIT_ALL: &str = r#"@id("permit-all") permit (principal, action, resource);"#;

fn cap(name: &str) -> CapabilityRef {
    CapabilityRef::new(name, "0.1.0", "ab".repeat(32), "acme")
}

fn permit_all() -> PolicySet {
    PolicySet::from_str("all.cedar", PERMIT_ALL).unwrap()
}

// Verifies: FC-POL-1404, FC-POL-1420, FC-POL-1612, FC-POL-1701
#[test]
fn a_scope_not_requested_by_the_manifest_is_denied_even_when_the_policy_permits() {
    let set = permit_all();
    let local = Principal::local();
    let c = cap("fetch");
    let requests = Requests {
        http: vec!["https://api.example.com".into()],
        kv: vec![KvRequest {
            namespace: "cache".into(),
            write: false,
        }],
        paths: vec![PathRequest {
            path: "/data".into(),
            write: false,
        }],
        ..Requests::default()
    };
    let check = |action, scope: Scope| set.check_call(&local, &c, &requests, action, &scope);

    // Requested and permitted.
    let d = check(
        CallAction::HttpRequest,
        Scope::http("https://api.example.com").unwrap(),
    );
    assert!(d.allowed);
    assert_eq!(d.policy_ids, ["permit-all"]);
    assert!(check(CallAction::KvRead, Scope::KvNamespace("cache".into())).allowed);
    assert!(check(CallAction::FsRead, Scope::path("/data/in.txt").unwrap()).allowed);

    // Permitted by the policy, never requested.
    for (action, scope) in [
        (
            CallAction::HttpRequest,
            Scope::http("https://evil.org").unwrap(),
        ),
        (CallAction::KvWrite, Scope::KvNamespace("cache".into())),
        (CallAction::KvRead, Scope::KvNamespace("other".into())),
        (CallAction::FsWrite, Scope::path("/data/in.txt").unwrap()),
        (
            CallAction::FsRead,
            Scope::path("/data/../etc/passwd").unwrap(),
        ),
        (CallAction::SecretUse, Scope::Secret("token".into())),
        (CallAction::ConfigRead, Scope::ConfigKey("k".into())),
    ] {
        let d = check(action, scope.clone());
        assert!(!d.allowed, "{action} {scope}");
        assert_eq!(d.reason, Reason::NotRequested);
        assert_eq!(d.to_string(), "denied: not requested by manifest");
        assert!(d.policy_ids.is_empty());
        assert_eq!(d.policy_digest, set.digest());
    }
}

// Verifies: FC-POL-1711
#[test]
fn a_call_scope_must_be_concrete() {
    let set = permit_all();
    let requests = Requests {
        http: vec!["https://*.example.com".into()],
        paths: vec![PathRequest {
            path: "/data".into(),
            write: false,
        }],
        ..Requests::default()
    };
    let pattern = Scope::HttpHost {
        scheme: "https".into(),
        host: "*.example.com".into(),
        port: 443,
    };
    let d = set.check_call(
        &Principal::local(),
        &cap("f"),
        &requests,
        CallAction::HttpRequest,
        &pattern,
    );
    assert_eq!(d.reason, Reason::Malformed);
    // A raw, unnormalized path that would climb out of `/data`.
    let sneaky = Scope::Path("/data/../etc".into());
    let d = set.check_call(
        &Principal::local(),
        &cap("f"),
        &requests,
        CallAction::FsRead,
        &sneaky,
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::Malformed);
}

// Verifies: FC-POL-1402, FC-POL-1702
#[test]
fn the_policy_still_decides_inside_the_manifest() {
    let text = r#"
        @id("example-only")
        permit (principal, action == FemtoClaw::Action::"http.request", resource)
        when { resource.host like "*.example.com" };
        @id("not-admin")
        forbid (principal, action == FemtoClaw::Action::"http.request", resource)
        when { resource.host == "admin.example.com" };
    "#;
    let set = PolicySet::from_str("h.cedar", text).unwrap();
    let requests = Requests {
        http: vec!["https://*.example.com".into(), "https://other.org".into()],
        ..Requests::default()
    };
    let check = |url: &str| {
        set.check_call(
            &Principal::local(),
            &cap("fetch"),
            &requests,
            CallAction::HttpRequest,
            &Scope::http(url).unwrap(),
        )
    };
    assert!(check("https://api.example.com").allowed);
    let d = check("https://admin.example.com");
    assert_eq!((d.allowed, d.reason), (false, Reason::Forbidden));
    assert_eq!(d.policy_ids, ["not-admin"]);
    let d = check("https://other.org");
    assert_eq!((d.allowed, d.reason), (false, Reason::NoPermit));
    assert_eq!(check("https://example.com").reason, Reason::NotRequested);
}

// Verifies: FC-POL-1601, FC-POL-1602
#[test]
fn an_import_not_requested_is_refused_even_when_the_policy_permits() {
    let set = permit_all();
    let requests = Requests {
        imports: vec!["femtoclaw:host/log@0.1.0".into()],
        ..Requests::default()
    };
    let local = Principal::local();
    let c = cap("x");
    assert!(
        set.check_link(&local, &c, &requests, "femtoclaw:host/log@0.1.0")
            .allowed
    );
    let d = set.check_link(&local, &c, &requests, "acme:net/socket@1.0.0");
    assert_eq!((d.allowed, d.reason), (false, Reason::NotRequested));
    // The baseline needs no manifest entry, only the policy.
    assert!(
        set.check_link(&local, &c, &requests, "wasi:io/streams@0.2.12")
            .allowed
    );
    let none = PolicySet::empty().unwrap();
    let d = none.check_link(&local, &c, &requests, "wasi:io/streams@0.2.12");
    assert_eq!((d.allowed, d.reason), (false, Reason::NoPermit));
}

// Verifies: FC-POL-1604
#[test]
fn the_grant_for_a_component_names_every_refused_import() {
    let set = PolicySet::default_policy().unwrap();
    let local = Principal::local();
    let hello = CapabilityRef::new("hello", "0.1.0", "cd".repeat(32), "femtoclaw");
    let requests = Requests {
        imports: vec![
            "femtoclaw:host/log@0.1.0".into(),
            "wasi:http/outgoing-handler@0.2.12".into(),
        ],
        ..Requests::default()
    };
    let component = [
        "femtoclaw:host/log@0.1.0",
        "wasi:clocks/wall-clock@0.2.12",
        "wasi:http/outgoing-handler@0.2.12",
        "acme:shell/run@1.0.0",
    ];
    let grant = set.grant_for_component(&local, &hello, &requests, component);
    assert!(grant.links("femtoclaw:host/log@0.1.0"));
    assert!(grant.links("wasi:clocks/wall-clock@0.2.12"));
    let refused = grant.refused(component);
    let names: Vec<&str> = refused.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(
        names,
        ["wasi:http/outgoing-handler@0.2.12", "acme:shell/run@1.0.0"]
    );
    assert_eq!(refused[0].1.reason, Reason::NoPermit);
    assert_eq!(refused[1].1.reason, Reason::NotRequested);
    // An import the grant never saw is refused as not requested.
    let unseen = grant.refused(["acme:other/x@1.0.0"]);
    assert_eq!(unseen[0].1.reason, Reason::NotRequested);
}

// Verifies: FC-POL-1608, FC-POL-1609, FC-POL-1613
#[test]
fn the_grant_lists_requested_scopes_granted_and_refused() {
    let text = r#"
        @id("cache-rw")
        permit (principal, action in [FemtoClaw::Action::"kv.read", FemtoClaw::Action::"kv.write"], resource == FemtoClaw::KvNamespace::"cache");
        @id("data-read")
        permit (principal, action == FemtoClaw::Action::"fs.read", resource)
        when { resource.path like "/data*" };
    "#;
    let set = PolicySet::from_str("s.cedar", text).unwrap();
    let requests = Requests {
        kv: vec![
            KvRequest {
                namespace: "cache".into(),
                write: true,
            },
            KvRequest {
                namespace: "shared".into(),
                write: false,
            },
        ],
        paths: vec![PathRequest {
            path: "/data".into(),
            write: true,
        }],
        secrets: vec!["token".into()],
        http: vec!["ftp://nope".into()],
        ..Requests::default()
    };
    let grant = set.grant(&Principal::local(), &cap("x"), &requests);
    let granted: Vec<String> = grant
        .scopes
        .iter()
        .map(|g| format!("{} {}", g.action, g.scope))
        .collect();
    assert_eq!(
        granted,
        ["kv.read cache", "kv.write cache", "fs.read /data"]
    );
    let denied: Vec<String> = grant
        .denied_scopes
        .iter()
        .map(|(a, s, d)| format!("{a} {s} {:?}", d.reason))
        .collect();
    assert_eq!(
        denied,
        [
            "http.request ftp://nope Malformed",
            "fs.write /data NoPermit",
            "kv.read shared NoPermit",
            // No valid origin is requested to send it to.
            "secret.use token NotRequested",
        ]
    );
    let paths = grant.paths();
    assert_eq!(paths.len(), 1);
    assert!(paths[0].read && !paths[0].write);
    assert!(grant.permits_scope(CallAction::KvWrite, &Scope::KvNamespace("cache".into())));
    assert!(!grant.permits_scope(CallAction::SecretUse, &Scope::Secret("token".into())));
}

// Verifies: FC-POL-1619, FC-POL-1718
#[test]
fn requests_read_from_a_capability_manifest() {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[allow(dead_code)]
        name: String,
        #[serde(default)]
        requests: Requests,
    }
    let manifest: Manifest = toml::from_str(
        r#"
        name = "fetch"
        [requests]
        imports = ["femtoclaw:host/log@0.1.0"]
        http = ["https://api.example.com", "https://*.example.com:443"]
        paths = [{ path = "/data", write = true }]
        kv = [{ namespace = "cache", write = true }]
        secrets = ["api-token"]
        config = ["endpoint"]
        "#,
    )
    .unwrap();
    assert!(manifest.requests.validate().is_ok());
    assert_eq!(manifest.requests.http.len(), 2);
    let bare: Manifest = toml::from_str("name = \"hello\"").unwrap();
    assert_eq!(bare.requests, Requests::default());
    let bad = Requests {
        http: vec!["https://a.*.com".into()],
        ..Requests::default()
    };
    let err = bad.validate().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("malformed http origin `https://a.*.com`"),
        "{err}"
    );
}

// Verifies: FC-POL-1610, FC-POL-1611, FC-SEC-5602
#[test]
fn the_grant_cache_keys_on_policy_principal_capability_and_manifest() {
    let cache = GrantCache::new(8);
    let requests = Requests {
        imports: vec!["femtoclaw:host/log@0.1.0".into()],
        ..Requests::default()
    };
    let local = Principal::local();
    let c = cap("x");
    let all = permit_all();
    let g1 = cache.get_or_grant(&all, &local, &c, &requests, ["wasi:io/streams@0.2.12"]);
    assert!(g1.links("femtoclaw:host/log@0.1.0"));
    let g2 = cache.get_or_grant(&all, &local, &c, &requests, ["wasi:io/streams@0.2.12"]);
    assert!(
        Arc::ptr_eq(&g1, &g2),
        "the second ask is served from the cache"
    );
    assert_eq!(cache.len(), 1);

    // A changed policy has another digest: a fresh decision, not the cached one.
    let none = PolicySet::empty().unwrap();
    let g3 = cache.get_or_grant(&none, &local, &c, &requests, ["wasi:io/streams@0.2.12"]);
    assert!(!g3.links("femtoclaw:host/log@0.1.0"));
    // Another principal, another group, another manifest: other keys.
    let k = GrantKey::new(&all, &local, &c, &requests);
    assert_ne!(
        k,
        GrantKey::new(&all, &Principal::agent("local"), &c, &requests)
    );
    assert_ne!(
        k,
        GrantKey::new(&all, &local.clone().with_group("ops"), &c, &requests)
    );
    assert_ne!(k, GrantKey::new(&all, &local, &c, &Requests::default()));
    assert_eq!(cache.len(), 2);
    cache.retain_policy(&none.digest());
    assert_eq!(cache.len(), 1);
    assert!(cache.get(&k).is_none());
}

// Verifies: FC-POL-1614
#[test]
fn the_grant_cache_is_shared_across_threads_and_bounded() {
    let cache = Arc::new(GrantCache::new(4));
    let set = permit_all();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let cache = Arc::clone(&cache);
            let set = set.clone();
            std::thread::spawn(move || {
                for i in 0..8 {
                    let p = Principal::agent(format!("a{t}-{i}"));
                    let g = cache.get_or_grant(&set, &p, &cap("x"), &Requests::default(), []);
                    assert!(g.imports.is_empty());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(cache.len() <= 4);
}

// Verifies: FC-POL-1515
#[test]
fn explain_shows_invoke_imports_and_scopes_with_reasons() {
    let set = PolicySet::default_policy().unwrap();
    let hello = CapabilityRef::new("hello", "0.1.0", "cd".repeat(32), "femtoclaw");
    let requests = Requests {
        imports: vec![
            "femtoclaw:host/log@0.1.0".into(),
            "wasi:http/types@0.2.12".into(),
        ],
        http: vec!["https://example.com".into()],
        ..Requests::default()
    };
    let e = set.explain_component(
        &Principal::local(),
        &hello,
        &requests,
        ["wasi:clocks/wall-clock@0.2.12"],
        Some("greet"),
    );
    assert!(e.invoke.allowed);
    assert_eq!(e.invoke.policy_ids, ["default:invoke-first-party"]);
    assert!(!e.would_run());
    let lines: Vec<(&str, bool, bool)> = e
        .imports
        .iter()
        .map(|i| (i.interface.as_str(), i.linked, i.baseline))
        .collect();
    assert_eq!(
        lines,
        [
            ("femtoclaw:host/log@0.1.0", true, false),
            ("wasi:clocks/wall-clock@0.2.12", true, true),
            ("wasi:http/types@0.2.12", false, false),
        ]
    );
    assert_eq!(
        e.imports[0].decision.policy_ids,
        ["default:link-host-and-baseline"]
    );
    assert!(!e.scopes[0].granted);

    let text = e.to_string();
    assert!(
        text.contains("REFUSED wasi:http/types@0.2.12: denied: no policy permits it"),
        "{text}"
    );
    assert!(
        text.contains("REFUSED http.request https://example.com"),
        "{text}"
    );
    assert!(text.ends_with("verdict: would be refused"), "{text}");

    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["invoke"]["allowed"], true);
    assert_eq!(json["imports"][2]["linked"], false);
    assert_eq!(json["function"], "greet");
}

// Verifies: FC-POL-1411, FC-POL-1417, FC-POL-1709
#[test]
fn a_call_checker_answers_like_check_call_and_remembers() {
    let text = r#"
        @id("cache-read")
        permit (principal, action == FemtoClaw::Action::"kv.read", resource == FemtoClaw::KvNamespace::"cache");
    "#;
    let set = PolicySet::from_str("c.cedar", text).unwrap();
    let requests = Requests {
        kv: vec![
            KvRequest {
                namespace: "cache".into(),
                write: true,
            },
            KvRequest {
                namespace: "other".into(),
                write: false,
            },
        ],
        ..Requests::default()
    };
    let local = Principal::local();
    let c = cap("x");
    let checker = set.call_checker(&local, &c, &requests);
    for (action, ns) in [
        (CallAction::KvRead, "cache"),
        (CallAction::KvWrite, "cache"),
        (CallAction::KvRead, "other"),
        (CallAction::KvRead, "never"),
    ] {
        let scope = Scope::KvNamespace(ns.into());
        let first = checker.check(action, &scope);
        assert_eq!(
            *first,
            set.check_call(&local, &c, &requests, action, &scope)
        );
        let again = checker.check(action, &scope);
        assert!(Arc::ptr_eq(&first, &again), "remembered");
    }
    assert!(
        checker
            .check(CallAction::KvRead, &Scope::KvNamespace("cache".into()))
            .allowed
    );
    assert_eq!(
        checker
            .check(CallAction::KvRead, &Scope::KvNamespace("never".into()))
            .reason,
        Reason::NotRequested
    );
}

// Verifies: FC-POL-1417, FC-POL-1709
#[test]
fn a_call_checker_remembers_a_bounded_number_of_bytes_whatever_the_scopes() {
    // Hostile scopes: config keys a guest chose, each 64 KiB. 512 of them are 32 MiB of text;
    // the memo keeps at most its byte bound, and still answers each one correctly.
    let set = permit_all();
    let requests = Requests::default();
    let local = Principal::local();
    let c = cap("x");
    let checker = set.call_checker(&local, &c, &requests);
    for i in 0..512u32 {
        let key = format!("{i:08}{}", "k".repeat(64 << 10));
        let scope = Scope::ConfigKey(key);
        let decision = checker.check(CallAction::ConfigRead, &scope);
        assert_eq!(
            *decision,
            set.check_call(&local, &c, &requests, CallAction::ConfigRead, &scope)
        );
        assert!(
            checker.remembered_bytes() <= femtoclaw_policy::CallChecker::MEMO_BYTES,
            "{} bytes remembered after {} keys",
            checker.remembered_bytes(),
            i + 1
        );
    }
    // A key too large to remember is decided afresh, never kept.
    let huge = Scope::ConfigKey("h".repeat(16 << 20));
    let before = checker.remembered_bytes();
    let decision = checker.check(CallAction::ConfigRead, &huge);
    assert_eq!(
        *decision,
        set.check_call(&local, &c, &requests, CallAction::ConfigRead, &huge)
    );
    assert_eq!(checker.remembered_bytes(), before);
}

// Verifies: FC-POL-1406, FC-POL-1610
#[test]
fn the_same_bytes_under_another_name_or_publisher_get_a_grant_of_their_own() {
    // Only the capability named `trusted` may link logging; `copy` is the same component.
    let policy = PolicySet::from_str(
        "t.cedar",
        r#"permit (principal, action == FemtoClaw::Action::"link", resource)
           when { context.capability.name == "trusted" };"#,
    )
    .unwrap();
    let requests = Requests {
        imports: vec!["femtoclaw:host/log@0.1.0".into()],
        ..Requests::default()
    };
    let cache = GrantCache::new(8);
    let local = Principal::local();
    let trusted = cap("trusted");
    let ask = |c: &CapabilityRef| {
        cache.get_or_grant(&policy, &local, c, &requests, ["femtoclaw:host/log@0.1.0"])
    };
    assert!(ask(&trusted).links("femtoclaw:host/log@0.1.0"));
    let copy = CapabilityRef {
        name: "copy".into(),
        ..trusted.clone()
    };
    assert!(!ask(&copy).links("femtoclaw:host/log@0.1.0"));
    let other_publisher = CapabilityRef {
        publisher: "mallory".into(),
        ..trusted.clone()
    };
    let k = GrantKey::new(&policy, &local, &trusted, &requests);
    assert_ne!(
        k,
        GrantKey::new(&policy, &local, &other_publisher, &requests)
    );
    let other_version = CapabilityRef {
        version: "9.9.9".into(),
        ..trusted
    };
    assert_ne!(k, GrantKey::new(&policy, &local, &other_version, &requests));
}

/// Scopes `api-token` to one origin, `http://127.0.0.1:8080`.
const TOKEN_TO_ONE_ORIGIN: &str = r#"
@id("token-to-local")
permit (principal, action == FemtoClaw::Action::"secret.use", resource == FemtoClaw::Secret::"api-token")
when {
    context.destination.scheme == "http" &&
    context.destination.host == "127.0.0.1" &&
    context.destination.port == 8080
};
"#;

// Verifies: FC-POL-1706, FC-POL-1714
#[test]
fn secret_use_is_decided_with_the_origin_the_secret_is_sent_to() {
    let set = PolicySet::from_str("token.cedar", TOKEN_TO_ONE_ORIGIN).unwrap();
    let local = Principal::local();
    let c = cap("fetch");
    let requests = Requests {
        http: vec![
            "http://127.0.0.1:8080".into(),
            "http://localhost:8080".into(),
        ],
        secrets: vec!["api-token".into()],
        ..Requests::default()
    };
    let token = Scope::Secret("api-token".into());
    let to = |origin: &str| {
        set.check_call_to(
            &local,
            &c,
            &requests,
            CallAction::SecretUse,
            &token,
            &Scope::http(origin).unwrap(),
        )
    };
    let d = to("http://127.0.0.1:8080");
    assert!(d.allowed, "{d}");
    assert_eq!(d.policy_ids, ["token-to-local"]);
    for other in [
        "http://localhost:8080",
        "http://127.0.0.1:8081",
        "https://127.0.0.1:8080",
    ] {
        let d = to(other);
        assert_eq!((d.allowed, d.reason), (false, Reason::NoPermit), "{other}");
    }
    // Without a destination, or with one that is not an origin, it is malformed.
    let d = set.check_call(&local, &c, &requests, CallAction::SecretUse, &token);
    assert_eq!(d.reason, Reason::Malformed);
    assert_eq!(
        d.errors,
        ["action `secret.use` is decided with its destination, and none was given"]
    );
    let d = set.authorize_call_to(
        &local,
        &c,
        CallAction::SecretUse,
        &token,
        &Scope::KvNamespace("cache".into()),
    );
    assert_eq!(
        d.errors,
        ["destination `cache` of action `secret.use` is not an HTTP origin"]
    );
    let d = set.authorize_call_to(
        &local,
        &c,
        CallAction::KvRead,
        &Scope::KvNamespace("cache".into()),
        &Scope::http("http://127.0.0.1:8080").unwrap(),
    );
    assert_eq!(d.reason, Reason::Malformed);

    // The checker remembers a decision per destination.
    let checker = set.call_checker(&local, &c, &requests);
    let local_origin = Scope::http("http://127.0.0.1:8080").unwrap();
    let other_origin = Scope::http("http://localhost:8080").unwrap();
    assert!(
        checker
            .check_to(CallAction::SecretUse, &token, &local_origin)
            .allowed
    );
    assert!(
        !checker
            .check_to(CallAction::SecretUse, &token, &other_origin)
            .allowed
    );
    assert!(
        checker
            .check_to(CallAction::SecretUse, &token, &local_origin)
            .allowed
    );
    assert!(!checker.check(CallAction::SecretUse, &token).allowed);
}

// Verifies: FC-POL-1608
#[test]
fn a_requested_secret_is_granted_before_any_call_when_some_requested_origin_may_get_it() {
    let set = PolicySet::from_str("token.cedar", TOKEN_TO_ONE_ORIGIN).unwrap();
    let local = Principal::local();
    let c = cap("fetch");
    let with_http = |http: &[&str]| Requests {
        http: http.iter().map(|h| (*h).to_owned()).collect(),
        secrets: vec!["api-token".into()],
        ..Requests::default()
    };
    let granted = |requests: &Requests| {
        let grant = set.grant(&local, &c, requests);
        let explained = set.explain(&local, &c, requests, None);
        let secret = explained
            .scopes
            .iter()
            .find(|s| s.action == CallAction::SecretUse)
            .unwrap();
        assert_eq!(
            secret.granted,
            grant.permits_scope(CallAction::SecretUse, &Scope::Secret("api-token".into()))
        );
        secret.decision.clone()
    };
    let d = granted(&with_http(&[
        "http://localhost:8080",
        "http://127.0.0.1:8080",
    ]));
    assert!(d.allowed, "{d}");
    let d = granted(&with_http(&["http://localhost:8080"]));
    assert_eq!((d.allowed, d.reason), (false, Reason::NoPermit));
    let d = granted(&with_http(&[]));
    assert_eq!((d.allowed, d.reason), (false, Reason::NotRequested));
    assert_eq!(
        d.errors,
        ["the manifest requests no HTTP origin to send it to"]
    );
}
