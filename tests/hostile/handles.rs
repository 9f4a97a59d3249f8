//! Handles decoded from hostile bytes: relabelled wires refused in the process that holds them, not read or written out of bounds.

use super::*;

// ---- Handles decoded from hostile bytes (issue 18) ----
//
// A handle's wire form (kind, role, id, where to open it) is bytes an embedder or a peer
// can change. Decoded as any handle type, in the process that has the object open or in
// another one, it is refused with `WrongHandle` unless it is of that type, and whatever
// is accepted stays inside its mapping.

/// `v` with field `key` set to `value`.
pub(super) fn relabel(v: &serde_json::Value, key: &str, value: u64) -> serde_json::Value {
    let mut v = v.clone();
    v[key] = serde_json::json!(value);
    v
}

/// Which attack the `handle_attack` scenario runs.
const ATTACK_ENV: &str = "SUPERVISOR_TEST_HANDLE_ATTACK";

/// Prints `REFUSED <message>` for a refused decode; otherwise uses what was decoded (on
/// code without the checks, out of its mapping) and prints what it returned.
fn handle_attack_scenario() {
    let attack = std::env::var(ATTACK_ENV).unwrap_or_default();
    let refused = |e: serde_json::Error| println!("REFUSED {e}");
    match attack.as_str() {
        // A 14-byte shared memory read as a pipe: two 7-byte rings, smaller than a frame
        // header, with a frame announcing 0x10000051 bytes.
        "pipe-oob" => {
            let sm = SharedMemory::new(14).unwrap();
            let mut d = [0u8; 14];
            d[7] = 0x51;
            d[10] = 0x10;
            d[11..].copy_from_slice(&[0x55, 0x45, 0x55]);
            sm.write(0, &d);
            let wire = relabel(&serde_json::to_value(&sm).unwrap(), "kind", 2);
            match serde_json::from_value::<Pipe<u8, Vec<u8>>>(wire) {
                Ok(p) => println!("ACCEPTED {:?}", p.recv_timeout(Duration::from_millis(100))),
                Err(e) => refused(e),
            }
        }
        // The same, sending through the other end: a tail set so the used-bytes sum
        // wraps and the copy passes the room check.
        "pipe-oob-write-1m" | "pipe-oob-write-2000" => {
            let n = if attack.ends_with("1m") {
                1 << 20
            } else {
                2000
            };
            let msg = vec![0xABu8; n];
            let enc = codec::encode(&msg).unwrap().len() as u64;
            let need = 8 + enc.div_ceil(8) * 8;
            let sm = SharedMemory::new(14).unwrap();
            sm.write(0, &0u64.wrapping_sub(need).to_le_bytes());
            let wire = relabel(&serde_json::to_value(&sm).unwrap(), "kind", 2);
            match serde_json::from_value::<Pipe<Vec<u8>, u8>>(relabel(&wire, "role", 1)) {
                Ok(p) => println!("ACCEPTED {:?}", p.send(&msg)),
                Err(e) => refused(e),
            }
        }
        // A 1-byte shared memory as a pipe: rings of 0 bytes.
        "pipe-div0" => {
            let sm = SharedMemory::new(1).unwrap();
            sm.write(0, &[0xff]);
            let wire = relabel(&serde_json::to_value(&sm).unwrap(), "kind", 2);
            match serde_json::from_value::<Pipe<u8, u8>>(wire) {
                Ok(p) => println!("ACCEPTED {:?}", p.try_recv()),
                Err(e) => refused(e),
            }
        }
        other => panic!("no attack {other}"),
    }
}

#[linkme::distributed_slice(SCENARIOS)]
static HANDLE_ATTACK: Scenario = Scenario {
    name: "handle_attack",
    run: handle_attack_scenario,
};

/// Runs `attack` in a child process: it must exit normally (not by a signal, not by a
/// panic) with the relabelled handle refused as a pipe.
fn attack_is_refused(attack: &'static str) {
    isolated(DEADLINE, move || {
        let out = common::scenario("handle_attack")
            .env(ATTACK_ENV, attack)
            .output()
            .expect("run the scenario");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{attack}: the child ended with {:?}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains("REFUSED pipe handle refused: it names a shared memory"),
            "{attack}: {stdout}{stderr}"
        );
    });
}

