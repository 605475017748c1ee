//! The FemtoClaw sandbox: the deterministic wasmtime engine, the capability catalog and its
//! compile cache, the linker, the gate every host call passes, and JSON ↔ WIT values.
//!
//! ```no_run
//! use femtoclaw_policy::{CapabilityRef, PolicySet, Principal, Requests};
//! use femtoclaw_sandbox::{Context, Sandbox, SandboxConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let component = std::fs::read("hello.wasm")?;
//! let prepared = sandbox.prepare(&component)?;
//! // The policy decides which imports link; its grant is the only way into `invoke`.
//! let policy = PolicySet::default_policy()?;
//! let cap = CapabilityRef::new("hello", "0.1.0", "", "femtoclaw");
//! let imports = prepared.imports.iter().map(String::as_str);
//! let grant = policy.grant_for_component(&Principal::local(), &cap, &Requests::default(), imports);
//! let link = grant
//!     .authorize_link(prepared.imports.iter().map(String::as_str))
//!     .map_err(|refused| format!("{refused:?}"))?;
//! let args = serde_json::json!({"name": "Ada"});
//! let outcome =
//!     sandbox.invoke(&prepared, "greet", &args, 1_000_000, &link, Context::deny_all()?)?;
//! assert_eq!(outcome.result?, serde_json::json!("Hello, Ada!"));
//! # Ok(())
//! # }
//! ```

pub mod capture;
pub mod catalog;
pub mod engine;
pub mod gate;
mod host;
pub mod record;
pub mod replay;
pub mod scrub;
pub mod state;
pub mod values;
pub mod watchdog;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value as Json};
use sha2::Sha256;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, Type, Val};
use wasmtime::{Engine, Store, Trap};
use watchdog::{Cancelled, DeadlineExceeded};

use femtoclaw_ledger::Value;
use femtoclaw_policy::{CallChecker, CapabilityRef, LinkGrant, PolicySet, Principal, Requests};
pub use gate::{
    Answer, Authorized, Denied, FUEL_PER_RECORDED_BYTE, HostCall, Linked, MAX_RECORDED_BYTES,
};
pub use host::HostContext;
pub use host::config::Config;
pub use host::files::{MAX_READ_BYTES, Preopen};
pub use host::http::{Egress, HttpLimits, NoSecrets, SecretSource, SecretValue};
pub use host::kv::store as kv;
pub use host::log::{INTERFACE as LOG_INTERFACE, Level};
use state::State;
pub use state::{LimitError, Limits};
use values::{UnsupportedType, ValueError};

/// The WIT world capabilities target, with its version.
pub const WIT_WORLD: &str = "femtoclaw:host/capability@0.1.0";

/// Who is invoking, what the call may touch, and the operator's configuration values: the
/// per-invocation inputs of the gate.
#[derive(Debug, Clone)]
pub struct Context {
    /// Answers the gate's call-time questions (policy ∩ manifest, for this principal and
    /// capability).
    pub authority: Arc<CallChecker>,
    /// What the host interfaces get: config values, egress, the key-value store, preopens.
    pub host: HostContext,
    /// The most bytes of host-call parameters and results the invocation may record; past it,
    /// the invocation ends with a limit.
    pub max_recorded_bytes: u64,
    /// The wall-clock time the invocation may take, host calls included (see [`watchdog`]).
    pub deadline: std::time::Duration,
    /// Set by the caller to withdraw the invocation while it runs.
    pub cancel: watchdog::Cancel,
    /// Writes the invocation's entries ahead of every call that changes the world; `None`
    /// when nothing records the invocation.
    pub journal: Option<record::Journal>,
}

impl Context {
    /// A context that asks `authority`, with nothing else: no config values, no key-value
    /// store, no secrets (and the host's default HTTP caps).
    pub fn new(authority: Arc<CallChecker>) -> Self {
        Self {
            authority,
            host: HostContext::default(),
            max_recorded_bytes: gate::MAX_RECORDED_BYTES,
            deadline: watchdog::DEFAULT_DEADLINE,
            cancel: watchdog::Cancel::default(),
            journal: None,
        }
    }

