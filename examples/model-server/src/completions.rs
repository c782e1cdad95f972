//! OpenAI-compatible `/v1/completions` and `/v1/chat/completions`.
//!
//! Token counts are whitespace-separated words: `prompt_tokens` counts the
//! words of the prompt (for chat, of every message's content) and
//! `completion_tokens` counts the generated words. A rate limiter in front of
//! this server can read `max_tokens` from the request and
//! `usage.total_tokens` from the response, or from the last `data:` event
//! before `data: [DONE]` when streaming.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::HttpError;
use crate::markov::{fnv1a, Generation};
use crate::models::Models;

/// Largest accepted `max_tokens`.
pub const MAX_TOKENS_LIMIT: u64 = 4096;
/// `max_tokens` when the request leaves it out (the OpenAI completions default).
pub const DEFAULT_MAX_TOKENS: u64 = 16;

/// Completion endpoint that received a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    ChatCompletions,
}

/// A validated completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    pub model: String,
    /// Text the model continues: the prompt, or every message's content
    /// joined by newlines.
    pub prompt: String,
    pub prompt_tokens: u64,
    pub max_tokens: u64,
    pub stream: bool,
}

/// Token counts reported in `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Counts tokens the way this server defines them: whitespace-separated words.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Parses and validates a request body for `endpoint`.
pub fn parse_request(endpoint: Endpoint, body: &[u8]) -> Result<CompletionRequest, HttpError> {
    if body.trim_ascii().is_empty() {
        return Err(HttpError::new(
            400,
            "request body is empty; expected a JSON object with model and prompt (or messages)",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| HttpError::new(400, format!("request body is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(HttpError::new(400, "request body must be a JSON object"));
    };

    let model = match object.get("model") {
        Some(Value::String(model)) => model.clone(),
        Some(other) => {
            return Err(HttpError::invalid_field(
                "model",
                format!("model must be a string, got {}", describe(other)),
            ))
        }
        None => {
            return Err(HttpError::invalid_field(
                "model",
                "missing field model: expected a model id such as \"tiny-markov\"",
            ))
        }
    };

    let prompt = match endpoint {
        Endpoint::Completions => parse_prompt(&object)?,
        Endpoint::ChatCompletions => parse_messages(&object)?,
    };
    let max_tokens = parse_max_tokens(&object)?;
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(other) => {
            return Err(HttpError::invalid_field(
                "stream",
                format!("stream must be true or false, got {}", describe(other)),
            ))
        }
    };

    Ok(CompletionRequest {
        model,
        prompt_tokens: count_tokens(&prompt),
        prompt,
        max_tokens,
        stream,
    })
}

fn parse_prompt(object: &Map<String, Value>) -> Result<String, HttpError> {
    match object.get("prompt") {
        Some(Value::String(prompt)) => Ok(prompt.clone()),
        Some(other) => Err(HttpError::invalid_field(
            "prompt",
            format!("prompt must be a string, got {}", describe(other)),
        )),
        None => Err(HttpError::invalid_field(
            "prompt",
            "missing field prompt: expected the text to continue, as a string",
        )),
    }
}

fn parse_messages(object: &Map<String, Value>) -> Result<String, HttpError> {
    let messages = match object.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => {
            return Err(HttpError::invalid_field(
                "messages",
                "messages must contain at least one message",
            ))
        }
        Some(other) => {
            return Err(HttpError::invalid_field(
                "messages",
                format!(
                    "messages must be an array of {{\"role\", \"content\"}} objects, got {}",
                    describe(other)
                ),
            ))
        }
        None => {
            return Err(HttpError::invalid_field(
                "messages",
                "missing field messages: expected an array such as [{\"role\": \"user\", \"content\": \"Hello\"}]",
            ))
        }
    };

    let mut contents = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(HttpError::invalid_field(
                "messages",
                format!(
                    "messages[{index}] must be an object with role and content, got {}",
                    describe(message)
                ),
            ));
        };
        match message.get("role") {
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(HttpError::invalid_field(
                    "messages",
                    format!(
                        "messages[{index}].role must be a string, got {}",
                        describe(other)
                    ),
                ))
            }
            None => {
                return Err(HttpError::invalid_field(
                    "messages",
                    format!("messages[{index}] is missing field role, such as \"user\""),
                ))
            }
        }
        match message.get("content") {
            Some(Value::String(content)) => contents.push(content.as_str()),
            Some(other) => {
                return Err(HttpError::invalid_field(
                    "messages",
                    format!(
                        "messages[{index}].content must be a string, got {}",
                        describe(other)
                    ),
                ))
            }
            None => {
                return Err(HttpError::invalid_field(
                    "messages",
                    format!("messages[{index}] is missing field content"),
                ))
            }
        }
    }
    Ok(contents.join("\n"))
}

