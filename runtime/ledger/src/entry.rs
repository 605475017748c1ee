//! Ledger entries and their canonical, versioned binary encoding.
//!
//! Version 3 layout (version 2 lacked the invocation start's trace id and approval and the
//! approval kind; version 1 also the start's groups and manifest digest; neither is read any
//! longer): one version byte (`2`), one kind byte, then the fields of the kind
//! in declaration order. Integers are fixed-width little-endian; strings and byte strings
//! are a u32 length followed by the bytes; digests are 32 raw bytes; an option is `0`
//! or `1` followed by the value; lists are a u32 count followed by the items. Nothing is
//! ever ordered by a hash map. Trailing bytes are refused, so every entry has exactly
//! one encoding. The golden files in `tests/golden/` freeze this layout; a change is a
//! version bump, never an edit.

use serde::{Deserialize, Serialize};

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, EncodeError};
use crate::value::{Value, decode_opt_value, encode_opt_value, skip_opt, skip_value};

/// The encoding version written by this build.
pub const ENCODING_VERSION: u8 = 3;

/// One record of the ledger: a leaf of the Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[allow(
    clippy::large_enum_variant,
    reason = "a start's digests are inline by design: one per invocation, matched everywhere"
)]
pub enum Entry {
    /// A capability invocation begins.
    InvocationStart {
        /// Ledger-assigned invocation number, increasing.
        invocation: u64,
        /// Who asked.
        principal: String,
        /// The groups the principal was in (from its token, or `--group`): a policy may decide
        /// by them, so what-if replay asks with them.
        groups: Vec<String>,
        /// Capability name.
        capability: String,
        /// Capability version.
        version: String,
        /// SHA-256 of the component bytes.
        #[serde(with = "crate::serde_util::hex32")]
        component_sha256: [u8; 32],
        /// SHA-256 of the capability's manifest (its installed `capability.toml` bytes): what
        /// it asks for, its fuel budget and its publisher are part of its identity.
        #[serde(with = "crate::serde_util::hex32")]
        manifest_sha256: [u8; 32],
        /// WIT world (with its package version) the component targets.
        wit_world: String,
        /// Digest of the engine configuration.
        #[serde(with = "crate::serde_util::hex32")]
        engine_digest: [u8; 32],
        /// Exact wasmtime version.
        wasmtime_version: String,
        /// Fuel the invocation may use.
        fuel_budget: u64,
        /// Digest of the policy in force, once policy exists.
        #[serde(with = "crate::serde_util::opt_hex")]
        policy_digest: Option<[u8; 32]>,
        /// Exported function called.
        function: String,
        /// Named arguments, in parameter order.
        args: Vec<(String, Value)>,
        /// The W3C trace id of the caller's trace (`traceparent`), when it sent one: metadata
        /// that leads from a trace to the ledger and back. Replay ignores it.
        #[serde(with = "crate::serde_util::opt_hex")]
        trace_id: Option<[u8; 16]>,
        /// The invocation whose recorded approval let this one run (an approval is spent by
        /// the one invocation that names it), when the policy required one.
        approval: Option<u64>,
    },
    /// A host call made by the guest through the gate.
    HostCall {
        /// Invocation the call belongs to.
        invocation: u64,
        /// Position of the call within the invocation, from 0.
        seq: u32,
        /// WIT interface, e.g. `femtoclaw:host/http@0.1.0`.
        interface: String,
        /// Function within the interface.
        function: String,
        /// Parameters (usually a tuple or record).
        params: Value,
        /// Result given to the guest, a tuple (an error is a `result` value's error side); or,
        /// for a call that did not return, its [`CallFault`].
        result: Value,
        /// Fuel left when the call was made.
        fuel_remaining: u64,
    },
    /// A policy decision.
    Decision {
        /// Invocation the decision belongs to.
        invocation: u64,
        /// Action asked for, e.g. `invoke` or `http.get`.
        action: String,
        /// Resource concerned.
        resource: String,
        /// Whether it was allowed.
        allowed: bool,
        /// Ids of the policies that decided.
        policy_ids: Vec<String>,
        /// Digest of the policy set.
        #[serde(with = "crate::serde_util::hex32")]
        policy_digest: [u8; 32],
    },
    /// The invocation trapped or hit a limit.
    Trap {
        /// Invocation that trapped.
        invocation: u64,
        /// `fuel-exhausted`, `trap`, `limit`, `interrupted`.
        kind: String,
        /// Human-readable detail.
        message: String,
        /// Fuel consumed up to the trap.
        fuel_consumed: u64,
    },
    /// The invocation finished.
    InvocationEnd {
        /// Invocation that ended.
        invocation: u64,
        /// Returned value, if the function returns one.
        result: Option<Value>,
        /// Fuel consumed.
        fuel_consumed: u64,
        /// Captured standard output.
        #[serde(with = "crate::serde_util::b64")]
        stdout: Vec<u8>,
        /// Captured standard error.
        #[serde(with = "crate::serde_util::b64")]
        stderr: Vec<u8>,
    },
    /// The policy in force changed.
    PolicyChange {
        /// Digest of the new policy set.
        #[serde(with = "crate::serde_util::hex32")]
        policy_digest: [u8; 32],
        /// Where it came from (a path or a description).
        source: String,
    },
    /// The checkpoint signing key changed. Informational: verifiers never trust a key
    /// because it appears here.
    KeyChange {
        /// Key name.
        name: String,
        /// Key id of the key replaced, if any.
        #[serde(with = "crate::serde_util::opt_hex")]
        old_key_id: Option<[u8; 4]>,
        /// The new verifier key, in C2SP vkey form.
        new_verifier_key: String,
    },
    /// A host call about to change the world, written ahead of it: durable before the host
    /// performs it, with the decisions that allowed it before it. The call itself, with its
    /// result, follows when it is done; an invocation the host never finished ends with an
    /// `interrupted` trap instead.
    HostCallIntent {
        /// Invocation the call belongs to.
        invocation: u64,
        /// Position of the call within the invocation (the `seq` of its host call).
        seq: u32,
        /// WIT interface, e.g. `femtoclaw:host/http@0.1.0`.
        interface: String,
        /// Function within the interface.
        function: String,
        /// Parameters, as the host call records them.
        params: Value,
        /// Fuel left when the call was made.
        fuel_remaining: u64,
    },
    /// A bearer token was made or revoked: what it stands for and its SHA-256, never the
    /// token. A principal's authority can be traced from the invocations it made back to the
    /// token that let it in.
    TokenChange {
        /// `create` or `revoke`.
        action: String,
        /// The token's name.
        name: String,
        /// The principal it stands for.
        principal: String,
        /// The groups that principal is in.
        groups: Vec<String>,
        /// When it stops being accepted, seconds since the Unix epoch.
        expires: Option<u64>,
        /// SHA-256 of the token.
        #[serde(with = "crate::serde_util::hex32")]
        token_sha256: [u8; 32],
    },
    /// A step of a human approval: an invocation the policy allows only once a person has
    /// approved that exact call was asked for (`request`), then approved (`grant`) or refused
    /// (`deny`). The invocation that asked is the approval's id; the one that runs under a
    /// grant names it in its start ([`Entry::InvocationStart::approval`]).
    Approval {
        /// The invocation that asked, recorded as pending: the approval's id.
        request: u64,
        /// `request`, `grant` or `deny`.
        action: String,
        /// SHA-256 of what is approved: principal, capability, version, function and the
        /// SHA-256 of the canonical arguments.
        #[serde(with = "crate::serde_util::hex32")]
        fingerprint: [u8; 32],
        /// Who asked (`request`) or decided (`grant`, `deny`).
        by: String,
        /// Why, in the decider's words (empty when none was given).
        reason: String,
        /// When, seconds since the Unix epoch.
        at: u64,
        /// Until when a grant may be used, seconds since the Unix epoch.
        expires: Option<u64>,
    },
}

