//! The policy's guarantees as properties (specification 51): over generated policy sets, every
//! decision equals an independent model of the rules — default deny, a `forbid` overrides any
//! `permit`, the determining ids are exactly the rules that decided — and decisions are
//! monotone (a permit never takes an allowance away, a forbid never adds one), independent of
//! the order the policies are written in, and carry the digest of the set that made them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad data

use femtoclaw_policy::{CallAction, CapabilityRef, PolicySet, Principal, Reason, Scope};
use proptest::prelude::*;

const USERS: [&str; 2] = ["alice", "bob"];
const AGENTS: [&str; 2] = ["bot", "crawler"];
const CAPS: [&str; 2] = ["hello", "shell"];
const LOG: &str = "femtoclaw:host/log@0.1.0";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Any,
    User(usize),
    Agent(usize),
    AnyAgent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum What {
    Any,
    Invoke,
    Link,
}

/// One generated rule, `@id("r<id>")`.
#[derive(Debug, Clone)]
struct Rule {
    forbid: bool,
    who: Who,
    what: What,
    /// The capability the rule names (`resource == Capability::"…"`); never with `link`,
    /// whose resource is an interface.
    cap: Option<usize>,
    id: usize,
}

/// A request: a principal invoking a capability, or linking `LOG` into it.
#[derive(Debug, Clone, Copy)]
struct Req {
    agent: bool,
    principal: usize,
    cap: usize,
    link: bool,
}

impl Rule {
    fn cedar(&self) -> String {
        let effect = if self.forbid { "forbid" } else { "permit" };
        let principal = match self.who {
            Who::Any => "principal".to_owned(),
            Who::User(u) => format!("principal == FemtoClaw::User::\"{}\"", USERS[u]),
            Who::Agent(a) => format!("principal == FemtoClaw::Agent::\"{}\"", AGENTS[a]),
            Who::AnyAgent => "principal is FemtoClaw::Agent".to_owned(),
        };
        let action = match self.what {
            What::Any => "action",
            What::Invoke => "action == FemtoClaw::Action::\"invoke\"",
            What::Link => "action == FemtoClaw::Action::\"link\"",
        };
        let resource = match self.cap {
            Some(c) => format!("resource == FemtoClaw::Capability::\"{}\"", CAPS[c]),
            None => "resource".to_owned(),
        };
        format!(
            "@id(\"r{}\")\n{effect} ({principal}, {action}, {resource});\n",
            self.id
        )
    }

    /// The model: does the rule apply to the request?
    fn applies(&self, req: &Req) -> bool {
        let who = match self.who {
            Who::Any => true,
            Who::User(u) => !req.agent && req.principal == u,
            Who::Agent(a) => req.agent && req.principal == a,
            Who::AnyAgent => req.agent,
        };
        let what = match self.what {
            What::Any => true,
            What::Invoke => !req.link,
            What::Link => req.link,
        };
        // A capability named as the resource matches only an invocation of it.
        let resource = self.cap.is_none_or(|c| !req.link && req.cap == c);
        who && what && resource
    }
}

/// What the model decides: allowed, why, and the ids of the rules that decided.
fn model(rules: &[Rule], req: &Req) -> (bool, Reason, Vec<String>) {
    let ids = |forbid: bool| {
        let mut ids: Vec<String> = rules
            .iter()
            .filter(|r| r.forbid == forbid && r.applies(req))
            .map(|r| format!("r{}", r.id))
            .collect();
        ids.sort();
        ids
    };
    let (forbids, permits) = (ids(true), ids(false));
    if !forbids.is_empty() {
        (false, Reason::Forbidden, forbids)
    } else if !permits.is_empty() {
        (true, Reason::Permitted, permits)
    } else {
        (false, Reason::NoPermit, Vec::new())
    }
}

fn rule() -> impl Strategy<Value = (bool, Who, What, Option<usize>)> {
    let who = prop_oneof![
        Just(Who::Any),
        (0..USERS.len()).prop_map(Who::User),
        (0..AGENTS.len()).prop_map(Who::Agent),
        Just(Who::AnyAgent),
    ];
    let what = prop_oneof![Just(What::Any), Just(What::Invoke), Just(What::Link)];
    (
        prop::bool::weighted(0.3),
        who,
        what,
        prop::option::of(0..CAPS.len()),
    )
}

/// Up to `n` rules with distinct ids.
fn rules(n: usize) -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(rule(), 0..n).prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(id, (forbid, who, what, cap))| Rule {
                forbid,
                who,
                what,
                cap: if what == What::Link { None } else { cap },
                id,
            })
            .collect()
    })
}

fn set(rules: &[Rule]) -> PolicySet {
    let text: String = rules.iter().map(Rule::cedar).collect();
    PolicySet::from_str("gen.cedar", &text).unwrap()
}

/// Every request the generated rules can be asked about.
fn requests() -> Vec<Req> {
    let mut all = Vec::new();
    for agent in [false, true] {
        for principal in 0..2 {
            for cap in 0..CAPS.len() {
                for link in [false, true] {
                    all.push(Req {
                        agent,
                        principal,
                        cap,
                        link,
                    });
                }
            }
        }
    }
    all
}

