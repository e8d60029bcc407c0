//! SQL92 parsing: canonical text, exact error messages and positions, and
//! the limits on hostile input.

use fjord_filter::sql::Expr;
use fjord_filter::{FilterError, MAX_DEPTH, MAX_EXPRESSION_LEN, MAX_IN_LIST, SqlFilter};

fn err(expr: &str) -> FilterError {
    match SqlFilter::parse(expr) {
        Ok(f) => panic!("{expr:?} parsed as {f}"),
        Err(e) => e,
    }
}

#[test]
fn canonical_text() {
    let cases: &[(&str, &str)] = &[
        ("a=3 and b<>4 And c>5 AND d<=4", "a = 3 AND b <> 4 AND c > 5 AND d <= 4"),
        ("a=3  and    b<>4 And c>5 AND d<=4", "a = 3 AND b <> 4 AND c > 5 AND d <= 4"),
        ("(a = 1 OR b = 2) AND c = 3", "(a = 1 OR b = 2) AND c = 3"),
        ("a = 1 OR (b = 2 OR c = 3)", "a = 1 OR b = 2 OR c = 3"),
        ("(a = 1 AND b = 2) AND (c = 3 AND d = 4)", "a = 1 AND b = 2 AND c = 3 AND d = 4"),
        ("a = 1 OR b = 2 AND c = 3", "a = 1 OR b = 2 AND c = 3"),
        ("((a))", "a"),
        ("NOT (a = 1)", "NOT (a = 1)"),
        ("NOT a = 1", "NOT a = 1"),
        ("not not TRUE", "NOT NOT TRUE"),
        ("a = - - 1", "a = - -1"),
        ("a = -(-1)", "a = - -1"),
        ("a = -(-(-b))", "a = - - -b"),
        ("a = +1", "a = 1"),
        ("a = 5L", "a = 5"),
        ("x = .5", "x = 0.5"),
        ("x > 1e20", "x > 1e20"),
        ("x > 2.50E3", "x > 2500.0"),
        ("a in ('x','it''s')", "a IN ('x', 'it''s')"),
        ("a not between -1 and 2.5", "a NOT BETWEEN -1 AND 2.5"),
        ("(a = 1) = TRUE", "a = 1 = TRUE"),
        ("a = (b = 1)", "a = (b = 1)"),
        ("a is not null", "a IS NOT NULL"),
        (
            "a contains 'x' and b not startswith 'y' or c endswith 'z'",
            "a CONTAINS 'x' AND b NOT STARTSWITH 'y' OR c ENDSWITH 'z'",
        ),
        ("NOT (a IN ('x'))", "NOT (a IN ('x'))"),
        ("-(a = 1) IS NULL", "-(a = 1) IS NULL"),
        ("TAGS = 'a' -- trailing comment\n", "TAGS = 'a'"),
        ("a = '/* not a comment */ -- nor this'", "a = '/* not a comment */ -- nor this'"),
    ];
    for (src, want) in cases {
        let f = SqlFilter::parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(f.to_string(), *want, "{src:?}");
        assert_eq!(SqlFilter::parse(want).unwrap(), f, "{want:?}");
    }
}

#[test]
fn tree_shape() {
    let f = SqlFilter::parse("a = 1 AND (b = 2 AND c = 3) AND d").unwrap();
    let Expr::And(items) = f.expr() else { panic!("{:?}", f.expr()) };
    assert_eq!(items.len(), 4);
    assert_eq!(items[3], Expr::Property("d".into()));
    let f = SqlFilter::parse("NOT a = 1").unwrap();
    assert!(matches!(f.expr(), Expr::Compare { left, .. } if matches!(**left, Expr::Not(_))));
}

