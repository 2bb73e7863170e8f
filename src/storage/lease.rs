//! One writer at a time per table partition: a lease object (`_LEASE`) created with a
//! conditional put (`PutMode::Create`: a hard link on local disk, `If-None-Match: *` on S3,
//! `ifGenerationMatch=0` on GCS), so that of two runs committing the same
//! `<table>/snapshot=S/` at once exactly one holds it.
//!
//! Why: a commit writes parts, then `_SUCCESS`, then deletes the files `_SUCCESS` does not
//! list. Two commits of the same folder at once could each delete the other's fresh parts
//! and leave a `_SUCCESS` naming files that are gone. Under the lease, parts, marker and
//! clean-up are one writer's; the other waits until the lease is released (both runs then
//! end with a complete, consistent table: the later one's), or until `lease_timeout` has
//! passed, when the holder is taken for dead and its lease is broken.
//!
//! A lease names its holder (machine, process, when). A holder on this machine whose
//! process is gone is dead at once: a rerun after a kill never waits. The clean-up step
//! runs only if the lease is still the holder's own when it gets there; a writer that
//! lost it (it ran past `lease_timeout` and was broken) leaves the extra files for the
//! next commit rather than risk deleting another writer's parts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::retry::again;
use crate::error::{Error, Result};

/// The lease object's name inside the partition folder.
pub(crate) const LEASE: &str = "_LEASE";

/// How long a lease is honoured unless its holder is seen to be dead (`lease_timeout`).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Holder {
    /// Unique per acquisition: what says a lease is still one's own.
    token: String,
    /// Host name and PID namespace: where `pid` means something.
    machine: String,
    pid: u32,
    /// Seconds since the Unix epoch.
    acquired: u64,
    expires: u64,
}

impl Holder {
    fn new(timeout: Duration) -> Holder {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let pid = std::process::id();
        let machine = machine();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let token = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(format!("{machine}/{pid}/{}/{n}", now.as_nanos()).as_bytes())
        );
        Holder { token, machine, pid, acquired: now.as_secs(), expires: (now + timeout).as_secs() }
    }

    /// Whether the holder can no longer be writing: its time is up, or it was a process
    /// of this machine that has exited.
    fn is_dead(&self, now: u64) -> bool {
        now >= self.expires || (self.machine == machine() && !process_alive(self.pid))
    }

    fn describe(&self) -> String {
        let since =
            chrono::DateTime::from_timestamp(self.acquired as i64, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
        format!("process {} on {} since {since}", self.pid, self.machine.split(' ').next().unwrap_or(""))
    }
}

/// A held lease; released (deleted, if still one's own) when dropped.
pub(crate) struct Lease {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    retry: object_store::RetryConfig,
    /// None when the backend has no conditional put: nothing is held.
    holder: Option<Holder>,
}

impl Lease {
    /// Take the lease at `path` (`<folder>/_LEASE`), waiting while a live writer holds it.
    /// `what` names the folder in messages.
    pub(crate) async fn acquire(
        store: Arc<dyn ObjectStore>,
        path: StorePath,
        timeout: Duration,
        retry: &object_store::RetryConfig,
        what: &str,
    ) -> Result<Lease> {
        let retry = retry.clone();
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut waited_for: Option<String> = None;
        loop {
            let holder = Holder::new(timeout);
            let body = serde_json::to_vec(&holder).map_err(Error::internal)?;
            let body = PutPayload::from(body);
            let create =
                || store.put_opts(&path, body.clone(), PutOptions { mode: PutMode::Create, ..Default::default() });
            match again(&retry, "conditional put", create).await {
                Ok(_) => return Ok(Lease { store, path, retry, holder: Some(holder) }),
                Err(object_store::Error::NotImplemented { .. }) => {
                    tracing::warn!(folder = what, "storage has no conditional writes: committing without a lease");
                    return Ok(Lease { store, path, retry, holder: None });
                }
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {}
                Err(e) => return Err(Error::from_store(format!("taking the write lease of {what}"), e)),
            }
            let Some(other) = read(&store, &path, &retry, what).await? else { continue };
            if other.token == holder.token {
                // The create landed, but its answer was lost and the retry found it.
                return Ok(Lease { store, path, retry, holder: Some(holder) });
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            if other.is_dead(now) {
                tracing::warn!(folder = what, holder = other.describe(), "breaking a dead writer's lease");
                // Only a lease that is still the dead one is deleted: another writer may
                // have broken it and taken its own in between.
                if read(&store, &path, &retry, what).await?.is_some_and(|h| h.token == other.token) {
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(Error::from_store(format!("breaking the write lease of {what}"), e)),
                    }
                }
                continue;
            }
            if started.elapsed() > timeout {
                return Err(Error::Unavailable {
                    context: format!("committing {what}"),
                    source: format!(
                        "another run ({}) has held its write lease for {} s; rerun when it is done",
                        other.describe(),
                        started.elapsed().as_secs()
                    )
                    .into(),
                });
            }
            if waited_for.as_deref() != Some(other.token.as_str()) {
                tracing::info!(
                    folder = what,
                    holder = other.describe(),
                    "another run is committing this folder; waiting"
                );
                waited_for = Some(other.token.clone());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Whether the lease is still this writer's (nobody broke it): the clean-up of a
    /// commit runs only then. True when the backend has no conditional put.
    pub(crate) async fn held(&self, what: &str) -> Result<bool> {
        let Some(own) = &self.holder else { return Ok(true) };
        Ok(read(&self.store, &self.path, &self.retry, what).await?.is_some_and(|h| h.token == own.token))
    }

    /// Delete the lease if it is still this writer's. A failure is logged: the lease then
    /// ends by its timeout, or at once for a rerun on this machine.
    pub(crate) async fn release(mut self, what: &str) {
        let Some(own) = self.holder.take() else { return };
        let mine =
            matches!(read(&self.store, &self.path, &self.retry, what).await, Ok(Some(h)) if h.token == own.token);
        if mine && let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!(folder = what, error = %e, "could not release the write lease");
        }
    }
}

/// The current holder of a lease, or None when there is none.
async fn read(
    store: &Arc<dyn ObjectStore>,
    path: &StorePath,
    retry: &object_store::RetryConfig,
    what: &str,
) -> Result<Option<Holder>> {
    match again(retry, "get", || async { store.get(path).await?.bytes().await }).await {
        Ok(bytes) => {
            // An unreadable lease (a foreign or truncated file) counts as a dead holder's.
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Holder {
                token: String::new(),
                machine: String::new(),
                pid: 0,
                acquired: 0,
                expires: 0,
            })))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::from_store(format!("reading the write lease of {what}"), e)),
    }
}

