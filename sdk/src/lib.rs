//! The FemtoClaw SDK for capability authors.
