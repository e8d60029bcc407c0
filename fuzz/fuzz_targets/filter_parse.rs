//! Arbitrary text (bytes read as lossy UTF-8) as a RocketMQ subscription
//! expression through both `fjord-filter` parsers, tag and SQL92: the
//! expressions come from clients. Parsing must never panic nor overflow the
//! stack, and every error must point inside the input. Whatever parses must
//! print as text that parses back to the same filter (and prints the same),
//! and an SQL92 filter must evaluate, without panicking and to the same
//! result before and after that round trip, against a few fixed messages.
#![no_main]

use fjord_filter::{Filter, FilterError, FilterKind, MessageView, SqlFilter, TagExpression};
use libfuzzer_sys::fuzz_target;

/// A message of fixed properties; the tag is `TAGS`, as in RocketMQ.
struct Msg(&'static [(&'static str, &'static str)]);

impl MessageView for Msg {
    fn tag(&self) -> Option<&str> {
        self.property("TAGS")
    }

    fn property(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// No properties; small numbers and strings; the odd values of Java's
/// number parsers; quotes and blanks.
const MESSAGES: [Msg; 4] = [
    Msg(&[]),
    Msg(&[("TAGS", "TagA"), ("a", "1"), ("b", "2.5"), ("c", "x"), ("d", "10")]),
    Msg(&[("a", "-1"), ("b", "NaN"), ("c", "true"), ("d", "3000000000"), ("e", ""), ("x", "1e3")]),
    Msg(&[("TAGS", "*"), ("a", "it's"), ("b", " 7 "), ("c", "+5"), ("d", "-Infinity")]),
];

fn check_error(e: &FilterError, len: usize) {
    assert!(!e.to_string().is_empty());
    if let Some(pos) = e.position() {
        assert!(pos <= len, "error position {pos} beyond the input ({len} bytes): {e}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    match TagExpression::parse(&text) {
        Ok(tags) => {
            let shown = tags.to_string();
            let again = TagExpression::parse(&shown).unwrap_or_else(|e| panic!("{shown:?} does not parse: {e}"));
            assert_eq!(again, tags, "tag expression {text:?} shown as {shown:?}");
            for m in &MESSAGES {
                assert_eq!(tags.matches(m.tag()), again.matches(m.tag()));
            }
        }
        Err(e) => check_error(&e, text.len()),
    }

    match SqlFilter::parse(&text) {
        Ok(filter) => {
            let shown = filter.to_string();
            let again = SqlFilter::parse(&shown).unwrap_or_else(|e| panic!("{shown:?} does not parse: {e}"));
            assert_eq!(again, filter, "SQL92 {text:?} shown as {shown:?}");
            assert_eq!(again.to_string(), shown);
            for m in &MESSAGES {
                let result = filter.evaluate(m);
                assert_eq!(again.evaluate(m), result, "{shown:?}");
                assert_eq!(filter.matches(m), result == Ok(Some(true)));
            }
        }
        Err(e) => check_error(&e, text.len()),
    }

    for kind in [FilterKind::Tag, FilterKind::Sql92] {
        if let Ok(filter) = Filter::parse(kind, &text) {
            for m in &MESSAGES {
                let _ = filter.matches(m);
            }
        }
    }
});
