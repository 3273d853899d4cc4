//! Runtime changes to the new side's share, made by the admin API or by the guard, and
//! kept apart from the VirtualService so that a reload of the manifest re-applies them.
//!
//! The proxy holds one [`Overrides`] beside the manifest, and swaps in
//! `table.with_overrides(&overrides)` whenever either changes. [`Overrides::set_all`]
//! (the guard's abort: every rule to 0) replaces every per-rule override; a per-rule
//! override set afterwards applies on top of it. Overrides never make a rule use a
//! destination it does not have: `set_all` is clamped per rule, and a per-rule override
//! that would is refused.

use std::collections::BTreeMap;

use crate::hash::BUCKETS;
use crate::{RouteTable, RoutingError};

/// A share, in basis points, past the whole (10 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a share is 0 to 10000 basis points, got {0}")]
pub struct ShareOutOfRange(pub u32);

/// Runtime overrides of the new side's share, by rule name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    all: Option<u32>,
    rules: BTreeMap<String, u32>,
}

impl Overrides {
    /// No override: the VirtualService's weights apply.
    pub fn new() -> Self {
        Overrides::default()
    }

    /// Sets the share of every rule, replacing every per-rule override.
    pub fn set_all(&mut self, basis_points: u32) -> Result<(), ShareOutOfRange> {
        check(basis_points)?;
        self.all = Some(basis_points);
        self.rules.clear();
        Ok(())
    }

    /// Sets the share of rule `name`.
    pub fn set_rule(
        &mut self,
        name: impl Into<String>,
        basis_points: u32,
    ) -> Result<(), ShareOutOfRange> {
        check(basis_points)?;
        self.rules.insert(name.into(), basis_points);
        Ok(())
    }

    /// Removes the override of rule `name` (a share set for all still applies).
    pub fn clear_rule(&mut self, name: &str) {
        self.rules.remove(name);
    }

    /// Removes every override.
    pub fn clear(&mut self) {
        *self = Overrides::default();
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.rules.is_empty()
    }

    /// The share set for all rules, if any.
    pub fn all(&self) -> Option<u32> {
        self.all
    }

    /// The per-rule overrides.
    pub fn rules(&self) -> &BTreeMap<String, u32> {
        &self.rules
    }

    /// Drops the overrides of rules that `table` does not have (after a reload renamed
    /// or removed them), returning their names for the log.
    pub fn retain_known(&mut self, table: &RouteTable) -> Vec<String> {
        let unknown: Vec<String> = self
            .rules
            .keys()
            .filter(|name| table.get(name).is_none())
            .cloned()
            .collect();
        for name in &unknown {
            self.rules.remove(name);
        }
        unknown
    }
}

fn check(basis_points: u32) -> Result<(), ShareOutOfRange> {
    if basis_points > BUCKETS {
        return Err(ShareOutOfRange(basis_points));
    }
    Ok(())
}

impl RouteTable {
    /// This table with `overrides` applied to the manifest's shares (any earlier
    /// override of this table is replaced, not stacked).
    pub fn with_overrides(&self, overrides: &Overrides) -> Result<RouteTable, RoutingError> {
        let mut table = self.clone();
        for route in &mut table.routes {
            let share = overrides.all.unwrap_or(route.manifest_basis_points);
            std::sync::Arc::make_mut(route).set_share(share);
        }
        for (name, &basis_points) in &overrides.rules {
            let route = table
                .routes
                .iter_mut()
                .find(|route| route.name == *name)
                .map(std::sync::Arc::make_mut)
                .ok_or_else(|| RoutingError::UnknownRule(name.clone()))?;
            let missing = match (&route.legacy, &route.new) {
                (_, None) if basis_points > 0 => Some("new"),
                (None, _) if basis_points < BUCKETS => Some("legacy"),
                _ => None,
            };
            if let Some(missing) = missing {
                return Err(RoutingError::Unreachable {
                    rule: name.clone(),
                    missing,
                    basis_points,
                });
            }
            route.set_share(basis_points);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProxyConfig, VirtualService};

    fn table() -> RouteTable {
        let manifest = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: member-api, namespace: members}
spec:
  http:
  - name: sessions
    match: [{uri: {prefix: /api/v1/sessions}}]
    route:
    - {destination: {host: legacy-api}, weight: 99}
    - {destination: {host: identity}, weight: 1}
  - name: cutover
    match: [{uri: {prefix: /api/v1/users}}]
    route: [{destination: {host: identity}}]
  - name: default
    route: [{destination: {host: legacy-api}}]
";
        let config = ProxyConfig::from_yaml(
            "upstreams:\n  legacy-api.members.svc.cluster.local: {address: \"127.0.0.1:3000\", role: legacy}\n  \
             identity.members.svc.cluster.local: {address: \"127.0.0.1:8080\", role: new}\n",
        )
        .unwrap();
        RouteTable::build(&VirtualService::parse(manifest, None).unwrap(), &config).unwrap()
    }

