//! `supervisor run --nats` end to end: a nats-server with JetStream on loopback (file
//! storage in a temporary directory), `supervisor worker` agents, the submitter; against
//! the same run on the local pool, and two agents against one.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::measure::medians;
use super::peers::installed;
use super::run::Ctx;
use super::table::{Peer, Row, Target, Unit};

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");

struct Server {
    child: Child,
    dir: PathBuf,
    url: String,
    agents: Vec<Child>,
}

impl Server {
    fn start(name: &str) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!(
            "supervisor-bench-nats-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let log = dir.join("server.log");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let until = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Server is ready")
        {
            assert!(Instant::now() < until, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            dir,
            url: format!("nats://127.0.0.1:{port}"),
            agents: Vec::new(),
        }
    }

    fn agent(&mut self, procs: usize) {
        let child = Command::new(BIN)
            .args(["worker", "--nats", &self.url, "-j", &procs.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the agent starts");
        self.agents.push(child);
    }

    /// `supervisor run --nats URL ARGS --input FILE`, its time.
    fn run(&self, args: &[&str], input: &str) -> Duration {
        time(&[&["run", "--nats", &self.url], args, &["--input", input]].concat())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn time(args: &[&str]) -> Duration {
    let t = Instant::now();
    let status = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("supervisor runs");
    assert!(status.success(), "{args:?} failed: {status}");
    t.elapsed()
}

fn input(name: &str, lines: impl Iterator<Item = String>) -> String {
    let path = std::env::temp_dir().join(format!(
        "supervisor-bench-cluster-{name}-{}",
        std::process::id()
    ));
    let text: String = lines.map(|l| l + "\n").collect();
    std::fs::write(&path, text).expect("writing the input failed");
    path.display().to_string()
}

pub fn rows(ctx: &Ctx) -> Vec<Row> {
    if !installed("nats-server") {
        return vec![Row {
            workload: "cluster: nats-server not installed (.ci/setup installs it)".into(),
            unit: Unit::Total,
            ours: Duration::ZERO,
            peer: Peer::None,
            floor: None,
            targets: vec![],
        }];
    }
    let n = ctx.settings.size(20_000, 100);
    let tiny = input("tiny", (1..=n).map(|i| i.to_string()));
    let mut one = Server::start("one");
    one.agent(2);
    // Warm up: the streams, the agent's workers.
    one.run(&["--task", "prime-factors"], &tiny);
    let [Some(remote), Some(local)] = medians(
        ctx.settings.runs,
        [
            &mut || Some(one.run(&["--task", "prime-factors"], &tiny)),
            &mut || {
                Some(time(&[
                    "run",
                    "-j",
                    "2",
                    "--task",
                    "prime-factors",
                    "--input",
                    &tiny,
                ]))
            },
        ],
    ) else {
        unreachable!("both always run")
    };
    drop(one);

    let m = ctx.settings.size(16, 4);
    let cpu = input("cpu", (1..=m).map(|i| format!("w{i}")));
    let chain = ["--task", "sha512-chain", "--arg", "iterations=300000"];
    let mut single = Server::start("single");
    single.agent(1);
    let mut pair = Server::start("pair");
    pair.agent(1);
    pair.agent(1);
    let [Some(two), Some(alone)] = medians(
        ctx.settings.runs,
        [&mut || Some(pair.run(&chain, &cpu)), &mut || {
            Some(single.run(&chain, &cpu))
        }],
    ) else {
        unreachable!("both always run")
    };
    drop((single, pair));
    let _ = std::fs::remove_file(&tiny);
    let _ = std::fs::remove_file(&cpu);
    vec![
        Row {
            workload: format!("cluster: prime-factors x{n}, 1 agent -j 2, end to end"),
            unit: Unit::Items(n),
            ours: remote,
            peer: Peer::new("local run -j 2", Some(local)),
            floor: None,
            targets: vec![Target::PerSec(20_000.0)],
        },
        Row {
            workload: format!("cluster: per-task time, prime-factors x{n}"),
            unit: Unit::PerCall(n),
            ours: remote,
            peer: Peer::new("local pool -j 2", Some(local)),
            floor: None,
            targets: vec![],
        },
        Row {
            workload: format!("cluster: sha512-chain 300k x{m}, 2 agents -j 1"),
            unit: Unit::Total,
            ours: two,
            peer: Peer::new("1 agent -j 1", Some(alone)),
            floor: None,
            targets: vec![Target::Faster(1.8)],
        },
    ]
}
