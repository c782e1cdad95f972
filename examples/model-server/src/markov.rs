//! Word-level Markov chain text generator.
//!
//! A token is a whitespace-separated word with its punctuation attached, so
//! `"gate,"` and `"gate"` are different tokens. The chain learns which word
//! follows each context of `order` words (order 1 is a bigram model), and
//! learns an end-of-text marker after the last word of every paragraph.

use std::collections::HashMap;

/// Marker for "the paragraph ends here" in the successor lists.
const END: u32 = u32::MAX;

/// Reason generation stopped, named as in the OpenAI API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The chain produced its end-of-paragraph marker.
    Stop,
    /// `max_tokens` words were produced.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Output of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub words: Vec<String>,
    pub finish_reason: FinishReason,
}

/// A Markov chain over words with a fixed context length.
#[derive(Debug, Clone)]
pub struct MarkovChain {
    order: usize,
    vocabulary: Vec<String>,
    ids_by_word: HashMap<String, u32>,
    /// Token id of every vocabulary word, keyed by its normalized form
    /// (lower case, punctuation trimmed), used to find a prompt's words.
    ids_by_normalized_word: HashMap<String, Vec<u32>>,
    /// `successors[k - 1]` maps a context of `k` token ids to every token seen
    /// after it, repeated once per occurrence, for `k` in `1..=order`.
    successors: Vec<HashMap<Vec<u32>, Vec<u32>>>,
    /// First token of every paragraph, used when the prompt gives no context.
    paragraph_starts: Vec<u32>,
    training_words: usize,
}

impl MarkovChain {
    /// Trains a chain of the given order (at least 1) on `text`, where blank
    /// lines separate paragraphs.
    pub fn train(text: &str, order: usize) -> Self {
        let order = order.max(1);
        let mut chain = Self {
            order,
            vocabulary: Vec::new(),
            ids_by_word: HashMap::new(),
            ids_by_normalized_word: HashMap::new(),
            successors: vec![HashMap::new(); order],
            paragraph_starts: Vec::new(),
            training_words: 0,
        };
        for paragraph in text.split("\n\n") {
            let mut ids: Vec<u32> = Vec::new();
            for word in paragraph.split_whitespace() {
                let id = match chain.ids_by_word.get(word) {
                    Some(id) => *id,
                    None => chain.add_word(word),
                };
                ids.push(id);
            }
            let Some(first) = ids.first() else {
                continue;
            };
            chain.paragraph_starts.push(*first);
            chain.training_words += ids.len();
            ids.push(END);

            for position in 1..ids.len() {
                let next = ids[position];
                for context_length in 1..=order.min(position) {
                    let context = ids[position - context_length..position].to_vec();
                    chain.successors[context_length - 1]
                        .entry(context)
                        .or_default()
                        .push(next);
                }
            }
        }
        chain
    }

    fn add_word(&mut self, word: &str) -> u32 {
        // The vocabulary of an embedded text is far below u32::MAX words.
        let id = self.vocabulary.len() as u32;
        self.vocabulary.push(word.to_string());
        self.ids_by_word.insert(word.to_string(), id);
        self.ids_by_normalized_word
            .entry(normalize(word))
            .or_default()
            .push(id);
        id
    }

    /// Number of context words the chain looks at.
    pub fn order(&self) -> usize {
        self.order
    }

    /// Number of distinct tokens in the training text.
    pub fn vocabulary_size(&self) -> usize {
        self.vocabulary.len()
    }

    /// Number of tokens in the training text.
    pub fn training_words(&self) -> usize {
        self.training_words
    }

    /// Generates up to `max_tokens` words that continue `prompt`.
    ///
    /// The output depends only on the chain, `prompt`, `max_tokens` and
    /// `seed`. The last prompt words found in the vocabulary become the
    /// starting context. When none is found, generation starts at the
    /// beginning of a paragraph.
    pub fn generate(&self, prompt: &str, max_tokens: usize, seed: u64) -> Generation {
        let mut rng = SplitMix64::new(seed);
        let mut context: Vec<u32> = self.prompt_context(prompt);
        let mut words = Vec::new();

        while words.len() < max_tokens {
            let next = match self.successors_of(&context) {
                Some(candidates) => candidates[rng.below(candidates.len())],
                None => match self.paragraph_starts.len() {
                    0 => END,
                    count => self.paragraph_starts[rng.below(count)],
                },
            };
            if next == END {
                return Generation {
                    words,
                    finish_reason: FinishReason::Stop,
                };
            }

            words.push(self.vocabulary[next as usize].clone());
            context.push(next);
            if context.len() > self.order {
                context.remove(0);
            }
        }
        Generation {
            words,
            finish_reason: FinishReason::Length,
        }
    }

