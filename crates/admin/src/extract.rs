//! Axum extractors whose rejections are [`ApiError`]s: a malformed path
//! parameter, query string or JSON body gets the API's JSON 400 saying what
//! was wrong, not axum's plain-text default.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::{ApiError, MAX_LIMIT};

/// Path parameters.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

/// Query-string parameters.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

/// A JSON body.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<Obj<T>>::from_request(req, state).await {
            Ok(axum::Json(Obj(v))) => Ok(ApiJson(v)),
            // A body over the size cap is not malformed: 413, as HTTP says.
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {} bytes", crate::MAX_BODY_BYTES),
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Offsets and other counts are documented as `int64 >= 0`; serde would
/// take any `u64`, so larger values are refused here rather than accepted
/// against the document.
pub(crate) fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = <u64 as serde::Deserialize>::deserialize(d)?;
    if v > i64::MAX as u64 {
        return Err(serde::de::Error::custom(format!("{v} is larger than the largest int64")));
    }
    Ok(v)
}

/// [`int64`] for optional fields (use with `#[serde(default)]`).
pub(crate) fn opt_int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    int64(d).map(Some)
}

/// A JSON object only: serde's derived `Deserialize` for structs also takes
/// arrays (`[null, null]` as a record), which the API document does not
/// allow, so nested request objects are wrapped in this.
#[derive(Debug)]
pub(crate) struct Obj<T>(pub(crate) T);

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        serde_json::from_value(serde_json::Value::Object(map)).map(Obj).map_err(serde::de::Error::custom)
    }
}

/// A list request's `limit` (default 100), between 1 and [`MAX_LIMIT`].
pub(crate) fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l.unwrap_or(100) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}"))),
    }
}
