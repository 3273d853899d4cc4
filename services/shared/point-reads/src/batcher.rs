//! Point reads that arrive together are read together: a [`Batcher`] sends a read
//! alone when the database is idle and, while reads are in flight, gathers those that
//! arrive meanwhile into one query for the next round trip (the keys as one parameter,
//! see `keys_table`). No timer, no waiting: at low load nothing changes; under load the
//! database answers many reads per round trip instead of one, and the per-query costs (a
//! system call each way, a round trip to release each pooled connection with sqlx 0.9)
//! are paid once per batch.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};

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

/// The channel a dispatcher takes its reads from.
type Requests<K, V, E> = mpsc::Sender<(K, Waiter<V, E>)>;

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
///
/// On a thread that serves on a runtime of its own (see [`serve_from_this_thread`]), the
/// reads are gathered by a dispatcher on that thread: a read, its batch and its answer
/// never cross threads (measured with GetMember on PostgreSQL: 80–93k/s with the batch
/// on the caller's thread, 53–57k/s with it on the process's shared runtime).
pub struct Batcher<K, V, E> {
    requests: Requests<K, V, E>,
    dispatch: Dispatch<K, V, E>,
    /// Which batcher this is, among a thread's own dispatchers.
    id: usize,
    /// Dropped with the batcher: its dispatchers, the shared one and those of serving
    /// threads, then end.
    alive: watch::Sender<()>,
}

/// What starts a dispatcher.
struct Dispatch<K, V, E> {
    lanes: usize,
    timeout: Duration,
    lost: fn(&E) -> bool,
    fetch: Fetch<K, V, E>,
}

impl<K, V, E> Clone for Dispatch<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            lanes: self.lanes,
            timeout: self.timeout,
            lost: self.lost,
            fetch: Arc::clone(&self.fetch),
        }
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This serving thread's dispatchers, by batcher: their request channels (they end
    /// with the thread, which serves as long as the batchers live).
    static DISPATCHERS: RefCell<HashMap<usize, Box<dyn Any>>> = RefCell::new(HashMap::new());
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
        let alive = watch::Sender::new(());
        let dispatch = Dispatch {
            lanes,
            timeout,
            lost,
            fetch,
        };
        Self {
            requests: dispatch.start(alive.subscribe()),
            dispatch,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            alive,
        }
    }

    /// The value of `key`, read in the next batch.
    pub async fn get(&self, key: K) -> Result<Option<V>, BatchError<E>> {
        let (tx, rx) = oneshot::channel();
        let sent = if crate::serving_thread() {
            self.send_here((key, tx))
        } else {
            self.requests.try_send((key, tx))
        };
        sent.map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BatchError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => BatchError::Stopped,
        })?;
        rx.await.unwrap_or(Err(BatchError::Stopped))
    }

    /// Sends a read to this thread's dispatcher, started first if there is none (or if
    /// the one there ended with an earlier runtime).
    #[allow(clippy::type_complexity)]
    fn send_here(
        &self,
        read: (K, Waiter<V, E>),
    ) -> Result<(), mpsc::error::TrySendError<(K, Waiter<V, E>)>> {
        DISPATCHERS.with(|dispatchers| {
            let mut dispatchers = dispatchers.borrow_mut();
            let here = dispatchers
                .get(&self.id)
                .and_then(|d| d.downcast_ref::<Requests<K, V, E>>())
                .filter(|d| !d.is_closed());
            match here {
                Some(requests) => requests.try_send(read),
                None => {
                    let requests = self.dispatch.start(self.alive.subscribe());
                    let sent = requests.try_send(read);
                    dispatchers.insert(self.id, Box::new(requests));
                    sent
                }
            }
        })
    }
}

impl<K, V, E> Dispatch<K, V, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
    E: Send + Sync + 'static,
{
    /// Starts a dispatcher on the current runtime, until its batcher is dropped (`alive`
    /// then changes) or its runtime ends.
    fn start(&self, mut alive: watch::Receiver<()>) -> Requests<K, V, E> {
        let (requests, mut incoming) = mpsc::channel::<(K, Waiter<V, E>)>(MAX_WAITING);
        let lanes = Arc::new(Semaphore::new(self.lanes.max(1)));
        let Dispatch {
            timeout,
            lost,
            fetch,
            ..
        } = self.clone();
        tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    first = incoming.recv() => first,
                    _ = alive.changed() => None,
                };
                let Some(first) = first else { return };
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
        requests
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

    /// On a thread that batches its own reads, the batch is fetched on that thread; a
    /// runtime there that ended took its dispatcher along, and the next runtime on the
    /// thread gets one of its own (no read is refused as `Stopped`). Elsewhere the reads
    /// go to the dispatcher the batcher started with.
    #[test]
    fn a_thread_that_batches_its_own_reads_fetches_them_on_itself() {
        let shared = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fetched_on = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&fetched_on);
        let fetch: Fetch<i64, i64, ()> = Arc::new(move |keys: Vec<i64>| {
            seen.lock().unwrap().push(std::thread::current().id());
            Box::pin(async move { Ok(keys.into_iter().map(|k| (k, k + 1)).collect()) })
        });
        let batcher = Arc::new(
            shared.block_on(async { Batcher::start(1, Duration::from_secs(5), |_| false, fetch) }),
        );
        let serving = {
            let batcher = Arc::clone(&batcher);
            std::thread::spawn(move || {
                crate::serve_from_this_thread();
                for round in 0..2 {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let reads: Vec<_> = (0..20)
                            .map(|k| {
                                let b = Arc::clone(&batcher);
                                tokio::spawn(async move { b.get(k + round).await.unwrap() })
                            })
                            .collect();
                        for (k, read) in reads.into_iter().enumerate() {
                            assert_eq!(read.await.unwrap(), Some(k as i64 + round + 1));
                        }
                    });
                }
                std::thread::current().id()
            })
        };
        let serving = serving.join().unwrap();
        let on_serving = fetched_on
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t == serving)
            .count();
        assert!(on_serving >= 2, "each round fetched on the serving thread");
        assert!(on_serving < 40, "and batched there");
        // From a thread that did not ask, the reads go to the shared dispatcher.
        fetched_on.lock().unwrap().clear();
        let plain = std::thread::spawn({
            let batcher = Arc::clone(&batcher);
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(batcher.get(7)).unwrap();
                std::thread::current().id()
            }
        })
        .join()
        .unwrap();
        assert!(!fetched_on.lock().unwrap().contains(&plain));
        assert_eq!(fetched_on.lock().unwrap().len(), 1);
    }
}
