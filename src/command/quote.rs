//! Quoting for `sh`: any bytes become one word that the shell reads back unchanged.

/// `arg` quoted for a POSIX shell: one word that `sh` reads back as exactly these bytes,
/// whatever they are (`;`, `$(...)`, quotes, newlines, invalid UTF-8). Plain words
/// (letters, digits, `-_./+`) are left as they are; anything else is put in single
/// quotes, with each `'` written as `'"'"'`: exactly what GNU parallel writes, so the
/// CLI's `--dry-run` prints the command lines parallel prints.
///
/// ```
/// assert_eq!(supervisor::shell_quote(b"x; echo INJECTED"), b"'x; echo INJECTED'");
/// assert_eq!(supervisor::shell_quote(b"it's"), br#"'it'"'"'s'"#);
/// assert_eq!(supervisor::shell_quote(b"file.txt"), b"file.txt");
/// assert_eq!(supervisor::shell_quote(b"a=b"), b"'a=b'");
/// ```
pub fn shell_quote(arg: &[u8]) -> Vec<u8> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_./+".contains(b);
    if !arg.is_empty() && arg.iter().all(plain) {
        return arg.to_vec();
    }
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'\'');
    for &b in arg {
        if b == b'\'' {
            out.extend_from_slice(b"'\"'\"'");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoted_words_read_back_unchanged_by_sh() {
        let nasty: &[&[u8]] = &[
            b"x; echo INJECTED",
            b"$(touch /tmp/pwned)",
            b"'",
            b"a'b\"c\\d",
            b"",
            b"new\nline",
            b"caf\xe9",
            b"*",
        ];
        for arg in nasty {
            let mut script = b"printf %s ".to_vec();
            script.extend(shell_quote(arg));
            use std::os::unix::ffi::OsStrExt;
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(std::ffi::OsStr::from_bytes(&script))
                .output()
                .expect("sh runs");
            assert_eq!(&out.stdout[..], *arg);
        }
    }
}