    /// A context in which every scoped call is denied (an empty policy) and no config is set.
    pub fn deny_all() -> Result<Self, femtoclaw_policy::PolicyError> {
        let cap = CapabilityRef::new("unnamed", "0.0.0", "", "");
        Ok(Self::new(Arc::new(PolicySet::empty()?.call_checker(
            &Principal::local(),
            &cap,
            &Requests::default(),
        ))))
    }
}

/// How to build a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Resource limits of every invocation.
    pub limits: Limits,
    /// Where precompiled components are cached; `None` compiles in memory only.
    pub cache: Option<CompileCache>,
    /// CPU features the compiled code leaves unused, as Cranelift ISA flags (`has_avx2`), as
    /// on a CPU without them; see [`engine::build_with`]. Empty: every feature of this CPU.
    pub disabled_cpu_features: Vec<String>,
    /// How many invocations may run at once.
    pub pool: engine::Pool,
}

/// The on-disk compile cache: precompiled code is native code the host runs, so every file is
/// authenticated (HMAC-SHA256 under `key`, a secret of the host's kept apart from the cache)
/// and one that fails is recompiled, never loaded.
#[derive(Clone)]
pub struct CompileCache {
    /// The cache directory.
    pub dir: PathBuf,
    /// The key that authenticates its files.
    pub key: [u8; 32],
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Length of the tag after the serialized code in a cache file.
const CACHE_TAG_BYTES: usize = 32;

/// Errors of preparing a component.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine could not be built.
    #[error("cannot build the engine: {0}")]
    Engine(String),
    /// A CPU feature to leave unused that is not one of this machine's compiler.
    #[error(
        "`{flag}` is not a CPU feature flag of the compiler for {arch} (`has_…`, such as `has_avx2` or `has_lse`)"
    )]
    CpuFeature {
        /// The flag as given.
        flag: String,
        /// The architecture the compiler targets.
        arch: &'static str,
    },
    /// The bytes are not a valid component for this engine.
    #[error("cannot compile component: {0}")]
    Compile(String),
    /// The component imports what the host does not provide at all: every such import.
    #[error("the host does not provide what the component imports: {}", imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "))]
    Unprovided {
        /// Each interface (or `interface#function`) the host does not link.
        imports: Vec<String>,
    },
    /// The component's imports do not fit what the host provides.
    #[error("cannot link component: {0}")]
    Link(String),
    /// The compile cache failed.
    #[error("compile cache `{path}`: {message}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Errors that stop an invocation before any guest code runs.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The link grant does not cover every import of the component.
    #[error("not granted: the component imports {}", imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "))]
    NotGranted {
        /// The imports the grant does not cover.
        imports: Vec<String>,
    },
    /// The component exports no function of that name.
    #[error("unknown function `{function}`; the capability exports: {}", available.join(", "))]
    UnknownFunction {
        /// The name asked for.
        function: String,
        /// What the component exports.
        available: Vec<String>,
    },
    /// The arguments are not a JSON object.
    #[error("arguments must be a JSON object keyed by parameter name, found {0}")]
    ArgsNotObject(String),
    /// An argument names no parameter.
    #[error("function `{function}` has no parameter `{name}`; its parameters are: {}", params.join(", "))]
    UnknownParameter {
        /// The function.
        function: String,
        /// The extra key.
        name: String,
        /// The real parameters.
        params: Vec<String>,
    },
    /// A required parameter is missing.
    #[error("missing argument `{name}` ({ty})")]
    MissingParameter {
        /// The parameter.
        name: String,
        /// Its WIT type.
        ty: String,
    },
    /// An argument does not fit its parameter's type.
    #[error(transparent)]
    BadArgument(#[from] ValueError),
    /// The function's signature contains a type JSON cannot carry.
    #[error(transparent)]
    Unsupported(#[from] UnsupportedType),
    /// The fuel budget is zero.
    #[error("fuel budget must be greater than 0")]
    NoFuel,
}

impl InvokeError {
    /// Whether the error is about the request's arguments (as opposed to naming a function that
    /// does not exist).
    pub fn is_bad_args(&self) -> bool {
        !matches!(
            self,
            InvokeError::UnknownFunction { .. } | InvokeError::NotGranted { .. }
        )
    }
}

/// How a run ended when it did not return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The fuel budget ran out.
    #[error("fuel exhausted: the budget of {budget} was used up")]
    FuelExhausted {
        /// The budget.
        budget: u64,
    },
    /// A memory, table or stack limit, or the invocation's recorded-bytes cap.
    #[error("{0}")]
    Limit(String),
    /// The guest trapped (or a host call it made failed).
    #[error("guest trapped: {code}: {message}")]
    Trap {
        /// The trap code (`unreachable`, `integer divide by zero`, …, or `host` / `exit`).
        code: String,
        /// The full message.
        message: String,
    },
    /// The wall-clock deadline passed: an interruption from outside the component, not a
    /// result replay can reproduce.
    #[error(transparent)]
    Deadline(#[from] DeadlineExceeded),
    /// The caller withdrew the invocation ([`watchdog::Cancel`]): an interruption from outside
    /// the component, like a deadline.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl Failure {
    /// The ledger's name of this kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::FuelExhausted { .. } => "fuel-exhausted",
            Failure::Limit(_) => record::LIMIT,
            Failure::Trap { .. } => "trap",
            Failure::Deadline(_) => record::DEADLINE,
            Failure::Cancelled(_) => record::CANCELLED,
        }
    }
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The function's result as JSON (`null` for a function without results), or how it failed.
    pub result: Result<Json, Failure>,
    /// The result in the ledger's canonical form, when there is one.
    pub result_value: Option<Value>,
    /// The arguments in the ledger's canonical form, by parameter name.
    pub args: Vec<(String, Value)>,
    /// The budget.
    pub fuel_budget: u64,
    /// Fuel used, instantiation included.
    pub fuel_consumed: u64,
    /// Every host call, in order.
    pub host_calls: Vec<HostCall>,
    /// Captured stdout (bounded).
    pub stdout: Vec<u8>,
    /// Captured stderr (bounded).
    pub stderr: Vec<u8>,
    /// Whether output past the bound was dropped.
    pub output_truncated: bool,
    /// Ledger indexes of the entries the journal wrote ahead of effects, in order: the first
    /// ones of the invocation's entries (see [`record`]).
    pub written_ahead: Vec<u64>,
}

