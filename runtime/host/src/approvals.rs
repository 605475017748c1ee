//! Human approvals: a call a policy allows only with `@approval("required")` runs once a person
//! has approved that exact call — its principal, capability, version, function and arguments,
//! digested as the approval's fingerprint ([`femtoclaw_ledger::approval_fingerprint`]).
//!
//! ```text
//! invoke ─ needs approval, none granted ─▶ recorded pending (id = its invocation), answered
//!                                          "pending" (exit 13, HTTP 202, MCP isError)
//! approval grant ID ─▶ approval entry `grant` (durable), then the grant is usable until it expires
//! invoke again ─▶ the grant is spent (single use) ─▶ runs; its start names the approval
//! ```
//!
//! The ledger records every step (the approval entries and the pending invocations); the state
//! of each approval is kept in `<data dir>/approvals.json`, written after the ledger: losing it
//! loses only grants not yet used, which fails closed (the call asks again).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use femtoclaw_ledger::Entry;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::exit::{Code, Failure};
use crate::records::Records;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Asked for; nobody has decided.
    Pending,
    /// Approved: the next identical call may spend it, until it expires.
    Granted,
    /// Refused.
    Denied,
    /// Spent by the invocation [`Approval::used_by`].
    Used,
    /// Granted, and not spent before it expired.
    Expired,
}

/// One approval: what is asked and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    /// Its id: the invocation that asked, recorded as pending.
    pub id: u64,
    pub state: State,
    /// The fingerprint, lowercase hex.
    pub fingerprint: String,
    /// Who asked, as the ledger names principals.
    pub principal: String,
    pub capability: String,
    pub version: String,
    pub function: String,
    /// The arguments asked with.
    pub args: Json,
    /// When it was asked, seconds since the Unix epoch.
    pub asked: u64,
    /// Who decided, when and why.
    pub decided_by: Option<String>,
    pub decided: Option<u64>,
    pub reason: Option<String>,
    /// Until when a grant may be spent.
    pub expires: Option<u64>,
    /// The invocation that spent the grant.
    pub used_by: Option<u64>,
}

impl Approval {
    fn fingerprint(&self) -> [u8; 32] {
        let mut out = [0; 32];
        if hex::decode_to_slice(&self.fingerprint, &mut out).is_err() {
            // A corrupt record matches no call: fail closed.
            out = [0; 32];
        }
        out
    }
}

/// A request for an approval, as [`Approvals::ask`] takes it.
pub struct Ask<'a> {
    pub invocation: u64,
    pub fingerprint: [u8; 32],
    pub principal: &'a str,
    pub capability: &'a str,
    pub version: &'a str,
    pub function: &'a str,
    pub args: &'a Json,
}

/// The approvals of one data directory.
pub struct Approvals {
    file: PathBuf,
    all: Mutex<Vec<Approval>>,
}

