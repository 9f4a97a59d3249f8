//! "Being nice": one file of pseudo-words per letter of a long string, written in
//! parallel by a pool of workers at nice 19 (so an interactive machine stays
//! responsive), then the same job serially, and the speedup.
//!
//! Run: `cargo run --release --example pseudowords [-- WORDS_PER_FILE]` (default 1,000,000)

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use supervisor::Pool;

/// Writes `count` pronounceable pseudo-words starting with `letter` to DIR/LETTER.txt;
/// returns the file's size in bytes.
fn write_words(letter: char, count: u64, dir: String) -> u64 {
    let mut state = (letter as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwz";
    const VOWELS: &[u8] = b"aeiou";
    let path = PathBuf::from(dir).join(format!("{letter}.txt"));
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&path).expect("create the word file"));
    let mut word = Vec::with_capacity(16);
    for _ in 0..count {
        word.clear();
        word.push(letter as u8);
        for _ in 0..1 + next() % 3 {
            word.push(CONSONANTS[(next() % CONSONANTS.len() as u64) as usize]);
            word.push(VOWELS[(next() % VOWELS.len() as u64) as usize]);
        }
        word.push(b'\n');
        out.write_all(&word).expect("write a word");
    }
    out.flush().expect("flush the word file");
    std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
}
supervisor::task!(write_words);

fn main() -> Result<(), supervisor::Error> {
    supervisor::init();
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let letters: Vec<char> = "processisolation".chars().collect();
    let dir = std::env::temp_dir().join(format!("pseudowords-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the output directory");
    let dir_s = dir.display().to_string();

    // Parallel, at nice 19: the workers yield the CPU to anything interactive.
    let pool = Pool::builder().nice(19).build()?;
    let t = Instant::now();
    let jobs = letters.iter().map(|&l| (l, count, dir_s.clone()));
    let sizes: Vec<u64> = pool
        .starmap(write_words, jobs)
        .into_iter()
        .collect::<Result<_, _>>()?;
    let parallel = t.elapsed();
    let stats = pool.stats();
    pool.join();
    println!(
        "parallel: {} files of {count} words ({} MiB) in {:.2?} by {} workers at nice 19",
        sizes.len(),
        sizes.iter().sum::<u64>() >> 20,
        parallel,
        stats.workers.len() + stats.exited.len()
    );

    // The same job in this process, one file after another.
    let t = Instant::now();
    for &l in &letters {
        write_words(l, count, dir_s.clone());
    }
    let serial = t.elapsed();
    println!("serial:   the same files in {serial:.2?}");
    println!(
        "speedup:  {:.2}x on {} CPUs",
        serial.as_secs_f64() / parallel.as_secs_f64(),
        pool.procs()
    );
    std::fs::remove_dir_all(&dir).expect("remove the output directory");
    Ok(())
}
