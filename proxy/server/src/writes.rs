//! The contract's writes as the proxy compares them: a kind for the metrics, and
//! whether replaying one on the new side after the primary served it still means
//! anything. A replay comes after the primary's write, on the same shared data (the new
//! side reads the legacy's rows while migrating): a sign-up replayed finds its email
//! taken, a refresh its token rotated. Such answers differ by construction; they are
//! not replayed after the primary, and their effect is compared (see `effects`); a
//! rule may have some of them sent to the new side as a dry run *before* the legacy
//! serves them, for their answer too (`comparison.replay_first`, see `replay`).

use member_contract::{Endpoint, route};

/// The write a request is, by the contract's routes (`None`: a read, or no route).
pub fn write_of<'a>(method: &str, path: &'a str) -> Option<Endpoint<'a>> {
    route(method, path).filter(|e| !e.is_safe())
}

/// A stable label for the metrics.
pub fn kind(write: Option<Endpoint<'_>>) -> &'static str {
    match write {
        Some(Endpoint::SignUp) => "sign_up",
        Some(Endpoint::LogIn) => "log_in",
        Some(Endpoint::Refresh) => "refresh",
        Some(Endpoint::LogOut) => "log_out",
        Some(Endpoint::UpdateMe) => "profile_update",
        Some(Endpoint::ChangePassword) => "password_change",
        Some(Endpoint::Withdraw) => "withdrawal",
        Some(Endpoint::BatchLookup | Endpoint::ShowMe | Endpoint::ShowMember(_)) | None => "other",
    }
}

/// Why a replay after the primary cannot say whether the new side answers alike, or
/// `None` when it can (a log-in, a profile change: the state they need is still there;
/// a request that is no route is refused alike).
pub fn answer_not_comparable(write: Option<Endpoint<'_>>) -> Option<&'static str> {
    match write? {
        Endpoint::SignUp => Some("the primary took the email"),
        Endpoint::Refresh => Some("the primary rotated the refresh token"),
        Endpoint::LogOut => Some("the primary ended the session"),
        Endpoint::ChangePassword => Some("the primary changed the current password"),
        Endpoint::Withdraw => Some("the primary withdrew the member"),
        Endpoint::LogIn
        | Endpoint::UpdateMe
        | Endpoint::BatchLookup
        | Endpoint::ShowMe
        | Endpoint::ShowMember(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_write_is_that_write() {
        for (method, path, kind_) in [
            ("POST", "/api/v1/users", "sign_up"),
            ("POST", "/api/v1/users.json", "sign_up"),
            ("PATCH", "/api/v1/users/me/", "profile_update"),
            ("PUT", "/api/v1/users/me/password", "password_change"),
            ("DELETE", "/api/v1/users/me", "withdrawal"),
            ("DELETE", "/api/v1/sessions", "log_out"),
            ("POST", "/api/v1/sessions/refresh", "refresh"),
            ("POST", "/api/v1/sessions", "log_in"),
            ("GET", "/api/v1/users/me", "other"),
            ("POST", "/api/v1/nothing", "other"),
        ] {
            assert_eq!(kind(write_of(method, path)), kind_, "{method} {path}");
        }
    }

    #[test]
    fn the_writes_that_may_be_sent_first_are_those_a_later_replay_cannot_compare() {
        for (method, path) in [
            ("POST", "/api/v1/users"),
            ("PATCH", "/api/v1/users/me"),
            ("PUT", "/api/v1/users/me/password"),
            ("DELETE", "/api/v1/users/me"),
            ("POST", "/api/v1/sessions"),
            ("POST", "/api/v1/sessions/refresh"),
            ("DELETE", "/api/v1/sessions"),
        ] {
            let write = write_of(method, path);
            assert_eq!(
                answer_not_comparable(write).is_some(),
                proxy_routing::config::STATE_CONSUMING_WRITES.contains(&kind(write)),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn only_writes_that_leave_their_state_are_replayed_for_their_answer() {
        assert_eq!(
            answer_not_comparable(write_of("POST", "/api/v1/sessions")),
            None
        );
        assert_eq!(
            answer_not_comparable(write_of("PATCH", "/api/v1/users/me")),
            None
        );
        for (method, path) in [
            ("POST", "/api/v1/users"),
            ("POST", "/api/v1/sessions/refresh"),
            ("DELETE", "/api/v1/sessions"),
            ("PUT", "/api/v1/users/me/password"),
            ("DELETE", "/api/v1/users/me"),
        ] {
            assert!(
                answer_not_comparable(write_of(method, path)).is_some(),
                "{method} {path}"
            );
        }
    }
}
