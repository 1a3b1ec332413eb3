//! `lighttrace`: the one binary.
//!
//! * `lighttrace serve`: the server (OTLP/HTTP receiver, SQL API) over a lake;
//!   see [`settings`] for its flags, `LIGHTTRACE_*` variables and TOML file.
//! * `lighttrace sql "SELECT …"`: asks a running server (`--server`), or reads a
//!   data directory directly (`--data`); prints a table, JSON or CSV.
//! * `lighttrace trace ID`: one trace from a server (`--server`) or a data
//!   directory (`--data`), as a terminal waterfall or JSON.
//! * `lighttrace gen`: generates realistic traces from a service topology and
//!   sends them to a server (`--target`) or writes them into a lake (`--data`).
//! * `lighttrace compact --data DIR`: merges the small files of closed hours
//!   (a server does it in the background).
//!
//! Exit codes: 0 on success, 1 on an error (the message goes to stderr), 2 on a
//! usage error.

mod compact;
mod r#gen;
mod gen_data;
mod output;
mod report;
mod serve;
mod settings;
mod sql;
mod trace;
mod waterfall;

use std::process::ExitCode;

/// glibc's allocator spent over half of ingest CPU in malloc/free and chunk
/// consolidation (perf, `benches/RESULTS.md`); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// LightTrace: a columnar trace database. Spans in over OpenTelemetry, Parquet
/// on disk or object storage, SQL out.
#[derive(Parser, Debug)]
#[command(name = "lighttrace", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: OTLP/HTTP on /v1/traces, SQL on /api/v1/sql.
    Serve(Box<settings::ServeArgs>),
    /// Run one SQL query against a server or a data directory and print the result.
    Sql(sql::SqlArgs),
    /// Generate traces from a service topology into a server or a data directory.
    Gen(r#gen::GenArgs),
    /// Show one trace as a waterfall (or JSON): tree, critical path, where the time went.
    Trace(trace::TraceArgs),
    /// Run a named report (latency, bottlenecks, exemplars, errors, n-plus-one,
    /// service-graph); --list describes them.
    Report(report::ReportArgs),
    /// Merge the small Parquet files of closed hours in a data directory (a
    /// running server does this in the background).
    Compact(compact::CompactArgs),
}

/// mimalloc's `purge_delay` option (the same index in its v2 and v3 enums).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS after 10 s unused instead of mimalloc's 1 s.
/// Ingest frees each flushed buffer and allocates the next request's within
/// about a second; purged pages come back as fresh zero-filled faults, which
/// cost a quarter more page faults and about 5 % of ingest CPU (`perf stat`,
/// benches/RESULTS.md). The buffers are bounded (`--buffer-max-bytes`), so
/// what is kept is bounded too. `MIMALLOC_PURGE_DELAY` still overrides it.
fn keep_freed_memory_for_reuse() {
    // mimalloc reads its environment when the process loads, so an explicit
    // setting is already in effect; only the default is replaced.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: called first thing in `main`, before any other thread exists
    // (`mi_option_set` is not thread-safe); integer arguments only.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000);
    }
}

fn main() -> ExitCode {
    // Transparent huge pages made each fresh 2 MiB of buffer memory cost a 2 MiB
    // zeroing fault: a quarter of ingest CPU went to the kernel clearing pages
    // (perf; benches/RESULTS.md). The buffers are short-lived and churn, so this
    // process does without them.
    // SAFETY: prctl with integer arguments only; it touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    keep_freed_memory_for_reuse();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if let Some((name @ ("sql" | "trace" | "report"), sub_matches)) = matches.subcommand() {
        use clap::parser::ValueSource;
        let explicit = |id: &str| sub_matches.value_source(id) == Some(ValueSource::CommandLine);
        if explicit("server") && explicit("data") {
            let mut command = Cli::command();
            command.build();
            if let Some(sub) = command.find_subcommand_mut(name) {
                sub.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--server and --data exclude each other: ask a server, or read a data directory",
                )
                .exit();
            }
        }
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Sql(args) => {
            quiet_logging();
            sql::run(args)
        }
        Command::Gen(args) => {
            quiet_logging();
            run_gen(args)
        }
        Command::Trace(args) => {
            quiet_logging();
            trace::run(args)
        }
        Command::Report(args) => {
            quiet_logging();
            report::run(args)
        }
        Command::Compact(args) => {
            quiet_logging();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(compact::run(args)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Warnings and errors only, unless RUST_LOG says otherwise: stdout and stderr
/// belong to the command's own output.
fn quiet_logging() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    // A bad RUST_LOG is not worth failing a query for.
    let _ = serve::init_logging(Some(&filter), settings::LogFormat::Text)
        .or_else(|_| serve::init_logging(Some("warn"), settings::LogFormat::Text));
}

fn run_gen(args: r#gen::GenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?;
    runtime.block_on(async move {
        match args.data.clone() {
            Some(data) => gen_data::write(&args, &data).await,
            None => r#gen::run(args).await.map(drop),
        }
    })
}
