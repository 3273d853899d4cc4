//! Backfill, sync, verify and cutover between a real legacy database (the ActiveRecord
//! schema, made by `legacy-db`) and the identity database, on SQLite and PostgreSQL.

use std::time::Duration;

use identity_migration::{MigrationError, Syncer, VerifyOptions, backfill, cutover, verify_with};
use identity_store::{Store, StoreConfig};
use legacy_db::{LegacyDb, LegacyUser, NewLegacyUser};
use member_contract::Timestamp;

struct Dbs {
    store: Store,
    legacy: LegacyDb,
    _dir: tempfile::TempDir,
}

async fn dbs(postgres: bool) -> Dbs {
    let dir = tempfile::tempdir().unwrap();
    let (id_url, legacy_url) = if postgres {
        (
            test_support::fresh_postgres_database(),
            test_support::fresh_postgres_database(),
        )
    } else {
        (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("identity.sqlite3").display()
            ),
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("legacy.sqlite3").display()
            ),
        )
    };
    let store = Store::connect(&id_url, &StoreConfig::default())
        .await
        .unwrap();
    let legacy = LegacyDb::connect(&legacy_url, 4).await.unwrap();
    legacy.ensure_schema().await.unwrap();
    Dbs {
        store,
        legacy,
        _dir: dir,
    }
}

/// Verify without long pauses: what differs is compared again once, soon.
fn quick(max_examples: usize) -> VerifyOptions {
    VerifyOptions {
        max_examples,
        settle: Duration::from_millis(50),
        rounds: 1,
    }
}

async fn verify(
    store: &Store,
    legacy: &LegacyDb,
    max_examples: usize,
) -> identity_migration::VerifyReport {
    verify_with(store, legacy, &quick(max_examples))
        .await
        .unwrap()
}

const DIGEST: &str = "$2a$04$abcdefghijklmnopqrstuu5Ue2Q8yZ3yqVK3dQy9oQ2m1c7sB1n3bS";

