//! The errors of reading a VirtualService and building a route table from it. Every
//! message names the rule (by `name`, else by index) and the field, so that an SRE can
//! find the line to fix from the log alone.

use std::fmt;

/// Where in a VirtualService a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The VirtualService as a whole (`spec`, `metadata`).
    Spec,
    /// One entry of `spec.http`.
    Rule {
        /// Its index in `spec.http`.
        index: usize,
        /// Its `name`, when it has one.
        name: Option<String>,
    },
}

impl Location {
    /// The location of `spec.http[index]`, named if it has a name.
    pub fn rule(index: usize, name: Option<&str>) -> Self {
        Location::Rule {
            index,
            name: name.map(str::to_owned),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Spec => f.write_str("spec"),
            Location::Rule {
                index,
                name: Some(name),
            } => write!(f, "rule {name:?} (http[{index}])"),
            Location::Rule { index, name: None } => write!(f, "rule http[{index}]"),
        }
    }
}

/// Why a VirtualService was refused. The route table in force is kept whenever one of
/// these is returned: a new table exists only once everything has been checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// Not YAML, or not of the VirtualService schema (a misspelt field, a string where
    /// a number belongs). The message carries the parser's path and line.
    #[error("malformed VirtualService manifest: {0}")]
    Malformed(String),
    /// No document of the manifest is a VirtualService of `networking.istio.io`.
    #[error(
        "the manifest holds no VirtualService (kind: VirtualService, apiVersion: networking.istio.io/v1)"
    )]
    NoVirtualService,
    /// Several VirtualServices and no name to choose one.
    #[error(
        "the manifest holds several VirtualServices ({names}); set `virtual_service` in the proxy config to choose one"
    )]
    Ambiguous {
        /// Their names, comma-separated.
        names: String,
    },
    /// The configured VirtualService name is not in the manifest.
    #[error("the manifest holds no VirtualService named {wanted:?} (found: {found})")]
    NotFound {
        /// The name asked for.
        wanted: String,
        /// The names present, comma-separated.
        found: String,
    },
    /// A VirtualService of a version of the API that is not read.
    #[error(
        "VirtualService {name:?} has apiVersion {found:?}; networking.istio.io/v1, v1beta1 and v1alpha3 are read"
    )]
    ApiVersion {
        /// `metadata.name` of the document.
        name: String,
        /// Its `apiVersion`.
        found: String,
    },
    /// A field of Istio's schema that the proxy does not honour; honouring it silently
    /// in part, or not at all, would misroute clients.
    #[error("{at}: `{field}` is not supported by the migration proxy: {reason}")]
    Unsupported {
        /// The rule or spec holding it.
        at: Location,
        /// The field's path inside that rule (`rewrite`, `match[0].queryParams`).
        field: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A field whose value cannot be honoured (unknown host, negative weight, bad regex).
    #[error("{at}: `{field}` {problem}")]
    Invalid {
        /// The rule or spec holding it.
        at: Location,
        /// The field's path inside that rule (`route[1].weight`).
        field: String,
        /// What is wrong, with the value found.
        problem: String,
    },
    /// A runtime override names a rule that the table does not have.
    #[error("no rule named {0:?} in the route table")]
    UnknownRule(String),
    /// A runtime override asks a rule for a share that it has no destination for.
    #[error(
        "rule {rule:?} has no {missing} destination, so its new share cannot be {basis_points} basis points"
    )]
    Unreachable {
        /// The rule's name.
        rule: String,
        /// `legacy` or `new`.
        missing: &'static str,
        /// The share asked for.
        basis_points: u32,
    },
}

impl RoutingError {
    /// An [`RoutingError::Invalid`] at `at`, for `field`.
    pub(crate) fn invalid(
        at: &Location,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        RoutingError::Invalid {
            at: at.clone(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}
