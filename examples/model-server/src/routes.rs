//! Maps a request (method, URL, body) to a reply. Nothing here touches the
//! network, so the tests call [`handle`] directly.

use serde::Serialize;

use crate::completions::{self, Endpoint, Usage};
use crate::error::HttpError;
use crate::iris::{FEATURE_NAMES, LABELS};
use crate::models::{Models, IRIS_MODEL_ID};
use crate::predict;

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// Every route, for `GET /` and for 404 messages.
const ENDPOINTS: [&str; 7] = [
    "GET /",
    "GET /health",
    "GET /v1/models",
    "POST /predict",
    "GET /predict?features=5.1,3.5,1.4,0.2",
    "POST /v1/completions",
    "POST /v1/chat/completions",
];

/// A response ready to send, plus what the access log records about it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// True for server-sent events, which are sent with chunked encoding.
    pub streamed: bool,
    /// Model that served the request, for the access log.
    pub model: Option<String>,
    /// Token usage of a completion, for the access log.
    pub usage: Option<Usage>,
}

impl Reply {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body,
            streamed: false,
            model: None,
            usage: None,
        }
    }

    /// Builds the error reply for a request to `path`.
    pub fn error(path: &str, error: &HttpError) -> Self {
        Self::json(error.status, error.to_json(path))
    }

    fn serialized<T: Serialize>(path: &str, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::json(200, body),
            Err(e) => {
                eprintln!("failed to encode the response to {path}: {e}");
                Self::error(path, &HttpError::new(500, "failed to encode the response"))
            }
        }
    }
}

/// Splits a request target into its path and query string.
pub fn split_url(url: &str) -> (&str, &str) {
    url.split_once('?').unwrap_or((url, ""))
}

/// Routes one request. `method` is upper case, as sent on the wire.
pub fn handle(models: &Models, method: &str, url: &str, body: &[u8]) -> Reply {
    let (path, query) = split_url(url);
    // HEAD gets the GET reply, and the HTTP server leaves out the body.
    let method = if method == "HEAD" { "GET" } else { method };

    match (path, method) {
        ("/", "GET") => Reply::serialized(path, &service_info(models)),
        ("/health", "GET") => Reply::json(200, br#"{"status":"ok"}"#.to_vec()),
        ("/v1/models", "GET") => Reply::serialized(path, &model_list(models)),
        ("/predict", "GET") => respond_predict(models, path, predict::parse_query(query)),
        ("/predict", "POST") => respond_predict(models, path, predict::parse_body(body)),
        ("/v1/completions", "POST") => {
            respond_completion(models, path, Endpoint::Completions, body)
        }
        ("/v1/chat/completions", "POST") => {
            respond_completion(models, path, Endpoint::ChatCompletions, body)
        }
        _ => match allowed_methods(path) {
            Some(allowed) => method_not_allowed(path, method, allowed),
            None => Reply::error(
                path,
                &HttpError::new(
                    404,
                    format!("no route for {path}; GET / lists the endpoints"),
                ),
            ),
        },
    }
}

fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/" | "/health" | "/v1/models" => Some("GET, HEAD"),
        "/predict" => Some("GET, HEAD, POST"),
        "/v1/completions" | "/v1/chat/completions" => Some("POST"),
        _ => None,
    }
}

fn method_not_allowed(path: &str, method: &str, allowed: &'static str) -> Reply {
    let error = HttpError::new(
        405,
        format!("method {method} is not allowed on {path}; use {allowed}"),
    );
    let mut reply = Reply::error(path, &error);
    reply.headers.push(("Allow", allowed.to_string()));
    reply
}

fn respond_predict(
    models: &Models,
    path: &str,
    rows: Result<Vec<crate::iris::Features>, HttpError>,
) -> Reply {
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => return Reply::error(path, &error),
    };
    let mut reply = Reply::serialized(path, &predict::predict(&models.iris, &rows));
    reply.model = Some(IRIS_MODEL_ID.to_string());
    reply
}

fn respond_completion(models: &Models, path: &str, endpoint: Endpoint, body: &[u8]) -> Reply {
    let completion = completions::parse_request(endpoint, body).and_then(|request| {
        let stream = request.stream;
        completions::complete(models, endpoint, &request).map(|c| (c, stream))
    });
    let (completion, stream) = match completion {
        Ok(result) => result,
        Err(error) => return Reply::error(path, &error),
    };

    let encoded = if stream {
        completion.to_event_stream()
    } else {
        completion.to_json()
    };
    let mut reply = match encoded {
        Ok(body) => Reply::json(200, body),
        Err(e) => {
            eprintln!("failed to encode the completion {}: {e}", completion.id);
            let error = HttpError::new(500, "failed to encode the completion");
            return Reply::error(path, &error);
        }
    };
    if stream {
        reply.content_type = EVENT_STREAM;
        reply.streamed = true;
        reply
            .headers
            .push(("Cache-Control", "no-cache".to_string()));
    }
    reply.model = Some(completion.model);
    reply.usage = Some(completion.usage);
    reply
}

