//! Throttling of failed log-ins, counted in the shared database (so every replica sees
//! every attempt) over a sliding hour estimated from two fixed windows.
//!
//! Three counters: per account and client (a typo-prone user or one attacker on one
//! account), per client (credential stuffing across accounts), and per account (many
//! clients on one account: at most `per_account` failures an hour). The account-wide
//! cap does not apply to a client that logged in to that account successfully within
//! `known_client_days`, so an attacker cannot lock the real member out.

use sha2::{Digest, Sha256};

use crate::{CoreError, Identity};

/// How a client address is kept in the database: hashed, never in clear.
pub(crate) fn throttle_client_key(client: &str) -> String {
    digest(&format!("client|{client}"))
}

/// Limits on failed log-ins per sliding window.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    pub window_secs: i64,
    /// Failures of one account from all clients (not counting known clients).
    pub per_account: i64,
    /// Failures of one account from one client.
    pub per_account_client: i64,
    /// Failures from one client across all accounts.
    pub per_client: i64,
    /// How long a successful log-in makes a client known to the account.
    pub known_client_days: i64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            window_secs: 3600,
            per_account: 100,
            per_account_client: 10,
            per_client: 300,
            known_client_days: 30,
        }
    }
}

pub(crate) fn digest(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The three counters' keys of one attempt: account+client, client, account.
pub(crate) struct Keys {
    buckets: [String; 3],
}

impl Identity {
    pub(crate) fn throttle_keys(&self, email: &str, client: Option<&str>) -> Keys {
        let client = client.unwrap_or("unknown");
        Keys {
            buckets: [
                format!("pair:{}", digest(&format!("{email}|{client}"))),
                format!("client:{}", digest(client)),
                format!("account:{}", digest(email)),
            ],
        }
    }

    fn windows(&self) -> ([i64; 2], f64, i64) {
        let w = self.inner.config.throttle.window_secs.max(1);
        let now = self.now().as_secs();
        let current = now - now.rem_euclid(w);
        let elapsed = now - current;
        (
            [current, current - w],
            elapsed as f64 / w as f64,
            w - elapsed,
        )
    }

    /// Refuses the attempt before any password is checked when a counter is full.
    pub(crate) async fn check_throttle(
        &self,
        keys: &Keys,
        member: Option<i64>,
        client: Option<&str>,
    ) -> Result<(), CoreError> {
        let cfg = &self.inner.config.throttle;
        let (windows, fraction, left) = self.windows();
        let counts = self.inner.store.failures(&keys.buckets, windows).await?;
        let estimate = |c: [i64; 2]| c[0] as f64 + c[1] as f64 * (1.0 - fraction);
        let mut limits = [
            Some(cfg.per_account_client),
            Some(cfg.per_client),
            Some(cfg.per_account),
        ];
        if let (Some(member), Some(client)) = (member, client) {
            let since = self.now().as_micros() - cfg.known_client_days * 86_400 * 1_000_000;
            if estimate(counts[2]) >= cfg.per_account as f64
                && self
                    .inner
                    .store
                    .is_known_client(member, &throttle_client_key(client), since)
                    .await?
            {
                limits[2] = None;
            }
        }
        for (c, limit) in counts.iter().zip(limits) {
            if let Some(limit) = limit
                && estimate(*c) >= limit as f64
            {
                tracing::warn!(bucket_kind = "login", "failed log-ins throttled");
                return Err(CoreError::Throttled {
                    retry_after_secs: left.max(1) as u64,
                });
            }
        }
        Ok(())
    }

    pub(crate) async fn record_failure(&self, keys: &Keys) -> Result<(), CoreError> {
        let (windows, _, _) = self.windows();
        let mut tx = self.inner.store.begin().await?;
        for b in &keys.buckets {
            tx.record_failure(b, windows[0]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
