//! Builds the suite's own guest component; the cases install it on the target under test.

fn main() {
    let built = femtoclaw_guest_build::build(&["femtoclaw-conformance-guest"]);
    femtoclaw_guest_build::write_constants(&built, "guests.rs");
}
