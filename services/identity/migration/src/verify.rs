//! Verification: every member compared field by field between the two databases, in
//! id order (a merge of two ordered scans). Deviations are reported by id and field
//! name, never by value (the report is personal-data free).
//!
//! Verify runs on a live system: a member written at the moment of the scan (the legacy
//! committed, the identity service's commit or the sync's poll still to come) differs
//! for a moment. Each deviating member is therefore compared again after a pause, a few
//! times; only what still differs counts, the others are reported as settled.

use std::collections::HashMap;
use std::time::Duration;

use identity_store::Store;
use legacy_db::LegacyDb;

use crate::{MigrationError, legacy_to_member};

const BATCH: i64 = 5000;

/// A member the legacy holds and the identity service does not, and the reverse.
const MISSING: &str = "missing in identity";
const EXTRA: &str = "extra in identity";

/// Identity rows read at once by a verify of the recently changed.
const CHANGED_BATCH: usize = 1000;

/// One member that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub id: i64,
    /// The differing fields (`missing in identity`, `extra in identity` for whole rows).
    pub fields: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Members compared (the union of both sides' ids).
    pub compared: u64,
    pub deviating_members: u64,
    /// Members that differed in the scan and agreed when compared again (written while
    /// being compared).
    pub settled: u64,
    /// The first deviations, as examples.
    pub examples: Vec<Deviation>,
}

/// How verify compares again what differed in the scan.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub max_examples: usize,
    /// Pause before each new comparison of the deviating members (longer than the
    /// sync's interval).
    pub settle: Duration,
    /// How many times they are compared again.
    pub rounds: u32,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            max_examples: 10,
            settle: Duration::from_secs(2),
            rounds: 3,
        }
    }
}

/// At most this many deviating members are compared again (more is no transient).
const MAX_RECHECKS: usize = 10_000;

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.deviating_members == 0
    }

    /// Agreement in percent.
    pub fn agreement_percent(&self) -> f64 {
        if self.compared == 0 {
            return 100.0;
        }
        100.0 * (self.compared - self.deviating_members) as f64 / self.compared as f64
    }
}

/// Compares every member with the default options and `max_examples` examples.
pub async fn verify(
    store: &Store,
    legacy: &LegacyDb,
    max_examples: usize,
) -> Result<VerifyReport, MigrationError> {
    verify_with(
        store,
        legacy,
        &VerifyOptions {
            max_examples,
            ..VerifyOptions::default()
        },
    )
    .await
}

/// Compares every member, then compares again what differed.
pub async fn verify_with(
    store: &Store,
    legacy: &LegacyDb,
    options: &VerifyOptions,
) -> Result<VerifyReport, MigrationError> {
    let scanned = scan(store, legacy).await?;
    settle(store, legacy, options, scanned).await
}

/// Most members a verify of the recently changed compares (beyond, it is no window of
/// a rollout step but a whole migration: `verify` compares every member).
pub const MAX_CHANGED: usize = 100_000;

