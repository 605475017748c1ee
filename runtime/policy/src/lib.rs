//! FemtoClaw authorization: a default-deny Cedar policy over principals, capabilities, imports and scopes.
