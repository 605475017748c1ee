//! The FemtoClaw sandbox: deterministic wasmtime engine, capability store, linker, the gate, JSON and WIT values.
