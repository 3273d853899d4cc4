//! Password hashing: argon2id for everything this service hashes, verification of the
//! legacy's bcrypt digests (re-hashed to argon2id on the next successful log-in), a dummy
//! verification for unknown members so that timing reveals nothing, and a bound on how
//! many hashes run at once so that a log-in storm cannot starve the service.

mod algorithms;
mod config;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use algorithms::{DigestKind, digest_kind};
pub use config::PasswordConfig;

/// Why a password operation did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot stayed busy for the whole wait: answer 503 / RESOURCE_EXHAUSTED.
    #[error("password hashing is saturated")]
    Busy,
    /// The hashing library failed (bad parameters); never caused by user input.
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches; `rehash` asks the caller to store a fresh argon2id hash.
    Match {
        rehash: bool,
    },
    Mismatch,
}

/// Hashes and verifies passwords off the async runtime, a bounded number at a time.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: algorithms::Argon,
    permits: Semaphore,
    wait: Duration,
    dummy: String,
}

impl Hasher {
    /// Builds the hasher (and the dummy digest, with the same parameters as real ones).
    pub fn new(config: &PasswordConfig) -> Result<Self, PasswordError> {
        let argon = algorithms::Argon::new(config)?;
        let dummy = argon.hash("dummy password for unknown members")?;
        Ok(Self {
            inner: Arc::new(Inner {
                argon,
                permits: Semaphore::new(config.max_concurrent.max(1)),
                wait: config.queue_wait,
                dummy,
            }),
        })
    }

    /// Runs `work` on the blocking pool once a slot is free (waiting at most the
    /// queue's wait, or not at all when `wait` is false), or fails with `Busy`.
    async fn run<T: Send + 'static>(
        &self,
        wait: bool,
        work: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = if wait {
            tokio::time::timeout(self.inner.wait, self.inner.permits.acquire())
                .await
                .map_err(|_| PasswordError::Busy)?
                .map_err(|_| PasswordError::Busy)?
        } else {
            self.inner
                .permits
                .try_acquire()
                .map_err(|_| PasswordError::Busy)?
        };
        let inner = Arc::clone(&self.inner);
        let out = tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| PasswordError::Internal(format!("hashing task failed: {e}")));
        drop(permit);
        out
    }

    /// A new argon2id hash (PHC string).
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(true, move |inner| inner.argon.hash(&password))
            .await?
    }

    /// A bcrypt `$2a$` digest in the legacy's own format (for writing through to it).
    pub async fn legacy_bcrypt(&self, password: &str, cost: u32) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(true, move |_| algorithms::bcrypt_hash(&password, cost))
            .await?
    }

    /// Checks `password` against a stored digest. `None` (no such member) or an
    /// unusable digest (a withdrawn member) is checked against a dummy digest, so the
    /// answer takes as long as for a wrong password and is always `Mismatch`.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verdict, PasswordError> {
        self.verify_with(true, password, stored).await
    }

    /// `verify` only if a slot is free at once, else `Busy` at once: for work that must
    /// never take hashing capacity from real requests (a dry run's).
    pub async fn verify_if_free(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verdict, PasswordError> {
        self.verify_with(false, password, stored).await
    }

    async fn verify_with(
        &self,
        wait: bool,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verdict, PasswordError> {
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        self.run(wait, move |inner| {
            let digest = stored.as_deref().unwrap_or(&inner.dummy);
            match digest_kind(digest) {
                DigestKind::Argon2id => {
                    let ok = inner.argon.verify(&password, digest);
                    Ok(if ok && stored.is_some() {
                        Verdict::Match {
                            rehash: inner.argon.is_outdated(digest),
                        }
                    } else {
                        Verdict::Mismatch
                    })
                }
                DigestKind::Bcrypt => Ok(if algorithms::bcrypt_verify(&password, digest) {
                    Verdict::Match { rehash: true }
                } else {
                    Verdict::Mismatch
                }),
                DigestKind::Unusable => {
                    inner.argon.verify(&password, &inner.dummy);
                    Ok(Verdict::Mismatch)
                }
            }
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordConfig {
        PasswordConfig {
            memory_kib: 1024,
            iterations: 1,
            ..PasswordConfig::default()
        }
    }

    #[tokio::test]
    async fn argon2id_round_trip() {
        let h = Hasher::new(&fast()).unwrap();
        let d = h.hash("correct horse").await.unwrap();
        assert!(d.starts_with("$argon2id$"));
        assert_eq!(
            h.verify("correct horse", Some(&d)).await.unwrap(),
            Verdict::Match { rehash: false }
        );
        assert_eq!(
            h.verify("wrong horse", Some(&d)).await.unwrap(),
            Verdict::Mismatch
        );
        assert_eq!(h.verify("anything", None).await.unwrap(), Verdict::Mismatch);
        assert_eq!(
            h.verify("anything", Some("!")).await.unwrap(),
            Verdict::Mismatch
        );
    }

    #[tokio::test]
    async fn new_hashes_check_the_whole_password() {
        let h = Hasher::new(&fast()).unwrap();
        let long = "a".repeat(80);
        let d = h.hash(&long).await.unwrap();
        let same_prefix = format!("{}b", "a".repeat(79));
        assert_eq!(
            h.verify(&same_prefix, Some(&d)).await.unwrap(),
            Verdict::Mismatch
        );
    }

    #[tokio::test]
    async fn legacy_bcrypt_is_verified_on_72_bytes_and_rehashed() {
        let h = Hasher::new(&fast()).unwrap();
        let long = "가".repeat(30); // 90 bytes
        let d = h.legacy_bcrypt(&long, 4).await.unwrap();
        assert!(d.starts_with("$2a$04$"));
        assert_eq!(
            h.verify(&long, Some(&d)).await.unwrap(),
            Verdict::Match { rehash: true }
        );
        let shares_72_bytes = format!("{}{}", "가".repeat(24), "x".repeat(10));
        assert_eq!(
            h.verify(&shares_72_bytes, Some(&d)).await.unwrap(),
            Verdict::Match { rehash: true }
        );
        for prefix in ["$2b$", "$2y$"] {
            let other = d.replacen("$2a$", prefix, 1);
            assert_eq!(
                h.verify(&long, Some(&other)).await.unwrap(),
                Verdict::Match { rehash: true }
            );
        }
        assert_eq!(h.verify("nope", Some(&d)).await.unwrap(), Verdict::Mismatch);
    }

    #[tokio::test]
    async fn outdated_parameters_ask_for_a_rehash() {
        let old = Hasher::new(&fast()).unwrap();
        let d = old.hash("pw-123456").await.unwrap();
        let new = Hasher::new(&PasswordConfig {
            memory_kib: 2048,
            ..fast()
        })
        .unwrap();
        assert_eq!(
            new.verify("pw-123456", Some(&d)).await.unwrap(),
            Verdict::Match { rehash: true }
        );
    }

    #[tokio::test]
    async fn saturation_is_refused_not_queued_forever() {
        let cfg = PasswordConfig {
            max_concurrent: 1,
            queue_wait: Duration::from_millis(1),
            ..fast()
        };
        let h = Hasher::new(&cfg).unwrap();
        let permit = h.inner.permits.acquire().await.unwrap();
        assert_eq!(h.hash("whatever1").await, Err(PasswordError::Busy));
        assert_eq!(
            h.verify_if_free("whatever1", None).await,
            Err(PasswordError::Busy)
        );
        drop(permit);
        assert!(h.hash("whatever1").await.is_ok());
    }
}