#[test]
fn error_messages() {
    let long = format!("a = 1 '{}'", "x".repeat(100));
    let cases: &[(&str, &str)] = &[
        ("", "SQL92 filter expression is empty"),
        (" \t\n", "SQL92 filter expression is empty"),
        ("flag = AND", "unexpected token `AND` at byte 7: expected a value"),
        ("a =", "unexpected end of input at byte 3: expected a value"),
        ("NOT", "unexpected end of input at byte 3: expected a value"),
        ("a = 1 AND", "unexpected end of input at byte 9: expected a value"),
        ("-- only a comment\n", "unexpected end of input at byte 18: expected a value"),
        ("a and between 2 and 10", "unexpected token `between` at byte 6: expected a value"),
        ("a = 1 b", "unexpected token `b` at byte 6: expected an operator or the end of input"),
        ("a = 1 b = 2", "unexpected token `b` at byte 6: expected an operator or the end of input"),
        ("a = 1)", "unexpected token `)` at byte 5: expected an operator or the end of input"),
        ("a NOT b", "unexpected token `NOT` at byte 2: expected an operator or the end of input"),
        ("a = 1 --", "unexpected token `-` at byte 6: expected an operator or the end of input"),
        ("a = --1\n", "unexpected end of input at byte 8: expected a value"),
        ("a == 1", "unexpected token `=` at byte 3: expected a value"),
        ("(a = 1", "unexpected end of input at byte 6: expected an operator or `)`"),
        ("(a = 1 b)", "unexpected token `b` at byte 7: expected an operator or `)`"),
        ("(a BETWEEN 1)", "unexpected token `)` at byte 12: expected AND"),
        // `+` is only unary.
        ("(a + 0) > 1", "unexpected token `+` at byte 3: expected an operator or `)`"),
        ("a IN 'x'", "unexpected token `'x'` at byte 5: expected `(`"),
        ("a IN ()", "unexpected token `)` at byte 6: expected a string literal"),
        ("a IN (1)", "unexpected token `1` at byte 6: expected a string literal"),
        ("a IN ('x' 'y')", "unexpected token `'y'` at byte 10: expected `,` or `)`"),
        ("a IN ('x',)", "unexpected token `)` at byte 10: expected a string literal"),
        ("a CONTAINS x", "unexpected token `x` at byte 11: expected a string literal"),
        ("a NOT CONTAINS 123", "unexpected token `123` at byte 15: expected a string literal"),
        ("'axb' contains ", "unexpected end of input at byte 15: expected a string literal"),
        ("a BETWEEN 1 OR 2", "unexpected token `OR` at byte 12: expected AND"),
        ("a IS 1", "unexpected token `1` at byte 5: expected NULL or NOT NULL"),
        ("a IS NOT 1", "unexpected token `1` at byte 9: expected NULL"),
        (
            &long,
            "unexpected token `'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…` at byte 6: expected an operator or the end of input",
        ),
        ("a != 1", "unexpected character `!` at byte 2"),
        ("a.b = 1", "unexpected character `.` at byte 1"),
        ("a = 'x", "unterminated string literal starting at byte 4"),
        ("a = 1 /* x", "unterminated comment starting at byte 6"),
        (
            "a > 9223372036854775808",
            "number `9223372036854775808` at byte 4 is out of range: integers must fit a signed 64-bit long",
        ),
        ("a > 0.0", "number `0.0` at byte 4 is zero or too small: RocketMQ rejects floats below 4.9E-324 (write 0)"),
        ("a > 1e309", "number `1e309` at byte 4 is too large for a double"),
        // Checks RocketMQ makes while building the expression.
        ("'x'", "expected a condition but found a string literal at byte 0"),
        ("1", "expected a condition but found a number at byte 0"),
        ("-a", "expected a condition but found a negation at byte 0"),
        ("(1)", "expected a condition but found a number at byte 0"),
        ("a = 1 AND 'x'", "expected a condition but found a string literal at byte 10"),
        ("2 OR a", "expected a condition but found a number at byte 0"),
        ("NOT 5", "expected a condition but found a number at byte 4"),
        ("a = NULL", "NULL cannot be compared with `=` (use IS NULL) at byte 4"),
        ("NULL <> a", "NULL cannot be compared with `<>` (use IS NULL) at byte 0"),
        ("TRUE = 1", "TRUE cannot be compared with a number at byte 0"),
        ("FALSE = 'x'", "FALSE cannot be compared with a string literal at byte 0"),
        ("a > 'x'", "a string literal cannot be compared with `>` at byte 4"),
        ("'x' < 1", "a string literal cannot be compared with `<` at byte 0"),
        ("a > TRUE", "TRUE cannot be compared with `>` at byte 4"),
        ("a >= NULL", "NULL cannot be compared with `>=` at byte 5"),
        ("(a = 1) > 1", "a condition cannot be compared with `>` at byte 0"),
        ("NOT a > 1", "a condition cannot be compared with `>` at byte 0"),
        ("a > 1 > 2", "a condition cannot be compared with `>` at byte 0"),
        ("a BETWEEN 'a' AND 'b'", "a string literal cannot be compared with `BETWEEN` at byte 10"),
        ("a BETWEEN 1 AND NULL", "NULL cannot be compared with `BETWEEN` at byte 16"),
        ("a BETWEEN 1 AND 2 BETWEEN 3 AND 4", "a condition cannot be compared with `BETWEEN` at byte 0"),
        (" a between 10 and 0", "BETWEEN lower bound 10 is greater than upper bound 0 at byte 11"),
        ("a between 1.5 and 1", "BETWEEN lower bound 1.5 is greater than upper bound 1 at byte 10"),
        ("a between (2) and (1.5)", "BETWEEN lower bound 2 is greater than upper bound 1.5 at byte 10"),
        ("'x' IN ('x')", "IN needs a property on its left, not a string literal at byte 0"),
        ("NOT a IN ('x')", "IN needs a property on its left, not a condition at byte 0"),
    ];
    for (src, want) in cases {
        let e = err(src);
        assert_eq!(e.to_string(), *want, "{src:?}");
        if let Some(pos) = e.position() {
            assert!(pos <= src.len(), "{src:?}: {pos}");
        }
    }
}

