//! Building syntax-tree nodes with the checks RocketMQ makes while it builds
//! expressions (`SelectorParser.asBooleanExpression` and the
//! `ComparisonExpression.create*` factories), and the depth limit.

use super::ast::{CompareOp, Expr, MatchOp};
use crate::{FilterError, MAX_DEPTH};

/// An expression with where it starts and how high its tree is.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) expr: Expr,
    pub(crate) pos: usize,
    pub(crate) depth: usize,
}

impl Node {
    pub(crate) fn leaf(expr: Expr, pos: usize) -> Node {
        Node { expr, pos, depth: 1 }
    }
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Compare(CompareOp),
}

impl BinOp {
    /// Grammar level: OR 1, AND 2, `=`/`<>` 3, `>`… 4 (unary is 5).
    pub(crate) fn level(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Compare(op) if op.is_equality() => 3,
            BinOp::Compare(_) => 4,
        }
    }
}

/// A node over children of height `below`, checked against [`MAX_DEPTH`]
/// (reported at `at`, the operator).
fn node(expr: Expr, pos: usize, below: usize, at: usize) -> Result<Node, FilterError> {
    let depth = below + 1;
    if depth > MAX_DEPTH {
        return Err(FilterError::TooDeep { pos: at, max: MAX_DEPTH });
    }
    Ok(Node { expr, pos, depth })
}

fn invalid(problem: String, pos: usize) -> FilterError {
    FilterError::Invalid { problem, pos }
}

/// What an operand is, for error messages.
fn describe(e: &Expr) -> &'static str {
    match e {
        Expr::Property(_) => "a property",
        Expr::String(_) => "a string literal",
        Expr::Integer(_) | Expr::Float(_) => "a number",
        Expr::Bool(true) => "TRUE",
        Expr::Bool(false) => "FALSE",
        Expr::Null => "NULL",
        Expr::Negate(_) => "a negation",
        _ => "a condition",
    }
}

fn is_constant(e: &Expr) -> bool {
    matches!(e, Expr::String(_) | Expr::Integer(_) | Expr::Float(_) | Expr::Bool(_) | Expr::Null)
}

/// RocketMQ's `BooleanExpression`: conditions and the constants `TRUE`,
/// `FALSE` and `NULL`.
fn is_boolean(e: &Expr) -> bool {
    !matches!(e, Expr::Property(_) | Expr::String(_) | Expr::Integer(_) | Expr::Float(_) | Expr::Negate(_))
}

/// `asBooleanExpression`: a condition, or a property (cast when evaluated).
pub(crate) fn condition(n: Node) -> Result<Node, FilterError> {
    if is_boolean(&n.expr) || matches!(n.expr, Expr::Property(_)) {
        Ok(n)
    } else {
        Err(invalid(format!("expected a condition but found {}", describe(&n.expr)), n.pos))
    }
}

/// `checkEqualOperand` and `checkEqualOperandCompatability`.
fn check_equality(op: CompareOp, left: &Node, right: &Node) -> Result<(), FilterError> {
    for n in [left, right] {
        if n.expr == Expr::Null {
            return Err(invalid(format!("NULL cannot be compared with `{}` (use IS NULL)", op.symbol()), n.pos));
        }
    }
    if matches!(left.expr, Expr::Bool(_)) && is_constant(&right.expr) && !is_boolean(&right.expr) {
        let problem = format!("{} cannot be compared with {}", describe(&left.expr), describe(&right.expr));
        return Err(invalid(problem, left.pos));
    }
    Ok(())
}

/// `checkLessThanOperand`: only numbers, properties and negations.
fn check_ordered(n: &Node, op: &str) -> Result<(), FilterError> {
    if matches!(n.expr, Expr::Integer(_) | Expr::Float(_)) || !(is_constant(&n.expr) || is_boolean(&n.expr)) {
        return Ok(());
    }
    Err(invalid(format!("{} cannot be compared with `{op}`", describe(&n.expr)), n.pos))
}

