//! Tokens of RocketMQ's `SelectorParser.jj`, longest match first as JavaCC
//! does.

use crate::FilterError;

/// Reserved words (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
}

impl Keyword {
    fn lookup(word: &str) -> Option<Keyword> {
        const WORDS: [(&str, Keyword); 12] = [
            ("NOT", Keyword::Not),
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("BETWEEN", Keyword::Between),
            ("IN", Keyword::In),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
            ("NULL", Keyword::Null),
            ("IS", Keyword::Is),
            ("CONTAINS", Keyword::Contains),
            ("STARTSWITH", Keyword::StartsWith),
            ("ENDSWITH", Keyword::EndsWith),
        ];
        WORDS.iter().find(|(w, _)| w.eq_ignore_ascii_case(word)).map(|&(_, k)| k)
    }
}

/// Whether `word` is a reserved word, so cannot name a property.
pub(crate) fn is_keyword(word: &str) -> bool {
    Keyword::lookup(word).is_some()
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Keyword(Keyword),
    Ident(String),
    /// A string literal, quotes removed and `''` decoded.
    Str(String),
    /// A decimal literal (`L` suffix dropped): RocketMQ's `DECIMAL_LITERAL`
    /// goes through `new Long(text)`, so it must fit an `i64`.
    Integer(i64),
    /// A floating-point literal: finite and positive, as RocketMQ's
    /// `createFloat` demands.
    Float(f64),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Eof,
}

/// A token and its byte range in the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

fn is_ident_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Shortens `s` to at most `max` bytes (on a char boundary), marking the cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        i = skip_blanks(bytes, i)?;
        let Some(&b) = bytes.get(i) else {
            tokens.push(Token { tok: Tok::Eof, start: i, end: i });
            return Ok(tokens);
        };
        let start = i;
        let (tok, end) = match b {
            b'=' => (Tok::Eq, i + 1),
            b'<' => match bytes.get(i + 1) {
                Some(b'>') => (Tok::Ne, i + 2),
                Some(b'=') => (Tok::Le, i + 2),
                _ => (Tok::Lt, i + 1),
            },
            b'>' => match bytes.get(i + 1) {
                Some(b'=') => (Tok::Ge, i + 2),
                _ => (Tok::Gt, i + 1),
            },
            b'(' => (Tok::LParen, i + 1),
            b')' => (Tok::RParen, i + 1),
            b',' => (Tok::Comma, i + 1),
            b'+' => (Tok::Plus, i + 1),
            b'-' => (Tok::Minus, i + 1),
            b'\'' => string(src, i)?,
            b'0'..=b'9' | b'.' => number(src, i)?,
            _ if is_ident_start(b) => {
                let mut end = i + 1;
                while bytes.get(end).copied().is_some_and(is_ident_part) {
                    end += 1;
                }
                let word = &src[i..end];
                let tok = match Keyword::lookup(word) {
                    Some(k) => Tok::Keyword(k),
                    None => Tok::Ident(word.to_owned()),
                };
                (tok, end)
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                return Err(FilterError::UnexpectedChar { ch, pos: i });
            }
        };
        tokens.push(Token { tok, start, end });
        i = end;
    }
}

/// Skips white space (` `, `\t`, `\n`, `\r`, `\f`), `-- …` line comments and
/// `/* … */` comments. As in JavaCC, a `--` comment needs a line end; at the
/// end of the input `--` is two minus signs.
fn skip_blanks(bytes: &[u8], mut i: usize) -> Result<usize, FilterError> {
    loop {
        match bytes.get(i) {
            Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => i += 1,
            Some(b'-') if bytes.get(i + 1) == Some(&b'-') => {
                match bytes[i + 2..].iter().position(|&c| c == b'\n' || c == b'\r') {
                    Some(n) => i += 2 + n + 1,
                    None => return Ok(i),
                }
            }
            Some(b'/') if bytes.get(i + 1) == Some(&b'*') => match bytes[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(n) => i += 2 + n + 2,
                None => return Err(FilterError::UnterminatedComment { pos: i }),
            },
            _ => return Ok(i),
        }
    }
}

/// `'…'` with `''` for a quote.
fn string(src: &str, start: usize) -> Result<(Tok, usize), FilterError> {
    let bytes = src.as_bytes();
    let mut value = String::new();
    let mut i = start + 1;
    let mut run = i;
    loop {
        match bytes.get(i) {
            None => return Err(FilterError::UnterminatedString { pos: start }),
            Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => {
                value.push_str(&src[run..=i]);
                i += 2;
                run = i;
            }
            Some(b'\'') => {
                value.push_str(&src[run..i]);
                return Ok((Tok::Str(value), i + 1));
            }
            Some(_) => i += 1,
        }
    }
}

