//! Property tests: random valid syntax trees print as text that parses
//! back to the same tree; random and near-valid text never panics; the
//! logic operators compose as RocketMQ's do.

mod common;

use common::Props;
use fjord_filter::sql::{CompareOp, Expr, MatchOp};
use fjord_filter::{EvalError, FilterError, SqlFilter, TagExpression};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "TAGS"]).prop_map(String::from),
        1 => "[A-Za-z_$][A-Za-z0-9_$]{0,5}".prop_filter("a keyword", |s| SqlFilter::is_property_name(s)),
    ]
    .boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(vec!["", "1", "x", "it's", "true", "-2.5", "NaN", "3000000000", "--", "/*"])
            .prop_map(String::from),
        1 => prop::collection::vec(any::<char>(), 0..6).prop_map(|v| v.into_iter().collect()),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Expr> {
    prop_oneof![
        (0..=10i64).prop_map(Expr::Integer),
        (0..=i64::MAX).prop_map(Expr::Integer),
        prop::sample::select(vec![2_147_483_647i64, 2_147_483_648]).prop_map(Expr::Integer),
        prop::sample::select(vec![0.5, 1.0, 2.5, 1e20, 1e16, 1e-7, 5e-324]).prop_map(Expr::Float),
        // Every positive finite double.
        (1u64..0x7ff0_0000_0000_0000).prop_map(|b| Expr::Float(f64::from_bits(b))),
    ]
    .boxed()
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

fn negate(e: Expr) -> Expr {
    Expr::Negate(Box::new(e))
}

/// `AND`/`OR` of `items`, nested lists of the same operator spliced in.
fn logic(or: bool, items: Vec<Expr>) -> Expr {
    let mut flat = Vec::new();
    for item in items {
        match item {
            Expr::Or(inner) if or => flat.extend(inner),
            Expr::And(inner) if !or => flat.extend(inner),
            e => flat.push(e),
        }
    }
    if or { Expr::Or(flat) } else { Expr::And(flat) }
}

fn is_non_boolean_constant(e: &Expr) -> bool {
    matches!(e, Expr::String(_) | Expr::Integer(_) | Expr::Float(_))
}

fn numeric(e: &Expr) -> Option<f64> {
    match *e {
        Expr::Integer(n) => Some(n as f64),
        Expr::Float(x) => Some(x),
        _ => None,
    }
}

/// Strategies for the three kinds of operand RocketMQ's parser accepts:
/// conditions (where TRUE/FALSE is needed), any expression, and operands
/// of `>` and `BETWEEN`. Built bottom-up, `depth` levels deep.
fn strategies(depth: u32) -> (BoxedStrategy<Expr>, BoxedStrategy<Expr>) {
    let cond_leaf = prop_oneof![name().prop_map(Expr::Property), any::<bool>().prop_map(Expr::Bool), Just(Expr::Null)];
    let mut cond = cond_leaf.clone().boxed();
    let value_leaf = prop_oneof![text().prop_map(Expr::String), number()].boxed();
    let mut anything = prop_oneof![cond.clone(), value_leaf.clone()].boxed();
    let mut ordered = prop_oneof![name().prop_map(Expr::Property), number()].boxed();
    for _ in 0..depth {
        let eq_op = prop::sample::select(vec![CompareOp::Eq, CompareOp::Ne]);
        let ord_op = prop::sample::select(vec![CompareOp::Gt, CompareOp::Ge, CompareOp::Lt, CompareOp::Le]);
        let match_op = prop::sample::select(vec![MatchOp::Contains, MatchOp::StartsWith, MatchOp::EndsWith]);
        let next_cond = prop_oneof![
            3 => cond_leaf.clone(),
            1 => cond.clone().prop_map(not),
            2 => (any::<bool>(), prop::collection::vec(cond.clone(), 2..4)).prop_map(|(or, items)| logic(or, items)),
            2 => (eq_op, anything.clone(), anything.clone()).prop_filter_map("invalid equality", |(op, l, r)| {
                let invalid = l == Expr::Null
                    || r == Expr::Null
                    || (matches!(l, Expr::Bool(_)) && is_non_boolean_constant(&r));
                (!invalid).then(|| Expr::Compare { op, left: Box::new(l), right: Box::new(r) })
            }),
            2 => (ord_op, ordered.clone(), ordered.clone())
                .prop_map(|(op, l, r)| Expr::Compare { op, left: Box::new(l), right: Box::new(r) }),
            1 => (anything.clone(), any::<bool>()).prop_map(|(e, negated)| Expr::IsNull { expr: Box::new(e), negated }),
            1 => (ordered.clone(), ordered.clone(), ordered.clone(), any::<bool>()).prop_map(|(e, lo, hi, negated)| {
                let reversed = matches!((numeric(&lo), numeric(&hi)), (Some(l), Some(h)) if h < l);
                let (low, high) = if reversed && !negated { (hi, lo) } else { (lo, hi) };
                Expr::Between { expr: Box::new(e), low: Box::new(low), high: Box::new(high), negated }
            }),
            1 => (name(), prop::collection::vec(text(), 1..4), any::<bool>())
                .prop_map(|(property, values, negated)| Expr::In { property, values, negated }),
            1 => (match_op, anything.clone(), text(), any::<bool>()).prop_map(|(op, e, pattern, negated)| {
                Expr::Match { op, expr: Box::new(e), pattern, negated }
            }),
        ]
        .boxed();
        let next_any =
            prop_oneof![3 => next_cond.clone(), 1 => value_leaf.clone(), 1 => anything.clone().prop_map(negate)];
        ordered = prop_oneof![3 => ordered.clone(), 1 => anything.clone().prop_map(negate)].boxed();
        cond = next_cond;
        anything = next_any.boxed();
    }
    (cond, anything)
}

fn condition() -> BoxedStrategy<Expr> {
    strategies(5).0
}

fn message() -> impl Strategy<Value = Props> {
    let value = prop::sample::select(vec!["1", "2", "-1", "2.5", "x", "", "true", "NaN", "3000000000", "it's"]);
    prop::collection::vec((prop::sample::select(vec!["a", "b", "c", "TAGS"]), value), 0..4)
        .prop_map(|kv| Props(kv.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()))
}

/// Whatever `text` is: no panic; a parsed filter prints as text that parses
/// back to it; errors point inside the input.
fn check_text(text: &str, msg: &Props) -> Result<(), TestCaseError> {
    match SqlFilter::parse(text) {
        Ok(f) => {
            let shown = f.to_string();
            let again = SqlFilter::parse(&shown).map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
            prop_assert_eq!(&again, &f, "{:?} shown as {:?}", text, shown);
            prop_assert_eq!(again.evaluate(msg), f.evaluate(msg));
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            if let Some(pos) = e.position() {
                prop_assert!(pos <= text.len(), "{:?}: {}", text, e);
            }
        }
    }
    if let Ok(t) = TagExpression::parse(text) {
        prop_assert_eq!(TagExpression::parse(&t.to_string()), Ok(t.clone()));
        let _ = t.matches(Some(text));
    }
    Ok(())
}

/// SQL-looking token soup.
fn soup() -> impl Strategy<Value = String> {
    let tok = prop::sample::select(vec![
        "a",
        "b",
        "TAGS",
        "1",
        "2.5",
        "-",
        "+",
        "(",
        ")",
        "'x'",
        "''",
        "'",
        "AND",
        "OR",
        "NOT",
        "=",
        "<>",
        "<",
        ">=",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "BETWEEN",
        "IN",
        ",",
        "CONTAINS",
        "STARTSWITH",
        "--",
        "/*",
        "*/",
        "\n",
        "0",
        "1e400",
        "0.0",
        "99999999999999999999",
    ]);
    prop::collection::vec((tok, any::<bool>()), 0..24)
        .prop_map(|v| v.into_iter().map(|(t, space)| if space { format!("{t} ") } else { t.to_owned() }).collect())
}

/// Text nested up to and past the limits: runs of unary operators,
/// parentheses and postfix forms in layers around a small expression.
fn nested() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec!["a = 1", "a", "1", "TRUE", "-1"]);
    let runs = prop::collection::vec((0u8..9, 1usize..70), 0..5);
    (base, runs).prop_map(|(base, runs)| {
        let mut s = base.to_owned();
        for layer in runs.into_iter().flat_map(|(layer, n)| std::iter::repeat_n(layer, n)) {
            s = match layer {
                0 => format!("NOT {s}"),
                1 => format!("({s})"),
                2 => format!("-{s}"),
                3 => format!("- {s}"),
                4 => format!("{s} IS NULL"),
                5 => format!("NOT ({s})"),
                6 => format!("{s} = TRUE"),
                7 => format!("a = ({s})"),
                _ => format!("b OR ({s}) AND c"),
            };
        }
        s
    })
}

