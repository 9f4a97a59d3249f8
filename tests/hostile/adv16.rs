//! Adversarial pass adv16 (issue 14's speed changes): `apply_async` results copied
//! into the caller's argument buffer (every size around the argument's, many threads,
//! handles dropped or read twice, megabytes, shared memory), and results whose bytes
//! look like a reference to a spooled output.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;

/// `len` bytes, byte `i` being `seed + i` (wrapping); the argument's `pad` only sizes
/// the argument's buffer.
fn sized((len, seed, _pad): (usize, u8, Vec<u8>)) -> Vec<u8> {
    pattern(len, seed)
}
supervisor::task!(sized);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// A shared memory of `len` bytes made in the worker, filled with `pattern(len, 7)`.
fn shm_made(len: usize) -> SharedMemory {
    let sm = SharedMemory::new(len).expect("shared memory made");
    sm.write(0, &pattern(len, 7));
    sm
}
supervisor::task!(shm_made);

/// Each result is its own, whatever its size next to its argument's (empty, smaller,
/// the same to a byte, larger, megabytes), from four threads at once, with some
/// handles dropped before their result and some read twice.
#[test]
fn apply_async_results_of_every_size_around_the_argument_are_their_own() {
    each_method(DEADLINE, |method| {
        let pool = shared_pool(method);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut handles = Vec::new();
                    for pad in [0usize, 1, 8, 63, 200, 4096] {
                        // The argument's encoded size, so a result of exactly that size
                        // (and one byte either side) is among them.
                        let arg_len = codec::encode(&(0usize, 0u8, vec![0u8; pad])).unwrap().len();
                        let lens = (0..=arg_len + 16).chain([arg_len * 3]);
                        for len in lens {
                            let seed = t.wrapping_mul(31).wrapping_add(len as u8);
                            let h = pool.apply_async(sized, (len, seed, vec![t; pad]));
                            handles.push((len, seed, h));
                        }
                    }
                    let len = 70_000;
                    let big = pool.apply_async(sized, (len, t, vec![t; 3]));
                    handles.push((len, t, big));
                    for (i, (len, seed, h)) in handles.into_iter().enumerate() {
                        if i % 11 == 3 {
                            drop(h);
                            continue;
                        }
                        let got = h.wait().expect("the call succeeds");
                        assert_eq!(got.len(), len, "thread {t}, call {i}");
                        assert!(got == pattern(len, seed), "thread {t}, call {i}: bytes");
                        if i % 7 == 0 {
                            let again = h.wait().unwrap_err();
                            assert!(
                                matches!(again.kind(), ErrorKind::ResultTaken { .. }),
                                "{again}"
                            );
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a caller thread");
        }
        // Megabytes either way, past any inline frame.
        for (len, pad) in [
            (4 << 20, 0),
            (0, 4 << 20),
            (4 << 20, 4 << 20),
            (10, 5 << 20),
        ] {
            let got = pool
                .apply(sized, (len, 9, vec![1; pad]))
                .expect("a big call");
            assert!(got == pattern(len, 9), "{len} bytes for {pad}");
        }
        for len in [1, 4096, 3 << 20] {
            let sm = pool.apply(shm_made, len).expect("a shared memory back");
            let mut bytes = vec![0; len];
            sm.read(0, &mut bytes);
            assert!(sm.len() == len && bytes == pattern(len, 7), "{len}");
        }
    });
}

/// What a spool reference starts with (`REF_MAGIC` of
/// `src/command/captured/spool_ref.rs`).
const REF_MAGIC: [u8; 16] = *b"\xd7spool-ref\xfe\x01\xfd\x02\xa5\x5a";

/// Opens `<dir>/victim` (a file of the user's, kept open by this worker as a task
/// might keep its data file) and returns bytes that hold what a reference to a spool
/// at that descriptor looks like, between other bytes.
fn looks_like_a_spool_ref(dir: PathBuf) -> Vec<u8> {
    use std::os::fd::IntoRawFd;
    let file = std::fs::File::open(dir.join("victim")).expect("victim opens");
    let meta = file.metadata().expect("victim's metadata");
    let mut tag = [0u8; 16];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut tag, 0).expect("victim's head");
    // Kept open for the worker's life.
    let fd = file.into_raw_fd();
    let mut out = b"user bytes ".to_vec();
    out.extend_from_slice(&REF_MAGIC);
    out.extend_from_slice(&std::process::id().to_le_bytes());
    out.extend_from_slice(&fd.to_le_bytes());
    out.extend_from_slice(&meta.dev().to_le_bytes());
    out.extend_from_slice(&meta.ino().to_le_bytes());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&8u64.to_le_bytes());
    out.extend_from_slice(b" more user bytes");
    // The magic alone, and cut short at the end.
    out.extend_from_slice(&REF_MAGIC);
    out.extend_from_slice(&REF_MAGIC[..9]);
    out.extend_from_slice(&REF_MAGIC);
    out
}
supervisor::task!(looks_like_a_spool_ref);

