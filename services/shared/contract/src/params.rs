//! Request parameters as Rails reads them: a JSON body, a form body
//! (`user[email]=...&user[password]=...`, Rack's nested syntax) and the query string
//! become one tree of parameters; JSON bodies are wrapped under the resource's key
//! (`wrap_parameters`) when they lack it.

use serde_json::{Map, Value};

/// The parameters of one request: always a JSON object at the top.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    map: Map<String, Value>,
    /// Whether the body was read as JSON (only JSON bodies are wrapped).
    json_body: bool,
}

/// Why a body could not be read; the legacy answers `400` with an empty body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is not valid JSON")]
    MalformedJson,
    #[error("the form body is not valid")]
    MalformedForm,
}

/// The body's media type, as far as parameter parsing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Other,
}

fn body_kind(method: &str, content_type: Option<&str>) -> BodyKind {
    let media = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty());
    match media.as_deref() {
        // Rails registers these three names for the `:json` MIME type.
        Some("application/json" | "text/x-json" | "application/jsonrequest") => BodyKind::Json,
        Some("application/x-www-form-urlencoded") => BodyKind::Form,
        // Rack reads a POST without a content type as a form.
        None if method.eq_ignore_ascii_case("POST") => BodyKind::Form,
        _ => BodyKind::Other,
    }
}