/// This machine as far as process ids go: the host name and the PID namespace.
fn machine() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    format!("{host} {namespace}")
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;

    use super::*;

    fn leave_lease(store: &Arc<dyn ObjectStore>, path: &StorePath, holder: &Holder) {
        let body = PutPayload::from(serde_json::to_vec(holder).unwrap());
        futures::executor::block_on(store.put(path, body)).unwrap();
    }

    /// A lease left by a killed process of this machine is broken at once; one held by a
    /// live writer elsewhere is waited for, then refused as a temporary failure (75) that
    /// names the holder; a released lease is gone.
    #[test]
    fn dead_holders_are_broken_live_ones_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let path = StorePath::from("scores/snapshot=2024-03-01/_LEASE");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let second = Duration::from_secs(1);
        let retry = object_store::RetryConfig::default();

        let killed = Holder { pid: i32::MAX as u32, ..Holder::new(Duration::from_secs(3600)) };
        leave_lease(&store, &path, &killed);
        let started = std::time::Instant::now();
        let lease = rt.block_on(Lease::acquire(store.clone(), path.clone(), second, &retry, "scores")).unwrap();
        assert!(started.elapsed() < second, "a dead holder is not waited for");
        assert!(rt.block_on(lease.held("scores")).unwrap());
        rt.block_on(lease.release("scores"));
        assert!(rt.block_on(read(&store, &path, &retry, "scores")).unwrap().is_none(), "released");

        let elsewhere = Holder { machine: "another-host pid:[1]".into(), ..Holder::new(Duration::from_secs(3600)) };
        leave_lease(&store, &path, &elsewhere);
        let err = rt.block_on(Lease::acquire(store.clone(), path.clone(), second, &retry, "scores")).err().unwrap();
        assert_eq!(err.exit_code(), crate::error::ExitCode::TempFail, "{err}");
        assert!(err.to_string().contains("another-host"), "{err}");
        assert_eq!(
            rt.block_on(read(&store, &path, &retry, "scores")).unwrap(),
            Some(elsewhere.clone()),
            "a live lease is kept"
        );

        // A writer whose lease was taken over knows it, and does not release the new one.
        futures::executor::block_on(store.delete(&path)).unwrap();
        let lease = rt.block_on(Lease::acquire(store.clone(), path.clone(), second, &retry, "scores")).unwrap();
        leave_lease(&store, &path, &elsewhere);
        assert!(!rt.block_on(lease.held("scores")).unwrap());
        rt.block_on(lease.release("scores"));
        assert_eq!(rt.block_on(read(&store, &path, &retry, "scores")).unwrap(), Some(elsewhere));
    }

    #[test]
    fn a_holder_is_dead_when_its_time_is_up_or_its_process_on_this_machine_is_gone() {
        let live = Holder::new(Duration::from_secs(60));
        assert!(!live.is_dead(live.acquired));
        assert!(live.is_dead(live.expires));
        let gone = Holder { pid: i32::MAX as u32, ..live.clone() };
        assert!(gone.is_dead(live.acquired), "no process has pid {}", i32::MAX);
        let elsewhere = Holder { pid: i32::MAX as u32, machine: "another-host pid:[1]".into(), ..live };
        assert!(!elsewhere.is_dead(elsewhere.acquired), "a process elsewhere is alive until its time is up");
    }
}
