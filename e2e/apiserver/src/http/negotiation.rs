//! Content negotiation: this server speaks JSON only. A request whose Accept header allows no
//! JSON (a protobuf-only client) gets 406 and one whose body is protobuf or CBOR gets 415, each
//! with a Status saying so, instead of a JSON answer the client cannot decode. JSON is served
//! whenever Accept allows it; kubectl's `as=Table` asks for the table form.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::error_response;
use crate::error::{ApiError, ApiResult};

/// Which JSON form a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Representation {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io` Table, as `kubectl get` asks for.
    Table,
}

/// Chooses the representation from an Accept header: the first media range this server can
/// produce wins, as clients list them by preference. No header (or an empty one) means JSON.
///
/// # Errors
/// `NotAcceptable` when no listed range allows JSON.
pub(super) fn negotiate(accept: Option<&str>) -> ApiResult<Representation> {
    let accept = accept.unwrap_or_default().trim();
    if accept.is_empty() {
        return Ok(Representation::Object);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(
            media_type.as_str(),
            "application/json" | "application/*" | "*/*"
        ) {
            continue;
        }
        let table = parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("as=Table"));
        return Ok(if table {
            Representation::Table
        } else {
            Representation::Object
        });
    }
    Err(ApiError::NotAcceptable(accept.to_owned()))
}

/// Refuses a body this server cannot read: protobuf and CBOR are what Kubernetes clients send
/// besides JSON and YAML.
///
/// # Errors
/// `UnsupportedMediaType` naming the content type.
pub(super) fn check_content_type(content_type: Option<&str>) -> ApiResult<()> {
    let content_type = content_type.unwrap_or_default();
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{content_type} (the test API server speaks JSON only)"
        )));
    }
    Ok(())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Middleware in front of every API route: answers 406 or 415 before any handler runs, else
/// hands the chosen [`Representation`] to the handler as a request extension.
pub(super) async fn require_json(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let representation = check_content_type(header_str(headers, header::CONTENT_TYPE))
        .and_then(|()| negotiate(header_str(headers, header::ACCEPT)));
    match representation {
        Ok(r) => {
            request.extensions_mut().insert(r);
            next.run(request).await
        }
        Err(e) => error_response(&e),
    }
}

/// A request body: JSON, or YAML (which kubectl never sends but people with curl do).
///
/// # Errors
/// `BadRequest` when it is neither.
pub(super) fn parse_body(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .or_else(|_| {
            std::str::from_utf8(body)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_saphyr::from_str(text).map_err(|e| e.to_string()))
        })
        .map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid JSON or YAML: {e}"))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_protobuf_only_accept_header_is_not_acceptable() {
        let e = negotiate(Some("application/vnd.kubernetes.protobuf")).unwrap_err();
        assert_eq!(e.code(), 406);
        assert!(e.to_string().contains("JSON only"), "{e}");
    }

    #[test]
    fn json_is_served_when_any_listed_range_allows_it() {
        for accept in [
            "application/vnd.kubernetes.protobuf, application/json",
            "application/json;stream=watch",
            "*/*",
            "",
        ] {
            assert_eq!(
                negotiate(Some(accept)).unwrap(),
                Representation::Object,
                "{accept}"
            );
        }
        assert_eq!(negotiate(None).unwrap(), Representation::Object);
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)).unwrap(), Representation::Table);
    }

    #[test]
    fn protobuf_and_cbor_bodies_are_unsupported_and_patches_are_fine() {
        for ct in ["application/vnd.kubernetes.protobuf", "application/cbor"] {
            assert_eq!(check_content_type(Some(ct)).unwrap_err().code(), 415);
        }
        for ct in [
            "application/json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            check_content_type(Some(ct)).unwrap();
        }
    }

    #[test]
    fn bodies_may_be_json_or_yaml() {
        assert_eq!(parse_body(&Bytes::from("{\"a\": 1}")).unwrap()["a"], 1);
        assert_eq!(parse_body(&Bytes::from("a: 1\n")).unwrap()["a"], 1);
        assert_eq!(parse_body(&Bytes::from("{")).unwrap_err().code(), 400);
    }
}
