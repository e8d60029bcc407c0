//! How exchanges pick destinations: exact routing keys (direct), all
//! bindings (fanout), dotted patterns with `*` and `#` (topic) and header
//! matching (headers). Pure functions, tested on their own.

use fjord_amqp_codec::{AMQPValue, FieldTable};

/// Whether a topic-exchange binding pattern matches a routing key: words
/// are separated by `.`, `*` matches exactly one word, `#` zero or more.
/// Iterative (no recursion on hostile patterns), O(words × pattern words).
pub fn topic_matches<'a>(pattern: &'a str, key: &'a str) -> bool {
    // An empty key or pattern has no words (as RabbitMQ splits them).
    let words = |s: &'a str| if s.is_empty() { Vec::new() } else { s.split('.').collect::<Vec<&'a str>>() };
    let (p, k) = (words(pattern), words(key));
    // reach[j]: the first i pattern words can match the first j key words.
    let mut reach = vec![false; k.len() + 1];
    reach[0] = true;
    for w in &p {
        let mut next = vec![false; k.len() + 1];
        match *w {
            "#" => {
                let mut any = false;
                for j in 0..=k.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            "*" => next[1..].copy_from_slice(&reach[..k.len()]),
            word => {
                for j in 1..=k.len() {
                    next[j] = reach[j - 1] && k[j - 1] == word;
                }
            }
        }
        reach = next;
    }
    reach[k.len()]
}

/// Whether a headers-exchange binding (its arguments) matches a message's
/// headers. `x-match` is `all` (default), `any`, `all-with-x` or
/// `any-with-x`; arguments starting with `x-` are ignored unless `-with-x`.
/// A binding value of type void matches any value of that header.
pub fn headers_match(binding: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = match binding.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => "all".to_string(),
    };
    let with_x = mode.ends_with("-with-x");
    let any = mode.starts_with("any");
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty);
    for (k, want) in binding.inner() {
        let name = k.as_str();
        if name == "x-match" || (!with_x && name.starts_with("x-")) {
            continue;
        }
        let ok = match (want, headers.inner().get(name)) {
            (_, None) => false,
            (AMQPValue::Void, Some(_)) => true,
            (w, Some(h)) => values_equal(w, h),
        };
        if any && ok {
            return true;
        }
        if !any && !ok {
            return false;
        }
    }
    // all: every tested header matched (also when none was tested);
    // any: none matched.
    !any
}

/// Equality across the string types (clients send either) and numeric
/// widths, as RabbitMQ compares header values.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_bytes(a), as_bytes(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (super::value_int(a), super::value_int(b)) {
        return x == y;
    }
    a == b
}

fn as_bytes(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#", "", true),
            ("#", "x.y", true),
            ("#.c", "c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.d", false),
            ("*", "", false),
            ("*.*", "a.b", true),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.#.z", "a.z", true),
            ("", "", true),
            ("", "a", false),
            ("lazy.#", "lazy.orange.male.rabbit", true),
            ("*.orange.*", "quick.orange.rabbit", true),
            ("*.*.rabbit", "quick.orange.fox", false),
        ];
        for (p, k, want) in cases {
            assert_eq!(topic_matches(p, k), want, "{p} vs {k}");
        }
    }

    #[test]
    fn header_matching_modes() {
        let table = |pairs: &[(&str, AMQPValue)]| {
            let mut t = FieldTable::default();
            for (k, v) in pairs {
                t.insert((*k).into(), v.clone());
            }
            t
        };
        let s = |v: &str| AMQPValue::LongString(v.into());
        let msg = table(&[("format", s("pdf")), ("type", s("report")), ("n", AMQPValue::LongInt(3))]);
        assert!(headers_match(&table(&[("format", s("pdf")), ("type", s("report"))]), Some(&msg)));
        assert!(!headers_match(&table(&[("format", s("pdf")), ("type", s("log"))]), Some(&msg)));
        let any = table(&[("x-match", s("any")), ("format", s("zip")), ("type", s("report"))]);
        assert!(headers_match(&any, Some(&msg)));
        assert!(headers_match(&table(&[("n", AMQPValue::ShortShortUInt(3))]), Some(&msg)));
        assert!(headers_match(&table(&[("n", AMQPValue::Void)]), Some(&msg)));
        assert!(!headers_match(&table(&[("missing", AMQPValue::Void)]), Some(&msg)));
        // x- arguments count only with -with-x.
        let x = table(&[("x-id", s("1"))]);
        let xmsg = table(&[("x-id", s("2"))]);
        assert!(headers_match(&x, Some(&xmsg)));
        let mut strict = x.clone();
        strict.insert("x-match".into(), s("all-with-x"));
        assert!(!headers_match(&strict, Some(&xmsg)));
        assert!(headers_match(&table(&[]), None));
        assert!(!headers_match(&table(&[("x-match", s("any"))]), Some(&msg)));
    }
}
