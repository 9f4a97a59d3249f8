//! Replacement strings in a command template, as GNU parallel reads them: `{}` `{.}`
//! `{/}` `{//}` `{/.}` `{#}` `{%}` and the positional `{N}` `{N.}` `{N/}` `{N//}` `{N/.}`.
//!
//! Everything is bytes: an input is whatever the file or pipe held, valid UTF-8 or not.
//! A template runs either as an argument vector (each word of the command one argument,
//! a replacement never splits or joins words) or as one shell line, where every
//! replacement is shell-quoted so that no input can become shell syntax.

use supervisor::shell_quote;

/// What a replacement string takes of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The value (`{}`).
    Whole,
    /// Without its extension (`{.}`): from the last `.` after the last `/`.
    NoExtension,
    /// The base name (`{/}`).
    Base,
    /// The directory (`{//}`): `.` when there is none.
    Dir,
    /// The base name without its extension (`{/.}`).
    BaseNoExtension,
}

/// One piece of a template word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes as written.
    Text(Vec<u8>),
    /// An input value: all of it (`None`: the whole record) or one field (1-based).
    Value {
        /// Which field; `None` is the whole record.
        field: Option<usize>,
        /// What of it.
        cut: Cut,
    },
    /// The job's sequence number (`{#}`), from 1.
    Seq,
    /// The job slot (`{%}`): the seat of the worker running it, from 1. It is only
    /// known when the job starts, so the worker puts it in (see [`Template::argv`]).
    Slot,
}

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// `{= perl =}` and friends: parallel evaluates Perl there.
    #[error("`{{= ... =}}` (a Perl expression) is not supported: use a shell command with --shell instead")]
    Perl,
    /// `{0}`: fields count from 1.
    #[error("`{{0}}`: input fields count from 1")]
    FieldZero,
}

/// A parsed command template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<Vec<Piece>>,
    shell: bool,
}

/// The values one job fills a template with.
#[derive(Debug, Clone, Copy)]
pub struct Fill<'a> {
    /// The record's fields (one per input source, or per column with `--colsep`).
    pub fields: &'a [Vec<u8>],
    /// The whole record (`{}`): the line, or the fields joined by spaces.
    pub whole: &'a [u8],
    /// `{#}`.
    pub seq: u64,
    /// `{%}`, when known (`None`: where the command is made, before a worker has it).
    pub slot: Option<u64>,
}

/// Whether a one-word command is shell syntax (a space or a shell metacharacter), as
/// GNU parallel reads `parallel 'echo {} | tr a-z A-Z'`.
pub fn is_shell_syntax(word: &[u8]) -> bool {
    word.iter()
        .any(|b| b.is_ascii_whitespace() || b"|&;<>()$`\\\"'*?[]#~".contains(b))
}

impl Template {
    /// The template of a command line: one shell line with `--shell` or when it is one
    /// word of shell syntax, else argument words.
    pub fn for_command(words: &[Vec<u8>], shell: bool) -> Result<Template, TemplateError> {
        let shell = shell || (words.len() == 1 && is_shell_syntax(&words[0]));
        Template::parse(words, shell)
    }

    /// Parses a command: as argument words, or (`shell`) as one shell line made of the
    /// words joined by spaces, as parallel does.
    pub fn parse(words: &[Vec<u8>], shell: bool) -> Result<Template, TemplateError> {
        let words = if shell {
            vec![parse_word(&words.join(&b' '))?]
        } else {
            words
                .iter()
                .map(|w| parse_word(w))
                .collect::<Result<_, _>>()?
        };
        Ok(Template { words, shell })
    }

    /// The command line one job runs, as `--dry-run` prints it and the job log names it:
    /// the shell line, or the arguments shell-quoted.
    pub fn display(&self, fill: &Fill<'_>) -> Vec<u8> {
        if self.shell {
            return self.shell_line(fill);
        }
        self.argv(fill)
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(&b' ')
    }

    /// Whether any replacement string appears (if none, the values are appended).
    pub fn has_replacement(&self) -> bool {
        self.words
            .iter()
            .flatten()
            .any(|p| !matches!(p, Piece::Text(_)))
    }