/// One exported function and its signature.
#[derive(Debug, Clone)]
pub struct Function {
    /// The name to call it by: `greet` for a world-level export, `<interface>#<function>` for
    /// a function of an exported interface.
    pub name: String,
    index: ComponentExportIndex,
    /// Parameter names and types.
    pub params: Vec<(String, Type)>,
    /// Result type, if any.
    pub result: Option<Type>,
    /// Its doc comment in the capability's WIT, when the component carries it (see [`docs`]).
    pub doc: Option<String>,
}

impl Function {
    /// The JSON Schema of this function's arguments object.
    pub fn args_schema(&self) -> Json {
        let properties: Map<String, Json> = self
            .params
            .iter()
            .map(|(name, ty)| (name.clone(), values::schema(ty)))
            .collect();
        let required: Vec<&str> = self
            .params
            .iter()
            .filter(|(_, ty)| !matches!(ty, Type::Option(_)))
            .map(|(n, _)| n.as_str())
            .collect();
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }

    /// The JSON Schema of this function's result.
    pub fn result_schema(&self) -> Json {
        let mut schema = self
            .result
            .as_ref()
            .map_or(serde_json::json!({ "type": "null" }), values::schema);
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                "$schema".into(),
                "https://json-schema.org/draft/2020-12/schema".into(),
            );
        }
        schema
    }

    /// Why this function cannot be called through JSON, if it cannot.
    pub fn unsupported(&self) -> Option<UnsupportedType> {
        let params = self
            .params
            .iter()
            .find_map(|(n, t)| values::check_supported(t, n).err());
        params.or_else(|| {
            self.result
                .as_ref()
                .and_then(|t| values::check_supported(t, "result").err())
        })
    }
}

