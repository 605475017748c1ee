//! Builds the test guests and the SDK example to wasm32-wasip2 and exposes them as constants.

fn main() {
    let built = femtoclaw_guest_build::build(&[
        "femtoclaw-guest-misbehave",
        "femtoclaw-guest-misbehave-changed",
        "femtoclaw-guest-types",
        "femtoclaw-guest-std-files",
        "femtoclaw-guest-net",
        "femtoclaw-guest-unprovided",
        "femtoclaw-guest-hoard",
        "femtoclaw-guest-unscrambled",
        "femtoclaw-example-word-count",
    ]);
    femtoclaw_guest_build::write_constants(&built, "guests.rs");
}
