//! `femtoclaw-host replay`: verify an exported ledger, then re-execute every recorded
//! invocation offline against the recorded component, answering every host call from the
//! ledger, and report the first divergence of each.
//!
//! Exit codes: 0 identical, 8 integrity (the export does not verify), 9 divergence, 10 cannot
//! replay (a missing component, another wasmtime version or engine configuration). An
//! invocation interrupted when recorded (the host stopped during it, or its deadline passed) is
//! reported as `interrupted` and not re-executed: it changes no exit code.

use std::collections::BTreeMap;
use std::path::Path;

use femtoclaw_ledger::Entry;
use femtoclaw_sandbox::catalog::sha256;
use femtoclaw_sandbox::replay::{Divergence, Recorded, RecordedCall};
use femtoclaw_sandbox::{Sandbox, engine, record};
use serde::Serialize;
use serde_json::Value as Json;

use crate::exit::{Code, Failure};
use crate::host::Host;

/// One invocation as the ledger holds it.
#[derive(Debug, Default)]
struct Invocation {
    start: Option<Entry>,
    ran: bool,
    refused: bool,
    recorded: Recorded,
}

/// What `replay` reports for one invocation.
#[derive(Debug, Serialize)]
pub struct Report {
    pub invocation: u64,
    pub capability: String,
    pub function: String,
    /// `identical`, `divergent`, `refused` (refused by policy when recorded: nothing ran) or
    /// `interrupted` (the host stopped during it, or its deadline passed: an ending from
    /// outside the component, not re-executed).
    pub status: &'static str,
    /// The component replayed, when it is not the recorded one (`--components`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    /// The last host calls that matched before the divergence (at most three).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub last_matching: Vec<String>,
}

/// Options of one replay.
pub struct Options<'a> {
    pub export: &'a Path,
    pub keys: &'a [String],
    pub components: Option<&'a Path>,
    pub from: Option<u64>,
    pub to: Option<u64>,
}

/// A recorded decision that another policy would take the other way.
#[derive(Debug, Serialize)]
pub struct ChangedDecision {
    pub invocation: u64,
    pub action: String,
    pub resource: String,
    /// `allow→deny` or `deny→allow`; for a call that ran without a person's approval,
    /// `allow→approval` (the policy would now require one); for a call that waited for one,
    /// `approval→allow` or `approval→deny`.
    pub change: &'static str,
    /// The policies that determine the new decision.
    pub policy_ids: Vec<String>,
}

