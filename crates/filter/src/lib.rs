//! # fjord-filter: RocketMQ subscription filters for Fjord
//!
//! A RocketMQ consumer subscribes to a topic with an expression of one of
//! two kinds, and the broker delivers only the messages it matches. This
//! crate parses and evaluates both kinds; it is pure (no I/O, no state)
//! and every input is bounded, because expressions come from clients.
//!
//! ```
//! use fjord_filter::{Filter, FilterKind, MessageView};
//!
//! struct Msg;
//! impl MessageView for Msg {
//!     fn tag(&self) -> Option<&str> { Some("TagA") }
//!     fn property(&self, name: &str) -> Option<&str> {
//!         match name { "TAGS" => Some("TagA"), "price" => Some("12"), _ => None }
//!     }
//! }
//!
//! let tags = Filter::parse(FilterKind::Tag, "TagA || TagB")?;
//! assert!(tags.matches(&Msg));
//! let sql = Filter::parse(FilterKind::Sql92, "price > 10 AND TAGS IN ('TagA')")?;
//! assert!(sql.matches(&Msg));
//! # Ok::<(), fjord_filter::FilterError>(())
//! ```
//!
//! ## Tag expressions ([`TagExpression`])
//!
//! As RocketMQ's `FilterAPI.buildSubscriptionData` and the consumer's tag
//! check: `*` (exactly) or the empty string subscribes to everything,
//! messages without a tag included. Anything else is split on `||`, each
//! part trimmed (Java's `trim`: chars up to U+0020) and empty parts
//! dropped; a message matches when its tag equals one of the parts
//! (case-sensitive). A message without a tag matches only `*`.
//!
//! ## SQL92 expressions ([`SqlFilter`])
//!
//! RocketMQ's `filter` module (`SelectorParser.jj`, derived from ActiveMQ's
//! JMS selectors), reimplemented to give the same answer for every message.
//!
//! **Tokens.** Keywords, case-insensitive: `AND OR NOT BETWEEN IN IS NULL
//! TRUE FALSE CONTAINS STARTSWITH ENDSWITH`. Identifiers
//! `[A-Za-z_$][A-Za-z0-9_$]*` (no `.`: RocketMQ's grammar has none).
//! Strings in single quotes, `''` for a quote. Integers `0` or
//! `[1-9][0-9]*` with an optional `L` (must fit an `i64`); floats `1.5`,
//! `1.`, `.5`, `1e3`, `1.5E-3` (must be finite and, as in RocketMQ, not
//! zero). There are no negative literals: `-5` is negation applied to `5`.
//! Blanks are space, tab, CR, LF and form feed; `-- …` comments run to a
//! line end (required) and `/* … */` comments are allowed anywhere between
//! tokens.
//!
//! **Grammar**, loosest first; binary operators are left-associative:
//!
//! ```text
//! or         := and (OR and)*
//! and        := equality (AND equality)*
//! equality   := comparison ( ("=" | "<>") comparison | IS NULL | IS NOT NULL )*
//! comparison := unary ( (">" | ">=" | "<" | "<=") unary
//!                     | [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string
//!                     | [NOT] BETWEEN unary AND unary
//!                     | [NOT] IN "(" string ("," string)* ")" )*
//! unary      := "+" unary | "-" unary | NOT unary | primary
//! primary    := string | integer | float | TRUE | FALSE | NULL | identifier | "(" or ")"
//! ```
//!
//! `NOT` binds tighter than comparisons: `NOT a = 1` is `(NOT a) = 1`, which
//! never matches; write `NOT (a = 1)` or `a <> 1`.
//!
//! **Checks at parse time** (all RocketMQ's): the whole expression and the
//! operands of `AND`, `OR` and `NOT` must be conditions (comparisons,
//! logic, `TRUE`, `FALSE`, `NULL`) or properties, not string or number
//! literals or negations; `=`/`<>` reject `NULL` operands and `TRUE = 1`
//! (a boolean literal left of a string or number literal); `>`, `>=`, `<`,
//! `<=` and `BETWEEN` take only numbers, properties and negations; `IN`
//! needs a property on its left; `BETWEEN` with two number literals needs
//! `low <= high` (`NOT BETWEEN` does not).
//!
//! **Values.** Message properties are strings, looked up with
//! [`MessageView::property`]; a missing property is null. RocketMQ stores a
//! message's tag as the property `TAGS`, so filters may use `TAGS`; the
//! broker must serve it from `property("TAGS")`. Integer literals up to
//! `i32::MAX` are Java `Integer`s, larger ones `Long`s; float literals are
//! `Double`s. `-x` negates a number and is null for anything else.
//!
//! **Comparisons** (`ComparisonExpression`):
//! - `=`: null = null is TRUE; null on the left only is null, on the right
//!   only FALSE. Two strings compare as strings; a string against a number
//!   is parsed with the number's Java parser (`Integer.valueOf`,
//!   `Long.valueOf` or `Double.valueOf`), so `a = 5` with `a` = `"5.0"`
//!   fails; a string against `TRUE`/`FALSE` is true when it equals `true`
//!   ignoring case; `TRUE = a` with `a` set fails (RocketMQ casts the
//!   wrong operand); other mixes (a boolean against a number) are FALSE. `a <> b` is
//!   `NOT (a = b)`.
//! - `>`, `>=`, `<`, `<=`: null if either side is null. Two strings (two
//!   properties) are both parsed as doubles; otherwise as for `=`.
//! - `BETWEEN l AND h` is `x >= l AND x <= h`; `NOT BETWEEN` is
//!   `x < l OR x > h`.
//! - `IN`: null for a missing property, else membership (string equality).
//! - `CONTAINS`, `STARTSWITH`, `ENDSWITH` and their `NOT` forms are FALSE
//!   when the value is null or not a string, or the pattern is empty.
//! - `IS NULL`, `IS NOT NULL` are never null.
//! - A property used as a condition (`a`, `NOT a`, `a AND …`) is null when
//!   missing and otherwise FALSE (a string is not a boolean), so `NOT a`
//!   means "a is set".
//!
//! **Logic** is three-valued with left-to-right short-circuiting: FALSE
//! AND x = FALSE, null AND TRUE = null, TRUE OR x = TRUE, null OR FALSE =
//! null, NOT null = null. A message matches only when the result is TRUE.
//!
//! **Evaluation errors.** Where RocketMQ throws (a string that does not
//! parse as the number it is compared with, two non-numeric strings
//! compared with `>`, `TRUE = a` with `a` set), the whole evaluation stops
//! and the message does not match, even if a later `OR` branch would be
//! TRUE; an earlier TRUE branch short-circuits and avoids the error.
//! [`SqlFilter::evaluate`] returns the [`EvalError`].
//!
//! ## Limits
//!
//! Expressions come from clients, so everything is bounded. Rejected:
//! expressions longer than [`MAX_EXPRESSION_LEN`] bytes; nesting deeper
//! than [`MAX_DEPTH`], counting open parentheses plus pending unary
//! operators, and separately the height of the syntax tree (every
//! operator adds a level, except that a chain of `AND`s, or of `OR`s, is
//! one); `IN` lists longer than [`MAX_IN_LIST`]. The SQL92 parser is not
//! recursive (operator precedence with explicit stacks), so no input can
//! overflow the stack; evaluation, printing and dropping recurse at most
//! [`MAX_DEPTH`] deep (about 64 KiB of stack in a release build). Time and
//! memory are linear in the expression's length. Parsing never panics;
//! errors are [`FilterError`]s that name the problem and its byte offset.
//!
//! ## Deliberate deviations from RocketMQ
//!
//! - Text after a complete SQL expression is an error. RocketMQ's grammar
//!   has no end-of-input rule and silently ignores it (`a = 1 b = 2`
//!   filters on `a = 1` only).
//! - Tag expressions with no tag left after trimming (`" || "`, blanks)
//!   are errors; RocketMQ rejects only `||`-only strings and accepts the
//!   rest as a subscription that matches nothing.
//! - Tags are compared exactly. RocketMQ's broker compares tag hash codes
//!   and leaves it to the client to drop collisions.
//! - Java's number parsers accept non-ASCII Unicode digits and
//!   `Double.valueOf` accepts hexadecimal floats (`0x1p3`); here property
//!   values with those are not numbers (an evaluation error).
//! - The limits above; RocketMQ has none.
//! - Error messages are this crate's own.

