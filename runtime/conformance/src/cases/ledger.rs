//! Cases of the ledger area.

use crate::Case;

pub const CASES: &[Case] = &[];
