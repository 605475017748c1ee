//! Quotas and rate limits: before an invocation runs, every rule of `quotas.rules` that covers
//! its principal and capability must admit it — a rate of invocations (GCRA, with bursts), a
//! number running at once, and an allowance of fuel per interval. One over any of them is
//! refused before it runs, naming the rule, with the time after which it would be admitted.
//!
//! The rates are the generic cell rate algorithm: each allowance keeps a theoretical arrival
//! time (TAT); an invocation costing `c` is admitted when `max(TAT, now) + c − now` is within
//! the allowance's window, and moves the TAT there. For invocations `c` is `per / invocations`
//! and the window `c × burst`; for fuel `c` is the budget's share of `per` and the window `per`,
//! and the part of a budget an invocation did not use is given back when it ends.
//!
//! The arrival times are kept in `<data dir>/quotas.json`, so that the limits hold across
//! processes: the command line runs one invocation per process. The file is derived state, not
//! a record (the ledger records every refusal): losing it only refreshes the allowances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use femtoclaw_config::QuotaRule;
use femtoclaw_policy::Principal;

use crate::exit::{Code, Failure};

/// The quotas of one host: the rules, and the state of every allowance they hand out.
pub struct Quotas {
    rules: Vec<QuotaRule>,
    state: Mutex<State>,
    file: PathBuf,
}

/// The allowances handed out so far, by [`Allowance`] key.
#[derive(Default)]
struct State {
    /// The theoretical arrival time of each rate (`rate` or `fuel`), in nanoseconds since the
    /// Unix epoch.
    tat: BTreeMap<String, u128>,
    /// Invocations running, by allowance.
    running: BTreeMap<String, u32>,
}

/// One rule's allowance for one invocation: the rule's position and its key (the rule, the
/// principal unless shared, the capability unless `*`).
struct Allowance<'a> {
    index: usize,
    rule: &'a QuotaRule,
    key: String,
}

/// An admitted invocation's hold on its allowances: the places it takes among the running
/// (given back when dropped), and the fuel it drew (the unused part given back by
/// [`Admitted::finish`]).
pub struct Admitted {
    quotas: Option<Arc<Quotas>>,
    running: Vec<String>,
    fuel: Vec<(String, u128)>,
    budget: u64,
}

impl Admitted {
    /// Nothing held: no rule covers the invocation.
    fn none() -> Self {
        Self {
            quotas: None,
            running: Vec::new(),
            fuel: Vec::new(),
            budget: 0,
        }
    }

    /// The invocation ended having used `consumed` of its budget: what it did not use goes back
    /// to each fuel allowance it drew on.
    pub fn finish(self, consumed: u64) {
        let Some(quotas) = &self.quotas else {
            return;
        };
        if self.fuel.is_empty() {
            return;
        }
        let unused = self.budget.saturating_sub(consumed);
        let mut state = quotas.lock();
        for (key, cost) in &self.fuel {
            let back = cost * u128::from(unused) / u128::from(self.budget.max(1));
            if let Some(tat) = state.tat.get_mut(key) {
                *tat = tat.saturating_sub(back);
            }
        }
        quotas.save(&state);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(quotas) = &self.quotas else {
            return;
        };
        let mut state = quotas.lock();
        for key in &self.running {
            if let Some(count) = state.running.get_mut(key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.running.remove(key);
                }
            }
        }
    }
}