#[test]
fn a_shared_memory_relabelled_as_a_pipe_is_refused_not_read_out_of_bounds() {
    attack_is_refused("pipe-oob");
}

#[test]
fn a_shared_memory_relabelled_as_a_pipe_is_refused_not_written_out_of_bounds() {
    attack_is_refused("pipe-oob-write-1m");
    attack_is_refused("pipe-oob-write-2000");
}

#[test]
fn a_one_byte_shared_memory_relabelled_as_a_pipe_is_refused_not_a_panic() {
    attack_is_refused("pipe-div0");
}

/// The wire form of `h`, checked to decode as its own type (which also counts the
/// handle as arrived: a handle serialised and never opened is kept open for a while,
/// and the leak check would see it).
pub(super) fn wire<T: serde::Serialize + serde::de::DeserializeOwned>(h: &T) -> serde_json::Value {
    let v = serde_json::to_value(h).unwrap();
    let _same: T = serde_json::from_value(v.clone()).expect("a genuine handle decodes");
    v
}

/// The message of decoding `wire` as a `T`, which must fail.
pub(super) fn refusal<T: serde::de::DeserializeOwned>(wire: serde_json::Value) -> String {
    match serde_json::from_value::<T>(wire) {
        Ok(_) => panic!("decoded as {}", std::any::type_name::<T>()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn handles_of_other_types_are_refused_in_the_process_that_holds_them() {
    isolated(DEADLINE, || {
        let s = SharedSlice::<u8>::new(3).unwrap();
        let m = refusal::<SharedSlice<u64>>(wire(&s));
        assert_eq!(
            m,
            "shared memory handle refused: it was made for other message or element types"
        );
        let m = refusal::<SharedMemory>(wire(&s));
        assert!(m.contains("other message or element types"), "{m}");

        let q = Queue::<u64>::new().unwrap();
        q.put(&7).unwrap();
        let m = refusal::<Queue<String>>(wire(&q));
        assert!(m.contains("other message or element types"), "{m}");
        assert_eq!(q.try_get().unwrap(), Some(7), "the queue is untouched");

        let e = Event::new().unwrap();
        let m = refusal::<Semaphore>(relabel(&wire(&e), "kind", 6));
        assert_eq!(m, "semaphore handle refused: it names an event");
        let m = refusal::<Semaphore>(wire(&e));
        assert_eq!(m, "semaphore handle refused: it names an event");

        let sm = SharedMemory::new(64).unwrap();
        let m = refusal::<Lock>(relabel(&wire(&sm), "kind", 4));
        assert_eq!(m, "lock handle refused: it names a shared memory");
        let m = refusal::<Lock>(relabel(&wire(&sm), "kind", 99));
        assert_eq!(
            m,
            "lock handle refused: it names an object of unknown kind 99"
        );

        // Role 1 of a queue (which has one role): a holder of its own, of no one's
        // messages, that waited out get timeouts instead of seeing nobody else holds it.
        let m = refusal::<Queue<u64>>(relabel(&wire(&q), "role", 1));
        assert_eq!(m, "queue handle refused: role 1 (a queue has only role 0)");
        // A pipe's end decodes with its own types only: end 0 of a `Pipe<u64, String>`
        // is not a `Pipe<String, u64>` (end 1 is).
        let (a, b) = Pipe::<u64, String>::new().unwrap();
        let m = refusal::<Pipe<String, u64>>(wire(&a));
        assert!(m.contains("other message or element types"), "{m}");
        let m = refusal::<Pipe<u64, String>>(wire(&b));
        assert!(m.contains("other message or element types"), "{m}");
        let (a, _b) = Pipe::<u8, u8>::new().unwrap();
        let m = refusal::<Pipe<u8, u8>>(relabel(&wire(&a), "role", 2));
        assert_eq!(m, "pipe handle refused: role 2 (a pipe has roles 0 and 1)");
    });
}
