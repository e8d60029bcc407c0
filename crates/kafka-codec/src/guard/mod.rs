//! Pre-decode guard: walks each advertised request's schema before
//! `kafka-protocol` decodes it. See the crate docs.
//!
//! - [`schema`]: the request header and every supported request, written in
//!   the notation of Kafka's JSON message definitions, each array tied to the
//!   Rust type `kafka-protocol` decodes its elements into.
//! - [`walk`]: reads a frame against a schema the way `kafka-protocol` will,
//!   checks every length and count against the bytes that remain, and sums
//!   `count * size_of::<Element>()` over every array (and the B-tree share
//!   of each unknown tagged field) against the budget.
//!
//! A frame that passes decodes without error in `kafka-protocol` and makes it
//! allocate at most the walk's sum for collections: the guard is at least as
//! strict as the decoder everywhere (it also refuses tags above `i32::MAX`,
//! varints longer than 32 bits and a known tagged field whose value does not
//! fill its declared size exactly). Bytes after the body are ignored, as by
//! Kafka and `kafka-protocol`.

use kafka_protocol::messages::ApiKey;

use crate::error::CodecError;

mod schema;
mod walk;

#[cfg(test)]
mod tests;

use walk::{Fault, Walker};

/// Checks a whole frame (header and body) of `api` at `version`.
pub(crate) fn check_request(
    api: ApiKey,
    version: i16,
    header_version: i16,
    frame: &[u8],
    budget: u64,
) -> Result<(), CodecError> {
    walk_request(api, version, header_version, frame, budget).map(drop)
}

/// [`check_request`], returning the bytes of collections the frame decodes
/// into.
pub(crate) fn walk_request(
    api: ApiKey,
    version: i16,
    header_version: i16,
    frame: &[u8],
    budget: u64,
) -> Result<u64, CodecError> {
    let Some(body) = schema::request(api) else {
        return Err(CodecError::Malformed { api, version, reason: "no schema for this API".into() });
    };
    let header = &schema::REQUEST_HEADER;
    let mut w = Walker::new(frame, budget);
    let error = |fault: Fault, root: &str| match fault {
        Fault::Malformed { at, path, problem } => {
            CodecError::Malformed { api, version, reason: Fault::describe(&path, root, at, &problem) }
        }
        Fault::OverBudget { needed } => CodecError::OverBudget { api, version, needed, budget },
    };
    w.message(header, header_version).map_err(|f| error(f, header.body.name))?;
    // Bytes after the body are ignored, as Kafka does: librdkafka 2.16 sends
    // three of them after a Metadata v13 body, and kafka-protocol stops
    // decoding at the end of the body anyway.
    w.message(body, version).map_err(|f| error(f, body.body.name))?;
    Ok(w.needed())
}
