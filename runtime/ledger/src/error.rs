//! Errors of the entry encoding.

use thiserror::Error;

/// Why bytes are not a valid version-1 entry (or value). Offsets are byte positions in
/// the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("unexpected end of input at byte {offset}")]
    UnexpectedEnd {
        /// Where the missing field starts.
        offset: usize,
    },
    /// The version byte is not one this build reads.
    #[error("unsupported encoding version `{version}`")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// A tag byte (entry kind, value kind, option, bool) has no meaning.
    #[error("invalid {what} tag `{tag}` at byte {offset}")]
    BadTag {
        /// Which kind of tag.
        what: &'static str,
        /// The byte found.
        tag: u8,
        /// Where it was found.
        offset: usize,
    },
    /// A string is not UTF-8.
    #[error("string at byte {offset} is not valid utf-8")]
    BadUtf8 {
        /// Where the string starts.
        offset: usize,
    },
    /// A `char` value is not a Unicode scalar value.
    #[error("char at byte {offset} is not a unicode scalar value")]
    BadChar {
        /// Where the char starts.
        offset: usize,
    },
    /// A length or count is larger than what is left of the input.
    #[error("length at byte {offset} exceeds the input")]
    TooLong {
        /// Where the length starts.
        offset: usize,
    },
    /// Values nest deeper than the decoder allows.
    #[error("value nesting at byte {offset} exceeds the limit")]
    TooDeep {
        /// Where the value that is too deep starts.
        offset: usize,
    },
    /// Bytes are left after a complete entry: the encoding is not canonical.
    #[error("trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Where the trailing bytes start.
        offset: usize,
    },
}

/// Why an entry cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string, byte string or list is longer than a u32 length can express.
    #[error("a field is longer than 4 GiB")]
    FieldTooLong,
}
