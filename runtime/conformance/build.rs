//! Builds the suite's own guest components; the cases install them on the target under test.

fn main() {
    let built =
        femtoclaw_guest_build::build(&["femtoclaw-conformance-guest", "femtoclaw-guest-types"]);
    femtoclaw_guest_build::write_constants(&built, "guests.rs");
}
