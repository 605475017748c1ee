//! The host's HTTP caps bound every request, whatever the capability asks: a request body over
//! the cap is refused before anything else happens, and a longer timeout than the host's is cut
//! to the host's. Runs the first-party fetch component in the sandbox directly (bodies larger
//! than a command line can carry).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use femtoclaw_policy::{CapabilityRef, PolicySet, Principal, Requests};
use femtoclaw_sandbox::{
    Context, Egress, HostContext, HttpLimits, Outcome, Sandbox, SandboxConfig,
};
use serde_json::{Value as Json, json};

/// Runs fetch's `function` with `args`, the host's caps `limits`, and a policy that grants
/// `origin` and loopback addresses.
fn fetch(function: &str, args: &Json, limits: HttpLimits, origin: &str) -> Outcome {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let prepared = sandbox
        .prepare(femtoclaw_capabilities::find("fetch").unwrap().component)
        .unwrap();
    let policy = PolicySet::from_str(
        "caps.cedar",
        r#"
        permit (principal, action == FemtoClaw::Action::"http.request", resource);
        permit (principal, action == FemtoClaw::Action::"net.connect", resource)
        when { resource.address.isLoopback() };
        "#,
    )
    .unwrap();
    let requests = Requests {
        imports: vec!["femtoclaw:host/http@0.1.0".into()],
        http: vec![origin.to_owned()],
        ..Requests::default()
    };
    let cap = CapabilityRef::new("fetch", "0.1.0", "", "test");
    let context = Context {
        host: HostContext {
            http: Egress {
                limits,
                ..Egress::default()
            },
            ..HostContext::default()
        },
        ..Context::new(Arc::new(policy.call_checker(
            &Principal::local(),
            &cap,
            &requests,
        )))
    };
    sandbox
        .invoke(
            &prepared,
            function,
            args,
            1_000_000_000,
            &femtoclaw_tests::grant_all(&prepared),
            context,
        )
        .unwrap()
}

fn error(outcome: &Outcome) -> String {
    let result = outcome.result.as_ref().unwrap();
    result["err"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {result}"))
        .to_owned()
}

// Verifies: FC-CAP-1218, FC-SEC-2021
#[test]
fn a_request_body_over_the_hosts_cap_is_refused_before_it_is_sent() {
    let limits = HttpLimits {
        max_request_bytes: 16,
        ..HttpLimits::default()
    };
    // The origin is granted, but nothing listens there: a body within the cap gets as far as
    // connecting, one over it is refused first.
    let origin = "http://127.0.0.1:9";
    let args = |body: &str| json!({ "url": "http://127.0.0.1:9/", "content-type": "text/plain", "body": body });
    let over = fetch("post", &args(&"x".repeat(17)), limits, origin);
    assert_eq!(
        error(&over),
        "too large: the request body of 17 bytes is larger than the host's cap of 16 bytes"
    );
    assert!(
        over.host_calls[0].decisions.is_empty(),
        "nothing was decided"
    );
    let within = fetch("post", &args(&"x".repeat(16)), limits, origin);
    assert!(
        error(&within).starts_with("connection: "),
        "{:?}",
        within.result
    );
    // The default cap is 1 MiB.
    let big = "x".repeat((1 << 20) + 1);
    let over = fetch("post", &args(&big), HttpLimits::default(), origin);
    assert!(error(&over).starts_with("too large: the request body of 1048577 bytes"));
}

// Verifies: FC-CAP-1218, FC-SEC-2023
#[test]
fn a_capability_cannot_extend_the_hosts_timeout() {
    // Accepts connections and never answers; stops with the test.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(5));
        drop(held);
    });
    let limits = HttpLimits {
        timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let started = Instant::now();
    let outcome = fetch(
        "request",
        &json!({ "method": "GET", "url": format!("http://127.0.0.1:{port}/"), "timeout-ms": 60000 }),
        limits,
        &format!("http://127.0.0.1:{port}"),
    );
    assert!(
        error(&outcome).starts_with("timeout: "),
        "{:?}",
        outcome.result
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}
