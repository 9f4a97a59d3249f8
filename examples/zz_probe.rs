use std::time::{Duration, Instant};
use supervisor::{Pool, StartMethod};
fn inc(x: u64) -> u64 {
    x + 1
}
supervisor::task!(inc);
fn echo(b: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    b
}
supervisor::task!(echo);
fn main() {
    supervisor::init();
    let what = std::env::args().nth(1).unwrap_or_default();
    let procs: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(2);
    let pool = Pool::builder()
        .procs(procs)
        .start_method(StartMethod::Fork)
        .build()
        .unwrap();
    for r in pool.map_chunked(inc, 0..8u64, 1) {
        r.unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    match what.as_str() {
        "apply" => {
            let mut v = Vec::new();
            for i in 0..2000u64 {
                let t = Instant::now();
                pool.apply(inc, i).unwrap();
                v.push(t.elapsed());
            }
            v.sort();
            println!(
                "apply p10 {:?} p50 {:?} p90 {:?} p99 {:?}",
                v[200], v[1000], v[1800], v[1980]
            );
        }
        "async" => {
            let n = 100_000u64;
            let t = Instant::now();
            let hs: Vec<_> = (0..n).map(|i| pool.apply_async(inc, i)).collect();
            let sub = t.elapsed();
            for h in &hs {
                h.wait().unwrap();
            }
            println!("async submit {:?} total {:?}", sub, t.elapsed());
        }
        "map" => {
            let n = 1_000_000u64;
            let t = Instant::now();
            let out = pool.map(inc, 0..n);
            println!("map {:?} {}", t.elapsed(), out.len());
            for cs in [1024usize, 8192, 125000] {
                let t = Instant::now();
                let out = pool.map_chunked(inc, 0..n, cs);
                println!("map chunk {cs} {:?} {}", t.elapsed(), out.len());
            }
        }
        "bytes" => {
            let p = serde_bytes::ByteBuf::from(vec![7u8; 1 << 20]);
            let t = Instant::now();
            for _ in 0..256 {
                pool.apply(echo, p.clone()).unwrap();
            }
            println!(
                "bytes {:?} per rt, {:.2} GiB/s",
                t.elapsed() / 256,
                0.5 / t.elapsed().as_secs_f64()
            );
        }
        _ => {}
    }
}
