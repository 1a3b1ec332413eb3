//! `--store s3://bucket/prefix` against a real S3 server (`s3s-fs`, which keeps each
//! object as a file under `<root>/<bucket>/<key>`).
//!
//! The same spans go to an S3-backed server and to a local-store server. After a
//! clean shutdown (SIGTERM flushes), the Parquet objects must sit under the
//! Hive-style keys in the bucket, and the restarted S3-backed server must answer
//! queries exactly as the local one does.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use common::*;

const BUCKET: &str = "lighttrace-e2e";
const PREFIX: &str = "lake/v1";
const ACCESS_KEY: &str = "lighttrace-e2e-access";
const SECRET_KEY: &str = "lighttrace-e2e-secret-key";
const SERVICES: [&str; 2] = ["frontend", "cartservice"];
const TAG: u8 = 0x53;

/// A running `s3s-fs`, killed when dropped.
struct S3sFs {
    child: Child,
    addr: SocketAddr,
    root: TempDir,
    log: PathBuf,
}

impl S3sFs {
    fn start(binary: &Path) -> S3sFs {
        let root = tempfile::Builder::new()
            .prefix("lighttrace-e2e-s3-")
            .tempdir()
            .expect("temp dir");
        // s3s-fs maps a bucket to a folder under its root.
        std::fs::create_dir(root.path().join(BUCKET)).expect("create the bucket folder");
        let log = root.path().join("s3s-fs.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log_file = File::create(&log).expect("create the s3s-fs log");
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", binary.display()));
        let s3 = S3sFs {
            child,
            addr,
            root,
            log,
        };
        wait_for_listener(s3.addr, Duration::from_secs(30));
        s3
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where s3s-fs keeps the objects under `s3://BUCKET/PREFIX/`.
    fn lake_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET).join(PREFIX)
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("=== s3s-fs log ===\n{}", tail_file(&self.log, 100));
        }
    }
}

fn ingest_fixture(server: &TestServer, start_ns: u64) {
    for n in 0..30u64 {
        let service = SERVICES[(n % 2) as usize];
        let (request, _) = trace_request(service, TAG, n, 4, start_ns + n * 1_000_000);
        server.ingest(&request);
    }
}

const ROWS_SQL: &str = "SELECT trace_id, span_id, parent_span_id, service_name, name, kind, \
     start_time, end_time, duration_ns, status_code, attributes['http.route'] AS route, \
     attributes['request.n'] AS request_n, attribute_types['request.n'] AS request_n_type \
     FROM spans ORDER BY span_id";

#[test]
fn s3_store_round_trip_matches_local_store() {
    let Some(s3s_fs) = s3s_fs() else {
        return;
    };
    let s3 = S3sFs::start(&s3s_fs);
    let mut remote = TestServer::builder()
        .arg("--store")
        .arg(format!("s3://{BUCKET}/{PREFIX}"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", s3.endpoint())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .start();
    let local = TestServer::start();

    // The middle of an hour two hours ago: the fixture (30 ms of spans) sits in one
    // hour folder whatever the time of day.
    const HOUR_NS: u64 = 3_600_000_000_000;
    let start_ns = (now_ns() / HOUR_NS - 2) * HOUR_NS + HOUR_NS / 2;
    ingest_fixture(&remote, start_ns);
    ingest_fixture(&local, start_ns);

    let expected = local.query(ROWS_SQL);
    assert_eq!(expected.rows.len(), 120);
    assert_eq!(
        remote.query(ROWS_SQL).rows,
        expected.rows,
        "buffered rows differ"
    );

    remote.terminate();

    // The flush wrote Parquet objects under the Hive-style keys, into the bucket.
    let datetime = chrono::DateTime::from_timestamp_nanos(start_ns as i64);
    let date = datetime.format("%Y-%m-%d").to_string();
    let hour = datetime.format("%H").to_string();
    let objects = parquet_files(&s3.lake_dir().join("spans"));
    assert!(
        !objects.is_empty(),
        "no Parquet object under s3://{BUCKET}/{PREFIX}/spans/ ({}):\n{}",
        s3.lake_dir().display(),
        tail_file(&s3.log, 50)
    );
    for service in SERVICES {
        let folder_tail = PathBuf::from(format!("service={service}"))
            .join(format!("date={date}"))
            .join(format!("hour={hour}"));
        assert!(
            objects.iter().any(|object| {
                let relative = object.strip_prefix(s3.lake_dir().join("spans")).unwrap();
                let mut parts = relative.components();
                let project = parts
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .into_owned();
                project.starts_with("project=") && parts.as_path().starts_with(&folder_tail)
            }),
            "no object under spans/project=*/{}/ in {objects:?}",
            folder_tail.display()
        );
    }
    assert!(
        parquet_files(&remote.data_dir().join("spans")).is_empty(),
        "with --store s3://… the data dir holds no Parquet"
    );

    remote.restart();
    assert_eq!(
        remote.query(ROWS_SQL).rows,
        expected.rows,
        "rows read back from S3 differ from the local store's"
    );
    assert_eq!(
        remote.query_i64("SELECT count(*) FROM spans WHERE service_name = 'frontend'"),
        local.query_i64("SELECT count(*) FROM spans WHERE service_name = 'frontend'")
    );
    let one_trace = format!(
        "SELECT count(*) FROM spans WHERE trace_id = '{}'",
        hex_id(&trace_id(TAG, 7))
    );
    assert_eq!(remote.query_i64(&one_trace), 4);
}
