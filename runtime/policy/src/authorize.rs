//! Authorization proper: a pure function of (request, policy set, entities) to a [`Decision`].

use std::collections::{HashMap, HashSet};

use cedar_policy as cedar;
use cedar_policy::RestrictedExpression as Expr;

use crate::address::AddressKind;
use crate::baseline::is_virtualized_baseline;
use crate::decision::{Decision, Reason};
use crate::model::{CallAction, CapabilityRef, InterfaceName, Principal, PrincipalKind, Scope};
use crate::set::{PolicySet, Statics};

/// The action of a request, as Cedar names it.
enum Action<'a> {
    Invoke(Option<&'a str>),
    Approve(&'a str),
    Link,
    Call(CallAction),
}

impl Action<'_> {
    fn id(&self) -> &'static str {
        match self {
            Self::Invoke(_) => "invoke",
            Self::Approve(_) => "approve",
            Self::Link => "link",
            Self::Call(a) => a.as_str(),
        }
    }
}

fn uid(ty: &cedar::EntityTypeName, id: &str) -> cedar::EntityUid {
    cedar::EntityUid::from_type_name_and_id(ty.clone(), cedar::EntityId::new(id))
}

fn string(s: &str) -> Expr {
    Expr::new_string(s.to_owned())
}

fn attrs<const N: usize>(pairs: [(&str, Expr); N]) -> HashMap<String, Expr> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl PolicySet {
    /// May `principal` invoke `cap` (any function)?
    pub fn authorize_invoke(&self, principal: &Principal, cap: &CapabilityRef) -> Decision {
        self.decide(principal, cap, Action::Invoke(None), None, None)
    }

    /// May `principal` decide a pending approval of a call to `function` of `cap` (action
    /// `approve`)? Policies see the function as `context.function`.
    pub fn authorize_approve(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        function: &str,
    ) -> Decision {
        self.decide(principal, cap, Action::Approve(function), None, None)
    }

    /// May `principal` invoke `function` of `cap`? Policies see it as `context.function`.
    pub fn authorize_invoke_function(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        function: Option<&str>,
    ) -> Decision {
        self.decide(principal, cap, Action::Invoke(function), None, None)
    }

    /// Does the policy let `cap`, run for `principal`, link `interface`
    /// (`namespace:package/name@version`)? The policy alone: see
    /// [`PolicySet::check_link`] for the decision that also honours the manifest.
    pub fn authorize_link(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        interface: &str,
    ) -> Decision {
        let name = match InterfaceName::parse(interface) {
            Ok(name) => name,
            Err(e) => return self.malformed(e.to_string()),
        };
        let s = &self.statics;
        let resource = cedar::Entity::new(
            uid(&s.interface, interface),
            attrs([
                ("package", string(&name.package)),
                ("name", string(&name.name)),
                ("version", string(&name.version)),
                (
                    "baseline",
                    Expr::new_bool(is_virtualized_baseline(interface)),
                ),
            ]),
            HashSet::new(),
        );
        match resource {
            Ok(resource) => self.decide(principal, cap, Action::Link, Some(resource), None),
            Err(e) => self.malformed(e.to_string()),
        }
    }

    /// Does the policy let `cap`, run for `principal`, do `action` on `scope`? The policy
    /// alone: see [`PolicySet::check_call`] for the decision that also honours the manifest.
    /// An action that [takes a destination](CallAction::takes_destination) is decided with
    /// [`PolicySet::authorize_call_to`]; asked here, it is malformed.
    pub fn authorize_call(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        action: CallAction,
        scope: &Scope,
    ) -> Decision {
        self.authorize(principal, cap, action, scope, None)
    }

    /// [`PolicySet::authorize_call`] for an action decided with the destination of its
    /// effect: `secret.use`, with the HTTP origin (a [`Scope::HttpHost`]) the secret is sent
    /// to, which policies see as `context.destination`.
    pub fn authorize_call_to(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        action: CallAction,
        scope: &Scope,
        destination: &Scope,
    ) -> Decision {
        self.authorize(principal, cap, action, scope, Some(destination))
    }

    pub(crate) fn authorize(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        action: CallAction,
        scope: &Scope,
        destination: Option<&Scope>,
    ) -> Decision {
        if !action.fits(scope) {
            return self.malformed(format!(
                "scope `{scope}` is not a resource of action `{action}`"
            ));
        }
        let destination = match (action.takes_destination(), destination) {
            (true, Some(d @ Scope::HttpHost { .. })) => match self.scope_entity(d) {
                Ok(entity) => Some(entity),
                Err(e) => return self.malformed(e),
            },
            (true, Some(d)) => {
                return self.malformed(format!(
                    "destination `{d}` of action `{action}` is not an HTTP origin"
                ));
            }
            (true, None) => {
                return self.malformed(format!(
                    "action `{action}` is decided with its destination, and none was given"
                ));
            }
            (false, Some(d)) => {
                return self.malformed(format!(
                    "action `{action}` takes no destination, and `{d}` was given"
                ));
            }
            (false, None) => None,
        };
        match self.scope_entity(scope) {
            Ok(resource) => self.decide(
                principal,
                cap,
                Action::Call(action),
                Some(resource),
                destination,
            ),
            Err(e) => self.malformed(e),
        }
    }

    pub(crate) fn malformed(&self, error: String) -> Decision {
        Decision::deny_without_policy(Reason::Malformed, Some(error), self.digest())
    }

    fn scope_entity(&self, scope: &Scope) -> Result<cedar::Entity, String> {
        let s: &Statics = &self.statics;
        let id = scope.canonical();
        let (ty, attrs) = match scope {
            Scope::HttpHost { scheme, host, port } => (
                &s.http_host,
                attrs([
                    ("scheme", string(scheme)),
                    ("host", string(host)),
                    ("port", Expr::new_long(i64::from(*port))),
                ]),
            ),
            Scope::Path(p) => (&s.path, attrs([("path", string(p))])),
            Scope::KvNamespace(n) => (&s.kv_namespace, attrs([("name", string(n))])),
            Scope::Secret(n) => (&s.secret, attrs([("name", string(n))])),
            Scope::ConfigKey(n) => (&s.config_key, attrs([("name", string(n))])),
            Scope::Address(ip) => (
                &s.address,
                attrs([
                    ("address", Expr::new_ip(ip.to_canonical().to_string())),
                    ("kind", string(AddressKind::of(*ip).as_str())),
                ]),
            ),
        };
        cedar::Entity::new(uid(ty, &id), attrs, HashSet::new()).map_err(|e| e.to_string())
    }

    /// Build the entities, the request, and ask Cedar. A call's context is its capability and,
    /// for an action that takes one, the `destination` entity.
    fn decide(
        &self,
        principal: &Principal,
        cap: &CapabilityRef,
        action: Action<'_>,
        resource: Option<cedar::Entity>,
        destination: Option<cedar::Entity>,
    ) -> Decision {
        let s: &Statics = &self.statics;
        let principal_ty = match principal.kind {
            PrincipalKind::Agent => &s.agent,
            PrincipalKind::User => &s.user,
        };
        let principal_uid = uid(principal_ty, &principal.id);
        let group_uids: HashSet<cedar::EntityUid> =
            principal.groups.iter().map(|g| uid(&s.group, g)).collect();
        let cap_uid = uid(&s.capability, &cap.name);
        let cap_entity = cedar::Entity::new(
            cap_uid.clone(),
            attrs([
                ("name", string(&cap.name)),
                ("version", string(&cap.version)),
                ("digest", string(&cap.digest)),
                ("publisher", string(&cap.publisher)),
            ]),
            HashSet::new(),
        );
        let cap_entity = match cap_entity {
            Ok(e) => e,
            Err(e) => return self.malformed(e.to_string()),
        };

        let mut entities: Vec<cedar::Entity> = group_uids
            .iter()
            .map(|g| cedar::Entity::new_no_attrs(g.clone(), HashSet::new()))
            .collect();
        entities.push(cedar::Entity::new_no_attrs(
            principal_uid.clone(),
            group_uids,
        ));
        entities.push(cap_entity);
        let (resource_uid, context) = match (&action, resource) {
            (Action::Invoke(function), _) => {
                let pairs: Vec<(String, Expr)> = function
                    .map(|f| ("function".to_owned(), string(f)))
                    .into_iter()
                    .collect();
                (cap_uid, cedar::Context::from_pairs(pairs))
            }
            (Action::Approve(function), _) => (
                cap_uid,
                cedar::Context::from_pairs([("function".to_owned(), string(function))]),
            ),
            (_, Some(resource)) => {
                let resource_uid = resource.uid();
                entities.push(resource);
                let mut pairs = vec![("capability".to_owned(), Expr::new_entity_uid(cap_uid))];
                if let Some(destination) = destination {
                    pairs.push((
                        "destination".to_owned(),
                        Expr::new_entity_uid(destination.uid()),
                    ));
                    entities.push(destination);
                }
                (resource_uid, cedar::Context::from_pairs(pairs))
            }
            (_, None) => return self.malformed("a resource is missing".to_owned()),
        };
        let context = match context {
            Ok(c) => c,
            Err(e) => return self.malformed(e.to_string()),
        };
        let entities = match cedar::Entities::from_entities(entities, Some(&s.schema)) {
            Ok(e) => e,
            Err(e) => return self.malformed(e.to_string()),
        };
        let request = cedar::Request::new(
            principal_uid,
            uid(&s.action, action.id()),
            resource_uid,
            context,
            Some(&s.schema),
        );
        let request = match request {
            Ok(r) => r,
            Err(e) => return self.malformed(e.to_string()),
        };
        let response = cedar::Authorizer::new().is_authorized(&request, &self.cedar, &entities);
        let mut policy_ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policy_ids.sort();
        let mut errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        errors.sort();
        let allowed = response.decision() == cedar::Decision::Allow;
        let reason = match (allowed, policy_ids.is_empty()) {
            (true, _) => Reason::Permitted,
            (false, false) => Reason::Forbidden,
            (false, true) => Reason::NoPermit,
        };
        Decision {
            allowed,
            reason,
            policy_ids,
            errors,
            policy_digest: self.digest(),
        }
    }
}