mod error;
pub mod sql;
mod tag;

use std::fmt;

pub use error::{EvalError, FilterError};
pub use sql::SqlFilter;
pub use tag::{SUB_ALL, TagExpression};

/// Longest accepted expression, in bytes (64 KiB).
pub const MAX_EXPRESSION_LEN: usize = 64 * 1024;
/// Deepest accepted nesting of an SQL92 expression.
pub const MAX_DEPTH: usize = 100;
/// Most values in one `IN (…)` list.
pub const MAX_IN_LIST: usize = 1024;

/// What a filter needs to know about a message.
pub trait MessageView {
    /// The message's tag, if it has one.
    fn tag(&self) -> Option<&str>;
    /// A user or system property. RocketMQ exposes the tag to SQL92
    /// filters as the property `TAGS`, so implementations should answer
    /// `property("TAGS")` with the tag.
    fn property(&self, name: &str) -> Option<&str>;
}

/// The expression type of a subscription (RocketMQ's `ExpressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterKind {
    /// `TAG`: tag names separated by `||`, or `*`.
    Tag,
    /// `SQL92`: a condition on message properties.
    Sql92,
}

impl FilterKind {
    /// The kind named by a subscription's expression type, as RocketMQ
    /// reads it: absent, empty or `TAG` is [`FilterKind::Tag`], `SQL92` is
    /// [`FilterKind::Sql92`] (both case-sensitive), anything else `None`.
    pub fn from_expression_type(expression_type: Option<&str>) -> Option<FilterKind> {
        match expression_type {
            None | Some("" | "TAG") => Some(FilterKind::Tag),
            Some("SQL92") => Some(FilterKind::Sql92),
            Some(_) => None,
        }
    }

