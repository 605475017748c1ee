//! An example capability written against the FemtoClaw SDK.
