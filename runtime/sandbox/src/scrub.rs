//! Scrubbing: every secret an invocation used is replaced by [`REDACTED`] wherever it could
//! surface, in the forms a server (or a guest) is likely to write it.
//!
//! The guest is never handed a secret's value: the host puts it in a header on the way out.
//! A server may echo it back, though, and what comes back reaches the guest and the ledger; a
//! guest that got hold of it may log or print it. So the host scrubs, with the secrets the
//! invocation used so far, HTTP responses (headers, body, final URL) and errors, the resources
//! of the decisions it records, log messages and captured stdout and stderr. Each secret is
//! found in these forms:
//!
//! - as it is;
//! - percent-encoded, any byte of it as `%HH` (upper- or lower-case hex) or as itself, and a
//!   space also as `+` (form encoding);
//! - JSON string-escaped, any character as itself or as its escape: `\"`, `\\`, `\/`, `\b`,
//!   `\f`, `\n`, `\r`, `\t`, or `\uXXXX` (either case; a surrogate pair beyond the BMP), as
//!   `serde_json` and other encoders write them (the two encodings may also mix);
//! - base64, standard and URL-safe, padded or not, on its own or inside a longer base64 text
//!   (`Basic base64(user:secret)`, a whole header block): the secret is encoded after 0, 1 and
//!   2 bytes of prefix, and the characters that depend on its bytes alone are searched for;
//! - hex, lower- or upper-case.
//!
//! The rule for short secrets: the secret itself and its escaped forms are always searched
//! for; base64 and hex forms only when at least [`MIN_ENCODED`] characters long (every base64
//! form is, for a secret of 7 bytes or more), so a short secret cannot make the host redact
//! any short run of letters.
//!
//! Other transformations (reversed, split, XORed, compressed, …) are not caught: the guarantee
//! is that the guest is never handed the value, and that the host scrubs the forms above.
//!
//! ```text
//! secret   tok-1/é
//! caught   tok-1/é  tok%2D1%2fé  tok-1\/\u00e9  dG9rLTEvw6k  746f6b2d312fc3a9  …
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use regex::bytes::{Regex, RegexBuilder};

/// What the host puts where a secret was.
pub const REDACTED: &str = "[redacted]";

/// The fewest characters a base64 or hex form of a secret must have to be searched for.
pub const MIN_ENCODED: usize = 8;

/// The longest secret the host scrubs, and so the longest it uses (a token, a password, a
/// PEM key fits with room to spare).
pub const MAX_SECRET_BYTES: usize = 8 << 10;

/// The most memory the compiled search over one invocation's secrets may take.
const MAX_COMPILED_BYTES: usize = 64 << 20;

/// The secrets one invocation used, and the search for all of their forms, compiled once for
/// each secret added. Its `Debug` shows how many secrets it holds, never one of them.
#[derive(Default)]
pub struct Scrubber {
    /// The secrets added, each once.
    secrets: Vec<String>,
    /// One alternative per form, longest secret first; `None` while there is no secret.
    search: Option<Regex>,
}

/// A secret too large for the host to search for its forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a secret of {len} bytes is too large for the host to scrub its echoes: {reason}")]
pub struct ScrubError {
    /// The secret's length, in bytes.
    pub len: usize,
    /// Why the search could not be compiled.
    pub reason: String,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

impl Scrubber {
    /// Adds `secret` to those scrubbed (an empty one, or one already there, changes nothing).
    /// On error the scrubber is unchanged: the caller must not use the secret.
    pub fn add(&mut self, secret: &str) -> Result<(), ScrubError> {
        if secret.is_empty() || self.secrets.iter().any(|s| s == secret) {
            return Ok(());
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(ScrubError {
                len: secret.len(),
                reason: format!("the most is {MAX_SECRET_BYTES} bytes"),
            });
        }
        let mut secrets = self.secrets.clone();
        secrets.push(secret.to_owned());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let pattern = secrets
            .iter()
            .flat_map(|s| forms(s))
            .collect::<Vec<_>>()
            .join("|");
        let search = RegexBuilder::new(&format!("(?-u:{pattern})"))
            .unicode(false)
            .size_limit(MAX_COMPILED_BYTES)
            .build()
            .map_err(|e| ScrubError {
                len: secret.len(),
                reason: e.to_string(),
            })?;
        self.secrets = secrets;
        self.search = Some(search);
        Ok(())
    }

    /// Whether no secret is scrubbed.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `bytes` with every form of every secret replaced by [`REDACTED`].
    pub fn bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.search {
            Some(search) => search.replace_all(bytes, REDACTED.as_bytes()),
            None => Cow::Borrowed(bytes),
        }
    }

