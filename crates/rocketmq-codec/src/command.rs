//! `RemotingCommand`: the one message type of the remoting protocol, and
//! its two header serializations.
//!
//! Wire layout of a frame (big-endian):
//! ```text
//! total length  u32   bytes after this field
//! header tag    u32   serialization type << 24 | header length
//! header        ...   JSON object or ROCKETMQ binary fields
//! body          ...   the rest
//! ```
//! A response is matched to its request by `opaque`; flag bit 0 marks a
//! response, bit 1 a one-way request (no response is sent).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use crate::error::{CodecError, Result, need};

/// Flag bit of a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit of a one-way request.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// Most extension fields accepted in one header, so a hostile header
/// cannot make a decoder build a huge map from a small frame.
pub const MAX_EXT_FIELDS: usize = 256;

/// How a command's header is serialized. A response uses its request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// A JSON object (what Java clients send by default).
    #[default]
    Json,
    /// RocketMQ's compact binary layout.
    RocketMq,
}

impl SerializeType {
    fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }
}

/// A client or server implementation language, as RocketMQ's
/// `LanguageCode` (binary headers carry the code, JSON ones the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language(pub u8);

const LANGUAGES: [&str; 13] =
    ["JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST"];

impl Language {
    /// Java, which is what a RocketMQ broker reports itself as.
    pub const JAVA: Language = Language(0);
    /// Rust.
    pub const RUST: Language = Language(12);

