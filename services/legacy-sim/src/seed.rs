//! Demo members: `member-N@example.com` / `password-N`, created once.

use legacy_db::NewLegacyUser;
use member_contract::Timestamp;

use crate::handlers::SimState;

pub async fn seed(state: &SimState, count: u32) -> anyhow::Result<()> {
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(state.db.pool())
        .await?;
    if existing > 0 {
        return Ok(());
    }
    // One digest for all: seeding many members at cost 12 would take minutes.
    let mut digests = Vec::new();
    for n in 1..=count.min(50) {
        digests.push(
            state
                .hasher
                .legacy_bcrypt(&format!("password-{n}"), state.bcrypt_cost)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let mut tx = state.db.begin().await?;
    for n in 1..=count {
        let user = NewLegacyUser {
            id: None,
            email: format!("member-{n}@example.com"),
            password_digest: digests[((n - 1) as usize) % digests.len()].clone(),
            nickname: format!("member{n}"),
            phone_number: None,
            profile_image_url: None,
            now: Timestamp::now_from_system(),
        };
        state.db.insert_user(&mut *tx, &user).await?;
    }
    tx.commit().await?;
    eprintln!("seeded {count} members (member-N@example.com / password-N for N <= 50)");
    Ok(())
}
