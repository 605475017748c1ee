//! Fail-closed linking: every function of the `host` world in `wit/` that a guest can import is
//! answered through the gate or is one of the reviewed deterministic functions; nothing else
//! links.
//!
//! The check is black-box: for each function of the world it builds a component that imports
//! that one function and asks the sandbox to link it. What links must be what the sandbox says
//! it links ([`Sandbox::linked`]), each gated or listed with a reason; what the sandbox says it
//! links must be in the world.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use femtoclaw_sandbox::{Answer, Linked, Sandbox, SandboxConfig, SandboxError};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).unwrap())
}

/// `interface#function` of every function the `host` world imports, and a component importing
/// just that one (the probes the compliance suite's structural case installs on a target).
fn world_functions() -> Vec<(String, Vec<u8>)> {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    femtoclaw_conformance::world::probes(&wit, false).unwrap()
}

/// Everything wrong with what links: a function that links but is neither gated nor reviewed,
/// one the sandbox claims but that does not link, one it claims outside the world.
fn audit(world: &[(String, bool)], linked: &[Linked]) -> Vec<String> {
    let claimed: BTreeSet<String> = linked
        .iter()
        .map(|l| format!("{}#{}", l.interface, l.function))
        .collect();
    let mut problems = Vec::new();
    for (function, links) in world {
        match (links, claimed.contains(function)) {
            (true, false) => problems.push(format!(
                "`{function}` links but is neither gated nor in the reviewed table"
            )),
            (false, true) => problems.push(format!("`{function}` is claimed but does not link")),
            _ => {}
        }
    }
    let in_world: BTreeSet<&str> = world.iter().map(|(f, _)| f.as_str()).collect();
    for function in &claimed {
        if !in_world.contains(function.as_str()) {
            problems.push(format!("`{function}` is linked but not in the host world"));
        }
    }
    for l in linked {
        if let Answer::Deterministic(reason) = l.answer
            && reason.trim().is_empty()
        {
            problems.push(format!("`{}#{}` has no reason", l.interface, l.function));
        }
    }
    problems
}

/// Which functions of the world link, probed one by one.
fn probed() -> &'static [(String, bool)] {
    static PROBED: OnceLock<Vec<(String, bool)>> = OnceLock::new();
    PROBED.get_or_init(|| {
        world_functions()
            .into_iter()
            .map(
                |(function, component)| match sandbox().prepare(&component) {
                    Ok(_) => (function, true),
                    Err(SandboxError::Unprovided { .. }) => (function, false),
                    Err(e) => panic!("probe of `{function}`: {e}"),
                },
            )
            .collect()
    })
}

// Verifies: FC-CORE-0206, FC-CAP-1013, FC-CAP-1226, FC-SEC-1301, FC-POL-1607, FC-SEC-1901, FC-SEC-1903, FC-SEC-1922, FC-ABI-4702, FC-ABI-4703, FC-ABI-4801, FC-ABI-4808
#[test]
fn every_function_of_the_host_world_is_gated_or_reviewed_and_nothing_else_links() {
    let world = probed();
    assert!(
        world.len() > 100,
        "the host world has {} functions",
        world.len()
    );
    let problems = audit(world, sandbox().linked());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The host answers all of the world, refusing what it must, but for one unstable
    // function wasmtime-wasi leaves out unless asked: absent, so a component importing it is
    // refused at load.
    let absent: Vec<&str> = world
        .iter()
        .filter(|(_, links)| !links)
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(absent, ["wasi:cli/exit@0.2.12#exit-with-code"]);
}

// Verifies: FC-CORE-0206, FC-CAP-1013, FC-SEC-1301, FC-SEC-1319, FC-SEC-1903, FC-SEC-1923, FC-ABI-4808
#[test]
fn an_injected_ungated_function_fails_the_structural_check() {
    // The sandbox's own claims with one gated function dropped: the probe still finds it
    // linked, as it would a function reaching the linker past the gate and the table.
    let linked: Vec<Linked> = sandbox()
        .linked()
        .iter()
        .filter(|l| !(l.interface == "wasi:clocks/wall-clock@0.2.12" && l.function == "now"))
        .copied()
        .collect();
    let problems = audit(probed(), &linked);
    assert_eq!(
        problems,
        [
            "`wasi:clocks/wall-clock@0.2.12#now` links but is neither gated nor in the reviewed table"
        ]
    );
}

// Verifies: FC-CAP-1221, FC-SEC-1302, FC-SEC-1904
#[test]
fn the_clocks_random_files_and_sockets_are_gated_and_streams_are_reviewed() {
    let answer = |interface: &str, function: &str| {
        sandbox()
            .linked()
            .iter()
            .find(|l| l.interface == interface && l.function == function)
            .map(|l| l.answer)
    };
    for (interface, function) in [
        ("wasi:clocks/wall-clock@0.2.12", "now"),
        ("wasi:random/random@0.2.12", "get-random-bytes"),
        ("wasi:filesystem/types@0.2.12", "[method]descriptor.write"),
        ("wasi:sockets/tcp-create-socket@0.2.12", "create-tcp-socket"),
        (
            "wasi:sockets/tcp@0.2.12",
            "[method]tcp-socket.start-connect",
        ),
        ("femtoclaw:host/http@0.1.0", "send"),
    ] {
        assert_eq!(
            answer(interface, function),
            Some(Answer::Gated),
            "{interface}#{function}"
        );
    }
    assert!(matches!(
        answer("wasi:io/streams@0.2.12", "[method]output-stream.write"),
        Some(Answer::Deterministic(_))
    ));
}
