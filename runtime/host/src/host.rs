//! The host: the capability catalog (embedded and installed) and the sandbox that runs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use femtoclaw_ledger::Receipt;
use femtoclaw_policy::{Decision, Principal};
use femtoclaw_sandbox::catalog::{Builtin, Catalog, Entry};
use femtoclaw_sandbox::gate::decision_of;
use femtoclaw_sandbox::kv::{CallView, KvStore, writes as kv_writes};
use femtoclaw_sandbox::record::{self, Journal, Start};
use femtoclaw_sandbox::{
    CompileCache, Context, Egress, HostContext, Outcome, Prepared, Sandbox, SandboxConfig,
};
use serde_json::Value as Json;

use crate::approvals::{Approvals, Ask};
use crate::authority::{self, Authority};
use crate::exit::{Code, Failure};
use crate::kv;
use crate::mounts;
use crate::quotas::Quotas;
use crate::records::Records;
use crate::telemetry;

/// Everything one `femtoclaw-host` process holds.
pub struct Host {
    pub data_dir: PathBuf,
    /// The effective configuration (see [`crate::settings`]).
    pub config: femtoclaw_config::Config,
    pub catalog: Catalog,
    pub sandbox: Sandbox,
    pub authority: Authority,
    records: Option<Records>,
    /// The key-value store, a view of the ledger: opened (and caught up with the ledger) the
    /// first time a command or an invocation needs it, so that one that does not pays nothing.
    kv: std::sync::Mutex<Option<Arc<KvStore>>>,
    /// Held by an invocation with key-value writes from its append to its apply.
    kv_order: std::sync::Mutex<()>,
    /// The data directory's lock, held while the ledger is open: one process writes it.
    lock: Option<std::sync::Mutex<crate::lock::DirLock>>,
    /// The allowances of `quotas.rules`.
    quotas: Arc<Quotas>,
    /// The approvals asked for, decided and spent.
    pub approvals: Approvals,
}

/// What the caller of [`Host::invoke`] asks of an invocation besides its arguments.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// The fuel budget, if less than the manifest's.
    pub fuel: Option<u64>,
    /// The wall-clock deadline, if less than the operator's.
    pub deadline: Option<Duration>,
    /// Set while it runs, it ends the invocation, recorded as cancelled.
    pub cancel: femtoclaw_sandbox::watchdog::Cancel,
    /// The caller's W3C trace id (from its `traceparent`), recorded in the start entry.
    pub trace_id: Option<[u8; 16]>,
}

/// An invocation that ran: its outcome, the receipt of its final append and its number.
pub struct Invoked {
    /// What the run produced.
    pub outcome: Outcome,
    /// The receipt of the entries appended at the end ([`Outcome::written_ahead`] the others).
    pub receipt: Receipt,
    /// The invocation's number in the ledger.
    pub invocation: u64,
}

impl Invoked {
    /// The index of the invocation's last entry (its end).
    pub fn last_entry(&self) -> u64 {
        self.receipt.indexes().end.saturating_sub(1)
    }

    /// The receipt a caller gets (the API's, MCP's `femtoclaw/receipt`): the invocation, its
    /// first and last entries, and the tree size, root and signed checkpoint that hold them.
    pub fn receipt_json(&self) -> Json {
        let first = self
            .outcome
            .written_ahead
            .first()
            .copied()
            .unwrap_or(self.receipt.first_index);
        serde_json::json!({
            "invocation": self.invocation,
            "entries": [first, self.last_entry()],
            "tree_size": self.receipt.tree_size,
            "root": hex::encode(self.receipt.root),
            "checkpoint": self.receipt.checkpoint,
        })
    }
}

/// A capability resolved and prepared for invocation.
pub struct Resolved {
    /// The catalog entry, with the manifest read from the checked bytes.
    pub entry: Entry,
    /// The SHA-256 of that manifest.
    pub manifest_digest: [u8; 32],
    pub prepared: Arc<Prepared>,
}

