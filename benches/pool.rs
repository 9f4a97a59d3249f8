//! The `pool` workloads alone, as one table: see `common/pool.rs` for what they measure and
//! `common/mod.rs` for the environment variables. `cargo bench --bench compare` runs
//! them with every other workload.

mod common;

fn main() {
    common::run(&[common::Group::Pool]);
}
