//! Factoring random numbers with a pool, three ways: `map` (all results, in order),
//! `map_async` (submit now, collect later) and `apply_async` (one handle per number).
//!
//! Run: `cargo run --release --example prime_factors`

use supervisor::Pool;

/// Prime factors of `n`, ascending (trial division: fine for numbers up to ~10^12).
fn factorize(mut n: u64) -> Vec<u64> {
    let mut factors = Vec::new();
    let mut d = 2;
    while d * d <= n {
        while n.is_multiple_of(d) {
            factors.push(d);
            n /= d;
        }
        d += if d == 2 { 1 } else { 2 };
    }
    if n > 1 {
        factors.push(n);
    }
    factors
}
supervisor::task!(factorize);

fn main() -> Result<(), supervisor::Error> {
    supervisor::init();
    // A small xorshift generator: the same "random" numbers on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let numbers: Vec<u64> = (0..12)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1_000_000 + state % 1_000_000_000_000
        })
        .collect();
    let pool = Pool::builder().procs(4).build()?;

    println!("map: every result, in input order");
    for (n, factors) in numbers.iter().zip(pool.map(factorize, numbers.clone())) {
        println!("  {n} = {:?}", factors?);
    }

    println!("map_async: submitted, the parent is free meanwhile, then collected");
    let pending = pool.map_async(factorize, numbers.clone());
    let results = pending.wait();
    let primes = results
        .iter()
        .filter(|r| matches!(r, Ok(f) if f.len() == 1))
        .count();
    println!(
        "  {} numbers factored, {primes} of them prime",
        results.len()
    );

    println!("apply_async: one handle per number");
    let handles: Vec<_> = numbers
        .iter()
        .map(|&n| (n, pool.apply_async(factorize, n)))
        .collect();
    for (n, handle) in handles {
        let factors = handle.wait()?;
        assert_eq!(factors.iter().product::<u64>(), n);
        println!(
            "  {n}: {} factors, largest {}",
            factors.len(),
            factors.last().unwrap_or(&1)
        );
    }
    pool.join();
    Ok(())
}
