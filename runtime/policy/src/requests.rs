//! What a capability's manifest requests: the `[requests]` table of `capability.toml`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::baseline::is_virtualized_baseline;
use crate::error::RequestsError;
use crate::model::{
    CallAction, InterfaceName, Scope, host_matches, normalize_path, parse_http, path_covers,
};

/// A path the capability asks to read (and, with `write`, to write), with everything below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRequest {
    /// An absolute path, e.g. `/data`.
    pub path: String,
    /// Also ask to write.
    #[serde(default)]
    pub write: bool,
}

/// A key-value namespace the capability asks to read (and, with `write`, to write).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvRequest {
    /// The namespace name.
    pub namespace: String,
    /// Also ask to write.
    #[serde(default)]
    pub write: bool,
}

/// The imports and scopes a capability requests. A capability gets at most this, and only the
/// part the policy grants. In `capability.toml`:
///
/// ```toml
/// [requests]
/// imports = ["femtoclaw:host/log@0.1.0"]
/// http = ["https://api.example.com", "https://*.example.com:443"]
/// paths = [{ path = "/data", write = true }]
/// kv = [{ namespace = "cache", write = true }]
/// secrets = ["api-token"]
/// config = ["endpoint"]
/// ```
///
/// The virtualized WASI baseline ([`crate::is_virtualized_baseline`]) need not be listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Requests {
    /// WIT interfaces with version, e.g. `femtoclaw:host/log@0.1.0`.
    pub imports: Vec<String>,
    /// HTTP origins `scheme://host[:port]`; the host may be `*.domain` or `*`.
    pub http: Vec<String>,
    /// Filesystem paths.
    pub paths: Vec<PathRequest>,
    /// Key-value namespaces.
    pub kv: Vec<KvRequest>,
    /// Secret names.
    pub secrets: Vec<String>,
    /// Configuration keys.
    pub config: Vec<String>,
}

/// One (action, scope) a manifest requests; for HTTP the host may be a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestedScope {
    /// The call action.
    pub action: CallAction,
    /// The scope, as requested.
    pub scope: Scope,
}

/// One manifest scope entry, parsed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    /// The call action.
    pub action: CallAction,
    /// The entry as written.
    pub text: String,
    /// The parsed scope, or why it is malformed.
    pub scope: Result<Scope, RequestsError>,
}

fn check_name(kind: &'static str, name: &str) -> Result<(), RequestsError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        Err(RequestsError::Name {
            kind,
            entry: name.to_owned(),
        })
    } else {
        Ok(())
    }
}

impl Requests {
    /// Check every entry; the first malformed one is the error.
    pub fn validate(&self) -> Result<(), RequestsError> {
        for import in &self.imports {
            InterfaceName::parse(import)?;
        }
        for entry in self.scope_entries() {
            entry.scope?;
        }
        Ok(())
    }

    /// Whether the manifest lists `interface` (exact match, version included).
    pub fn requests_import(&self, interface: &str) -> bool {
        self.imports.iter().any(|i| i == interface)
    }

    /// Whether `interface` needs no manifest entry or has one: baseline or listed.
    pub fn covers_import(&self, interface: &str) -> bool {
        is_virtualized_baseline(interface) || self.requests_import(interface)
    }

    /// Every requested (action, scope), one entry per action: a path or namespace with
    /// `write` yields a read and a write entry.
    pub fn scope_entries(&self) -> Vec<ScopeEntry> {
        let mut out = Vec::new();
        for text in &self.http {
            let scope = parse_http(text, true).map(|(scheme, host, port)| Scope::HttpHost {
                scheme,
                host,
                port,
            });
            out.push(ScopeEntry {
                action: CallAction::HttpRequest,
                text: text.clone(),
                scope,
            });
        }
        for p in &self.paths {
            let scope = normalize_path(&p.path).map(Scope::Path);
            out.push(ScopeEntry {
                action: CallAction::FsRead,
                text: p.path.clone(),
                scope: scope.clone(),
            });
            if p.write {
                out.push(ScopeEntry {
                    action: CallAction::FsWrite,
                    text: p.path.clone(),
                    scope,
                });
            }
        }
        for kv in &self.kv {
            let scope = check_name("kv namespace", &kv.namespace)
                .map(|()| Scope::KvNamespace(kv.namespace.clone()));
            out.push(ScopeEntry {
                action: CallAction::KvRead,
                text: kv.namespace.clone(),
                scope: scope.clone(),
            });
            if kv.write {
                out.push(ScopeEntry {
                    action: CallAction::KvWrite,
                    text: kv.namespace.clone(),
                    scope,
                });
            }
        }
        for s in &self.secrets {
            out.push(ScopeEntry {
                action: CallAction::SecretUse,
                text: s.clone(),
                scope: check_name("secret", s).map(|()| Scope::Secret(s.clone())),
            });
        }
        for c in &self.config {
            out.push(ScopeEntry {
                action: CallAction::ConfigRead,
                text: c.clone(),
                scope: check_name("config key", c).map(|()| Scope::ConfigKey(c.clone())),
            });
        }
        out
    }

