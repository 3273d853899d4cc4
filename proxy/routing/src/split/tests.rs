use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

fn jwt(claims: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
    format!("{header}.{}.c2lnbmF0dXJl", URL_SAFE_NO_PAD.encode(claims))
}

fn request(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

fn key(source: &StickyKeySource, pairs: &[(&str, &str)]) -> StickyKey {
    StickyKey::from_request(source, &request(pairs), CLIENT)
}

#[test]
fn the_default_chain_is_jwt_sub_then_token_then_address() {
    let by_sub = key(
        &StickyKeySource::JwtSub,
        &[(
            "authorization",
            &format!("Bearer {}", jwt(r#"{"sub":"42","exp":1}"#)),
        )],
    );
    assert_eq!(by_sub, StickyKey::of(KeyKind::JwtSubject, b"42"));
    let opaque = key(
        &StickyKeySource::JwtSub,
        &[("authorization", "Bearer a1b2c3")],
    );
    assert_eq!(opaque, StickyKey::of(KeyKind::BearerToken, b"a1b2c3"));
    let anonymous = key(&StickyKeySource::JwtSub, &[]);
    assert_eq!(
        anonymous,
        StickyKey::of(KeyKind::ClientAddress, b"203.0.113.7")
    );
    assert_eq!(
        anonymous.bucket().value(),
        1962,
        "pinned in hash.rs as well"
    );
    let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
    let dual_stack = StickyKey::from_request(&StickyKeySource::JwtSub, &HeaderMap::new(), mapped);
    assert_eq!(
        dual_stack, anonymous,
        "an IPv4-mapped address is the IPv4 address"
    );
}

#[test]
fn the_same_user_keeps_its_bucket_across_tokens() {
    let first = jwt(r#"{"sub":"42","jti":"a","iat":1}"#);
    let second = jwt(r#"{"sub":"42","jti":"b","iat":2}"#);
    let a = key(
        &StickyKeySource::JwtSub,
        &[("authorization", &format!("Bearer {first}"))],
    );
    let b = key(
        &StickyKeySource::JwtSub,
        &[("authorization", &format!("Bearer {second}"))],
    );
    assert_eq!(a.bucket(), b.bucket());
    // A header carrying the same identifier lands in the same bucket.
    let header = StickyKeySource::Header(HeaderName::from_static("x-member-id"));
    assert_eq!(key(&header, &[("x-member-id", "42")]).bucket(), a.bucket());
}

#[test]
fn the_token_is_read_as_the_legacy_api_reads_it() {
    for header in [
        "Token a1b2c3",
        "Bearer \"a1b2c3\"",
        "Token token=\"a1b2c3\", nonce=1",
    ] {
        assert_eq!(
            key(&StickyKeySource::JwtSub, &[("authorization", header)]),
            StickyKey::of(KeyKind::BearerToken, b"a1b2c3"),
            "{header}"
        );
    }
    for header in ["bearer a1b2c3", "Basic YTpi", "Bearer ", "Bearera1b2c3"] {
        assert_eq!(
            key(&StickyKeySource::JwtSub, &[("authorization", header)]).kind(),
            KeyKind::ClientAddress,
            "{header}"
        );
    }
}

#[test]
fn jwt_payloads_are_read_defensively() {
    assert_eq!(
        jwt_subject(&jwt(r#"{"sub":"u-1"}"#)).as_deref(),
        Some("u-1")
    );
    let padded = format!("e30.{}.sig", URL_SAFE.encode(r#"{"sub":"abc"}"#));
    assert!(padded.contains('='));
    assert_eq!(jwt_subject(&padded).as_deref(), Some("abc"));
    for token in [
        jwt(r#"{"sub":42}"#),
        jwt(r#"{"sub":""}"#),
        jwt(r#"{"sub":null}"#),
        jwt(r#"{"iss":"x"}"#),
        jwt(r#"["sub"]"#),
        jwt("not json"),
        "a.b".to_owned(),
        "a.%%%.c".to_owned(),
        format!("{}.x.y.z", jwt(r#"{"sub":"a"}"#)),
        format!(
            "e30.{}.sig",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{}"}}"#, "a".repeat(9_000)))
        ),
    ] {
        assert_eq!(jwt_subject(&token), None, "{token}");
    }
    let unsigned_sub_ignored = key(
        &StickyKeySource::JwtSub,
        &[("authorization", &format!("Bearer {}", jwt(r#"{"sub":7}"#)))],
    );
    assert_eq!(unsigned_sub_ignored.kind(), KeyKind::BearerToken);
}

#[test]
fn configured_header_or_cookie_falls_back_to_the_chain() {
    let header = StickyKeySource::Header(HeaderName::from_static("x-member-id"));
    assert_eq!(
        key(&header, &[("X-Member-Id", "m-9")]),
        StickyKey::of(KeyKind::Header, b"m-9")
    );
    assert_eq!(
        key(&header, &[("x-member-id", "")]).kind(),
        KeyKind::ClientAddress
    );
    assert_eq!(
        key(&header, &[("authorization", "Bearer t")]).kind(),
        KeyKind::BearerToken
    );

    let cookie = StickyKeySource::Cookie("_member_session".into());
    let with_cookie = [
        ("cookie", "theme=dark; _member_session=s-1"),
        ("cookie", "_member_session=s-2"),
    ];
    assert_eq!(
        key(&cookie, &with_cookie),
        StickyKey::of(KeyKind::Cookie, b"s-1")
    );
    assert_eq!(
        key(&cookie, &[("cookie", "_member_session=\"s-3\"")]),
        StickyKey::of(KeyKind::Cookie, b"s-3")
    );
    assert_eq!(
        key(&cookie, &[("cookie", "_member_session=; other=1")]).kind(),
        KeyKind::ClientAddress
    );
    assert_eq!(
        key(&cookie, &[("cookie", "x_member_session=s-1")]).kind(),
        KeyKind::ClientAddress
    );
    assert_eq!(
        key(&cookie, &[("cookie", "_member_session=\"\"")]).kind(),
        KeyKind::ClientAddress
    );
}

#[test]
fn the_key_is_kept_only_as_its_bucket() {
    let token = jwt(r#"{"sub":"secret-subject"}"#);
    let printed = format!(
        "{:?}",
        key(
            &StickyKeySource::JwtSub,
            &[("authorization", &format!("Bearer {token}"))]
        )
    );
    assert!(
        !printed.contains("secret") && !printed.contains(&token),
        "{printed}"
    );
}

#[test]
fn sides_split_at_the_share() {
    let bucket = |value| Bucket::new(value).unwrap();
    assert!(goes_to_new(bucket(0), 1));
    assert!(!goes_to_new(bucket(0), 0));
    assert!(goes_to_new(bucket(9_999), 10_000));
    assert!(!goes_to_new(bucket(100), 100));
    assert_eq!(side_of(bucket(99), 100), Side::New);
    assert_eq!(side_of(bucket(100), 100), Side::Legacy);
    assert_eq!(Side::Legacy.other(), Side::New);
    assert_eq!(Side::New.to_string(), "new");
}