/// A result that merely holds the bytes of a spool reference (here one naming a file
/// the worker has open, the user's) comes back as it was, and the parent neither
/// changes that file (it marked it received: chmod 0400) nor keeps it open.
#[test]
fn a_result_holding_spool_reference_bytes_leaves_the_users_file_alone() {
    each_method(DEADLINE, |method| {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"a file of the user's, 0644, long enough").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        {
            let pool = Pool::builder()
                .procs(1)
                .start_method(method)
                .build()
                .unwrap();
            let got = pool
                .apply(looks_like_a_spool_ref, dir.path().to_path_buf())
                .expect("the call succeeds");
            assert!(got.starts_with(b"user bytes ") && got.len() == 11 + 64 + 16 + 16 + 9 + 16);
            assert!(got[11..27] == REF_MAGIC && got.ends_with(&REF_MAGIC));
            let mode = std::fs::metadata(&victim).unwrap().mode() & 0o777;
            assert_eq!(
                mode, 0o644,
                "the user's file's mode was changed to {mode:o}"
            );
            let held: Vec<_> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|p| p == victim))
                .collect();
            assert!(held.is_empty(), "the parent holds the user's file open");
        }
        drop(dir);
    });
}

/// `--resume` over a pipe that stalls right after lines the job log lists as done: the
/// 199 lines read before them run at once (on main they waited, unstarted, on 2 idle
/// workers, until more input came: the skip hid the stall from the pool, which sends
/// `run -j 2 --task sleep --resume --joblog LOG` given 200 `1ms` lines on a stdin left
/// open (stalled).
fn resume_200_lines(
    log: &std::path::Path,
    stderr: Stdio,
) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["run", "-j", "2", "--task", "sleep", "--resume", "--joblog"])
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all("1ms\n".repeat(200).as_bytes()).unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

/// what it read only before a read that would wait).
#[test]
fn resume_skipping_the_last_lines_before_a_stall_runs_what_was_read() {
    use std::io::BufRead;
    isolated(DEADLINE, || {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut done = String::from(
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
        );
        done.push_str("200\t:\t1.000\t     0.001\t0\t3\t0\t0\tsleep 1ms\n");
        std::fs::write(&log, done).unwrap();
        let (mut child, stdin) = resume_200_lines(&log, Stdio::null());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let started = std::time::Instant::now();
        let mut lines = 0;
        while lines < 199 {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(_) => lines += 1,
                Err(_) => break,
            }
        }
        let waited = started.elapsed();
        // The stall ends: what is left runs, and the run ends.
        drop(stdin);
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let rest = rx.try_iter().count();
        assert!(
            lines == 199,
            "{lines} of the 199 lines read came out in {waited:?} while the input stalled \
             ({rest} more once it ended)"
        );
        assert!(status.success(), "{status}");
        assert_eq!(rest, 0);
    });
}

/// Its id back, with `len` bytes of the id's pattern.
fn tagged((id, len): (u64, usize)) -> (u64, Vec<u8>) {
    (id, pattern(len, id as u8))
}
supervisor::task!(tagged);

/// A pool of 2 for several threads.
fn shared_pool(method: supervisor::StartMethod) -> Arc<Pool> {
    Arc::new(
        Pool::builder()
            .procs(2)
            .start_method(method)
            .build()
            .unwrap(),
    )
}