impl Host {
    /// Opens the host on `data_dir` (created when missing) under `config`.
    /// `ledger` opens (or creates) the ledger; commands that only read an export, such as
    /// `replay`, leave the data directory's ledger alone.
    pub fn open(
        data_dir: &Path,
        policy: authority::Source,
        ledger: bool,
        config: femtoclaw_config::Config,
    ) -> Result<Self, Failure> {
        let builtins: Vec<Builtin> = femtoclaw_capabilities::ALL
            .iter()
            .map(|c| Builtin {
                manifest: c.manifest,
                component: c.component,
            })
            .collect();
        let catalog = Catalog::open(data_dir, &builtins)?;
        let sandbox = Sandbox::new(SandboxConfig {
            limits: crate::settings::sandbox_limits(&config),
            pool: crate::settings::pool(&config),
            cache: Some(CompileCache {
                dir: cache_dir(data_dir),
                key: crate::records::cache_key(data_dir)?,
            }),
            disabled_cpu_features: config.engine.disabled_cpu_features.clone(),
        })?;
        let (lock, records) = if ledger {
            let lock = crate::lock::DirLock::acquire(data_dir)?;
            let records = Records::open(data_dir, &config.ledger.origin)?;
            (Some(std::sync::Mutex::new(lock)), Some(records))
        } else {
            (None, None)
        };
        Ok(Self {
            data_dir: data_dir.to_owned(),
            catalog,
            sandbox,
            authority: Authority::new(policy)?,
            records,
            kv: std::sync::Mutex::default(),
            kv_order: std::sync::Mutex::default(),
            lock,
            quotas: Quotas::open(data_dir, config.quotas.rules.clone()),
            approvals: Approvals::open(data_dir)?,
            config,
        })
    }

    /// Says in the data directory's lock what this process is doing, for whoever finds the
    /// directory in use (`serving on http://127.0.0.1:8420`).
    pub fn announce(&self, what: &str) -> Result<(), Failure> {
        match &self.lock {
            Some(lock) => lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .describe(what),
            None => Ok(()),
        }
    }

    /// The ledger (opened unless the command said otherwise).
    pub fn records(&self) -> Result<&Records, Failure> {
        self.records
            .as_ref()
            .ok_or_else(|| Failure::new(Code::Other, "this command runs without the ledger"))
    }

    /// The key-value store, opened and brought up to date with the ledger on first use.
    pub fn kv(&self) -> Result<Arc<KvStore>, Failure> {
        let mut kv = self
            .kv
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = kv.as_ref() {
            return Ok(Arc::clone(store));
        }
        let store = Arc::new(kv::open(&self.data_dir, self.records()?)?);
        *kv = Some(Arc::clone(&store));
        Ok(store)
    }

    /// Finds `spec` (`name` or `name@version`), re-checks its digest and prepares it.
    pub fn resolve(&self, spec: &str) -> Result<Resolved, Failure> {
        let loaded = self.catalog.load(&self.catalog.find(spec)?)?;
        let prepared = self.sandbox.prepare(&loaded.bytes)?;
        Ok(Resolved {
            entry: loaded.entry,
            manifest_digest: loaded.manifest_digest,
            prepared,
        })
    }

    /// What `principal` may invoke under the policy in force: every capability that loads
    /// (every version of the one named `only`, when given), in catalog order, with its
    /// functions `principal` may invoke (in export order); one with none is left out. What
    /// `GET /v1/capabilities` and the MCP tool list offer.
    pub fn invocable(
        &self,
        principal: &Principal,
        only: Option<&str>,
    ) -> Result<Vec<(Resolved, Vec<femtoclaw_sandbox::Function>)>, Failure> {
        let policy = self.authority.policy()?;
        let mut offered = Vec::new();
        let entries = self.catalog.list()?.into_iter();
        for entry in entries.filter(|e| only.is_none_or(|name| e.manifest.name == name)) {
            let spec = format!("{}@{}", entry.manifest.name, entry.manifest.version);
            let Ok(resolved) = self.resolve(&spec) else {
                continue; // one that no longer loads is not offered
            };
            let cap = authority::capability_ref(&resolved.entry);
            let functions: Vec<_> = resolved
                .prepared
                .functions
                .iter()
                .filter(|f| {
                    policy
                        .authorize_invoke_function(principal, &cap, Some(&f.name))
                        .allowed
                })
                .cloned()
                .collect();
            if !functions.is_empty() {
                offered.push((resolved, functions));
            }
        }
        Ok(offered)
    }

