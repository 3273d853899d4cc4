//! The part of Istio's VirtualService (`networking.istio.io/v1`) that the proxy honours,
//! read from the same YAML that SREs apply to the cluster.
//!
//! A manifest may be a stream of documents (`---`); the `kind: VirtualService`
//! documents of `networking.istio.io/v1` (or `v1beta1`, `v1alpha3`) are read and every
//! other kind is skipped. The schema is Istio's; fields are either honoured, ignored
//! because they cannot change where a request goes, or refused:
//!
//! | field | here |
//! | --- | --- |
//! | `http[].name`, `match` (`uri`, `method`, `headers`, `withoutHeaders`, `ignoreUriCase`), `route`, `timeout`, `retries`, `mirror`, `mirrorPercentage`, `mirrors`, `headers` (rule level) | honoured |
//! | `hosts`, `gateways`, `exportTo`, `match[].name`, `match[].statPrefix`, `destination.port`, `retries.retryRemoteLocalities`, `retries.retryIgnorePreviousHosts`, `metadata` other than `name` and `namespace`, `status` | ignored (the proxy serves one host, one address per upstream) |
//! | `rewrite`, `redirect`, `directResponse`, `delegate`, `fault`, `corsPolicy`, `mirrorPercent`, `mirror_percent`, `route[].headers`, `destination.subset`, `match[]` `scheme`, `authority`, `port`, `queryParams`, `sourceLabels`, `sourceNamespace`, `gateways`, `spec.tcp`, `spec.tls` | refused with a message naming the field |
//! | anything not in Istio's schema (a misspelt field) | refused by the parser, with its path |
//!
//! Reading checks the shape; [`crate::RouteTable::build`] checks the meaning (hosts,
//! weights, regexes, durations).

mod read;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use crate::RoutingError;

/// The API group of the VirtualService kind.
pub const API_GROUP: &str = "networking.istio.io";
/// The versions of the group that are read, current first.
pub const API_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// One VirtualService document.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    /// `apiVersion`, one of `networking.istio.io/{v1,v1beta1,v1alpha3}`.
    pub api_version: String,
    /// `metadata.name` and `metadata.namespace`.
    pub metadata: ObjectMeta,
    /// The routing rules.
    pub spec: VirtualServiceSpec,
}

/// The identifying part of a Kubernetes object's metadata; labels, annotations and the
/// rest are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ObjectMeta {
    /// The VirtualService's name.
    #[serde(default)]
    pub name: String,
    /// Its namespace; short destination hosts (`identity`) are read in it.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `spec` of a VirtualService.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// The hosts this applies to (informational here: the proxy serves one API).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways and sidecars it applies to (ignored).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Namespaces it is exported to (ignored).
    #[serde(default)]
    pub export_to: Vec<String>,
    /// The HTTP rules, first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    #[serde(default)]
    tcp: Option<Value>,
    #[serde(default)]
    tls: Option<Value>,
}

