//! The route table: a VirtualService checked against the proxy config and compiled.
//! [`RouteTable::build`] either returns a table in which every rule can be honoured or
//! an error naming the rule and the field; nothing is half-applied, so the caller keeps
//! the table in force until a new one is built.
//!
//! Checks: every destination and mirror host is an upstream of the proxy config (a
//! short name such as `identity` is read in the VirtualService's namespace, as
//! `identity.<namespace>.svc.cluster.local`); a rule has one or two destinations, at
//! most one per side; weights are whole numbers from 0 to 2^31-1 that do not all add
//! up to 0 (absent is 0, except for a rule's only destination, which takes all);
//! regexes compile; durations parse and are at least 1ms; percentages are from 0 to
//! 100; rule names are unique.

use std::sync::Arc;

use http::HeaderMap;

use crate::config::{ProxyConfig, Upstream};
use crate::headers::HeaderOps;
use crate::matcher::MatchEntry;
use crate::route::{Percentage, Route, Shadow, WeightedUpstream};
use crate::split::Side;
use crate::virtual_service::{Destination, HttpRoute, Percent, VirtualService};
use crate::{Location, RoutingError};
use policy::{duration, retries};

/// The rules of one VirtualService, in order, ready to route requests.
#[derive(Debug, Clone)]
pub struct RouteTable {
    pub(crate) virtual_service: String,
    /// Shared: a request holds its rule without copying it.
    pub(crate) routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Checks `vs` against `config` and compiles it.
    pub fn build(vs: &VirtualService, config: &ProxyConfig) -> Result<RouteTable, RoutingError> {
        if vs.spec.http.is_empty() {
            return Err(RoutingError::invalid(
                &Location::Spec,
                "http",
                "has no rules, so the proxy would route nothing",
            ));
        }
        let hosts = Hosts {
            config,
            namespace: vs.metadata.namespace.as_deref(),
        };
        let mut routes: Vec<Arc<Route>> = Vec::with_capacity(vs.spec.http.len());
        for (index, rule) in vs.spec.http.iter().enumerate() {
            let at = Location::rule(index, rule.name.as_deref());
            let route = build_route(index, rule, &at, &hosts)?;
            if let Some(first) = routes.iter().position(|other| other.name == route.name) {
                return Err(RoutingError::invalid(
                    &at,
                    "name",
                    format!(
                        "{:?} is also the name of http[{first}]; route names must be unique",
                        route.name
                    ),
                ));
            }
            routes.push(Arc::new(route));
        }
        Ok(RouteTable {
            virtual_service: vs.metadata.name.clone(),
            routes,
        })
    }

    /// The first rule that a request matches, `None` when none does. `path` is the
    /// request's path; a query string, if left on it, is not matched.
    pub fn route(&self, method: &str, path: &str, headers: &HeaderMap) -> Option<&Arc<Route>> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.routes
            .iter()
            .find(|route| route.matches(method, path, headers))
    }

    /// Every rule, in order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// The `metadata.name` of the VirtualService the table was built from.
    pub fn virtual_service(&self) -> &str {
        &self.virtual_service
    }
}

/// Destination hosts resolved against the proxy config.
struct Hosts<'c> {
    config: &'c ProxyConfig,
    namespace: Option<&'c str>,
}

impl<'c> Hosts<'c> {
    fn resolve(
        &self,
        destination: &Destination,
        at: &Location,
        field: &str,
    ) -> Result<(&'c str, &'c Upstream), RoutingError> {
        let host = destination.host.as_str();
        let found = self.config.upstreams.get_key_value(host).or_else(|| {
            let namespace = self.namespace.filter(|_| !host.contains('.'))?;
            let qualified = format!("{host}.{namespace}.svc.cluster.local");
            self.config.upstreams.get_key_value(&qualified)
        });
        let known = || {
            self.config
                .upstreams
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        found
            .map(|(key, upstream)| (key.as_str(), upstream))
            .ok_or_else(|| {
                RoutingError::invalid(
                    at,
                    field,
                    format!(
                        "{host:?} is not an upstream of the proxy config (known: {})",
                        known()
                    ),
                )
            })
    }
}

fn build_route(
    index: usize,
    rule: &HttpRoute,
    at: &Location,
    hosts: &Hosts<'_>,
) -> Result<Route, RoutingError> {
    let name = match rule.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!("rule-{index}"),
    };
    let matches = rule
        .matches
        .iter()
        .enumerate()
        .map(|(index, entry)| MatchEntry::compile(entry, at, index))
        .collect::<Result<Vec<_>, _>>()?;
    let (legacy, new) = destinations(rule, at, hosts)?;
    let weight =
        |upstream: &Option<WeightedUpstream>| upstream.as_ref().map_or(0, |u| u64::from(u.weight));
    let total = weight(&legacy) + weight(&new);
    if total == 0 {
        return Err(RoutingError::invalid(
            at,
            "route",
            "weights add up to 0; give at least one destination a positive weight",
        ));
    }
    let basis_points = u32::try_from(weight(&new) * 10_000 / total).expect("at most 10 000");
    let timeout = match &rule.timeout {
        Some(text) => duration(text, at, "timeout")?,
        None => hosts.config.timeouts.request,
    };
    Ok(Route {
        name,
        matches,
        legacy,
        new,
        manifest_basis_points: basis_points,
        basis_points,
        shadows: shadows(rule, at, hosts)?,
        timeout,
        retries: rule
            .retries
            .as_ref()
            .map(|spec| retries(spec, at))
            .transpose()?
            .flatten(),
        headers: HeaderOps::compile(rule.headers.as_ref(), at)?,
    })
}

