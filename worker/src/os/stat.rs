//! `/proc/<pid>/stat`: the one parser of it, and the one rule for "this process has
//! exited". Shared by both crates, the CLI and the tests.

/// What `/proc/<pid>/stat` (or `/proc/<pid>/task/<tid>/stat`) says about a process: the
/// fields anyone here reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter: `R`, `S`, `D`, `T`, `Z` (exited, not reaped), `X` (dead) ...
    pub state: char,
    /// The parent's pid.
    pub ppid: i32,
    /// The process group.
    pub pgrp: i32,
    /// CPU time in user mode, in clock ticks.
    pub utime: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub stime: u64,
    /// The nice value.
    pub nice: i32,
    /// How many threads it has.
    pub threads: u32,
    /// When it started, in clock ticks after boot. With the pid it names one process for
    /// good, even after pid reuse.
    pub start: u64,
    /// Resident memory, in pages (see [`ProcStat::rss_kib`]).
    pub rss_pages: u64,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` if there is no such process (or it cannot be
    /// read).
    pub fn of(pid: i32) -> Option<ProcStat> {
        ProcStat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parses one stat line; `None` if it is cut short or garbled. The command name (the
    /// second field, in parentheses) may hold anything, spaces and parentheses included;
    /// nothing after it can hold a `)`, so the fields are counted from the last one.
    pub fn parse(line: &str) -> Option<ProcStat> {
        let rest = line.get(line.rfind(')')? + 1..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).copied();
        let mut state = field(0)?.chars();
        let (state, None) = (state.next()?, state.next()) else {
            return None;
        };
        Some(ProcStat {
            state,
            ppid: field(1)?.parse().ok()?,
            pgrp: field(2)?.parse().ok()?,
            utime: field(11)?.parse().ok()?,
            stime: field(12)?.parse().ok()?,
            nice: field(16)?.parse().ok()?,
            threads: field(17)?.parse().ok()?,
            start: field(19)?.parse().ok()?,
            rss_pages: field(21)?.parse().ok()?,
        })
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.rss_pages.saturating_mul(page_size()) / 1024
    }

    /// Whether the process has exited (and waits to be reaped, or is being). A process
    /// whose main thread has exited shows as a zombie too while its other threads run:
    /// that one is still running.
    pub fn has_exited(&self) -> bool {
        self.state == 'X' || (self.state == 'Z' && self.threads <= 1)
    }
}

/// The size of a memory page, in bytes.
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf takes a plain integer and returns a number.
    *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64)
}

/// Whether process `pid` has exited: there is none, or it has exited and waits to be
/// reaped (see [`ProcStat::has_exited`]).
pub fn is_gone(pid: i32) -> bool {
    ProcStat::of(pid).is_none_or(|stat| stat.has_exited())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line of process 4242 called `name`: parent 1, group 4343, 5 and 3 ticks of
    /// CPU time, nice 10, `threads` threads, started at tick 777.
    fn line(name: &str, state: &str, threads: u32) -> String {
        format!(
            "4242 ({name}) {state} 1 4343 4343 0 -1 4194560 100 0 0 0 5 3 0 0 20 10 \
             {threads} 0 777 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0"
        )
    }

    #[test]
    fn every_field_is_read_whatever_the_command_name_holds() {
        let expected = ProcStat {
            state: 'S',
            ppid: 1,
            pgrp: 4343,
            utime: 5,
            stime: 3,
            nice: 10,
            threads: 1,
            start: 777,
            rss_pages: 200,
        };
        for name in [
            "sleep",
            "a) b",
            "(",
            ")",
            "a b c",
            " ",
            "",
            "x) Z 9 9 9 (y",
            "((()))",
            "tab\there",
            "new\nline",
        ] {
            assert_eq!(
                ProcStat::parse(&line(name, "S", 1)),
                Some(expected),
                "name {name:?}"
            );
        }
    }

    #[test]
    fn a_cut_short_or_garbled_line_is_none() {
        for bad in [
            String::new(),
            "4242 (no closing paren S 1 4343".to_string(),
            "4242 (cut short) S 1".to_string(),
            "4242 (x)".to_string(),
            line("x", "SS", 1),
            line("x", "S", 1).replace(" 4343 ", " group "),
        ] {
            assert_eq!(ProcStat::parse(&bad), None, "line {bad:?}");
        }
    }

    #[test]
    fn a_process_has_exited_once_no_thread_of_it_runs() {
        let exited = |state: &str, threads: u32| {
            ProcStat::parse(&line("p", state, threads))
                .unwrap()
                .has_exited()
        };
        for (state, threads, expected) in [
            ("R", 1, false),
            ("S", 4, false),
            ("D", 1, false),
            ("T", 1, false),
            ("Z", 1, true),
            ("Z", 0, true),
            // Its main thread exited, another runs on: still running.
            ("Z", 2, false),
            ("X", 0, true),
            ("X", 1, true),
        ] {
            assert_eq!(exited(state, threads), expected, "{state} with {threads}");
        }
    }

    #[test]
    fn this_process_is_read_and_runs() {
        let me = ProcStat::of(std::process::id() as i32).expect("own stat");
        assert!(!me.has_exited() && me.threads >= 1);
        assert!(!is_gone(std::process::id() as i32));
        assert!(is_gone(i32::MAX));
    }
}
