//! Learned noise (Diffy's primary/secondary method): for a sample of safe requests the
//! proxy asks the legacy twice; fields where the two legacy answers differ often enough
//! are noise on that route, and their differences against the new side do not count as
//! mismatches.
//!
//! Per route and generalised field (`$.users[*].updated_at`, `header:cache-control`)
//! the model counts observations (legacy pairs in which the field appears, once per
//! pair however many array elements hold it) and differences (pairs in which it
//! differed). A field is noise when `differed / observed ≥ relative` and
//! `differed ≥ absolute`; a location below a noise field is noise too (when the legacy
//! sometimes answers `"user": null`, everything inside `user` is unstable). Statuses
//! are never noise, and pairs with different statuses are not learned from.
//!
//! Memory is bounded: at most `max_routes` routes and `max_paths_per_route` fields per
//! route; when a route is full a newly differing field replaces a field that never
//! differed, else it is not tracked. Counts are halved when a field reaches
//! `decay_after` observations, so old measurements fade.
//!
//! Thread safety: a [`NoiseModel`] is shared by reference (`&self` everywhere). One
//! `RwLock` guards the counts; a comparison takes the read lock once, and learning
//! compares the two answers before taking the write lock for the count updates only.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use serde_json::Value;

use crate::config::NoiseConfig;
use crate::exchange::Exchange;
use crate::fields::{FieldPath, collect_names};
use crate::rules::Rules;

/// What learning from one legacy pair did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The pair was counted; these fields differed (generalised names).
    Pair {
        /// Fields that differed between the two legacy answers.
        differing: Vec<String>,
    },
    /// The pair was not counted.
    Skipped(LearnSkip),
}

/// Why a legacy pair was not learned from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnSkip {
    /// Learning is turned off (`noise.learn`).
    Disabled,
    /// The two answers have different statuses: the legacy was unstable, not noisy.
    StatusDiffers,
    /// A body over the bound, or truncated.
    BodyTooLarge,
    /// Bodies that differ but are not both JSON.
    NotJson,
    /// The route is not tracked: `noise.max_routes` are already.
    TooManyRoutes,
}

/// The counts of one field on one route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NoiseField {
    /// The generalised field name.
    pub field: String,
    /// Legacy pairs in which the field appeared (after decay).
    pub observed: u64,
    /// Of those, pairs in which it differed.
    pub differed: u64,
    /// Whether it currently counts as noise.
    pub noise: bool,
}

/// What the model knows of one route, for the admin API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NoiseReport {
    /// Legacy pairs learned from.
    pub pairs: u64,
    /// Legacy pairs not learned from (different statuses, bodies too large or not JSON).
    pub skipped: u64,
    /// Field observations not tracked because the route was full.
    pub untracked: u64,
    /// Tracked fields, most often differing first.
    pub fields: Vec<NoiseField>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    observed: u64,
    differed: u64,
}

#[derive(Debug, Default)]
struct RouteNoise {
    pairs: u64,
    skipped: u64,
    untracked: u64,
    fields: HashMap<String, Counts>,
}

/// Learned noise of every route; see the module documentation.
#[derive(Debug)]
pub struct NoiseModel {
    rules: Arc<Rules>,
    config: NoiseConfig,
    routes: RwLock<HashMap<String, RouteNoise>>,
}

impl NoiseModel {
    pub(crate) fn new(rules: Arc<Rules>, config: NoiseConfig) -> Self {
        Self {
            rules,
            config,
            routes: RwLock::new(HashMap::new()),
        }
    }

    /// Learns from two answers of the legacy to the same safe request on `route`.
    pub fn learn(&self, route: &str, legacy_a: &Exchange, legacy_b: &Exchange) -> Learned {
        if !self.config.learn {
            return Learned::Skipped(LearnSkip::Disabled);
        }
        let measured = self.measure(legacy_a, legacy_b);
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if !routes.contains_key(route) && routes.len() >= self.config.max_routes {
            return Learned::Skipped(LearnSkip::TooManyRoutes);
        }
        let noise = routes.entry(route.to_owned()).or_default();
        let (observed, differing) = match measured {
            Ok(found) => found,
            Err(skip) => {
                noise.skipped += 1;
                return Learned::Skipped(skip);
            }
        };
        noise.pairs += 1;
        for name in &observed {
            let differs = differing.contains(name);
            self.count(noise, name, differs);
        }
        let mut differing: Vec<String> = differing.into_iter().collect();
        differing.sort();
        Learned::Pair { differing }
    }