async fn seed(d: &Dbs, n: i64) {
    let mut tx = d.legacy.begin().await.unwrap();
    let now = Timestamp::now_from_system();
    for i in 1..=n {
        let u = NewLegacyUser {
            id: None,
            email: format!("m{i}@example.com"),
            password_digest: DIGEST.into(),
            nickname: format!("member{i}"),
            phone_number: (i % 3 == 0).then(|| format!("+8210{:08}", i)),
            profile_image_url: None,
            now,
        };
        d.legacy.insert_user(&mut *tx, &u).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn user(d: &Dbs, id: i64) -> LegacyUser {
    d.legacy
        .user_by_id(d.legacy.pool(), id)
        .await
        .unwrap()
        .unwrap()
}

async fn backfill_is_idempotent_resumable_and_verified(postgres: bool) {
    let d = dbs(postgres).await;
    seed(&d, 12_345).await;
    // A withdrawn member comes across withdrawn.
    d.legacy
        .withdraw_user(d.legacy.pool(), 7, DIGEST, Timestamp::now_from_system())
        .await
        .unwrap();

    // Killed after its first batch: the second run resumes, no gap, no duplicate.
    let (store, legacy) = (d.store.clone(), d.legacy.clone());
    struct Crash;
    impl identity_migration::Progress for Crash {
        fn update(&mut self, copied: u64, _: u64, _: Duration) {
            if copied >= 5000 {
                panic!("killed");
            }
        }
    }
    let killed =
        tokio::spawn(async move { backfill(&store, &legacy, &mut Crash).await.map(|_| ()) }).await;
    assert!(killed.is_err(), "the first run was killed");
    let report = backfill(&d.store, &d.legacy, &mut ()).await.unwrap();
    assert_eq!(report.resumed_after, 5000);
    assert_eq!(report.copied, 12_345 - 5000);
    let v = verify(&d.store, &d.legacy, 5).await;
    assert_eq!(
        (v.compared, v.deviating_members),
        (12_345, 0),
        "{:?}",
        v.examples
    );
    assert!(
        d.store
            .member_by_id(7)
            .await
            .unwrap()
            .unwrap()
            .is_withdrawn()
    );
    // Run again: nothing changes.
    backfill(&d.store, &d.legacy, &mut ()).await.unwrap();
    assert!(verify(&d.store, &d.legacy, 5).await.is_clean());
}

async fn sync_applies_changes_even_when_commits_are_out_of_order(postgres: bool) {
    let d = dbs(postgres).await;
    seed(&d, 50).await;
    backfill(&d.store, &d.legacy, &mut ()).await.unwrap();
    let syncer = Syncer::new(d.store.clone(), d.legacy.clone(), Duration::from_secs(30));
    assert_eq!(syncer.sync_once().await.unwrap().applied, 0);

    // A profile change and a sign-up on the legacy.
    let mut u = user(&d, 3).await;
    u.nickname = "renamed".into();
    u.updated_at = Timestamp::now_from_system();
    d.legacy.update_profile(d.legacy.pool(), &u).await.unwrap();
    seed_one(&d, "late@example.com").await;
    let r = syncer.sync_once().await.unwrap();
    assert_eq!(r.applied, 2);
    assert_eq!(
        d.store.member_by_id(3).await.unwrap().unwrap().nickname,
        "renamed"
    );

    // Out of order: a transaction that stamped its row earlier commits after a later
    // one was already synced.
    let early = Timestamp::now_from_system();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut b = user(&d, 5).await;
    b.nickname = "second".into();
    b.updated_at = Timestamp::now_from_system();
    if postgres {
        // Really overlapping: the first transaction is open while the second commits.
        let mut t1 = d.legacy.begin().await.unwrap();
        let mut a = user(&d, 4).await;
        a.nickname = "first".into();
        a.updated_at = early;
        d.legacy.update_profile(&mut *t1, &a).await.unwrap();
        d.legacy.update_profile(d.legacy.pool(), &b).await.unwrap();
        assert_eq!(syncer.sync_once().await.unwrap().applied, 1);
        t1.commit().await.unwrap();
    } else {
        d.legacy.update_profile(d.legacy.pool(), &b).await.unwrap();
        assert_eq!(syncer.sync_once().await.unwrap().applied, 1);
        let mut a = user(&d, 4).await;
        a.nickname = "first".into();
        a.updated_at = early;
        d.legacy.update_profile(d.legacy.pool(), &a).await.unwrap();
    }
    assert_eq!(
        syncer.sync_once().await.unwrap().applied,
        1,
        "the late commit is caught by the look-back"
    );
    assert_eq!(
        d.store.member_by_id(4).await.unwrap().unwrap().nickname,
        "first"
    );

    // A withdrawal on the legacy, and a password change.
    d.legacy
        .withdraw_user(
            d.legacy.pool(),
            6,
            "$2a$04$zzzzzzzzzzzzzzzzzzzzzu5Ue2Q8yZ3yqVK3dQy9oQ2m1c7sB1n3bS",
            Timestamp::now_from_system(),
        )
        .await
        .unwrap();
    d.legacy
        .update_digest(
            d.legacy.pool(),
            8,
            "$2a$04$yyyyyyyyyyyyyyyyyyyyyu5Ue2Q8yZ3yqVK3dQy9oQ2m1c7sB1n3bS",
            Timestamp::now_from_system(),
        )
        .await
        .unwrap();
    assert_eq!(syncer.sync_once().await.unwrap().applied, 2);
    assert!(
        d.store
            .member_by_id(6)
            .await
            .unwrap()
            .unwrap()
            .is_withdrawn()
    );
    assert!(
        d.store
            .member_by_id(8)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .starts_with("$2a$04$yyyy")
    );
    assert!(verify(&d.store, &d.legacy, 5).await.is_clean());
}

async fn seed_one(d: &Dbs, email: &str) {
    let u = NewLegacyUser {
        id: None,
        email: email.into(),
        password_digest: DIGEST.into(),
        nickname: "late".into(),
        phone_number: None,
        profile_image_url: None,
        now: Timestamp::now_from_system(),
    };
    d.legacy.insert_user(d.legacy.pool(), &u).await.unwrap();
}

async fn cutover_needs_a_clean_verify(postgres: bool) {
    let d = dbs(postgres).await;
    seed(&d, 20).await;
    backfill(&d.store, &d.legacy, &mut ()).await.unwrap();
    // A change the sync has not applied yet: verify sees it, cutover refuses.
    let mut u = user(&d, 2).await;
    u.nickname = "drifted".into();
    u.updated_at = Timestamp::now_from_system();
    d.legacy.update_profile(d.legacy.pool(), &u).await.unwrap();
    let v = verify(&d.store, &d.legacy, 5).await;
    assert_eq!(v.deviating_members, 1);
    assert_eq!(v.examples[0].id, 2);
    assert_eq!(v.examples[0].fields, vec!["nickname", "updated_at"]);
    assert!(matches!(
        cutover(&d.store, &d.legacy, &quick(5)).await,
        Err(MigrationError::Refused(_))
    ));
    Syncer::new(d.store.clone(), d.legacy.clone(), Duration::from_secs(30))
        .sync_once()
        .await
        .unwrap();
    cutover(&d.store, &d.legacy, &quick(5)).await.unwrap();
    assert!(identity_migration::is_cut_over(&d.store).await.unwrap());
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(true).await
            }
        }
    };
}

