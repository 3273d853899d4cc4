//! Feeds arbitrary bytes to the VirtualService parser, the route table builder and the
//! proxy config parser (see `proxy_routing::fuzzing`); any panic is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = proxy_routing::fuzzing::parse(data);
});