/// SHA-256 of the canonical encoding of an invocation's named arguments: exactly the bytes of
/// an invocation start's `args` field (a u32 count, then each name and value).
pub fn args_digest(args: &[(String, Value)]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut w = Writer::with_capacity(64);
    w.len(args.len());
    for (name, v) in args {
        w.str(name);
        v.encode_into(&mut w);
    }
    sha2::Sha256::digest(&w.buf).into()
}

/// What an approval approves, as one digest: SHA-256 of `femtoclaw-approval-v1`, then the
/// principal (as the invocation start names it), capability, version and function, each a u32
/// length and its bytes, then the [`args_digest`] of the arguments. An auditor recomputes it
/// from the start entry of the invocation that spent the approval.
pub fn approval_fingerprint(
    principal: &str,
    capability: &str,
    version: &str,
    function: &str,
    args_sha256: &[u8; 32],
) -> [u8; 32] {
    use sha2::Digest as _;
    let mut w = Writer::with_capacity(128);
    w.raw(b"femtoclaw-approval-v1");
    for part in [principal, capability, version, function] {
        w.str(part);
    }
    w.digest(args_sha256);
    sha2::Sha256::digest(&w.buf).into()
}

/// Why a host call did not return: recorded in place of its result.
///
/// A returned result is always a tuple, so a fault is told apart by its shape alone: the
/// variant `trap(message)` or `limit(message)` where the tuple would be. Version 1's encoding
/// carries it unchanged (frozen by the golden file `host-call-fault.bin`). Replay answers a
/// call recorded with a fault with the same fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFault {
    /// The call failed in the host (a host fault or a per-call cap): the guest traps.
    #[error("{0}")]
    Trap(String),
    /// The call ran into a limit of the invocation (such as its recorded-bytes cap).
    #[error("{0}")]
    Limit(String),
}

