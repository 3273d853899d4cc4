//! What the standard `OTEL_*` environment asks of traces, read once at start and
//! refused whole when it asks for something this build cannot do (a binary that
//! silently exported nothing would look traced and be blind).
//!
//! Traces are off unless asked for: `OTEL_TRACES_EXPORTER=otlp`, or an OTLP endpoint
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) with no
//! exporter named. `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turns them
//! off whatever else is set. The exporter and the SDK read the rest themselves
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`, `_HEADERS`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`).

use crate::propagation::Format;

/// A setting this build cannot honour. An endpoint's value is not repeated (a URL
/// may carry credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}{shown}: {reason}", shown = value.as_deref().map(|v| format!("={v}")).unwrap_or_default())]
pub struct SettingError {
    pub name: &'static str,
    pub value: Option<String>,
    pub reason: &'static str,
}

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Whether spans are exported (OTLP over gRPC).
    pub export: bool,
    /// The formats a trace context is read from and written in, in order.
    pub propagators: Vec<Format>,
}

const EXPORTER: &str = "OTEL_TRACES_EXPORTER";
const ENDPOINTS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
const PROTOCOLS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];
const PROPAGATORS: &str = "OTEL_PROPAGATORS";

/// The formats propagated when `OTEL_PROPAGATORS` is not set: W3C trace context, and
/// B3's multiple headers, which Istio's Zipkin-style tracing reads.
pub const DEFAULT_PROPAGATORS: [Format; 2] = [Format::TraceContext, Format::B3Multi];

impl Settings {
    /// Reads the settings through `var` (the process environment in production).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let disabled = match set("OTEL_SDK_DISABLED") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(SettingError {
                        name: "OTEL_SDK_DISABLED",
                        value: Some(v),
                        reason: "must be true or false",
                    });
                }
            },
        };
        let endpoint = ENDPOINTS
            .iter()
            .find_map(|name| set(name).map(|v| (*name, v)));
        let export = match set(EXPORTER) {
            None => endpoint.is_some(),
            Some(v) => match v.trim() {
                "otlp" => true,
                "none" => false,
                _ => {
                    return Err(SettingError {
                        name: EXPORTER,
                        value: Some(v),
                        reason: "only otlp or none is built in",
                    });
                }
            },
        } && !disabled;
        if export {
            for name in PROTOCOLS {
                if let Some(v) = set(name)
                    && v.trim() != "grpc"
                {
                    return Err(SettingError {
                        name,
                        value: Some(v),
                        reason: "only grpc is built in (a collector's port 4317)",
                    });
                }
            }
            if let Some((name, v)) = endpoint {
                check_endpoint(name, &v)?;
            }
        }
        let propagators = match set(PROPAGATORS) {
            None => DEFAULT_PROPAGATORS.to_vec(),
            Some(v) => parse_propagators(&v)?,
        };
        Ok(Self {
            export,
            propagators,
        })
    }
}

/// An endpoint the gRPC exporter can reach: `http://host:port` (no TLS is built in; in
/// the mesh the sidecar encrypts).
fn check_endpoint(name: &'static str, value: &str) -> Result<(), SettingError> {
    let refuse = |reason| SettingError {
        name,
        value: None,
        reason,
    };
    let uri: http::Uri = value.trim().parse().map_err(|_| refuse("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(refuse(
                "TLS is not built in: use the collector's plaintext port (the mesh encrypts)",
            ));
        }
        _ => return Err(refuse("must be an http:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse("names no host"));
    }
    Ok(())
}

fn parse_propagators(value: &str) -> Result<Vec<Format>, SettingError> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let format = match name {
            "tracecontext" => Format::TraceContext,
            "baggage" => Format::Baggage,
            "b3" => Format::B3Single,
            "b3multi" => Format::B3Multi,
            "none" => return Ok(Vec::new()),
            _ => {
                return Err(SettingError {
                    name: PROPAGATORS,
                    value: Some(value.to_owned()),
                    reason: "each must be tracecontext, baggage, b3, b3multi or none",
                });
            }
        };
        if !out.contains(&format) {
            out.push(format);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, SettingError> {
        Settings::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn traces_are_off_unless_asked_for() {
        assert!(!read(&[]).unwrap().export);
        assert!(read(&[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap().export);
        assert!(
            read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")])
                .unwrap()
                .export
        );
        for off in [
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
        ] {
            assert!(!read(&off).unwrap().export, "{off:?}");
        }
        assert_eq!(read(&[]).unwrap().propagators, DEFAULT_PROPAGATORS);
    }

    #[test]
    fn what_this_build_cannot_do_is_refused_by_name() {
        for (vars, name) in [
            (
                vec![("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector 4317")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                vec![("OTEL_PROPAGATORS", "tracecontext,xray")],
                "OTEL_PROPAGATORS",
            ),
            (vec![("OTEL_SDK_DISABLED", "maybe")], "OTEL_SDK_DISABLED"),
        ] {
            assert_eq!(read(&vars).unwrap_err().name, name, "{vars:?}");
        }
        // A protocol nobody exports with is no error.
        assert!(
            !read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
                .unwrap()
                .export
        );
    }

    #[test]
    fn propagators_are_read_in_order_once_each() {
        assert_eq!(
            read(&[("OTEL_PROPAGATORS", "b3, tracecontext,b3,baggage")])
                .unwrap()
                .propagators,
            [Format::B3Single, Format::TraceContext, Format::Baggage]
        );
        assert!(
            read(&[("OTEL_PROPAGATORS", "none")])
                .unwrap()
                .propagators
                .is_empty()
        );
    }
}
