//! Cases of the structural linking check (specifications 16, 19 and 48): a component of the
//! suite's own for each function of the `host` world of `wit/`, importing that function alone.
//! What the target links must be exactly the world, less `wasi:cli/exit#exit-with-code`.

use super::OPEN;
use super::execution::add;
use crate::target::excerpt;
use crate::world::{probes, write_wit};
use crate::{Case, Failure, Target, ensure};

pub const CASES: &[Case] = &[Case {
    name: "cli.linking.each-world-function-alone",
    verifies: &["FC-ABI-4703", "FC-ABI-4801", "FC-CAP-1226", "FC-SEC-1922"],
    run: each_world_function_alone,
}];

/// The one function of the world the host does not provide.
const NOT_PROVIDED: &str = "wasi:cli/exit@0.2.12#exit-with-code";

fn each_world_function_alone(target: &Target) -> Result<(), Failure> {
    let host = target.host()?;
    host.policy(OPEN)?;
    let wit = host.files.path().join("wit");
    write_wit(&wit).map_err(|e| super::failed(format!("cannot write the embedded wit/: {e}")))?;
    let world = probes(&wit, false).map_err(super::failed)?;
    let with_unstable = probes(&wit, true).map_err(super::failed)?;
    ensure!(
        world.len() > 100 && world.iter().any(|(f, _)| f == NOT_PROVIDED),
        "the embedded host world has {} functions",
        world.len()
    );
    let unstable: Vec<_> = with_unstable
        .into_iter()
        .filter(|(f, _)| !world.iter().any(|(w, _)| w == f))
        .collect();
    ensure!(
        !unstable.is_empty(),
        "the embedded wit/ marks no function @unstable"
    );
    let mut problems = Vec::new();
    let probe = |i: usize,
                 function: &str,
                 wasm: &[u8],
                 provided: bool|
     -> Result<Option<String>, Failure> {
        let manifest = format!("name = \"probe-{i}\"\nversion = \"1.0.0\"\nfuel = 1000000\n");
        let run = add(&host, &format!("probe-{i}.wasm"), wasm, Some(&manifest))?;
        Ok(match (provided, run.code) {
            (true, 0) => None,
            (true, code) => Some(format!(
                "`{function}` alone must link: capability add exited {code}: {}",
                excerpt(&run.stderr)
            )),
            // Named itself, or by its interface when nothing of the interface it asks for links.
            (false, 7)
                if run.stderr.contains(function)
                    || function.split_once('#').is_some_and(|(interface, _)| {
                        run.stderr.contains(&format!("`{interface}`"))
                    }) =>
            {
                None
            }
            (false, code) => Some(format!(
                "`{function}` alone must be refused (exit 7) naming it as not provided: exit {code}: {}",
                excerpt(&run.stderr)
            )),
        })
    };
    for (i, (function, wasm)) in world.iter().enumerate() {
        problems.extend(probe(i, function, wasm, function != NOT_PROVIDED)?);
    }
    for (i, (function, wasm)) in unstable.iter().enumerate() {
        problems.extend(probe(world.len() + i, function, wasm, false)?);
    }
    ensure!(
        problems.is_empty(),
        "{} of {} functions: {}",
        problems.len(),
        world.len() + unstable.len(),
        problems.join("; ")
    );
    Ok(())
}
