//! `--line-buffer`: a command's output copied to the run's line by line as it is
//! written. Complete lines go out in one write, under the run's lock file, so lines of
//! tasks running at once interleave but never mix; memory stays bounded (a line longer
//! than [`LINE_LIMIT`] goes out in pieces of that size).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use super::sys::{self, Flock};
use super::tasks::LINE_LIMIT;

/// Size of one read from the command's pipe.
const CHUNK: usize = 64 << 10;

/// Copies `from` to `to` by whole lines (each after `tag` and a tab, with `--tag`),
/// holding `lock` (a file every worker of the run opens) while writing; what is left
/// at the end (a last line without a newline) goes out as it is.
pub fn copy(
    mut from: impl Read,
    mut to: impl Write,
    tag: Option<&[u8]>,
    lock: Option<&Path>,
) -> io::Result<()> {
    let lock = match lock {
        Some(path) => Some(std::fs::OpenOptions::new().write(true).open(path)?),
        None => None,
    };
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut out: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let end = n == 0;
        held.extend_from_slice(&buf[..n]);
        let complete = match held.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if end || held.len() >= LINE_LIMIT => held.len(),
            None => 0,
        };
        if complete > 0 {
            out.clear();
            for line in held[..complete].split_inclusive(|&b| b == b'\n') {
                if let Some(tag) = tag {
                    out.extend_from_slice(tag);
                    out.push(b'\t');
                }
                out.extend_from_slice(line);
            }
            write_locked(&mut to, &out, lock.as_ref())?;
            held.drain(..complete);
        }
        if end {
            return Ok(());
        }
    }
}

fn write_locked(to: &mut impl Write, data: &[u8], lock: Option<&std::fs::File>) -> io::Result<()> {
    if let Some(file) = lock {
        sys::flock(file.as_fd(), Flock::Wait)?;
    }
    let written = to.write_all(data).and_then(|()| to.flush());
    if let Some(file) = lock {
        sys::flock(file.as_fd(), Flock::Unlock)?;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_out_whole_tagged_and_the_rest_at_the_end() {
        let mut out = Vec::new();
        copy(&b"a\nbb\nc"[..], &mut out, Some(b"t"), None).unwrap();
        assert_eq!(out, b"t\ta\nt\tbb\nt\tc");
        let mut out = Vec::new();
        copy(&b"x\xff\n"[..], &mut out, None, None).unwrap();
        assert_eq!(out, b"x\xff\n");
    }
}
