//! What the flow tests share: the core on a real SQLite file with a manual clock, and
//! members to act as.

#![allow(dead_code)]

use std::sync::Arc;

use identity_core::{
    CoreConfig, Identity, ManualClock, MemberRow, Principal, RequestCtx, ThrottleConfig,
};
use identity_passwords::{Hasher, PasswordConfig};
use identity_store::{Store, StoreConfig};
use identity_tokens::{KeySet, TokenConfig, Tokens};
use member_contract::Timestamp;
use member_contract::forms::{CredentialsForm, SignUpForm};

pub struct Fixture {
    pub id: Identity,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

pub async fn fixture(throttle: ThrottleConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("t.sqlite3").display()
    );
    let store = Store::connect(&url, &StoreConfig::default()).await.unwrap();
    let hasher = Hasher::new(&PasswordConfig {
        memory_kib: 1024,
        iterations: 1,
        ..PasswordConfig::default()
    })
    .unwrap();
    // Token times are whole seconds since the epoch: start the clock well after it.
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        1_800_000_000_000_000,
    )));
    let tokens = Tokens::new(KeySet::generate().unwrap(), TokenConfig::default());
    let config = CoreConfig {
        refresh_reuse_grace_secs: 10,
        throttle,
        ..CoreConfig::default()
    };
    let id = Identity::new(store, hasher, tokens, clock.clone(), config);
    Fixture {
        id,
        clock,
        _dir: dir,
    }
}

/// Signs up a member with the password `password123`.
pub async fn member(f: &Fixture, email: &str) -> MemberRow {
    let form = SignUpForm {
        email: Some(email.into()),
        password: Some("password123".into()),
        nickname: Some("nick".into()),
        phone_number: None,
        profile_image_url: None,
    };
    f.id.sign_up(&form, &RequestCtx::default()).await.unwrap()
}

/// Logs a member in and acts as them.
pub async fn principal(f: &Fixture, email: &str) -> Principal {
    let s =
        f.id.authenticate(&creds(email, "password123"), &RequestCtx::default())
            .await
            .unwrap();
    f.id.authorize(&s.access_token).await.unwrap()
}

pub fn creds(email: &str, password: &str) -> CredentialsForm {
    CredentialsForm {
        email: Some(email.into()),
        password: Some(password.into()),
    }
}

pub fn from(client: &str) -> RequestCtx {
    RequestCtx {
        dry_run: false,
        client: Some(client.into()),
    }
}
