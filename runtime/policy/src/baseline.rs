//! The virtualized WASI baseline: interfaces Rust std's wasm32-wasip2 output imports, which the
//! host links in an empty, virtualized form (no environment, no preopens; clocks and randomness
//! answered and recorded by the host).
//!
//! `wasi:sockets/*` is not baseline: a component that imports sockets asks for the network, so
//! each sockets interface needs its own manifest entry and `link` grant (and every call is then
//! still refused by the host's gate, with its decision recorded).

/// The baseline interfaces, as `package/name` without version.
pub const VIRTUALIZED_BASELINE: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Whether `interface` (`package/name@version`) is part of the virtualized WASI baseline, for
/// any `0.2.x` version. Baseline imports need no manifest entry (they are implicitly requested),
/// but linking them is still a policy decision (`resource.baseline` in Cedar), and the effects
/// behind them (preopened directories, network) still need scope grants.
pub fn is_virtualized_baseline(interface: &str) -> bool {
    let Some((name, version)) = interface.split_once('@') else {
        return false;
    };
    let patch = version.strip_prefix("0.2.");
    let version_ok = patch.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    version_ok && VIRTUALIZED_BASELINE.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: FC-POL-1603
    #[test]
    fn baseline_is_version_agnostic_on_0_2_patch_only() {
        assert!(is_virtualized_baseline("wasi:clocks/wall-clock@0.2.12"));
        assert!(is_virtualized_baseline("wasi:cli/environment@0.2.0"));
        assert!(!is_virtualized_baseline("wasi:sockets/tcp@0.2.3"));
        assert!(!is_virtualized_baseline("wasi:sockets/network@0.2.12"));
        assert!(!is_virtualized_baseline("wasi:clocks/wall-clock@0.3.0"));
        assert!(!is_virtualized_baseline("wasi:clocks/wall-clock"));
        assert!(!is_virtualized_baseline("wasi:clocks/wall-clock@0.2.1-rc"));
        assert!(!is_virtualized_baseline(
            "wasi:http/outgoing-handler@0.2.12"
        ));
        assert!(!is_virtualized_baseline("wasi:clocks/timezone@0.2.12"));
        assert!(!is_virtualized_baseline("femtoclaw:host/log@0.1.0"));
    }
}
