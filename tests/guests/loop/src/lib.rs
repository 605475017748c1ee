//! Test guest: loops forever.
