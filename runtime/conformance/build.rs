//! Builds the suite's own guest components; the cases install them on the target under test.

fn main() {
    println!("cargo:rerun-if-changed=sdk-guest");
    let built = femtoclaw_guest_build::build(&[
        "femtoclaw-conformance-guest",
        "femtoclaw-conformance-sdk-guest",
    ]);
    femtoclaw_guest_build::write_constants(&built, "guests.rs");
}
