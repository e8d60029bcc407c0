//! A minimal Kafka client over a tokio `TcpStream`: request frames encoded
//! with `kafka-protocol`, response frames read and matched by correlation
//! id, and the two admin calls the benchmark needs (CreateTopics,
//! DeleteTopics).

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use fjord_kafka_codec::kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use fjord_kafka_codec::kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Produce version used by batch mode: the newest that names topics (v13
/// switches to topic ids).
pub(crate) const PRODUCE_VERSION: i16 = 9;
/// Fetch version used by batch mode: the newest that names topics.
pub(crate) const FETCH_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
const DELETE_TOPICS_VERSION: i16 = 4;
/// Largest response frame accepted.
const MAX_RESPONSE: usize = 1 << 30;

/// Error code Kafka returns when a topic exists.
const TOPIC_ALREADY_EXISTS: i16 = 36;

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Byte offset of the correlation id in a frame that starts with its size prefix.
pub(crate) const CORRELATION_POS: usize = 8;

/// Encodes a request frame, size prefix included.
pub(crate) fn encode_request<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    req: &R,
) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fjord-bench")));
    let size = req.compute_size(version).map_err(|e| anyhow::anyhow!("{api:?} v{version}: {e}"))?;
    let mut out = BytesMut::with_capacity(size + 64);
    out.put_i32(0);
    header
        .encode(&mut out, api.request_header_version(version))
        .map_err(|e| anyhow::anyhow!("{api:?} v{version} header: {e}"))?;
    req.encode(&mut out, version).map_err(|e| anyhow::anyhow!("{api:?} v{version}: {e}"))?;
    let len = i32::try_from(out.len() - 4).context("request larger than 2 GiB")?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Reads one response frame (without its size prefix).
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Bytes> {
    let size = rd.read_i32().await.context("reading a response size")?;
    let size = usize::try_from(size).ok().filter(|s| *s >= 4 && *s <= MAX_RESPONSE).context("bad response size")?;
    // Read into spare capacity: zero-filling a 32 MB fetch response first
    // would cost a pass over memory for nothing.
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = (size - buf.len()) as u64;
        if (&mut *rd).take(want).read_buf(&mut buf).await.context("reading a response")? == 0 {
            bail!("connection closed in the middle of a response");
        }
    }
    Ok(buf.freeze())
}

/// Reads the correlation id of a response frame without decoding it.
pub(crate) fn correlation_id(frame: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(frame.get(..4)?.try_into().ok()?))
}

/// Decodes a response frame (without size prefix) for `api` at `version`.
pub(crate) fn decode_response<R: Decodable>(api: ApiKey, version: i16, frame: Bytes) -> Result<(i32, R)> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version))
        .map_err(|e| anyhow::anyhow!("{api:?} v{version} response header: {e}"))?;
    let body = R::decode(&mut buf, version).map_err(|e| anyhow::anyhow!("{api:?} v{version} response: {e}"))?;
    Ok((header.correlation_id, body))
}

/// Opens a connection with TCP_NODELAY and splits it.
pub(crate) async fn connect(addr: &str) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf)> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    Ok((BufReader::with_capacity(256 * 1024, rd), wr))
}

/// One request, one response, on a fresh connection.
async fn call<Req: Encodable, Resp: Decodable>(addr: &str, api: ApiKey, version: i16, req: &Req) -> Result<Resp> {
    let (mut rd, mut wr) = connect(addr).await?;
    wr.write_all(&encode_request(api, version, 1, req)?).await?;
    let frame = read_frame(&mut rd).await?;
    let (corr, resp) = decode_response(api, version, frame)?;
    if corr != 1 {
        bail!("{api:?}: correlation id {corr} instead of 1");
    }
    Ok(resp)
}

/// Creates `topics` with `partitions` partitions of `replicas` replicas
/// each and the given topic configs. An existing topic is an error unless
/// `allow_existing`.
pub(crate) async fn create_topics(
    addr: &str,
    topics: &[String],
    (partitions, replicas): (u32, i16),
    configs: &[(String, String)],
    allow_existing: bool,
) -> Result<()> {
    let req = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(
        topics
            .iter()
            .map(|t| {
                CreatableTopic::default()
                    .with_name(topic_name(t))
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(replicas)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let resp: CreateTopicsResponse = call(addr, ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &req).await?;
    for t in resp.topics {
        if t.error_code == TOPIC_ALREADY_EXISTS && allow_existing {
            continue;
        }
        if t.error_code != 0 {
            bail!(
                "creating topic {}: error {} {}",
                t.name.0.as_str(),
                t.error_code,
                t.error_message.as_ref().map_or("", |m| m.as_str())
            );
        }
    }
    Ok(())
}

/// Deletes `topics`; errors are reported, not fatal.
pub(crate) async fn delete_topics(addr: &str, topics: &[String]) -> Result<()> {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(topics.iter().map(|t| topic_name(t)).collect());
    let resp: DeleteTopicsResponse = call(addr, ApiKey::DeleteTopics, DELETE_TOPICS_VERSION, &req).await?;
    for r in resp.responses {
        if r.error_code != 0 {
            bail!("deleting topic {:?}: error {}", r.name.as_ref().map(|n| n.0.as_str()), r.error_code);
        }
    }
    Ok(())
}
