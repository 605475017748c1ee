//! The femtoclaw-host binary: the execution authority for agents' tools.
