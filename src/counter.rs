//! The counter of one key and its fixed-width binary form in shared data.
//!
//! Layout (little-endian), so a value never grows in place:
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1)
//! 1       1     number of windows n (1 to 255)
//! 2       8     fingerprint of the full key
//! 10      24×n  per window: aligned window index (u64), current count (u64),
//!               previous count (u64)
//! ```

use crate::limiter::Window;

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 10;
const WINDOW_LEN: usize = 24;

/// The counts of one window: the aligned window `index` and the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    /// Aligned window index: `now_ms / length_ms` when last written.
    pub index: u64,
    /// Cost counted in window `index`.
    pub current: u64,
    /// Cost counted in window `index - 1`.
    pub previous: u64,
}

impl WindowCounts {
    /// Returns the counts as seen from window `index`, which must not be
    /// older than `self.index`.
    pub fn rolled_to(&self, index: u64) -> WindowCounts {
        if index <= self.index {
            *self
        } else if index == self.index + 1 {
            WindowCounts {
                index,
                current: 0,
                previous: self.current,
            }
        } else {
            WindowCounts {
                index,
                current: 0,
                previous: 0,
            }
        }
    }
}

/// The counter of one key: a fingerprint of the key and one entry per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Hash of the full key, which distinguishes two keys when the store
    /// compares keys by a shorter checksum.
    pub fingerprint: u64,
    /// Counts in the order of the configured windows.
    pub windows: Vec<WindowCounts>,
}

/// The reason stored bytes are not a counter this filter can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The length or the version byte does not match this format.
    Malformed,
    /// The value belongs to another key whose checksum collides with ours.
    ForeignKey,
    /// The value has another number of windows than configured.
    OtherLayout,
}

impl Counter {
    /// Returns an empty counter for `windows`.
    pub fn for_windows(windows: &[Window], fingerprint: u64) -> Counter {
        Counter {
            fingerprint,
            windows: vec![WindowCounts::default(); windows.len()],
        }
    }

    /// Returns the encoded length of a counter with `window_count` windows.
    pub fn encoded_len(window_count: usize) -> usize {
        HEADER_LEN + WINDOW_LEN * window_count
    }

    /// Encodes the counter into its fixed-width form.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::encoded_len(self.windows.len()));
        bytes.push(FORMAT_VERSION);
        bytes.push(u8::try_from(self.windows.len()).unwrap_or(u8::MAX));
        bytes.extend_from_slice(&self.fingerprint.to_le_bytes());
        for counts in &self.windows {
            bytes.extend_from_slice(&counts.index.to_le_bytes());
            bytes.extend_from_slice(&counts.current.to_le_bytes());
            bytes.extend_from_slice(&counts.previous.to_le_bytes());
        }
        bytes
    }

    /// Decodes a stored value, checking it belongs to `fingerprint` and has
    /// `window_count` windows.
    pub fn decode(
        bytes: &[u8],
        fingerprint: u64,
        window_count: usize,
    ) -> Result<Counter, DecodeError> {
        if bytes.len() < HEADER_LEN || bytes[0] != FORMAT_VERSION {
            return Err(DecodeError::Malformed);
        }
        let stored_windows = usize::from(bytes[1]);
        if bytes.len() != Self::encoded_len(stored_windows) {
            return Err(DecodeError::Malformed);
        }
        if read_u64(bytes, 2) != fingerprint {
            return Err(DecodeError::ForeignKey);
        }
        if stored_windows != window_count {
            return Err(DecodeError::OtherLayout);
        }
        let windows = (0..stored_windows)
            .map(|i| {
                let at = HEADER_LEN + i * WINDOW_LEN;
                WindowCounts {
                    index: read_u64(bytes, at),
                    current: read_u64(bytes, at + 8),
                    previous: read_u64(bytes, at + 16),
                }
            })
            .collect();
        Ok(Counter {
            fingerprint,
            windows,
        })
    }

    /// Tells whether every count of a stored value has slid out by `now_ms`,
    /// whatever key it belongs to, so the entry can be taken over.
    pub fn is_expired(bytes: &[u8], windows: &[Window], now_ms: u64) -> bool {
        if bytes.len() < HEADER_LEN || bytes[0] != FORMAT_VERSION {
            return true;
        }
        let stored_windows = usize::from(bytes[1]);
        if bytes.len() != Self::encoded_len(stored_windows) {
            return true;
        }
        // Without the owner's window lengths, the longest configured window
        // is the safe horizon: an index stored by the owner is compared with
        // our own indexes only when the layouts match.
        if stored_windows != windows.len() {
            return false;
        }
        windows.iter().enumerate().all(|(i, window)| {
            let at = HEADER_LEN + i * WINDOW_LEN;
            let index = read_u64(bytes, at);
            now_ms / window.length_ms >= index.saturating_add(2)
        })
    }
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(slice) = bytes.get(at..at + 8) {
        word.copy_from_slice(slice);
    }
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> [Window; 2] {
        [
            Window {
                length_ms: 1000,
                limit: 5,
            },
            Window {
                length_ms: 60_000,
                limit: 50,
            },
        ]
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut counter = Counter::for_windows(&windows(), 0xfeed);
        counter.windows[0] = WindowCounts {
            index: 9,
            current: 3,
            previous: u64::MAX,
        };
        let bytes = counter.encode();
        assert_eq!(bytes.len(), Counter::encoded_len(2));
        assert_eq!(Counter::decode(&bytes, 0xfeed, 2), Ok(counter));
    }

    #[test]
    fn decode_rejects_foreign_fingerprint() {
        let bytes = Counter::for_windows(&windows(), 1).encode();
        assert_eq!(Counter::decode(&bytes, 2, 2), Err(DecodeError::ForeignKey));
    }

    #[test]
    fn decode_rejects_malformed_values() {
        let bytes = Counter::for_windows(&windows(), 1).encode();
        assert_eq!(
            Counter::decode(&bytes[..11], 1, 2),
            Err(DecodeError::Malformed)
        );
        assert_eq!(Counter::decode(b"", 1, 2), Err(DecodeError::Malformed));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert_eq!(
            Counter::decode(&wrong_version, 1, 2),
            Err(DecodeError::Malformed)
        );
        assert_eq!(Counter::decode(&bytes, 1, 1), Err(DecodeError::OtherLayout));
    }

    #[test]
    fn expired_after_two_windows() {
        let mut counter = Counter::for_windows(&windows(), 1);
        counter.windows[0].index = 10;
        counter.windows[1].index = 0;
        let bytes = counter.encode();
        assert!(!Counter::is_expired(&bytes, &windows(), 11_999));
        assert!(Counter::is_expired(&bytes, &windows(), 120_000));
        assert!(!Counter::is_expired(&bytes, &windows(), 119_999));
    }

    #[test]
    fn rolled_to_shifts_or_clears() {
        let counts = WindowCounts {
            index: 4,
            current: 7,
            previous: 2,
        };
        assert_eq!(counts.rolled_to(4), counts);
        assert_eq!(counts.rolled_to(3), counts);
        assert_eq!(
            counts.rolled_to(5),
            WindowCounts {
                index: 5,
                current: 0,
                previous: 7
            }
        );
        assert_eq!(
            counts.rolled_to(6),
            WindowCounts {
                index: 6,
                current: 0,
                previous: 0
            }
        );
    }
}
