//! The host: the capability catalog (embedded and installed) and the sandbox that runs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use femtoclaw_sandbox::catalog::{Builtin, Catalog, Entry};
use femtoclaw_sandbox::{Outcome, Prepared, Sandbox, SandboxConfig};
use serde_json::Value as Json;

use crate::exit::Failure;

/// Everything one `femtoclaw-host` process holds.
pub struct Host {
    pub catalog: Catalog,
    pub sandbox: Sandbox,
}

/// A capability resolved and prepared for invocation.
pub struct Resolved {
    pub entry: Entry,
    pub prepared: Arc<Prepared>,
}

impl Host {
    /// Opens the host on `data_dir` (created when missing).
    pub fn open(data_dir: &Path) -> Result<Self, Failure> {
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
        Ok(Self { catalog, sandbox })
    }

    /// Finds `spec` (`name` or `name@version`), re-checks its digest and prepares it.
    pub fn resolve(&self, spec: &str) -> Result<Resolved, Failure> {
        let entry = self.catalog.find(spec)?;
        let loaded = self.catalog.load(&entry)?;
        let prepared = self.sandbox.prepare(&loaded.bytes)?;
        Ok(Resolved { entry, prepared })
    }

    /// Runs one invocation; `fuel` overrides the manifest's budget.
    pub fn invoke(
        &self,
        resolved: &Resolved,
        function: &str,
        args: &Json,
        fuel: Option<u64>,
    ) -> Result<Outcome, Failure> {
        let fuel = fuel.unwrap_or(resolved.entry.manifest.fuel);
        Ok(self
            .sandbox
            .invoke(&resolved.prepared, function, args, fuel)?)
    }
}

fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache")
}
