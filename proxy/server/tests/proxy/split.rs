//! The sticky split: proportions, stickiness, and monotonicity across a weight change.

use crate::support::stack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_is_proportional_sticky_and_monotonic() {
    let s = stack(75, 25, 0.0).await;
    s.seed_sides().await;
    let keys: Vec<String> = (0..400).map(|i| format!("user-key-{i}")).collect();
    let mut first = Vec::new();
    for k in &keys {
        first.push(s.side_of(k).await);
    }
    let new_share = first.iter().filter(|s| **s == "new").count() as f64 / keys.len() as f64;
    assert!(
        (0.18..=0.32).contains(&new_share),
        "25% expected, got {new_share}"
    );
    // Sticky: the same user lands on the same side every time.
    for (k, side) in keys.iter().zip(&first).take(100) {
        assert_eq!(s.side_of(k).await, *side, "{k} flapped");
    }
    // Raising the weight only moves users from legacy to new.
    let (status, _) = s
        .admin(
            "PUT",
            "/admin/routes/reads/weight",
            Some(json!({"percent": 60})),
        )
        .await;
    assert_eq!(status, 200);
    let mut moved = 0;
    for (k, before) in keys.iter().zip(&first) {
        let after = s.side_of(k).await;
        if *before == "new" {
            assert_eq!(after, "new", "{k} went back to the legacy");
        } else if after == "new" {
            moved += 1;
        }
    }
    let share = (first.iter().filter(|s| **s == "new").count() + moved) as f64 / keys.len() as f64;
    assert!((0.52..=0.68).contains(&share), "60% expected, got {share}");
    // A JWT's `sub` is the key: two tokens of one member go to the same side.
    let jwt = |sid: &str| {
        use base64_like::encode;
        format!(
            "{}.{}.sig",
            encode(br#"{"alg":"EdDSA"}"#),
            encode(format!(r#"{{"sub":"42","sid":"{sid}"}}"#).as_bytes())
        )
    };
    assert_eq!(s.side_of(&jwt("a")).await, s.side_of(&jwt("b")).await);
}

/// Enough base64url for building test JWTs.
mod base64_like {
    pub fn encode(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