fn parse_max_tokens(object: &Map<String, Value>) -> Result<u64, HttpError> {
    let expected = format!("max_tokens must be an integer from 1 to {MAX_TOKENS_LIMIT}");
    match object.get("max_tokens") {
        None | Some(Value::Null) => Ok(DEFAULT_MAX_TOKENS),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(n) if (1..=MAX_TOKENS_LIMIT).contains(&n) => Ok(n),
            _ => Err(HttpError::invalid_field(
                "max_tokens",
                format!("{expected}, got {number}"),
            )),
        },
        Some(other) => Err(HttpError::invalid_field(
            "max_tokens",
            format!("{expected}, got {}", describe(other)),
        )),
    }
}

/// Names a JSON value's type, with the value when it is short, for messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("string {s:?}"),
        Value::String(_) => "a string".to_string(),
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A finished completion, ready to be written as JSON or as server-sent events.
#[derive(Debug, Clone)]
pub struct Completion {
    pub endpoint: Endpoint,
    pub id: String,
    /// Unix time in seconds.
    pub created: u64,
    pub model: String,
    pub generation: Generation,
    pub usage: Usage,
}

/// Looks up the model and runs the generation.
///
/// Returns 404 with code `model_not_found` for an unknown model id.
pub fn complete(
    models: &Models,
    endpoint: Endpoint,
    request: &CompletionRequest,
) -> Result<Completion, HttpError> {
    let Some(text_model) = models.text_model(&request.model) else {
        let message = format!(
            "model {:?} not found; available models: {}",
            request.model,
            models.text_model_ids().join(", ")
        );
        return Err(HttpError::new(404, message).with_code("model_not_found"));
    };

    // The seed depends only on the model and the prompt, so the same request
    // always gets the same text.
    let seed = fnv1a(&[text_model.id, &request.prompt]);
    // max_tokens is at most MAX_TOKENS_LIMIT, so it fits in usize.
    let generation = text_model
        .chain
        .generate(&request.prompt, request.max_tokens as usize, seed);
    let usage = Usage::new(request.prompt_tokens, generation.words.len() as u64);

    Ok(Completion {
        endpoint,
        id: new_completion_id(endpoint),
        created: unix_time_secs(),
        model: text_model.id.to_string(),
        generation,
        usage,
    })
}

fn unix_time_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Returns an id such as `cmpl-3f2a9c0d1b4e5f60`, unique within this process.
fn new_completion_id(endpoint: Endpoint) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let prefix = match endpoint {
        Endpoint::Completions => "cmpl",
        Endpoint::ChatCompletions => "chatcmpl",
    };
    let hash = fnv1a(&[&sequence.to_string(), &nanos.to_string()]);
    format!("{prefix}-{hash:016x}")
}

