//! The identity service's domain flows: sign-up, log-in, refresh, log-out, profile and
//! password changes, withdrawal and member reads, with the legacy contract's rules. The
//! REST and gRPC adapters call these and only translate; every write flow runs in one
//! transaction, so a dry run (a shadowed write) rolls back everything.

mod clock;
mod error;
mod legacy;
mod members;
mod sessions;
mod throttle;

use std::sync::Arc;

use identity_passwords::Hasher;
use identity_store::Store;
use identity_tokens::Tokens;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CoreError;
pub use identity_store::MemberRow;
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

/// Per-request context of a flow.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    /// A shadowed write (`x-shadow: dry-run`): do everything, then roll it all back.
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
            }),
        }
    }

    /// Starts writing through to the legacy database (while migrating).
    pub fn attach_legacy(&self, link: LegacyLink) {
        if let Ok(mut g) = self.inner.legacy.write() {
            *g = Some(link);
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    pub fn now(&self) -> member_contract::Timestamp {
        self.inner.clock.now()
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> bool {
        self.inner.store.ping().await.is_ok()
    }
}