    /// `bytes`, owned, with every form of every secret replaced by [`REDACTED`].
    pub fn vec(&self, bytes: Vec<u8>) -> Vec<u8> {
        match self.bytes(&bytes) {
            Cow::Borrowed(_) => bytes,
            Cow::Owned(scrubbed) => scrubbed,
        }
    }

    /// `text` with every form of every secret replaced by [`REDACTED`].
    pub fn text(&self, text: &str) -> String {
        match self.bytes(text.as_bytes()) {
            Cow::Borrowed(_) => text.to_owned(),
            // Matches are whole characters of the text, so what is left stays UTF-8.
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }
}

/// The search pattern of each form of `secret` (see the module docs), without the
/// too-short ones.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![escaped(secret)];
    let mut fixed: Vec<String> = Vec::new();
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for offset in 0..3 {
            fixed.push(base64_middle(&engine, secret.as_bytes(), offset));
        }
    }
    fixed.retain(|f| f.len() >= MIN_ENCODED);
    fixed.sort();
    fixed.dedup();
    forms.extend(fixed.iter().map(|f| regex::escape(f)));
    let hex = hex::encode(secret);
    if hex.len() >= MIN_ENCODED {
        forms.push(format!("(?i:{hex})"));
    }
    forms
}

/// The pattern of `secret` with each character as itself, percent-encoded or JSON-escaped.
fn escaped(secret: &str) -> String {
    let mut pattern = String::new();
    for c in secret.chars() {
        let mut utf8 = [0; 4];
        pattern.push_str("(?:");
        // As itself or percent-encoded, byte by byte.
        for byte in c.encode_utf8(&mut utf8).bytes() {
            let _ = write!(pattern, "(?:\\x{byte:02x}|%{}", hex_either_case(&[byte]));
            if byte == b' ' {
                pattern.push_str("|\\+");
            }
            pattern.push(')');
        }
        // JSON-escaped.
        let short = match c {
            '"' => Some('"'),
            '\\' => Some('\\'),
            '/' => Some('/'),
            '\u{8}' => Some('b'),
            '\u{c}' => Some('f'),
            '\n' => Some('n'),
            '\r' => Some('r'),
            '\t' => Some('t'),
            _ => None,
        };
        if let Some(short) = short {
            let _ = write!(pattern, "|\\\\{}", regex::escape(&short.to_string()));
        }
        pattern.push('|');
        for unit in c.encode_utf16(&mut [0; 2]) {
            let _ = write!(pattern, "\\\\u{}", hex_either_case(&unit.to_be_bytes()));
        }
        pattern.push(')');
    }
    pattern
}

/// A pattern for the hex of `bytes` in either case (each digit on its own).
fn hex_either_case(bytes: &[u8]) -> String {
    hex::encode(bytes)
        .chars()
        .map(|d| {
            if d.is_ascii_alphabetic() {
                format!("[{d}{}]", d.to_ascii_uppercase())
            } else {
                d.to_string()
            }
        })
        .collect()
}

