//! Storage that fails mid-run (issue #17): the sample world on the S3 emulator, read by
//! `retain` through a TCP proxy on 127.0.0.1 that the test controls. The proxy passes
//! bytes through, and on cue cuts responses in half, stalls (holds every byte, answers
//! nothing), or resets every connection: a server that drops, hangs or refuses. No mocks:
//! the requests are `retain`'s own (object_store's and Polars'), the server is moto.
//!
//! The promises checked: a connection dropped mid-response is retried and the run
//! succeeds with the same table; a server that hangs or refuses mid-read ends the run with
//! exit 75 and the last error on stderr, within the bound the `[storage]` settings give
//! (a hang detector kills the run after two minutes: it is a liveness check, not a timing).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::emulators::{self, Kind, Root};
use crate::util::{SAMPLE_AS_OF, read_table, retain, sample_data};

const PASS: u8 = 0;
const STALL: u8 = 1;
const RESET: u8 = 2;

/// A TCP proxy in front of the S3 emulator.
struct Proxy {
    port: u16,
    state: Arc<State>,
}

struct State {
    upstream: u16,
    mode: AtomicU8,
    /// How many more responses to cut in half (the client sees a connection dropped
    /// mid-response), one in every `cut_every` response chunks.
    cuts: AtomicUsize,
    cut_every: AtomicUsize,
    /// After this many response chunks the mode becomes `then`.
    fault_after: AtomicUsize,
    then: AtomicU8,
    /// Switch to `then` at this PUT (1 = the first; 0 = never): the commit of the outputs.
    fault_at_put: AtomicUsize,
    puts: AtomicUsize,
    chunks: AtomicUsize,
    closed: AtomicBool,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            mode: AtomicU8::new(PASS),
            cuts: AtomicUsize::new(0),
            cut_every: AtomicUsize::new(1),
            fault_after: AtomicUsize::new(usize::MAX),
            then: AtomicU8::new(PASS),
            fault_at_put: AtomicUsize::new(0),
            puts: AtomicUsize::new(0),
            chunks: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if shared.mode.load(Ordering::SeqCst) == RESET {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", shared.upstream)) else { continue };
                for (from, to, response) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap(), false), (server, client, true)]
                {
                    let state = shared.clone();
                    std::thread::spawn(move || pump(from, to, response, &state));
                }
            }
        });
        Proxy { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cut `n` responses in half, one in every `every` response chunks.
    fn cut(&self, n: usize, every: usize) {
        self.state.cut_every.store(every, Ordering::SeqCst);
        self.state.cuts.store(n, Ordering::SeqCst);
    }

    /// After `chunks` more response chunks, switch to `mode`.
    fn fault_after(&self, chunks: usize, mode: u8) {
        self.state.then.store(mode, Ordering::SeqCst);
        self.state.fault_after.store(self.state.chunks.load(Ordering::SeqCst) + chunks, Ordering::SeqCst);
    }
}