    /// Whether a requested entry covers the concrete `scope` for `action`: an HTTP pattern
    /// matching scheme, host and port; a path at or below a requested path; an exact
    /// namespace, secret or config key. Malformed entries cover nothing.
    pub fn covers(&self, action: CallAction, scope: &Scope) -> bool {
        self.scope_entries().iter().any(|entry| {
            entry.action == action
                && entry
                    .scope
                    .as_ref()
                    .is_ok_and(|requested| scope_covers(requested, scope))
        })
    }

    /// SHA-256 over the canonical form of the requests (each list in manifest order,
    /// length-prefixed), for cache keys.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(b"femtoclaw-requests-v1");
        let lists: [(&str, Vec<String>); 6] = [
            ("imports", self.imports.clone()),
            ("http", self.http.clone()),
            (
                "paths",
                self.paths
                    .iter()
                    .map(|p| format!("{}{}", u8::from(p.write), p.path))
                    .collect(),
            ),
            (
                "kv",
                self.kv
                    .iter()
                    .map(|k| format!("{}{}", u8::from(k.write), k.namespace))
                    .collect(),
            ),
            ("secrets", self.secrets.clone()),
            ("config", self.config.clone()),
        ];
        for (name, list) in lists {
            field(name.as_bytes());
            field(&(list.len() as u64).to_be_bytes());
            for item in list {
                field(item.as_bytes());
            }
        }
        h.finalize().into()
    }
}

/// Whether the requested scope (HTTP host possibly a pattern) covers the concrete one.
pub(crate) fn scope_covers(requested: &Scope, concrete: &Scope) -> bool {
    match (requested, concrete) {
        (
            Scope::HttpHost {
                scheme: rs,
                host: rh,
                port: rp,
            },
            Scope::HttpHost {
                scheme: cs,
                host: ch,
                port: cp,
            },
        ) => rs == cs && rp == cp && !ch.contains('*') && host_matches(rh, ch),
        (Scope::Path(base), Scope::Path(p)) => path_covers(base, p),
        (Scope::KvNamespace(a), Scope::KvNamespace(b))
        | (Scope::Secret(a), Scope::Secret(b))
        | (Scope::ConfigKey(a), Scope::ConfigKey(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_from_a_manifest_table() {
        let r: Requests = toml_like();
        assert_eq!(r.imports, ["femtoclaw:host/log@0.1.0"]);
        assert!(r.validate().is_ok());
        let entries = r.scope_entries();
        let actions: Vec<CallAction> = entries.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                CallAction::HttpRequest,
                CallAction::FsRead,
                CallAction::FsWrite,
                CallAction::KvRead,
                CallAction::SecretUse,
            ]
        );
    }

    fn toml_like() -> Requests {
        serde_json::from_str(
            r#"{"imports": ["femtoclaw:host/log@0.1.0"],
                "http": ["https://*.example.com"],
                "paths": [{"path": "/data", "write": true}],
                "kv": [{"namespace": "cache"}],
                "secrets": ["token"]}"#,
        )
        .unwrap()
    }

    // Verifies: FC-POL-1703, FC-POL-1704, FC-POL-1705
    #[test]
    fn coverage_follows_patterns_prefixes_and_write_flags() {
        let r = toml_like();
        let http = |u: &str| Scope::http(u).unwrap();
        assert!(r.covers(CallAction::HttpRequest, &http("https://api.example.com")));
        assert!(!r.covers(CallAction::HttpRequest, &http("http://api.example.com")));
        assert!(!r.covers(
            CallAction::HttpRequest,
            &http("https://api.example.com:8443")
        ));
        assert!(!r.covers(CallAction::HttpRequest, &http("https://example.com")));
        assert!(r.covers(CallAction::FsWrite, &Scope::path("/data/x").unwrap()));
        assert!(!r.covers(CallAction::FsRead, &Scope::path("/etc").unwrap()));
        assert!(r.covers(CallAction::KvRead, &Scope::KvNamespace("cache".into())));
        assert!(!r.covers(CallAction::KvWrite, &Scope::KvNamespace("cache".into())));
        assert!(!r.covers(CallAction::SecretUse, &Scope::Secret("other".into())));
    }

    // Verifies: FC-POL-1619
    #[test]
    fn unknown_manifest_keys_are_refused() {
        assert!(serde_json::from_str::<Requests>(r#"{"secret": ["x"]}"#).is_err());
    }

    #[test]
    fn digest_changes_with_any_entry() {
        let a = toml_like();
        let mut b = a.clone();
        b.kv[0].write = true;
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), toml_like().digest());
    }
}
