//! The `host` world of `wit/`, embedded in the suite, and components that import exactly one of
//! its functions: the probes of the structural linking check (specification 19). Also components
//! of worlds the suite writes itself, which export what a case needs listed (the MCP tool names,
//! specification 9).

use std::path::Path;

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve, WorldId, WorldItem};

include!(concat!(env!("OUT_DIR"), "/wit.rs"));

/// Writes the embedded `wit/` (the `host` world and its `deps/`) into `dir`.
pub fn write_wit(dir: &Path) -> std::io::Result<()> {
    for (path, text) in WIT {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, text)?;
    }
    Ok(())
}

/// `interface#function` of every function the `host` world of the WIT directory `wit` imports,
/// and a component importing just that one. With `all_features`, the items marked `@unstable`
/// are part of the world too.
pub fn probes(wit: &Path, all_features: bool) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut resolve = Resolve {
        all_features,
        ..Resolve::default()
    };
    let (package, _) = resolve
        .push_dir(wit)
        .map_err(|e| format!("{}: {e:#}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some("host"))
        .map_err(|e| format!("the `host` world: {e:#}"))?;
    let interfaces: Vec<_> = resolve.worlds[world]
        .imports
        .values()
        .filter_map(|item| match item {
            WorldItem::Interface { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let mut probes = Vec::new();
    for &id in &interfaces {
        let name = resolve
            .id_of(id)
            .ok_or_else(|| "an interface of the host world has no name".to_owned())?;
        for function in resolve.interfaces[id].functions.keys() {
            let what = format!("{name}#{function}");
            let mut one = resolve.clone();
            for (other, iface) in one.interfaces.iter_mut() {
                iface.functions.retain(|f, _| other == id && f == function);
            }
            let component =
                component(&one, world).map_err(|e| format!("the probe of `{what}`: {e}"))?;
            probes.push((what, component));
        }
    }
    Ok(probes)
}

/// A component of the world `world` of `packages` (WIT sources of one package each, every
/// package after those it uses; `world` is in the last), each function it exports a trap: the
/// suite installs and lists such a component, it never calls it.
pub fn exporting(packages: &[&str], world: &str) -> Result<Vec<u8>, String> {
    let mut resolve = Resolve::default();
    let mut last = None;
    for (i, text) in packages.iter().enumerate() {
        let package = resolve
            .push_source(&format!("package-{i}.wit"), text)
            .map_err(|e| format!("WIT package {i}: {e:#}"))?;
        last = Some(package);
    }
    let package = last.ok_or_else(|| "no WIT package".to_owned())?;
    let id = resolve
        .select_world(&[package], Some(world))
        .map_err(|e| format!("the world `{world}`: {e:#}"))?;
    component(&resolve, id).map_err(|e| format!("the world `{world}`: {e}"))
}

/// The component of `world` around a module of trapping functions.
fn component(resolve: &Resolve, world: WorldId) -> Result<Vec<u8>, String> {
    let mut module = wit_component::dummy_module(resolve, world, ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, resolve, world, StringEncoding::UTF8)
        .map_err(|e| format!("{e:#}"))?;
    ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}
