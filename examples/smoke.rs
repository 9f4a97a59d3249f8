use std::time::Instant;
use supervisor::{Process, StartMethod};
fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);
fn boom(_: ()) -> u64 {
    panic!("boom")
}
supervisor::task!(boom);
fn segv(_: ()) {
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) }
}
supervisor::task!(segv);
fn main() {
    supervisor::init();
    for m in StartMethod::ALL {
        let t = Instant::now();
        let mut p = Process::builder(square, 7).start_method(m).start().unwrap();
        let v = p.join();
        println!("{m}: {:?} exit={:?} in {:?}", v, p.exitcode(), t.elapsed());
        let mut p = Process::builder(boom, ()).start_method(m).start().unwrap();
        println!("{m}: {}", p.join().unwrap_err());
        let mut p = Process::builder(segv, ()).start_method(m).start().unwrap();
        println!("{m}: {}", p.join().unwrap_err());
    }
}
