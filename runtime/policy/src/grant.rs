//! The effective grant, manifest ∩ policy, and the checks the link step and the gate ask.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::decision::{Decision, Reason};
use crate::model::{CallAction, CapabilityRef, InterfaceName, Principal, Scope};
use crate::requests::{RequestedScope, Requests, ScopeEntry, scope_covers};
use crate::set::PolicySet;

/// What a capability may link and touch for one principal: manifest ∩ policy.
///
/// Imports are decided exactly. Scopes are listed per manifest entry, decided with the entry
/// itself as the resource (an HTTP pattern such as `*.example.com` is given to Cedar as the
/// host text); at call time, [`PolicySet::check_call`] decides the concrete resource and is
/// the authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Imports that may be linked: requested (or baseline) and permitted.
    pub imports: BTreeSet<String>,
    /// Imports that may not be linked, with the deciding [`Decision`].
    pub denied_imports: Vec<(String, Decision)>,
    /// Requested scopes the policy grants.
    pub scopes: BTreeSet<RequestedScope>,
    /// Requested scope entries refused (by the policy, or malformed), as written.
    pub denied_scopes: Vec<(CallAction, String, Decision)>,
    /// The digest of the policy set that decided.
    #[serde(with = "crate::decision::digest_hex")]
    pub policy_digest: [u8; 32],
}

impl Grant {
    /// Whether `interface` may be linked.
    pub fn links(&self, interface: &str) -> bool {
        self.imports.contains(interface)
    }

    /// The decision that refused `interface`, if it was refused.
    pub fn denial(&self, interface: &str) -> Option<&Decision> {
        self.denied_imports
            .iter()
            .find(|(i, _)| i == interface)
            .map(|(_, d)| d)
    }

    /// Of a component's `imports`, those that may not be linked, each with its decision; empty
    /// means the component may be instantiated. Imports the grant never decided are refused as
    /// not requested.
    pub fn refused<'a>(
        &self,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, Decision)> {
        imports
            .into_iter()
            .filter(|i| !self.links(i))
            .map(|i| {
                let decision = self.denial(i).cloned().unwrap_or_else(|| {
                    Decision::deny_without_policy(Reason::NotRequested, None, self.policy_digest)
                });
                (i.to_owned(), decision)
            })
            .collect()
    }

    /// The proof that a component with `imports` may be linked, or every import refused with
    /// its decision. The [`LinkGrant`] is the only way into an invocation.
    pub fn authorize_link<'a>(
        &self,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Result<LinkGrant, Vec<(String, Decision)>> {
        let imports: BTreeSet<String> = imports.into_iter().map(str::to_owned).collect();
        let refused = self.refused(imports.iter().map(String::as_str));
        if refused.is_empty() {
            Ok(LinkGrant {
                imports,
                policy_digest: self.policy_digest,
            })
        } else {
            Err(refused)
        }
    }

    /// Whether a granted requested scope covers the concrete `scope` for `action`. A quick
    /// pre-check; [`PolicySet::check_call`] decides.
    pub fn permits_scope(&self, action: CallAction, scope: &Scope) -> bool {
        self.scopes
            .iter()
            .any(|g| g.action == action && scope_covers(&g.scope, scope))
    }

    /// Granted paths with what may be done there: the directories the host may preopen.
    pub fn paths(&self) -> Vec<PathGrant> {
        let mut out: Vec<PathGrant> = Vec::new();
        for g in &self.scopes {
            if let Scope::Path(p) = &g.scope {
                let i = match out.iter().position(|q| &q.path == p) {
                    Some(i) => i,
                    None => {
                        out.push(PathGrant {
                            path: p.clone(),
                            read: false,
                            write: false,
                        });
                        out.len() - 1
                    }
                };
                if let Some(entry) = out.get_mut(i) {
                    match g.action {
                        CallAction::FsRead => entry.read = true,
                        CallAction::FsWrite => entry.write = true,
                        _ => {}
                    }
                }
            }
        }
        out
    }
}

/// A granted path and the access granted below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathGrant {
    /// The normalized path.
    pub path: String,
    /// `fs.read` granted.
    pub read: bool,
    /// `fs.write` granted.
    pub write: bool,
}

