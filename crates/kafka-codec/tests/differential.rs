//! The guard never rejects a valid request: every supported API at every
//! supported version, encoded by `kafka-protocol` from default, fully
//! populated and proptest-seeded random contents, goes through
//! `decode_request` and comes back equal to what was encoded.

mod common;

use common::Gen;
use fjord_kafka_codec::kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use fjord_kafka_codec::{SUPPORTED_APIS, decode_request};
use proptest::prelude::*;

fn versions() -> impl Iterator<Item = (ApiKey, i16)> {
    SUPPORTED_APIS.iter().flat_map(|&(api, min, max)| (min..=max).map(move |v| (api, v)))
}

fn assert_round_trip(api: ApiKey, version: i16, header: &RequestHeader, request: &RequestKind, what: &str) {
    let bytes = common::encode(header, request, api, version);
    let len = bytes.len();
    let frame = decode_request(bytes).unwrap_or_else(|e| panic!("{api:?} v{version} ({what}, {len} bytes): {e}"));
    assert_eq!(frame.api, api);
    assert_eq!(&frame.header, header, "{api:?} v{version} ({what}): header");
    assert_eq!(&frame.request, request, "{api:?} v{version} ({what}): body");
}

#[test]
fn default_requests_of_every_version_decode() {
    for (api, v) in versions() {
        let header = common::header(api, v, &mut Gen::new(v as u64));
        assert_round_trip(api, v, &header, &common::default_request(api), "default");
    }
}

#[test]
fn fully_populated_requests_of_every_version_decode() {
    for (api, v) in versions() {
        for seed in 0..16 {
            let mut g = Gen::full(seed);
            let header = common::header(api, v, &mut g);
            let request = common::request(api, v, &mut g);
            assert_round_trip(api, v, &header, &request, &format!("full, seed {seed}"));
        }
    }
}

#[test]
fn random_requests_of_every_version_decode() {
    for (api, v) in versions() {
        for seed in 0..64 {
            let mut g = Gen::new(seed);
            let header = common::header(api, v, &mut g);
            let request = common::request(api, v, &mut g);
            assert_round_trip(api, v, &header, &request, &format!("random, seed {seed}"));
        }
    }
}

#[test]
fn every_supported_version_is_covered() {
    let n: usize = SUPPORTED_APIS.iter().map(|&(_, min, max)| (max - min + 1) as usize).sum();
    assert_eq!(versions().count(), n);
    assert!(n > 150, "{n}");
}

fn api_version() -> impl Strategy<Value = (ApiKey, i16)> {
    (0..SUPPORTED_APIS.len()).prop_flat_map(|i| {
        let (api, min, max) = SUPPORTED_APIS[i];
        (Just(api), min..=max)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn proptest_requests_decode((api, v) in api_version(), seed in any::<u64>(), full in any::<bool>()) {
        let mut g = if full { Gen::full(seed) } else { Gen::new(seed) };
        let header = common::header(api, v, &mut g);
        let request = common::request(api, v, &mut g);
        assert_round_trip(api, v, &header, &request, &format!("proptest seed {seed}"));
    }
}

/// The fuzz seeds (fuzz/seeds/kafka_request, written by fuzz/gen_corpus.rs)
/// are valid requests, except the three frames that used to abort.
#[test]
fn fuzz_seeds_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/kafka_request");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let mut n = 0;
    for entry in entries {
        let path = entry.expect("seed entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let bytes = std::fs::read(&path).expect("read seed");
        let decoded = decode_request(bytes.into());
        assert_eq!(decoded.is_ok(), !name.starts_with("killer_"), "{name}: {decoded:?}");
        n += 1;
    }
    assert!(n >= 10, "{n} seeds in {}", dir.display());
}
