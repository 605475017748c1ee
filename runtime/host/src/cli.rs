//! The command line: parsing (clap) and one function per command.

use std::path::PathBuf;

use base64::Engine as _;
use clap::{Parser, Subcommand};
use femtoclaw_ledger::Value;
use femtoclaw_sandbox::LOG_INTERFACE;
use serde_json::{Value as Json, json};

use femtoclaw_ledger::Ledger;

use crate::authority;
use crate::exit::{Code, Failure};
use crate::host::Host;
use crate::kv;

/// The execution authority for agents' tools: runs WebAssembly capabilities under a fuel budget
/// in a deterministic sandbox.
#[derive(Debug, Parser)]
#[command(name = "femtoclaw-host", version, about)]
pub struct Cli {
    /// Where capabilities, the compile cache and (later) the ledger live.
    #[arg(
        long,
        global = true,
        env = "FEMTOCLAW_DATA_DIR",
        default_value = "./femtoclaw-data"
    )]
    pub data_dir: PathBuf,

    /// The policy: a `.cedar` file or a directory of them (default: `<data dir>/policy` if it
    /// exists, else the embedded default policy). Re-read when it changes.
    #[arg(long, global = true, env = "FEMTOCLAW_POLICY")]
    pub policy: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Who is asking.
#[derive(Debug, clap::Args)]
pub struct PrincipalArgs {
    /// The principal: `user:ID`, `agent:ID`, or a bare ID (a user).
    #[arg(long, default_value = "local")]
    pub principal: String,
    /// A group the principal belongs to (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install, list and inspect capabilities.
    #[command(subcommand)]
    Capability(CapabilityCommand),
    /// Check policies and explain decisions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read, verify, export and prove the ledger.
    #[command(subcommand)]
    Log(LogCommand),
    /// Manage the ledger's signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Read the key-value store (a view of the ledger; capabilities write it).
    #[command(subcommand)]
    Kv(KvCommand),
    /// Store secrets capabilities may use (never see): values in, names out.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Verify an exported ledger, then re-execute its invocations offline, answering every
    /// host call from the ledger. Exit 0 identical, 8 integrity, 9 divergence, 10 cannot replay;
    /// an invocation interrupted when recorded (the host stopped, or its deadline passed) is
    /// reported as such and not re-executed.
    Replay {
        /// The exported ledger.
        export: PathBuf,
        /// A verifier key to pin (repeat for rotated keys).
        #[arg(long, required = true)]
        key: Vec<String>,
        /// A directory of components: by recorded sha256, or `<capability>.wasm` to replay the
        /// recording against another build of that capability.
        #[arg(long)]
        components: Option<PathBuf>,
        /// First invocation number.
        #[arg(long)]
        from: Option<u64>,
        /// Last invocation number.
        #[arg(long)]
        to: Option<u64>,
        /// What-if: instead of re-executing, ask this policy (a `.cedar` file or directory)
        /// every recorded decision and list those it would take the other way.
        #[arg(long = "what-if-policy", alias = "policy-what-if")]
        what_if: Option<PathBuf>,
        /// Also write the results as JUnit XML to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Invoke one function of a capability and print its result as JSON.
    Invoke {
        #[command(flatten)]
        who: PrincipalArgs,
        /// `name` or `name@version`.
        capability: String,
        /// The exported function (`greet`, or `<interface>#<function>`).
        function: String,
        /// Arguments: a JSON object keyed by parameter name.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Fuel budget (default: the manifest's).
        #[arg(long)]
        fuel: Option<u64>,
        /// Wall-clock deadline in milliseconds, host calls included (default and most: the
        /// operator's `deadline_ms` in `<data dir>/limits.toml`, 30 s unless set). Exit 11
        /// when it passes.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        deadline_ms: Option<u64>,
        /// Print an object with the result, fuel, captured output and logs.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CapabilityCommand {
    /// Install a component (with its manifest).
    Add {
        /// The component (`.wasm`, wasm32-wasip2).
        component: PathBuf,
        /// Its `capability.toml`; without it the name is the file stem and the version `0.0.0`.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// List the capabilities this host can run.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a capability's functions, parameters, JSON Schemas, imports, and what it requests
    /// versus what the policy grants a principal (JSON).
    Inspect {
        /// `name` or `name@version`.
        capability: String,
        #[command(flatten)]
        who: PrincipalArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print entries.
    Show {
        /// First index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most entries to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint note, byte-exact.
    Checkpoint,
    /// Verify the ledger (or an exported file), read-only: leaves, roots, every checkpoint's
    /// signature by the pinned key in force at its position, consistency, blobs. A torn tail is
    /// reported, never cut. Exit 8 names the first bad position.
    Verify {
        /// A verifier key to pin (`name+hex id+base64`; repeat for rotated keys, as `key show
        /// --all` prints them); default: the keys this host's ledger records.
        #[arg(long)]
        key: Vec<String>,
        /// A checkpoint note seen before (`log checkpoint` output), pinned: the log must hold
        /// it, so one rolled back or forked since fails (exit 8). Repeatable.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// An exported ledger file; default: this host's ledger.
        file: Option<PathBuf>,
    },
    /// Export entries and checkpoints to one self-contained file.
    Export {
        /// Where to write it.
        file: PathBuf,
        /// Include every component the invocations ran, so replay needs this file alone.
        #[arg(long)]
        with_components: bool,
    },
    /// Print an inclusion proof of entry `index` (C2SP tlog-proof, with the entry as `extra`).
    Prove {
        /// The entry's index.
        index: u64,
    },
    /// Check an inclusion proof against a pinned key.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
        /// The verifier key to pin.
        #[arg(long)]
        key: String,
    },
    /// Rebuild the derived index and the key-value store from the segments.
    Reindex,
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// List stored pairs, by namespace and key. Values print as text when they are UTF-8.
    List {
        /// Only this namespace.
        namespace: Option<String>,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Print JSON: one object per pair, values base64.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a signing key: the first one on a fresh data directory, else a rotation
    /// (recorded in the ledger, signed by the old key).
    Generate {
        /// The key name (the note signer name).
        #[arg(long, default_value = femtoclaw_ledger::DEFAULT_ORIGIN)]
        name: String,
    },
    /// Print the verifier key: `<name>+<key id>+<base64 public key>`.
    Show {
        /// Every verifier key of the ledger's history, oldest first, one per line (ready to
        /// pass as repeated `--key` to `log verify` and `replay`).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret; its value is read from stdin (one final line break is dropped) and never
    /// printed.
    Set {
        /// The secret's name, as capabilities and policies refer to it.
        name: String,
    },
    /// List the names of the stored secrets (never their values).
    List,
    /// Remove a secret.
    Remove {
        /// The secret's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file or directory against the schema; list its policies and ids.
    Check {
        /// A `.cedar` file or a directory of them.
        path: PathBuf,
    },
    /// Explain whether a principal may invoke a capability, which imports would link and which
    /// scopes are granted.
    Explain {
        #[command(flatten)]
        who: PrincipalArgs,
        /// `name` or `name@version`.
        #[arg(long)]
        capability: String,
        /// The function to be invoked.
        #[arg(long)]
        function: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Policy(PolicyCommand::Check { path }) = &cli.command {
        return policy_check(path);
    }
    if let Command::Log(LogCommand::VerifyProof { file, key }) = &cli.command {
        return verify_proof(file, key);
    }
    if let Command::Log(LogCommand::Verify {
        key,
        checkpoint,
        file,
    }) = &cli.command
    {
        return verify(&cli.data_dir, file.as_deref(), key, checkpoint);
    }
    if let Command::Secret(command) = &cli.command {
        return secret(&cli.data_dir, command);
    }
    // On a fresh data directory `key generate` makes the first key, not a rotation of one the
    // host would make on opening.
    let first_key = match &cli.command {
        Command::Key(KeyCommand::Generate { name }) => {
            crate::records::Records::first_key(&cli.data_dir, name)?
        }
        _ => false,
    };
    let source = authority::Source::locate(cli.policy.as_deref(), &cli.data_dir);
    let ledger = !matches!(cli.command, Command::Replay { .. } | Command::Policy(_));
    let mut host = Host::open(&cli.data_dir, source, ledger)?;
    match cli.command {
        Command::Policy(PolicyCommand::Check { .. }) | Command::Secret(_) => Ok(()),
        Command::Log(command) => log(&host, command),
        Command::Replay {
            export,
            key,
            components,
            from,
            to,
            what_if,
            junit,
            json,
        } => {
            let options = crate::replay::Options {
                export: &export,
                keys: &key,
                components: components.as_deref(),
                from,
                to,
            };
            if let Some(path) = what_if {
                let policy = authority::Source::Path(path).load()?;
                let changed = crate::replay::what_if(&host, &policy, &options)?;
                if json {
                    print_json(
                        &json!({ "policy_digest": policy.digest_hex(), "changed": changed }),
                    );
                } else {
                    for c in &changed {
                        out(&format!(
                            "invocation {} {} `{}`: {} ({})",
                            c.invocation,
                            c.action,
                            c.resource,
                            c.change,
                            if c.policy_ids.is_empty() {
                                "default deny".to_owned()
                            } else {
                                c.policy_ids.join(", ")
                            }
                        ));
                    }
                    out(&format!("{} decisions would change", changed.len()));
                }
                return Ok(());
            }
            let reports = crate::replay::replay(&host, &options)?;
            if let Some(path) = junit {
                std::fs::write(&path, crate::replay::junit(&reports)).map_err(|e| {
                    Failure::new(Code::Other, format!("--junit `{}`: {e}", path.display()))
                })?;
            }
            crate::replay::finish(&reports, json, out)
        }
        Command::Key(KeyCommand::Generate { name }) => {
            let verifier = if first_key {
                host.records()?.verifier()
            } else {
                host.records_mut()?.rotate(&name)?
            };
            out(&verifier.to_string());
            Ok(())
        }
        Command::Kv(KvCommand::List {
            namespace,
            prefix,
            json,
        }) => kv_list(&host, namespace.as_deref(), &prefix, json),
        Command::Key(KeyCommand::Show { all: false }) => {
            out(&host.records()?.verifier().to_string());
            Ok(())
        }
        Command::Key(KeyCommand::Show { all: true }) => {
            for key in host.records()?.key_history()? {
                out(&key);
            }
            Ok(())
        }
        Command::Policy(PolicyCommand::Explain {
            who,
            capability,
            function,
            json,
        }) => {
            let principal = authority::principal(&who.principal, &who.groups)?;
            let resolved = host.resolve(&capability)?;
            let policy = host.authority.policy()?;
            let explanation = policy.explain_component(
                &principal,
                &authority::capability_ref(&resolved.entry),
                &resolved.entry.manifest.requests,
                resolved.prepared.imports.iter().map(String::as_str),
                function.as_deref(),
            );
            if json {
                print_json(&serde_json::to_value(&explanation).map_err(internal)?);
            } else {
                out(explanation.to_string().trim_end());
            }
            Ok(())
        }
        Command::Capability(CapabilityCommand::Add {
            component,
            manifest,
        }) => {
            let max_fuel = authority::operator_limits(&host.data_dir)?.max_fuel;
            let entry = host
                .catalog
                .add(&component, manifest.as_deref(), max_fuel)?;
            // Compile now, so a component that cannot run is refused at install time.
            host.resolve(&format!(
                "{}@{}",
                entry.manifest.name, entry.manifest.version
            ))?;
            out(&format!(
                "{} {} sha256:{}",
                entry.manifest.name, entry.manifest.version, entry.sha256
            ));
            Ok(())
        }
        Command::Capability(CapabilityCommand::List { json }) => {
            let entries = host.catalog.list()?;
            if json {
                print_json(&serde_json::to_value(&entries).map_err(internal)?);
            } else {
                for e in entries {
                    out(&format!(
                        "{:<16} {:<10} {:<9} sha256:{}  {}",
                        e.manifest.name,
                        e.manifest.version,
                        serde_json::to_value(e.source)
                            .ok()
                            .and_then(|s| s.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        e.sha256,
                        e.manifest.description
                    ));
                }
            }
            Ok(())
        }
        Command::Capability(CapabilityCommand::Inspect { capability, who }) => {
            let principal = authority::principal(&who.principal, &who.groups)?;
            let resolved = host.resolve(&capability)?;
            let policy = host.authority.policy()?;
            let grant = host.authority.grant(
                &policy,
                &principal,
                &resolved.entry,
                &resolved.prepared.imports,
            );
            let functions: Vec<Json> = resolved
                .prepared
                .functions
                .iter()
                .map(|f| {
                    json!({
                        "name": f.name,
                        "params": f.params.iter().map(|(n, t)| json!({
                            "name": n,
                            "type": femtoclaw_sandbox::values::type_name(t),
                        })).collect::<Vec<_>>(),
                        "args_schema": f.args_schema(),
                        "result_schema": f.result_schema(),
                        "unsupported": f.unsupported().map(|u| u.to_string()),
                    })
                })
                .collect();
            let m = &resolved.entry.manifest;
            print_json(&json!({
                "name": m.name,
                "version": m.version,
                "description": m.description,
                "publisher": m.publisher,
                "fuel": m.fuel,
                "sha256": resolved.entry.sha256,
                "source": resolved.entry.source,
                "functions": functions,
                "imports": resolved.prepared.imports,
                "requested": resolved.entry.manifest.requests,
                "granted": {
                    "principal": principal.to_string(),
                    "policy_digest": policy.digest_hex(),
                    "imports": grant.imports,
                    "refused_imports": grant
                        .refused(resolved.prepared.imports.iter().map(String::as_str))
                        .into_iter()
                        .map(|(i, d)| json!({ "import": i, "decision": d }))
                        .collect::<Vec<_>>(),
                    "scopes": grant.scopes,
                    "denied_scopes": grant.denied_scopes.iter().map(|(a, s, d)| json!({
                        "action": a.as_str(), "scope": s, "decision": d,
                    })).collect::<Vec<_>>(),
                },
            }));
            Ok(())
        }
        Command::Invoke {
            who,
            capability,
            function,
            args,
            fuel,
            deadline_ms,
            json,
        } => {
            let args: Json = serde_json::from_str(&args)
                .map_err(|e| Failure::new(Code::InvalidArgs, format!("--args is not JSON: {e}")))?;
            let principal = authority::principal(&who.principal, &who.groups)?;
            let resolved = host.resolve(&capability)?;
            let deadline = deadline_ms.map(std::time::Duration::from_millis);
            let (outcome, receipt) =
                host.invoke(&principal, &resolved, &function, &args, fuel, deadline)?;
            let result = outcome.result.as_ref().map_err(Failure::from)?;
            if json {
                print_json(&json!({
                    "capability": resolved.entry.manifest.name,
                    "version": resolved.entry.manifest.version,
                    "sha256": resolved.entry.sha256,
                    "function": function,
                    "result": result,
                    "fuel": { "budget": outcome.fuel_budget, "consumed": outcome.fuel_consumed },
                    "stdout": String::from_utf8_lossy(&outcome.stdout),
                    "stderr": String::from_utf8_lossy(&outcome.stderr),
                    "output_truncated": outcome.output_truncated,
                    "logs": logs(&outcome.host_calls),
                    "host_calls": outcome.host_calls.len(),
                    "receipt": {
                        "indexes": outcome
                            .written_ahead
                            .iter()
                            .copied()
                            .chain(receipt.indexes())
                            .collect::<Vec<_>>(),
                        "tree_size": receipt.tree_size,
                        "root": hex::encode(receipt.root),
                    },
                }));
            } else {
                out(&result.to_string());
            }
            Ok(())
        }
    }
}

/// The `secret` commands: they touch only `<data dir>/secrets`.
fn secret(data_dir: &std::path::Path, command: &SecretCommand) -> Result<(), Failure> {
    let store = crate::secrets::Store::new(data_dir);
    match command {
        SecretCommand::Set { name } => {
            let value = crate::secrets::read_value(std::io::stdin().lock())?;
            store.set(name, &value)?;
            out(&format!("secret `{name}` stored"));
        }
        SecretCommand::List => {
            for name in store.list()? {
                out(&name);
            }
        }
        SecretCommand::Remove { name } => {
            store.remove(name)?;
            out(&format!("secret `{name}` removed"));
        }
    }
    Ok(())
}

/// `log verify`, read-only: exit 8 (integrity) names the first bad position. Without `--key`
/// it pins the keys this host's ledger records, each in force from the key change naming it.
fn verify(
    data_dir: &std::path::Path,
    file: Option<&std::path::Path>,
    keys: &[String],
    checkpoints: &[PathBuf],
) -> Result<(), Failure> {
    let ledger_dir = crate::records::ledger_dir(data_dir);
    let has_ledger = ledger_dir.join("segments").is_dir();
    if file.is_none() && !has_ledger {
        return Err(Failure::new(
            Code::Other,
            format!("there is no ledger in `{}` yet", ledger_dir.display()),
        ));
    }
    let recorded;
    let keys = if keys.is_empty() && has_ledger {
        recorded =
            femtoclaw_ledger::recorded_keys(&ledger_dir).map_err(crate::records::integrity)?;
        recorded.as_slice()
    } else {
        keys
    };
    if keys.is_empty() {
        return Err(Failure::new(
            Code::InvalidArgs,
            "no key to verify with: pass --key (this host's ledger records none)",
        ));
    }
    let mut options = crate::records::pinned(keys)?;
    for path in checkpoints {
        let note = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                Code::InvalidArgs,
                format!("--checkpoint `{}`: {e}", path.display()),
            )
        })?;
        options.checkpoints.push(note);
    }
    // The host's own record of its latest checkpoint is pinned last, so that a ledger rolled
    // back behind it fails here too.
    let head = crate::records::head_record(data_dir);
    if file.is_none()
        && let Ok(note) = std::fs::read_to_string(&head)
    {
        options.checkpoints.push(note);
    }
    let integrity = crate::records::integrity;
    let report = match file {
        Some(file) => femtoclaw_ledger::verify_export_file(file, &options).map_err(integrity)?,
        None => femtoclaw_ledger::verify_dir(&ledger_dir, &options).map_err(integrity)?,
    };
    out(&format!(
        "ok: {} entries, {} checkpoints verified",
        report.entries, report.checkpoints
    ));
    if file.is_none() {
        let blobs = femtoclaw_ledger::verify_dir_blobs(&ledger_dir).map_err(integrity)?;
        out(&format!("ok: {blobs} blobs match their digests"));
    }
    if report.torn_tail_bytes > 0 {
        out(&format!(
            "note: the last segment ends in {} bytes never acknowledged ({} complete entries after the last commit), not verified and left as they are; the host cuts them when it next opens the ledger",
            report.torn_tail_bytes, report.uncommitted_entries
        ));
    }
    Ok(())
}

/// `log verify-proof`.
fn verify_proof(file: &std::path::Path, key: &str) -> Result<(), Failure> {
    let key = femtoclaw_ledger::VerifierKey::parse(key)
        .map_err(|e| Failure::new(Code::InvalidArgs, format!("--key: {e}")))?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(Code::InvalidArgs, format!("{}: {e}", file.display())))?;
    let proof = femtoclaw_ledger::verify_proof(&text, &key)
        .map_err(|e| Failure::new(Code::Integrity, format!("proof verification failed: {e}")))?;
    out(&format!(
        "ok: entry {} is in the tree of size {}",
        proof.index, proof.checkpoint.size
    ));
    Ok(())
}

/// The `log` commands that read this host's ledger.
fn log(host: &Host, command: LogCommand) -> Result<(), Failure> {
    let failed =
        |e: femtoclaw_ledger::LedgerError| Failure::new(Code::Other, format!("ledger: {e}"));
    match command {
        LogCommand::Show { from, limit, json } => {
            let entries = host
                .records()?
                .with_ledger(|l| l.iter(from, limit))
                .map_err(failed)?;
            for (index, entry) in entries {
                let value = serde_json::to_value(&entry).map_err(internal)?;
                if json {
                    out(&json!({ "index": index, "entry": value }).to_string());
                } else {
                    out(&format!(
                        "{index:>6}  {}",
                        terminal_safe(&value.to_string())
                    ));
                }
            }
            Ok(())
        }
        LogCommand::Checkpoint => {
            let note = host
                .records()?
                .with_ledger(|l| l.latest_checkpoint().map(str::to_owned));
            let note =
                note.ok_or_else(|| Failure::new(Code::Other, "the ledger has no checkpoint yet"))?;
            use std::io::Write as _;
            let _ = std::io::stdout().lock().write_all(note.as_bytes());
            Ok(())
        }
        // Run before the host opens (see `run`), so that verification writes nothing.
        LogCommand::Verify {
            key,
            checkpoint,
            file,
        } => verify(host.data_dir(), file.as_deref(), &key, &checkpoint),
        LogCommand::Export {
            file,
            with_components,
        } => {
            if with_components {
                crate::replay::export_with_components(host, &file)?;
            } else {
                host.records()?
                    .with_ledger(|l| l.export(&file))
                    .map_err(failed)?;
            }
            out(&format!("exported to {}", file.display()));
            Ok(())
        }
        LogCommand::Prove { index } => {
            let proof = host
                .records()?
                .with_ledger(|l| l.prove(index))
                .map_err(failed)?;
            use std::io::Write as _;
            let _ = std::io::stdout().lock().write_all(proof.as_bytes());
            Ok(())
        }
        LogCommand::Reindex => {
            let n = host
                .records()?
                .with_ledger(Ledger::reindex)
                .map_err(failed)?;
            let pairs = kv::rebuild(&*host.kv()?, host.records()?)?;
            out(&format!(
                "reindexed {n} entries; the key-value store holds {pairs} pairs"
            ));
            Ok(())
        }
        LogCommand::VerifyProof { file, key } => verify_proof(&file, &key),
    }
}

/// `kv list`: the stored pairs, filtered.
fn kv_list(host: &Host, namespace: Option<&str>, prefix: &str, json: bool) -> Result<(), Failure> {
    let pairs = kv::pairs(&*host.kv()?)?;
    let selected = pairs
        .iter()
        .filter(|p| namespace.is_none_or(|n| p.namespace == n) && p.key.starts_with(prefix));
    for pair in selected {
        if json {
            out(&json!({
                "namespace": pair.namespace,
                "key": pair.key,
                "value": base64::engine::general_purpose::STANDARD.encode(&pair.value),
            })
            .to_string());
        } else {
            let value = std::str::from_utf8(&pair.value).map_or_else(
                |_| format!("<{} bytes>", pair.value.len()),
                |text| format!("{text:?}"),
            );
            // Guest-written names are shown escaped: no control character reaches the terminal.
            out(&format!(
                "{}/{} = {value}",
                pair.namespace.escape_debug(),
                pair.key.escape_debug()
            ));
        }
    }
    Ok(())
}

/// `policy check`: validate, then list every policy with its id, effect and place.
fn policy_check(path: &std::path::Path) -> Result<(), Failure> {
    let policy = authority::Source::Path(path.to_owned()).load()?;
    for p in policy.policies() {
        out(&format!(
            "{:<40} {:<7} {}:{}",
            p.id,
            format!("{:?}", p.effect).to_lowercase(),
            p.file,
            p.line
        ));
    }
    for warning in policy.warnings() {
        eprintln!("warning: {warning}");
    }
    out(&format!(
        "{} policies, digest {}",
        policy.policies().len(),
        policy.digest_hex()
    ));
    Ok(())
}

/// The log lines among the host calls.
fn logs(calls: &[femtoclaw_sandbox::HostCall]) -> Vec<Json> {
    calls
        .iter()
        .filter(|c| c.interface == LOG_INTERFACE)
        .filter_map(|c| match &c.params {
            Value::Tuple(p) => match p.as_slice() {
                [Value::Enum(level), Value::String(message)] => {
                    Some(json!({ "level": level, "message": message }))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// JSON text with every character a terminal could act on escaped (`\uXXXX`, still valid
/// JSON): JSON escapes the C0 controls, not DEL, the C1 controls (`U+009B` starts an escape
/// sequence on some terminals) or the bidirectional overrides that reorder what is shown.
fn terminal_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn print_json(value: &Json) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out(&text),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Prints one line on stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::new(Code::Other, e)
}
