//! A canonical model of WIT values, independent of any engine.

use serde::{Deserialize, Serialize};

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// Deepest nesting of values the decoder accepts (hostile input cannot overflow the stack).
pub const MAX_VALUE_DEPTH: usize = 128;

/// A WIT value as recorded in the ledger.
///
/// Floats are kept as their raw IEEE 754 bits so that encoding is exact and NaN payloads
/// survive. Record fields, flags and tuple members keep the order they were given in; the
/// encoding never reorders them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Value {
    /// `bool`
    Bool(bool),
    /// `s8`
    S8(i8),
    /// `s16`
    S16(i16),
    /// `s32`
    S32(i32),
    /// `s64`
    S64(i64),
    /// `u8`
    U8(u8),
    /// `u16`
    U16(u16),
    /// `u32`
    U32(u32),
    /// `u64`
    U64(u64),
    /// `f32`, as raw bits (`f32::to_bits`).
    F32(u32),
    /// `f64`, as raw bits (`f64::to_bits`).
    F64(u64),
    /// `char`
    Char(char),
    /// `string`
    String(String),
    /// `list<T>`
    List(Vec<Value>),
    /// `record { .. }`: field names and values in declaration order.
    Record(Vec<(String, Value)>),
    /// `tuple<..>`
    Tuple(Vec<Value>),
    /// `variant { .. }`: the case name and its payload, if the case has one.
    Variant {
        /// Case name.
        case: String,
        /// Payload, if the case carries one.
        payload: Option<Box<Value>>,
    },
    /// `enum { .. }`: the case name.
    Enum(String),
    /// `option<T>`
    Option(Option<Box<Value>>),
    /// `result<T, E>`; either side may carry no payload.
    Result(Result<Option<Box<Value>>, Option<Box<Value>>>),
    /// `flags { .. }`: the names of the flags that are set, in declaration order.
    Flags(Vec<String>),
    /// Raw bytes (a `list<u8>` a host call passes or returns as bytes).
    Bytes(#[serde(with = "crate::serde_util::b64")] Vec<u8>),
    /// Bytes kept beside the ledger, by digest: a large [`Value::Bytes`] as the ledger stores
    /// it (see [`Value::externalize`]). The leaf commits to the digest, so the bytes verify.
    Blob {
        /// SHA-256 of the bytes.
        #[serde(with = "crate::serde_util::hex32")]
        sha256: [u8; 32],
        /// Their length.
        len: u64,
    },
}

/// [`Value::Bytes`] at least this long are stored beside the ledger, by digest.
pub const BLOB_THRESHOLD: usize = 16 << 10;

mod tag {
    pub(super) const BOOL: u8 = 0x01;
    pub(super) const S8: u8 = 0x02;
    pub(super) const S16: u8 = 0x03;
    pub(super) const S32: u8 = 0x04;
    pub(super) const S64: u8 = 0x05;
    pub(super) const U8: u8 = 0x06;
    pub(super) const U16: u8 = 0x07;
    pub(super) const U32: u8 = 0x08;
    pub(super) const U64: u8 = 0x09;
    pub(super) const F32: u8 = 0x0a;
    pub(super) const F64: u8 = 0x0b;
    pub(super) const CHAR: u8 = 0x0c;
    pub(super) const STRING: u8 = 0x0d;
    pub(super) const LIST: u8 = 0x0e;
    pub(super) const RECORD: u8 = 0x0f;
    pub(super) const TUPLE: u8 = 0x10;
    pub(super) const VARIANT: u8 = 0x11;
    pub(super) const ENUM: u8 = 0x12;
    pub(super) const OPTION: u8 = 0x13;
    pub(super) const RESULT: u8 = 0x14;
    pub(super) const FLAGS: u8 = 0x15;
    pub(super) const BYTES: u8 = 0x16;
    pub(super) const BLOB: u8 = 0x17;
}

impl Value {
    /// A convenience constructor for `f32` values.
    pub fn f32(v: f32) -> Self {
        Value::F32(v.to_bits())
    }

    /// A convenience constructor for `f64` values.
    pub fn f64(v: f64) -> Self {
        Value::F64(v.to_bits())
    }

