//! Turns at a scarce resource (the cores that hash passwords), handed out
//! round robin across clients: whoever asks while every turn is taken waits
//! in their client's line, and a freed turn goes to the next client in
//! rotation, not to the longest line. One client with many requests waiting
//! gets one turn in each round, like everyone else, and never holds every
//! turn at once, so another client's first request starts at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// `n` turns shared round robin among clients of key `K`, no client
/// holding more than `n - 1` at once (when `n` > 1): a turn is always left
/// for someone else. Cheap to clone.
pub struct Turns<K> {
    state: Arc<Mutex<State<K>>>,
}

impl<K> Clone for Turns<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

struct State<K> {
    free: usize,
    /// Turns one client may hold at once.
    cap: usize,
    /// A client the cap does not apply to.
    uncapped: Option<K>,
    /// The turns each client holds (only those holding any).
    held: Vec<(K, usize)>,
    /// The clients waiting, in rotation order, each with its line.
    lines: VecDeque<(K, VecDeque<oneshot::Sender<()>>)>,
}

impl<K: Eq + Clone> State<K> {
    /// Whether `client` may take one more turn.
    fn under_cap(&self, client: &K) -> bool {
        self.uncapped.as_ref() == Some(client) || self.held(client) < self.cap
    }

    fn held(&self, client: &K) -> usize {
        self.held
            .iter()
            .find(|(key, _)| key == client)
            .map_or(0, |(_, n)| *n)
    }

    fn hold(&mut self, client: &K) {
        match self.held.iter_mut().find(|(key, _)| key == client) {
            Some((_, n)) => *n += 1,
            None => self.held.push((client.clone(), 1)),
        }
    }

    fn release(&mut self, client: &K) {
        if let Some(at) = self.held.iter().position(|(key, _)| key == client) {
            self.held[at].1 -= 1;
            if self.held[at].1 == 0 {
                self.held.swap_remove(at);
            }
        }
    }
}

/// A turn, given on to the next client in rotation when dropped.
pub struct Turn<K: Eq + Clone> {
    turns: Turns<K>,
    client: K,
}

impl<K: Eq + Clone> Turns<K> {
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Self {
            state: Arc::new(Mutex::new(State {
                free: n,
                cap: n.saturating_sub(1).max(1),
                uncapped: None,
                held: Vec::new(),
                lines: VecDeque::new(),
            })),
        }
    }

    /// The same turns, `client` exempt from the cap (it may hold them all).
    pub fn uncapped(self, client: K) -> Self {
        self.lock().uncapped = Some(client);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // Every change is complete before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a turn for `client`. Cancel-safe: a turn handed to a
    /// caller that gave up goes on (its place in line is skipped when the
    /// next turn comes round).
    pub async fn take(&self, client: K) -> Turn<K> {
        let receiver = {
            let mut state = self.lock();
            // While a turn is free, whoever waits is at their cap: a client
            // under it takes the turn at once.
            if state.free > 0 && state.under_cap(&client) {
                state.free -= 1;
                state.hold(&client);
                return Turn {
                    turns: self.clone(),
                    client,
                };
            }
            let (sender, receiver) = oneshot::channel();
            match state.lines.iter_mut().find(|(key, _)| *key == client) {
                Some((_, line)) => line.push_back(sender),
                None => state
                    .lines
                    .push_back((client.clone(), VecDeque::from([sender]))),
            }
            receiver
        };
        let mut waiting = Waiting {
            turns: self.clone(),
            client: client.clone(),
            receiver: None,
        };
        // The sender is only dropped after a send.
        let _ = waiting.receiver.insert(receiver).await;
        waiting.receiver = None;
        Turn {
            turns: self.clone(),
            client,
        }
    }

    /// `client` gives a turn up: to the next client in rotation that waits
    /// and is under its cap, or back to the free ones.
    fn pass_on(&self, client: &K) {
        let mut state = self.lock();
        state.release(client);
        let mut looked = 0;
        while looked < state.lines.len() {
            let Some((key, mut line)) = state.lines.pop_front() else {
                break;
            };
            if !state.under_cap(&key) {
                // Its turn in the rotation comes when it holds fewer.
                state.lines.push_back((key, line));
                looked += 1;
                continue;
            }
            let mut handed = false;
            while let Some(sender) = line.pop_front() {
                if sender.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            if handed {
                state.hold(&key);
            }
            if !line.is_empty() {
                // To the back of the rotation.
                state.lines.push_back((key, line));
            }
            if handed {
                return;
            }
        }
        state.free += 1;
    }
}

impl<K: Eq + Clone> Drop for Turn<K> {
    fn drop(&mut self) {
        self.turns.pass_on(&self.client);
    }
}

/// A caller waiting in line; if it gives up after being handed a turn, the
/// turn goes on.
struct Waiting<K: Eq + Clone> {
    turns: Turns<K>,
    client: K,
    receiver: Option<oneshot::Receiver<()>>,
}

impl<K: Eq + Clone> Drop for Waiting<K> {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.turns.pass_on(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The order in which waiters get the one turn, as it is given on.
    async fn order(arrivals: &[&'static str]) -> Vec<&'static str> {
        let turns = Turns::new(1);
        let first = turns.take("holder").await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for &client in arrivals {
            let (turns, served) = (turns.clone(), served.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take(client).await;
                served.lock().unwrap().push(client);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Arrive in this order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        for task in tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(served).unwrap().into_inner().unwrap()
    }

    #[tokio::test]
    async fn a_freed_turn_goes_to_the_next_client_in_rotation() {
        assert_eq!(
            order(&["a", "a", "a", "b", "c", "b"]).await,
            ["a", "b", "c", "a", "b", "a"]
        );
    }

    #[tokio::test]
    async fn one_client_never_holds_every_turn() {
        let turns = Turns::new(2);
        let first = turns.take("flood").await;
        let second = tokio::time::timeout(Duration::from_millis(10), turns.take("flood")).await;
        assert!(second.is_err(), "the last turn is kept for another client");
        let other = tokio::time::timeout(Duration::from_millis(10), turns.take("other")).await;
        assert!(other.is_ok(), "another client starts at once");
        drop(other);
        drop(first);
        // Its own turn back, the client may take one again.
        tokio::time::timeout(Duration::from_millis(10), turns.take("flood"))
            .await
            .expect("under its cap again");
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_passes_its_turn_on() {
        let turns = Turns::new(1);
        let held = turns.take(1).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), turns.take(2)).await;
        assert!(gave_up.is_err());
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { drop(turns.take(3).await) }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("client 3 got the turn client 2 left")
            .unwrap();
        // And it was given back: one is free.
        tokio::time::timeout(Duration::from_secs(1), turns.take(4))
            .await
            .expect("the turn is free again");
    }
}