/// A compiled, linked component, ready to instantiate.
pub struct Prepared {
    /// SHA-256 of the component bytes.
    pub digest: [u8; 32],
    pre: InstancePre<State>,
    /// Exported functions, in export order.
    pub functions: Vec<Function>,
    /// Imported interfaces (`package:name/interface@version`) that the host must provide:
    /// instances of types only are left out.
    pub imports: Vec<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("digest", &hex::encode(self.digest))
            .field(
                "functions",
                &self.functions.iter().map(|f| &f.name).collect::<Vec<_>>(),
            )
            .field("imports", &self.imports)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The function called `name`.
    pub fn function(&self, name: &str) -> Result<&Function, InvokeError> {
        self.functions
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| InvokeError::UnknownFunction {
                function: name.to_owned(),
                available: self.functions.iter().map(|f| f.name.clone()).collect(),
            })
    }
}

/// The execution engine of `femtoclaw-host`: one per process, shared by every invocation.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<State>,
    /// Every function the linker defines, and how it is answered.
    linked: Vec<Linked>,
    /// Replay authorizes nothing (every answer comes from the ledger): one deny-all context,
    /// built once.
    replay_context: Context,
    limits: Limits,
    engine_digest: engine::EngineDigest,
    cache: Option<CompileCache>,
    prepared: Mutex<HashMap<[u8; 32], Arc<Prepared>>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("engine_digest", &hex::encode(self.engine_digest))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Builds the engine and the linker of every host interface.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        if let Some(flag) = config
            .disabled_cpu_features
            .iter()
            .find(|flag| !engine::is_cpu_feature(flag))
        {
            return Err(SandboxError::CpuFeature {
                flag: flag.clone(),
                arch: std::env::consts::ARCH,
            });
        }
        let (engine, engine_digest) =
            engine::build_with(&config.limits, config.pool, &config.disabled_cpu_features)
                .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        watchdog::start_ticker(&engine)
            .map_err(|e| SandboxError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        let (linker, linked) =
            host::link(&engine).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        Ok(Self {
            engine,
            linker,
            linked,
            replay_context: Context::deny_all()
                .map_err(|e| SandboxError::Engine(format!("replay context: {e}")))?,
            limits: config.limits,
            engine_digest,
            cache: config.cache,
            prepared: Mutex::default(),
        })
    }

    /// The digest of the engine configuration (see [`engine::settings`]).
    pub fn engine_digest(&self) -> [u8; 32] {
        self.engine_digest
    }

    /// Every function a guest can import, and how the host answers it: through the gate, or
    /// as one of the reviewed deterministic functions.
    pub fn linked(&self) -> &[Linked] {
        &self.linked
    }

    /// The key of this engine's compiled code in the compile cache (see [`engine::cache_key`]).
    pub fn cache_key(&self) -> [u8; 32] {
        engine::cache_key(&self.engine, &self.engine_digest)
    }

    /// The limits every invocation runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles (or loads from the cache) and links `bytes`; cached in memory by digest.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Arc<Prepared>, SandboxError> {
        let digest = catalog::sha256(bytes);
        if let Some(p) = self.lock_prepared().get(&digest) {
            return Ok(Arc::clone(p));
        }
        let component = self.compile(bytes, &digest)?;
        let prepared = Arc::new(self.link(component, digest, &docs(bytes))?);
        self.lock_prepared().insert(digest, Arc::clone(&prepared));
        Ok(prepared)
    }

    fn lock_prepared(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Prepared>>> {
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn compile(&self, bytes: &[u8], digest: &[u8; 32]) -> Result<Component, SandboxError> {
        let compile = || {
            Component::new(&self.engine, bytes).map_err(|e| SandboxError::Compile(format!("{e:#}")))
        };
        let Some(cache) = &self.cache else {
            return compile();
        };
        let cache_key = self.cache_key();
        let path = cache.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(digest),
            hex::encode(&cache_key[..8])
        ));
        // The tag covers the code, the component it was compiled from and the engine.
        let tag = |code: &[u8]| -> Result<Hmac<Sha256>, SandboxError> {
            let mut mac = Hmac::<Sha256>::new_from_slice(&cache.key)
                .map_err(|e| SandboxError::Engine(format!("compile cache key: {e}")))?;
            mac.update(digest);
            mac.update(&cache_key);
            mac.update(code);
            Ok(mac)
        };
        // Read, not mapped: a cache file truncated or replaced while the host runs must not
        // fault the process.
        if let Ok(file) = std::fs::read(&path) {
            let split = file.len().checked_sub(CACHE_TAG_BYTES);
            let (code, stored) = file.split_at(split.unwrap_or(0));
            if split.is_some() && tag(code)?.verify_slice(stored).is_ok() {
                // SAFETY: the bytes are what this host serialized for this component and this
                // engine (the tag under the host's key says so); wasmtime checks their header
                // and compatibility hash again before using them.
                match unsafe { Component::deserialize(&self.engine, code) } {
                    Ok(component) => return Ok(component),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "recompiling unusable cache entry: {e:#}");
                    }
                }
            } else {
                tracing::warn!(
                    path = %path.display(),
                    "recompiling a cache entry that fails its authentication"
                );
            }
        }
        let component = compile()?;
        let cache_err = |message: String| SandboxError::Cache {
            path: path.clone(),
            message,
        };
        let mut file = component
            .serialize()
            .map_err(|e| cache_err(format!("{e:#}")))?;
        let stamp = tag(&file)?.finalize().into_bytes();
        file.extend_from_slice(&stamp);
        std::fs::create_dir_all(&cache.dir).map_err(|e| cache_err(e.to_string()))?;
        catalog::write_durably(&path, &file).map_err(|e| cache_err(e.to_string()))?;
        Ok(component)
    }

    fn link(
        &self,
        component: Component,
        digest: [u8; 32],
        docs: &std::collections::BTreeMap<String, String>,
    ) -> Result<Prepared, SandboxError> {
        let ty = component.component_type();
        // Imports the host must provide. An instance of types only (a capability's own type
        // interface, say) needs nothing from the host, so it needs no grant either.
        let imports = ty
            .imports(&self.engine)
            .filter(|(_, item)| match &item.ty {
                ComponentItem::ComponentInstance(instance) => instance
                    .exports(&self.engine)
                    .any(|(_, e)| !matches!(e.ty, ComponentItem::Type(_))),
                _ => true,
            })
            .map(|(name, _)| name.to_owned())
            .collect();
        let mut functions = Vec::new();
        for (name, item) in ty.exports(&self.engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    if let Some(index) = component.get_export_index(None, name) {
                        functions.push(function(name.to_owned(), index, &func));
                    }
                }
                ComponentItem::ComponentInstance(instance) => {
                    let Some(instance_index) = component.get_export_index(None, name) else {
                        continue;
                    };
                    for (fname, fitem) in instance.exports(&self.engine) {
                        if let (ComponentItem::ComponentFunc(func), Some(index)) = (
                            fitem.ty,
                            component.get_export_index(Some(&instance_index), fname),
                        ) {
                            functions.push(function(format!("{name}#{fname}"), index, &func));
                        }
                    }
                }
                _ => {}
            }
        }
        for f in &mut functions {
            f.doc = docs.get(&f.name).cloned();
        }
        let unprovided = self.unprovided(&ty);
        if !unprovided.is_empty() {
            return Err(SandboxError::Unprovided {
                imports: unprovided,
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::Link(format!("{e:#}")))?;
        Ok(Prepared {
            digest,
            pre,
            functions,
            imports,
        })
    }

    /// Every import of a component the host does not provide: an interface it does not link
    /// at a compatible version, or a function of one it does.
    fn unprovided(&self, ty: &wasmtime::component::types::Component) -> Vec<String> {
        let mut missing = Vec::new();
        for (name, item) in ty.imports(&self.engine) {
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                missing.push(name.to_owned());
                continue;
            };
            let provided: Vec<&Linked> = self
                .linked
                .iter()
                .filter(|l| semver_compatible(l.interface, name))
                .collect();
            let functions: Vec<&str> = instance
                .exports(&self.engine)
                .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                .map(|(f, _)| f)
                .collect();
            if provided.is_empty() && !functions.is_empty() {
                missing.push(name.to_owned());
                continue;
            }
            missing.extend(
                functions
                    .into_iter()
                    .filter(|f| !provided.iter().any(|l| l.function == *f))
                    .map(|f| format!("{name}#{f}")),
            );
        }
        missing
    }

    /// Converts JSON arguments to the function's parameters, checking every one.
    pub fn args(function: &Function, args: &Json) -> Result<Vec<Val>, InvokeError> {
        if let Some(unsupported) = function.unsupported() {
            return Err(unsupported.into());
        }
        let empty = Map::new();
        let obj = match args {
            Json::Object(obj) => obj,
            Json::Null => &empty,
            other => return Err(InvokeError::ArgsNotObject(other.to_string())),
        };
        if let Some(extra) = obj
            .keys()
            .find(|k| !function.params.iter().any(|(n, _)| n == *k))
        {
            return Err(InvokeError::UnknownParameter {
                function: function.name.clone(),
                name: extra.clone(),
                params: function.params.iter().map(|(n, _)| n.clone()).collect(),
            });
        }
        function
            .params
            .iter()
            .map(|(name, ty)| match (obj.get(name), ty) {
                (Some(json), ty) => Ok(values::json_to_val(json, ty, name)?),
                (None, Type::Option(_)) => Ok(Val::Option(None)),
                (None, ty) => Err(InvokeError::MissingParameter {
                    name: name.clone(),
                    ty: values::type_name(ty),
                }),
            })
            .collect()
    }

    /// The JSON arguments as the ledger records them (checked as [`Sandbox::args`] checks them):
    /// what an approval's fingerprint digests.
    pub fn recorded_args(
        function: &Function,
        args: &Json,
    ) -> Result<Vec<(String, Value)>, InvokeError> {
        Ok(named_values(function, &Self::args(function, args)?))
    }

    /// Runs `function` of `prepared` with JSON `args` on a fresh store with `fuel`, its imports
    /// linked under `link` (the policy's grant: it must cover every import) and its scoped host
    /// calls authorized by `context`.
    ///
    /// Errors before the run (an import not granted, unknown function, bad arguments) are
    /// `Err`; everything that happens once guest code runs, traps included, is in the
    /// [`Outcome`].
    pub fn invoke(
        &self,
        prepared: &Prepared,
        function: &str,
        args: &Json,
        fuel: u64,
        link: &LinkGrant,
        context: Context,
    ) -> Result<Outcome, InvokeError> {
        let ungranted: Vec<String> = prepared
            .imports
            .iter()
            .filter(|i| !link.covers(i))
            .cloned()
            .collect();
        if !ungranted.is_empty() {
            return Err(InvokeError::NotGranted { imports: ungranted });
        }
        if fuel == 0 {
            return Err(InvokeError::NoFuel);
        }
        let function = prepared.function(function)?;
        let params = Self::args(function, args)?;
        Ok(self
            .run(
                &prepared.pre,
                function,
                params,
                fuel,
                State::new(self.limits, context),
            )
            .0)
    }

    /// Re-runs a recorded invocation of `function` with its recorded `args` and `fuel`,
    /// answering every gated host call from the recording and performing none; then compares
    /// the run with the recording. The divergence is `None` when they are identical.
    pub fn replay(
        &self,
        prepared: &Prepared,
        function: &str,
        args: &[(String, Value)],
        fuel: u64,
        recorded: &replay::Recorded,
    ) -> Result<(Outcome, Option<replay::Divergence>), InvokeError> {
        let function = prepared.function(function)?;
        if let Some(unsupported) = function.unsupported() {
            return Err(unsupported.into());
        }
        let params = function
            .params
            .iter()
            .map(|(name, ty)| {
                let value = args.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                value
                    .and_then(|v| values::value_to_val(v, ty))
                    .ok_or_else(|| InvokeError::MissingParameter {
                        name: name.clone(),
                        ty: values::type_name(ty),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = State::new(self.limits, self.replay_context.clone());
        state.gate.replay = Some(replay::Replay::new(recorded.calls.clone()));
        state.deadline = watchdog::Deadline::none();
        let (outcome, divergence) = self.run(&prepared.pre, function, params, fuel, state);
        let divergence = divergence.or_else(|| recorded.compare(&outcome));
        Ok((outcome, divergence))
    }

    /// One run on a fresh store: the shared core of [`Sandbox::invoke`] and
    /// [`Sandbox::replay`]. A divergence that stopped a replay is returned beside the outcome.
    fn run(
        &self,
        pre: &InstancePre<State>,
        function: &Function,
        params: Vec<Val>,
        fuel: u64,
        mut state: State,
    ) -> (Outcome, Option<replay::Divergence>) {
        let mut args = named_values(function, &params);
        // The journal's start entry needs the arguments; they come back after the run.
        if let Some(journal) = &mut state.gate.journal {
            journal.args = std::mem::take(&mut args);
        }
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            store.data().cancel.check()?;
            store.data().deadline.on_tick()
        });
        store.set_hostcall_fuel(16 << 20);
        let run = store.set_fuel(fuel).and_then(|()| {
            let instance = pre.instantiate(&mut store)?;
            let func = instance
                .get_func(&mut store, function.index)
                .ok_or_else(|| {
                    wasmtime::format_err!("export `{}` is not a function", function.name)
                })?;
            let mut results = vec![Val::Bool(false); usize::from(function.result.is_some())];
            func.call(&mut store, &params, &mut results)?;
            Ok(results.pop())
        });
        let remaining = store.get_fuel().unwrap_or(0);
        let state = store.data_mut();
        // Output is scrubbed of the secrets the invocation used before it is returned or
        // recorded.
        let (stdout, out_cut) = state.stdout.contents();
        let (stderr, err_cut) = state.stderr.contents();
        let stdout = state.gate.secrets.vec(stdout);
        let stderr = state.gate.secrets.vec(stderr);
        let host_calls = state.gate.take_calls();
        let written_ahead = match state.gate.journal.take() {
            Some(journal) => {
                args = journal.args;
                journal.written
            }
            None => Vec::new(),
        };

        let mut divergence = None;
        let (result, result_value) = match (run, &function.result) {
            (Ok(Some(val)), Some(ty)) => (
                Ok(values::val_to_json(&val, ty)),
                Some(values::val_to_value(&val, ty)),
            ),
            (Ok(_), _) => (Ok(Json::Null), None),
            (Err(e), _) => {
                divergence = e.downcast_ref::<replay::Divergence>().cloned();
                (Err(classify(&e, fuel, remaining)), None)
            }
        };
        let outcome = Outcome {
            result,
            result_value,
            args,
            fuel_budget: fuel,
            fuel_consumed: fuel - remaining,
            host_calls,
            stdout,
            stderr,
            output_truncated: out_cut || err_cut,
            written_ahead,
        };
        (outcome, divergence)
    }
}

/// Whether the host's `provided` interface (`package/name@version`) answers an import of
/// `imported`, as wasmtime's linker matches them: the same name, and the same version, or for
/// versions without a pre-release the same major (`1.x`) or the same minor (`0.x`, x > 0).
fn semver_compatible(provided: &str, imported: &str) -> bool {
    fn split(s: &str) -> (&str, Option<&str>) {
        s.split_once('@').map_or((s, None), |(n, v)| (n, Some(v)))
    }
    let ((pn, pv), (in_, iv)) = (split(provided), split(imported));
    if pn != in_ {
        return false;
    }
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?;
        (patch.chars().all(|c| c.is_ascii_digit()) && parts.next().is_none())
            .then_some((major, minor))
    };
    match (pv, iv) {
        (Some(p), Some(i)) if p == i => true,
        (Some(p), Some(i)) => match (parse(p), parse(i)) {
            (Some((0, 0)), _) | (_, Some((0, 0))) => false,
            (Some((0, pm)), Some((0, im))) => pm == im,
            (Some((pmaj, _)), Some((imaj, _))) => pmaj == imaj && pmaj > 0,
            _ => false,
        },
        (None, None) => true,
        _ => false,
    }
}

