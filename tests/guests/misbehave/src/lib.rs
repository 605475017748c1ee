//! Test guest: every way a capability can misbehave or touch the host, one function each.

use std::hint::black_box;

femtoclaw_sdk::wit_bindgen::generate!({
    inline: r#"
        package femtoclaw:misbehave@0.1.0;

        world misbehave {
            include femtoclaw:host/capability@0.1.0;
            import wasi:random/random@0.2.12;
            import wasi:config/store@0.2.0-draft;

            /// Loops forever.
            export spin: func() -> u64;
            /// Allocates 1 MiB at a time, forever.
            export grow: func() -> u64;
            /// Recurses `depth` levels (without bound for a large depth).
            export recurse: func(depth: u64) -> u64;
            /// `a / b`; traps when `b` is 0.
            export divide: func(a: u32, b: u32) -> u32;
            /// Writes `lines` numbered lines to stdout and one to stderr, and logs once.
            export chatter: func(lines: u32) -> u32;
            /// Reads the wall clock, the monotonic clock and 16 random bytes.
            export sense: func() -> tuple<u64, u64, list<u8>>;
            /// Reads each config key; a refused key is reported, not fatal.
            export read-config: func(keys: list<string>) -> list<string>;
            /// Sets `key` to `value` in bucket `namespace`, then traps when `trap` is set.
            export kv-set: func(namespace: string, key: string, value: string, trap: bool) -> result<_, string>;
            /// Reads `key` of bucket `namespace`.
            export kv-get: func(namespace: string, key: string) -> result<option<string>, string>;
        }
    "#,
    path: "../../../wit",
    with: {
        "femtoclaw:host/log@0.1.0": femtoclaw_sdk::bindings::log,
        "wasi:keyvalue/store@0.2.0-draft2": femtoclaw_sdk::bindings::keyvalue,
        "femtoclaw:host/keyvalue-prefix@0.1.0": femtoclaw_sdk::bindings::keyvalue_prefix, "femtoclaw:host/http@0.1.0": femtoclaw_sdk::bindings::http,
        "wasi:random/random@0.2.12": generate,
        "wasi:config/store@0.2.0-draft": femtoclaw_sdk::bindings::config,
    },
    runtime_path: "femtoclaw_sdk::wit_bindgen::rt",
});

struct Misbehave;

/// The constant the "changed" build changes: replaying a recording of the original against it
/// must diverge.
const OFFSET: u32 = if cfg!(feature = "changed") { 1 } else { 0 };

/// Recursion on the wasm stack itself (no locals in linear memory), so a large depth runs
/// into the host's `max_wasm_stack` rather than the guest's own shadow stack.
#[inline(never)]
fn deep(depth: u64) -> u64 {
    if depth == 0 {
        return 1;
    }
    deep(depth - 1).wrapping_mul(31) ^ depth
}

impl Guest for Misbehave {
    fn spin() -> u64 {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn grow() -> u64 {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(black_box(vec![1u8; 1 << 20]));
        }
    }

    fn recurse(depth: u64) -> u64 {
        deep(depth)
    }

    fn divide(a: u32, b: u32) -> u32 {
        black_box(a) / black_box(b) + OFFSET
    }

    fn chatter(lines: u32) -> u32 {
        for i in 0..lines {
            println!("line {i}");
        }
        eprintln!("done");
        femtoclaw_sdk::log::info(&format!("wrote {lines} lines"));
        lines
    }

    fn sense() -> (u64, u64, Vec<u8>) {
        // Work before the first host call: a changed amount shifts the fuel left at it.
        black_box((0..100 + OFFSET).fold(0u32, |a, b| a.wrapping_add(black_box(b))));
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mono = std::time::Instant::now();
        let bytes = wasi::random::random::get_random_bytes(16);
        (wall, mono.elapsed().as_nanos() as u64, bytes)
    }

    fn read_config(keys: Vec<String>) -> Vec<String> {
        use femtoclaw_sdk::config::{Error, get};
        keys.iter()
            .map(|key| match get(key) {
                Ok(Some(value)) => format!("{key}={value}"),
                Ok(None) => format!("{key} unset"),
                Err(Error::Upstream(e) | Error::Io(e)) => format!("{key} refused: {e}"),
            })
            .collect()
    }

    fn kv_set(namespace: String, key: String, value: String, trap: bool) -> Result<(), String> {
        femtoclaw_sdk::kv::set(&namespace, &key, value.as_bytes()).map_err(|e| e.to_string())?;
        if trap {
            std::process::abort();
        }
        Ok(())
    }

    fn kv_get(namespace: String, key: String) -> Result<Option<String>, String> {
        let value = femtoclaw_sdk::kv::get(&namespace, &key).map_err(|e| e.to_string())?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

export!(Misbehave);
