//! Reads asked for together go to the database together, without waiting for company.
//!
//! Each [`Loader`] (`loaders.rs`) is shared by every request of the instance. A key asked for
//! while one of the loader's statements is free is read at once: a task starts the statement,
//! and keys asked for before it takes what waits join it instead of starting one of their own.
//! The task yields once before taking, so the keys asked for in the same poll (the items of one
//! list: every order's `lines`) normally join it; one that comes too late is read by the next
//! statement. While the loader's statements are all in flight, the
//! keys that arrive wait, and the next statement to finish takes all of them (up to
//! [`MAX_KEYS`]) in one more statement. So an idle instance answers a single read with no added
//! delay, and a busy one reads many requests' orders in one round trip.
//!
//! async-graphql's own `DataLoader` waits a fixed time (1 ms) for each batch to gather, on a
//! timer: at one client that delay was most of an `order(id)` request (p50 2.0-2.3 ms against
//! 0.7-0.9 ms for a plain handler), and without async-graphql's tokio timer every batch also woke a
//! helper thread (docs/performance.md).

use async_graphql::dataloader::Loader;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Statements of one loader in flight at once.
const STATEMENTS: usize = 2;
/// Most keys one statement reads.
const MAX_KEYS: usize = 256;

type Answer<V, E> = oneshot::Sender<Result<Option<V>, E>>;

/// A loader shared by all requests, reading waiting keys together (see the module's comment).
pub struct CoalescingLoader<K, L: Loader<K>>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    shared: Arc<Shared<K, L>>,
}

struct Shared<K, L: Loader<K>>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    loader: L,
    queue: Mutex<Queue<K, L::Value, L::Error>>,
}

struct Queue<K, V, E> {
    waiting: Vec<(K, Answer<V, E>)>,
    /// Statements running, or about to take what waits.
    statements: usize,
    /// A statement is about to take what waits: a new key joins it.
    gathering: bool,
}

impl<K, L> CoalescingLoader<K, L>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K>,
{
    pub fn new(loader: L) -> Self {
        CoalescingLoader {
            shared: Arc::new(Shared {
                loader,
                queue: Mutex::new(Queue {
                    waiting: Vec::new(),
                    statements: 0,
                    gathering: false,
                }),
            }),
        }
    }

    /// The value of `key`, or None when the loader found none. Starts the task that reads it;
    /// so this runs inside the runtime.
    pub async fn load_one(&self, key: K) -> Result<Option<L::Value>, L::Error> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.shared.queue.lock().expect("never poisoned");
            queue.waiting.push((key, answer));
            let start = !queue.gathering && queue.statements < STATEMENTS;
            if start {
                queue.statements += 1;
                queue.gathering = true;
            }
            start
        };
        if start {
            tokio::spawn(read_what_waits(self.shared.clone()));
        }
        // The reading task always answers; it is gone only when the runtime is stopping or its
        // loader panicked.
        answered
            .await
            .expect("a coalescing loader's task answers every key")
    }
}

/// Gives back the statement's slot if its task ends early (a loader that panics). A task that
/// finds nothing waiting gives it back itself, under the same lock, so a key arriving meanwhile
/// never waits for a slot that is about to be free.
struct Slot<'a, K, L: Loader<K>>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    shared: &'a Shared<K, L>,
    held: bool,
}

impl<K, L: Loader<K>> Drop for Slot<'_, K, L>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    fn drop(&mut self) {
        if self.held {
            self.shared.queue.lock().expect("never poisoned").statements -= 1;
        }
    }
}

