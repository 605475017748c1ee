//! The host: the capability catalog (embedded and installed) and the sandbox that runs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use femtoclaw_policy::Principal;
use femtoclaw_sandbox::catalog::{Builtin, Catalog, Entry};
use femtoclaw_sandbox::{Context, Outcome, Prepared, Sandbox, SandboxConfig};
use serde_json::Value as Json;

use crate::authority::{self, Authority};
use crate::exit::{Code, Failure};

/// Everything one `femtoclaw-host` process holds.
pub struct Host {
    pub data_dir: PathBuf,
    pub catalog: Catalog,
    pub sandbox: Sandbox,
    pub authority: Authority,
}

/// A capability resolved and prepared for invocation.
pub struct Resolved {
    pub entry: Entry,
    pub prepared: Arc<Prepared>,
}

impl Host {
    /// Opens the host on `data_dir` (created when missing).
    pub fn open(data_dir: &Path, policy: authority::Source) -> Result<Self, Failure> {
        let builtins: Vec<Builtin> = femtoclaw_capabilities::ALL
            .iter()
            .map(|c| Builtin {
                manifest: c.manifest,
                component: c.component,
            })
            .collect();
        let catalog = Catalog::open(data_dir, &builtins)?;
        let sandbox = Sandbox::new(SandboxConfig {
            cache_dir: Some(cache_dir(data_dir)),
            ..SandboxConfig::default()
        })?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
            catalog,
            sandbox,
            authority: Authority::new(policy)?,
        })
    }

    /// Finds `spec` (`name` or `name@version`), re-checks its digest and prepares it.
    pub fn resolve(&self, spec: &str) -> Result<Resolved, Failure> {
        let entry = self.catalog.find(spec)?;
        let loaded = self.catalog.load(&entry)?;
        let prepared = self.sandbox.prepare(&loaded.bytes)?;
        Ok(Resolved { entry, prepared })
    }

    /// Runs one invocation for `principal`; `fuel` overrides the manifest's budget.
    ///
    /// The policy decides first whether `principal` may invoke the capability, then whether
    /// every import of the component is granted (manifest ∩ policy): either refusal happens
    /// before any guest code runs, and names every missing grant.
    pub fn invoke(
        &self,
        principal: &Principal,
        resolved: &Resolved,
        function: &str,
        args: &Json,
        fuel: Option<u64>,
    ) -> Result<Outcome, Failure> {
        let entry = &resolved.entry;
        let policy = self.authority.policy()?;
        let cap = authority::capability_ref(entry);
        let invoke = policy.authorize_invoke_function(principal, &cap, Some(function));
        if !invoke.allowed {
            return Err(Failure::new(
                Code::Denied,
                format!(
                    "denied: `{principal}` may not invoke `{}@{}`: {invoke}",
                    entry.manifest.name, entry.manifest.version
                ),
            ));
        }
        let imports = &resolved.prepared.imports;
        let refused = self
            .authority
            .grant(&policy, principal, entry, imports)
            .refused(imports.iter().map(String::as_str));
        if !refused.is_empty() {
            let named: Vec<String> = refused
                .iter()
                .map(|(import, decision)| format!("`{import}` ({decision})"))
                .collect();
            return Err(Failure::new(
                Code::Denied,
                format!(
                    "denied: `{}@{}` imports what is not granted to `{principal}`: {}",
                    entry.manifest.name,
                    entry.manifest.version,
                    named.join(", ")
                ),
            ));
        }
        let context = Context {
            authority: Arc::new(policy.call_checker(principal, &cap, &entry.manifest.requests)),
            config: authority::config(&self.data_dir, &entry.manifest.name)?,
        };
        let fuel = fuel.unwrap_or(entry.manifest.fuel);
        Ok(self
            .sandbox
            .invoke(&resolved.prepared, function, args, fuel, context)?)
    }
}

fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache")
}
