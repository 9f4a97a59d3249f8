//! What to use instead of a GNU parallel or xargs option supervisor does not have: an
//! unknown option gets a line naming the equivalent, or saying why there is none.

/// Options of parallel / xargs we do not take, and what to write instead.
const HINTS: &[(&[&str], &str)] = &[
    (
        &["--pipe", "--block", "--pipepart", "--recend", "--recstart", "--cat", "--fifo"],
        "supervisor runs one job per input record and does not split stdin into blocks; split the input first (`split -l N`) and pass the pieces with `::::` or stdin",
    ),
    (
        &["-S", "--sshlogin", "--slf", "--sshloginfile", "--transfer", "--return", "--cleanup", "--trc", "--basefile", "--workdir", "--env"],
        "for more than one host, start `supervisor worker --nats URL` on each and run with `--nats URL` (see the README's cluster section)",
    ),
    (
        &["-X", "-m", "-N", "-n", "--max-args", "--max-replace-args", "--xargs", "-L", "--max-lines", "-s", "--max-chars"],
        "one command runs per input record; to give a command several values use several sources (`::: a b ::: c d`) or --colsep and {1} {2}",
    ),
    (
        &["-v", "--verbose", "-t"],
        "--dry-run prints the commands without running them; --joblog records each command with its exit status",
    ),
    (
        &["--files", "--tmux", "--tmuxpane", "--ctag", "--tagstring", "--shuf", "--memfree", "--load", "--delay", "--sqlmaster", "--sqlworker", "--sqlandworker", "--semaphore", "--fg", "--bg", "--round-robin", "--header", "--csv", "--plus", "--rpl", "--embed", "--filter", "--group-by", "--limit", "--termseq", "--retry-failed"],
        "not supported by supervisor; the README's \"coming from GNU parallel\" section lists what is",
    ),
    (
        &["-I", "--replace", "--extensionreplace", "--basenamereplace", "--dirnamereplace", "--basenameextensionreplace", "--seqreplace", "--slotreplace", "-i"],
        "the replacement strings are fixed: {} {.} {/} {//} {/.} {#} {%} and {N}",
    ),
    (
        &["-P", "--max-procs"],
        "use -j N (or --procs N)",
    ),
    (
        &["-q", "--quote"],
        "a multi-word command runs without a shell (nothing to quote); a one-string command or --shell quotes every replacement",
    ),
];

/// The hint for `option` (as the user wrote it, `--opt=value` included), if it is one
/// of parallel's or xargs'.
pub fn for_option(option: &str) -> Option<&'static str> {
    let name = option.split('=').next().unwrap_or(option);
    HINTS
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_options_get_a_hint_and_others_none() {
        assert!(for_option("--pipe").unwrap().contains("split"));
        assert!(for_option("--sshlogin=host").unwrap().contains("--nats"));
        assert!(for_option("-X").is_some());
        assert_eq!(for_option("--frobnicate"), None);
    }
}
