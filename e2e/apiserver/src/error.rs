//! Errors as kube-apiserver reports them: an HTTP code and a `metav1.Status` body whose `reason`
//! and `details` clients act on (kube-rs maps them to `ErrorResponse`, kubectl prints `message`).

use serde_json::{Value, json};

/// One failing field of an `Invalid` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// JSON path of the field, e.g. `spec.addresses[0]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A request the server refuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 404: no such object or resource.
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    /// 409: create of a name that exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    /// 409: stale resourceVersion, or a server-side apply conflict.
    #[error("{message}")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    /// 422: the object fails validation.
    #[error("{kind} \"{name}\" is invalid: {}", join_causes(causes))]
    Invalid {
        kind: String,
        group: String,
        name: String,
        causes: Vec<Cause>,
    },
    /// 400: the request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 410: a watch or list from a resourceVersion the server no longer remembers.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
    /// 405: the verb is not supported on this resource.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 406: the Accept header allows no representation this server produces (JSON).
    #[error(
        "the test API server speaks JSON only; none of the media types the request accepts ({0}) is application/json"
    )]
    NotAcceptable(String),
    /// 415: an unknown patch type or body encoding.
    #[error("the body of the request was in an unknown format: {0}")]
    UnsupportedMediaType(String),
}

fn join_causes(causes: &[Cause]) -> String {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    /// A 422 with a single cause.
    pub fn invalid(kind: &str, name: &str, field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            kind: kind.to_owned(),
            group: String::new(),
            name: name.to_owned(),
            causes: vec![Cause {
                field: field.to_owned(),
                message: message.into(),
            }],
        }
    }

    /// The HTTP status code kube-apiserver uses for this error.
    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => 409,
            Self::Invalid { .. } => 422,
            Self::BadRequest(_) => 400,
            Self::Gone { .. } => 410,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable(_) => 406,
            Self::UnsupportedMediaType(_) => 415,
        }
    }

    /// The `metav1.Status` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Invalid { .. } => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::Gone { .. } => "Expired",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
        }
    }

    /// The full `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let details = match self {
            Self::NotFound { resource, name }
            | Self::AlreadyExists { resource, name }
            | Self::Conflict { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                json!({"name": name, "group": group, "kind": kind})
            }
            Self::Invalid {
                kind,
                group,
                name,
                causes,
            } => json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": "FieldValueInvalid",
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>(),
            }),
            _ => Value::Null,
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if !details.is_null() {
            status["details"] = details;
        }
        status
    }
}

/// Result of a server operation.
pub type ApiResult<T> = Result<T, ApiError>;