both!(backfill_is_idempotent_resumable_and_verified);
both!(sync_applies_changes_even_when_commits_are_out_of_order);
both!(cutover_needs_a_clean_verify);
both!(verify_compares_again_what_changed_while_it_compared);

/// A change the sync applies while verify runs: seen in the scan, equal when compared
/// again, reported as settled and not as a deviation.
async fn verify_compares_again_what_changed_while_it_compared(postgres: bool) {
    let d = dbs(postgres).await;
    seed(&d, 20).await;
    backfill(&d.store, &d.legacy, &mut ()).await.unwrap();
    let mut u = user(&d, 7).await;
    u.nickname = "moving".into();
    u.updated_at = Timestamp::now_from_system();
    d.legacy.update_profile(d.legacy.pool(), &u).await.unwrap();
    let syncer = Syncer::new(d.store.clone(), d.legacy.clone(), Duration::from_secs(30));
    let options = VerifyOptions {
        max_examples: 5,
        settle: Duration::from_millis(600),
        rounds: 2,
    };
    let (report, _) = tokio::join!(verify_with(&d.store, &d.legacy, &options), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        syncer.sync_once().await.unwrap()
    });
    let report = report.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.compared, report.settled), (20, 1));
    // Without the sync, the same change stays a deviation after every new comparison.
    let mut u = user(&d, 8).await;
    u.nickname = "stuck".into();
    u.updated_at = Timestamp::now_from_system();
    d.legacy.update_profile(d.legacy.pool(), &u).await.unwrap();
    let report = verify_with(&d.store, &d.legacy, &options).await.unwrap();
    assert_eq!((report.deviating_members, report.settled), (1, 0));
    assert_eq!(report.examples[0].id, 8);
}

/// Replicas sharing a PostgreSQL database: one syncs at a time; when it stops, another
/// takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_syncs_at_a_time() {
    let d = dbs(true).await;
    seed(&d, 5).await;
    backfill(&d.store, &d.legacy, &mut ()).await.unwrap();
    // Another replica leads.
    let other = d
        .store
        .try_lead(identity_migration::SYNC_LEAD_KEY)
        .await
        .unwrap()
        .expect("free at first");
    assert!(
        d.store
            .try_lead(identity_migration::SYNC_LEAD_KEY)
            .await
            .unwrap()
            .is_none(),
        "held by the other replica"
    );
    let syncer = Syncer::new(d.store.clone(), d.legacy.clone(), Duration::from_secs(30));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move {
        syncer
            .run(
                Duration::from_millis(50),
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
                || {},
            )
            .await;
    });
    let mut u = user(&d, 3).await;
    u.nickname = "led".into();
    u.updated_at = Timestamp::now_from_system();
    d.legacy.update_profile(d.legacy.pool(), &u).await.unwrap();
    let nickname = || async { d.store.member_by_id(3).await.unwrap().unwrap().nickname };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nickname().await, "member3", "this replica does not sync");
    other.release().await;
    let mut seen = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if nickname().await == "led" {
            seen = true;
            break;
        }
    }
    assert!(seen, "this replica took over");
    let _ = stop_tx.send(true);
    running.await.unwrap();
}
