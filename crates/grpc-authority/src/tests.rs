use proptest::prelude::*;

use super::*;

/// A frame: header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// A client's SETTINGS frame, as every connection starts after the preface.
fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[0, 0x2, 0, 0, 0, 0])
}

fn request(authority: &str, path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

/// A connection's client side: preface, settings, then each request as a
/// HEADERS frame (encoded with one encoder: later ones refer to its
/// dynamic table) followed by a DATA frame.
fn connection(requests: &[Vec<(Vec<u8>, Vec<u8>)>]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(settings());
    let mut enc = loona_hpack::Encoder::new();
    for (i, headers) in requests.iter().enumerate() {
        let stream = 1 + 2 * i as u32;
        let block = enc.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
        out.extend(frame(HEADERS, END_HEADERS, stream, &block));
        out.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\x02hi"));
    }
    out
}

/// The frames of `bytes` after the preface: (type, flags, stream, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    assert!(bytes.starts_with(PREFACE));
    let mut at = PREFACE.len();
    let mut out = Vec::new();
    while at < bytes.len() {
        let len = (usize::from(bytes[at]) << 16) | (usize::from(bytes[at + 1]) << 8) | usize::from(bytes[at + 2]);
        let stream = u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]]);
        out.push((bytes[at + 3], bytes[at + 4], stream, bytes[at + 9..at + 9 + len].to_vec()));
        at += 9 + len;
    }
    out
}

/// The header lists h2 would decode from `bytes` (one decoder for the
/// connection, header blocks joined across CONTINUATION frames).
fn decoded(bytes: &[u8]) -> Vec<Vec<(String, String)>> {
    let mut dec = loona_hpack::Decoder::new();
    let mut out = Vec::new();
    let mut block = Vec::new();
    for (kind, flags, _, payload) in frames(bytes) {
        if kind == HEADERS || kind == CONTINUATION {
            block.extend(payload);
            if flags & END_HEADERS != 0 {
                let h = dec.decode(&block).unwrap();
                out.push(
                    h.into_iter()
                        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                        .collect(),
                );
                block.clear();
            }
        }
    }
    out
}

fn rewrite(input: &[u8], chunk: usize) -> Result<Vec<u8>, AuthorityError> {
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        r.push(c)?;
        loop {
            assert!(r.output().len() < OUTPUT_HIGH + MAX_PENDING + 64 * 1024, "output waits in bounds");
            let part = r.output().split();
            if part.is_empty() {
                break;
            }
            out.extend_from_slice(&part);
            r.resume()?;
        }
    }
    Ok(out)
}

#[test]
fn a_connection_with_a_valid_authority_passes_untouched() {
    let input = connection(&[request("127.0.0.1:8081", "/a"), request("127.0.0.1:8081", "/b")]);
    let mut r = Rewriter::new();
    r.push(&input[..40]).unwrap();
    assert!(!r.finished());
    r.push(&input[40..]).unwrap();
    assert_eq!(&r.output()[..], &input[..]);
    r.output().clear();
    assert!(r.finished(), "steps aside once the first request decided");
}

/// What rocketmq-python-client 5.x (gRPC C-core) sends when given two
/// endpoints: the target's path as the authority. Every request of the
/// connection loses it — the second one refers to the client's dynamic
/// table, which the rewritten blocks never fill on h2's side — and the
/// other frames pass as they were.
#[test]
fn an_invalid_authority_is_dropped_from_every_request_of_the_connection() {
    let bad = "127.0.0.1:8081,127.0.0.2:8081";
    let input = connection(&[request(bad, "/apache.rocketmq.v2.MessagingService/QueryRoute"), request(bad, "/b")]);
    for chunk in [1, 7, 4096] {
        let out = rewrite(&input, chunk).unwrap();
        let lists = decoded(&out);
        assert_eq!(lists.len(), 2);
        for (list, path) in lists.iter().zip(["/apache.rocketmq.v2.MessagingService/QueryRoute", "/b"]) {
            assert!(list.iter().all(|(n, _)| n != ":authority"), "{list:?}");
            assert!(list.contains(&(":path".to_string(), path.to_string())), "{list:?}");
            assert!(list.contains(&("content-type".to_string(), "application/grpc".to_string())));
        }
        let f = frames(&out);
        assert_eq!(f[0], frames(&input)[0], "settings untouched");
        assert_eq!((f[1].0, f[1].1 & END_HEADERS, f[1].2), (HEADERS, END_HEADERS, 1));
        assert_eq!((f[2].0, f[2].2, &f[2].3[..]), (0x0, 1, &b"\0\0\0\0\x02hi"[..]), "data untouched");
    }
}

