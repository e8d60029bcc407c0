//! SQL92 evaluation, operator by operator: each row is an expression, a
//! message's properties and the exact three-valued result (or error)
//! RocketMQ's evaluator gives.

mod common;

use common::Props;
use fjord_filter::{EvalError, Filter, FilterKind, SqlFilter};

type R = Result<Option<bool>, EvalError>;
const T: R = Ok(Some(true));
const F: R = Ok(Some(false));
const N: R = Ok(None);
const E_INT: R = Err(EvalError::NotANumber { target: "int" });
const E_LONG: R = Err(EvalError::NotANumber { target: "long" });
const E_DOUBLE: R = Err(EvalError::NotANumber { target: "double" });
const E_STR: R = Err(EvalError::StringOrdering);
const E_BOOL: R = Err(EvalError::BooleanWithString);

type Row = (&'static str, &'static [(&'static str, &'static str)], R);

fn check(rows: &[Row]) {
    let mut failures = Vec::new();
    for (expr, props, want) in rows {
        let filter = SqlFilter::parse(expr).unwrap_or_else(|e| panic!("{expr:?} does not parse: {e}"));
        let msg = Props::new(props);
        let got = filter.evaluate(&msg);
        if got != *want {
            failures.push(format!("{expr:?} with {props:?}: got {got:?}, want {want:?}"));
        }
        assert_eq!(filter.matches(&msg), *want == T, "{expr:?} with {props:?}");
        // The canonical text evaluates the same.
        let again = SqlFilter::parse(&filter.to_string()).expect("canonical text parses");
        assert_eq!(again.evaluate(&msg), got, "{expr:?} re-read as {filter}");
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn equality() {
    check(&[
        ("a = 3", &[("a", "3")], T),
        ("a = 3", &[("a", "4")], F),
        ("a = 3", &[], N),
        ("a = 3", &[("a", "+3")], T),
        ("a = 3", &[("a", "003")], T),
        ("a = 3", &[("a", "3.0")], E_INT),
        ("a = 3", &[("a", " 3")], E_INT),
        ("a = 3", &[("a", "x")], E_INT),
        ("a = 3", &[("a", "")], E_INT),
        ("a = 3", &[("a", "3000000000")], E_INT),
        ("a = 3000000000", &[("a", "3000000000")], T),
        ("a = 3000000000", &[("a", "3")], F),
        ("a = 3000000000", &[("a", "3e9")], E_LONG),
        ("a = 3L", &[("a", "3000000000")], E_INT),
        ("a = 3.0", &[("a", "3")], T),
        ("a = 3.0", &[("a", " 3.00 ")], T),
        ("a = 3.0", &[("a", "3d")], T),
        ("a = 3.0", &[("a", "x")], E_DOUBLE),
        // Deviation: Java's Double.valueOf reads hexadecimal floats.
        ("a = 3.0", &[("a", "0x3p0")], E_DOUBLE),
        ("a = -3", &[("a", "-3")], T),
        ("a = +3", &[("a", "3")], T),
        ("a = - -3", &[("a", "3")], T),
        ("a = -(-3)", &[("a", "3")], T),
        ("a = '3'", &[("a", "3")], T),
        ("a = '3'", &[("a", "03")], F),
        ("a = '3'", &[], N),
        ("a = 'Hello'", &[("a", "hello")], F),
        ("a = ''", &[("a", "")], T),
        ("a <> 3", &[("a", "4")], T),
        ("a <> 3", &[("a", "3")], F),
        ("a <> 3", &[], N),
        ("a <> 3", &[("a", "x")], E_INT),
        ("a <> 'x'", &[("a", "y")], T),
        // null = null is TRUE; only the left null is unknown, only the right null FALSE.
        ("a = b", &[], T),
        ("a = b", &[("a", "1")], F),
        ("a = b", &[("b", "1")], N),
        ("a = b", &[("a", "x"), ("b", "x")], T),
        ("a = b", &[("a", "1.0"), ("b", "1")], F),
        ("a <> b", &[], F),
        ("a <> b", &[("a", "1")], T),
        ("a <> b", &[("b", "1")], N),
        ("'x' = a", &[], F),
        ("'x' = a", &[("a", "x")], T),
        ("3 = a", &[], F),
        ("3 = a", &[("a", "3")], T),
        ("a = TRUE", &[("a", "true")], T),
        ("a = TRUE", &[("a", "TrUe")], T),
        ("a = TRUE", &[("a", "yes")], F),
        ("a = FALSE", &[("a", "yes")], T),
        ("a = TRUE", &[], N),
        ("TRUE = a", &[("a", "true")], E_BOOL),
        ("TRUE = a", &[], F),
        ("TRUE = TRUE", &[], T),
        ("TRUE = FALSE", &[], F),
        ("TRUE <> FALSE", &[], T),
        ("1 = TRUE", &[], F),
        ("1 = 1.0", &[], T),
        ("1 = 1", &[], T),
        ("2147483647 = 2147483647L", &[], T),
        ("1 = 2147483648", &[], F),
        ("'a' = 'a'", &[], T),
        ("'1' = 1", &[], T),
        ("'x' = 1", &[], E_INT),
        ("(a = 1) = TRUE", &[("a", "1")], T),
        ("(a = 1) = TRUE", &[("a", "2")], F),
        ("(a = 1) = TRUE", &[], N),
        ("a = (b = 1)", &[("a", "true"), ("b", "1")], T),
        ("-a = -1", &[("a", "1")], N),
        ("-a = b", &[("a", "1")], T),
        ("-'x' = a", &[("a", "x")], N),
        ("- -1 = 1", &[], T),
        ("-2147483648 = a", &[("a", "-2147483648")], T),
    ]);
}

#[test]
fn ordering() {
    check(&[
        ("a > 5", &[("a", "6")], T),
        ("a > 5", &[("a", "5")], F),
        ("a > 5", &[("a", "-6")], F),
        ("a > 5", &[], N),
        ("a > 5", &[("a", "5.5")], E_INT),
        ("a > 5", &[("a", "x")], E_INT),
        ("a >= 5", &[("a", "5")], T),
        ("a >= 5", &[("a", "4")], F),
        ("a < 5", &[("a", "4")], T),
        ("a <= 5", &[("a", "5")], T),
        ("a <= 5", &[("a", "6")], F),
        ("a < 5.5", &[("a", "5")], T),
        ("a < 5.5", &[("a", "5.5")], F),
        ("a < 5.5", &[("a", " 5 ")], T),
        ("a < 5.5", &[("a", "NaN")], F),
        ("a > 5.5", &[("a", "NaN")], T),
        ("a < 5.5", &[("a", "-Infinity")], T),
        ("a > 3.1E10", &[("a", "3.1415E10")], T),
        ("a > 3.14", &[("a", "3.1415")], T),
        ("a > -1", &[("a", "0")], T),
        ("a > -1", &[("a", "-2")], F),
        ("a > -1.5", &[("a", "-1")], T),
        ("a > 2147483648", &[("a", "2147483649")], T),
        ("a > 2147483648", &[("a", "1.5")], E_LONG),
        ("a > 5", &[("a", "2147483648")], E_INT),
        ("5 < a", &[("a", "6")], T),
        ("5 < a", &[("a", "4")], F),
        ("5 < a", &[], N),
        // Two strings are compared as doubles.
        ("a > b", &[("a", "10"), ("b", "9")], T),
        ("a > b", &[("a", "10"), ("b", "20")], F),
        ("a > b", &[("a", "1e1"), ("b", "9.5")], T),
        ("a > b", &[("a", "10"), ("b", "x")], E_STR),
        ("a > b", &[("a", "x"), ("b", "y")], E_STR),
        ("a > b", &[("a", "1")], N),
        ("a > b", &[("b", "x")], N),
        ("a > b", &[], N),
        ("-a > 1", &[("a", "5")], N),
        ("-a > 1", &[], N),
        ("1 < 2", &[], T),
        ("2.5 > 2", &[], T),
        ("3000000000 > 2", &[], T),
    ]);
}

#[test]
fn between() {
    check(&[
        ("a BETWEEN 2 AND 10", &[("a", "2")], T),
        ("a BETWEEN 2 AND 10", &[("a", "10")], T),
        ("a BETWEEN 2 AND 10", &[("a", "3")], T),
        ("a BETWEEN 2 AND 10", &[("a", "1")], F),
        ("a BETWEEN 2 AND 10", &[("a", "11")], F),
        ("a BETWEEN 2 AND 10", &[], N),
        ("a BETWEEN 2 AND 10", &[("a", "abc")], E_INT),
        ("a BETWEEN 2 AND 10", &[("a", "2.5")], E_INT),
        // `a <= 10` parses "2.5" as an int.
        ("a BETWEEN 2.0 AND 10", &[("a", "2.5")], E_INT),
        ("a BETWEEN 2.0 AND 10.0", &[("a", "2.5")], T),
        ("a BETWEEN 1.0 AND 10", &[("a", "0.5")], F),
        ("a BETWEEN 2 AND 2", &[("a", "2")], T),
        ("a BETWEEN -2 AND -1", &[("a", "-1")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "1")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "11")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "2")], F),
        ("a NOT BETWEEN 2 AND 10", &[("a", "5")], F),
        ("a NOT BETWEEN 2 AND 10", &[], N),
        ("a NOT BETWEEN 10 AND 1", &[("a", "5")], T),
        // `a >= b AND a <= c`: FALSE short-circuits, null otherwise.
        ("a BETWEEN b AND c", &[("a", "5")], N),
        ("a BETWEEN b AND c", &[("a", "5"), ("b", "1")], N),
        ("a BETWEEN b AND c", &[("a", "0"), ("b", "1")], F),
        ("a BETWEEN b AND c", &[("a", "0"), ("b", "1"), ("c", "x")], F),
        ("a BETWEEN b AND c", &[("a", "2"), ("b", "1"), ("c", "x")], E_STR),
        ("a BETWEEN b AND c", &[("a", "2"), ("b", "1"), ("c", "3")], T),
        ("a NOT BETWEEN b AND c", &[("a", "0"), ("b", "1")], T),
        ("a NOT BETWEEN b AND c", &[("a", "2"), ("b", "1")], N),
    ]);
}

