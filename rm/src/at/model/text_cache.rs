//! [`TextCache`]: what was worked out from a SQL text (its parse, where its placeholders are),
//! kept so the next statement with the same text skips the tokenizer. Applications send the
//! same parameterized statements over and over; texts with literals written in rarely repeat,
//! and the cache only fills up with them before it is emptied.

use std::sync::Arc;

use dashmap::DashMap;

/// A bounded map from SQL text to a derived value. When full it is emptied at once: simpler
/// than an LRU, and a working set that fits never sees it.
pub(crate) struct TextCache<V> {
    map: DashMap<Arc<str>, V>,
    capacity: usize,
}

impl<V: Clone> TextCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TextCache {
            map: DashMap::new(),
            capacity,
        }
    }

    /// The value for `text`, computed by `make` on a miss.
    pub(crate) fn get_or_insert_with(&self, text: &str, make: impl FnOnce() -> V) -> V {
        if let Some(v) = self.map.get(text) {
            return v.value().clone();
        }
        let v = make();
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(Arc::from(text), v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_and_stays_bounded() {
        let cache = TextCache::new(2);
        let mut calls = 0;
        for text in ["a", "a", "b", "a"] {
            cache.get_or_insert_with(text, || {
                calls += 1;
                text.len()
            });
        }
        assert_eq!(calls, 2);
        cache.get_or_insert_with("c", || 0);
        assert!(cache.map.len() <= 2);
    }
}
