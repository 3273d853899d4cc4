//! A rule's `headers` (Istio's `Headers`): changes to the request sent upstream and to
//! the response sent back, compiled to checked names and values.
//!
//! Applied as Envoy applies them: `remove` first, then `set` (replacing every value),
//! then `add` (appending a value). The proxy applies the request changes to the shadow
//! request too, so that both sides are asked the same thing. Envoy's `%VARIABLE%`
//! substitutions are not performed, so a value with `%` is refused rather than sent
//! literally.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::virtual_service::{HeaderOperations, Headers};
use crate::{Location, RoutingError};

/// The request and response changes of one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    request: HeaderChanges,
    response: HeaderChanges,
}

/// One direction's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderChanges {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    /// Compiles the `headers` of the rule at `at`.
    pub(crate) fn compile(
        spec: Option<&Headers>,
        at: &Location,
    ) -> Result<HeaderOps, RoutingError> {
        let Some(spec) = spec else {
            return Ok(HeaderOps::default());
        };
        Ok(HeaderOps {
            request: HeaderChanges::compile(spec.request.as_ref(), at, "headers.request")?,
            response: HeaderChanges::compile(spec.response.as_ref(), at, "headers.response")?,
        })
    }

    /// Changes to the request sent upstream (and to its shadow copy).
    pub fn request(&self) -> &HeaderChanges {
        &self.request
    }

    /// Changes to the response sent to the client.
    pub fn response(&self) -> &HeaderChanges {
        &self.response
    }

    /// Whether the rule changes no header.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

impl HeaderChanges {
    fn compile(
        spec: Option<&HeaderOperations>,
        at: &Location,
        field: &str,
    ) -> Result<HeaderChanges, RoutingError> {
        let Some(spec) = spec else {
            return Ok(HeaderChanges::default());
        };
        let name = |key: &str, field: String| {
            HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()).map_err(|_| {
                RoutingError::invalid(at, field, format!("{key:?} is not a valid header name"))
            })
        };
        let pairs = |map: &std::collections::BTreeMap<String, String>, kind: &str| {
            map.iter()
                .map(|(key, value)| {
                    let field = format!("{field}.{kind}.{key}");
                    if value.contains('%') {
                        return Err(RoutingError::Unsupported {
                            at: at.clone(),
                            field,
                            reason: "Envoy's %VARIABLE% substitutions are not performed by the proxy",
                        });
                    }
                    let header_value = HeaderValue::from_str(value)
                        .map_err(|_| RoutingError::invalid(at, field.clone(), format!("{value:?} is not a valid header value")))?;
                    Ok((name(key, field)?, header_value))
                })
                .collect::<Result<Vec<_>, RoutingError>>()
        };
        Ok(HeaderChanges {
            remove: spec
                .remove
                .iter()
                .enumerate()
                .map(|(index, key)| name(key, format!("{field}.remove[{index}]")))
                .collect::<Result<_, _>>()?,
            set: pairs(&spec.set, "set")?,
            add: pairs(&spec.add, "add")?,
        })
    }

    /// Applies the changes: remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(yaml: &str) -> Result<HeaderOps, RoutingError> {
        let spec: Headers = serde_yaml::from_str(yaml).unwrap();
        HeaderOps::compile(Some(&spec), &Location::rule(0, Some("users")))
    }

    #[test]
    fn removes_then_sets_then_adds() {
        let ops = ops(
            "request: {remove: [x-debug], set: {X-Migration: proxy}, add: {via: migration-proxy}}\n\
             response: {set: {cache-control: no-store}}",
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-debug", HeaderValue::from_static("1"));
        headers.append("x-migration", HeaderValue::from_static("a"));
        headers.append("x-migration", HeaderValue::from_static("b"));
        headers.insert("via", HeaderValue::from_static("1.1 envoy"));
        ops.request().apply(&mut headers);
        assert!(headers.get("x-debug").is_none());
        assert_eq!(
            headers.get_all("x-migration").iter().collect::<Vec<_>>(),
            ["proxy"]
        );
        assert_eq!(
            headers.get_all("via").iter().collect::<Vec<_>>(),
            ["1.1 envoy", "migration-proxy"]
        );
        assert!(!ops.response().is_empty());
        assert!(!ops.is_empty());
    }

    #[test]
    fn refuses_bad_names_values_and_substitutions() {
        assert_eq!(
            ops("request: {set: {\"bad name\": x}}")
                .unwrap_err()
                .to_string(),
            r#"rule "users" (http[0]): `headers.request.set.bad name` "bad name" is not a valid header name"#
        );
        assert_eq!(
            ops("request: {add: {x-a: \"line\\nbreak\"}}")
                .unwrap_err()
                .to_string(),
            r#"rule "users" (http[0]): `headers.request.add.x-a` "line\nbreak" is not a valid header value"#
        );
        assert_eq!(
            ops("request: {set: {x-client: \"%DOWNSTREAM_REMOTE_ADDRESS%\"}}")
                .unwrap_err()
                .to_string(),
            "rule \"users\" (http[0]): `headers.request.set.x-client` is not supported by the migration proxy: \
             Envoy's %VARIABLE% substitutions are not performed by the proxy"
        );
    }
}