/// Compares the members either side changed at or after `since`, then compares again
/// what differed: the data verify of the members a rollout step wrote. The legacy's
/// changed rows come whole from one range scan of its `updated_at` index, the identity
/// service's in batches of ids. Refused (`MigrationError::Refused`) when more than
/// [`MAX_CHANGED`] members changed.
pub async fn verify_changed_since(
    store: &Store,
    legacy: &LegacyDb,
    since: member_contract::Timestamp,
    options: &VerifyOptions,
) -> Result<VerifyReport, MigrationError> {
    use futures_util::StreamExt;
    let too_many = || {
        MigrationError::Refused(format!(
            "more than {MAX_CHANGED} members changed since {}: run a whole verify",
            since.to_json_string()
        ))
    };
    let mut ids: std::collections::BTreeSet<i64> = store
        .member_ids_changed_since(since.as_micros(), MAX_CHANGED as i64 + 1)
        .await?
        .into_iter()
        .collect();
    let mut legacy_rows: HashMap<i64, legacy_db::LegacyUser> = HashMap::new();
    let mut changed = std::pin::pin!(legacy.users_changed_since(since));
    while let Some(user) = changed.next().await {
        let user = user?;
        ids.insert(user.id);
        legacy_rows.insert(user.id, user);
        if ids.len() > MAX_CHANGED {
            return Err(too_many());
        }
    }
    if ids.len() > MAX_CHANGED {
        return Err(too_many());
    }
    let ids: Vec<i64> = ids.into_iter().collect();
    let mut scanned = Scan::default();
    for chunk in ids.chunks(CHANGED_BATCH) {
        let identity_rows = store.members_with_legacy_digests(chunk).await?;
        for &id in chunk {
            scanned.compared += 1;
            // Changed on the identity side only: the legacy's row is read on its own.
            let fetched;
            let u = match legacy_rows.get(&id) {
                Some(u) => Some(u),
                None => {
                    fetched = legacy.user_by_id(legacy.pool(), id).await?;
                    fetched.as_ref()
                }
            };
            let (m, digest) = identity_rows
                .get(&id)
                .map_or((None, None), |(m, d)| (Some(m), d.as_deref()));
            let fields = pair_fields(u, m, digest);
            if !fields.is_empty() {
                scanned.deviating += 1;
                scanned.kept.push(Deviation { id, fields });
            }
        }
    }
    settle(store, legacy, options, scanned).await
}

/// Compares again, after pauses, what a scan found deviating; only what still differs
/// is reported.
async fn settle(
    store: &Store,
    legacy: &LegacyDb,
    options: &VerifyOptions,
    scanned: Scan,
) -> Result<VerifyReport, MigrationError> {
    let mut report = VerifyReport {
        compared: scanned.compared,
        ..VerifyReport::default()
    };
    let mut pending = scanned.kept;
    // Past MAX_RECHECKS the deviations are no transient: reported as found.
    if !scanned.truncated {
        for _ in 0..options.rounds {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(options.settle).await;
            let mut still = Vec::new();
            for d in pending {
                match compare_one(store, legacy, d.id).await? {
                    Some(d) => still.push(d),
                    None => report.settled += 1,
                }
            }
            pending = still;
        }
    }
    report.deviating_members = scanned.deviating - report.settled;
    pending.truncate(options.max_examples);
    report.examples = pending;
    Ok(report)
}

/// One member compared again: `None` when both sides agree.
async fn compare_one(
    store: &Store,
    legacy: &LegacyDb,
    id: i64,
) -> Result<Option<Deviation>, MigrationError> {
    let (_, _, fields) = read_pair(store, legacy, id).await?;
    Ok((!fields.is_empty()).then_some(Deviation { id, fields }))
}

/// One member as each side holds it now, and the fields in which they differ (the
/// whole row's absence on one side as `missing in identity` or `extra in identity`;
/// nothing when it is on neither).
pub(crate) async fn read_pair(
    store: &Store,
    legacy: &LegacyDb,
    id: i64,
) -> Result<
    (
        Option<legacy_db::LegacyUser>,
        Option<identity_store::MemberRow>,
        Vec<&'static str>,
    ),
    MigrationError,
> {
    let u = legacy.user_by_id(legacy.pool(), id).await?;
    let m = store.member_by_id(id).await?;
    // The identity service's record of the legacy digest matters only beside both rows.
    let digest = match (&u, &m) {
        (Some(_), Some(_)) => store
            .legacy_digests_between(id, id)
            .await?
            .into_iter()
            .next()
            .map(|(_, d)| d),
        _ => None,
    };
    let fields = pair_fields(u.as_ref(), m.as_ref(), digest.as_deref());
    Ok((u, m, fields))
}

/// The fields in which the two sides' rows of one member differ: the whole row's
/// absence on one side as `missing in identity` or `extra in identity`, nothing when it
/// is on neither.
fn pair_fields(
    u: Option<&legacy_db::LegacyUser>,
    m: Option<&identity_store::MemberRow>,
    known_digest: Option<&str>,
) -> Vec<&'static str> {
    match (u, m) {
        (None, None) => Vec::new(),
        (Some(_), None) => vec![MISSING],
        (None, Some(_)) => vec![EXTRA],
        (Some(u), Some(m)) => differing_fields(u, m, known_digest),
    }
}

