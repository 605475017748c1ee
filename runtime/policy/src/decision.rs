//! The outcome of one authorization request.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a [`Decision`] came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// At least one `permit` applied and no `forbid` did.
    Permitted,
    /// A `forbid` applied (it beats any `permit`).
    Forbidden,
    /// No policy permits the request: default deny.
    NoPermit,
    /// The capability's manifest does not request this import or scope.
    NotRequested,
    /// The request itself is malformed (see [`Decision::errors`]); denied without asking the policy.
    Malformed,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Permitted => "permitted by policy",
            Self::Forbidden => "forbidden by policy",
            Self::NoPermit => "no policy permits it",
            Self::NotRequested => "not requested by manifest",
            Self::Malformed => "malformed request",
        })
    }
}

/// An allow/deny decision with what determined it and the digest of the policy set that made
/// it: what the ledger keeps for every decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// Allowed or denied.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// The determining policies (Cedar's `diagnostics().reason()`), sorted: the permits that
    /// allowed it, or the forbids that denied it. Empty for default deny.
    pub policy_ids: Vec<String>,
    /// Errors met while deciding: policies that failed to evaluate (and were skipped, as Cedar
    /// does) or why the request is malformed.
    pub errors: Vec<String>,
    /// SHA-256 of the policy set that decided ([`crate::PolicySet::digest`]).
    #[serde(with = "digest_hex")]
    pub policy_digest: [u8; 32],
}

impl Decision {
    /// A deny that did not consult the policy.
    pub(crate) fn deny_without_policy(
        reason: Reason,
        error: Option<String>,
        policy_digest: [u8; 32],
    ) -> Self {
        Self {
            allowed: false,
            reason,
            policy_ids: Vec::new(),
            errors: error.into_iter().collect(),
            policy_digest,
        }
    }

    /// The policy digest as lowercase hex.
    pub fn policy_digest_hex(&self) -> String {
        hex::encode(self.policy_digest)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allowed { "allowed" } else { "denied" })?;
        write!(f, ": {}", self.reason)?;
        if !self.policy_ids.is_empty() {
            let ids: Vec<String> = self.policy_ids.iter().map(|id| format!("`{id}`")).collect();
            write!(f, " ({})", ids.join(", "))?;
        }
        for e in &self.errors {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

pub(crate) mod digest_hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}
