//! First-party FemtoClaw capabilities, compiled to wasm32-wasip2 components and embedded.