    /// The length of the value's canonical encoding, computed without encoding it (one walk,
    /// nothing allocated per value).
    pub fn encoded_len(&self) -> u64 {
        // Tag byte, then: a u32 length or count is 4, a string or byte string 4 + its bytes.
        let text = |s: &[u8]| 4 + s.len() as u64;
        let mut total = 0u64;
        let mut stack = vec![self];
        while let Some(v) = stack.pop() {
            total += 1 + match v {
                Value::Bool(_) | Value::S8(_) | Value::U8(_) => 1,
                Value::S16(_) | Value::U16(_) => 2,
                Value::S32(_) | Value::U32(_) | Value::F32(_) | Value::Char(_) => 4,
                Value::S64(_) | Value::U64(_) | Value::F64(_) => 8,
                Value::String(s) | Value::Enum(s) => text(s.as_bytes()),
                Value::Bytes(b) => text(b),
                Value::Blob { .. } => 32 + 8,
                Value::List(items) | Value::Tuple(items) => {
                    stack.extend(items.iter());
                    4
                }
                Value::Record(fields) => {
                    stack.extend(fields.iter().map(|(_, v)| v));
                    4 + fields.iter().map(|(n, _)| text(n.as_bytes())).sum::<u64>()
                }
                Value::Flags(names) => 4 + names.iter().map(|n| text(n.as_bytes())).sum::<u64>(),
                Value::Variant { case, payload } => {
                    stack.extend(payload.as_deref());
                    text(case.as_bytes()) + 1
                }
                Value::Option(payload) => {
                    stack.extend(payload.as_deref());
                    1
                }
                Value::Result(Ok(payload) | Err(payload)) => {
                    stack.extend(payload.as_deref());
                    2
                }
            };
        }
        total
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        match self {
            Value::Bool(v) => {
                w.u8(tag::BOOL);
                w.bool(*v);
            }
            Value::S8(v) => {
                w.u8(tag::S8);
                w.raw(&v.to_le_bytes());
            }
            Value::S16(v) => {
                w.u8(tag::S16);
                w.raw(&v.to_le_bytes());
            }
            Value::S32(v) => {
                w.u8(tag::S32);
                w.raw(&v.to_le_bytes());
            }
            Value::S64(v) => {
                w.u8(tag::S64);
                w.raw(&v.to_le_bytes());
            }
            Value::U8(v) => {
                w.u8(tag::U8);
                w.u8(*v);
            }
            Value::U16(v) => {
                w.u8(tag::U16);
                w.u16(*v);
            }
            Value::U32(v) => {
                w.u8(tag::U32);
                w.u32(*v);
            }
            Value::U64(v) => {
                w.u8(tag::U64);
                w.u64(*v);
            }
            Value::F32(v) => {
                w.u8(tag::F32);
                w.u32(*v);
            }
            Value::F64(v) => {
                w.u8(tag::F64);
                w.u64(*v);
            }
            Value::Char(c) => {
                w.u8(tag::CHAR);
                w.u32(u32::from(*c));
            }
            Value::String(s) => {
                w.u8(tag::STRING);
                w.str(s);
            }
            Value::List(items) => {
                w.u8(tag::LIST);
                w.len(items.len());
                for v in items {
                    v.encode_into(w);
                }
            }
            Value::Record(fields) => {
                w.u8(tag::RECORD);
                w.len(fields.len());
                for (name, v) in fields {
                    w.str(name);
                    v.encode_into(w);
                }
            }
            Value::Tuple(items) => {
                w.u8(tag::TUPLE);
                w.len(items.len());
                for v in items {
                    v.encode_into(w);
                }
            }
            Value::Variant { case, payload } => {
                w.u8(tag::VARIANT);
                w.str(case);
                encode_opt(w, payload.as_deref());
            }
            Value::Enum(case) => {
                w.u8(tag::ENUM);
                w.str(case);
            }
            Value::Option(v) => {
                w.u8(tag::OPTION);
                encode_opt(w, v.as_deref());
            }
            Value::Result(r) => {
                w.u8(tag::RESULT);
                match r {
                    Ok(v) => {
                        w.u8(0);
                        encode_opt(w, v.as_deref());
                    }
                    Err(v) => {
                        w.u8(1);
                        encode_opt(w, v.as_deref());
                    }
                }
            }
            Value::Flags(names) => {
                w.u8(tag::FLAGS);
                w.len(names.len());
                for n in names {
                    w.str(n);
                }
            }
            Value::Bytes(b) => {
                w.u8(tag::BYTES);
                w.bytes(b);
            }
            Value::Blob { sha256, len } => {
                w.u8(tag::BLOB);
                w.digest(sha256);
                w.u64(*len);
            }
        }
    }

