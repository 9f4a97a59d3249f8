//! Batched calls: a slow task in a batch is stopped at its own limit and nothing runs
//! twice, quick tasks never wait behind a slow one, and a fresh pool spreads its work.

use super::*;

/// `[0, 0, 700 x 6]` ms with a 500 ms limit: each slow task is stopped at its own
/// limit (not at `limit x batch length`), the quick ones succeed, and nothing runs
/// twice. On the old scheduler the 700 ms tasks succeeded and every task of a killed
/// batch ran again.
#[test]
fn a_slow_task_in_a_batch_times_out_at_its_own_limit_and_nothing_runs_twice() {
    each_method(DEADLINE, |method| {
        let limit = Duration::from_millis(500);
        let pool = pool(method, 2).task_timeout(limit).build().unwrap();
        let log = RunLog::new("timeout");
        warm(&pool, &log);
        let ms = [0, 0, 700, 700, 700, 700, 700, 700];
        let jobs: Vec<Job> = ms
            .iter()
            .enumerate()
            .map(|(i, ms)| log.job(i as u64, *ms, Then::Return))
            .collect();
        let reports: Vec<_> = pool
            .imap_reports::<_, u32, _>("job", jobs, 1, true)
            .collect();
        assert_eq!(reports.len(), ms.len());
        for (r, ms) in reports.iter().zip(ms) {
            if ms == 0 {
                assert!(r.result.is_ok(), "{r:?}");
                continue;
            }
            let e = r.result.as_ref().unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::TimedOut { .. }), "{r:?}");
            // Its own duration, measured: at least the limit, and stopped soon after.
            assert!(r.meta.duration >= limit, "{r:?}");
            assert!(
                r.meta.duration < limit + Duration::from_millis(650),
                "{r:?}"
            );
            assert!(r.meta.started.is_some() && r.meta.pid != 0, "{r:?}");
        }
        let runs = log.runs();
        for id in 0..ms.len() as u64 {
            assert_eq!(runs.get(&id), Some(&1), "task {id} ran {runs:?}");
        }
        pool.join();
    });
}

/// A 2 s task, then 50 quick ones on 2 workers: every quick one finishes while the slow
/// one runs (on the old scheduler 6 to 12 of them waited for it).
#[test]
fn quick_tasks_never_wait_behind_a_slow_one() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let log = RunLog::new("behind");
        warm(&pool, &log);
        let mut jobs = vec![log.job(0, 2000, Then::Return)];
        jobs.extend((1..=50).map(|id| log.job(id, 0, Then::Return)));
        let start = Instant::now();
        let mut order = Vec::new();
        for r in pool.imap_reports::<_, u32, _>("job", jobs, 1, false) {
            r.result.as_ref().unwrap();
            order.push((r.index, start.elapsed()));
        }
        let slow_at = order.iter().position(|(i, _)| *i == 0).unwrap();
        assert_eq!(slow_at, 50, "the slow task finishes last: {order:?}");
        let last_quick = order[49].1;
        assert!(
            last_quick < Duration::from_millis(1500),
            "the quick tasks waited for the slow one: {order:?}"
        );
        pool.join();
    });
}

/// Two quick tasks and four that take 3 s, on 6 workers, unordered: both quick results
/// come out at once (on the old scheduler the second often sat behind a slow one).
#[test]
fn quick_results_come_out_while_other_workers_are_busy() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 6).build().unwrap();
        let log = RunLog::new("hol");
        warm(&pool, &log);
        let mut jobs = vec![log.job(0, 0, Then::Return), log.job(1, 0, Then::Return)];
        jobs.extend((2..6).map(|id| log.job(id, 3000, Then::Return)));
        let start = Instant::now();
        let mut reports = pool.imap_reports::<_, u32, _>("job", jobs, 1, false);
        let first = reports.next().unwrap();
        let second = reports.next().unwrap();
        let at = start.elapsed();
        let quick: HashSet<usize> = [first.index, second.index].into();
        assert_eq!(quick, [0, 1].into());
        assert!(at < Duration::from_millis(1500), "{at:?}");
        assert_eq!(reports.count(), 4);
        pool.join();
    });
}

/// A fresh pool given `[0, 0, 300 x 8]` ms spreads the slow tasks over its workers as
/// they come up (on the old scheduler all ten ran in one process).
#[test]
fn a_fresh_pool_spreads_work_over_its_workers() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let log = RunLog::new("spread");
        let ms = [0, 0, 300, 300, 300, 300, 300, 300, 300, 300];
        let handles: Vec<_> = ms
            .iter()
            .enumerate()
            .map(|(i, ms)| pool.submit(job, log.job(i as u64, *ms, Then::Return)))
            .collect();
        let pids: Vec<u32> = handles.iter().map(|h| h.wait().unwrap()).collect();
        let mut per_pid: BTreeMap<u32, usize> = BTreeMap::new();
        for pid in &pids[2..] {
            *per_pid.entry(*pid).or_default() += 1;
        }
        assert_eq!(per_pid.len(), 2, "slow tasks ran in {per_pid:?}");
        assert!(per_pid.values().all(|n| *n <= 5), "{per_pid:?}");
        pool.join();
    });
}
