//! The harness of the end-to-end tests: they drive the real `lighttrace` binary.
//!
//! [`TestServer`] (after InfluxDB 3's) starts `lighttrace serve` on free ports with a
//! temporary data directory, waits for `/health`, and kills the process when it is
//! dropped. The server's stderr goes to a file that is printed when a test fails.
//!
//! Tools that cargo does not build (the Python venv, the `s3s-fs` S3 server) are
//! found through the variables `.ci/run` exports; see [`python`] and [`s3s_fs`].
//! With `CI=true` a missing tool fails the test; locally the test is skipped with a
//! loud message.
//!
//! Every wait is bounded: a test that hangs is a bug in the test.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The binary under test, built by cargo for this test run.
pub const LIGHTTRACE: &str = env!("CARGO_BIN_EXE_lighttrace");

/// Start-up includes WAL replay; a debug build on a busy 2-core CI machine is slow.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The contract: after SIGTERM the server flushes and exits 0 within 30 s.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Any one HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest HTTP response body a test reads.
const MAX_RESPONSE_BYTES: u64 = 256 << 20;

// ---------------------------------------------------------------------------
// Paths and tools
// ---------------------------------------------------------------------------

/// The workspace root (this crate is `crates/cli`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/python/<name>` at the workspace root.
pub fn python_script(name: &str) -> PathBuf {
    repo_root().join("tests/python").join(name)
}

/// The `shared/` folder that sits beside the clone (`LIGHTTRACE_SHARED_DIR` overrides).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("LIGHTTRACE_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("../shared"),
    }
}

pub fn hipster_shop_topology() -> PathBuf {
    let path = shared_dir().join("data/topologies/hipster-shop.json");
    assert!(
        path.is_file(),
        "topology {} not found: the tests expect shared/ beside the clone (or LIGHTTRACE_SHARED_DIR)",
        path.display()
    );
    path
}

pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Finds a tool: `$var`, else the first existing `fallbacks` entry, else `name` on
/// `PATH`. Missing: panics in CI, returns `None` (after a loud message) locally.
fn find_tool(var: &str, name: &str, fallbacks: &[PathBuf]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} is not a file", path.display());
        return Some(path);
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .collect()
        })
        .unwrap_or_default();
    if let Some(found) = fallbacks.iter().chain(&on_path).find(|p| p.is_file()) {
        return Some(found.clone());
    }
    if in_ci() {
        panic!("{name} not found: set {var} (bash .ci/run installs it and sets it)");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {name} not found. Set {var}, or run `bash .ci/run` once to\n\
         !!! install it. In CI (CI=true) this test fails instead.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

fn home_cache(path: &str) -> Vec<PathBuf> {
    std::env::var_os("HOME")
        .map(|home| vec![PathBuf::from(home).join(".cache").join(path)])
        .unwrap_or_default()
}

/// The Python of the tests' venv (`tests/requirements.txt` installed):
/// `LIGHTTRACE_PYTHON`, or the venv `.ci/run` creates.
pub fn python() -> Option<PathBuf> {
    find_tool(
        "LIGHTTRACE_PYTHON",
        "python (with tests/requirements.txt)",
        &home_cache("lighttrace-venv/bin/python"),
    )
}

/// `psql` (Debian's `postgresql-client`): `LIGHTTRACE_PSQL`, or `psql` on `PATH`.
pub fn psql() -> Option<PathBuf> {
    find_tool("LIGHTTRACE_PSQL", "psql", &[])
}

/// Node.js: `LIGHTTRACE_NODE`, or `node` on `PATH`.
pub fn node() -> Option<PathBuf> {
    find_tool("LIGHTTRACE_NODE", "node", &[])
}

/// The `node_modules` folder with `tests/node/package-lock.json` installed:
/// `LIGHTTRACE_NODE_MODULES`, or the one `scripts/test-tools.sh` installs under
/// `~/.cache`. Missing: panics in CI, returns `None` (after a loud message) locally.
pub fn node_modules() -> Option<PathBuf> {
    let found = match std::env::var_os("LIGHTTRACE_NODE_MODULES") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.join("@sentry/node").is_dir(),
                "LIGHTTRACE_NODE_MODULES={} has no @sentry/node",
                path.display()
            );
            Some(path)
        }
        None => home_cache("lighttrace-node/node_modules")
            .into_iter()
            .find(|path| path.join("@sentry/node").is_dir()),
    };
    if found.is_none() {
        if in_ci() {
            panic!(
                "node_modules for tests/node not found: set LIGHTTRACE_NODE_MODULES \
                 (bash .ci/run installs them and sets it)"
            );
        }
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! SKIPPED: tests/node's node_modules not found. Set LIGHTTRACE_NODE_MODULES,\n\
             !!! or run `bash .ci/run` once to install them. In CI (CI=true) this test\n\
             !!! fails instead.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
    }
    found
}

