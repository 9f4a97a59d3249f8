//! The scenarios these tests run in processes of their own (under tight resource
//! limits, or as a parent to be SIGKILLed), and the limit helpers they share.

use super::*;

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64) {
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer, then the same struct back in.
    unsafe {
        libc::getrlimit(resource, &mut lim);
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(resource, &lim), 0);
    }
}

/// Starts daemon processes under a tight limit until they fail; reports what happened.
fn exhaust_scenario() {
    let which = std::env::var("LIMIT").unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    match which.as_str() {
        "nofile" => set_limit(libc::RLIMIT_NOFILE, open + 16),
        // RLIMIT_NPROC counts every process and thread of the user: 12 is "few".
        _ => set_limit(libc::RLIMIT_NPROC, 12),
    }
    let (mut started, mut errors, mut first_error) = (Vec::new(), 0, String::new());
    let mut first_limit = None;
    for method in StartMethod::ALL {
        for _ in 0..20 {
            match Process::builder(sleep_ms, 60_000)
                .daemon(true)
                .start_method(method)
                .start()
            {
                Ok(p) => started.push(p),
                Err(e) => {
                    errors += 1;
                    if first_error.is_empty() {
                        first_error = e.to_string();
                        first_limit = supervisor::ResourceLimit::of(&e);
                    }
                }
            }
        }
    }
    println!(
        "started {} errors {errors} first: {first_error} limit: {first_limit:?}",
        started.len()
    );
    // A pool under the same limit: an error or a working pool, never a panic or a hang.
    match Pool::builder().procs(2).build() {
        Ok(pool) => println!(
            "pool: {:?}",
            pool.apply(sleep_ms, 1).map_err(|e| e.to_string())
        ),
        Err(e) => println!("pool: cannot build: {e}"),
    }
    for p in &started {
        p.kill().unwrap();
    }
    for mut p in started {
        let _ = p.join();
        assert!(!p.is_alive());
    }
    println!("all reaped");
}
#[linkme::distributed_slice(common::SCENARIOS)]
static EXHAUST: common::Scenario = common::Scenario {
    name: "exhaust",
    run: exhaust_scenario,
};

/// The first spawn start of a program that can have no thread (its soft process limit
/// is below what it runs, from its start): the error names the limit; then, the limit
/// raised to the hard one, a start works. Before, the reaper thread's failure was kept in words for the program's life:
/// the error named no limit, and every later start failed the same way.
fn reaper_retry_scenario() {
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) };
    let hard = lim.rlim_max;
    set_limit(libc::RLIMIT_NPROC, 1);
    match Process::builder(sleep_ms, 1).start() {
        Ok(mut p) => println!("first: started {:?}", p.join()),
        Err(e) => println!(
            "first: {} limit: {:?}",
            supervisor_worker::error_chain(&e),
            supervisor::ResourceLimit::of(&e)
        ),
    }
    set_limit(libc::RLIMIT_NPROC, hard);
    match Process::builder(sleep_ms, 1).start() {
        Ok(mut p) => println!("then: {:?}", p.join().map_err(|e| e.to_string())),
        Err(e) => println!("then: cannot start: {e}"),
    }
}
#[linkme::distributed_slice(common::SCENARIOS)]
static REAPER_RETRY: common::Scenario = common::Scenario {
    name: "reaper_retry",
    run: reaper_retry_scenario,
};

/// Sets `RLIMIT_NOFILE` 8 above the descriptors open, fills every free number below
/// it, then gives back `spare` of them: the copies still held, for the caller to close.
fn leave_spare_descriptors(spare: usize) -> Vec<i32> {
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_limit(libc::RLIMIT_NOFILE, open + 8);
    let mut fillers = Vec::new();
    loop {
        // SAFETY: dup of stdin; the copies are closed by the caller.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 {
            break;
        }
        fillers.push(fd);
    }
    for fd in fillers.drain(fillers.len().saturating_sub(spare)..) {
        // SAFETY: one of our own copies, closed once.
        unsafe { libc::close(fd) };
    }
    fillers
}

