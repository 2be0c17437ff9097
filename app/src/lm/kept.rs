//! An answer of the model server kept for a while (its list of models, its health), so that
//! the many pages that show it cost one upstream request. Once the answer is old, the next ask
//! still gets it at once and a refresh runs in the background: a model server that stops
//! answering (its host blackholed rather than refusing) then holds up no page, not even one
//! every few seconds. Only the very first ask waits for the server.
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Mutex, time::Instant};

pub struct Kept<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    /// The last answer and when it came; `None` until the first one (or after `forget`).
    answer: Mutex<Option<(Instant, T)>>,
    /// A background refresh is running: old answers start no second one.
    refreshing: AtomicBool,
    /// There is an answer (set once the first one is kept, cleared by `forget`).
    answered: AtomicBool,
}

impl<T> Clone for Kept<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> Kept<T> {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                answer: Mutex::new(None),
                refreshing: AtomicBool::new(false),
                answered: AtomicBool::new(false),
            }),
        }
    }

    /// The kept answer, asking `fetch` for one when there is none (callers meanwhile wait for
    /// that one ask), or in the background when the kept one is older than `max_age` says.
    pub async fn get<F>(&self, max_age: impl Fn(&T) -> Duration, fetch: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut kept = self.inner.answer.lock().await;
        let Some((at, answer)) = &*kept else {
            let answer = fetch.await;
            *kept = Some((Instant::now(), answer.clone()));
            self.inner.answered.store(true, Ordering::SeqCst);
            return answer;
        };
        if at.elapsed() >= max_age(answer) && !self.inner.refreshing.swap(true, Ordering::SeqCst) {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let answer = fetch.await;
                *inner.answer.lock().await = Some((Instant::now(), answer));
                inner.refreshing.store(false, Ordering::SeqCst);
            });
        }
        answer.clone()
    }

    /// The kept answer, however old, without asking for one; `None` when there is none yet.
    /// Never waits for the server: while the first ask is under way (it holds the lock) the
    /// answer is `None`; otherwise the lock is only ever held for a moment.
    pub async fn peek(&self) -> Option<T> {
        if !self.inner.answered.load(Ordering::SeqCst) {
            return None;
        }
        let kept = self.inner.answer.lock().await;
        kept.as_ref().map(|(_, answer)| answer.clone())
    }

    /// Drops the kept answer: the next ask waits for a fresh one.
    pub async fn forget(&self) {
        let mut kept = self.inner.answer.lock().await;
        *kept = None;
        self.inner.answered.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_old_answer_is_served_at_once_and_refreshed_behind_it() {
        let kept = Kept::new();
        let asked = Arc::new(AtomicUsize::new(0));
        // A server that takes an hour to answer, with its answer numbered.
        let slow = |asked: Arc<AtomicUsize>| async move {
            let n = asked.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            n
        };
        let ttl = |_: &usize| Duration::from_secs(30);

        let first = tokio::spawn({
            let (kept, asked) = (kept.clone(), asked.clone());
            async move { kept.get(ttl, slow(asked)).await }
        });
        assert_eq!(
            first.await.unwrap(),
            1,
            "the first ask waits for the server"
        );

        tokio::time::advance(Duration::from_secs(31)).await;
        let started = Instant::now();
        assert_eq!(kept.get(ttl, slow(asked.clone())).await, 1);
        assert_eq!(kept.get(ttl, slow(asked.clone())).await, 1);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "old answers wait for nothing"
        );
        tokio::task::yield_now().await;
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "one refresh, not one per ask"
        );

        tokio::time::sleep(Duration::from_secs(3601)).await;
        assert_eq!(
            kept.get(ttl, slow(asked.clone())).await,
            2,
            "the refresh landed"
        );
        kept.forget().await;
        let fresh = tokio::spawn({
            let kept = kept.clone();
            async move { kept.get(ttl, slow(asked)).await }
        });
        assert_eq!(
            fresh.await.unwrap(),
            3,
            "after forget, the next ask waits again"
        );
    }
}
