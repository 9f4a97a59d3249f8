//! Every workload of the project, against its peers and the machine's floors, in one
//! table: `cargo bench --bench compare`. See `common/mod.rs` for the environment
//! variables (`RUNS`, `SAMPLES`, `SCALE`, `BENCH_MARKDOWN`) and the arguments.

mod common;

fn main() {
    common::run(&common::Group::ALL);
}
