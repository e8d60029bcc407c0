//! Errors: [`FilterError`] for expressions that cannot be parsed,
//! [`EvalError`] for SQL evaluations that RocketMQ aborts with an exception.

/// Why a filter expression was rejected. Every variant that concerns a
/// place in the expression names its byte offset ([`FilterError::position`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The expression is longer than [`crate::MAX_EXPRESSION_LEN`].
    #[error("filter expression is {len} bytes long, more than the limit of {max}")]
    TooLong {
        /// Length of the expression in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A tag expression that is not `*` or empty but names no tag, such as
    /// `||` or `" || "`.
    #[error("tag expression names no tag: it has only `||` separators and blanks")]
    NoTags,
    /// An SQL92 expression that is empty or blank.
    #[error("SQL92 filter expression is empty")]
    EmptySql,
    /// A character that starts no token.
    #[error("unexpected character `{ch}` at byte {pos}")]
    UnexpectedChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        pos: usize,
    },
    /// A string literal without its closing quote.
    #[error("unterminated string literal starting at byte {pos}")]
    UnterminatedString {
        /// Byte offset of the opening quote.
        pos: usize,
    },
    /// A `/*` comment without its `*/`.
    #[error("unterminated comment starting at byte {pos}")]
    UnterminatedComment {
        /// Byte offset of the `/*`.
        pos: usize,
    },
    /// A token (or the end of the input) where the grammar wants something
    /// else.
    #[error("unexpected {found} at byte {pos}: expected {expected}")]
    UnexpectedToken {
        /// The token, as "token `…`" (shortened when long), or "end of input".
        found: String,
        /// Its byte offset.
        pos: usize,
        /// What would have been accepted there.
        expected: &'static str,
    },
    /// A numeric literal RocketMQ does not accept: an integer beyond `i64`,
    /// a float that overflows, or a float that is zero.
    #[error("number `{literal}` at byte {pos} {reason}")]
    InvalidNumber {
        /// The literal (shortened when long).
        literal: String,
        /// Its byte offset.
        pos: usize,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Parentheses, unary operators or operator chains nested more than
    /// [`crate::MAX_DEPTH`] levels deep.
    #[error("expression nested more than {max} levels deep at byte {pos}")]
    TooDeep {
        /// Byte offset where the limit was crossed.
        pos: usize,
        /// The limit.
        max: usize,
    },
    /// An `IN (…)` list with more than [`crate::MAX_IN_LIST`] values.
    #[error("IN list at byte {pos} has more than {max} values")]
    InListTooLong {
        /// Byte offset of the list's `(`.
        pos: usize,
        /// The limit.
        max: usize,
    },
    /// An expression of the wrong kind for its place, e.g. a string literal
    /// where a condition is needed, `NULL` compared with `=`, or a string
    /// compared with `>`. The same expressions are rejected by RocketMQ's
    /// parser.
    #[error("{problem} at byte {pos}")]
    Invalid {
        /// What is wrong.
        problem: String,
        /// Byte offset of the offending operand or operator.
        pos: usize,
    },
}

impl FilterError {
    /// Byte offset in the expression the error concerns, if any.
    pub fn position(&self) -> Option<usize> {
        match self {
            FilterError::TooLong { .. } | FilterError::NoTags | FilterError::EmptySql => None,
            FilterError::UnexpectedChar { pos, .. }
            | FilterError::UnterminatedString { pos }
            | FilterError::UnterminatedComment { pos }
            | FilterError::UnexpectedToken { pos, .. }
            | FilterError::InvalidNumber { pos, .. }
            | FilterError::TooDeep { pos, .. }
            | FilterError::InListTooLong { pos, .. }
            | FilterError::Invalid { pos, .. } => Some(*pos),
        }
    }
}

/// Why an SQL92 evaluation was aborted. RocketMQ throws an exception in
/// these cases; the broker logs it and does not deliver the message, even
/// when another branch of an `OR` would have matched (evaluation is left to
/// right with short-circuiting, so an earlier `TRUE` branch of an `OR`
/// prevents the error). [`crate::SqlFilter::matches`] returns `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A string (a property value) compared with a number could not be
    /// converted to the number's type (Java's `NumberFormatException`).
    #[error("a string compared with {target} is not a valid {target}")]
    NotANumber {
        /// `int`, `long` or `double`: the type of the other operand, whose
        /// Java parser RocketMQ applies to the string.
        target: &'static str,
    },
    /// Two strings compared with `>`, `>=`, `<` or `<=` that are not both
    /// numbers.
    #[error("strings compared with >, >=, < or <= are not both numbers")]
    StringOrdering,
    /// `TRUE`/`FALSE` on the left of `=` or `<>` and a string on the right:
    /// RocketMQ fails with a `ClassCastException`.
    #[error("a boolean compared with a string (RocketMQ fails with a ClassCastException)")]
    BooleanWithString,
    /// A value where a condition is needed. The parser never produces such
    /// an expression.
    #[error("a value was used as a condition")]
    NotACondition,
}
