//! The change stream's delivery lag: members renamed at a steady rate through one
//! replica (`UpdateProfile`, one change each), followed with `WatchMemberChanges` on
//! each replica given; each change timed from its commit (the `change_time` the log
//! stamped) to its arrival. The baseline, in the same run and at the same rate:
//! PostgreSQL's own `NOTIFY` from a committed transaction to a `LISTEN`ing connection,
//! the floor under any delivery across replicas.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use identity_proto::identity::v1 as pb;
use identity_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tokio::sync::watch;

pub struct Options {
    /// Changes per second.
    pub rate: u32,
    pub seconds: u64,
    /// Writers at once (each paced to its share of the rate).
    pub writers: usize,
}

/// Microseconds since the epoch, now.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Lags in microseconds.
#[derive(Default)]
struct Lags(Mutex<Vec<i64>>);

impl Lags {
    fn push(&self, micros: i64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(micros.max(0));
        }
    }

    fn print(&self, name: &str, expected: usize) {
        let Ok(mut v) = self.0.lock() else { return };
        v.sort_unstable();
        let pct = |p: f64| {
            v.get(((v.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        println!(
            "{name}: {} of {expected} delivered, lag p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            v.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
}

pub async fn run(
    write_addr: &str,
    watch_addrs: &[String],
    tokens: Vec<String>,
    database_url: &str,
    o: &Options,
) -> anyhow::Result<()> {
    anyhow::ensure!(!tokens.is_empty(), "no tokens: the writers act as members");
    println!(
        "{} changes/s for {} s through {write_addr}, {} writers, followed on {}",
        o.rate,
        o.seconds,
        o.writers,
        watch_addrs.join(", ")
    );
    let (baseline, sent) = notify_baseline(database_url, o).await?;
    baseline.print("PostgreSQL NOTIFY -> LISTEN (baseline)", sent);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut followers = Vec::new();
    for addr in watch_addrs {
        let lags = Arc::new(Lags::default());
        let mut c = IdentityServiceClient::connect(addr.clone()).await?;
        let mut stream = c
            .watch_member_changes(pb::WatchMemberChangesRequest { after_seq: None })
            .await?
            .into_inner();
        let (task_lags, mut stop) = (Arc::clone(&lags), stop_rx.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                    msg = stream.message() => match msg? {
                        Some(change) => {
                            let at = change.change_time.unwrap_or_default();
                            let committed = at.seconds * 1_000_000 + i64::from(at.nanos) / 1000;
                            task_lags.push(now_micros() - committed);
                        }
                        None => anyhow::bail!("the stream ended"),
                    }
                }
            }
        });
        followers.push((addr.clone(), lags, task));
    }

    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tokens = Arc::new(tokens);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(o.seconds);
    let period = Duration::from_secs_f64(o.writers as f64 / f64::from(o.rate));
    let count = o.writers;
    let mut writers = Vec::new();
    for w in 0..count {
        let mut c = IdentityServiceClient::connect(write_addr.to_owned()).await?;
        let (tokens, written, failed) = (
            Arc::clone(&tokens),
            Arc::clone(&written),
            Arc::clone(&failed),
        );
        writers.push(tokio::spawn(async move {
            // The writers' ticks spread over one period.
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + period.mul_f64(w as f64 / count as f64),
                period,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0usize;
            while Instant::now() < deadline {
                tick.tick().await;
                let token = &tokens[(w + n * 7919) % tokens.len()];
                let mut req = tonic::Request::new(pb::UpdateProfileRequest {
                    nickname: Some(format!("lag {w} {n}")),
                    ..Default::default()
                });
                if let Ok(v) = format!("Bearer {token}").parse() {
                    req.metadata_mut().insert("authorization", v);
                }
                match c.update_profile(req).await {
                    Ok(_) => written.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                };
                n += 1;
            }
        }));
    }
    for w in writers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Whatever is still on its way arrives within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let written = written.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "written: {written} changes ({:.0}/s), {} failed",
        written as f64 / elapsed,
        failed.load(std::sync::atomic::Ordering::Relaxed)
    );
    for (addr, lags, task) in followers {
        task.await??;
        lags.print(&format!("WatchMemberChanges on {addr}"), written);
    }
    Ok(())
}

/// The baseline: `rate` transactions per second, each `NOTIFY`ing its commit time,
/// heard by one listening connection; the lags and how many were sent.
async fn notify_baseline(url: &str, o: &Options) -> anyhow::Result<(Lags, usize)> {
    let lags = Arc::new(Lags::default());
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen("member_load_baseline").await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(o.writers.max(1) as u32)
        .connect(url)
        .await?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let heard = {
        let lags = Arc::clone(&lags);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => return,
                    n = listener.recv() => match n {
                        Ok(n) => {
                            if let Ok(sent) = n.payload().parse::<i64>() {
                                lags.push(now_micros() - sent);
                            }
                        }
                        Err(_) => return,
                    }
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let period = Duration::from_secs_f64(o.writers as f64 / f64::from(o.rate));
    let mut writers = Vec::new();
    for _ in 0..o.writers {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut sent = 0usize;
            while Instant::now() < deadline {
                tick.tick().await;
                // The payload is taken at the statement, committed with it.
                if sqlx::query("SELECT pg_notify('member_load_baseline', $1)")
                    .bind(now_micros().to_string())
                    .execute(&pool)
                    .await
                    .is_ok()
                {
                    sent += 1;
                }
            }
            sent
        }));
    }
    let mut sent = 0;
    for w in writers {
        sent += w.await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    heard.await?;
    let lags =
        Arc::try_unwrap(lags).map_err(|_| anyhow::anyhow!("the listener is still running"))?;
    Ok((lags, sent))
}