#[derive(Serialize)]
struct TextCompletionBody<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [TextChoice; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct TextChoice {
    index: u32,
    text: String,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct ChatCompletionBody<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChatChoice; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChatChoice {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<ChatMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<ChatDelta>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct ChatMessage {
    role: &'static str,
    content: String,
}

#[derive(Serialize, Default)]
struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

impl Completion {
    /// Serializes the whole completion as one JSON object.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let finish_reason = Some(self.generation.finish_reason.as_str());
        match self.endpoint {
            Endpoint::Completions => {
                // A leading space lets a client print prompt + text as one line.
                let text: String = self
                    .generation
                    .words
                    .iter()
                    .map(|w| format!(" {w}"))
                    .collect();
                serde_json::to_vec(&self.text_body(text, finish_reason, Some(self.usage)))
            }
            Endpoint::ChatCompletions => {
                let message = ChatMessage {
                    role: "assistant",
                    content: self.generation.words.join(" "),
                };
                let choice = ChatChoice {
                    index: 0,
                    message: Some(message),
                    delta: None,
                    finish_reason,
                };
                serde_json::to_vec(&self.chat_body("chat.completion", choice, Some(self.usage)))
            }
        }
    }

    /// Serializes the completion as server-sent events: one `data:` event per
    /// word, then an event with `finish_reason` and `usage`, then
    /// `data: [DONE]`. Joining the streamed texts gives the same text as
    /// [`Completion::to_json`].
    pub fn to_event_stream(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut stream = Vec::new();
        let finish_reason = Some(self.generation.finish_reason.as_str());
        match self.endpoint {
            Endpoint::Completions => {
                for word in &self.generation.words {
                    let chunk = self.text_body(format!(" {word}"), None, None);
                    push_event(&mut stream, &serde_json::to_vec(&chunk)?);
                }
                let last = self.text_body(String::new(), finish_reason, Some(self.usage));
                push_event(&mut stream, &serde_json::to_vec(&last)?);
            }
            Endpoint::ChatCompletions => {
                let role = ChatDelta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                };
                push_event(&mut stream, &self.chat_chunk(role, None, None)?);
                for (index, word) in self.generation.words.iter().enumerate() {
                    let content = if index == 0 {
                        word.clone()
                    } else {
                        format!(" {word}")
                    };
                    let delta = ChatDelta {
                        role: None,
                        content: Some(content),
                    };
                    push_event(&mut stream, &self.chat_chunk(delta, None, None)?);
                }
                let last =
                    self.chat_chunk(ChatDelta::default(), finish_reason, Some(self.usage))?;
                push_event(&mut stream, &last);
            }
        }
        push_event(&mut stream, b"[DONE]");
        Ok(stream)
    }

    fn text_body(
        &self,
        text: String,
        finish_reason: Option<&'static str>,
        usage: Option<Usage>,
    ) -> TextCompletionBody<'_> {
        TextCompletionBody {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices: [TextChoice {
                index: 0,
                text,
                finish_reason,
            }],
            usage,
        }
    }

    fn chat_body(
        &self,
        object: &'static str,
        choice: ChatChoice,
        usage: Option<Usage>,
    ) -> ChatCompletionBody<'_> {
        ChatCompletionBody {
            id: &self.id,
            object,
            created: self.created,
            model: &self.model,
            choices: [choice],
            usage,
        }
    }

    fn chat_chunk(
        &self,
        delta: ChatDelta,
        finish_reason: Option<&'static str>,
        usage: Option<Usage>,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let choice = ChatChoice {
            index: 0,
            message: None,
            delta: Some(delta),
            finish_reason,
        };
        serde_json::to_vec(&self.chat_body("chat.completion.chunk", choice, usage))
    }
}

