//! The `tracing` events a program sees once it installs a subscriber: worker start,
//! exit and restart, task start and end, a `Process`'s start and exit; captured from a
//! real pool.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::isolated;
use supervisor::{Pool, Process, StartMethod};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const DEADLINE: Duration = Duration::from_secs(90);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

fn abort(_: ()) {
    std::process::abort();
}
supervisor::task!(abort);

/// One event as the subscriber saw it.
#[derive(Debug, Clone)]
struct Seen {
    name: &'static str,
    target: String,
    level: tracing::Level,
    fields: BTreeMap<&'static str, String>,
}

impl Seen {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Captured {
    events: Mutex<Vec<Seen>>,
    changed: Condvar,
}

impl Captured {
    /// Waits (up to 30 s) until `found` accepts what was seen so far; its answer.
    fn wait_for<T>(&self, what: &str, found: impl Fn(&[Seen]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut events = self.events.lock().unwrap();
        loop {
            if let Some(t) = found(&events) {
                return t;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no {what} within 30 s; seen: {events:#?}"));
            events = self.changed.wait_timeout(events, left).unwrap().0;
        }
    }
}

struct Capture(Arc<Captured>);

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Fields(BTreeMap<&'static str, String>);
        impl Visit for Fields {
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0.insert(field.name(), value.to_string());
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name(), format!("{value:?}"));
            }
        }
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        let meta = event.metadata();
        self.0.events.lock().unwrap().push(Seen {
            name: meta.name(),
            target: meta.target().to_string(),
            level: *meta.level(),
            fields: fields.0,
        });
        self.0.changed.notify_all();
    }
}

/// The process-wide subscriber of this test binary (events come from the library's
/// own threads: starters, the reaper, readers).
fn captured() -> Arc<Captured> {
    static CAPTURED: OnceLock<Arc<Captured>> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Arc::new(Captured::default());
            let subscriber = tracing_subscriber::registry().with(Capture(captured.clone()));
            tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
            captured
        })
        .clone()
}

fn named<'a>(events: &'a [Seen], name: &str) -> impl Iterator<Item = &'a Seen> + 'a {
    let name = name.to_string();
    events.iter().filter(move |e| e.name == name)
}

#[test]
fn a_pool_reports_worker_start_exit_restart_and_each_task_to_a_subscriber() {
    let captured = captured();
    isolated(DEADLINE, move || {
        let pool = Pool::builder()
            .procs(1)
            .start_method(StartMethod::Spawn)
            .name("traced")
            .build()
            .unwrap();
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
        let first = captured.wait_for("worker.started", |events| {
            named(events, "worker.started")
                .find(|e| e.field("worker") == "traced-0")
                .cloned()
        });
        assert_eq!(first.target, "supervisor");
        assert_eq!(first.level, tracing::Level::INFO);
        assert_eq!(first.field("seat"), "0");
        assert_eq!(first.field("method"), "spawn");
        let pid = first.field("pid").to_string();
        let started = captured.wait_for("task.started", |events| {
            named(events, "task.started")
                .find(|e| e.field("pid") == pid && e.field("task") == "square")
                .cloned()
        });
        assert_eq!(started.level, tracing::Level::DEBUG);
        assert_eq!(started.field("calls"), "1");
        let finished = captured.wait_for("task.finished", |events| {
            named(events, "task.finished")
                .find(|e| e.field("id") == started.field("id"))
                .cloned()
        });
        assert_eq!(finished.field("outcome"), "ok");
        assert_eq!(finished.field("pid"), pid);
        assert_eq!(finished.field("attempts"), "1");

        // A crash: the task's end says how, the worker's exit is reported, and its
        // seat gets a new worker.
        let e = pool.apply(abort, ()).unwrap_err();
        let crashed = captured.wait_for("the crashed task's end", |events| {
            named(events, "task.finished")
                .find(|e| e.field("task") == "abort")
                .cloned()
        });
        assert_eq!(crashed.field("outcome"), e.to_string());
        assert!(crashed.field("outcome").contains("SIGABRT"), "{crashed:?}");
        let exited = captured.wait_for("worker.exited", |events| {
            named(events, "worker.exited")
                .find(|e| e.field("pid") == pid)
                .cloned()
        });
        assert!(exited.field("status").starts_with("SIGABRT"), "{exited:?}");
        assert_eq!(pool.apply(square, 8).unwrap(), 64);
        let restarted = captured.wait_for("worker.restarted", |events| {
            named(events, "worker.restarted").next().cloned()
        });
        assert_eq!(restarted.field("seat"), "0");
        assert_eq!(restarted.field("restarts"), "1");
        let second = restarted.field("pid").to_string();
        assert_ne!(second, pid);

        // A map's chunks: every input's end is reported once.
        let squares = pool.map(square, 0..100u64);
        assert_eq!(squares.len(), 100);
        let ended = captured.wait_for("the map's ends", |events| {
            let calls: usize = named(events, "tasks.finished")
                .chain(named(events, "task.finished"))
                .filter(|e| e.field("task") == "square" && e.field("pid") == second)
                .map(|e| e.field("calls").parse().unwrap_or(1))
                .sum();
            (calls >= 101).then_some(calls)
        });
        assert_eq!(ended, 101, "the map's 100 and the square(8) before it");

        pool.join();
        let last = captured.wait_for("the second worker's exit", |events| {
            named(events, "worker.exited")
                .find(|e| e.field("pid") == second)
                .cloned()
        });
        assert_eq!(last.field("status"), "exit code 0");

        // A Process: its start and its exit.
        let mut p = Process::builder(square, 3).name("one-off").start().unwrap();
        let pid = p.pid().to_string();
        assert_eq!(p.join().unwrap(), 9);
        let events = captured.events.lock().unwrap().clone();
        let started = named(&events, "process.started")
            .find(|e| e.field("pid") == pid)
            .unwrap_or_else(|| panic!("no process.started: {events:#?}"));
        assert_eq!(started.field("process"), "one-off");
        assert_eq!(started.field("task"), "square");
        let exited = named(&events, "process.exited")
            .find(|e| e.field("pid") == pid)
            .unwrap_or_else(|| panic!("no process.exited: {events:#?}"));
        assert_eq!(exited.field("status"), "exit code 0");
    });
}