    /// Returns the ids of the prompt's trailing known words, at most `order`
    /// of them. An unknown word breaks the context, so only the words after
    /// the last unknown one count.
    fn prompt_context(&self, prompt: &str) -> Vec<u32> {
        let mut context = Vec::new();
        for word in prompt.split_whitespace() {
            match self.lookup(word) {
                Some(id) => context.push(id),
                None => context.clear(),
            }
        }
        let keep_from = context.len().saturating_sub(self.order);
        context.split_off(keep_from)
    }

    /// Finds a word exactly, or else by its normalized form, choosing the
    /// first-seen spelling so the result is deterministic.
    fn lookup(&self, word: &str) -> Option<u32> {
        self.ids_by_word.get(word).copied().or_else(|| {
            self.ids_by_normalized_word
                .get(&normalize(word))
                .and_then(|ids| ids.first().copied())
        })
    }

    /// Returns the successors of the longest suffix of `context` the chain
    /// has seen ("backoff" from `order` words down to one).
    fn successors_of(&self, context: &[u32]) -> Option<&Vec<u32>> {
        (1..=context.len().min(self.order))
            .rev()
            .find_map(|length| {
                let suffix = &context[context.len() - length..];
                self.successors[length - 1].get(suffix)
            })
    }
}

fn normalize(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// 64-bit FNV-1a hash, used to derive generation seeds from request text.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        // A separator byte keeps ("ab", "c") and ("a", "bc") apart.
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// SplitMix64 pseudo-random generator: small, fast and identical on every
/// platform, which keeps the generated text reproducible.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a value in `0..bound`, which must be non-zero. The modulo bias
    /// is about `bound / 2^64`, negligible for lists of a few thousand words.
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "the cat sat on the mat.\n\nthe dog sat on the log.";

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        let chain = MarkovChain::train(TEXT, 1);
        let first = chain.generate("the", 20, 7);
        let second = chain.generate("the", 20, 7);
        assert_eq!(first, second);
    }

    #[test]
    fn generation_respects_max_tokens() {
        let text = "a b a b a b a b";
        let chain = MarkovChain::train(&format!("{text} a"), 1);
        let generation = chain.generate("a", 5, 1);
        assert_eq!(generation.words.len(), 5);
        assert_eq!(generation.finish_reason, FinishReason::Length);
    }

    #[test]
    fn generation_stops_at_paragraph_end() {
        let chain = MarkovChain::train("one two three", 1);
        let generation = chain.generate("one", 10, 3);
        assert_eq!(generation.words, ["two", "three"]);
        assert_eq!(generation.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn every_bigram_occurs_in_training_text() {
        let chain = MarkovChain::train(TEXT, 1);
        let training: Vec<&str> = TEXT.split_whitespace().collect();
        for seed in 0..20 {
            let words = chain.generate("the", 12, seed).words;
            let mut sequence = vec!["the".to_string()];
            sequence.extend(words);
            for pair in sequence.windows(2) {
                let seen = training
                    .windows(2)
                    .any(|w| w[0] == pair[0] && w[1] == pair[1]);
                assert!(seen, "bigram {pair:?} not in training text");
            }
        }
    }

    #[test]
    fn prompt_word_found_case_insensitively() {
        let chain = MarkovChain::train("Hollow Ford bridge", 1);
        let generation = chain.generate("HOLLOW", 1, 0);
        assert_eq!(generation.words, ["Ford"]);
    }

    #[test]
    fn unknown_prompt_starts_a_paragraph() {
        let chain = MarkovChain::train("alpha beta\n\ngamma delta", 1);
        let generation = chain.generate("zebra", 1, 0);
        let first = generation.words[0].as_str();
        assert!(first == "alpha" || first == "gamma", "{first}");
    }

    #[test]
    fn second_order_chain_uses_two_words() {
        // After "a x" comes "b", after "c x" comes "d": one word of context
        // cannot tell them apart, two can.
        let chain = MarkovChain::train("a x b\n\nc x d", 2);
        for seed in 0..10 {
            assert_eq!(chain.generate("a x", 1, seed).words, ["b"]);
            assert_eq!(chain.generate("c x", 1, seed).words, ["d"]);
        }
    }

    #[test]
    fn empty_text_generates_nothing() {
        let chain = MarkovChain::train("", 1);
        let generation = chain.generate("hello", 5, 0);
        assert!(generation.words.is_empty());
        assert_eq!(generation.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn fnv1a_separates_parts() {
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
        assert_eq!(fnv1a(&["x"]), fnv1a(&["x"]));
    }
}
