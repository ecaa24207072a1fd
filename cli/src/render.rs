//! Stored values as JSON, and locks as JSON objects or a table.

use std::time::{SystemTime, UNIX_EPOCH};

use ciborium::Value as Cbor;
use hostlock::{LockInfo, LockState};
use serde_json::{Map, Value as Json, json};
use unicode_width::UnicodeWidthStr;

use crate::duration;

/// A stored value as JSON. Every CBOR value has one: byte strings become
/// hex strings, tags are dropped, map keys that are not text are written as
/// the JSON of the key, and integers beyond 64 bits as decimal strings.
pub(crate) fn to_json(value: &Cbor) -> Json {
    match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(*b),
        Cbor::Integer(i) => {
            let i = i128::from(*i);
            if let Ok(small) = i64::try_from(i) {
                json!(small)
            } else if let Ok(big) = u64::try_from(i) {
                json!(big)
            } else {
                Json::String(i.to_string())
            }
        }
        Cbor::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Cbor::Text(t) => Json::String(t.clone()),
        Cbor::Bytes(bytes) => Json::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        Cbor::Tag(_, inner) => to_json(inner),
        Cbor::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Cbor::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Cbor::Text(t) => t.clone(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect::<Map<String, Json>>(),
        ),
        // A value kind added to CBOR after this was written.
        _ => Json::Null,
    }
}

/// JSON given on the command line, as the value to store.
pub(crate) fn from_json(text: &str) -> Result<Cbor, String> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON value {text:?}: {e}"))?;
    Cbor::serialized(&json).map_err(|e| format!("cannot store the value {text:?}: {e}"))
}

pub(crate) fn millis(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn state_name(state: LockState) -> &'static str {
    match state {
        LockState::Live => "live",
        LockState::Expired => "expired",
        LockState::HolderGone => "holder_gone",
        _ => "unknown",
    }
}

/// The JSON object for one lock; its fields are documented in docs/cli.md.
pub(crate) fn lock_json(info: &LockInfo<Cbor>) -> Json {
    json!({
        "key": info.key,
        "value": to_json(&info.value),
        "state": state_name(info.state),
        "expires_at_ms": info.expires_at.map(millis),
        "acquired_at_ms": millis(info.acquired_at),
        "fence": info.fence,
        "has_token": info.has_token,
        "holder": { "pid": info.holder.pid, "alive": info.holder.alive },
    })
}

fn expires_in(info: &LockInfo<Cbor>, now: SystemTime) -> String {
    match (info.state, info.expires_at) {
        (LockState::Expired, _) => "expired".to_owned(),
        (_, None) => "never".to_owned(),
        (_, Some(at)) => at
            .duration_since(now)
            .map_or_else(|_| "expired".to_owned(), duration::show),
    }
}

/// A key or value as a table cell: control characters (a newline would
/// forge a row, an escape sequence would run on the terminal), and the
/// characters that reorder text on screen, are written as escapes, and so is
/// the backslash that begins them. JSON output stays exact.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let reorders = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || reorders {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A table of locks, one row each, with a header.
pub(crate) fn table(locks: &[LockInfo<Cbor>], now: SystemTime) -> String {
    let header = ["KEY", "PID", "ALIVE", "EXPIRES IN", "FENCE", "VALUE"].map(str::to_owned);
    let rows: Vec<[String; 6]> = locks
        .iter()
        .map(|info| {
            let alive = match (info.state, info.holder.alive) {
                (LockState::HolderGone, _) | (_, Some(false)) => "no",
                (_, Some(true)) => "yes",
                (_, None) => "-",
            };
            [
                escape(&info.key),
                info.holder.pid.to_string(),
                alive.to_owned(),
                expires_in(info, now),
                info.fence.to_string(),
                escape(&to_json(&info.value).to_string()),
            ]
        })
        .collect();
    columns(&header, &rows)
}

/// Rows of cells in columns as wide as their widest cell on screen (a wide
/// character takes two columns), two spaces apart.
fn columns(header: &[String; 6], rows: &[[String; 6]]) -> String {
    let mut widths = header.clone().map(|h| h.width());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.width());
        }
    }
    let line = |cells: &[String; 6]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.width())))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(header);
    for row in rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_escape_what_a_terminal_would_act_on() {
        assert_eq!(escape("plain key"), "plain key");
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(escape("日本"), "日本");
    }

    #[test]
    fn wide_characters_keep_the_columns_aligned() {
        let row = |key: &str| [key, "1", "yes", "never", "7", "null"].map(str::to_owned);
        let header = ["KEY", "PID", "ALIVE", "EXPIRES IN", "FENCE", "VALUE"].map(str::to_owned);
        let text = columns(&header, &[row("日本語"), row("abc")]);
        let pid_column: Vec<usize> = text
            .lines()
            .map(|line| {
                let at = line.find(['1', 'P']).unwrap();
                line[..at].width()
            })
            .collect();
        assert_eq!(pid_column, [8, 8, 8], "{text}");
    }

    #[test]
    fn every_cbor_value_has_a_json_form() {
        let value = Cbor::Map(vec![
            (Cbor::Text("bytes".into()), Cbor::Bytes(vec![0xde, 0xad])),
            (
                Cbor::Integer(7.into()),
                Cbor::Tag(1, Box::new(Cbor::Float(1.5))),
            ),
            (Cbor::Text("nan".into()), Cbor::Float(f64::NAN)),
        ]);
        assert_eq!(
            to_json(&value),
            json!({"bytes": "dead", "7": 1.5, "nan": null})
        );
    }

    #[test]
    fn json_round_trips_through_storage() {
        let stored = from_json(r#"{"job":"invoice","ids":[1,2,3],"retry":true}"#).unwrap();
        assert_eq!(
            to_json(&stored),
            json!({"job": "invoice", "ids": [1, 2, 3], "retry": true})
        );
        assert!(from_json("{oops").unwrap_err().contains("invalid JSON"));
    }
}
