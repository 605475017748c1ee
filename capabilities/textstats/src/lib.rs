//! The `textstats` capability: statistics, word frequencies, search and digests of a text.
//!
//! A compute tool an agent reaches for when it must count rather than guess: words, lines and
//! sentences, the most frequent words, where a word or phrase occurs, and a SHA-256 digest to
//! compare documents.

#![allow(
    clippy::too_many_arguments,
    reason = "wit-bindgen's generated export glue"
)]

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:textstats@0.1.0;

        interface types {
            /// A word and how often it occurs.
            record word-count {
                word: string,
                count: u32,
            }

            /// Counts over a whole text.
            record stats {
                bytes: u32,
                characters: u32,
                words: u32,
                lines: u32,
                sentences: u32,
                average-word-length: f64,
                /// The most frequent words, most frequent first, ties in alphabetical order.
                top-words: list<word-count>,
            }

            /// What to look for.
            variant pattern {
                /// An exact substring.
                literal(string),
                /// A whole word.
                word(string),
                /// Words starting with the given prefix.
                prefix(string),
            }

            /// Whether letter case matters.
            enum case-mode {
                sensitive,
                insensitive,
            }

            /// One occurrence: 1-based line and column (in characters) and the matched text.
            record occurrence {
                line: u32,
                column: u32,
                text: string,
            }

            /// Digest algorithms.
            enum algorithm {
                sha256,
                fnv1a64,
            }
        }

        world textstats {
            include femtoclaw:host/capability@0.1.0;
            use types.{stats, word-count, pattern, case-mode, occurrence, algorithm};

            /// Counts of `text`, with its `top` most frequent words (case-insensitive).
            export analyze: func(text: string, top: u32) -> stats;
            /// Every occurrence of `pattern` in `text`, at most `limit`; an empty pattern is an error.
            export find: func(text: string, pattern: pattern, case: case-mode, limit: option<u32>) -> result<list<occurrence>, string>;
            /// Lowercase hex digest of the UTF-8 bytes of `text`.
            export digest: func(text: string, algorithm: algorithm) -> string;
        }
    "#,
    path: "../../wit",
});

struct TextStats;

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '-'))
        .filter(|w| !w.is_empty())
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Guest for TextStats {
    fn analyze(text: String, top: u32) -> Stats {
        // A BTreeMap, not a HashMap: no random seed, so the same text costs the same fuel.
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let (mut words_n, mut letters) = (0usize, 0usize);
        for word in words(&text) {
            words_n += 1;
            letters += word.chars().count();
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
        let mut top_words: Vec<WordCount> = counts
            .into_iter()
            .map(|(word, count)| WordCount { word, count })
            .collect();
        top_words.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
        top_words.truncate(top as usize);
        let sentences = text
            .split(['.', '!', '?'])
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .count();
        femtoclaw_sdk::log::debug(&format!("analyzed {words_n} words"));
        Stats {
            bytes: saturating_u32(text.len()),
            characters: saturating_u32(text.chars().count()),
            words: saturating_u32(words_n),
            lines: saturating_u32(text.lines().count()),
            sentences: saturating_u32(sentences),
            average_word_length: if words_n == 0 {
                0.0
            } else {
                letters as f64 / words_n as f64
            },
            top_words,
        }
    }

    fn find(
        text: String,
        pattern: Pattern,
        case: CaseMode,
        limit: Option<u32>,
    ) -> Result<Vec<Occurrence>, String> {
        let fold = |s: &str| match case {
            CaseMode::Sensitive => s.to_owned(),
            CaseMode::Insensitive => s.to_lowercase(),
        };
        let (needle, whole_word, prefix) = match &pattern {
            Pattern::Literal(s) => (fold(s), false, false),
            Pattern::Word(s) => (fold(s), true, false),
            Pattern::Prefix(s) => (fold(s), false, true),
        };
        if needle.is_empty() {
            return Err("pattern is empty".to_owned());
        }
        let limit = limit.map_or(usize::MAX, |l| l as usize);
        let mut found = Vec::new();
        for (line_no, line) in text.lines().enumerate() {
            let chars: Vec<char> = line.chars().collect();
            let folded: Vec<char> = fold(line).chars().collect();
            let pat: Vec<char> = needle.chars().collect();
            if folded.len() != chars.len() {
                return Err("case folding changed the text length; use case sensitive".to_owned());
            }
            let is_word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
            let mut i = 0;
            while i + pat.len() <= folded.len() {
                let hit = folded[i..i + pat.len()] == pat[..]
                    && (!(whole_word || prefix)
                        || !is_word(i.checked_sub(1).and_then(|j| folded.get(j))))
                    && (!whole_word || !is_word(folded.get(i + pat.len())));
                if hit {
                    let mut end = i + pat.len();
                    if prefix {
                        while is_word(folded.get(end)) {
                            end += 1;
                        }
                    }
                    if found.len() == limit {
                        return Ok(found);
                    }
                    found.push(Occurrence {
                        line: saturating_u32(line_no + 1),
                        column: saturating_u32(i + 1),
                        text: chars[i..end].iter().collect(),
                    });
                    i = end;
                } else {
                    i += 1;
                }
            }
        }
        Ok(found)
    }

    fn digest(text: String, algorithm: Algorithm) -> String {
        match algorithm {
            Algorithm::Sha256 => Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            Algorithm::Fnv1a64 => {
                let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
                });
                format!("{hash:016x}")
            }
        }
    }
}

export!(TextStats);
