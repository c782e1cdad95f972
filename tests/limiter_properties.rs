//! Property tests of the limiter core over random arrivals and costs.

use proptest::prelude::*;
use sliding_window_rate_limit::counter::Counter;
use sliding_window_rate_limit::limiter::{self, Decision, Window};

/// Arrivals as (gap in ms since the previous one, cost).
fn arrivals() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..400, 1u64..4), 1..400)
}

fn windows() -> impl Strategy<Value = Vec<Window>> {
    prop::sample::select(vec![
        vec![Window {
            length_ms: 1000,
            limit: 5,
        }],
        vec![
            Window {
                length_ms: 1000,
                limit: 7,
            },
            Window {
                length_ms: 5000,
                limit: 20,
            },
        ],
        vec![
            Window {
                length_ms: 250,
                limit: 3,
            },
            Window {
                length_ms: 3000,
                limit: 10,
            },
        ],
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_aligned_window_admits_more_than_its_limit(windows in windows(), arrivals in arrivals()) {
        let mut counter = Counter::for_windows(&windows, 1);
        let mut now = 0;
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (gap, cost) in arrivals {
            now += gap;
            let costs = vec![cost; windows.len()];
            let (decision, _) = limiter::check(&windows, &mut counter, now, &costs);
            if matches!(decision, Decision::Admitted { .. }) {
                admitted.push((now, cost));
            }
        }
        for window in &windows {
            let mut per_window = std::collections::HashMap::new();
            for (at, cost) in &admitted {
                *per_window.entry(at / window.length_ms).or_insert(0) += cost;
            }
            for (index, total) in per_window {
                prop_assert!(total <= window.limit, "window {index} of {} ms admitted {total}", window.length_ms);
            }
        }
    }

    /// Recomputes each estimate from the log of admitted requests, so the
    /// decision is checked against an oracle that shares no code with it.
    #[test]
    fn decision_matches_estimate_from_admitted_log(windows in windows(), arrivals in arrivals()) {
        let mut counter = Counter::for_windows(&windows, 1);
        let mut now = 0;
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (gap, cost) in arrivals {
            now += gap;
            let fits = windows.iter().all(|window| {
                let w = u128::from(window.length_ms);
                let index = now / window.length_ms;
                let elapsed = u128::from(now % window.length_ms);
                let sum = |i: u64| -> u128 {
                    admitted.iter().filter(|(at, _)| at / window.length_ms == i).map(|(_, c)| u128::from(*c)).sum()
                };
                let previous = if index == 0 { 0 } else { sum(index - 1) };
                let estimate = previous * (w - elapsed) + sum(index) * w;
                estimate + u128::from(cost) * w <= u128::from(window.limit) * w
            });
            let costs = vec![cost; windows.len()];
            let (decision, _) = limiter::check(&windows, &mut counter, now, &costs);
            let was_admitted = matches!(decision, Decision::Admitted { .. });
            prop_assert_eq!(was_admitted, fits, "at {} ms with cost {}", now, cost);
            if was_admitted {
                admitted.push((now, cost));
            }
        }
    }

    #[test]
    fn retry_after_is_honest(windows in windows(), arrivals in arrivals(), cost in 1u64..4) {
        let mut counter = Counter::for_windows(&windows, 1);
        let mut now = 0;
        for (gap, arrival_cost) in arrivals {
            now += gap;
            limiter::check(&windows, &mut counter, now, &vec![arrival_cost; windows.len()]);
        }
        let costs = vec![cost; windows.len()];
        let mut probe = counter.clone();
        if let (Decision::Limited { retry_after_ms: Some(wait), .. }, _) = limiter::check(&windows, &mut probe, now, &costs) {
            prop_assert!(wait > 0);
            let mut later = counter.clone();
            let (decision, _) = limiter::check(&windows, &mut later, now + wait, &costs);
            prop_assert!(matches!(decision, Decision::Admitted { .. }), "not admitted after {wait} ms");
            let mut earlier = counter.clone();
            let (decision, _) = limiter::check(&windows, &mut earlier, now + wait - 1, &costs);
            prop_assert!(matches!(decision, Decision::Limited { .. }), "admitted 1 ms before retry-after {wait}");
        }
    }
}
