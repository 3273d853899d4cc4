//! Property tests of the split (deterministic, monotonic, proportional, 0% and 100%),
//! of the stable hash against an independent implementation, and of the parsers
//! (they refuse or accept, never panic).

use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proxy_routing::duration::parse_duration;
use proxy_routing::hash::{BUCKETS, SPLIT_KEY, siphash24};
use proxy_routing::{
    Bucket, ProxyConfig, RouteTable, Side, StickyKey, StickyKeySource, VirtualService, goes_to_new,
};

const CONFIG: &str = "
upstreams:
  legacy-api.members.svc.cluster.local: {address: \"127.0.0.1:3000\", role: legacy}
  identity.members.svc.cluster.local: {address: \"127.0.0.1:8080\", role: new}
";

/// A table with one catch-all rule of weights `legacy` and `new`.
fn table(legacy: u32, new: u32) -> RouteTable {
    let manifest = format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: member-api, namespace: members}}
spec:
  http:
  - name: all
    route:
    - destination: {{host: legacy-api}}
      weight: {legacy}
    - destination: {{host: identity}}
      weight: {new}
"
    );
    let vs = VirtualService::parse(&manifest, None).unwrap();
    RouteTable::build(&vs, &ProxyConfig::from_yaml(CONFIG).unwrap()).unwrap()
}

fn side(table: &RouteTable, key: &StickyKey) -> Side {
    table.routes()[0].side_for(key.bucket())
}