/// The `s3s-fs` S3 test server: `LIGHTTRACE_S3S_FS`, the copy `.ci/run` installs,
/// or `s3s-fs` on `PATH`.
pub fn s3s_fs() -> Option<PathBuf> {
    find_tool(
        "LIGHTTRACE_S3S_FS",
        "s3s-fs",
        &home_cache("lighttrace-tools/bin/s3s-fs"),
    )
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 (free when this returns; the server binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Runs `command` to completion, killing it after `timeout`. Panics on timeout, with
/// whatever the command printed.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Output {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {description}: {err}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_timeout(&mut child, timeout);
    let status = match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = stdout.join().unwrap_or_default();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "{description} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Like [`run_with_timeout`], and panics unless the command exits 0.
pub fn run_ok(command: &mut Command, timeout: Duration) -> Output {
    let description = format!("{command:?}");
    let output = run_with_timeout(command, timeout);
    assert!(
        output.status.success(),
        "{description} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` to exit; `None` after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(err) => panic!("wait for pid {}: {err}", child.id()),
        }
    }
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_listener(addr: SocketAddr, timeout: Duration) {
    wait_until(&format!("a listener on {addr}"), timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
}

/// The last `max_lines` lines of a log file, for failure messages.
pub fn tail_file(path: &Path, max_lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|err| format!("<{err}>"));
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max_lines);
    lines[skip..].join("\n")
}

/// Every `*.parquet` file under `dir`, recursively, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A response of any status; transport errors are `Err`.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HTTP_TIMEOUT))
        .max_redirects(0)
        .build()
        .into()
}

fn read_response(
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<HttpResponse, ureq::Error> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()?;
    Ok(HttpResponse { status, body })
}

pub fn http_get(agent: &ureq::Agent, url: &str) -> Result<HttpResponse, ureq::Error> {
    read_response(agent.get(url).call()?)
}

pub fn http_post(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, ureq::Error> {
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read_response(request.send(body)?)
}

// ---------------------------------------------------------------------------
// SQL results
// ---------------------------------------------------------------------------

/// `{"columns": [{"name", "type"}], "rows": [[…]]}`, the body of `POST /api/v1/sql`.
#[derive(Debug, Clone)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl SqlResult {
    pub fn from_json(body: &Value) -> SqlResult {
        let columns = body["columns"]
            .as_array()
            .unwrap_or_else(|| panic!("no `columns` array in {body}"))
            .iter()
            .map(|column| {
                column["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("column without a name in {body}"))
                    .to_owned()
            })
            .collect::<Vec<_>>();
        let rows = body["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("no `rows` array in {body}"))
            .iter()
            .map(|row| {
                let row = row
                    .as_array()
                    .unwrap_or_else(|| panic!("row {row} is not an array"));
                assert_eq!(
                    row.len(),
                    columns.len(),
                    "row {row:?} vs columns {columns:?}"
                );
                row.clone()
            })
            .collect();
        SqlResult { columns, rows }
    }

    pub fn column_index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|column| column == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    pub fn get(&self, row: usize, column: &str) -> &Value {
        &self.rows[row][self.column_index(column)]
    }

    /// The one value of a one-row, one-column result.
    pub fn scalar(&self) -> &Value {
        assert_eq!(self.rows.len(), 1, "expected one row: {:?}", self.rows);
        assert_eq!(
            self.columns.len(),
            1,
            "expected one column: {:?}",
            self.columns
        );
        &self.rows[0][0]
    }

    /// Rows as `column name → value` maps.
    pub fn records(&self) -> Vec<BTreeMap<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect()
            })
            .collect()
    }
}

