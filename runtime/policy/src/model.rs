//! The things a decision is about: principals, capabilities, interfaces, call actions and scopes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::RequestsError;

/// Whether a principal is an agent (an automated client) or a user (a person, an operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// An automated client: an LLM loop, a script, an MCP client.
    Agent,
    /// A person; the local operator is the user `local`.
    User,
}

impl PrincipalKind {
    /// The Cedar entity type name, without namespace (`Agent` or `User`).
    pub fn cedar_type(self) -> &'static str {
        match self {
            Self::Agent => "Agent",
            Self::User => "User",
        }
    }
}

/// Who asks: `FemtoClaw::Agent::"<id>"` or `FemtoClaw::User::"<id>"`, member of `FemtoClaw::Group`s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The principal id, e.g. `local`.
    pub id: String,
    /// Agent or user.
    pub kind: PrincipalKind,
    /// Ids of the `FemtoClaw::Group`s the principal belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Principal {
    /// The id of the local operator.
    pub const LOCAL_ID: &'static str = "local";

    /// The local operator, `FemtoClaw::User::"local"`, the CLI's default principal.
    pub fn local() -> Self {
        Self::user(Self::LOCAL_ID)
    }

    /// A user principal with no groups.
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: PrincipalKind::User,
            groups: Vec::new(),
        }
    }

    /// An agent principal with no groups.
    pub fn agent(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: PrincipalKind::Agent,
            groups: Vec::new(),
        }
    }

    /// The same principal, also a member of `group`.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FemtoClaw::{}::{}",
            self.kind.cedar_type(),
            quote_cedar(&self.id)
        )
    }
}

/// A capability as the policy sees it: `FemtoClaw::Capability::"<name>"` with its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapabilityRef {
    /// Capability name; also the Cedar entity id.
    pub name: String,
    /// Capability version, e.g. `0.1.0`.
    pub version: String,
    /// Lowercase hex SHA-256 of the component.
    pub digest: String,
    /// Publisher; [`CapabilityRef::FIRST_PARTY`] for first-party capabilities.
    pub publisher: String,
}

impl CapabilityRef {
    /// The publisher name of first-party capabilities.
    pub const FIRST_PARTY: &'static str = "femtoclaw";

    /// A capability reference from its parts.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        digest: impl Into<String>,
        publisher: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            digest: digest.into(),
            publisher: publisher.into(),
        }
    }
}

impl fmt::Display for CapabilityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A WIT interface name split in its parts: `femtoclaw:host/log@0.1.0` is package
/// `femtoclaw:host`, name `log`, version `0.1.0` (empty when the name carries none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName {
    /// `namespace:package`, e.g. `wasi:clocks`.
    pub package: String,
    /// The interface, e.g. `wall-clock`.
    pub name: String,
    /// The package version, e.g. `0.2.12`; empty if absent.
    pub version: String,
}

