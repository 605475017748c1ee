//! Builds the suite's own guest component; the cases install it on the target under test. Also
//! builds the test guest the golden ledger kept with the sources was recorded with, so that a
//! case replays that ledger against the target.

fn main() {
    let built =
        femtoclaw_guest_build::build(&["femtoclaw-conformance-guest", "femtoclaw-guest-misbehave"]);
    femtoclaw_guest_build::write_constants(&built, "guests.rs");
}
