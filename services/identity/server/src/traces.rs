//! The names of the identity service's request spans (see the `telemetry` crate): a
//! contract route's template, an internal question's path, a gRPC method; never a path
//! with a member's id in it.

use std::borrow::Cow;

use http::Method;

pub fn rest(method: &Method, path: &str) -> Cow<'static, str> {
    if let Some(endpoint) = member_contract::route(method.as_str(), path) {
        return Cow::Borrowed(endpoint.label());
    }
    match path {
        "/internal/write-effects" => Cow::Borrowed("POST /internal/write-effects"),
        "/internal/verify" => Cow::Borrowed("POST /internal/verify"),
        _ => Cow::Owned(method.as_str().to_owned()),
    }
}

pub fn grpc(_method: &Method, path: &str) -> Cow<'static, str> {
    let name = path.trim_start_matches('/');
    if name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic()) {
        Cow::Owned(name.to_owned())
    } else {
        Cow::Borrowed("grpc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_id_never_names_a_span() {
        assert_eq!(
            rest(&Method::GET, "/api/v1/users/42"),
            "GET /api/v1/users/:id"
        );
        assert_eq!(rest(&Method::GET, "/nothing/42"), "GET");
        assert_eq!(
            grpc(&Method::POST, "/identity.v1.IdentityService/GetMember"),
            "identity.v1.IdentityService/GetMember"
        );
    }
}
