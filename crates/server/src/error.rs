//! [`ApiError`]: every error answer, in OpenAI's shape
//! `{"error": {"code", "message", "type", …}}` as llama-server writes it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// More fields of the error object (`n_prompt_tokens`, `n_ctx`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 for a feature hearth cannot honour yet.
    pub fn unsupported(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            message,
        )
    }

    pub fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported_error", message)
    }

    pub fn server(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 400 `exceed_context_size_error`, as llama-server reports a prompt too long for a slot.
    pub fn context_size(n_prompt_tokens: usize, n_ctx: usize) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "exceed_context_size_error",
            format!(
                "the request exceeds the available context size ({n_prompt_tokens} prompt \
                 tokens, context of {n_ctx}), try increasing it"
            ),
        );
        e.extra
            .insert("n_prompt_tokens".into(), n_prompt_tokens.into());
        e.extra.insert("n_ctx".into(), n_ctx.into());
        e
    }

    pub fn body(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), self.status.as_u16().into());
        obj.insert("message".into(), self.message.clone().into());
        obj.insert("type".into(), self.kind.into());
        for (k, v) in &self.extra {
            obj.insert(k.clone(), v.clone());
        }
        json!({ "error": obj })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// An error on an Ollama route: `{"error": "message"}`, as Ollama writes it.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        (
            self.0.status,
            axum::Json(json!({ "error": self.0.message })),
        )
            .into_response()
    }
}
