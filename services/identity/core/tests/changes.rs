//! Following the member change log through the core, on a real SQLite file: what each
//! flow logs, what a dry run or a failed write logs (nothing), and cursors that cannot
//! be followed (pruned, ahead, negative).

mod support;

use std::time::Duration;

use identity_core::{ChangeKind, ChangeRow, CoreError, CursorError, RequestCtx, ThrottleConfig};
use member_contract::fields::Nickname;
use member_contract::forms::{ProfileChanges, SignUpForm};

use support::{fixture, member, principal};

fn kinds(changes: &[ChangeRow]) -> Vec<(i64, i64, ChangeKind)> {
    changes
        .iter()
        .map(|c| (c.seq, c.member_id, c.kind))
        .collect()
}

fn renamed(nickname: &str) -> ProfileChanges {
    ProfileChanges {
        nickname: Some(Nickname::parse(Some(nickname)).unwrap()),
        ..ProfileChanges::default()
    }
}

#[tokio::test]
async fn each_flow_logs_its_change_and_withdrawals_carry_nothing() {
    let f = fixture(ThrottleConfig::default()).await;
    let mut watch = f.id.watch_changes(None).await.unwrap();
    assert_eq!(watch.cursor(), 0);
    let a = member(&f, "a@x.io").await;
    let b = member(&f, "b@x.io").await;
    let who_a = principal(&f, "a@x.io").await;
    let who_b = principal(&f, "b@x.io").await;
    f.id.update_profile(&who_b, &renamed("bee"), &RequestCtx::default())
        .await
        .unwrap();
    // A change that changes nothing is no change.
    f.id.update_profile(&who_b, &renamed("bee"), &RequestCtx::default())
        .await
        .unwrap();
    f.id.withdraw(&who_a, &RequestCtx::default()).await.unwrap();
    let changes = watch.next().await.unwrap();
    assert_eq!(
        kinds(&changes),
        vec![
            (1, a.id, ChangeKind::Created),
            (2, b.id, ChangeKind::Created),
            (3, b.id, ChangeKind::Updated),
            (4, a.id, ChangeKind::Withdrawn),
        ]
    );
    assert_eq!(watch.cursor(), 4);
    // Each change shows the member as they are now; nothing of a withdrawn one.
    assert!(changes[0].member.is_none());
    assert!(changes[3].member.is_none());
    assert_eq!(
        changes[1].member.as_ref().map(|m| m.nickname.as_str()),
        Some("bee")
    );
    assert!(changes.iter().all(|c| c.changed_at > 0));
}

#[tokio::test]
async fn dry_runs_and_failed_writes_log_nothing() {
    let f = fixture(ThrottleConfig::default()).await;
    member(&f, "taken@x.io").await;
    let mut watch = f.id.watch_changes(None).await.unwrap();
    let start = watch.cursor();
    let form = |email: &str| SignUpForm {
        email: Some(email.into()),
        password: Some("password123".into()),
        nickname: Some("nick".into()),
        phone_number: None,
        profile_image_url: None,
    };
    let dry = RequestCtx {
        dry_run: true,
        client: None,
    };
    f.id.sign_up(&form("dry@x.io"), &dry).await.unwrap();
    assert!(matches!(
        f.id.sign_up(&form("taken@x.io"), &RequestCtx::default())
            .await,
        Err(CoreError::Validation(_))
    ));
    let who = principal(&f, "taken@x.io").await;
    f.id.update_profile(&who, &renamed("dry run"), &dry)
        .await
        .unwrap();
    f.id.withdraw(&who, &dry).await.unwrap();
    let real = member(&f, "real@x.io").await;
    let changes = watch.next().await.unwrap();
    assert_eq!(
        kinds(&changes),
        vec![(start + 1, real.id, ChangeKind::Created)]
    );
}

#[tokio::test]
async fn cursors_outside_the_kept_changes_are_refused() {
    let f = fixture(ThrottleConfig::default()).await;
    for i in 0..3 {
        member(&f, &format!("m{i}@x.io")).await;
    }
    let mut behind = f.id.watch_changes(Some(0)).await.unwrap();
    let mut current = f.id.watch_changes(Some(3)).await.unwrap();
    assert!(matches!(
        f.id.watch_changes(Some(4)).await,
        Err(CoreError::Cursor(CursorError::Ahead { cursor: 4, last: 3 }))
    ));
    assert!(matches!(
        f.id.watch_changes(Some(-1)).await,
        Err(CoreError::Cursor(CursorError::Negative))
    ));
    // Everything older than now is pruned; then a fourth change.
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(f.id.prune_changes(Duration::ZERO).await.unwrap(), 3);
    let fourth = member(&f, "m3@x.io").await;
    // A follower that had not read the pruned changes is told, not skipped past them.
    assert!(matches!(
        behind.next().await,
        Err(CoreError::Cursor(CursorError::Expired {
            cursor: 0,
            first_kept: 4
        }))
    ));
    assert!(matches!(
        f.id.watch_changes(Some(2)).await,
        Err(CoreError::Cursor(CursorError::Expired {
            cursor: 2,
            first_kept: 4
        }))
    ));
    assert_eq!(
        kinds(&current.next().await.unwrap()),
        vec![(4, fourth.id, ChangeKind::Created)]
    );
    // The number of the last change outlives its pruning: a follower at it goes on.
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(f.id.prune_changes(Duration::ZERO).await.unwrap(), 1);
    let mut at_last = f.id.watch_changes(Some(4)).await.unwrap();
    let fifth = member(&f, "m4@x.io").await;
    assert_eq!(
        kinds(&at_last.next().await.unwrap()),
        vec![(5, fifth.id, ChangeKind::Created)]
    );
}

#[tokio::test]
async fn a_waiting_follower_is_woken_by_the_next_commit() {
    let f = fixture(ThrottleConfig::default()).await;
    let mut watch = f.id.watch_changes(None).await.unwrap();
    let waiting = tokio::spawn(async move { watch.next().await });
    tokio::task::yield_now().await;
    let m = member(&f, "late@x.io").await;
    let changes = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&changes), vec![(1, m.id, ChangeKind::Created)]);
}
