//! Bearer tokens: how a principal proves who it is to the server.
//!
//! `token create` makes a random token, prints it once and keeps only its SHA-256, with the
//! principal and groups it stands for, in `<data dir>/tokens/<name>.json` (mode 0600, the
//! directory 0700). A request's principal and groups come from its token, never from its body.
//! Revoking removes the file: the next request with that token is refused. Both are recorded
//! in the ledger first (a token-change entry, with the token's SHA-256): a token is accepted
//! only once its creation is durable.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use femtoclaw_policy::Principal;
use serde::{Deserialize, Serialize};

use crate::exit::{Code, Failure};
use crate::private::{PrivateDir, Replace, check_name};
use crate::records::Records;

/// What the host keeps of a token: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Its name, unique in the data directory.
    pub name: String,
    /// The principal it stands for (`agent:ID` or `user:ID`).
    pub principal: String,
    /// The groups the principal is in.
    pub groups: Vec<String>,
    /// When it was made, seconds since the Unix epoch.
    pub created: u64,
    /// When it stops being accepted, seconds since the Unix epoch.
    pub expires: Option<u64>,
    /// SHA-256 of the token, hex.
    pub sha256: String,
}

impl Token {
    /// The principal, with its groups.
    pub fn principal(&self) -> Result<Principal, Failure> {
        crate::authority::principal(&self.principal, &self.groups)
    }

    /// The ledger entry that records `action` (`create`, `revoke`) on this token.
    fn change(&self, action: &str) -> Result<femtoclaw_ledger::Entry, Failure> {
        let token_sha256 = hex::decode(&self.sha256)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                Failure::new(
                    Code::Other,
                    format!("token `{}`: its digest is not 32 bytes of hex", self.name),
                )
            })?;
        Ok(femtoclaw_ledger::Entry::TokenChange {
            action: action.to_owned(),
            name: self.name.clone(),
            principal: self.principal.clone(),
            groups: self.groups.clone(),
            expires: self.expires,
            token_sha256,
        })
    }
}

/// The token store of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PrivateDir,
}

/// The longest token name.
const MAX_NAME: usize = 64;

/// What every token starts with, so that a leaked one is easy to recognise (and scan for).
const PREFIX: &str = "fct_";

impl Store {
    /// The store under `data_dir` (nothing is created until a token is).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: PrivateDir::new(data_dir.join("tokens")),
        }
    }

    /// Makes a token for `principal` (checked) in `groups`, named `name`, valid for `ttl` if
    /// given, and records its creation in `records`; returns what is kept and the token, which
    /// is shown once and never stored.
    pub fn create(
        &self,
        records: &Records,
        name: &str,
        principal: &str,
        groups: &[String],
        ttl: Option<Duration>,
    ) -> Result<(Token, String), Failure> {
        check_name(name, "token", MAX_NAME)?;
        crate::authority::principal(principal, groups)?;
        let exists = || {
            Failure::new(
                Code::InvalidArgs,
                format!("a token named `{name}` exists already; revoke it first"),
            )
        };
        if self.dir.read(&file(name))?.is_some() {
            return Err(exists());
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Failure::new(Code::Other, format!("no randomness for a token: {e}")))?;
        let token = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let created = now();
        let record = Token {
            name: name.to_owned(),
            principal: principal.to_owned(),
            groups: groups.to_vec(),
            created,
            expires: ttl.map(|ttl| created.saturating_add(ttl.as_secs())),
            sha256: digest(&token),
        };
        let text = serde_json::to_string_pretty(&record)
            .map_err(|e| Failure::new(Code::Other, format!("token `{name}`: {e}")))?;
        records.append(vec![record.change("create")?])?;
        if !self.dir.write(&file(name), text.as_bytes(), Replace::No)? {
            return Err(exists());
        }
        Ok((record, token))
    }

    /// Every token, by name.
    pub fn list(&self) -> Result<Vec<Token>, Failure> {
        let mut tokens = Vec::new();
        for name in self.dir.files()? {
            if let Some(text) = name
                .strip_suffix(".json")
                .map(|_| self.dir.read(&name))
                .transpose()?
                .flatten()
            {
                tokens.push(
                    serde_json::from_str(&text).map_err(|e| {
                        Failure::new(Code::Other, format!("token file `{name}`: {e}"))
                    })?,
                );
            }
        }
        tokens.sort_by(|a: &Token, b: &Token| a.name.cmp(&b.name));
        Ok(tokens)
    }

    /// Revokes the token `name`, recorded in `records` first: from the next request on, it is
    /// refused.
    pub fn revoke(&self, records: &Records, name: &str) -> Result<(), Failure> {
        check_name(name, "token", MAX_NAME)?;
        let unknown = || Failure::new(Code::Unknown, format!("there is no token `{name}`"));
        let text = self.dir.read(&file(name))?.ok_or_else(unknown)?;
        let token: Token = serde_json::from_str(&text)
            .map_err(|e| Failure::new(Code::Other, format!("token file `{name}.json`: {e}")))?;
        records.append(vec![token.change("revoke")?])?;
        if self.dir.remove(&file(name))? {
            Ok(())
        } else {
            Err(unknown())
        }
    }

    /// The token a request presents, if it is one of this store's and has not expired.
    pub fn authenticate(&self, presented: &str) -> Result<Token, Refused> {
        if !presented.starts_with(PREFIX) {
            return Err(Refused::Unknown);
        }
        let sha = digest(presented);
        let token = self
            .list()
            .map_err(|_| Refused::Unknown)?
            .into_iter()
            .find(|t| constant_time_eq(t.sha256.as_bytes(), sha.as_bytes()))
            .ok_or(Refused::Unknown)?;
        match token.expires {
            Some(expires) if now() >= expires => Err(Refused::Expired(token.name)),
            _ => Ok(token),
        }
    }
}

