//! Property: over generated manifests and policies, the grant and every call decision equal
//! manifest ∩ policy, computed here by an independent model of the generated policies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad data

use femtoclaw_policy::{
    CallAction, CapabilityRef, KvRequest, PolicySet, Principal, Requests, Scope,
    is_virtualized_baseline,
};
use proptest::prelude::*;

const INTERFACES: [&str; 5] = [
    "femtoclaw:host/log@0.1.0",
    "acme:net/http@1.0.0",
    "acme:kv/store@0.1.0",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:random/random@0.2.12",
];
const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const SECRETS: [&str; 2] = ["s1", "s2"];
/// Manifest HTTP entries and the concrete hosts each covers (the model of manifest coverage).
const HTTP_ENTRIES: [(&str, &str, &[&str]); 3] = [
    (
        "https://*.example.com",
        "*.example.com",
        &["api.example.com", "www.example.com"],
    ),
    (
        "https://api.example.com",
        "api.example.com",
        &["api.example.com"],
    ),
    ("https://other.org", "other.org", &["other.org"]),
];
const HOSTS: [&str; 3] = ["api.example.com", "www.example.com", "other.org"];
const HOST_PATTERNS: [&str; 4] = ["*.example.com", "api.example.com", "other.org", "*"];
const CAPS: [&str; 2] = ["cap", "other"];

/// What a generated rule applies to.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Link(usize),
    LinkBaseline,
    Kv { write: bool, ns: usize },
    Secret(usize),
    Http(usize),
    AnyCall,
}

#[derive(Debug, Clone)]
struct Rule {
    forbid: bool,
    target: Target,
    /// Only for this capability name, else any.
    cap: Option<usize>,
}

/// A request as the model sees it.
#[derive(Debug, Clone, PartialEq)]
enum Req<'a> {
    Link(&'a str),
    Kv {
        write: bool,
        ns: &'a str,
    },
    Secret(&'a str),
    /// The host text given to Cedar (a pattern for manifest entries, concrete at call time).
    Http(&'a str),
}

/// Cedar's `like` with `*` as the only wildcard.
fn like(text: &str, pattern: &str) -> bool {
    match pattern.split_once('*') {
        None => text == pattern,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && like(&rest[i..], tail))
        }
    }
}

impl Rule {
    fn cedar(&self) -> String {
        let effect = if self.forbid { "forbid" } else { "permit" };
        let (scope, mut conditions) = match &self.target {
            Target::Link(i) => (
                format!(
                    "action == FemtoClaw::Action::\"link\", resource == FemtoClaw::Interface::\"{}\"",
                    INTERFACES[*i]
                ),
                vec![],
            ),
            Target::LinkBaseline => (
                "action == FemtoClaw::Action::\"link\", resource".to_owned(),
                vec!["resource.baseline".to_owned()],
            ),
            Target::Kv { write, ns } => (
                format!(
                    "action == FemtoClaw::Action::\"kv.{}\", resource == FemtoClaw::KvNamespace::\"{}\"",
                    if *write { "write" } else { "read" },
                    NAMESPACES[*ns]
                ),
                vec![],
            ),
            Target::Secret(i) => (
                format!(
                    "action == FemtoClaw::Action::\"secret.use\", resource == FemtoClaw::Secret::\"{}\"",
                    SECRETS[*i]
                ),
                vec![],
            ),
            Target::Http(i) => (
                "action == FemtoClaw::Action::\"http.request\", resource".to_owned(),
                vec![format!("resource.host like \"{}\"", HOST_PATTERNS[*i])],
            ),
            Target::AnyCall => (
                "action in [FemtoClaw::Action::\"kv.read\", FemtoClaw::Action::\"kv.write\", \
                 FemtoClaw::Action::\"secret.use\", FemtoClaw::Action::\"http.request\"], resource"
                    .to_owned(),
                vec![],
            ),
        };
        if let Some(c) = self.cap {
            conditions.push(format!("context.capability.name == \"{}\"", CAPS[c]));
        }
        let when = if conditions.is_empty() {
            String::new()
        } else {
            format!(" when {{ {} }}", conditions.join(" && "))
        };
        format!("{effect} (principal, {scope}){when};\n")
    }