impl InterfaceName {
    /// Parse `namespace:package/interface[@version]`.
    pub fn parse(text: &str) -> Result<Self, RequestsError> {
        let malformed = |reason: &str| RequestsError::Import {
            entry: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (path, version) = match text.split_once('@') {
            Some((path, version)) => (path, version),
            None => (text, ""),
        };
        let (package, name) = path
            .split_once('/')
            .ok_or_else(|| malformed("expected `namespace:package/interface@version`"))?;
        let (namespace, pkg) = package
            .split_once(':')
            .ok_or_else(|| malformed("the package has no `namespace:`"))?;
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        };
        if !word(namespace) || !word(pkg) || !word(name) || name.contains(':') {
            return Err(malformed(
                "names may hold only ASCII letters, digits and `-`",
            ));
        }
        if text.contains('@') && (version.is_empty() || version.contains(['@', '/', ' '])) {
            return Err(malformed("the version is malformed"));
        }
        Ok(Self {
            package: package.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.package, self.name)?;
        if !self.version.is_empty() {
            write!(f, "@{}", self.version)?;
        }
        Ok(())
    }
}

impl FromStr for InterfaceName {
    type Err = RequestsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A call action: what a host call does to its [`Scope`]. Its Cedar action is
/// `FemtoClaw::Action::"<as_str>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CallAction {
    /// An outgoing HTTP request to an [`Scope::HttpHost`].
    #[serde(rename = "http.request")]
    HttpRequest,
    /// Reading a [`Scope::KvNamespace`].
    #[serde(rename = "kv.read")]
    KvRead,
    /// Writing a [`Scope::KvNamespace`].
    #[serde(rename = "kv.write")]
    KvWrite,
    /// Reading a [`Scope::Path`].
    #[serde(rename = "fs.read")]
    FsRead,
    /// Writing a [`Scope::Path`].
    #[serde(rename = "fs.write")]
    FsWrite,
    /// Using a [`Scope::Secret`] (the host injects it; the guest never sees it).
    #[serde(rename = "secret.use")]
    SecretUse,
    /// Reading a [`Scope::ConfigKey`].
    #[serde(rename = "config.read")]
    ConfigRead,
    /// Connecting to a non-public [`Scope::Address`] (loopback, private, link-local, metadata,
    /// …) that a granted host resolved to. Decided by the policy alone: no manifest entry asks
    /// for it, since which addresses are reachable is the operator's network, not the
    /// capability's business.
    #[serde(rename = "net.connect")]
    NetConnect,
}

impl CallAction {
    /// Every call action.
    pub const ALL: [Self; 8] = [
        Self::HttpRequest,
        Self::KvRead,
        Self::KvWrite,
        Self::FsRead,
        Self::FsWrite,
        Self::SecretUse,
        Self::ConfigRead,
        Self::NetConnect,
    ];

    /// The Cedar action id, e.g. `kv.read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpRequest => "http.request",
            Self::KvRead => "kv.read",
            Self::KvWrite => "kv.write",
            Self::FsRead => "fs.read",
            Self::FsWrite => "fs.write",
            Self::SecretUse => "secret.use",
            Self::ConfigRead => "config.read",
            Self::NetConnect => "net.connect",
        }
    }

    /// Whether `scope` is the kind of resource this action applies to.
    pub fn fits(self, scope: &Scope) -> bool {
        matches!(
            (self, scope),
            (Self::HttpRequest, Scope::HttpHost { .. })
                | (Self::KvRead | Self::KvWrite, Scope::KvNamespace(_))
                | (Self::FsRead | Self::FsWrite, Scope::Path(_))
                | (Self::SecretUse, Scope::Secret(_))
                | (Self::ConfigRead, Scope::ConfigKey(_))
                | (Self::NetConnect, Scope::Address(_))
        )
    }

    /// Whether the action is decided with the destination of its effect besides its scope:
    /// [`CallAction::SecretUse`] is, with the HTTP origin the secret is sent to (a
    /// [`Scope::HttpHost`], `context.destination` in policies).
    pub fn takes_destination(self) -> bool {
        self == Self::SecretUse
    }

    /// Whether a call needs a manifest entry covering its scope besides the policy's permit.
    /// Every action does except [`CallAction::NetConnect`], which the policy alone decides.
    pub fn needs_request(self) -> bool {
        self != Self::NetConnect
    }
}

impl fmt::Display for CallAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallAction {
    type Err = RequestsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| RequestsError::Action {
                action: s.to_owned(),
            })
    }
}

