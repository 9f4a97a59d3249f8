//! Random relabellings of handles, decoded in their own process or another, are refused or work; refusals and size limits in words.

use super::handles::{refusal, relabel, wire};
use super::*;

/// Handle types a wire is decoded as in the property tests.
const TARGETS: u8 = 9;

/// Decodes `wire` as target type `target`; if accepted, uses the handle over the
/// whole of what it says it is (every call must stay inside its mapping and return,
/// an error at most). Whether it was accepted.
fn decode_and_use(target: u8, wire: serde_json::Value) -> bool {
    fn decoded<T: serde::de::DeserializeOwned>(wire: serde_json::Value) -> Option<T> {
        serde_json::from_value(wire).ok()
    }
    let short = Duration::from_millis(1);
    match target {
        0 => decoded::<SharedMemory>(wire).map(|m| {
            let mut buf = vec![0u8; m.len()];
            m.read(0, &mut buf);
            m.write(0, &buf);
        }),
        1 => decoded::<SharedSlice<u8>>(wire).map(|s| {
            if let Some(last) = s.len().checked_sub(1) {
                s.set(last, s.get(last));
            }
        }),
        2 => decoded::<SharedSlice<u64>>(wire).map(|s| {
            if let Some(last) = s.len().checked_sub(1) {
                s.set(last, s.get(last));
            }
        }),
        3 => decoded::<Queue<u64>>(wire).map(|q| {
            let _ = q.try_put(&1);
            let _ = q.try_get();
            let _ = q.get_timeout(short);
        }),
        4 => decoded::<Queue<String>>(wire).map(|q| {
            let _ = q.try_put(&"x".repeat(3000));
            let _ = q.try_get();
        }),
        5 => decoded::<Pipe<Vec<u8>, Vec<u8>>>(wire).map(|p| {
            let _ = p.send(&vec![7u8; 2000]);
            let _ = p.try_recv();
            let _ = p.recv_timeout(short);
        }),
        6 => decoded::<Lock>(wire).map(|l| {
            let _ = l.try_lock().map(|g| g.map(|g| g.acquired()));
        }),
        7 => decoded::<Event>(wire).map(|e| {
            let _ = e.is_set();
            let _ = e.wait_timeout(short);
        }),
        _ => decoded::<Semaphore>(wire).map(|s| {
            let _ = s.try_acquire();
        }),
    }
    .is_some()
}

/// One handle of each type, `size` choosing the length of the shared memory ones, and
/// its wire form (decoded once to count it as arrived, see [`wire`]).
type Made = (Box<dyn std::any::Any>, serde_json::Value);

fn make(source: u8, size: usize) -> Made {
    fn boxed<T: serde::Serialize + serde::de::DeserializeOwned + 'static>(h: T) -> Made {
        let w = wire(&h);
        (Box::new(h), w)
    }
    match source {
        0 => boxed(SharedMemory::new(size).unwrap()),
        1 => boxed(SharedSlice::<u8>::new(size).unwrap()),
        2 => boxed(SharedSlice::<u64>::new(size).unwrap()),
        3 => boxed(Queue::<u64>::new().unwrap()),
        4 => boxed(Queue::<String>::new().unwrap()),
        5 => {
            let (a, b) = Pipe::<Vec<u8>, Vec<u8>>::new().unwrap();
            let w = wire(&a);
            (Box::new((a, b)), w)
        }
        6 => boxed(Lock::new().unwrap()),
        7 => boxed(Event::new().unwrap()),
        _ => boxed(Semaphore::new(1).unwrap()),
    }
}

/// A relabelling of a wire: its kind, its role, and optionally a source's descriptor.
#[derive(Debug, Clone)]
struct Relabel {
    kind: u64,
    role: u64,
    fd_delta: Option<i64>,
}

fn relabelled(w: &serde_json::Value, r: &Relabel) -> serde_json::Value {
    let mut w = relabel(&relabel(w, "kind", r.kind), "role", r.role);
    if let (Some(d), Some(fd)) = (r.fd_delta, w["sources"][0][1].as_i64()) {
        w["sources"][0][1] = serde_json::json!(fd + d);
    }
    w
}

/// Whether a handle of type `source` relabelled by `r` must decode as `target`: only
/// as its own type, with its own kind and a role of that kind; in another process also
/// only from its own descriptor (in its own process the open region is found by id).
fn must_accept(source: u8, target: u8, r: &Relabel, elsewhere: bool) -> bool {
    let (kind, roles) = match source {
        0..=2 => (3, 1),
        3 | 4 => (1, 1),
        5 => (2, 2),
        6 => (4, 1),
        7 => (5, 1),
        _ => (6, 1),
    };
    source == target
        && r.kind == kind
        && r.role < roles
        && (!elsewhere || matches!(r.fd_delta, None | Some(0)))
}

fn relabels() -> impl proptest::strategy::Strategy<Value = Relabel> {
    use proptest::prelude::*;
    (0u64..8, 0u64..3, proptest::option::of(-3i64..4)).prop_map(|(kind, role, fd_delta)| Relabel {
        kind,
        role,
        fd_delta,
    })
}

/// Sizes around the ones a relabelled ring would break on (under a frame header, under
/// a pipe's minimum, odd) and larger ones.
fn sizes() -> impl proptest::strategy::Strategy<Value = usize> {
    use proptest::prelude::*;
    prop_oneof![0usize..200, 4000usize..4200, Just(1 << 20)]
}