/// A rewritten block bigger than a frame goes out as HEADERS and
/// CONTINUATION frames, the end of stream on the first.
#[test]
fn a_large_rewritten_block_is_split_into_frames_h2_accepts() {
    let mut headers = request("a:1,b:2", "/x");
    headers.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let mut input = PREFACE.to_vec();
    let block = loona_hpack::Encoder::new().encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
    // Sent as three frames itself, the end of stream with the first.
    let (a, rest) = block.split_at(10_000);
    let (b, c) = rest.split_at(10_000);
    input.extend(frame(HEADERS, END_STREAM, 3, a));
    input.extend(frame(CONTINUATION, 0, 3, b));
    input.extend(frame(CONTINUATION, END_HEADERS, 3, c));
    let out = rewrite(&input, 999).unwrap();
    let f = frames(&out);
    assert!(f.len() >= 3 && f.iter().all(|(_, _, s, p)| *s == 3 && p.len() <= MAX_FRAME));
    assert_eq!((f[0].0, f[0].1), (HEADERS, END_STREAM));
    assert!(f[1..].iter().all(|(k, _, _, _)| *k == CONTINUATION));
    assert_eq!(f.last().map(|x| x.1), Some(END_HEADERS));
    let list = &decoded(&out)[0];
    assert!(list.contains(&("x-big".to_string(), "v".repeat(40_000))));
    assert!(list.iter().all(|(n, _)| n != ":authority"));
}

/// Padding and priority are taken off the block before decoding.
#[test]
fn a_padded_prioritised_headers_frame_is_read_whole() {
    let headers = request("a:1,b:2", "/p");
    let block = loona_hpack::Encoder::new().encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
    let mut payload = vec![3];
    payload.extend([0, 0, 0, 0, 16]);
    payload.extend(&block);
    payload.extend([0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS | PADDED | PRIORITY, 1, &payload));
    let list = &decoded(&rewrite(&input, 5).unwrap())[0];
    assert!(list.contains(&(":path".to_string(), "/p".to_string())));
}

/// Oversized frames: handed to h2 untouched before anything was decided
/// (h2 refuses them with its own error), refused here while rewriting;
/// neither waits to buffer them.
#[test]
fn an_oversized_frame_is_never_buffered() {
    let mut huge = PREFACE.to_vec();
    huge.extend([0xff, 0xff, 0xff, 0x0, 0, 0, 0, 0, 1]);
    let mut r = Rewriter::new();
    r.push(&huge).unwrap();
    assert_eq!(&r.output()[..], &huge[..], "passed to h2 at once");

    let mut input = connection(&[request("a:1,b:2", "/x")]);
    input.extend([0xff, 0xff, 0xff, 0x0, 0, 0, 0, 0, 3]);
    assert!(matches!(rewrite(&input, 64), Err(AuthorityError::TooLarge(_))));
}