/// An integer cell: a JSON number, or a string of digits (how some encoders keep
/// 64-bit integers exact).
pub fn as_i64(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .unwrap_or_else(|| panic!("{n} is not an integer")),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} is not an integer")),
        other => panic!("{other} is not an integer"),
    }
}

/// A numeric cell as f64 (number or numeric string).
pub fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().expect("finite number"),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} is not a number")),
        other => panic!("{other} is not a number"),
    }
}

/// A string cell; `None` for SQL NULL.
pub fn as_opt_str(value: &Value) -> Option<&str> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => panic!("{other} is not a string"),
    }
}

pub fn as_str(value: &Value) -> &str {
    as_opt_str(value).unwrap_or_else(|| panic!("expected a string, got NULL"))
}

// ---------------------------------------------------------------------------
// TestServer
// ---------------------------------------------------------------------------

/// Builds a [`TestServer`]: `TestServer::builder().arg("--flush-max-age").arg("1s").start()`.
#[derive(Debug, Clone, Default)]
pub struct TestServerBuilder {
    data_dir: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    pg: bool,
}

impl TestServerBuilder {
    /// Uses `dir` as `--data` instead of a fresh temporary directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// An extra argument to `lighttrace serve`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Serves the Postgres wire protocol too (`--pg` on a free port).
    pub fn with_pg(mut self) -> Self {
        self.pg = true;
        self
    }

    /// An environment variable for the server process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn start(self) -> TestServer {
        let (temp_data, data_dir) = match self.data_dir.clone() {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("lighttrace-e2e-data-")
                    .tempdir()
                    .expect("create a temporary data dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let logs = tempfile::Builder::new()
            .prefix("lighttrace-e2e-logs-")
            .tempdir()
            .expect("create a temporary log dir");
        let mut server = TestServer {
            config: self,
            data_dir,
            _temp_data: temp_data,
            logs,
            child: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pg_addr: None,
            starts: 0,
            agent: http_agent(),
        };
        server.spawn_until_healthy();
        server
    }
}

/// A running `lighttrace serve`, killed (SIGKILL) when dropped.
pub struct TestServer {
    config: TestServerBuilder,
    data_dir: PathBuf,
    _temp_data: Option<TempDir>,
    logs: TempDir,
    child: Option<Child>,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    pg_addr: Option<SocketAddr>,
    starts: usize,
    agent: ureq::Agent,
}

impl TestServer {
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A server with default flags and a fresh data dir.
    pub fn start() -> TestServer {
        TestServer::builder().start()
    }

    /// `http://127.0.0.1:PORT`, the `--http` address.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// `127.0.0.1:PORT`, the `--grpc` address (OTLP/gRPC).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// `127.0.0.1:PORT`, the `--pg` address (Postgres wire protocol); panics
    /// unless the server was built [`with_pg`](TestServerBuilder::with_pg).
    pub fn pg_addr(&self) -> SocketAddr {
        self.pg_addr
            .expect("the server was started without with_pg()")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn stderr_path(&self, start: usize) -> PathBuf {
        self.logs.path().join(format!("server-{start}.stderr"))
    }

    /// All stderr logs of this server so far (every start), for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for start in 1..=self.starts {
            let path = self.stderr_path(start);
            out.push_str(&format!("--- {} (start #{start}) ---\n", path.display()));
            out.push_str(&tail_file(&path, 200));
            out.push('\n');
        }
        out
    }

    fn spawn_until_healthy(&mut self) {
        // Another process may take a port between `free_port` and the server's bind;
        // a server that exits at start-up is retried on new ports, twice.
        for attempt in 1..=3 {
            match self.spawn_once() {
                Ok(()) => return,
                Err(status) if attempt < 3 && self.start_failed_on_port() => {
                    eprintln!("server exited at start-up ({status}), port taken? retrying");
                }
                Err(status) => panic!(
                    "lighttrace serve exited at start-up with {status}\n{}",
                    self.logs()
                ),
            }
        }
    }

    fn start_failed_on_port(&self) -> bool {
        let log = fs::read_to_string(self.stderr_path(self.starts)).unwrap_or_default();
        log.to_lowercase().contains("address already in use")
            || log.to_lowercase().contains("addrinuse")
    }

