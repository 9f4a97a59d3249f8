//! Ordered `imap` behind a slow task: the tasks after it run, and their results wait
//! in the spill file, not in memory.

use super::*;

/// The largest unnamed temporary file this process holds open (a spill file), in bytes.
fn largest_unnamed_temp_file() -> u64 {
    let tmp = std::env::temp_dir();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| l.starts_with(&tmp) && l.to_string_lossy().ends_with(" (deleted)"))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// Ordered `imap` on 2 workers: one task waits ahead of 3,000 quick ones that return
/// 4 KiB each. The quick ones all run while it waits (before, the read-ahead of 64
/// per worker counted their results waiting for their turn, and the workers stopped
/// after 128); with 1 MiB held in memory, the rest of the 12 MB waits in the spill
/// file; and every value comes out in input order, intact.
#[test]
fn imap_runs_the_tasks_behind_a_slow_one_and_holds_their_results_out_of_memory() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).hold_in_memory(1 << 20).build().unwrap();
        let log = RunLog::new("held");
        let go = PathBuf::from(format!("{}-go", log.0.display()));
        let n = 3000u64;
        let mut jobs = vec![Gated {
            id: 0,
            gate: Some(go.clone()),
            log: log.0.clone(),
        }];
        jobs.extend((1..=n).map(|id| Gated {
            id,
            gate: None,
            log: log.0.clone(),
        }));
        // Watches the run log while the caller waits for the first result; then opens
        // the gate.
        let watcher = {
            let (path, go) = (log.0.clone(), go.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(30);
                let started = || {
                    std::fs::read_to_string(&path)
                        .map(|s| s.lines().count())
                        .unwrap_or(0)
                };
                while started() < n as usize && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                // The last ones' results are in flight still: let them land.
                let spill_until = Instant::now() + Duration::from_secs(5);
                let mut spilled = largest_unnamed_temp_file();
                while spilled < 8 << 20 && Instant::now() < spill_until {
                    std::thread::sleep(Duration::from_millis(10));
                    spilled = largest_unnamed_temp_file();
                }
                let seen = (started(), spilled);
                std::fs::write(&go, b"").unwrap();
                seen
            })
        };
        let mut count = 0u64;
        for (i, r) in pool.imap(gated, jobs).enumerate() {
            assert_eq!(r.unwrap(), vec![(i as u64 % 251) as u8; 4096], "input {i}");
            count += 1;
        }
        let (started, spilled) = watcher.join().unwrap();
        assert_eq!(count, n + 1);
        assert_eq!(started, n as usize, "tasks started while the slow one ran");
        assert!(spilled >= 8 << 20, "spill file of {spilled} bytes");
        let _ = std::fs::remove_file(&go);
        pool.join();
    });
}