/// One rule of `spec.http` (Istio's `HTTPRoute`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    /// The rule's name: the route's name in metrics and in the admin API.
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions, any of which selects this rule; none selects every request.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Where requests go: a legacy and a new destination with relative weights.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Timeout for the whole request (`5s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Retry policy.
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    /// The shadow target, with `mirrorPercentage`.
    #[serde(default)]
    pub mirror: Option<Destination>,
    /// The share of requests mirrored to `mirror` (100 when absent).
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    /// Shadow targets, each with its own percentage.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Header changes on requests and responses of this rule.
    #[serde(default)]
    pub headers: Option<Headers>,
    #[serde(default)]
    rewrite: Option<Value>,
    #[serde(default)]
    redirect: Option<Value>,
    #[serde(default)]
    direct_response: Option<Value>,
    #[serde(default)]
    delegate: Option<Value>,
    #[serde(default)]
    fault: Option<Value>,
    #[serde(default)]
    cors_policy: Option<Value>,
    #[serde(default)]
    mirror_percent: Option<Value>,
    #[serde(default, rename = "mirror_percent")]
    mirror_percent_snake: Option<Value>,
}

/// One entry of a rule's `match` (Istio's `HTTPMatchRequest`): all its conditions must
/// hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// A label for the entry (ignored).
    #[serde(default)]
    pub name: Option<String>,
    /// The request path, without its query string.
    #[serde(default)]
    pub uri: Option<StringMatch>,
    /// The request method (`GET`), case-sensitive.
    #[serde(default)]
    pub method: Option<StringMatch>,
    /// Headers that must be present and match; an empty match only asks for presence.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// Headers that must not match (absent, for an empty match).
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Whether `uri` `exact` and `prefix` ignore ASCII case (not `regex`, as in Istio).
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Metrics prefix (ignored).
    #[serde(default)]
    pub stat_prefix: Option<String>,
    #[serde(default)]
    scheme: Option<Value>,
    #[serde(default)]
    authority: Option<Value>,
    #[serde(default)]
    port: Option<Value>,
    #[serde(default)]
    query_params: Option<Value>,
    #[serde(default)]
    source_labels: Option<Value>,
    #[serde(default)]
    source_namespace: Option<Value>,
    #[serde(default)]
    gateways: Option<Value>,
}

/// Istio's `StringMatch`: at most one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    /// The whole value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The whole value matches this RE2 expression.
    #[serde(default)]
    pub regex: Option<String>,
}

/// One entry of a rule's `route` (Istio's `HTTPRouteDestination`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// The upstream.
    pub destination: Destination,
    /// Relative weight; absent is 0, or all traffic for a rule's only destination.
    #[serde(default)]
    pub weight: Option<i64>,
    #[serde(default)]
    headers: Option<Value>,
}

/// Istio's `Destination`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// A host of the mesh, mapped to an address by the proxy config's `upstreams`.
    pub host: String,
    /// The port on that host (informational: the address comes from the proxy config).
    #[serde(default)]
    pub port: Option<PortSelector>,
    #[serde(default)]
    subset: Option<Value>,
}

impl Destination {
    /// A destination for `host`, without port.
    pub fn new(host: impl Into<String>) -> Self {
        Destination {
            host: host.into(),
            ..Destination::default()
        }
    }
}

/// Istio's `PortSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    /// The port number.
    #[serde(default)]
    pub number: Option<u32>,
}

/// Istio's `Percent`: a share of requests, from 0.0 to 100.0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    /// The percentage; absent is 0.
    #[serde(default)]
    pub value: f64,
}

/// One entry of `mirrors` (Istio's `HTTPMirrorPolicy`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// The shadow target.
    pub destination: Destination,
    /// The share of requests mirrored there (100 when absent).
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// Istio's `HTTPRetry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRetry {
    /// Retries allowed after the first try; 0 disables retries.
    #[serde(default)]
    pub attempts: Option<i64>,
    /// Timeout of each try (`2s`).
    #[serde(default)]
    pub per_try_timeout: Option<String>,
    /// Comma-separated conditions (`connect-failure,refused-stream,503`).
    #[serde(default)]
    pub retry_on: Option<String>,
    /// Least time between tries (`25ms`).
    #[serde(default)]
    pub backoff: Option<String>,
    /// Ignored: each upstream is one address.
    #[serde(default)]
    pub retry_remote_localities: Option<bool>,
    /// Ignored: each upstream is one address.
    #[serde(default)]
    pub retry_ignore_previous_hosts: Option<bool>,
}

/// Istio's `Headers`: changes to requests and to responses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    /// Changes to the request sent upstream.
    #[serde(default)]
    pub request: Option<HeaderOperations>,
    /// Changes to the response sent to the client.
    #[serde(default)]
    pub response: Option<HeaderOperations>,
}

/// Istio's `HeaderOperations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOperations {
    /// Headers replaced (or created) with these values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Values appended to these headers.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl VirtualService {
    /// Reads every VirtualService of a manifest, which may hold several documents of
    /// several kinds. Fails on the first document that does not parse or uses a field
    /// that the proxy does not honour.
    pub fn parse_all(manifest: &str) -> Result<Vec<VirtualService>, RoutingError> {
        read::parse_documents(manifest)
    }

    /// Reads the one VirtualService of a manifest to route by: the one named `name`,
    /// or, without a name, the only one.
    pub fn parse(manifest: &str, name: Option<&str>) -> Result<VirtualService, RoutingError> {
        select(Self::parse_all(manifest)?, name)
    }
}

/// The VirtualService named `name` among `all`, or the only one when `name` is `None`.
pub fn select(
    all: Vec<VirtualService>,
    name: Option<&str>,
) -> Result<VirtualService, RoutingError> {
    let names = || {
        all.iter()
            .map(|vs| vs.metadata.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(wanted) => match all.iter().position(|vs| vs.metadata.name == wanted) {
            Some(index) => Ok(all.into_iter().nth(index).expect("index from position")),
            None => Err(RoutingError::NotFound {
                wanted: wanted.to_owned(),
                found: names(),
            }),
        },
        None if all.len() > 1 => Err(RoutingError::Ambiguous { names: names() }),
        None => all.into_iter().next().ok_or(RoutingError::NoVirtualService),
    }
}
