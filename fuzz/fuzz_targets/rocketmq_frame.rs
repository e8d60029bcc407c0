//! Arbitrary bytes as a RocketMQ remoting stream, then as the bodies the
//! gateway decodes (pulled/queried messages, batch sends, JSON heartbeats
//! and lock requests, offset message ids): clients send all of them before
//! any authentication. No decoder may panic or allocate beyond what the
//! input holds (libFuzzer's -malloc_limit_mb catches that); a decoded
//! command re-encodes to a frame that decodes to the same command.
#![no_main]

use bytes::{Bytes, BytesMut};
use fjord_rocketmq_codec::bodies::{HeartbeatData, LockBatchRequest, TopicRouteData, from_json};
use fjord_rocketmq_codec::frame::decode_stream;
use fjord_rocketmq_codec::message::{decode_batch, decode_offset_msg_id};
use fjord_rocketmq_codec::MessageExt;
use libfuzzer_sys::fuzz_target;

const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(cmd)) = decode_stream(&mut buf, MAX_FRAME) {
        let again = decode_stream(&mut BytesMut::from(&cmd.encode()[..]), MAX_FRAME)
            .expect("a re-encoded command decodes")
            .expect("whole");
        assert_eq!((again.code, again.opaque, again.flag), (cmd.code, cmd.opaque, cmd.flag));
        assert_eq!(again.body, cmd.body);
        let (mut a, mut b) = (again.ext_fields.clone(), cmd.ext_fields.clone());
        a.sort();
        b.sort();
        b.dedup_by(|x, y| x.0 == y.0);
        a.dedup_by(|x, y| x.0 == y.0);
        assert_eq!(a.len(), b.len());
        let _ = from_json::<HeartbeatData>(&cmd.body);
        let _ = from_json::<LockBatchRequest>(&cmd.body);
    }
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(msgs) = MessageExt::decode_all(bytes.clone()) {
        for m in msgs {
            let mut out = BytesMut::new();
            m.encode_into(&mut out);
            let back = MessageExt::decode_all(out.freeze()).expect("re-encoded message decodes");
            assert_eq!(back[0].body, m.body);
            assert_eq!(back[0].topic, m.topic);
        }
    }
    let _ = decode_batch(bytes);
    let _ = from_json::<TopicRouteData>(data);
    let _ = decode_offset_msg_id(&String::from_utf8_lossy(data));
});
