//! A map under a killer that SIGKILLs a random busy worker every 100 ms: every task is
//! accounted for exactly once.

use super::*;

/// Runs `n` spin tasks through a pool of 4 while a killer SIGKILLs a random busy worker
/// every 100 ms; returns the results and the number of kills.
fn chaos(
    method: StartMethod,
    n: u64,
    micros: u64,
    retries: u32,
) -> (Vec<Result<u64, Error>>, usize) {
    let pool = Arc::new(
        Pool::builder()
            .procs(4)
            .start_method(method)
            .retries(retries)
            .build()
            .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (pool, done) = (pool.clone(), done.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                // Any live worker, busy or idle: idle deaths must not add up to a storm
                // while tasks keep finishing.
                let busy: Vec<u32> = pool
                    .stats()
                    .workers
                    .iter()
                    .filter(|w| {
                        matches!(
                            w.state,
                            WorkerState::Busy { .. } | WorkerState::Idle | WorkerState::Retiring
                        )
                    })
                    .map(|w| w.pid)
                    .collect();
                if busy.is_empty() {
                    continue;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let victim = busy[(seed % busy.len() as u64) as usize];
                // SAFETY: kill with plain integers; a worker of this pool.
                unsafe { libc::kill(victim as i32, libc::SIGKILL) };
                kills += 1;
            }
            kills
        })
    };
    let results = pool.map_chunked(spin, (0..n).map(|x| (x, micros)), 16);
    done.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    pool.join();
    (results, kills)
}

fn check_chaos(method: StartMethod, n: u64, micros: u64) {
    let (with_retries, kills) = chaos(method, n, micros, 5);
    assert!(
        kills >= 3,
        "only {kills} kills: the run was too short to prove anything"
    );
    assert_eq!(with_retries.len() as u64, n);
    for (x, r) in with_retries.iter().enumerate() {
        assert_eq!(
            r.as_ref().ok(),
            Some(&(x as u64 + 1)),
            "input {x} with retries=5"
        );
    }
    eprintln!("{method}: {n} tasks, {kills} workers killed, every result arrived once");
    let (without, kills) = chaos(method, n, micros, 0);
    assert_eq!(without.len() as u64, n, "every task is accounted for");
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for (x, r) in without.iter().enumerate() {
        match r.as_ref().map_err(Error::kind) {
            Ok(v) => {
                assert_eq!(*v, x as u64 + 1);
                *kinds.entry("ok").or_default() += 1;
            }
            Err(ErrorKind::Crashed { signal, .. }) => {
                assert_eq!(signal.to_string(), "SIGKILL");
                *kinds.entry("crashed").or_default() += 1;
            }
            Err(e) => panic!("input {x}: {e}"),
        }
    }
    assert!(
        kills >= 3,
        "only {kills} kills: the run was too short to prove anything"
    );
    assert!(
        kinds.get("crashed").copied().unwrap_or(0) <= kills,
        "{kinds:?} after {kills} kills"
    );
    eprintln!("{method}: retries=0: {kinds:?} after {kills} kills");
}

#[test]
fn chaos_every_task_is_accounted_for_exactly_once() {
    // 20,000 tasks, about 1 s of work per run on 2 cores, with the default restart
    // policy; the long run is 100,000 tasks.
    let (n, micros) = if std::env::var_os("SUPERVISOR_LONG_CHAOS").is_some() {
        (100_000, 100)
    } else {
        (20_000, 100)
    };
    for method in StartMethod::ALL {
        isolated(Duration::from_secs(600), move || {
            check_chaos(method, n, micros)
        });
    }
}
