//! The built-in tasks: `sha512-chain`, `prime-factors`, `pseudowords`, `search`,
//! `sleep`, `whoami` and `fault`.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha512};
use supervisor::Captured;

use super::{arg, failed, text, Failure, Job, Outcome, Output};

/// `sha512-chain`: N rounds of `h = hex(sha512(h))` from the input's bytes.
pub fn sha512_chain(job: Job) -> Outcome {
    let rounds: u64 = arg(&job, "iterations", 1_000_000)?;
    text(chain(job.line.as_bytes(), rounds))
}
supervisor::task!("sha512-chain" => sha512_chain);

/// Lowercase hex of `rounds` chained SHA-512 digests.
pub fn chain(start: &[u8], rounds: u64) -> String {
    if rounds == 0 {
        return String::from_utf8_lossy(start).into_owned();
    }
    let mut hex = [0u8; 128];
    hex::encode_to_slice(Sha512::digest(start), &mut hex).expect("64 bytes are 128 digits");
    for _ in 1..rounds {
        let digest = Sha512::digest(hex);
        hex::encode_to_slice(digest, &mut hex).expect("64 bytes are 128 digits");
    }
    String::from_utf8_lossy(&hex).into_owned()
}

/// `prime-factors`: the prime factors of a u64, ascending.
pub fn prime_factors(job: Job) -> Outcome {
    let n: u64 = job.line.trim().parse().map_err(|_| {
        Failure::Decode(format!(
            "line {}: `{}` is not a positive integer",
            job.seq, job.line
        ))
    })?;
    if n == 0 {
        return Err(Failure::Decode(format!(
            "line {}: 0 has no prime factors",
            job.seq
        )));
    }
    let factors = factorize(n);
    text(
        factors
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
supervisor::task!("prime-factors" => prime_factors);

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((a as u128 * b as u128) % m as u128) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    result
}

/// Deterministic Miller-Rabin for u64.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let (mut d, mut s) = (n - 1, 0);
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    'witness: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A non-trivial factor of composite `n` (Pollard's rho, Brent's variant).
fn rho(n: u64) -> u64 {
    if n.is_multiple_of(2) {
        return 2;
    }
    let mut c = 1;
    loop {
        let f = |x: u64| (mul_mod(x, x, n) + c) % n;
        let (mut x, mut y, mut d) = (2u64, 2u64, 1u64);
        while d == 1 {
            x = f(x);
            y = f(f(y));
            d = gcd(x.abs_diff(y), n);
        }
        if d != n {
            return d;
        }
        c += 1;
    }
}

/// Prime factors of `n` with multiplicity, ascending.
pub fn factorize(n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut stack = vec![n];
    while let Some(m) = stack.pop() {
        if m == 1 {
            continue;
        }
        if is_prime(m) {
            out.push(m);
            continue;
        }
        let mut small = false;
        for p in [2u64, 3, 5, 7, 11, 13] {
            if m % p == 0 {
                out.push(p);
                stack.push(m / p);
                small = true;
                break;
            }
        }
        if !small {
            let d = rho(m);
            stack.push(d);
            stack.push(m / d);
        }
    }
    out.sort_unstable();
    out
}

/// `pseudowords`: `count` pronounceable random words starting with the input.
pub fn pseudowords(job: Job) -> Outcome {
    let count: u64 = arg(&job, "count", 1_000_000)?;
    let out: Option<String> = job.args.get("out").cloned();
    // xorshift seeded from the line and its number: the same input gives the same words.
    let mut state = job
        .line
        .bytes()
        .fold(0x9e37_79b9_7f4a_7c15u64 ^ job.seq, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwz";
    const VOWELS: &[u8] = b"aeiou";
    let mut write_to = match &out {
        Some(dir) => {
            let path = std::path::Path::new(dir).join(format!("{}.txt", job.seq));
            let file = std::fs::File::create(&path)
                .map_err(|e| failed(format!("cannot create {}: {e}", path.display())))?;
            Some((path, std::io::BufWriter::new(file)))
        }
        None => None,
    };
    let mut word = String::new();
    for _ in 0..count {
        word.clear();
        word.push_str(&job.line);
        let syllables = 1 + next() % 3;
        for _ in 0..syllables {
            word.push(CONSONANTS[(next() % CONSONANTS.len() as u64) as usize] as char);
            word.push(VOWELS[(next() % VOWELS.len() as u64) as usize] as char);
        }
        if let Some((path, w)) = write_to.as_mut() {
            writeln!(w, "{word}")
                .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    match write_to {
        Some((path, mut w)) => {
            w.flush()
                .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
            text(format!("{count} {}", path.display()))
        }
        None => text(format!("{count} -")),
    }
}
supervisor::task!("pseudowords" => pseudowords);

/// `search`: lines of the file that contain `pattern`.
pub fn search(job: Job) -> Outcome {
    let pattern = job
        .args
        .get("pattern")
        .ok_or_else(|| Failure::Decode("search needs --arg pattern=TEXT".into()))?;
    let path = job.line.trim();
    let file = std::fs::File::open(path).map_err(|e| failed(format!("cannot open {path}: {e}")))?;
    let mut found = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| failed(format!("cannot read {path}: {e}")))?;
        if line.contains(pattern.as_str()) {
            found.push(format!("{path}:{}:{line}", i + 1));
        }
    }
    text(found.join("\n"))
}
supervisor::task!("search" => search);

fn parse_duration(job: &Job, s: &str) -> Result<Duration, Failure> {
    humantime::parse_duration(s.trim())
        .map_err(|e| Failure::Decode(format!("line {}: `{s}` is not a duration: {e}", job.seq)))
}

/// `sleep`: sleeps for the duration on the line.
pub fn sleep(job: Job) -> Outcome {
    let d = parse_duration(&job, &job.line)?;
    let t = Instant::now();
    std::thread::sleep(d);
    text(humantime::format_duration(round_ms(t.elapsed())).to_string())
}
supervisor::task!("sleep" => sleep);

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// `whoami`: the worker's identity as JSON.
pub fn whoami(_job: Job) -> Outcome {
    let stat = supervisor_worker::ProcStat::of(std::process::id() as i32);
    let num = |field: fn(&supervisor_worker::ProcStat) -> i32| stat.as_ref().map_or(-1, field);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let value = serde_json::json!({
        "pid": std::process::id(),
        "ppid": num(|s| s.ppid),
        "pgid": num(|s| s.pgrp),
        "nice": num(|s| s.nice),
        "rss_kib": rss,
    });
    Ok(Output {
        text: Captured::from(value.to_string()),
        stderr: Captured::default(),
        json: true,
        pid: 0,
        slot: 0,
    })
}
supervisor::task!("whoami" => whoami);

/// `fault`: misbehaves as the input line says.
pub fn fault(job: Job) -> Outcome {
    let line = job.line.trim();
    let (what, rest) = line.split_once(' ').unwrap_or((line, ""));
    match what {
        "ok" => text("ok"),
        "fail" => Err(failed(rest.to_string())),
        "panic" => panic!("fault: panic requested"),
        "abort" => std::process::abort(),
        "segfault" => {
            // SAFETY: none: a deliberate crash, which is what this input asks for.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
            text("unreachable")
        }
        "exit" => {
            let code: i32 = rest
                .trim()
                .parse()
                .map_err(|_| Failure::Decode(format!("line {}: `exit {rest}` needs a number", job.seq)))?;
            std::process::exit(code)
        }
        "hang" => loop {
            std::thread::park();
        },
        "sleep" => {
            let d = parse_duration(&job, rest)?;
            std::thread::sleep(d);
            text(format!("slept {}", humantime::format_duration(d)))
        }
        "alloc" => {
            let mib: usize = rest
                .trim()
                .parse()
                .map_err(|_| Failure::Decode(format!("line {}: `alloc {rest}` needs a number of MiB", job.seq)))?;
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(mib << 20)
                .map_err(|e| failed(format!("cannot allocate {mib} MiB: {e}")))?;
            v.resize(mib << 20, 1);
            text(format!("allocated {mib} MiB ({} touched)", v.iter().step_by(4096).count()))
        }
        "spawn-grandchild" => {
            let child = std::process::Command::new("sleep")
                .arg("3600")
                .spawn()
                .map_err(|e| failed(format!("cannot start sleep: {e}")))?;
            // One write, so that two workers' lines never interleave (eprintln! writes
            // the pieces of its format one by one).
            let line = format!("fault: left grandchild {} behind\n", child.id());
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
            loop {
                std::thread::park();
            }
        }
        other => Err(Failure::Decode(format!(
            "line {}: unknown fault `{other}` (ok, fail, panic, abort, segfault, exit, hang, sleep, alloc, spawn-grandchild)",
            job.seq
        ))),
    }
}
supervisor::task!("fault" => fault);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorize_handles_primes_squares_and_big_semiprimes() {
        assert_eq!(factorize(1), Vec::<u64>::new());
        assert_eq!(factorize(360), vec![2, 2, 2, 3, 3, 5]);
        assert_eq!(
            factorize(18_446_744_073_709_551_557),
            vec![18_446_744_073_709_551_557]
        );
        assert_eq!(
            factorize(4_294_967_291 * 4_294_967_279),
            vec![4_294_967_279, 4_294_967_291]
        );
        assert_eq!(
            factorize(u64::MAX),
            vec![3, 5, 17, 257, 641, 65537, 6700417]
        );
    }

    #[test]
    fn sha512_chain_matches_a_known_value() {
        // Python: h=b"abc"; h=hashlib.sha512(h).hexdigest().encode() once.
        assert_eq!(
            chain(b"abc", 1),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(chain(b"abc", 0), "abc");
    }
}
