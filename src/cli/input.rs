//! The run's input, read by lines from its descriptor with a buffer of our own: so the
//! run knows whether the next line is at hand without waiting (what was read goes out
//! before a read that would wait), and a wait for more input gives up when the run is
//! asked to stop (a signal, a closed output), instead of sitting in `read`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::sys::wait_readable;

/// How often a wait for input looks at the stop flag.
const STOP_LOOK: Duration = Duration::from_millis(100);
const READ_SIZE: usize = 64 * 1024;

/// Lines of one input.
pub struct LineSource {
    file: File,
    buf: Vec<u8>,
    /// Start of what is not yet a returned line.
    start: usize,
    /// `buf[start..searched]` holds no delimiter: a long line is searched once, not
    /// again at every read (a 50 MB line from a pipe took minutes).
    searched: usize,
    eof: bool,
    /// A read error met while looking ahead, for the next line to report.
    error: Option<io::Error>,
    /// Non-zero once the run is asked to stop.
    stop: Arc<AtomicI32>,
    /// What ends a record: a newline, or NUL (`-0`), or `-d`'s byte.
    delimiter: u8,
}

impl LineSource {
    pub fn new(file: File, stop: Arc<AtomicI32>, delimiter: u8) -> LineSource {
        LineSource {
            delimiter,
            file,
            buf: Vec::new(),
            start: 0,
            searched: 0,
            eof: false,
            error: None,
            stop,
        }
    }

    fn complete_line(&mut self) -> bool {
        self.eof || self.error.is_some() || self.delimiter_at().is_some()
    }

    /// Where the next delimiter is in `buf`, if it has one.
    fn delimiter_at(&mut self) -> Option<usize> {
        let from = self.searched.max(self.start);
        match self.buf[from..].iter().position(|b| *b == self.delimiter) {
            Some(i) => {
                self.searched = from + i;
                Some(from + i)
            }
            None => {
                self.searched = self.buf.len();
                None
            }
        }
    }

    /// One read of what is there (it waits only if nothing is).
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.searched = self.searched.saturating_sub(self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let read = loop {
            match self.file.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *read.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        if n == 0 && read.is_ok() {
            self.eof = true;
        }
        read.map(drop)
    }

    /// Whether the next line (or the end of the input) can be had without waiting: a
    /// partial line does not count.
    pub fn ready(&mut self) -> bool {
        // Asked to stop: the next read ends the input at once.
        if self.stopping() {
            return true;
        }
        while !self.complete_line() {
            if !wait_readable(self.file.as_fd(), Duration::ZERO) {
                return false;
            }
            if let Err(e) = self.fill() {
                self.error = Some(e);
            }
        }
        true
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) != 0
    }

    /// The next line without its newline; `None` at the end of the input or once the
    /// run is asked to stop.
    pub fn next_line(&mut self) -> Option<io::Result<Vec<u8>>> {
        loop {
            if let Some(at) = self.delimiter_at() {
                let line = self.buf[self.start..at].to_vec();
                self.start = at + 1;
                self.searched = self.start;
                return Some(Ok(line));
            }
            if let Some(e) = self.error.take() {
                return Some(Err(e));
            }
            if self.eof {
                if self.start < self.buf.len() {
                    let line = self.buf[self.start..].to_vec();
                    self.start = self.buf.len();
                    return Some(Ok(line));
                }
                return None;
            }
            while !wait_readable(self.file.as_fd(), STOP_LOOK) {
                if self.stopping() {
                    return None;
                }
            }
            if self.stopping() {
                return None;
            }
            if let Err(e) = self.fill() {
                return Some(Err(e));
            }
        }
    }
}
