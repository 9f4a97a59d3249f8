//! What a JSON record and a JSON job-log line cost to write (a measurement, run with
//! `cargo test --release --bin supervisor -- --ignored --nocapture json_line_cost`).

use std::time::{Duration, UNIX_EPOCH};

use supervisor::{Captured, JobMeta};

use super::report::{self, Record};
use super::tasks::{Outcome, Output};

fn output() -> Output {
    Output {
        text: Captured::from("0s".to_string()),
        stderr: Captured::default(),
        json: false,
        pid: 0,
        slot: 0,
    }
}

/// Nanoseconds per line of a tiny task's record and job-log line, best of 5 rounds.
#[test]
#[ignore = "a measurement, not a check"]
fn json_line_cost() {
    const LINES: u32 = 200_000;
    let meta = |i: u32| JobMeta {
        pid: 40_000 + i % 2,
        attempts: 1,
        started: Some(
            UNIX_EPOCH + Duration::from_nanos(1_796_627_042_979_033_700 + u64::from(i) * 3_001),
        ),
        duration: Duration::from_nanos(4_000 + u64::from(i % 97) * 1_000 + 321),
    };
    let result: Result<Outcome, supervisor::Error> = Ok(Ok(output()));
    let mut sink: Vec<u8> = Vec::with_capacity(64 << 20);
    let (mut record_ns, mut joblog_ns) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        sink.clear();
        let t = std::time::Instant::now();
        for i in 0..LINES {
            let record = Record::new(u64::from(i) + 1, b"0ms".to_vec(), meta(i), Ok(Ok(output())));
            record.write_json(&mut sink, false).unwrap();
        }
        record_ns = record_ns.min(t.elapsed().as_nanos() as f64 / f64::from(LINES));
        sink.clear();
        let t = std::time::Instant::now();
        for i in 0..LINES {
            report::write_joblog_json(
                &mut sink,
                u64::from(i) + 1,
                b"0ms",
                None,
                std::hint::black_box(&result),
                &meta(i),
                Some(5796),
                None,
            )
            .unwrap();
            sink.push(b'\n');
        }
        joblog_ns = joblog_ns.min(t.elapsed().as_nanos() as f64 / f64::from(LINES));
    }
    eprintln!("json_line_cost: record {record_ns:.1} ns, job-log line {joblog_ns:.1} ns");
}
