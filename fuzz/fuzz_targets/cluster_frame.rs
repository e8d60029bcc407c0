//! Arbitrary bytes as an internode stream (`fjord-cluster-codec`): what an
//! unauthenticated peer can send before its Hello is checked. Frames are
//! taken off a buffer under a small cap; nothing may panic or allocate
//! beyond the cap; every decoded frame re-encodes to the bytes it came
//! from, and each fixed-layout body that decodes re-encodes to itself.
#![no_main]

use bytes::BytesMut;
use fjord_cluster_codec::{
    Heartbeat, HeartbeatAck, Hello, ReplicaFetch, ReplicaFetchResponse, ServiceCall, decode, encode,
};
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut consumed = 0usize;
    while let Ok(Some(f)) = decode(&mut buf, MAX) {
        let mut out = BytesMut::new();
        encode(&f, &mut out).expect("a decoded frame encodes");
        assert_eq!(&out[..], &data[consumed..consumed + out.len()], "re-encoding gives the input back");
        consumed += out.len();
        if let Ok(h) = Hello::decode(f.body.clone()) {
            assert_eq!(h.encode().expect("decoded ids fit").as_ref(), f.body.as_ref());
        }
        if let Ok(h) = Heartbeat::decode(f.body.clone()) {
            assert_eq!(h.encode().as_ref(), f.body.as_ref());
        }
        if let Ok(h) = HeartbeatAck::decode(f.body.clone()) {
            assert_eq!(h.encode().as_ref(), f.body.as_ref());
        }
        if let Ok(c) = ServiceCall::decode(f.body.clone()) {
            assert_eq!(c.encode().expect("decoded names fit").as_ref(), f.body.as_ref());
        }
        if let Ok(r) = ReplicaFetch::decode(f.body.clone()) {
            assert_eq!(r.encode().expect("decoded fetches fit").as_ref(), f.body.as_ref());
        }
        if let Ok(r) = ReplicaFetchResponse::decode(f.body.clone()) {
            assert_eq!(r.encode().expect("decoded answers fit").as_ref(), f.body.as_ref());
        }
    }
});