    fn applies(&self, cap: &str, req: &Req<'_>) -> bool {
        if self.cap.is_some_and(|c| CAPS[c] != cap) {
            return false;
        }
        match (&self.target, req) {
            (Target::Link(i), Req::Link(name)) => INTERFACES[*i] == *name,
            (Target::LinkBaseline, Req::Link(name)) => is_virtualized_baseline(name),
            (Target::Kv { write, ns }, Req::Kv { write: w, ns: n }) => {
                write == w && NAMESPACES[*ns] == *n
            }
            (Target::Secret(i), Req::Secret(s)) => SECRETS[*i] == *s,
            (Target::Http(i), Req::Http(host)) => like(host, HOST_PATTERNS[*i]),
            (Target::AnyCall, Req::Kv { .. } | Req::Secret(_) | Req::Http(_)) => true,
            _ => false,
        }
    }
}

/// The model of Cedar's semantics for these rules: some permit applies and no forbid does.
fn model_allows(rules: &[Rule], cap: &str, req: &Req<'_>) -> bool {
    let applying = |forbid: bool| {
        rules
            .iter()
            .any(|r| r.forbid == forbid && r.applies(cap, req))
    };
    applying(false) && !applying(true)
}

fn rule() -> impl Strategy<Value = Rule> {
    let target = prop_oneof![
        (0..INTERFACES.len()).prop_map(Target::Link),
        Just(Target::LinkBaseline),
        (any::<bool>(), 0..NAMESPACES.len()).prop_map(|(write, ns)| Target::Kv { write, ns }),
        (0..SECRETS.len()).prop_map(Target::Secret),
        (0..HOST_PATTERNS.len()).prop_map(Target::Http),
        Just(Target::AnyCall),
    ];
    (
        prop::bool::weighted(0.25),
        target,
        prop::option::of(0..CAPS.len()),
    )
        .prop_map(|(forbid, target, cap)| Rule {
            forbid,
            target,
            cap,
        })
}

fn requests() -> impl Strategy<Value = Requests> {
    (
        prop::sample::subsequence(INTERFACES.to_vec(), 0..=INTERFACES.len()),
        prop::collection::vec((0..NAMESPACES.len(), any::<bool>()), 0..4),
        prop::sample::subsequence(SECRETS.to_vec(), 0..=SECRETS.len()),
        prop::sample::subsequence(vec![0usize, 1, 2], 0..=3),
    )
        .prop_map(|(imports, kv, secrets, http)| Requests {
            imports: imports.into_iter().map(str::to_owned).collect(),
            kv: kv
                .into_iter()
                .map(|(ns, write)| KvRequest {
                    namespace: NAMESPACES[ns].to_owned(),
                    write,
                })
                .collect(),
            secrets: secrets.into_iter().map(str::to_owned).collect(),
            http: http
                .into_iter()
                .map(|i| HTTP_ENTRIES[i].0.to_owned())
                .collect(),
            ..Requests::default()
        })
}