fn function(
    name: String,
    index: ComponentExportIndex,
    func: &wasmtime::component::types::ComponentFunc,
) -> Function {
    Function {
        name,
        index,
        params: func.params().map(|(n, t)| (n.to_owned(), t)).collect(),
        result: func.results().next(),
        doc: None,
    }
}

/// The custom section in which the SDK keeps the doc comments of a capability's exported
/// functions (`femtoclaw_sdk::docs!`).
pub const DOCS_SECTION: &str = "femtoclaw:docs";

/// The doc comments a component carries, by function name: the `femtoclaw:docs` custom
/// section of any of its core modules, a JSON object of strings. A component without one, or
/// with one that does not read, describes nothing; its functions still run.
pub fn docs(component: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut docs = std::collections::BTreeMap::new();
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let Ok(wasmparser::Payload::CustomSection(section)) = payload else {
            continue;
        };
        if section.name() != DOCS_SECTION {
            continue;
        }
        if let Ok(found) =
            serde_json::from_slice::<std::collections::BTreeMap<String, String>>(section.data())
        {
            docs.extend(found);
        }
    }
    docs
}

/// Sorts an error out of a run into fuel, limit or trap.
fn classify(error: &wasmtime::Error, budget: u64, remaining: u64) -> Failure {
    if let Some(limit) = error.downcast_ref::<LimitError>() {
        return Failure::Limit(limit.to_string());
    }
    if let Some(deadline) = error.downcast_ref::<DeadlineExceeded>() {
        return Failure::Deadline(*deadline);
    }
    if let Some(cancelled) = error.downcast_ref::<Cancelled>() {
        return Failure::Cancelled(*cancelled);
    }
    // More invocations at once than the pool holds: the host's capacity, not the guest's fault.
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return Failure::Limit(format!(
            "the host runs no more invocations at once than its pool holds: {full}"
        ));
    }
    // A host call's fault, as the gate recorded it (or, in replay, answered it).
    if let Some(femtoclaw_ledger::CallFault::Limit(message)) = error.downcast_ref() {
        return Failure::Limit(message.clone());
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Failure::Trap {
            code: "exit".to_owned(),
            message: format!("guest exited with status {}", exit.0),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::FuelExhausted { budget },
        Some(Trap::StackOverflow) => Failure::Limit(format!(
            "stack limit exceeded: the guest overflowed its stack ({error:#})"
        )),
        Some(trap) => Failure::Trap {
            code: trap.to_string(),
            message: format!("{error:#}"),
        },
        None if remaining == 0 => Failure::FuelExhausted { budget },
        None => Failure::Trap {
            code: "host".to_owned(),
            message: format!("{error:#}"),
        },
    }
}

/// The parameters' values by name, as the ledger records them.
fn named_values(function: &Function, params: &[Val]) -> Vec<(String, Value)> {
    function
        .params
        .iter()
        .zip(params)
        .map(|((name, ty), val)| (name.clone(), values::val_to_value(val, ty)))
        .collect()
}
