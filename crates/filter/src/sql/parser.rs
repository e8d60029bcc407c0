//! Parser for RocketMQ's `SelectorParser.jj` grammar:
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
//! Parsed by operator precedence with explicit stacks rather than by
//! recursive descent, so that nesting costs heap, not stack: the levels
//! above are precedences (OR 1 … unary 5), every binary operator is
//! left-associative, the `IS`/`CONTAINS`/`IN` forms are postfix operators
//! of their level, and `BETWEEN … AND` brackets its two unary operands.
//! Nodes are built (and checked) by [`super::build`].

use super::ast::{CompareOp, Expr, MatchOp};
use super::build::{self, BinOp, Node};
use super::lexer::{Keyword, Tok, Token, shorten, tokenize};
use crate::{FilterError, MAX_DEPTH, MAX_EXPRESSION_LEN, MAX_IN_LIST};

/// Level of the unary operators.
const UNARY: u8 = 5;
/// Level of `=`, `<>` and `IS`.
const EQUALITY: u8 = 3;
/// Level of `>`… and `CONTAINS`, `BETWEEN`, `IN`.
const COMPARISON: u8 = 4;

/// Parses a whole SQL92 filter expression.
pub(crate) fn parse(src: &str) -> Result<Expr, FilterError> {
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(FilterError::TooLong { len: src.len(), max: MAX_EXPRESSION_LEN });
    }
    if src.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty() {
        return Err(FilterError::EmptySql);
    }
    let mut p = Parser { src, tokens: tokenize(src)?, next: 0, ops: Vec::new(), operands: Vec::new(), nesting: 0 };
    let node = p.run()?;
    Ok(build::condition(node)?.expr)
}

#[derive(Debug, Clone, Copy)]
enum Unary {
    Plus,
    Minus,
    Not,
}

/// An operator waiting for its operands, with its byte offset.
#[derive(Debug, Clone, Copy)]
enum Pending {
    LParen(usize),
    Prefix(Unary, usize),
    Binary(BinOp, usize),
    /// `BETWEEN` before its lower bound and `AND`.
    BetweenLow {
        negated: bool,
        pos: usize,
    },
    /// `BETWEEN … AND` before its upper bound.
    BetweenHigh {
        negated: bool,
        pos: usize,
    },
}

/// What the token after an operator or operand must be.
enum Next {
    Operand,
    Operator,
    Done,
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    next: usize,
    ops: Vec<Pending>,
    operands: Vec<Node>,
    /// Open parentheses and pending unary operators.
    nesting: usize,
}

