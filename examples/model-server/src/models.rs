//! The models this server loads: trained once at start-up, then shared
//! read-only by every worker thread.

use std::time::{Duration, Instant};

use crate::iris::{self, SoftmaxClassifier, TrainingOptions};
use crate::markov::MarkovChain;

/// Model id of the Iris classifier.
pub const IRIS_MODEL_ID: &str = "iris-softmax";

/// A short story written for this example, which the Markov chains learn from.
const TRAINING_TEXT: &str = include_str!("../data/bridge-keeper.txt");

/// A text-generation model with its API id.
#[derive(Debug)]
pub struct TextModel {
    pub id: &'static str,
    pub chain: MarkovChain,
}

/// Every model the server serves.
#[derive(Debug)]
pub struct Models {
    pub iris: SoftmaxClassifier,
    pub iris_training_rows: usize,
    pub iris_training_accuracy: f64,
    pub text_models: Vec<TextModel>,
    pub training_time: Duration,
}

impl Models {
    /// Trains the Iris classifier and the text models.
    ///
    /// Fails only when the embedded Iris CSV is malformed.
    pub fn train() -> Result<Self, String> {
        let started = Instant::now();

        let samples = iris::load_dataset()?;
        let classifier = SoftmaxClassifier::train(&samples, TrainingOptions::default());
        let accuracy = classifier.accuracy(&samples);

        let text_models = vec![
            TextModel {
                id: "tiny-markov",
                chain: MarkovChain::train(TRAINING_TEXT, 1),
            },
            TextModel {
                id: "tiny-markov-large",
                chain: MarkovChain::train(TRAINING_TEXT, 2),
            },
        ];

        Ok(Self {
            iris: classifier,
            iris_training_rows: samples.len(),
            iris_training_accuracy: accuracy,
            text_models,
            training_time: started.elapsed(),
        })
    }

    /// Finds a text model by its API id.
    pub fn text_model(&self, id: &str) -> Option<&TextModel> {
        self.text_models.iter().find(|model| model.id == id)
    }

    /// Ids of the text models, for error messages and listings.
    pub fn text_model_ids(&self) -> Vec<&'static str> {
        self.text_models.iter().map(|model| model.id).collect()
    }
}