/// Reads a request body the way Rails does. A body of another type reads as no
/// parameters; an empty JSON body is no parameters; JSON that is not an object is kept
/// under `_json`.
pub fn parse_body(
    method: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Params, BodyError> {
    match body_kind(method, content_type) {
        BodyKind::Json => {
            // An empty body is no parameters; whitespace alone is malformed.
            if body.is_empty() {
                return Ok(Params {
                    map: Map::new(),
                    json_body: true,
                });
            }
            let value: Value = serde_json::from_slice(&strip_json_comments(body))
                .map_err(|_| BodyError::MalformedJson)?;
            let map = match value {
                Value::Object(map) => map,
                other => {
                    let mut map = Map::new();
                    map.insert("_json".into(), other);
                    map
                }
            };
            Ok(Params {
                map,
                json_body: true,
            })
        }
        BodyKind::Form => {
            let text = std::str::from_utf8(body).map_err(|_| BodyError::MalformedForm)?;
            Ok(Params {
                map: parse_nested(text, false)?,
                json_body: false,
            })
        }
        BodyKind::Other => Ok(Params::default()),
    }
}

/// Ruby's JSON parser takes `/* ... */` and `// ...` comments where whitespace may
/// stand; they are replaced by spaces here (outside strings) before parsing.
fn strip_json_comments(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !body.contains(&b'/') {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let (mut i, mut in_string) = (0, false);
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            if b == b'\\' && i + 1 < body.len() {
                out.push(body[i + 1]);
                i += 1;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if body[i..].starts_with(b"/*") {
            match body[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(end) => {
                    i += end + 4;
                    out.push(b' ');
                    continue;
                }
                None => return std::borrow::Cow::Owned(b"!".to_vec()),
            }
        } else if body[i..].starts_with(b"//") {
            while i < body.len() && body[i] != b'\n' {
                i += 1;
            }
            out.push(b' ');
            continue;
        } else {
            out.push(b);
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Reads a query string (without the `?`) with Rack's nested syntax.
pub fn parse_query(query: &str) -> Result<Params, BodyError> {
    Ok(Params {
        map: parse_nested(query, true)?,
        json_body: false,
    })
}

impl Params {
    /// Parameters from a JSON object (tests and gRPC adapters).
    pub fn from_json_object(map: Map<String, Value>) -> Self {
        Self {
            map,
            json_body: true,
        }
    }

    /// Rails merges the query string over the body parameters (shallowly: a query key
    /// replaces the body's value for that key).
    pub fn merge_query(&mut self, query: Params) {
        for (k, v) in query.map {
            self.map.insert(k, v);
        }
    }

    /// Whether any key or string value holds a NUL character, which PostgreSQL cannot
    /// store (the legacy crashes on PostgreSQL; the identity service refuses with 400).
    pub fn contains_nul(&self) -> bool {
        fn walk(v: &Value) -> bool {
            match v {
                Value::String(s) => s.contains('\0'),
                Value::Array(items) => items.iter().any(walk),
                Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || walk(v)),
                _ => false,
            }
        }
        self.map.iter().any(|(k, v)| k.contains('\0') || walk(v))
    }

    /// One top-level parameter.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// All top-level parameters.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// Rails' `wrap_parameters` for a JSON body: when `key` is absent, the top-level
    /// parameters named in `attributes` (the model's columns) are copied under `key`.
    pub fn wrap(&mut self, key: &str, attributes: &[&str]) {
        if !self.json_body || self.map.contains_key(key) {
            return;
        }
        let wrapped: Map<String, Value> = self
            .map
            .iter()
            .filter(|(k, _)| attributes.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.map.insert(key.into(), Value::Object(wrapped));
    }
}

/// Rack's `parse_nested_query`: `&`-separated pairs (also `;` in a query string), keys
/// with `[]` and `[name]` suffixes build arrays and nested objects. A key without `=`
/// has a null value.
fn parse_nested(text: &str, query: bool) -> Result<Map<String, Value>, BodyError> {
    let mut root = Map::new();
    let seps: &[char] = if query { &['&', ';'] } else { &['&'] };
    for pair in text.split(seps) {
        let pair = pair.trim_start_matches(' ');
        if pair.is_empty() {
            continue;
        }
        let (raw_key, raw_value) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        let key = unescape(raw_key)?;
        let value = match raw_value {
            Some(v) => Value::String(unescape(v)?),
            None => Value::Null,
        };
        normalize(&mut root, &key, value, 32)?;
    }
    Ok(root)
}

fn unescape(s: &str) -> Result<String, BodyError> {
    // A `%` not followed by two hex digits is an error in Ruby's decoder.
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(BodyError::MalformedForm);
        }
    }
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| BodyError::MalformedForm)
}

/// Splits `name` into its first key and the rest (`user[email]` → `user`, `[email]`).
fn split_name(name: &str) -> (&str, &str) {
    let trimmed = name.trim_start_matches(['[', ']']);
    let end = trimmed.find(['[', ']']).unwrap_or(trimmed.len());
    let key = &trimmed[..end];
    let mut after = &trimmed[end..];
    // Rack consumes the closing brackets that follow the key.
    after = after.trim_start_matches(']');
    (key, after)
}

fn normalize(
    params: &mut Map<String, Value>,
    name: &str,
    value: Value,
    depth: u32,
) -> Result<(), BodyError> {
    if depth == 0 {
        return Err(BodyError::MalformedForm);
    }
    let (key, after) = split_name(name);
    if key.is_empty() {
        return Ok(());
    }
    if after.is_empty() {
        params.insert(key.to_owned(), value);
    } else if after == "[" {
        params.insert(name.to_owned(), value);
    } else if after == "[]" {
        let slot = params
            .entry(key.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        match slot {
            Value::Array(items) => items.push(value),
            _ => return Err(BodyError::MalformedForm),
        }
    } else if let Some(rest) = after.strip_prefix("[]") {
        // `a[][b]=1&a[][c]=2`: fill the last object until a key repeats.
        let (child_key, _) = split_name(rest);
        let slot = params
            .entry(key.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(items) = slot else {
            return Err(BodyError::MalformedForm);
        };
        let reuse =
            matches!(items.last(), Some(Value::Object(last)) if !last.contains_key(child_key));
        if reuse {
            if let Some(Value::Object(last)) = items.last_mut() {
                normalize(last, rest, value, depth - 1)?;
            }
        } else {
            let mut fresh = Map::new();
            normalize(&mut fresh, rest, value, depth - 1)?;
            items.push(Value::Object(fresh));
        }
    } else {
        let slot = params
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(child) = slot else {
            return Err(BodyError::MalformedForm);
        };
        normalize(child, after, value, depth - 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(s: &str) -> Value {
        Value::Object(
            parse_body(
                "POST",
                Some("application/x-www-form-urlencoded"),
                s.as_bytes(),
            )
            .unwrap()
            .map,
        )
    }

    #[test]
    fn nested_form_bodies() {
        assert_eq!(
            form("user[email]=a%40b.c&user[password]=p+w&x"),
            json!({"user": {"email": "a@b.c", "password": "p w"}, "x": null})
        );
        assert_eq!(form("a[]=1&a[]=2"), json!({"a": ["1", "2"]}));
        assert_eq!(
            form("a[][b]=1&a[][c]=2&a[][b]=3"),
            json!({"a": [{"b": "1", "c": "2"}, {"b": "3"}]})
        );
    }

    #[test]
    fn conflicting_form_keys_are_malformed() {
        assert_eq!(
            parse_body(
                "POST",
                Some("application/x-www-form-urlencoded"),
                b"user=x&user[email]=y"
            ),
            Err(BodyError::MalformedForm)
        );
        assert_eq!(
            parse_body("POST", Some("application/x-www-form-urlencoded"), b"a=%zz"),
            Err(BodyError::MalformedForm)
        );
    }

    #[test]
    fn json_bodies() {
        let p = parse_body(
            "POST",
            Some("application/json; charset=utf-8"),
            br#"{"a":1}"#,
        )
        .unwrap();
        assert_eq!(p.get("a"), Some(&json!(1)));
        let p = parse_body("POST", Some("application/json"), b"[1]").unwrap();
        assert_eq!(p.get("_json"), Some(&json!([1])));
        assert_eq!(
            parse_body("POST", Some("application/json"), b"{"),
            Err(BodyError::MalformedJson)
        );
        assert!(
            parse_body("POST", Some("application/json"), b"")
                .unwrap()
                .as_map()
                .is_empty()
        );
        assert_eq!(
            parse_body("POST", Some("application/json"), b"  "),
            Err(BodyError::MalformedJson)
        );
        let p = parse_body(
            "POST",
            Some("application/json"),
            b"{/* c */\"a\":\"/*x*/\"// end\n}",
        )
        .unwrap();
        assert_eq!(p.get("a"), Some(&json!("/*x*/")));
        assert!(
            parse_body("POST", Some("text/plain"), b"{")
                .unwrap()
                .as_map()
                .is_empty()
        );
        assert!(
            parse_body(
                "POST",
                Some("application/json"),
                br#"{"a":{"b":["x\u0000"]}}"#
            )
            .unwrap()
            .contains_nul()
        );
        assert!(
            !parse_body("POST", Some("application/json"), br#"{"a":"x"}"#)
                .unwrap()
                .contains_nul()
        );
        assert!(
            parse_body("PATCH", None, b"a=1")
                .unwrap()
                .as_map()
                .is_empty()
        );
    }

    #[test]
    fn wrapping_copies_columns_only() {
        let mut p = parse_body(
            "POST",
            Some("application/json"),
            br#"{"email":"x","password":"y"}"#,
        )
        .unwrap();
        p.wrap("user", &["email", "nickname"]);
        assert_eq!(p.get("user"), Some(&json!({"email": "x"})));
        let mut f = parse_body("POST", None, b"email=x").unwrap();
        f.wrap("user", &["email"]);
        assert_eq!(f.get("user"), None);
    }
}
