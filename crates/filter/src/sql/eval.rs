//! Evaluation with RocketMQ's semantics: Java values (`String`, `Integer`,
//! `Long`, `Double`, `Boolean`, `null`), `ComparisonExpression.__compare`'s
//! conversions, Kleene logic, and exceptions as [`EvalError`].

use std::cmp::Ordering;

use super::ast::{CompareOp, Expr, MatchOp};
use crate::{EvalError, MessageView};

/// A Java value. Property values are always strings; numbers come from
/// literals and negation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Null,
    Str(&'a str),
    Int(i32),
    Long(i64),
    Double(f64),
    Bool(bool),
}

/// `Some(b)`: TRUE or FALSE; `None`: null (unknown).
type Truth = Option<bool>;

/// Evaluates a condition the way RocketMQ's `BooleanExpression.evaluate`
/// does.
pub(crate) fn evaluate(e: &Expr, m: &dyn MessageView) -> Result<Truth, EvalError> {
    condition(e, m)
}

/// The value of `e` where a condition is needed: after
/// `asBooleanExpression`, so a property is cast (`BooleanCast`: null stays
/// null, a string is FALSE).
fn condition(e: &Expr, m: &dyn MessageView) -> Result<Truth, EvalError> {
    match e {
        Expr::Property(name) => Ok(m.property(name).map(|_| false)),
        Expr::Bool(b) => Ok(Some(*b)),
        Expr::Null => Ok(None),
        Expr::String(_) | Expr::Integer(_) | Expr::Float(_) | Expr::Negate(_) => Err(EvalError::NotACondition),
        Expr::Not(x) => Ok(condition(x, m)?.map(|b| !b)),
        Expr::And(items) => kleene(items.iter().map(|x| condition(x, m)), false),
        Expr::Or(items) => kleene(items.iter().map(|x| condition(x, m)), true),
        Expr::Compare { op: CompareOp::Eq, left, right } => equal(value(left, m)?, value(right, m)?),
        Expr::Compare { op: CompareOp::Ne, left, right } => Ok(equal(value(left, m)?, value(right, m)?)?.map(|b| !b)),
        Expr::Compare { op, left, right } => ordered(*op, left, right, m),
        // `x = NULL` without the parse-time check: TRUE or FALSE, never null.
        Expr::IsNull { expr, negated } => Ok(Some((value(expr, m)? == Val::Null) != *negated)),
        Expr::Between { expr, low, high, negated: false } => {
            let parts = [(CompareOp::Ge, low), (CompareOp::Le, high)];
            kleene(parts.into_iter().map(|(op, bound)| ordered(op, expr, bound, m)), false)
        }
        Expr::Between { expr, low, high, negated: true } => {
            let parts = [(CompareOp::Lt, low), (CompareOp::Gt, high)];
            kleene(parts.into_iter().map(|(op, bound)| ordered(op, expr, bound, m)), true)
        }
        Expr::In { property, values, negated } => {
            Ok(m.property(property).map(|v| values.iter().any(|x| x == v) != *negated))
        }
        Expr::Match { op, expr, pattern, negated } => {
            // An empty pattern and a value that is null or not a string are
            // FALSE, for the NOT forms too.
            if pattern.is_empty() {
                return Ok(Some(false));
            }
            Ok(Some(match value(expr, m)? {
                Val::Str(s) => {
                    let found = match op {
                        MatchOp::Contains => s.contains(pattern.as_str()),
                        MatchOp::StartsWith => s.starts_with(pattern.as_str()),
                        MatchOp::EndsWith => s.ends_with(pattern.as_str()),
                    };
                    found != *negated
                }
                _ => false,
            }))
        }
    }
}

/// `AND` (`short == false`) or `OR` (`short == true`) over operands
/// evaluated in order, stopping at the first operand equal to `short`.
fn kleene(operands: impl Iterator<Item = Result<Truth, EvalError>>, short: bool) -> Result<Truth, EvalError> {
    let mut unknown = false;
    for t in operands {
        match t? {
            Some(b) if b == short => return Ok(Some(short)),
            Some(_) => {}
            None => unknown = true,
        }
    }
    Ok(if unknown { None } else { Some(!short) })
}

