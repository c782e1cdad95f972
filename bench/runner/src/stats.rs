//! Summaries of repeated measurements.

/// Returns the median of `values`, or NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// Returns the `q` quantile of `values` (0 ≤ q ≤ 1), interpolating linearly
/// between the two nearest values, or NaN when there are none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

/// Returns the interquartile range of `values` as a percentage of their
/// median: how much the middle half of the repeats disagreed.
pub fn iqr_percent(values: &[f64]) -> f64 {
    (quantile(values, 0.75) - quantile(values, 0.25)) / median(values) * 100.0
}

/// Returns the range of `values` (largest minus smallest) as a percentage
/// of their median, for a handful of repeats where quartiles mean little.
pub fn range_percent(values: &[f64]) -> f64 {
    (quantile(values, 1.0) - quantile(values, 0.0)) / median(values) * 100.0
}

/// Returns `numerators[i] / denominators[i]` for each repeat `i`.
///
/// A ratio of two figures from the same round cancels most of a slow spell
/// that other work on the machine caused during that round.
pub fn paired_ratios(numerators: &[f64], denominators: &[f64]) -> Vec<f64> {
    numerators
        .iter()
        .zip(denominators)
        .map(|(numerator, denominator)| numerator / denominator)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn quantile_interpolates() {
        let values = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert_eq!(quantile(&values, 0.0), 10.0);
        assert_eq!(quantile(&values, 0.25), 20.0);
        assert_eq!(quantile(&values, 0.375), 25.0);
        assert_eq!(quantile(&values, 1.0), 50.0);
    }

    #[test]
    fn iqr_is_middle_half_over_median() {
        assert_eq!(
            iqr_percent(&[10.0, 20.0, 30.0, 40.0, 50.0]),
            20.0 / 30.0 * 100.0
        );
    }

    #[test]
    fn range_is_largest_minus_smallest_over_median() {
        assert_eq!(range_percent(&[90.0, 100.0, 110.0]), 20.0);
    }

    #[test]
    fn paired_ratios_divide_by_round() {
        assert_eq!(paired_ratios(&[2.0, 9.0], &[1.0, 3.0]), vec![2.0, 3.0]);
    }
}
