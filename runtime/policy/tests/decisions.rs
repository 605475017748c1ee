//! Decisions: default deny, forbid beats permit, determining policy ids, the default policy,
//! groups, host wildcards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad data

use femtoclaw_policy::{CallAction, CapabilityRef, PolicySet, Principal, Reason, Scope};

fn cap(name: &str, publisher: &str) -> CapabilityRef {
    CapabilityRef::new(name, "0.1.0", "00".repeat(32), publisher)
}

fn first_party(name: &str) -> CapabilityRef {
    cap(name, CapabilityRef::FIRST_PARTY)
}

// Verifies: FC-POL-1401, FC-POL-1404, FC-FORMAL-5102
#[test]
fn no_policy_means_deny() {
    let set = PolicySet::empty().unwrap();
    let d = set.authorize_invoke(&Principal::local(), &first_party("hello"));
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::NoPermit);
    assert!(d.policy_ids.is_empty());
    assert_eq!(d.policy_digest, set.digest());
    let d = set.authorize_link(
        &Principal::local(),
        &first_party("hello"),
        "femtoclaw:host/log@0.1.0",
    );
    assert!(!d.allowed);
}

// Verifies: FC-POL-1402, FC-FORMAL-5103
#[test]
fn forbid_beats_permit() {
    let text = r#"
        @id("everyone-may-invoke")
        permit (principal, action == FemtoClaw::Action::"invoke", resource);

        @id("no-shell")
        forbid (principal, action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"shell");
    "#;
    let set = PolicySet::from_str("p.cedar", text).unwrap();
    let alice = Principal::user("alice");

    let allowed = set.authorize_invoke(&alice, &first_party("hello"));
    assert!(allowed.allowed);
    assert_eq!(allowed.reason, Reason::Permitted);
    assert_eq!(allowed.policy_ids, ["everyone-may-invoke"]);

    let denied = set.authorize_invoke(&alice, &first_party("shell"));
    assert!(!denied.allowed);
    assert_eq!(denied.reason, Reason::Forbidden);
    assert_eq!(denied.policy_ids, ["no-shell"]);
}

// Verifies: FC-POL-1403, FC-FORMAL-5104
#[test]
fn decisions_carry_every_determining_policy_id_sorted() {
    let text = r#"
        permit (principal, action == FemtoClaw::Action::"invoke", resource);
        @id("b-first-party")
        permit (principal, action == FemtoClaw::Action::"invoke", resource)
        when { resource.publisher == "femtoclaw" };
        @id("a-agents-only")
        permit (principal is FemtoClaw::Agent, action == FemtoClaw::Action::"invoke", resource);
    "#;
    let set = PolicySet::from_str("ids.cedar", text).unwrap();
    let d = set.authorize_invoke(&Principal::agent("bot"), &first_party("hello"));
    assert_eq!(
        d.policy_ids,
        ["a-agents-only", "b-first-party", "ids.cedar:0"]
    );
    let d = set.authorize_invoke(&Principal::user("bob"), &cap("x", "acme"));
    assert_eq!(d.policy_ids, ["ids.cedar:0"]);
}

// Verifies: FC-POL-1408, FC-FORMAL-5111
#[test]
fn a_policy_that_fails_to_evaluate_is_skipped_and_reported() {
    let text = r#"
        @id("all-http")
        permit (principal, action == FemtoClaw::Action::"http.request", resource);
        @id("overflowing-forbid")
        forbid (principal, action == FemtoClaw::Action::"http.request", resource)
        when { resource.port + 9223372036854775807 > 0 };
    "#;
    let set = PolicySet::from_str("err.cedar", text).unwrap();
    let scope = Scope::http("https://example.com").unwrap();
    let d = set.authorize_call(
        &Principal::local(),
        &first_party("x"),
        CallAction::HttpRequest,
        &scope,
    );
    // Cedar skips the failing policy; the error is kept with the decision.
    assert!(d.allowed);
    assert_eq!(d.policy_ids, ["all-http"]);
    assert_eq!(d.errors.len(), 1, "{d}");
    assert!(d.errors[0].contains("overflowing-forbid"), "{d}");
}

// Verifies: FC-POL-1407
#[test]
fn invoke_policies_see_the_function() {
    let text = r#"
        @id("only-greet")
        permit (principal, action == FemtoClaw::Action::"invoke", resource)
        when { context has function && context.function == "greet" };
    "#;
    let set = PolicySet::from_str("f.cedar", text).unwrap();
    let local = Principal::local();
    let hello = first_party("hello");
    assert!(
        set.authorize_invoke_function(&local, &hello, Some("greet"))
            .allowed
    );
    assert!(
        !set.authorize_invoke_function(&local, &hello, Some("shout"))
            .allowed
    );
    assert!(!set.authorize_invoke(&local, &hello).allowed);
}

