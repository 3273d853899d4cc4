//! The faults a cluster normally has, injected one at a time, and how long the cluster
//! took to be whole again after each.

use std::time::{Duration, Instant};

use anyhow::Context;
use test_support::tcp_gate::Gate;

use crate::cluster::{Cluster, START_LIMIT};
use crate::processes::until_answers;

/// How long a crashed database stays down, and a partition lasts.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// The new side made slow (each read between the proxies and it held this long) ...
const SLOW_BY: Duration = Duration::from_secs(1);
/// ... for this long, then failing (every connection closed) until the guards abort.
const SLOW_FOR: Duration = Duration::from_secs(8);
/// The longest the guards may take to abort (their window is 60 s).
const ABORT_LIMIT: Duration = Duration::from_secs(120);
/// The busiest rule: a guard must abort it when the new side degrades, and every
/// proxy's guard some rule.
const BUSIEST_RULE: &str = "users-me-read";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL of an identity replica (in the middle of writes: the clients write all
    /// the time).
    KillIdentity,
    /// SIGKILL of the replica that leads the sync: another takes over.
    KillSyncLeader,
    /// SIGKILL of a proxy replica: clients reconnect through the balancer.
    KillProxy,
    /// SIGTERM of an identity replica, as a deploy stops it.
    StopIdentity,
    /// SIGTERM of a proxy replica.
    StopProxy,
    /// The legacy's PostgreSQL crashes and starts again (recovering from its WAL).
    RestartLegacyDb,
    /// The identity service's PostgreSQL crashes and starts again.
    RestartIdentityDb,
    /// The network between the identity replicas and the legacy's database passes
    /// nothing for a while (held, not dropped), then everything again.
    PartitionLegacyDb,
    /// The new side slow, then failing, until the guards abort on their own; then
    /// mended and the routes resumed.
    DegradeNewSide,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::KillIdentity,
        Fault::KillSyncLeader,
        Fault::KillProxy,
        Fault::StopIdentity,
        Fault::StopProxy,
        Fault::RestartLegacyDb,
        Fault::RestartIdentityDb,
        Fault::PartitionLegacyDb,
        Fault::DegradeNewSide,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillIdentity => "SIGKILL identity replica",
            Fault::KillSyncLeader => "SIGKILL sync leader",
            Fault::KillProxy => "SIGKILL proxy replica",
            Fault::StopIdentity => "SIGTERM identity replica",
            Fault::StopProxy => "SIGTERM proxy replica",
            Fault::RestartLegacyDb => "legacy PostgreSQL crash",
            Fault::RestartIdentityDb => "identity PostgreSQL crash",
            Fault::PartitionLegacyDb => "partition identity | legacy DB",
            Fault::DegradeNewSide => "new side slow, then failing",
        }
    }
}

/// How the cluster came through a fault.
pub struct Outcome {
    /// From the fault to the cluster whole again.
    pub recovery: Duration,
    /// From the new side's degradation to the guards' aborts (the busiest rule on one
    /// proxy, some rule on every proxy).
    pub guard_abort: Option<Duration>,
}

/// Injects `fault` (`pick` chooses among replicas) and waits until the cluster is whole
/// again.
pub async fn inject(c: &mut Cluster, fault: Fault, pick: usize) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut guard_abort = None;
    match fault {
        Fault::KillIdentity | Fault::KillSyncLeader | Fault::StopIdentity => {
            let i = match fault {
                Fault::KillSyncLeader => c.sync_leader().await.context("no sync leader")?,
                _ => pick % c.identities.len(),
            };
            c.identities[i].bounce(fault == Fault::StopIdentity).await?;
            if fault == Fault::KillSyncLeader {
                let deadline = Instant::now() + START_LIMIT;
                while c.sync_leader().await.is_none() {
                    anyhow::ensure!(Instant::now() < deadline, "no replica took the sync over");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Fault::KillProxy | Fault::StopProxy => {
            let i = pick % c.proxies.len();
            c.proxies[i].bounce(fault == Fault::StopProxy).await?;
        }
        Fault::RestartLegacyDb | Fault::RestartIdentityDb => {
            let pg = if fault == Fault::RestartLegacyDb {
                &c.legacy_pg
            } else {
                &c.identity_pg
            };
            tokio::task::block_in_place(|| pg.crash()).map_err(|e| anyhow::anyhow!(e))?;
            tokio::time::sleep(DOWN_FOR).await;
            tokio::task::block_in_place(|| pg.start_again()).map_err(|e| anyhow::anyhow!(e))?;
            whole_again(c).await?;
        }
        Fault::PartitionLegacyDb => {
            c.legacy_db_gate.set(Gate::Closed);
            tokio::time::sleep(DOWN_FOR).await;
            c.legacy_db_gate.set(Gate::Open);
            whole_again(c).await?;
        }
        Fault::DegradeNewSide => {
            // Every route running when the degradation starts: each abort is its own.
            c.resume_aborted().await?;
            c.new_side_gate.set(Gate::Delayed(SLOW_BY));
            let slow_until = started + SLOW_FOR;
            loop {
                // Each proxy judges the traffic it carries (clients' connections stay
                // where they were: one may carry only newcomers' sign-ups).
                let aborted = c.aborted_by_guard().await;
                if aborted.iter().any(|r| r.iter().any(|n| n == BUSIEST_RULE))
                    && aborted.iter().all(|r| !r.is_empty())
                {
                    guard_abort = Some(started.elapsed());
                    break;
                }
                if started.elapsed() > ABORT_LIMIT {
                    c.new_side_gate.set(Gate::Open);
                    anyhow::bail!(
                        "the guards did not abort {BUSIEST_RULE} within {ABORT_LIMIT:?}: {aborted:?}"
                    );
                }
                if Instant::now() >= slow_until {
                    c.new_side_gate.set(Gate::Resetting);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            c.new_side_gate.set(Gate::Open);
        }
    }
    // As the SRE does once the cause is mended: every route a guard aborted resumed.
    c.resume_aborted().await?;
    Ok(Outcome {
        recovery: started.elapsed(),
        guard_abort,
    })
}

/// Every identity replica ready, and every Rails replica answering from its database.
async fn whole_again(c: &Cluster) -> anyhow::Result<()> {
    for r in &c.identities {
        r.wait_ready().await?;
    }
    for port in c.rails_ports() {
        until_answers(
            &format!("http://127.0.0.1:{port}/api/v1/users/1"),
            &[200, 404],
            START_LIMIT,
        )
        .await
        .context("the Rails app did not come back")?;
    }
    Ok(())
}