#[derive(Serialize)]
struct ServiceInfo {
    service: &'static str,
    version: &'static str,
    models: Vec<ModelInfo>,
    endpoints: [&'static str; 7],
    /// Definition of a token in `usage` fields.
    tokens: &'static str,
}

#[derive(Serialize)]
struct ModelInfo {
    id: &'static str,
    task: &'static str,
    endpoints: Vec<&'static str>,
    description: String,
}

fn service_info(models: &Models) -> ServiceInfo {
    let mut model_infos = vec![ModelInfo {
        id: IRIS_MODEL_ID,
        task: "classification",
        endpoints: vec!["/predict"],
        description: format!(
            "softmax regression on Fisher's Iris data; input [{}]; labels {}; training accuracy {:.3} on {} rows",
            FEATURE_NAMES.join(", "),
            LABELS.join(", "),
            models.iris_training_accuracy,
            models.iris_training_rows
        ),
    }];
    for text_model in &models.text_models {
        model_infos.push(ModelInfo {
            id: text_model.id,
            task: "text-generation",
            endpoints: vec!["/v1/completions", "/v1/chat/completions"],
            description: format!(
                "word Markov chain with a {}-word context, {} distinct words",
                text_model.chain.order(),
                text_model.chain.vocabulary_size()
            ),
        });
    }
    ServiceInfo {
        service: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        models: model_infos,
        endpoints: ENDPOINTS,
        tokens: "one token is one whitespace-separated word",
    }
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelListEntry>,
}

#[derive(Serialize)]
struct ModelListEntry {
    id: &'static str,
    object: &'static str,
    owned_by: &'static str,
}

/// Builds the OpenAI `GET /v1/models` listing of the text models.
fn model_list(models: &Models) -> ModelList {
    ModelList {
        object: "list",
        data: models
            .text_models
            .iter()
            .map(|model| ModelListEntry {
                id: model.id,
                object: "model",
                owned_by: "model-server",
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::models;
    use serde_json::{json, Value};

    fn call(method: &str, url: &str, body: &str) -> (Reply, Value) {
        let reply = handle(models(), method, url, body.as_bytes());
        let value = if reply.streamed {
            Value::Null
        } else {
            serde_json::from_slice(&reply.body).unwrap()
        };
        (reply, value)
    }

    #[test]
    fn health_is_ok() {
        let (reply, body) = call("GET", "/health", "");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "application/json");
        assert_eq!(body, json!({"status": "ok"}));
    }

    #[test]
    fn root_lists_models_and_endpoints() {
        let (reply, body) = call("GET", "/", "");
        assert_eq!(reply.status, 200);
        let ids: Vec<&str> = body["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["iris-softmax", "tiny-markov", "tiny-markov-large"]);
        assert!(body["endpoints"]
            .as_array()
            .unwrap()
            .contains(&json!("POST /v1/completions")));
    }

    #[test]
    fn model_list_has_text_models() {
        let (reply, body) = call("GET", "/v1/models", "");
        assert_eq!(reply.status, 200);
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][1]["id"], "tiny-markov-large");
    }

    #[test]
    fn predict_by_post_and_get() {
        let (reply, body) = call("POST", "/predict", r#"{"features": [6.3, 3.3, 6.0, 2.5]}"#);
        assert_eq!(reply.status, 200);
        assert_eq!(body["predictions"][0]["label"], "virginica");
        assert_eq!(reply.model.as_deref(), Some("iris-softmax"));

        let (reply, body) = call("GET", "/predict?features=5.1,3.5,1.4,0.2", "");
        assert_eq!(reply.status, 200);
        assert_eq!(body["predictions"][0]["label"], "setosa");
    }

    #[test]
    fn predict_error_is_plain_json() {
        let (reply, body) = call("POST", "/predict", r#"{"features": [1, 2]}"#);
        assert_eq!(reply.status, 400);
        assert!(body["error"].as_str().unwrap().contains("got 2 values"));
    }

    #[test]
    fn completion_records_usage() {
        let (reply, body) = call(
            "POST",
            "/v1/completions",
            r#"{"model": "tiny-markov", "prompt": "The keeper", "max_tokens": 5}"#,
        );
        assert_eq!(reply.status, 200);
        let usage = reply.usage.unwrap();
        assert_eq!(body["usage"]["total_tokens"], usage.total_tokens);
        assert_eq!(reply.model.as_deref(), Some("tiny-markov"));
    }

    #[test]
    fn streaming_completion_is_event_stream() {
        let (reply, _) = call(
            "POST",
            "/v1/chat/completions",
            r#"{"model": "tiny-markov", "messages": [{"role": "user", "content": "hi"}], "stream": true}"#,
        );
        assert_eq!(reply.status, 200);
        assert!(reply.streamed);
        assert_eq!(reply.content_type, "text/event-stream");
        assert!(reply.body.ends_with(b"data: [DONE]\n\n"));
    }

    #[test]
    fn completion_errors_use_openai_shape() {
        let (reply, body) = call(
            "POST",
            "/v1/completions",
            r#"{"model": "nope", "prompt": "x"}"#,
        );
        assert_eq!(reply.status, 404);
        assert_eq!(body["error"]["code"], "model_not_found");

        let (reply, body) = call(
            "POST",
            "/v1/completions",
            r#"{"model": "tiny-markov", "prompt": "x", "max_tokens": 0}"#,
        );
        assert_eq!(reply.status, 400);
        assert_eq!(body["error"]["param"], "max_tokens");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn unknown_path_is_404() {
        let (reply, body) = call("GET", "/nothing?x=1", "");
        assert_eq!(reply.status, 404);
        assert_eq!(
            body["error"],
            "no route for /nothing; GET / lists the endpoints"
        );
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let (reply, _) = call("GET", "/v1/completions", "");
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers, vec![("Allow", "POST".to_string())]);

        let (reply, _) = call("DELETE", "/predict", "");
        assert_eq!(reply.status, 405);
        assert_eq!(
            reply.headers,
            vec![("Allow", "GET, HEAD, POST".to_string())]
        );
    }

    #[test]
    fn head_is_routed_like_get() {
        let (reply, _) = call("HEAD", "/health", "");
        assert_eq!(reply.status, 200);
    }
}