/// 8 threads x 3,000 `apply_async` of results a little smaller and larger than their
/// arguments, waited in a shuffled order: each handle gets its own call's result.
#[test]
fn many_threads_of_apply_async_each_get_their_own_result() {
    each_method(DEADLINE, |method| {
        let pool = shared_pool(method);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut handles: Vec<_> = (0..3000u64)
                        .map(|i| {
                            let id = t * 1_000_000 + i;
                            let len = (i % 40) as usize;
                            (id, len, pool.apply_async(tagged, (id, len)))
                        })
                        .collect();
                    // Waited out of order: a pseudo-random shuffle.
                    let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for i in (1..handles.len()).rev() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        handles.swap(i, (x % (i as u64 + 1)) as usize);
                    }
                    for (id, len, h) in handles {
                        let (got, bytes) = h.wait().expect("the call succeeds");
                        assert_eq!(got, id);
                        assert!(bytes == pattern(len, id as u8), "call {id}: bytes");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a caller thread");
        }
    });
}

/// `--halt now,fail=1` over an input of 3,000 lines stops reading it; the run's last
/// line says where, as a signal's does (on main nothing did: 952 lines in no record
/// and no count, JSON on stdout, stderr empty).
#[test]
fn a_halt_before_the_input_ended_says_where_it_stopped_reading() {
    isolated(DEADLINE, || {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        let lines: Vec<&str> = (1..=3000)
            .map(|i| if i == 5 { "fail x" } else { "sleep 20ms" })
            .collect();
        std::fs::write(&input, lines.join("\n") + "\n").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .args(["run", "-j", "2", "--task", "fault", "--format", "json"])
            .args(["--halt", "now,fail=1", "--input"])
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let records: Vec<serde_json::Value> = out
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let last_seq = records
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .max()
            .unwrap();
        assert!(last_seq < 3000 && records.len() as u64 == last_seq);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("supervisor: halted: ")
                && last.ends_with(&format!("; the input was not read past line {last_seq}")),
            "{} records, stderr: {stderr:?}",
            records.len()
        );
    });
}

fn arg_len(v: serde_bytes::ByteBuf) -> u64 {
    v.len() as u64
}
supervisor::task!(arg_len);

/// Bytes this process has allocated and not freed (glibc's count: a freed block that
/// stays in the heap is not counted, as RSS counts it).
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

/// Calls of 1 MiB arguments and 8-byte results, finished but not yet waited, hold
/// their results' few bytes, not their arguments' megabytes.
#[test]
fn finished_calls_do_not_keep_their_arguments() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(2).build().unwrap();
        let before = heap_in_use();
        let handles: Vec<_> = (0..200u32)
            .map(|i| pool.apply_async(arg_len, serde_bytes::ByteBuf::from(vec![i as u8; 1 << 20])))
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while !handles.iter().all(|h| h.is_ready()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the calls never finished"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let held = heap_in_use().saturating_sub(before);
        for h in &handles {
            assert_eq!(h.wait().unwrap(), 1 << 20);
        }
        assert!(
            held < 50 << 20,
            "200 finished calls of 1 MiB arguments hold {} MiB",
            held >> 20
        );
    });
}

/// A run stopped by SIGTERM while its input stalls after lines 190-200, which the job
/// log lists as done, says it read to line 200 (on main: 189, the lines it skipped
/// were counted as never read).
#[test]
fn a_stopped_resume_counts_the_lines_it_skipped_as_read() {
    use std::io::{BufRead, Read};
    isolated(DEADLINE, || {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut done = String::from(
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
        );
        for seq in 190..=200 {
            done.push_str(&format!(
                "{seq}\t:\t1.000\t     0.001\t0\t3\t0\t0\tsleep 1ms\n"
            ));
        }
        std::fs::write(&log, done).unwrap();
        let (mut child, stdin) = resume_200_lines(&log, Stdio::piped());
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // The 189 lines that run come out while the input stalls.
        let mut line = String::new();
        for _ in 0..189 {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "output ended early"
            );
        }
        // SAFETY: kill with plain integers; our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        drop(stdin);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(143), "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.ends_with("; the input was not read past line 200"),
            "{stderr}"
        );
    });
}
