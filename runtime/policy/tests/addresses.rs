//! `net.connect` on non-public addresses: decided by the policy alone, with Cedar's `ipaddr`
//! extension; the default policy grants none.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use femtoclaw_policy::{
    AddressKind, CallAction, CapabilityRef, PolicySet, Principal, Reason, Requests, Scope,
};

fn fetch() -> CapabilityRef {
    CapabilityRef::new(
        "fetch",
        "0.1.0",
        "00".repeat(32),
        CapabilityRef::FIRST_PARTY,
    )
}

fn connect(policy: &PolicySet, address: &str) -> femtoclaw_policy::Decision {
    // An empty manifest: `net.connect` needs no manifest entry.
    policy.check_call(
        &Principal::local(),
        &fetch(),
        &Requests::default(),
        CallAction::NetConnect,
        &Scope::address(address).unwrap(),
    )
}

// Verifies: FC-POL-1712, FC-SEC-2010
#[test]
fn the_default_policy_grants_no_special_address() {
    let policy = PolicySet::default_policy().unwrap();
    for address in [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "169.254.169.254",
        "fd00:ec2::254",
    ] {
        let d = connect(&policy, address);
        assert!(!d.allowed, "{address}");
        assert_eq!(d.reason, Reason::NoPermit, "{address}");
    }
}

// Verifies: FC-POL-1422, FC-POL-1707, FC-POL-1713, FC-SEC-2012
#[test]
fn policies_grant_addresses_by_ipaddr_methods_ranges_and_kind() {
    let policy = PolicySet::from_str(
        "net.cedar",
        r#"
        @id("loopback")
        permit (principal, action == FemtoClaw::Action::"net.connect", resource)
        when { resource.address.isLoopback() };

        @id("lab")
        permit (principal, action == FemtoClaw::Action::"net.connect", resource)
        when { resource.address.isInRange(ip("10.1.0.0/16")) };

        @id("link-local-but-metadata")
        permit (principal, action == FemtoClaw::Action::"net.connect", resource)
        when { resource.kind == "link-local" };
        "#,
    )
    .unwrap();
    assert_eq!(connect(&policy, "127.0.0.1").policy_ids, ["loopback"]);
    assert!(connect(&policy, "::1").allowed);
    assert!(connect(&policy, "::ffff:127.0.0.1").allowed);
    assert_eq!(connect(&policy, "10.1.2.3").policy_ids, ["lab"]);
    assert!(!connect(&policy, "10.2.0.1").allowed);
    assert!(connect(&policy, "169.254.1.1").allowed);
    // The metadata service is its own kind: a link-local grant does not reach it.
    assert!(!connect(&policy, "169.254.169.254").allowed);
}

#[test]
fn the_default_policy_links_http_for_first_party_capabilities_only() {
    let policy = PolicySet::default_policy().unwrap();
    let http = "femtoclaw:host/http@0.1.0";
    assert!(
        policy
            .authorize_link(&Principal::local(), &fetch(), http)
            .allowed
    );
    let third = CapabilityRef::new("fetch", "0.1.0", "00".repeat(32), "acme");
    assert!(
        !policy
            .authorize_link(&Principal::local(), &third, http)
            .allowed
    );
    // No host is granted.
    let requests = Requests {
        http: vec!["https://*".into()],
        ..Requests::default()
    };
    let d = policy.check_call(
        &Principal::local(),
        &fetch(),
        &requests,
        CallAction::HttpRequest,
        &Scope::http("https://example.com").unwrap(),
    );
    assert!(!d.allowed);
}

// Verifies: FC-POL-1719
#[test]
fn address_scopes_round_trip_through_their_canonical_text() {
    for text in ["127.0.0.1", "::1", "fd00:ec2::254"] {
        let scope = Scope::address(text).unwrap();
        assert_eq!(scope.canonical(), text);
        assert_eq!(Scope::parse(CallAction::NetConnect, text).unwrap(), scope);
    }
    assert_eq!(
        Scope::address("::ffff:10.0.0.1").unwrap().canonical(),
        "10.0.0.1"
    );
    assert!(Scope::address("localhost").is_err());
    assert_eq!(
        AddressKind::of("169.254.169.254".parse().unwrap()),
        AddressKind::Metadata
    );
}
