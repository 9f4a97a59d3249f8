//! Every Rust block of README.md, compiled and run here, and a check that the README
//! still shows exactly what is compiled (each block must appear in this file, line for
//! line, white space and blank lines aside).

mod common;

use std::time::Duration;

use common::isolated;

/// "The library in five minutes" and "Pools": one program.
mod guide {
    // README: the library in five minutes.
    use supervisor::{Error, ErrorKind, Process};

    fn square(x: u64) -> u64 {
        x * x
    }
    supervisor::task!(square); // one line: `square` can now run in a worker

    fn crash(_: ()) -> u64 {
        std::process::abort()
    }
    supervisor::task!(crash);

    fn main() -> Result<(), Error> {
        supervisor::init(); // first in main: a re-executed worker never returns from it

        let mut p = Process::builder(square, 12)
            .name("squarer")
            .nice(10) // lower priority for the child (every thread of it)
            .daemon(true) // dies with its parent, may not start processes itself
            .start()?;
        assert_eq!(p.join()?, 144);
        assert_eq!(p.exitcode(), Some(0));

        // A failure is a value: this child aborts, the parent carries on.
        let mut p = Process::builder(crash, ()).start()?;
        let e = p.join().unwrap_err();
        match e.kind() {
            ErrorKind::Crashed { signal, pid, .. } => println!("{pid} died of {signal}"),
            _ => panic!("expected a crash, got {e:?}"),
        }
        assert_eq!(p.exitcode(), Some(-6)); // -SIGABRT, as in Python
        Ok(())
    }

    // README: pools.
    fn add(a: u64, b: u64) -> u64 {
        a + b
    }
    supervisor::task!(add);

    fn pools() -> Result<(), supervisor::Error> {
        use std::time::Duration;
        use supervisor::{as_completed, Pool};

        let pool = Pool::builder()
            .procs(4) // default: CPUs available (cgroup aware)
            .task_timeout(Duration::from_secs(60))
            .retries(2) // re-run a task whose worker died or timed out
            .max_tasks_per_child(1000) // recycle workers, losing nothing
            .memory_limit(2 << 30) // a task whose worker tree passes 2 GiB RSS: MemoryExceeded
            .max_memory_per_child(512 << 20) // recycle a worker a task left above 512 MiB
            .build()?;
        let squares = pool.map(square, 0..1000); // Vec<Result<u64, Error>>, input order
        assert_eq!(*squares[7].as_ref().unwrap(), 49);
        let sums = pool.starmap(add, vec![(1, 2), (3, 4)]);
        assert_eq!(sums.into_iter().collect::<Result<Vec<_>, _>>()?, [3, 7]);
        // An endless input: imap reads only a bounded amount ahead.
        let first: Vec<u64> = pool.imap(square, 0..).take(3).collect::<Result<_, _>>()?;
        assert_eq!(first, [0, 1, 4]);
        let h = pool.submit(square, 7); // apply_async: wait, wait_timeout, cancel
        assert_eq!(h.wait()?, 49);
        for h in as_completed(vec![pool.submit(square, 1), pool.submit(square, 2)]) {
            h.wait()?; // in the order they finish
        }
        println!("{:?}", pool.stats()); // per worker: pid, state, tasks, CPU, RSS
        pool.join(); // close + wait; dropping terminates instead
        Ok(())
    }

    #[test]
    fn the_readme_program_runs_and_its_pool_walk_through_too() {
        super::isolated(super::Duration::from_secs(90), || {
            main().unwrap();
            pools().unwrap();
        });
    }
}

/// "Queues, pipes, shared memory and locks".
mod queues {
    use supervisor::{Error, ErrorKind, Process, Queue};

    fn worker((input, results): (Queue<String>, Queue<(String, usize)>)) -> u64 {
        let mut n = 0;
        loop {
            match input.get() {
                Ok(s) => {
                    results.put(&(s.clone(), s.len())).unwrap();
                    n += 1;
                }
                // The input was closed and is drained.
                Err(e) if matches!(e.kind(), ErrorKind::Closed { .. }) => return n,
                Err(e) => panic!("{e}"), // e.g. PeerDied: the parent is gone
            }
        }
    }
    supervisor::task!(worker);