fn manifest_covers(requests: &Requests, req: &Req<'_>) -> bool {
    match req {
        Req::Link(name) => {
            is_virtualized_baseline(name) || requests.imports.iter().any(|i| i == name)
        }
        Req::Kv { write, ns } => requests
            .kv
            .iter()
            .any(|k| k.namespace == *ns && (k.write || !write)),
        Req::Secret(s) => requests.secrets.iter().any(|x| x == s),
        Req::Http(host) => HTTP_ENTRIES.iter().any(|(entry, _, covers)| {
            requests.http.iter().any(|h| h == entry) && covers.contains(host)
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    // Verifies: FC-POL-1601, FC-POL-1612, FC-POL-1620, FC-POL-1701, FC-POL-1720, FC-FORMAL-5107, FC-FORMAL-5101, FC-FORMAL-5109
    #[test]
    fn the_grant_never_exceeds_manifest_and_policy(
        rules in prop::collection::vec(rule(), 0..8),
        requests in requests(),
        cap_index in 0..CAPS.len(),
    ) {
        let text: String = rules.iter().map(Rule::cedar).collect();
        let set = PolicySet::from_str("gen.cedar", &text).unwrap();
        let cap_name = CAPS[cap_index];
        let cap = CapabilityRef::new(cap_name, "1.0.0", "ef".repeat(32), "acme");
        let who = Principal::agent("bot");

        // Imports: the component imports every known interface.
        let grant = set.grant_for_component(&who, &cap, &requests, INTERFACES);
        for name in INTERFACES {
            let req = Req::Link(name);
            let expected = manifest_covers(&requests, &req) && model_allows(&rules, cap_name, &req);
            prop_assert_eq!(grant.links(name), expected, "import {} under\n{}", name, text);
            let d = set.check_link(&who, &cap, &requests, name);
            prop_assert_eq!(d.allowed, expected, "check_link {}", name);
        }
        prop_assert!(grant.imports.iter().all(|i| INTERFACES.contains(&i.as_str())));

        // Requested scopes: each granted entry is requested and permitted as written.
        for g in &grant.scopes {
            let req = match (&g.action, &g.scope) {
                (CallAction::KvRead, Scope::KvNamespace(n)) => Req::Kv { write: false, ns: n },
                (CallAction::KvWrite, Scope::KvNamespace(n)) => Req::Kv { write: true, ns: n },
                (CallAction::SecretUse, Scope::Secret(s)) => Req::Secret(s),
                (CallAction::HttpRequest, Scope::HttpHost { host, .. }) => Req::Http(host),
                other => { prop_assert!(false, "unexpected granted scope {:?}", other); unreachable!() }
            };
            prop_assert!(model_allows(&rules, cap_name, &req), "granted {:?}", req);
            let requested = match &req {
                Req::Http(pattern) => HTTP_ENTRIES.iter().any(|(entry, p, _)| p == pattern && requests.http.iter().any(|h| h == entry)),
                other => manifest_covers(&requests, other),
            };
            prop_assert!(requested, "granted but not requested: {:?}", req);
        }

        // Call time, concrete resources: allowed exactly on manifest ∩ policy.
        let mut calls: Vec<(CallAction, Scope, Req<'_>)> = Vec::new();
        for ns in NAMESPACES {
            calls.push((CallAction::KvRead, Scope::KvNamespace(ns.into()), Req::Kv { write: false, ns }));
            calls.push((CallAction::KvWrite, Scope::KvNamespace(ns.into()), Req::Kv { write: true, ns }));
        }
        for s in SECRETS {
            calls.push((CallAction::SecretUse, Scope::Secret(s.into()), Req::Secret(s)));
        }
        for h in HOSTS {
            calls.push((CallAction::HttpRequest, Scope::http(&format!("https://{h}")).unwrap(), Req::Http(h)));
        }
        for (action, scope, req) in calls {
            let expected = manifest_covers(&requests, &req) && model_allows(&rules, cap_name, &req);
            // No rule here looks at a secret's destination: any origin decides the same.
            let d = if action.takes_destination() {
                let destination = Scope::http("https://api.example.com").unwrap();
                set.check_call_to(&who, &cap, &requests, action, &scope, &destination)
            } else {
                set.check_call(&who, &cap, &requests, action, &scope)
            };
            prop_assert_eq!(d.allowed, expected, "{} {} under\n{}\nmanifest {:?}", action, scope, text, requests);
            prop_assert_eq!(d.policy_digest, set.digest());
        }
    }
}
