//! Command mode's template: how one input line becomes the argv of its command, as
//! argv (the default for several words) or as a `sh -c` script with the line
//! shell-quoted (one word of shell syntax, or `--shell`).

/// `arg` with every `{}` replaced by `with`.
fn replace_braces(arg: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len() + with.len());
    let mut rest = arg;
    while let Some(i) = rest.windows(2).position(|w| w == b"{}") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

/// How command mode runs each line's command.
#[derive(Debug, Clone)]
pub enum Template {
    /// The words as argv, `{}` replaced by the line's bytes (appended when absent).
    Argv(Vec<Vec<u8>>),
    /// One shell script (the words joined by spaces), run by `sh -c`, `{}` replaced by
    /// the line shell-quoted (appended so when absent): no input can inject code.
    Shell(Vec<u8>),
}

/// Whether a one-word command is shell syntax (a space or a shell metacharacter), as
/// GNU parallel reads `parallel 'echo {} | tr a-z A-Z'`.
fn is_shell_syntax(word: &[u8]) -> bool {
    word.iter()
        .any(|b| b.is_ascii_whitespace() || b"|&;<>()$`\\\"'*?[]#~".contains(b))
}

impl Template {
    pub fn new(words: &[std::ffi::OsString], shell: bool) -> Template {
        use std::os::unix::ffi::OsStrExt;
        let words: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        if shell || (words.len() == 1 && is_shell_syntax(&words[0])) {
            Template::Shell(words.join(&b' '))
        } else {
            Template::Argv(words)
        }
    }

    /// The argv for one line.
    pub fn argv(&self, line: &[u8]) -> Vec<serde_bytes::ByteBuf> {
        let has_braces = |w: &[u8]| w.windows(2).any(|p| p == b"{}");
        let words = match self {
            Template::Argv(words) if words.iter().any(|w| has_braces(w)) => {
                words.iter().map(|w| replace_braces(w, line)).collect()
            }
            Template::Argv(words) => {
                let mut argv = words.clone();
                argv.push(line.to_vec());
                argv
            }
            Template::Shell(script) => {
                let quoted = supervisor::shell_quote(line);
                let script = if has_braces(script) {
                    replace_braces(script, &quoted)
                } else {
                    [&script[..], b" ", &quoted[..]].concat()
                };
                vec![b"sh".to_vec(), b"-c".to_vec(), script]
            }
        };
        words.into_iter().map(serde_bytes::ByteBuf::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Template;
    use std::ffi::OsString;

    fn argv(words: &[&str], shell: bool, line: &[u8]) -> Vec<Vec<u8>> {
        let words: Vec<OsString> = words.iter().map(OsString::from).collect();
        Template::new(&words, shell)
            .argv(line)
            .into_iter()
            .map(|b| b.into_vec())
            .collect()
    }

    #[test]
    fn several_words_are_argv_and_one_word_of_shell_syntax_is_a_script() {
        assert_eq!(
            argv(&["echo", "[{}]"], false, b"a b"),
            [b"echo".to_vec(), b"[a b]".to_vec()]
        );
        assert_eq!(
            argv(&["cat"], false, b"f"),
            [b"cat".to_vec(), b"f".to_vec()]
        );
        assert_eq!(
            argv(&["echo {} | tr a-z A-Z"], false, b"x; y"),
            [
                b"sh".to_vec(),
                b"-c".to_vec(),
                b"echo 'x; y' | tr a-z A-Z".to_vec()
            ]
        );
        assert_eq!(
            argv(&["echo", "{}{}"], true, b"it's"),
            [
                b"sh".to_vec(),
                b"-c".to_vec(),
                b"echo 'it'\\''s''it'\\''s'".to_vec()
            ]
        );
        assert_eq!(
            argv(&["wc", "-c"], true, b"caf\xe9"),
            [b"sh".to_vec(), b"-c".to_vec(), b"wc -c 'caf\xe9'".to_vec()]
        );
    }
}
