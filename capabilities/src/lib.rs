//! First-party FemtoClaw capabilities, compiled to wasm32-wasip2 components by this crate's build
//! script and embedded, so a fresh install of `femtoclaw-host` has them without `capability add`.
//!
//! ```
//! let hello = femtoclaw_capabilities::find("hello").unwrap();
//! assert!(hello.manifest.contains("name = \"hello\""));
//! assert_eq!(&hello.component[..4], b"\0asm");
//! ```

mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

/// One embedded capability: its manifest text and its component bytes.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    /// The capability's name (as in its manifest).
    pub name: &'static str,
    /// The `capability.toml` text.
    pub manifest: &'static str,
    /// The wasm32-wasip2 component.
    pub component: &'static [u8],
}

/// Every first-party capability.
pub const ALL: &[Embedded] = &[
    Embedded {
        name: "fetch",
        manifest: include_str!("../fetch/capability.toml"),
        component: components::FEMTOCLAW_CAP_FETCH,
    },
    Embedded {
        name: "hello",
        manifest: include_str!("../hello/capability.toml"),
        component: components::FEMTOCLAW_CAP_HELLO,
    },
    Embedded {
        name: "textstats",
        manifest: include_str!("../textstats/capability.toml"),
        component: components::FEMTOCLAW_CAP_TEXTSTATS,
    },
    Embedded {
        name: "memory",
        manifest: include_str!("../memory/capability.toml"),
        component: components::FEMTOCLAW_CAP_MEMORY,
    },
    Embedded {
        name: "files",
        manifest: include_str!("../files/capability.toml"),
        component: components::FEMTOCLAW_CAP_FILES,
    },
];

/// The embedded capability called `name`.
pub fn find(name: &str) -> Option<&'static Embedded> {
    ALL.iter().find(|c| c.name == name)
}
