//! Single-flight locks: one async mutex per key, created on demand and removed when
//! the last holder or waiter is done, so concurrent lookups of one (credential, user)
//! run one after the other and the later ones find the first one's result cached.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

pub struct Flights<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for Flights<K> {
    fn default() -> Self {
        Flights {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

/// Held while a key's lookup runs.
pub struct Flight<'a, K: Eq + Hash> {
    flights: &'a Flights<K>,
    key: K,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Clone> Flights<K> {
    pub async fn lock(&self, key: &K) -> Flight<'_, K> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        Flight {
            flights: self,
            key: key.clone(),
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.locks.lock().map(|l| l.len()).unwrap_or(0)
    }
}

impl<K: Eq + Hash> Drop for Flight<'_, K> {
    fn drop(&mut self) {
        let mut locks = self.flights.locks.lock().unwrap_or_else(|p| p.into_inner());
        self.guard.take();
        // Only the map's own reference left: nobody holds or waits for this key.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_at_a_time_then_cleaned_up() {
        let f: Arc<Flights<&'static str>> = Arc::new(Flights::default());
        let g = f.lock(&"k").await;
        let f2 = f.clone();
        let waiter = tokio::spawn(async move {
            let _g = f2.lock(&"k").await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.unwrap();
        assert_eq!(f.len(), 0);
    }
}
