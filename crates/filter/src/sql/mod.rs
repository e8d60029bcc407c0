//! SQL92 filters: RocketMQ's `filter` module (`SelectorParser.jj` and the
//! `org.apache.rocketmq.filter.expression` classes), reimplemented.
//!
//! See the crate documentation for the grammar and the semantics.

mod ast;
mod build;
mod eval;
mod lexer;
mod parser;

use std::fmt;

pub use ast::{CompareOp, Expr, MatchOp};

use crate::{EvalError, FilterError, MessageView};

/// A parsed SQL92 filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    expr: Expr,
}

impl SqlFilter {
    /// Parses an SQL92 filter expression, with RocketMQ's grammar and
    /// parse-time checks and this crate's limits
    /// ([`crate::MAX_EXPRESSION_LEN`], [`crate::MAX_DEPTH`],
    /// [`crate::MAX_IN_LIST`]).
    pub fn parse(expression: &str) -> Result<Self, FilterError> {
        parser::parse(expression).map(|expr| SqlFilter { expr })
    }

    /// Whether the message is delivered: the expression evaluates to TRUE.
    /// FALSE, unknown (null) and evaluation errors all mean no.
    pub fn matches(&self, m: &dyn MessageView) -> bool {
        matches!(self.evaluate(m), Ok(Some(true)))
    }

    /// The three-valued result (`None` is SQL's unknown, Java's `null`), or
    /// the error that made RocketMQ abort the evaluation (the broker logs
    /// it and does not deliver the message).
    pub fn evaluate(&self, m: &dyn MessageView) -> Result<Option<bool>, EvalError> {
        eval::evaluate(&self.expr, m)
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether `name` can be used as a property name in an expression as is
    /// (an identifier that is not a reserved word), so [`Expr::Property`]
    /// with it displays as text that parses back.
    pub fn is_property_name(name: &str) -> bool {
        let mut bytes = name.bytes();
        let start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b'$';
        bytes.next().is_some_and(start) && bytes.all(|b| start(b) || b.is_ascii_digit()) && !lexer::is_keyword(name)
    }
}

impl fmt::Display for SqlFilter {
    /// Canonical text: parses back to an equal filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}
