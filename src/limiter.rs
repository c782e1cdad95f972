//! The sliding-window counter: pure arithmetic over a counter and the time
//! passed in, with no host calls.
//!
//! Each window of length `W` keeps two counts: the current aligned window
//! `[i·W, (i+1)·W)` and the one before it. At `now`, with `e` milliseconds
//! elapsed in the current window, the estimate of the sliding window that ends
//! at `now` is
//!
//! ```text
//! estimate = previous × (W − e) / W + current
//! ```
//!
//! A request of cost `c` is admitted when `estimate + c ≤ limit` holds for every
//! window. The comparison is done exactly in integers, scaled by `W`.

use crate::counter::{Counter, WindowCounts};

/// One rate limit: at most `limit` units of cost in any sliding window of
/// `length_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Window length in milliseconds, never zero.
    pub length_ms: u64,
    /// Units of cost the window admits, never zero.
    pub limit: u64,
}

/// The state of one window after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUsage {
    /// The configured limit.
    pub limit: u64,
    /// Unit-cost requests that would still be admitted now.
    pub remaining: u64,
    /// Milliseconds until the current aligned window ends.
    pub window_end_ms: u64,
}

/// The outcome of checking one request against every window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every window had room; the counter now includes the request's cost.
    Admitted {
        /// Usage of each window, in configuration order.
        usage: Vec<WindowUsage>,
    },
    /// At least one window was full; the counter is unchanged.
    Limited {
        /// Index of the window that blocked longest.
        blocking: usize,
        /// Milliseconds after which the same request is admitted if no other
        /// traffic arrives; `None` when its cost exceeds a limit, so it never is.
        retry_after_ms: Option<u64>,
        /// Usage of each window, in configuration order.
        usage: Vec<WindowUsage>,
    },
}

/// The aligned windows a request's cost was counted in, so that a later
/// settlement can adjust the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The aligned window index each window counted the cost in.
    pub window_indexes: Vec<u64>,
    /// Whether the cost was counted; false for a limited request.
    pub counted: bool,
}

/// Returns the aligned window index and the milliseconds elapsed in it.
///
/// A clock that stepped back before the counter's newest window is treated as
/// standing at the start of that window, so it neither resets nor inflates the
/// counts.
fn position(window: &Window, counts: &WindowCounts, now_ms: u64) -> (u64, u64) {
    let index = now_ms / window.length_ms;
    if index < counts.index {
        return (counts.index, 0);
    }
    (index, now_ms % window.length_ms)
}

/// Returns `previous × (W − e) + current × W`, the estimate scaled by `W`.
fn scaled_estimate(window: &Window, counts: &WindowCounts, elapsed_ms: u64) -> u128 {
    let length = u128::from(window.length_ms);
    u128::from(counts.previous) * (length - u128::from(elapsed_ms))
        + u128::from(counts.current) * length
}

fn usage_of(window: &Window, counts: &WindowCounts, elapsed_ms: u64) -> WindowUsage {
    let length = u128::from(window.length_ms);
    let capacity = u128::from(window.limit) * length;
    let estimate = scaled_estimate(window, counts, elapsed_ms);
    let remaining = capacity.saturating_sub(estimate) / length;
    WindowUsage {
        limit: window.limit,
        remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
        window_end_ms: window.length_ms - elapsed_ms,
    }
}

/// Returns the milliseconds until a request of `cost` fits, with no other
/// traffic, or `None` when `cost` exceeds the limit.
///
/// The estimate never grows while no request arrives, so the first instant at
/// which the request fits stays valid afterwards.
fn wait_ms(window: &Window, counts: &WindowCounts, elapsed_ms: u64, cost: u64) -> Option<u64> {
    if cost > window.limit {
        return None;
    }
    let length = u128::from(window.length_ms);
    let elapsed = u128::from(elapsed_ms);
    let limit = u128::from(window.limit);
    let previous = u128::from(counts.previous);
    let current = u128::from(counts.current);
    let cost = u128::from(cost);

    // Later in the current window: previous × (W − t) ≤ (limit − current − cost) × W.
    if let Some(room) = limit.checked_sub(current + cost) {
        if previous == 0 {
            return Some(0);
        }
        let first = length.saturating_sub(room * length / previous);
        if first < length {
            return Some(to_u64(first.saturating_sub(elapsed)));
        }
    }

    // In the next window the current count becomes the previous one:
    // current × (W − t) ≤ (limit − cost) × W.
    let room = limit - cost;
    let first = (room * length)
        .checked_div(current)
        .map_or(0, |admitted| length.saturating_sub(admitted));
    Some(to_u64(length - elapsed + first))
}

