//! The driver: chooses the groups, prints the header, runs the workloads and prints the
//! table.

use super::measure::Settings;
use super::peers::{version, Python};
use super::table::{self, Row};
use super::{awaited, cli, cluster, pool, queue, start, startup};

/// A group of workloads, one per former bench.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `Process::start()` to the first result, per start method.
    Start,
    /// `Pool` against `multiprocessing.Pool` and `ProcessPoolExecutor`.
    Pool,
    /// `Queue` against `multiprocessing.Queue`.
    Queue,
    /// `supervisor run` against `xargs` and GNU parallel.
    Cli,
    /// An awaited `submit` against a blocking wait.
    Async,
    /// Spawn start-up against procspawn; pools of 8 to 256 workers.
    Startup,
    /// `supervisor run --nats` through a nats-server and agents, against local runs.
    Cluster,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Start,
        Group::Pool,
        Group::Queue,
        Group::Cli,
        Group::Async,
        Group::Startup,
        Group::Cluster,
    ];

    fn name(self) -> &'static str {
        match self {
            Group::Start => "start",
            Group::Pool => "pool",
            Group::Queue => "queue",
            Group::Cli => "cli",
            Group::Async => "async",
            Group::Startup => "startup",
            Group::Cluster => "cluster",
        }
    }

    fn rows(self, ctx: &Ctx) -> Vec<Row> {
        match self {
            Group::Start => start::rows(ctx),
            Group::Pool => pool::rows(ctx),
            Group::Queue => queue::rows(ctx),
            Group::Cli => cli::rows(ctx),
            Group::Async => awaited::rows(ctx),
            Group::Startup => startup::rows(ctx),
            Group::Cluster => cluster::rows(ctx),
        }
    }
}

/// What every workload needs.
pub struct Ctx {
    pub settings: Settings,
    /// `None`: Python is not installed, its rows say so.
    pub python: Option<Python>,
}

/// Runs `groups` (or those named on the command line) and prints one table.
pub fn run(groups: &[Group]) {
    // procspawn's child runs its closure and exits here; ours returns at once (a
    // supervisor worker is not marked for procspawn), and the reverse for init().
    procspawn::init();
    supervisor::init();
    let named: Vec<Group> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| {
            *Group::ALL
                .iter()
                .find(|g| g.name() == a)
                .unwrap_or_else(|| {
                    panic!("no group {a:?}: start, pool, queue, cli, async, startup or cluster")
                })
        })
        .collect();
    let groups: Vec<Group> = if named.is_empty() {
        groups.to_vec()
    } else {
        named
    };
    let ctx = Ctx {
        settings: Settings::from_env(),
        python: Python::find(),
    };
    // Started here so that its first use is not in a timed run.
    supervisor::ensure_forkserver().expect("starting the forkserver failed");

    let header = header(&ctx);
    print!("{header}");
    let mut rows = Vec::new();
    for g in groups {
        eprintln!("running the {} workloads...", g.name());
        rows.extend(g.rows(&ctx));
    }
    println!();
    print!("{}", table::text(&rows));
    if let Ok(path) = std::env::var("BENCH_MARKDOWN") {
        let md = format!(
            "{}\n{}",
            header.replace('\n', "  \n"),
            table::markdown(&rows)
        );
        std::fs::write(&path, md).unwrap_or_else(|e| panic!("writing {path} failed: {e}"));
        eprintln!("table written to {path}");
    }
}

/// The date, the machine and the versions, then how the figures were made.
fn header(ctx: &Ctx) -> String {
    let na = || "not installed".to_string();
    let date = version("date", &["+%Y-%m-%d"]).unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = version("uname", &["-sr"]).unwrap_or_else(|| "?".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = version(&rustc, &["--version"]).unwrap_or_else(|| "rustc ?".into());
    let python = ctx.python.as_ref().map_or_else(na, |p| p.version.clone());
    let parallel = version("parallel", &["--version"]).unwrap_or_else(na);
    let s = &ctx.settings;
    format!(
        "{date}, {cores} cores, {kernel}; {rustc}; {python}; {parallel}\n\
         release build; median of {} interleaved runs (start-up: {} samples), SCALE={}; \
         peer / ours = peer time / supervisor time (above 1: supervisor is faster)\n",
        s.runs, s.samples, s.scale
    )
}
