//! The flows' time-dependent rules, driven by a manual clock on a real SQLite file:
//! access token expiry, the refresh token's absolute lifetime, reuse of a rotated
//! refresh token within and after the grace period, and the log-in throttle's windows
//! with the known-client exemption from the account-wide cap.

mod support;

use identity_core::{CoreError, RequestCtx, ThrottleConfig};
use member_contract::forms::SignUpForm;

use support::{creds, fixture, from, member};

#[tokio::test]
async fn access_tokens_expire_after_an_hour() {
    let f = fixture(ThrottleConfig::default()).await;
    member(&f, "a@x.io").await;
    let s =
        f.id.authenticate(&creds("a@x.io", "password123"), &from("1.1.1.1"))
            .await
            .unwrap();
    assert!(f.id.authorize(&s.access_token).await.is_ok());
    f.clock.advance_secs(3599);
    assert!(f.id.authorize(&s.access_token).await.is_ok());
    f.clock.advance_secs(2);
    assert!(matches!(
        f.id.authorize(&s.access_token).await,
        Err(CoreError::Unauthorized)
    ));
    // The refresh token still works, and gives a fresh access token.
    let r =
        f.id.refresh(&s.refresh_token, &RequestCtx::default())
            .await
            .unwrap();
    assert!(f.id.authorize(&r.access_token).await.is_ok());
}

#[tokio::test]
async fn refresh_tokens_live_thirty_days_from_the_log_in() {
    let f = fixture(ThrottleConfig::default()).await;
    member(&f, "b@x.io").await;
    let s =
        f.id.authenticate(&creds("b@x.io", "password123"), &from("1.1.1.1"))
            .await
            .unwrap();
    f.clock.advance_secs(29 * 86_400);
    let r =
        f.id.refresh(&s.refresh_token, &RequestCtx::default())
            .await
            .unwrap();
    // Rotation does not extend the absolute lifetime.
    assert_eq!(r.refresh_expires_at, s.refresh_expires_at);
    f.clock.advance_secs(86_400 + 1);
    assert!(matches!(
        f.id.refresh(&r.refresh_token, &RequestCtx::default()).await,
        Err(CoreError::InvalidRefreshToken)
    ));
}

#[tokio::test]
async fn reuse_of_a_rotated_refresh_token_after_the_grace_ends_the_session() {
    let f = fixture(ThrottleConfig::default()).await;
    member(&f, "c@x.io").await;
    let s =
        f.id.authenticate(&creds("c@x.io", "password123"), &from("1.1.1.1"))
            .await
            .unwrap();
    let other =
        f.id.authenticate(&creds("c@x.io", "password123"), &from("1.1.1.1"))
            .await
            .unwrap();
    let r =
        f.id.refresh(&s.refresh_token, &RequestCtx::default())
            .await
            .unwrap();
    // Within the grace: refused, nothing else happens (a client retrying a raced refresh).
    f.clock.advance_secs(5);
    assert!(matches!(
        f.id.refresh(&s.refresh_token, &RequestCtx::default()).await,
        Err(CoreError::InvalidRefreshToken)
    ));
    assert!(f.id.authorize(&r.access_token).await.is_ok());
    // After it: treated as theft, the whole session ends, tokens of the new pair too.
    f.clock.advance_secs(10);
    assert!(matches!(
        f.id.refresh(&s.refresh_token, &RequestCtx::default()).await,
        Err(CoreError::InvalidRefreshToken)
    ));
    assert!(matches!(
        f.id.authorize(&r.access_token).await,
        Err(CoreError::Unauthorized)
    ));
    assert!(matches!(
        f.id.refresh(&r.refresh_token, &RequestCtx::default()).await,
        Err(CoreError::InvalidRefreshToken)
    ));
    // The member's other session is not touched.
    assert!(f.id.authorize(&other.access_token).await.is_ok());
}

#[tokio::test]
async fn throttle_windows_slide_and_known_clients_keep_their_access() {
    let throttle = ThrottleConfig {
        per_account: 5,
        per_account_client: 3,
        per_client: 50,
        ..ThrottleConfig::default()
    };
    let f = fixture(throttle).await;
    member(&f, "d@x.io").await;
    // The real member logs in once from their usual address.
    f.id.authenticate(&creds("d@x.io", "password123"), &from("10.0.0.1"))
        .await
        .unwrap();
    // One attacker address: three failures, then refused before any password check.
    for _ in 0..3 {
        assert!(matches!(
            f.id.authenticate(&creds("d@x.io", "guess"), &from("6.6.6.6"))
                .await,
            Err(CoreError::InvalidCredentials)
        ));
    }
    let throttled =
        f.id.authenticate(&creds("d@x.io", "password123"), &from("6.6.6.6"))
            .await;
    assert!(
        matches!(throttled, Err(CoreError::Throttled { retry_after_secs }) if retry_after_secs >= 1)
    );
    // Other attacker addresses fill the account-wide cap.
    for addr in ["6.6.6.7", "6.6.6.8"] {
        assert!(matches!(
            f.id.authenticate(&creds("d@x.io", "guess"), &from(addr))
                .await,
            Err(CoreError::InvalidCredentials)
        ));
    }
    assert!(matches!(
        f.id.authenticate(&creds("d@x.io", "guess"), &from("6.6.6.9"))
            .await,
        Err(CoreError::Throttled { .. })
    ));
    // The member's known address is exempt from the account-wide cap.
    assert!(
        f.id.authenticate(&creds("d@x.io", "password123"), &from("10.0.0.1"))
            .await
            .is_ok()
    );
    // Two windows later the counters are gone.
    f.clock.advance_secs(2 * 3600);
    assert!(
        f.id.authenticate(&creds("d@x.io", "password123"), &from("6.6.6.6"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn dry_runs_roll_everything_back() {
    let f = fixture(ThrottleConfig::default()).await;
    let dry = RequestCtx {
        dry_run: true,
        client: None,
    };
    let form = SignUpForm {
        email: Some("dry@x.io".into()),
        password: Some("password123".into()),
        nickname: Some("dry".into()),
        phone_number: None,
        profile_image_url: None,
    };
    let row = f.id.sign_up(&form, &dry).await.unwrap();
    assert_eq!((row.id, row.email.as_str()), (0, "dry@x.io"));
    assert!(matches!(
        f.id.lookup_member(Some("dry@x.io"), None).await,
        Err(CoreError::NotFound)
    ));
    // No value of the id sequence was taken: the first real member is 1.
    let real =
        f.id.sign_up(
            &SignUpForm {
                email: Some("real@x.io".into()),
                ..form.clone()
            },
            &RequestCtx::default(),
        )
        .await
        .unwrap();
    assert_eq!(real.id, 1);
    let s =
        f.id.authenticate(&creds("real@x.io", "password123"), &dry)
            .await
            .unwrap();
    assert!(
        matches!(
            f.id.authorize(&s.access_token).await,
            Err(CoreError::Unauthorized)
        ),
        "a dry-run log-in creates no session"
    );
}
