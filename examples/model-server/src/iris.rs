//! Fisher's Iris data set and a softmax (multinomial logistic regression)
//! classifier trained on it.
//!
//! The data are the 150 flowers that Edgar Anderson measured and R. A. Fisher
//! published in 1936: 50 each of Iris setosa, versicolor and virginica, with
//! four lengths in centimetres. They are embedded from `data/iris.csv`.

/// Names of the four input features, in the order the model expects them.
pub const FEATURE_NAMES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// Class labels, indexed by the class number the model predicts.
pub const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

const IRIS_CSV: &str = include_str!("../data/iris.csv");

/// Number of input features.
pub const FEATURE_COUNT: usize = FEATURE_NAMES.len();
const CLASS_COUNT: usize = LABELS.len();

/// Four measurements of one flower, in centimetres.
pub type Features = [f64; FEATURE_COUNT];

/// One labelled row of the data set.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub features: Features,
    pub label: usize,
}

/// Parses the embedded CSV into samples.
///
/// Returns an error naming the line when a row is malformed, which can only
/// happen if `data/iris.csv` was edited by hand.
pub fn load_dataset() -> Result<Vec<Sample>, String> {
    let mut samples = Vec::with_capacity(150);
    for (index, line) in IRIS_CSV.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index + 1;
        samples.push(
            parse_csv_row(line).map_err(|e| format!("data/iris.csv line {line_number}: {e}"))?,
        );
    }
    Ok(samples)
}

fn parse_csv_row(line: &str) -> Result<Sample, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != FEATURE_COUNT + 1 {
        return Err(format!(
            "expected {} comma-separated fields, got {}",
            FEATURE_COUNT + 1,
            fields.len()
        ));
    }

    let mut features = [0.0; FEATURE_COUNT];
    for (slot, text) in features.iter_mut().zip(&fields) {
        *slot = text
            .parse()
            .map_err(|_| format!("invalid number {text:?}"))?;
    }
    let species = fields[FEATURE_COUNT];
    let label = LABELS
        .iter()
        .position(|name| *name == species)
        .ok_or_else(|| format!("unknown species {species:?}"))?;

    Ok(Sample { features, label })
}

/// Settings for full-batch gradient descent.
#[derive(Debug, Clone, Copy)]
pub struct TrainingOptions {
    pub epochs: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights (not on the biases).
    pub l2_penalty: f64,
}

impl Default for TrainingOptions {
    fn default() -> Self {
        Self {
            epochs: 2000,
            learning_rate: 0.5,
            l2_penalty: 1e-4,
        }
    }
}

/// A linear softmax classifier over standardized features.
///
/// Training starts from zero weights and uses full-batch gradient descent, so
/// the same data and options always give the same model.
#[derive(Debug, Clone)]
pub struct SoftmaxClassifier {
    feature_means: Features,
    feature_std_devs: Features,
    /// One row per class: a weight per standardized feature, then the bias.
    weights: [[f64; FEATURE_COUNT + 1]; CLASS_COUNT],
}

impl SoftmaxClassifier {
    /// Trains a classifier by minimizing the mean cross-entropy loss.
    pub fn train(samples: &[Sample], options: TrainingOptions) -> Self {
        let (feature_means, feature_std_devs) = feature_statistics(samples);
        let mut model = Self {
            feature_means,
            feature_std_devs,
            weights: [[0.0; FEATURE_COUNT + 1]; CLASS_COUNT],
        };
        if samples.is_empty() {
            return model;
        }

        let inputs: Vec<Features> = samples
            .iter()
            .map(|sample| model.standardize(&sample.features))
            .collect();
        let sample_count = samples.len() as f64;

        for _ in 0..options.epochs {
            let mut gradient = [[0.0; FEATURE_COUNT + 1]; CLASS_COUNT];
            for (input, sample) in inputs.iter().zip(samples) {
                let probabilities = softmax(&model.logits(input));
                for (class, row) in gradient.iter_mut().enumerate() {
                    let target = if class == sample.label { 1.0 } else { 0.0 };
                    let error = probabilities[class] - target;
                    for (slot, x) in row.iter_mut().zip(input) {
                        *slot += error * x;
                    }
                    row[FEATURE_COUNT] += error;
                }
            }

            for (weights, gradient) in model.weights.iter_mut().zip(&gradient) {
                for (j, weight) in weights.iter_mut().enumerate() {
                    let penalty = if j < FEATURE_COUNT {
                        options.l2_penalty * *weight
                    } else {
                        0.0
                    };
                    *weight -= options.learning_rate * (gradient[j] / sample_count + penalty);
                }
            }
        }
        model
    }

    /// Returns the probability of each class in [`LABELS`] order.
    pub fn predict_probabilities(&self, features: &Features) -> [f64; CLASS_COUNT] {
        softmax(&self.logits(&self.standardize(features)))
    }

