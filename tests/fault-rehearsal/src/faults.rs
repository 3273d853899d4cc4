//! The faults a cluster normally has, injected one at a time, and how long the cluster
//! took to be whole again after each.

use std::time::{Duration, Instant};

use anyhow::Context;
use test_support::tcp_gate::Gate;

use crate::cluster::{Cluster, START_LIMIT};
use crate::processes::until_answers;

/// As long as Kubernetes takes to start a killed container again, at best.
const RESTART_AFTER: Duration = Duration::from_secs(1);
/// The pods' termination grace period.
const GRACE: Duration = Duration::from_secs(30);
/// How long a crashed database stays down, and a partition lasts.
const DOWN_FOR: Duration = Duration::from_secs(2);

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
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::KillIdentity,
        Fault::KillSyncLeader,
        Fault::KillProxy,
        Fault::StopIdentity,
        Fault::StopProxy,
        Fault::RestartLegacyDb,
        Fault::RestartIdentityDb,
        Fault::PartitionLegacyDb,
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
        }
    }
}

/// Injects `fault` (`pick` chooses among replicas) and waits until the cluster is whole
/// again: the time from the fault to then.
pub async fn inject(c: &mut Cluster, fault: Fault, pick: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    match fault {
        Fault::KillIdentity | Fault::KillSyncLeader | Fault::StopIdentity => {
            let i = match fault {
                Fault::KillSyncLeader => c.sync_leader().await.context("no sync leader")?,
                _ => pick % c.identities.len(),
            };
            let r = &mut c.identities[i];
            if fault == Fault::StopIdentity {
                r.proc.terminate(GRACE).await;
            } else {
                r.proc.kill();
            }
            tokio::time::sleep(RESTART_AFTER).await;
            r.proc.start()?;
            r.wait_ready().await?;
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
            let r = &mut c.proxies[i];
            if fault == Fault::StopProxy {
                r.proc.terminate(GRACE).await;
            } else {
                r.proc.kill();
            }
            tokio::time::sleep(RESTART_AFTER).await;
            r.proc.start()?;
            r.wait_ready().await?;
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
    }
    Ok(started.elapsed())
}

/// Every identity replica ready, and the Rails app answering from its database.
async fn whole_again(c: &Cluster) -> anyhow::Result<()> {
    for r in &c.identities {
        r.wait_ready().await?;
    }
    until_answers(
        &format!("http://127.0.0.1:{}/api/v1/users/1", c.rails_port),
        &[200, 404],
        START_LIMIT,
    )
    .await
    .context("the Rails app did not come back")?;
    Ok(())
}