fn decide(set: &PolicySet, req: &Req) -> femtoclaw_policy::Decision {
    let who = if req.agent {
        Principal::agent(AGENTS[req.principal])
    } else {
        Principal::user(USERS[req.principal])
    };
    let cap = CapabilityRef::new(CAPS[req.cap], "0.1.0", "00".repeat(32), "acme");
    if req.link {
        set.authorize_link(&who, &cap, LOG)
    } else {
        set.authorize_invoke(&who, &cap)
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every decision is the model's: allowed exactly when some permit applies and no forbid
    /// does; denied by default, with no ids, when nothing applies; a forbid decides over any
    /// permit, and the ids are exactly the deciding rules, sorted; the digest is the set's.
    // Verifies: FC-FORMAL-5101, FC-FORMAL-5102, FC-FORMAL-5103, FC-FORMAL-5104, FC-FORMAL-5109
    #[test]
    fn decisions_are_default_deny_with_forbid_over_permit(rules in rules(8)) {
        let set = set(&rules);
        for req in requests() {
            let d = decide(&set, &req);
            let (allowed, reason, ids) = model(&rules, &req);
            prop_assert_eq!(d.allowed, allowed, "{:?} under {:?}", req, rules);
            prop_assert_eq!(d.reason, reason, "{:?}", req);
            prop_assert_eq!(&d.policy_ids, &ids, "{:?}", req);
            prop_assert_eq!(d.policy_digest, set.digest());
        }
    }

    /// A set with no permit denies everything — invocations, links and host calls — whatever
    /// its forbids say.
    // Verifies: FC-FORMAL-5102
    #[test]
    fn without_a_permit_everything_is_denied(rules in rules(8)) {
        let forbids: Vec<Rule> = rules.into_iter().filter(|r| r.forbid).collect();
        let set = set(&forbids);
        for req in requests() {
            let d = decide(&set, &req);
            prop_assert!(!d.allowed, "{:?} under {:?}", req, forbids);
            prop_assert!(matches!(d.reason, Reason::NoPermit | Reason::Forbidden));
        }
        let cap = CapabilityRef::new("hello", "0.1.0", "00".repeat(32), "acme");
        let call = set.authorize_call(
            &Principal::local(),
            &cap,
            CallAction::KvRead,
            &Scope::KvNamespace("notes".into()),
        );
        prop_assert!(!call.allowed);
    }

    /// A forbid naming the request exactly overrides whatever the other rules permit: denied,
    /// `Forbidden`, and the forbid among the ids.
    // Verifies: FC-FORMAL-5103
    #[test]
    fn a_forbid_overrides_any_permit(rules in rules(8), pick in 0..16usize) {
        let req = requests()[pick];
        let mut with = rules.clone();
        let id = rules.len();
        with.push(Rule {
            forbid: true,
            who: if req.agent { Who::Agent(req.principal) } else { Who::User(req.principal) },
            what: if req.link { What::Link } else { What::Invoke },
            cap: (!req.link).then_some(req.cap),
            id,
        });
        let d = decide(&set(&with), &req);
        prop_assert!(!d.allowed);
        prop_assert_eq!(d.reason, Reason::Forbidden);
        prop_assert!(d.policy_ids.contains(&format!("r{id}")), "{:?}", d.policy_ids);
    }

    /// Monotonicity: adding a permit never denies what was allowed; adding a forbid never
    /// allows what was denied.
    // Verifies: FC-FORMAL-5105
    #[test]
    fn a_permit_only_adds_and_a_forbid_only_takes_away(
        rules in rules(7),
        extra in rule(),
    ) {
        let (forbid, who, what, cap) = extra;
        let mut with = rules.clone();
        with.push(Rule {
            forbid,
            who,
            what,
            cap: if what == What::Link { None } else { cap },
            id: rules.len(),
        });
        let (before, after) = (set(&rules), set(&with));
        for req in requests() {
            let (was, is) = (decide(&before, &req).allowed, decide(&after, &req).allowed);
            if forbid {
                prop_assert!(!is || was, "a forbid allowed {:?}", req);
            } else {
                prop_assert!(is || !was, "a permit denied {:?}", req);
            }
        }
    }

    /// The order policies are written in changes nothing: the same decisions and the same
    /// digest; a set with one more policy has another digest.
    // Verifies: FC-FORMAL-5106
    #[test]
    fn order_is_irrelevant_and_the_digest_names_the_set(
        rules in rules(8),
        shuffle in any::<prop::sample::Index>(),
    ) {
        let mut reordered = rules.clone();
        reordered.reverse();
        if !reordered.is_empty() {
            let at = shuffle.index(reordered.len());
            reordered.rotate_left(at);
        }
        let (a, b) = (set(&rules), set(&reordered));
        prop_assert_eq!(a.digest(), b.digest());
        for req in requests() {
            let (x, y) = (decide(&a, &req), decide(&b, &req));
            prop_assert_eq!(x.allowed, y.allowed);
            prop_assert_eq!(x.reason, y.reason);
            prop_assert_eq!(x.policy_ids, y.policy_ids);
        }
        let mut more = rules.clone();
        more.push(Rule { forbid: false, who: Who::Any, what: What::Invoke, cap: None, id: rules.len() });
        prop_assert_ne!(set(&more).digest(), a.digest());
    }
}