    /// Returns the index in [`LABELS`] of the most probable class.
    pub fn predict(&self, features: &Features) -> usize {
        argmax(&self.predict_probabilities(features))
    }

    /// Returns the fraction of `samples` whose label the model predicts.
    pub fn accuracy(&self, samples: &[Sample]) -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let correct = samples
            .iter()
            .filter(|sample| self.predict(&sample.features) == sample.label)
            .count();
        correct as f64 / samples.len() as f64
    }

    fn standardize(&self, features: &Features) -> Features {
        let mut standardized = [0.0; FEATURE_COUNT];
        for (j, value) in standardized.iter_mut().enumerate() {
            *value = (features[j] - self.feature_means[j]) / self.feature_std_devs[j];
        }
        standardized
    }

    fn logits(&self, input: &Features) -> [f64; CLASS_COUNT] {
        let mut logits = [0.0; CLASS_COUNT];
        for (logit, weights) in logits.iter_mut().zip(&self.weights) {
            let dot: f64 = weights.iter().zip(input).map(|(w, x)| w * x).sum();
            *logit = dot + weights[FEATURE_COUNT];
        }
        logits
    }
}

/// Returns the mean and standard deviation of each feature. A constant feature
/// gets a standard deviation of 1 so that standardizing never divides by zero.
fn feature_statistics(samples: &[Sample]) -> (Features, Features) {
    let mut means = [0.0; FEATURE_COUNT];
    let mut std_devs = [1.0; FEATURE_COUNT];
    if samples.is_empty() {
        return (means, std_devs);
    }

    let count = samples.len() as f64;
    for j in 0..FEATURE_COUNT {
        let mean = samples.iter().map(|s| s.features[j]).sum::<f64>() / count;
        let variance = samples
            .iter()
            .map(|s| (s.features[j] - mean).powi(2))
            .sum::<f64>()
            / count;
        means[j] = mean;
        if variance > 0.0 {
            std_devs[j] = variance.sqrt();
        }
    }
    (means, std_devs)
}

/// Computes softmax with the maximum logit subtracted first, so large logits
/// cannot overflow `exp`.
fn softmax(logits: &[f64; CLASS_COUNT]) -> [f64; CLASS_COUNT] {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut exps = [0.0; CLASS_COUNT];
    for (e, logit) in exps.iter_mut().zip(logits) {
        *e = (logit - max).exp();
    }
    let sum: f64 = exps.iter().sum();
    exps.map(|e| e / sum)
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained() -> (Vec<Sample>, SoftmaxClassifier) {
        let samples = load_dataset().unwrap();
        let model = SoftmaxClassifier::train(&samples, TrainingOptions::default());
        (samples, model)
    }

    #[test]
    fn dataset_has_fifty_rows_per_species() {
        let samples = load_dataset().unwrap();
        assert_eq!(samples.len(), 150);
        for (label, name) in LABELS.iter().enumerate() {
            let count = samples.iter().filter(|s| s.label == label).count();
            assert_eq!(count, 50, "rows labelled {name}");
        }
    }

    #[test]
    fn training_accuracy_at_least_ninety_percent() {
        let (samples, model) = trained();
        let accuracy = model.accuracy(&samples);
        assert!(accuracy >= 0.9, "training accuracy {accuracy}");
    }

    #[test]
    fn training_is_deterministic() {
        let (samples, first) = trained();
        let second = SoftmaxClassifier::train(&samples, TrainingOptions::default());
        assert_eq!(first.weights, second.weights);
    }

    #[test]
    fn probabilities_sum_to_one() {
        let (samples, model) = trained();
        for sample in &samples {
            let sum: f64 = model.predict_probabilities(&sample.features).iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "sum {sum}");
        }
    }

    #[test]
    fn classic_examples_get_their_species() {
        let (_, model) = trained();
        let cases = [
            ([5.1, 3.5, 1.4, 0.2], "setosa"),
            ([6.4, 3.2, 4.5, 1.5], "versicolor"),
            ([6.3, 3.3, 6.0, 2.5], "virginica"),
        ];
        for (features, expected) in cases {
            assert_eq!(LABELS[model.predict(&features)], expected, "{features:?}");
        }
    }

    #[test]
    fn softmax_handles_large_logits() {
        let probabilities = softmax(&[1000.0, 0.0, -1000.0]);
        assert!(probabilities.iter().all(|p| p.is_finite()));
        assert!((probabilities[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn malformed_csv_row_is_rejected() {
        assert!(parse_csv_row("5.1,3.5,1.4,setosa").is_err());
        assert!(parse_csv_row("5.1,3.5,x,0.2,setosa").is_err());
        assert!(parse_csv_row("5.1,3.5,1.4,0.2,rose").is_err());
    }
}
