//! The contract's routes as Rails matches them. Rails normalises the path first
//! (`Journey::Router::Utils.normalize_path`: a leading slash added, repeated slashes
//! squeezed anywhere, `//api/v1/users` and `/api//v1/users` included, trailing slashes
//! dropped), then matches literally: an optional format suffix (`/me.json`), HEAD served
//! by GET routes, ids of digits only (`/users/%31` is no id). Anything else is no route
//! (`404`, empty body), whatever the method.

/// An endpoint of the legacy member API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    SignUp,
    BatchLookup,
    ShowMe,
    UpdateMe,
    Withdraw,
    ChangePassword,
    /// `GET /users/:id`; the id is digits, possibly too large for any row.
    ShowMember(&'a str),
    LogIn,
    Refresh,
    LogOut,
}

impl Endpoint<'_> {
    /// A stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::SignUp => "POST /api/v1/users",
            Endpoint::BatchLookup => "GET /api/v1/users",
            Endpoint::ShowMe => "GET /api/v1/users/me",
            Endpoint::UpdateMe => "PATCH /api/v1/users/me",
            Endpoint::Withdraw => "DELETE /api/v1/users/me",
            Endpoint::ChangePassword => "PUT /api/v1/users/me/password",
            Endpoint::ShowMember(_) => "GET /api/v1/users/:id",
            Endpoint::LogIn => "POST /api/v1/sessions",
            Endpoint::Refresh => "POST /api/v1/sessions/refresh",
            Endpoint::LogOut => "DELETE /api/v1/sessions",
        }
    }

    /// Whether the endpoint only reads (safe to replay as it is).
    pub fn is_safe(&self) -> bool {
        matches!(
            self,
            Endpoint::BatchLookup | Endpoint::ShowMe | Endpoint::ShowMember(_)
        )
    }
}

/// Matches a request to an endpoint, or `None` for "no route".
pub fn route<'a>(method: &str, path: &'a str) -> Option<Endpoint<'a>> {
    // Squeezed and trimmed slashes: empty segments do not count, wherever they are.
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    if (segments.next(), segments.next()) != (Some("api"), Some("v1")) {
        return None;
    }
    let mut segments: Vec<&'a str> = segments.collect();
    // `(.:format)`: the last segment may carry one extension.
    if let Some(last) = segments.last_mut()
        && let Some((name, format)) = last.split_once('.')
    {
        if name.is_empty() || format.is_empty() || format.contains('.') {
            return None;
        }
        *last = name;
    }
    let get = method == "GET" || method == "HEAD";
    let endpoint = match (segments.as_slice(), method) {
        (["users"], "POST") => Endpoint::SignUp,
        (["users"], _) if get => Endpoint::BatchLookup,
        (["users", "me"], _) if get => Endpoint::ShowMe,
        (["users", "me"], "PATCH") => Endpoint::UpdateMe,
        (["users", "me"], "DELETE") => Endpoint::Withdraw,
        (["users", "me", "password"], "PUT") => Endpoint::ChangePassword,
        (["users", id], _) if get && id.bytes().all(|b| b.is_ascii_digit()) => {
            Endpoint::ShowMember(id)
        }
        (["sessions"], "POST") => Endpoint::LogIn,
        (["sessions"], "DELETE") => Endpoint::LogOut,
        (["sessions", "refresh"], "POST") => Endpoint::Refresh,
        _ => return None,
    };
    Some(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_rails() {
        assert_eq!(route("GET", "/api/v1/users/me"), Some(Endpoint::ShowMe));
        assert_eq!(
            route("GET", "/api/v1/users/me.json"),
            Some(Endpoint::ShowMe)
        );
        assert_eq!(route("GET", "/api/v1/users/me/"), Some(Endpoint::ShowMe));
        assert_eq!(
            route("HEAD", "/api/v1/users/12"),
            Some(Endpoint::ShowMember("12"))
        );
        assert_eq!(route("GET", "/api/v1/users/abc"), None);
        assert_eq!(route("GET", "/api/v1/users/1.2.3"), None);
        assert_eq!(route("POST", "/api/v1/users/12"), None);
        assert_eq!(route("GET", "/api/v1/nope"), None);
        assert_eq!(route("GET", "/api/v1//users"), Some(Endpoint::BatchLookup));
        assert_eq!(route("GET", "/api/v1/"), None);
        assert_eq!(route("GET", "/api/v1"), None);
        assert_eq!(
            route("GET", "//api/v1/users/1"),
            Some(Endpoint::ShowMember("1"))
        );
        assert_eq!(
            route("GET", "///api/v1/users/1"),
            Some(Endpoint::ShowMember("1"))
        );
        assert_eq!(
            route("GET", "/api//v1/users/1"),
            Some(Endpoint::ShowMember("1"))
        );
        assert_eq!(route("POST", "//api/v1/users"), Some(Endpoint::SignUp));
        assert_eq!(
            route("PUT", "/api/v1//users/me/password/"),
            Some(Endpoint::ChangePassword)
        );
        assert_eq!(route("GET", "/api/v1/users/%31"), None);
        assert_eq!(route("GET", "/api/v1/%75sers/1"), None);
        assert_eq!(route("GET", "/api/v1/users/./1"), None);
        assert_eq!(route("GET", "/api/v2/users/1"), None);
        assert_eq!(route("GET", "/x/api/v1/users/1"), None);
        assert_eq!(
            route("POST", "/api/v1/sessions/refresh"),
            Some(Endpoint::Refresh)
        );
        assert_eq!(route("DELETE", "/api/v1/sessions"), Some(Endpoint::LogOut));
    }
}