impl PolicySet {
    /// The link-time decision for one import of `cap`: refused as `not requested by manifest`
    /// unless the manifest lists it or it is in the virtualized baseline; then the policy's
    /// `link` decision.
    pub fn check_link(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        interface: &str,
    ) -> Decision {
        if let Err(e) = InterfaceName::parse(interface) {
            return self.malformed(e.to_string());
        }
        if !requests.covers_import(interface) {
            return Decision::deny_without_policy(Reason::NotRequested, None, self.digest());
        }
        self.authorize_link(principal, cap, interface)
    }

    /// THE call-time decision the gate asks: may `cap`, run for `principal`, do `action` on the
    /// concrete `scope`? Denied as `not requested by manifest` unless a manifest entry covers
    /// it, whatever the policy says (except `net.connect`, which the policy alone decides); then
    /// the policy's decision for the concrete resource.
    pub fn check_call(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        action: CallAction,
        scope: &Scope,
    ) -> Decision {
        self.check(principal, cap, requests, action, scope, None)
    }

    /// [`PolicySet::check_call`] for an action decided with the destination of its effect
    /// (see [`PolicySet::authorize_call_to`]): `secret.use` with the concrete HTTP origin the
    /// secret is sent to.
    pub fn check_call_to(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        action: CallAction,
        scope: &Scope,
        destination: &Scope,
    ) -> Decision {
        self.check(principal, cap, requests, action, scope, Some(destination))
    }

    fn check(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        action: CallAction,
        scope: &Scope,
        destination: Option<&Scope>,
    ) -> Decision {
        if !action.fits(scope) {
            return self.malformed(format!(
                "scope `{scope}` is not a resource of action `{action}`"
            ));
        }
        for scope in std::iter::once(scope).chain(destination) {
            if let Err(reason) = concrete(scope) {
                return self.malformed(format!("scope `{scope}`: {reason}"));
            }
        }
        if action.needs_request() && !requests.covers(action, scope) {
            return Decision::deny_without_policy(Reason::NotRequested, None, self.digest());
        }
        self.authorize(principal, cap, action, scope, destination)
    }

    /// The decision on one manifest scope entry before any call, with the entry itself as the
    /// resource. An action that [takes a destination](CallAction::takes_destination) is
    /// decided against each HTTP origin the manifest requests, as written: granted when the
    /// policy permits one of them (the first such decision), else refused with the last
    /// refusal, or as not requested when the manifest requests no origin to send it to.
    pub(crate) fn decide_entry(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        entry: &ScopeEntry,
    ) -> Decision {
        let scope = match &entry.scope {
            Ok(scope) => scope,
            Err(e) => return self.malformed(e.to_string()),
        };
        if !entry.action.takes_destination() {
            return self.authorize_call(principal, cap, entry.action, scope);
        }
        let mut refused = Decision::deny_without_policy(
            Reason::NotRequested,
            Some("the manifest requests no HTTP origin to send it to".to_owned()),
            self.digest(),
        );
        for origin in requests.scope_entries() {
            let (CallAction::HttpRequest, Ok(destination)) = (origin.action, &origin.scope) else {
                continue;
            };
            let decision = self.authorize_call_to(principal, cap, entry.action, scope, destination);
            if decision.allowed {
                return decision;
            }
            refused = decision;
        }
        refused
    }

    /// The effective grant for the manifest's imports and scopes.
    pub fn grant(&self, principal: &Principal, cap: &CapabilityRef, requests: &Requests) -> Grant {
        self.grant_for_component(principal, cap, requests, std::iter::empty::<&str>())
    }

    /// The effective grant for the manifest plus the imports the component actually has
    /// (baseline ones are decided by the policy; others not in the manifest are refused).
    pub fn grant_for_component<'a>(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        component_imports: impl IntoIterator<Item = &'a str>,
    ) -> Grant {
        let mut all: BTreeSet<String> = requests.imports.iter().cloned().collect();
        all.extend(component_imports.into_iter().map(str::to_owned));
        let mut imports = BTreeSet::new();
        let mut denied_imports = Vec::new();
        for interface in all {
            let decision = self.check_link(principal, cap, requests, &interface);
            if decision.allowed {
                imports.insert(interface);
            } else {
                denied_imports.push((interface, decision));
            }
        }
        let mut scopes = BTreeSet::new();
        let mut denied_scopes = Vec::new();
        for entry in requests.scope_entries() {
            let decision = self.decide_entry(principal, cap, requests, &entry);
            match entry.scope {
                Ok(scope) if decision.allowed => {
                    scopes.insert(RequestedScope {
                        action: entry.action,
                        scope,
                    });
                }
                _ => denied_scopes.push((entry.action, entry.text, decision)),
            }
        }
        Grant {
            imports,
            denied_imports,
            scopes,
            denied_scopes,
            policy_digest: self.digest(),
        }
    }
}