    /// Whether `{%}` appears (the worker that runs a job fills it in).
    pub fn has_slot(&self) -> bool {
        self.words.iter().flatten().any(|p| *p == Piece::Slot)
    }

    /// The argument vector for one job (argument mode), or `["sh", "-c", line]`.
    pub fn argv(&self, fill: &Fill<'_>) -> Vec<Vec<u8>> {
        self.argv_and_slots(fill).0
    }

    /// [`Template::argv`], and where `{%}` goes in it, as (argument, byte offset)
    /// pairs in ascending order, when `fill.slot` is not known (nothing is written
    /// there then; [`put_slot`] writes it).
    pub fn argv_and_slots(&self, fill: &Fill<'_>) -> (Vec<Vec<u8>>, Vec<(u32, u32)>) {
        let mut slots = Vec::new();
        if self.shell {
            let line = self.line(fill, &mut |at| slots.push((2, at as u32)));
            return (vec![b"sh".to_vec(), b"-c".to_vec(), line], slots);
        }
        let mut argv: Vec<Vec<u8>> = self
            .words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let mut arg = Vec::new();
                for piece in word {
                    if !expand(piece, fill, &mut arg, false) {
                        slots.push((i as u32, arg.len() as u32));
                    }
                }
                arg
            })
            .collect();
        if !self.has_replacement() {
            argv.extend(fill.fields.iter().cloned());
        }
        (argv, slots)
    }

    /// The shell line for one job: the template with every value quoted (and the
    /// values appended, quoted, when it has no replacement string).
    pub fn shell_line(&self, fill: &Fill<'_>) -> Vec<u8> {
        self.line(fill, &mut |_| {})
    }

    /// The shell line, `slot_at` told where each unknown `{%}` goes.
    fn line(&self, fill: &Fill<'_>, slot_at: &mut dyn FnMut(usize)) -> Vec<u8> {
        let mut line = Vec::new();
        for (i, word) in self.words.iter().enumerate() {
            if i > 0 {
                line.push(b' ');
            }
            for piece in word {
                if !expand(piece, fill, &mut line, true) {
                    slot_at(line.len());
                }
            }
        }
        if !self.has_replacement() {
            for field in fill.fields {
                line.push(b' ');
                line.extend(shell_quote(field));
            }
        }
        line
    }
}

/// Writes `piece` to `out`; false for a `{%}` whose slot is not known (nothing is
/// written: the caller notes where it goes).
fn expand(piece: &Piece, fill: &Fill<'_>, out: &mut Vec<u8>, quoted: bool) -> bool {
    let value: Vec<u8> = match piece {
        Piece::Text(t) => {
            out.extend_from_slice(t);
            return true;
        }
        Piece::Seq => fill.seq.to_string().into_bytes(),
        // Digits: nothing to quote.
        Piece::Slot => match fill.slot {
            Some(slot) => {
                out.extend_from_slice(slot.to_string().as_bytes());
                return true;
            }
            None => return false,
        },
        Piece::Value { field, cut } => {
            let whole = match field {
                None => fill.whole,
                Some(n) => fill.fields.get(n - 1).map_or(&[][..], |f| f.as_slice()),
            };
            cut_value(whole, *cut).to_vec()
        }
    };
    if quoted {
        out.extend(shell_quote(&value));
    } else {
        out.extend(value);
    }
    true
}

/// Writes `slot` where [`Template::argv_and_slots`] said `{%}` goes.
pub fn put_slot(argv: &mut [Vec<u8>], slots: &[(u32, u32)], slot: u64) {
    let digits = slot.to_string();
    // From the last, so that the earlier offsets stay right.
    for &(arg, at) in slots.iter().rev() {
        if let Some(word) = argv.get_mut(arg as usize) {
            let at = (at as usize).min(word.len());
            word.splice(at..at, digits.bytes());
        }
    }
}

