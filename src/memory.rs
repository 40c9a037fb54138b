//! Giving memory back after a burst. glibc's allocator keeps freed heap for reuse, so
//! a sidecar that once served a burst would sit at its peak RSS forever; once the
//! proxy has been idle (no open connection) for a while after serving connections,
//! the free heap is returned to the OS with `malloc_trim`. Elsewhere a no-op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Connections accepted since start (bumped once per connection, never per request).
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Note one accepted connection.
pub fn note_connection() {
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
}

/// How long the proxy must be idle before the heap is trimmed.
const IDLE: Duration = Duration::from_secs(5);

/// Trim once after each busy period, when no connection has been open for [`IDLE`].
pub async fn trim_when_idle(metrics: std::sync::Arc<Metrics>, stop: CancellationToken) {
    trim_when_idle_with(&metrics, stop, release_free_heap).await;
}

async fn trim_when_idle_with(metrics: &Metrics, stop: CancellationToken, trim: impl Fn()) {
    let mut trimmed_at = ACCEPTED.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(IDLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = trimmed_at;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = ACCEPTED.load(Ordering::Relaxed);
        // Idle: nothing open, and nothing accepted during the last whole interval.
        let idle = metrics.open_connections.get() == 0 && now == seen;
        seen = now;
        if idle && now != trimmed_at {
            trimmed_at = now;
            trim();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes the
    // allocator's locks itself and is safe to call from any thread at any time.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "idle: returned free heap to the OS"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn trims_once_per_busy_period_and_only_when_idle() {
        let metrics = std::sync::Arc::new(Metrics::new().unwrap());
        let stop = CancellationToken::new();
        let trims = std::sync::Arc::new(AtomicUsize::new(0));
        let (m, s, t) = (metrics.clone(), stop.clone(), trims.clone());
        let task = tokio::spawn(async move {
            trim_when_idle_with(&m, s, || {
                t.fetch_add(1, Ordering::SeqCst);
            })
            .await
        });
        let count = || trims.load(Ordering::SeqCst);
        tokio::time::sleep(IDLE * 3).await;
        assert_eq!(count(), 0, "nothing served yet: nothing to trim");

        // A connection that stays open: no trim while it is open.
        note_connection();
        metrics.open_connections.inc();
        tokio::time::sleep(IDLE * 3).await;
        assert_eq!(count(), 0);
        metrics.open_connections.dec();
        tokio::time::sleep(IDLE * 3).await;
        assert_eq!(count(), 1, "one trim once idle");
        tokio::time::sleep(IDLE * 5).await;
        assert_eq!(count(), 1, "no second trim without new traffic");

        // A short burst that opened and closed between two looks.
        note_connection();
        tokio::time::sleep(IDLE * 3).await;
        assert_eq!(count(), 2);
        stop.cancel();
        task.await.unwrap();
    }
}
