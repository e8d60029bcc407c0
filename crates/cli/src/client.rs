//! Blocking HTTP client for the admin API, and the mapping of transport
//! failures and API error bodies onto [`CliError`].

use std::time::Duration;

use serde_json::Value;

use crate::error::{CliError, Result};

/// Largest response body read (a browse of 10 000 large messages fits).
const MAX_RESPONSE_BYTES: u64 = 512 << 20;

/// Connection attempts give up after this long, whatever `--timeout` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin API of one server.
#[derive(Debug)]
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
}

/// Percent-encodes one path segment (topic and group names may contain
/// `%`, as in `%DLQ%group`, or other reserved characters).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for `base` (`http://host:port`, no trailing slash); each
    /// request, body included, must finish within `timeout`.
    pub(crate) fn new(base: String, timeout: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
            .user_agent(format!("fjord-cli/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent, base }
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path?query`.
    pub(crate) fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let (status, body) = self.get_raw(path, query)?;
        self.finish(path, status, &body)
    }

    /// `GET path?query`, returning the status and the raw body whatever the
    /// status (only transport failures are errors).
    pub(crate) fn get_raw(&self, path: &str, query: &[(&str, String)]) -> Result<(u16, Vec<u8>)> {
        let url = self.url(path);
        let mut req = self.agent.get(&url);
        for (k, v) in query {
            req = req.query(k, v);
        }
        read(&url, req.call())
    }

    /// `POST path` with a JSON body.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let (status, bytes) = read(&url, self.agent.post(&url).send_json(body))?;
        self.finish(path, status, &bytes)
    }

    /// `PATCH path` with a JSON body.
    pub(crate) fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let (status, bytes) = read(&url, self.agent.patch(&url).send_json(body))?;
        self.finish(path, status, &bytes)
    }

    /// `PUT path` with a JSON body; `Value::Null` for an empty answer.
    pub(crate) fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let (status, bytes) = read(&url, self.agent.put(&url).send_json(body))?;
        self.finish(path, status, &bytes)
    }

    /// `DELETE path`; `Value::Null` for an empty (204) answer.
    pub(crate) fn delete(&self, path: &str) -> Result<Value> {
        let url = self.url(path);
        let (status, bytes) = read(&url, self.agent.delete(&url).call())?;
        self.finish(path, status, &bytes)
    }

    /// The parsed body of a 2xx answer, or the API error of any other.
    pub(crate) fn finish(&self, path: &str, status: u16, body: &[u8]) -> Result<Value> {
        if !(200..300).contains(&status) {
            return Err(api_error(status, body));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(body)
            .map_err(|e| CliError::BadResponse { url: self.url(path), reason: format!("invalid JSON: {e}") })
    }
}

/// Status and body of an answer, or why there was none.
fn read(url: &str, res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(u16, Vec<u8>)> {
    let mut resp = res.map_err(|e| transport_error(url, e))?;
    let status = resp.status().as_u16();
    let body =
        resp.body_mut().with_config().limit(MAX_RESPONSE_BYTES).read_to_vec().map_err(|e| transport_error(url, e))?;
    Ok((status, body))
}

/// A failure before a complete answer arrived.
fn transport_error(url: &str, e: ureq::Error) -> CliError {
    let url = url.to_string();
    match e {
        ureq::Error::BadUri(m) => CliError::Usage(format!("invalid server address {url}: {m}")),
        ureq::Error::Http(e) => CliError::Usage(format!("invalid request {url}: {e}")),
        ureq::Error::Protocol(e) => CliError::BadResponse { url, reason: e.to_string() },
        ureq::Error::BodyExceedsLimit(n) => {
            CliError::BadResponse { url, reason: format!("response larger than {n} bytes") }
        }
        ureq::Error::Timeout(t) => CliError::Unavailable { url, reason: format!("timed out ({t})") },
        ureq::Error::HostNotFound => CliError::Unavailable { url, reason: "host not found".into() },
        ureq::Error::Io(e) => CliError::Unavailable { url, reason: e.to_string() },
        e => CliError::Unavailable { url, reason: e.to_string() },
    }
}

/// The API error in a non-2xx answer: `{code, message}` when the body is
/// one, otherwise `http_<status>` and the body's text.
pub(crate) fn api_error(status: u16, body: &[u8]) -> CliError {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let (Some(code), Some(message)) = (v["code"].as_str(), v["message"].as_str())
    {
        return CliError::Api { status, code: code.to_string(), message: message.to_string() };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() { reason(status).to_string() } else { text.chars().take(500).collect() };
    CliError::Api { status, code: format!("http_{status}"), message }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        404 => "not found (the server may not have this endpoint)",
        405 => "method not allowed (the server may be older than this CLI)",
        409 => "conflict",
        413 => "payload too large",
        416 => "range not satisfiable",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "unexpected status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("orders"), "orders");
        assert_eq!(seg("a.b-c_d~e"), "a.b-c_d~e");
        assert_eq!(seg("%DLQ%my group"), "%25DLQ%25my%20group");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn api_error_bodies_are_decoded() {
        let e = api_error(404, br#"{"code":"unknown_topic","message":"unknown topic 'x'"}"#);
        assert_eq!(e.to_string(), "unknown_topic: unknown topic 'x'");
        assert_eq!(e.exit_code(), 66);
        let e = api_error(502, b"");
        assert_eq!(e.to_string(), "http_502: bad gateway");
        assert_eq!(e.exit_code(), 69);
        let e = api_error(500, b"boom");
        assert_eq!(e.to_string(), "http_500: boom");
        assert_eq!(e.exit_code(), 70);
    }
}