/// Reads what waits, in statements of up to [`MAX_KEYS`] keys, until nothing waits.
async fn read_what_waits<K, L>(shared: Arc<Shared<K, L>>)
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K>,
{
    let mut slot = Slot {
        shared: &shared,
        held: true,
    };
    // Keys asked for in the same poll as the first (a list's items) join this statement.
    tokio::task::yield_now().await;
    loop {
        let batch = {
            let mut queue = shared.queue.lock().expect("never poisoned");
            queue.gathering = false;
            let taken = queue.waiting.len().min(MAX_KEYS);
            if taken == 0 {
                queue.statements -= 1;
                slot.held = false;
                return;
            }
            queue.waiting.drain(..taken).collect::<Vec<_>>()
        };
        let mut keys: Vec<K> = batch.iter().map(|(key, _)| key.clone()).collect();
        dedup(&mut keys);
        match shared.loader.load(&keys).await {
            Ok(found) => {
                for (key, answer) in batch {
                    // An asker that is gone (its request ended) is not waiting for an answer.
                    let _ = answer.send(Ok(found.get(&key).cloned()));
                }
            }
            Err(error) => {
                for (_, answer) in batch {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }
}

fn dedup<K: Hash + Eq + Clone>(keys: &mut Vec<K>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|key| seen.insert(key.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// Doubles numbers, except 13, which it does not find; records each call's keys. While
    /// `gate` has no permits, every call waits for one.
    #[derive(Clone)]
    struct Doubler {
        calls: Arc<Mutex<Vec<Vec<u32>>>>,
        gate: Arc<Semaphore>,
        started: Arc<AtomicUsize>,
    }

    impl Doubler {
        fn open() -> Doubler {
            Doubler {
                calls: Default::default(),
                gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
                started: Default::default(),
            }
        }

        fn closed() -> Doubler {
            Doubler {
                gate: Arc::new(Semaphore::new(0)),
                ..Doubler::open()
            }
        }

        fn calls(&self) -> Vec<Vec<u32>> {
            let mut calls = self.calls.lock().unwrap().clone();
            for keys in &mut calls {
                keys.sort();
            }
            calls
        }
    }

    impl Loader<u32> for Doubler {
        type Value = u32;
        type Error = Arc<String>;

        async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, u32>, Arc<String>> {
            self.calls.lock().unwrap().push(keys.to_vec());
            self.started.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await.unwrap();
            if keys.contains(&666) {
                return Err(Arc::new("the database is away".into()));
            }
            Ok(keys
                .iter()
                .filter(|key| **key != 13)
                .map(|key| (*key, key * 2))
                .collect())
        }
    }

    async fn until_started(doubler: &Doubler, calls: usize) {
        while doubler.started.load(Ordering::SeqCst) < calls {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_asked_for_alone_is_read_at_once_and_alone() {
        let doubler = Doubler::open();
        let loader = CoalescingLoader::new(doubler.clone());

        assert_eq!(loader.load_one(21).await, Ok(Some(42)));
        assert_eq!(loader.load_one(13).await, Ok(None));
        assert_eq!(doubler.calls(), vec![vec![21], vec![13]]);
    }

    #[tokio::test]
    async fn keys_asked_for_before_a_statement_takes_what_waits_join_it() {
        let doubler = Doubler::open();
        let loader = CoalescingLoader::new(doubler.clone());
        let mut asked: Vec<_> = (1..=20).map(|key| Box::pin(loader.load_one(key))).collect();

        // Each asks once; the statement's task has not run yet.
        for asking in &mut asked {
            assert!(futures_util::poll!(asking.as_mut()).is_pending());
        }
        let statements = loader.shared.queue.lock().unwrap().statements;
        assert_eq!(
            statements, 1,
            "every key after the first joins its statement"
        );

        let values = futures_util::future::join_all(asked).await;
        let doubled = (1..=20).map(|key| Ok((key != 13).then_some(key * 2)));
        assert_eq!(values, doubled.collect::<Vec<_>>());
        assert_eq!(doubler.calls(), vec![(1..=20).collect::<Vec<u32>>()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_asked_for_while_every_statement_is_busy_are_read_together_next() {
        let doubler = Doubler::closed();
        let loader = Arc::new(CoalescingLoader::new(doubler.clone()));
        let ask = |key: u32| {
            let loader = loader.clone();
            tokio::spawn(async move { loader.load_one(key).await })
        };
        let mut busy = Vec::new();
        for key in 1..=STATEMENTS as u32 {
            busy.push(ask(key));
            until_started(&doubler, key as usize).await;
        }

        let waiting: Vec<_> = (100..110).map(ask).collect();
        let all_queued = async {
            while loader.shared.queue.lock().unwrap().waiting.len() < 10 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), all_queued)
            .await
            .expect("the ten keys wait behind the busy statements");
        doubler.gate.add_permits(Semaphore::MAX_PERMITS / 2);

        for (key, asked) in (1..=STATEMENTS as u32).zip(busy) {
            assert_eq!(asked.await.unwrap(), Ok(Some(key * 2)));
        }
        for (key, asked) in (100..110).zip(waiting) {
            assert_eq!(asked.await.unwrap(), Ok(Some(key * 2)));
        }
        let calls = doubler.calls();
        assert_eq!(calls.len(), STATEMENTS + 1, "{calls:?}");
        assert_eq!(calls[STATEMENTS], (100..110).collect::<Vec<u32>>());
    }

    #[tokio::test]
    async fn a_failed_statement_answers_each_of_its_keys_with_the_error_and_the_next_reads_again() {
        let doubler = Doubler::open();
        let loader = CoalescingLoader::new(doubler.clone());

        let (failed, also_failed) = tokio::join!(loader.load_one(666), loader.load_one(7));
        let error = Err(Arc::new("the database is away".to_owned()));
        assert_eq!(failed, error);
        assert_eq!(also_failed, error);

        assert_eq!(loader.load_one(7).await, Ok(Some(14)));
    }

    #[tokio::test]
    async fn one_key_asked_for_twice_in_one_statement_is_read_once_and_answered_twice() {
        let doubler = Doubler::open();
        let loader = CoalescingLoader::new(doubler.clone());

        let (first, second) = tokio::join!(loader.load_one(5), loader.load_one(5));

        assert_eq!((first, second), (Ok(Some(10)), Ok(Some(10))));
        assert_eq!(doubler.calls(), vec![vec![5]]);
    }

    #[tokio::test]
    async fn more_keys_than_one_statement_reads_are_read_in_as_many_statements_as_needed() {
        let doubler = Doubler::open();
        let loader = CoalescingLoader::new(doubler.clone());
        let keys = 0..(MAX_KEYS as u32 + 10);

        let values =
            futures_util::future::join_all(keys.clone().map(|key| loader.load_one(key))).await;

        assert!(values.iter().all(Result::is_ok));
        let sizes: Vec<usize> = doubler.calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_KEYS, 10]);
    }
}
