//! Turns at a scarce resource (the cores that hash passwords), handed out
//! round robin across clients: whoever asks while every turn is taken waits
//! in their client's line, and a freed turn goes to the next client in
//! rotation, not to the longest line. One client with many requests waiting
//! gets one turn in each round, like everyone else.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// `n` turns shared round robin among clients of key `K`. Cheap to clone.
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
    /// The clients waiting, in rotation order, each with its line.
    lines: VecDeque<(K, VecDeque<oneshot::Sender<()>>)>,
}

/// A turn, given on to the next client in rotation when dropped.
pub struct Turn<K: Eq + Clone> {
    turns: Turns<K>,
}

impl<K: Eq + Clone> Turns<K> {
    pub fn new(n: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                free: n.max(1),
                lines: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // Every change is complete before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a turn for `client`. Cancel-safe: a caller that gives up
    /// leaves its line, and a turn handed to it meanwhile goes on.
    pub async fn take(&self, client: K) -> Turn<K> {
        let receiver = {
            let mut state = self.lock();
            if state.free > 0 {
                // Only callers that gave up can be left in line then.
                for (_, line) in &mut state.lines {
                    line.retain(|sender| !sender.is_closed());
                }
                state.lines.retain(|(_, line)| !line.is_empty());
            }
            if state.free > 0 && state.lines.is_empty() {
                state.free -= 1;
                return Turn {
                    turns: self.clone(),
                };
            }
            let (sender, receiver) = oneshot::channel();
            match state.lines.iter_mut().find(|(key, _)| *key == client) {
                Some((_, line)) => line.push_back(sender),
                None => state.lines.push_back((client, VecDeque::from([sender]))),
            }
            receiver
        };
        let mut waiting = Waiting {
            turns: self.clone(),
            receiver: None,
        };
        // The sender is only dropped after a send.
        let _ = waiting.receiver.insert(receiver).await;
        waiting.receiver = None;
        Turn {
            turns: self.clone(),
        }
    }

    /// Gives a turn to the next client in rotation that still waits, or
    /// frees it.
    fn pass_on(&self) {
        let mut state = self.lock();
        while let Some((client, mut line)) = state.lines.pop_front() {
            let mut handed = false;
            while let Some(sender) = line.pop_front() {
                if sender.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            if !line.is_empty() {
                // To the back of the rotation.
                state.lines.push_back((client, line));
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
        self.turns.pass_on();
    }
}

/// A caller waiting in line; if it gives up after being handed a turn, the
/// turn goes on.
struct Waiting<K: Eq + Clone> {
    turns: Turns<K>,
    receiver: Option<oneshot::Receiver<()>>,
}

impl<K: Eq + Clone> Drop for Waiting<K> {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.turns.pass_on();
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