/// `Expression.evaluate`: the plain value (a property is its string).
fn value<'a>(e: &'a Expr, m: &'a dyn MessageView) -> Result<Val<'a>, EvalError> {
    Ok(match e {
        Expr::Property(name) => m.property(name).map_or(Val::Null, Val::Str),
        Expr::String(s) => Val::Str(s),
        Expr::Integer(n) => i32::try_from(*n).map_or(Val::Long(*n), Val::Int),
        Expr::Float(x) => Val::Double(*x),
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Null => Val::Null,
        Expr::Negate(x) => match value(x, m)? {
            Val::Int(n) => Val::Int(n.wrapping_neg()),
            Val::Long(n) => Val::Long(n.wrapping_neg()),
            Val::Double(x) => Val::Double(-x),
            _ => Val::Null,
        },
        _ => condition(e, m)?.map_or(Val::Null, Val::Bool),
    })
}

/// `doCreateEqual`: null only when the left side is null and the right is
/// not; both null is TRUE, only the right null is FALSE.
fn equal(l: Val<'_>, r: Val<'_>) -> Result<Truth, EvalError> {
    Ok(match (l, r) {
        (Val::Null, Val::Null) => Some(true),
        (Val::Null, _) => None,
        (_, Val::Null) => Some(false),
        (l, r) => Some(java_compare(l, r)? == Ordering::Equal),
    })
}

/// `>`, `>=`, `<`, `<=`: null if either side is null (the right side is not
/// evaluated when the left is null); two strings are compared as doubles.
fn ordered(op: CompareOp, left: &Expr, right: &Expr, m: &dyn MessageView) -> Result<Truth, EvalError> {
    let l = value(left, m)?;
    if l == Val::Null {
        return Ok(None);
    }
    let r = value(right, m)?;
    let ord = match (l, r) {
        (_, Val::Null) => return Ok(None),
        (Val::Str(a), Val::Str(b)) => {
            let (Some(a), Some(b)) = (parse_java_double(a), parse_java_double(b)) else {
                return Err(EvalError::StringOrdering);
            };
            java_double_cmp(a, b)
        }
        (l, r) => java_compare(l, r)?,
    };
    Ok(Some(match op {
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
    }))
}

/// `ComparisonExpression.__compare` with `convertStringExpressions` (which
/// RocketMQ's parser always sets): mixed numbers are widened; a string
/// against a number is parsed with the number's Java parser, failing with
/// [`EvalError::NotANumber`]; a string against a boolean is
/// `Boolean.valueOf`; a boolean against a string fails (RocketMQ casts the
/// wrong operand); any other mix is -1 (`Less`).
fn java_compare(l: Val<'_>, r: Val<'_>) -> Result<Ordering, EvalError> {
    use Val::*;
    Ok(match (l, r) {
        (Str(a), Str(b)) => a.encode_utf16().cmp(b.encode_utf16()),
        (Int(a), Int(b)) => a.cmp(&b),
        (Long(a), Long(b)) => a.cmp(&b),
        (Double(a), Double(b)) => java_double_cmp(a, b),
        (Bool(a), Bool(b)) => a.cmp(&b),
        (Bool(_), Str(_)) => return Err(EvalError::BooleanWithString),
        (Int(a), Long(b)) => i64::from(a).cmp(&b),
        (Long(a), Int(b)) => a.cmp(&i64::from(b)),
        (Int(a), Double(b)) => java_double_cmp(f64::from(a), b),
        (Long(a), Double(b)) => java_double_cmp(a as f64, b),
        (Double(a), Int(b)) => java_double_cmp(a, f64::from(b)),
        (Double(a), Long(b)) => java_double_cmp(a, b as f64),
        (Int(a), Str(b)) => a.cmp(&parse_int(b)?),
        (Long(a), Str(b)) => a.cmp(&parse_long(b)?),
        (Double(a), Str(b)) => java_double_cmp(a, parse_double(b)?),
        (Str(a), Int(b)) => parse_int(a)?.cmp(&b),
        (Str(a), Long(b)) => parse_long(a)?.cmp(&b),
        (Str(a), Double(b)) => java_double_cmp(parse_double(a)?, b),
        (Str(a), Bool(b)) => a.eq_ignore_ascii_case("true").cmp(&b),
        _ => Ordering::Less,
    })
}

/// `Integer.valueOf(String)` (ASCII digits only).
fn parse_int(s: &str) -> Result<i32, EvalError> {
    s.parse().map_err(|_| EvalError::NotANumber { target: "int" })
}

/// `Long.valueOf(String)` (ASCII digits only).
fn parse_long(s: &str) -> Result<i64, EvalError> {
    s.parse().map_err(|_| EvalError::NotANumber { target: "long" })
}