// Verifies: FC-POL-1405, FC-SEC-5602
#[test]
fn group_membership_reaches_the_policy() {
    let text = r#"
        @id("ops-may-invoke")
        permit (principal in FemtoClaw::Group::"ops", action == FemtoClaw::Action::"invoke", resource);
    "#;
    let set = PolicySet::from_str("g.cedar", text).unwrap();
    let hello = first_party("hello");
    assert!(
        set.authorize_invoke(&Principal::agent("bot").with_group("ops"), &hello)
            .allowed
    );
    assert!(
        !set.authorize_invoke(&Principal::agent("bot").with_group("dev"), &hello)
            .allowed
    );
    assert!(
        !set.authorize_invoke(&Principal::agent("bot"), &hello)
            .allowed
    );
}

// Verifies: FC-POL-1415, FC-POL-1510
#[test]
fn the_default_policy_lets_local_invoke_first_party_only() {
    let set = PolicySet::default_policy().unwrap();
    let local = Principal::local();

    let d = set.authorize_invoke(&local, &first_party("hello"));
    assert!(d.allowed);
    assert_eq!(d.policy_ids, ["default:invoke-first-party"]);

    // Another principal, even a user.
    assert!(
        !set.authorize_invoke(&Principal::user("mallory"), &first_party("hello"))
            .allowed
    );
    assert!(
        !set.authorize_invoke(&Principal::agent("local"), &first_party("hello"))
            .allowed
    );
    // A third-party publisher.
    let d = set.authorize_invoke(&local, &cap("hello", "acme"));
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::NoPermit);
}

// Verifies: FC-POL-1422, FC-POL-1510
#[test]
fn the_default_policy_links_host_interfaces_and_the_baseline_but_nothing_else() {
    let set = PolicySet::default_policy().unwrap();
    let local = Principal::local();
    let hello = first_party("hello");
    for interface in [
        "femtoclaw:host/log@0.1.0",
        "femtoclaw:host/keyvalue-prefix@0.1.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:clocks/wall-clock@0.2.12",
        "wasi:cli/environment@0.2.0",
        "wasi:filesystem/preopens@0.2.12",
    ] {
        let d = set.authorize_link(&local, &hello, interface);
        assert!(d.allowed, "{interface}: {d}");
        assert_eq!(d.policy_ids, ["default:link-host-and-baseline"]);
    }
    for interface in [
        "femtoclaw:host/log@0.2.0",
        "wasi:keyvalue/atomics@0.2.0-draft2",
        "wasi:http/outgoing-handler@0.2.12",
        "wasi:clocks/wall-clock@0.3.0",
        "acme:tools/shell@1.0.0",
    ] {
        assert!(
            !set.authorize_link(&local, &hello, interface).allowed,
            "{interface}"
        );
    }
    // A third-party capability links nothing, baseline included.
    let d = set.authorize_link(&local, &cap("x", "acme"), "wasi:clocks/wall-clock@0.2.12");
    assert!(!d.allowed);
}

// Verifies: FC-POL-1401, FC-POL-1510, FC-FORMAL-5116
#[test]
fn the_default_policy_grants_no_network_files_or_secrets() {
    let set = PolicySet::default_policy().unwrap();
    let local = Principal::local();
    let hello = first_party("hello");
    let denied = [
        (
            CallAction::HttpRequest,
            Scope::http("https://example.com").unwrap(),
        ),
        (CallAction::FsRead, Scope::path("/").unwrap()),
        (CallAction::FsWrite, Scope::path("/tmp").unwrap()),
        (CallAction::SecretUse, Scope::Secret("token".into())),
        (CallAction::ConfigRead, Scope::ConfigKey("endpoint".into())),
        (CallAction::KvRead, Scope::KvNamespace("other".into())),
    ];
    let destination = Scope::http("https://example.com").unwrap();
    for (action, scope) in denied {
        let d = if action.takes_destination() {
            set.authorize_call_to(&local, &hello, action, &scope, &destination)
        } else {
            set.authorize_call(&local, &hello, action, &scope)
        };
        assert!(!d.allowed, "{action} {scope}");
        assert_eq!(d.reason, Reason::NoPermit);
    }
    // Its own key-value namespace only.
    let own = Scope::KvNamespace("hello".into());
    assert!(
        set.authorize_call(&local, &hello, CallAction::KvWrite, &own)
            .allowed
    );
}

// Verifies: FC-POL-1422
#[test]
fn host_wildcards_match_subdomains_through_cedar_like() {
    let text = r#"
        @id("example-subdomains")
        permit (principal, action == FemtoClaw::Action::"http.request", resource)
        when { resource.scheme == "https" && resource.host like "*.example.com" && resource.port == 443 };
    "#;
    let set = PolicySet::from_str("h.cedar", text).unwrap();
    let local = Principal::local();
    let fetch = cap("fetch", "acme");
    let decide = |url: &str| {
        set.authorize_call(
            &local,
            &fetch,
            CallAction::HttpRequest,
            &Scope::http(url).unwrap(),
        )
    };
    assert!(decide("https://api.example.com").allowed);
    assert!(decide("https://a.b.example.com").allowed);
    assert_eq!(
        decide("https://api.example.com").policy_ids,
        ["example-subdomains"]
    );
    assert!(!decide("https://example.com").allowed);
    assert!(!decide("https://evilexample.com").allowed);
    assert!(!decide("https://api.example.com.evil.org").allowed);
    assert!(!decide("http://api.example.com").allowed);
    assert!(!decide("https://api.example.com:8443").allowed);
}