    fn shares(table: &RouteTable) -> Vec<u32> {
        table
            .routes()
            .iter()
            .map(|route| route.new_share_basis_points())
            .collect()
    }

    #[test]
    fn a_rule_override_changes_that_rule_only() {
        let table = table();
        let mut overrides = Overrides::new();
        overrides.set_rule("sessions", 2_500).unwrap();
        let changed = table.with_overrides(&overrides).unwrap();
        assert_eq!(shares(&changed), [2_500, 10_000, 0]);
        let sessions = changed.get("sessions").unwrap();
        assert!(sessions.is_overridden());
        assert_eq!(sessions.manifest_basis_points(), 100);
        assert_eq!(
            shares(&table),
            [100, 10_000, 0],
            "the original table is untouched"
        );
    }

    #[test]
    fn the_guards_abort_sets_every_rule_it_can_to_zero() {
        let mut overrides = Overrides::new();
        overrides.set_rule("sessions", 5_000).unwrap();
        overrides.set_all(0).unwrap();
        assert!(
            overrides.rules().is_empty(),
            "set_all replaces per-rule overrides"
        );
        let aborted = table().with_overrides(&overrides).unwrap();
        // The cutover rule has no legacy destination left to send users to.
        assert_eq!(shares(&aborted), [0, 10_000, 0]);
        overrides.set_rule("sessions", 300).unwrap();
        assert_eq!(
            shares(&table().with_overrides(&overrides).unwrap()),
            [300, 10_000, 0]
        );
        overrides.clear();
        assert!(overrides.is_empty());
        assert_eq!(
            shares(&table().with_overrides(&overrides).unwrap()),
            [100, 10_000, 0]
        );
    }

    #[test]
    fn refuses_unknown_rules_missing_sides_and_shares_past_the_whole() {
        let table = table();
        let mut overrides = Overrides::new();
        assert_eq!(
            overrides.set_rule("sessions", 10_001),
            Err(ShareOutOfRange(10_001))
        );
        assert_eq!(
            overrides.set_all(20_000).unwrap_err().to_string(),
            "a share is 0 to 10000 basis points, got 20000"
        );
        overrides.set_rule("gone", 100).unwrap();
        assert_eq!(
            table.with_overrides(&overrides).unwrap_err().to_string(),
            r#"no rule named "gone" in the route table"#
        );
        assert_eq!(overrides.retain_known(&table), ["gone"]);
        assert!(overrides.is_empty());
        overrides.set_rule("default", 1).unwrap();
        assert_eq!(
            table.with_overrides(&overrides).unwrap_err().to_string(),
            r#"rule "default" has no new destination, so its new share cannot be 1 basis points"#
        );
        overrides.clear_rule("default");
        overrides.set_rule("cutover", 0).unwrap();
        assert_eq!(
            table.with_overrides(&overrides).unwrap_err().to_string(),
            r#"rule "cutover" has no legacy destination, so its new share cannot be 0 basis points"#
        );
    }
}
