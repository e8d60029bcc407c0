//! Output: the API's JSON as is (`-o json`), the same data as YAML
//! (`-o yaml`), or human tables (`-o table`, the default) built by each
//! command from that JSON with the helpers here.

use std::io::Write;

use comfy_table::{Table, presets};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CliError, Result};
use crate::time::{format_duration_ms, format_ms};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Human-readable tables.
    #[default]
    Table,
    /// The API response, pretty-printed JSON (stable, for scripts).
    Json,
    /// The API response as YAML.
    Yaml,
}

/// The text to print for `value`: JSON or YAML of the value itself, or
/// what `human` makes of it. Always ends with a newline (unless empty).
pub(crate) fn render(format: Format, value: &Value, human: impl FnOnce(&Value) -> String) -> Result<String> {
    let mut text = match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map_err(|e| CliError::BadResponse { url: String::new(), reason: e.to_string() })?,
        Format::Yaml => serde_norway::to_string(value)
            .map_err(|e| CliError::BadResponse { url: String::new(), reason: e.to_string() })?,
        Format::Table => human(value),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Renders and prints.
pub(crate) fn emit(format: Format, value: &Value, human: impl FnOnce(&Value) -> String) -> Result<()> {
    write_stdout(&render(format, value, human)?)
}

/// Writes to stdout; a closed pipe (`fjord topic list | head -1`) is not
/// an error.
#[allow(clippy::print_stdout)]
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// A borderless table (like `kubectl get`): upper-case headers, columns
/// two spaces apart, no trailing spaces.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(headers.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>());
    for r in rows {
        t.add_row(r);
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.trim_fmt()
}

/// A two-column `Field: value` block for one object.
pub(crate) fn fields(rows: Vec<(&str, String)>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    for (k, v) in rows {
        t.add_row(vec![format!("{k}:"), v]);
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 1));
    }
    t.trim_fmt()
}

/// Blocks (field lists, tables) separated by blank lines; empty ones skipped.
pub(crate) fn blocks(parts: Vec<String>) -> String {
    parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join("\n\n")
}

/// `1 message`, `2 messages`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// A value as a cell: strings as is, numbers and booleans as written,
/// `-` for null or missing, arrays joined with `,`, objects as JSON.
pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            if a.is_empty() {
                "-".into()
            } else {
                a.iter().map(s).collect::<Vec<_>>().join(",")
            }
        }
        other => other.to_string(),
    }
}

/// The array at `v` (empty when missing).
pub(crate) fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A `*_ms` timestamp as RFC 3339 UTC, `-` when absent.
pub(crate) fn time(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), format_ms)
}

/// Milliseconds as a duration for people, `-` when absent.
pub(crate) fn duration(v: &Value) -> String {
    v.as_u64().map_or_else(|| s(v), format_duration_ms)
}

/// A byte count with a binary unit (`512 B`, `1.5 KiB`, `3.2 GiB`).
pub(crate) fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else { return s(v) };
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{x:.1} {}", UNITS[unit]) }
}

/// Bytes per second for people (`1.5 KiB/s`).
pub(crate) fn byte_rate(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 0.0 => format!("{}/s", bytes(&Value::from(x.round() as u64))),
        _ => s(v),
    }
}

/// A rate with one decimal.
pub(crate) fn rate(v: &Value) -> String {
    v.as_f64().map_or_else(|| s(v), |x| format!("{x:.1}"))
}

/// At most `max` characters of `text`, on one line (`…` when cut).
pub(crate) fn clip(text: &str, max: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Widest message key or value shown in message tables.
const CELL_WIDTH: usize = 60;

/// A message's key or value field (`field` is `key` or `value`) for a
/// table: the text, `base64:…` for binary, `-` for null.
pub(crate) fn payload(m: &Value, field: &str, max: usize) -> String {
    match &m[field] {
        Value::String(text) if m[format!("{field}_encoding")] == "base64" => clip(&format!("base64:{text}"), max),
        Value::String(text) => clip(text, max),
        other => s(other),
    }
}

/// Columns of message tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Partition,
    Offset,
    Time,
    Id,
    Tag,
    Keys,
    Key,
    Value,
}