// Verifies: FC-POL-1406, FC-POL-1422
#[test]
fn call_policies_see_the_capability_in_the_context() {
    let text = r#"
        @id("cache-for-fetch")
        permit (principal, action == FemtoClaw::Action::"kv.read", resource == FemtoClaw::KvNamespace::"cache")
        when { context.capability == FemtoClaw::Capability::"fetch" };
    "#;
    let set = PolicySet::from_str("kv.cedar", text).unwrap();
    let ns = Scope::KvNamespace("cache".into());
    let local = Principal::local();
    assert!(
        set.authorize_call(&local, &cap("fetch", "acme"), CallAction::KvRead, &ns)
            .allowed
    );
    assert!(
        !set.authorize_call(&local, &cap("other", "acme"), CallAction::KvRead, &ns)
            .allowed
    );
    assert!(
        !set.authorize_call(&local, &cap("fetch", "acme"), CallAction::KvWrite, &ns)
            .allowed
    );
}

// Verifies: FC-POL-1409, FC-FORMAL-5113
#[test]
fn a_scope_of_the_wrong_kind_is_a_malformed_request() {
    let set = PolicySet::from_str("all.cedar", "permit (principal, action, resource);").unwrap();
    let d = set.authorize_call(
        &Principal::local(),
        &first_party("hello"),
        CallAction::HttpRequest,
        &Scope::Secret("token".into()),
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::Malformed);
    assert!(!d.errors.is_empty());
}

// Verifies: FC-POL-1409, FC-FORMAL-5113
#[test]
fn a_malformed_interface_is_denied_even_under_permit_all() {
    let set = PolicySet::from_str("all.cedar", "permit (principal, action, resource);").unwrap();
    let d = set.authorize_link(
        &Principal::local(),
        &first_party("hello"),
        "not an interface",
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::Malformed);
}

// Verifies: FC-POL-1419
#[test]
fn decisions_serialize_with_a_hex_digest() {
    let set = PolicySet::default_policy().unwrap();
    let d = set.authorize_invoke(&Principal::local(), &first_party("hello"));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["allowed"], true);
    assert_eq!(json["reason"], "permitted");
    assert_eq!(json["policy_digest"], set.digest_hex());
    let back: femtoclaw_policy::Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}

// Verifies: FC-POL-1412, FC-POL-1413
/// A `permit` annotated `@approval("required")` marks what it allows as needing a person's
/// approval, even when a broader permit also allows it; `approve` is an action policies grant.
#[test]
fn an_approval_permit_marks_what_it_allows_as_needing_approval() {
    let text = r#"
        @id("anyone-may-greet")
        permit (principal, action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"hello");

        @id("payments-need-a-human")
        @approval("required")
        permit (principal, action == FemtoClaw::Action::"invoke", resource == FemtoClaw::Capability::"pay")
        when { context has function && context.function == "send" };

        @id("also-pay")
        permit (principal == FemtoClaw::User::"local", action == FemtoClaw::Action::"invoke", resource);

        @id("treasurer-approves")
        permit (principal == FemtoClaw::User::"treasurer", action == FemtoClaw::Action::"approve", resource == FemtoClaw::Capability::"pay");
    "#;
    let set = PolicySet::from_str("approvals.cedar", text).unwrap();
    let agent = Principal::agent("bot");
    let pay = first_party("pay");
    let send = set.authorize_invoke_function(&agent, &pay, Some("send"));
    assert!(send.allowed && set.needs_approval(&send), "{send}");
    let greet = set.authorize_invoke_function(&agent, &first_party("hello"), Some("greet"));
    assert!(greet.allowed && !set.needs_approval(&greet));
    // A broader permit that also applies does not waive it.
    let local = set.authorize_invoke_function(&Principal::local(), &pay, Some("send"));
    assert_eq!(local.policy_ids, ["also-pay", "payments-need-a-human"]);
    assert!(set.needs_approval(&local));
    // Denied is never "needs approval".
    let refund = set.authorize_invoke_function(&agent, &pay, Some("refund"));
    assert!(!refund.allowed && !set.needs_approval(&refund));
    assert!(
        set.policies()
            .iter()
            .any(|p| p.id == "payments-need-a-human" && p.approval)
    );

    assert!(
        set.authorize_approve(&Principal::user("treasurer"), &pay, "send")
            .allowed
    );
    assert!(!set.authorize_approve(&agent, &pay, "send").allowed);
}

// Verifies: FC-POL-1505
#[test]
fn a_bad_approval_annotation_is_refused_naming_the_policy() {
    for (text, says) in [
        (
            "@id(\"p\")\n@approval(\"maybe\")\npermit (principal, action, resource);",
            "`@approval(\"maybe\")`: the only value is `\"required\"`",
        ),
        (
            "@id(\"f\")\n@approval(\"required\")\nforbid (principal, action, resource);",
            "applies to a `permit`, not a `forbid`",
        ),
    ] {
        let err = PolicySet::from_str("bad.cedar", text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
    }
}