/// The characters of base64(`offset` bytes ‖ `secret` ‖ anything) that depend on the bytes of
/// `secret` alone: whatever comes before or after it, a base64 text holding `secret` at a
/// position ≡ `offset` (mod 3) holds these.
fn base64_middle(engine: &impl base64::Engine, secret: &[u8], offset: usize) -> String {
    let mut input = vec![0; offset];
    input.extend_from_slice(secret);
    let encoded = engine.encode(&input);
    // Character i covers bits 6i..6i+6 of the input: the secret holds bits 8·offset onwards.
    let first = (8 * offset).div_ceil(6);
    let last = 8 * input.len() / 6;
    encoded.get(first..last).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    use super::*;

    const SECRET: &str = "tok-7f3a9c/never echo+me?&é\"\\\n";

    fn scrubber(secrets: &[&str]) -> Scrubber {
        let mut scrubber = Scrubber::default();
        for s in secrets {
            scrubber.add(s).unwrap();
        }
        scrubber
    }

    /// Scrubs `text` of [`SECRET`] and asserts nothing of the encoded secret is left.
    fn caught(encoded: &str) {
        let text = format!("before {encoded} after");
        let scrubbed = scrubber(&[SECRET]).text(&text);
        assert_eq!(scrubbed, "before [redacted] after", "{encoded}");
    }

    // Verifies: FC-SEC-2213
    #[test]
    fn the_secret_itself_is_caught_and_other_text_is_kept() {
        let s = scrubber(&[SECRET]);
        assert_eq!(
            s.text(&format!("a{SECRET}b{SECRET}")),
            "a[redacted]b[redacted]"
        );
        assert_eq!(s.text("nothing secret here"), "nothing secret here");
        assert_eq!(&*s.bytes(b"\xff\xfe"), b"\xff\xfe");
        assert!(Scrubber::default().text(SECRET) == SECRET);
    }

    // Verifies: FC-SEC-2213
    #[test]
    fn percent_encoded_forms_are_caught_in_either_case_and_with_plus_for_space() {
        let upper: String = SECRET.bytes().map(|b| format!("%{b:02X}")).collect();
        caught(&upper);
        caught(&upper.to_lowercase());
        // The way URL and form encoders write it: unreserved characters as themselves.
        let form: String = SECRET
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02x}"),
            })
            .collect();
        assert!(form.contains('+') && form.contains("%2f"), "{form}");
        caught(&form);
        caught(&form.replace('+', "%20"));
    }

    // Verifies: FC-SEC-2213
    #[test]
    fn json_escaped_forms_are_caught_as_serde_json_and_other_encoders_write_them() {
        let json = serde_json::to_string(SECRET).unwrap();
        caught(json.trim_matches('"'));
        let ascii: String = SECRET
            .chars()
            .map(|c| match c {
                '/' => "\\/".to_owned(),
                c if c.is_ascii_alphanumeric() => c.to_string(),
                c => format!("\\u{:04X}", u32::from(c)),
            })
            .collect();
        caught(&ascii);
        caught(&ascii.to_lowercase());
        // Beyond the BMP: a surrogate pair.
        let s = scrubber(&["key-🔑-value"]);
        assert_eq!(s.text(r#""key-\ud83d\udd11-value""#), r#""[redacted]""#);
    }

    // Verifies: FC-SEC-2213
    #[test]
    fn base64_forms_are_caught_standard_and_url_safe_padded_or_not_at_any_alignment() {
        for engine in [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            for prefix in ["", "u", "us", "user:", "Bearer:x"] {
                let encoded = engine.encode(format!("{prefix}{SECRET} and more"));
                let scrubbed = scrubber(&[SECRET]).text(&encoded);
                assert!(scrubbed.contains(REDACTED), "{prefix:?}: {scrubbed}");
                // What is left is a couple of characters at each edge: never the secret.
                let left = scrubbed.replace(REDACTED, "");
                assert!(
                    left.len() <= encoded.len() - 4 * SECRET.len() / 3 + 4,
                    "{scrubbed}"
                );
            }
        }
    }

    // Verifies: FC-SEC-2213
    #[test]
    fn hex_forms_are_caught_in_either_case() {
        caught(&hex::encode(SECRET));
        caught(&hex::encode_upper(SECRET));
    }

    // Verifies: FC-SEC-2214
    #[test]
    fn a_short_secret_is_caught_as_itself_but_never_redacts_short_runs_of_base64_or_hex() {
        let s = scrubber(&["ab"]);
        assert_eq!(
            s.text("xabx %61%62 6162 YWI="),
            "x[redacted]x [redacted] 6162 YWI="
        );
        assert!(forms("ab").len() == 1);
        // Seven bytes or more: every base64 form is searched for (here the standard and
        // URL-safe ones are the same), and hex.
        assert_eq!(forms("1234567").len(), 1 + 3 + 1);
        assert_eq!(forms("~~~~~~~~").len(), 1 + 6 + 1);
    }

    // Verifies: FC-SEC-2221
    #[test]
    fn every_secret_is_caught_the_longest_first_and_the_debug_form_shows_none() {
        let s = scrubber(&["token", "token-and-more"]);
        assert_eq!(s.text("token-and-more token"), "[redacted] [redacted]");
        let mut again = scrubber(&["token"]);
        again.add("token").unwrap();
        again.add("").unwrap();
        assert_eq!(format!("{again:?}"), "Scrubber(1 secrets)");
        assert!(!format!("{s:?}").contains("token"));
    }

    // Verifies: FC-SEC-2221
    #[test]
    fn a_secret_too_large_to_search_for_is_an_error_and_leaves_the_scrubber_as_it_was() {
        // The largest secret, of every kind of character, compiles beside others.
        let largest: String = "aZ9 /\\\"é🔑\n-"
            .chars()
            .cycle()
            .take(MAX_SECRET_BYTES * 11 / 16)
            .collect();
        assert!(largest.len() > MAX_SECRET_BYTES * 9 / 10);
        let mut s = scrubber(&["token", &largest]);
        assert_eq!(s.text(&format!("{largest} token")), "[redacted] [redacted]");
        let huge = "x".repeat(MAX_SECRET_BYTES + 1);
        let error = s.add(&huge).unwrap_err();
        assert_eq!(
            error.to_string(),
            "a secret of 8193 bytes is too large for the host to scrub its echoes: the most is 8192 bytes"
        );
        assert_eq!(s.text(&huge), huge);
        assert_eq!(s.secrets.len(), 2);
    }
}
