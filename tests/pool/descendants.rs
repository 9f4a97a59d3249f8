//! What a task leaves behind (grandchildren ignoring SIGTERM, chains of sessions, bare
//! forked children) ends with the task or the pool.

use super::*;

/// Waits up to 5 s for `pid` to end; SIGKILLs it if it did not, so that a failing test
/// leaves nothing behind. Whether it ended by itself.
fn ended_or_killed(pid: i32) -> bool {
    if wait_exit(pid, Duration::from_secs(5)) {
        return true;
    }
    // SAFETY: kill with plain integers; `pid` is still running, so not reused.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    false
}

/// A chain of SIGTERM-ignoring processes, each in a session of its own, is gone when
/// the task's result comes: the worker scans again after each kill, as each level
/// becomes its child (before: it listed the processes once, SIGKILLed the first level,
/// and the rest ran on until the pool ended, or for good when the parent was killed).
#[test]
fn a_chain_of_sessions_ignoring_sigterm_ends_with_its_task() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1)
            .grace(Duration::from_millis(300))
            .build()
            .unwrap();
        let t = Instant::now();
        let last = pool.apply(leave_a_chain_out_of_the_group, 3).unwrap();
        let took = t.elapsed();
        assert!(ended_or_killed(last), "{method}: {last} outlived its task");
        // The grace once, not once per level (with room for a loaded machine).
        assert!(took < Duration::from_secs(4), "{method}: {took:?}");
        pool.join();
        let mut process = supervisor::Process::builder(leave_a_chain_out_of_the_group, 2)
            .start_method(method)
            .start()
            .unwrap();
        let t = Instant::now();
        let last = process.join().unwrap();
        let took = t.elapsed();
        assert!(
            ended_or_killed(last),
            "{method}: {last} outlived its process"
        );
        // The 5 s grace of a `Process` once (it took 11.3 s: the grace, then the
        // parent's own SIGTERM and another grace), with room for a loaded machine.
        assert!(
            took < Duration::from_secs(9),
            "{method}: join took {took:?}"
        );
    });
}

/// By default the same grandchildren end with their task: the apply itself takes the
/// grace (SIGTERM ignored, then SIGKILL), and nothing is left for drop.
#[test]
fn a_stubborn_grandchild_is_killed_when_its_task_returns() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1).build().unwrap();
        let t = Instant::now();
        let stubborn = pool.apply(leave_a_stubborn_grandchild, ()).unwrap() as i32;
        let took = t.elapsed();
        let ended = ended_or_killed(stubborn);
        assert!(ended, "{stubborn} outlived its task");
        assert!(
            took >= Duration::from_millis(450),
            "{took:?}: no grace for SIGTERM"
        );
        let t = Instant::now();
        drop(pool);
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn dropping_a_pool_waits_out_the_grace_only_for_what_ignores_sigterm() {
    each_method(DEADLINE, |method| {
        // Workers that end on SIGTERM: drop does not sit out the (default, 5 s) grace.
        let quick = Pool::builder()
            .procs(2)
            .start_method(method)
            .build()
            .unwrap();
        assert_eq!(quick.apply(square, 3).unwrap(), 9);
        assert_eq!(quick.map(square, 0..100u64).len(), 100);
        let t = Instant::now();
        drop(quick);
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "drop took {:?}",
            t.elapsed()
        );
        // A grandchild ignoring SIGTERM that a task was allowed to leave behind keeps
        // its group alive: it gets SIGKILL when the grace ends, before drop returns.
        // So does one whose main thread has exited (/proc shows it as a zombie).
        for task in ["leave_a_stubborn_grandchild", "leave_a_headless_grandchild"] {
            let pool = pool(method, 1).keep_task_children(true).build().unwrap();
            let stubborn = match task {
                "leave_a_stubborn_grandchild" => {
                    pool.apply(leave_a_stubborn_grandchild, ()).unwrap() as i32
                }
                _ => pool.apply(leave_a_headless_grandchild, ()).unwrap(),
            };
            let t = Instant::now();
            drop(pool);
            let took = t.elapsed();
            // Checked first: a survivor is killed before any assert can fail.
            let ended = ended_or_killed(stubborn);
            assert!(
                took >= Duration::from_millis(400),
                "{task}: drop took {took:?}: it did not wait for the grace"
            );
            assert!(ended, "{task}: {stubborn} survived the pool");
        }
    });
}

/// A child forked without exec dies of the SIGTERM that ends a task's children, at
/// once, not at the SIGKILL after the grace (before: it inherited the worker's SIGTERM
/// handler, which did nothing in it, and every such result waited the whole grace;
/// found by the second adversarial pass).
#[test]
fn a_forked_child_of_a_task_ends_at_once_when_the_task_returns() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1)
            .grace(Duration::from_secs(3))
            .build()
            .unwrap();
        let t = Instant::now();
        let child = pool.apply(fork_a_sleeper, ()).unwrap();
        // Well under the 3 s grace it used to wait, with room for a loaded machine.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(ended_or_killed(child), "the forked child lived on");
        pool.join();
    });
}

/// A SIGTERM that reaches a bare-forked child before the child has run at all still
/// kills it (before: it went to the worker's inherited handler, which did nothing in
/// the child, and the child lived until the SIGKILL after the grace; seen as a 3 s
/// apply in CI).
#[test]
fn a_forked_child_terminated_before_it_ran_dies_of_the_sigterm() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1).build().unwrap();
        assert_eq!(pool.apply(fork_and_terminate_at_once, 40).unwrap(), 0);
        pool.join();
    });
}