/// Keys shaped like the ones the proxy sees: member ids, tokens, addresses.
fn key_of(shape: u8, seed: u64, index: u32) -> String {
    match shape % 4 {
        0 => (seed % 1_000_000 + u64::from(index)).to_string(),
        1 => format!("{seed:016x}{index:08x}-session"),
        2 => format!("10.{}.{}.{}", seed % 256, index / 256 % 256, index % 256),
        _ => format!("member-{seed}-{index}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn deterministic(token in "[A-Za-z0-9._~+/-]{1,64}", basis_points in 0u32..=BUCKETS) {
        // Every replica and every version decides alike: the bucket is the stable hash
        // of the bearer's bytes, reduced to BUCKETS as documented (computed here on its
        // own), and nothing of the process (no random seed, no state) enters it.
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        let key = StickyKey::from_request(&StickyKeySource::JwtSub, &headers, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let expected = ((u128::from(siphash24(SPLIT_KEY, token.as_bytes())) * u128::from(BUCKETS)) >> 64) as u32;
        prop_assert_eq!(key.bucket().value(), expected);
        let side = if expected < basis_points { Side::New } else { Side::Legacy };
        prop_assert_eq!(key.side(basis_points), side);
    }

    #[test]
    fn monotonic_in_the_share(key in any::<Vec<u8>>(), a in 0u32..=BUCKETS, b in 0u32..=BUCKETS) {
        let (low, high) = (a.min(b), a.max(b));
        let bucket = Bucket::of(&key);
        if goes_to_new(bucket, low) {
            prop_assert!(goes_to_new(bucket, high), "raising {low} to {high} moved {bucket:?} back to legacy");
        }
    }

    #[test]
    fn monotonic_in_the_weights(
        key in "[a-z0-9]{1,24}",
        legacy in 0u32..1_000,
        new in 0u32..1_000,
        raise in 0u32..1_000,
        lower in 0u32..1_000,
    ) {
        // Raising the new weight or lowering the legacy weight moves users only to new.
        prop_assume!(legacy + new > 0);
        let lowered = legacy.saturating_sub(lower);
        let before = table(legacy, new);
        let after = table(lowered, new + raise);
        let key = StickyKey::of(proxy_routing::KeyKind::JwtSubject, key.as_bytes());
        if side(&before, &key) == Side::New {
            prop_assert_eq!(side(&after, &key), Side::New);
        }
        let expected = u64::from(new) * 10_000 / u64::from(legacy + new);
        prop_assert_eq!(u64::from(before.routes()[0].new_share_basis_points()), expected);
    }

    #[test]
    fn nobody_at_zero_everybody_at_full(key in any::<Vec<u8>>()) {
        let bucket = Bucket::of(&key);
        prop_assert!(bucket.value() < BUCKETS);
        prop_assert!(!goes_to_new(bucket, 0));
        prop_assert!(goes_to_new(bucket, BUCKETS));
    }

    #[test]
    fn the_hash_is_siphash_2_4(k0 in any::<u64>(), k1 in any::<u64>(), data in any::<Vec<u8>>()) {
        // std's deprecated SipHasher is SipHash-2-4; it checks ours while it exists, and
        // the golden values in hash.rs hold ours steady after that.
        #[allow(deprecated)]
        let expected = {
            use std::hash::Hasher;
            let mut hasher = std::hash::SipHasher::new_with_keys(k0, k1);
            hasher.write(&data);
            hasher.finish()
        };
        prop_assert_eq!(siphash24((k0, k1), &data), expected);
    }

    #[test]
    fn parsers_never_panic(text in any::<String>()) {
        let _ = VirtualService::parse_all(&text);
        let _ = ProxyConfig::from_yaml(&text);
        let _ = parse_duration(&text);
        let _ = proxy_routing::split::jwt_subject(&text);
    }

    #[test]
    fn yaml_like_inputs_never_panic(lines in prop::collection::vec("[ a-zA-Z:{}\\[\\],\"'0-9./*^$?|-]{0,30}", 0..20)) {
        let text = format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\n{}", lines.join("\n"));
        if let Ok(all) = VirtualService::parse_all(&text) {
            for vs in all {
                let _ = RouteTable::build(&vs, &ProxyConfig::from_yaml(CONFIG).unwrap());
            }
        }
    }

    #[test]
    fn durations_read_back(millis in 0u64..10_000_000, nanos in 0u64..1_000_000) {
        let text = format!("{millis}ms{nanos}ns");
        let expected = std::time::Duration::from_millis(millis) + std::time::Duration::from_nanos(nanos);
        prop_assert_eq!(parse_duration(&text).unwrap(), expected);
    }
}

proptest! {
    // Each case hashes 20 000 keys: fewer cases, and a tolerance of 5.6 standard
    // deviations at the worst share (50%), so that a correct hash fails about once in
    // a hundred million runs.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn proportional(seed in any::<u64>(), shape in any::<u8>(), basis_points in 0u32..=BUCKETS) {
        const KEYS: u32 = 20_000;
        let to_new = (0..KEYS)
            .filter(|index| goes_to_new(Bucket::of(key_of(shape, seed, *index).as_bytes()), basis_points))
            .count();
        let fraction = to_new as f64 / f64::from(KEYS);
        let share = f64::from(basis_points) / f64::from(BUCKETS);
        prop_assert!((fraction - share).abs() <= 0.02, "{fraction} of keys to new at share {share}");
    }
}

/// Users keep their side across deploys: these buckets were computed once and must never
/// change (a changed split key or reduction would move users between the two sides).
#[test]
fn known_keys_keep_their_buckets() {
    for (key, bucket) in GOLDEN {
        assert_eq!(Bucket::of(key.as_bytes()).value(), *bucket, "{key}");
    }
}

/// Member ids, an address and a legacy token, with their buckets.
const GOLDEN: &[(&str, u32)] = &[
    ("1", 618),
    ("42", 4971),
    ("1000001", 7708),
    ("10.0.0.1", 9954),
    ("member-7", 9635),
    ("WQBNCg7T1oV5rnGpT5cLb4pY", 2070),
];

#[test]
fn sequential_member_ids_spread_evenly() {
    // The keys of a real rollout: member ids 1..=100 000. Each percent of buckets gets
    // its percent of members, within a tenth of a percent of all members.
    let mut per_percent = [0u32; 100];
    for id in 1..=100_000u32 {
        per_percent[(Bucket::of(id.to_string().as_bytes()).value() / 100) as usize] += 1;
    }
    for (percent, count) in per_percent.iter().enumerate() {
        assert!(
            (900..=1_100).contains(count),
            "percent {percent} holds {count} of 100 000 members"
        );
    }
    assert_eq!(SPLIT_KEY.0, u64::from_le_bytes(*b"member-m"));
}
