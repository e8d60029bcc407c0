//! Tag subscriptions: `*`, or tags separated by `||`.
//!
//! Semantics of RocketMQ's `FilterAPI.buildSubscriptionData` plus the
//! client-side check `tagsSet.contains(msg.getTags())` (the broker itself
//! compares tag hash codes, which can only let extra messages through).

use std::collections::HashSet;
use std::fmt;

use crate::{FilterError, MAX_EXPRESSION_LEN};

/// The expression that subscribes to every message.
pub const SUB_ALL: &str = "*";

/// A parsed tag expression: every message, or the messages whose tag is one
/// of a set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagExpression {
    /// `None`: every message. Otherwise the tags in first-seen order,
    /// without duplicates; never empty.
    tags: Option<Vec<String>>,
    /// The same tags sorted, for binary search.
    sorted: Vec<String>,
}

/// Java's `String.trim()`: strips every char up to U+0020 (ASCII control
/// characters and space), not Unicode white space.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

impl TagExpression {
    /// Parses a tag expression.
    ///
    /// `*` (exactly) or the empty string subscribes to every message.
    /// Anything else is split on `||`; each part is trimmed and empty parts
    /// are dropped. An expression with no part left (`||`, blanks) is an
    /// error. Note that ` * ` (with blanks) is not `*`: it names the tag `*`.
    pub fn parse(expression: &str) -> Result<Self, FilterError> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(FilterError::TooLong { len: expression.len(), max: MAX_EXPRESSION_LEN });
        }
        if expression.is_empty() || expression == SUB_ALL {
            return Ok(Self::all());
        }
        let mut seen = HashSet::new();
        let tags: Vec<String> = expression
            .split("||")
            .map(java_trim)
            .filter(|t| !t.is_empty() && seen.insert(*t))
            .map(str::to_owned)
            .collect();
        if tags.is_empty() {
            return Err(FilterError::NoTags);
        }
        let mut sorted = tags.clone();
        sorted.sort_unstable();
        Ok(Self { tags: Some(tags), sorted })
    }

    /// The expression that matches every message (`*`).
    pub fn all() -> Self {
        Self { tags: None, sorted: Vec::new() }
    }

    /// Whether this is `*`.
    pub fn is_all(&self) -> bool {
        self.tags.is_none()
    }

    /// The subscribed tags in the order written, without duplicates, or
    /// `None` for every message.
    pub fn tags(&self) -> Option<&[String]> {
        self.tags.as_deref()
    }

    /// Whether a message with this tag is subscribed. `*` matches every
    /// message, with or without a tag; otherwise the tag must equal one of
    /// the subscribed tags exactly (case-sensitive), and a message without
    /// a tag never matches.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        if self.tags.is_none() {
            return true;
        }
        match tag {
            Some(tag) => self.sorted.binary_search_by(|t| t.as_str().cmp(tag)).is_ok(),
            None => false,
        }
    }
}

impl fmt::Display for TagExpression {
    /// `*`, or the tags joined by ` || ` (blanks around the separator keep
    /// tags that start or end with `|` apart). A single tag `*` is written
    /// `* ||` so that it does not read back as "every message".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(tags) = &self.tags else {
            return f.write_str(SUB_ALL);
        };
        if tags.len() == 1 && tags[0] == SUB_ALL {
            return f.write_str("* ||");
        }
        for (i, tag) in tags.iter().enumerate() {
            if i > 0 {
                f.write_str(" || ")?;
            }
            f.write_str(tag)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(expr: &str) -> Option<Vec<String>> {
        TagExpression::parse(expr).unwrap().tags().map(<[String]>::to_vec)
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("", None),
            ("*", None),
            (" * ", Some(&["*"])),
            ("TagA", Some(&["TagA"])),
            ("TagA||TagB", Some(&["TagA", "TagB"])),
            (" TagA || TagB ||TagC ", Some(&["TagA", "TagB", "TagC"])),
            ("TagA||", Some(&["TagA"])),
            ("||TagA|| ||", Some(&["TagA"])),
            ("TagA||TagA||TagB", Some(&["TagA", "TagB"])),
            ("a|b", Some(&["a|b"])),
            ("a|||b", Some(&["a", "|b"])),
            ("a || *", Some(&["a", "*"])),
            ("\tx\x0b||\u{1}y", Some(&["x", "y"])),
            // Java's trim keeps non-ASCII blanks.
            ("\u{a0}x", Some(&["\u{a0}x"])),
            ("tag with space", Some(&["tag with space"])),
        ];
        for (expr, want) in cases {
            let want = want.map(|w| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
            assert_eq!(tags(expr), want, "{expr:?}");
        }
    }

    #[test]
    fn parse_errors() {
        for expr in ["||", "|| ||", " || ", "   ", "\t", "||||||"] {
            assert_eq!(TagExpression::parse(expr), Err(FilterError::NoTags), "{expr:?}");
        }
        // Many distinct tags parse in linear time.
        let many: Vec<String> = (0..8_000).map(|i| format!("t{i}")).collect();
        let t = TagExpression::parse(&many.join("||")).unwrap();
        assert_eq!(t.tags().map(<[String]>::len), Some(8_000));
        assert!(t.matches(Some("t7999")) && !t.matches(Some("t8000")));
        let long = "a".repeat(MAX_EXPRESSION_LEN + 1);
        let err = TagExpression::parse(&long).unwrap_err();
        assert_eq!(err, FilterError::TooLong { len: MAX_EXPRESSION_LEN + 1, max: MAX_EXPRESSION_LEN });
        assert_eq!(err.to_string(), "filter expression is 65537 bytes long, more than the limit of 65536");
        assert!(TagExpression::parse(&"a".repeat(MAX_EXPRESSION_LEN)).is_ok());
    }

    #[test]
    fn matching() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("*", None, true),
            ("*", Some("x"), true),
            ("*", Some(""), true),
            ("", None, true),
            ("TagA", Some("TagA"), true),
            ("TagA", Some("taga"), false),
            ("TagA", Some("TagA "), false),
            ("TagA", None, false),
            ("TagA", Some(""), false),
            ("TagA||TagB", Some("TagB"), true),
            ("TagA||TagB", Some("TagC"), false),
            ("TagA||TagB", Some("TagA||TagB"), false),
            (" * ", Some("*"), true),
            (" * ", Some("x"), false),
            (" * ", None, false),
        ];
        for &(expr, tag, want) in cases {
            assert_eq!(TagExpression::parse(expr).unwrap().matches(tag), want, "{expr:?} vs {tag:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for expr in ["*", "", "a", "a||b", " * ", "a| ||b", "a || |b", "| || a", "* || *", "x ||| y"] {
            let t = TagExpression::parse(expr).unwrap();
            let shown = t.to_string();
            assert_eq!(TagExpression::parse(&shown).unwrap(), t, "{expr:?} shown as {shown:?}");
        }
        assert_eq!(TagExpression::parse("a||b").unwrap().to_string(), "a || b");
        assert_eq!(TagExpression::parse("").unwrap().to_string(), "*");
        assert_eq!(TagExpression::parse(" * ").unwrap().to_string(), "* ||");
    }
}
