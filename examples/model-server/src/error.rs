//! Error responses.
//!
//! The OpenAI-style endpoints under `/v1/` return errors in the OpenAI shape
//! (`{"error": {"message", "type", "param", "code"}}`) so that OpenAI client
//! libraries can show them. Every other path returns `{"error": "message"}`.

use serde::Serialize;

/// An HTTP error status with a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
    /// Request field the error is about, when there is one.
    pub param: Option<&'static str>,
    /// Machine-readable code for the OpenAI-style body, such as `model_not_found`.
    pub code: Option<&'static str>,
}

impl HttpError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// Creates a 400 Bad Request error about the request field `param`.
    pub fn invalid_field(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::new(400, message)
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Serializes the error body in the style that fits `path`.
    pub fn to_json(&self, path: &str) -> Vec<u8> {
        let result = if path.starts_with("/v1/") {
            serde_json::to_vec(&OpenAiErrorBody {
                error: OpenAiError {
                    message: &self.message,
                    kind: error_type(self.status),
                    param: self.param,
                    code: self.code,
                },
            })
        } else {
            serde_json::to_vec(&PlainErrorBody {
                error: &self.message,
            })
        };
        // serde_json fails only on maps with non-string keys or on a failing
        // Serialize impl, and these structs have neither. The fallback keeps
        // the body valid JSON all the same.
        result.unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec())
    }
}

/// Returns the OpenAI error `type` for a status code.
fn error_type(status: u16) -> &'static str {
    match status {
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

#[derive(Serialize)]
struct PlainErrorBody<'a> {
    error: &'a str,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn plain_error_outside_v1() {
        let error = HttpError::invalid_field("features", "features must be an array");
        assert_eq!(
            parse(&error.to_json("/predict")),
            json!({"error": "features must be an array"})
        );
    }

    #[test]
    fn openai_error_under_v1() {
        let error = HttpError::new(404, "model x not found").with_code("model_not_found");
        assert_eq!(
            parse(&error.to_json("/v1/completions")),
            json!({"error": {
                "message": "model x not found",
                "type": "invalid_request_error",
                "param": null,
                "code": "model_not_found"
            }})
        );
    }
}