/// The fields in which the identity service's member differs from the legacy's user.
fn differing_fields(
    u: &legacy_db::LegacyUser,
    m: &identity_store::MemberRow,
    known_digest: Option<&str>,
) -> Vec<&'static str> {
    let want = legacy_to_member(u);
    let mut fields = Vec::new();
    let checks: [(&'static str, bool); 7] = [
        ("email", want.email == m.email),
        ("nickname", want.nickname == m.nickname),
        ("phone_number", want.phone_number == m.phone_number),
        (
            "profile_image_url",
            want.profile_image_url == m.profile_image_url,
        ),
        ("created_at", want.created_at == m.created_at),
        ("updated_at", want.updated_at == m.updated_at),
        ("deleted_at", want.deleted_at == m.deleted_at),
    ];
    for (name, ok) in checks {
        if !ok {
            fields.push(name);
        }
    }
    // The identity service may hold its own re-hash of the same password; then its
    // record of the legacy's digest must be the legacy's digest.
    if known_digest != Some(u.password_digest.as_str()) && m.password_hash != u.password_digest {
        fields.push("password");
    }
    fields
}

/// What the scan found.
#[derive(Default)]
struct Scan {
    compared: u64,
    deviating: u64,
    /// The deviations kept for a second look (at most MAX_RECHECKS).
    kept: Vec<Deviation>,
    /// More deviations were found than kept.
    truncated: bool,
}

async fn scan(store: &Store, legacy: &LegacyDb) -> Result<Scan, MigrationError> {
    let mut report = Scan::default();
    let record = |report: &mut Scan, d: Deviation| {
        report.deviating += 1;
        if report.kept.len() < MAX_RECHECKS {
            report.kept.push(d);
        } else {
            report.truncated = true;
        }
    };
    let (mut after_legacy, mut after_identity) = (0i64, 0i64);
    let mut legacy_rows = legacy.users_after(legacy.pool(), 0, BATCH).await?;
    let mut identity_rows = store.members_after(0, BATCH).await?;
    let mut digests = digests_for(store, &identity_rows).await?;
    let (mut li, mut ii) = (0usize, 0usize);
    loop {
        if li == legacy_rows.len() && !legacy_rows.is_empty() {
            after_legacy = legacy_rows.last().map_or(after_legacy, |u| u.id);
            legacy_rows = legacy
                .users_after(legacy.pool(), after_legacy, BATCH)
                .await?;
            li = 0;
        }
        if ii == identity_rows.len() && !identity_rows.is_empty() {
            after_identity = identity_rows.last().map_or(after_identity, |m| m.id);
            identity_rows = store.members_after(after_identity, BATCH).await?;
            digests = digests_for(store, &identity_rows).await?;
            ii = 0;
        }
        // The lower next id of the two sides: on one side only, or on both and compared.
        let one_side = |id, fields| {
            Some(Deviation {
                id,
                fields: vec![fields],
            })
        };
        let deviation = match (legacy_rows.get(li), identity_rows.get(ii)) {
            (None, None) => break,
            (Some(u), Some(m)) if u.id == m.id => {
                li += 1;
                ii += 1;
                let fields = differing_fields(u, m, digests.get(&u.id).map(String::as_str));
                (!fields.is_empty()).then_some(Deviation { id: u.id, fields })
            }
            (Some(u), Some(m)) if u.id > m.id => {
                ii += 1;
                one_side(m.id, EXTRA)
            }
            (None, Some(m)) => {
                ii += 1;
                one_side(m.id, EXTRA)
            }
            (Some(u), _) => {
                li += 1;
                one_side(u.id, MISSING)
            }
        };
        report.compared += 1;
        if let Some(d) = deviation {
            record(&mut report, d);
        }
    }
    Ok(report)
}

/// The legacy digests recorded for a batch of identity members.
async fn digests_for(
    store: &Store,
    rows: &[identity_store::MemberRow],
) -> Result<HashMap<i64, String>, MigrationError> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(HashMap::new());
    };
    Ok(store
        .legacy_digests_between(first.id, last.id)
        .await?
        .into_iter()
        .collect())
}