type Destinations = (Option<WeightedUpstream>, Option<WeightedUpstream>);

fn destinations(
    rule: &HttpRoute,
    at: &Location,
    hosts: &Hosts<'_>,
) -> Result<Destinations, RoutingError> {
    const SHAPE: &str = "a rule has one legacy and at most one new destination";
    match rule.route.len() {
        0 => {
            return Err(RoutingError::invalid(
                at,
                "route",
                "must name at least one destination",
            ));
        }
        1 | 2 => {}
        count => {
            return Err(RoutingError::invalid(
                at,
                "route",
                format!("has {count} destinations; {SHAPE}"),
            ));
        }
    }
    let only = rule.route.len() == 1;
    let (mut legacy, mut new) = (None, None);
    for (index, entry) in rule.route.iter().enumerate() {
        let (host, upstream) = hosts.resolve(
            &entry.destination,
            at,
            &format!("route[{index}].destination.host"),
        )?;
        let field = || format!("route[{index}].weight");
        let weight = match entry.weight {
            None if only => 100,
            None => 0,
            Some(weight) if weight < 0 => {
                return Err(RoutingError::invalid(
                    at,
                    field(),
                    format!("must not be negative, got {weight}"),
                ));
            }
            Some(weight) => u32::try_from(weight)
                .ok()
                .filter(|weight| i32::try_from(*weight).is_ok())
                .ok_or_else(|| {
                    RoutingError::invalid(
                        at,
                        field(),
                        format!("must be at most {}, got {weight}", i32::MAX),
                    )
                })?,
        };
        let slot = match upstream.role {
            Side::Legacy => &mut legacy,
            Side::New => &mut new,
        };
        if slot.is_some() {
            return Err(RoutingError::invalid(
                at,
                "route",
                format!("has two {} destinations; {SHAPE}", upstream.role),
            ));
        }
        *slot = Some(WeightedUpstream {
            host: host.to_owned(),
            weight,
        });
    }
    Ok((legacy, new))
}

fn shadows(
    rule: &HttpRoute,
    at: &Location,
    hosts: &Hosts<'_>,
) -> Result<Vec<Shadow>, RoutingError> {
    if rule.mirror.is_some() && !rule.mirrors.is_empty() {
        return Err(RoutingError::invalid(
            at,
            "mirrors",
            "cannot be used with `mirror`; list every shadow target in `mirrors`",
        ));
    }
    if rule.mirror.is_none() && rule.mirror_percentage.is_some() {
        return Err(RoutingError::invalid(
            at,
            "mirrorPercentage",
            "is set without `mirror`",
        ));
    }
    let mut targets: Vec<(String, &Destination, Option<Percent>, String)> = Vec::new();
    if let Some(mirror) = &rule.mirror {
        targets.push((
            "mirror".into(),
            mirror,
            rule.mirror_percentage,
            "mirrorPercentage.value".into(),
        ));
    }
    for (index, mirror) in rule.mirrors.iter().enumerate() {
        targets.push((
            format!("mirrors[{index}].destination"),
            &mirror.destination,
            mirror.percentage,
            format!("mirrors[{index}].percentage.value"),
        ));
    }
    let mut shadows: Vec<Shadow> = Vec::with_capacity(targets.len());
    for (field, destination, percent, percent_field) in targets {
        let (host, upstream) = hosts.resolve(destination, at, &format!("{field}.host"))?;
        let percentage = match percent {
            None => Percentage::ALL,
            Some(Percent { value }) => Percentage::from_percent(value).ok_or_else(|| {
                RoutingError::invalid(
                    at,
                    percent_field,
                    format!("must be between 0 and 100, got {value}"),
                )
            })?,
        };
        if shadows.iter().any(|shadow| shadow.side == upstream.role) {
            return Err(RoutingError::invalid(
                at,
                field,
                format!(
                    "is a second shadow target on the {} side; mirror to at most one upstream per side",
                    upstream.role
                ),
            ));
        }
        shadows.push(Shadow {
            host: host.to_owned(),
            side: upstream.role,
            percentage,
        });
    }
    Ok(shadows)
}

mod policy;

#[cfg(test)]
mod tests;