    /// The name used in JSON headers.
    pub fn name(self) -> &'static str {
        LANGUAGES.get(usize::from(self.0)).copied().unwrap_or("OTHER")
    }

    fn from_name(name: &str) -> Language {
        Language(LANGUAGES.iter().position(|l| *l == name).unwrap_or(7) as u8)
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code, or response code in a response.
    pub code: i32,
    /// Sender's language.
    pub language: Language,
    /// Sender's protocol version (RocketMQ release ordinal).
    pub version: i32,
    /// Request id; a response carries its request's.
    pub opaque: i32,
    /// [`FLAG_RESPONSE`] and [`FLAG_ONEWAY`] bits.
    pub flag: i32,
    /// Human-readable text, usually an error message.
    pub remark: Option<String>,
    /// The custom header: named string fields, in order.
    pub ext_fields: Vec<(String, String)>,
    /// Payload.
    pub body: Bytes,
    /// Header serialization.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request with no fields (`opaque` is set by the sender).
    pub fn request(code: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            language: Language::JAVA,
            version: 0,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: Vec::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A response to `req` with `code`: same opaque, version and header
    /// serialization.
    pub fn response_to(req: &RemotingCommand, code: i32, remark: Option<String>) -> RemotingCommand {
        RemotingCommand {
            code,
            language: Language::JAVA,
            version: req.version,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: Vec::new(),
            body: Bytes::new(),
            serialize_type: req.serialize_type,
        }
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether the sender expects no response.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Adds a header field.
    pub fn with_field(mut self, name: &str, value: impl ToString) -> RemotingCommand {
        self.ext_fields.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> RemotingCommand {
        self.body = body.into();
        self
    }

    /// A header field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.ext_fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A required header field.
    pub fn required(&self, name: &'static str) -> Result<&str> {
        self.field(name).ok_or(CodecError::MissingField(name))
    }

    /// A required header field parsed as `T`.
    pub fn parse<T: std::str::FromStr>(&self, name: &'static str) -> Result<T> {
        let v = self.required(name)?;
        v.trim().parse().map_err(|_| CodecError::BadField { field: name, value: v.chars().take(64).collect() })
    }

    /// An optional header field parsed as `T` (absent or empty: `None`).
    pub fn parse_opt<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>> {
        match self.field(name) {
            None => Ok(None),
            Some(v) if v.is_empty() || v == "null" => Ok(None),
            Some(_) => self.parse(name).map(Some),
        }
    }

    /// An optional boolean header field: `true`/`false` from Java
    /// clients, `1`/`0` from the C++ client.
    pub fn flag_field(&self, name: &'static str) -> Result<bool> {
        match self.field(name).map(str::trim) {
            None | Some("" | "null" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(v) => Err(CodecError::BadField { field: name, value: v.chars().take(64).collect() }),
        }
    }

    /// Encodes the whole frame, length prefix included.
    pub fn encode(&self) -> Bytes {
        let header = match self.serialize_type {
            SerializeType::Json => self.json_header(),
            SerializeType::RocketMq => self.binary_header(),
        };
        let mut out = BytesMut::with_capacity(8 + header.len() + self.body.len());
        out.put_u32((4 + header.len() + self.body.len()) as u32);
        out.put_u32(u32::from(self.serialize_type.code()) << 24 | (header.len() as u32 & 0x00FF_FFFF));
        out.put_slice(&header);
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Decodes a frame without its 4-byte total-length prefix.
    pub fn decode(mut frame: Bytes) -> Result<RemotingCommand> {
        if frame.len() < 4 {
            return Err(CodecError::Truncated { what: "header length", len: 4, available: frame.len() });
        }
        let tag = frame.get_u32();
        let header_len = need("header", i64::from(tag & 0x00FF_FFFF), frame.len())?;
        let header = frame.split_to(header_len);
        let (kind, mut cmd) = match (tag >> 24) as u8 {
            0 => (SerializeType::Json, decode_json_header(&header)?),
            1 => (SerializeType::RocketMq, decode_binary_header(header)?),
            other => return Err(CodecError::UnknownSerializeType(other)),
        };
        cmd.serialize_type = kind;
        cmd.body = frame;
        Ok(cmd)
    }

    fn json_header(&self) -> Vec<u8> {
        let mut o = Map::new();
        o.insert("code".into(), self.code.into());
        if !self.ext_fields.is_empty() {
            let ext: Map<String, Value> =
                self.ext_fields.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            o.insert("extFields".into(), Value::Object(ext));
        }
        o.insert("flag".into(), self.flag.into());
        o.insert("language".into(), self.language.name().into());
        o.insert("opaque".into(), self.opaque.into());
        if let Some(r) = &self.remark {
            o.insert("remark".into(), r.clone().into());
        }
        o.insert("serializeTypeCurrentRPC".into(), "JSON".into());
        o.insert("version".into(), self.version.into());
        serde_json::to_vec(&Value::Object(o)).unwrap_or_default()
    }

    fn binary_header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.put_i16(self.code as i16);
        out.put_u8(self.language.0);
        out.put_i16(self.version as i16);
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        match &self.remark {
            Some(r) => {
                out.put_i32(r.len() as i32);
                out.put_slice(r.as_bytes());
            }
            None => out.put_i32(0),
        }
        let mut ext = Vec::new();
        for (k, v) in &self.ext_fields {
            ext.put_i16(k.len() as i16);
            ext.put_slice(k.as_bytes());
            ext.put_i32(v.len() as i32);
            ext.put_slice(v.as_bytes());
        }
        out.put_i32(ext.len() as i32);
        out.put_slice(&ext);
        out
    }
}

fn int(o: &Map<String, Value>, name: &str) -> Result<i32> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| CodecError::Json(format!("`{name}` is not a 32-bit integer"))),
        Some(Value::String(s)) => s.parse().map_err(|_| CodecError::Json(format!("`{name}` is not an integer"))),
        Some(_) => Err(CodecError::Json(format!("`{name}` is not an integer"))),
    }
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand> {
    let v: Value = serde_json::from_slice(header).map_err(|e| CodecError::Json(e.to_string()))?;
    let Value::Object(o) = v else { return Err(CodecError::Json("the header is not a JSON object".into())) };
    let language = match o.get("language") {
        Some(Value::String(s)) => Language::from_name(s),
        Some(Value::Number(n)) => Language(n.as_u64().and_then(|v| u8::try_from(v).ok()).unwrap_or(7)),
        _ => Language(7),
    };
    let remark = match o.get("remark") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut ext_fields = Vec::new();
    match o.get("extFields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            if ext.len() > MAX_EXT_FIELDS {
                return Err(CodecError::Invalid(format!("more than {MAX_EXT_FIELDS} header fields")));
            }
            for (k, v) in ext {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                ext_fields.push((k.clone(), v));
            }
        }
        Some(_) => return Err(CodecError::Json("`extFields` is not an object".into())),
    }
    Ok(RemotingCommand {
        code: int(&o, "code")?,
        language,
        version: int(&o, "version")?,
        opaque: int(&o, "opaque")?,
        flag: int(&o, "flag")?,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

fn string(buf: &mut Bytes, what: &'static str, len: i64) -> Result<String> {
    let n = need(what, len, buf.len())?;
    let raw = buf.split_to(n);
    String::from_utf8(raw.to_vec()).map_err(|_| CodecError::Invalid(format!("{what} is not UTF-8")))
}

fn decode_binary_header(mut b: Bytes) -> Result<RemotingCommand> {
    const FIXED: usize = 2 + 1 + 2 + 4 + 4 + 4;
    if b.len() < FIXED {
        return Err(CodecError::Truncated { what: "binary header", len: FIXED as i64, available: b.len() });
    }
    let code = i32::from(b.get_i16());
    let language = Language(b.get_u8());
    let version = i32::from(b.get_i16());
    let opaque = b.get_i32();
    let flag = b.get_i32();
    let remark_len = i64::from(b.get_i32());
    let remark = if remark_len > 0 { Some(string(&mut b, "remark", remark_len)?) } else { None };
    if b.len() < 4 {
        return Err(CodecError::Truncated { what: "extFields length", len: 4, available: b.len() });
    }
    let ext_len = need("extFields", i64::from(b.get_i32()), b.len())?;
    let mut ext = b.split_to(ext_len);
    let mut ext_fields = Vec::new();
    while ext.has_remaining() {
        if ext_fields.len() == MAX_EXT_FIELDS {
            return Err(CodecError::Invalid(format!("more than {MAX_EXT_FIELDS} header fields")));
        }
        if ext.len() < 2 {
            return Err(CodecError::Truncated { what: "field name length", len: 2, available: ext.len() });
        }
        let klen = i64::from(ext.get_i16());
        let k = string(&mut ext, "field name", klen)?;
        if ext.len() < 4 {
            return Err(CodecError::Truncated { what: "field value length", len: 4, available: ext.len() });
        }
        let vlen = i64::from(ext.get_i32());
        let v = string(&mut ext, "field value", vlen)?;
        ext_fields.push((k, v));
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}
