//! governor's clock on tokio's time: the rate limiter reads the same clock as every
//! other timer in sidekey, so unit tests can pause and advance it.

use std::time::Duration;

use tokio::time::Instant;

/// Time since a fixed origin, on tokio's clock (`Duration` is a governor `Reference`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        TokioClock {
            origin: Instant::now(),
        }
    }
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}
