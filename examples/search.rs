//! A parallel text search: the files of a directory split among one worker process per
//! CPU, one query queue per worker, one shared result queue; several queries, then a
//! clean shutdown.
//!
//! Run: `cargo run --release --example search`

use std::path::Path;
use std::time::Instant;

use supervisor::{Error, Process, Queue};

/// What a worker is told: a query to run, or to stop.
#[derive(serde::Serialize, serde::Deserialize)]
enum Order {
    Query(String),
    Stop,
}

/// One worker's answer to one query.
#[derive(serde::Serialize, serde::Deserialize)]
struct Found {
    worker: usize,
    query: String,
    matches: Vec<String>,
}

/// Serves queries on this worker's share of the files until told to stop; returns how
/// many queries it answered.
fn searcher(worker: usize, files: Vec<String>, orders: Queue<Order>, results: Queue<Found>) -> u64 {
    // Read the share once; every query then scans memory.
    let texts: Vec<(String, String)> = files
        .into_iter()
        .filter_map(|f| std::fs::read_to_string(&f).ok().map(|t| (f, t)))
        .collect();
    let mut answered = 0;
    while let Ok(Order::Query(query)) = orders.get() {
        let mut matches = Vec::new();
        for (file, text) in &texts {
            for (n, line) in text.lines().enumerate() {
                if line.contains(&query) {
                    matches.push(format!("{file}:{}: {line}", n + 1));
                }
            }
        }
        if results
            .put(&Found {
                worker,
                query,
                matches,
            })
            .is_err()
        {
            break;
        }
        answered += 1;
    }
    answered
}
supervisor::task!(searcher);

/// Writes a small corpus to search: 64 files of numbered lines.
fn make_corpus(dir: &Path) -> Vec<String> {
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    (0..64)
        .map(|i| {
            let path = dir.join(format!("file{i:02}.txt"));
            let text: String = (0..200)
                .map(|l| format!("line {l} {} {}\n", words[(i + l) % 8], words[(i * l) % 8]))
                .collect();
            std::fs::write(&path, text).expect("write a corpus file");
            path.display().to_string()
        })
        .collect()
}

fn main() -> Result<(), Error> {
    supervisor::init();
    let dir = std::env::temp_dir().join(format!("search-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let files = make_corpus(&dir);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());

    // Split the files, one share and one query queue per worker; one result queue.
    let results: Queue<Found> = Queue::new()?;
    let mut orders = Vec::new();
    let mut procs = Vec::new();
    for w in 0..workers {
        let share: Vec<String> = files.iter().skip(w).step_by(workers).cloned().collect();
        let queue: Queue<Order> = Queue::new()?;
        procs.push(Process::builder(searcher, (w, share, queue.clone(), results.clone())).start()?);
        orders.push(queue);
    }
    println!(
        "{} files split among {workers} worker processes",
        files.len()
    );

    for query in ["alpha alpha", "line 42 ", "echo", "zulu"] {
        let t = Instant::now();
        for queue in &orders {
            queue.put(&Order::Query(query.to_string()))?;
        }
        let mut total = 0;
        let mut example = None;
        for _ in 0..workers {
            let found = results.get()?;
            assert_eq!(found.query, query);
            total += found.matches.len();
            example = example.or(found.matches.first().cloned());
        }
        println!(
            "{query:?}: {total} matching lines in {:.2?}{}",
            t.elapsed(),
            example.map(|e| format!(", e.g. {e}")).unwrap_or_default()
        );
    }

    // Shutdown: tell every worker to stop, then join them.
    for queue in &orders {
        queue.put(&Order::Stop)?;
    }
    for (w, mut p) in procs.into_iter().enumerate() {
        let answered = p.join()?;
        println!(
            "worker {w} (pid {}) answered {answered} queries, exit code {:?}",
            p.pid(),
            p.exitcode()
        );
    }
    std::fs::remove_dir_all(&dir).expect("remove the corpus directory");
    Ok(())
}