impl Quotas {
    /// The quotas of `rules`, with the arrival times kept in `data_dir` (read now; a missing or
    /// unreadable file is fresh allowances).
    pub fn open(data_dir: &Path, rules: Vec<QuotaRule>) -> Arc<Self> {
        let file = data_dir.join("quotas.json");
        let tat = if rules.is_empty() {
            BTreeMap::new()
        } else {
            std::fs::read(&file)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<BTreeMap<String, String>>(&bytes).ok())
                .map(|saved| {
                    saved
                        .into_iter()
                        .filter_map(|(k, v)| v.parse().ok().map(|v| (k, v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Arc::new(Self {
            rules,
            state: Mutex::new(State {
                tat,
                running: BTreeMap::new(),
            }),
            file,
        })
    }

    /// Admits an invocation of `capability` by `principal` with fuel budget `budget` under
    /// every rule that covers it, or refuses it (exit 12, HTTP 429) naming the first rule it is
    /// over and when to retry. Nothing is taken from any allowance unless all admit it.
    pub fn admit(
        self: &Arc<Self>,
        principal: &Principal,
        capability: &str,
        budget: u64,
    ) -> Result<Admitted, Failure> {
        let covering: Vec<Allowance<'_>> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| covers(rule, principal, capability))
            .map(|(index, rule)| Allowance {
                index,
                rule,
                key: key(rule, principal, capability),
            })
            .collect();
        if covering.is_empty() {
            return Ok(Admitted::none());
        }
        let now = now();
        let mut state = self.lock();
        let mut new_tat: Vec<(String, u128)> = Vec::new();
        let mut fuel = Vec::new();
        for allowance in &covering {
            let rule = allowance.rule;
            if let Some(most) = rule.concurrent {
                let running = state.running.get(&allowance.key).copied().unwrap_or(0);
                if running >= most {
                    return Err(over(
                        allowance,
                        principal,
                        capability,
                        format!("{most} running at once"),
                        Some(Duration::from_secs(1)),
                    ));
                }
            }
            let per = rule.per.as_nanos();
            if let Some(invocations) = rule.invocations {
                let cost = per / u128::from(invocations);
                let window = cost * u128::from(rule.burst.unwrap_or(invocations));
                let rate_key = format!("{}|rate", allowance.key);
                let tat = state.tat.get(&rate_key).copied().unwrap_or(0).max(now);
                if tat + cost - now > window {
                    return Err(over(
                        allowance,
                        principal,
                        capability,
                        format!("{invocations} invocations per {} ms", rule.per.as_millis()),
                        Some(nanos(tat + cost - now - window)),
                    ));
                }
                new_tat.push((rate_key, tat + cost));
            }
            if let Some(allowed) = rule.fuel {
                let fuel_key = format!("{}|fuel", allowance.key);
                let what = format!("{allowed} fuel per {} ms", rule.per.as_millis());
                if budget > allowed {
                    return Err(over(
                        allowance,
                        principal,
                        capability,
                        format!("{what}: a budget of {budget} is more than it ever allows"),
                        None,
                    ));
                }
                let cost = per * u128::from(budget) / u128::from(allowed);
                let tat = state.tat.get(&fuel_key).copied().unwrap_or(0).max(now);
                if tat + cost - now > per {
                    return Err(over(
                        allowance,
                        principal,
                        capability,
                        format!("{what} (this one asks {budget})"),
                        Some(nanos(tat + cost - now - per)),
                    ));
                }
                new_tat.push((fuel_key.clone(), tat + cost));
                fuel.push((fuel_key, cost));
            }
        }
        let mut running = Vec::new();
        for allowance in covering.iter().filter(|a| a.rule.concurrent.is_some()) {
            *state.running.entry(allowance.key.clone()).or_insert(0) += 1;
            running.push(allowance.key.clone());
        }
        state.tat.extend(new_tat);
        self.save(&state);
        Ok(Admitted {
            quotas: Some(Arc::clone(self)),
            running,
            fuel,
            budget,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the arrival times still ahead of now (written whole, then renamed into place; not
    /// synced: it is derived state).
    fn save(&self, state: &State) {
        let now = now();
        let live: BTreeMap<&str, String> = state
            .tat
            .iter()
            .filter(|(_, tat)| **tat > now)
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        let tmp = self.file.with_extension("json.tmp");
        let written = serde_json::to_vec(&live)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            tracing::warn!("quotas: cannot keep `{}`: {e}", self.file.display());
        }
    }
}

/// Whether `rule` covers an invocation of `capability` by `principal`.
fn covers(rule: &QuotaRule, principal: &Principal, capability: &str) -> bool {
    let whom = match rule.principal.strip_prefix("group:") {
        _ if rule.principal == "*" => true,
        Some(group) => principal.groups.iter().any(|g| g == group),
        None => spec(principal) == rule.principal,
    };
    whom && (rule.capability == "*" || rule.capability == capability)
}

/// The allowance a rule gives: to each principal unless shared, to each capability it names.
fn key(rule: &QuotaRule, principal: &Principal, capability: &str) -> String {
    let whom = if rule.shared {
        String::new()
    } else {
        spec(principal)
    };
    let what = if rule.capability == "*" {
        "*"
    } else {
        capability
    };
    // The rule itself is part of the key: a changed rule starts afresh.
    let rule = format!(
        "{}|{}|{}|{:?}|{:?}|{}|{:?}",
        rule.principal,
        rule.capability,
        rule.shared,
        rule.invocations,
        rule.burst,
        rule.per.as_millis(),
        rule.fuel
    );
    format!("{rule}|{whom}|{what}")
}

/// The refusal of an invocation over `limit` of a rule: exit 12 (HTTP 429), with when to retry.
fn over(
    allowance: &Allowance<'_>,
    principal: &Principal,
    capability: &str,
    limit: String,
    retry: Option<Duration>,
) -> Failure {
    let whom = if allowance.rule.shared {
        "everyone it covers together".to_owned()
    } else {
        format!("`{}`", spec(principal))
    };
    let retry_text = match retry {
        Some(after) => format!("; retry in {} ms", after.as_millis().max(1)),
        None => String::new(),
    };
    Failure::new(
        Code::OverQuota,
        format!(
            "over quota: `{capability}` for {whom} is limited to {limit} (quotas.rules[{}]){retry_text}",
            allowance.index
        ),
    )
    .with_retry_after(retry)
}

/// `principal` as a rule names it: `agent:ID` or `user:ID`.
fn spec(principal: &Principal) -> String {
    format!(
        "{}:{}",
        principal.kind.cedar_type().to_ascii_lowercase(),
        principal.id
    )
}

fn now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rule(text: &str) -> QuotaRule {
        let config = femtoclaw_config::Config::parse(
            Path::new("/test/femtoclaw.toml"),
            &format!("[[quotas.rules]]\n{text}\n"),
        )
        .unwrap();
        config.config().quotas.rules[0].clone()
    }

    fn quotas(dir: &Path, rules: &[&str]) -> Arc<Quotas> {
        Quotas::open(dir, rules.iter().map(|r| rule(r)).collect())
    }

    // Verifies: FC-OPS-4002, FC-OPS-4004, FC-OPS-4008, FC-OPS-4022
    #[test]
    fn a_rate_admits_its_burst_then_refuses_naming_the_rule_and_when_to_retry() {
        let dir = tempfile::tempdir().unwrap();
        let q = quotas(
            dir.path(),
            &["principal = \"agent:bot\"\ninvocations = 2\nper_ms = 3600000"],
        );
        let bot = Principal::agent("bot");
        q.admit(&bot, "hello", 1).unwrap().finish(1);
        q.admit(&bot, "hello", 1).unwrap().finish(1);
        let refused = q.admit(&bot, "textstats", 1).err().unwrap();
        assert_eq!(refused.code, Code::OverQuota);
        assert!(
            refused.message.contains(
                "`textstats` for `agent:bot` is limited to 2 invocations per 3600000 ms (quotas.rules[0])"
            ),
            "{}",
            refused.message
        );
        let retry = refused.retry_after.unwrap();
        assert!(retry > Duration::from_secs(1700) && retry <= Duration::from_secs(1800));
        // Another principal is not covered by the rule.
        q.admit(&Principal::agent("other"), "hello", 1).unwrap();
        // The limit holds in the next process: the arrival times are kept.
        let again = quotas(
            dir.path(),
            &["principal = \"agent:bot\"\ninvocations = 2\nper_ms = 3600000"],
        );
        assert!(again.admit(&bot, "hello", 1).is_err());
        // A changed rule starts afresh.
        let changed = quotas(
            dir.path(),
            &["principal = \"agent:bot\"\ninvocations = 3\nper_ms = 3600000"],
        );
        assert!(changed.admit(&bot, "hello", 1).is_ok());
    }

    // Verifies: FC-SEC-5603, FC-OPS-4002, FC-OPS-4003
    #[test]
    fn each_principal_has_its_own_allowance_unless_the_rule_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let own = quotas(
            dir.path(),
            &["capability = \"hello\"\ninvocations = 1\nper_ms = 3600000"],
        );
        own.admit(&Principal::agent("a"), "hello", 1).unwrap();
        own.admit(&Principal::agent("b"), "hello", 1).unwrap();
        assert!(own.admit(&Principal::agent("a"), "hello", 1).is_err());
        own.admit(&Principal::agent("a"), "textstats", 1).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let shared = quotas(
            dir.path(),
            &["capability = \"hello\"\nshared = true\ninvocations = 1\nper_ms = 3600000"],
        );
        shared.admit(&Principal::agent("a"), "hello", 1).unwrap();
        let refused = shared
            .admit(&Principal::agent("b"), "hello", 1)
            .err()
            .unwrap();
        assert!(
            refused.message.contains("for everyone it covers together"),
            "{}",
            refused.message
        );
    }

    // Verifies: FC-SEC-5603, FC-OPS-4002, FC-OPS-4005
    #[test]
    fn a_group_rule_covers_the_principals_in_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let q = quotas(dir.path(), &["principal = \"group:bots\"\nconcurrent = 1"]);
        let bot = Principal::agent("x").with_group("bots".to_owned());
        let held = q.admit(&bot, "hello", 1).unwrap();
        assert!(q.admit(&bot, "hello", 1).is_err(), "one running at once");
        q.admit(&Principal::agent("y"), "hello", 1).unwrap();
        drop(held);
        q.admit(&bot, "hello", 1).unwrap();
    }

    // Verifies: FC-OPS-4006
    #[test]
    fn fuel_is_drawn_by_budget_and_the_unused_part_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let q = quotas(dir.path(), &["fuel = 1000\nper_ms = 3600000"]);
        let bot = Principal::agent("bot");
        q.admit(&bot, "hello", 600).unwrap().finish(100); // 500 back: 100 drawn
        q.admit(&bot, "hello", 800).unwrap().finish(800); // 900 drawn
        let refused = q.admit(&bot, "hello", 200).err().unwrap();
        assert!(
            refused
                .message
                .contains("1000 fuel per 3600000 ms (this one asks 200)"),
            "{}",
            refused.message
        );
        q.admit(&bot, "hello", 100).unwrap();
        let never = q.admit(&bot, "hello", 1001).err().unwrap();
        assert!(
            never.message.contains("more than it ever allows"),
            "{}",
            never.message
        );
        assert_eq!(never.retry_after, None);
    }

    // Verifies: FC-OPS-4007
    #[test]
    fn nothing_is_taken_unless_every_rule_admits() {
        let dir = tempfile::tempdir().unwrap();
        let q = quotas(
            dir.path(),
            &["concurrent = 1", "invocations = 2\nper_ms = 3600000"],
        );
        let bot = Principal::agent("bot");
        let held = q.admit(&bot, "hello", 1).unwrap();
        // Over the first rule: the second's rate is not drawn on.
        let refused = q.admit(&bot, "hello", 1).err().unwrap();
        assert!(
            refused
                .message
                .contains("1 running at once (quotas.rules[0])"),
            "{}",
            refused.message
        );
        drop(held);
        q.admit(&bot, "hello", 1).unwrap();
        let refused = q.admit(&bot, "hello", 1).err().unwrap();
        assert!(
            refused.message.contains("(quotas.rules[1])"),
            "{}",
            refused.message
        );
        assert!(q.lock().running.is_empty());
    }
}
