//! The futures of the calls other services make most stay small: each call's future is
//! moved into place (boxed by the gRPC server) and copied whole, so a rare path's deep
//! state carried by every call costs every call. `introspect` carried the migrating
//! path's 4 KiB until that path was boxed.

mod support;

use identity_core::ThrottleConfig;

fn size<F: std::future::Future>(_: &F) -> usize {
    std::mem::size_of::<F>()
}

#[tokio::test]
async fn the_futures_of_the_hot_reads_stay_small() {
    let f = support::fixture(ThrottleConfig::default()).await;
    let token = String::from("a token");
    for (call, bytes) in [
        ("introspect", size(&f.id.introspect(&token))),
        ("get_member", size(&f.id.get_member(1))),
        ("batch_get_members", size(&f.id.batch_get_members(&[1, 2]))),
    ] {
        assert!(bytes <= 1024, "{call}'s future is {bytes} bytes");
    }
}
