//! Build-script helper that compiles guest crates to wasm32-wasip2 components.