    /// Calls `f` on every bytes value (`Bytes` or `Blob`) at any depth, stopping at the first
    /// error. One stack for the whole walk: nothing is allocated per value.
    fn each_bytes_mut<E>(
        &mut self,
        mut f: impl FnMut(&mut Value) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stack = vec![self];
        while let Some(v) = stack.pop() {
            if matches!(v, Value::Bytes(_) | Value::Blob { .. }) {
                f(v)?;
                continue;
            }
            match v {
                Value::List(items) | Value::Tuple(items) => stack.extend(items.iter_mut()),
                Value::Record(fields) => stack.extend(fields.iter_mut().map(|(_, v)| v)),
                Value::Variant {
                    payload: Some(v), ..
                }
                | Value::Option(Some(v))
                | Value::Result(Ok(Some(v)) | Err(Some(v))) => stack.push(v),
                _ => {}
            }
        }
        Ok(())
    }

    /// Replaces every [`Value::Bytes`] of at least `threshold` bytes, at any depth, with a
    /// [`Value::Blob`] reference, and returns the bytes moved out, with their digests.
    pub fn externalize(&mut self, threshold: usize) -> Vec<([u8; 32], Vec<u8>)> {
        let mut out = Vec::new();
        let _ = self.each_bytes_mut(|v| {
            if let Value::Bytes(b) = v
                && b.len() >= threshold
            {
                let bytes = std::mem::take(b);
                let sha256 = crate::sha256(&bytes);
                *v = Value::Blob {
                    sha256,
                    len: bytes.len() as u64,
                };
                out.push((sha256, bytes));
            }
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// Appends the digest of every [`Value::Blob`], at any depth, to `out`.
    pub(crate) fn collect_blobs(&self, out: &mut Vec<[u8; 32]>) {
        let mut stack = vec![self];
        while let Some(v) = stack.pop() {
            match v {
                Value::Blob { sha256, .. } => out.push(*sha256),
                Value::List(items) | Value::Tuple(items) => stack.extend(items.iter()),
                Value::Record(fields) => stack.extend(fields.iter().map(|(_, v)| v)),
                Value::Variant {
                    payload: Some(v), ..
                }
                | Value::Option(Some(v))
                | Value::Result(Ok(Some(v)) | Err(Some(v))) => stack.push(v),
                _ => {}
            }
        }
    }

    /// Puts back the bytes of every [`Value::Blob`], at any depth, from `resolve`. Bytes whose
    /// digest or length differ from the reference count as missing; the first missing digest
    /// is the error.
    pub fn internalize(
        &mut self,
        resolve: &mut impl FnMut(&[u8; 32]) -> Option<Vec<u8>>,
    ) -> Result<(), [u8; 32]> {
        self.each_bytes_mut(|v| {
            if let Value::Blob { sha256, len } = v {
                let bytes = resolve(sha256)
                    .filter(|b| b.len() as u64 == *len && crate::sha256(b) == *sha256)
                    .ok_or(*sha256)?;
                *v = Value::Bytes(bytes);
            }
            Ok(())
        })
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
        let offset = r.pos();
        if depth >= MAX_VALUE_DEPTH {
            return Err(DecodeError::TooDeep { offset });
        }
        let t = r.u8()?;
        Ok(match t {
            tag::BOOL => Value::Bool(r.bool()?),
            tag::S8 => Value::S8(i8::from_le_bytes([r.u8()?])),
            tag::S16 => Value::S16(r.u16()?.cast_signed()),
            tag::S32 => Value::S32(r.u32()?.cast_signed()),
            tag::S64 => Value::S64(r.u64()?.cast_signed()),
            tag::U8 => Value::U8(r.u8()?),
            tag::U16 => Value::U16(r.u16()?),
            tag::U32 => Value::U32(r.u32()?),
            tag::U64 => Value::U64(r.u64()?),
            tag::F32 => Value::F32(r.u32()?),
            tag::F64 => Value::F64(r.u64()?),
            tag::CHAR => {
                let at = r.pos();
                Value::Char(char::from_u32(r.u32()?).ok_or(DecodeError::BadChar { offset: at })?)
            }
            tag::STRING => Value::String(r.string()?),
            tag::LIST | tag::TUPLE => {
                let n = r.count(1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(Value::decode_from(r, depth + 1)?);
                }
                if t == tag::LIST {
                    Value::List(items)
                } else {
                    Value::Tuple(items)
                }
            }
            tag::RECORD => {
                let n = r.count(5)?;
                let mut fields = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = r.string()?;
                    fields.push((name, Value::decode_from(r, depth + 1)?));
                }
                Value::Record(fields)
            }
            tag::VARIANT => {
                let case = r.string()?;
                let payload = decode_opt(r, depth)?;
                Value::Variant { case, payload }
            }
            tag::ENUM => Value::Enum(r.string()?),
            tag::OPTION => Value::Option(decode_opt(r, depth)?),
            tag::RESULT => {
                let at = r.pos();
                match r.u8()? {
                    0 => Value::Result(Ok(decode_opt(r, depth)?)),
                    1 => Value::Result(Err(decode_opt(r, depth)?)),
                    b => {
                        return Err(DecodeError::BadTag {
                            what: "result",
                            tag: b,
                            offset: at,
                        });
                    }
                }
            }
            tag::FLAGS => {
                let n = r.count(4)?;
                let mut names = Vec::with_capacity(n);
                for _ in 0..n {
                    names.push(r.string()?);
                }
                Value::Flags(names)
            }
            tag::BYTES => Value::Bytes(r.bytes()?.to_vec()),
            tag::BLOB => Value::Blob {
                sha256: r.digest()?,
                len: r.u64()?,
            },
            other => {
                return Err(DecodeError::BadTag {
                    what: "value",
                    tag: other,
                    offset,
                });
            }
        })
    }
}

/// Checks a value exactly as [`Value::decode_from`] does (same errors at the same
/// offsets) without building it: no allocation.
pub(crate) fn skip_value(r: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    let offset = r.pos();
    if depth >= MAX_VALUE_DEPTH {
        return Err(DecodeError::TooDeep { offset });
    }
    let t = r.u8()?;
    match t {
        tag::BOOL => {
            r.bool()?;
        }
        tag::S8 | tag::U8 => {
            r.u8()?;
        }
        tag::S16 | tag::U16 => {
            r.u16()?;
        }
        tag::S32 | tag::U32 | tag::F32 => {
            r.u32()?;
        }
        tag::S64 | tag::U64 | tag::F64 => {
            r.u64()?;
        }
        tag::CHAR => {
            let at = r.pos();
            char::from_u32(r.u32()?).ok_or(DecodeError::BadChar { offset: at })?;
        }
        tag::STRING | tag::ENUM => r.skip_string()?,
        tag::LIST | tag::TUPLE => {
            let n = r.count(1)?;
            for _ in 0..n {
                skip_value(r, depth + 1)?;
            }
        }
        tag::RECORD => {
            let n = r.count(5)?;
            for _ in 0..n {
                r.skip_string()?;
                skip_value(r, depth + 1)?;
            }
        }
        tag::VARIANT => {
            r.skip_string()?;
            skip_opt(r, depth)?;
        }
        tag::OPTION => skip_opt(r, depth)?,
        tag::RESULT => {
            let at = r.pos();
            match r.u8()? {
                0 | 1 => skip_opt(r, depth)?,
                b => {
                    return Err(DecodeError::BadTag {
                        what: "result",
                        tag: b,
                        offset: at,
                    });
                }
            }
        }
        tag::FLAGS => {
            let n = r.count(4)?;
            for _ in 0..n {
                r.skip_string()?;
            }
        }
        tag::BYTES => {
            r.bytes()?;
        }
        tag::BLOB => {
            r.digest()?;
            r.u64()?;
        }
        other => {
            return Err(DecodeError::BadTag {
                what: "value",
                tag: other,
                offset,
            });
        }
    }
    Ok(())
}

/// Checks an optional value as [`decode_opt`] and [`decode_opt_value`] do.
pub(crate) fn skip_opt(r: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    if r.option_tag()? {
        skip_value(r, depth + 1)?;
    }
    Ok(())
}

fn encode_opt(w: &mut Writer, v: Option<&Value>) {
    match v {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            v.encode_into(w);
        }
    }
}

fn decode_opt(r: &mut Reader<'_>, depth: usize) -> Result<Option<Box<Value>>, DecodeError> {
    if r.option_tag()? {
        Ok(Some(Box::new(Value::decode_from(r, depth + 1)?)))
    } else {
        Ok(None)
    }
}

pub(crate) fn decode_opt_value(
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    if r.option_tag()? {
        Ok(Some(Value::decode_from(r, depth + 1)?))
    } else {
        Ok(None)
    }
}

pub(crate) fn encode_opt_value(w: &mut Writer, v: Option<&Value>) {
    encode_opt(w, v);
}