    /// Runs one invocation for `principal`; `fuel` overrides the manifest's budget (either is
    /// refused over the operator's `max_fuel`, before anything is recorded), and `deadline`
    /// shortens the operator's (`limits.deadline_ms`), never lengthens it.
    ///
    /// The policy decides first whether `principal` may invoke the capability, then whether
    /// every import of the component is granted (manifest ∩ policy): either refusal happens
    /// before any guest code runs, names every missing grant, and is recorded. An invocation
    /// that runs is recorded whole — start, decisions, every host call, trap, end — and the
    /// result is returned only once those entries are durable. A host call that changes the
    /// world is performed only once the entries before it and its intent are durable; the
    /// receipt names the entries appended at the end, [`Outcome::written_ahead`] the others.
    /// `bounds` are the caller's: less fuel or time than the operator allows, and a withdrawal.
    /// An invocation over a quota (`quotas.rules`) is refused, and recorded, once authorized and
    /// before it runs.
    ///
    /// It runs in a `femtoclaw.invoke` span (a child of the caller's current span) and is
    /// counted in the metrics (see [`crate::telemetry`]).
    pub fn invoke(
        &self,
        principal: &Principal,
        resolved: &Resolved,
        function: &str,
        args: &Json,
        bounds: Bounds,
    ) -> Result<Invoked, Failure> {
        let manifest = &resolved.entry.manifest;
        let span = tracing::info_span!(
            "femtoclaw.invoke",
            femtoclaw.capability = %manifest.name,
            femtoclaw.capability.version = %manifest.version,
            femtoclaw.function = function,
            femtoclaw.principal = %principal,
            femtoclaw.invocation = tracing::field::Empty,
            femtoclaw.fuel.budget = tracing::field::Empty,
            femtoclaw.fuel.consumed = tracing::field::Empty,
            femtoclaw.outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let invoked =
            span.in_scope(|| self.invoke_recorded(principal, resolved, function, args, bounds));
        let (outcome, fuel) = match &invoked {
            Ok(invoked) => {
                for call in &invoked.outcome.host_calls {
                    telemetry::host_call(call.interface, decision_of(&call.decisions));
                    for denied in call.decisions.iter().filter(|d| !d.decision.allowed) {
                        telemetry::denied(denied.action.as_str());
                    }
                }
                let outcome = match &invoked.outcome.result {
                    Ok(_) => "ok",
                    Err(failure) => Failure::from(failure).code.name(),
                };
                (outcome, Some(invoked.outcome.fuel_consumed))
            }
            Err(failure) => (failure.code.name(), None),
        };
        telemetry::invoked(&manifest.name, outcome, started.elapsed(), fuel);
        if !span.is_disabled() {
            span.record("femtoclaw.outcome", outcome);
            if let Some(fuel) = fuel {
                span.record("femtoclaw.fuel.consumed", telemetry::int(fuel));
            }
            if outcome != "ok" {
                span.record("otel.status_code", "error");
            }
        }
        invoked
    }

    /// [`Host::invoke`] within its span.
    fn invoke_recorded(
        &self,
        principal: &Principal,
        resolved: &Resolved,
        function: &str,
        args: &Json,
        bounds: Bounds,
    ) -> Result<Invoked, Failure> {
        let Bounds {
            fuel,
            deadline,
            cancel,
            trace_id,
        } = bounds;
        let entry = &resolved.entry;
        let policy = self.authority.policy()?;
        let start = Start {
            trace_id,
            ..self.start(principal, resolved, function, fuel, &policy)?
        };
        let fuel = start.fuel_budget;
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("femtoclaw.invocation", telemetry::int(start.invocation));
            span.record("femtoclaw.fuel.budget", telemetry::int(fuel));
        }
        let cap = authority::capability_ref(entry);
        let name = format!("{}@{}", entry.manifest.name, entry.manifest.version);
        let limits = &self.config.limits;

        let invoke = policy.authorize_invoke_function(principal, &cap, Some(function));
        if !invoke.allowed {
            telemetry::denied("invoke");
            self.records()?
                .append(record::refused(&start, &[("invoke", &name, &invoke)]))?;
            return Err(Failure::new(
                Code::Denied,
                format!("denied: `{principal}` may not invoke `{name}`: {invoke}"),
            ));
        }
        let imports = &resolved.prepared.imports;
        let grant = self.authority.grant(&policy, principal, entry, imports);
        let link = match grant.authorize_link(imports.iter().map(String::as_str)) {
            Ok(link) => link,
            Err(refused) => {
                telemetry::denied("link");
                return Err(self.refuse_link(&start, &name, principal, &refused));
            }
        };
        let operator = limits.deadline;
        let deadline = deadline.map_or(operator, |asked| asked.min(operator));
        let start = if policy.needs_approval(&invoke) {
            self.approved(start, resolved, args, &invoke, deadline)?
        } else {
            start
        };
        let admitted = match self.quotas.admit(principal, &entry.manifest.name, fuel) {
            Ok(admitted) => admitted,
            Err(over) => {
                telemetry::quota_refused("quotas.rules", &principal.to_string());
                self.records()?
                    .append(record::over_limit(&start, &over.message))?;
                return Err(over);
            }
        };

        let context = Context {
            deadline,
            cancel,
            journal: Some(Journal::new(
                start.clone(),
                invoke.clone(),
                self.records()?.sink(),
            )),
            host: HostContext {
                config: authority::config(&self.data_dir, &entry.manifest.name)?,
                http: Egress {
                    secrets: Arc::new(crate::secrets::Store::new(&self.data_dir)),
                    limits: crate::settings::http_limits(&self.config),
                },
                kv: if femtoclaw_sandbox::kv::imported(imports.iter().map(String::as_str)) {
                    Some(self.kv()?)
                } else {
                    None
                },
                preopens: mounts::preopens(&self.data_dir, &entry.manifest.name, &grant.paths())?,
            },
            max_recorded_bytes: limits.max_recorded_bytes,
            ..Context::new(Arc::new(policy.call_checker(
                principal,
                &cap,
                &entry.manifest.requests,
            )))
        };
        let outcome =
            self.sandbox
                .invoke(&resolved.prepared, function, args, fuel, &link, context)?;
        admitted.finish(outcome.fuel_consumed);
        let entries = record::ran(&start, &invoke, &outcome);
        let writes = match &outcome.result {
            Ok(_) => kv_writes(outcome.host_calls.iter().map(CallView::from)),
            Err(_) => Vec::new(),
        };
        // An ending the ledger cannot take is a ledger failure; it still says how the
        // invocation ended (a write-ahead that failed names its call there).
        let unrecorded = |e: Failure| match &outcome.result {
            Err(trap) => Failure::new(
                e.code,
                format!("{}; the invocation ended: {trap}", e.message),
            ),
            Ok(_) => e,
        };
        if writes.is_empty() {
            let receipt = self.records()?.append(entries).map_err(unrecorded)?;
            return Ok(Invoked {
                outcome,
                receipt,
                invocation: start.invocation,
            });
        }
        // Durable first, then applied: the store never holds a write the ledger lacks. Writing
        // invocations append and apply one at a time, so the store applies them in ledger
        // order, as a rebuild does. A failure to apply loses nothing: the next open catches up
        // from the ledger.
        let _in_order = self
            .kv_order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let receipt = self.records()?.append(entries).map_err(unrecorded)?;
        self.kv()?
            .apply(&writes, receipt.tree_size)
            .map_err(|e| Failure::new(Code::Other, e.to_string()))?;
        Ok(Invoked {
            outcome,
            receipt,
            invocation: start.invocation,
        })
    }