#[test]
fn in_list() {
    check(&[
        ("a IN ('x', 'y')", &[("a", "x")], T),
        ("a IN ('x', 'y')", &[("a", "y")], T),
        ("a IN ('x', 'y')", &[("a", "z")], F),
        ("a IN ('x', 'y')", &[("a", "X")], F),
        ("a IN ('x', 'y')", &[], N),
        ("a IN ('1')", &[("a", "01")], F),
        ("a IN ('')", &[("a", "")], T),
        ("a in ('it''s')", &[("a", "it's")], T),
        ("a NOT IN ('x', 'y')", &[("a", "z")], T),
        ("a NOT IN ('x', 'y')", &[("a", "x")], F),
        ("a NOT IN ('x', 'y')", &[], N),
        ("(a) IN ('x')", &[("a", "x")], T),
        ("TAGS IN ('TagA', 'TagB')", &[("TAGS", "TagB")], T),
    ]);
}

#[test]
fn string_matching() {
    check(&[
        ("a CONTAINS 'x'", &[("a", "axb")], T),
        ("a CONTAINS 'x'", &[("a", "ab")], F),
        ("a CONTAINS 'x'", &[], F),
        ("a NOT CONTAINS 'x'", &[("a", "ab")], T),
        ("a NOT CONTAINS 'x'", &[("a", "axb")], F),
        ("a NOT CONTAINS 'x'", &[], F),
        ("a CONTAINS ''", &[("a", "x")], F),
        ("a NOT CONTAINS ''", &[("a", "x")], F),
        ("a STARTSWITH 'ax'", &[("a", "axb")], T),
        ("a STARTSWITH 'ax'", &[("a", "bax")], F),
        ("a NOT STARTSWITH 'ax'", &[("a", "bax")], T),
        ("a NOT STARTSWITH 'ax'", &[], F),
        ("a STARTSWITH ''", &[("a", "x")], F),
        ("a ENDSWITH 'xb'", &[("a", "axb")], T),
        ("a ENDSWITH 'xb'", &[("a", "xba")], F),
        ("a NOT ENDSWITH 'xb'", &[("a", "xba")], T),
        ("a NOT ENDSWITH 'xb'", &[], F),
        ("a NOT ENDSWITH ''", &[("a", "x")], F),
        ("'axb' CONTAINS 'x'", &[], T),
        ("'axb' NOT CONTAINS 'u'", &[], T),
        ("' ' STARTSWITH ' '", &[], T),
        ("'s' ENDSWITH '\\'", &[], F),
        ("a CONTAINS 'é'", &[("a", "café")], T),
        ("a contains 'X'", &[("a", "x")], F),
        ("1 CONTAINS '1'", &[], F),
        ("(a = 1) CONTAINS 't'", &[("a", "1")], F),
        ("NOT (a CONTAINS 'x')", &[], T),
        ("a CONTAINS 'x' CONTAINS 'y'", &[("a", "x")], F),
    ]);
}