    /// RocketMQ's name for the kind: `TAG` or `SQL92`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKind::Tag => "TAG",
            FilterKind::Sql92 => "SQL92",
        }
    }
}

/// A parsed subscription filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every message (the tag expression `*` or empty).
    All,
    /// Messages whose tag is one of a set.
    Tag(TagExpression),
    /// Messages whose properties satisfy an SQL92 condition.
    Sql(SqlFilter),
}

impl Filter {
    /// Parses a subscription expression of the given kind. An empty SQL92
    /// expression is an error (RocketMQ: "Expression can't be null").
    pub fn parse(kind: FilterKind, expression: &str) -> Result<Filter, FilterError> {
        match kind {
            FilterKind::Tag => {
                let tags = TagExpression::parse(expression)?;
                Ok(if tags.is_all() { Filter::All } else { Filter::Tag(tags) })
            }
            FilterKind::Sql92 => SqlFilter::parse(expression).map(Filter::Sql),
        }
    }

    /// Whether the message is delivered to the subscriber.
    pub fn matches(&self, m: &dyn MessageView) -> bool {
        match self {
            Filter::All => true,
            Filter::Tag(tags) => tags.matches(m.tag()),
            Filter::Sql(sql) => sql.matches(m),
        }
    }

    /// Whether every message matches without looking at it.
    pub fn is_all(&self) -> bool {
        matches!(self, Filter::All)
    }
}

impl fmt::Display for Filter {
    /// The canonical expression (`*` for [`Filter::All`]); parsed with the
    /// same kind it gives back an equal filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::All => f.write_str(SUB_ALL),
            Filter::Tag(tags) => tags.fmt(f),
            Filter::Sql(sql) => sql.fmt(f),
        }
    }
}