    /// The start of an invocation the policy allows only once a person approves the exact call:
    /// `start` spending a live grant of it, or else, the call recorded as pending (asking for an
    /// approval unless an identical call already did), a start under the grant a person gives
    /// within `approvals.wait_ms` (and `deadline`); a denial is exit 7, no decision in time
    /// exit 13 naming the approval.
    fn approved(
        &self,
        start: Start,
        resolved: &Resolved,
        args: &Json,
        invoke: &Decision,
        deadline: Duration,
    ) -> Result<Start, Failure> {
        let values = Sandbox::recorded_args(resolved.prepared.function(&start.function)?, args)?;
        let fingerprint = femtoclaw_ledger::approval_fingerprint(
            &start.principal,
            &start.capability,
            &start.version,
            &start.function,
            &femtoclaw_ledger::args_digest(&values),
        );
        if let Some(id) = self.approvals.spend(&fingerprint, start.invocation)? {
            return Ok(Start {
                approval: Some(id),
                ..start
            });
        }
        let asked = self.approvals.pending_for(&fingerprint);
        let (request, approval) = Approvals::ask(&Ask {
            invocation: start.invocation,
            fingerprint,
            principal: &start.principal,
            capability: &start.capability,
            version: &start.version,
            function: &start.function,
            args,
        });
        let id = asked.unwrap_or(start.invocation);
        let request = asked.is_none().then_some(request);
        self.records()?
            .append(record::pending(&start, invoke, values, request))?;
        if asked.is_none() {
            self.approvals.keep(approval)?;
        }
        let waited = std::time::Instant::now();
        let wait = self.config.approvals.wait.min(deadline);
        loop {
            match self.approvals.state(id) {
                Some(crate::approvals::State::Granted) => {
                    // The pending invocation has ended: the call runs as a new one.
                    let invocation = self.records()?.next_invocation();
                    if let Some(id) = self.approvals.spend(&fingerprint, invocation)? {
                        return Ok(Start {
                            invocation,
                            approval: Some(id),
                            ..start
                        });
                    }
                }
                Some(crate::approvals::State::Denied) => {
                    let denied = self.approvals.get(id)?;
                    return Err(Failure::new(
                        Code::Denied,
                        format!(
                            "denied: approval {id} of `{}.{}` was denied by `{}`{}",
                            start.capability,
                            start.function,
                            denied.decided_by.unwrap_or_default(),
                            denied.reason.map(|r| format!(": {r}")).unwrap_or_default()
                        ),
                    ));
                }
                _ => {}
            }
            if waited.elapsed() >= wait {
                let mut pending = Failure::new(
                    Code::Pending,
                    format!(
                        "approval required: `{}` may call `{}@{}.{}` with these arguments only once a person approves it; pending as approval {id} (`femtoclaw-host approval grant {id}`), then call again",
                        start.principal, start.capability, start.version, start.function
                    ),
                );
                pending.approval = Some(id);
                return Err(pending);
            }
            std::thread::sleep(
                Duration::from_millis(50).min(wait.saturating_sub(waited.elapsed())),
            );
        }
    }