/// What-if: every recorded decision re-asked of `policy`, and those that would change.
///
/// The principal with its groups, the capability, resource and function come from the ledger;
/// the publisher and the manifest's requests from the capability installed here with the
/// recorded digest (a capability not installed here is asked about with no publisher and no
/// requests).
pub fn what_if(
    host: &Host,
    policy: &femtoclaw_policy::PolicySet,
    options: &Options<'_>,
) -> Result<Vec<ChangedDecision>, Failure> {
    use femtoclaw_policy::{CallAction, CapabilityRef, Principal, Requests, Scope};
    let entries = verified_entries(options)?.0;
    let installed: BTreeMap<String, femtoclaw_sandbox::catalog::Manifest> = host
        .catalog
        .list()?
        .into_iter()
        .map(|e| (e.sha256, e.manifest))
        .collect();
    let mut starts: BTreeMap<u64, (Principal, CapabilityRef, Requests, String)> = BTreeMap::new();
    let mut changed = Vec::new();
    // The invocations a person's approval was asked for (pending) or spent by.
    let approved: std::collections::BTreeSet<u64> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::InvocationStart {
                invocation,
                approval: Some(_),
                ..
            } => Some(*invocation),
            Entry::Decision {
                invocation, action, ..
            } if action == record::APPROVAL => Some(*invocation),
            _ => None,
        })
        .collect();
    for entry in entries {
        match entry {
            Entry::InvocationStart {
                invocation,
                principal,
                groups,
                capability,
                version,
                component_sha256,
                function,
                ..
            } => {
                let digest = hex::encode(component_sha256);
                let manifest = installed.get(&digest);
                let cap = CapabilityRef::new(
                    capability,
                    version,
                    digest.clone(),
                    manifest.map(|m| m.publisher.clone()).unwrap_or_default(),
                );
                let requests = manifest.map(|m| m.requests.clone()).unwrap_or_default();
                starts.insert(
                    invocation,
                    (
                        parse_principal(&principal, groups)?,
                        cap,
                        requests,
                        function,
                    ),
                );
            }
            Entry::Decision {
                invocation,
                action,
                resource,
                allowed,
                ..
            } => {
                if options.from.is_some_and(|f| invocation < f)
                    || options.to.is_some_and(|t| invocation > t)
                {
                    continue;
                }
                let Some((principal, cap, requests, function)) = starts.get(&invocation) else {
                    continue;
                };
                let now = match action.as_str() {
                    "invoke" | record::APPROVAL => {
                        policy.authorize_invoke_function(principal, cap, Some(function))
                    }
                    "link" => policy.check_link(principal, cap, requests, &resource),
                    other => {
                        let action: CallAction = other.parse().map_err(|e| {
                            Failure::new(Code::Integrity, format!("recorded action `{other}`: {e}"))
                        })?;
                        let scope = Scope::parse(action, &resource).map_err(|e| {
                            Failure::new(
                                Code::Integrity,
                                format!("recorded scope `{resource}`: {e}"),
                            )
                        })?;
                        policy.check_call(principal, cap, requests, action, &scope)
                    }
                };
                let needs = policy.needs_approval(&now);
                let change = match action.as_str() {
                    record::APPROVAL if !now.allowed => Some("approval→deny"),
                    record::APPROVAL if !needs => Some("approval→allow"),
                    record::APPROVAL => None,
                    "invoke" if allowed && needs && !approved.contains(&invocation) => {
                        Some("allow→approval")
                    }
                    _ => None,
                };
                if let Some(change) = change {
                    changed.push(ChangedDecision {
                        invocation,
                        action,
                        resource,
                        change,
                        policy_ids: now.policy_ids,
                    });
                } else if action != record::APPROVAL && now.allowed != allowed {
                    changed.push(ChangedDecision {
                        invocation,
                        action,
                        resource,
                        change: if allowed {
                            "allow→deny"
                        } else {
                            "deny→allow"
                        },
                        policy_ids: now.policy_ids,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(changed)
}

/// `FemtoClaw::User::"local"` and its groups (as recorded) → the principal.
fn parse_principal(
    text: &str,
    groups: Vec<String>,
) -> Result<femtoclaw_policy::Principal, Failure> {
    let parsed = text
        .strip_prefix("FemtoClaw::")
        .and_then(|rest| rest.split_once("::"))
        .and_then(|(kind, id)| Some((kind, id.strip_prefix('"')?.strip_suffix('"')?)));
    let principal = match parsed {
        Some(("User", id)) => femtoclaw_policy::Principal::user(id),
        Some(("Agent", id)) => femtoclaw_policy::Principal::agent(id),
        _ => {
            return Err(Failure::new(
                Code::Integrity,
                format!("recorded principal `{text}` is not one this host writes"),
            ));
        }
    };
    Ok(groups.into_iter().fold(principal, |p, g| p.with_group(g)))
}

/// Reads and verifies the export; its entries and components.
fn verified_entries(options: &Options<'_>) -> Result<(Vec<Entry>, Vec<Component>), Failure> {
    let bytes = std::fs::read(options.export).map_err(|e| {
        Failure::new(
            Code::InvalidArgs,
            format!("{}: {e}", options.export.display()),
        )
    })?;
    femtoclaw_ledger::verify_export(&bytes, &crate::records::pinned(options.keys)?)
        .map_err(crate::records::integrity)?;
    let export = femtoclaw_ledger::parse_export(&bytes).map_err(crate::records::integrity)?;
    let mut entries = export
        .entries
        .iter()
        .map(|b| Entry::decode(b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Failure::new(
                Code::Integrity,
                format!("ledger entry does not decode: {e}"),
            )
        })?;
    // Large recorded bytes travel beside the entries, by digest (verified above).
    for (index, entry) in entries.iter_mut().enumerate() {
        entry
            .internalize(&mut |sha| export.blob(sha).map(<[u8]>::to_vec))
            .map_err(|sha| {
                Failure::new(
                    Code::CannotReplay,
                    format!(
                        "entry {index} refers to blob {} which the export does not carry",
                        hex::encode(sha)
                    ),
                )
            })?;
    }
    let components = export
        .components
        .iter()
        .map(|(h, b)| (*h, b.to_vec()))
        .collect();
    Ok((entries, components))
}

fn group(entries: Vec<Entry>) -> BTreeMap<u64, Invocation> {
    let mut all: BTreeMap<u64, Invocation> = BTreeMap::new();
    for entry in entries {
        let Some(n) = entry.invocation() else {
            continue;
        };
        let inv = all.entry(n).or_default();
        match entry {
            Entry::InvocationStart { .. } => inv.start = Some(entry),
            Entry::Decision {
                ref action,
                allowed,
                ..
            } => {
                if action == "invoke" && allowed {
                    inv.ran = true;
                }
                if (action == "invoke" || action == "link" || action == record::APPROVAL)
                    && !allowed
                {
                    inv.refused = true;
                }
            }
            Entry::HostCall {
                interface,
                function,
                params,
                result,
                fuel_remaining,
                ..
            } => inv.recorded.calls.push(RecordedCall {
                interface,
                function,
                params,
                result,
                fuel_remaining,
            }),
            Entry::Trap { kind, message, .. } => inv.recorded.trap = Some((kind, message)),
            Entry::InvocationEnd {
                result,
                fuel_consumed,
                stdout,
                stderr,
                ..
            } => {
                inv.recorded.result = result;
                inv.recorded.fuel_consumed = fuel_consumed;
                inv.recorded.stdout = stdout;
                inv.recorded.stderr = stderr;
            }
            _ => {}
        }
    }
    all
}

/// Where replay finds components: `--components`, then the export, then the host's catalog.
struct Components {
    by_sha: BTreeMap<[u8; 32], Vec<u8>>,
    by_name: BTreeMap<String, Vec<u8>>,
}

impl Components {
    fn gather(
        host: &Host,
        dir: Option<&Path>,
        exported: &[([u8; 32], &[u8])],
    ) -> Result<Self, Failure> {
        let mut by_sha = BTreeMap::new();
        for entry in host.catalog.list()? {
            if let Ok(loaded) = host.catalog.load(&entry) {
                by_sha.insert(loaded.digest, loaded.bytes);
            }
        }
        for (sha, bytes) in exported {
            by_sha.insert(*sha, bytes.to_vec());
        }
        let mut by_name = BTreeMap::new();
        if let Some(dir) = dir {
            let files = std::fs::read_dir(dir)
                .map_err(|e| Failure::new(Code::InvalidArgs, format!("{}: {e}", dir.display())))?;
            // Every file is found by its digest, whatever its name; `<capability>.wasm` also
            // stands in for that capability's recorded component (and is reported as replaced
            // when its bytes differ).
            for file in files.flatten().map(|f| f.path()).filter(|f| f.is_file()) {
                let bytes = std::fs::read(&file).map_err(|e| {
                    Failure::new(Code::InvalidArgs, format!("{}: {e}", file.display()))
                })?;
                if file.extension().is_some_and(|e| e == "wasm")
                    && let Some(stem) = file.file_stem().and_then(|s| s.to_str())
                {
                    by_name.insert(stem.to_owned(), bytes.clone());
                }
                by_sha.insert(sha256(&bytes), bytes);
            }
        }
        Ok(Self { by_sha, by_name })
    }

    /// The recorded component, or `--components/<capability>.wasm` standing in for it.
    fn find(&self, sha: &[u8; 32], capability: &str) -> Option<(&[u8], bool)> {
        match self.by_name.get(capability) {
            Some(bytes) if sha256(bytes) != *sha => Some((bytes, true)),
            _ => self.by_sha.get(sha).map(|b| (b.as_slice(), false)),
        }
    }
}

fn cannot(message: String) -> Failure {
    Failure::new(Code::CannotReplay, format!("cannot replay: {message}"))
}

/// Verifies the export, then replays every invocation in range.
pub fn replay(host: &Host, options: &Options<'_>) -> Result<Vec<Report>, Failure> {
    let (entries, exported) = verified_entries(options)?;
    let exported: Vec<([u8; 32], &[u8])> =
        exported.iter().map(|(h, b)| (*h, b.as_slice())).collect();
    let components = Components::gather(host, options.components, &exported)?;
    let sandbox: &Sandbox = &host.sandbox;

    let mut reports = Vec::new();
    for (n, inv) in group(entries) {
        if options.from.is_some_and(|f| n < f) || options.to.is_some_and(|t| n > t) {
            continue;
        }
        let Some(Entry::InvocationStart {
            capability,
            component_sha256,
            engine_digest,
            wasmtime_version,
            fuel_budget,
            function,
            args,
            ..
        }) = inv.start
        else {
            continue;
        };
        let mut report = Report {
            invocation: n,
            capability: capability.clone(),
            function: function.clone(),
            status: "refused",
            replaced_component: None,
            divergence: None,
            last_matching: Vec::new(),
        };
        if inv.refused || !inv.ran {
            reports.push(report);
            continue;
        }
        if inv.recorded.interrupted() {
            report.status = "interrupted";
            reports.push(report);
            continue;
        }
        if wasmtime_version != engine::WASMTIME_VERSION {
            return Err(cannot(format!(
                "invocation {n} was recorded with wasmtime {wasmtime_version}; this host runs {}",
                engine::WASMTIME_VERSION
            )));
        }
        if engine_digest != sandbox.engine_digest() {
            return Err(cannot(format!(
                "invocation {n} was recorded with engine configuration {}; this host's is {}",
                hex::encode(engine_digest),
                hex::encode(sandbox.engine_digest())
            )));
        }
        let (bytes, replaced) = components.find(&component_sha256, &capability).ok_or_else(|| {
            cannot(format!(
                "component of `{capability}` (sha256 {}) for invocation {n} is not in the export, \
                 --components or this host",
                hex::encode(component_sha256)
            ))
        })?;
        if replaced {
            report.replaced_component = Some(hex::encode(sha256(bytes)));
        }
        let prepared = sandbox.prepare(bytes).map_err(|e| cannot(e.to_string()))?;
        let (outcome, divergence) = sandbox
            .replay(&prepared, &function, &args, fuel_budget, &inv.recorded)
            .map_err(|e| cannot(format!("invocation {n}: {e}")))?;
        if let Some(d) = divergence {
            let matched = match &d {
                Divergence::Order { seq, .. }
                | Divergence::Args { seq, .. }
                | Divergence::Fuel { seq, .. }
                | Divergence::Extra { seq, .. }
                | Divergence::Missing { seq, .. }
                | Divergence::Unanswerable { seq, .. } => *seq,
                Divergence::Trap { .. } | Divergence::Result { .. } => outcome.host_calls.len(),
            };
            report.last_matching = outcome.host_calls[..matched.min(outcome.host_calls.len())]
                .iter()
                .rev()
                .take(3)
                .rev()
                .map(|c| format!("{}#{}", c.interface, c.function))
                .collect();
            report.status = "divergent";
            report.divergence = Some(d);
        } else {
            report.status = "identical";
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Prints the reports and turns them into the exit status.
pub fn finish(reports: &[Report], json: bool, print: impl Fn(&str)) -> Result<(), Failure> {
    let count = |s: &str| reports.iter().filter(|r| r.status == s).count();
    let (identical, divergent, refused, interrupted) = (
        count("identical"),
        count("divergent"),
        count("refused"),
        count("interrupted"),
    );
    if json {
        let value = serde_json::json!({
            "identical": identical,
            "divergent": divergent,
            "refused": refused,
            "interrupted": interrupted,
            "invocations": reports,
        });
        print(&serde_json::to_string_pretty(&value).unwrap_or_else(|_| Json::Null.to_string()));
    } else {
        for r in reports {
            let replaced = r
                .replaced_component
                .as_ref()
                .map(|s| format!(" [component replaced: sha256 {s}]"))
                .unwrap_or_default();
            match &r.divergence {
                Some(d) => print(&format!(
                    "invocation {} {}.{}: {}{replaced}{}",
                    r.invocation,
                    r.capability,
                    r.function,
                    d,
                    if r.last_matching.is_empty() {
                        String::new()
                    } else {
                        format!(" (after {})", r.last_matching.join(", "))
                    }
                )),
                None => print(&format!(
                    "invocation {} {}.{}: {}{replaced}",
                    r.invocation, r.capability, r.function, r.status
                )),
            }
        }
        print(&format!(
            "{identical} identical, {divergent} divergent, {refused} refused, {interrupted} \
             interrupted (the last two not re-executed)"
        ));
    }
    if divergent > 0 {
        return Err(Failure::new(
            Code::Divergence,
            format!(
                "{divergent} of {} replayed invocations diverged",
                identical + divergent
            ),
        ));
    }
    Ok(())
}

/// A component's SHA-256 and bytes, as an export carries it.
type Component = ([u8; 32], Vec<u8>);

/// The reports as a JUnit XML test suite, one test case per invocation, for CI systems that
/// show test results: a divergence is a failure, a refused invocation is skipped.
pub fn junit(reports: &[Report]) -> String {
    fn escape(text: &str) -> String {
        text.chars()
            .map(|c| match c {
                '&' => "&amp;".to_owned(),
                '<' => "&lt;".to_owned(),
                '>' => "&gt;".to_owned(),
                '"' => "&quot;".to_owned(),
                '\'' => "&apos;".to_owned(),
                c if c.is_control() && c != '\n' && c != '\t' => format!("&#x{:x};", u32::from(c)),
                c => c.to_string(),
            })
            .collect()
    }
    let failures = reports.iter().filter(|r| r.status == "divergent").count();
    let skipped = reports
        .iter()
        .filter(|r| r.status == "refused" || r.status == "interrupted")
        .count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"femtoclaw-replay\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">\n",
        reports.len()
    );
    for r in reports {
        let name = escape(&format!(
            "invocation {} {}.{}",
            r.invocation, r.capability, r.function
        ));
        xml.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{name}\"",
            escape(&r.capability)
        ));
        match (&r.divergence, r.status) {
            (Some(d), _) => xml.push_str(&format!(
                ">\n    <failure type=\"{}\" message=\"{}\"/>\n  </testcase>\n",
                d.class(),
                escape(&d.to_string())
            )),
            (None, "refused") => xml.push_str(
                ">\n    <skipped message=\"refused by policy when recorded\"/>\n  </testcase>\n",
            ),
            (None, "interrupted") => xml.push_str(
                ">\n    <skipped message=\"interrupted when recorded\"/>\n  </testcase>\n",
            ),
            (None, _) => xml.push_str("/>\n"),
        }
    }
    xml.push_str("</testsuite>\n");
    xml
}

/// The components an export with `--with-components` carries: each one the entries name.
fn components_of(host: &Host, entries: &[Entry]) -> Result<Vec<Component>, Failure> {
    let mut wanted: Vec<[u8; 32]> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::InvocationStart {
                component_sha256, ..
            } => Some(*component_sha256),
            _ => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let components = Components::gather(host, None, &[])?;
    Ok(wanted
        .into_iter()
        .filter_map(|sha| components.by_sha.get(&sha).map(|b| (sha, b.clone())))
        .collect())
}

/// Writes an export of the host's ledger with the components its invocations ran.
pub fn export_with_components(host: &Host, path: &Path) -> Result<(), Failure> {
    let failed = |e: String| Failure::new(Code::Other, format!("ledger: {e}"));
    let (raw, checkpoints) = host
        .records()?
        .with_ledger(|l| -> Result<_, femtoclaw_ledger::LedgerError> {
            let raw = (0..l.len())
                .map(|i| l.get_bytes(i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((raw, l.checkpoints()?))
        })
        .map_err(|e| failed(e.to_string()))?;
    let entries: Vec<Entry> = raw.iter().filter_map(|b| Entry::decode(b).ok()).collect();
    let components = components_of(host, &entries)?;
    let blobs = host
        .records()?
        .with_ledger(|l| l.blobs_of(&raw))
        .map_err(|e| failed(e.to_string()))?;
    let file =
        std::fs::File::create(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let mut writer = std::io::BufWriter::new(file);
    femtoclaw_ledger::write_export(&mut writer, &raw, &checkpoints, &components, &blobs)
        .map_err(|e| failed(e.to_string()))?;
    let file = writer.into_inner().map_err(|e| failed(e.to_string()))?;
    file.sync_all().map_err(|e| failed(e.to_string()))
}