impl Proxy {
    /// At the `n`th PUT, switch to `mode`.
    fn fault_at_put(&self, n: usize, mode: u8) {
        self.state.then.store(mode, Ordering::SeqCst);
        self.state.fault_at_put.store(n, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copy `from` to `to` as the proxy's state says.
fn pump(mut from: TcpStream, mut to: TcpStream, response: bool, state: &State) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let close = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if state.closed.load(Ordering::SeqCst) || state.mode.load(Ordering::SeqCst) == RESET {
            return close(&from, &to);
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return close(&from, &to),
        };
        if !response
            && buf[..n].starts_with(b"PUT ")
            && state.puts.fetch_add(1, Ordering::SeqCst) + 1 == state.fault_at_put.load(Ordering::SeqCst)
        {
            state.mode.store(state.then.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        while state.mode.load(Ordering::SeqCst) == STALL && !state.closed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if state.mode.load(Ordering::SeqCst) == RESET {
            return close(&from, &to);
        }
        if response {
            let seen = state.chunks.fetch_add(1, Ordering::SeqCst) + 1;
            if seen >= state.fault_after.load(Ordering::SeqCst) {
                state.mode.store(state.then.load(Ordering::SeqCst), Ordering::SeqCst);
            }
            // A hung server: hold the bytes, answer nothing.
            while state.mode.load(Ordering::SeqCst) == STALL && !state.closed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if state.mode.load(Ordering::SeqCst) == RESET {
                return close(&from, &to);
            }
            let turn = seen.is_multiple_of(state.cut_every.load(Ordering::SeqCst));
            if n >= 64
                && turn
                && state.cuts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)).is_ok()
            {
                let _ = to.write_all(&buf[..n / 2]);
                return close(&from, &to);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            return close(&from, &to);
        }
    }
}

/// The sample world on the S3 emulator, under a fresh prefix.
fn seeded(test: &str) -> Root {
    let root = emulators::s3().root(test);
    let storage = root.open();
    let base = sample_data();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&base).unwrap().to_str().unwrap().to_string();
                storage.write_bytes(&rel, std::fs::read(&path).unwrap().into()).unwrap();
            }
        }
    }
    root
}

/// `retain features` on `input` (an S3 root reached through `proxy`) into `output`, with
/// the settings of `config` ([`short_timeouts`]).
fn features_through(proxy: &Proxy, input: &Root, output: &str, config: &Path) -> Command {
    let mut cmd = retain();
    for (k, v) in emulators::env_for(Kind::S3, &proxy.url()) {
        cmd.env(k, v);
    }
    cmd.args(["features", "--as-of", SAMPLE_AS_OF, "--config"]).arg(config).args([
        "--input",
        &input.uri(),
        "--output",
        output,
    ]);
    cmd
}

fn short_timeouts(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("faults.toml");
    std::fs::write(
        &config,
        // A lease left by a failed run names a process that has exited: a rerun must take it
        // at once, not after `lease_timeout` (an hour here, so the hang detector would fire).
        "[storage]\nconnect_timeout = \"1s\"\ntimeout = \"3s\"\nmax_retries = 3\nretry_timeout = 8\nlease_timeout = 3600\n",
    )
    .unwrap();
    config
}