fn digits(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// End of an exponent (`E[+-]digits`) starting at `i`, if there is one.
fn exponent(bytes: &[u8], i: usize) -> Option<usize> {
    if !matches!(bytes.get(i), Some(b'e' | b'E')) {
        return None;
    }
    let mut j = i + 1;
    if matches!(bytes.get(j), Some(b'+' | b'-')) {
        j += 1;
    }
    let end = digits(bytes, j);
    (end > j).then_some(end)
}

/// `DECIMAL_LITERAL: "0" | [1-9][0-9]* [lL]?` and
/// `FLOATING_POINT_LITERAL: [0-9]+ "." [0-9]* EXP? | "." [0-9]+ EXP? | [0-9]+ EXP`,
/// whichever is longer.
fn number(src: &str, start: usize) -> Result<(Tok, usize), FilterError> {
    let bytes = src.as_bytes();
    let int_end = digits(bytes, start);
    let has_int = int_end > start;
    let float_end = if bytes.get(int_end) == Some(&b'.') {
        let frac_end = digits(bytes, int_end + 1);
        if !has_int && frac_end == int_end + 1 {
            // A lone `.` starts no token.
            return Err(FilterError::UnexpectedChar { ch: '.', pos: start });
        }
        Some(exponent(bytes, frac_end).unwrap_or(frac_end))
    } else {
        exponent(bytes, int_end)
    };
    if let Some(end) = float_end {
        let text = &src[start..end];
        let invalid = |reason| FilterError::InvalidNumber { literal: shorten(text, 40), pos: start, reason };
        let value: f64 = text.parse().map_err(|_| invalid("is not a valid number"))?;
        if value.is_infinite() {
            return Err(invalid("is too large for a double"));
        }
        if value == 0.0 {
            // RocketMQ's createFloat rejects values below Double.MIN_VALUE.
            return Err(invalid("is zero or too small: RocketMQ rejects floats below 4.9E-324 (write 0)"));
        }
        return Ok((Tok::Float(value), end));
    }
    if bytes[start] == b'0' {
        return Ok((Tok::Integer(0), start + 1));
    }
    let text = &src[start..int_end];
    let value: i64 = text.parse().map_err(|_| FilterError::InvalidNumber {
        literal: shorten(text, 40),
        pos: start,
        reason: "is out of range: integers must fit a signed 64-bit long",
    })?;
    let end = if matches!(bytes.get(int_end), Some(b'l' | b'L')) { int_end + 1 } else { int_end };
    Ok((Tok::Integer(value), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn id(s: &str) -> Tok {
        Tok::Ident(s.to_owned())
    }

    #[test]
    fn tokens() {
        use Tok::*;
        let cases: Vec<(&str, Vec<Tok>)> = vec![
            ("a=1", vec![id("a"), Eq, Integer(1), Eof]),
            ("a<>b", vec![id("a"), Ne, id("b"), Eof]),
            ("<= >= < > = <>", vec![Le, Ge, Lt, Gt, Eq, Ne, Eof]),
            (
                "and Or NOT",
                vec![Keyword(super::Keyword::And), Keyword(super::Keyword::Or), Keyword(super::Keyword::Not), Eof],
            ),
            ("note $x _y a1 A_$9", vec![id("note"), id("$x"), id("_y"), id("a1"), id("A_$9"), Eof]),
            ("'it''s'", vec![Str("it's".into()), Eof]),
            ("''''", vec![Str("'".into()), Eof]),
            ("''", vec![Str(String::new()), Eof]),
            ("'é€'", vec![Str("é€".into()), Eof]),
            ("0 00 12 12L 12l", vec![Integer(0), Integer(0), Integer(0), Integer(12), Integer(12), Integer(12), Eof]),
            ("0123", vec![Integer(0), Integer(123), Eof]),
            (
                "1.5 5. .5 5E2 5.E2 5e-1 0.5e+1",
                vec![Float(1.5), Float(5.0), Float(0.5), Float(500.0), Float(500.0), Float(0.5), Float(5.0), Eof],
            ),
            ("0123.5", vec![Float(123.5), Eof]),
            ("12e", vec![Integer(12), id("e"), Eof]),
            ("1.2.3", vec![Float(1.2), Float(0.3), Eof]),
            ("12abc", vec![Integer(12), id("abc"), Eof]),
            ("-5", vec![Minus, Integer(5), Eof]),
            ("+5", vec![Plus, Integer(5), Eof]),
            ("a -- comment\n= 1", vec![id("a"), Eq, Integer(1), Eof]),
            ("a --5", vec![id("a"), Minus, Minus, Integer(5), Eof]),
            ("a /* x * / */ = /**/ 1", vec![id("a"), Eq, Integer(1), Eof]),
            ("\t\r\n\x0c a", vec![id("a"), Eof]),
            ("9223372036854775807", vec![Integer(i64::MAX), Eof]),
        ];
        for (src, want) in cases {
            assert_eq!(toks(src), want, "{src:?}");
        }
    }

    #[test]
    fn positions() {
        let t = tokenize("  ab <= 'x'").unwrap();
        let spans: Vec<(usize, usize)> = t.iter().map(|t| (t.start, t.end)).collect();
        assert_eq!(spans, vec![(2, 4), (5, 7), (8, 11), (11, 11)]);
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            ("a != 1", "unexpected character `!` at byte 2"),
            ("a = 'x", "unterminated string literal starting at byte 4"),
            ("a /* x", "unterminated comment starting at byte 2"),
            ("a.b = 1", "unexpected character `.` at byte 1"),
            ("a = é", "unexpected character `é` at byte 4"),
            ("a = 1 # x", "unexpected character `#` at byte 6"),
            (
                "a > 9223372036854775808",
                "number `9223372036854775808` at byte 4 is out of range: integers must fit a signed 64-bit long",
            ),
            ("a > 1e400", "number `1e400` at byte 4 is too large for a double"),
            (
                "a > 0.0",
                "number `0.0` at byte 4 is zero or too small: RocketMQ rejects floats below 4.9E-324 (write 0)",
            ),
            (
                "a > 1e-400",
                "number `1e-400` at byte 4 is zero or too small: RocketMQ rejects floats below 4.9E-324 (write 0)",
            ),
            ("a\u{b}", "unexpected character `\u{b}` at byte 1"),
        ];
        for (src, want) in cases {
            assert_eq!(tokenize(src).unwrap_err().to_string(), *want, "{src:?}");
        }
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("aéb", 2), "a…");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
