//! Why a principal may or may not run a capability: the invoke decision, each import, each
//! requested scope, and `net.connect` on addresses asked about. What `policy explain` prints.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::address::AddressKind;
use crate::baseline::is_virtualized_baseline;
use crate::decision::Decision;
use crate::model::{CallAction, CapabilityRef, Principal, Scope};
use crate::requests::Requests;
use crate::set::PolicySet;

/// One import: linked or refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportExplanation {
    /// The interface, e.g. `femtoclaw:host/log@0.1.0`.
    pub interface: String,
    /// In the virtualized WASI baseline (needs no manifest entry).
    pub baseline: bool,
    /// Listed in the manifest.
    pub requested: bool,
    /// Would be linked.
    pub linked: bool,
    /// The deciding decision.
    pub decision: Decision,
}

/// One requested scope entry: granted or refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeExplanation {
    /// The call action.
    pub action: CallAction,
    /// The entry as the manifest writes it.
    pub scope: String,
    /// Granted.
    pub granted: bool,
    /// The deciding decision.
    pub decision: Decision,
}

/// `net.connect` on one address: whether the capability may connect to it, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressExplanation {
    /// The address in its canonical text form.
    pub address: String,
    /// Its kind (`loopback`, `private`, `metadata`, …).
    pub kind: AddressKind,
    /// A connection to it would be allowed: a public address, or a permitted `net.connect`.
    pub granted: bool,
    /// The policy's `net.connect` decision on it (asked for every address; a public one needs
    /// no grant).
    pub decision: Decision,
}

/// The whole story for (principal, capability, manifest[, function]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The principal, as a Cedar entity (`FemtoClaw::User::"local"`).
    pub principal: String,
    /// `name@version`.
    pub capability: String,
    /// The component digest.
    pub capability_digest: String,
    /// The publisher.
    pub publisher: String,
    /// The function asked about, if any.
    pub function: Option<String>,
    /// The policy set digest (hex).
    pub policy_digest: String,
    /// May the principal invoke it.
    pub invoke: Decision,
    /// Every import: the manifest's, then the component's own (if given).
    pub imports: Vec<ImportExplanation>,
    /// Every requested scope entry.
    pub scopes: Vec<ScopeExplanation>,
    /// `net.connect` on each address asked about, in the order asked (absent when none was).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressExplanation>,
}

impl Explanation {
    /// Whether an invocation would proceed: invoke allowed and every import linked.
    pub fn would_run(&self) -> bool {
        self.invoke.allowed && self.imports.iter().all(|i| i.linked)
    }
}

impl PolicySet {
    /// Explain the invoke decision, each manifest import and each requested scope.
    pub fn explain(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        function: Option<&str>,
    ) -> Explanation {
        self.explain_component(
            principal,
            cap,
            requests,
            std::iter::empty::<&str>(),
            function,
        )
    }

    /// [`PolicySet::explain`], also covering the imports the component actually has.
    pub fn explain_component<'a>(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        component_imports: impl IntoIterator<Item = &'a str>,
        function: Option<&str>,
    ) -> Explanation {
        let grant = self.grant_for_component(principal, cap, requests, component_imports);
        let mut imports: Vec<ImportExplanation> = grant
            .imports
            .iter()
            .map(|i| (i.clone(), self.check_link(principal, cap, requests, i)))
            .chain(grant.denied_imports.iter().cloned())
            .map(|(interface, decision)| ImportExplanation {
                baseline: is_virtualized_baseline(&interface),
                requested: requests.requests_import(&interface),
                linked: decision.allowed,
                interface,
                decision,
            })
            .collect();
        imports.sort_by(|a, b| a.interface.cmp(&b.interface));
        let scopes = requests
            .scope_entries()
            .into_iter()
            .map(|entry| {
                let decision = self.decide_entry(principal, cap, requests, &entry);
                ScopeExplanation {
                    action: entry.action,
                    scope: entry.text,
                    granted: decision.allowed,
                    decision,
                }
            })
            .collect();
        Explanation {
            principal: principal.to_string(),
            capability: cap.to_string(),
            capability_digest: cap.digest.clone(),
            publisher: cap.publisher.clone(),
            function: function.map(str::to_owned),
            policy_digest: self.digest_hex(),
            invoke: self.authorize_invoke_function(principal, cap, function),
            imports,
            scopes,
            addresses: Vec::new(),
        }
    }

    /// `net.connect` on `address` for `cap`, as the gate decides it before a connection.
    pub fn explain_address(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        requests: &Requests,
        address: IpAddr,
    ) -> AddressExplanation {
        let kind = AddressKind::of(address);
        let decision = self.check_call(
            principal,
            cap,
            requests,
            CallAction::NetConnect,
            &Scope::Address(address),
        );
        AddressExplanation {
            address: Scope::Address(address).to_string(),
            kind,
            granted: kind.is_public() || decision.allowed,
            decision,
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.principal, self.capability)?;
        if let Some(function) = &self.function {
            write!(f, " function `{function}`")?;
        }
        writeln!(f, " (publisher `{}`)", self.publisher)?;
        writeln!(f, "policy digest {}", self.policy_digest)?;
        writeln!(f, "invoke: {}", self.invoke)?;
        writeln!(f, "imports:")?;
        if self.imports.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for i in &self.imports {
            let mark = if i.linked { "linked " } else { "REFUSED" };
            let note = if i.baseline { " [baseline]" } else { "" };
            writeln!(f, "  {mark} {}{note}: {}", i.interface, i.decision)?;
        }
        writeln!(f, "scopes:")?;
        if self.scopes.is_empty() {
            writeln!(f, "  (none requested)")?;
        }
        for s in &self.scopes {
            let mark = if s.granted { "granted" } else { "REFUSED" };
            writeln!(f, "  {mark} {} {}: {}", s.action, s.scope, s.decision)?;
        }
        if !self.addresses.is_empty() {
            writeln!(f, "addresses:")?;
        }
        for a in &self.addresses {
            let mark = if a.granted { "granted" } else { "REFUSED" };
            write!(f, "  {mark} net.connect {} ({}): ", a.address, a.kind)?;
            if a.kind.is_public() {
                writeln!(f, "a public address needs no grant")?;
            } else {
                writeln!(f, "{}", a.decision)?;
            }
        }
        write!(
            f,
            "verdict: {}",
            if self.would_run() {
                "would run"
            } else {
                "would be refused"
            }
        )
    }
}