/// Run `cmd`; kill it if it runs past two minutes (a hang), and return its exit code,
/// stderr and how long it ran.
fn run_bounded(cmd: &mut Command) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), reader.join().unwrap(), started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("retain still ran after {:?}: a hang\nstderr: {}", started.elapsed(), reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Responses cut in half mid-way (one in three, twelve in all), reads and writes alike:
/// retried, and the run writes the same features as from the local sample.
#[test]
fn connections_dropped_mid_response_are_retried() {
    let input = seeded("dropped-in");
    let output = emulators::s3().root("dropped-out");
    let proxy = Proxy::start(emulators::s3().port());
    let dir = tempfile::tempdir().unwrap();
    // Listings run side by side, so the cuts can land on the repeats of one request: a
    // budget larger than the cuts keeps a run that retries correctly from ever running out
    // (with `short_timeouts`' 3 repeats, CI once saw one listing cut four times).
    let config = dir.path().join("generous.toml");
    std::fs::write(
        &config,
        "[storage]\nconnect_timeout = \"1s\"\ntimeout = \"3s\"\nmax_retries = 13\nretry_timeout = 60\nlease_timeout = 3600\n",
    )
    .unwrap();
    proxy.cut(12, 3);
    let (code, stderr, took) = run_bounded(&mut features_through(&proxy, &input, &output.uri(), &config));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(proxy.state.cuts.load(Ordering::SeqCst), 0, "every cut happened");
    eprintln!("12 responses cut: features in {took:?}, {} response chunks", proxy.state.chunks.load(Ordering::SeqCst));

    let local = tempfile::tempdir().unwrap();
    crate::util::run_ok(
        retain()
            .args(["features", "--as-of", SAMPLE_AS_OF, "--input"])
            .arg(sample_data())
            .arg("--output")
            .arg(local.path()),
    );
    let remote = output.open().read_committed("features", crate::util::sample_as_of()).unwrap();
    assert_eq!(remote, read_table(local.path(), "features"));
}

/// A server that stops answering mid-read, or resets every connection: exit 75 with the
/// storage error on stderr, nothing committed.
#[test]
fn a_server_that_hangs_or_refuses_mid_read_ends_in_75() {
    let input = seeded("hang-in");
    // After 40 response chunks the run is listing partitions; after 1200 Polars is
    // reading the Parquet files (a pass-through run of this command sees about 1,600).
    for (after, mode, name) in
        [(40, STALL, "hangs"), (40, RESET, "refuses"), (1200, STALL, "hangs"), (1200, RESET, "refuses")]
    {
        let proxy = Proxy::start(emulators::s3().port());
        let out = tempfile::tempdir().unwrap();
        let config = short_timeouts(out.path());
        proxy.fault_after(after, mode);
        let output = out.path().join("out");
        let (code, stderr, took) =
            run_bounded(&mut features_through(&proxy, &input, output.to_str().unwrap(), &config));
        assert!(proxy.state.chunks.load(Ordering::SeqCst) >= after, "the fault came mid-run");
        assert_eq!(code, Some(75), "a server that {name} after {after} chunks: stderr: {stderr}");
        assert!(stderr.contains("storage unavailable"), "the last error is logged: {stderr}");
        assert!(!output.join("features").exists(), "nothing committed");
        eprintln!(
            "a server that {name} after {after} response chunks: exit 75 after {took:?}\n{}",
            stderr.lines().find(|l| l.starts_with("error:")).unwrap_or("")
        );
    }
}

/// A server that hangs or refuses while the outputs are committed (at the write lease, or
/// at the first part): exit 75, the table an earlier run committed still reads back
/// whole, and a rerun once the server is back commits at once (the failed run's lease
/// names a process that has exited).
#[test]
fn a_server_that_hangs_or_refuses_during_the_commit_ends_in_75_and_keeps_the_last_table() {
    let input = seeded("commit-in");
    let output = emulators::s3().root("commit-out");
    let dir = tempfile::tempdir().unwrap();
    let config = short_timeouts(dir.path());
    let proxy = Proxy::start(emulators::s3().port());
    let (code, stderr, _) = run_bounded(&mut features_through(&proxy, &input, &output.uri(), &config));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let before = output.open().read_committed("features", crate::util::sample_as_of()).unwrap();
    for (put, mode, name) in [(1, STALL, "hangs"), (1, RESET, "refuses"), (2, STALL, "hangs"), (2, RESET, "refuses")] {
        let proxy = Proxy::start(emulators::s3().port());
        proxy.fault_at_put(put, mode);
        let (code, stderr, took) = run_bounded(&mut features_through(&proxy, &input, &output.uri(), &config));
        assert_eq!(code, Some(75), "a server that {name} at PUT {put}: stderr: {stderr}");
        assert!(stderr.contains("storage unavailable"), "the last error is logged: {stderr}");
        eprintln!(
            "a server that {name} at PUT {put}: exit 75 after {took:?}\n{}",
            stderr.lines().find(|l| l.starts_with("error:")).unwrap_or("")
        );
        let after = output.open().read_committed("features", crate::util::sample_as_of()).unwrap();
        assert_eq!(after, before, "the earlier table is intact");
    }
    let proxy = Proxy::start(emulators::s3().port());
    let (code, stderr, _) = run_bounded(&mut features_through(&proxy, &input, &output.uri(), &config));
    assert_eq!(code, Some(0), "the rerun: stderr: {stderr}");
    assert_eq!(output.open().read_committed("features", crate::util::sample_as_of()).unwrap(), before);
}