    /// The fields present in either answer and those that differ between them.
    fn measure(
        &self,
        a: &Exchange,
        b: &Exchange,
    ) -> Result<(HashSet<String>, HashSet<String>), LearnSkip> {
        if a.status != b.status {
            return Err(LearnSkip::StatusDiffers);
        }
        let max = self.rules.max_body_bytes;
        if a.truncated || b.truncated || a.body.len() > max || b.body.len() > max {
            return Err(LearnSkip::BodyTooLarge);
        }
        let mut observed = HashSet::new();
        let mut differing = HashSet::new();
        for header in &self.rules.headers {
            let (va, vb) = (a.header_value(header), b.header_value(header));
            if va.is_some() || vb.is_some() {
                let name = format!("header:{header}");
                if va != vb {
                    differing.insert(name.clone());
                }
                observed.insert(name);
            }
        }
        if !(a.body.is_empty() && b.body.is_empty()) {
            let parsed = (
                serde_json::from_slice::<Value>(&a.body),
                serde_json::from_slice::<Value>(&b.body),
            );
            match parsed {
                (Ok(mut va), Ok(mut vb)) => {
                    self.rules.normalise_read(&mut va);
                    self.rules.normalise_read(&mut vb);
                    collect_names(&va, &mut observed);
                    collect_names(&vb, &mut observed);
                    for difference in self.rules.learn_differ.diff(&va, &vb).iter() {
                        differing.insert(FieldPath::of(&difference.path).into_name());
                    }
                }
                _ if a.body == b.body => {}
                _ => return Err(LearnSkip::NotJson),
            }
        }
        observed.extend(differing.iter().cloned());
        Ok((observed, differing))
    }

    /// Counts one observation of `name`, within the route's bound.
    fn count(&self, noise: &mut RouteNoise, name: &str, differs: bool) {
        if !noise.fields.contains_key(name) {
            if noise.fields.len() >= self.config.max_paths_per_route
                && !evict_stable(noise, differs)
            {
                noise.untracked += 1;
                return;
            }
            noise.fields.insert(name.to_owned(), Counts::default());
        }
        let counts = noise.fields.get_mut(name).expect("inserted above");
        counts.observed += 1;
        counts.differed += u64::from(differs);
        if counts.observed >= self.config.decay_after {
            counts.observed /= 2;
            counts.differed /= 2;
        }
    }

    fn is_noise(&self, counts: &Counts) -> bool {
        counts.differed >= self.config.absolute
            && counts.differed as f64 >= self.config.relative * counts.observed as f64
    }

    /// For each field, whether it (or an ancestor) is noise on `route`. Always false
    /// when learning is off.
    pub(crate) fn classify(&self, route: &str, fields: &[FieldPath]) -> Vec<bool> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let noise = routes.get(route).filter(|_| self.config.learn);
        fields
            .iter()
            .map(|field| {
                noise.is_some_and(|noise| {
                    field.prefixes().any(|prefix| {
                        noise
                            .fields
                            .get(prefix)
                            .is_some_and(|counts| self.is_noise(counts))
                    })
                })
            })
            .collect()
    }

    /// Whether `field` (a generalised name such as `$.user.updated_at`) is noise on
    /// `route` by itself (ancestors are not considered here).
    pub fn is_noise_field(&self, route: &str, field: &str) -> bool {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        self.config.learn
            && routes
                .get(route)
                .and_then(|noise| noise.fields.get(field))
                .is_some_and(|counts| self.is_noise(counts))
    }

    /// What is known of `route`, if anything.
    pub fn report(&self, route: &str) -> Option<NoiseReport> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let noise = routes.get(route)?;
        let mut fields: Vec<NoiseField> = noise
            .fields
            .iter()
            .map(|(field, counts)| NoiseField {
                field: field.clone(),
                observed: counts.observed,
                differed: counts.differed,
                noise: self.config.learn && self.is_noise(counts),
            })
            .collect();
        fields.sort_by(|a, b| {
            b.differed
                .cmp(&a.differed)
                .then_with(|| a.field.cmp(&b.field))
        });
        Some(NoiseReport {
            pairs: noise.pairs,
            skipped: noise.skipped,
            untracked: noise.untracked,
            fields,
        })
    }

    /// The routes learned about, sorted.
    pub fn routes(&self) -> Vec<String> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = routes.keys().cloned().collect();
        names.sort();
        names
    }

    /// Forgets what was learned about `route` (after a deployment of either side).
    pub fn forget(&self, route: &str) {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        routes.remove(route);
    }
}

/// Makes room for a newly differing field by dropping the least observed field that
/// never differed; a field that does not differ never displaces another.
fn evict_stable(noise: &mut RouteNoise, differs: bool) -> bool {
    if !differs {
        return false;
    }
    let victim = noise
        .fields
        .iter()
        .filter(|(_, counts)| counts.differed == 0)
        .min_by_key(|(_, counts)| counts.observed)
        .map(|(name, _)| name.clone());
    match victim {
        Some(name) => {
            noise.fields.remove(&name);
            true
        }
        None => false,
    }
}
