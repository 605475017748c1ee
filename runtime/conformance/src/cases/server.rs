//! Cases of the server area.

use crate::Case;

pub const CASES: &[Case] = &[];