#[test]
fn null_tests() {
    check(&[
        ("a IS NULL", &[], T),
        ("a IS NULL", &[("a", "")], F),
        ("a IS NOT NULL", &[("a", "")], T),
        ("a IS NOT NULL", &[], F),
        ("a is not null", &[("a", "2")], T),
        ("(a = 1) IS NULL", &[], T),
        ("(a = 1) IS NULL", &[("a", "1")], F),
        ("-a IS NULL", &[("a", "1")], T),
        ("-a IS NULL", &[("a", "-1")], T),
        ("NULL IS NULL", &[], T),
        ("1 IS NULL", &[], F),
        ("'x' IS NOT NULL", &[], T),
        ("a IS NULL IS NULL", &[], F),
        ("a IS NULL = TRUE", &[], T),
    ]);
}

#[test]
fn logic() {
    check(&[
        ("TRUE", &[], T),
        ("FALSE", &[], F),
        ("NULL", &[], N),
        ("NOT TRUE", &[], F),
        ("NOT NULL", &[], N),
        ("NOT NOT TRUE", &[], T),
        ("(TRUE)", &[], T),
        // A property as a condition: null when missing, else FALSE.
        ("a", &[("a", "true")], F),
        ("a", &[], N),
        ("NOT a", &[("a", "x")], T),
        ("NOT a", &[], N),
        ("a AND TRUE", &[("a", "true")], F),
        ("a OR TRUE", &[], T),
        // NOT binds tighter than `=`.
        ("NOT a = 1", &[("a", "1")], F),
        ("NOT a = 1", &[("a", "2")], F),
        ("NOT a = 1", &[], N),
        ("NOT (a = 1)", &[("a", "2")], T),
        ("NOT (a = 1)", &[], N),
        ("TRUE AND TRUE", &[], T),
        ("TRUE AND NULL", &[], N),
        ("NULL AND FALSE", &[], F),
        ("FALSE AND NULL", &[], F),
        ("TRUE OR NULL", &[], T),
        ("NULL OR TRUE", &[], T),
        ("FALSE OR NULL", &[], N),
        ("NULL OR NULL", &[], N),
        ("FALSE OR FALSE", &[], F),
        ("a = 1 AND b = 2", &[("a", "1"), ("b", "2")], T),
        ("a = 1 AND b = 2", &[("a", "1")], N),
        ("a = 1 AND b = 2", &[("a", "2")], F),
        ("a = 1 AND b = 2", &[("b", "3")], F),
        ("a = 1 OR b = 2", &[("a", "2")], N),
        ("a = 1 OR b = 2", &[("b", "2")], T),
        ("a = 1 OR b = 2", &[("a", "2"), ("b", "3")], F),
        ("a = 1 OR b = 2", &[], N),
        // An evaluation error aborts the whole filter, unless an earlier
        // operand already decided it.
        ("a = 1 OR b = 2", &[("a", "x"), ("b", "2")], E_INT),
        ("b = 2 OR a = 1", &[("a", "x"), ("b", "2")], T),
        ("a = 1 AND b = 2", &[("a", "2"), ("b", "x")], F),
        ("a = 1 AND b = 2", &[("a", "1"), ("b", "x")], E_INT),
        ("NOT (a = 1 AND b = 2)", &[("a", "1")], N),
        ("NOT (a = 1 AND b = 2)", &[("a", "2")], T),
        ("a = 1 OR b = 2 AND c = 3", &[("a", "1")], T),
        ("a = 1 OR b = 2 AND c = 3", &[("b", "2")], N),
        ("(a = 1 OR b = 2) AND c = 3", &[("a", "1")], N),
        ("(a = 1 OR b = 2) AND c = 3", &[("a", "1"), ("c", "3")], T),
        ("a IS NULL OR a = 'hello'", &[], T),
        ("a IS NULL OR a = 'hello'", &[("a", "hello")], T),
        ("a IS NULL OR a = 'hello'", &[("a", "abc")], F),
        ("a is not null and a='hello'", &[("a", "hello")], T),
        ("a is not null and a='hello'", &[], F),
        ("a=TRUE OR b=FALSE", &[("a", "true"), ("b", "false")], T),
        ("a=TRUE OR b=FALSE", &[("a", "false"), ("b", "true")], F),
        ("TAGS is not null and TAGS='''''tag'''''", &[("TAGS", "''tag''")], T),
        ("a = 1 /* why */ AND -- note\n b = 2", &[("a", "1"), ("b", "2")], T),
    ]);
}

