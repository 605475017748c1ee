//! Cases of the execution area.

use crate::Case;

pub const CASES: &[Case] = &[];