fn parse_double(s: &str) -> Result<f64, EvalError> {
    parse_java_double(s).ok_or(EvalError::NotANumber { target: "double" })
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// `Double.valueOf(String)`: surrounding chars up to U+0020 trimmed, an
/// optional sign, then `NaN`, `Infinity`, or decimal digits with an
/// optional `.` and exponent and an optional `f`/`F`/`d`/`D` suffix.
/// Hexadecimal floats (`0x1p3`) are not supported.
pub(crate) fn parse_java_double(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c <= ' ');
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let magnitude = match body {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => {
            let b = body.as_bytes();
            let int_digits = digits(b, 0);
            let mut end = int_digits;
            let mut frac_digits = 0;
            if b.get(end) == Some(&b'.') {
                end = digits(b, end + 1);
                frac_digits = end - int_digits - 1;
            }
            if int_digits == 0 && frac_digits == 0 {
                return None;
            }
            if matches!(b.get(end), Some(b'e' | b'E')) {
                let mut j = end + 1;
                if matches!(b.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                end = digits(b, j);
                if end == j {
                    return None;
                }
            }
            if !matches!(&b[end..], [] | [b'f' | b'F' | b'd' | b'D']) {
                return None;
            }
            body[..end].parse::<f64>().ok()?
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `Double.compare`: NaN above everything (and equal to itself), -0.0
/// below 0.0.
fn java_double_cmp(a: f64, b: f64) -> Ordering {
    let bits = |x: f64| if x.is_nan() { 0x7ff8_0000_0000_0000_i64 } else { x.to_bits() as i64 };
    if a < b {
        Ordering::Less
    } else if a > b {
        Ordering::Greater
    } else {
        bits(a).cmp(&bits(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_parsing() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1", Some(1.0)),
            ("-1.5", Some(-1.5)),
            ("+2", Some(2.0)),
            ("5.", Some(5.0)),
            (".5", Some(0.5)),
            ("1e3", Some(1000.0)),
            ("1E+3", Some(1000.0)),
            ("1.5e-1", Some(0.15)),
            (" 7 ", Some(7.0)),
            ("\t7\n", Some(7.0)),
            ("1.5f", Some(1.5)),
            ("2d", Some(2.0)),
            ("2D", Some(2.0)),
            ("Infinity", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("1e999", Some(f64::INFINITY)),
            ("007", Some(7.0)),
            ("", None),
            (".", None),
            ("-", None),
            ("e5", None),
            ("1e", None),
            ("1e+", None),
            ("1.5ff", None),
            ("inf", None),
            ("infinity", None),
            ("nan", None),
            ("1_000", None),
            ("0x10", None),
            ("1 2", None),
            ("\u{a0}1", None),
            ("Infinityd", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_java_double(s), *want, "{s:?}");
        }
        assert!(parse_java_double("NaN").is_some_and(f64::is_nan));
        assert!(parse_java_double("-NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn java_double_order() {
        assert_eq!(java_double_cmp(-0.0, 0.0), Ordering::Less);
        assert_eq!(java_double_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(java_double_cmp(f64::NAN, -f64::NAN), Ordering::Equal);
        assert_eq!(java_double_cmp(1.0, 2.0), Ordering::Less);
        assert_eq!(java_double_cmp(2.0, 2.0), Ordering::Equal);
    }

    #[test]
    fn java_compare_table() {
        use Val::*;
        let e = Ok(Ordering::Equal);
        let l = Ok(Ordering::Less);
        let g = Ok(Ordering::Greater);
        let nan = |t| Err(EvalError::NotANumber { target: t });
        let cases: Vec<(Val<'_>, Val<'_>, Result<Ordering, EvalError>)> = vec![
            (Str("5"), Int(5), e),
            (Str("+5"), Int(5), e),
            (Str("05"), Int(5), e),
            (Str("5.0"), Int(5), nan("int")),
            (Str(" 5"), Int(5), nan("int")),
            (Str("3000000000"), Int(5), nan("int")),
            (Str("3000000000"), Long(3_000_000_000), e),
            (Str("5.0"), Double(5.0), e),
            (Str("5"), Double(4.5), g),
            (Int(5), Str("6"), l),
            (Int(5), Long(5), e),
            (Long(5), Double(5.5), l),
            (Double(5.5), Int(5), g),
            (Str("TRUE"), Bool(true), e),
            (Str("yes"), Bool(false), e),
            (Bool(true), Str("true"), Err(EvalError::BooleanWithString)),
            (Bool(true), Int(1), l),
            (Int(1), Bool(true), l),
            (Str("a"), Str("b"), l),
            (Str("\u{ffff}"), Str("\u{10000}"), g), // UTF-16 order, not code point order
        ];
        for (a, b, want) in cases {
            assert_eq!(java_compare(a, b), want, "{a:?} vs {b:?}");
        }
    }
}
