//! Rate-limit headers and the body of a limit response, built from a decision.

use crate::config::Limits;
use crate::limiter::{Decision, WindowUsage};

/// Returns whole seconds, rounded up and never 0, for a wait in milliseconds.
pub fn seconds_rounded_up(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// Picks the most restrictive window: the smallest share of its limit left,
/// and of equal shares the longest window, which takes longest to recover.
fn most_restrictive(usage: &[WindowUsage]) -> usize {
    let mut best = 0;
    for (i, candidate) in usage.iter().enumerate().skip(1) {
        let current = &usage[best];
        // remaining / limit compared without division.
        let left = u128::from(candidate.remaining) * u128::from(current.limit);
        let right = u128::from(current.remaining) * u128::from(candidate.limit);
        if left <= right {
            best = i;
        }
    }
    best
}

/// Returns every rate-limit header for `decision`, request windows first.
///
/// `limits` gives the header names: `X-RateLimit-*-<Window>` for request
/// windows and `X-RateLimit-*-Tokens-<Window>` for token windows. The windows
/// must be in the order the counter stores them (`Limits::counter_windows`).
pub fn rate_limit_headers(limits: &Limits, decision: &Decision) -> Vec<(String, String)> {
    let usage = match decision {
        Decision::Admitted { usage } | Decision::Limited { usage, .. } => usage,
    };
    let names = limits.windows.iter().chain(&limits.token_windows);

    let mut headers = Vec::with_capacity(usage.len() * 2 + 4);
    for (named, window) in names.zip(usage) {
        headers.push((named.limit_header.clone(), window.limit.to_string()));
        headers.push((named.remaining_header.clone(), window.remaining.to_string()));
    }

    let (chosen, reset) = match decision {
        Decision::Limited {
            blocking,
            retry_after_ms,
            ..
        } => {
            let length_ms = limits
                .counter_windows
                .get(*blocking)
                .map_or(1000, |w| w.length_ms);
            // A cost above the limit never fits; config validation prevents
            // it, and the window length is the fallback.
            let retry_after = seconds_rounded_up(retry_after_ms.unwrap_or(length_ms));
            headers.push(("Retry-After".to_string(), retry_after.to_string()));
            (*blocking, retry_after)
        }
        Decision::Admitted { usage } => {
            let chosen = most_restrictive(usage);
            let reset = usage
                .get(chosen)
                .map_or(1, |w| seconds_rounded_up(w.window_end_ms));
            (chosen, reset)
        }
    };
    if let Some(window) = usage.get(chosen) {
        headers.push(("RateLimit-Limit".to_string(), window.limit.to_string()));
        headers.push((
            "RateLimit-Remaining".to_string(),
            window.remaining.to_string(),
        ));
        headers.push(("RateLimit-Reset".to_string(), reset.to_string()));
    }
    headers
}

/// Returns the JSON body `{"message": ...}` of a limit response; any message
/// text stays valid JSON.
pub fn message_body(message: &str) -> Vec<u8> {
    let mut body = serde_json::to_vec(&serde_json::json!({ "message": message }))
        .unwrap_or_else(|_| b"{\"message\":\"API rate limit exceeded\"}".to_vec());
    body.push(b'\n');
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamedWindow;
    use crate::limiter::Window;

    fn limits() -> Limits {
        let window = |length_ms, limit| Window { length_ms, limit };
        Limits::new(
            "",
            vec![
                NamedWindow::new("Second", window(1000, 10), false),
                NamedWindow::new("Minute", window(60_000, 100), false),
            ],
            vec![NamedWindow::new("Minute", window(60_000, 5000), true)],
        )
    }

    fn usage(limit: u64, remaining: u64, window_end_ms: u64) -> WindowUsage {
        WindowUsage {
            limit,
            remaining,
            window_end_ms,
        }
    }

    #[test]
    fn admitted_headers_name_every_window() {
        let decision = Decision::Admitted {
            usage: vec![
                usage(10, 9, 400),
                usage(100, 5, 30_001),
                usage(5000, 4000, 30_001),
            ],
        };
        let headers = rate_limit_headers(&limits(), &decision);
        let expected = [
            ("X-RateLimit-Limit-Second", "10"),
            ("X-RateLimit-Remaining-Second", "9"),
            ("X-RateLimit-Limit-Minute", "100"),
            ("X-RateLimit-Remaining-Minute", "5"),
            ("X-RateLimit-Limit-Tokens-Minute", "5000"),
            ("X-RateLimit-Remaining-Tokens-Minute", "4000"),
            ("RateLimit-Limit", "100"),
            ("RateLimit-Remaining", "5"),
            ("RateLimit-Reset", "31"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(headers, expected);
    }

    #[test]
    fn limited_headers_report_blocking_window() {
        let decision = Decision::Limited {
            blocking: 0,
            retry_after_ms: Some(1),
            usage: vec![
                usage(10, 0, 400),
                usage(100, 0, 30_000),
                usage(5000, 0, 30_000),
            ],
        };
        let headers = rate_limit_headers(&limits(), &decision);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(find("Retry-After").as_deref(), Some("1"));
        assert_eq!(find("RateLimit-Limit").as_deref(), Some("10"));
        assert_eq!(find("RateLimit-Reset").as_deref(), Some("1"));
    }

    #[test]
    fn most_restrictive_prefers_longer_on_ties() {
        assert_eq!(most_restrictive(&[usage(10, 0, 1), usage(100, 0, 1)]), 1);
        assert_eq!(most_restrictive(&[usage(10, 1, 1), usage(100, 50, 1)]), 0);
    }

    #[test]
    fn seconds_round_up_and_never_zero() {
        assert_eq!(seconds_rounded_up(0), 1);
        assert_eq!(seconds_rounded_up(1), 1);
        assert_eq!(seconds_rounded_up(1000), 1);
        assert_eq!(seconds_rounded_up(1001), 2);
    }

    #[test]
    fn message_body_stays_valid_json() {
        let body = message_body("quote \" backslash \\ newline \n and <html>");
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed["message"],
            "quote \" backslash \\ newline \n and <html>"
        );
    }
}