#[test]
fn accepted_oddities() {
    // RocketMQ accepts all of these; so do we.
    for src in [
        "a",
        "NULL",
        "NOT NULL",
        "'x' = 'y'",
        "1 = TRUE",
        "TRUE = FALSE",
        "a NOT BETWEEN 10 AND 1",
        "a BETWEEN -1 AND -2",
        "a BETWEEN b AND 1",
        "-TRUE = a",
        "a IS NULL IS NOT NULL",
        "'x' CONTAINS 'y'",
        "(a) IN ('x')",
        "a = 1 --comment\r",
        "$a_1 = _b$",
    ] {
        assert!(SqlFilter::parse(src).is_ok(), "{src:?}: {:?}", SqlFilter::parse(src));
    }
}

#[test]
fn length_limit() {
    let body = format!("a = '{}'", "x".repeat(MAX_EXPRESSION_LEN - 6));
    assert_eq!(body.len(), MAX_EXPRESSION_LEN);
    assert!(SqlFilter::parse(&body).is_ok());
    let over = format!("{body} ");
    assert_eq!(
        err(&over).to_string(),
        format!(
            "filter expression is {} bytes long, more than the limit of {MAX_EXPRESSION_LEN}",
            MAX_EXPRESSION_LEN + 1
        )
    );
}