/// What `cut` takes of `value` (parallel's rules: `{.}` of `.hidden` is empty, `{//}`
/// of `file` is `.`).
pub fn cut_value(value: &[u8], cut: Cut) -> &[u8] {
    let slash = value.iter().rposition(|&b| b == b'/');
    let base = slash.map_or(value, |i| &value[i + 1..]);
    let no_ext = |v: &'_ [u8]| -> usize {
        let from = v.len() - base.len();
        match v[from..].iter().rposition(|&b| b == b'.') {
            Some(i) => from + i,
            None => v.len(),
        }
    };
    match cut {
        Cut::Whole => value,
        Cut::NoExtension => &value[..no_ext(value)],
        Cut::Base => base,
        Cut::BaseNoExtension => {
            let end = base.iter().rposition(|&b| b == b'.').unwrap_or(base.len());
            &base[..end]
        }
        Cut::Dir => match slash {
            Some(0) => b"/",
            Some(i) => &value[..i],
            None => b".",
        },
    }
}

fn parse_word(word: &[u8]) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    let mut i = 0;
    while i < word.len() {
        if word[i] == b'{' {
            if word[i..].starts_with(b"{=") {
                return Err(TemplateError::Perl);
            }
            if let Some(len) = word[i..].iter().position(|&b| b == b'}') {
                if let Some(piece) = replacement(&word[i + 1..i + len])? {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                    i += len + 1;
                    continue;
                }
            }
        }
        text.push(word[i]);
        i += 1;
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The replacement string between `{` and `}`, if `inner` is one.
fn replacement(inner: &[u8]) -> Result<Option<Piece>, TemplateError> {
    let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = inner.split_at(digits);
    let cut = match rest {
        b"" if digits == 0 => {
            return Ok(Some(Piece::Value {
                field: None,
                cut: Cut::Whole,
            }))
        }
        b"#" if digits == 0 => return Ok(Some(Piece::Seq)),
        b"%" if digits == 0 => return Ok(Some(Piece::Slot)),
        b"" => Cut::Whole,
        b"." => Cut::NoExtension,
        b"/" => Cut::Base,
        b"//" => Cut::Dir,
        b"/." => Cut::BaseNoExtension,
        _ => return Ok(None),
    };
    let field = if digits == 0 {
        None
    } else {
        let n: usize = std::str::from_utf8(number)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        if n == 0 {
            return Err(TemplateError::FieldZero);
        }
        Some(n)
    };
    Ok(Some(Piece::Value { field, cut }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn fill<'a>(fields: &'a [Vec<u8>], whole: &'a [u8]) -> Fill<'a> {
        Fill {
            fields,
            whole,
            seq: 7,
            slot: None,
        }
    }

    /// Each row was printed by GNU parallel 20221122:
    /// `parallel echo {.} {//} {/} {/.} ::: VALUE`.
    #[test]
    fn cuts_match_gnu_parallel() {
        let rows: &[(&str, &str, &str, &str, &str)] = &[
            (
                "dir.x/a.tar.gz",
                "dir.x/a.tar",
                "dir.x",
                "a.tar.gz",
                "a.tar",
            ),
            ("b", "b", ".", "b", "b"),
            ("a.b/c", "a.b/c", "a.b", "c", "c"),
            ("/a", "/a", "/", "a", "a"),
            (".hidden", "", ".", ".hidden", ""),
            ("a/.b", "a/", "a", ".b", ""),
            ("x.y.z", "x.y", ".", "x.y.z", "x.y"),
            ("a b.c", "a b", ".", "a b.c", "a b"),
        ];
        for (value, no_ext, dir, base, base_no_ext) in rows {
            let v = value.as_bytes();
            assert_eq!(
                cut_value(v, Cut::NoExtension),
                no_ext.as_bytes(),
                "{{.}} of {value}"
            );
            assert_eq!(cut_value(v, Cut::Dir), dir.as_bytes(), "{{//}} of {value}");
            assert_eq!(cut_value(v, Cut::Base), base.as_bytes(), "{{/}} of {value}");
            assert_eq!(
                cut_value(v, Cut::BaseNoExtension),
                base_no_ext.as_bytes(),
                "{{/.}} of {value}"
            );
        }
    }

    /// What `parallel --dry-run echo ::: VALUE` printed for each.
    #[test]
    fn quoting_matches_gnu_parallel() {
        let rows: &[(&str, &str)] = &[
            ("a=b", "'a=b'"),
            ("a+b", "a+b"),
            ("-x", "-x"),
            ("a*b", "'a*b'"),
            ("a/b", "a/b"),
            ("é", "'é'"),
            ("", "''"),
            ("it's", "'it'\"'\"'s'"),
            ("x; echo INJECTED", "'x; echo INJECTED'"),
            ("a_b.c-d", "a_b.c-d"),
            ("{a}", "'{a}'"),
        ];
        for (value, quoted) in rows {
            assert_eq!(shell_quote(value.as_bytes()), quoted.as_bytes(), "{value}");
        }
    }

    #[test]
    fn argument_mode_keeps_each_word_one_argument_and_appends_without_a_replacement() {
        let fields = words(&["x; echo INJECTED"]);
        let t = Template::parse(&words(&["echo", "pre{}post", "{#}"]), false).unwrap();
        assert_eq!(
            t.argv(&fill(&fields, &fields[0])),
            words(&["echo", "prex; echo INJECTEDpost", "7"])
        );
        let t = Template::parse(&words(&["echo", "-n"]), false).unwrap();
        let two = words(&["a b", "c"]);
        assert_eq!(
            t.argv(&fill(&two, b"a b c")),
            words(&["echo", "-n", "a b", "c"])
        );
    }

    #[test]
    fn shell_mode_quotes_every_value() {
        let fields = words(&["x; echo INJECTED"]);
        let t = Template::parse(&words(&["echo {} | tr a-z A-Z"]), true).unwrap();
        assert_eq!(
            t.shell_line(&fill(&fields, &fields[0])),
            b"echo 'x; echo INJECTED' | tr a-z A-Z".to_vec()
        );
        let t = Template::parse(&words(&["echo"]), true).unwrap();
        let two = words(&["a b", "it's"]);
        assert_eq!(
            t.shell_line(&fill(&two, b"")),
            b"echo 'a b' 'it'\"'\"'s'".to_vec()
        );
    }

    /// `{%}` is filled in by the worker; the rest is made before.
    #[test]
    fn the_slot_goes_where_it_was_written() {
        let fields = words(&["it's"]);
        for (template, shell, want) in [
            (
                &["echo", "{%}", "a{%}b{%}{}"][..],
                false,
                &["echo", "3", "a3b3it's"][..],
            ),
            (
                &["echo {%}{} {%}"],
                true,
                &["sh", "-c", "echo 3'it'\"'\"'s' 3"],
            ),
        ] {
            let t = Template::parse(&words(template), shell).unwrap();
            assert!(t.has_slot());
            let (mut argv, slots) = t.argv_and_slots(&fill(&fields, &fields[0]));
            put_slot(&mut argv, &slots, 3);
            assert_eq!(argv, words(want));
            let known = Fill {
                slot: Some(3),
                ..fill(&fields, &fields[0])
            };
            assert_eq!(t.argv(&known), words(want));
        }
    }

    #[test]
    fn positional_fields_and_literal_braces() {
        let fields = words(&["d/f.t", "y"]);
        let t = Template::parse(&words(&["{2}{1.}", "{1/}", "{3}", "{a}", "{}"]), false).unwrap();
        assert_eq!(
            t.argv(&fill(&fields, b"d/f.t y")),
            words(&["yd/f", "f.t", "", "{a}", "d/f.t y"])
        );
        assert_eq!(
            Template::parse(&words(&["{= s/a/b/ =}"]), false),
            Err(TemplateError::Perl)
        );
        assert_eq!(
            Template::parse(&words(&["{0}"]), false),
            Err(TemplateError::FieldZero)
        );
        // Non-UTF-8 bytes pass through untouched.
        let odd = vec![b"caf\xe9.txt".to_vec()];
        let t = Template::parse(&words(&["cat", "{.}"]), false).unwrap();
        assert_eq!(t.argv(&fill(&odd, &odd[0]))[1], b"caf\xe9".to_vec());
    }
}
