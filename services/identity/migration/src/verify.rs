//! Verification: every member compared field by field between the two databases, in
//! id order (a merge of two ordered scans). Deviations are reported by id and field
//! name, never by value (the report is personal-data free).

use std::collections::HashMap;

use identity_store::Store;
use legacy_db::LegacyDb;

use crate::{MigrationError, legacy_to_member};

const BATCH: i64 = 5000;

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
    /// The first deviations, as examples.
    pub examples: Vec<Deviation>,
}

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

pub async fn verify(
    store: &Store,
    legacy: &LegacyDb,
    max_examples: usize,
) -> Result<VerifyReport, MigrationError> {
    let mut report = VerifyReport::default();
    let record = |report: &mut VerifyReport, d: Deviation| {
        report.deviating_members += 1;
        if report.examples.len() < max_examples {
            report.examples.push(d);
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
        let (l, i) = (legacy_rows.get(li), identity_rows.get(ii));
        match (l, i) {
            (None, None) => break,
            (Some(u), None) => {
                report.compared += 1;
                record(
                    &mut report,
                    Deviation {
                        id: u.id,
                        fields: vec!["missing in identity"],
                    },
                );
                li += 1;
            }
            (None, Some(m)) => {
                report.compared += 1;
                record(
                    &mut report,
                    Deviation {
                        id: m.id,
                        fields: vec!["extra in identity"],
                    },
                );
                ii += 1;
            }
            (Some(u), Some(m)) if u.id < m.id => {
                report.compared += 1;
                record(
                    &mut report,
                    Deviation {
                        id: u.id,
                        fields: vec!["missing in identity"],
                    },
                );
                li += 1;
            }
            (Some(u), Some(m)) if u.id > m.id => {
                report.compared += 1;
                record(
                    &mut report,
                    Deviation {
                        id: m.id,
                        fields: vec!["extra in identity"],
                    },
                );
                ii += 1;
            }
            (Some(u), Some(m)) => {
                report.compared += 1;
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
                // The identity service may hold its own re-hash of the same password; then
                // its record of the legacy's digest must be the legacy's digest.
                let known = digests.get(&u.id).map(String::as_str);
                if known != Some(u.password_digest.as_str()) && m.password_hash != u.password_digest
                {
                    fields.push("password");
                }
                if !fields.is_empty() {
                    record(&mut report, Deviation { id: u.id, fields });
                }
                li += 1;
                ii += 1;
            }
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
