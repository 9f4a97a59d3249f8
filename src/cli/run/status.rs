//! What a run says of itself: the daemon's `status` answer and `--stats`' table.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use supervisor::{Pool, WorkerState};

pub(super) fn status_json(
    pool: Option<&Pool>,
    done: &AtomicU64,
    failed: &AtomicU64,
) -> serde_json::Value {
    let Some(pool) = pool else {
        return serde_json::json!({
            "running": true, "pid": std::process::id(), "remote": true,
            "done": done.load(Ordering::Relaxed), "failed": failed.load(Ordering::Relaxed),
        });
    };
    let stats = pool.stats();
    let workers: Vec<serde_json::Value> = stats
        .workers
        .iter()
        .map(|w| {
            let state = match &w.state {
                // As {#} and the job log number it (from 1): the run's one stream took
                // the pool's first id (1), so the n-th task is job n + 1.
                WorkerState::Busy { task, job } => {
                    format!("busy on {task} #{}", job.saturating_sub(1))
                }
                other => format!("{other:?}").to_lowercase(),
            };
            serde_json::json!({
                "pid": w.pid, "state": state, "tasks": w.tasks_done,
                "restarts": w.restarts, "cpu_ms": w.cpu_time.as_millis() as u64,
                "rss_kib": w.rss_kib,
            })
        })
        .collect();
    // Apart from the live ones: the workers replaced so far (the last 1,000).
    let exited: Vec<serde_json::Value> = stats
        .exited
        .iter()
        .map(|w| {
            serde_json::json!({
                "pid": w.pid, "tasks": w.tasks_done, "restarts": w.restarts,
                "cpu_ms": w.cpu_time.as_millis() as u64, "peak_rss_kib": w.peak_rss_kib,
            })
        })
        .collect();
    serde_json::json!({
        "running": true, "pid": std::process::id(),
        "done": done.load(Ordering::Relaxed), "failed": failed.load(Ordering::Relaxed),
        "queued": stats.queued, "in_progress": stats.running,
        "restarts": stats.restarts, "workers": workers, "exited": exited,
    })
}

/// `--stats`: the workers live at the end of the run, and apart those replaced during
/// it.
pub(super) fn print_stats(stats: &supervisor::PoolStats) {
    let table = |title: String, workers: &[&supervisor::WorkerStats]| {
        let mut text = format!(
            "{title}\n{:>8} {:>8} {:>9} {:>10} {:>12}\n",
            "pid", "tasks", "restarts", "cpu", "peak rss"
        );
        for w in workers {
            text.push_str(&format!(
                "{:>8} {:>8} {:>9} {:>9.2}s {:>8} KiB\n",
                w.pid,
                w.tasks_done,
                w.restarts,
                w.cpu_time.as_secs_f64(),
                w.peak_rss_kib
            ));
        }
        text
    };
    let mut live: Vec<_> = stats.workers.iter().collect();
    live.sort_by_key(|w| w.pid);
    let mut exited: Vec<_> = stats.exited.iter().collect();
    exited.sort_by_key(|w| w.pid);
    // The workers that served to the end, and apart those replaced on the way (they
    // died, were recycled, or went over a memory limit).
    let mut text = table(
        format!("supervisor: workers at the end of the run: {}", live.len()),
        &live,
    );
    if !exited.is_empty() {
        text.push_str(&table(
            format!(
                "supervisor: workers replaced during the run: {}",
                exited.len()
            ),
            &exited,
        ));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