/// Appends one server-sent event. Compact JSON has no raw newlines, so each
/// event is a single `data:` line followed by the blank line that ends it.
fn push_event(stream: &mut Vec<u8>, data: &[u8]) {
    stream.extend_from_slice(b"data: ");
    stream.extend_from_slice(data);
    stream.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::models;
    use serde_json::json;

    fn parse_ok(endpoint: Endpoint, body: Value) -> CompletionRequest {
        parse_request(endpoint, body.to_string().as_bytes()).unwrap()
    }

    fn parse_err(endpoint: Endpoint, body: &str) -> HttpError {
        parse_request(endpoint, body.as_bytes()).unwrap_err()
    }

    /// Splits an event stream into the payloads of its `data:` lines.
    fn event_payloads(stream: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(stream).unwrap();
        assert!(text.ends_with("\n\n"), "stream must end with a blank line");
        text.split("\n\n")
            .filter(|event| !event.is_empty())
            .map(|event| {
                assert!(!event.contains('\n'), "event spans lines: {event:?}");
                event.strip_prefix("data: ").unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn request_defaults() {
        let request = parse_ok(
            Endpoint::Completions,
            json!({"model": "tiny-markov", "prompt": "The old bridge"}),
        );
        assert_eq!(request.max_tokens, DEFAULT_MAX_TOKENS);
        assert!(!request.stream);
        assert_eq!(request.prompt_tokens, 3);
    }

    #[test]
    fn max_tokens_bounds() {
        for (max_tokens, accepted) in [
            (json!(1), true),
            (json!(4096), true),
            (json!(0), false),
            (json!(4097), false),
            (json!(-5), false),
            (json!(2.5), false),
            (json!("64"), false),
        ] {
            let body = json!({"model": "tiny-markov", "prompt": "x", "max_tokens": max_tokens});
            let result = parse_request(Endpoint::Completions, body.to_string().as_bytes());
            assert_eq!(result.is_ok(), accepted, "max_tokens {max_tokens}");
            if let Err(error) = result {
                assert_eq!(error.status, 400);
                assert_eq!(error.param, Some("max_tokens"));
                assert!(error.message.contains("1 to 4096"), "{}", error.message);
            }
        }
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let cases = [
            (Endpoint::Completions, "", None),
            (Endpoint::Completions, "{", None),
            (Endpoint::Completions, "[1]", None),
            (Endpoint::Completions, r#"{"prompt": "x"}"#, Some("model")),
            (
                Endpoint::Completions,
                r#"{"model": 3, "prompt": "x"}"#,
                Some("model"),
            ),
            (
                Endpoint::Completions,
                r#"{"model": "tiny-markov"}"#,
                Some("prompt"),
            ),
            (
                Endpoint::Completions,
                r#"{"model": "tiny-markov", "prompt": ["a"]}"#,
                Some("prompt"),
            ),
            (
                Endpoint::Completions,
                r#"{"model": "tiny-markov", "prompt": "x", "stream": "yes"}"#,
                Some("stream"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model": "tiny-markov"}"#,
                Some("messages"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model": "tiny-markov", "messages": []}"#,
                Some("messages"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model": "tiny-markov", "messages": ["hi"]}"#,
                Some("messages"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model": "tiny-markov", "messages": [{"content": "hi"}]}"#,
                Some("messages"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model": "tiny-markov", "messages": [{"role": "user", "content": 5}]}"#,
                Some("messages"),
            ),
        ];
        for (endpoint, body, param) in cases {
            let error = parse_err(endpoint, body);
            assert_eq!(error.status, 400, "{body}");
            assert_eq!(error.param, param, "{body}");
        }
    }

    #[test]
    fn chat_prompt_tokens_count_every_message() {
        let request = parse_ok(
            Endpoint::ChatCompletions,
            json!({"model": "tiny-markov", "messages": [
                {"role": "system", "content": "Tell a story."},
                {"role": "user", "content": "The keeper counted"}
            ]}),
        );
        assert_eq!(request.prompt_tokens, 6);
    }

    #[test]
    fn unknown_model_is_404() {
        let request = parse_ok(
            Endpoint::Completions,
            json!({"model": "gpt-5", "prompt": "x"}),
        );
        let error = complete(models(), Endpoint::Completions, &request).unwrap_err();
        assert_eq!(error.status, 404);
        assert_eq!(error.code, Some("model_not_found"));
        assert!(error.message.contains("tiny-markov"), "{}", error.message);
    }

    #[test]
    fn usage_adds_up() {
        for max_tokens in [1, 5, 64, 4096] {
            let request = parse_ok(
                Endpoint::Completions,
                json!({"model": "tiny-markov", "prompt": "The keeper counted", "max_tokens": max_tokens}),
            );
            let completion = complete(models(), Endpoint::Completions, &request).unwrap();
            let body: Value = serde_json::from_slice(&completion.to_json().unwrap()).unwrap();
            let usage = &body["usage"];
            let text = body["choices"][0]["text"].as_str().unwrap();
            let completion_tokens = usage["completion_tokens"].as_u64().unwrap();

            assert_eq!(usage["prompt_tokens"], 3);
            assert_eq!(completion_tokens, count_tokens(text));
            assert!(completion_tokens <= max_tokens);
            assert_eq!(usage["total_tokens"], 3 + completion_tokens);
            let finish_reason = body["choices"][0]["finish_reason"].as_str().unwrap();
            if completion_tokens < max_tokens {
                assert_eq!(finish_reason, "stop");
            } else {
                assert_eq!(finish_reason, "length");
            }
        }
    }

    #[test]
    fn same_prompt_same_text() {
        let request = parse_ok(
            Endpoint::Completions,
            json!({"model": "tiny-markov-large", "prompt": "The bridge", "max_tokens": 30}),
        );
        let first = complete(models(), Endpoint::Completions, &request).unwrap();
        let second = complete(models(), Endpoint::Completions, &request).unwrap();
        assert_eq!(first.generation, second.generation);
        assert_ne!(first.id, second.id);
    }

    #[test]
    fn completion_json_shape() {
        let request = parse_ok(
            Endpoint::Completions,
            json!({"model": "tiny-markov", "prompt": "hello", "max_tokens": 8}),
        );
        let completion = complete(models(), Endpoint::Completions, &request).unwrap();
        let body: Value = serde_json::from_slice(&completion.to_json().unwrap()).unwrap();
        assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
        assert_eq!(body["object"], "text_completion");
        assert!(body["created"].as_u64().unwrap() > 0);
        assert_eq!(body["model"], "tiny-markov");
        assert_eq!(body["choices"][0]["index"], 0);
        assert!(body["usage"]["total_tokens"].is_u64());
    }

    #[test]
    fn chat_json_shape() {
        let request = parse_ok(
            Endpoint::ChatCompletions,
            json!({"model": "tiny-markov", "messages": [{"role": "user", "content": "the keeper"}]}),
        );
        let completion = complete(models(), Endpoint::ChatCompletions, &request).unwrap();
        let body: Value = serde_json::from_slice(&completion.to_json().unwrap()).unwrap();
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        let content = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(
            count_tokens(content),
            body["usage"]["completion_tokens"].as_u64().unwrap()
        );
        assert_eq!(body["usage"]["prompt_tokens"], 2);
    }

    #[test]
    fn text_stream_framing() {
        let request = parse_ok(
            Endpoint::Completions,
            json!({"model": "tiny-markov", "prompt": "The keeper", "max_tokens": 10, "stream": true}),
        );
        let completion = complete(models(), Endpoint::Completions, &request).unwrap();
        let payloads = event_payloads(&completion.to_event_stream().unwrap());
        let word_count = completion.generation.words.len();

        assert_eq!(
            payloads.len(),
            word_count + 2,
            "one event per word, usage, [DONE]"
        );
        assert_eq!(payloads.last().unwrap(), "[DONE]");

        let chunks: Vec<Value> = payloads[..payloads.len() - 1]
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect();
        let (last, words) = chunks.split_last().unwrap();
        for chunk in words {
            assert_eq!(chunk["object"], "text_completion");
            assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
            assert!(chunk.get("usage").is_none());
        }
        assert_eq!(last["usage"]["prompt_tokens"], 2);
        assert_eq!(last["usage"]["completion_tokens"], word_count);
        assert_eq!(last["usage"]["total_tokens"], 2 + word_count);
        assert_eq!(
            last["choices"][0]["finish_reason"],
            completion.generation.finish_reason.as_str()
        );

        let streamed: String = words
            .iter()
            .map(|c| c["choices"][0]["text"].as_str().unwrap())
            .collect();
        let whole: Value = serde_json::from_slice(&completion.to_json().unwrap()).unwrap();
        assert_eq!(streamed, whole["choices"][0]["text"].as_str().unwrap());
    }

    #[test]
    fn chat_stream_framing() {
        let request = parse_ok(
            Endpoint::ChatCompletions,
            json!({"model": "tiny-markov", "messages": [{"role": "user", "content": "the keeper"}], "max_tokens": 6, "stream": true}),
        );
        let completion = complete(models(), Endpoint::ChatCompletions, &request).unwrap();
        let payloads = event_payloads(&completion.to_event_stream().unwrap());
        let word_count = completion.generation.words.len();

        // Role event, one event per word, usage event, [DONE].
        assert_eq!(payloads.len(), word_count + 3);
        assert_eq!(payloads.last().unwrap(), "[DONE]");

        let chunks: Vec<Value> = payloads[..payloads.len() - 1]
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        for chunk in &chunks {
            assert_eq!(chunk["object"], "chat.completion.chunk");
        }
        let last = chunks.last().unwrap();
        assert_eq!(last["usage"]["total_tokens"], 2 + word_count);
        assert_eq!(last["choices"][0]["delta"], json!({}));

        let streamed: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(streamed, completion.generation.words.join(" "));
    }
}