/// `createBetween`: constant numeric bounds must not be reversed. (Other
/// constants are rejected by [`check_ordered`].)
fn check_bounds(low: &Node, high: &Node) -> Result<(), FilterError> {
    let reversed = match (&low.expr, &high.expr) {
        (Expr::Integer(l), Expr::Integer(h)) => h < l,
        (Expr::Integer(l), Expr::Float(h)) => *h < *l as f64,
        (Expr::Float(l), Expr::Integer(h)) => (*h as f64) < *l,
        (Expr::Float(l), Expr::Float(h)) => h < l,
        _ => false,
    };
    if reversed {
        let problem = format!("BETWEEN lower bound {} is greater than upper bound {}", low.expr, high.expr);
        return Err(invalid(problem, low.pos));
    }
    Ok(())
}

/// The operands of an `AND` (`or == false`) or `OR` node, with nested
/// nodes of the same operator spliced in, and the height below the node.
fn flatten(n: Node, or: bool, items: &mut Vec<Expr>) -> usize {
    match n.expr {
        Expr::Or(inner) if or => {
            items.extend(inner);
            n.depth - 1
        }
        Expr::And(inner) if !or => {
            items.extend(inner);
            n.depth - 1
        }
        expr => {
            items.push(expr);
            n.depth
        }
    }
}

/// `left op right`, operator at byte `at`.
pub(crate) fn binary(op: BinOp, left: Node, right: Node, at: usize) -> Result<Node, FilterError> {
    let pos = left.pos;
    match op {
        BinOp::Or | BinOp::And => {
            let or = op == BinOp::Or;
            let (left, right) = (condition(left)?, condition(right)?);
            let (mut items, below) = match left.expr {
                Expr::Or(items) if or => (items, left.depth - 1),
                Expr::And(items) if !or => (items, left.depth - 1),
                expr => (vec![expr], left.depth),
            };
            let below = below.max(flatten(right, or, &mut items));
            node(if or { Expr::Or(items) } else { Expr::And(items) }, pos, below, at)
        }
        BinOp::Compare(op) => {
            if op.is_equality() {
                check_equality(op, &left, &right)?;
            } else {
                check_ordered(&left, op.symbol())?;
                check_ordered(&right, op.symbol())?;
            }
            let below = left.depth.max(right.depth);
            node(Expr::Compare { op, left: Box::new(left.expr), right: Box::new(right.expr) }, pos, below, at)
        }
    }
}

/// `NOT x` (`not == true`) or `-x`, operator at byte `at`.
pub(crate) fn prefix(not: bool, operand: Node, at: usize) -> Result<Node, FilterError> {
    let below = operand.depth;
    if not {
        node(Expr::Not(Box::new(condition(operand)?.expr)), at, below, at)
    } else {
        node(Expr::Negate(Box::new(operand.expr)), at, below, at)
    }
}

/// `x [NOT] BETWEEN low AND high`, `BETWEEN` at byte `at`.
pub(crate) fn between(value: Node, low: Node, high: Node, negated: bool, at: usize) -> Result<Node, FilterError> {
    for n in [&value, &low, &high] {
        check_ordered(n, "BETWEEN")?;
    }
    if !negated {
        check_bounds(&low, &high)?;
    }
    let (pos, below) = (value.pos, value.depth.max(low.depth).max(high.depth));
    let (expr, low, high) = (Box::new(value.expr), Box::new(low.expr), Box::new(high.expr));
    node(Expr::Between { expr, low, high, negated }, pos, below, at)
}

/// `property [NOT] IN (values)`, `IN` at byte `at`.
pub(crate) fn in_list(left: Node, values: Vec<String>, negated: bool, at: usize) -> Result<Node, FilterError> {
    let Expr::Property(property) = left.expr else {
        let problem = format!("IN needs a property on its left, not {}", describe(&left.expr));
        return Err(invalid(problem, left.pos));
    };
    node(Expr::In { property, values, negated }, left.pos, 0, at)
}

/// `x [NOT] CONTAINS 'pattern'` etc., operator at byte `at`.
pub(crate) fn matching(
    op: MatchOp,
    left: Node,
    pattern: String,
    negated: bool,
    at: usize,
) -> Result<Node, FilterError> {
    let (pos, below) = (left.pos, left.depth);
    node(Expr::Match { op, expr: Box::new(left.expr), pattern, negated }, pos, below, at)
}

/// `x IS [NOT] NULL`, `IS` at byte `at`.
pub(crate) fn is_null(left: Node, negated: bool, at: usize) -> Result<Node, FilterError> {
    let (pos, below) = (left.pos, left.depth);
    node(Expr::IsNull { expr: Box::new(left.expr), negated }, pos, below, at)
}