    /// What the invocation's start entry says, under `policy` (recorded as the policy in force
    /// first, if it changed); `fuel` is refused over the operator's `max_fuel`.
    fn start(
        &self,
        principal: &Principal,
        resolved: &Resolved,
        function: &str,
        fuel: Option<u64>,
        policy: &femtoclaw_policy::PolicySet,
    ) -> Result<Start, Failure> {
        let entry = &resolved.entry;
        self.records()?
            .note_policy(policy.digest(), &self.authority.source().to_string())?;
        let fuel_budget = authority::fuel_budget(fuel, entry, self.config.limits.max_fuel)?;
        Ok(Start {
            invocation: self.records()?.next_invocation(),
            principal: principal.to_string(),
            groups: principal.groups.clone(),
            capability: entry.manifest.name.clone(),
            version: entry.manifest.version.clone(),
            component_sha256: resolved.prepared.digest,
            manifest_sha256: resolved.manifest_digest,
            engine_digest: self.sandbox.engine_digest(),
            fuel_budget,
            policy_digest: policy.digest(),
            function: function.to_owned(),
            trace_id: None,
            approval: None,
        })
    }

    /// Records an invocation refused before it ran because the server is at one of its limits
    /// (`limit` names it, as the refusal says): a start, a `limit` trap and an end, durable
    /// before the caller is answered.
    pub fn refuse_over_limit(
        &self,
        principal: &Principal,
        resolved: &Resolved,
        function: &str,
        fuel: Option<u64>,
        limit: &str,
    ) -> Result<(), Failure> {
        let policy = self.authority.policy()?;
        let start = self.start(principal, resolved, function, fuel, &policy)?;
        self.records()?
            .append(record::over_limit(&start, limit))
            .map(drop)
    }

    /// Records a refusal to link and names every refused import: exit 7.
    fn refuse_link(
        &self,
        start: &Start,
        name: &str,
        principal: &Principal,
        refused: &[(String, Decision)],
    ) -> Failure {
        let refusals: Vec<(&str, &str, &Decision)> = refused
            .iter()
            .map(|(import, decision)| ("link", import.as_str(), decision))
            .collect();
        if let Err(failure) = self
            .records()
            .and_then(|r| r.append(record::refused(start, &refusals)))
        {
            return failure;
        }
        let named: Vec<String> = refused
            .iter()
            .map(|(import, decision)| format!("`{import}` ({decision})"))
            .collect();
        Failure::new(
            Code::Denied,
            format!(
                "denied: `{name}` imports what is not granted to `{principal}`: {}",
                named.join(", ")
            ),
        )
    }
}

fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache")
}