/// Decodes random relabellings of real handles in this process (the region is open
/// here already), in a child process so that a signal shows as one.
fn relabel_property_scenario() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(
            &(0u8..TARGETS, sizes(), relabels(), 0u8..TARGETS),
            |(source, size, r, target)| {
                let (_keep, w) = make(source, size);
                let ok = decode_and_use(target, relabelled(&w, &r));
                accepted.set(accepted.get() + u32::from(ok));
                prop_assert_eq!(ok, must_accept(source, target, &r, false), "{:?}", r);
                Ok(())
            },
        )
        .unwrap();
    println!("DONE {} accepted", accepted.get());
}

#[linkme::distributed_slice(SCENARIOS)]
static RELABEL_PROPERTY: Scenario = Scenario {
    name: "relabel_property",
    run: relabel_property_scenario,
};

#[test]
fn random_relabellings_of_handles_decoded_in_their_own_process_are_refused_or_work() {
    isolated(DEADLINE, || {
        let out = common::scenario("relabel_property")
            .output()
            .expect("run the scenario");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("DONE"),
            "the child ended with {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Decodes each `(target, wire)` in this (another) process and uses what is accepted:
/// how many were.
fn decode_relabelled(wires: Vec<(u8, String)>) -> u32 {
    wires
        .into_iter()
        .filter(|(target, w)| decode_and_use(*target, serde_json::from_str(w).unwrap()))
        .count() as u32
}
supervisor::task!(decode_relabelled);

#[test]
fn random_relabellings_of_handles_decoded_in_another_process_are_refused_or_work() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    isolated(DEADLINE, || {
        let mut runner = TestRunner::deterministic();
        let mut keep = Vec::new();
        let mut wires = Vec::new();
        let mut expected = 0;
        for source in 0..TARGETS {
            let size = sizes().new_tree(&mut runner).unwrap().current();
            let (h, w) = make(source, size);
            keep.push(h);
            for target in 0..TARGETS {
                let r = relabels().new_tree(&mut runner).unwrap().current();
                wires.push((target, relabelled(&w, &r).to_string()));
                expected += u32::from(must_accept(source, target, &r, true));
                // The genuine wire too: it must be accepted there.
                wires.push((source, w.to_string()));
                expected += 1;
            }
            // Role 1, which only a pipe has.
            wires.push((source, relabel(&w, "role", 1).to_string()));
            expected += u32::from(source == 5);
        }
        let accepted = Process::builder(decode_relabelled, wires)
            .start()
            .unwrap()
            .join()
            .expect("the child decodes and uses them without a signal or a panic");
        assert_eq!(accepted, expected);
        drop(keep);
    });
}

#[test]
fn a_refused_handle_in_a_message_reads_once_in_words() {
    isolated(DEADLINE, || {
        let q = Queue::<u64>::new().unwrap();
        let bytes = codec::encode(&q).unwrap();
        let e = codec::decode::<Queue<String>>(&bytes).unwrap_err();
        let _same: Queue<u64> = codec::decode(&bytes).unwrap();
        let said = supervisor_worker::error_chain(&e);
        assert!(
            said.ends_with(
                ": queue handle refused: it was made for other message or element types"
            ) && !said.contains("OtherString"),
            "{said}"
        );
        // And each `source()` on its own, as a program walking the chain prints them
        // (before, the last one was bincode's Debug text: `OtherString("...")`).
        let mut causes = Vec::new();
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            causes.push(c.to_string());
            cause = c.source();
        }
        assert!(
            causes
                .iter()
                .all(|c| !c.contains("OtherString") && !c.contains("(\""))
                && causes
                    .last()
                    .is_some_and(|c| c.starts_with("queue handle refused")),
            "{causes:?}"
        );
    });
}

#[test]
fn absurd_sizes_name_the_limit_they_are_over() {
    isolated(DEADLINE, || {
        for len in [usize::MAX, usize::MAX / 8] {
            let e = SharedSlice::<u64>::new(len).unwrap_err();
            let ErrorKind::TooManyElements {
                requested, limit, ..
            } = *e.kind()
            else {
                panic!("{e:?}");
            };
            assert_eq!(requested, len as u64);
            assert!(limit < requested && limit > (1 << 42), "{e}");
            assert_eq!(
                e.to_string(),
                format!(
                    "a shared memory of {len} elements of 8 bytes is over the limit of {limit} elements"
                )
            );
        }
        let e = SharedMemory::new(1 << 46).unwrap_err();
        let ErrorKind::TooLarge {
            requested, limit, ..
        } = *e.kind()
        else {
            panic!("{e:?}");
        };
        assert!(limit < requested, "{e}");
        // The limit named is the largest that works (the rest is the object's header).
        assert_eq!(
            SharedSlice::<u64>::new(limit as usize / 8 + 1)
                .unwrap_err()
                .to_string(),
            format!(
                "a shared memory of {} elements of 8 bytes is over the limit of {} elements",
                limit / 8 + 1,
                limit / 8
            )
        );
    });
}

#[test]
fn a_handle_naming_processes_that_do_not_have_it_names_one_process_and_its_descriptor() {
    isolated(DEADLINE, || {
        let sm = SharedMemory::new(4096).unwrap();
        let mut w = wire(&sm);
        let me = std::process::id();
        w["sources"] = serde_json::json!([[1, 5], [me, 2]]);
        w["id"] = serde_json::json!(vec![1u8; 16]);
        let m = refusal::<SharedMemory>(w);
        assert_eq!(
            m,
            format!(
                "cannot open the shared memory shared by process {me}: descriptor 2 of process \
                 {me} is not this shared memory (not a sealed memory file)"
            )
        );
    });
}
