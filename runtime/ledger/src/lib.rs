//! The FemtoClaw ledger: entries, canonical encoding, durable segments, RFC 6962 Merkle tree, signed checkpoints, proofs and offline verification.
