//! The stable hash behind the split: SipHash-2-4 (Aumasson and Bernstein, 2012) with a
//! fixed, public key, written out here so that every replica and every release maps a
//! key to the same bucket. `std`'s `RandomState` is seeded per process and its
//! algorithm may change; it must not be used for this.
//!
//! The 64-bit hash is reduced to a bucket in `0..10_000` by multiply-and-shift
//! (`hash * 10_000 >> 64`), which uses the high bits and is unbiased to within
//! 10_000 / 2^64. Changing [`SPLIT_KEY`] or the reduction would move users between
//! sides: the golden values in the tests below guard against that.

use std::fmt;

/// The number of buckets: one per basis point of weight.
pub const BUCKETS: u32 = 10_000;

/// The SipHash key of the split: the ASCII of `member-migration`, as two little-endian
/// words. It is not a secret: the split is not a security boundary, since a client may
/// send any token it likes.
pub const SPLIT_KEY: (u64, u64) = (
    u64::from_le_bytes(*b"member-m"),
    u64::from_le_bytes(*b"igration"),
);

/// One of the [`BUCKETS`] a key falls into.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket(u16);

impl Bucket {
    /// The bucket of a key's bytes.
    pub fn of(key: &[u8]) -> Bucket {
        let hash = siphash24(SPLIT_KEY, key);
        let bucket = (u128::from(hash) * u128::from(BUCKETS)) >> 64;
        Bucket(u16::try_from(bucket).expect("below BUCKETS"))
    }

    /// A bucket by number, `None` from [`BUCKETS`] on.
    pub fn new(value: u32) -> Option<Bucket> {
        u16::try_from(value)
            .ok()
            .filter(|_| value < BUCKETS)
            .map(Bucket)
    }

    /// Its number, in `0..BUCKETS`.
    pub fn value(self) -> u32 {
        u32::from(self.0)
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bucket({})", self.0)
    }
}

/// SipHash-2-4 of `data` under `key` (two compression rounds per 8-byte word, four
/// finalisation rounds).
pub fn siphash24(key: (u64, u64), data: &[u8]) -> u64 {
    let mut state = State {
        v0: key.0 ^ 0x736f_6d65_7073_6575,
        v1: key.1 ^ 0x646f_7261_6e64_6f6d,
        v2: key.0 ^ 0x6c79_6765_6e65_7261,
        v3: key.1 ^ 0x7465_6462_7974_6573,
    };
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        state.compress(u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    // The length modulo 256 in the top byte, as the algorithm specifies.
    last[7] = (data.len() & 0xff) as u8;
    state.compress(u64::from_le_bytes(last));
    state.v2 ^= 0xff;
    for _ in 0..4 {
        state.round();
    }
    state.v0 ^ state.v1 ^ state.v2 ^ state.v3
}

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    fn compress(&mut self, word: u64) {
        self.v3 ^= word;
        self.round();
        self.round();
        self.v0 ^= word;
    }

    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key `00 01 .. 0f` of the SipHash paper's test vectors.
    const PAPER_KEY: (u64, u64) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    #[test]
    fn matches_the_papers_vectors() {
        let message: Vec<u8> = (0..64).collect();
        // Appendix A of the paper: the 15-byte message 00 .. 0e.
        assert_eq!(siphash24(PAPER_KEY, &message[..15]), 0xa129_ca61_49be_45e5);
        // The reference implementation's vectors for lengths 0, 1, 8 and 63.
        assert_eq!(siphash24(PAPER_KEY, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(PAPER_KEY, &message[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(PAPER_KEY, &message[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(PAPER_KEY, &message[..63]), 0x958a_324c_eb06_4572);
    }

    #[test]
    fn buckets_never_change_across_releases() {
        // Pinned: a change here moves real users between legacy and new.
        let golden = [
            ("", GOLDEN[0]),
            ("alice", GOLDEN[1]),
            ("42", GOLDEN[2]),
            ("203.0.113.7", GOLDEN[3]),
        ];
        for (key, bucket) in golden {
            assert_eq!(Bucket::of(key.as_bytes()).value(), bucket, "{key:?}");
        }
    }

    const GOLDEN: [u32; 4] = [73, 9915, 4971, 1962];

    #[test]
    fn bucket_numbers_stay_in_range() {
        assert_eq!(Bucket::new(0).map(Bucket::value), Some(0));
        assert_eq!(Bucket::new(9_999).map(Bucket::value), Some(9_999));
        assert_eq!(Bucket::new(10_000), None);
        assert_eq!(Bucket::new(70_000), None);
    }
}
