//! Quotas: the limits an operator sets on who may run how much, per principal and per
//! capability, as a list of rules (`[[quotas.rules]]` tables, or the same list as inline TOML
//! in `FEMTOCLAW_QUOTAS_RULES`).
//!
//! ```toml
//! [[quotas.rules]]
//! principal = "agent:crawler"   # one principal, `group:NAME`, or `*` (each principal)
//! capability = "fetch"          # one capability's name, or `*` (all of them together)
//! invocations = 10              # at most 10 per `per_ms`, GCRA, with bursts of `burst`
//! per_ms = 60000
//! concurrent = 2                # at most 2 running at once
//! fuel = 5000000000             # at most this much fuel (budgets asked) per `per_ms`
//! ```

use std::time::Duration;

use toml::de::DeValue;

use crate::value::{Raw, Rule, Value, ValueError};

/// One quota rule: whom and what it covers, and its limits (each optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRule {
    /// `agent:ID` or `user:ID` (one principal), `group:NAME` (each principal in the group), or
    /// `*` (each principal).
    pub principal: String,
    /// A capability's name, or `*`: every capability, counted together.
    pub capability: String,
    /// When true, every principal the rule covers draws on one allowance (a limit on the
    /// capability as a whole); by default each has its own.
    pub shared: bool,
    /// Invocations allowed per [`QuotaRule::per`] (a GCRA rate: one every `per / invocations`).
    pub invocations: Option<u32>,
    /// How many of those may come at once, unspaced; by default `invocations`.
    pub burst: Option<u32>,
    /// The interval of `invocations` and `fuel`.
    pub per: Duration,
    /// Invocations running at once.
    pub concurrent: Option<u32>,
    /// Fuel (the budgets of the invocations admitted, less what they left unused) per
    /// [`QuotaRule::per`].
    pub fuel: Option<u64>,
}

impl Default for QuotaRule {
    fn default() -> Self {
        Self {
            principal: "*".to_owned(),
            capability: "*".to_owned(),
            shared: false,
            invocations: None,
            burst: None,
            per: Duration::from_secs(60),
            concurrent: None,
            fuel: None,
        }
    }
}

/// The keys of a rule, in the order `show` writes them.
const KEYS: [&str; 8] = [
    "principal",
    "capability",
    "shared",
    "invocations",
    "burst",
    "per_ms",
    "concurrent",
    "fuel",
];

impl QuotaRule {
    /// Reads one rule (the `index`th of the list) from its TOML table.
    fn from_toml(index: usize, value: &DeValue<'_>) -> Result<Self, ValueError> {
        let bad = |why: String| ValueError::QuotaRule { index, why };
        let DeValue::Table(table) = value else {
            return Err(bad(format!("expected a table, found {}", value.type_str())));
        };
        let mut rule = QuotaRule::default();
        for (key, value) in table {
            let (key, value) = (key.get_ref().as_ref(), value.get_ref());
            let wrong = |e: ValueError| bad(format!("`{key}` {e}"));
            let count = || u32::parse(Raw::Toml(value), Rule::AtLeast(1)).map_err(wrong);
            match key {
                "principal" => {
                    rule.principal = String::parse(Raw::Toml(value), Rule::Any).map_err(wrong)?
                }
                "capability" => {
                    rule.capability = String::parse(Raw::Toml(value), Rule::Any).map_err(wrong)?
                }
                "shared" => {
                    let DeValue::Boolean(shared) = value else {
                        return Err(wrong(ValueError::WrongType {
                            expected: "a boolean",
                            found: value.type_str(),
                        }));
                    };
                    rule.shared = *shared;
                }
                "invocations" => rule.invocations = Some(count()?),
                "burst" => rule.burst = Some(count()?),
                "concurrent" => rule.concurrent = Some(count()?),
                "per_ms" => {
                    rule.per = Duration::parse(Raw::Toml(value), Rule::AtLeast(1)).map_err(wrong)?
                }
                "fuel" => {
                    rule.fuel = Some(u64::parse(Raw::Toml(value), Rule::AtLeast(1)).map_err(wrong)?)
                }
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}` (a rule takes {})",
                        KEYS.map(|k| format!("`{k}`")).join(", ")
                    )));
                }
            }
        }
        if rule.principal != "*" && !rule.principal.contains(':') {
            return Err(bad(format!(
                "`principal` `{}` is not `*`, `agent:ID`, `user:ID` or `group:NAME`",
                rule.principal
            )));
        }
        if rule.capability.is_empty() {
            return Err(bad("`capability` is empty: name one, or `*`".to_owned()));
        }
        if rule.invocations.is_none() && rule.concurrent.is_none() && rule.fuel.is_none() {
            return Err(bad(
                "sets no limit: give `invocations`, `concurrent` or `fuel`".to_owned(),
            ));
        }
        if rule.burst.is_some() && rule.invocations.is_none() {
            return Err(bad("`burst` without `invocations`".to_owned()));
        }
        Ok(rule)
    }

    fn to_toml(&self) -> String {
        let mut fields = vec![
            format!("principal = {}", self.principal.to_toml()),
            format!("capability = {}", self.capability.to_toml()),
        ];
        if self.shared {
            fields.push("shared = true".to_owned());
        }
        let numbers = [
            ("invocations", self.invocations.map(u64::from)),
            ("burst", self.burst.map(u64::from)),
            (
                "per_ms",
                Some(self.per.to_toml().parse().unwrap_or(u64::MAX)),
            ),
            ("concurrent", self.concurrent.map(u64::from)),
            ("fuel", self.fuel),
        ];
        fields.extend(
            numbers
                .into_iter()
                .filter_map(|(key, value)| value.map(|v| format!("{key} = {v}"))),
        );
        format!("{{ {} }}", fields.join(", "))
    }
}

/// The rules: an array of tables in the file; in the environment, the same array as inline
/// TOML (`[{ principal = "*", invocations = 10 }]`).
impl Value for Vec<QuotaRule> {
    const TYPE: &'static str = "list of quota rules";

    fn parse(raw: Raw<'_>, _rule: Rule) -> Result<Self, ValueError> {
        let parse_array = |value: &DeValue<'_>| match value {
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| QuotaRule::from_toml(index, item.get_ref()))
                .collect(),
            other => Err(ValueError::WrongType {
                expected: "an array of quota rules",
                found: other.type_str(),
            }),
        };
        match raw {
            Raw::Toml(value) => parse_array(value),
            Raw::Text(text) if text.trim().is_empty() => Ok(Vec::new()),
            Raw::Text(text) => {
                let value = DeValue::parse(text).map_err(|e| ValueError::NotToml {
                    text: text.to_owned(),
                    why: e.message().to_owned(),
                })?;
                parse_array(value.get_ref())
            }
        }
    }

    fn to_toml(&self) -> String {
        let rules: Vec<String> = self.iter().map(QuotaRule::to_toml).collect();
        format!("[{}]", rules.join(", "))
    }
}