    fn spawn_once(&mut self) -> Result<(), ExitStatus> {
        self.starts += 1;
        let http_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let grpc_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let pg_addr = self
            .config
            .pg
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let stderr = File::create(self.stderr_path(self.starts)).expect("create the stderr log");
        let mut command = Command::new(LIGHTTRACE);
        command
            .arg("serve")
            .arg("--data")
            .arg(&self.data_dir)
            .arg("--http")
            .arg(http_addr.to_string())
            .arg("--grpc")
            .arg(grpc_addr.to_string())
            .args(
                pg_addr
                    .iter()
                    .flat_map(|addr| ["--pg".to_owned(), addr.to_string()]),
            )
            .args(&self.config.args)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup the log file"))
            .stderr(stderr);
        // The test's own environment must not configure the server behind its back.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("LIGHTTRACE_") || key.starts_with("AWS_") {
                command.env_remove(&*key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        command.env("RUST_BACKTRACE", "1");
        for (key, value) in &self.config.envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {LIGHTTRACE}: {err}"));
        self.child = Some(child);
        self.http_addr = http_addr;
        self.grpc_addr = grpc_addr;
        self.pg_addr = pg_addr;
        self.agent = http_agent();

        let health = format!("{}/health", self.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(status);
            }
            if let Ok(response) = http_get(&self.agent, &health)
                && response.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill_9();
                panic!(
                    "{health} did not answer 200 within {STARTUP_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is not running").id()
    }

    /// `kill -9`: no flush, no goodbye. Returns once the process is gone.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then asserts the server exits 0 within [`SHUTDOWN_TIMEOUT`].
    pub fn terminate(&mut self) {
        let pid = self.pid();
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on the pid of our own child, which has not been reaped.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {pid}: {}", io::Error::last_os_error());
        let started = Instant::now();
        match wait_timeout(&mut child, SHUTDOWN_TIMEOUT) {
            Some(status) => {
                assert!(
                    status.success(),
                    "after SIGTERM the server exited with {status} instead of 0\n{}",
                    self.logs()
                );
                eprintln!("server shut down in {:?}", started.elapsed());
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
        }
    }

    /// Starts the server again on the same data dir, arguments and environment
    /// (after [`kill_9`](Self::kill_9) or [`terminate`](Self::terminate)).
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "restart() of a running server");
        self.child = None;
        self.spawn_until_healthy();
    }

    pub fn health(&self) -> Result<HttpResponse, ureq::Error> {
        http_get(&self.agent, &format!("{}/health", self.url()))
    }

    /// `POST path` with the given headers; transport errors are `Err`.
    pub fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, ureq::Error> {
        http_post(&self.agent, &format!("{}{path}", self.url()), headers, body)
    }

    /// `POST /v1/traces` with a protobuf body; any status, transport errors are `Err`.
    pub fn post_otlp(
        &self,
        request: &ExportTraceServiceRequest,
    ) -> Result<HttpResponse, ureq::Error> {
        self.post(
            "/v1/traces",
            &[("content-type", "application/x-protobuf")],
            &request.encode_to_vec(),
        )
    }

    /// Sends `request` and asserts it is acknowledged (200).
    pub fn ingest(&self, request: &ExportTraceServiceRequest) {
        let response = self
            .post_otlp(request)
            .unwrap_or_else(|err| panic!("POST /v1/traces: {err}\n{}", self.logs()));
        assert_eq!(
            response.status,
            200,
            "POST /v1/traces answered {}: {}\n{}",
            response.status,
            response.text(),
            self.logs()
        );
    }

    /// `POST /api/v1/sql`: the response body, or `Err((status, body))` for a non-200.
    pub fn try_sql(&self, sql: &str) -> Result<Value, (u16, String)> {
        let body = serde_json::to_vec(&json!({ "sql": sql })).expect("serialize");
        let response = self
            .post(
                "/api/v1/sql",
                &[("content-type", "application/json")],
                &body,
            )
            .unwrap_or_else(|err| panic!("POST /api/v1/sql: {err}\n{}", self.logs()));
        if response.status != 200 {
            return Err((response.status, response.text()));
        }
        let body = serde_json::from_slice::<Value>(&response.body)
            .unwrap_or_else(|err| panic!("SQL response is not JSON ({err}): {}", response.text()));
        Ok(body)
    }