fn to_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Checks a request against every window at `now_ms` and, when all have room,
/// adds its cost to the counter.
///
/// `costs` gives the request's cost in each window (a request window counts
/// requests, a token window counts tokens), and `counter` has one entry per
/// window (see [`Counter::for_windows`]).
/// A limited request changes nothing, so denied requests never count against
/// later ones.
pub fn check(
    windows: &[Window],
    counter: &mut Counter,
    now_ms: u64,
    costs: &[u64],
) -> (Decision, Reservation) {
    let mut rolled = Vec::with_capacity(windows.len());
    let mut elapsed = Vec::with_capacity(windows.len());
    for (window, counts) in windows.iter().zip(&counter.windows) {
        let (index, elapsed_ms) = position(window, counts, now_ms);
        rolled.push(counts.rolled_to(index));
        elapsed.push(elapsed_ms);
    }

    let mut blocking: Option<(usize, Option<u64>)> = None;
    for (i, window) in windows.iter().enumerate() {
        let cost = costs.get(i).copied().unwrap_or(0);
        let length = u128::from(window.length_ms);
        let after = scaled_estimate(window, &rolled[i], elapsed[i]) + u128::from(cost) * length;
        if after <= u128::from(window.limit) * length {
            continue;
        }
        let wait = wait_ms(window, &rolled[i], elapsed[i], cost);
        let longer = match blocking {
            None => true,
            Some((_, None)) => false,
            Some((_, Some(best))) => wait.is_none_or(|w| w > best),
        };
        if longer {
            blocking = Some((i, wait));
        }
    }

    let reservation = Reservation {
        window_indexes: rolled.iter().map(|counts| counts.index).collect(),
        counted: false,
    };

    if let Some((index, retry_after_ms)) = blocking {
        let usage = windows
            .iter()
            .zip(&rolled)
            .zip(&elapsed)
            .map(|((window, counts), e)| usage_of(window, counts, *e))
            .collect();
        let decision = Decision::Limited {
            blocking: index,
            retry_after_ms,
            usage,
        };
        return (decision, reservation);
    }

    for (i, counts) in rolled.iter_mut().enumerate() {
        counts.current = counts
            .current
            .saturating_add(costs.get(i).copied().unwrap_or(0));
    }
    let usage = windows
        .iter()
        .zip(&rolled)
        .zip(&elapsed)
        .map(|((window, counts), e)| usage_of(window, counts, *e))
        .collect();
    counter.windows = rolled;
    let reservation = Reservation {
        counted: true,
        ..reservation
    };
    (Decision::Admitted { usage }, reservation)
}

/// Applies the difference between a reservation and the real cost.
///
/// `deltas` has one change per window: a positive one charges more, a
/// negative one refunds. A change goes to the aligned window the reservation
/// was counted in, while that window is still the current or the previous
/// one. An older reservation has already slid out, so nothing is adjusted.
/// Counts saturate at zero and at `u64::MAX`.
pub fn settle(
    windows: &[Window],
    counter: &mut Counter,
    reservation: &Reservation,
    now_ms: u64,
    deltas: &[i64],
) {
    for (((window, counts), reserved_index), delta) in windows
        .iter()
        .zip(counter.windows.iter_mut())
        .zip(&reservation.window_indexes)
        .zip(deltas)
    {
        let delta = *delta;
        if delta == 0 {
            continue;
        }
        let (index, _) = position(window, counts, now_ms);
        *counts = counts.rolled_to(index);
        let slot = if *reserved_index == counts.index {
            &mut counts.current
        } else if reserved_index.checked_add(1) == Some(counts.index) {
            &mut counts.previous
        } else {
            continue;
        };
        *slot = if delta >= 0 {
            slot.saturating_add(delta.unsigned_abs())
        } else {
            slot.saturating_sub(delta.unsigned_abs())
        };
    }
}

