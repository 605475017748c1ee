//! Builds the first-party capabilities to wasm32-wasip2 so the host binary can embed them.

fn main() {
    let built = femtoclaw_guest_build::build(&[
        "femtoclaw-cap-fetch",
        "femtoclaw-cap-hello",
        "femtoclaw-cap-textstats",
        "femtoclaw-cap-memory",
        "femtoclaw-cap-files",
    ]);
    femtoclaw_guest_build::write_constants(&built, "components.rs");
}