impl Approvals {
    /// The approvals kept in `data_dir` (none when the file is missing; a file that does not
    /// read is refused, naming it, rather than forgetting what it holds).
    pub fn open(data_dir: &Path) -> Result<Self, Failure> {
        let file = data_dir.join("approvals.json");
        let all = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Failure::new(Code::Other, format!("`{}`: {e}", file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Failure::new(
                    Code::Other,
                    format!("`{}`: {e}", file.display()),
                ));
            }
        };
        Ok(Self {
            file,
            all: Mutex::new(all),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Approval>> {
        self.all.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every approval, oldest first, with grants past their expiry shown as expired.
    pub fn list(&self) -> Vec<Approval> {
        let now = now();
        self.lock()
            .iter()
            .cloned()
            .map(|mut a| {
                if a.state == State::Granted && a.expires.is_some_and(|e| e <= now) {
                    a.state = State::Expired;
                }
                a
            })
            .collect()
    }

    /// The approval `id`, or exit 3 naming it.
    pub fn get(&self, id: u64) -> Result<Approval, Failure> {
        self.list()
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| Failure::new(Code::Unknown, format!("there is no approval {id}")))
    }

    /// How many wait for a decision.
    pub fn pending(&self) -> usize {
        self.lock()
            .iter()
            .filter(|a| a.state == State::Pending)
            .count()
    }

    /// The pending approval of the call `fingerprint`, if one is already asked for.
    pub fn pending_for(&self, fingerprint: &[u8; 32]) -> Option<u64> {
        self.lock()
            .iter()
            .find(|a| a.state == State::Pending && a.fingerprint() == *fingerprint)
            .map(|a| a.id)
    }

    /// The approval entry asking for `ask`, to be appended with its pending invocation, and
    /// the approval it becomes once that is durable ([`Approvals::keep`]).
    pub fn ask(ask: &Ask<'_>) -> (Entry, Approval) {
        let at = now();
        let entry = Entry::Approval {
            request: ask.invocation,
            action: "request".to_owned(),
            fingerprint: ask.fingerprint,
            by: ask.principal.to_owned(),
            reason: String::new(),
            at,
            expires: None,
        };
        let approval = Approval {
            id: ask.invocation,
            state: State::Pending,
            fingerprint: hex::encode(ask.fingerprint),
            principal: ask.principal.to_owned(),
            capability: ask.capability.to_owned(),
            version: ask.version.to_owned(),
            function: ask.function.to_owned(),
            args: ask.args.clone(),
            asked: at,
            decided_by: None,
            decided: None,
            reason: None,
            expires: None,
            used_by: None,
        };
        (entry, approval)
    }

    /// Keeps `approval` (asked, its entries durable).
    pub fn keep(&self, approval: Approval) -> Result<(), Failure> {
        let mut all = self.lock();
        all.push(approval);
        self.save(&all)
    }

    /// Grants (`grant`) or denies approval `id` as `by` for `reason`: the decision is a ledger
    /// entry, durable before it takes effect. Only a pending approval can be decided.
    pub fn decide(
        &self,
        records: &Records,
        id: u64,
        grant: bool,
        by: &str,
        reason: Option<String>,
        ttl: std::time::Duration,
    ) -> Result<Approval, Failure> {
        let mut all = self.lock();
        let approval = all
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or_else(|| Failure::new(Code::Unknown, format!("there is no approval {id}")))?;
        if approval.state != State::Pending {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!(
                    "approval {id} is already decided ({})",
                    serde_json::to_value(approval.state)
                        .ok()
                        .and_then(|s| s.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            ));
        }
        let at = now();
        let expires = grant.then(|| at.saturating_add(ttl.as_secs().max(1)));
        records.append(vec![Entry::Approval {
            request: id,
            action: if grant { "grant" } else { "deny" }.to_owned(),
            fingerprint: approval.fingerprint(),
            by: by.to_owned(),
            reason: reason.clone().unwrap_or_default(),
            at,
            expires,
        }])?;
        approval.state = if grant { State::Granted } else { State::Denied };
        approval.decided_by = Some(by.to_owned());
        approval.decided = Some(at);
        approval.reason = reason;
        approval.expires = expires;
        let decided = approval.clone();
        self.save(&all)?;
        Ok(decided)
    }

    /// Spends a live grant of the call `fingerprint` for `invocation`: its id, once (no other
    /// call can spend it); none when there is none.
    pub fn spend(&self, fingerprint: &[u8; 32], invocation: u64) -> Result<Option<u64>, Failure> {
        let now = now();
        let mut all = self.lock();
        let Some(grant) = all.iter_mut().find(|a| {
            a.state == State::Granted
                && a.expires.is_some_and(|e| e > now)
                && a.fingerprint() == *fingerprint
        }) else {
            return Ok(None);
        };
        grant.state = State::Used;
        grant.used_by = Some(invocation);
        let id = grant.id;
        self.save(&all)?;
        Ok(Some(id))
    }

    /// Where approval `id` stands now.
    pub fn state(&self, id: u64) -> Option<State> {
        self.list()
            .into_iter()
            .find(|a| a.id == id)
            .map(|a| a.state)
    }

    fn save(&self, all: &[Approval]) -> Result<(), Failure> {
        let pending = all.iter().filter(|a| a.state == State::Pending).count();
        crate::telemetry::set_pending_approvals(u64::try_from(pending).unwrap_or(u64::MAX));
        let failed = |e: std::io::Error| {
            Failure::new(Code::Other, format!("`{}`: {e}", self.file.display()))
        };
        let bytes = serde_json::to_vec_pretty(all).map_err(|e| failed(std::io::Error::other(e)))?;
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &self.file))
            .map_err(failed)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn granted(id: u64, fingerprint: [u8; 32], expires: u64) -> Approval {
        let (_, mut approval) = Approvals::ask(&Ask {
            invocation: id,
            fingerprint,
            principal: "FemtoClaw::Agent::\"bot\"",
            capability: "hello",
            version: "0.1.0",
            function: "greet",
            args: &serde_json::json!({ "name": "Ada" }),
        });
        approval.state = State::Granted;
        approval.expires = Some(expires);
        approval
    }

    // Verifies: FC-OPS-4011, FC-OPS-4012
    #[test]
    fn a_grant_is_spent_once_only_by_its_call_and_never_after_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let approvals = Approvals::open(dir.path()).unwrap();
        approvals.keep(granted(1, [1; 32], now() + 3600)).unwrap();
        approvals.keep(granted(2, [2; 32], now() - 1)).unwrap();
        assert_eq!(approvals.spend(&[9; 32], 10).unwrap(), None, "another call");
        assert_eq!(approvals.spend(&[2; 32], 10).unwrap(), None, "expired");
        assert_eq!(approvals.get(2).unwrap().state, State::Expired);
        assert_eq!(approvals.spend(&[1; 32], 10).unwrap(), Some(1));
        assert_eq!(approvals.spend(&[1; 32], 11).unwrap(), None, "single use");
        // What was spent stays spent in the next process.
        let reopened = Approvals::open(dir.path()).unwrap();
        let spent = reopened.get(1).unwrap();
        assert_eq!((spent.state, spent.used_by), (State::Used, Some(10)));
        assert_eq!(reopened.spend(&[1; 32], 12).unwrap(), None);
    }

    // Verifies: FC-OPS-4017
    #[test]
    fn a_damaged_approvals_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("approvals.json"), b"[{\"id\": ").unwrap();
        let refused = Approvals::open(dir.path()).err().unwrap();
        assert!(
            refused.message.contains("approvals.json"),
            "{}",
            refused.message
        );
    }
}