/// With `spare` descriptors left below the limit (`RLIMIT_NOFILE` at the open count,
/// then `spare` closed again), starts spawned processes: an error or a process, and
/// nothing left in the temp directory either way (the leak check of the caller).
fn few_descriptors_scenario() {
    let spare: usize = std::env::var("SPARE").unwrap().parse().unwrap();
    // The forkserver and the reaper first, so only the start itself is short of them.
    supervisor::ensure_forkserver().unwrap();
    drop(Process::builder(sleep_ms, 0).start().unwrap().join());
    let fillers = leave_spare_descriptors(spare);
    let outcome = Process::builder(sleep_ms, 0).start();
    for fd in fillers {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
    match outcome {
        Ok(mut p) => println!("started: {:?}", p.join().map_err(|e| e.to_string())),
        Err(e) => println!("error: {e}"),
    }
}
#[linkme::distributed_slice(common::SCENARIOS)]
static FEW_DESCRIPTORS: common::Scenario = common::Scenario {
    name: "few_descriptors",
    run: few_descriptors_scenario,
};

/// The program's first start (`METHOD`), with `SPARE` descriptors left below the
/// limit: an error or a process; then, with the descriptors back, a second start that
/// works. Before, ipc-channel measured its send buffer on the first send, with a socket
/// pair it `expect`s: short of descriptors there it panicked in the caller (exit 101)
/// and every later start panicked too (a poisoned `LazyLock`).
fn first_start_short_of_descriptors_scenario() {
    let method: StartMethod = std::env::var("METHOD").unwrap().parse().unwrap();
    let spare: usize = std::env::var("SPARE").unwrap().parse().unwrap();
    let fillers = leave_spare_descriptors(spare);
    let first = Process::builder(sleep_ms, 0).start_method(method).start();
    for fd in fillers {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
    match first {
        Ok(mut p) => println!("first started: {:?}", p.join().map_err(|e| e.to_string())),
        Err(e) => println!("first: error: {e}"),
    }
    set_limit(libc::RLIMIT_NOFILE, 1024);
    let second = Process::builder(sleep_ms, 0).start_method(method).start();
    println!(
        "second: {:?}",
        second
            .map(|mut p| p.join().map_err(|e| e.to_string()))
            .map_err(|e| e.to_string())
    );
}
#[linkme::distributed_slice(common::SCENARIOS)]
static FIRST_START_SHORT: common::Scenario = common::Scenario {
    name: "first_start_short_of_descriptors",
    run: first_start_short_of_descriptors_scenario,
};

/// A pool of 2 built with `SPARE` descriptors left below the limit, mapping 100
/// inputs: a result or an error for each, and nothing printed about a panic.
fn pool_short_of_descriptors_scenario() {
    let spare: u64 = std::env::var("SPARE").unwrap().parse().unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_limit(libc::RLIMIT_NOFILE, open + spare);
    match Pool::builder().procs(2).build() {
        Ok(pool) => {
            let ok = pool
                .map(sleep_ms, vec![0; 100])
                .iter()
                .filter(|r| r.is_ok())
                .count();
            println!("map: {ok} ok");
            pool.terminate();
        }
        Err(e) => println!("build: {e}"),
    }
}
#[linkme::distributed_slice(common::SCENARIOS)]
static POOL_SHORT: common::Scenario = common::Scenario {
    name: "pool_short_of_descriptors",
    run: pool_short_of_descriptors_scenario,
};

/// Builds a pool of 3, prints the pids of its workers (or of its children still in
/// bootstrap), then waits to be killed.
fn pool_parent_scenario() {
    let method: StartMethod = std::env::var("METHOD").unwrap().parse().unwrap();
    let pool = Pool::builder()
        .procs(3)
        .start_method(method)
        .build()
        .unwrap();
    let pids: Vec<i32> = if std::env::var_os("SUPERVISOR_FAULT").is_some() {
        // Workers hang before connecting: they are our children, minus the helpers.
        let helpers: Vec<i32> = supervisor::helper_pids()
            .iter()
            .map(|p| *p as i32)
            .collect();
        loop {
            let kids: Vec<i32> = common::children_of(std::process::id() as i32)
                .into_iter()
                .filter(|p| !helpers.contains(p))
                .collect();
            if kids.len() >= 3 {
                break kids;
            }
            std::thread::yield_now();
        }
    } else {
        // Idle workers: one task each round trip proves they are up.
        assert_eq!(pool.map(sleep_ms, vec![1; 6]).len(), 6);
        pool.stats().workers.iter().map(|w| w.pid as i32).collect()
    };
    println!(
        "{}",
        pids.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    loop {
        std::thread::park();
    }
}
#[linkme::distributed_slice(common::SCENARIOS)]
static POOL_PARENT: common::Scenario = common::Scenario {
    name: "pool_parent",
    run: pool_parent_scenario,
};

/// A pool whose one task leaves a chain and runs on; SIGKILLed by the test.
fn chain_parent_scenario() {
    let method: StartMethod = std::env::var("METHOD").unwrap().parse().unwrap();
    let pool = Pool::builder()
        .procs(1)
        .start_method(method)
        .build()
        .unwrap();
    let _running = pool.submit(chain_and_run_on, 2);
    loop {
        std::thread::park();
    }
}
#[linkme::distributed_slice(common::SCENARIOS)]
static CHAIN_PARENT: common::Scenario = common::Scenario {
    name: "chain_parent",
    run: chain_parent_scenario,
};

/// With every descriptor in use, tries three spawn starts (each must fail), frees the
/// descriptors and prints the first error.
fn no_descriptor_left_scenario() {
    let mut spare = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        spare.push(f);
    }
    let errors: Vec<String> = (0..3)
        .map(|_| match Process::builder(sleep_ms, 1).start() {
            Ok(mut p) => format!("started: {:?}", p.join()),
            Err(e) => format!("{e}: {:?}", std::error::Error::source(&e)),
        })
        .collect();
    drop(spare);
    println!("{}", errors[0]);
}
#[linkme::distributed_slice(common::SCENARIOS)]
static NO_DESCRIPTOR_LEFT: common::Scenario = common::Scenario {
    name: "no-descriptor-left",
    run: no_descriptor_left_scenario,
};
