//! The syntax tree of an SQL92 filter, and its canonical text.
//!
//! The tree mirrors the expression objects RocketMQ's parser builds, with
//! three simplifications that do not change any result: parentheses leave
//! no node; a chain of `AND`s (or of `OR`s) is one node with all operands in
//! order (Kleene `AND`/`OR` evaluated left to right with short-circuiting is
//! associative, errors included); and a property used as a condition
//! (`a AND b`) has no `BooleanCast` node: the evaluator casts it by position.

use std::fmt::{self, Write};

/// `=`, `<>`, `>`, `>=`, `<`, `<=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl CompareOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
        }
    }

    /// `=` and `<>` (equality level of the grammar) as opposed to the
    /// ordering operators.
    pub fn is_equality(self) -> bool {
        matches!(self, CompareOp::Eq | CompareOp::Ne)
    }
}

/// `CONTAINS`, `STARTSWITH`, `ENDSWITH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `CONTAINS`
    Contains,
    /// `STARTSWITH`
    StartsWith,
    /// `ENDSWITH`
    EndsWith,
}

impl MatchOp {
    /// The keyword as written.
    pub fn keyword(self) -> &'static str {
        match self {
            MatchOp::Contains => "CONTAINS",
            MatchOp::StartsWith => "STARTSWITH",
            MatchOp::EndsWith => "ENDSWITH",
        }
    }
}

/// An SQL92 filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A message property (identifier).
    Property(String),
    /// A string literal.
    String(String),
    /// A decimal literal, never negative (a minus sign is [`Expr::Negate`]).
    /// Values up to `i32::MAX` are Java `Integer`s, larger ones `Long`s,
    /// which matters when they are compared with strings.
    Integer(i64),
    /// A floating-point literal: finite and positive.
    Float(f64),
    /// `TRUE` or `FALSE`.
    Bool(bool),
    /// `NULL`.
    Null,
    /// `-x`: the negated number, or null when `x` is not a number.
    Negate(Box<Expr>),
    /// `NOT x`. Binds tighter than comparisons, as in RocketMQ: `NOT a = 1`
    /// is `(NOT a) = 1`.
    Not(Box<Expr>),
    /// `x AND y AND …` (at least two operands, none of them `And`).
    And(Vec<Expr>),
    /// `x OR y OR …` (at least two operands, none of them `Or`).
    Or(Vec<Expr>),
    /// `left op right`.
    Compare {
        /// The operator.
        op: CompareOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `x IS NULL` / `x IS NOT NULL`.
    IsNull {
        /// The operand.
        expr: Box<Expr>,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `x BETWEEN low AND high` / `x NOT BETWEEN low AND high`.
    Between {
        /// The operand.
        expr: Box<Expr>,
        /// Lower bound.
        low: Box<Expr>,
        /// Upper bound.
        high: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `property IN ('a', …)` / `property NOT IN (…)`.
    In {
        /// The property (RocketMQ allows nothing else on the left).
        property: String,
        /// The list, as written.
        values: Vec<String>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `x CONTAINS 's'`, `x NOT STARTSWITH 's'`, ….
    Match {
        /// The operator.
        op: MatchOp,
        /// The operand.
        expr: Box<Expr>,
        /// The string literal.
        pattern: String,
        /// `NOT CONTAINS` etc.
        negated: bool,
    },
}

/// Grammar levels, loosest first.
const OR: u8 = 1;
const AND: u8 = 2;
const EQUALITY: u8 = 3;
const COMPARISON: u8 = 4;
const UNARY: u8 = 5;
const PRIMARY: u8 = 6;

impl Expr {
    /// The grammar level the expression is parsed at.
    fn level(&self) -> u8 {
        match self {
            Expr::Or(_) => OR,
            Expr::And(_) => AND,
            Expr::IsNull { .. } => EQUALITY,
            Expr::Compare { op, .. } if op.is_equality() => EQUALITY,
            Expr::Compare { .. } | Expr::Between { .. } | Expr::In { .. } | Expr::Match { .. } => COMPARISON,
            Expr::Not(_) | Expr::Negate(_) => UNARY,
            Expr::Property(_) | Expr::String(_) | Expr::Integer(_) | Expr::Float(_) | Expr::Bool(_) | Expr::Null => {
                PRIMARY
            }
        }
    }

    /// Height of the tree: 1 for a literal, property or `IN`, one more than
    /// the highest operand otherwise. The parser keeps it at most
    /// [`crate::MAX_DEPTH`].
    pub fn depth(&self) -> usize {
        let highest = |items: &[&Expr]| items.iter().map(|e| e.depth()).max().unwrap_or(0);
        1 + match self {
            Expr::Property(_)
            | Expr::String(_)
            | Expr::Integer(_)
            | Expr::Float(_)
            | Expr::Bool(_)
            | Expr::Null
            | Expr::In { .. } => 0,
            Expr::Negate(e) | Expr::Not(e) => e.depth(),
            Expr::IsNull { expr, .. } | Expr::Match { expr, .. } => expr.depth(),
            Expr::And(items) | Expr::Or(items) => items.iter().map(Expr::depth).max().unwrap_or(0),
            Expr::Compare { left, right, .. } => highest(&[left, right]),
            Expr::Between { expr, low, high, .. } => highest(&[expr, low, high]),
        }
    }
}

/// Writes `s` as a string literal.
pub(crate) fn write_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('\'')?;
    for (i, part) in s.split('\'').enumerate() {
        if i > 0 {
            f.write_str("''")?;
        }
        f.write_str(part)?;
    }
    f.write_char('\'')
}

/// Writes `e`, in parentheses if it binds looser than `min`.
fn child(f: &mut fmt::Formatter<'_>, e: &Expr, min: u8) -> fmt::Result {
    if e.level() < min { write!(f, "({e})") } else { write!(f, "{e}") }
}

fn joined(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str, min: u8) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        child(f, item, min)?;
    }
    Ok(())
}