impl CallFault {
    /// The value recorded as the call's result.
    pub fn to_value(&self) -> Value {
        let (case, message) = match self {
            CallFault::Trap(m) => ("trap", m),
            CallFault::Limit(m) => ("limit", m),
        };
        Value::Variant {
            case: case.to_owned(),
            payload: Some(Box::new(Value::String(message.clone()))),
        }
    }

    /// The fault a recorded result stands for; `None` for a result the call returned.
    pub fn from_value(value: &Value) -> Option<Self> {
        let Value::Variant {
            case,
            payload: Some(payload),
        } = value
        else {
            return None;
        };
        let Value::String(message) = payload.as_ref() else {
            return None;
        };
        match case.as_str() {
            "trap" => Some(CallFault::Trap(message.clone())),
            "limit" => Some(CallFault::Limit(message.clone())),
            _ => None,
        }
    }
}

/// What a key change says: the verifier key it hands over to, and whether it is the ledger's
/// first (it replaces no key).
pub(crate) struct Handover {
    pub(crate) first: bool,
    pub(crate) key: String,
}

mod kind {
    pub(super) const INVOCATION_START: u8 = 1;
    pub(super) const HOST_CALL: u8 = 2;
    pub(super) const DECISION: u8 = 3;
    pub(super) const TRAP: u8 = 4;
    pub(super) const INVOCATION_END: u8 = 5;
    pub(super) const POLICY_CHANGE: u8 = 6;
    pub(super) const KEY_CHANGE: u8 = 7;
    pub(super) const HOST_CALL_INTENT: u8 = 8;
    pub(super) const TOKEN_CHANGE: u8 = 9;
    pub(super) const APPROVAL: u8 = 10;
}

impl Entry {
    /// Every WIT value the entry holds: arguments, host-call parameters and results, the
    /// invocation's result.
    fn values_mut(&mut self) -> Vec<&mut Value> {
        match self {
            Entry::InvocationStart { args, .. } => args.iter_mut().map(|(_, v)| v).collect(),
            Entry::HostCall { params, result, .. } => vec![params, result],
            Entry::HostCallIntent { params, .. } => vec![params],
            Entry::InvocationEnd {
                result: Some(result),
                ..
            } => vec![result],
            _ => Vec::new(),
        }
    }