/// `AND` from the operands' results, as RocketMQ's `LogicExpression`.
fn and(
    l: Result<Option<bool>, EvalError>,
    r: impl FnOnce() -> Result<Option<bool>, EvalError>,
) -> Result<Option<bool>, EvalError> {
    let l = l?;
    if l == Some(false) {
        return Ok(Some(false));
    }
    let r = r()?;
    Ok(match (l, r) {
        (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn display_parses_back(e in condition(), msg in message()) {
        let text = e.to_string();
        let f = SqlFilter::parse(&text).map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
        prop_assert_eq!(f.expr(), &e, "{}", text);
        prop_assert_eq!(f.to_string(), text);
        let _ = f.matches(&msg);
    }

    #[test]
    fn not_and_compose(l in condition(), r in condition(), msg in message()) {
        let parse = |s: String| SqlFilter::parse(&s).map_err(|err| TestCaseError::fail(format!("{s:?}: {err}")));
        let (fl, fr) = (parse(l.to_string())?, parse(r.to_string())?);
        let negated = parse(format!("NOT ({l})"))?;
        prop_assert_eq!(negated.evaluate(&msg), fl.evaluate(&msg).map(|t| t.map(|b| !b)));
        let both = parse(format!("({l}) AND ({r})"))?;
        prop_assert_eq!(both.evaluate(&msg), and(fl.evaluate(&msg), || fr.evaluate(&msg)));
        let either = parse(format!("NOT (NOT ({l}) AND NOT ({r}))"))?;
        let de_morgan = and(fl.evaluate(&msg).map(|t| t.map(|b| !b)), || fr.evaluate(&msg).map(|t| t.map(|b| !b)));
        prop_assert_eq!(either.evaluate(&msg), de_morgan.map(|t| t.map(|b| !b)));
    }

    #[test]
    fn random_text_never_panics(text in any::<String>(), msg in message()) {
        check_text(&text, &msg)?;
    }

    #[test]
    fn token_soup_never_panics(text in soup(), msg in message()) {
        check_text(&text, &msg)?;
    }

    #[test]
    fn nested_text_round_trips(text in nested(), msg in message()) {
        check_text(&text, &msg)?;
    }

    #[test]
    fn mutated_filters_never_panic(e in condition(), at in any::<prop::sample::Index>(), cut in 0usize..4, insert in soup(), msg in message()) {
        let text = e.to_string();
        let mut i = at.index(text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        let mut j = (i + cut).min(text.len());
        while !text.is_char_boundary(j) {
            j += 1;
        }
        check_text(&format!("{}{insert}{}", &text[..i], &text[j..]), &msg)?;
    }

    #[test]
    fn tag_lists_round_trip(tags in prop::collection::vec("[ a-z|*\t]{0,4}", 1..5), tag in "[a-z|*]{0,3}") {
        let text = tags.join("||");
        match TagExpression::parse(&text) {
            Ok(t) => {
                prop_assert_eq!(TagExpression::parse(&t.to_string()), Ok(t.clone()));
                let listed = t.tags().is_some_and(|ts| ts.iter().any(|x| x == &tag));
                prop_assert_eq!(t.matches(Some(&tag)), t.is_all() || listed);
            }
            Err(e) => prop_assert_eq!(e, FilterError::NoTags),
        }
    }
}