fn not(negated: bool) -> &'static str {
    if negated { "NOT " } else { "" }
}

impl fmt::Display for Expr {
    /// Text that parses back to the same tree, with keywords in upper case
    /// and only the parentheses the grammar needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Property(name) => f.write_str(name),
            Expr::String(s) => write_string(f, s),
            Expr::Integer(n) => write!(f, "{n}"),
            // Debug is the shortest text that reads back to the same value,
            // always with a `.` or an exponent, so it lexes as a float.
            Expr::Float(x) => write!(f, "{x:?}"),
            Expr::Bool(true) => f.write_str("TRUE"),
            Expr::Bool(false) => f.write_str("FALSE"),
            Expr::Null => f.write_str("NULL"),
            Expr::Negate(e) => {
                // `--` would start a comment; a blank, unlike parentheses,
                // adds no nesting.
                f.write_str(if matches!(**e, Expr::Negate(_)) { "- " } else { "-" })?;
                child(f, e, UNARY)
            }
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                child(f, e, UNARY)
            }
            Expr::And(items) => joined(f, items, " AND ", EQUALITY),
            Expr::Or(items) => joined(f, items, " OR ", AND),
            Expr::Compare { op, left, right } => {
                let (l, r) = if op.is_equality() { (EQUALITY, COMPARISON) } else { (COMPARISON, UNARY) };
                child(f, left, l)?;
                write!(f, " {} ", op.symbol())?;
                child(f, right, r)
            }
            Expr::IsNull { expr, negated } => {
                child(f, expr, EQUALITY)?;
                write!(f, " IS {}NULL", not(*negated))
            }
            Expr::Between { expr, low, high, negated } => {
                child(f, expr, COMPARISON)?;
                write!(f, " {}BETWEEN ", not(*negated))?;
                child(f, low, UNARY)?;
                f.write_str(" AND ")?;
                child(f, high, UNARY)
            }
            Expr::In { property, values, negated } => {
                write!(f, "{property} {}IN (", not(*negated))?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_string(f, v)?;
                }
                f.write_char(')')
            }
            Expr::Match { op, expr, pattern, negated } => {
                child(f, expr, COMPARISON)?;
                write!(f, " {}{} ", not(*negated), op.keyword())?;
                write_string(f, pattern)
            }
        }
    }
}
