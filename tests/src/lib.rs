//! Integration and conformance tests for FemtoClaw.