/// What a host call touches. In a manifest, an [`Scope::HttpHost`] host may be a pattern
/// (`*.example.com`); at call time it is the concrete host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// An HTTP origin: scheme (`http` or `https`), lowercase host, port.
    HttpHost {
        /// `http` or `https`.
        scheme: String,
        /// Lowercase host name or address, e.g. `api.example.com`.
        host: String,
        /// TCP port (the scheme's default when the URL gives none).
        port: u16,
    },
    /// A filesystem path, normalized (`/`-separated, absolute, no `.` or `..`).
    Path(String),
    /// A key-value namespace.
    KvNamespace(String),
    /// A secret name.
    Secret(String),
    /// A configuration key.
    ConfigKey(String),
    /// A network address a call would connect to (only non-public ones are ever decided; see
    /// [`crate::AddressKind`]).
    Address(IpAddr),
}

impl Scope {
    /// The HTTP origin of `url` (`scheme://host[:port][/]`); the host must be concrete.
    pub fn http(url: &str) -> Result<Self, RequestsError> {
        let (scheme, host, port) = parse_http(url, false)?;
        Ok(Self::HttpHost { scheme, host, port })
    }

    /// A normalized path scope; `..` may not climb above the root.
    pub fn path(path: &str) -> Result<Self, RequestsError> {
        normalize_path(path).map(Self::Path)
    }

    /// An address scope from its text (`127.0.0.1`, `::1`).
    pub fn address(text: &str) -> Result<Self, RequestsError> {
        text.parse()
            .map(Self::Address)
            .map_err(|_| RequestsError::Name {
                kind: "address",
                entry: text.to_owned(),
            })
    }

    /// The scope a recorded decision names: `action` with its scope's canonical `text`.
    pub fn parse(action: CallAction, text: &str) -> Result<Self, RequestsError> {
        match action {
            CallAction::HttpRequest => Self::http(text),
            CallAction::FsRead | CallAction::FsWrite => Self::path(text),
            CallAction::KvRead | CallAction::KvWrite => Ok(Self::KvNamespace(text.to_owned())),
            CallAction::SecretUse => Ok(Self::Secret(text.to_owned())),
            CallAction::ConfigRead => Ok(Self::ConfigKey(text.to_owned())),
            CallAction::NetConnect => Self::address(text),
        }
    }

    /// The canonical text of the scope; also its Cedar entity id.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HttpHost { scheme, host, port } => {
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            Self::Path(p) | Self::KvNamespace(p) | Self::Secret(p) | Self::ConfigKey(p) => {
                f.write_str(p)
            }
            Self::Address(ip) => write!(f, "{}", ip.to_canonical()),
        }
    }
}

/// Parse an HTTP origin. With `pattern`, the host may be `*` or start with `*.`.
pub(crate) fn parse_http(
    text: &str,
    pattern: bool,
) -> Result<(String, String, u16), RequestsError> {
    let malformed = |reason: &str| RequestsError::Http {
        entry: text.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| malformed("expected `scheme://host[:port]`"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err(malformed("the scheme must be `http` or `https`")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(malformed(
            "only an origin is allowed: no path, query, fragment or user",
        ));
    }
    let bracketed = rest.starts_with('[');
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (addr, tail) = after
            .split_once(']')
            .ok_or_else(|| malformed("unclosed `[`"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(malformed("malformed IPv6 address"));
        }
        let port = match tail {
            "" => None,
            _ => Some(
                tail.strip_prefix(':')
                    .ok_or_else(|| malformed("expected `:port` after `]`"))?,
            ),
        };
        (addr.to_ascii_lowercase(), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        if host.contains(':') {
            return Err(malformed(
                "a host holds no `:`: an IPv6 address goes in brackets (`[::1]`) and a port is given once",
            ));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(malformed("the port must be a number from 1 to 65535")),
        },
    };
    let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
    if host.is_empty() {
        return Err(malformed("the host is empty"));
    }
    if !bracketed {
        let labels: Vec<&str> = host.split('.').collect();
        for (i, label) in labels.iter().enumerate() {
            let wildcard = pattern && i == 0 && *label == "*";
            let ok = !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !wildcard && !ok {
                return Err(malformed(if label.contains('*') {
                    "a wildcard may only be the whole first label (`*.example.com`)"
                } else {
                    "the host is not a valid name"
                }));
            }
        }
    }
    Ok((scheme, host, port))
}

/// Whether host pattern `pattern` covers the concrete `host`: `*` covers every host,
/// `*.example.com` covers `a.example.com` and `a.b.example.com` but not `example.com`.
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|head| !head.is_empty()),
        None => pattern == host,
    }
}

