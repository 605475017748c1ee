//! Little-endian, length-prefixed primitives shared by the entry encoding and the
//! on-disk formats. The reader never panics: every read checks the remaining length.

use crate::error::DecodeError;

/// Appends primitives to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
    /// Set when a length did not fit in a u32; the encoding is then unusable.
    pub(crate) overflow: bool,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
            overflow: false,
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// A u32 length or count; one that does not fit marks the encoding as overflowed.
    pub(crate) fn len(&mut self, n: usize) {
        match u32::try_from(n) {
            Ok(n) => self.u32(n),
            Err(_) => {
                self.overflow = true;
                self.u32(u32::MAX);
            }
        }
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.raw(v);
    }

    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub(crate) fn digest(&mut self, v: &[u8; 32]) {
        self.raw(v);
    }

    pub(crate) fn opt_u64(&mut self, v: &Option<u64>) {
        match v {
            None => self.u8(0),
            Some(n) => {
                self.u8(1);
                self.u64(*n);
            }
        }
    }

    pub(crate) fn opt_digest(&mut self, v: &Option<[u8; 32]>) {
        match v {
            None => self.u8(0),
            Some(d) => {
                self.u8(1);
                self.digest(d);
            }
        }
    }
}

/// Reads primitives from a byte slice, refusing to read past its end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(DecodeError::UnexpectedEnd { offset: self.pos })?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::UnexpectedEnd { offset: self.pos })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let offset = self.pos;
        let s = self.take(N)?;
        <[u8; N]>::try_from(s).map_err(|_| DecodeError::UnexpectedEnd { offset })
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::BadTag {
                what: "bool",
                tag: b,
                offset,
            }),
        }
    }

    /// A u32 count of items that each take at least `min_item` bytes; refuses counts
    /// that cannot fit in what is left, so a hostile count never drives a huge allocation.
    pub(crate) fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = usize::try_from(self.u32()?).map_err(|_| DecodeError::TooLong { offset })?;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(DecodeError::TooLong { offset });
        }
        Ok(n)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let offset = self.pos;
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8 { offset })
    }

    /// Checks a string exactly as [`Reader::string`] does, without allocating.
    pub(crate) fn skip_string(&mut self) -> Result<(), DecodeError> {
        let offset = self.pos;
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(|_| ())
            .map_err(|_| DecodeError::BadUtf8 { offset })
    }

    pub(crate) fn digest(&mut self) -> Result<[u8; 32], DecodeError> {
        self.array()
    }

    pub(crate) fn key_id(&mut self) -> Result<[u8; 4], DecodeError> {
        self.array()
    }

    pub(crate) fn option_tag(&mut self) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::BadTag {
                what: "option",
                tag: b,
                offset,
            }),
        }
    }

    pub(crate) fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        if self.option_tag()? {
            Ok(Some(self.u64()?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn opt_digest(&mut self) -> Result<Option<[u8; 32]>, DecodeError> {
        if self.option_tag()? {
            Ok(Some(self.digest()?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { offset: self.pos })
        }
    }
}
