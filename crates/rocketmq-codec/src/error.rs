//! Decoding errors.

/// Why bytes could not be decoded (or a command encoded).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// A frame announces more bytes than the configured maximum; the
    /// connection must be closed before reading its body.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced size.
        size: u64,
        /// Configured maximum.
        max: usize,
    },
    /// A length field points outside the bytes it belongs to.
    #[error("{what}: length {len} exceeds the {available} bytes left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Announced length.
        len: i64,
        /// Bytes actually left.
        available: usize,
    },
    /// The header's serialization type byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown header serialization type {0}")]
    UnknownSerializeType(u8),
    /// The JSON header is not a command object.
    #[error("malformed JSON header: {0}")]
    Json(String),
    /// A structurally invalid value.
    #[error("{0}")]
    Invalid(String),
    /// A required request header field is missing.
    #[error("missing header field `{0}`")]
    MissingField(&'static str),
    /// A request header field is present but does not parse.
    #[error("header field `{field}` has an invalid value `{value}`")]
    BadField {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;

/// Checks that `len` more bytes are available before anything is allocated.
pub(crate) fn need(what: &'static str, len: i64, available: usize) -> Result<usize> {
    match usize::try_from(len) {
        Ok(n) if n <= available => Ok(n),
        _ => Err(CodecError::Truncated { what, len, available }),
    }
}
