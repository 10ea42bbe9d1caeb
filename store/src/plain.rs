//! Items as plain JSON: the record layout's item with its DynamoDB type
//! wrappers taken off (`{"S":"x"}` → `"x"`, `{"N":"52.52"}` → `52.52`,
//! `{"B":"AAE="}` → `"AAE="`, `{"M":{…}}` → `{…}`, `{"NULL":true}` →
//! `null`). It is the form of the packed layout's record lines and of
//! `gateway export`: anyone with a JSON parser reads it, with no DynamoDB
//! library.
//!
//! [`to_plain`] rewrites DynamoDB JSON text in one pass, copying strings and
//! number text as they are, so the packed layout pays for it a few bytes'
//! work per byte of item rather than a parse and a serialisation.

use std::fmt;

/// DynamoDB JSON that [`to_plain`] could not read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not DynamoDB JSON at byte {at}: {what}")]
pub struct PlainError {
    /// The byte offset in the input.
    pub at: usize,
    /// What was expected there.
    pub what: &'static str,
}

/// Appends `item`, an item as DynamoDB JSON (an object of attribute
/// values), to `out` as plain JSON.
pub fn to_plain(item: &str, out: &mut String) -> Result<(), PlainError> {
    let mut p = Parser {
        src: item.as_bytes(),
        at: 0,
    };
    let start = out.len();
    let result = p.map(out).and_then(|()| {
        p.skip_space();
        if p.at == p.src.len() {
            Ok(())
        } else {
            Err(p.error("the end of the item"))
        }
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

struct Parser<'a> {
    src: &'a [u8],
    at: usize,
}

impl fmt::Debug for Parser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Parser at {}", self.at)
    }
}

impl<'a> Parser<'a> {
    fn error(&self, what: &'static str) -> PlainError {
        PlainError { at: self.at, what }
    }

    fn skip_space(&mut self) {
        while self.src.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.src.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), PlainError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// A JSON string, quotes included, as it is in the input.
    fn string(&mut self) -> Result<&'a str, PlainError> {
        let src: &'a [u8] = self.src;
        if self.peek() != Some(b'"') {
            return Err(self.error("a string"));
        }
        let start = self.at;
        self.at += 1;
        loop {
            match self.src.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    // The input is a &str and the quotes are ASCII: a char boundary.
                    return std::str::from_utf8(&src[start..self.at]).map_err(|_| self.error("UTF-8"));
                }
                Some(b'\\') => self.at += 2,
                Some(_) => self.at += 1,
                None => return Err(self.error("the end of a string")),
            }
        }
    }

    /// An object of attribute values: `{"name":{"T":…},…}` → `{"name":…,…}`.
    fn map(&mut self, out: &mut String) -> Result<(), PlainError> {
        self.expect(b'{', "an object")?;
        out.push('{');
        if self.peek() == Some(b'}') {
            self.at += 1;
            out.push('}');
            return Ok(());
        }
        loop {
            let name = self.string()?;
            out.push_str(name);
            self.expect(b':', "':'")?;
            out.push(':');
            self.value(out)?;
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    out.push(',');
                }
                Some(b'}') => {
                    self.at += 1;
                    out.push('}');
                    return Ok(());
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
    }

    /// One attribute value, `{"T":…}`, without its wrapper.
    fn value(&mut self, out: &mut String) -> Result<(), PlainError> {
        self.expect(b'{', "an attribute value")?;
        let tag = self.string()?;
        self.expect(b':', "':'")?;
        match tag {
            r#""S""# | r#""B""# => {
                let s = self.string()?;
                out.push_str(s);
            }
            r#""N""# => {
                let n = self.string()?;
                out.push_str(&n[1..n.len() - 1]);
            }
            r#""BOOL""# => self.literal(out, &["true", "false"])?,
            r#""NULL""# => {
                self.literal(&mut String::new(), &["true"])?;
                out.push_str("null");
            }
            r#""M""# => self.map(out)?,
            r#""L""# => self.list(out, |p, out| p.value(out))?,
            r#""SS""# | r#""BS""# => self.list(out, |p, out| {
                let s = p.string()?;
                out.push_str(s);
                Ok(())
            })?,
            r#""NS""# => self.list(out, |p, out| {
                let n = p.string()?;
                out.push_str(&n[1..n.len() - 1]);
                Ok(())
            })?,
            _ => return Err(self.error("a DynamoDB type (S, N, B, BOOL, NULL, M, L, SS, NS, BS)")),
        }
        self.expect(b'}', "the end of an attribute value")
    }

    fn list(
        &mut self,
        out: &mut String,
        mut each: impl FnMut(&mut Self, &mut String) -> Result<(), PlainError>,
    ) -> Result<(), PlainError> {
        self.expect(b'[', "a list")?;
        out.push('[');
        if self.peek() == Some(b']') {
            self.at += 1;
            out.push(']');
            return Ok(());
        }
        loop {
            each(self, out)?;
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    out.push(',');
                }
                Some(b']') => {
                    self.at += 1;
                    out.push(']');
                    return Ok(());
                }
                _ => return Err(self.error("',' or ']'")),
            }
        }
    }

    fn literal(&mut self, out: &mut String, allowed: &[&'static str]) -> Result<(), PlainError> {
        self.skip_space();
        let rest = &self.src[self.at..];
        for word in allowed {
            if rest.starts_with(word.as_bytes()) {
                self.at += word.len();
                out.push_str(word);
                return Ok(());
            }
        }
        Err(self.error("true or false"))
    }
}