/// The policy's permission to link one component: every import it names was granted. Made only
/// by [`Grant::authorize_link`]; the sandbox runs a component only under one that covers all
/// of its imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkGrant {
    imports: BTreeSet<String>,
    policy_digest: [u8; 32],
}

impl LinkGrant {
    /// Whether `import` was granted.
    pub fn covers(&self, import: &str) -> bool {
        self.imports.contains(import)
    }

    /// The digest of the policy set that granted it.
    pub fn policy_digest(&self) -> [u8; 32] {
        self.policy_digest
    }
}

/// Whether a call-time scope is concrete (no host pattern, normalized path).
fn concrete(scope: &Scope) -> Result<(), &'static str> {
    match scope {
        Scope::HttpHost { host, .. } if host.contains('*') => Err("a call names a concrete host"),
        Scope::Path(p) => match crate::model::normalize_path(p) {
            Ok(n) if &n == p => Ok(()),
            _ => Err("the path is not absolute and normalized (see `Scope::path`)"),
        },
        _ => Ok(()),
    }
}

/// The key of a cached [`Grant`]: everything a grant depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantKey {
    /// [`PolicySet::digest`].
    pub policy_digest: [u8; 32],
    /// The principal (id, kind and groups: a change of groups is a different key).
    pub principal: Principal,
    /// The component digest.
    pub capability_digest: String,
    /// The capability's name, version and publisher: the same bytes installed under another
    /// name or publisher are another capability to the policy.
    pub capability: (String, String, String),
    /// [`Requests::digest`] of the manifest.
    pub requests_digest: [u8; 32],
}

impl GrantKey {
    /// The key for `principal` running `cap` with manifest `requests` under `policy`.
    pub fn new(
        policy: &PolicySet,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
    ) -> Self {
        Self {
            policy_digest: policy.digest(),
            principal: principal.clone(),
            capability_digest: cap.digest.clone(),
            capability: (cap.name.clone(), cap.version.clone(), cap.publisher.clone()),
            requests_digest: requests.digest(),
        }
    }
}

/// A thread-safe cache of link-time grants keyed by (policy digest, principal, capability
/// digest, name, version and publisher, manifest digest). A changed policy has a new digest, so it never hits an old entry.
/// When full, the cache is emptied (simple and bounded).
#[derive(Debug)]
pub struct GrantCache {
    entries: Mutex<HashMap<GrantKey, Arc<Grant>>>,
    capacity: usize,
}

impl Default for GrantCache {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl GrantCache {
    /// A cache holding at most `capacity` grants (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The cached grant for `key`, if any.
    pub fn get(&self, key: &GrantKey) -> Option<Arc<Grant>> {
        self.lock().get(key).cloned()
    }

    /// Cache `grant` under `key`.
    pub fn insert(&self, key: GrantKey, grant: Arc<Grant>) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, grant);
    }

    /// The grant for `cap` (with its component's imports), from the cache or computed and
    /// cached. The component's imports are fixed by its digest, which is part of the key.
    pub fn get_or_grant<'a>(
        &self,
        policy: &PolicySet,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        component_imports: impl IntoIterator<Item = &'a str>,
    ) -> Arc<Grant> {
        let key = GrantKey::new(policy, principal, cap, requests);
        if let Some(grant) = self.get(&key) {
            return grant;
        }
        let grant =
            Arc::new(policy.grant_for_component(principal, cap, requests, component_imports));
        self.insert(key, Arc::clone(&grant));
        grant
    }

    /// Drop every grant decided by a policy set other than `policy_digest`.
    pub fn retain_policy(&self, policy_digest: &[u8; 32]) {
        self.lock().retain(|k, _| &k.policy_digest == policy_digest);
    }

    /// Drop everything.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Number of cached grants.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GrantKey, Arc<Grant>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The call-time gate's view of one (policy set, principal, capability, manifest): answers
