//! The sync lag benchmark: legacy members changed at a steady rate while the identity
//! service's sync runs as in `identity serve` (the same `Syncer::run` loop, interval and
//! look-back); each change is timed from the legacy's commit until the identity
//! database shows it. The baseline, in the same run: the same kind of change applied
//! straight to the identity database and watched the same way (what watching costs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use identity_migration::{Syncer, apply_legacy_user, backfill};
use identity_store::{Store, StoreConfig};
use legacy_db::LegacyDb;
use member_contract::Timestamp;

/// Writes waiting to be seen: member id → (expected nickname, commit time).
type Pending = Arc<Mutex<HashMap<i64, (String, Instant)>>>;

pub struct Options {
    pub members: i64,
    pub seconds: u64,
    /// Changes per second.
    pub rate: u32,
    pub interval: Duration,
    pub lookback: Duration,
}

pub async fn run(legacy_url: &str, identity_url: &str, o: &Options) -> anyhow::Result<()> {
    let legacy = LegacyDb::connect(legacy_url, 4).await?;
    legacy.ensure_schema().await?;
    crate::backfill::seed(&legacy, o.members).await?;
    let store = Store::connect(identity_url, &StoreConfig::default()).await?;
    backfill(&store, &legacy, &mut ()).await?;
    let syncer = Syncer::new(store.clone(), legacy.clone(), o.lookback);
    syncer.sync_once().await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let interval = o.interval;
    let sync = tokio::spawn(async move {
        let mut stop = stop_rx;
        syncer
            .run(
                interval,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
                || {},
            )
            .await;
    });
    println!(
        "{} members, {} changes/s for {} s, sync interval {} ms, look-back {} s",
        o.members,
        o.rate,
        o.seconds,
        o.interval.as_millis(),
        o.lookback.as_secs()
    );
    // Each phase changes its own members (ids from `first`), each once.
    let synced = phase(&store, &legacy, o, 1, true).await?;
    let direct = phase(&store, &legacy, o, 1 + o.members / 2, false).await?;
    let _ = stop_tx.send(true);
    let _ = sync.await;
    let row = |name: &str, lags: &[Duration], missed: usize| {
        let pct = |p: f64| {
            lags.get(((lags.len().max(1) - 1) as f64 * p) as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{name:<28} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>7}",
            lags.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            missed
        );
        pct(0.99)
    };
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>7}",
        "path", "changes", "p50 ms", "p99 ms", "max ms", "missed"
    );
    let p99 = row("legacy -> sync -> identity", &synced.0, synced.1);
    let floor = row("direct (baseline)", &direct.0, direct.1);
    println!(
        "sync p99 {:.0} ms = {:.2} x the goal of 2,000 ms; {:.1} ms of it is watching",
        p99,
        p99 / 2000.0,
        floor
    );
    Ok(())
}

/// One phase: changes at the rate, watched until seen (or 10 s after the last).
async fn phase(
    store: &Store,
    legacy: &LegacyDb,
    o: &Options,
    first: i64,
    through_legacy: bool,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let pending: Pending = Arc::default();
    let lags: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch(
        store.clone(),
        Arc::clone(&pending),
        Arc::clone(&lags),
        done_rx,
    ));
    let total = u64::from(o.rate) * o.seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(o.rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0..total as i64 {
        tick.tick().await;
        let id = first + n % (o.members / 2).max(1);
        let Some(mut user) = legacy.user_by_id(legacy.pool(), id).await? else {
            continue;
        };
        user.nickname = format!("lag{n}");
        user.updated_at = Timestamp::now_from_system();
        if through_legacy {
            legacy.update_profile(legacy.pool(), &user).await?;
        } else {
            let mut tx = store.begin().await?;
            apply_legacy_user(&mut tx, &user).await?;
            tx.commit().await?;
        }
        if let Ok(mut p) = pending.lock() {
            p.insert(id, (user.nickname.clone(), Instant::now()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && pending.lock().map_or(0, |p| p.len()) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = done_tx.send(true);
    let _ = watcher.await;
    let missed = pending.lock().map_or(0, |p| p.len());
    let mut lags = lags.lock().map(|l| l.clone()).unwrap_or_default();
    lags.sort_unstable();
    Ok((lags, missed))
}

/// Reads the pending members from the identity database every 2 ms (one query for all)
/// and records when each change shows.
async fn watch(
    store: Store,
    pending: Pending,
    lags: Arc<Mutex<Vec<Duration>>>,
    done: tokio::sync::watch::Receiver<bool>,
) {
    while !*done.borrow() {
        let ids: Vec<i64> = pending
            .lock()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default();
        if !ids.is_empty()
            && let Ok(rows) = store.active_members_by_ids(&ids).await
        {
            let now = Instant::now();
            if let (Ok(mut p), Ok(mut l)) = (pending.lock(), lags.lock()) {
                for m in rows {
                    if p.get(&m.id).is_some_and(|(nick, _)| *nick == m.nickname)
                        && let Some((_, at)) = p.remove(&m.id)
                    {
                        l.push(now - at);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