    /// Moves large bytes out of the entry's values (see [`Value::externalize`]).
    pub fn externalize(&mut self, threshold: usize) -> Vec<([u8; 32], Vec<u8>)> {
        self.values_mut()
            .into_iter()
            .flat_map(|v| v.externalize(threshold))
            .collect()
    }

    /// Puts back the bytes of the entry's blob references (see [`Value::internalize`]).
    pub fn internalize(
        &mut self,
        resolve: &mut impl FnMut(&[u8; 32]) -> Option<Vec<u8>>,
    ) -> Result<(), [u8; 32]> {
        self.values_mut()
            .into_iter()
            .try_for_each(|v| v.internalize(resolve))
    }

    /// The digests of the blobs the entry refers to.
    pub fn blob_refs(&self) -> Vec<[u8; 32]> {
        let mut refs = Vec::new();
        match self {
            Entry::InvocationStart { args, .. } => {
                for (_, v) in args {
                    v.collect_blobs(&mut refs);
                }
            }
            Entry::HostCall { params, result, .. } => {
                params.collect_blobs(&mut refs);
                result.collect_blobs(&mut refs);
            }
            Entry::HostCallIntent { params, .. } => params.collect_blobs(&mut refs),
            Entry::InvocationEnd {
                result: Some(result),
                ..
            } => result.collect_blobs(&mut refs),
            _ => {}
        }
        refs
    }
    /// The canonical encoding (of [`ENCODING_VERSION`]).
    ///
    /// A field longer than 4 GiB cannot be expressed; [`Entry::try_encode`] reports it,
    /// this function then returns an encoding that [`Entry::decode`] refuses.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_writer().buf
    }

    /// The canonical encoding, refusing fields longer than 4 GiB.
    pub fn try_encode(&self) -> Result<Vec<u8>, EncodeError> {
        let w = self.encode_writer();
        if w.overflow {
            Err(EncodeError::FieldTooLong)
        } else {
            Ok(w.buf)
        }
    }

    /// Appends the canonical encoding to `buf` (used to build a batch in place).
    pub(crate) fn encode_append(&self, buf: Vec<u8>) -> (Vec<u8>, bool) {
        let w = self.encode_with(Writer {
            buf,
            overflow: false,
        });
        (w.buf, w.overflow)
    }

    fn encode_writer(&self) -> Writer {
        self.encode_with(Writer::with_capacity(128))
    }

    fn encode_with(&self, mut w: Writer) -> Writer {
        w.u8(ENCODING_VERSION);
        match self {
            Entry::InvocationStart {
                invocation,
                principal,
                groups,
                capability,
                version,
                component_sha256,
                manifest_sha256,
                wit_world,
                engine_digest,
                wasmtime_version,
                fuel_budget,
                policy_digest,
                function,
                args,
                trace_id,
                approval,
            } => {
                w.u8(kind::INVOCATION_START);
                w.u64(*invocation);
                w.str(principal);
                w.len(groups.len());
                for group in groups {
                    w.str(group);
                }
                w.str(capability);
                w.str(version);
                w.digest(component_sha256);
                w.digest(manifest_sha256);
                w.str(wit_world);
                w.digest(engine_digest);
                w.str(wasmtime_version);
                w.u64(*fuel_budget);
                w.opt_digest(policy_digest);
                w.str(function);
                w.len(args.len());
                for (name, v) in args {
                    w.str(name);
                    v.encode_into(&mut w);
                }
                match trace_id {
                    None => w.u8(0),
                    Some(id) => {
                        w.u8(1);
                        w.raw(id);
                    }
                }
                w.opt_u64(approval);
            }
            Entry::HostCall {
                invocation,
                seq,
                interface,
                function,
                params,
                result,
                fuel_remaining,
            } => {
                w.u8(kind::HOST_CALL);
                w.u64(*invocation);
                w.u32(*seq);
                w.str(interface);
                w.str(function);
                params.encode_into(&mut w);
                result.encode_into(&mut w);
                w.u64(*fuel_remaining);
            }
            Entry::Decision {
                invocation,
                action,
                resource,
                allowed,
                policy_ids,
                policy_digest,
            } => {
                w.u8(kind::DECISION);
                w.u64(*invocation);
                w.str(action);
                w.str(resource);
                w.bool(*allowed);
                w.len(policy_ids.len());
                for id in policy_ids {
                    w.str(id);
                }
                w.digest(policy_digest);
            }
            Entry::Trap {
                invocation,
                kind,
                message,
                fuel_consumed,
            } => {
                w.u8(kind::TRAP);
                w.u64(*invocation);
                w.str(kind);
                w.str(message);
                w.u64(*fuel_consumed);
            }
            Entry::InvocationEnd {
                invocation,
                result,
                fuel_consumed,
                stdout,
                stderr,
            } => {
                w.u8(kind::INVOCATION_END);
                w.u64(*invocation);
                encode_opt_value(&mut w, result.as_ref());
                w.u64(*fuel_consumed);
                w.bytes(stdout);
                w.bytes(stderr);
            }
            Entry::PolicyChange {
                policy_digest,
                source,
            } => {
                w.u8(kind::POLICY_CHANGE);
                w.digest(policy_digest);
                w.str(source);
            }
            Entry::KeyChange {
                name,
                old_key_id,
                new_verifier_key,
            } => {
                w.u8(kind::KEY_CHANGE);
                w.str(name);
                match old_key_id {
                    None => w.u8(0),
                    Some(id) => {
                        w.u8(1);
                        w.raw(id);
                    }
                }
                w.str(new_verifier_key);
            }
            Entry::HostCallIntent {
                invocation,
                seq,
                interface,
                function,
                params,
                fuel_remaining,
            } => {
                w.u8(kind::HOST_CALL_INTENT);
                w.u64(*invocation);
                w.u32(*seq);
                w.str(interface);
                w.str(function);
                params.encode_into(&mut w);
                w.u64(*fuel_remaining);
            }
            Entry::TokenChange {
                action,
                name,
                principal,
                groups,
                expires,
                token_sha256,
            } => {
                w.u8(kind::TOKEN_CHANGE);
                w.str(action);
                w.str(name);
                w.str(principal);
                w.len(groups.len());
                for group in groups {
                    w.str(group);
                }
                w.opt_u64(expires);
                w.digest(token_sha256);
            }
            Entry::Approval {
                request,
                action,
                fingerprint,
                by,
                reason,
                at,
                expires,
            } => {
                w.u8(kind::APPROVAL);
                w.u64(*request);
                w.str(action);
                w.digest(fingerprint);
                w.str(by);
                w.str(reason);
                w.u64(*at);
                w.opt_u64(expires);
            }
        }
        w
    }

    /// Decodes a canonical encoding. Never panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != ENCODING_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let at = r.pos();
        let entry = match r.u8()? {
            kind::INVOCATION_START => {
                let invocation = r.u64()?;
                let principal = r.string()?;
                let n = r.count(4)?;
                let mut groups = Vec::with_capacity(n);
                for _ in 0..n {
                    groups.push(r.string()?);
                }
                let capability = r.string()?;
                let version = r.string()?;
                let component_sha256 = r.digest()?;
                let manifest_sha256 = r.digest()?;
                let wit_world = r.string()?;
                let engine_digest = r.digest()?;
                let wasmtime_version = r.string()?;
                let fuel_budget = r.u64()?;
                let policy_digest = r.opt_digest()?;
                let function = r.string()?;
                let n = r.count(5)?;
                let mut args = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = r.string()?;
                    args.push((name, Value::decode_from(&mut r, 0)?));
                }
                let trace_id = if r.option_tag()? {
                    Some(r.array::<16>()?)
                } else {
                    None
                };
                let approval = r.opt_u64()?;
                Entry::InvocationStart {
                    invocation,
                    principal,
                    groups,
                    capability,
                    version,
                    component_sha256,
                    manifest_sha256,
                    wit_world,
                    engine_digest,
                    wasmtime_version,
                    fuel_budget,
                    policy_digest,
                    function,
                    args,
                    trace_id,
                    approval,
                }
            }
            kind::HOST_CALL => Entry::HostCall {
                invocation: r.u64()?,
                seq: r.u32()?,
                interface: r.string()?,
                function: r.string()?,
                params: Value::decode_from(&mut r, 0)?,
                result: Value::decode_from(&mut r, 0)?,
                fuel_remaining: r.u64()?,
            },
            kind::DECISION => {
                let invocation = r.u64()?;
                let action = r.string()?;
                let resource = r.string()?;
                let allowed = r.bool()?;
                let n = r.count(4)?;
                let mut policy_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    policy_ids.push(r.string()?);
                }
                Entry::Decision {
                    invocation,
                    action,
                    resource,
                    allowed,
                    policy_ids,
                    policy_digest: r.digest()?,
                }
            }
            kind::TRAP => Entry::Trap {
                invocation: r.u64()?,
                kind: r.string()?,
                message: r.string()?,
                fuel_consumed: r.u64()?,
            },
            kind::INVOCATION_END => Entry::InvocationEnd {
                invocation: r.u64()?,
                result: decode_opt_value(&mut r, 0)?,
                fuel_consumed: r.u64()?,
                stdout: r.bytes()?.to_vec(),
                stderr: r.bytes()?.to_vec(),
            },
            kind::POLICY_CHANGE => Entry::PolicyChange {
                policy_digest: r.digest()?,
                source: r.string()?,
            },
            kind::KEY_CHANGE => Entry::KeyChange {
                name: r.string()?,
                old_key_id: if r.option_tag()? {
                    Some(r.key_id()?)
                } else {
                    None
                },
                new_verifier_key: r.string()?,
            },
            kind::HOST_CALL_INTENT => Entry::HostCallIntent {
                invocation: r.u64()?,
                seq: r.u32()?,
                interface: r.string()?,
                function: r.string()?,
                params: Value::decode_from(&mut r, 0)?,
                fuel_remaining: r.u64()?,
            },
            kind::TOKEN_CHANGE => Entry::TokenChange {
                action: r.string()?,
                name: r.string()?,
                principal: r.string()?,
                groups: {
                    let n = r.count(4)?;
                    let mut groups = Vec::with_capacity(n);
                    for _ in 0..n {
                        groups.push(r.string()?);
                    }
                    groups
                },
                expires: r.opt_u64()?,
                token_sha256: r.digest()?,
            },
            kind::APPROVAL => Entry::Approval {
                request: r.u64()?,
                action: r.string()?,
                fingerprint: r.digest()?,
                by: r.string()?,
                reason: r.string()?,
                at: r.u64()?,
                expires: r.opt_u64()?,
            },
            other => {
                return Err(DecodeError::BadTag {
                    what: "entry kind",
                    tag: other,
                    offset: at,
                });
            }
        };
        r.finish()?;
        Ok(entry)
    }

    /// Checks that `bytes` is a canonical encoding, exactly as [`Entry::decode`] does
    /// (it fails on the same inputs, with the same error), without building the entry:
    /// no allocation. Used by verification, which needs the verdict, not the value; `true` for
    /// an entry the approval audit reads ([`crate::verify`]): an approval, or an invocation
    /// start that spends one.
    pub(crate) fn validate(bytes: &[u8]) -> Result<bool, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != ENCODING_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let mut audited = false;
        let at = r.pos();
        match r.u8()? {
            kind::INVOCATION_START => {
                r.u64()?;
                r.skip_string()?; // principal
                let n = r.count(4)?;
                for _ in 0..n {
                    r.skip_string()?; // group
                }
                r.skip_string()?; // capability
                r.skip_string()?; // version
                r.digest()?; // component
                r.digest()?; // manifest
                r.skip_string()?; // wit world
                r.digest()?;
                r.skip_string()?; // wasmtime version
                r.u64()?;
                r.opt_digest()?;
                r.skip_string()?; // function
                let n = r.count(5)?;
                for _ in 0..n {
                    r.skip_string()?;
                    skip_value(&mut r, 0)?;
                }
                if r.option_tag()? {
                    r.array::<16>()?; // trace id
                }
                audited = r.opt_u64()?.is_some(); // approval
            }
            kind::HOST_CALL => {
                r.u64()?;
                r.u32()?;
                r.skip_string()?; // interface
                r.skip_string()?; // function
                skip_value(&mut r, 0)?;
                skip_value(&mut r, 0)?;
                r.u64()?;
            }
            kind::DECISION => {
                r.u64()?;
                r.skip_string()?; // action
                r.skip_string()?; // resource
                r.bool()?;
                let n = r.count(4)?;
                for _ in 0..n {
                    r.skip_string()?;
                }
                r.digest()?;
            }
            kind::TRAP => {
                r.u64()?;
                r.skip_string()?; // kind
                r.skip_string()?; // message
                r.u64()?;
            }
            kind::INVOCATION_END => {
                r.u64()?;
                skip_opt(&mut r, 0)?;
                r.u64()?;
                r.bytes()?;
                r.bytes()?;
            }
            kind::POLICY_CHANGE => {
                r.digest()?;
                r.skip_string()?;
            }
            kind::KEY_CHANGE => {
                r.skip_string()?;
                if r.option_tag()? {
                    r.key_id()?;
                }
                r.skip_string()?;
            }
            kind::HOST_CALL_INTENT => {
                r.u64()?;
                r.u32()?;
                r.skip_string()?; // interface
                r.skip_string()?; // function
                skip_value(&mut r, 0)?;
                r.u64()?;
            }
            kind::TOKEN_CHANGE => {
                r.skip_string()?; // action
                r.skip_string()?; // name
                r.skip_string()?; // principal
                let n = r.count(4)?;
                for _ in 0..n {
                    r.skip_string()?; // group
                }
                r.opt_u64()?; // expires
                r.digest()?;
            }
            kind::APPROVAL => {
                audited = true;
                r.u64()?;
                r.skip_string()?; // action
                r.digest()?;
                r.skip_string()?; // by
                r.skip_string()?; // reason
                r.u64()?;
                r.opt_u64()?; // expires
            }
            other => {
                return Err(DecodeError::BadTag {
                    what: "entry kind",
                    tag: other,
                    offset: at,
                });
            }
        }
        r.finish().map(|()| audited)
    }

    /// Whether the canonical encoding `bytes` is an invocation's start (`true`) or end
    /// (`false`), and of which invocation, read from its first bytes alone: how opening a
    /// ledger finds invocations that never ended without decoding every entry.
    pub(crate) fn peek_boundary(bytes: &[u8]) -> Option<(bool, u64)> {
        let started = match bytes.get(..2)? {
            [ENCODING_VERSION, kind::INVOCATION_START] => true,
            [ENCODING_VERSION, kind::INVOCATION_END] => false,
            _ => return None,
        };
        let invocation = <[u8; 8]>::try_from(bytes.get(2..10)?).ok()?;
        Some((started, u64::from_le_bytes(invocation)))
    }

    /// What a key-change entry says (the key id it replaces, the verifier key it hands over
    /// to), read without decoding any other kind of entry; `None` for every other kind.
    pub(crate) fn peek_key_change(bytes: &[u8]) -> Option<Result<Handover, DecodeError>> {
        if bytes.get(..2)? != [ENCODING_VERSION, kind::KEY_CHANGE] {
            return None;
        }
        Some(Entry::decode(bytes).map(|entry| match entry {
            Entry::KeyChange {
                old_key_id,
                new_verifier_key,
                ..
            } => Handover {
                first: old_key_id.is_none(),
                key: new_verifier_key,
            },
            _ => Handover {
                first: false,
                key: String::new(),
            },
        }))
    }

    /// The invocation this entry belongs to, if any.
    pub fn invocation(&self) -> Option<u64> {
        match self {
            Entry::InvocationStart { invocation, .. }
            | Entry::HostCall { invocation, .. }
            | Entry::HostCallIntent { invocation, .. }
            | Entry::Decision { invocation, .. }
            | Entry::Trap { invocation, .. }
            | Entry::InvocationEnd { invocation, .. } => Some(*invocation),
            Entry::PolicyChange { .. }
            | Entry::KeyChange { .. }
            | Entry::TokenChange { .. }
            | Entry::Approval { .. } => None,
        }
    }

    /// The kind's name, as used in JSON (`invocation-start`, `host-call`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Entry::InvocationStart { .. } => "invocation-start",
            Entry::HostCall { .. } => "host-call",
            Entry::Decision { .. } => "decision",
            Entry::Trap { .. } => "trap",
            Entry::InvocationEnd { .. } => "invocation-end",
            Entry::PolicyChange { .. } => "policy-change",
            Entry::KeyChange { .. } => "key-change",
            Entry::HostCallIntent { .. } => "host-call-intent",
            Entry::TokenChange { .. } => "token-change",
            Entry::Approval { .. } => "approval",
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Entry;

    const GOLDEN: [&[u8]; 10] = [
        include_bytes!("../tests/golden/v3/invocation-start.bin"),
        include_bytes!("../tests/golden/v3/host-call.bin"),
        include_bytes!("../tests/golden/v3/decision.bin"),
        include_bytes!("../tests/golden/v3/trap.bin"),
        include_bytes!("../tests/golden/v3/invocation-end.bin"),
        include_bytes!("../tests/golden/v3/policy-change.bin"),
        include_bytes!("../tests/golden/v3/key-change.bin"),
        include_bytes!("../tests/golden/v3/host-call-intent.bin"),
        include_bytes!("../tests/golden/v3/token-change.bin"),
        include_bytes!("../tests/golden/v3/approval.bin"),
    ];

    fn same_verdict(bytes: &[u8]) {
        assert_eq!(
            Entry::validate(bytes).map(|_| ()),
            Entry::decode(bytes).map(|_| ()),
            "validate and decode disagree on {bytes:02x?}"
        );
    }

    // Verifies: FC-MEM-2319
    #[test]
    fn validate_agrees_with_decode_on_every_flip_and_cut_of_every_kind() {
        for g in GOLDEN {
            same_verdict(g);
            assert!(Entry::validate(g).is_ok());
            for i in 0..g.len() {
                for bit in 0..8 {
                    let mut m = g.to_vec();
                    m[i] ^= 1 << bit;
                    same_verdict(&m);
                }
                for b in [0x00, 0x7f, 0x80, 0xff] {
                    let mut m = g.to_vec();
                    m[i] = b;
                    same_verdict(&m);
                }
                same_verdict(&g[..i]);
            }
            let mut longer = g.to_vec();
            longer.push(0);
            same_verdict(&longer);
        }
    }

    proptest! {
        // Verifies: FC-MEM-2319
        #[test]
        fn validate_agrees_with_decode_on_any_bytes(
            kind in 0usize..GOLDEN.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut m = GOLDEN[kind].to_vec();
            for (at, b) in edits {
                let n = m.len();
                m[at % n] = b;
            }
            same_verdict(&m);
            same_verdict(&noise);
            let mut spliced = m.clone();
            spliced.extend_from_slice(&noise);
            same_verdict(&spliced);
        }
    }
}