/// Who a bearer credential acts for: the one check of every HTTP API and MCP request. The
/// host's own tokens ([`Store`]) are one; an external OAuth issuer's access tokens would be
/// another, plugged in where the server is made.
pub trait Authenticator: Send + Sync {
    /// The principal `bearer` acts for; a credential that is unknown, expired or revoked is a
    /// [`Refused`].
    fn principal_of(&self, bearer: &str) -> Result<Result<Principal, Failure>, Refused>;
}

impl Authenticator for Store {
    fn principal_of(&self, bearer: &str) -> Result<Result<Principal, Failure>, Refused> {
        self.authenticate(bearer).map(|token| token.principal())
    }
}

/// The file that keeps the token `name`.
fn file(name: &str) -> String {
    format!("{name}.json")
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such token (never made, or revoked).
    Unknown,
    /// The token `0` has expired.
    Expired(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unknown => f.write_str("the token is not valid (unknown or revoked)"),
            Refused::Expired(name) => write!(f, "the token `{name}` has expired"),
        }
    }
}

/// Parses a lifetime: a number and a unit, `s`, `m`, `h` or `d` (`30d`, `12h`).
pub fn parse_ttl(text: &str) -> Result<Duration, Failure> {
    let bad = || {
        Failure::new(
            Code::InvalidArgs,
            format!("--expires `{text}`: give a number and a unit, s, m, h or d (`30d`, `12h`)"),
        )
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let seconds: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let count: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(bad());
    }
    count
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

fn digest(token: &str) -> String {
    hex::encode(femtoclaw_sandbox::catalog::sha256(token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: FC-SEC-5601, FC-SEC-1801, FC-SEC-1804, FC-SEC-1805, FC-SEC-1806, FC-SEC-1812, FC-SEC-1819, FC-SEC-1826
    #[test]
    fn a_token_authenticates_until_revoked_or_expired_and_only_its_digest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path(), femtoclaw_ledger::DEFAULT_ORIGIN).unwrap();
        let store = Store::new(dir.path());
        let (kept, token) = store
            .create(&records, "bot", "agent:bot", &["ops".to_owned()], None)
            .unwrap();
        let on_disk = std::fs::read_to_string(dir.path().join("tokens/bot.json")).unwrap();
        assert!(!on_disk.contains(&token[PREFIX.len()..]));
        assert_eq!(store.authenticate(&token).unwrap(), kept);
        assert_eq!(
            store.authenticate(&format!("{token}x")),
            Err(Refused::Unknown)
        );
        assert_eq!(store.authenticate("Bearer nonsense"), Err(Refused::Unknown));
        store.revoke(&records, "bot").unwrap();
        assert_eq!(store.authenticate(&token), Err(Refused::Unknown));

        // Both are in the ledger, with the token's digest and never the token.
        let changes: Vec<_> = records
            .with_ledger(|l| l.iter(0, 100))
            .unwrap()
            .into_iter()
            .filter_map(|(_, entry)| match entry {
                femtoclaw_ledger::Entry::TokenChange {
                    action,
                    name,
                    principal,
                    groups,
                    token_sha256,
                    ..
                } => Some((action, name, principal, groups, hex::encode(token_sha256))),
                _ => None,
            })
            .collect();
        let entry = |action: &str| {
            (
                action.to_owned(),
                "bot".to_owned(),
                "agent:bot".to_owned(),
                vec!["ops".to_owned()],
                kept.sha256.clone(),
            )
        };
        assert_eq!(changes, vec![entry("create"), entry("revoke")]);
        let ledger = std::fs::read_dir(dir.path().join("ledger"))
            .unwrap()
            .map(|f| std::fs::read(f.unwrap().path()).unwrap_or_default())
            .collect::<Vec<_>>()
            .concat();
        let secret = &token.as_bytes()[PREFIX.len()..];
        assert!(!ledger.windows(secret.len()).any(|w| w == secret));

        let (_, expired) = store
            .create(&records, "old", "agent:old", &[], None)
            .unwrap();
        let path = dir.path().join("tokens/old.json");
        let mut record: Token =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        record.expires = Some(1);
        std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(
            store.authenticate(&expired),
            Err(Refused::Expired("old".into()))
        );
    }

    // Verifies: FC-SEC-1807, FC-SEC-1808, FC-SEC-1824
    #[test]
    fn bad_names_principals_and_lifetimes_are_refused_by_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path(), femtoclaw_ledger::DEFAULT_ORIGIN).unwrap();
        let store = Store::new(dir.path());
        let before = records.with_ledger(|l| l.len());
        assert!(
            store
                .create(&records, "../x", "agent:a", &[], None)
                .is_err()
        );
        assert!(store.create(&records, "a", "robot:a", &[], None).is_err());
        assert!(store.revoke(&records, "nobody").is_err());
        assert_eq!(
            records.with_ledger(|l| l.len()),
            before,
            "refusals record nothing"
        );
        store.create(&records, "a", "agent:a", &[], None).unwrap();
        let again = store
            .create(&records, "a", "agent:a", &[], None)
            .unwrap_err();
        assert!(
            again.message.contains("exists already"),
            "{}",
            again.message
        );
        assert_eq!(parse_ttl("30d").unwrap(), Duration::from_secs(30 * 86_400));
        for bad in ["", "d", "0h", "12", "1w", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