/// RocketMQ's own `ExpressionTest` expressions and verdicts.
#[test]
fn rocketmq_expression_test() {
    let and = "a=3 and b<>4 And c>5 AND d<=4";
    let or = "a=3 or b<>4 Or c>5 OR d<=4";
    check(&[
        (and, &[("a", "3"), ("b", "5"), ("c", "6"), ("d", "1")], T),
        (and, &[("a", "4"), ("b", "5"), ("c", "6"), ("d", "1")], F),
        (or, &[("a", "3")], T),
        (or, &[("a", "4"), ("b", "5")], T),
        (or, &[("a", "4"), ("b", "4"), ("c", "6")], T),
        (or, &[("a", "4"), ("b", "4"), ("c", "3"), ("d", "2")], T),
        (or, &[("a", "4"), ("b", "4"), ("c", "3"), ("d", "10")], F),
        (
            "a not in ('4', '4', '5') and b between 3 and 10 and c not contains 'axbc'",
            &[("a", "3"), ("b", "3"), ("c", "axbdc")],
            T,
        ),
        ("key is not null and key between 0 and 100", &[("key", "con")], E_INT),
        ("a between 0 and 100", &[("a", "abc")], E_INT),
        ("a=b", &[("a", "3.14"), ("b", "3.14")], T),
        ("a<>b", &[("a", "3.14"), ("b", "3.14")], F),
        ("a<>b", &[("a", "3.14"), ("b", "3.141")], T),
        ("a <= now", &[("a", "1"), ("now", "2")], T),
    ]);
}

