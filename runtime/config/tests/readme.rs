//! The README's configuration reference is the one the schema makes. Regenerate with
//! `FEMTOCLAW_BLESS=1 cargo test -p femtoclaw-config --test readme`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

// Verifies: FC-CONF-2810
#[test]
fn the_readme_holds_the_current_configuration_reference() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let current = femtoclaw_config::splice_reference(&readme)
        .expect("the README has the reference's start and end lines");
    if std::env::var_os("FEMTOCLAW_BLESS").is_some() {
        std::fs::write(&path, &current).unwrap();
        return;
    }
    assert!(
        current == readme,
        "the README's configuration reference is stale: regenerate it with FEMTOCLAW_BLESS=1"
    );
}