/// A table of `Message`s with the given columns.
pub(crate) fn messages(msgs: &[Value], cols: &[Col]) -> String {
    let headers: Vec<&str> = cols
        .iter()
        .map(|c| match c {
            Col::Partition => "partition",
            Col::Offset => "offset",
            Col::Time => "timestamp",
            Col::Id => "message id",
            Col::Tag => "tag",
            Col::Keys => "keys",
            Col::Key => "key",
            Col::Value => "value",
        })
        .collect();
    let rows = msgs
        .iter()
        .map(|m| {
            cols.iter()
                .map(|c| match c {
                    Col::Partition => s(&m["partition"]),
                    Col::Offset => s(&m["offset"]),
                    Col::Time => time(&m["timestamp_ms"]),
                    Col::Id => s(&m["message_id"]),
                    Col::Tag => s(&m["tag"]),
                    Col::Keys => s(&m["keys"]),
                    Col::Key => payload(m, "key", CELL_WIDTH / 2),
                    Col::Value => payload(m, "value", CELL_WIDTH),
                })
                .collect()
        })
        .collect();
    table(&headers, rows)
}

/// One message in full: every field, headers and properties.
pub(crate) fn message_detail(m: &Value) -> String {
    let headers = arr(&m["headers"])
        .iter()
        .map(|h| {
            let v = match &h["value"] {
                Value::String(text) if h["value_encoding"] == "base64" => format!("base64:{text}"),
                other => s(other),
            };
            format!("{}={v}", s(&h["key"]))
        })
        .collect::<Vec<_>>();
    let props = m["properties"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k}={}", s(v))).collect::<Vec<_>>())
        .unwrap_or_default();
    let list = |v: Vec<String>| if v.is_empty() { "-".to_string() } else { v.join("\n") };
    fields(vec![
        ("Topic", s(&m["topic"])),
        ("Partition", s(&m["partition"])),
        ("Offset", s(&m["offset"])),
        ("Timestamp", time(&m["timestamp_ms"])),
        ("Message ID", s(&m["message_id"])),
        ("Tag", s(&m["tag"])),
        ("Keys", s(&m["keys"])),
        ("Key", payload(m, "key", usize::MAX)),
        ("Value", payload(m, "value", usize::MAX)),
        ("Size", bytes(&m["size_bytes"])),
        ("Headers", list(headers)),
        ("Properties", list(props)),
    ])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_are_aligned_without_borders() {
        let t = table(&["name", "partitions"], vec![vec!["orders".into(), "3".into()], vec!["x".into(), "12".into()]]);
        assert_eq!(t, "NAME    PARTITIONS\norders  3\nx       12");
    }

    #[test]
    fn json_and_yaml_are_the_value_itself() {
        let v = json!({"topics": [{"name": "a", "partitions": 3}]});
        let j = render(Format::Json, &v, |_| unreachable!()).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Value>(&j).ok(), Some(v.clone()));
        assert!(j.ends_with("}\n"));
        let y = render(Format::Yaml, &v, |_| unreachable!()).unwrap_or_default();
        assert_eq!(y, "topics:\n- name: a\n  partitions: 3\n");
        let t = render(Format::Table, &v, |_| "T".into()).unwrap_or_default();
        assert_eq!(t, "T\n");
        assert_eq!(render(Format::Table, &v, |_| String::new()).unwrap_or_default(), "");
    }

    #[test]
    fn cells() {
        assert_eq!(s(&json!(null)), "-");
        assert_eq!(s(&json!("x")), "x");
        assert_eq!(s(&json!(3)), "3");
        assert_eq!(s(&json!(["a", "b"])), "a,b");
        assert_eq!(bytes(&json!(512)), "512 B");
        assert_eq!(bytes(&json!(1536)), "1.5 KiB");
        assert_eq!(bytes(&json!(3_u64 << 30)), "3.0 GiB");
        assert_eq!(time(&json!(1_714_564_800_000_i64)), "2024-05-01T12:00:00Z");
        assert_eq!(time(&json!(null)), "-");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\nb", 4), "a b");
        let m = json!({"key": null, "key_encoding": "utf8", "value": "AAE=", "value_encoding": "base64"});
        assert_eq!(payload(&m, "key", 10), "-");
        assert_eq!(payload(&m, "value", 20), "base64:AAE=");
    }

    #[test]
    fn message_tables() {
        let msgs = vec![json!({"partition": 0, "offset": 5, "timestamp_ms": 0, "key": "k", "key_encoding": "utf8",
                   "value": "hello", "value_encoding": "utf8"})];
        let t = messages(&msgs, &[Col::Partition, Col::Offset, Col::Time, Col::Key, Col::Value]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["PARTITION", "OFFSET", "TIMESTAMP", "KEY", "VALUE"]
        );
        assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", "5", "1970-01-01T00:00:00Z", "k", "hello"]);
    }
}
