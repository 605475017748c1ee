//! The `memory` capability: key-value notes for agents, kept in the host's key-value store
//! (namespace `memory`). A note written by one invocation is there for the next; the host
//! records every read and write in its ledger.

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:memory@0.1.0;

        world memory {
            include femtoclaw:host/capability@0.1.0;

            /// Stores `text` under `key`, replacing any earlier note.
            export put: func(key: string, text: string) -> result<_, string>;
            /// The note under `key`, if there is one.
            export get: func(key: string) -> result<option<string>, string>;
            /// Up to `limit` keys starting with `prefix`, in order (all keys: an empty prefix).
            export %list: func(prefix: string, limit: u32) -> result<list<string>, string>;
            /// Removes the note under `key`; whether there was one.
            export delete: func(key: string) -> result<bool, string>;
        }
    "#,
    path: "../../wit",
});

use femtoclaw_sdk::kv;

/// The namespace every note lives in.
const NAMESPACE: &str = "memory";

struct Memory;

fn describe(e: kv::Error) -> String {
    format!("memory: {e}")
}

impl Guest for Memory {
    fn put(key: String, text: String) -> Result<(), String> {
        if key.is_empty() {
            return Err("memory: the key is empty".into());
        }
        kv::set(NAMESPACE, &key, text.as_bytes()).map_err(describe)
    }

    fn get(key: String) -> Result<Option<String>, String> {
        match kv::get(NAMESPACE, &key).map_err(describe)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| format!("memory: the note under `{key}` is not UTF-8 text")),
        }
    }

    fn list(prefix: String, limit: u32) -> Result<Vec<String>, String> {
        let bucket = kv::open(NAMESPACE).map_err(describe)?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        kv::keys_of(&bucket, &prefix, limit).map_err(describe)
    }

    fn delete(key: String) -> Result<bool, String> {
        let bucket = kv::open(NAMESPACE).map_err(describe)?;
        let existed = bucket.exists(&key).map_err(describe)?;
        if existed {
            bucket.delete(&key).map_err(describe)?;
        }
        Ok(existed)
    }
}

export!(Memory);
