//! Reading a manifest: picking the VirtualService documents out of a YAML stream,
//! parsing them with the parser's paths in the messages, and refusing the fields of
//! Istio's schema that the proxy does not honour.

use serde::Deserialize;
use serde_yaml::Value;

use super::{API_GROUP, API_VERSIONS, HttpRoute, ObjectMeta, VirtualService, VirtualServiceSpec};
use crate::{Location, RoutingError};

/// What every Kubernetes document says of itself.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: Option<Value>,
    #[serde(default)]
    kind: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// A VirtualService document as written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    api_version: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: VirtualServiceSpec,
}

/// Every VirtualService of `manifest`, in document order.
pub(super) fn parse_documents(manifest: &str) -> Result<Vec<VirtualService>, RoutingError> {
    // First pass: which documents are VirtualServices. The stream is read twice so that
    // the second pass parses those documents straight from the text, keeping the
    // parser's field paths and line numbers in its messages.
    let mut wanted = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(manifest).enumerate() {
        let Some(meta) = Option::<TypeMeta>::deserialize(document).map_err(malformed)? else {
            continue; // an empty document
        };
        if meta.kind.as_ref().and_then(Value::as_str) != Some("VirtualService") {
            continue;
        }
        let api_version = meta
            .api_version
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(version) = api_version
            .strip_prefix(API_GROUP)
            .and_then(|v| v.strip_prefix('/'))
        else {
            continue; // another group's kind of the same name
        };
        if !API_VERSIONS.contains(&version) {
            let name = meta
                .metadata
                .as_ref()
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(RoutingError::ApiVersion {
                name: name.to_owned(),
                found: api_version.to_owned(),
            });
        }
        wanted.push(index);
    }
    let mut found = Vec::with_capacity(wanted.len());
    for (index, document) in serde_yaml::Deserializer::from_str(manifest).enumerate() {
        if !wanted.contains(&index) {
            continue;
        }
        let document = Document::deserialize(document).map_err(malformed)?;
        check_spec(&document.spec)?;
        found.push(VirtualService {
            api_version: document.api_version,
            metadata: document.metadata,
            spec: document.spec,
        });
    }
    if found.is_empty() {
        return Err(RoutingError::NoVirtualService);
    }
    Ok(found)
}

fn malformed(error: serde_yaml::Error) -> RoutingError {
    RoutingError::Malformed(error.to_string())
}

/// Whether a field of the schema is given a value that would change something; `null`,
/// `""`, `[]` and `{}` would not.
fn is_set(value: &Option<Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Sequence(items)) => !items.is_empty(),
        Some(Value::Mapping(entries)) => !entries.is_empty(),
        Some(_) => true,
    }
}

const SUBSET: &str = "subsets need a DestinationRule, which the proxy does not read; map a distinct host in the proxy config's `upstreams` instead";

fn check_spec(spec: &VirtualServiceSpec) -> Result<(), RoutingError> {
    let unsupported = |field: &str, reason| RoutingError::Unsupported {
        at: Location::Spec,
        field: field.to_owned(),
        reason,
    };
    if is_set(&spec.tcp) {
        return Err(unsupported("tcp", "the proxy routes HTTP only"));
    }
    if is_set(&spec.tls) {
        return Err(unsupported("tls", "the proxy routes HTTP only"));
    }
    for (index, rule) in spec.http.iter().enumerate() {
        check_rule(&Location::rule(index, rule.name.as_deref()), rule)?;
    }
    Ok(())
}

fn check_rule(at: &Location, rule: &HttpRoute) -> Result<(), RoutingError> {
    let refuse = |field: String, reason| {
        Err(RoutingError::Unsupported {
            at: at.clone(),
            field,
            reason,
        })
    };
    let rule_fields = [
        (
            "rewrite",
            &rule.rewrite,
            "the proxy forwards the path and authority unchanged, so a rewrite would not happen",
        ),
        (
            "redirect",
            &rule.redirect,
            "the proxy forwards every request, so no redirect would be sent",
        ),
        (
            "directResponse",
            &rule.direct_response,
            "the proxy forwards every request, so no direct response would be sent",
        ),
        (
            "delegate",
            &rule.delegate,
            "delegate VirtualServices are not read; write the rules in this manifest",
        ),
        ("fault", &rule.fault, "the proxy injects no faults"),
        (
            "corsPolicy",
            &rule.cors_policy,
            "CORS is answered by the upstreams as they are; the proxy would not apply a policy",
        ),
        (
            "mirrorPercent",
            &rule.mirror_percent,
            "deprecated by Istio; write `mirrorPercentage: {value: N}`",
        ),
        (
            "mirror_percent",
            &rule.mirror_percent_snake,
            "deprecated by Istio; write `mirrorPercentage: {value: N}`",
        ),
    ];
    for (field, value, reason) in rule_fields {
        if is_set(value) {
            return refuse(field.to_owned(), reason);
        }
    }
    for (index, entry) in rule.matches.iter().enumerate() {
        let match_fields = [
            (
                "scheme",
                &entry.scheme,
                "the proxy cannot see the scheme the client used",
            ),
            (
                "authority",
                &entry.authority,
                "the proxy serves one authority; match on `uri` instead",
            ),
            ("port", &entry.port, "the proxy listens on one port"),
            (
                "queryParams",
                &entry.query_params,
                "query parameters are not matched by the proxy",
            ),
            (
                "sourceLabels",
                &entry.source_labels,
                "the proxy cannot see the client workload's labels",
            ),
            (
                "sourceNamespace",
                &entry.source_namespace,
                "the proxy cannot see the client workload's namespace",
            ),
            (
                "gateways",
                &entry.gateways,
                "the proxy is not a gateway; match on `uri`, `method` or `headers`",
            ),
        ];
        for (field, value, reason) in match_fields {
            if is_set(value) {
                return refuse(format!("match[{index}].{field}"), reason);
            }
        }
    }
    for (index, destination) in rule.route.iter().enumerate() {
        if is_set(&destination.headers) {
            return refuse(
                format!("route[{index}].headers"),
                "header changes per destination are not applied; set `headers` on the rule instead",
            );
        }
        if is_set(&destination.destination.subset) {
            return refuse(format!("route[{index}].destination.subset"), SUBSET);
        }
    }
    if rule
        .mirror
        .as_ref()
        .is_some_and(|mirror| is_set(&mirror.subset))
    {
        return refuse("mirror.subset".to_owned(), SUBSET);
    }
    for (index, mirror) in rule.mirrors.iter().enumerate() {
        if is_set(&mirror.destination.subset) {
            return refuse(format!("mirrors[{index}].destination.subset"), SUBSET);
        }
    }
    Ok(())
}