/// Normalize `path` lexically: `/`-separated, absolute, no empty, `.` or `..` components.
pub(crate) fn normalize_path(path: &str) -> Result<String, RequestsError> {
    let malformed = |reason: &str| RequestsError::Path {
        entry: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(malformed("the path must be absolute"));
    }
    if path.contains(['\0', '\\']) {
        return Err(malformed("the path holds a NUL or a backslash"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(malformed("`..` climbs above the root"));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Whether the requested (normalized) path `base` covers the (normalized) `path`.
pub fn path_covers(base: &str, path: &str) -> bool {
    base == "/"
        || path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Quote `s` as a Cedar string literal.
pub(crate) fn quote_cedar(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_split_in_package_name_and_version() {
        let i = InterfaceName::parse("wasi:clocks/wall-clock@0.2.12").unwrap();
        assert_eq!(i.package, "wasi:clocks");
        assert_eq!(i.name, "wall-clock");
        assert_eq!(i.version, "0.2.12");
        assert_eq!(i.to_string(), "wasi:clocks/wall-clock@0.2.12");
        assert!(InterfaceName::parse("log").is_err());
        assert!(InterfaceName::parse("femtoclaw/log@1").is_err());
        assert!(InterfaceName::parse("a:b/c@").is_err());
    }

    // Verifies: FC-POL-1718
    #[test]
    fn http_origins_parse_with_default_ports() {
        assert_eq!(
            Scope::http("https://API.example.com").unwrap(),
            Scope::HttpHost {
                scheme: "https".into(),
                host: "api.example.com".into(),
                port: 443
            }
        );
        assert_eq!(
            Scope::http("http://localhost:8080/").unwrap().to_string(),
            "http://localhost:8080"
        );
        assert!(Scope::http("https://*.example.com").is_err());
        assert!(parse_http("https://*.example.com:443", true).is_ok());
        assert!(parse_http("https://a.*.com", true).is_err());
        // An IPv6 address only in brackets, a port only once.
        assert!(parse_http("http://[::1]:8080", false).is_ok());
        assert!(parse_http("http://[::ffff:127.0.0.1]", false).is_ok());
        for bad in [
            "http://::1:8080",
            "http://127.0.0.1:9:9",
            "http://a:1:2",
            "http://[1:::::]",
            "http://[::1",
            "http://[g::1]",
        ] {
            assert!(parse_http(bad, false).is_err(), "{bad} accepted");
            assert!(
                parse_http(bad, true).is_err(),
                "{bad} accepted as a pattern"
            );
        }
        assert!(Scope::http("ftp://x").is_err());
        assert!(Scope::http("https://x/y").is_err());
        assert!(Scope::http("https://x:0").is_err());
    }

    // Verifies: FC-POL-1703
    #[test]
    fn host_patterns_cover_subdomains_only() {
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
        assert!(host_matches("api.example.com", "api.example.com"));
        assert!(!host_matches("api.example.com", "x.api.example.com"));
        assert!(host_matches("*", "anything.at.all"));
    }

    // Verifies: FC-POL-1704, FC-POL-1718
    #[test]
    fn paths_normalize_and_cover_by_component() {
        assert_eq!(normalize_path("/data/./x//y/../z").unwrap(), "/data/x/z");
        assert!(normalize_path("/data/../..").is_err());
        assert!(normalize_path("data").is_err());
        assert!(path_covers("/data", "/data"));
        assert!(path_covers("/data", "/data/x"));
        assert!(!path_covers("/data", "/database"));
        assert!(path_covers("/", "/etc"));
    }
}
