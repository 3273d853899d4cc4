//! Point reads that arrive together are read together: a [`Batcher`] sends a read
//! alone when the database is idle and, while reads are in flight, gathers those that
//! arrive meanwhile into one query for the next round trip (the keys as one parameter,
//! see `keys_table`). No timer, no waiting: at low load nothing changes; under load the
//! database answers many reads per round trip instead of one, and the per-query costs (a
//! system call each way, a round trip to release each pooled connection with sqlx 0.9)
//! are paid once per batch.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Largest batch; more keys wait for the next round trip.
const MAX_BATCH: usize = 256;

/// Reads waiting for a lane at most; more are refused at once (a database that hangs
/// must not make the waiting reads pile up without end).
const MAX_WAITING: usize = 65_536;

/// The fetch of a batch: every key's value, for the keys that have one.
pub type Fetch<K, V, E> = Arc<
    dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Result<HashMap<K, V>, E>> + Send>> + Send + Sync,
>;

type Waiter<V, E> = oneshot::Sender<Result<Option<V>, BatchError<E>>>;

/// Why a batched read has no answer.
#[derive(Debug)]
pub enum BatchError<E> {
    /// The batch's fetch failed: every read of the batch shares its error.
    Failed(Arc<E>),
    /// The batch's fetch did not finish in time (a database that hangs): its lane is
    /// given back, the reads fail.
    TimedOut,
    /// Too many reads already wait for a lane.
    Overloaded,
    /// The dispatcher is gone (the runtime is shutting down).
    Stopped,
}

impl<E> Clone for BatchError<E> {
    fn clone(&self) -> Self {
        match self {
            BatchError::Failed(e) => BatchError::Failed(Arc::clone(e)),
            BatchError::TimedOut => BatchError::TimedOut,
            BatchError::Overloaded => BatchError::Overloaded,
            BatchError::Stopped => BatchError::Stopped,
        }
    }
}

/// Gathers concurrent reads of one kind into batches, at most `lanes` in flight.
pub struct Batcher<K, V, E> {
    requests: mpsc::Sender<(K, Waiter<V, E>)>,
}

impl<K, V, E> Batcher<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
    E: Send + Sync + 'static,
{
    /// Starts the dispatcher on the current runtime; it ends when the batcher is dropped.
    /// A fetch that takes longer than `timeout` fails its reads and frees its lane. A
    /// fetch that fails by `lost` (its connection gone: see [`again_while_lost`]) is
    /// fetched again within that time.
    ///
    /// [`again_while_lost`]: crate::again_while_lost
    pub fn start(
        lanes: usize,
        timeout: Duration,
        lost: fn(&E) -> bool,
        fetch: Fetch<K, V, E>,
    ) -> Self {
        let (requests, mut incoming) = mpsc::channel::<(K, Waiter<V, E>)>(MAX_WAITING);
        let lanes = Arc::new(Semaphore::new(lanes.max(1)));
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                // While every lane is busy, reads queue up behind `first`.
                let Ok(lane) = Arc::clone(&lanes).acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                // Reads whose caller gave up (its own deadline) are not fetched.
                batch.retain(|(_, waiter)| !waiter.is_closed());
                if batch.is_empty() {
                    continue;
                }
                let fetch = Arc::clone(&fetch);
                tokio::spawn(async move {
                    let mut unique = std::collections::HashSet::with_capacity(batch.len());
                    let keys: Vec<K> = batch
                        .iter()
                        .filter(|(k, _)| unique.insert(k.clone()))
                        .map(|(k, _)| k.clone())
                        .collect();
                    let fetched =
                        crate::again_while_lost(timeout, lost, move || fetch(keys.clone()));
                    let failure = match tokio::time::timeout(timeout, fetched).await {
                        Ok(Ok(found)) => {
                            for (key, waiter) in batch {
                                let _ = waiter.send(Ok(found.get(&key).cloned()));
                            }
                            return;
                        }
                        Ok(Err(e)) => BatchError::Failed(Arc::new(e)),
                        Err(_) => BatchError::TimedOut,
                    };
                    drop(lane);
                    for (_, waiter) in batch {
                        let _ = waiter.send(Err(failure.clone()));
                    }
                });
            }
        });
        Self { requests }
    }

    /// The value of `key`, read in the next batch.
    pub async fn get(&self, key: K) -> Result<Option<V>, BatchError<E>> {
        let (tx, rx) = oneshot::channel();
        self.requests.try_send((key, tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BatchError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => BatchError::Stopped,
        })?;
        rx.await.unwrap_or(Err(BatchError::Stopped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_that_arrive_together_are_one_fetch() {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let fetch: Fetch<i64, i64, ()> = Arc::new(move |keys: Vec<i64>| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                seen.lock().unwrap().push(keys.len());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(keys
                    .into_iter()
                    .filter(|k| k % 2 == 0)
                    .map(|k| (k, k * 10))
                    .collect())
            })
        });
        let batcher = Arc::new(Batcher::start(1, Duration::from_secs(5), |_| false, fetch));
        let reads: Vec<_> = (0..50)
            .map(|k| {
                let b = Arc::clone(&batcher);
                tokio::spawn(async move { b.get(k).await.unwrap() })
            })
            .collect();
        for (k, read) in reads.into_iter().enumerate() {
            let k = k as i64;
            assert_eq!(read.await.unwrap(), (k % 2 == 0).then_some(k * 10));
        }
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.iter().sum::<usize>(), 50);
        assert!(calls.len() < 50, "never batched: {calls:?}");
    }

    #[tokio::test]
    async fn a_fetch_that_hangs_fails_its_reads_and_frees_its_lane() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let fetch: Fetch<i64, i64, ()> = Arc::new(move |keys: Vec<i64>| {
            let first = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            Box::pin(async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok(keys.into_iter().map(|k| (k, k)).collect())
            })
        });
        let batcher = Batcher::start(1, Duration::from_millis(50), |_| false, fetch);
        assert!(matches!(batcher.get(1).await, Err(BatchError::TimedOut)));
        // The one lane is free again.
        assert_eq!(batcher.get(2).await.unwrap(), Some(2));
    }
}
