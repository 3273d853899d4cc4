//! The bearer token of a request, read as Rails' `authenticate_with_http_token` reads
//! the `Authorization` header: scheme `Bearer` or `Token` (case-sensitive), then the
//! token, possibly quoted or as `token="..."`, possibly followed by `, key=value`
//! options.

/// The token of an `Authorization` header value, or `None` when there is none.
pub fn bearer_token(header: Option<&str>) -> Option<String> {
    let header = header?;
    let rest = header
        .strip_prefix("Bearer")
        .or_else(|| header.strip_prefix("Token"))?;
    let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}']);
    if trimmed.len() == rest.len() {
        return None; // the scheme must be followed by whitespace
    }
    let first = trimmed.split([',', ';', '\t']).next().unwrap_or("");
    let first = if first.starts_with("token=") {
        first.to_owned()
    } else {
        format!("token={first}")
    };
    let value = first.split_once('=').map_or("", |(_, v)| v);
    let value = value.strip_prefix('"').unwrap_or(value);
    let value = value.strip_suffix('"').unwrap_or(value);
    Some(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rails_token_headers() {
        assert_eq!(bearer_token(Some("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(Some("Token abc")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(Some("Bearer \"abc\"")).as_deref(), Some("abc"));
        assert_eq!(
            bearer_token(Some("Token token=\"abc\", nonce=1")).as_deref(),
            Some("abc")
        );
        assert_eq!(bearer_token(Some("bearer abc")), None);
        assert_eq!(bearer_token(Some("Bearerabc")), None);
        assert_eq!(bearer_token(None), None);
        assert_eq!(bearer_token(Some("Bearer ")).as_deref(), Some(""));
    }
}