/// [`PolicySet::check_call`] and remembers each answer. Decisions are pure functions of their
/// inputs, so a remembered decision is the decision; a changed policy is a new set and needs a
/// new checker. Thread-safe; hold one per invocation (or per cached grant).
///
/// What it remembers is bounded by bytes, not by count: scopes come from guests (a config key
/// may be megabytes long), so the memo holds at most [`CallChecker::MEMO_BYTES`] of scopes and
/// decisions, and never one larger than a sixteenth of that.
#[derive(Debug)]
pub struct CallChecker {
    policy: PolicySet,
    principal: Principal,
    cap: CapabilityRef,
    requests: Requests,
    memo: Mutex<Memo>,
}

/// Remembered decisions, by action, scope and destination, and the bytes they hold.
#[derive(Debug, Default)]
struct Memo {
    decisions: HashMap<CallAction, HashMap<Scope, ByDestination>>,
    bytes: usize,
}

/// The decisions on one (action, scope), by destination (`None` for an action without one).
type ByDestination = HashMap<Option<Scope>, Arc<Decision>>;

impl CallChecker {
    /// Most bytes of scopes and decisions remembered; past it the memo starts over.
    pub const MEMO_BYTES: usize = 1 << 20;

    /// [`PolicySet::check_call`] for this checker's principal, capability and manifest.
    pub fn check(&self, action: CallAction, scope: &Scope) -> Arc<Decision> {
        self.remembered(action, scope, None)
    }

    /// [`PolicySet::check_call_to`] for this checker's principal, capability and manifest.
    pub fn check_to(
        &self,
        action: CallAction,
        scope: &Scope,
        destination: &Scope,
    ) -> Arc<Decision> {
        self.remembered(action, scope, Some(destination))
    }

    fn remembered(
        &self,
        action: CallAction,
        scope: &Scope,
        destination: Option<&Scope>,
    ) -> Arc<Decision> {
        let destination = destination.cloned();
        if let Some(d) = self
            .lock()
            .decisions
            .get(&action)
            .and_then(|m| m.get(scope))
            .and_then(|m| m.get(&destination))
        {
            return Arc::clone(d);
        }
        let decision = Arc::new(self.policy.check(
            &self.principal,
            &self.cap,
            &self.requests,
            action,
            scope,
            destination.as_ref(),
        ));
        let bytes = footprint(scope, &decision) + destination.as_ref().map_or(0, scope_text);
        if bytes <= Self::MEMO_BYTES / 16 {
            let mut memo = self.lock();
            if memo.bytes + bytes > Self::MEMO_BYTES {
                *memo = Memo::default();
            }
            let per_scope = memo
                .decisions
                .entry(action)
                .or_default()
                .entry(scope.clone())
                .or_default();
            if per_scope
                .insert(destination, Arc::clone(&decision))
                .is_none()
            {
                memo.bytes += bytes;
            }
        }
        decision
    }

    /// Bytes of scopes and decisions remembered now (at most [`CallChecker::MEMO_BYTES`]).
    pub fn remembered_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The policy set this checker asks.
    pub fn policy(&self) -> &PolicySet {
        &self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What remembering `decision` for `scope` costs: their text, and a fixed amount for the
/// entry itself.
fn footprint(scope: &Scope, decision: &Decision) -> usize {
    let scope_text = scope_text(scope);
    let decision_text: usize = decision
        .policy_ids
        .iter()
        .chain(&decision.errors)
        .map(String::len)
        .sum();
    128 + scope_text + decision_text
}

/// The bytes of a scope's text.
fn scope_text(scope: &Scope) -> usize {
    match scope {
        Scope::HttpHost { scheme, host, .. } => scheme.len() + host.len(),
        Scope::Path(s) | Scope::KvNamespace(s) | Scope::Secret(s) | Scope::ConfigKey(s) => s.len(),
        Scope::Address(_) => 16,
    }
}

impl PolicySet {
    /// A [`CallChecker`] for `principal` running `cap` with manifest `requests`.
    pub fn call_checker(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
    ) -> CallChecker {
        CallChecker {
            policy: self.clone(),
            principal: principal.clone(),
            cap: cap.clone(),
            requests: requests.clone(),
            memo: Mutex::default(),
        }
    }
}
