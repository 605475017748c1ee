//! Model-based test (placeholder while the first build runs).
