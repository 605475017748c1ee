//! Cases of the security area.

use crate::Case;

pub const CASES: &[Case] = &[];
