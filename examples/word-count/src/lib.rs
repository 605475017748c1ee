//! An example capability written against the FemtoClaw SDK: counts the words of a text and
//! reports the longest one. Build it with `cargo build --release --target wasm32-wasip2 -p
//! femtoclaw-example-word-count`, then `femtoclaw-host capability add` the `.wasm` with
//! `capability.toml`.

femtoclaw_sdk::generate!({
    inline: r#"
        package example:word-count@0.1.0;

        world word-count {
            include femtoclaw:host/capability@0.1.0;

            record summary {
                words: u32,
                longest: option<string>,
            }

            /// Counts the whitespace-separated words of `text`.
            export count: func(text: string) -> summary;
        }
    "#,
    path: "../../wit",
});

struct WordCount;

impl Guest for WordCount {
    fn count(text: String) -> Summary {
        let words: Vec<&str> = text.split_whitespace().collect();
        femtoclaw_sdk::log::info(&format!("counted {} words", words.len()));
        Summary {
            words: u32::try_from(words.len()).unwrap_or(u32::MAX),
            longest: words
                .iter()
                .max_by_key(|w| w.chars().count())
                .map(|w| (*w).to_owned()),
        }
    }
}

export!(WordCount);