/// An HPACK bomb: each byte of a block names a 4 KB entry of the
/// client's dynamic table. Decoded, the list is refused past 1 MiB while
/// rewriting, instead of being built.
#[test]
fn a_header_list_that_decodes_past_the_limit_is_refused() {
    let mut input = connection(&[request("a:1,b:2", "/x")]);
    // Into the dynamic table: `x: 4000 bytes`.
    let mut block = vec![0x40, 1, b'x'];
    let mut len = BytesMut::new();
    integer(&mut len, 0, 7, 4000);
    block.extend(&len);
    block.extend(vec![b'v'; 4000]);
    input.extend(frame(HEADERS, END_HEADERS, 3, &block));
    // Then 300 references to it: 1.2 MB decoded.
    let mut bomb = input.clone();
    bomb.extend(frame(HEADERS, END_HEADERS, 5, &[0xbe; 300]));
    assert!(matches!(rewrite(&bomb, 4096), Err(AuthorityError::TooLarge(_))));
    // 200 references, 800 KB, in each of 50 blocks arriving at once: the
    // output is made as it is taken, not all at once.
    for i in 0..50 {
        input.extend(frame(HEADERS, END_HEADERS, 7 + 2 * i, &[0xbe; 200]));
    }
    let mut r = Rewriter::new();
    r.push(&input).unwrap();
    let mut total = 0;
    loop {
        assert!(r.output().len() < 2 * OUTPUT_HIGH);
        let n = r.output().split().len();
        if n == 0 {
            break;
        }
        total += n;
        r.resume().unwrap();
    }
    assert!(total > 50 * 200 * 4000, "{total}");
}

#[test]
fn what_is_not_http2_passes_untouched() {
    let input = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
    assert_eq!(rewrite(&input, 3).unwrap(), input);
}

#[test]
fn hpack_integers_follow_rfc_7541() {
    // C.1.1 / C.1.2: 10 and 1337 with a 5-bit prefix.
    let mut b = BytesMut::new();
    integer(&mut b, 0, 5, 10);
    integer(&mut b, 0, 5, 1337);
    assert_eq!(&b[..], &[0x0a, 0x1f, 0x9a, 0x0a]);
}

proptest! {
    /// However the bytes arrive, the output is the same, and h2 decodes
    /// every request the client sent, without an invalid authority.
    #[test]
    fn chunking_changes_nothing(
        paths in proptest::collection::vec("/[a-z]{1,20}", 1..6),
        valid in any::<bool>(),
        chunk in 1usize..300,
    ) {
        let authority = if valid { "h:1" } else { "h:1,i:2" };
        let requests: Vec<_> = paths.iter().map(|p| request(authority, p)).collect();
        let input = connection(&requests);
        let whole = rewrite(&input, input.len()).unwrap();
        prop_assert_eq!(&rewrite(&input, chunk).unwrap(), &whole);
        if valid {
            prop_assert_eq!(&whole, &input);
        }
        let lists = decoded(&whole);
        prop_assert_eq!(lists.len(), paths.len());
        for (list, p) in lists.iter().zip(&paths) {
            prop_assert!(list.contains(&(":path".to_string(), p.clone())));
            prop_assert_eq!(list.iter().any(|(n, _)| n == ":authority"), valid);
        }
    }
}

/// Golden bytes: the first 824 bytes rocketmq-python-client 5.1.2 (gRPC
/// C-core) sent on a connection to `127.0.0.1:P;127.0.0.2:P` — preface,
/// settings, window update, and its route query with `:authority:
/// 127.0.0.1:44489,127.0.0.2:44489` (Huffman-free literals added to its
/// dynamic table). Captured with a plain TCP server answering SETTINGS.
#[test]
fn the_python_clients_route_query_reaches_h2_without_its_authority() {
    let input = include_bytes!("../golden/python-client-5.1.2-two-endpoints.bin");
    let sent = decoded(input);
    let authority = |l: &Vec<(String, String)>| l.iter().find(|(n, _)| n == ":authority").map(|(_, v)| v.clone());
    assert_eq!(authority(&sent[0]).as_deref(), Some("127.0.0.1:44489,127.0.0.2:44489"));
    assert!(Authority::try_from(authority(&sent[0]).unwrap_or_default().as_str()).is_err(), "h2 refuses it");
    for chunk in [1, 100, input.len()] {
        let out = rewrite(input, chunk).unwrap();
        let lists = decoded(&out);
        assert_eq!(lists.len(), sent.len());
        for (got, was) in lists.iter().zip(&sent) {
            let kept: Vec<_> = was.iter().filter(|(n, _)| n != ":authority").cloned().collect();
            assert_eq!(got, &kept);
        }
        assert!(lists[0].contains(&(":path".into(), "/apache.rocketmq.v2.MessagingService/QueryRoute".into())));
    }
}