/// Returns the usage of every window at `now_ms` without changing anything.
pub fn peek(windows: &[Window], counter: &Counter, now_ms: u64) -> Vec<WindowUsage> {
    windows
        .iter()
        .zip(&counter.windows)
        .map(|(window, counts)| {
            let (index, elapsed) = position(window, counts, now_ms);
            usage_of(window, &counts.rolled_to(index), elapsed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(length_ms: u64, limit: u64) -> Window {
        Window { length_ms, limit }
    }

    fn admitted(decision: &Decision) -> bool {
        matches!(decision, Decision::Admitted { .. })
    }

    #[test]
    fn admits_up_to_limit_then_limits() {
        let windows = [window(1000, 3)];
        let mut counter = Counter::for_windows(&windows, 7);
        for _ in 0..3 {
            assert!(admitted(&check(&windows, &mut counter, 100, &[1]).0));
        }
        let (decision, reservation) = check(&windows, &mut counter, 100, &[1]);
        assert!(!admitted(&decision));
        assert!(!reservation.counted);
        assert_eq!(counter.windows[0].current, 3);
    }

    #[test]
    fn remaining_counts_down() {
        let windows = [window(1000, 3)];
        let mut counter = Counter::for_windows(&windows, 7);
        let remaining: Vec<u64> = (0..3)
            .map(|_| match check(&windows, &mut counter, 0, &[1]).0 {
                Decision::Admitted { usage } => usage[0].remaining,
                Decision::Limited { .. } => panic!("limited"),
            })
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
    }

    #[test]
    fn previous_window_weighs_by_overlap() {
        // 10 requests in window 0; at 25% into window 1 the estimate is 7.5.
        let windows = [window(1000, 10)];
        let mut counter = Counter::for_windows(&windows, 1);
        for _ in 0..10 {
            check(&windows, &mut counter, 500, &[1]);
        }
        let usage = peek(&windows, &counter, 1250);
        assert_eq!(usage[0].remaining, 2); // floor(10 - 7.5)
        assert!(admitted(&check(&windows, &mut counter, 1250, &[2]).0));
        assert!(!admitted(&check(&windows, &mut counter, 1250, &[1]).0));
        // At 75% the previous window weighs 2.5: 2 + 2.5 = 4.5, so 5 more fit.
        assert_eq!(peek(&windows, &counter, 1750)[0].remaining, 5);
    }

    #[test]
    fn counts_older_than_two_windows_vanish() {
        let windows = [window(1000, 2)];
        let mut counter = Counter::for_windows(&windows, 1);
        check(&windows, &mut counter, 0, &[2]);
        assert_eq!(peek(&windows, &counter, 2000)[0].remaining, 2);
    }

    #[test]
    fn denied_requests_are_not_counted() {
        let windows = [window(1000, 1)];
        let mut counter = Counter::for_windows(&windows, 1);
        check(&windows, &mut counter, 0, &[1]);
        for _ in 0..50 {
            check(&windows, &mut counter, 10, &[1]);
        }
        assert_eq!(counter.windows[0].current, 1);
        // At 2000 ms window 0 has slid out completely.
        assert!(admitted(&check(&windows, &mut counter, 2000, &[1]).0));
    }

    #[test]
    fn retry_after_is_exact_and_honest() {
        let windows = [window(1000, 10)];
        let mut counter = Counter::for_windows(&windows, 1);
        for _ in 0..10 {
            check(&windows, &mut counter, 200, &[1]);
        }
        // In window 1 at 100 ms: estimate 10 × 0.9 = 9 + 0 → one fits only
        // when previous × (1000 − t) ≤ 9000, t ≥ 100. Already true: admitted.
        let (decision, _) = check(&windows, &mut counter, 1100, &[1]);
        assert!(admitted(&decision));
        let (decision, _) = check(&windows, &mut counter, 1100, &[1]);
        let Decision::Limited { retry_after_ms, .. } = decision else {
            panic!("expected a limit");
        };
        // Needs 10 × (1000 − t) + 1000 × 2 ≤ 10 000 → t ≥ 200 → wait 100 ms.
        assert_eq!(retry_after_ms, Some(100));
        assert!(!admitted(&check(&windows, &mut counter, 1199, &[1]).0));
        assert!(admitted(&check(&windows, &mut counter, 1200, &[1]).0));
    }

    #[test]
    fn retry_after_crosses_into_next_window() {
        let windows = [window(1000, 4)];
        let mut counter = Counter::for_windows(&windows, 1);
        check(&windows, &mut counter, 900, &[4]);
        let (decision, _) = check(&windows, &mut counter, 950, &[1]);
        let Decision::Limited { retry_after_ms, .. } = decision else {
            panic!("expected a limit");
        };
        // Window 1 needs 4 × (1000 − t) ≤ 3000 → t ≥ 250; 50 + 250 ms.
        assert_eq!(retry_after_ms, Some(300));
        assert!(!admitted(&check(&windows, &mut counter, 1249, &[1]).0));
        assert!(admitted(&check(&windows, &mut counter, 1250, &[1]).0));
    }

    #[test]
    fn cost_above_limit_never_fits() {
        let windows = [window(1000, 4)];
        let mut counter = Counter::for_windows(&windows, 1);
        let (decision, _) = check(&windows, &mut counter, 0, &[5]);
        assert_eq!(
            decision,
            Decision::Limited {
                blocking: 0,
                retry_after_ms: None,
                usage: vec![WindowUsage {
                    limit: 4,
                    remaining: 4,
                    window_end_ms: 1000
                }],
            }
        );
    }

    #[test]
    fn blocking_window_is_the_longest_wait() {
        let windows = [window(1000, 5), window(60_000, 6)];
        let mut counter = Counter::for_windows(&windows, 1);
        for _ in 0..5 {
            check(&windows, &mut counter, 0, &[1, 1]);
        }
        // The second blocks now; the minute window has one left.
        let (decision, _) = check(&windows, &mut counter, 10, &[1, 1]);
        assert!(matches!(decision, Decision::Limited { blocking: 0, .. }));
        check(&windows, &mut counter, 5000, &[1, 1]);
        let (decision, _) = check(&windows, &mut counter, 5000, &[1, 1]);
        assert!(matches!(decision, Decision::Limited { blocking: 1, .. }));
    }

    #[test]
    fn clock_stepping_back_neither_resets_nor_inflates() {
        let windows = [window(1000, 3)];
        let mut counter = Counter::for_windows(&windows, 1);
        check(&windows, &mut counter, 5_500, &[3]);
        // Back two windows: the counts stay, nothing is added.
        assert!(!admitted(&check(&windows, &mut counter, 3_500, &[1]).0));
        assert_eq!(counter.windows[0].index, 5);
        assert_eq!(counter.windows[0].current, 3);
        assert_eq!(counter.windows[0].previous, 0);
    }

    #[test]
    fn counts_saturate() {
        let windows = [window(1000, u64::MAX)];
        let mut counter = Counter::for_windows(&windows, 1);
        check(&windows, &mut counter, 0, &[u64::MAX]);
        let (decision, _) = check(&windows, &mut counter, 0, &[1]);
        assert!(!admitted(&decision));
        assert_eq!(counter.windows[0].current, u64::MAX);
    }

    #[test]
    fn settle_refunds_and_charges_the_reserved_window() {
        let windows = [window(1000, 100)];
        let mut counter = Counter::for_windows(&windows, 1);
        let (_, reservation) = check(&windows, &mut counter, 900, &[50]);
        settle(&windows, &mut counter, &reservation, 950, &[-30]);
        assert_eq!(counter.windows[0].current, 20);
        // In the next window the reservation sits in `previous`.
        settle(&windows, &mut counter, &reservation, 1100, &[15]);
        assert_eq!(counter.windows[0].previous, 35);
        assert_eq!(counter.windows[0].current, 0);
        // Two windows later it has slid out; nothing changes.
        settle(&windows, &mut counter, &reservation, 2100, &[1000]);
        assert_eq!(counter.windows[0].previous, 0);
        assert_eq!(counter.windows[0].current, 0);
    }

    #[test]
    fn settle_refund_saturates_at_zero() {
        let windows = [window(1000, 100)];
        let mut counter = Counter::for_windows(&windows, 1);
        let (_, reservation) = check(&windows, &mut counter, 0, &[5]);
        settle(&windows, &mut counter, &reservation, 0, &[-50]);
        assert_eq!(counter.windows[0].current, 0);
    }
}
