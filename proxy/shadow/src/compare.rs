//! The comparison of one legacy answer with one new answer: status, chosen headers and
//! JSON bodies field by field, under the built-in rules and the configured ignore rules,
//! with learned noise set apart. The legacy is always on the left, whichever side
//! answered the client.

use std::sync::Arc;

use json_diff::{Difference, RenderMode, type_name};
use serde_json::Value;

use crate::config::{CompareConfig, ConfigError};
use crate::exchange::{Exchange, RequestMeta, Side};
use crate::fields::{FieldPath, masked_path};
use crate::noise::NoiseModel;
use crate::outcome::{Outcome, SkipReason};
use crate::rules::Rules;
use crate::sample::{MaskedSample, path_template, safe_headers, safe_method, shorten};

/// Response headers whose values samples show (they describe the format, never a
/// person); other compared headers show only their length.
const SHOWN_HEADER_VALUES: &[&str] = &["content-type", "cache-control", "content-encoding", "vary"];

/// Compares answers; build it once from the configuration and share it (`Send + Sync`).
#[derive(Debug)]
pub struct Comparator {
    config: CompareConfig,
    rules: Arc<Rules>,
}

/// One difference found, before noise is set apart.
struct Finding {
    field: FieldPath,
    /// False for statuses and body kinds, which are never noise.
    may_be_noise: bool,
    /// The masked sample line.
    line: String,
}

/// A body as far as the comparison is concerned.
enum Body {
    Empty,
    Json(Value),
    Other(usize),
}

impl Body {
    fn parse(bytes: &[u8]) -> Self {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Body::Empty;
        }
        match serde_json::from_slice(bytes) {
            Ok(value) => Body::Json(value),
            Err(_) => Body::Other(bytes.len()),
        }
    }

    /// What the body is, without its content: `empty`, `json object(3)`, `not json (12 bytes)`.
    fn describe(&self) -> String {
        match self {
            Body::Empty => "empty".into(),
            Body::Json(Value::Object(map)) => format!("json object({})", map.len()),
            Body::Json(Value::Array(items)) => format!("json array({})", items.len()),
            Body::Json(other) => format!("json {}", type_name(other)),
            Body::Other(len) => format!("not json ({len} bytes)"),
        }
    }
}

