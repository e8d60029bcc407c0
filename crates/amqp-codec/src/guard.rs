//! The checks run before amq-protocol's parser sees a frame: known class
//! and method ids, and an iterative walk of every field table that bounds
//! nesting. The parser recurses once per nested table or array (1-2 KiB of
//! stack per level), so its input must be known shallow first.

use crate::{CodecError, MAX_NESTING, Result};

/// One argument to skip on the way to a field table.
#[derive(Clone, Copy)]
enum Arg {
    Octet,
    Short,
    ShortStr,
    Table,
}

use Arg::{Octet, Short, ShortStr, Table};

/// The methods of AMQP 0-9-1 (with RabbitMQ's extensions: confirm,
/// basic.nack, connection.blocked/unblocked/update-secret), and for those
/// with field tables, their arguments up to the last table.
fn method_args(class_id: u16, method_id: u16) -> Option<&'static [Arg]> {
    const NONE: &[Arg] = &[];
    Some(match (class_id, method_id) {
        (10, 10) => &[Octet, Octet, Table],
        (10, 11) => &[Table],
        (10, 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51 | 60 | 61 | 70 | 71) => NONE,
        (20, 10 | 11 | 20 | 21 | 40 | 41) => NONE,
        (30, 10 | 11) => NONE,
        (40, 10) => &[Short, ShortStr, ShortStr, Octet, Table],
        (40, 30 | 40) => &[Short, ShortStr, ShortStr, ShortStr, Octet, Table],
        (40, 11 | 20 | 21 | 31 | 51) => NONE,
        (50, 10) => &[Short, ShortStr, Octet, Table],
        (50, 20) => &[Short, ShortStr, ShortStr, ShortStr, Octet, Table],
        (50, 50) => &[Short, ShortStr, ShortStr, ShortStr, Table],
        (50, 11 | 21 | 30 | 31 | 40 | 41 | 51) => NONE,
        (60, 20) => &[Short, ShortStr, ShortStr, Octet, Table],
        (60, 10 | 11 | 21 | 30 | 31 | 40 | 50 | 60 | 70 | 71 | 72 | 80 | 90 | 100 | 110 | 111 | 120) => NONE,
        (85, 10 | 11) => NONE,
        (90, 10 | 11 | 20 | 21 | 30 | 31) => NONE,
        _ => return None,
    })
}

fn malformed(what: &'static str) -> CodecError {
    CodecError::Malformed { what, detail: "arguments end early".into() }
}

/// A method frame's payload: known ids, then its tables' nesting.
pub(crate) fn check_method(payload: &[u8]) -> Result<()> {
    let [c0, c1, m0, m1, ..] = *payload else { return Err(malformed("method frame")) };
    let (class_id, method_id) = (u16::from_be_bytes([c0, c1]), u16::from_be_bytes([m0, m1]));
    let args = method_args(class_id, method_id).ok_or(CodecError::UnknownMethod { class_id, method_id })?;
    let mut pos = 4;
    for arg in args {
        pos = match arg {
            Octet => pos + 1,
            Short => pos + 2,
            ShortStr => pos + 1 + usize::from(*payload.get(pos).ok_or_else(|| malformed("method arguments"))?),
            Table => check_table_at(payload, pos)?,
        };
        if pos > payload.len() {
            return Err(malformed("method arguments"));
        }
    }
    Ok(())
}

/// A content header's payload: the `headers` property's nesting (the only
/// table among the basic properties, after content-type and -encoding).
pub(crate) fn check_content_header(payload: &[u8]) -> Result<()> {
    // class, weight, body size, then the first property-flags word.
    let flags = match payload.get(12..14) {
        Some(f) => u16::from_be_bytes([f[0], f[1]]),
        None => return Err(malformed("content header")),
    };
    if flags & 0x0001 != 0 {
        // A continuation word: basic defines only 14 properties.
        return Err(CodecError::Malformed { what: "content header", detail: "unexpected property flags".into() });
    }
    let mut pos = 14;
    for bit in [15u16, 14] {
        if flags & (1 << bit) != 0 {
            pos += 1 + usize::from(*payload.get(pos).ok_or_else(|| malformed("content header"))?);
        }
    }
    if flags & (1 << 13) != 0 {
        check_table_at(payload, pos)?;
    }
    Ok(())
}

fn read_u32(b: &[u8], pos: usize) -> Option<u32> {
    let s = b.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Walks the field table whose length starts at `b[pos]` without
/// recursion, refusing nesting deeper than [`MAX_NESTING`], unknown field
/// types and lengths that leave their container. Returns the position
/// after the table.
pub(crate) fn check_table_at(b: &[u8], pos: usize) -> Result<usize> {
    let bad = |detail: &str| CodecError::Malformed { what: "field table", detail: detail.to_string() };
    let open = |pos: usize, limit: usize| -> Result<usize> {
        let len = read_u32(b, pos).ok_or_else(|| bad("length past the end"))? as usize;
        let end = (pos + 4).checked_add(len).filter(|e| *e <= limit).ok_or_else(|| bad("length past its container"))?;
        Ok(end)
    };
    let end = open(pos, b.len())?;
    // (end of container, whether it is a table: entries have names)
    let mut stack: Vec<(usize, bool)> = vec![(end, true)];
    let mut pos = pos + 4;
    while let Some(&(end, is_table)) = stack.last() {
        if pos == end {
            stack.pop();
            continue;
        }
        if is_table {
            pos += 1 + usize::from(b[pos]);
        }
        let t = *b.get(pos).filter(|_| pos < end).ok_or_else(|| bad("entry past its container"))?;
        pos += 1;
        let width = match t {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'S' | b'x' => 4 + read_u32(b, pos).ok_or_else(|| bad("string past the end"))? as usize,
            b'F' | b'A' => {
                if stack.len() >= MAX_NESTING {
                    return Err(CodecError::TooDeep { max: MAX_NESTING });
                }
                let inner = open(pos, end)?;
                stack.push((inner, t == b'F'));
                pos += 4;
                continue;
            }
            other => {
                return Err(CodecError::Malformed {
                    what: "field table",
                    detail: format!("unknown field type {other:#04x}"),
                });
            }
        };
        pos = pos.checked_add(width).filter(|p| *p <= end).ok_or_else(|| bad("value past its container"))?;
    }
    Ok(end)
}
