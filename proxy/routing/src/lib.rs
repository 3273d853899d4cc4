//! The migration proxy's routing: which upstream serves a request, and which shadows it.
//!
//! - [`virtual_service`] reads the Istio VirtualService that SREs edit (the same YAML
//!   they apply to the cluster), refusing fields the proxy would not honour.
//! - [`config`] reads the proxy config: upstream addresses and sides, and what Istio's
//!   schema cannot say (sticky key, comparison rules, guard thresholds, admin token).
//! - [`RouteTable::build`] checks one against the other and compiles the rules;
//!   [`RouteTable::route`] picks the first rule a request matches, and
//!   [`RouteTable::with_overrides`] applies the admin API's and the guard's shares.
//! - [`split`] decides the side of each request: a stable hash ([`hash`]) of the
//!   user's key to one of 10 000 buckets, the new side taking those below its share.
//!
//! [`Routing`] is what a reload swaps in: the config and the table built from both
//! files, as one value, so that neither is ever applied without the other.
//!
//! ```
//! use proxy_routing::{Routing, Side, StickyKey};
//!
//! let manifest = r#"
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: member-api, namespace: members}
//! spec:
//!   hosts: [member-api.members.svc.cluster.local]
//!   http:
//!   - name: users
//!     match: [{uri: {prefix: /api/v1/users}}]
//!     route:
//!     - destination: {host: legacy-api}
//!       weight: 90
//!     - destination: {host: identity}
//!       weight: 10
//! "#;
//! let config = r#"
//! upstreams:
//!   legacy-api.members.svc.cluster.local: {address: "127.0.0.1:3000", role: legacy}
//!   identity.members.svc.cluster.local: {address: "127.0.0.1:8080", role: new}
//! "#;
//! let routing = Routing::from_yaml(manifest, config).unwrap();
//! let route = routing.table.route("GET", "/api/v1/users/me", &http::HeaderMap::new()).unwrap();
//! assert_eq!(route.name(), "users");
//! assert_eq!(route.new_share_basis_points(), 1_000);
//! let key = StickyKey::from_request(&routing.config.sticky_key, &http::HeaderMap::new(), [10, 0, 0, 1].into());
//! let side = route.side_for(key.bucket());
//! assert_eq!(side, route.side_for(key.bucket()));
//! assert!(matches!(side, Side::Legacy | Side::New));
//! ```

pub mod config;
pub mod duration;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod headers;
mod matcher;
mod overrides;
pub mod path;
mod route;
pub mod split;
mod table;
pub mod virtual_service;

use std::path::Path;

pub use config::{ClientAddress, ConfigError, Limits, ProxyConfig};
pub use error::{Location, RoutingError};
pub use hash::Bucket;
pub use overrides::{Overrides, ShareOutOfRange};
pub use path::PathNormalization;
pub use route::{Percentage, Retries, RetryOn, Route, Shadow, WeightedUpstream};
pub use split::{KeyKind, Side, StickyKey, StickyKeySource, goes_to_new};
pub use table::RouteTable;
pub use virtual_service::VirtualService;

/// The proxy config and the route table built from it and the VirtualService: what a
/// reload swaps in, whole, or not at all.
#[derive(Debug, Clone)]
pub struct Routing {
    /// The proxy config.
    pub config: ProxyConfig,
    /// The table built from the VirtualService and `config`, without overrides.
    pub table: RouteTable,
}

/// Why a pair of files could not be loaded; the first part of the message names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The proxy config is refused.
    #[error("{path}: {source}")]
    Config {
        /// The file.
        path: String,
        /// The reason.
        source: ConfigError,
    },
    /// The VirtualService is refused (alone, or against the proxy config).
    #[error("{path}: {source}")]
    Routing {
        /// The file.
        path: String,
        /// The reason.
        source: RoutingError,
    },
}

impl Routing {
    /// Builds both from their text; `manifest` may hold several documents.
    pub fn from_yaml(manifest: &str, config: &str) -> Result<Routing, LoadError> {
        Self::from_sources(
            ("VirtualService manifest", manifest),
            ("proxy config", config),
        )
    }

    /// Reads and builds both files.
    pub fn load(manifest: &Path, config: &Path) -> Result<Routing, LoadError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let (manifest_text, config_text) = (read(manifest)?, read(config)?);
        Self::from_sources(
            (&manifest.display().to_string(), &manifest_text),
            (&config.display().to_string(), &config_text),
        )
    }

    fn from_sources(manifest: (&str, &str), config: (&str, &str)) -> Result<Routing, LoadError> {
        let proxy_config =
            ProxyConfig::from_yaml(config.1).map_err(|source| LoadError::Config {
                path: config.0.to_owned(),
                source,
            })?;
        let routing_error = |source| LoadError::Routing {
            path: manifest.0.to_owned(),
            source,
        };
        let vs = VirtualService::parse(manifest.1, proxy_config.virtual_service.as_deref())
            .map_err(routing_error)?;
        let table = RouteTable::build(&vs, &proxy_config).map_err(routing_error)?;
        proxy_config
            .check_rules(&table)
            .map_err(|source| LoadError::Config {
                path: config.0.to_owned(),
                source,
            })?;
        Ok(Routing {
            config: proxy_config,
            table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = include_str!("../../../istio/virtualservice-member-api.yaml");
    const CONFIG: &str = include_str!("../../config/local.yaml");

    #[test]
    fn loads_the_example_files_as_one_value() {
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo");
        let root = Path::new(&crate_dir).join("../..");
        let routing = Routing::load(
            &root.join("istio/virtualservice-member-api.yaml"),
            &root.join("proxy/config/local.yaml"),
        )
        .unwrap();
        assert_eq!(routing.table.virtual_service(), "member-api");
        assert_eq!(routing.table.routes().len(), 6);
    }

    #[test]
    fn a_config_that_drops_a_routed_upstream_is_refused_with_the_manifest() {
        let config = CONFIG.replace(
            "identity.members.svc.cluster.local:",
            "identity-v2.members.svc.cluster.local:",
        );
        let error = Routing::from_yaml(MANIFEST, &config)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "VirtualService manifest: rule \"sessions\" (http[0]): `route[1].destination.host` \
                 \"identity.members.svc.cluster.local\" is not an upstream of the proxy config"
            ),
            "{error}"
        );
        let error = Routing::from_yaml(MANIFEST, "upstreams: {}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "proxy config: upstreams must name at least one destination host"
        );
        let missing = Routing::load(
            Path::new("/nonexistent/vs.yaml"),
            Path::new("/nonexistent/c.yaml"),
        );
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .starts_with("/nonexistent/vs.yaml: ")
        );
    }
}
