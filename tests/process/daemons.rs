//! Daemons: they cannot start processes, die with a SIGKILLed parent, outlive the starting thread; dropped handles leave no zombie.

use super::*;

#[test]
fn a_daemon_cannot_start_processes() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(try_start_child, ())
            .daemon(true)
            .name("d1")
            .start_method(method)
            .start()
            .unwrap();
        assert!(p.is_daemon());
        assert_eq!(
            p.join().unwrap(),
            "daemon process `d1` may not start processes of its own"
        );
        // A non-daemon may.
        let mut p = Process::builder(try_start_child, ())
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), "started: Ok(9)");
    });
}

fn parent_of_two_scenario() {
    let method: StartMethod = std::env::var("METHOD").unwrap().parse().unwrap();
    let daemon = Process::builder(sleep_ms, 600_000)
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    let plain = Process::builder(sleep_ms, 600_000)
        .start_method(method)
        .start()
        .unwrap();
    println!("{} {}", daemon.pid(), plain.pid());
    loop {
        std::thread::park();
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static PARENT_OF_TWO: Scenario = Scenario {
    name: "parent_of_two",
    run: parent_of_two_scenario,
};

#[test]
fn sigkilled_parent_takes_its_daemon_child_but_not_the_other() {
    each_method(DEADLINE, |method| {
        let mut parent = scenario("parent_of_two")
            .env("METHOD", method.name())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(parent.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pids: Vec<i32> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (daemon, plain) = (pids[0], pids[1]);
        parent.kill().unwrap();
        parent.wait().unwrap();
        let t = Instant::now();
        assert!(
            wait_exit(daemon, Duration::from_secs(2)),
            "daemon child {daemon} outlived its parent"
        );
        eprintln!("daemon gone {:?} after its parent", t.elapsed());
        assert!(
            !common::has_exited(plain),
            "non-daemon child {plain} died with its parent"
        );
        // SAFETY: kill with plain integers; `plain` is an orphan we made.
        unsafe { libc::kill(plain, libc::SIGKILL) };
        assert!(wait_exit(plain, Duration::from_secs(5)));
    });
}

#[test]
fn a_thousand_handles_dropped_without_join_leave_no_zombie() {
    each_method(Duration::from_secs(180), |method| {
        for i in 0..1000 {
            drop(
                Process::builder(square, i)
                    .start_method(method)
                    .start()
                    .unwrap(),
            );
        }
        // `isolated` then waits for every child to be reaped and checks for zombies.
    });
}

#[test]
fn the_thread_that_started_a_daemon_can_exit_without_killing_it() {
    each_method(DEADLINE, |method| {
        let mut p = std::thread::spawn(move || {
            Process::builder(sleep_ms, 200)
                .daemon(true)
                .start_method(method)
                .start()
                .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(p.join().unwrap(), 200);
    });
}