/// The same rewrite on a parsed item (read back from DynamoDB): numbers
/// become JSON numbers (a number DynamoDB holds that JSON cannot, such as
/// one with more digits than a double keeps, stays its text).
pub fn value_to_plain(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let Value::Object(attrs) = value else {
        return value.clone();
    };
    Value::Object(attrs.iter().map(|(k, v)| (k.clone(), attribute_to_plain(v))).collect())
}

fn attribute_to_plain(av: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let Some((tag, v)) = av.as_object().and_then(|o| o.iter().next()) else {
        return av.clone();
    };
    let number = |v: &Value| match v.as_str().map(serde_json::from_str::<serde_json::Number>) {
        Some(Ok(n)) => Value::Number(n),
        _ => v.clone(),
    };
    match tag.as_str() {
        "N" => number(v),
        "NULL" => Value::Null,
        "M" => value_to_plain(v),
        "L" => Value::Array(v.as_array().into_iter().flatten().map(attribute_to_plain).collect()),
        "NS" => Value::Array(v.as_array().into_iter().flatten().map(number).collect()),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn plain(item: &str) -> Value {
        let mut out = String::new();
        to_plain(item, &mut out).unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    #[test]
    fn every_vector_item_converts_the_same_way_from_text_and_from_a_value() {
        let mut checked = 0;
        for (v, items) in awp_testkit::vectors().with_items() {
            for item in items {
                let text = serde_json::to_string(&item).unwrap();
                assert_eq!(plain(&text), value_to_plain(item), "vector {}", v.name);
                checked += 1;
            }
        }
        assert!(checked > 5, "{checked}");
    }

    #[test]
    fn each_type_loses_its_wrapper() {
        let item = r#"{"s":{"S":"a\"b}"},"n":{"N":"-52.5e3"},"b":{"B":"AAE="},"t":{"BOOL":true},"f":{"BOOL":false},
            "z":{"NULL":true},"m":{"M":{"x":{"N":"1"},"e":{"M":{}}}},"l":{"L":[{"S":"x"},{"N":"2"}]},
            "ss":{"SS":["a","b"]},"ns":{"NS":["1","2.5"]},"el":{"L":[]}}"#;
        assert_eq!(
            plain(item),
            json!({"s": "a\"b}", "n": -52500.0, "b": "AAE=", "t": true, "f": false, "z": null,
                   "m": {"x": 1, "e": {}}, "l": ["x", 2], "ss": ["a", "b"], "ns": [1, 2.5], "el": []})
        );
        let mut out = String::new();
        to_plain(
            r#"{"n":{"N":"52.5200066"},"big":{"N":"18446744073709551615"}}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out, r#"{"n":52.5200066,"big":18446744073709551615}"#,
            "number text as it was"
        );
    }

    #[test]
    fn what_is_not_dynamodb_json_is_an_error_and_leaves_nothing() {
        for bad in [
            "",
            "[]",
            r#"{"a":"x"}"#,
            r#"{"a":{"X":"1"}}"#,
            r#"{"a":{"S":"x"}"#,
            r#"{"a":{"S":"x"}} trailing"#,
            r#"{"a":{"NULL":false}}"#,
            r#"{"a":{"S":"unterminated}}"#,
        ] {
            let mut out = String::from("kept");
            assert!(to_plain(bad, &mut out).is_err(), "{bad}");
            assert_eq!(out, "kept");
        }
    }
}