    /// `POST /api/v1/sql`; panics unless it answers 200.
    pub fn sql(&self, sql: &str) -> Value {
        self.try_sql(sql).unwrap_or_else(|(status, body)| {
            panic!(
                "SQL failed with {status}: {body}\nquery: {sql}\n{}",
                self.logs()
            )
        })
    }

    pub fn query(&self, sql: &str) -> SqlResult {
        SqlResult::from_json(&self.sql(sql))
    }

    /// The integer a one-row, one-column query returns (`SELECT count(*) …`).
    pub fn query_i64(&self, sql: &str) -> i64 {
        as_i64(self.query(sql).scalar())
    }

    /// `span_id → number of rows` over the whole `spans` table.
    pub fn span_id_counts(&self) -> BTreeMap<String, i64> {
        let result = self.query("SELECT span_id, count(*) AS n FROM spans GROUP BY span_id");
        result
            .rows
            .iter()
            .map(|row| (as_str(&row[0]).to_owned(), as_i64(&row[1])))
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill_9();
        if thread::panicking() {
            eprintln!("\n=== lighttrace serve logs ===\n{}", self.logs());
        }
    }
}

/// Runs `lighttrace ARGS…` to completion (panics after `timeout` or on a non-zero exit).
pub fn lighttrace(args: &[&str], timeout: Duration) -> Output {
    let mut command = Command::new(LIGHTTRACE);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("LIGHTTRACE_") {
            command.env_remove(&*key);
        }
    }
    run_ok(&mut command, timeout)
}

/// `lighttrace gen` of the hipster-shop topology into `server`.
pub fn generate_traffic(server: &TestServer, traces: u32, seed: u64) {
    let topology = hipster_shop_topology();
    let output = lighttrace(
        &[
            "gen",
            "--topology",
            topology.to_str().expect("UTF-8 path"),
            "--traces",
            &traces.to_string(),
            "--seed",
            &seed.to_string(),
            "--target",
            &server.url(),
        ],
        Duration::from_secs(300),
    );
    eprintln!(
        "gen: {}",
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
}

// ---------------------------------------------------------------------------
// OTLP payloads
// ---------------------------------------------------------------------------

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// A readable, unique, non-zero trace id: `tag`, then `n` in the low 8 bytes.
pub fn trace_id(tag: u8, n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = tag;
    id[1] = 0x7e;
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

/// A readable, unique, non-zero span id: `tag`, then the low 7 bytes of `n`.
pub fn span_id(tag: u8, n: u64) -> [u8; 8] {
    let mut id = n.to_be_bytes();
    id[0] = tag;
    id
}

pub fn hex_id(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

pub fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

pub fn int_attr(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// One span; ids as bytes, times in ns since the epoch.
pub fn span(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &str,
    kind: SpanKind,
    start_ns: u64,
    duration_ns: u64,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + duration_ns,
        ..Default::default()
    }
}

/// One `ResourceSpans` per service, in the order given.
pub fn export_request(by_service: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_attr("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lighttrace-e2e".to_owned(),
                        version: "1".to_owned(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Request `n` of a deterministic stream: one trace of `width` spans (a server root
/// and `width - 1` client children), all of `service`, starting at `start_ns`.
/// Returns the request and the hex span ids it carries.
pub fn trace_request(
    service: &str,
    tag: u8,
    n: u64,
    width: u64,
    start_ns: u64,
) -> (ExportTraceServiceRequest, Vec<String>) {
    let trace = trace_id(tag, n);
    let root = span_id(tag, n * width);
    let mut spans = vec![{
        let mut root_span = span(
            trace,
            root,
            None,
            "GET /api/items",
            SpanKind::Server,
            start_ns,
            5_000_000,
        );
        root_span.attributes = vec![
            string_attr("http.route", "/api/items"),
            int_attr("request.n", n as i64),
        ];
        root_span
    }];
    for child in 1..width {
        let mut child_span = span(
            trace,
            span_id(tag, n * width + child),
            Some(root),
            "SELECT items",
            SpanKind::Client,
            start_ns + child * 100_000,
            1_000_000,
        );
        child_span.attributes = vec![string_attr("db.system", "postgresql")];
        spans.push(child_span);
    }
    let ids = spans.iter().map(|s| hex_id(&s.span_id)).collect();
    (export_request(vec![(service, spans)]), ids)
}

/// Gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}