impl Comparator {
    /// Validates `config` and compiles its rules.
    pub fn new(config: CompareConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let rules = Rules::new(&config).map_err(|source| ConfigError::Pattern {
            setting: "ignore",
            source,
        })?;
        Ok(Self {
            config,
            rules: Arc::new(rules),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &CompareConfig {
        &self.config
    }

    /// An empty noise model using this comparator's rules and noise settings.
    pub fn noise_model(&self) -> NoiseModel {
        NoiseModel::new(Arc::clone(&self.rules), self.config.noise.clone())
    }

    /// Compares the answer given to the client (`primary`, from `primary_side`) with the
    /// other side's answer to the replayed request (`shadow`).
    ///
    /// In order: a body over the bound (or truncated) skips the comparison; a legacy
    /// 5xx against a new 4xx is its own category; otherwise status, the configured
    /// headers and the bodies are compared, and differences in fields that `noise` has
    /// learned to be noise on `request.route` are set apart.
    pub fn compare(
        &self,
        request: &RequestMeta<'_>,
        primary_side: Side,
        primary: &Exchange,
        shadow: &Exchange,
        noise: &NoiseModel,
    ) -> Outcome {
        let (legacy, new) = match primary_side {
            Side::Legacy => (primary, shadow),
            Side::New => (shadow, primary),
        };
        if self.too_large(legacy) || self.too_large(new) {
            return Outcome::Skipped(SkipReason::BodyTooLarge);
        }
        if legacy.is_server_error() && new.is_client_error() {
            return Outcome::LegacyServerErrorNewClientError;
        }
        let mut findings = Vec::new();
        if legacy.status != new.status {
            findings.push(Finding {
                field: FieldPath::plain("status"),
                may_be_noise: false,
                line: format!("status: {} != {}", legacy.status, new.status),
            });
        }
        self.compare_headers(legacy, new, &mut findings);
        let truncated = match self.compare_bodies(request, legacy, new, &mut findings) {
            Ok(truncated) => truncated,
            Err(skip) => return Outcome::Skipped(skip),
        };
        if findings.is_empty() {
            return Outcome::Match;
        }

        let paths: Vec<FieldPath> = findings.iter().map(|f| f.field.clone()).collect();
        let noisy = noise.classify(request.route, &paths);
        let (mut fields, mut noise_fields, mut lines) = (Vec::new(), Vec::new(), Vec::new());
        for (finding, noisy) in findings.into_iter().zip(noisy) {
            let name = finding.field.into_name();
            if finding.may_be_noise && noisy {
                push_once(&mut noise_fields, name);
            } else {
                push_once(&mut fields, name);
                lines.push(finding.line);
            }
        }
        if fields.is_empty() {
            return Outcome::Noise {
                fields: noise_fields,
            };
        }
        let truncated = truncated || lines.len() > self.config.max_differences;
        lines.truncate(self.config.max_differences);
        let sample = MaskedSample {
            route: request.route.to_owned(),
            method: safe_method(request.method),
            path: path_template(request.path),
            primary: primary_side,
            legacy_status: legacy.status,
            new_status: new.status,
            request_headers: safe_headers(request.headers, &self.config.sample_headers),
            differences: lines,
            truncated,
        };
        Outcome::Mismatch {
            fields,
            sample: Box::new(sample),
        }
    }

    fn too_large(&self, exchange: &Exchange) -> bool {
        exchange.truncated || exchange.body.len() > self.config.max_body_bytes
    }

    fn compare_headers(&self, legacy: &Exchange, new: &Exchange, findings: &mut Vec<Finding>) {
        for name in &self.config.headers {
            let (l, n) = (legacy.header_value(name), new.header_value(name));
            if l == n {
                continue;
            }
            let shown = SHOWN_HEADER_VALUES.contains(&name.as_str());
            let show = |value: Option<&str>| match value {
                None => "absent".to_owned(),
                Some(v) if shown => format!("{:?}", shorten(v)),
                Some(v) => format!("string({})", v.chars().count()),
            };
            let field = format!("header:{name}");
            findings.push(Finding {
                line: format!("{field}: {} != {}", show(l.as_deref()), show(n.as_deref())),
                field: FieldPath::plain(&field),
                may_be_noise: true,
            });
        }
    }

    /// Compares the bodies; `Ok(true)` when more differences existed than recorded.
    fn compare_bodies(
        &self,
        request: &RequestMeta<'_>,
        legacy: &Exchange,
        new: &Exchange,
        findings: &mut Vec<Finding>,
    ) -> Result<bool, SkipReason> {
        match (Body::parse(&legacy.body), Body::parse(&new.body)) {
            (Body::Json(mut l), Body::Json(mut n)) => {
                self.rules.normalise(request, &mut l);
                self.rules.normalise(request, &mut n);
                let diff = self.rules.differ.diff(&l, &n);
                for difference in diff.iter() {
                    let masked = Difference {
                        path: masked_path(&difference.path),
                        kind: difference.kind.clone(),
                    };
                    findings.push(Finding {
                        field: FieldPath::of(&difference.path),
                        may_be_noise: true,
                        line: masked.render(RenderMode::Masked).to_string(),
                    });
                }
                Ok(diff.is_truncated())
            }
            (Body::Empty, Body::Empty) => Ok(false),
            (Body::Other(_), Body::Other(_)) if legacy.body == new.body => Ok(false),
            (l @ Body::Other(_), n @ Body::Other(_)) if !findings.is_empty() => {
                findings.push(body_finding(&l, &n));
                Ok(false)
            }
            (Body::Other(_), Body::Other(_)) => Err(SkipReason::NotJson),
            (l, n) => {
                findings.push(body_finding(&l, &n));
                Ok(false)
            }
        }
    }
}

fn body_finding(legacy: &Body, new: &Body) -> Finding {
    Finding {
        field: FieldPath::plain("body"),
        may_be_noise: false,
        line: format!("body: {} != {}", legacy.describe(), new.describe()),
    }
}

fn push_once(names: &mut Vec<String>, name: String) {
    if !names.contains(&name) {
        names.push(name);
    }
}
