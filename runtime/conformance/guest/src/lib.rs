//! The compliance suite's guest: one function per behaviour a case observes.

use std::hint::black_box;

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:conformance@1.0.0;

        world conformance {
            include femtoclaw:host/capability@0.1.0;

            /// Returns `text` unchanged.
            export echo: func(text: string) -> string;
            /// `a + b`, wrapping.
            export add: func(a: s64, b: s64) -> s64;
            /// `a / b`; traps when `b` is 0.
            export divide: func(a: u32, b: u32) -> u32;
            /// Loops forever: ends only when the fuel or the deadline does.
            export spin: func() -> u64;
            /// Logs `message` at info level; returns its length.
            export note: func(message: string) -> u32;
            /// Stores `value` under `key` in namespace `conformance`.
            export remember: func(key: string, value: string) -> result<_, string>;
            /// The value under `key` in namespace `conformance`, if any.
            export recall: func(key: string) -> result<option<string>, string>;
        }
    "#,
    path: "../../../wit",
});

/// The key-value namespace the manifest requests.
const NAMESPACE: &str = "conformance";

struct Conformance;

impl Guest for Conformance {
    fn echo(text: String) -> String {
        text
    }

    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    fn divide(a: u32, b: u32) -> u32 {
        black_box(a) / black_box(b)
    }

    fn spin() -> u64 {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn note(message: String) -> u32 {
        femtoclaw_sdk::log::info(&message);
        message.len() as u32
    }

    fn remember(key: String, value: String) -> Result<(), String> {
        femtoclaw_sdk::kv::set(NAMESPACE, &key, value.as_bytes()).map_err(|e| e.to_string())
    }

    fn recall(key: String) -> Result<Option<String>, String> {
        let value = femtoclaw_sdk::kv::get(NAMESPACE, &key).map_err(|e| e.to_string())?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

export!(Conformance);
