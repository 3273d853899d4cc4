//! The identity service's domain flows: sign-up, log-in, refresh, log-out, profile and
//! password changes, withdrawal and member reads, with the legacy contract's rules. The
//! REST and gRPC adapters call these and only translate; every write flow runs in one
//! transaction, so a dry run (a shadowed write) rolls back everything.

mod access;
mod agreed;
mod changes;
mod clock;
mod error;
mod legacy;
mod login;
mod logout;
mod members;
mod password;
mod refresh;
mod sessions;
mod throttle;

use std::sync::Arc;

use identity_passwords::Hasher;
use identity_store::Store;
use identity_tokens::Tokens;

pub use access::NamedSession;
pub use changes::{ChangeWatch, CursorError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CoreError;
pub use identity_store::{ChangeKind, ChangeRow, MemberRow, SessionCacheState};
pub use legacy::LegacyLink;
pub use members::{MAX_BATCH_IDS, member_view};
pub use sessions::{Introspection, IssuedSession, Principal};
pub use throttle::ThrottleConfig;

/// Lifetimes and policies of the flows.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Absolute lifetime of a session's refresh tokens (30 days).
    pub refresh_ttl_secs: i64,
    /// How long after a rotation a reused refresh token is only refused; after it, the
    /// reuse ends the whole session (RFC 9700 §4.14.2).
    pub refresh_reuse_grace_secs: i64,
    pub throttle: ThrottleConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            refresh_ttl_secs: 30 * 86_400,
            refresh_reuse_grace_secs: 10,
            throttle: ThrottleConfig::default(),
        }
    }
}

/// The client's address as the proxies in front recorded it: the `X-Forwarded-For`
/// entry written by the outermost of `hops` trusted proxies (1: the last entry; 2: the
/// one before, when the migration proxy appended its own peer after the edge's). `None`
/// when the header has fewer entries. Nothing a client can write itself is read: no
/// `x-envoy-external-address`, no entry before the trusted hops'.
pub fn forwarded_client<'a>(
    forwarded_for: impl Iterator<Item = &'a str>,
    hops: usize,
) -> Option<String> {
    let entries: Vec<&str> = forwarded_for
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let index = entries.len().checked_sub(hops.max(1))?;
    entries.get(index).map(|s| (*s).to_owned())
}

/// Per-request context of a flow.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    /// A shadowed write (`x-shadow: dry-run`): answer as the write would, write nothing
    /// anywhere (no row, no counter, no sequence value, nothing on the legacy), and take
    /// no hashing capacity a real request could use (declined instead).
    pub dry_run: bool,
    /// The client's address (for throttling), if known.
    pub client: Option<String>,
}

/// The identity service's core, shared by the REST and gRPC adapters.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    hasher: Hasher,
    tokens: Tokens,
    clock: Arc<dyn Clock>,
    config: CoreConfig,
    /// The legacy database while migrating (write-through, legacy sessions).
    legacy: std::sync::RwLock<Option<LegacyLink>>,
    /// Members seen to agree with the legacy (while migrating).
    agreed: agreed::AgreedMembers,
}

impl Identity {
    pub fn new(
        store: Store,
        hasher: Hasher,
        tokens: Tokens,
        clock: Arc<dyn Clock>,
        config: CoreConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hasher,
                tokens,
                clock,
                config,
                legacy: std::sync::RwLock::new(None),
                agreed: agreed::AgreedMembers::default(),
            }),
        }
    }

    /// Starts writing through to the legacy database (while migrating).
    pub fn attach_legacy(&self, link: LegacyLink) {
        if let Ok(mut g) = self.inner.legacy.write() {
            *g = Some(link);
        }
        self.inner.agreed.clear();
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The bounded password hasher (for checks beside the requests, such as a
    /// write-effect question's).
    pub fn hasher(&self) -> &identity_passwords::Hasher {
        &self.inner.hasher
    }

    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    pub fn now(&self) -> member_contract::Timestamp {
        self.inner.clock.now()
    }

    /// Readiness: whether requests can be served (see `Store::ready`).
    pub async fn ready(&self) -> bool {
        self.inner.store.ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::forwarded_client;

    #[test]
    fn the_client_is_the_entry_of_the_outermost_trusted_proxy() {
        let xff = ["203.0.113.7, 10.0.0.9", "127.0.0.6"];
        assert_eq!(
            forwarded_client(xff.iter().copied(), 1).as_deref(),
            Some("127.0.0.6")
        );
        assert_eq!(
            forwarded_client(xff.iter().copied(), 2).as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(
            forwarded_client(xff.iter().copied(), 3).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(forwarded_client(xff.iter().copied(), 4), None);
    }
}