#[test]
fn large_filters_evaluate() {
    let chain = format!("a = 1{}", " AND a = 1".repeat(5000));
    let f = SqlFilter::parse(&chain).unwrap();
    assert!(f.matches(&Props::new(&[("a", "1")])));
    assert!(!f.matches(&Props::new(&[("a", "2")])));
    let values: Vec<String> = (0..fjord_filter::MAX_IN_LIST).map(|i| format!("'v{i}'")).collect();
    let f = SqlFilter::parse(&format!("a IN ({})", values.join(","))).unwrap();
    assert!(f.matches(&Props::new(&[("a", "v1023")])));
    assert!(!f.matches(&Props::new(&[("a", "v1024")])));
}

#[test]
fn filter_dispatch() {
    let msg = Props::new(&[("TAGS", "TagA"), ("n", "5")]);
    let untagged = Props::new(&[("n", "5")]);
    let all = Filter::parse(FilterKind::Tag, "*").unwrap();
    assert!(all.is_all() && all.matches(&msg) && all.matches(&untagged));
    assert_eq!(Filter::parse(FilterKind::Tag, "").unwrap(), Filter::All);
    let tag = Filter::parse(FilterKind::Tag, "TagA || TagB").unwrap();
    assert!(!tag.is_all() && tag.matches(&msg) && !tag.matches(&untagged));
    let sql = Filter::parse(FilterKind::Sql92, "n > 4 AND TAGS = 'TagA'").unwrap();
    assert!(!sql.is_all() && sql.matches(&msg) && !sql.matches(&untagged));
    assert_eq!(Filter::parse(FilterKind::Sql92, "").unwrap_err().to_string(), "SQL92 filter expression is empty");
    assert!(!Filter::parse(FilterKind::Sql92, "TRUE").unwrap().is_all());
    for (text, kind) in [("*", FilterKind::Tag), ("a || b", FilterKind::Tag), ("n > 4", FilterKind::Sql92)] {
        let f = Filter::parse(kind, text).unwrap();
        assert_eq!(Filter::parse(kind, &f.to_string()).unwrap(), f);
    }
    assert_eq!(FilterKind::from_expression_type(None), Some(FilterKind::Tag));
    assert_eq!(FilterKind::from_expression_type(Some("")), Some(FilterKind::Tag));
    assert_eq!(FilterKind::from_expression_type(Some("TAG")), Some(FilterKind::Tag));
    assert_eq!(FilterKind::from_expression_type(Some("SQL92")), Some(FilterKind::Sql92));
    assert_eq!(FilterKind::from_expression_type(Some("sql92")), None);
    assert_eq!(FilterKind::Sql92.as_str(), "SQL92");
}
