//! Injectable time: token expiry, delta-link age and backoff all read this clock, so tests
//! (and the fake Graph in `tests/fake_graph`) can move time without really sleeping.

use futures::future::BoxFuture;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
    /// Resolves once `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The wall clock and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that only moves when told to. With `auto_advance` on, a `sleep` jumps the clock
/// forward to its own deadline and returns at once (retry and backoff paths run instantly);
/// with it off, sleepers wait for [`ManualClock::advance`].
pub struct ManualClock {
    now: watch::Sender<OffsetDateTime>,
    auto: Mutex<bool>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        ManualClock {
            now: watch::Sender::new(start),
            auto: Mutex::new(false),
        }
    }

    /// Starts at the current wall-clock time (so dates in logs look sane).
    pub fn starting_now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    pub fn set_auto_advance(&self, on: bool) {
        *self.auto.lock().unwrap() = on;
    }

    pub fn advance(&self, d: Duration) {
        self.now.send_modify(|t| *t += d);
    }

    fn advance_to(&self, deadline: OffsetDateTime) {
        self.now.send_modify(|t| {
            if *t < deadline {
                *t = deadline
            }
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.borrow()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let deadline = self.now() + d;
        if *self.auto.lock().unwrap() {
            self.advance_to(deadline);
            // Still yield, so a loop of zero-length sleeps cannot starve the runtime.
            return Box::pin(tokio::task::yield_now());
        }
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever wake us.
                    futures::future::pending::<()>().await;
                }
            }
        })
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        (**self).sleep(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_waits_for_advance() {
        let c = std::sync::Arc::new(ManualClock::starting_now());
        let s = c.sleep(Duration::from_secs(10));
        let h = tokio::spawn(s);
        c.advance(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!h.is_finished());
        c.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn auto_advance_jumps() {
        let c = ManualClock::starting_now();
        c.set_auto_advance(true);
        let t0 = c.now();
        c.sleep(Duration::from_secs(30)).await;
        assert_eq!(c.now() - t0, time::Duration::seconds(30));
    }
}
