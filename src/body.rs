//! Reading costs, models and usage from JSON bodies and event streams.
//!
//! Bodies come from clients and models, so every reader here returns `None`
//! for anything unexpected instead of failing the request.

use serde_json::Value;

/// Returns the non-negative integer at `pointer`, or `None` when the body is
/// not JSON or contains no such number there. A number with a fraction is
/// rounded up, since a partial token still costs one.
pub fn number_at(body: &[u8], pointer: &str) -> Option<u64> {
    let value: Value = serde_json::from_slice(body).ok()?;
    number_in(&value, pointer)
}

fn number_in(value: &Value, pointer: &str) -> Option<u64> {
    let found = value.pointer(pointer)?;
    if let Some(n) = found.as_u64() {
        return Some(n);
    }
    let float = found.as_f64()?;
    if (0.0..1.8e19).contains(&float) {
        Some(float.ceil() as u64)
    } else {
        None
    }
}

/// Returns the string at `pointer` in a JSON body.
pub fn string_at(body: &[u8], pointer: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.pointer(pointer)?.as_str().map(str::to_string)
}

/// Parses a header value as a non-negative integer.
pub fn number_in_header(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Maximum length of an event-stream line kept while waiting for its end;
/// a longer line is skipped.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Finds the last usage figure in a server-sent-events stream, chunk by chunk,
/// keeping only the unfinished line between chunks.
#[derive(Debug, Default)]
pub struct EventStreamUsage {
    partial: Vec<u8>,
    skipping: bool,
    /// The last usage figure seen in a `data:` line.
    pub usage: Option<u64>,
}

impl EventStreamUsage {
    /// Feeds the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8], pointer: &str) {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(end);
            if !self.skipping {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.read_line(&whole, pointer);
            }
            self.skipping = false;
            self.partial.clear();
            rest = &after[1..];
        }
        if self.skipping {
            return;
        }
        if self.partial.len() + rest.len() > MAX_LINE_BYTES {
            self.partial.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(rest);
        }
    }

    /// Reads a final line that had no newline after it.
    pub fn finish(&mut self, pointer: &str) {
        if !self.skipping {
            let whole = std::mem::take(&mut self.partial);
            self.read_line(&whole, pointer);
        }
    }

    fn read_line(&mut self, line: &[u8], pointer: &str) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        if let Some(n) = number_at(data, pointer) {
            self.usage = Some(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_at_reads_integers_and_rounds_fractions_up() {
        assert_eq!(
            number_at(br#"{"max_tokens": 128}"#, "/max_tokens"),
            Some(128)
        );
        assert_eq!(number_at(br#"{"max_tokens": 1.2}"#, "/max_tokens"), Some(2));
        assert_eq!(
            number_at(br#"{"usage": {"total_tokens": 9}}"#, "/usage/total_tokens"),
            Some(9)
        );
    }

    #[test]
    fn number_at_ignores_bad_input() {
        assert_eq!(number_at(br#"{"max_tokens": -1}"#, "/max_tokens"), None);
        assert_eq!(number_at(br#"{"max_tokens": "12"}"#, "/max_tokens"), None);
        assert_eq!(number_at(br#"{"max_tokens": 1e300}"#, "/max_tokens"), None);
        assert_eq!(number_at(b"{\"max_tokens\": 12", "/max_tokens"), None);
        assert_eq!(number_at(b"\xff\xfe", "/max_tokens"), None);
        assert_eq!(number_at(b"", "/max_tokens"), None);
    }

    #[test]
    fn string_at_reads_model() {
        assert_eq!(
            string_at(br#"{"model": "tiny"}"#, "/model").as_deref(),
            Some("tiny")
        );
        assert_eq!(string_at(br#"{"model": 3}"#, "/model"), None);
    }

    #[test]
    fn header_numbers_parse() {
        assert_eq!(number_in_header(b" 42 "), Some(42));
        assert_eq!(number_in_header(b"-4"), None);
        assert_eq!(number_in_header(b"\xff"), None);
    }

    #[test]
    fn event_stream_usage_from_last_chunk_split_anywhere() {
        let stream = b"data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"usage\":{\"total_tokens\":17}}\n\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut reader = EventStreamUsage::default();
            reader.feed(&stream[..split], "/usage/total_tokens");
            reader.feed(&stream[split..], "/usage/total_tokens");
            reader.finish("/usage/total_tokens");
            assert_eq!(reader.usage, Some(17), "split at {split}");
        }
    }

    #[test]
    fn event_stream_without_usage_reports_none() {
        let mut reader = EventStreamUsage::default();
        reader.feed(
            b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
            "/usage/total_tokens",
        );
        reader.finish("/usage/total_tokens");
        assert_eq!(reader.usage, None);
    }

    #[test]
    fn event_stream_skips_overlong_lines() {
        let mut reader = EventStreamUsage::default();
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        reader.feed(b"data: ", "/u");
        reader.feed(&long, "/u");
        reader.feed(b"\ndata: {\"u\": 3}\n", "/u");
        assert_eq!(reader.usage, Some(3));
    }
}
