//! Exit codes: stable, documented, one per kind of failure.

/// Why the command failed, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Anything else: I/O, a broken data directory, an internal error.
    Other = 1,
    /// The request's arguments are invalid.
    InvalidArgs = 2,
    /// Unknown capability or function.
    Unknown = 3,
    /// The fuel budget ran out.
    FuelExhausted = 4,
    /// The guest trapped.
    Trap = 5,
    /// A limit: memory, table, stack, or the bytes an invocation may record.
    Limit = 6,
    /// The policy denied the invocation or an import the capability needs.
    Denied = 7,
    /// The ledger (or a proof) failed verification: an integrity failure.
    Integrity = 8,
    /// A replayed invocation diverged from its recording.
    Divergence = 9,
    /// A recorded invocation cannot be replayed here (component, wasmtime version, engine).
    CannotReplay = 10,
    /// The invocation ran past its wall-clock deadline.
    Deadline = 11,
    /// A quota or rate limit refused the invocation before it ran; retry later.
    OverQuota = 12,
    /// The policy requires a person's approval of the call, and none is granted yet: the
    /// message names the pending approval's id.
    Pending = 13,
}

impl Code {
    /// The stable name of the class, the `code` of the HTTP API's problem responses.
    pub fn name(self) -> &'static str {
        match self {
            Code::Other => "other",
            Code::InvalidArgs => "bad-arguments",
            Code::Unknown => "unknown",
            Code::FuelExhausted => "fuel-exhausted",
            Code::Trap => "trapped",
            Code::Limit => "limit",
            Code::Denied => "denied",
            Code::Integrity => "integrity",
            Code::Divergence => "divergence",
            Code::CannotReplay => "cannot-replay",
            Code::Deadline => "deadline",
            Code::OverQuota => "over-quota",
            Code::Pending => "approval-pending",
        }
    }

    /// The class named `name` (see [`Code::name`]); of the server's own, `unauthenticated` is a
    /// denial, `too-large` and `busy` bad arguments; an unknown name is none.
    pub fn from_name(name: &str) -> Option<Self> {
        const ALL: [Code; 13] = [
            Code::Other,
            Code::InvalidArgs,
            Code::Unknown,
            Code::FuelExhausted,
            Code::Trap,
            Code::Limit,
            Code::Denied,
            Code::Integrity,
            Code::Divergence,
            Code::CannotReplay,
            Code::Deadline,
            Code::OverQuota,
            Code::Pending,
        ];
        match name {
            "unauthenticated" => Some(Code::Denied),
            "too-large" | "busy" => Some(Code::InvalidArgs),
            name => ALL.into_iter().find(|code| code.name() == name),
        }
    }

    /// The HTTP status of the class: the request's fault (400, 403, 404, 429), the invocation's
    /// outcome (422: it ran and failed), or the host's (500).
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgs => 400,
            Code::Denied => 403,
            Code::Unknown => 404,
            Code::OverQuota => 429,
            Code::Pending => 202,
            Code::FuelExhausted | Code::Trap | Code::Limit | Code::Deadline => 422,
            Code::Other | Code::Integrity | Code::Divergence | Code::CannotReplay => 500,
        }
    }
}

/// A failed command: its exit code and the one line printed on stderr.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: Code,
    /// The message.
    pub message: String,
    /// When to try again, for a refusal that will pass later (a quota).
    pub retry_after: Option<std::time::Duration>,
    /// The pending approval the call waits for ([`Code::Pending`]).
    pub approval: Option<u64>,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: Code, message: impl std::fmt::Display) -> Self {
        Self {
            code,
            message: message.to_string().replace('\n', " "),
            retry_after: None,
            approval: None,
        }
    }

    /// The same failure, saying when to try again.
    pub fn with_retry_after(self, retry_after: Option<std::time::Duration>) -> Self {
        Self {
            retry_after,
            ..self
        }
    }
}

impl From<femtoclaw_sandbox::catalog::CatalogError> for Failure {
    fn from(e: femtoclaw_sandbox::catalog::CatalogError) -> Self {
        use femtoclaw_sandbox::catalog::CatalogError as E;
        let code = match &e {
            E::Unknown(_) => Code::Unknown,
            E::Manifest { .. }
            | E::InvalidName { .. }
            | E::NotAComponent(_)
            | E::TooLarge { .. }
            | E::FuelOverCeiling { .. }
            | E::Reserved(_)
            | E::ReservedPublisher { .. } => Code::InvalidArgs,
            _ => Code::Other,
        };
        Self::new(code, e)
    }
}

impl From<femtoclaw_sandbox::SandboxError> for Failure {
    fn from(e: femtoclaw_sandbox::SandboxError) -> Self {
        let code = match &e {
            // What the host does not provide is refused like an import the policy withholds.
            femtoclaw_sandbox::SandboxError::Unprovided { .. } => Code::Denied,
            femtoclaw_sandbox::SandboxError::CpuFeature { .. } => {
                return Self::new(
                    Code::InvalidArgs,
                    format!(
                        "`{}`: {e}",
                        femtoclaw_config::key::engine::disabled_cpu_features
                    ),
                );
            }
            _ => Code::Other,
        };
        Self::new(code, e)
    }
}

impl From<femtoclaw_sandbox::InvokeError> for Failure {
    fn from(e: femtoclaw_sandbox::InvokeError) -> Self {
        let code = match &e {
            femtoclaw_sandbox::InvokeError::NotGranted { .. } => Code::Denied,
            e if e.is_bad_args() => Code::InvalidArgs,
            _ => Code::Unknown,
        };
        Self::new(code, e)
    }
}

impl From<&femtoclaw_sandbox::Failure> for Failure {
    fn from(f: &femtoclaw_sandbox::Failure) -> Self {
        use femtoclaw_sandbox::Failure as F;
        let code = match f {
            F::FuelExhausted { .. } => Code::FuelExhausted,
            F::Limit(_) => Code::Limit,
            F::Trap { .. } => Code::Trap,
            F::Deadline(_) => Code::Deadline,
            // Only an MCP client withdraws a call, and it no longer waits for the answer: the
            // class is the deadline's, an interruption from outside the component.
            F::Cancelled(_) => Code::Deadline,
        };
        Self::new(code, f)
    }
}