impl Parser<'_> {
    fn token(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.next + ahead)
    }

    fn peek(&self) -> &Tok {
        self.token(0).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.token(0).map_or(self.src.len(), |t| t.start)
    }

    fn advance(&mut self) {
        if self.next + 1 < self.tokens.len() {
            self.next += 1;
        }
    }

    fn at(&self, k: Keyword) -> bool {
        *self.peek() == Tok::Keyword(k)
    }

    fn unexpected(&self, expected: &'static str) -> FilterError {
        let found = match self.token(0) {
            Some(t) if t.tok != Tok::Eof => format!("token `{}`", shorten(&self.src[t.start..t.end], 32)),
            _ => "end of input".to_owned(),
        };
        FilterError::UnexpectedToken { found, pos: self.pos(), expected }
    }

    fn expect(&mut self, tok: &Tok, expected: &'static str) -> Result<usize, FilterError> {
        if self.peek() != tok {
            return Err(self.unexpected(expected));
        }
        let pos = self.pos();
        self.advance();
        Ok(pos)
    }

    /// A string literal, taken out of the token list.
    fn string(&mut self) -> Result<String, FilterError> {
        let Some(Token { tok: Tok::Str(s), .. }) = self.tokens.get_mut(self.next) else {
            return Err(self.unexpected("a string literal"));
        };
        let s = std::mem::take(s);
        self.advance();
        Ok(s)
    }

    fn run(&mut self) -> Result<Node, FilterError> {
        loop {
            self.operand()?;
            loop {
                self.reduce(UNARY)?;
                match self.ops.last().copied() {
                    Some(Pending::BetweenHigh { negated, pos }) => {
                        self.ops.pop();
                        let (high, low, value) = (self.pop()?, self.pop()?, self.pop()?);
                        let n = build::between(value, low, high, negated, pos)?;
                        self.operands.push(n);
                        continue;
                    }
                    Some(Pending::BetweenLow { negated, pos }) => {
                        self.expect(&Tok::Keyword(Keyword::And), "AND")?;
                        self.ops.pop();
                        self.ops.push(Pending::BetweenHigh { negated, pos });
                        break;
                    }
                    _ => {}
                }
                match self.operator()? {
                    Next::Operand => break,
                    Next::Operator => {}
                    Next::Done => return self.pop(),
                }
            }
        }
    }

    fn pop(&mut self) -> Result<Node, FilterError> {
        // Never empty: every operator is pushed after its left operand.
        match self.operands.pop() {
            Some(n) => Ok(n),
            None => Err(self.unexpected("a value")),
        }
    }

    /// Unary operators and `(`s, then a literal or property.
    fn operand(&mut self) -> Result<(), FilterError> {
        loop {
            let pos = self.pos();
            let pending = match self.peek() {
                Tok::Plus => Pending::Prefix(Unary::Plus, pos),
                Tok::Minus => Pending::Prefix(Unary::Minus, pos),
                Tok::Keyword(Keyword::Not) => Pending::Prefix(Unary::Not, pos),
                Tok::LParen => Pending::LParen(pos),
                _ => break,
            };
            self.advance();
            self.nesting += 1;
            if self.nesting > MAX_DEPTH {
                return Err(FilterError::TooDeep { pos, max: MAX_DEPTH });
            }
            self.ops.push(pending);
        }
        let pos = self.pos();
        let expr = match self.peek() {
            Tok::Str(_) => Expr::String(self.string()?),
            Tok::Integer(n) => Expr::Integer(*n),
            Tok::Float(x) => Expr::Float(*x),
            Tok::Keyword(Keyword::True) => Expr::Bool(true),
            Tok::Keyword(Keyword::False) => Expr::Bool(false),
            Tok::Keyword(Keyword::Null) => Expr::Null,
            Tok::Ident(name) => Expr::Property(name.clone()),
            _ => return Err(self.unexpected("a value")),
        };
        if !matches!(expr, Expr::String(_)) {
            self.advance();
        }
        self.operands.push(Node::leaf(expr, pos));
        Ok(())
    }

    /// Builds the pending operators of level `min` and above, down to the
    /// nearest `(` or `BETWEEN`.
    fn reduce(&mut self, min: u8) -> Result<(), FilterError> {
        loop {
            let level = match self.ops.last() {
                Some(Pending::Prefix(..)) => UNARY,
                Some(Pending::Binary(op, _)) => op.level(),
                _ => return Ok(()),
            };
            if level < min {
                return Ok(());
            }
            let n = match self.ops.pop() {
                Some(Pending::Prefix(op, pos)) => {
                    self.nesting = self.nesting.saturating_sub(1);
                    let operand = self.pop()?;
                    match op {
                        Unary::Plus => operand,
                        Unary::Minus => build::prefix(false, operand, pos)?,
                        Unary::Not => build::prefix(true, operand, pos)?,
                    }
                }
                Some(Pending::Binary(op, pos)) => {
                    let right = self.pop()?;
                    let left = self.pop()?;
                    build::binary(op, left, right, pos)?
                }
                _ => return Ok(()),
            };
            self.operands.push(n);
        }
    }

    /// What may follow a complete operand here, for error messages.
    fn expected_operator(&self) -> &'static str {
        if self.ops.iter().any(|p| matches!(p, Pending::LParen(_))) {
            "an operator or `)`"
        } else {
            "an operator or the end of input"
        }
    }

    /// The token after a complete operand.
    fn operator(&mut self) -> Result<Next, FilterError> {
        let at = self.pos();
        let binary = match self.peek() {
            Tok::Keyword(Keyword::Or) => Some(BinOp::Or),
            Tok::Keyword(Keyword::And) => Some(BinOp::And),
            Tok::Eq => Some(BinOp::Compare(CompareOp::Eq)),
            Tok::Ne => Some(BinOp::Compare(CompareOp::Ne)),
            Tok::Gt => Some(BinOp::Compare(CompareOp::Gt)),
            Tok::Ge => Some(BinOp::Compare(CompareOp::Ge)),
            Tok::Lt => Some(BinOp::Compare(CompareOp::Lt)),
            Tok::Le => Some(BinOp::Compare(CompareOp::Le)),
            _ => None,
        };
        if let Some(op) = binary {
            self.reduce(op.level())?;
            self.advance();
            self.ops.push(Pending::Binary(op, at));
            return Ok(Next::Operand);
        }
        match self.peek() {
            Tok::Keyword(Keyword::Is) => {
                self.reduce(EQUALITY)?;
                self.advance();
                let negated = self.at(Keyword::Not);
                if negated {
                    self.advance();
                    self.expect(&Tok::Keyword(Keyword::Null), "NULL")?;
                } else {
                    self.expect(&Tok::Keyword(Keyword::Null), "NULL or NOT NULL")?;
                }
                let left = self.pop()?;
                self.operands.push(build::is_null(left, negated, at)?);
                Ok(Next::Operator)
            }
            Tok::RParen => {
                self.reduce(1)?;
                let Some(Pending::LParen(open)) = self.ops.last().copied() else {
                    return Err(self.unexpected(self.expected_operator()));
                };
                self.ops.pop();
                self.nesting = self.nesting.saturating_sub(1);
                self.advance();
                // Parentheses leave no node; errors about the operand
                // point at the `(`.
                let inner = self.pop()?;
                self.operands.push(Node { pos: open, ..inner });
                Ok(Next::Operator)
            }
            Tok::Eof => {
                self.reduce(1)?;
                if self.ops.is_empty() { Ok(Next::Done) } else { Err(self.unexpected(self.expected_operator())) }
            }
            _ => self.comparison_postfix(at),
        }
    }

    /// `[NOT] CONTAINS | STARTSWITH | ENDSWITH | BETWEEN | IN` (JavaCC's
    /// LOOKAHEAD(2) for the `NOT` forms).
    fn comparison_postfix(&mut self, at: usize) -> Result<Next, FilterError> {
        let keyword = |t: Option<&Token>| match t.map(|t| &t.tok) {
            Some(Tok::Keyword(
                k @ (Keyword::Contains | Keyword::StartsWith | Keyword::EndsWith | Keyword::Between | Keyword::In),
            )) => Some(*k),
            _ => None,
        };
        let (negated, k) = match (keyword(self.token(0)), keyword(self.token(1))) {
            (Some(k), _) => (false, k),
            (None, Some(k)) if self.at(Keyword::Not) => (true, k),
            _ => return Err(self.unexpected(self.expected_operator())),
        };
        self.reduce(COMPARISON)?;
        if negated {
            self.advance();
        }
        self.advance();
        let op = match k {
            Keyword::Between => {
                self.ops.push(Pending::BetweenLow { negated, pos: at });
                return Ok(Next::Operand);
            }
            Keyword::In => {
                let values = self.in_list()?;
                let left = self.pop()?;
                self.operands.push(build::in_list(left, values, negated, at)?);
                return Ok(Next::Operator);
            }
            Keyword::Contains => MatchOp::Contains,
            Keyword::StartsWith => MatchOp::StartsWith,
            _ => MatchOp::EndsWith,
        };
        let pattern = self.string()?;
        let left = self.pop()?;
        self.operands.push(build::matching(op, left, pattern, negated, at)?);
        Ok(Next::Operator)
    }

    /// `"(" string ("," string)* ")"`
    fn in_list(&mut self) -> Result<Vec<String>, FilterError> {
        let open = self.expect(&Tok::LParen, "`(`")?;
        let mut values = vec![self.string()?];
        loop {
            match self.peek() {
                Tok::Comma => {
                    self.advance();
                    if values.len() == MAX_IN_LIST {
                        return Err(FilterError::InListTooLong { pos: open, max: MAX_IN_LIST });
                    }
                    values.push(self.string()?);
                }
                Tok::RParen => {
                    self.advance();
                    return Ok(values);
                }
                _ => return Err(self.unexpected("`,` or `)`")),
            }
        }
    }
}