    fn queues() -> Result<(), Error> {
        let input: Queue<String> = Queue::new()?; // or Queue::bounded(100)
        let results = Queue::new()?;
        let workers: Vec<_> = (0..4)
            .map(|_| Process::builder(worker, (input.clone(), results.clone())).start())
            .collect::<Result<_, _>>()?;
        for s in ["a", "bb", "ccc"] {
            input.put(&s.to_string())?;
        }
        input.close()?; // workers end once it is empty
        let (s, len) = results.get()?; // get_timeout(d) -> Option, try_get
        assert_eq!(s.len(), len);
        let mut done = 0;
        for mut w in workers {
            done += w.join()?;
        }
        assert_eq!(done, 3);
        Ok(())
    }

    #[test]
    fn the_readme_queue_walk_through_runs() {
        super::isolated(super::Duration::from_secs(90), || queues().unwrap());
    }
}

/// "From async code".
mod from_async {
    use futures_util::StreamExt; // or tokio_stream::StreamExt: any Stream combinators
    use supervisor::{as_completed, Pool};

    fn cube(x: u64) -> u64 {
        x * x * x
    }
    supervisor::task!(cube);

    fn main() -> Result<(), Box<dyn std::error::Error>> {
        supervisor::init(); // before the runtime: not #[tokio::main]
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let pool = Pool::new(4)?;
            assert_eq!(pool.submit(cube, 7).await?, 343); // a TaskHandle is a Future
            let mut h = pool.submit(cube, 8);
            let limit = std::time::Duration::from_secs(1);
            if tokio::time::timeout(limit, &mut h).await.is_err() {
                h.cancel(); // &mut: the handle is still there after a timeout
            }
            let all = pool.map_async(cube, 0..100).await; // MapHandle is a Future too
            let ordered: Vec<_> = pool.imap(cube, 0..10).into_stream().collect().await;
            let mut done = as_completed((0..4).map(|i| pool.submit(cube, i))).into_stream();
            while let Some(h) = done.next().await {
                h.await?; // yielded once finished: ready at once
            }
            pool.join_async().await; // close + every worker gone; drop is then free
            Ok::<_, supervisor::Error>((all, ordered))
        })?;
        Ok(())
    }

    #[test]
    fn the_readme_async_program_runs() {
        super::isolated(super::Duration::from_secs(90), || main().unwrap());
    }
}

/// "Commands".
mod commands {
    use supervisor::{Command, Pool};

    fn commands() -> Result<(), Box<dyn std::error::Error>> {
        let pool = Pool::builder()
            .procs(2)
            .nice(10) // the commands run at nice 10
            .task_timeout(std::time::Duration::from_secs(30)) // then the worker's group is killed
            .retries(1) // re-run one whose worker died or timed out
            .build()?;
        let gz = pool
            .submit_command(Command::shell("printf hello | gzip -c"))
            .wait()??;
        assert!(gz.status.success()); // supervisor::ExitStatus: Code(n) or Signal{..}
        let back = Command::new("gzip")
            .arg("-dc")
            .stdin(gz.stdout.to_vec()?)
            .output()?;
        assert_eq!(back.stdout.to_vec()?, b"hello");
        // Data into a script as positional parameters ($1...), never pasted into it.
        let cmds = ["a; echo INJECTED", "b"].map(|s| Command::shell("printf %s \"$1\"").arg(s));
        for out in pool.map_commands(cmds) {
            let out = out??; // pool error (timeout...), then CommandError (cannot start)
            println!("{} {:?} pid {}", out.status, out.stdout.to_vec()?, out.pid);
        }
        let e = pool
            .submit_command(Command::new("/no/such/program"))
            .wait()?
            .unwrap_err();
        println!("{e}"); // cannot start `/no/such/program` (source(): No such file or directory)
        pool.join();
        Ok(())
    }

    #[test]
    fn the_readme_commands_walk_through_runs() {
        super::isolated(super::Duration::from_secs(90), || commands().unwrap());
    }
}

/// The fenced blocks of `markdown` whose info string is `rust`.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The non-blank lines, white space folded (rustfmt aligns trailing comments).
fn significant(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_rust_block_of_the_readme_is_compiled_here() {
    let here = significant(include_str!("readme.rs"));
    let blocks = rust_blocks(include_str!("../README.md"));
    assert!(blocks.len() >= 3, "the README lost its Rust blocks");
    for block in &blocks {
        let lines = significant(block);
        assert!(
            here.windows(lines.len()).any(|w| w == lines),
            "this README block is not in tests/readme.rs, line for line:\n{block}"
        );
    }
}

#[test]
fn the_block_finder_finds_only_rust_blocks() {
    let md = "a\n```rust\nfn f() {}\n```\n```sh\nls\n```\n```rust\nlet x = 1;\n```\n";
    assert_eq!(rust_blocks(md), ["fn f() {}\n", "let x = 1;\n"]);
}
