//! What every bench shares: the workloads (ours, the peers' and the machine's floors),
//! how they are measured, and the one table they all print.
//!
//! `cargo bench --bench compare` runs every group of workloads; `start`, `pool`, `queue`
//! and `cli` run one group each (`async`, the awaited round trip, and `startup`,
//! against procspawn and for pools up to 256 workers, only in `compare`). Environment:
//! - `RUNS=N`: interleaved runs per workload, the median is reported (default 5);
//! - `SAMPLES=N`: samples per start method in the `start` group (default 100);
//! - `SCALE=N`: divides every workload size except start-up (default 1);
//! - `BENCH_MARKDOWN=FILE`: also write the table to FILE as markdown.
//!
//! Arguments name the groups to run (`cargo bench --bench compare -- pool cli`); cargo's
//! `--bench` is ignored.

mod awaited;
mod cli;
mod cluster;
mod measure;
mod peers;
mod pool;
mod queue;
mod run;
mod start;
mod startup;
mod table;

pub use run::{run, Group};
