//! Test guest: host calls the host refuses to perform (over a per-call cap), and host work
//! that piles up call after call while the guest itself does almost nothing.

femtoclaw_sdk::wit_bindgen::generate!({
    inline: r#"
        package femtoclaw:hoard@0.1.0;

        world hoard {
            include femtoclaw:host/capability@0.1.0;
            import wasi:random/random@0.2.12;

            /// Logs one message of `bytes` bytes.
            export log-big: func(bytes: u32) -> u32;
            /// Asks for `len` random bytes once; how many came.
            export random-big: func(len: u64) -> u64;
            /// Asks for `len` random bytes `turns` times, keeping none; how many came in all.
            export hoard-random: func(turns: u32, len: u64) -> u64;
        }
    "#,
    path: "../../../wit",
    with: {
        "femtoclaw:host/log@0.1.0": femtoclaw_sdk::bindings::log,
        "wasi:keyvalue/store@0.2.0-draft2": femtoclaw_sdk::bindings::keyvalue,
        "femtoclaw:host/keyvalue-prefix@0.1.0": femtoclaw_sdk::bindings::keyvalue_prefix,
        "femtoclaw:host/http@0.1.0": femtoclaw_sdk::bindings::http,
        "wasi:random/random@0.2.12": generate,
        "wasi:config/store@0.2.0-draft": femtoclaw_sdk::bindings::config,
    },
    runtime_path: "femtoclaw_sdk::wit_bindgen::rt",
});

struct Hoard;

impl Guest for Hoard {
    fn log_big(bytes: u32) -> u32 {
        femtoclaw_sdk::log::info(&"x".repeat(bytes as usize));
        bytes
    }

    fn random_big(len: u64) -> u64 {
        wasi::random::random::get_random_bytes(len).len() as u64
    }

    fn hoard_random(turns: u32, len: u64) -> u64 {
        (0..turns)
            .map(|_| wasi::random::random::get_random_bytes(len).len() as u64)
            .sum()
    }
}

export!(Hoard);
