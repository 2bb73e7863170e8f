//! A second chance for requests whose answer broke off.
//!
//! object_store retries a request that fails before its answer starts (refused, reset,
//! timed out, 5xx), but not one whose body breaks off half-way: a listing cut mid-response
//! fails at once with "error getting list response body". Every read-only request of
//! `retain`'s own (listings, `head`, `get` with its body) and the write lease's
//! conditional put (whose landing is recognised by its token) go through [`again`], which
//! repeats the whole request under the same `max_retries` and `retry_timeout` budget.

use std::future::Future;
use std::time::{Duration, Instant};

/// Run `op` until it succeeds, fails with an error a repeat cannot change (or one that
/// object_store already retried: a hung or refusing server is not waited for twice), or
/// the budget is spent (`max_retries` repeats, none started after `retry_timeout`).
pub(crate) async fn again<T, F, Fut>(
    retry: &object_store::RetryConfig,
    what: &str,
    mut op: F,
) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut repeats = 0;
    loop {
        match op().await {
            Err(e @ object_store::Error::Generic { .. })
                if !already_retried(&e)
                    && repeats < retry.max_retries
                    && started.elapsed() + pause < retry.retry_timeout =>
            {
                repeats += 1;
                tracing::warn!(request = what, error = %e, repeat = repeats, "storage: a request failed; repeating it");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

/// Whether object_store spent its own retries on the request: its error then says
/// "…, after N retries, max_retries: M, …".
fn already_retried(e: &object_store::Error) -> bool {
    e.to_string().contains(" retries, max_retries")
}
