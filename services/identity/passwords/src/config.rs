//! The hashing parameters and the concurrency bound.

use std::time::Duration;

/// How passwords are hashed and how many hashes may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordConfig {
    /// argon2id memory cost in KiB (OWASP: 19 MiB = 19456).
    pub memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    pub iterations: u32,
    /// argon2id lanes (OWASP: 1).
    pub parallelism: u32,
    /// Hashes running at once; beyond it requests wait up to `queue_wait`.
    pub max_concurrent: usize,
    /// How long a request waits for a hashing slot before it is refused.
    pub queue_wait: Duration,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_wait: Duration::from_secs(2),
        }
    }
}