#[test]
fn depth_limits() {
    let parens = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
    assert!(SqlFilter::parse(&parens(MAX_DEPTH)).is_ok());
    assert_eq!(err(&parens(MAX_DEPTH + 1)), FilterError::TooDeep { pos: MAX_DEPTH, max: MAX_DEPTH });
    assert_eq!(err(&parens(MAX_DEPTH + 1)).to_string(), "expression nested more than 100 levels deep at byte 100");

    // 99 NOTs over a leaf: a tree of height 100.
    let nots = |n: usize| format!("{}a", "NOT ".repeat(n));
    assert_eq!(SqlFilter::parse(&nots(MAX_DEPTH - 1)).unwrap().expr().depth(), MAX_DEPTH);
    assert!(matches!(err(&nots(MAX_DEPTH)), FilterError::TooDeep { .. }));
    assert_eq!(err(&nots(MAX_DEPTH + 1)), FilterError::TooDeep { pos: 400, max: MAX_DEPTH });

    // Left-deep chains count too.
    let chain = |n: usize| format!("a{}", " IS NULL".repeat(n));
    assert!(SqlFilter::parse(&chain(MAX_DEPTH - 1)).is_ok());
    assert!(matches!(err(&chain(MAX_DEPTH)), FilterError::TooDeep { .. }));
    let negs = |n: usize| format!("a = {}1", "- ".repeat(n));
    assert!(SqlFilter::parse(&negs(MAX_DEPTH - 2)).is_ok());
    assert!(matches!(err(&negs(MAX_DEPTH)), FilterError::TooDeep { .. }));

    // Flat AND/OR chains do not nest.
    let ands = format!("a{}", " AND a".repeat(10_000));
    assert_eq!(SqlFilter::parse(&ands).unwrap().expr().depth(), 2);
    let mixed = format!("a{}", " AND (a OR a)".repeat(3000));
    assert_eq!(SqlFilter::parse(&mixed).unwrap().expr().depth(), 3);
}

#[test]
fn hostile_nesting_does_not_overflow_the_stack() {
    // As long as the limit allows, in a thread with a small stack.
    let inputs = vec![
        "(".repeat(MAX_EXPRESSION_LEN),
        "NOT ".repeat(MAX_EXPRESSION_LEN / 4),
        "- ".repeat(MAX_EXPRESSION_LEN / 2),
        "+".repeat(MAX_EXPRESSION_LEN),
        format!("a{}", " IS NULL".repeat(MAX_EXPRESSION_LEN / 8 - 1)),
        format!("a{}", " CONTAINS 'x'".repeat(MAX_EXPRESSION_LEN / 13 - 1)),
        format!("{}a = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)),
        format!("{}a", "NOT ".repeat(MAX_DEPTH - 1)),
        format!("a{}", " = TRUE".repeat(MAX_DEPTH - 1)),
        format!("a{}", " IS NULL".repeat(MAX_DEPTH - 1)),
        format!("a = {}1", "- ".repeat(MAX_DEPTH - 2)),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            for input in &inputs {
                if let Ok(f) = SqlFilter::parse(input) {
                    let text = f.to_string();
                    assert_eq!(SqlFilter::parse(&text).unwrap(), f);
                    let _ = f.evaluate(&Msg);
                }
            }
        })
        .unwrap();
    handle.join().unwrap();
}

struct Msg;

impl fjord_filter::MessageView for Msg {
    fn tag(&self) -> Option<&str> {
        None
    }

    fn property(&self, _: &str) -> Option<&str> {
        Some("1")
    }
}

#[test]
fn in_list_limit() {
    let list = |n: usize| (0..n).map(|i| format!("'{i}'")).collect::<Vec<_>>().join(",");
    assert!(SqlFilter::parse(&format!("a IN ({})", list(MAX_IN_LIST))).is_ok());
    assert_eq!(
        err(&format!("a IN ({})", list(MAX_IN_LIST + 1))).to_string(),
        "IN list at byte 5 has more than 1024 values"
    );
}

#[test]
fn property_names() {
    for ok in ["a", "A_1", "$x", "_", "TAGS", "nota"] {
        assert!(SqlFilter::is_property_name(ok), "{ok}");
    }
    for bad in ["", "1a", "a.b", "a-b", "not", "And", "é", "is"] {
        assert!(!SqlFilter::is_property_name(bad), "{bad}");
    }
}
